//! Responses: `{"return": ...}` and `{"error": ...}` with the request's
//! `id`, one per line, and the 0xFF sentinel before a
//! `guest-sync-delimited` answer.
//!
//! A command handler gets a [`Reply`] and must spend it exactly once:
//! [`Reply::ok`] streams a return value, [`Reply::ok_empty`] returns `{}`,
//! [`Reply::error`] sends an error. Each yields a [`Replied`] token, which is
//! the only way for a handler to return successfully.
//!
//! ```
//! use agent_core::Reply;
//!
//! let mut out = Vec::new();
//! let mut reply = Reply::detached(&mut out);
//! reply.delimit();
//! let mut value = reply.ok().unwrap();
//! value.i64(42).unwrap();
//! let _sent = value.finish().unwrap();
//! assert_eq!(out, b"\xff{\"return\": 42}\n");
//! ```

use core::cell::Cell;
use core::fmt;
use core::ops::{Deref, DerefMut};

use crate::json::Value;
use crate::writer::{escape_display, JsonWriter, Output, SinkError};

/// The `class` member of an error response (QAPI's `QapiErrorClass`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ErrorClass {
    /// Every error but the two below (all of qemu-ga's command errors).
    GenericError,
    /// Unknown or disabled command.
    CommandNotFound,
    /// Part of QAPI's enum; unused by qemu-ga.
    DeviceNotActive,
    /// Part of QAPI's enum; unused by qemu-ga.
    DeviceNotFound,
    /// Part of QAPI's enum; unused by qemu-ga.
    KvmMissingCap,
}

impl ErrorClass {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KvmMissingCap => "KVMMissingCap",
        }
    }
}

/// Proof that a reply was sent (or deliberately not sent, for a command
/// without success response).
#[derive(Debug)]
#[must_use]
pub struct Replied {
    _sealed: (),
}

/// The right to answer one request: spend it once with [`ok`](Self::ok),
/// [`ok_empty`](Self::ok_empty) or [`error`](Self::error).
pub struct Reply<'r> {
    out: &'r mut dyn Output,
    id: Option<Value<'r>>,
    delimit: bool,
    success_response: bool,
    /// Set once the reply starts going out (the dispatcher's: a handler
    /// that fails after that gets its line broken off, not a second reply).
    begun: Option<&'r Cell<bool>>,
}

impl<'r> Reply<'r> {
    pub(crate) fn new(
        out: &'r mut dyn Output,
        id: Option<Value<'r>>,
        success_response: bool,
        begun: Option<&'r Cell<bool>>,
    ) -> Self {
        Reply {
            out,
            id,
            delimit: false,
            success_response,
            begun,
        }
    }

    /// A reply to a request without `id`, for use outside an agent (tests,
    /// examples, adapters that answer on their own).
    pub fn detached(out: &'r mut dyn Output) -> Self {
        Self::new(out, None, true, None)
    }

    /// The reply starts going out: the sentinel, if asked for.
    fn begin(&mut self) -> Result<(), SinkError> {
        if let Some(begun) = self.begun {
            begun.set(true);
        }
        if self.delimit {
            self.out.put(&[crate::SENTINEL])?;
        }
        Ok(())
    }

    /// Send the 0xFF sentinel before this reply (`guest-sync-delimited`).
    pub fn delimit(&mut self) {
        self.delimit = true;
    }

    /// Start a successful reply; write the value with the returned writer,
    /// then call [`ReturnWriter::finish`].
    pub fn ok(self) -> Result<ReturnWriter<'r>, SinkError> {
        if let Some(begun) = self.begun {
            begun.set(true);
        }
        // The sentinel and the head in one write.
        const _: () = assert!(crate::SENTINEL == 0xFF);
        let head = b"\xff{\"return\": ";
        let skip = usize::from(!self.delimit);
        self.out.put(head.get(skip..).unwrap_or_default())?;
        Ok(ReturnWriter {
            json: JsonWriter::new(self.out),
            id: self.id,
        })
    }

    /// A successful reply without a value (`{"return": {}}`), or nothing at
    /// all if the command is registered without success response.
    pub fn ok_empty(mut self) -> Result<Replied, SinkError> {
        if !self.success_response {
            return Ok(Replied { _sealed: () });
        }
        if self.id.is_some() {
            let mut value = self.ok()?;
            value.json.inner().put(b"{}")?;
            return value.finish();
        }
        self.begin()?;
        self.out.put(b"{\"return\": {}}\n")?;
        Ok(Replied { _sealed: () })
    }

    /// An error reply.
    pub fn error(
        mut self,
        class: ErrorClass,
        desc: &dyn fmt::Display,
    ) -> Result<Replied, SinkError> {
        self.begin()?;
        write_error(self.out, self.id.as_ref(), class, desc)?;
        Ok(Replied { _sealed: () })
    }
}

/// Writes the value of a successful reply; dereferences to [`JsonWriter`].
pub struct ReturnWriter<'r> {
    json: JsonWriter<'r>,
    id: Option<Value<'r>>,
}

impl<'r> ReturnWriter<'r> {
    /// The value is integer `v`, and the reply ends (the sync commands'
    /// answer: without an `id`, the digits and the end of the line go in
    /// one write).
    pub(crate) fn finish_i64(mut self, v: i64) -> Result<Replied, SinkError> {
        let out = self.json.inner();
        if v < 0 {
            out.put(b"-")?;
        }
        let close = self.id.is_none();
        crate::writer::write_decimal(out, v.unsigned_abs(), close)?;
        if close {
            return Ok(Replied { _sealed: () });
        }
        self.finish()
    }

    /// End the reply: the `id` member, if any, the closing brace and the
    /// newline.
    pub fn finish(mut self) -> Result<Replied, SinkError> {
        if let Some(id) = self.id {
            self.json.inner().put(b", \"id\": ")?;
            JsonWriter::new(self.json.inner()).value(&id)?;
        }
        self.json.inner().put(b"}\n")?;
        Ok(Replied { _sealed: () })
    }
}

impl<'r> ReturnWriter<'r> {
    /// Break off a reply that cannot be completed truthfully (its data
    /// failed half-way, after part of it was sent): end the line without
    /// closing the value, so that no JSON parser accepts it as a success.
    /// A newline inside a string is a control character, which JSON and
    /// QEMU's lexer reject; outside one, the value is left unterminated
    /// and the next reply's `{` cannot continue it. Line-based clients
    /// (libvirt) see a complete line at once instead of waiting.
    ///
    /// ```
    /// use agent_core::Reply;
    ///
    /// let mut out = Vec::new();
    /// let mut w = Reply::detached(&mut out).ok().unwrap();
    /// w.begin_object().unwrap();
    /// w.key("buf-b64").unwrap();
    /// w.begin_string().unwrap();
    /// w.string_chunk(b"QUJD").unwrap();
    /// let _replied = w.abort().unwrap();
    /// assert_eq!(out, b"{\"return\": {\"buf-b64\": \"QUJD\n");
    /// assert!(agent_core::json::Value::parse(&out).is_err());
    /// ```
    pub fn abort(mut self) -> Result<Replied, SinkError> {
        self.json.inner().put(b"\n")?;
        Ok(Replied { _sealed: () })
    }
}

impl<'r> Deref for ReturnWriter<'r> {
    type Target = JsonWriter<'r>;
    fn deref(&self) -> &Self::Target {
        &self.json
    }
}

impl DerefMut for ReturnWriter<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.json
    }
}

/// Write `{"id": <id>, "error": {"class": <class>, "desc": <desc>}}` and a
/// newline (qemu-ga's member order), `id` only if given.
pub(crate) fn write_error(
    out: &mut dyn Output,
    id: Option<&Value<'_>>,
    class: ErrorClass,
    desc: &dyn fmt::Display,
) -> Result<(), SinkError> {
    out.put(b"{")?;
    if let Some(id) = id {
        out.put(b"\"id\": ")?;
        JsonWriter::new(&mut *out).value(id)?;
        out.put(b", ")?;
    }
    out.put(b"\"error\": {\"class\": \"")?;
    out.put(class.as_str().as_bytes())?;
    out.put(b"\", \"desc\": ")?;
    escape_display(out, desc)?;
    out.put(b"}}\n")
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
    use std::vec::Vec;

    #[test]
    fn error_with_and_without_id() {
        let id = Value::parse(br#"{"b": 'x', "a": [1.0]}"#).unwrap();
        let mut out = Vec::new();
        write_error(
            &mut out,
            Some(&id),
            ErrorClass::CommandNotFound,
            &"no \"such\"",
        )
        .unwrap();
        assert_eq!(
            out,
            b"{\"id\": {\"a\": [1], \"b\": \"x\"}, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no \\\"such\\\"\"}}\n"
        );
        let mut out = Vec::new();
        write_error(&mut out, None, ErrorClass::GenericError, &"x").unwrap();
        assert_eq!(
            out,
            b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"x\"}}\n"
        );
    }

    #[test]
    fn ok_with_id_and_no_success_response() {
        let id = Value::parse(b"7").unwrap();
        let mut out = Vec::new();
        let _ = Reply::new(&mut out, Some(id), true, None)
            .ok_empty()
            .unwrap();
        assert_eq!(out, b"{\"return\": {}, \"id\": 7}\n");
        let mut out = Vec::new();
        let _ = Reply::new(&mut out, Some(id), false, None)
            .ok_empty()
            .unwrap();
        assert!(out.is_empty());
    }
}
