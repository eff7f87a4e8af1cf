//! The host side of QGA synchronisation (PROTOCOL.md §4; QMP spec
//! "Forcing the JSON parser into known-good state" and "QGA
//! Synchronization"), as a sans-IO state machine.
//!
//! 1. [`Client::begin_sync`] gives the bytes to send: a 0xFF reset byte,
//!    which makes the agent drop any half-read input from an earlier
//!    client, then `guest-sync-delimited` with the caller's fresh id.
//! 2. [`Client::feed`] discards everything up to the agent's 0xFF sentinel
//!    (stale replies, the parse error the reset byte provokes), then reads
//!    one value; only `{"return": <id>}` completes the handshake — any other
//!    value sends the client back to waiting for a sentinel.
//! 3. Once synced, each response is returned as an [`Event::Response`].
//!
//! Time-outs are the caller's: if no [`Event::Synced`] arrives in time,
//! call `begin_sync` again with a new id. [`SyncMode::Plain`] uses
//! `guest-sync` (no sentinel) for agents that lack the delimited variant;
//! it skips every value until the matching return.
//!
//! ```
//! use agent_core::client::{Client, Event, Outcome, SyncMode};
//!
//! let mut client = Client::new([0u8; 256]);
//! let hello = client.begin_sync(0x1234, SyncMode::Delimited);
//! assert!(hello.starts_with(b"\xff{\"execute\": \"guest-sync-delimited\""));
//!
//! // A stale reply, the reset byte's parse error, then the sentinel and ours.
//! let mut agent_output: &[u8] = b"{\"return\": {}}\n{\"error\": {\"class\": \"GenericError\", \
//!     \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n\xff{\"return\": 4660}\n{\"return\": {}}\n";
//! let mut events = Vec::new();
//! while !agent_output.is_empty() {
//!     let (used, event) = client.feed(agent_output);
//!     match event {
//!         Some(Event::Synced) => events.push("synced".to_string()),
//!         Some(Event::Response(r)) => events.push(match r.outcome {
//!             Outcome::Return(v) => String::from_utf8_lossy(v.text()).into_owned(),
//!             Outcome::Error { .. } => "error".into(),
//!         }),
//!         Some(Event::Invalid(e)) => events.push(e.to_string()),
//!         None => {}
//!     }
//!     agent_output = &agent_output[used..];
//! }
//! assert_eq!(events, ["synced", "{}"]);
//! ```

use core::fmt;

use embedded_io::Write;

use crate::framer::{Frame, FrameError, Framer};
use crate::json::{JsonStr, Value, ValueKind};
use crate::parser::ParseError;
use crate::writer::{escape_str, JsonWriter, Output, Sink, SinkError};

/// Which sync command the handshake uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SyncMode {
    /// Reset byte + `guest-sync-delimited`, skip to the 0xFF sentinel.
    Delimited,
    /// `guest-sync` without reset byte or sentinel: skip values until the
    /// matching return (for agents that misbehave on either).
    Plain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum State {
    /// No handshake asked for: every value is a response.
    Unsynced,
    /// Discarding input until the sentinel.
    AwaitSentinel,
    /// Reading values until the sync reply.
    AwaitReply,
    /// Handshake done.
    Synced,
}

/// The agent output a client could not use. Responses after the handshake
/// that are not valid JSON, or not responses, are reported so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientError<'a> {
    /// The output did not lex or exceeded a limit.
    Frame(FrameError<'a>),
    /// The output did not parse.
    Parse(ParseError<'a>),
    /// A JSON value that is neither `{"return": ...}` nor `{"error": ...}`.
    NotAResponse,
}

impl fmt::Display for ClientError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Frame(e) => {
                f.write_str("invalid agent output: ")?;
                e.fmt(f)
            }
            ClientError::Parse(e) => {
                f.write_str("invalid agent output: ")?;
                e.fmt(f)
            }
            ClientError::NotAResponse => f.write_str("agent output is not a response"),
        }
    }
}

/// What one [`Client::feed`] produced.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<'a> {
    /// The handshake completed: the agent's parser is clean and its output
    /// channel holds nothing older than what comes next.
    Synced,
    /// A response.
    Response(Response<'a>),
    /// Unusable output after the handshake.
    Invalid(ClientError<'a>),
}

/// A response from the agent.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Response<'a> {
    /// The echoed `id`, if any.
    pub id: Option<Value<'a>>,
    /// Success or error.
    pub outcome: Outcome<'a>,
}

/// A response's payload.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome<'a> {
    /// `{"return": value}`
    Return(Value<'a>),
    /// `{"error": {"class": ..., "desc": ...}}`
    Error {
        /// The error class.
        class: JsonStr<'a>,
        /// The description.
        desc: JsonStr<'a>,
    },
}

impl<'a> Response<'a> {
    /// Read a response from a parsed value.
    pub fn from_value(value: Value<'a>) -> Option<Response<'a>> {
        if value.kind() != ValueKind::Object {
            return None;
        }
        let id = value.get("id");
        if let Some(ret) = value.get("return") {
            return Some(Response {
                id,
                outcome: Outcome::Return(ret),
            });
        }
        let error = value.get("error")?;
        let class = error.get("class")?.as_str()?;
        let desc = error.get("desc")?.as_str()?;
        Some(Response {
            id,
            outcome: Outcome::Error { class, desc },
        })
    }
}

/// The bytes that start a handshake (reset byte and sync request).
pub type SyncRequest = heapless::Vec<u8, 96>;

/// The host side of the protocol. `B` buffers one response; size it for
/// the largest response expected.
#[derive(Debug)]
pub struct Client<B> {
    framer: Framer<B, 0>,
    state: State,
    mode: SyncMode,
    id: i64,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Client<B> {
    /// A client that buffers responses in `buf`.
    pub fn new(buf: B) -> Self {
        Client {
            framer: Framer::new(buf),
            state: State::Unsynced,
            mode: SyncMode::Delimited,
            id: 0,
        }
    }

    /// Whether the handshake has completed.
    pub fn is_synced(&self) -> bool {
        self.state == State::Synced
    }

    /// Start (or restart) the handshake with a fresh `id`; send the
    /// returned bytes to the agent.
    pub fn begin_sync(&mut self, id: i64, mode: SyncMode) -> SyncRequest {
        self.id = id;
        self.mode = mode;
        self.framer.reset(None);
        self.state = match mode {
            SyncMode::Delimited => State::AwaitSentinel,
            SyncMode::Plain => State::AwaitReply,
        };
        let mut out = SyncRequest::new();
        if mode == SyncMode::Delimited {
            let _ = out.push(crate::SENTINEL);
        }
        let command = match mode {
            SyncMode::Delimited => "guest-sync-delimited",
            SyncMode::Plain => "guest-sync",
        };
        let mut sink = VecSink(&mut out);
        // 96 bytes hold the longest request (id = i64::MIN).
        let _ = write_sync(&mut sink, command, id);
        out
    }

    /// Write a request for `execute` with optional raw JSON `arguments`
    /// (an object's text, passed through as is), followed by a newline.
    pub fn write_request<W: Write + ?Sized>(
        &self,
        out: &mut W,
        execute: &str,
        arguments: Option<&[u8]>,
    ) -> Result<(), W::Error> {
        let mut sink = Sink::new(out);
        let result = write_request(&mut sink, execute, arguments);
        sink.result(result)
    }

    /// Consume agent output until something happens or the input is used
    /// up. Returns the bytes consumed and the event, if any.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Event<'_>>) {
        let mut used = 0usize;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            if rest.is_empty() {
                return (used, None);
            }
            match self.state {
                State::AwaitSentinel => match rest.iter().position(|&b| b == crate::SENTINEL) {
                    Some(at) => {
                        used = used.saturating_add(at).saturating_add(1);
                        self.framer.reset(None);
                        self.state = State::AwaitReply;
                    }
                    None => return (input.len(), None),
                },
                State::AwaitReply => {
                    // A sentinel before the reply completes restarts it.
                    let sentinel = if self.mode == SyncMode::Delimited {
                        rest.iter().position(|&b| b == crate::SENTINEL)
                    } else {
                        None
                    };
                    let window = rest.get(..sentinel.unwrap_or(rest.len())).unwrap_or(rest);
                    if window.is_empty() {
                        used = used.saturating_add(1);
                        self.framer.reset(None);
                        continue;
                    }
                    let (n, frame) = self.framer.push(window, None);
                    used = used.saturating_add(n);
                    let matched = match frame {
                        Some(Frame::Valid(frame)) => Some(is_sync_reply(frame.message(), self.id)),
                        Some(Frame::Invalid(_) | Frame::Error(_)) => Some(false),
                        None => None,
                    };
                    match matched {
                        Some(true) => {
                            self.state = State::Synced;
                            return (used, Some(Event::Synced));
                        }
                        Some(false) if self.mode == SyncMode::Delimited => {
                            self.state = State::AwaitSentinel
                        }
                        _ => {}
                    }
                }
                State::Unsynced | State::Synced => {
                    let (n, frame) = self.framer.push(rest, None);
                    let used = used.saturating_add(n);
                    let event = match frame {
                        None => return (used, None),
                        Some(Frame::Error(e)) => Event::Invalid(ClientError::Frame(e)),
                        Some(Frame::Invalid(e)) => Event::Invalid(ClientError::Parse(e)),
                        Some(Frame::Valid(frame)) => {
                            match Value::first_unchecked(frame.message())
                                .and_then(Response::from_value)
                            {
                                Some(response) => Event::Response(response),
                                None => Event::Invalid(ClientError::NotAResponse),
                            }
                        }
                    };
                    return (used, Some(event));
                }
            }
        }
    }
}

/// Whether `message`, which the parser accepted, is the reply to the sync
/// request with `id`.
fn is_sync_reply(message: &[u8], id: i64) -> bool {
    Value::first_unchecked(message)
        .and_then(Response::from_value)
        .is_some_and(|r| matches!(r.outcome, Outcome::Return(v) if v.as_i64() == Some(id)))
}

fn write_request(
    out: &mut dyn Output,
    execute: &str,
    arguments: Option<&[u8]>,
) -> Result<(), SinkError> {
    out.put(b"{\"execute\": ")?;
    escape_str(out, execute)?;
    if let Some(arguments) = arguments {
        out.put(b", \"arguments\": ")?;
        out.put(arguments)?;
    }
    out.put(b"}\n")
}

fn write_sync(out: &mut dyn Output, command: &str, id: i64) -> Result<(), SinkError> {
    out.put(b"{\"execute\": ")?;
    escape_str(out, command)?;
    out.put(b", \"arguments\": {\"id\": ")?;
    JsonWriter::new(&mut *out).i64(id)?;
    out.put(b"}}\n")
}

/// `embedded_io::Write` over a `heapless::Vec`, failing when full.
struct VecSink<'v, const N: usize>(&'v mut heapless::Vec<u8, N>);

impl<const N: usize> embedded_io::ErrorType for VecSink<'_, N> {
    type Error = embedded_io::ErrorKind;
}

impl<const N: usize> Write for VecSink<'_, N> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0
            .extend_from_slice(buf)
            .map_err(|_| embedded_io::ErrorKind::OutOfMemory)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used
    )]
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn run<B: AsRef<[u8]> + AsMut<[u8]>>(
        client: &mut Client<B>,
        mut input: &[u8],
    ) -> Vec<std::string::String> {
        let mut events = Vec::new();
        while !input.is_empty() {
            let (n, event) = client.feed(input);
            if let Some(event) = event {
                events.push(match event {
                    Event::Synced => "synced".into(),
                    Event::Response(r) => match r.outcome {
                        Outcome::Return(v) => {
                            std::string::String::from_utf8_lossy(v.text()).into_owned()
                        }
                        Outcome::Error { desc, .. } => desc.chars().collect(),
                    },
                    Event::Invalid(e) => std::format!("invalid: {e}"),
                });
            }
            input = &input[n..];
        }
        events
    }

    #[test]
    fn sync_request_bytes() {
        let mut client = Client::new([0u8; 64]);
        assert_eq!(
            client.begin_sync(i64::MIN, SyncMode::Delimited).as_slice(),
            &b"\xff{\"execute\": \"guest-sync-delimited\", \"arguments\": {\"id\": -9223372036854775808}}\n"[..]
        );
        assert_eq!(
            client.begin_sync(5, SyncMode::Plain).as_slice(),
            &b"{\"execute\": \"guest-sync\", \"arguments\": {\"id\": 5}}\n"[..]
        );
    }

    #[test]
    fn only_the_matching_id_after_a_sentinel_syncs() {
        let mut client = Client::new([0u8; 128]);
        let _ = client.begin_sync(9, SyncMode::Delimited);
        // A stale delimited reply with another id, then ours.
        let out = b"{\"return\": 9}\n\xff{\"return\": 8}\n\xff{\"return\": 9}\n{\"return\": {}}\n";
        assert_eq!(run(&mut client, out), ["synced", "{}"]);
        assert!(client.is_synced());
    }

    #[test]
    fn sentinel_inside_junk_restarts_the_reply() {
        let mut client = Client::new([0u8; 128]);
        let _ = client.begin_sync(3, SyncMode::Delimited);
        assert_eq!(
            run(&mut client, b"\xff{\"ret\xff{\"return\": 3}\n"),
            ["synced"]
        );
    }

    #[test]
    fn plain_mode_skips_values_until_the_match() {
        let mut client = Client::new([0u8; 128]);
        let _ = client.begin_sync(3, SyncMode::Plain);
        assert_eq!(
            run(&mut client, b"{\"return\": {}}\ngarbage\xff{\"return\": 3}\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\n"),
            ["synced", "x"]
        );
    }

    #[test]
    fn invalid_output_after_sync() {
        let mut client = Client::new([0u8; 128]);
        assert_eq!(
            run(&mut client, b"[1] \x01"),
            [
                "invalid: agent output is not a response",
                "invalid: invalid agent output: JSON parse error, stray '\u{1}'"
            ]
        );
        let mut out = Vec::new();
        client
            .write_request(&mut out, "guest-exec", Some(br#"{"path": "/bin/true"}"#))
            .unwrap();
        assert_eq!(
            out,
            b"{\"execute\": \"guest-exec\", \"arguments\": {\"path\": \"/bin/true\"}}\n"
        );
    }
}
