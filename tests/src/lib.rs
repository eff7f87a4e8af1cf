//! Helpers for the host-side integration tests: build and start
//! `guest-agent`, and talk to it over its unix socket with agent-core's
//! client.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agent_core::client::{Client, Event, Outcome, SyncMode};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the `guest-agent` binary, built (once per test process) with
/// the same cargo that runs the tests; `QGA_AGENT_BIN` names another (the
/// long hostile runs use a release build).
pub fn guest_agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_agent(false))
}

/// The release build of `guest-agent` (built once per test process), for
/// the long runs (`soak.rs`); `QGA_AGENT_BIN` names another.
pub fn guest_agent_release_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_agent(true))
}

fn build_agent(release: bool) -> PathBuf {
    if let Some(bin) = std::env::var_os("QGA_AGENT_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "agent-linux",
        "--bin",
        "guest-agent",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of guest-agent failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target
        .join(if release { "release" } else { "debug" })
        .join("guest-agent")
}

/// A fresh, empty directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qga-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A running `guest-agent -m unix-listen`, killed on drop.
pub struct RunningAgent {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
}

impl RunningAgent {
    /// Start the agent with extra arguments and wait for its socket.
    pub fn start(name: &str, extra: &[&str]) -> RunningAgent {
        Self::start_bin(guest_agent_bin(), name, extra)
    }

    /// Start `bin` (ours or qemu-ga) the same way, its state directory in
    /// the scratch directory.
    pub fn start_bin(bin: &Path, name: &str, extra: &[&str]) -> RunningAgent {
        let dir = scratch_dir(name);
        let socket = dir.join("qga.sock");
        let child = Command::new(bin)
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn guest-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {}",
                bin.display(),
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        RunningAgent { child, socket }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection.
    pub fn connect(&self) -> Conn {
        Conn::new(UnixStream::connect(&self.socket).expect("connect"))
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect to a unix socket QEMU may not have created yet, retrying
/// until `deadline`; `what` names it if that fails.
pub fn connect_until(socket: &Path, deadline: Instant, what: &str) -> UnixStream {
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return stream,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {what} at {}: {e}",
                    socket.display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One read from `stream` into `into`, waiting until `deadline`: the
/// bytes read (0 when the peer closed or reset the connection), or
/// `None` at the deadline. Leaves the stream's read time-out changed.
pub fn read_until(stream: &mut UnixStream, deadline: Instant, into: &mut Vec<u8>) -> Option<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).expect("set timeout");
        let mut buf = [0u8; 65536];
        match stream.read(&mut buf) {
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                return Some(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(0),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("read a socket: {e}"),
        }
    }
}

/// One connection, with a time-out on every read.
pub struct Conn {
    /// The socket.
    pub stream: UnixStream,
    client: Client<Vec<u8>>,
    pending: Vec<u8>,
}

/// A response, owned: `Ok(return value text)` or `Err((class, desc))`,
/// plus the echoed id's text.
pub type Answer = (Result<String, (String, String)>, Option<String>);

impl Conn {
    /// Wrap a connected stream.
    pub fn new(stream: UnixStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        Conn {
            stream,
            client: Client::new(vec![0u8; 1 << 20]),
            pending: Vec::new(),
        }
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The §2.6/§2.7 handshake with `id`.
    pub fn sync(&mut self, id: i64) {
        let hello = self.client.begin_sync(id, SyncMode::Delimited);
        self.send(&hello);
        loop {
            if let Some(Event::Synced) = self.next_event_raw() {
                return;
            }
        }
    }

    /// The handshake with `id`, given up after `timeout` without an
    /// answer: whether it completed.
    pub fn try_sync(&mut self, id: i64, timeout: Duration) -> bool {
        let hello = self.client.begin_sync(id, SyncMode::Delimited);
        self.send(&hello);
        let deadline = Instant::now() + timeout;
        loop {
            if self.pending.is_empty() {
                let read = read_until(&mut self.stream, deadline, &mut self.pending);
                self.stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("set timeout");
                match read {
                    None => return false,
                    Some(0) => panic!("agent closed the connection"),
                    Some(_) => continue,
                }
            }
            if let Some(Event::Synced) = self.sync_step() {
                return true;
            }
        }
    }

    /// Send a request and wait for its answer.
    pub fn call(&mut self, execute: &str, arguments: Option<&str>) -> Answer {
        let mut request = Vec::new();
        self.client
            .write_request(&mut request, execute, arguments.map(str::as_bytes))
            .expect("write");
        self.send(&request);
        self.answer()
    }

    /// Send a request as raw bytes and wait for its answer.
    pub fn call_raw(&mut self, request: &[u8]) -> Answer {
        self.send(request);
        self.answer()
    }

    /// Wait for the next response.
    pub fn answer(&mut self) -> Answer {
        loop {
            if let Some(answer) = self.next_answer() {
                return answer;
            }
        }
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 65536];
        let n = self
            .stream
            .read(&mut buf)
            .expect("read from agent (timed out?)");
        assert!(n > 0, "agent closed the connection");
        self.pending.extend_from_slice(&buf[..n]);
    }

    fn next_event_raw(&mut self) -> Option<Event<'static>> {
        if self.pending.is_empty() {
            self.fill();
        }
        self.sync_step()
    }

    /// Feed what has been read to the handshake: `Synced` once it is
    /// done.
    fn sync_step(&mut self) -> Option<Event<'static>> {
        let (used, event) = self.client.feed(&self.pending);
        let synced = matches!(event, Some(Event::Synced));
        let other = event.is_some() && !synced;
        self.pending.drain(..used);
        assert!(!other, "unexpected agent output while syncing");
        synced.then_some(Event::Synced)
    }

    fn next_answer(&mut self) -> Option<Answer> {
        if self.pending.is_empty() {
            self.fill();
        }
        let (used, event) = self.client.feed(&self.pending);
        let answer = match event {
            None => None,
            Some(Event::Response(r)) => {
                let id = r.id.map(|v| String::from_utf8_lossy(v.text()).into_owned());
                Some(match r.outcome {
                    Outcome::Return(v) => (Ok(String::from_utf8_lossy(v.text()).into_owned()), id),
                    Outcome::Error { class, desc } => {
                        (Err((class.chars().collect(), desc.chars().collect())), id)
                    }
                })
            }
            Some(Event::Synced) => None,
            Some(Event::Invalid(e)) => panic!("invalid agent output: {e}"),
        };
        self.pending.drain(..used);
        answer
    }

    /// Read whatever arrives within `wait` (for raw-byte assertions).
    pub fn read_for(&mut self, wait: Duration) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.pending);
        self.stream
            .set_read_timeout(Some(wait))
            .expect("set timeout");
        let mut buf = [0u8; 65536];
        while let Ok(n) = self.stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        out
    }
}
/// `len` pseudo-random bytes (xorshift64 from `seed`): file contents for
/// transfer tests and benchmarks.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Standard base64 with padding, as clients send `buf-b64`.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() {
                char::from(ALPHABET[((n >> shift) & 63) as usize])
            } else {
                '='
            });
        }
    }
    out
}

pub mod baremetal;
pub mod conformance;
pub mod debian_guest;
pub mod libvirt;
pub mod linux_guest;
pub mod qmp;

/// Debian's qemu-ga (package `qemu-guest-agent`), the reference peer.
pub fn qemu_ga_bin() -> PathBuf {
    ["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("qemu-ga is not installed: run `bash scripts/e2e-setup.sh` (Debian package qemu-guest-agent)")
}

/// An agent (ours or qemu-ga) started as `child`, listening on `socket`,
/// spoken to one request line and one response line at a time (no
/// handshake, no 0xFF); killed on drop (README difference 10).
pub struct LinePeer {
    child: std::process::Child,
    reader: std::io::BufReader<UnixStream>,
    writer: UnixStream,
}

impl LinePeer {
    /// Wait at most 10 s for `child` (which runs `bin`) to listen on
    /// `socket`, then connect; each answer is awaited at most `read_timeout`.
    pub fn connect(
        child: std::process::Child,
        socket: &Path,
        bin: &Path,
        read_timeout: Duration,
    ) -> LinePeer {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let stream = loop {
            if let Ok(s) = UnixStream::connect(socket) {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not listen",
                bin.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        LinePeer {
            child,
            reader: std::io::BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// One request, its response line without the newline.
    pub fn call(&mut self, request: &str) -> String {
        use std::io::{BufRead, Write};
        self.writer.write_all(request.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("response");
        assert!(line.ends_with('\n'), "no response to {request}");
        line.pop();
        line
    }
}

impl Drop for LinePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
