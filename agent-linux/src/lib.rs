//! agent-linux as a library: the OS commands of the Linux guest agent, so
//! they compile and test on their own and the `guest-agent` binary can use
//! them as [`commands::LinuxCommands`]; and the option table `--help` and
//! the man page are made from.

pub mod commands;
pub mod options;
