//! `guest-agent client`: the host side of QGA, for people who would
//! otherwise hand-write `socat` scripts. Connects to the host end of the
//! channel (QEMU's chardev socket, or a vsock), performs the §2.6/§2.7
//! handshake with a random id, sends one command and prints its result.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agent_core::client::{Client, Event, Outcome, SyncMode};
use agent_core::json::{Value, ValueKind};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{connect, socket_with, AddressFamily, SocketFlags, SocketType};

use crate::cli::{ClientArgs, ClientTarget};
use crate::vsock::VsockAddr;

/// Commands that answer nothing on success.
const SILENT_ON_SUCCESS: [&str; 4] = [
    "guest-shutdown",
    "guest-suspend-disk",
    "guest-suspend-ram",
    "guest-suspend-hybrid",
];

/// A connection to the agent's channel.
enum Stream {
    Unix(UnixStream),
    Vsock(File),
}

impl Stream {
    fn connect(target: &ClientTarget) -> io::Result<Stream> {
        match target {
            ClientTarget::Socket(path) => {
                UnixStream::connect(path).map(Stream::Unix).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot connect to {}: {e}", path.display()),
                    )
                })
            }
            ClientTarget::Vsock { cid, port } => {
                let fd = socket_with(
                    AddressFamily::VSOCK,
                    SocketType::STREAM,
                    SocketFlags::CLOEXEC,
                    None,
                )?;
                connect(&fd, &VsockAddr::new(*cid, *port)).map_err(|e| {
                    let e = io::Error::from(e);
                    io::Error::new(
                        e.kind(),
                        format!("cannot connect to vsock {cid}:{port}: {e}"),
                    )
                })?;
                Ok(Stream::Vsock(File::from(fd)))
            }
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Vsock(f) => f.as_fd(),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.write_all(bytes),
            Stream::Vsock(f) => f.write_all(bytes),
        }
    }

    /// Read what is there, waiting until `deadline` at most. `Ok(None)` on
    /// time-out.
    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        let left = deadline.saturating_duration_since(Instant::now());
        // A deadline too far to express waits without a time-out.
        let timeout = Timespec::try_from(left).ok();
        let mut fds = [PollFd::from_borrowed_fd(self.fd(), PollFlags::IN)];
        if poll(&mut fds, timeout.as_ref())? == 0 {
            return Ok(None);
        }
        let n = match self {
            Stream::Unix(s) => s.read(buf)?,
            Stream::Vsock(f) => f.read(buf)?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the channel closed",
            ));
        }
        Ok(Some(n))
    }
}

/// A fresh id for the handshake.
fn random_id() -> i64 {
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes =
            (now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    (u64::from_le_bytes(bytes) >> 1) as i64
}

/// What the client ends with.
enum Failure {
    /// The agent answered with an error.
    Agent(String, String),
    /// No usable answer.
    Channel(String),
}

/// Run the client; the exit status is 0 on success, 1 when the agent
/// answered with an error, 2 when the channel failed or timed out.
pub fn run(args: &ClientArgs) -> ExitCode {
    match talk(args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Agent(class, desc)) => {
            eprintln!("guest-agent client: {class}: {desc}");
            ExitCode::from(1)
        }
        Err(Failure::Channel(message)) => {
            eprintln!("guest-agent client: {message}");
            ExitCode::from(2)
        }
    }
}

fn talk(args: &ClientArgs) -> Result<String, Failure> {
    let io = |e: io::Error| Failure::Channel(e.to_string());
    let timeout = Duration::from_millis(args.timeout_ms);
    let mut stream = Stream::connect(&args.target).map_err(io)?;
    let mut client = Client::new(vec![0u8; 64 << 20]);
    let mode = if args.no_reset {
        SyncMode::Plain
    } else {
        SyncMode::Delimited
    };
    let hello = client.begin_sync(random_id(), mode);
    stream.send(&hello).map_err(io)?;
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    // The handshake.
    let deadline = Instant::now() + timeout;
    'sync: loop {
        while !pending.is_empty() {
            let (used, event) = client.feed(&pending);
            let synced = matches!(event, Some(Event::Synced));
            pending.drain(..used);
            if synced {
                break 'sync;
            }
        }
        match stream.recv(&mut buf, deadline).map_err(io)? {
            Some(n) => pending.extend_from_slice(&buf[..n]),
            None => {
                return Err(Failure::Channel(format!(
                    "no answer to the sync handshake within {:.1} s",
                    timeout.as_secs_f64()
                )))
            }
        }
    }
    // The command.
    let mut request = Vec::new();
    let name = if args.command.trim_start().starts_with('{') {
        request.extend_from_slice(args.command.as_bytes());
        request.push(b'\n');
        execute_of(args.command.as_bytes())
    } else {
        client
            .write_request(
                &mut request,
                &args.command,
                args.arguments.as_deref().map(str::as_bytes),
            )
            .map_err(|e| Failure::Channel(format!("{e:?}")))?;
        Some(args.command.clone())
    };
    // Commands without success response answer nothing when they work;
    // shutdown also closes the channel when the guest goes down.
    let silent = name.as_deref().filter(|n| SILENT_ON_SUCCESS.contains(n));
    stream.send(&request).map_err(io)?;
    let deadline = Instant::now() + timeout;
    loop {
        while !pending.is_empty() {
            let (used, event) = client.feed(&pending);
            let result = match event {
                None => None,
                Some(Event::Synced) => None,
                Some(Event::Invalid(e)) => Some(Err(Failure::Channel(e.to_string()))),
                Some(Event::Response(response)) => Some(match response.outcome {
                    Outcome::Return(value) => Ok(pretty(value.text())),
                    Outcome::Error { class, desc } => Err(Failure::Agent(
                        class.chars().collect(),
                        desc.chars().collect(),
                    )),
                }),
            };
            pending.drain(..used);
            if let Some(result) = result {
                return result;
            }
        }
        match (stream.recv(&mut buf, deadline), silent) {
            (Ok(Some(n)), _) => pending.extend_from_slice(&buf[..n]),
            (Ok(None), Some(name)) => {
                return Ok(format!("(no response: {name} sends none on success)"))
            }
            (Err(e), Some(name)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(format!(
                    "(no response: {name} sends none on success; the channel closed)"
                ))
            }
            (Ok(None), None) => {
                return Err(Failure::Channel(format!(
                    "no answer within {:.1} s",
                    timeout.as_secs_f64()
                )))
            }
            (Err(e), _) => return Err(io(e)),
        }
    }
}

/// The `execute` member of a raw JSON request, if it has one.
fn execute_of(request: &[u8]) -> Option<String> {
    let value = Value::parse(request).ok()?;
    Some(value.get("execute")?.as_str()?.chars().collect())
}

/// Pretty-print a JSON value, two spaces an indent, members in the order
/// the agent sent them (as is if it is not JSON, e.g. `inf`).
fn pretty(text: &[u8]) -> String {
    match Value::parse(text) {
        Ok(value) => {
            let mut out = String::new();
            write_pretty(&mut out, &value, 0);
            out
        }
        Err(_) => String::from_utf8_lossy(text).into_owned(),
    }
}

fn write_pretty(out: &mut String, value: &Value<'_>, depth: usize) {
    let indent = |out: &mut String, depth: usize| out.extend(std::iter::repeat_n("  ", depth));
    match value.kind() {
        ValueKind::Object if value.members().next().is_some() => {
            out.push('{');
            for (i, (key, member)) in value.members().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_string(out, key.chars());
                out.push_str(": ");
                write_pretty(out, &member, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push('}');
        }
        ValueKind::Array if value.elements().next().is_some() => {
            out.push('[');
            for (i, element) in value.elements().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                indent(out, depth + 1);
                write_pretty(out, &element, depth + 1);
            }
            out.push('\n');
            indent(out, depth);
            out.push(']');
        }
        ValueKind::Object => out.push_str("{}"),
        ValueKind::Array => out.push_str("[]"),
        ValueKind::String => match value.as_str() {
            Some(s) => write_string(out, s.chars()),
            None => out.push_str("\"\""),
        },
        // Numbers and keywords as the agent wrote them.
        _ => out.push_str(&String::from_utf8_lossy(value.text())),
    }
}

/// A JSON string for a terminal: escapes where JSON needs them, any
/// other character as it is.
fn write_string(out: &mut String, chars: impl Iterator<Item = char>) {
    out.push('"');
    for ch in chars {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_of_raw_requests() {
        assert_eq!(
            execute_of(br#"{"execute": "guest-shutdown", "arguments": {"mode": "halt"}}"#)
                .as_deref(),
            Some("guest-shutdown")
        );
        assert_eq!(
            execute_of(br#"{'execute': 'guest-suspend-ram'}"#).as_deref(),
            Some("guest-suspend-ram")
        );
        assert_eq!(execute_of(br#"{"execute": 1}"#), None);
        assert_eq!(execute_of(b"{"), None);
    }

    #[test]
    fn pretty_prints_json_and_keeps_the_rest() {
        assert_eq!(pretty(br#"{"a": [1]}"#), "{\n  \"a\": [\n    1\n  ]\n}");
        assert_eq!(pretty(b"inf"), "inf");
        assert_eq!(
            pretty(br#"{"z": {}, "a": ["x\u00e9\n\"", 1.5e3, null, []]}"#),
            "{\n  \"z\": {},\n  \"a\": [\n    \"x\u{e9}\\n\\\"\",\n    1.5e3,\n    null,\n    []\n  ]\n}"
        );
    }
}
