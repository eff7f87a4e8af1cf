//! Answering one accepted request (PROTOCOL.md §3 and §5): the envelope,
//! the command's lookup, the block/allow policy and the frozen state, the
//! handler, and `guest-info`, which only the dispatcher can answer: it
//! sees the whole table.
//!
//! The command's name is looked up once; what runs it comes from the
//! table entry found, and the policy and frozen checks read that entry.

use core::cell::Cell;
use core::fmt;

use crate::args::Args;
use crate::framer::Validated;
use crate::json::JsonStr;
use crate::request::Request;
use crate::response::{write_error, ErrorClass, Reply};
use crate::table::{Command, CommandError, CommandInfo, Commands, Failure, Outcome, Run};
use crate::writer::{escape_str, Output, SinkError};

/// Which commands are enabled: qemu-ga's `-a`/`--allow-rpcs` and
/// `-b`/`--block-rpcs` (PROTOCOL.md §5). The frozen state is the command
/// table's ([`Commands::is_frozen`]).
///
/// ```
/// use agent_core::Policy;
///
/// let allow = ["guest-ping", "guest-get-time"];
/// let block = ["guest-get-time"];
/// let policy = Policy::new().allow(&allow).block(&block);
/// assert!(policy.is_enabled("guest-ping"));
/// assert!(!policy.is_enabled("guest-get-time")); // block wins over allow
/// assert!(!policy.is_enabled("guest-info")); // not in the allow list
/// assert!(Policy::new().allow(&[]).is_enabled("anything"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Policy<'p> {
    allow: Option<&'p [&'p str]>,
    block: &'p [&'p str],
}

impl<'p> Policy<'p> {
    /// Everything enabled.
    pub const fn new() -> Self {
        Policy {
            allow: None,
            block: &[],
        }
    }

    /// Enable only these commands (an empty list leaves all enabled, as
    /// qemu-ga does).
    pub const fn allow(mut self, names: &'p [&'p str]) -> Self {
        self.allow = if names.is_empty() { None } else { Some(names) };
        self
    }

    /// Disable these commands.
    pub const fn block(mut self, names: &'p [&'p str]) -> Self {
        self.block = names;
        self
    }

    /// Whether `name` may run, as far as the lists go.
    pub fn is_enabled(&self, name: &str) -> bool {
        let allowed = self.allow.is_none_or(|list| list.contains(&name));
        allowed && !self.block.contains(&name)
    }

    /// Whether the command of `info` may run, `frozen` saying whether the
    /// table has frozen filesystems.
    fn permits(&self, info: &CommandInfo, frozen: bool) -> bool {
        (!frozen || info.is_allowed_while_frozen()) && self.is_enabled(info.name())
    }
}

/// Why a well-formed request was not run. Both are CommandNotFound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum DispatchError<'a> {
    /// "The command `name` has not been found"
    NotFound(JsonStr<'a>),
    /// "Command `name` has been disabled: the command is not allowed"
    Disabled(&'a str),
}

impl fmt::Display for DispatchError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::NotFound(name) => {
                f.write_str("The command ")?;
                name.fmt_chars(f)?;
                f.write_str(" has not been found")
            }
            DispatchError::Disabled(name) => {
                f.write_str("Command ")?;
                f.write_str(name)?;
                f.write_str(" has been disabled: the command is not allowed")
            }
        }
    }
}

/// Where the command called `name` is in `table`. Command names are
/// ASCII without escapes, so bodies are compared as bytes first; only a
/// name that is not plain (escapes, or beyond ASCII) is compared decoded.
#[cfg_attr(not(feature = "speed"), inline(never))]
#[cfg_attr(feature = "speed", inline(always))]
fn lookup<T: Commands>(table: &[Command<T>], name: &JsonStr<'_>) -> Option<usize> {
    let raw = name.raw();
    let body = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    let named = |c: &Command<T>| c.info().name().as_bytes() == body;
    match table.iter().position(named) {
        None if name.plain().is_none() => table.iter().position(|c| name.eq_str(c.info().name())),
        found => found,
    }
}

/// Answer one accepted message: check its envelope, find its command,
/// check that the command may run, run it, and send the reply or the
/// error. Only the output's failure is returned.
pub(crate) fn answer<C: Commands, const ARGS: usize>(
    frame: Validated<'_, ARGS>,
    commands: &mut C,
    policy: &Policy<'_>,
    version: &str,
    out: &mut dyn Output,
) -> Result<(), SinkError> {
    let request = match Request::check(frame) {
        Ok(request) => request,
        Err((error, id)) => {
            log_protocol_error("envelope", &error);
            return write_error(out, id.as_ref(), ErrorClass::GenericError, &error);
        }
    };
    let id = request.id;
    let found = lookup(commands.commands(), &request.execute)
        .and_then(|index| commands.commands().get(index).copied());
    let Some(command) = found else {
        let error = DispatchError::NotFound(request.execute);
        log_protocol_error("dispatch", &error);
        return write_error(out, id.as_ref(), ErrorClass::CommandNotFound, &error);
    };
    let info = *command.info();
    if !policy.permits(&info, commands.is_frozen()) {
        let error = DispatchError::Disabled(info.name());
        log_protocol_error("dispatch", &error);
        return write_error(out, id.as_ref(), ErrorClass::CommandNotFound, &error);
    }
    let args = request.args();
    let begun = Cell::new(false);
    let reply = Reply::new(&mut *out, id, info.has_success_response(), Some(&begun));
    let result = match command.run() {
        Run::GuestInfo => guest_info(commands, policy, version, &args, reply),
        Run::Handler(handler) => handler(commands, &args, reply),
    };
    let (class, desc): (ErrorClass, &dyn fmt::Display) = match &result {
        Ok(_) => return Ok(()),
        Err(CommandError::Sink(e)) if out.failed() => return Err(*e),
        // A sink of the handler's own failed: a failure of the command.
        Err(CommandError::Sink(e)) => (ErrorClass::GenericError, e),
        Err(CommandError::Arg(e)) => (ErrorClass::GenericError, e),
        Err(CommandError::Failed(e)) => (e.class(), e),
    };
    if begun.get() {
        // The reply was begun and cannot be completed: break it off, so
        // that no client takes it for a success.
        out.put(b"\n")
    } else {
        write_error(out, id.as_ref(), class, desc)
    }
}

/// `guest-info`: `{"version": ..., "supported_commands": [{"enabled": ...,
/// "name": ..., "success-response": ...}, ...]}`, commands in reverse
/// registration order.
fn guest_info<'a, C: Commands>(
    commands: &C,
    policy: &Policy<'_>,
    version: &str,
    args: &Args<'a>,
    reply: Reply<'_>,
) -> Outcome<'a, C> {
    args.finish()?;
    let frozen = commands.is_frozen();
    let bool = |v: bool| if v { &b"true"[..] } else { b"false" };
    let mut value = reply.ok()?;
    // Written as bytes: the shape is fixed (and code is scarce on bare
    // metal); only the names and the version need escaping.
    let out = value.inner();
    out.put(b"{\"version\": ")?;
    escape_str(out, version)?;
    out.put(b", \"supported_commands\": [")?;
    for (i, command) in commands.commands().iter().rev().enumerate() {
        let info = command.info();
        out.put(if i == 0 { &b"{"[..] } else { b", {" })?;
        out.put(b"\"enabled\": ")?;
        out.put(bool(policy.permits(info, frozen)))?;
        out.put(b", \"name\": ")?;
        escape_str(out, info.name())?;
        out.put(b", \"success-response\": ")?;
        out.put(bool(info.has_success_response()))?;
        out.put(b"}")?;
    }
    out.put(b"]}")?;
    Ok(value.finish()?)
}

/// Log a protocol error through defmt (feature `defmt`).
#[cfg(feature = "defmt")]
pub(crate) fn log_protocol_error(layer: &str, error: &dyn fmt::Display) {
    struct Text<'e>(&'e dyn fmt::Display);
    impl fmt::Display for Text<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }
    defmt::warn!(
        "protocol error ({=str}): {}",
        layer,
        defmt::Display2Format(&Text(error))
    );
}

/// Log a protocol error (nothing without feature `defmt`).
#[cfg(not(feature = "defmt"))]
pub(crate) fn log_protocol_error(_layer: &str, _error: &dyn fmt::Display) {}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used
    )]
    use crate::prelude::*;
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    /// A table whose commands record that they ran.
    #[derive(Default)]
    struct Recorder {
        ran: Vec<&'static str>,
        frozen: bool,
    }

    impl Recorder {
        const COMMANDS: [Command<Self>; 6] = [
            Command::guest_sync_delimited(),
            Command::guest_sync(),
            Command::guest_ping(),
            Command::guest_info(),
            Command::new("guest-get-time", Self::get_time),
            Command::new("guest-shutdown", Self::shutdown).without_success_response(),
        ];

        fn get_time<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
            self.ran.push("guest-get-time");
            args.finish()?;
            Ok(reply.ok_empty()?)
        }

        fn shutdown<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
            self.ran.push("guest-shutdown");
            args.opt_str("mode")?;
            args.finish()?;
            Ok(reply.ok_empty()?)
        }
    }

    impl Commands for Recorder {
        type Error = &'static str;
        fn commands(&self) -> &[Command<Self>] {
            &Self::COMMANDS
        }
        fn is_frozen(&self) -> bool {
            self.frozen
        }
    }

    fn run(policy: Policy<'_>, table: Recorder, input: &str) -> (String, Recorder) {
        let mut agent = Agent::new([0u8; 512], table, policy).with_version("9.9");
        let mut out = Vec::new();
        agent.feed(input.as_bytes(), &mut out).unwrap();
        (String::from_utf8(out).unwrap(), agent.into_commands())
    }

    #[test]
    fn not_found_and_disabled() {
        let (out, _) = run(
            Policy::new(),
            Recorder::default(),
            r#"{"execute": "guest-nope", "id": 3}"#,
        );
        assert_eq!(out, "{\"id\": 3, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command guest-nope has not been found\"}}\n");
        // Names longer than any command are simply not found, in full.
        let long = "x".repeat(100);
        let (out, _) = run(
            Policy::new(),
            Recorder::default(),
            &std::format!(r#"{{"execute": "{long}"}}"#),
        );
        assert!(out.contains(&std::format!("The command {long} has not been found")));
        // Escaped names are found.
        let (out, ran) = run(
            Policy::new(),
            Recorder::default(),
            r#"{"execute": "guest-get-tim\u0065"}"#,
        );
        assert_eq!(
            (out.as_str(), ran.ran),
            ("{\"return\": {}}\n", std::vec!["guest-get-time"])
        );
        let blocked = ["guest-get-time"];
        let (out, ran) = run(
            Policy::new().block(&blocked),
            Recorder::default(),
            r#"{"execute": "guest-get-time"}"#,
        );
        assert_eq!(
            out,
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-get-time has been disabled: the command is not allowed\"}}\n"
        );
        assert!(ran.ran.is_empty(), "a blocked command ran");
    }

    #[test]
    fn commands_without_success_response_send_nothing() {
        let (out, ran) = run(
            Policy::new(),
            Recorder::default(),
            r#"{"execute": "guest-shutdown", "id": 1}"#,
        );
        assert_eq!((out.as_str(), ran.ran), ("", std::vec!["guest-shutdown"]));
        // ... but their errors are sent.
        let (out, _) = run(
            Policy::new(),
            Recorder::default(),
            r#"{"execute": "guest-shutdown", "arguments": {"x": 1}}"#,
        );
        assert!(out.contains("Parameter 'x' is unexpected"));
    }

    #[test]
    fn guest_info_lists_the_whole_table_in_reverse() {
        let blocked = ["guest-shutdown"];
        let (out, _) = run(
            Policy::new().block(&blocked),
            Recorder::default(),
            r#"{"execute": "guest-info"}"#,
        );
        let expect = "{\"return\": {\"version\": \"9.9\", \"supported_commands\": [\
            {\"enabled\": false, \"name\": \"guest-shutdown\", \"success-response\": false}, \
            {\"enabled\": true, \"name\": \"guest-get-time\", \"success-response\": true}, \
            {\"enabled\": true, \"name\": \"guest-info\", \"success-response\": true}, \
            {\"enabled\": true, \"name\": \"guest-ping\", \"success-response\": true}, \
            {\"enabled\": true, \"name\": \"guest-sync\", \"success-response\": true}, \
            {\"enabled\": true, \"name\": \"guest-sync-delimited\", \"success-response\": true}]}}\n";
        assert_eq!(out, expect);
        let (out, _) = run(
            Policy::new(),
            Recorder::default(),
            r#"{"execute": "guest-info", "arguments": {"a": 1}}"#,
        );
        assert!(out.contains("Parameter 'a' is unexpected"));
    }

    #[test]
    fn a_frozen_table_disables_all_but_the_frozen_set() {
        let frozen = || Recorder {
            frozen: true,
            ..Recorder::default()
        };
        let (out, ran) = run(Policy::new(), frozen(), r#"{"execute": "guest-get-time"}"#);
        assert!(out.contains("has been disabled"), "{out}");
        assert!(ran.ran.is_empty());
        let (out, _) = run(Policy::new(), frozen(), r#"{"execute": "guest-ping"}"#);
        assert_eq!(out, "{\"return\": {}}\n");
        let (out, _) = run(Policy::new(), frozen(), r#"{"execute": "guest-info"}"#);
        assert!(out.contains("{\"enabled\": false, \"name\": \"guest-get-time\""));
        assert!(out.contains("{\"enabled\": true, \"name\": \"guest-sync\""));
    }

    #[test]
    fn parse_errors_never_echo_the_id() {
        let (out, _) = run(
            Policy::new(),
            Recorder::default(),
            r#"{"execute": "guest-ping", "id": 1, "id": 2}"#,
        );
        assert_eq!(out, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, duplicate key\"}}\n");
    }

    /// A table whose command fails after starting its reply.
    struct Halfway;

    impl Halfway {
        const COMMANDS: [Command<Self>; 1] = [Command::new("guest-half", Self::half)];

        fn half<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
            args.finish()?;
            let mut value = reply.ok()?;
            value.begin_array()?;
            value.i64(1)?;
            Err("the data ran out".into())
        }
    }

    impl Commands for Halfway {
        type Error = &'static str;
        fn commands(&self) -> &[Command<Self>] {
            &Self::COMMANDS
        }
    }

    #[test]
    fn a_reply_begun_then_failed_is_broken_off() {
        let mut agent = Agent::new([0u8; 128], Halfway, Policy::new());
        let mut out = Vec::new();
        agent
            .feed(
                br#"{"execute": "guest-half"} {"execute": "guest-half", "arguments": {"a": 1}}"#,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"return\": [1\n{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'a' is unexpected\"}}\n"
        );
    }
}
