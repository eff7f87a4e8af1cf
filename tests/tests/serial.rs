//! `guest-agent -m isa-serial` on a pseudo-terminal: raw mode, the device
//! loop, and the reset byte recovering a poisoned parser (a serial line has
//! no connection semantics, so nothing else can).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::openpty;
use nix::sys::termios::{tcgetattr, LocalFlags};

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Read from the master side until `want` bytes arrived or `wait` passed.
fn read_until(master: &mut File, want: usize, wait: Duration) -> Vec<u8> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want && Instant::now() < deadline {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap() == 0 {
            continue;
        }
        let n = master.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn isa_serial_on_a_pty() {
    let pty = openpty(None, None).unwrap();
    let slave_name = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
    ))
    .unwrap();
    let child = Command::new(tests::guest_agent_bin())
        .args(["-m", "isa-serial", "-p"])
        .arg(&slave_name)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Guard(child);
    // Wait until the agent has put the line in raw mode (no echo).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcgetattr(&pty.slave)
        .unwrap()
        .local_flags
        .contains(LocalFlags::ECHO)
    {
        assert!(
            Instant::now() < deadline,
            "agent did not configure the serial line"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut master = File::from(pty.master);
    // A previous user left half a request; the next plain request is
    // swallowed into it and answered with errors only ...
    master.write_all(br#"{"execute":"guest-pi"#).unwrap();
    master
        .write_all(br#"{"execute":"guest-ping","id":1}"#)
        .unwrap();
    let poisoned = read_until(&mut master, usize::MAX - 1, Duration::from_millis(500));
    let text = String::from_utf8_lossy(&poisoned);
    assert!(
        text.contains("\"error\"") && !text.contains("\"return\""),
        "{text}"
    );
    // ... until the reset byte and a fresh request.
    master
        .write_all(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":77}}")
        .unwrap();
    let expect: &[u8] = b"\xff{\"return\": 77}\n";
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.ends_with(expect) && Instant::now() < deadline {
        got.extend(read_until(&mut master, 1, Duration::from_secs(1)));
    }
    assert!(got.ends_with(expect), "{:?}", String::from_utf8_lossy(&got));
    // Everything before the sentinel is error lines the client skips.
    let before = &got[..got.len() - expect.len()];
    assert!(String::from_utf8_lossy(before)
        .lines()
        .all(|l| l.starts_with("{\"error\": ")));
    master
        .write_all(br#"{"execute":"guest-ping","id":2}"#)
        .unwrap();
    let want: &[u8] = b"{\"return\": {}, \"id\": 2}\n";
    assert_eq!(
        read_until(&mut master, want.len(), Duration::from_secs(10)),
        want
    );
}
