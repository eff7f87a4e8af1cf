//! The commands every agent has: `guest-sync-delimited`, `guest-sync`,
//! `guest-ping` and `guest-info` (PROTOCOL.md §4 and §7).
//!
//! ```
//! use agent_core::{Agent, CoreCommands, Policy};
//!
//! let mut agent = Agent::new([0u8; 128], CoreCommands::new(), Policy::new());
//! let mut out = Vec::new();
//! agent
//!     .feed(b"\xff{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":7}}", &mut out)
//!     .unwrap();
//! assert_eq!(
//!     out,
//!     b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\uFFFD'\"}}\n\
//!       \xff{\"return\": 7}\n"
//! );
//! ```

use embedded_io::Write;

use crate::args::Args;
use crate::dispatch::{CommandInfo, Commands};
use crate::response::{ErrorClass, Replied, Reply};

/// The core command table, in qemu-ga's registration order.
const TABLE: [CommandInfo; 4] = [
    CommandInfo::new("guest-sync-delimited"),
    CommandInfo::new("guest-sync"),
    CommandInfo::new("guest-ping"),
    CommandInfo::new("guest-info"),
];

/// The core commands. `guest-info` is answered by the dispatcher, which
/// sees the whole table; this set only registers it.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CoreCommands {
    _private: (),
}

impl CoreCommands {
    /// The core command set.
    pub const fn new() -> Self {
        CoreCommands { _private: () }
    }
}

impl Commands for CoreCommands {
    fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
        TABLE.into_iter()
    }

    fn call<W: Write + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_>,
        mut reply: Reply<'_, W>,
    ) -> Result<Replied, W::Error> {
        match name {
            "guest-sync" | "guest-sync-delimited" => {
                let id = match args
                    .int("id")
                    .and_then(|id| args.reject_unknown(&["id"]).map(|()| id))
                {
                    Ok(id) => id,
                    Err(e) => return reply.error(e.class(), &e),
                };
                if name == "guest-sync-delimited" {
                    reply.delimit();
                }
                let mut value = reply.ok()?;
                value.i64(id)?;
                value.finish()
            }
            "guest-ping" => match args.reject_unknown(&[]) {
                Ok(()) => reply.ok_empty(),
                Err(e) => reply.error(e.class(), &e),
            },
            _ => reply.error(
                ErrorClass::GenericError,
                &"guest-info is answered by the agent's dispatcher",
            ),
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
    use crate::{Agent, CoreCommands, Policy};
    use std::vec::Vec;

    fn answer(input: &[u8]) -> Vec<u8> {
        let mut agent = Agent::new([0u8; 256], CoreCommands::new(), Policy::new());
        let mut out = Vec::new();
        agent.feed(input, &mut out).unwrap();
        out
    }

    #[test]
    fn sync_echoes_the_whole_int64_range() {
        assert_eq!(
            answer(br#"{"execute":"guest-sync","arguments":{"id":-9223372036854775808}}"#),
            b"{\"return\": -9223372036854775808}\n"
        );
        assert_eq!(
            answer(br#"{"execute":"guest-sync","arguments":{"id":9223372036854775807}}"#),
            b"{\"return\": 9223372036854775807}\n"
        );
        assert_eq!(
            answer(br#"{"execute":"guest-sync","arguments":{"id":-0}}"#),
            b"{\"return\": 0}\n"
        );
    }

    #[test]
    fn sync_argument_errors_have_no_sentinel() {
        for (args, desc) in [
            ("{}", "Parameter 'id' is missing"),
            (
                r#"{"id": 1.0}"#,
                "Invalid parameter type for 'id', expected: integer",
            ),
            (
                r#"{"id": 9223372036854775808}"#,
                "Invalid parameter type for 'id', expected: integer",
            ),
            (
                r#"{"id": "1"}"#,
                "Invalid parameter type for 'id', expected: integer",
            ),
            (r#"{"id": 1, "x": 2}"#, "Parameter 'x' is unexpected"),
        ] {
            let input = std::format!(r#"{{"execute":"guest-sync-delimited","arguments":{args}}}"#);
            let expect = std::format!(
                "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}\n"
            );
            assert_eq!(answer(input.as_bytes()), expect.as_bytes(), "{args}");
        }
    }

    #[test]
    fn each_delimited_reply_gets_one_sentinel() {
        let out = answer(br#"{"execute":"guest-sync-delimited","arguments":{"id":1}}{"execute":"guest-sync-delimited","arguments":{"id":2}}{"execute":"guest-ping"}"#);
        assert_eq!(
            out,
            b"\xff{\"return\": 1}\n\xff{\"return\": 2}\n{\"return\": {}}\n"
        );
    }
}
