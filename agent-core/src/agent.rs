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

use crate::dispatch::{self, Commands, Info, Policy};
use crate::framer::{Frame, Framer};
use crate::response::{write_error, ErrorClass};

/// Bytes read per [`Agent::serve`] iteration.
pub const SERVE_CHUNK: usize = 512;

/// A guest agent: feed it bytes, it writes responses.
///
/// `B` is the request buffer (its size is the largest request accepted),
/// `C` the command table. Memory use is `B` plus the size of this struct;
/// nothing is allocated.
pub struct Agent<'p, B, C> {
    framer: Framer<B>,
    commands: C,
    policy: Policy<'p>,
    version: &'p str,
}

impl<'p, B: AsRef<[u8]> + AsMut<[u8]>, C: Commands> Agent<'p, B, C> {
    /// An agent that frames requests in `buf` and runs `commands` under
    /// `policy`. Its `guest-info` version is this crate's version until
    /// [`with_version`](Self::with_version) says otherwise.
    pub fn new(buf: B, commands: C, policy: Policy<'p>) -> Self {
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

    /// The policy.
    pub fn policy_mut(&mut self) -> &mut Policy<'p> {
        &mut self.policy
    }

    /// Drop any partial request and error recovery: call it when the peer
    /// is known to have gone (a new connection on a socket transport, the
    /// host side of a virtio port closing).
    pub fn reset(&mut self) {
        self.framer.reset();
        if let Some(spill) = self.commands.spill() {
            spill.discard();
        }
    }

    /// Whether no partial request is pending.
    pub fn is_idle(&self) -> bool {
        self.framer.is_idle()
    }

    /// Consume `input`: every request completed by it is dispatched and its
    /// response (or protocol error) written to `out` before the next is
    /// read. Returns the bytes consumed, always all of `input`.
    ///
    /// On a write error the request being answered has been consumed and
    /// the rest of `input` has not; the peer is usually gone, so
    /// [`reset`](Self::reset) before serving the next one.
    pub fn feed<W: Write + ?Sized>(
        &mut self,
        input: &[u8],
        out: &mut W,
    ) -> Result<usize, W::Error> {
        let Agent {
            framer,
            commands,
            policy,
            version,
        } = self;
        let mut used = 0usize;
        while let Some(rest) = input.get(used..).filter(|r| !r.is_empty()) {
            let (n, frame) = framer.push_spilling(rest, commands.spill());
            used = used.saturating_add(n);
            match frame {
                Some(Frame::Value(bytes)) => {
                    dispatch::dispatch(bytes, commands, policy, Info { version }, out)?;
                    out.flush()?;
                }
                Some(Frame::Spilled { value, at }) => {
                    let info = Info { version };
                    let result =
                        dispatch::dispatch_spilled(value, Some(at), commands, policy, info, out);
                    if let Some(spill) = commands.spill() {
                        spill.discard();
                    }
                    result?;
                    out.flush()?;
                }
                Some(Frame::Error(error)) => {
                    #[cfg(feature = "defmt")]
                    defmt::warn!("protocol error (framer): {}", error);
                    write_error(out, None, ErrorClass::GenericError, &error)?;
                    out.flush()?;
                }
                None => {}
            }
        }
        Ok(used)
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
        let mut agent = Agent::new([0u8; 16], CoreCommands::new(), Policy::new());
        let mut out = Vec::new();
        let input = b"{\"execute\":\"guest-ping\"} \xff [1] {\"a\"";
        assert_eq!(agent.feed(input, &mut out).unwrap(), input.len());
        assert_eq!(agent.commands().list().count(), 4);
        agent.policy_mut().set_frozen(true);
        let _ = agent.commands_mut();
    }
}

#[cfg(test)]
mod size {
    use super::*;
    use crate::CoreCommands;

    /// The agent's own state, the caller's buffer excluded (a reference
    /// here), is small: it can live on a bare-metal stack.
    #[test]
    fn agent_state_is_small() {
        let size = core::mem::size_of::<Agent<'static, &'static mut [u8], CoreCommands>>();
        assert!(size <= 256, "Agent is {size} bytes");
    }
}
