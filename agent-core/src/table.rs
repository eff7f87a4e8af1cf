//! Command tables: what an adapter writes to add commands.
//!
//! A table is one list of [`Command`]s, each a command's `guest-info` entry
//! ([`CommandInfo`]) and its handler, in registration order: `guest-info`
//! lists them in reverse, as qemu-ga does, so the list is all there is to
//! the order. The four commands every agent has are entries too
//! ([`Command::guest_sync_delimited`] and the others), placed wherever
//! the adapter's order wants them; [`CoreCommands`](crate::CoreCommands)
//! is a table of just those four.
//!
//! A handler reads its arguments with [`Args`]'s typed getters, in the
//! order its schema lists them, calls [`Args::finish`], and answers
//! through its [`Reply`]. Every failure can be returned with `?`: argument
//! errors ([`ArgError`]), a failed output ([`SinkError`]), and the table's
//! own [`Commands::Error`] all convert into [`CommandError`], which the
//! agent turns into the error reply.
//!
//! ```
//! use agent_core::prelude::*;
//!
//! /// A table with the core commands and `guest-get-answer`.
//! struct Answers {
//!     answer: i64,
//! }
//!
//! impl Answers {
//!     const COMMANDS: [Command<Self>; 5] = [
//!         Command::guest_sync_delimited(),
//!         Command::guest_sync(),
//!         Command::guest_ping(),
//!         Command::guest_info(),
//!         Command::new("guest-get-answer", Self::get_answer),
//!     ];
//!
//!     /// `{"execute": "guest-get-answer", "arguments": {"plus": 1}}`
//!     fn get_answer<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
//!         let plus = args.opt_int("plus")?.unwrap_or(0);
//!         args.finish()?;
//!         let sum = self.answer.checked_add(plus).ok_or("the answer overflowed")?;
//!         let mut value = reply.ok()?;
//!         value.i64(sum)?;
//!         Ok(value.finish()?)
//!     }
//! }
//!
//! impl Commands for Answers {
//!     type Error = &'static str;
//!     fn commands(&self) -> &[Command<Self>] {
//!         &Self::COMMANDS
//!     }
//! }
//!
//! let blocked = ["guest-ping"];
//! let policy = Policy::new().block(&blocked);
//! let mut agent = Agent::new([0u8; 256], Answers { answer: 41 }, policy);
//! let mut out = Vec::new();
//! agent.feed(br#"{"execute": "guest-get-answer", "arguments": {"plus": 1}}"#, &mut out).unwrap();
//! agent.feed(br#"{"execute": "guest-get-answer", "arguments": {"plus": "x"}}"#, &mut out).unwrap();
//! agent.feed(br#"{"execute": "guest-get-answer", "arguments": {"plus": 9223372036854775807}}"#, &mut out).unwrap();
//! agent.feed(br#"{"execute": "guest-ping"}"#, &mut out).unwrap();
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "{\"return\": 42}\n\
//!      {\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 'plus', expected: integer\"}}\n\
//!      {\"error\": {\"class\": \"GenericError\", \"desc\": \"the answer overflowed\"}}\n\
//!      {\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Command guest-ping has been disabled: the command is not allowed\"}}\n"
//! );
//! ```

use core::convert::Infallible;
use core::fmt;

use crate::args::{ArgError, Args};
use crate::response::{ErrorClass, Replied, Reply};
use crate::spill::Spill;
use crate::writer::SinkError;

/// A table of commands (see the [module documentation](self)).
pub trait Commands: Sized {
    /// The table's own failures: their [`Display`](fmt::Display) text is
    /// the error reply's `desc`, [`Failure::class`] its class. Use
    /// [`Infallible`] for a table that has none, `&'static str` for fixed
    /// texts.
    type Error: Failure;

    /// Every command, in registration order (`guest-info` lists them in
    /// reverse, as qemu-ga does).
    fn commands(&self) -> &[Command<Self>];

    /// Whether the table has frozen the guest's filesystems
    /// (`guest-fsfreeze-freeze`): while it says so, only commands
    /// [allowed while frozen](CommandInfo::is_allowed_while_frozen) run,
    /// as in qemu-ga. Asked before every request.
    fn is_frozen(&self) -> bool {
        false
    }

    /// Where long string arguments go instead of the request buffer (see
    /// [`spill`](crate::spill)); `None`, the default, keeps them in it.
    fn spill(&mut self) -> Option<&mut dyn Spill> {
        None
    }
}

/// What a handler returns: its reply sent, or why it failed.
pub type Outcome<'a, T> = Result<Replied, CommandError<'a, <T as Commands>::Error>>;

/// A command handler of table `T`: runs with the table, the request's
/// arguments and the right to answer it once.
pub type Handler<T> = for<'a, 'r> fn(&mut T, &Args<'a>, Reply<'r>) -> Outcome<'a, T>;

/// A command's entry in `guest-info`: its name, whether a success is
/// answered, and whether it runs while filesystems are frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CommandInfo {
    name: &'static str,
    success_response: bool,
    allowed_while_frozen: bool,
}

impl CommandInfo {
    /// A command that answers on success and is disabled while frozen.
    /// `name` is a QAPI name (ASCII letters, digits, `-`, `_`, `.`; no
    /// backslash): requests are matched against it byte for byte unless
    /// they spell the name with escapes.
    pub const fn new(name: &'static str) -> Self {
        CommandInfo {
            name,
            success_response: true,
            allowed_while_frozen: false,
        }
    }

    /// The command's name, e.g. `guest-ping`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether a successful call is answered (`false` for `guest-shutdown`
    /// and the `guest-suspend-*` commands).
    pub const fn has_success_response(&self) -> bool {
        self.success_response
    }

    /// Whether the command runs while the table reports frozen
    /// filesystems (qemu-ga's list: `guest-ping`, `guest-info`, the sync
    /// commands, `guest-fsfreeze-status` and `guest-fsfreeze-thaw`).
    pub const fn is_allowed_while_frozen(&self) -> bool {
        self.allowed_while_frozen
    }
}

/// One command of table `T`: its entry and what runs it.
pub struct Command<T: Commands> {
    info: CommandInfo,
    run: Run<T>,
}

/// How a command runs.
pub(crate) enum Run<T: Commands> {
    /// Its handler.
    Handler(Handler<T>),
    /// `guest-info`, which the dispatcher answers from the whole table.
    GuestInfo,
}

impl<T: Commands> Clone for Run<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Commands> Copy for Run<T> {}

impl<T: Commands> Clone for Command<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Commands> Copy for Command<T> {}

impl<T: Commands> fmt::Debug for Command<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.info.fmt(f)
    }
}

impl<T: Commands> Command<T> {
    /// Command `name`, run by `handler`; it answers on success and is
    /// disabled while filesystems are frozen.
    pub const fn new(name: &'static str, handler: Handler<T>) -> Self {
        Command {
            info: CommandInfo::new(name),
            run: Run::Handler(handler),
        }
    }

    /// The same command, sending nothing on success (`guest-shutdown`).
    pub const fn without_success_response(mut self) -> Self {
        self.info.success_response = false;
        self
    }

    /// The same command, allowed to run while filesystems are frozen.
    pub const fn allowed_while_frozen(mut self) -> Self {
        self.info.allowed_while_frozen = true;
        self
    }

    /// `guest-info`: the agent's version and every command of the table
    /// with whether it is enabled, answered by the agent itself.
    pub const fn guest_info() -> Self {
        Command {
            info: CommandInfo::new("guest-info"),
            run: Run::GuestInfo,
        }
        .allowed_while_frozen()
    }

    /// The command's entry.
    pub const fn info(&self) -> &CommandInfo {
        &self.info
    }

    pub(crate) fn run(&self) -> Run<T> {
        self.run
    }
}

/// A table's own failure, sent as an error reply: its text is the
/// [`Display`](fmt::Display) of the value, its class GenericError unless
/// [`class`](Self::class) says otherwise.
pub trait Failure: fmt::Display {
    /// The error class of the reply.
    fn class(&self) -> ErrorClass {
        ErrorClass::GenericError
    }
}

impl Failure for &'static str {}

impl Failure for Infallible {}

/// Why a command failed; the agent answers it with an error reply (or,
/// for [`Sink`](Self::Sink), stops answering).
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError<'a, E> {
    /// An argument error, in QAPI's words.
    Arg(ArgError<'a>),
    /// The table's own failure.
    Failed(E),
    /// The output failed: nothing more can be sent.
    Sink(SinkError),
}

impl<'a, E> From<ArgError<'a>> for CommandError<'a, E> {
    fn from(error: ArgError<'a>) -> Self {
        CommandError::Arg(error)
    }
}

impl<E> From<SinkError> for CommandError<'_, E> {
    fn from(error: SinkError) -> Self {
        CommandError::Sink(error)
    }
}

impl<E: Failure> From<E> for CommandError<'_, E> {
    fn from(error: E) -> Self {
        CommandError::Failed(error)
    }
}
