//! # agent-core
//!
//! The protocol core of a QEMU Guest Agent: `#![no_std]`, no allocation, no
//! `unsafe`, no panics on input, and memory bounded by the caller's buffer.
//! It speaks qemu-ga's wire protocol byte for byte — QEMU's JSON dialect,
//! limits, error classes and texts, lexical-error recovery (QMP spec
//! §2.6), the 0xFF sentinel of `guest-sync-delimited` (§2.7) and qemu-ga's
//! output format — and leaves I/O to adapters.
//!
//! Data flows one way through the modules:
//!
//! | module | what it does |
//! |---|---|
//! | [`lexer`] | QEMU's token grammar byte by byte, error recovery |
//! | [`framer`] | one top-level value into the caller's buffer; limits |
//! | [`spill`] | long `arguments` strings streamed to the adapter |
//! | [`parser`] | QEMU's grammar checks on a framed value |
//! | [`json`] | zero-copy views: tokens, values, strings, numbers |
//! | [`envelope`] | `execute` / `arguments` / `id` and their errors |
//! | [`dispatch`] | command tables, block/allow policy, `guest-info` |
//! | [`args`] | typed argument access and command errors |
//! | [`commands`] | `guest-sync(-delimited)`, `guest-ping`, `guest-info` |
//! | [`response`] | replies, ids, the sentinel |
//! | [`writer`] | qemu-ga's JSON output format, streaming |
//! | [`agent`] | the state machine and an `embedded-io` run loop |
//! | [`client`] | the host side of the sync handshake |
//! | [`unicode`], [`qdict`] | QEMU's UTF-8 rules and member order |
//!
//! ```
//! use agent_core::{Agent, CoreCommands, Policy};
//!
//! let mut buf = [0u8; 1024];
//! let mut agent = Agent::new(&mut buf[..], CoreCommands::new(), Policy::new());
//! let mut out = Vec::new();
//! agent.feed(b"{\"execute\": \"guest-ping\", \"id\": 1}\n", &mut out).unwrap();
//! assert_eq!(out, b"{\"return\": {}, \"id\": 1}\n");
//! ```
//!
//! Feature `speed` (enabled by agent-linux) spends about 1.5 KiB more code
//! on fewer instructions per request: accepted requests are re-read
//! without the lexer, and duplicate keys of small objects are found in the
//! parser's first pass. Answers are the same with or without it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod args;
pub mod client;
pub mod commands;
pub mod dispatch;
pub mod envelope;
pub mod float;
pub mod framer;
pub mod json;
pub mod lexer;
pub mod parser;
pub mod qdict;
pub mod response;
pub mod spill;
pub mod unicode;
pub mod writer;

pub use agent::Agent;
pub use commands::CoreCommands;
pub use dispatch::{CommandInfo, Commands, Policy};
pub use response::{Replied, Reply};

/// The byte qemu-ga sends before a `guest-sync-delimited` reply, and the
/// reset byte clients send: 0xFF is never valid UTF-8.
pub const SENTINEL: u8 = 0xFF;

/// This crate's version, the default `guest-info` version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
