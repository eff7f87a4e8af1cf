//! The agent's whole command table: agent-core's core commands and the OS
//! commands, registered in qemu-ga's order (its schema's), so that
//! `guest-info` lists them exactly as qemu-ga does (reversed) and
//! `-b help` prints them in the same order.

use agent_core::args::Args;
use agent_core::spill::Spill;
use agent_core::{CommandInfo, Commands, CoreCommands, Replied, Reply};
use embedded_io::Write;

use crate::commands::LinuxCommands;

/// Where the core commands stand in qemu-ga's registration order: the
/// three sync/ping commands first, `guest-info` after `guest-set-time`.
const CORE_FIRST: usize = 3;
const INFO_AFTER: &str = "guest-set-time";

/// Core and OS commands in one table.
pub struct AgentCommands {
    core: CoreCommands,
    linux: LinuxCommands,
}

impl AgentCommands {
    /// The table.
    pub fn new(linux: LinuxCommands) -> Self {
        AgentCommands {
            core: CoreCommands::new(),
            linux,
        }
    }
}

impl Commands for AgentCommands {
    fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
        let core: Vec<CommandInfo> = self.core.list().collect();
        let linux: Vec<CommandInfo> = self.linux.list().collect();
        let split = linux
            .iter()
            .position(|c| c.name == INFO_AFTER)
            .map_or(0, |i| i + 1);
        let (before, after) = core.split_at(CORE_FIRST.min(core.len()));
        let (early, late) = linux.split_at(split);
        let order: Vec<CommandInfo> = before
            .iter()
            .chain(early)
            .chain(after)
            .chain(late)
            .copied()
            .collect();
        order.into_iter()
    }

    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        self.core.lookup(name).or_else(|| self.linux.lookup(name))
    }

    fn is_frozen(&self) -> bool {
        self.linux.is_frozen()
    }

    fn spill(&mut self) -> Option<&mut dyn Spill> {
        self.linux.spill()
    }

    fn call<W: Write + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_>,
        reply: Reply<'_, W>,
    ) -> Result<Replied, W::Error> {
        if self.core.lookup(name).is_some() {
            self.core.call(name, args, reply)
        } else {
            self.linux.call(name, args, reply)
        }
    }
}
