//! The guest's own commands, with qemu-ga's argument checks and result
//! shapes: `guest-get-time` (an int, ns since the epoch) and
//! `guest-shutdown` (`mode` optional: "halt", "powerdown" or "reboot"; no
//! success response). Platform-neutral: the clock comes in as a function,
//! and shutdown is only recorded here — the main loop powers off once the
//! request has been answered.

use agent_core::args::Args;
use agent_core::dispatch::{CommandInfo, Commands};
use agent_core::response::{ErrorClass, Replied, Reply};
use embedded_io::Write;

/// This table, in qemu-ga's registration order.
const TABLE: [CommandInfo; 2] = [
    CommandInfo::new("guest-get-time"),
    CommandInfo::without_success_response("guest-shutdown"),
];

/// How `guest-shutdown` ends the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// "halt": stop (on `virt`, the same power-off).
    Halt,
    /// "powerdown" (the default).
    Powerdown,
    /// "reboot".
    Reboot,
}

/// `guest-get-time` and `guest-shutdown`.
pub struct VirtCommands {
    now_ns: fn() -> i64,
    shutdown: Option<ShutdownMode>,
}

impl VirtCommands {
    /// Commands reading the time from `now_ns`.
    pub const fn new(now_ns: fn() -> i64) -> Self {
        VirtCommands {
            now_ns,
            shutdown: None,
        }
    }

    /// The shutdown a successful `guest-shutdown` asked for.
    pub fn shutdown_requested(&self) -> Option<ShutdownMode> {
        self.shutdown
    }
}

impl Commands for VirtCommands {
    fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
        TABLE.into_iter()
    }

    fn call<W: Write + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_>,
        reply: Reply<'_, W>,
    ) -> Result<Replied, W::Error> {
        match name {
            "guest-get-time" => {
                if let Err(e) = args.reject_unknown(&[]) {
                    return reply.error(e.class(), &e);
                }
                let mut value = reply.ok()?;
                value.i64((self.now_ns)())?;
                value.finish()
            }
            "guest-shutdown" => {
                let mode = match args
                    .opt_str("mode")
                    .and_then(|m| args.reject_unknown(&["mode"]).map(|()| m))
                {
                    Ok(mode) => mode,
                    Err(e) => return reply.error(e.class(), &e),
                };
                let mode = match mode {
                    None => ShutdownMode::Powerdown,
                    Some(m) if m.eq_str("powerdown") => ShutdownMode::Powerdown,
                    Some(m) if m.eq_str("halt") => ShutdownMode::Halt,
                    Some(m) if m.eq_str("reboot") => ShutdownMode::Reboot,
                    Some(_) => {
                        // qemu-ga's text, unbalanced parenthesis included.
                        return reply.error(
                            ErrorClass::GenericError,
                            &"mode is invalid (valid values are: halt|powerdown|reboot",
                        );
                    }
                };
                self.shutdown = Some(mode);
                reply.ok_empty()
            }
            _ => reply.error(ErrorClass::GenericError, &"unknown command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::{Agent, CoreCommands, Policy};

    fn run(input: &str) -> (String, Option<ShutdownMode>) {
        let table = (
            CoreCommands::new(),
            VirtCommands::new(|| 1_700_000_000_123_456_789),
        );
        let mut agent = Agent::new([0u8; 512], table, Policy::new());
        let mut out = Vec::new();
        agent.feed(input.as_bytes(), &mut out).unwrap();
        let shutdown = agent.commands().1.shutdown_requested();
        (String::from_utf8(out).unwrap(), shutdown)
    }

    #[test]
    fn get_time_is_an_int() {
        assert_eq!(
            run(r#"{"execute": "guest-get-time", "id": 3}"#).0,
            "{\"return\": 1700000000123456789, \"id\": 3}\n"
        );
        assert_eq!(
            run(r#"{"execute": "guest-get-time", "arguments": {"x": 1}}"#).0,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is unexpected\"}}\n"
        );
    }

    #[test]
    fn shutdown_modes_and_errors() {
        assert_eq!(
            run(r#"{"execute": "guest-shutdown"}"#),
            (String::new(), Some(ShutdownMode::Powerdown))
        );
        for (mode, want) in [
            ("halt", ShutdownMode::Halt),
            ("powerdown", ShutdownMode::Powerdown),
            ("reboot", ShutdownMode::Reboot),
        ] {
            let request =
                format!(r#"{{"execute": "guest-shutdown", "arguments": {{"mode": "{mode}"}}}}"#);
            assert_eq!(run(&request), (String::new(), Some(want)));
        }
        let bad = |args: &str| {
            run(&format!(
                r#"{{"execute": "guest-shutdown", "arguments": {args}}}"#
            ))
        };
        assert_eq!(
            bad(r#"{"mode": "off"}"#),
            (
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"mode is invalid (valid values are: halt|powerdown|reboot\"}}\n".into(),
                None
            )
        );
        assert_eq!(
            bad(r#"{"mode": 1}"#).0,
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 'mode', expected: string\"}}\n"
        );
        assert_eq!(
            bad(r#"{"mode": "halt", "now": true}"#),
            (
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'now' is unexpected\"}}\n".into(),
                None
            )
        );
    }

    #[test]
    fn guest_info_lists_the_table() {
        let (out, _) = run(r#"{"execute": "guest-info"}"#);
        assert!(out
            .contains(r#"{"enabled": true, "name": "guest-shutdown", "success-response": false}"#));
        assert!(out.contains(r#""name": "guest-get-time""#));
    }
}
