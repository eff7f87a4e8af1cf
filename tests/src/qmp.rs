//! QEMU's sockets as the harnesses read them: lines with a deadline on
//! every read, and QMP (the machine protocol: commands, events) on top.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::{connect_until, read_until};

/// Lines from a QEMU socket, each read awaited until a deadline.
pub(crate) struct Lines {
    stream: UnixStream,
    pending: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(stream: UnixStream) -> Lines {
        Lines {
            stream,
            pending: Vec::new(),
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("write to a QEMU socket");
    }

    /// The next line without its newline; `None` at `deadline` or when
    /// QEMU closes the socket (it exited).
    pub(crate) fn next(&mut self, deadline: Instant) -> Option<Vec<u8>> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                return Some(line);
            }
            // 0: QEMU exited (after a reset, without closing first).
            match read_until(&mut self.stream, deadline, &mut self.pending)? {
                0 => return None,
                _ => continue,
            }
        }
    }
}

/// A QMP connection (capabilities negotiated); events are kept until
/// waited for.
pub struct Qmp {
    lines: Lines,
    events: Vec<Value>,
}

impl Qmp {
    /// Connect to `socket` (retrying until `deadline`), read the greeting
    /// and leave capabilities negotiation.
    pub fn connect(socket: &Path, deadline: Instant) -> Qmp {
        let stream = connect_until(socket, deadline, "QMP");
        let mut qmp = Qmp {
            lines: Lines::new(stream),
            events: Vec::new(),
        };
        let greeting = qmp.next_message(deadline).expect("QMP greeting");
        assert!(greeting.get("QMP").is_some(), "not QMP: {greeting}");
        qmp.execute("qmp_capabilities", None, deadline)
            .expect("qmp_capabilities");
        qmp
    }

    fn next_message(&mut self, deadline: Instant) -> Option<Value> {
        let line = self.lines.next(deadline)?;
        Some(serde_json::from_slice(&line).expect("QMP sends JSON"))
    }

    /// Run `execute`: its `return` value, or QMP's error object (events
    /// that come meanwhile are kept).
    pub fn execute(
        &mut self,
        execute: &str,
        arguments: Option<Value>,
        deadline: Instant,
    ) -> Result<Value, Value> {
        let mut request = serde_json::json!({ "execute": execute });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = serde_json::to_vec(&request).expect("JSON");
        line.push(b'\n');
        self.lines.send(&line);
        loop {
            let message = self
                .next_message(deadline)
                .unwrap_or_else(|| panic!("no QMP answer to {execute}"));
            if let Some(ret) = message.get("return") {
                return Ok(ret.clone());
            }
            if let Some(error) = message.get("error") {
                return Err(error.clone());
            }
            self.events.push(message);
        }
    }

    /// The first event named `name`, waiting until `deadline`; `None` if
    /// it does not come (or QEMU exits first).
    pub fn wait_event(&mut self, name: &str, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return Some(self.events.remove(i));
            }
            let message = self.next_message(deadline)?;
            self.events.push(message);
        }
    }
}
