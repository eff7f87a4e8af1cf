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
