//! Command arguments and their errors, in the words of QEMU's QAPI input
//! visitor (PROTOCOL.md §3, step 6). Every QAPI argument error sentence is
//! spelled here and nowhere else.
//!
//! A handler reads its arguments with the typed getters in the order its
//! schema lists them, then calls [`Args::finish`], which rejects any
//! member it did not read: the order in which QAPI reports missing,
//! ill-typed and unexpected parameters, with each name written once. The
//! request's `arguments` members were recorded by the parser, so a getter
//! looks its name up in a small table instead of walking the request.
//!
//! Lists and structs nest: a list's elements and a struct's members carry
//! their place, so errors name it as QAPI does (`vcpus[1].online`).
//!
//! ```
//! use agent_core::args::Args;
//! use agent_core::json::Value;
//!
//! let value = Value::parse(br#"{"id": 5, "foo": true, "cpus": [{"online": 1}]}"#).unwrap();
//! let args = Args::of_object(value);
//! assert_eq!(args.int("id").unwrap(), 5);
//! assert_eq!(
//!     args.str("id").unwrap_err().to_string(),
//!     "Invalid parameter type for 'id', expected: string"
//! );
//! let cpus = args.list("cpus").unwrap();
//! let cpu = cpus.into_iter().next().unwrap().object().unwrap();
//! assert_eq!(
//!     cpu.bool("online").unwrap_err().to_string(),
//!     "Invalid parameter type for 'cpus[0].online', expected: boolean"
//! );
//! assert_eq!(args.finish().unwrap_err().to_string(), "Parameter 'foo' is unexpected");
//! ```

use core::cell::Cell;
use core::fmt;

use crate::json::{Elements, JsonStr, Members, Value, ValueKind};
use crate::record::Member;

/// Where an argument is: a parameter, a list element, a struct member
/// (`vcpus[1].online`). Up to [`Path::DEPTH`] parts; deeper places keep
/// their first parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Path<'a> {
    parts: [Part<'a>; Path::DEPTH],
    len: u8,
}

/// One part of a [`Path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Part<'a> {
    /// A member the schema names.
    Name(&'static str),
    /// A member named by the request (an unexpected one).
    Key(JsonStr<'a>),
    /// A list element.
    Index(u32),
}

impl<'a> Path<'a> {
    /// The most parts a path keeps.
    pub const DEPTH: usize = 3;

    const EMPTY: Path<'static> = Path {
        parts: [Part::Index(0); Path::DEPTH],
        len: 0,
    };

    #[inline(never)]
    fn with(mut self, part: Part<'a>) -> Self {
        if let Some(slot) = self.parts.get_mut(usize::from(self.len)) {
            *slot = part;
            self.len = self.len.saturating_add(1);
        }
        self
    }

    /// The path of parameter `name` (at the top level).
    pub fn name(name: &'static str) -> Self {
        Path::EMPTY.with(Part::Name(name))
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.parts.get(..usize::from(self.len)).unwrap_or_default();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 && !matches!(part, Part::Index(_)) {
                f.write_str(".")?;
            }
            match part {
                Part::Name(name) => f.write_str(name)?,
                Part::Key(key) => key.fmt_chars(f)?,
                Part::Index(i) => {
                    f.write_str("[")?;
                    crate::writer::fmt_decimal(f, u64::from(*i))?;
                    f.write_str("]")?;
                }
            }
        }
        Ok(())
    }
}

/// An argument error: the error reply QAPI's input visitor gives (all are
/// GenericError).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ArgError<'a> {
    /// "Parameter '`path`' is missing"
    Missing(Path<'a>),
    /// "Invalid parameter type for '`path`', expected: `expected`"
    InvalidType {
        /// Where.
        path: Path<'a>,
        /// QAPI's name of the type (`integer`, `string`, `boolean`,
        /// `object`, `array`, or an alternate's name).
        expected: &'static str,
    },
    /// "Parameter '`path`' is unexpected"
    Unexpected(Path<'a>),
    /// "Parameter '`path`' does not accept value '`value`'" (enums)
    InvalidValue {
        /// Where.
        path: Path<'a>,
        /// The value given.
        value: JsonStr<'a>,
    },
    /// A string argument was streamed out of the request (a
    /// [`Spill`](crate::spill::Spill) took it) and the command read it
    /// with [`Args::str`], not [`Args::large_str`]: "Parameter '`path`' is
    /// too long for this command's request buffer".
    Spilled(Path<'a>),
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Missing(path) => parameter(f, path, "' is missing"),
            ArgError::InvalidType { path, expected } => {
                f.write_str("Invalid parameter type for '")?;
                fmt::Display::fmt(path, f)?;
                f.write_str("', expected: ")?;
                f.write_str(expected)
            }
            ArgError::Unexpected(path) => parameter(f, path, "' is unexpected"),
            ArgError::InvalidValue { path, value } => {
                parameter(f, path, "' does not accept value '")?;
                value.fmt_chars(f)?;
                f.write_str("'")
            }
            ArgError::Spilled(path) => {
                parameter(f, path, "' is too long for this command's request buffer")
            }
        }
    }
}

/// "Parameter '`path`" and `rest`.
fn parameter(f: &mut fmt::Formatter<'_>, path: &Path<'_>, rest: &str) -> fmt::Result {
    f.write_str("Parameter '")?;
    fmt::Display::fmt(path, f)?;
    f.write_str(rest)
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

/// Where the members of an [`Args`] come from.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    /// None: absent `arguments` (which QAPI reads as `{}`).
    Empty,
    /// The request's `arguments` object, all its members recorded by the
    /// parser in `table`.
    Recorded {
        message: &'a [u8],
        table: &'a [Member],
        /// The object (for [`Args::deserialize`]).
        #[cfg(feature = "serde")]
        object: Value<'a>,
    },
    /// An object walked member by member (a struct in a list, or
    /// arguments built by [`Args::of_object`]).
    Object(Value<'a>),
}

/// The arguments of a request, or the members of a struct inside them.
/// See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Args<'a> {
    source: Source<'a>,
    /// Where these members are (empty for the request's `arguments`).
    at: Path<'a>,
    /// Bit `i`: member `i` (in document order) was read.
    read: Cell<u64>,
    /// The placeholder of a spilled string (its first byte in the message).
    spilled: Option<*const u8>,
}

impl<'a> Args<'a> {
    /// The members of `object` as arguments (none if it is not an object).
    pub fn of_object(object: Value<'a>) -> Self {
        Args::new(Source::Object(object), Path::EMPTY)
    }

    /// No arguments.
    pub(crate) fn empty() -> Self {
        Args::new(Source::Empty, Path::EMPTY)
    }

    /// The request's `arguments` object, whose members the parser
    /// recorded in `table` (all of them if `complete`; else they are found
    /// by walking the object).
    pub(crate) fn recorded(
        message: &'a [u8],
        object: Value<'a>,
        table: &'a [Member],
        complete: bool,
    ) -> Self {
        let source = if complete {
            Source::Recorded {
                message,
                table,
                #[cfg(feature = "serde")]
                object,
            }
        } else {
            Source::Object(object)
        };
        Args::new(source, Path::EMPTY)
    }

    fn new(source: Source<'a>, at: Path<'a>) -> Self {
        Args {
            source,
            at,
            read: Cell::new(0),
            spilled: None,
        }
    }

    /// Mark the string value whose token starts at `placeholder` as
    /// spilled.
    pub(crate) fn with_spilled(mut self, placeholder: Option<&'a [u8]>) -> Self {
        self.spilled = placeholder.map(<[u8]>::as_ptr);
        self
    }

    /// The members, in document order.
    fn members(&self) -> ArgMembers<'a> {
        match self.source {
            Source::Empty => ArgMembers::Table(&[], [].iter()),
            Source::Recorded { message, table, .. } => ArgMembers::Table(message, table.iter()),
            Source::Object(object) => ArgMembers::Walk(object.members()),
        }
    }

    /// Member `name` and its place in document order.
    fn find(&self, name: &str) -> Option<(usize, Value<'a>)> {
        if let Source::Recorded { message, table, .. } = self.source {
            let index = table.iter().position(|m| m.is(message, name))?;
            return Some((index, table.get(index)?.value(message)));
        }
        self.members()
            .enumerate()
            .find_map(|(i, (key, value))| key.eq_str(name).then_some((i, value)))
    }

    /// Member `name`, if present, noted as read.
    pub fn value(&self, name: &'static str) -> Option<Value<'a>> {
        let (index, value) = self.find(name)?;
        if index < 64 {
            self.read
                .set(self.read.get() | 1u64.wrapping_shl(index as u32));
        }
        Some(value)
    }

    /// The path of member `name` here.
    pub fn path(&self, name: &'static str) -> Path<'a> {
        self.at.with(Part::Name(name))
    }

    /// "Invalid parameter type for '`name`', expected: `expected`", for
    /// types the getters do not cover (QAPI alternates).
    pub fn invalid_type(&self, name: &'static str, expected: &'static str) -> ArgError<'a> {
        ArgError::InvalidType {
            path: self.path(name),
            expected,
        }
    }

    /// "Parameter '`name`' does not accept value '`value`'".
    pub fn invalid_value(&self, name: &'static str, value: JsonStr<'a>) -> ArgError<'a> {
        ArgError::InvalidValue {
            path: self.path(name),
            value,
        }
    }

    #[cfg_attr(not(feature = "speed"), inline(never))]
    #[cfg_attr(feature = "speed", inline(always))]
    fn required(&self, name: &'static str) -> Result<Value<'a>, ArgError<'a>> {
        self.value(name)
            .ok_or_else(|| ArgError::Missing(self.path(name)))
    }

    fn typed<T>(
        &self,
        value: Value<'a>,
        name: &'static str,
        expected: &'static str,
        get: impl FnOnce(&Value<'a>) -> Option<T>,
    ) -> Result<T, ArgError<'a>> {
        get(&value).ok_or_else(|| self.invalid_type(name, expected))
    }

    /// A required `int` (any JSON integer in the `i64` range).
    pub fn int(&self, name: &'static str) -> Result<i64, ArgError<'a>> {
        self.typed(self.required(name)?, name, "integer", Value::as_i64)
    }

    /// An optional `int`.
    pub fn opt_int(&self, name: &'static str) -> Result<Option<i64>, ArgError<'a>> {
        self.value(name)
            .map(|v| self.typed(v, name, "integer", Value::as_i64))
            .transpose()
    }

    /// A required `str`.
    pub fn str(&self, name: &'static str) -> Result<JsonStr<'a>, ArgError<'a>> {
        self.string(self.required(name)?, name)
    }

    /// An optional `str`.
    pub fn opt_str(&self, name: &'static str) -> Result<Option<JsonStr<'a>>, ArgError<'a>> {
        self.value(name).map(|v| self.string(v, name)).transpose()
    }

    fn is_spilled(&self, value: &Value<'a>) -> bool {
        self.spilled
            .is_some_and(|p| core::ptr::eq(p, value.text().as_ptr()))
    }

    fn string(&self, value: Value<'a>, name: &'static str) -> Result<JsonStr<'a>, ArgError<'a>> {
        if self.is_spilled(&value) {
            return Err(ArgError::Spilled(self.path(name)));
        }
        self.typed(value, name, "string", Value::as_str)
    }

    /// A required `str` that may have been spilled.
    pub fn large_str(&self, name: &'static str) -> Result<LargeStr<'a>, ArgError<'a>> {
        let value = self.required(name)?;
        if self.is_spilled(&value) {
            return Ok(LargeStr::Spilled);
        }
        self.typed(value, name, "string", Value::as_str)
            .map(LargeStr::Inline)
    }

    /// A required `bool`.
    pub fn bool(&self, name: &'static str) -> Result<bool, ArgError<'a>> {
        self.typed(self.required(name)?, name, "boolean", Value::as_bool)
    }

    /// An optional `bool`.
    pub fn opt_bool(&self, name: &'static str) -> Result<Option<bool>, ArgError<'a>> {
        self.value(name)
            .map(|v| self.typed(v, name, "boolean", Value::as_bool))
            .transpose()
    }

    /// An optional enum member, one of `values`: its index. A value of
    /// another type is "expected: string", an unknown one "does not accept
    /// value".
    pub fn opt_enum(
        &self,
        name: &'static str,
        values: &[&str],
    ) -> Result<Option<usize>, ArgError<'a>> {
        let Some(value) = self.value(name) else {
            return Ok(None);
        };
        let text = self.string(value, name)?;
        values
            .iter()
            .position(|v| text.eq_str(v))
            .map(Some)
            .ok_or_else(|| self.invalid_value(name, text))
    }

    /// A required list.
    pub fn list(&self, name: &'static str) -> Result<List<'a>, ArgError<'a>> {
        let value = self.required(name)?;
        self.as_list(value, name)
    }

    /// An optional list.
    pub fn opt_list(&self, name: &'static str) -> Result<Option<List<'a>>, ArgError<'a>> {
        self.value(name).map(|v| self.as_list(v, name)).transpose()
    }

    fn as_list(&self, value: Value<'a>, name: &'static str) -> Result<List<'a>, ArgError<'a>> {
        if value.kind() != ValueKind::Array {
            return Err(self.invalid_type(name, "array"));
        }
        Ok(List {
            value,
            at: self.path(name),
        })
    }

    /// Reject the first member (in document order) that no getter read:
    /// "Parameter '`name`' is unexpected". Call it after reading every
    /// parameter, before acting. (A table reads at most 64 parameters of
    /// one object; members past the 64th count as unread.)
    pub fn finish(&self) -> Result<(), ArgError<'a>> {
        let read = self.read.get();
        if let Source::Recorded { table, .. } = self.source {
            // Every recorded member read (one bit each, at most 64 of
            // them): nothing to look for. With no members the shift wraps
            // to all ones, and the walk below answers.
            let n = table.len();
            if n <= 64 && read == u64::MAX.wrapping_shr(64usize.wrapping_sub(n) as u32) {
                return Ok(());
            }
        }
        let unread = self
            .members()
            .enumerate()
            .find(|&(i, _)| i >= 64 || read & 1u64.wrapping_shl(i as u32) == 0);
        match unread {
            Some((_, (key, _))) => Err(ArgError::Unexpected(self.at.with(Part::Key(key)))),
            None => Ok(()),
        }
    }

    /// All the arguments into `T` with serde-json-core (feature `serde`),
    /// every member counted as read. It reads RFC 8259 JSON only: QEMU's
    /// single-quoted strings and `\u0000` fail, and its errors are
    /// serde-json-core's, not QAPI's; the typed getters have neither limit.
    #[cfg(feature = "serde")]
    pub fn deserialize<T: serde::Deserialize<'a>>(&self) -> Result<T, serde_json_core::de::Error> {
        let text = match self.source {
            Source::Empty => &b"{}"[..],
            Source::Recorded { object, .. } | Source::Object(object) => object.text(),
        };
        self.read.set(u64::MAX);
        serde_json_core::from_slice::<T>(text).map(|(value, _)| value)
    }
}

/// The members of an [`Args`]: from the parser's table, or found by
/// walking an object.
enum ArgMembers<'a> {
    Table(&'a [u8], core::slice::Iter<'a, Member>),
    Walk(Members<'a>),
}

impl<'a> Iterator for ArgMembers<'a> {
    type Item = (JsonStr<'a>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ArgMembers::Table(message, table) => table.next()?.view(message),
            ArgMembers::Walk(members) => members.next(),
        }
    }
}

/// A list argument: its elements, each with its place.
#[derive(Clone, Copy, Debug)]
pub struct List<'a> {
    value: Value<'a>,
    at: Path<'a>,
}

impl<'a> List<'a> {
    /// How many elements there are.
    pub fn len(&self) -> usize {
        self.value.elements().count()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.value.elements().next().is_none()
    }
}

impl<'a> IntoIterator for List<'a> {
    type Item = Elem<'a>;
    type IntoIter = ListIter<'a>;

    fn into_iter(self) -> ListIter<'a> {
        ListIter {
            elements: self.value.elements(),
            at: self.at,
            index: 0,
        }
    }
}

/// The elements of a [`List`].
#[derive(Clone, Debug)]
pub struct ListIter<'a> {
    elements: Elements<'a>,
    at: Path<'a>,
    index: u32,
}

impl<'a> Iterator for ListIter<'a> {
    type Item = Elem<'a>;

    fn next(&mut self) -> Option<Elem<'a>> {
        let value = self.elements.next()?;
        let at = self.at.with(Part::Index(self.index));
        self.index = self.index.saturating_add(1);
        Some(Elem { value, at })
    }
}

/// One element of a list argument.
#[derive(Clone, Copy, Debug)]
pub struct Elem<'a> {
    value: Value<'a>,
    at: Path<'a>,
}

impl<'a> Elem<'a> {
    /// The element's value.
    pub fn value(&self) -> Value<'a> {
        self.value
    }

    /// Where it is (`arg[2]`).
    pub fn path(&self) -> Path<'a> {
        self.at
    }

    fn typed<T>(
        &self,
        expected: &'static str,
        get: impl FnOnce(&Value<'a>) -> Option<T>,
    ) -> Result<T, ArgError<'a>> {
        get(&self.value).ok_or(ArgError::InvalidType {
            path: self.at,
            expected,
        })
    }

    /// The element as a `str`.
    pub fn str(&self) -> Result<JsonStr<'a>, ArgError<'a>> {
        self.typed("string", Value::as_str)
    }

    /// The element as an `int`.
    pub fn int(&self) -> Result<i64, ArgError<'a>> {
        self.typed("integer", Value::as_i64)
    }

    /// The element as a struct: its members, with this element's place.
    pub fn object(&self) -> Result<Args<'a>, ArgError<'a>> {
        if self.value.kind() != ValueKind::Object {
            return Err(ArgError::InvalidType {
                path: self.at,
                expected: "object",
            });
        }
        Ok(Args::new(Source::Object(self.value), self.at))
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
        Args::of_object(Value::parse(text).unwrap())
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
        assert_eq!(a.finish(), Ok(()));
        let e = a.invalid_value("mode", Value::parse(b"'x'").unwrap().as_str().unwrap());
        assert_eq!(e.to_string(), "Parameter 'mode' does not accept value 'x'");
        assert_eq!(Args::empty().finish(), Ok(()));
    }

    #[test]
    fn unread_members_are_unexpected_in_document_order() {
        let a = args(br#"{"b": 1, "a": 2, "c": 3}"#);
        a.int("a").unwrap();
        assert_eq!(
            a.finish().unwrap_err().to_string(),
            "Parameter 'b' is unexpected"
        );
        a.int("b").unwrap();
        assert_eq!(
            a.finish().unwrap_err().to_string(),
            "Parameter 'c' is unexpected"
        );
        // Reading an absent member marks nothing.
        a.opt_int("z").unwrap();
        a.opt_int("c").unwrap();
        assert_eq!(a.finish(), Ok(()));
        let odd = args(br#"{"\u00e9\n": 1}"#);
        assert_eq!(
            odd.finish().unwrap_err().to_string(),
            "Parameter '\u{e9}\n' is unexpected"
        );
    }

    #[test]
    fn enums_lists_and_nested_paths() {
        let a =
            args(br#"{"mode": "halt", "bad": 3, "odd": "x", "l": ["a", 2], "s": [{"x": 1}, 7]}"#);
        let modes = ["powerdown", "halt", "reboot"];
        assert_eq!(a.opt_enum("mode", &modes).unwrap(), Some(1));
        assert_eq!(a.opt_enum("none", &modes).unwrap(), None);
        assert_eq!(
            a.opt_enum("bad", &modes).unwrap_err().to_string(),
            "Invalid parameter type for 'bad', expected: string"
        );
        assert_eq!(
            a.opt_enum("odd", &modes).unwrap_err().to_string(),
            "Parameter 'odd' does not accept value 'x'"
        );
        let l: std::vec::Vec<_> = a.list("l").unwrap().into_iter().collect();
        assert!(l[0].str().unwrap().eq_str("a"));
        assert_eq!(
            l[1].str().unwrap_err().to_string(),
            "Invalid parameter type for 'l[1]', expected: string"
        );
        assert_eq!(
            a.list("mode").unwrap_err().to_string(),
            "Invalid parameter type for 'mode', expected: array"
        );
        let s: std::vec::Vec<_> = a.list("s").unwrap().into_iter().collect();
        let first = s[0].object().unwrap();
        assert_eq!(
            first.bool("online").unwrap_err().to_string(),
            "Parameter 's[0].online' is missing"
        );
        assert_eq!(
            first.finish().unwrap_err().to_string(),
            "Parameter 's[0].x' is unexpected"
        );
        assert_eq!(
            s[1].object().unwrap_err().to_string(),
            "Invalid parameter type for 's[1]', expected: object"
        );
        assert_eq!(a.finish(), Ok(()));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_route() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Sync {
            id: i64,
        }
        let a = args(br#"{"id": -3}"#);
        assert_eq!(a.deserialize::<Sync>().unwrap(), Sync { id: -3 });
        assert_eq!(a.finish(), Ok(()));
        assert!(args(br#"{"id": 'x'}"#).deserialize::<Sync>().is_err());
    }
}
