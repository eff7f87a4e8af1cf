//! The agent: framer, command table and policy in one sans-IO state
//! machine, and a run loop over `embedded-io`.
//!
//! ```
//! use agent_core::{Agent, CoreCommands, Policy};
//!
//! let mut agent = Agent::new([0u8; 256], CoreCommands::new(), Policy::new());
//! let mut out = Vec::new();
//! // Requests may arrive in any pieces.
//! agent.feed(br#"{"execute": "guest-sy"#, &mut out).unwrap();
//! agent.feed(br#"nc", "arguments": {"id": 1}, "id": "a"}"#, &mut out).unwrap();
//! assert_eq!(out, b"{\"return\": 1, \"id\": \"a\"}\n");
//! ```

use embedded_io::{Read, Write};

use crate::dispatch::{self, Policy};
use crate::framer::{Frame, Framer};
use crate::response::{write_error, ErrorClass};
use crate::table::Commands;
use crate::writer::{Output, Sink, SinkError};

/// Bytes read per [`Agent::serve`] iteration.
pub const SERVE_CHUNK: usize = 512;

/// The default size of the parser's table of `arguments` members.
pub const DEFAULT_ARGS: usize = 8;

/// A guest agent: feed it bytes, it writes responses.
///
/// `B` is the request buffer (its size is the largest request accepted),
/// `C` the command table, `ARGS` how many members of a request's
/// `arguments` the parser records (more are served too, by walking the
/// request; qemu-ga's commands take at most five). Memory use is `B` plus
/// the size of this struct; nothing is allocated.
pub struct Agent<'p, B, C, const ARGS: usize = DEFAULT_ARGS> {
    framer: Framer<B, ARGS>,
    commands: C,
    policy: Policy<'p>,
    version: &'p str,
}

impl<'p, B: AsRef<[u8]> + AsMut<[u8]>, C: Commands> Agent<'p, B, C> {
    /// An agent that frames requests in `buf` and runs `commands` under
    /// `policy`. Its `guest-info` version is this crate's version until
    /// [`with_version`](Self::with_version) says otherwise.
    pub fn new(buf: B, commands: C, policy: Policy<'p>) -> Self {
        Agent::sized(buf, commands, policy)
    }
}

impl<'p, B: AsRef<[u8]> + AsMut<[u8]>, C: Commands, const ARGS: usize> Agent<'p, B, C, ARGS> {
    /// [`new`](Agent::new), with a table of `ARGS` argument members
    /// (`let agent: Agent<_, _, 16> = Agent::sized(...)`).
    pub fn sized(buf: B, commands: C, policy: Policy<'p>) -> Self {
        Agent {
            framer: Framer::new(buf),
            commands,
            policy,
            version: crate::VERSION,
        }
    }

    /// Report `version` in `guest-info`.
    pub fn with_version(mut self, version: &'p str) -> Self {
        self.version = version;
        self
    }

    /// The command table.
    pub fn commands(&self) -> &C {
        &self.commands
    }

    /// The command table, mutably.
    pub fn commands_mut(&mut self) -> &mut C {
        &mut self.commands
    }

    /// The command table, the agent given up.
    pub fn into_commands(self) -> C {
        self.commands
    }

    /// The policy.
    pub fn policy_mut(&mut self) -> &mut Policy<'p> {
        &mut self.policy
    }

    /// Drop any partial request, any error recovery under way, and any
    /// long string spilled for it: the next byte starts afresh.
    ///
    /// **Call it whenever the peer is known to have changed**: a new
    /// connection on a socket transport; the host side of a virtio port
    /// closing (and so before the next host opens it); a write error from
    /// [`feed`](Self::feed). A half-sent request of a client that went away
    /// would otherwise poison the next client's first request, which then
    /// gets parse errors until it sends a reset byte (0xFF), and clients
    /// that never send one (libvirt) stay wedged. Transports without
    /// connection events (a serial line) cannot know, and keep the input,
    /// as qemu-ga does.
    pub fn reset(&mut self) {
        self.framer.reset(self.commands.spill());
    }

    /// Whether no partial request is pending.
    pub fn is_idle(&self) -> bool {
        self.framer.is_idle()
    }

    /// Consume `input`: every request completed by it is dispatched and its
    /// response (or protocol error) written to `out`, which is flushed
    /// after each; the rest stays pending for the next call. All of `input`
    /// is taken, however it is cut: the same bytes in any pieces give the
    /// same output.
    ///
    /// A write error stops it (the rest of `input` is not read): the peer
    /// is usually gone, so [`reset`](Self::reset) before serving the next.
    #[inline(never)]
    pub fn feed<W: Write + ?Sized>(&mut self, input: &[u8], out: &mut W) -> Result<(), W::Error> {
        let mut sink = Sink::new(out);
        let result = self.feed_output(input, &mut sink);
        sink.result(result)
    }

    #[inline(never)]
    fn feed_output(&mut self, input: &[u8], out: &mut dyn Output) -> Result<(), SinkError> {
        let Agent {
            framer,
            commands,
            policy,
            version,
        } = self;
        let mut used = 0usize;
        while let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
            let (n, frame) = framer.push(rest, commands.spill());
            used = used.saturating_add(n);
            let result = match frame {
                Some(Frame::Valid(frame)) => {
                    dispatch::answer(frame, commands, policy, version, out)
                }
                Some(Frame::Invalid(error)) => {
                    dispatch::log_protocol_error("parse", &error);
                    write_error(out, None, ErrorClass::GenericError, &error)
                }
                Some(Frame::Error(error)) => {
                    dispatch::log_protocol_error("framer", &error);
                    write_error(out, None, ErrorClass::GenericError, &error)
                }
                None => continue,
            };
            framer.done(commands.spill());
            result?;
            out.flush()?;
        }
        Ok(())
    }

    /// Serve `port` until it reports end of input (a read of 0 bytes):
    /// read, feed, repeat. Returns the port's first error.
    pub fn serve<P: Read + Write>(&mut self, port: &mut P) -> Result<(), P::Error> {
        let mut chunk = [0u8; SERVE_CHUNK];
        loop {
            let n = port.read(&mut chunk)?;
            let Some(input) = chunk.get(..n).filter(|i| !i.is_empty()) else {
                return Ok(());
            };
            self.feed(input, port)?;
        }
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
    use crate::CoreCommands;
    use std::string::String;
    use std::vec::Vec;

    /// A port that reads from a script and fails writes after `budget` bytes.
    struct Port {
        input: Vec<u8>,
        read_at: usize,
        chunk: usize,
        output: Vec<u8>,
        budget: usize,
    }

    impl embedded_io::ErrorType for Port {
        type Error = embedded_io::ErrorKind;
    }

    impl Read for Port {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf
                .len()
                .min(self.chunk)
                .min(self.input.len() - self.read_at);
            buf[..n].copy_from_slice(&self.input[self.read_at..self.read_at + n]);
            self.read_at += n;
            Ok(n)
        }
    }

    impl Write for Port {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            if self.output.len() + buf.len() > self.budget {
                return Err(embedded_io::ErrorKind::BrokenPipe);
            }
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn port(input: &[u8], chunk: usize, budget: usize) -> Port {
        Port {
            input: input.to_vec(),
            read_at: 0,
            chunk,
            output: Vec::new(),
            budget,
        }
    }

    #[test]
    fn serve_until_end_of_input() {
        let mut agent =
            Agent::new([0u8; 128], CoreCommands::new(), Policy::new()).with_version("1.2.3");
        let mut p = port(
            b"{\"execute\":\"guest-ping\"} {\"execute\":\"guest-sync\",\"arguments\":{\"id\":5}}",
            3,
            usize::MAX,
        );
        agent.serve(&mut p).unwrap();
        assert_eq!(p.output, b"{\"return\": {}}\n{\"return\": 5}\n");
        // A half-sent request is still pending after the peer left...
        let mut p = port(b"{\"execute\":", 64, usize::MAX);
        agent.serve(&mut p).unwrap();
        assert!(!agent.is_idle());
        // ... until the adapter resets the agent.
        agent.reset();
        assert!(agent.is_idle());
    }

    #[test]
    fn write_errors_reach_the_caller_and_reset_recovers() {
        let mut agent = Agent::new([0u8; 128], CoreCommands::new(), Policy::new());
        let mut p = port(
            b"{\"execute\":\"guest-ping\"}{\"execute\":\"guest-ping\",\"id\":1}",
            512,
            4,
        );
        assert_eq!(agent.serve(&mut p), Err(embedded_io::ErrorKind::BrokenPipe));
        agent.reset();
        let mut out = Vec::new();
        agent
            .feed(b"{\"execute\":\"guest-ping\"}", &mut out)
            .unwrap();
        assert_eq!(out, b"{\"return\": {}}\n");
    }

    #[test]
    fn feed_consumes_everything() {
        let mut agent = Agent::new([0u8; 64], CoreCommands::new(), Policy::new());
        let mut out = Vec::new();
        let input = b"{\"execute\":\"guest-ping\"} \xff [1] {\"a\"";
        agent.feed(input, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"return\": {}}\n\
             {\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n\
             {\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}\n"
        );
        // `{"a"` is pending.
        assert!(!agent.is_idle());
        let _ = agent.commands_mut();
    }
}

#[cfg(test)]
mod size {
    use super::*;
    use crate::CoreCommands;

    /// The agent's own state, the caller's buffer excluded (a reference
    /// here), is small: it can live on a bare-metal stack. Printed, and
    /// held to a bound so that it cannot grow unnoticed.
    #[test]
    fn agent_state_is_small() {
        let size = core::mem::size_of::<Agent<'static, &'static mut [u8], CoreCommands>>();
        std::println!("size_of::<Agent>() = {size} bytes (buffer excluded, ARGS = 8)");
        assert!(size <= 1536, "Agent is {size} bytes");
    }
}
