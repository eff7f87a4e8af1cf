//! `virtio-serial` and `isa-serial`: character devices with no
//! connection semantics of their own.
//!
//! While no host client is connected, a virtio port polls as
//! POLLIN|POLLHUP and reads return 0 at once, so polling the port then
//! spins; qemu-ga sleeps 100 ms and retries forever (10 wake-ups a
//! second). Linux's `virtio_console` driver, though, tells a process
//! that opened the port with `O_ASYNC` about every change of the host
//! side: `handle_control_message` (VIRTIO_CONSOLE_PORT_OPEN, sent by
//! QEMU's `virtio_serial_open`/`virtio_serial_close` when a chardev
//! client comes or goes) and `in_intr` (input) both call
//! `send_sigio_to_port`. On a virtio port we therefore make the driver
//! queue a real-time signal (`F_SETSIG`, owned by the serving thread
//! with `F_SETOWN_EX`) into a `signalfd` and sleep on that while the host
//! is away: no wake-up at all until the host returns, and the first
//! answer as soon as it does. While a host is connected we poll the port
//! and the signalfd, re-reading the port once a minute as a safety net.
//!
//! **When the host side closes** (a read returns 0, or a reply cannot be
//! written because the port hangs up) the agent is reset: the parser
//! drops a half-read request and any partial `guest-file-write` spill, so
//! the next client (libvirt sends a plain guest-sync, never the 0xFF
//! reset byte) is answered. A close and reopen so quick that the agent
//! never sees the port closed cannot be detected: the driver signals
//! both events the same way it signals input, keeps no count, and with
//! the shared interrupt vector of QEMU's default device it can signal
//! one input more than once, so counting signals would reset the parser
//! inside a live client's request (tests/README.md, difference 3, has
//! the code references). Then the client's reset byte is what recovers,
//! as with qemu-ga. isa-serial has no
//! such events and keeps qemu-ga's behaviour (no reset; a 10-640 ms
//! back-off where it would spin). If the signal set-up fails, a virtio
//! port falls back to that back-off loop too.
//!
//! Writes never spin: on EAGAIN the writer polls for POLLOUT (or, while
//! the host side is closed, waits for its return on the signalfd) and
//! drops the reply only if no host takes it within 10 s. The rest of a
//! reply interrupted by a hang-up goes to the next host client (which
//! skips it by the sentinel), as with qemu-ga.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use agent_core::{Agent, Commands};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::OFlags;
use rustix::termios::{self, OptionalActions, QueueSelector, SpecialCodeIndex};

use crate::port::{batch_buffer, Batched};

/// Shortest and longest sleep while the host side is closed.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(640);
/// How long a reply may wait for the host to accept it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the agent waits for input without looking at the port
/// itself: no wait is unbounded, whatever the driver or QEMU do (one
/// wake-up every 5 s while a host client is connected and silent).
const IDLE_RECHECK: Timespec = Timespec {
    tv_sec: 5,
    tv_nsec: 0,
};
/// On a virtio port with host events, the longest the agent waits with a
/// host connected without re-reading the port: a safety net only (one
/// wake-up a minute while a host is connected and silent; none while the
/// host is away).
const EVENTS_RECHECK: Timespec = Timespec {
    tv_sec: 60,
    tv_nsec: 0,
};
/// A time-out of zero: `poll` returns at once.
const IMMEDIATELY: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// Which kind of device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// virtio-serial port.
    Virtio,
    /// Serial line.
    Serial,
}

/// Open the device as qemu-ga does.
pub fn open(path: &str, kind: Kind) -> io::Result<File> {
    let mut flags = OFlags::NONBLOCK | OFlags::CLOEXEC;
    if kind == Kind::Serial {
        flags |= OFlags::NOCTTY;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("error opening channel '{path}': {e}")))?;
    if kind == Kind::Serial {
        // Raw mode, 38400 baud, VMIN=1 VTIME=0, pending input dropped.
        let mut tio = termios::tcgetattr(&file)?;
        tio.make_raw();
        // cfsetspeed(3) as glibc and musl do it: CBAUD only, CIBAUD left
        // as it is (normally 0: input at the output speed). rustix's
        // `set_speed` would set CIBAUD too.
        tio.set_output_speed(termios::speed::B38400)?;
        tio.special_codes[SpecialCodeIndex::VMIN] = 1;
        tio.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(&file, OptionalActions::Now, &tio)?;
        termios::tcflush(&file, QueueSelector::IFlush)?;
    }
    Ok(file)
}

/// Serve the device until an I/O error.
pub fn serve<C: Commands>(
    agent: &mut Agent<'_, Vec<u8>, C>,
    path: &str,
    kind: Kind,
) -> io::Result<()> {
    let file = open(path, kind)?;
    if kind == Kind::Virtio {
        match HostEvents::watch(&file) {
            Ok(events) => return serve_events(agent, file, &events),
            Err(e) => log::warn!("no host open/close events on {path} ({e}); polling instead"),
        }
    }
    serve_polling(agent, file)
}

/// The virtio loop: sleep until the driver signals an event, reset the
/// agent whenever the host side is seen closed.
fn serve_events<C: Commands>(
    agent: &mut Agent<'_, Vec<u8>, C>,
    mut file: File,
    events: &HostEvents,
) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut batch = batch_buffer();
    let mut host_present = true;
    loop {
        // Take the queued events first: any event after this wakes the
        // wait below, so none is missed between reading and waiting.
        events.drain()?;
        loop {
            match file.read(&mut buf) {
                Ok(0) => {
                    if host_present {
                        log::debug!("host side closed; resetting and waiting");
                        agent.reset();
                        host_present = false;
                    }
                    break;
                }
                Ok(n) => {
                    host_present = true;
                    let mut port = Port {
                        file: &mut file,
                        events: Some(events),
                        backoff: BACKOFF_MIN,
                        hung_up: false,
                    };
                    let result = {
                        let mut out = Batched::new(&mut port, &mut batch);
                        agent.feed(&buf[..n], &mut out).and_then(|_| out.send())
                    };
                    let hung_up = port.hung_up;
                    if let Err(e) = result {
                        log::warn!("reply dropped: {e}");
                        agent.reset();
                    } else if hung_up {
                        // The rest of what this client sent is its own.
                        log::debug!("host side closed while replying; resetting");
                        agent.reset();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // EAGAIN: a host is connected and has sent nothing.
                    host_present = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if host_present {
            let mut fds = [
                PollFd::new(&file, PollFlags::IN),
                PollFd::new(&events.fd, PollFlags::IN),
            ];
            poll(&mut fds, Some(&EVENTS_RECHECK))?;
            if fds[0]
                .revents()
                .intersects(PollFlags::ERR | PollFlags::NVAL)
            {
                return Err(io::Error::other("error reading channel"));
            }
        } else {
            // POLLHUP would end a poll on the port at once: wait for the
            // driver's signal only, without a time-out.
            events.wait(None)?;
        }
    }
}

/// The isa-serial loop (and a virtio port without events): poll, and
/// back off while the port reads as closed.
fn serve_polling<C: Commands>(agent: &mut Agent<'_, Vec<u8>, C>, mut file: File) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut batch = batch_buffer();
    let mut backoff = BACKOFF_MIN;
    let mut host_present = true;
    loop {
        let revents = {
            let mut fds = [PollFd::new(&file, PollFlags::IN)];
            poll(&mut fds, Some(&IDLE_RECHECK))?;
            fds[0].revents()
        };
        if revents.intersects(PollFlags::ERR | PollFlags::NVAL) {
            return Err(io::Error::other("error reading channel"));
        }
        match file.read(&mut buf) {
            Ok(0) => {
                // No host client: wait, backing off, and keep the fd open.
                if host_present {
                    log::debug!("host side closed; waiting");
                    host_present = false;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Ok(n) => {
                if revents.is_empty() {
                    log::debug!("{n} bytes of input found without a poll wake-up");
                }
                host_present = true;
                backoff = BACKOFF_MIN;
                let mut out = Batched::new(
                    Port {
                        file: &mut file,
                        events: None,
                        backoff: BACKOFF_MIN,
                        hung_up: false,
                    },
                    &mut batch,
                );
                if let Err(e) = agent.feed(&buf[..n], &mut out).and_then(|_| out.send()) {
                    log::warn!("reply dropped: {e}");
                    agent.reset();
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                if revents.contains(PollFlags::HUP) {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `fcntl` commands and `struct f_owner_ex` (asm-generic values, which
/// x86, arm and riscv use; the `libc` crate does not export them for
/// every target).
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// The driver's events for one port (host open, host close, input), as
/// a real-time signal queued to the serving thread and read from a
/// `signalfd`. SIGIO, which the kernel sends instead when the real-time
/// queue is full, is taken there too.
struct HostEvents {
    fd: OwnedFd,
}

impl HostEvents {
    /// Ask the driver to signal this thread about `file`'s events.
    fn watch(file: &File) -> io::Result<HostEvents> {
        let signal = libc::SIGRTMIN() + 2;
        // SAFETY: plain libc calls on a local sigset_t and on fds that
        // stay open for the calls; results are checked.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigaddset(&mut set, libc::SIGIO);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let sfd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if sfd < 0 {
                return Err(io::Error::last_os_error());
            }
            let events = HostEvents {
                fd: OwnedFd::from_raw_fd(sfd),
            };
            let fd = file.as_raw_fd();
            let owner = FOwnerEx {
                kind: F_OWNER_TID,
                pid: libc::gettid(),
            };
            if libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx) < 0
                || libc::fcntl(fd, F_SETSIG, signal) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_ASYNC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(events)
        }
    }

    /// Take every queued event; returns how many there were.
    fn drain(&self) -> io::Result<usize> {
        let mut infos = [0u8; 128 * 16];
        let mut n = 0;
        loop {
            match rustix::io::read(&self.fd, &mut infos) {
                Ok(0) => return Ok(n),
                Ok(bytes) => n += bytes / 128,
                Err(rustix::io::Errno::AGAIN) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sleep until an event is queued (or `timeout`; `None`: none).
    fn wait(&self, timeout: Option<&Timespec>) -> io::Result<()> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The device as a sink that never busy-waits.
struct Port<'f> {
    file: &'f mut File,
    /// The port's host events, when the driver sends them.
    events: Option<&'f HostEvents>,
    /// Sleep between attempts while the host side is closed (no events).
    backoff: Duration,
    /// Whether the host side was seen closed during the writes.
    hung_up: bool,
}

impl Write for Port<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            match self.file.write(data) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "host did not take the reply within 10 s",
                        ));
                    }
                    let timeout = Timespec::try_from(left.min(Duration::from_secs(1))).ok();
                    let mut fds = [PollFd::new(&*self.file, PollFlags::OUT)];
                    poll(&mut fds, timeout.as_ref())?;
                    if fds[0].revents().contains(PollFlags::HUP) {
                        // The host side is closed: keep the rest of the
                        // reply for the next host client (which skips it
                        // by the sentinel), as qemu-ga does, and wait for
                        // that client rather than spin.
                        self.hung_up = true;
                        match self.events {
                            Some(events) => {
                                events.drain()?;
                                // The host may have come back before the
                                // drain: look again, then sleep.
                                let mut fds = [PollFd::new(&*self.file, PollFlags::OUT)];
                                poll(&mut fds, Some(&IMMEDIATELY))?;
                                if fds[0].revents().contains(PollFlags::HUP) {
                                    let left = deadline.saturating_duration_since(Instant::now());
                                    events.wait(Timespec::try_from(left).ok().as_ref())?;
                                }
                            }
                            None => {
                                std::thread::sleep(self.backoff);
                                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                            }
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
