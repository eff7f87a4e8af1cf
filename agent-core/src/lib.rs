//! # agent-core
//!
//! The protocol core of a QEMU Guest Agent: `#![no_std]`, no allocation, no
//! `unsafe`, no panics on input, and memory bounded by the caller's buffer.
//! It speaks qemu-ga's wire protocol byte for byte — QEMU's JSON dialect,
//! limits, error classes and texts, lexical-error recovery (QMP spec
//! §2.6), the 0xFF sentinel of `guest-sync-delimited` (§2.7) and qemu-ga's
//! output format — and leaves I/O to adapters.
//!
//! An adapter feeds an [`Agent`] bytes and gives it a sink
//! ([`embedded_io::Write`]) for the replies; it adds commands as a table
//! ([`Commands`]) of [`Command`]s, each a name and a handler that reads
//! [`Args`] and answers through a [`Reply`]:
//!
//! ```
//! use agent_core::prelude::*;
//!
//! /// The core commands and `guest-get-answer`.
//! struct Answer;
//!
//! impl Answer {
//!     const COMMANDS: [Command<Self>; 5] = [
//!         Command::guest_sync_delimited(),
//!         Command::guest_sync(),
//!         Command::guest_ping(),
//!         Command::guest_info(),
//!         Command::new("guest-get-answer", |_, args, reply| {
//!             args.finish()?;
//!             let mut value = reply.ok()?;
//!             value.i64(42)?;
//!             Ok(value.finish()?)
//!         }),
//!     ];
//! }
//!
//! impl Commands for Answer {
//!     type Error = core::convert::Infallible;
//!     fn commands(&self) -> &[Command<Self>] {
//!         &Self::COMMANDS
//!     }
//! }
//!
//! let mut buf = [0u8; 1024]; // the largest request this agent accepts
//! let mut agent = Agent::new(&mut buf[..], Answer, Policy::new());
//! let mut out = Vec::new(); // any embedded_io::Write
//! agent.feed(b"{\"execute\": \"guest-get-answer\", \"id\": 1}\n", &mut out).unwrap();
//! assert_eq!(out, b"{\"return\": 42, \"id\": 1}\n");
//! ```
//!
//! Inside, data flows one way, and each request's tokens are read once:
//! the lexer finds them, the framer collects the message and hands each
//! token to the push parser, which checks QEMU's grammar and records
//! where `execute`, `arguments`, `id` and each argument are; dispatch
//! reads that record.
//!
//! | module | what it does |
//! |---|---|
//! | `lexer` | QEMU's token grammar byte by byte, error recovery |
//! | `framer` | one message into the caller's buffer; limits; the spill |
//! | `parser` | QEMU's grammar, token by token; duplicate keys |
//! | `record` | where the request's parts are |
//! | `request` | `execute` / `arguments` / `id` and their errors |
//! | `dispatch` | lookup, [`Policy`], frozen state, `guest-info` |
//! | [`table`] | [`Commands`], [`Command`], [`CommandError`] |
//! | [`args`] | typed argument access and QAPI's argument errors |
//! | [`commands`] | `guest-sync(-delimited)`, `guest-ping`, [`CoreCommands`] |
//! | [`response`] | [`Reply`], ids, the sentinel |
//! | [`writer`] | qemu-ga's JSON output format, streaming |
//! | [`json`] | views of accepted values: [`Value`](json::Value), strings, numbers |
//! | [`spill`] | long `arguments` strings streamed to the adapter |
//! | [`agent`] | the state machine and an `embedded-io` run loop |
//! | [`client`] | the host side of the sync handshake |
//! | `scan`, `unicode`, `qdict`, `float` | byte scans, QEMU's UTF-8 rules, member order, exact floats |
//!
//! Feature `speed` (enabled by agent-linux) makes the byte scans go 64
//! bytes at a time on long runs (a file's base64) and inlines the
//! per-token path (lexer step, token end, key table, envelope check), for
//! about 1 KiB more code; it changes no answer. Feature `defmt` logs
//! protocol errors through defmt and derives `defmt::Format` on the
//! public types.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod args;
pub mod client;
pub mod commands;
mod dispatch;
mod float;
mod framer;
pub mod json;
mod lexer;
mod parser;
mod qdict;
mod record;
mod request;
pub mod response;
mod scan;
pub mod spill;
pub mod table;
mod unicode;
pub mod writer;

pub use agent::Agent;
pub use args::{ArgError, Args, LargeStr};
pub use commands::CoreCommands;
pub use dispatch::Policy;
pub use framer::{FrameError, StrayToken};
pub use parser::ParseError;
pub use response::{ErrorClass, Replied, Reply, ReturnWriter};
pub use table::{Command, CommandError, CommandInfo, Commands, Failure, Outcome};
pub use writer::{JsonWriter, SinkError};

/// What writing a command needs, in one import: `use agent_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Agent, ArgError, Args, Command, CommandError, CommandInfo, Commands, CoreCommands,
        ErrorClass, Failure, Outcome, Policy, Replied, Reply,
    };
    pub use embedded_io;
}

pub use embedded_io;

/// The byte qemu-ga sends before a `guest-sync-delimited` reply, and the
/// reset byte clients send: 0xFF is never valid UTF-8.
pub const SENTINEL: u8 = 0xFF;

/// This crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
