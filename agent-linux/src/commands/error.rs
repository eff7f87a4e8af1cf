//! The errors the OS commands answer: QAPI argument errors from agent-core
//! and qemu-ga's own texts, with `": <strerror>"` appended where qemu-ga
//! uses `error_setg_errno`. All are sent as GenericError.

use std::fmt;
use std::io;

use agent_core::args::CommandError;

/// A command's failure; its [`Display`](fmt::Display) text is the `desc`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<'a> {
    /// An argument error as QAPI's input visitor reports it.
    Args(CommandError<'a>),
    /// A message of qemu-ga's, complete.
    Msg(String),
    /// qemu-ga's `error_setg_errno`: the message, `": "`, the C library's
    /// text for the errno (no suffix for errno 0).
    Os(String, i32),
}

impl<'a> Error<'a> {
    /// A complete message.
    pub fn msg(text: impl Into<String>) -> Self {
        Error::Msg(text.into())
    }

    /// A message with the text of an OS error appended.
    pub fn os(text: impl Into<String>, err: &io::Error) -> Self {
        Error::Os(text.into(), err.raw_os_error().unwrap_or(0))
    }

    /// A message with the text of a rustix errno appended.
    pub fn errno(text: impl Into<String>, err: rustix::io::Errno) -> Self {
        Error::Os(text.into(), err.raw_os_error())
    }
}

impl<'a> From<CommandError<'a>> for Error<'a> {
    fn from(e: CommandError<'a>) -> Self {
        Error::Args(e)
    }
}

/// The C library's `strerror` text for `errno` (what GLib's `g_strerror`
/// returns): Rust's OS error text without its `" (os error N)"` suffix.
pub fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    let suffix = format!(" (os error {errno})");
    match text.strip_suffix(&suffix) {
        Some(t) => t.to_owned(),
        None => text,
    }
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Args(e) => e.fmt(f),
            Error::Msg(m) => f.write_str(m),
            Error::Os(m, 0) => f.write_str(m),
            Error::Os(m, errno) => write!(f, "{m}: {}", strerror(*errno)),
        }
    }
}

/// What a command handler returns.
pub type CmdResult<'a> = Result<crate::commands::Out, Error<'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(strerror(2), "No such file or directory");
        assert_eq!(
            Error::Os("failed to open file 'x' (mode: 'r')".into(), 2).to_string(),
            "failed to open file 'x' (mode: 'r'): No such file or directory"
        );
        assert_eq!(
            Error::Os("Invalid time".into(), 0).to_string(),
            "Invalid time"
        );
    }
}
