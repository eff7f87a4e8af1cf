//! Streaming JSON output in qemu-ga's exact format (PROTOCOL.md §3,
//! "Output encoding"): separators `", "` and `": "`, pure ASCII (every
//! character outside `0x20..0x7F` escaped as `\uXXXX`, uppercase, with
//! surrogate pairs above the BMP), integers in decimal and other numbers as
//! C's `%.17g`.
//!
//! ```
//! use agent_core::writer::JsonWriter;
//!
//! let mut out = Vec::new();
//! let mut w = JsonWriter::new(&mut out);
//! w.begin_object().unwrap();
//! w.key("name").unwrap();
//! w.str("café\n").unwrap();
//! w.key("n").unwrap();
//! w.f64(0.1).unwrap();
//! w.end_object().unwrap();
//! assert_eq!(out, br#"{"name": "caf\u00E9\n", "n": 0.10000000000000001}"#);
//! ```

use core::fmt;

use embedded_io::Write;

use crate::json::{JsonStr, Number, Value, ValueKind};
use crate::qdict;

/// The output failed: the sink's write returned an error. The agent keeps
/// the sink's own error and returns it from [`Agent::feed`](crate::Agent::feed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SinkError;

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the output failed")
    }
}

/// Where JSON output goes. Every [`embedded_io::Write`] is one (its error
/// becomes a [`SinkError`]); the writer and replies take `&mut dyn Output`,
/// so command handlers do not depend on the sink's type.
pub trait Output {
    /// Write all of `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkError>;

    /// Send what is buffered (the agent calls it after each reply).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether a write of this output has failed (the agent asks, to tell
    /// its own output's failure from a failure of a handler's own sink).
    fn failed(&self) -> bool {
        false
    }
}

impl<W: Write + ?Sized> Output for W {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        Write::write_all(self, bytes).map_err(|_| SinkError)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Write::flush(self).map_err(|_| SinkError)
    }
}

/// An [`Output`] over an [`embedded_io::Write`] that keeps the sink's own
/// error, for callers that must return it.
pub(crate) struct Sink<'w, W: Write + ?Sized> {
    out: &'w mut W,
    error: Option<W::Error>,
}

impl<'w, W: Write + ?Sized> Sink<'w, W> {
    pub(crate) fn new(out: &'w mut W) -> Self {
        Sink { out, error: None }
    }

    /// `result` with a [`SinkError`] replaced by the sink's own error.
    /// (Only this sink's failures reach here: the dispatcher answers a
    /// command's failure of some other sink as a command failure.)
    pub(crate) fn result(self, result: Result<(), SinkError>) -> Result<(), W::Error> {
        match (result, self.error) {
            (Err(SinkError), Some(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

impl<W: Write + ?Sized> Output for Sink<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        Write::write_all(self.out, bytes).map_err(|e| {
            self.error = Some(e);
            SinkError
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Write::flush(self.out).map_err(|e| {
            self.error = Some(e);
            SinkError
        })
    }

    fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Where member `name` goes in an object qemu-ga writes: qemu-ga builds
/// results as `QDict`s, which write their members sorted by this number
/// (a hash bucket), the later-added first among equals. Members are added
/// in schema order. Adapters that build objects of several members sort
/// them by it to write them as qemu-ga does.
///
/// ```
/// use agent_core::writer::qdict_bucket;
///
/// // Why qemu-ga writes {"return": ..., "id": ...}:
/// assert!(qdict_bucket("return") < qdict_bucket("id"));
/// ```
pub fn qdict_bucket(name: &str) -> u32 {
    qdict::bucket(name.bytes())
}

/// Nesting the writer tracks separators for; deeper output is written but
/// its commas are not tracked.
const MAX_DEPTH: u32 = 64;

/// Writes one JSON value to `W`, inserting separators itself.
pub struct JsonWriter<'w> {
    out: &'w mut dyn Output,
    /// Bit `i`: the container at depth `i + 1` already has an element.
    started: u64,
    depth: u32,
    after_key: bool,
}

impl<'w> JsonWriter<'w> {
    /// A writer at the start of a value.
    pub fn new(out: &'w mut dyn Output) -> Self {
        JsonWriter {
            out,
            started: 0,
            depth: 0,
            after_key: false,
        }
    }

    /// The underlying sink (for raw bytes after the value is complete).
    pub fn inner(&mut self) -> &mut dyn Output {
        self.out
    }

    #[inline(never)]
    fn level_bit(&self) -> u64 {
        match self.depth {
            1..=MAX_DEPTH => 1u64 << (self.depth.saturating_sub(1)),
            _ => 0,
        }
    }

    /// Write a separator if this value is not the first in its container.
    fn before_value(&mut self) -> Result<(), SinkError> {
        if self.after_key {
            self.after_key = false;
            return Ok(());
        }
        let bit = self.level_bit();
        if self.started & bit != 0 {
            self.out.put(b", ")?;
        }
        self.started |= bit;
        Ok(())
    }

    /// `{`
    pub fn begin_object(&mut self) -> Result<(), SinkError> {
        self.begin(b"{")
    }

    /// `}`
    pub fn end_object(&mut self) -> Result<(), SinkError> {
        self.end(b"}")
    }

    /// `[`
    pub fn begin_array(&mut self) -> Result<(), SinkError> {
        self.begin(b"[")
    }

    /// `]`
    pub fn end_array(&mut self) -> Result<(), SinkError> {
        self.end(b"]")
    }

    fn begin(&mut self, open: &[u8]) -> Result<(), SinkError> {
        self.before_value()?;
        self.out.put(open)?;
        self.depth = self.depth.saturating_add(1);
        let bit = self.level_bit();
        self.started &= !bit;
        Ok(())
    }

    fn end(&mut self, close: &[u8]) -> Result<(), SinkError> {
        let bit = self.level_bit();
        self.started &= !bit;
        self.depth = self.depth.saturating_sub(1);
        self.out.put(close)
    }

    /// A member name inside an object; the member's value comes next.
    pub fn key(&mut self, name: &str) -> Result<(), SinkError> {
        self.before_value()?;
        escape_str(self.out, name)?;
        self.out.put(b": ")?;
        self.after_key = true;
        Ok(())
    }

    /// A member name taken from the input.
    pub fn json_key(&mut self, name: &JsonStr<'_>) -> Result<(), SinkError> {
        self.before_value()?;
        escape_chars(self.out, name.chars())?;
        self.out.put(b": ")?;
        self.after_key = true;
        Ok(())
    }

    /// A string value.
    pub fn str(&mut self, s: &str) -> Result<(), SinkError> {
        self.before_value()?;
        escape_str(self.out, s)
    }

    /// A string value from the input, re-escaped.
    pub fn json_str(&mut self, s: &JsonStr<'_>) -> Result<(), SinkError> {
        self.before_value()?;
        escape_chars(self.out, s.chars())
    }

    /// A string value that is the [`Display`](fmt::Display) text of `d`.
    pub fn display(&mut self, d: &dyn fmt::Display) -> Result<(), SinkError> {
        self.before_value()?;
        escape_display(self.out, d)
    }

    /// A string value whose body is already JSON-safe ASCII (for example
    /// base64), written as is. Bytes that would need escaping are escaped.
    pub fn ascii_str(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.before_value()?;
        self.out.put(b"\"")?;
        escape_body_bytes(self.out, bytes)?;
        self.out.put(b"\"")
    }

    /// Start a string value whose body is then streamed with
    /// [`string_chunk`](Self::string_chunk) and ended with
    /// [`end_string`](Self::end_string).
    pub fn begin_string(&mut self) -> Result<(), SinkError> {
        self.before_value()?;
        self.out.put(b"\"")
    }

    /// More of a string begun with [`begin_string`](Self::begin_string);
    /// `bytes` are ASCII (anything else is escaped byte by byte).
    pub fn string_chunk(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        escape_body_bytes(self.out, bytes)
    }

    /// End a string begun with [`begin_string`](Self::begin_string).
    pub fn end_string(&mut self) -> Result<(), SinkError> {
        self.out.put(b"\"")
    }

    /// `true` or `false`.
    pub fn bool(&mut self, v: bool) -> Result<(), SinkError> {
        self.before_value()?;
        self.out.put(if v { b"true" } else { b"false" })
    }

    /// `null`
    pub fn null(&mut self) -> Result<(), SinkError> {
        self.before_value()?;
        self.out.put(b"null")
    }

    /// A signed integer.
    pub fn i64(&mut self, v: i64) -> Result<(), SinkError> {
        self.before_value()?;
        if v < 0 {
            self.out.put(b"-")?;
        }
        write_decimal(self.out, v.unsigned_abs(), false)
    }

    /// An unsigned integer.
    pub fn u64(&mut self, v: u64) -> Result<(), SinkError> {
        self.before_value()?;
        write_decimal(self.out, v, false)
    }

    /// A floating-point number, as `%.17g` prints it.
    pub fn f64(&mut self, v: f64) -> Result<(), SinkError> {
        self.before_value()?;
        let mut buf = Buf::<40>::new();
        format_g17(v, &mut buf);
        self.out.put(buf.bytes())
    }

    /// Re-emit a value from the input the way qemu-ga writes it back: its
    /// objects in `QDict` order, strings re-escaped, numbers converted.
    ///
    /// Arrays and objects of fewer than two members are streamed token by
    /// token, at any depth. Objects that need reordering are reordered up
    /// to [`REORDER_DEPTH`] levels deep (each level costs stack); deeper
    /// ones keep the input's member order.
    pub fn value(&mut self, value: &Value<'_>) -> Result<(), SinkError> {
        self.before_value()?;
        emit_value(self.out, value, REORDER_DEPTH)
    }
}

/// How many levels of nested multi-member objects [`JsonWriter::value`]
/// reorders.
pub const REORDER_DEPTH: u32 = 8;

// Not inlined into the recursive `emit_value`, so its (float-formatting)
// frame is paid once at the leaf rather than at every level.
#[inline(never)]
fn emit_scalar(out: &mut dyn Output, value: &Value<'_>) -> Result<(), SinkError> {
    let mut w = JsonWriter::new(out);
    match value.kind() {
        ValueKind::String => match value.as_str() {
            Some(s) => w.json_str(&s),
            None => w.str(""),
        },
        ValueKind::Integer | ValueKind::Float => match value.as_number() {
            Some(Number::Int(v)) => w.i64(v),
            Some(Number::Uint(v)) => w.u64(v),
            Some(Number::Float(v)) => w.f64(v),
            None => w.i64(0),
        },
        ValueKind::True => w.bool(true),
        ValueKind::False => w.bool(false),
        ValueKind::Null | ValueKind::Object | ValueKind::Array => w.null(),
    }
}

fn needs_reordering(value: &Value<'_>) -> bool {
    value.kind() == ValueKind::Object && value.members().nth(1).is_some()
}

fn emit_value(out: &mut dyn Output, value: &Value<'_>, budget: u32) -> Result<(), SinkError> {
    if budget > 0 && needs_reordering(value) {
        return emit_reordered(out, value, budget);
    }
    if !matches!(value.kind(), ValueKind::Object | ValueKind::Array) {
        return emit_scalar(out, value);
    }
    emit_streamed(out, value, budget)
}

/// An object in `QDict` order, and the objects nested in it that need
/// reordering too, without recursion: each level is an entry of a small
/// array in this one frame (the object, its member order, the next
/// member). Arrays, large objects and scalars inside go through
/// [`emit_value`].
#[inline(never)]
fn emit_reordered(out: &mut dyn Output, value: &Value<'_>, budget: u32) -> Result<(), SinkError> {
    let Some((order, _)) = qdict::small_order(value) else {
        return emit_reordered_large(out, value, budget);
    };
    let mut levels = [Level {
        object: *value,
        order,
        next: 0,
    }; LEVELS];
    let mut depth = 1usize;
    out.put(b"{")?;
    while let Some(top) = depth.checked_sub(1).and_then(|d| levels.get_mut(d)) {
        let Some(offset) = top.order.offsets().nth(usize::from(top.next)) else {
            out.put(b"}")?;
            depth = depth.saturating_sub(1);
            continue;
        };
        let separator = top.next > 0;
        top.next = top.next.saturating_add(1);
        let object = top.object;
        let Some(member) = emit_member_head(out, &object, offset, separator)? else {
            continue;
        };
        // Members of the object at level `depth` have `budget - depth` left.
        let left = budget.saturating_sub(u32::try_from(depth).unwrap_or(u32::MAX));
        if left > 0 && needs_reordering(&member) {
            let order = qdict::small_order(&member).map(|(order, _)| order);
            if let (Some(order), Some(slot)) = (order, levels.get_mut(depth)) {
                *slot = Level {
                    object: member,
                    order,
                    next: 0,
                };
                depth = depth.saturating_add(1);
                out.put(b"{")?;
                continue;
            }
        }
        emit_value(out, &member, left)?;
    }
    Ok(())
}

/// Objects [`emit_reordered`] keeps in one frame; deeper ones start another
/// (fewer than [`REORDER_DEPTH`], so that objects inside arrays, which
/// start a frame each, cost little).
const LEVELS: usize = 4;

/// One object being written by [`emit_reordered`].
#[derive(Clone, Copy)]
struct Level<'a> {
    object: Value<'a>,
    order: qdict::SmallOrder,
    next: u8,
}

/// The separator and `"key": ` of the member at `offset` of `object`;
/// returns the member's value.
#[inline(never)]
fn emit_member_head<'a>(
    out: &mut dyn Output,
    object: &Value<'a>,
    offset: usize,
    separator: bool,
) -> Result<Option<Value<'a>>, SinkError> {
    let Some((key, member)) = object.member_at(offset) else {
        return Ok(None);
    };
    if separator {
        out.put(b", ")?;
    }
    emit_key(out, &key)?;
    Ok(Some(member))
}

/// `"key": `
#[inline(never)]
fn emit_key(out: &mut dyn Output, key: &JsonStr<'_>) -> Result<(), SinkError> {
    escape_chars(out, key.chars())?;
    out.put(b": ")
}

/// [`emit_reordered`] for objects too large for [`qdict::small_order`].
fn emit_reordered_large(
    out: &mut dyn Output,
    value: &Value<'_>,
    budget: u32,
) -> Result<(), SinkError> {
    out.put(b"{")?;
    let mut first = true;
    let mut result = Ok(());
    qdict::for_each_member_large(value, &mut |key, member| {
        let separator = if first { &b""[..] } else { b", " };
        first = false;
        result = out
            .put(separator)
            .and_then(|()| emit_key(out, &key))
            .and_then(|()| emit_value(out, &member, budget.saturating_sub(1)));
        result.is_ok()
    });
    result?;
    out.put(b"}")
}

/// A container streamed token by token; the input's separators are
/// exactly where the output needs them.
fn emit_streamed(out: &mut dyn Output, value: &Value<'_>, budget: u32) -> Result<(), SinkError> {
    let text = value.text();
    let mut at = 0usize;
    while let Some(rest) = text.get(at..).filter(|r| !r.is_empty()) {
        let blank = crate::scan::whitespace_len(rest);
        let rest = rest.get(blank..).unwrap_or_default();
        at = at.saturating_add(blank);
        let Some(&first) = rest.first() else {
            break;
        };
        let separator: &[u8] = match first {
            b'{' => match Value::first_unchecked(rest) {
                Some(object) if budget > 0 && needs_reordering(&object) => {
                    emit_reordered(out, &object, budget)?;
                    at = at.saturating_add(object.text().len());
                    continue;
                }
                _ => b"{",
            },
            b'}' => b"}",
            b'[' => b"[",
            b']' => b"]",
            b',' => b", ",
            b':' => b": ",
            _ => {
                let Some(scalar) = Value::first_unchecked(rest) else {
                    break;
                };
                emit_scalar(out, &scalar)?;
                at = at.saturating_add(scalar.text().len());
                continue;
            }
        };
        out.put(separator)?;
        at = at.saturating_add(1);
    }
    Ok(())
}

impl JsonWriter<'_> {
    /// Whether the writer is at the top level (no container open).
    pub fn is_top_level(&self) -> bool {
        self.depth == 0
    }
}

/// A small stack buffer implementing [`fmt::Write`]; output that does not
/// fit is dropped.
pub(crate) struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    pub(crate) const fn new() -> Self {
        Buf {
            bytes: [0; N],
            len: 0,
        }
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
    #[inline(never)]
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len = self.len.saturating_add(1);
        }
    }
}

impl<const N: usize> fmt::Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            self.push(b);
        }
        Ok(())
    }
}

/// Upper-case hexadecimal digits, as QEMU's `\uXXXX` escapes use them.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `v / 10` and `v % 10`, by the machine's division on 64-bit targets.
#[cfg(target_pointer_width = "64")]
fn div_rem_10(v: u64) -> (u64, u8) {
    (v / 10, (v % 10) as u8)
}

/// `v / 10` and `v % 10` with 32-bit divisions only, 16 bits at a time:
/// 32-bit targets have no 64-bit divide, and the library routine for one
/// costs more code than all of this.
#[cfg(not(target_pointer_width = "64"))]
fn div_rem_10(v: u64) -> (u64, u8) {
    let mut quotient = 0u64;
    let mut rem = 0u32;
    for shift in [48u32, 32, 16, 0] {
        // rem < 10, so this is below 10 × 2^16.
        let chunk = (rem << 16) | ((v >> shift) as u32 & 0xFFFF);
        quotient |= u64::from(chunk / 10) << shift;
        rem = chunk % 10;
    }
    (quotient, rem as u8)
}

/// `v` in decimal, for `Display` impls: without `core::fmt`'s integer
/// formatting, which costs a bare-metal image over a kilobyte.
pub(crate) fn fmt_decimal(f: &mut fmt::Formatter<'_>, v: u64) -> fmt::Result {
    /// The digits [`write_decimal`] writes, to a formatter.
    struct Digits<'f, 'g>(&'f mut fmt::Formatter<'g>);
    impl Output for Digits<'_, '_> {
        fn put(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
            const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
            for &digit in bytes {
                let text = DIGITS.get(usize::from(digit & 0xF)).copied().unwrap_or("0");
                self.0.write_str(text).map_err(|_| SinkError)?;
            }
            Ok(())
        }
    }
    write_decimal(&mut Digits(f), v, false).map_err(|_| fmt::Error)
}

/// `v` in decimal, and if `close`, `}` and the newline that end a reply,
/// in one write.
pub(crate) fn write_decimal(
    out: &mut dyn Output,
    mut v: u64,
    close: bool,
) -> Result<(), SinkError> {
    let mut digits = [0u8; 22];
    let [.., brace, newline] = &mut digits;
    (*brace, *newline) = (b'}', b'\n');
    let end = if close { digits.len() } else { 20 };
    let mut start = 20usize;
    while let Some(slot) = start.checked_sub(1).and_then(|i| digits.get_mut(i)) {
        let (q, d) = div_rem_10(v);
        *slot = b'0' | d;
        start = start.saturating_sub(1);
        v = q;
        if v == 0 {
            break;
        }
    }
    out.put(digits.get(start..end).unwrap_or_default())
}

/// Format `v` as C's `printf("%.17g", v)` (QEMU's double output).
fn format_g17<const N: usize>(v: f64, out: &mut Buf<N>) {
    use fmt::Write as _;
    if v.is_nan() {
        let _ = out.write_str(if v.is_sign_negative() { "-nan" } else { "nan" });
        return;
    }
    if v.is_infinite() {
        let _ = out.write_str(if v < 0.0 { "-inf" } else { "inf" });
        return;
    }
    if v == 0.0 {
        let _ = out.write_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // 17 significant digits, correctly rounded: d.dddddddddddddddd × 10^exp.
    let (digits, exp) = crate::float::significant_digits(v);
    let significant = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |p| p.saturating_add(1));
    let digits = digits.get(..significant).unwrap_or_default();
    if v < 0.0 {
        out.push(b'-');
    }
    if !(-4..17).contains(&exp) {
        let (first, rest) = digits.split_first().unwrap_or((&b'0', &[]));
        out.push(*first);
        if !rest.is_empty() {
            out.push(b'.');
            rest.iter().for_each(|&d| out.push(d));
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        // At least two digits, as %e prints them (|exp| <= 324).
        let e = exp.unsigned_abs();
        if e >= 100 {
            out.push(b'0' | (e / 100 % 10) as u8);
        }
        out.push(b'0' | (e / 10 % 10) as u8);
        out.push(b'0' | (e % 10) as u8);
    } else if exp >= 0 {
        let int_len = (exp as usize).saturating_add(1);
        for i in 0..int_len {
            out.push(digits.get(i).copied().unwrap_or(b'0'));
        }
        if let Some(frac) = digits.get(int_len..).filter(|f| !f.is_empty()) {
            out.push(b'.');
            frac.iter().for_each(|&d| out.push(d));
        }
    } else {
        let _ = out.write_str("0.");
        for _ in 0..exp.unsigned_abs().saturating_sub(1) {
            out.push(b'0');
        }
        digits.iter().for_each(|&d| out.push(d));
    }
}

/// Whether `byte` can be written inside a string as it is.
const fn is_safe(byte: u8) -> bool {
    byte >= 0x20 && byte < 0x7F && byte != b'"' && byte != b'\\'
}

fn escape_char(out: &mut dyn Output, ch: char) -> Result<(), SinkError> {
    let short: &[u8] = match ch {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '\u{8}' => b"\\b",
        '\u{c}' => b"\\f",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        _ => b"",
    };
    if !short.is_empty() {
        return out.put(short);
    }
    let cp = u32::from(ch);
    if (0x20..0x7F).contains(&cp) {
        return out.put(&[cp as u8]);
    }
    let mut units = [0u16; 2];
    for &unit in ch.encode_utf16(&mut units).iter() {
        let hex = |shift: u16| {
            HEX.get(usize::from((unit >> shift) & 0xF))
                .copied()
                .unwrap_or(b'0')
        };
        out.put(&[b'\\', b'u', hex(12), hex(8), hex(4), hex(0)])?;
    }
    Ok(())
}

/// Write `s` as a quoted JSON string.
pub(crate) fn escape_str(out: &mut dyn Output, s: &str) -> Result<(), SinkError> {
    out.put(b"\"")?;
    escape_str_body(out, s)?;
    out.put(b"\"")
}

fn escape_str_body(out: &mut dyn Output, s: &str) -> Result<(), SinkError> {
    let mut rest = s;
    while !rest.is_empty() {
        let safe = rest.bytes().take_while(|&b| is_safe(b)).count();
        // `safe` ends at a character boundary: the bytes are ASCII.
        let Some((run, tail)) = rest.split_at_checked(safe) else {
            break;
        };
        if !run.is_empty() {
            out.put(run.as_bytes())?;
        }
        let mut chars = tail.chars();
        if let Some(ch) = chars.next() {
            escape_char(out, ch)?;
        }
        rest = chars.as_str();
    }
    Ok(())
}

/// Body bytes that should be ASCII: safe runs as they are, others escaped
/// one by one (as Latin-1, never producing invalid output).
/// Whether all eight bytes of `word` can be written as they are (SWAR:
/// no byte below 0x20 or above 0x7E, none `"` or `\`).
const fn word_is_safe(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const fn has_zero(w: u64) -> bool {
        w.wrapping_sub(ONES) & !w & HIGHS != 0
    }
    // Any byte < 0x20 (exact for bytes < 0x80, which the next test covers).
    let below_space = word.wrapping_sub(ONES.wrapping_mul(0x20)) & !word & HIGHS != 0;
    !(below_space
        || word & HIGHS != 0
        || has_zero(word ^ ONES.wrapping_mul(0x7F))
        || has_zero(word ^ ONES.wrapping_mul(b'"' as u64))
        || has_zero(word ^ ONES.wrapping_mul(b'\\' as u64)))
}

/// How many bytes at the start of `bytes` can be written as they are:
/// eight at a time, then one at a time.
fn safe_prefix(bytes: &[u8]) -> usize {
    // A file read's base64 is all safe: long runs go on in 64-byte blocks.
    crate::scan::plain_run(bytes, safe_words, is_safe)
}

fn safe_words(bytes: &[u8]) -> usize {
    let words = bytes
        .chunks_exact(8)
        .take_while(|chunk| {
            <[u8; 8]>::try_from(*chunk).is_ok_and(|w| word_is_safe(u64::from_le_bytes(w)))
        })
        .count();
    let start = words.saturating_mul(8);
    let tail = bytes.get(start..).unwrap_or_default();
    start.saturating_add(tail.iter().take_while(|&&b| is_safe(b)).count())
}

fn escape_body_bytes(out: &mut dyn Output, bytes: &[u8]) -> Result<(), SinkError> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let safe = safe_prefix(rest);
        let (run, tail) = rest.split_at(safe);
        if !run.is_empty() {
            out.put(run)?;
        }
        if let Some((&b, tail)) = tail.split_first() {
            escape_char(out, char::from(b))?;
            rest = tail;
        } else {
            rest = tail;
        }
    }
    Ok(())
}

/// Write the characters of `chars` as a quoted JSON string.
pub(crate) fn escape_chars(
    out: &mut dyn Output,
    chars: impl Iterator<Item = char>,
) -> Result<(), SinkError> {
    out.put(b"\"")?;
    let mut buf = Buf::<64>::new();
    for ch in chars {
        if ch.is_ascii() && is_safe(ch as u8) {
            buf.push(ch as u8);
            if buf.len == buf.bytes.len() {
                out.put(buf.bytes())?;
                buf.len = 0;
            }
            continue;
        }
        out.put(buf.bytes())?;
        buf.len = 0;
        escape_char(out, ch)?;
    }
    out.put(buf.bytes())?;
    out.put(b"\"")
}

/// Adapts a sink to [`fmt::Write`], escaping as it goes.
struct Escaper<'a> {
    out: &'a mut dyn Output,
    error: Option<SinkError>,
}

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_str_body(self.out, s).map_err(|e| {
            self.error = Some(e);
            fmt::Error
        })
    }
}

/// Write the [`Display`](fmt::Display) text of `d` as a quoted JSON string.
pub(crate) fn escape_display(out: &mut dyn Output, d: &dyn fmt::Display) -> Result<(), SinkError> {
    out.put(b"\"")?;
    let mut escaper = Escaper {
        out: &mut *out,
        error: None,
    };
    if fmt::Write::write_fmt(&mut escaper, format_args!("{d}")).is_err() {
        if let Some(e) = escaper.error {
            return Err(e);
        }
    }
    out.put(b"\"")
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
    use std::string::String;
    use std::vec::Vec;

    fn g(v: f64) -> String {
        let mut buf = Buf::<40>::new();
        format_g17(v, &mut buf);
        String::from_utf8(buf.bytes().to_vec()).unwrap()
    }

    #[test]
    fn percent_17g() {
        // Reference values from glibc's printf("%.17g").
        for (v, s) in [
            (1.0, "1"),
            (0.1, "0.10000000000000001"),
            (100.0, "100"),
            (1e-7, "9.9999999999999995e-08"),
            (1.5, "1.5"),
            (-0.0, "-0"),
            ("123456789.123456789".parse().unwrap(), "123456789.12345679"),
            (5e-324, "4.9406564584124654e-324"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
            (-1.8446744073709552e19, "-1.8446744073709552e+19"),
            (1e300, "1.0000000000000001e+300"),
        ] {
            assert_eq!(g(v), s, "{v:e}");
        }
    }

    #[test]
    fn word_check_agrees_with_byte_check() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly safe bytes, with an unsafe one now and then.
            let mut bytes = [0u8; 8];
            for (i, b) in bytes.iter_mut().enumerate() {
                let r = (x >> (i * 8)) as u8;
                *b = if r.is_multiple_of(16) {
                    r / 2
                } else {
                    0x20 + r % 0x5F
                };
            }
            let expected = bytes.iter().all(|&b| is_safe(b));
            assert_eq!(
                word_is_safe(u64::from_le_bytes(bytes)),
                expected,
                "{bytes:?}"
            );
        }
        for b in 0..=255u8 {
            assert_eq!(word_is_safe(u64::from_le_bytes([b; 8])), is_safe(b), "{b}");
            let mut one = *b"abcdefgh";
            one[5] = b;
            assert_eq!(word_is_safe(u64::from_le_bytes(one)), is_safe(b), "{b}");
            assert_eq!(safe_prefix(&one), if is_safe(b) { 8 } else { 5 });
            // Every place of the 64-byte blocks (feature `speed`) and of
            // the words after them.
            for at in [0, 1, 7, 8, 63, 64, 65, 127, 128, 150, 199] {
                let mut long = [b'a'; 200];
                long[at] = b;
                let expected = if is_safe(b) { 200 } else { at };
                assert_eq!(safe_prefix(&long), expected, "{b} at {at}");
            }
        }
    }

    #[test]
    fn escaping_is_ascii() {
        let mut out = Vec::new();
        escape_str(&mut out, "a\"\\\u{8}\u{c}\n\r\t\u{1}\u{7f}é😀/").unwrap();
        assert_eq!(out, br#""a\"\\\b\f\n\r\t\u0001\u007F\u00E9\uD83D\uDE00/""#);
        let mut out = Vec::new();
        escape_chars(&mut out, "x\0y".chars()).unwrap();
        assert_eq!(out, br#""x\u0000y""#);
    }

    #[test]
    fn value_round_trip_in_qemu_format() {
        let v =
            Value::parse(br#"{'b': [1,2.50, -0, 1e2, "\u00e9"], "a":{}, "c":null,"return":true}"#)
                .unwrap();
        let mut out = Vec::new();
        JsonWriter::new(&mut out).value(&v).unwrap();
        let text = String::from_utf8(out).unwrap();
        // Member order is QDict order, not the input's.
        let mut members: Vec<&str> = [
            "\"a\": {}",
            "\"b\": [1, 2.5, 0, 100, \"\\u00E9\"]",
            "\"c\": null",
            "\"return\": true",
        ]
        .to_vec();
        members.sort_by_key(|m| {
            let key = &m[1..m[1..].find('"').unwrap() + 1];
            qdict::bucket(key.bytes())
        });
        assert_eq!(text, std::format!("{{{}}}", members.join(", ")));
    }

    #[test]
    fn nested_separators() {
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin_array().unwrap();
        w.begin_object().unwrap();
        w.key("a").unwrap();
        w.begin_array().unwrap();
        w.u64(1).unwrap();
        w.u64(2).unwrap();
        w.end_array().unwrap();
        w.key("b").unwrap();
        w.begin_object().unwrap();
        w.end_object().unwrap();
        w.end_object().unwrap();
        w.i64(-3).unwrap();
        w.end_array().unwrap();
        assert_eq!(out, br#"[{"a": [1, 2], "b": {}}, -3]"#);
    }
}
