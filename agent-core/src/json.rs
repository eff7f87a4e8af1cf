//! Zero-copy views of JSON values the parser has accepted: values,
//! strings, numbers, object members and array elements, read straight
//! from the request's bytes.
//!
//! A [`Value`] exists only for accepted text: the agent hands commands the
//! views of a validated request, and [`Value::parse`] checks its input
//! against QEMU's grammar first. So the views find where tokens and values
//! end by a quick scan instead of lexing again (and on anything else they
//! would stop early rather than panic).
//!
//! ```
//! use agent_core::json::{Value, ValueKind};
//!
//! let value = Value::parse(br#"{"id": 'x\u00e9', "n": [1, 2.5]}"#).unwrap();
//! assert_eq!(value.kind(), ValueKind::Object);
//! let id = value.get("id").unwrap().as_str().unwrap();
//! assert!(id.eq_str("xé"));
//! assert_eq!(value.get("n").unwrap().elements().count(), 2);
//! assert!(Value::parse(b"[01]").is_err());
//! ```

use crate::parser::{self, ParseError};
use crate::{scan, unicode};

/// What kind of JSON value a [`Value`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ValueKind {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// A string.
    String,
    /// A number without fraction or exponent.
    Integer,
    /// A number with a fraction or an exponent.
    Float,
    /// `true`
    True,
    /// `false`
    False,
    /// `null`
    Null,
}

impl ValueKind {
    /// The kind of the value whose text starts with `first`, in accepted
    /// text; numbers are [`Integer`](Self::Integer) here.
    fn of_first_byte(first: u8) -> Option<ValueKind> {
        Some(match first {
            b'{' => ValueKind::Object,
            b'[' => ValueKind::Array,
            b'"' | b'\'' => ValueKind::String,
            b't' => ValueKind::True,
            b'f' => ValueKind::False,
            b'n' => ValueKind::Null,
            b'-' | b'0'..=b'9' => ValueKind::Integer,
            _ => return None,
        })
    }
}

/// A view of one complete JSON value the parser accepted: its kind and
/// its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Value<'a> {
    kind: ValueKind,
    text: &'a [u8],
}

impl<'a> Value<'a> {
    /// Check `input` against QEMU's grammar (whitespace around the value
    /// is allowed, anything else is not) and view the value.
    ///
    /// ```
    /// use agent_core::json::Value;
    ///
    /// assert_eq!(Value::parse(b" [1, 'a'] ").unwrap().text(), b"[1, 'a']");
    /// assert_eq!(
    ///     Value::parse(b"{'a': tru}").unwrap_err().to_string(),
    ///     "JSON parse error, invalid keyword 'tru'"
    /// );
    /// ```
    pub fn parse(input: &'a [u8]) -> Result<Value<'a>, ParseError<'a>> {
        parser::validate(input)?;
        let start = scan::whitespace_len(input);
        let text = input.get(start..).unwrap_or_default();
        Value::first_unchecked(text).ok_or(ParseError::PrematureEnd)
    }

    /// The value at the start of `text` (at its first token), which the
    /// parser accepted.
    pub(crate) fn first_unchecked(text: &'a [u8]) -> Option<Value<'a>> {
        let len = scan::value_len_unchecked(text)?;
        Value::of_token_unchecked(text.get(..len)?)
    }

    /// `text`, one whole value of `kind` the parser accepted.
    pub(crate) fn from_parts_unchecked(kind: ValueKind, text: &'a [u8]) -> Value<'a> {
        Value { kind, text }
    }

    /// `text`, exactly one whole value the parser accepted.
    pub(crate) fn of_token_unchecked(text: &'a [u8]) -> Option<Value<'a>> {
        let mut kind = ValueKind::of_first_byte(*text.first()?)?;
        if kind == ValueKind::Integer && text.iter().any(|&b| matches!(b, b'.' | b'e' | b'E')) {
            kind = ValueKind::Float;
        }
        Some(Value { kind, text })
    }

    /// The kind of value.
    pub fn kind(&self) -> ValueKind {
        self.kind
    }

    /// The value's bytes, as received.
    pub fn text(&self) -> &'a [u8] {
        self.text
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<JsonStr<'a>> {
        (self.kind == ValueKind::String).then_some(JsonStr { raw: self.text })
    }

    /// The number, if this is one (integers as QEMU converts them: `i64`,
    /// else `u64`, else `f64`).
    pub fn as_number(&self) -> Option<Number> {
        match self.kind {
            ValueKind::Integer => Some(Number::from_integer_text(self.text)),
            ValueKind::Float => Some(Number::Float(crate::float::parse(self.text)?)),
            _ => None,
        }
    }

    /// The integer, if this is a JSON integer that fits `i64` (QAPI's
    /// `int` type).
    pub fn as_i64(&self) -> Option<i64> {
        match self.as_number()? {
            Number::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The boolean, if this is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            ValueKind::True => Some(true),
            ValueKind::False => Some(false),
            _ => None,
        }
    }

    /// The members of an object, in document order (none otherwise).
    #[inline(never)]
    pub fn members(&self) -> Members<'a> {
        Members {
            text: self.text,
            pos: if self.kind == ValueKind::Object {
                1
            } else {
                self.text.len()
            },
        }
    }

    /// The keys of an object's members, each with the offset in the
    /// object's text where its member starts (for [`Value::member_at`]).
    pub(crate) fn keys_with_offsets(&self) -> impl Iterator<Item = (usize, JsonStr<'a>)> {
        let mut members = self.members();
        core::iter::from_fn(move || {
            let offset = members.pos;
            members.next().map(|(key, _)| (offset, key))
        })
    }

    /// The member of an object that starts at `offset` of its text, as
    /// [`Value::keys_with_offsets`] reported it.
    pub(crate) fn member_at(&self, offset: usize) -> Option<(JsonStr<'a>, Value<'a>)> {
        Members {
            text: self.text,
            pos: offset.min(self.text.len()),
        }
        .next()
    }

    /// The elements of an array, in order (none otherwise).
    pub fn elements(&self) -> Elements<'a> {
        Elements {
            text: self.text,
            pos: if self.kind == ValueKind::Array {
                1
            } else {
                self.text.len()
            },
        }
    }

    /// The value of member `name` of an object.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.members()
            .find(|(key, _)| key.eq_str(name))
            .map(|(_, value)| value)
    }
}

/// A JSON number as QEMU stores it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Number {
    /// An integer that fits `i64`.
    Int(i64),
    /// A non-negative integer that fits `u64` but not `i64`.
    Uint(u64),
    /// Anything else (fraction, exponent, or an integer too large).
    Float(f64),
}

impl Number {
    /// Convert the text of an integer token (`-?[0-9]+`, as the lexer
    /// accepts it) as QEMU's parser does: `i64` if it fits, else `u64`,
    /// else the nearest double.
    fn from_integer_text(text: &[u8]) -> Number {
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        // The magnitude, if it fits u64.
        let magnitude = digits.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?
                .checked_add(u64::from(d.wrapping_sub(b'0')))
        });
        match magnitude {
            Some(m) if !negative => match i64::try_from(m) {
                Ok(v) => Number::Int(v),
                Err(_) => Number::Uint(m),
            },
            Some(m) if m <= i64::MIN.unsigned_abs() => {
                Number::Int(0i64.checked_sub_unsigned(m).unwrap_or(i64::MIN))
            }
            _ => Number::Float(crate::float::parse(text).unwrap_or(f64::NAN)),
        }
    }
}

/// The members of an object: key and value pairs.
#[derive(Clone, Debug)]
pub struct Members<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Members<'_> {
    /// Where the next member starts, as a byte offset into the object's
    /// text (see [`Value::member_at`]).
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Members<'a> {
    /// The next member, and where its key starts and its value ends in the
    /// object's text.
    pub(crate) fn next_pair(&mut self) -> Option<(JsonStr<'a>, Value<'a>, usize, usize)> {
        let text = self.text;
        let at = self
            .pos
            .saturating_add(scan::whitespace_len(text.get(self.pos..)?));
        let rest = text.get(at..)?;
        if !matches!(rest.first(), Some(b'"' | b'\'')) {
            self.pos = text.len();
            return None; // `}` (or text the parser did not accept)
        }
        let key_len = scan::string_len_unchecked(rest)?;
        let key = JsonStr {
            raw: rest.get(..key_len)?,
        };
        let key_at = at;
        let mut at = at.saturating_add(key_len);
        at = at.saturating_add(scan::whitespace_len(text.get(at..)?));
        if text.get(at) != Some(&b':') {
            self.pos = text.len();
            return None;
        }
        at = at.saturating_add(1);
        at = at.saturating_add(scan::whitespace_len(text.get(at..)?));
        let value = Value::first_unchecked(text.get(at..)?)?;
        let end = at.saturating_add(value.text.len());
        self.pos = skip_comma(text, end);
        Some((key, value, key_at, end))
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (JsonStr<'a>, Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        self.next_pair().map(|(key, value, _, _)| (key, value))
    }
}

/// The elements of an array.
#[derive(Clone, Debug)]
pub struct Elements<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;
    fn next(&mut self) -> Option<Value<'a>> {
        let text = self.text;
        let at = self
            .pos
            .saturating_add(scan::whitespace_len(text.get(self.pos..)?));
        match text.get(at) {
            None | Some(b']') => {
                self.pos = text.len();
                return None;
            }
            Some(_) => {}
        }
        let value = Value::first_unchecked(text.get(at..)?)?;
        self.pos = skip_comma(text, at.saturating_add(value.text.len()));
        Some(value)
    }
}

/// Past the whitespace and the comma (if any) after a value ending at `at`.
#[inline(never)]
fn skip_comma(text: &[u8], at: usize) -> usize {
    let at = at.saturating_add(scan::whitespace_len(text.get(at..).unwrap_or_default()));
    if text.get(at) == Some(&b',') {
        at.saturating_add(1)
    } else {
        at
    }
}

/// A string token, quotes and escapes still in place; decoded on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct JsonStr<'a> {
    raw: &'a [u8],
}

impl<'a> JsonStr<'a> {
    /// View a string token (quotes included) that the parser accepted.
    pub(crate) fn from_token(raw: &'a [u8]) -> Self {
        JsonStr { raw }
    }

    /// The token as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The decoded characters (`\u0000` gives `'\0'`).
    #[inline(never)]
    pub fn chars(&self) -> StrChars<'a> {
        let body = self
            .raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default();
        StrChars { rest: body }
    }

    /// The string's bytes as QEMU stores them (modified UTF-8), one at a time.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + Clone + 'a {
        // Plain ASCII decodes to itself; anything else is decoded.
        let (plain, chars) = match self.plain() {
            Some(body) => (body, StrChars { rest: &[] }),
            None => (&[][..], self.chars()),
        };
        plain.iter().copied().chain(chars.flat_map(|ch| {
            let mut buf = [0u8; 4];
            let len = unicode::encode_mod_utf8(ch, &mut buf).len();
            buf.into_iter().take(len)
        }))
    }

    /// The body, if it is ASCII without escapes (so it is its own text).
    pub(crate) fn plain(&self) -> Option<&'a [u8]> {
        let body = self.raw.get(1..self.raw.len().saturating_sub(1))?;
        (scan::scan_plain_ascii(body) == body.len()).then_some(body)
    }

    /// Write the decoded string to a formatter (for error texts that
    /// quote a request's string).
    #[inline(never)]
    pub(crate) fn fmt_chars(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.chars()
            .try_for_each(|ch| core::fmt::Write::write_char(f, ch))
    }

    /// Whether the decoded string equals `s`.
    #[inline(never)]
    pub fn eq_str(&self, s: &str) -> bool {
        match self.plain() {
            Some(body) => body == s.as_bytes(),
            None => self.chars().eq(s.chars()),
        }
    }

    /// Whether two strings decode to the same text.
    #[inline(never)]
    pub fn eq_json(&self, other: &JsonStr<'_>) -> bool {
        match (self.plain(), other.plain()) {
            (Some(a), Some(b)) => a == b,
            _ => self.chars().eq(other.chars()),
        }
    }

    /// Copy the decoded string into `buf`; `None` if it does not fit.
    pub fn decode_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        if let Some(body) = self.plain() {
            let dst = buf.get_mut(..body.len())?;
            dst.copy_from_slice(body);
            return core::str::from_utf8(dst).ok();
        }
        let mut len = 0usize;
        for ch in self.chars() {
            let mut tmp = [0u8; 4];
            let bytes = ch.encode_utf8(&mut tmp).as_bytes();
            let end = len.checked_add(bytes.len())?;
            buf.get_mut(len..end)?.copy_from_slice(bytes);
            len = end;
        }
        core::str::from_utf8(buf.get(..len)?).ok()
    }
}

/// One escape sequence as QEMU's `parse_string` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escape {
    /// A valid escape: the character and the escape's length in bytes.
    Char(char, usize),
    /// `\uXXXX` (or a surrogate pair of them, `len` bytes in all) that is
    /// not a valid character.
    InvalidCodepoint(usize),
    /// A backslash followed by something else.
    Invalid,
}

/// The escape at the front of `rest`, which starts with a backslash. A
/// `\u` lead surrogate pairs with a `\u` trail surrogate right after it.
pub(crate) fn escape_at(rest: &[u8]) -> Escape {
    let simple = match rest.get(1) {
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(&b @ (b'"' | b'\'' | b'\\' | b'/')) => char::from(b),
        Some(b'u') => {
            let mut len = 6usize;
            let mut cp = rest.get(2..).and_then(hex4);
            if let Some(lead @ 0xD800..=0xDBFF) = cp {
                if rest.get(6..8) == Some(b"\\u") {
                    cp = match rest.get(8..).and_then(hex4) {
                        Some(trail @ 0xDC00..=0xDFFF) => {
                            len = 12;
                            Some(0x10000u32.wrapping_add((lead & 0x3FF) << 10) | (trail & 0x3FF))
                        }
                        _ => None,
                    };
                }
            }
            return match cp
                .filter(|&cp| unicode::is_valid_codepoint(cp))
                .and_then(char::from_u32)
            {
                Some(ch) => Escape::Char(ch, len),
                None => Escape::InvalidCodepoint(len),
            };
        }
        _ => return Escape::Invalid,
    };
    Escape::Char(simple, 2)
}

/// Characters of a [`JsonStr`], escapes decoded.
#[derive(Clone, Debug)]
pub struct StrChars<'a> {
    rest: &'a [u8],
}

fn hex4(bytes: &[u8]) -> Option<u32> {
    bytes.get(..4)?.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some((acc << 4) | digit)
    })
}

impl Iterator for StrChars<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        let (&first, tail) = self.rest.split_first()?;
        if first != b'\\' {
            let (ch, used) = unicode::decode(self.rest);
            self.rest = self.rest.get(used.max(1)..).unwrap_or_default();
            return Some(ch.unwrap_or(char::REPLACEMENT_CHARACTER));
        }
        let (&esc, after) = tail.split_first()?;
        self.rest = after;
        let ch = match esc {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let cp = hex4(after).unwrap_or(0xFFFD);
                self.rest = after.get(4..).unwrap_or_default();
                let mut cp = cp;
                if (0xD800..=0xDBFF).contains(&cp) && self.rest.starts_with(b"\\u") {
                    if let Some(low) = self.rest.get(2..).and_then(hex4) {
                        if (0xDC00..=0xDFFF).contains(&low) {
                            cp = 0x10000u32.wrapping_add((cp & 0x3FF) << 10) | (low & 0x3FF);
                            self.rest = self.rest.get(6..).unwrap_or_default();
                        }
                    }
                }
                char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
            }
            other => char::from(other), // `"` `'` `\` `/`
        };
        Some(ch)
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
    use std::string::String;
    use std::vec::Vec;

    /// JSON-ish text rich in what token and value ends depend on.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("-0".to_string()),
            Just("12".to_string()),
            Just("1.5E-3".to_string()),
            Just("1e+5".to_string()),
            Just("-7.25".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just(r#""a\"b\\""#.to_string()),
            Just(r#"'it\'s "x" ]}'"#.to_string()),
            Just(r#""\u00e9é\/[""#.to_string()),
            Just("\"\"".to_string()),
            Just("0123".to_string()),
            Just("0e5".to_string()),
            Just("1-2".to_string()),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t "), Just("\r\n")];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                proptest::collection::vec((inner.clone(), ws.clone()), 0..6).prop_map(|v| {
                    let items: Vec<String> = v
                        .into_iter()
                        .map(|(x, w)| std::format!("{w}{x}{w}"))
                        .collect();
                    std::format!("[{}]", items.join(","))
                }),
                proptest::collection::vec((inner, ws), 0..6).prop_map(|v| {
                    let items: Vec<String> = v
                        .into_iter()
                        .enumerate()
                        .map(|(i, (x, w))| std::format!("{w}'k{i}'{w}:{w}{x}"))
                        .collect();
                    std::format!("{{{}}}", items.join(","))
                }),
            ]
        })
    }

    /// The values of `value` and everything in it, as (kind, text), found
    /// by the views.
    fn walk(value: Value<'_>, seen: &mut Vec<(ValueKind, Vec<u8>)>) {
        seen.push((value.kind(), value.text().to_vec()));
        for (key, member) in value.members() {
            seen.push((ValueKind::String, key.raw().to_vec()));
            walk(member, seen);
        }
        for element in value.elements() {
            walk(element, seen);
        }
    }

    /// The same, found by the lexer.
    fn walk_lexed(text: &[u8], seen: &mut Vec<(ValueKind, Vec<u8>)>) {
        use crate::lexer::{Lexeme, Lexer, TokenKind};
        // (token kind, token text) in order.
        let mut tokens = Vec::new();
        let mut lexer = Lexer::new();
        let (mut pos, mut start) = (0, None);
        while pos < text.len() {
            let step = lexer.step(&text[pos..]);
            let at = pos;
            pos += step.consumed;
            match step.lexeme {
                Lexeme::Partial => {
                    start.get_or_insert(at);
                }
                Lexeme::Token(kind) => {
                    let from = start.take().unwrap_or(at);
                    tokens.push((kind, from, pos));
                }
                _ => {}
            }
        }
        if let (Some(kind), Some(from)) = (lexer.finish_at_end(), start) {
            tokens.push((kind, from, text.len()));
        }
        // A value starts at each token that is not a separator or closer;
        // keys are strings followed by a colon.
        for (i, &(kind, from, to)) in tokens.iter().enumerate() {
            let end = match kind {
                TokenKind::LeftBrace | TokenKind::LeftBracket => {
                    let mut depth = 0;
                    tokens[i..]
                        .iter()
                        .find(|t| {
                            match t.0 {
                                TokenKind::LeftBrace | TokenKind::LeftBracket => depth += 1,
                                TokenKind::RightBrace | TokenKind::RightBracket => depth -= 1,
                                _ => {}
                            }
                            depth == 0
                        })
                        .unwrap()
                        .2
                }
                TokenKind::RightBrace | TokenKind::RightBracket => continue,
                TokenKind::Colon | TokenKind::Comma => continue,
                _ => to,
            };
            let kind = ValueKind::of_first_byte(text[from]).unwrap();
            let kind = if kind == ValueKind::Integer
                && text[from..end]
                    .iter()
                    .any(|&b| matches!(b, b'.' | b'e' | b'E'))
            {
                ValueKind::Float
            } else {
                kind
            };
            seen.push((kind, text[from..end].to_vec()));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        /// On accepted text the views find the lexer's values, in order.
        #[test]
        fn views_find_the_lexers_values(text in text()) {
            if let Ok(value) = Value::parse(text.as_bytes()) {
                let mut quick = Vec::new();
                walk(value, &mut quick);
                let mut lexed = Vec::new();
                walk_lexed(value.text(), &mut lexed);
                let key = |v: &(ValueKind, Vec<u8>)| (v.0 as u8, v.1.clone());
                quick.sort_by_key(key);
                lexed.sort_by_key(key);
                proptest::prop_assert_eq!(quick, lexed, "{}", text);
            }
        }
    }

    #[test]
    fn string_escapes_decode() {
        let s = JsonStr::from_token(br#""a\"\'\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000""#);
        let text: String = s.chars().collect();
        assert_eq!(text, "a\"'\\/\u{8}\u{c}\n\r\té😀\0");
        assert_eq!(s.bytes().filter(|&b| b == 0xC0).count(), 1);
        // A pair whose lead surrogate has high bits set (U+100000).
        let high: String = JsonStr::from_token(br#""\udbc0\udc00""#).chars().collect();
        assert_eq!(high, "\u{100000}");
        let mut buf = [0u8; 8];
        assert_eq!(
            JsonStr::from_token(b"'guest'").decode_into(&mut buf),
            Some("guest")
        );
        assert_eq!(
            JsonStr::from_token(b"'guest-ping'").decode_into(&mut buf),
            None
        );
    }

    #[test]
    fn numbers_follow_qemu() {
        let n = |t: &[u8]| Value::parse(t).unwrap().as_number().unwrap();
        assert_eq!(n(b"-0"), Number::Int(0));
        assert_eq!(n(b"9223372036854775807"), Number::Int(i64::MAX));
        assert_eq!(n(b"9223372036854775808"), Number::Uint(1 << 63));
        assert_eq!(
            n(b"-9223372036854775809"),
            Number::Float(-9223372036854775809.0)
        );
        assert_eq!(
            n(b"18446744073709551616"),
            Number::Float(18446744073709551616.0)
        );
        assert_eq!(n(b"1e400"), Number::Float(f64::INFINITY));
        assert_eq!(Value::parse(b"1.0").unwrap().as_i64(), None);
    }

    #[test]
    fn nested_values_and_members() {
        let v = Value::parse(br#"{"a": {"b": [1, {"c": []}]}, "d": null}"#).unwrap();
        let keys: Vec<String> = v.members().map(|(k, _)| k.chars().collect()).collect();
        assert_eq!(keys, ["a", "d"]);
        assert_eq!(v.get("a").unwrap().text(), br#"{"b": [1, {"c": []}]}"#);
        assert_eq!(v.get("d").unwrap().kind(), ValueKind::Null);
        assert!(v.get("x").is_none());
        let top = Value::parse(b"42").unwrap();
        assert_eq!(top.as_i64(), Some(42));
        assert_eq!(top.members().count(), 0);
    }
}
