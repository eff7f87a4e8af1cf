//! The request envelope: `execute`, `arguments` and `id`, checked as QEMU's
//! `qmp_dispatch` does (PROTOCOL.md §3, steps 2–3).
//!
//! Members are checked in `QDict` order — the order qemu-ga happens to
//! store them in — so a request with several faults gets the same error.
//!
//! ```
//! use agent_core::envelope::{Request, EnvelopeError};
//! use agent_core::json::Value;
//!
//! let value = Value::parse(br#"{"execute": "guest-ping", "id": [1]}"#).unwrap();
//! let request = Request::parse(value).unwrap();
//! assert!(request.execute.eq_str("guest-ping"));
//! assert!(request.arguments.is_none());
//!
//! let value = Value::parse(br#"{"execute": 1, "id": "x"}"#).unwrap();
//! let (error, id) = Request::parse(value).unwrap_err();
//! assert_eq!(error.to_string(), "QMP input member 'execute' must be a string");
//! assert!(id.is_some()); // errors after this point echo the id
//! ```

use core::fmt;

use crate::json::{JsonStr, Value, ValueKind};
use crate::qdict;

/// A request, as views into the framed bytes.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request<'a> {
    /// The command name.
    pub execute: JsonStr<'a>,
    /// The `arguments` object, if present.
    pub arguments: Option<Value<'a>>,
    /// The `id`, any JSON value, if present.
    pub id: Option<Value<'a>>,
}

/// Why a request's envelope was rejected. [`Display`](fmt::Display) gives
/// qemu-ga's description; all are GenericError.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EnvelopeError<'a> {
    /// "QMP input must be a JSON object"
    NotAnObject,
    /// "QMP input member 'execute' must be a string"
    ExecuteNotString,
    /// "QMP input member 'arguments' must be an object"
    ArgumentsNotObject,
    /// "QMP input member '<name>' is unexpected" (`exec-oob` included:
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
                name.chars()
                    .try_for_each(|ch| fmt::Write::write_char(f, ch))?;
                f.write_str("' is unexpected")
            }
            EnvelopeError::MissingExecute => f.write_str("QMP input lacks member 'execute'"),
        }
    }
}

impl<'a> Request<'a> {
    /// Check a parsed value. On error, also returns the `id` to echo (none
    /// when the value is not an object).
    pub fn parse(value: Value<'a>) -> Result<Request<'a>, (EnvelopeError<'a>, Option<Value<'a>>)> {
        if value.kind() != ValueKind::Object {
            return Err((EnvelopeError::NotAnObject, None));
        }
        // Feature `speed`: one walk in document order. The QDict order only
        // decides which of several faults is reported, so it is walked
        // again only when there is one.
        #[cfg(feature = "speed")]
        {
            let mut checked = Checked::default();
            value
                .members()
                .for_each(|(key, member)| checked.check(key, member));
            if checked.error.is_none() {
                return checked.finish();
            }
        }
        // qemu-ga reads `id` before checking the members, so every error
        // echoes it: the walk goes on after the first error to find it.
        let mut checked = Checked::default();
        let _ = qdict::for_each_member(&value, |key, member| {
            checked.check(key, member);
            Ok::<(), ()>(())
        });
        checked.finish()
    }
}

/// The envelope's members seen so far, and the first fault.
#[derive(Default)]
struct Checked<'a> {
    execute: Option<JsonStr<'a>>,
    arguments: Option<Value<'a>>,
    id: Option<Value<'a>>,
    error: Option<EnvelopeError<'a>>,
}

impl<'a> Checked<'a> {
    fn check(&mut self, key: JsonStr<'a>, member: Value<'a>) {
        let checked = if key.eq_str("execute") {
            member
                .as_str()
                .map(|s| self.execute = Some(s))
                .ok_or(EnvelopeError::ExecuteNotString)
        } else if key.eq_str("arguments") {
            if member.kind() == ValueKind::Object {
                self.arguments = Some(member);
                Ok(())
            } else {
                Err(EnvelopeError::ArgumentsNotObject)
            }
        } else if key.eq_str("id") {
            self.id = Some(member);
            Ok(())
        } else {
            Err(EnvelopeError::Unexpected(key))
        };
        if let Err(e) = checked {
            self.error.get_or_insert(e);
        }
    }

    fn finish(self) -> Result<Request<'a>, (EnvelopeError<'a>, Option<Value<'a>>)> {
        if let Some(error) = self.error {
            return Err((error, self.id));
        }
        match self.execute {
            Some(execute) => Ok(Request {
                execute,
                arguments: self.arguments,
                id: self.id,
            }),
            None => Err((EnvelopeError::MissingExecute, self.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used
    )]
    use super::*;
    extern crate std;
    use std::string::{String, ToString};

    fn error(text: &str) -> String {
        Request::parse(Value::parse(text.as_bytes()).unwrap())
            .unwrap_err()
            .0
            .to_string()
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
