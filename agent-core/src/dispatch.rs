//! Command tables, the block/allow policy, and dispatching one framed
//! request to its handler (PROTOCOL.md §3 and §5).
//!
//! A [`Commands`] implementation is a table of commands with their
//! handlers. Tables compose: `(CoreCommands::new(), MyCommands)` is a table
//! whose commands are those of both, in that order. `guest-info` is
//! answered here, from the whole table and the [`Policy`].
//!
//! ```
//! use agent_core::dispatch::{CommandInfo, Commands, Policy};
//! use agent_core::args::Args;
//! use agent_core::response::{Replied, Reply};
//! use agent_core::{Agent, CoreCommands};
//!
//! /// A table with one command, `guest-get-answer`.
//! struct Answer;
//!
//! impl Commands for Answer {
//!     fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
//!         [CommandInfo::new("guest-get-answer")].into_iter()
//!     }
//!     fn call<W: embedded_io::Write + ?Sized>(
//!         &mut self, _name: &str, args: Args<'_>, reply: Reply<'_, W>,
//!     ) -> Result<Replied, W::Error> {
//!         if let Err(e) = args.reject_unknown(&[]) {
//!             return reply.error(e.class(), &e);
//!         }
//!         let mut value = reply.ok()?;
//!         value.i64(42)?;
//!         value.finish()
//!     }
//! }
//!
//! let blocked = ["guest-ping"];
//! let mut agent = Agent::new([0u8; 256], (CoreCommands::new(), Answer), Policy::new().block(&blocked));
//! let mut out = Vec::new();
//! agent.feed(br#"{"execute": "guest-get-answer"} {"execute": "guest-ping"}"#, &mut out).unwrap();
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "{\"return\": 42}\n\
//!      {\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-ping has been disabled: the command is not allowed\"}}\n"
//! );
//! ```

use core::fmt;

use embedded_io::Write;

use crate::args::Args;
use crate::envelope::Request;
use crate::json::{JsonStr, Value};
use crate::parser;
use crate::response::{write_error, ErrorClass, Replied, Reply};
use crate::spill::Spill;

/// A command's entry in a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CommandInfo {
    /// The command's name, e.g. `guest-ping`.
    pub name: &'static str,
    /// Whether a successful call is answered (`false` for `guest-shutdown`
    /// and the `guest-suspend-*` commands).
    pub success_response: bool,
}

impl CommandInfo {
    /// A command that answers on success.
    pub const fn new(name: &'static str) -> Self {
        CommandInfo {
            name,
            success_response: true,
        }
    }

    /// A command that sends nothing on success.
    pub const fn without_success_response(name: &'static str) -> Self {
        CommandInfo {
            name,
            success_response: false,
        }
    }
}

/// A table of commands. Implement it for an adapter's command set; combine
/// tables with tuples.
pub trait Commands {
    /// Every command of the table, in registration order (`guest-info`
    /// lists them in reverse, as qemu-ga does).
    fn list(&self) -> impl Iterator<Item = CommandInfo> + '_;

    /// The entry for `name`, if the table has it.
    fn lookup(&self, name: &str) -> Option<CommandInfo> {
        self.list().find(|info| info.name == name)
    }

    /// Whether the table has frozen the guest's filesystems
    /// (`guest-fsfreeze-freeze`): while it says so, only [`FROZEN_ALLOWED`]
    /// commands run, as in qemu-ga. Checked before every request.
    fn is_frozen(&self) -> bool {
        false
    }

    /// Where long string arguments go instead of the request buffer (see
    /// [`spill`](crate::spill)); `None`, the default, keeps them in it.
    fn spill(&mut self) -> Option<&mut dyn Spill> {
        None
    }

    /// Run command `name` (one of [`list`](Self::list)'s, and enabled) and
    /// answer through `reply`. Errors in the return value are the sink's:
    /// command failures are sent with [`Reply::error`].
    fn call<W: Write + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_>,
        reply: Reply<'_, W>,
    ) -> Result<Replied, W::Error>;
}

impl<A: Commands, B: Commands> Commands for (A, B) {
    fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
        self.0.list().chain(self.1.list())
    }

    fn is_frozen(&self) -> bool {
        self.0.is_frozen() || self.1.is_frozen()
    }

    fn spill(&mut self) -> Option<&mut dyn Spill> {
        if self.0.spill().is_some() {
            self.0.spill()
        } else {
            self.1.spill()
        }
    }

    fn call<W: Write + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_>,
        reply: Reply<'_, W>,
    ) -> Result<Replied, W::Error> {
        if self.0.lookup(name).is_some() {
            self.0.call(name, args, reply)
        } else {
            self.1.call(name, args, reply)
        }
    }
}

/// Commands still allowed while filesystems are frozen.
pub const FROZEN_ALLOWED: [&str; 6] = [
    "guest-ping",
    "guest-info",
    "guest-sync",
    "guest-sync-delimited",
    "guest-fsfreeze-status",
    "guest-fsfreeze-thaw",
];

/// Which commands are enabled: qemu-ga's `-a`/`--allow-rpcs`,
/// `-b`/`--block-rpcs` and the frozen state (PROTOCOL.md §5).
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Policy<'p> {
    allow: Option<&'p [&'p str]>,
    block: &'p [&'p str],
    frozen: bool,
}

impl<'p> Policy<'p> {
    /// Everything enabled.
    pub const fn new() -> Self {
        Policy {
            allow: None,
            block: &[],
            frozen: false,
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

    /// Enter or leave the frozen state (only [`FROZEN_ALLOWED`] run).
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Whether the agent is in the frozen state.
    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Whether `name` may run.
    pub fn is_enabled(&self, name: &str) -> bool {
        let allowed = self.allow.is_none_or(|list| list.contains(&name));
        allowed && !self.block.contains(&name) && (!self.frozen || FROZEN_ALLOWED.contains(&name))
    }
}

/// Why a well-formed request was not run. Both are CommandNotFound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DispatchError<'a> {
    /// "The command <name> has not been found"
    NotFound(JsonStr<'a>),
    /// "Command <name> has been disabled: the command is not allowed"
    Disabled(&'a str),
}

impl fmt::Display for DispatchError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::NotFound(name) => {
                f.write_str("The command ")?;
                name.chars()
                    .try_for_each(|ch| fmt::Write::write_char(f, ch))?;
                f.write_str(" has not been found")
            }
            DispatchError::Disabled(name) => write!(
                f,
                "Command {name} has been disabled: the command is not allowed"
            ),
        }
    }
}

/// Longest command name looked up; longer names are simply not found.
const MAX_NAME: usize = 64;

/// What the agent needs to answer `guest-info`.
#[derive(Clone, Copy, Debug)]
pub struct Info<'v> {
    /// The `version` member.
    pub version: &'v str,
}

/// Answer one framed value: parse, check, dispatch, reply.
pub fn dispatch<C: Commands, W: Write + ?Sized>(
    frame: &[u8],
    commands: &mut C,
    policy: &Policy<'_>,
    info: Info<'_>,
    out: &mut W,
) -> Result<(), W::Error> {
    dispatch_spilled(frame, None, commands, policy, info, out)
}

/// [`dispatch`] a [`Frame::Spilled`](crate::framer::Frame::Spilled) value
/// whose placeholder string starts at `spilled` (if any): the command sees
/// that argument as [`LargeStr::Spilled`](crate::args::LargeStr::Spilled).
pub fn dispatch_spilled<C: Commands, W: Write + ?Sized>(
    frame: &[u8],
    spilled: Option<usize>,
    commands: &mut C,
    policy: &Policy<'_>,
    info: Info<'_>,
    out: &mut W,
) -> Result<(), W::Error> {
    let mut name_buf = [0u8; MAX_NAME];
    let (request, name, entry, policy) = match prepare(frame, &mut name_buf, commands, policy) {
        Ok(prepared) => prepared,
        Err(rejection) => return reject(out, rejection),
    };
    let policy = &policy;
    let mut args = Args::new(request.arguments);
    if let Some(placeholder) = spilled.and_then(|at| frame.get(at..)) {
        args = args.with_spilled(placeholder);
    }
    let reply = Reply::new(out, request.id, entry.success_response);
    let _: Replied = if name == "guest-info" {
        guest_info(commands, policy, info, args, reply)?
    } else {
        commands.call(name, args, reply)?
    };
    Ok(())
}

/// Why a framed value is answered with an error instead of being run.
enum Rejection<'a> {
    Parse(parser::ParseError<'a>),
    Envelope(crate::envelope::EnvelopeError<'a>, Option<Value<'a>>),
    Dispatch(DispatchError<'a>, Option<Value<'a>>),
}

/// Parse, check and look up a request: its parts, the command's name (in
/// `name_buf`) and entry, and the policy in force.
fn prepare<'a, 'p, C: Commands>(
    frame: &'a [u8],
    name_buf: &'a mut [u8; MAX_NAME],
    commands: &C,
    policy: &Policy<'p>,
) -> Result<(Request<'a>, &'a str, CommandInfo, Policy<'p>), Rejection<'a>> {
    parser::validate_framed(frame).map_err(Rejection::Parse)?;
    // Cannot fail after validation; answer like the parser would.
    let value =
        Value::of_validated(frame).ok_or(Rejection::Parse(parser::ParseError::ExpectingValue))?;
    let request = Request::parse(value).map_err(|(e, id)| Rejection::Envelope(e, id))?;
    let found = request
        .execute
        .decode_into(name_buf)
        .and_then(|name| commands.lookup(name).map(|info| (name, info)));
    let Some((name, entry)) = found else {
        return Err(Rejection::Dispatch(
            DispatchError::NotFound(request.execute),
            request.id,
        ));
    };
    let mut policy = *policy;
    policy.set_frozen(policy.is_frozen() || commands.is_frozen());
    if !policy.is_enabled(name) {
        return Err(Rejection::Dispatch(
            DispatchError::Disabled(name),
            request.id,
        ));
    }
    Ok((request, name, entry, policy))
}

/// Answer a rejected request.
fn reject<W: Write + ?Sized>(out: &mut W, rejection: Rejection<'_>) -> Result<(), W::Error> {
    match rejection {
        Rejection::Parse(error) => {
            log_protocol_error("parse", &error);
            write_error(out, None, ErrorClass::GenericError, &error)
        }
        Rejection::Envelope(error, id) => {
            log_protocol_error("envelope", &error);
            write_error(out, id.as_ref(), ErrorClass::GenericError, &error)
        }
        Rejection::Dispatch(error, id) => {
            log_protocol_error("dispatch", &error);
            write_error(out, id.as_ref(), ErrorClass::CommandNotFound, &error)
        }
    }
}

/// `guest-info`: `{"version": ..., "supported_commands": [{"enabled": ...,
/// "name": ..., "success-response": ...}, ...]}`, commands in reverse
/// registration order.
fn guest_info<C: Commands, W: Write + ?Sized>(
    commands: &C,
    policy: &Policy<'_>,
    info: Info<'_>,
    args: Args<'_>,
    reply: Reply<'_, W>,
) -> Result<Replied, W::Error> {
    if let Err(e) = args.reject_unknown(&[]) {
        return reply.error(e.class(), &e);
    }
    let mut value = reply.ok()?;
    value.begin_object()?;
    value.key("version")?;
    value.str(info.version)?;
    value.key("supported_commands")?;
    value.begin_array()?;
    let count = commands.list().count();
    for index in (0..count).rev() {
        let Some(command) = commands.list().nth(index) else {
            continue;
        };
        value.begin_object()?;
        value.key("enabled")?;
        value.bool(policy.is_enabled(command.name))?;
        value.key("name")?;
        value.str(command.name)?;
        value.key("success-response")?;
        value.bool(command.success_response)?;
        value.end_object()?;
    }
    value.end_array()?;
    value.end_object()?;
    value.finish()
}

#[cfg(feature = "defmt")]
fn log_protocol_error(layer: &str, error: &dyn fmt::Display) {
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

#[cfg(not(feature = "defmt"))]
fn log_protocol_error(_layer: &str, _error: &dyn fmt::Display) {}

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

    /// A table whose commands record that they ran.
    #[derive(Default)]
    struct Recorder {
        ran: Vec<&'static str>,
    }

    const RECORDED: [CommandInfo; 2] = [
        CommandInfo::new("guest-get-time"),
        CommandInfo::without_success_response("guest-shutdown"),
    ];

    impl Commands for Recorder {
        fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
            RECORDED.into_iter()
        }
        fn call<W: Write + ?Sized>(
            &mut self,
            name: &str,
            args: Args<'_>,
            reply: Reply<'_, W>,
        ) -> Result<Replied, W::Error> {
            let info = self.lookup(name).unwrap();
            self.ran.push(info.name);
            if let Err(e) = args.reject_unknown(&["mode"]) {
                return reply.error(e.class(), &e);
            }
            reply.ok_empty()
        }
    }

    fn run(policy: &Policy<'_>, input: &str) -> (String, Vec<&'static str>) {
        let mut table = (CoreCommands::new(), Recorder::default());
        let mut out = Vec::new();
        dispatch(
            input.as_bytes(),
            &mut table,
            policy,
            Info { version: "9.9" },
            &mut out,
        )
        .unwrap();
        (String::from_utf8(out).unwrap(), table.1.ran)
    }

    #[test]
    fn not_found_and_disabled() {
        let (out, _) = run(&Policy::new(), r#"{"execute": "guest-nope", "id": 3}"#);
        assert_eq!(out, "{\"id\": 3, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command guest-nope has not been found\"}}\n");
        // Names longer than any command are simply not found, in full.
        let long = "x".repeat(100);
        let (out, _) = run(&Policy::new(), &std::format!(r#"{{"execute": "{long}"}}"#));
        assert!(out.contains(&std::format!("The command {long} has not been found")));
        let blocked = ["guest-get-time"];
        let (out, ran) = run(
            &Policy::new().block(&blocked),
            r#"{"execute": "guest-get-time"}"#,
        );
        assert_eq!(
            out,
            "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-get-time has been disabled: the command is not allowed\"}}\n"
        );
        assert!(ran.is_empty(), "a blocked command ran");
    }

    #[test]
    fn policy_rules() {
        let allow = ["guest-ping", "guest-get-time"];
        let block = ["guest-get-time"];
        let mut p = Policy::new().allow(&allow).block(&block);
        assert!(p.is_enabled("guest-ping"));
        assert!(!p.is_enabled("guest-get-time")); // block wins over allow
        assert!(!p.is_enabled("guest-info")); // not in the allow list
        p.set_frozen(true);
        assert!(p.is_enabled("guest-ping"));
        let mut frozen = Policy::new();
        frozen.set_frozen(true);
        assert!(frozen.is_enabled("guest-fsfreeze-thaw") && !frozen.is_enabled("guest-shutdown"));
        assert!(Policy::new().allow(&[]).is_enabled("anything"));
    }

    #[test]
    fn commands_without_success_response_send_nothing() {
        let (out, ran) = run(&Policy::new(), r#"{"execute": "guest-shutdown", "id": 1}"#);
        assert_eq!((out.as_str(), ran), ("", std::vec!["guest-shutdown"]));
        // ... but their errors are sent.
        let (out, _) = run(
            &Policy::new(),
            r#"{"execute": "guest-shutdown", "arguments": {"x": 1}}"#,
        );
        assert!(out.contains("Parameter 'x' is unexpected"));
    }

    #[test]
    fn guest_info_lists_the_whole_table_in_reverse() {
        let blocked = ["guest-shutdown"];
        let (out, _) = run(
            &Policy::new().block(&blocked),
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
            &Policy::new(),
            r#"{"execute": "guest-info", "arguments": {"a": 1}}"#,
        );
        assert!(out.contains("Parameter 'a' is unexpected"));
    }

    /// A table that reports frozen filesystems.
    struct Frozen;

    impl Commands for Frozen {
        fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
            [CommandInfo::new("guest-file-open")].into_iter()
        }
        fn is_frozen(&self) -> bool {
            true
        }
        fn call<W: Write + ?Sized>(
            &mut self,
            _: &str,
            _: Args<'_>,
            reply: Reply<'_, W>,
        ) -> Result<Replied, W::Error> {
            reply.ok_empty()
        }
    }

    #[test]
    fn a_frozen_table_disables_all_but_the_frozen_set() {
        let mut table = (CoreCommands::new(), Frozen);
        let run = |table: &mut (CoreCommands, Frozen), input: &str| {
            let mut out = Vec::new();
            dispatch(
                input.as_bytes(),
                table,
                &Policy::new(),
                Info { version: "1" },
                &mut out,
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(run(&mut table, r#"{"execute": "guest-file-open"}"#).contains("has been disabled"));
        assert_eq!(
            run(&mut table, r#"{"execute": "guest-ping"}"#),
            "{\"return\": {}}\n"
        );
        let info = run(&mut table, r#"{"execute": "guest-info"}"#);
        assert!(info.contains("{\"enabled\": false, \"name\": \"guest-file-open\""));
    }

    #[test]
    fn parse_errors_never_echo_the_id() {
        let (out, _) = run(
            &Policy::new(),
            r#"{"execute": "guest-ping", "id": 1, "id": 2}"#,
        );
        assert_eq!(out, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, duplicate key\"}}\n");
    }
}
