//! The commands every agent has: `guest-sync-delimited`, `guest-sync`,
//! `guest-ping` and `guest-info` (PROTOCOL.md §4 and §7), as table
//! entries any table can list, and [`CoreCommands`], a table of just
//! those.
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

use core::convert::Infallible;

use crate::args::Args;
use crate::response::Reply;
use crate::table::{Command, Commands, Outcome};

impl<T: Commands> Command<T> {
    /// `guest-sync-delimited`: the sentinel byte, then `id` echoed.
    pub const fn guest_sync_delimited() -> Self {
        Command::new("guest-sync-delimited", sync_delimited::<T>).allowed_while_frozen()
    }

    /// `guest-sync`: `id` echoed.
    pub const fn guest_sync() -> Self {
        Command::new("guest-sync", sync::<T>).allowed_while_frozen()
    }

    /// `guest-ping`: `{}`.
    pub const fn guest_ping() -> Self {
        Command::new("guest-ping", ping::<T>).allowed_while_frozen()
    }
}

/// The four core commands, in qemu-ga's registration order.
pub const fn core_commands<T: Commands>() -> [Command<T>; 4] {
    [
        Command::guest_sync_delimited(),
        Command::guest_sync(),
        Command::guest_ping(),
        Command::guest_info(),
    ]
}

fn sync_delimited<'a, T: Commands>(_: &mut T, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, T> {
    echo::<T>(args, reply, true)
}

fn sync<'a, T: Commands>(_: &mut T, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, T> {
    echo::<T>(args, reply, false)
}

/// The sync commands: `id` (an `int`) echoed, after the sentinel if
/// `delimit`. Argument errors go without a sentinel, as in qemu-ga.
fn echo<'a, T: Commands>(args: &Args<'a>, mut reply: Reply<'_>, delimit: bool) -> Outcome<'a, T> {
    let id = args.int("id")?;
    args.finish()?;
    if delimit {
        reply.delimit();
    }
    Ok(reply.ok()?.finish_i64(id)?)
}

fn ping<'a, T: Commands>(_: &mut T, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, T> {
    args.finish()?;
    Ok(reply.ok_empty()?)
}

/// A table of the four commands every agent has: `guest-sync-delimited`,
/// `guest-sync`, `guest-ping` and `guest-info`.
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CoreCommands {
    _private: (),
}

impl CoreCommands {
    const COMMANDS: [Command<Self>; 4] = core_commands();

    /// The core command table.
    pub const fn new() -> Self {
        CoreCommands { _private: () }
    }
}

impl Commands for CoreCommands {
    type Error = Infallible;

    #[inline(never)]
    fn commands(&self) -> &[Command<Self>] {
        &Self::COMMANDS
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
    fn sync_echo_with_a_request_id() {
        assert_eq!(
            answer(br#"{"execute":"guest-sync","arguments":{"id":-42},"id":["x",1]}"#),
            b"{\"return\": -42, \"id\": [\"x\", 1]}\n"
        );
        assert_eq!(
            answer(br#"{"id":7,"execute":"guest-sync-delimited","arguments":{"id":0}}"#),
            b"\xff{\"return\": 0, \"id\": 7}\n"
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
