//! The request envelope: `execute`, `arguments` and `id`, checked as QEMU's
//! `qmp_dispatch` does (PROTOCOL.md §3, steps 2–3), from what the parser
//! recorded.
//!
//! A request with several faults gets the error of the first one in
//! `QDict` order (the order qemu-ga happens to store members in), which
//! the record keeps as the members go by.

use core::fmt;

use crate::args::Args;
use crate::framer::Validated;
use crate::json::{JsonStr, Value};
use crate::record::FaultKind;

/// A request the parser accepted and whose envelope is right: views of
/// its parts. Only [`Request::check`] makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a, const ARGS: usize> {
    frame: Validated<'a, ARGS>,
    /// The command name.
    pub(crate) execute: JsonStr<'a>,
    /// The `arguments` object, if present.
    arguments: Option<Value<'a>>,
    /// The `id`, any JSON value, if present.
    pub(crate) id: Option<Value<'a>>,
}

/// Why a request's envelope was rejected. [`Display`](fmt::Display) gives
/// qemu-ga's description; all are GenericError.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub(crate) enum EnvelopeError<'a> {
    /// "QMP input must be a JSON object"
    NotAnObject,
    /// "QMP input member 'execute' must be a string"
    ExecuteNotString,
    /// "QMP input member 'arguments' must be an object"
    ArgumentsNotObject,
    /// "QMP input member '`name`' is unexpected" (`exec-oob` included:
    /// qemu-ga does not allow out-of-band execution)
    Unexpected(JsonStr<'a>),
    /// "QMP input lacks member 'execute'"
    MissingExecute,
}

impl fmt::Display for EnvelopeError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::NotAnObject => f.write_str("QMP input must be a JSON object"),
            EnvelopeError::ExecuteNotString => {
                f.write_str("QMP input member 'execute' must be a string")
            }
            EnvelopeError::ArgumentsNotObject => {
                f.write_str("QMP input member 'arguments' must be an object")
            }
            EnvelopeError::Unexpected(name) => {
                f.write_str("QMP input member '")?;
                name.fmt_chars(f)?;
                f.write_str("' is unexpected")
            }
            EnvelopeError::MissingExecute => f.write_str("QMP input lacks member 'execute'"),
        }
    }
}

/// An envelope error and the `id` to echo with it (none when the value
/// is not an object: qemu-ga reads `id` only from an object).
pub(crate) type Rejected<'a> = (EnvelopeError<'a>, Option<Value<'a>>);

impl<'a, const ARGS: usize> Request<'a, ARGS> {
    /// Check the envelope of an accepted message.
    #[cfg_attr(not(feature = "speed"), inline(never))]
    #[cfg_attr(feature = "speed", inline(always))]
    pub(crate) fn check(frame: Validated<'a, ARGS>) -> Result<Self, Rejected<'a>> {
        let record = frame.record();
        let message = frame.message();
        if !record.is_object() {
            return Err((EnvelopeError::NotAnObject, None));
        }
        let (execute, arguments, id) = record.envelope();
        let view = |member: Option<crate::record::Member>| member.map(|m| m.value(message));
        let id = view(id);
        if let Some(fault) = record.fault() {
            // qemu-ga reads `id` before checking the members, so every
            // error echoes it.
            let error = match fault.kind {
                FaultKind::Unexpected => {
                    EnvelopeError::Unexpected(JsonStr::from_token(fault.key.of(message)))
                }
                FaultKind::ExecuteNotString => EnvelopeError::ExecuteNotString,
                FaultKind::ArgumentsNotObject => EnvelopeError::ArgumentsNotObject,
            };
            return Err((error, id));
        }
        let Some(execute) = view(execute).and_then(|v| v.as_str()) else {
            return Err((EnvelopeError::MissingExecute, id));
        };
        Ok(Request {
            frame,
            execute,
            arguments: view(arguments),
            id,
        })
    }

    /// The arguments, for the command's handler.
    #[cfg_attr(not(feature = "speed"), inline(never))]
    #[cfg_attr(feature = "speed", inline(always))]
    pub(crate) fn args(&self) -> Args<'a> {
        let Some(object) = self.arguments else {
            return Args::empty();
        };
        let (table, complete) = self.frame.record().arguments();
        let message = self.frame.message();
        let placeholder = self.frame.spilled().and_then(|at| message.get(at..));
        Args::recorded(message, object, table, complete).with_spilled(placeholder)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used
    )]
    use crate::{Agent, CoreCommands, Policy};
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    /// The answer to `text` (an envelope error, for these).
    fn error(text: &str) -> String {
        let mut agent = Agent::new([0u8; 256], CoreCommands::new(), Policy::new());
        let mut out = Vec::new();
        agent.feed(text.as_bytes(), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let desc = out.split("\"desc\": \"").nth(1).unwrap();
        desc[..desc.find('"').unwrap()].into()
    }

    #[test]
    fn qemu_errors() {
        assert_eq!(error("[]"), "QMP input must be a JSON object");
        assert_eq!(error("\"x\""), "QMP input must be a JSON object");
        assert_eq!(
            error(r#"{"execute": null}"#),
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            error(r#"{"execute": "x", "arguments": null}"#),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            error(r#"{"execute": "x", "arguments": []}"#),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            error(r#"{"exec-oob": "guest-ping"}"#),
            "QMP input member 'exec-oob' is unexpected"
        );
        assert_eq!(error(r#"{"id": 1}"#), "QMP input lacks member 'execute'");
        assert_eq!(error("{}"), "QMP input lacks member 'execute'");
    }

    #[test]
    fn first_offender_in_qdict_order() {
        // exec-oob (bucket 162) before execute (299) before arguments (447).
        assert_eq!(
            error(r#"{"arguments": 1, "execute": 2, "exec-oob": 3}"#),
            "QMP input member 'exec-oob' is unexpected"
        );
        assert_eq!(
            error(r#"{"arguments": 1, "execute": 2}"#),
            "QMP input member 'execute' must be a string"
        );
        // "x" is bucket 134, before execute.
        assert_eq!(
            error(r#"{"execute": 2, "x": 1}"#),
            "QMP input member 'x' is unexpected"
        );
        // "c" is bucket 447 like "arguments"; added later, so checked first.
        assert_eq!(
            error(r#"{"execute": "p", "arguments": 1, "c": 1}"#),
            "QMP input member 'c' is unexpected"
        );
        assert_eq!(
            error(r#"{"execute": "p", "c": 1, "arguments": 1}"#),
            "QMP input member 'arguments' must be an object"
        );
    }
}
