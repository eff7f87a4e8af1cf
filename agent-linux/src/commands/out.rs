//! Results as values, written in qemu-ga's member order.
//!
//! qemu-ga builds a result as a `QDict` and writes its members in hash
//! bucket order, later-inserted first within a bucket; members are
//! inserted in schema order. [`Obj`] keeps members in schema order and
//! [`Out::write`] sorts them with [`agent_core::writer::qdict_bucket`].
//!
//! ```
//! use agent_linux::commands::out::{Obj, Out};
//! use agent_core::JsonWriter;
//!
//! let seek = Out::Obj(Obj::new().int("position", 6).bool("eof", false));
//! let mut text = Vec::new();
//! seek.write(&mut JsonWriter::new(&mut text)).unwrap();
//! assert_eq!(text, br#"{"eof": false, "position": 6}"#);
//! ```

use agent_core::writer::qdict_bucket;
use agent_core::{JsonWriter, SinkError};

/// A result value.
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    /// No return value: `{}` (or nothing, without success response).
    Unit,
    /// An `int`.
    Int(i64),
    /// A `uint64` / `size`.
    UInt(u64),
    /// A `number`.
    Float(f64),
    /// A `bool`.
    Bool(bool),
    /// A `str` (or enum value).
    Str(String),
    /// A list.
    List(Vec<Out>),
    /// A struct.
    Obj(Obj),
}

/// A struct's members in schema (insertion) order; absent optional members
/// are simply not added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Obj {
    members: Vec<(&'static str, Out)>,
}

impl Obj {
    /// An empty struct.
    pub fn new() -> Self {
        Obj::default()
    }

    /// Add a member.
    pub fn put(mut self, name: &'static str, value: Out) -> Self {
        self.members.push((name, value));
        self
    }

    /// Add a member if `value` is present.
    pub fn opt(self, name: &'static str, value: Option<Out>) -> Self {
        match value {
            Some(v) => self.put(name, v),
            None => self,
        }
    }

    /// Add an `int` member.
    pub fn int(self, name: &'static str, value: i64) -> Self {
        self.put(name, Out::Int(value))
    }

    /// Add a `bool` member.
    pub fn bool(self, name: &'static str, value: bool) -> Self {
        self.put(name, Out::Bool(value))
    }

    /// Add a `str` member.
    pub fn str(self, name: &'static str, value: impl Into<String>) -> Self {
        self.put(name, Out::Str(value.into()))
    }

    /// The members in the order qemu-ga writes them.
    pub fn ordered(&self) -> Vec<&(&'static str, Out)> {
        let mut order: Vec<(u32, usize)> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (qdict_bucket(name), i))
            .collect();
        // By bucket; within a bucket the later insertion first.
        order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        order
            .into_iter()
            .filter_map(|(_, i)| self.members.get(i))
            .collect()
    }
}

/// The member names of a struct in the order qemu-ga writes them, for
/// results written by hand (e.g. the streamed guest-file-read).
pub fn member_order<const N: usize>(names: [&'static str; N]) -> [&'static str; N] {
    let mut indexed: Vec<(u32, usize, &'static str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (qdict_bucket(n), i, *n))
        .collect();
    indexed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut sorted = names;
    for (slot, (_, _, n)) in sorted.iter_mut().zip(indexed) {
        *slot = n;
    }
    sorted
}

impl Out {
    /// A `str`.
    pub fn str(s: impl Into<String>) -> Self {
        Out::Str(s.into())
    }

    /// Write the value.
    pub fn write(&self, w: &mut JsonWriter<'_>) -> Result<(), SinkError> {
        match self {
            Out::Unit => {
                w.begin_object()?;
                w.end_object()
            }
            Out::Int(v) => w.i64(*v),
            Out::UInt(v) => w.u64(*v),
            Out::Float(v) => w.f64(*v),
            Out::Bool(v) => w.bool(*v),
            Out::Str(s) => w.str(s),
            Out::List(items) => {
                w.begin_array()?;
                for item in items {
                    item.write(w)?;
                }
                w.end_array()
            }
            Out::Obj(obj) => {
                w.begin_object()?;
                for (name, value) in obj.ordered() {
                    w.key(name)?;
                    value.write(w)?;
                }
                w.end_object()
            }
        }
    }
}

impl From<Obj> for Out {
    fn from(o: Obj) -> Self {
        Out::Obj(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Out) -> String {
        let mut out = Vec::new();
        v.write(&mut JsonWriter::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn observed_orders() {
        assert_eq!(
            member_order(["count", "buf-b64", "eof"]),
            ["count", "buf-b64", "eof"]
        );
        assert_eq!(member_order(["position", "eof"]), ["eof", "position"]);
        assert_eq!(member_order(["zone", "offset"]), ["zone", "offset"]);
        // load1m and load5m share a bucket: the later one comes first.
        assert_eq!(
            member_order(["load1m", "load5m", "load15m"]),
            ["load15m", "load5m", "load1m"]
        );
        let v = Out::List(vec![Obj::new().int("a", 1).str("b", "x").into(), Out::Unit]);
        assert_eq!(text(&v), r#"[{"a": 1, "b": "x"}, {}]"#);
    }
}
