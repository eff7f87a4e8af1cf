//! Command arguments and the errors commands give, with the texts of
//! QEMU's QAPI input visitor (PROTOCOL.md §3, step 6).
//!
//! Handlers read members with typed getters, in the order the schema lists
//! them, then call [`Args::reject_unknown`] — the order in which QAPI
//! reports missing, ill-typed and unexpected parameters.
//!
//! ```
//! use agent_core::args::Args;
//! use agent_core::json::Value;
//!
//! let value = Value::parse(br#"{"id": 5, "foo": true}"#).unwrap();
//! let args = Args::new(Some(value));
//! assert_eq!(args.int("id").unwrap(), 5);
//! let err = args.reject_unknown(&["id"]).unwrap_err();
//! assert_eq!(err.to_string(), "Parameter 'foo' is unexpected");
//! assert_eq!(
//!     args.str("id").unwrap_err().to_string(),
//!     "Invalid parameter type for 'id', expected: string"
//! );
//! ```

use core::fmt;

use crate::json::{JsonStr, Value, ValueKind};
use crate::response::ErrorClass;

/// A command's failure: the error response it turns into.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CommandError<'a> {
    /// "Parameter '<name>' is unexpected"
    UnexpectedParameter(JsonStr<'a>),
    /// "Parameter '<name>' is missing"
    MissingParameter(&'static str),
    /// "Invalid parameter type for '<name>', expected: <type>"
    InvalidParameterType {
        /// The parameter.
        name: &'static str,
        /// QAPI's type name (`integer`, `string`, `boolean`, ...).
        expected: &'static str,
    },
    /// "Parameter '<name>' does not accept value '<value>'" (enums)
    InvalidParameterValue {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: JsonStr<'a>,
    },
    /// The arguments did not deserialize into the handler's type
    /// ([`Args::deserialize`]): "Invalid arguments: <reason>".
    InvalidArguments(serde_json_core::de::Error),
    /// A string argument was streamed out of the request (a
    /// [`Spill`](crate::spill::Spill) took it) and the command read it
    /// with [`Args::str`], not [`Args::large_str`].
    Spilled(&'static str),
}

impl CommandError<'_> {
    /// The error class of the response: GenericError, as for every
    /// QAPI argument error. (Handlers with other failures answer with
    /// [`Reply::error`](crate::response::Reply::error) and any class.)
    pub fn class(&self) -> ErrorClass {
        ErrorClass::GenericError
    }
}

fn write_json_str(f: &mut fmt::Formatter<'_>, s: &JsonStr<'_>) -> fmt::Result {
    s.chars().try_for_each(|ch| fmt::Write::write_char(f, ch))
}

impl fmt::Display for CommandError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::UnexpectedParameter(name) => {
                f.write_str("Parameter '")?;
                write_json_str(f, name)?;
                f.write_str("' is unexpected")
            }
            CommandError::MissingParameter(name) => write!(f, "Parameter '{name}' is missing"),
            CommandError::InvalidParameterType { name, expected } => {
                write!(
                    f,
                    "Invalid parameter type for '{name}', expected: {expected}"
                )
            }
            CommandError::InvalidParameterValue { name, value } => {
                write!(f, "Parameter '{name}' does not accept value '")?;
                write_json_str(f, value)?;
                f.write_str("'")
            }
            CommandError::InvalidArguments(e) => write!(f, "Invalid arguments: {e}"),
            CommandError::Spilled(name) => write!(
                f,
                "Parameter '{name}' is too long for this command's request buffer"
            ),
        }
    }
}

/// The `arguments` of a request (absent means `{}`).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Args<'a> {
    object: Option<Value<'a>>,
    /// The placeholder of a spilled string (a suffix of the frame that
    /// starts with its token).
    spilled: Option<&'a [u8]>,
}

/// A string argument that may have been streamed out of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum LargeStr<'a> {
    /// The string is in the request buffer.
    Inline(JsonStr<'a>),
    /// The command table's [`Spill`](crate::spill::Spill) holds its content.
    Spilled,
}

impl<'a> Args<'a> {
    /// Arguments from the request's `arguments` object, if it had one.
    pub fn new(object: Option<Value<'a>>) -> Self {
        Args {
            object: object.filter(|v| v.kind() == ValueKind::Object),
            spilled: None,
        }
    }

    /// Mark the string value whose token starts `placeholder` (a suffix of
    /// the request's bytes) as spilled.
    pub fn with_spilled(mut self, placeholder: &'a [u8]) -> Self {
        self.spilled = Some(placeholder);
        self
    }

    /// Whether `value` is the placeholder of a spilled string.
    fn is_spilled(&self, value: &Value<'a>) -> bool {
        self.spilled
            .is_some_and(|p| core::ptr::eq(p.as_ptr(), value.text().as_ptr()))
    }

    /// A required `str` that may have been spilled.
    pub fn large_str(&self, name: &'static str) -> Result<LargeStr<'a>, CommandError<'a>> {
        let value = self.required(name)?;
        if self.is_spilled(&value) {
            return Ok(LargeStr::Spilled);
        }
        Self::typed(value, name, "string", Value::as_str).map(LargeStr::Inline)
    }

    /// The raw `arguments` object, if present.
    pub fn object(&self) -> Option<Value<'a>> {
        self.object
    }

    /// Member `name`, if present.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.object.and_then(|o| o.get(name))
    }

    fn required(&self, name: &'static str) -> Result<Value<'a>, CommandError<'a>> {
        self.get(name).ok_or(CommandError::MissingParameter(name))
    }

    fn typed<T>(
        value: Value<'a>,
        name: &'static str,
        expected: &'static str,
        get: impl FnOnce(&Value<'a>) -> Option<T>,
    ) -> Result<T, CommandError<'a>> {
        get(&value).ok_or(CommandError::InvalidParameterType { name, expected })
    }

    /// A required `int` (any JSON integer in the `i64` range).
    pub fn int(&self, name: &'static str) -> Result<i64, CommandError<'a>> {
        Self::typed(self.required(name)?, name, "integer", Value::as_i64)
    }

    /// An optional `int`.
    pub fn opt_int(&self, name: &'static str) -> Result<Option<i64>, CommandError<'a>> {
        self.get(name)
            .map(|v| Self::typed(v, name, "integer", Value::as_i64))
            .transpose()
    }

    /// A required `str`.
    pub fn str(&self, name: &'static str) -> Result<JsonStr<'a>, CommandError<'a>> {
        self.string(self.required(name)?, name)
    }

    /// An optional `str`.
    pub fn opt_str(&self, name: &'static str) -> Result<Option<JsonStr<'a>>, CommandError<'a>> {
        self.get(name).map(|v| self.string(v, name)).transpose()
    }

    fn string(
        &self,
        value: Value<'a>,
        name: &'static str,
    ) -> Result<JsonStr<'a>, CommandError<'a>> {
        if self.is_spilled(&value) {
            return Err(CommandError::Spilled(name));
        }
        Self::typed(value, name, "string", Value::as_str)
    }

    /// A required `bool`.
    pub fn bool(&self, name: &'static str) -> Result<bool, CommandError<'a>> {
        Self::typed(self.required(name)?, name, "boolean", Value::as_bool)
    }

    /// An optional `bool`.
    pub fn opt_bool(&self, name: &'static str) -> Result<Option<bool>, CommandError<'a>> {
        self.get(name)
            .map(|v| Self::typed(v, name, "boolean", Value::as_bool))
            .transpose()
    }

    /// Fail on the first member whose name is not in `known`.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), CommandError<'a>> {
        let Some(object) = self.object else {
            return Ok(());
        };
        match object
            .members()
            .find(|(key, _)| !known.iter().any(|k| key.eq_str(k)))
        {
            Some((key, _)) => Err(CommandError::UnexpectedParameter(key)),
            None => Ok(()),
        }
    }

    /// Deserialize the arguments into `T` with `serde-json-core`. It reads
    /// RFC 8259 JSON only: single-quoted strings and `\u0000` are rejected
    /// with a GenericError; use the typed getters for QEMU's full dialect.
    pub fn deserialize<T: serde::Deserialize<'a>>(&self) -> Result<T, CommandError<'a>> {
        let text = self.object.map_or(&b"{}"[..], |o| o.text());
        match serde_json_core::from_slice::<T>(text) {
            Ok((value, _)) => Ok(value),
            Err(e) => Err(CommandError::InvalidArguments(e)),
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
    use std::string::ToString;

    fn args(text: &'static [u8]) -> Args<'static> {
        Args::new(Value::parse(text))
    }

    #[test]
    fn qapi_messages() {
        let a = args(br#"{"id": 1.5, "big": 9223372036854775808, "s": "x", "b": false}"#);
        assert_eq!(
            a.int("id").unwrap_err().to_string(),
            "Invalid parameter type for 'id', expected: integer"
        );
        assert_eq!(
            a.int("big").unwrap_err().to_string(),
            "Invalid parameter type for 'big', expected: integer"
        );
        assert_eq!(
            a.int("nope").unwrap_err().to_string(),
            "Parameter 'nope' is missing"
        );
        assert_eq!(a.opt_int("nope").unwrap(), None);
        assert!(a.str("s").unwrap().eq_str("x"));
        assert!(!a.bool("b").unwrap());
        assert_eq!(a.reject_unknown(&["id", "big", "s", "b"]), Ok(()));
        let e = CommandError::InvalidParameterValue {
            name: "mode",
            value: JsonStr::from_token(b"'x'"),
        };
        assert_eq!(e.to_string(), "Parameter 'mode' does not accept value 'x'");
        assert_eq!(Args::new(None).reject_unknown(&[]), Ok(()));
    }

    #[test]
    fn serde_route() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Sync {
            id: i64,
        }
        assert_eq!(
            args(br#"{"id": -3}"#).deserialize::<Sync>().unwrap(),
            Sync { id: -3 }
        );
        assert!(args(br#"{"id": 'x'}"#).deserialize::<Sync>().is_err());
    }
}
