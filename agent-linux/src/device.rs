//! `virtio-serial` and `isa-serial`: a character device with no
//! connection semantics.
//!
//! While no host client is connected, a virtio port polls as
//! POLLIN|POLLHUP and reads return 0 at once; qemu-ga sleeps 100 ms and
//! retries forever (10 wake-ups a second). We ask the kernel for SIGIO on
//! the port (`O_ASYNC`, `F_SETOWN`): Linux's virtio console sends it when
//! the host side opens or closes the port and when data arrives. The agent
//! waits for it on a signalfd, so it sleeps while the host is away and
//! answers at once when it returns. Until a SIGIO has been seen to arrive
//! the wait is bounded by a back-off from 10 ms to 640 ms, which is also
//! what happens where SIGIO is unavailable; once SIGIO is known to work,
//! the bound is a minute, a safety net only.
//!
//! The parser is *not* reset when the host goes away: a new client must
//! send the reset byte, as the QMP specification says. Writes never spin:
//! on EAGAIN the writer polls for POLLOUT, and drops the reply when the
//! host side hangs up.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use agent_core::{Agent, Commands};

use crate::port::Batched;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, BaudRate, FlushArg, SetArg, SpecialCharacterIndices};

/// Shortest and longest sleep while the host side is closed.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(640);
/// The longest wait for the host once SIGIO is known to work.
const SIGIO_SAFETY: Duration = Duration::from_secs(60);
/// How long a reply may wait for the host to accept it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut flags = OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    if kind == Kind::Serial {
        flags |= OFlag::O_NOCTTY;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("error opening channel '{path}': {e}")))?;
    if kind == Kind::Serial {
        // Raw mode, 38400 baud, VMIN=1 VTIME=0, pending input dropped.
        let mut tio = termios::tcgetattr(&file).map_err(io::Error::from)?;
        termios::cfmakeraw(&mut tio);
        termios::cfsetspeed(&mut tio, BaudRate::B38400).map_err(io::Error::from)?;
        tio.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        tio.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(&file, SetArg::TCSANOW, &tio).map_err(io::Error::from)?;
        termios::tcflush(&file, FlushArg::TCIFLUSH).map_err(io::Error::from)?;
    }
    Ok(file)
}

/// Signals blocked in every thread by [`block_sigio`] and taken by the
/// device loop through a signalfd.
fn sigio_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGIO);
    set
}

/// Block SIGIO in the calling thread and every thread it starts later:
/// call before starting threads, so the signal stays pending for the
/// device loop's signalfd instead of killing the process.
pub fn block_sigio() -> io::Result<()> {
    sigio_set().thread_block().map_err(io::Error::from)
}

/// Ask for SIGIO on `file` (host open/close and data on a virtio port).
fn request_sigio(file: &File) -> io::Result<()> {
    let flags = fcntl(file, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_ASYNC;
    fcntl(file, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    let pid = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
    // SAFETY: F_SETOWN takes an int argument and only affects signal
    // delivery for this open file description; `file` is open for the call.
    let rc = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(file), libc::F_SETOWN, pid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for the host side of a virtio port to come back.
struct HostWait {
    signals: Option<SignalFd>,
    backoff: Duration,
    /// A SIGIO has arrived at least once: the kernel sends them.
    proven: bool,
}

impl HostWait {
    fn new(file: &File, kind: Kind) -> HostWait {
        let signals = (kind == Kind::Virtio)
            .then(|| {
                request_sigio(file).ok()?;
                SignalFd::with_flags(&sigio_set(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                    .ok()
            })
            .flatten();
        if signals.is_none() && kind == Kind::Virtio {
            log::debug!("no SIGIO on the port; polling with back-off");
        }
        HostWait {
            signals,
            backoff: BACKOFF_MIN,
            proven: false,
        }
    }

    /// Forget signals that arrived before the next read, so a wait after
    /// that read only returns for newer events.
    fn drain(&mut self) {
        if let Some(fd) = &self.signals {
            while let Ok(Some(_)) = fd.read_signal() {
                self.proven = true;
            }
        }
    }

    /// The host is away: sleep until a SIGIO or the current bound.
    fn wait(&mut self) -> io::Result<()> {
        let bound = if self.proven {
            SIGIO_SAFETY
        } else {
            self.backoff
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        match &self.signals {
            Some(fd) => {
                let timeout = PollTimeout::try_from(bound).unwrap_or(PollTimeout::MAX);
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, timeout)? > 0 {
                    self.proven = true;
                }
            }
            None => std::thread::sleep(bound),
        }
        Ok(())
    }

    /// The host is back.
    fn reset(&mut self) {
        self.backoff = BACKOFF_MIN;
    }
}

/// Serve the device until an I/O error.
pub fn serve<C: Commands>(
    agent: &mut Agent<'_, Vec<u8>, C>,
    path: &str,
    kind: Kind,
) -> io::Result<()> {
    let mut file = open(path, kind)?;
    let mut buf = vec![0u8; 4096];
    let mut host = HostWait::new(&file, kind);
    let mut host_present = true;
    loop {
        let revents = {
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::NONE)?;
            fds[0].revents().unwrap_or(PollFlags::empty())
        };
        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return Err(io::Error::other("error reading channel"));
        }
        host.drain();
        match file.read(&mut buf) {
            Ok(0) => {
                // No host client: wait for it, keeping the fd open.
                if host_present {
                    log::debug!("host side closed; waiting");
                    host_present = false;
                }
                host.wait()?;
            }
            Ok(n) => {
                host_present = true;
                host.reset();
                let mut out = Batched::new(Port { file: &mut file });
                if let Err(e) = agent.feed(&buf[..n], &mut out).and_then(|_| out.send()) {
                    log::warn!("reply dropped: {e}");
                    agent.reset();
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                if revents.contains(PollFlags::POLLHUP) {
                    host.wait()?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The device as a sink that never busy-waits.
struct Port<'f> {
    file: &'f mut File,
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
                            "host did not read the reply",
                        ));
                    }
                    let timeout = PollTimeout::try_from(left.min(Duration::from_secs(1)))
                        .unwrap_or(PollTimeout::MAX);
                    let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLOUT)];
                    poll(&mut fds, timeout)?;
                    if fds[0]
                        .revents()
                        .is_some_and(|r| r.contains(PollFlags::POLLHUP))
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "host side closed",
                        ));
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
