//! `guest-agent -m isa-serial` on a pseudo-terminal: raw mode, the device
//! loop, and the reset byte recovering a poisoned parser (a serial line has
//! no connection semantics, so nothing else can).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, ControlModes, InputModes, LocalModes, OutputModes};

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
        let mut fds = [PollFd::new(&*master, PollFlags::IN)];
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        if poll(&mut fds, Some(&tick)).unwrap() == 0 {
            continue;
        }
        let n = master.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn isa_serial_on_a_pty() {
    // openpty(3): the master, and the slave held open here too.
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_name = ptsname(&master, Vec::new()).unwrap();
    let slave_name = OsStr::from_bytes(slave_name.as_bytes());
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(slave_name)
        .unwrap();
    let child = Command::new(tests::guest_agent_bin())
        .args(["-m", "isa-serial", "-p"])
        .arg(slave_name)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Guard(child);
    // Wait until the agent has put the line in raw mode (no echo).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcgetattr(&slave)
        .unwrap()
        .local_modes
        .contains(LocalModes::ECHO)
    {
        assert!(
            Instant::now() < deadline,
            "agent did not configure the serial line"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The rest of cfmakeraw(3) (a new pty has all of these on), at
    // 38400 baud both ways.
    let tio = tcgetattr(&slave).unwrap();
    let cooked = LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN;
    assert!(!tio.local_modes.intersects(cooked), "{tio:?}");
    assert!(!tio.output_modes.contains(OutputModes::OPOST), "{tio:?}");
    let translated = InputModes::ICRNL | InputModes::IXON;
    assert!(!tio.input_modes.intersects(translated), "{tio:?}");
    assert!(tio.control_modes.contains(ControlModes::CS8), "{tio:?}");
    assert_eq!((tio.input_speed(), tio.output_speed()), (38400, 38400));
    let mut master = File::from(master);
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
