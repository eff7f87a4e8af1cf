//! Zero-copy views of a complete JSON value: tokens, values, strings,
//! numbers and object members, read straight from the framed bytes.
//!
//! The views assume input the [`parser`](crate::parser) has accepted; on
//! anything else they stop early rather than panic.
//!
//! ```
//! use agent_core::json::{Value, ValueKind};
//!
//! let value = Value::parse(br#"{"id": 'x\u00e9', "n": [1, 2.5]}"#).unwrap();
//! assert_eq!(value.kind(), ValueKind::Object);
//! let id = value.get("id").unwrap().as_str().unwrap();
//! assert!(id.eq_str("xé"));
//! assert_eq!(value.get("n").unwrap().elements().count(), 2);
//! ```

use crate::lexer::{Lexeme, Lexer, TokenKind};
use crate::unicode;

/// One token of a stored value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Token<'a> {
    /// What it is.
    pub kind: TokenKind,
    /// Its bytes.
    pub text: &'a [u8],
    /// Where it starts in the input.
    pub offset: usize,
}

/// The tokens of a stored value, whitespace skipped. A trailing number or
/// keyword counts as complete. Stops at the first lexical error.
#[derive(Clone, Debug)]
pub struct Tokens<'a> {
    lexer: Lexer,
    input: &'a [u8],
    pos: usize,
    /// The input is known to be valid: find token ends without the lexer.
    #[cfg_attr(not(feature = "speed"), allow(dead_code))]
    valid: bool,
}

impl<'a> Tokens<'a> {
    /// Tokenise `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Tokens {
            lexer: Lexer::new(),
            input,
            pos: 0,
            valid: false,
        }
    }

    /// Tokenise `input`, which the parser has accepted (or a part of it
    /// that starts at a token): each token's end is found by its first
    /// byte and a scan, not by the lexer's state machine. On other input
    /// the tokens are meaningless, but nothing panics.
    pub(crate) fn of_valid(input: &'a [u8]) -> Self {
        Tokens {
            valid: true,
            ..Tokens::new(input)
        }
    }

    /// [`Iterator::next`] on valid input (feature `speed`). In valid input a number ends at
    /// the first byte that cannot continue one, since whatever follows a
    /// number there is whitespace, a separator or a closing bracket.
    #[cfg(feature = "speed")]
    fn next_valid(&mut self) -> Option<Token<'a>> {
        let input = self.input;
        let rest = input.get(self.pos..).unwrap_or_default();
        let start = self.pos.saturating_add(
            rest.iter()
                .take_while(|&&b| crate::lexer::is_whitespace(b))
                .count(),
        );
        let tail = input.get(start..).unwrap_or_default();
        let Some(&first) = tail.first() else {
            self.pos = input.len();
            return None;
        };
        let after = tail.get(1..).unwrap_or_default();
        let (kind, len) = match first {
            b'{' => (TokenKind::LeftBrace, 1),
            b'}' => (TokenKind::RightBrace, 1),
            b'[' => (TokenKind::LeftBracket, 1),
            b']' => (TokenKind::RightBracket, 1),
            b':' => (TokenKind::Colon, 1),
            b',' => (TokenKind::Comma, 1),
            b'"' | b'\'' => match string_len(tail) {
                Some(len) => (TokenKind::String, len),
                None => {
                    self.pos = input.len();
                    return None;
                }
            },
            b'-' | b'0'..=b'9' => number_token(tail),
            b'a'..=b'z' => {
                let n = after.iter().take_while(|b| b.is_ascii_lowercase()).count();
                (TokenKind::Keyword, n.saturating_add(1))
            }
            _ => {
                self.pos = input.len();
                return None;
            }
        };
        let end = start.saturating_add(len).min(input.len());
        self.pos = end;
        Some(Token {
            kind,
            text: input.get(start..end).unwrap_or_default(),
            offset: start,
        })
    }

    /// Offset of the next byte to be lexed.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next token without consuming it.
    pub fn peek(&self) -> Option<Token<'a>> {
        self.clone().next()
    }

    /// Consume the next token if it is a comma (lexing it once).
    fn skip_comma(&mut self) {
        #[cfg(feature = "speed")]
        if self.valid {
            let rest = self.input.get(self.pos..).unwrap_or_default();
            let blank = rest
                .iter()
                .take_while(|&&b| crate::lexer::is_whitespace(b))
                .count();
            if rest.get(blank) == Some(&b',') {
                self.pos = self.pos.saturating_add(blank).saturating_add(1);
            }
            return;
        }
        let mut ahead = self.clone();
        if ahead.next().is_some_and(|t| t.kind == TokenKind::Comma) {
            *self = ahead;
        }
    }
}

/// The length of the string token at the start of `tail` (its opening
/// quote first), in input the lexer accepted: up to the matching quote,
/// each backslash taking the byte after it. `None` if the input ends first.
#[cfg(feature = "speed")]
fn string_len(tail: &[u8]) -> Option<usize> {
    let quote = *tail.first()?;
    let mut at = 1usize;
    loop {
        let body = tail.get(at..).unwrap_or_default();
        at = at.saturating_add(crate::lexer::find_quote_or_backslash(body, quote));
        match tail.get(at)? {
            b'\\' => at = at.saturating_add(2),
            _ => return Some(at.saturating_add(1)),
        }
    }
}

/// Where the container whose opening bracket ends at `from` ends, in
/// input the lexer accepted (feature `speed`): brackets are counted and
/// strings skipped byte by byte, as the quick tokens would find them,
/// without making tokens. `None` if the input ends first.
#[cfg(feature = "speed")]
fn container_end(input: &[u8], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut at = from;
    loop {
        let rest = input.get(at..)?;
        let skip = rest
            .iter()
            .position(|&b| matches!(b, b'{' | b'}' | b'[' | b']' | b'"' | b'\''))?;
        at = at.saturating_add(skip);
        match *input.get(at)? {
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(at.saturating_add(1));
                }
            }
            _ => {
                at = at.saturating_add(string_len(input.get(at..)?)?);
                continue;
            }
        }
        at = at.saturating_add(1);
    }
}

/// The kind and length of the number token at the start of `tail`, in
/// input the lexer accepted: the lexer's number grammar, taken greedily
/// (`-`? then `0` or digits; a fraction; an exponent, which a bare `0`
/// cannot take: the lexer ends `0e5` after the `0`). Other input gives a
/// meaningless answer, never a panic.
#[cfg(feature = "speed")]
fn number_token(tail: &[u8]) -> (TokenKind, usize) {
    let digits = |from: usize| {
        from.saturating_add(
            tail.get(from..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count(),
        )
    };
    let at = |i: usize| tail.get(i).copied().unwrap_or(0);
    let mut end = usize::from(at(0) == b'-');
    let zero = at(end) == b'0';
    end = if zero {
        end.saturating_add(1)
    } else {
        digits(end)
    };
    let mut float = false;
    if at(end) == b'.' {
        float = true;
        end = digits(end.saturating_add(1));
    }
    if matches!(at(end), b'e' | b'E') && (float || !zero) {
        float = true;
        end = end.saturating_add(1);
        if matches!(at(end), b'+' | b'-') {
            end = end.saturating_add(1);
        }
        end = digits(end);
    }
    let kind = if float {
        TokenKind::Float
    } else {
        TokenKind::Integer
    };
    (kind, end.max(1))
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        #[cfg(feature = "speed")]
        if self.valid {
            return self.next_valid();
        }
        let mut start = None;
        loop {
            let rest = self.input.get(self.pos..).unwrap_or_default();
            if rest.is_empty() {
                let kind = self.lexer.finish_at_end()?;
                let start = start?;
                let text = self.input.get(start..self.pos)?;
                return Some(Token {
                    kind,
                    text,
                    offset: start,
                });
            }
            let step = self.lexer.step(rest);
            let at = self.pos;
            self.pos = self.pos.saturating_add(step.consumed);
            match step.lexeme {
                Lexeme::Skipped => {}
                Lexeme::Partial => {
                    start.get_or_insert(at);
                }
                Lexeme::Token(kind) => {
                    let start = *start.get_or_insert(at);
                    let text = self.input.get(start..self.pos)?;
                    return Some(Token {
                        kind,
                        text,
                        offset: start,
                    });
                }
                Lexeme::Error | Lexeme::Oversized => {
                    self.pos = self.input.len();
                    return None;
                }
            }
        }
    }
}

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
    /// The QAPI name of the type, as in "expected: integer".
    pub fn qapi_name(self) -> &'static str {
        match self {
            ValueKind::Object => "object",
            ValueKind::Array => "array",
            ValueKind::String => "string",
            ValueKind::Integer | ValueKind::Float => "number",
            ValueKind::True | ValueKind::False => "boolean",
            ValueKind::Null => "null",
        }
    }
}

/// A view of one complete JSON value: its kind and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Value<'a> {
    kind: ValueKind,
    text: &'a [u8],
}

impl<'a> Value<'a> {
    /// The first value in `input` (which the parser has accepted).
    pub fn parse(input: &'a [u8]) -> Option<Value<'a>> {
        Value::take(&mut Tokens::of_valid(input))
    }

    /// `input`, a whole framed value the parser has accepted (it starts at
    /// its first token and ends with its last), without walking it.
    pub(crate) fn of_validated(input: &'a [u8]) -> Option<Value<'a>> {
        let kind = match input.first()? {
            b'{' => ValueKind::Object,
            b'[' => ValueKind::Array,
            b'"' | b'\'' => ValueKind::String,
            b't' => ValueKind::True,
            b'f' => ValueKind::False,
            b'n' => ValueKind::Null,
            _ => return Value::parse(input),
        };
        Some(Value { kind, text: input })
    }

    /// Read one value from `tokens`, leaving them after it.
    pub fn take(tokens: &mut Tokens<'a>) -> Option<Value<'a>> {
        let first = tokens.next()?;
        let kind = match first.kind {
            TokenKind::LeftBrace => ValueKind::Object,
            TokenKind::LeftBracket => ValueKind::Array,
            TokenKind::String => ValueKind::String,
            TokenKind::Integer => ValueKind::Integer,
            TokenKind::Float => ValueKind::Float,
            TokenKind::Keyword => match first.text {
                b"true" => ValueKind::True,
                b"false" => ValueKind::False,
                b"null" => ValueKind::Null,
                _ => return None,
            },
            _ => return None,
        };
        let mut end = first.offset.saturating_add(first.text.len());
        #[cfg(feature = "speed")]
        if tokens.valid && matches!(kind, ValueKind::Object | ValueKind::Array) {
            end = container_end(tokens.input, end)?;
            tokens.pos = end;
            let text = tokens.input.get(first.offset..end)?;
            return Some(Value { kind, text });
        }
        if matches!(kind, ValueKind::Object | ValueKind::Array) {
            let mut depth = 1usize;
            while depth > 0 {
                let token = tokens.next()?;
                match token.kind {
                    TokenKind::LeftBrace | TokenKind::LeftBracket => {
                        depth = depth.saturating_add(1)
                    }
                    TokenKind::RightBrace | TokenKind::RightBracket => {
                        depth = depth.saturating_sub(1)
                    }
                    _ => {}
                }
                end = token.offset.saturating_add(token.text.len());
            }
        }
        let text = tokens.input.get(first.offset..end)?;
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

    /// The members of an object, in document order (empty otherwise).
    pub fn members(&self) -> Members<'a> {
        let mut tokens = Tokens::of_valid(self.text);
        if self.kind == ValueKind::Object {
            tokens.next();
        } else {
            tokens.pos = self.text.len();
        }
        Members { tokens }
    }

    /// The keys of an object's members, each with the offset in the
    /// object's text where its member starts (for [`Value::member_at`]).
    pub(crate) fn keys_with_offsets(&self) -> impl Iterator<Item = (usize, JsonStr<'a>)> {
        let mut members = self.members();
        core::iter::from_fn(move || {
            let offset = members.offset();
            members.next().map(|(key, _)| (offset, key))
        })
    }

    /// The member of an object that starts at `offset` of its text, as
    /// [`Value::keys_with_offsets`] reported it.
    pub(crate) fn member_at(&self, offset: usize) -> Option<(JsonStr<'a>, Value<'a>)> {
        let mut tokens = Tokens::of_valid(self.text);
        tokens.pos = offset.min(self.text.len());
        Members { tokens }.next()
    }

    /// The elements of an array, in order (empty otherwise).
    pub fn elements(&self) -> Elements<'a> {
        let mut tokens = Tokens::of_valid(self.text);
        if self.kind == ValueKind::Array {
            tokens.next();
        } else {
            tokens.pos = self.text.len();
        }
        Elements { tokens }
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
    tokens: Tokens<'a>,
}

impl Members<'_> {
    /// Where the next member starts, as a byte offset into the object's
    /// text (see [`Value::member_at`]).
    pub(crate) fn offset(&self) -> usize {
        self.tokens.pos
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (JsonStr<'a>, Value<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        let key = self.tokens.next()?;
        if key.kind != TokenKind::String {
            return None; // `}` (or malformed input)
        }
        let colon = self.tokens.next()?;
        if colon.kind != TokenKind::Colon {
            return None;
        }
        let value = Value::take(&mut self.tokens)?;
        self.tokens.skip_comma();
        Some((JsonStr { raw: key.text }, value))
    }
}

/// The elements of an array.
#[derive(Clone, Debug)]
pub struct Elements<'a> {
    tokens: Tokens<'a>,
}

impl<'a> Iterator for Elements<'a> {
    type Item = Value<'a>;
    fn next(&mut self) -> Option<Value<'a>> {
        let next = self.tokens.peek()?;
        if next.kind == TokenKind::RightBracket {
            return None;
        }
        let value = Value::take(&mut self.tokens)?;
        self.tokens.skip_comma();
        Some(value)
    }
}

/// A string token, quotes and escapes still in place; decoded on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct JsonStr<'a> {
    raw: &'a [u8],
}

impl<'a> JsonStr<'a> {
    /// View a string token (quotes included).
    pub fn from_token(raw: &'a [u8]) -> Self {
        JsonStr { raw }
    }

    /// The token as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The decoded characters (`\u0000` gives `'\0'`).
    pub fn chars(&self) -> StrChars<'a> {
        let body = self
            .raw
            .get(1..self.raw.len().saturating_sub(1))
            .unwrap_or_default();
        StrChars { rest: body }
    }

    /// The string's bytes as QEMU stores them (modified UTF-8), one at a time.
    #[cfg(not(feature = "speed"))]
    pub fn bytes(&self) -> impl Iterator<Item = u8> + Clone + 'a {
        self.chars().flat_map(|ch| {
            let mut buf = [0u8; 4];
            let len = unicode::encode_mod_utf8(ch, &mut buf).len();
            buf.into_iter().take(len)
        })
    }

    /// The string's bytes as QEMU stores them (modified UTF-8), one at a time.
    #[cfg(feature = "speed")]
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
    /// Without the `speed` feature there is no such shortcut: `None`.
    #[cfg(not(feature = "speed"))]
    pub(crate) fn plain(&self) -> Option<&'a [u8]> {
        None
    }

    /// The body, if it is ASCII without escapes (so it is its own text).
    #[cfg(feature = "speed")]
    pub(crate) fn plain(&self) -> Option<&'a [u8]> {
        let body = self.raw.get(1..self.raw.len().saturating_sub(1))?;
        (crate::lexer::scan_plain_ascii(body) == body.len()).then_some(body)
    }

    /// Whether the decoded string equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        match self.plain() {
            Some(body) => body == s.as_bytes(),
            None => self.chars().eq(s.chars()),
        }
    }

    /// Whether two strings decode to the same text.
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

    /// JSON-ish text rich in what token ends depend on.
    #[cfg(feature = "speed")]
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("-0".to_string()),
            Just("12".to_string()),
            Just("1.5E-3".to_string()),
            Just("1e+5".to_string()),
            Just("2E3".to_string()),
            Just("-7.25".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just(r#""a\"b\\""#.to_string()),
            Just(r#"'it\'s "x"'"#.to_string()),
            Just(r#""\u00e9é\/""#.to_string()),
            Just("\"\"".to_string()),
            Just("0123".to_string()),
            Just("1true".to_string()),
            Just("0e5".to_string()),
            Just("1-2".to_string()),
            Just("1e5e".to_string()),
            Just("-0.0E+1".to_string()),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\n\t "), Just("\r\n")];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                proptest::collection::vec((inner.clone(), ws.clone()), 0..6).prop_map(|v| {
                    let items: Vec<String> =
                        v.into_iter().map(|(x, w)| format!("{w}{x}{w}")).collect();
                    format!("[{}]", items.join(","))
                }),
                proptest::collection::vec((inner, ws), 0..6).prop_map(|v| {
                    let items: Vec<String> = v
                        .into_iter()
                        .enumerate()
                        .map(|(i, (x, w))| format!("{w}\"k{i}\"{w}:{w}{x}"))
                        .collect();
                    format!("{{{}}}", items.join(","))
                }),
            ]
        })
    }

    #[cfg(feature = "speed")]
    proptest::proptest! {
        /// On accepted input the quick token scan finds the lexer's tokens.
        #[test]
        fn valid_tokens_are_the_lexers(text in text()) {
            let input = text.as_bytes();
            if crate::parser::validate(input).is_ok() {
                let full: Vec<Token<'_>> = Tokens::new(input).collect();
                let quick: Vec<Token<'_>> = Tokens::of_valid(input).collect();
                proptest::prop_assert_eq!(quick, full, "{}", text);
            }
        }
    }

    /// Token soup: any tokens, with or without whitespace between them,
    /// including numbers that touch what follows (`1-2`, `0e5`, `1e5e`).
    #[cfg(feature = "speed")]
    fn soup() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(":"),
            Just(","),
            Just("0"),
            Just("-0"),
            Just("12"),
            Just("-3"),
            Just("0.5"),
            Just("1.25e-3"),
            Just("7E+2"),
            Just("0e5"),
            Just("1e5"),
            Just("e"),
            Just("true"),
            Just("nul"),
            Just("x"),
            Just(r#""a\"b""#),
            Just(r#"'q\'s'"#),
            Just("\"\""),
            Just(r#""\u00e9é""#),
        ];
        let ws = prop_oneof![Just(""), Just(""), Just(" "), Just("\n\t")];
        proptest::collection::vec((token, ws), 0..24).prop_map(|v| {
            v.into_iter()
                .map(|(t, w)| format!("{t}{w}"))
                .collect::<String>()
        })
    }

    #[cfg(feature = "speed")]
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        /// On input the lexer accepts whole (what the framer hands the
        /// parser, accepted or not) the quick scan finds the lexer's
        /// tokens.
        #[test]
        fn lexed_tokens_are_the_lexers(text in soup()) {
            let input = text.as_bytes();
            if lexes_whole(input) {
                let full: Vec<Token<'_>> = Tokens::new(input).collect();
                let quick: Vec<Token<'_>> = Tokens::of_valid(input).collect();
                proptest::prop_assert_eq!(quick, full, "{}", text);
            }
        }

        /// And values are taken whole the same way (containers by
        /// counting brackets), with commas skipped alike.
        #[test]
        fn lexed_values_are_the_lexers(text in proptest::prop_oneof![soup(), text()]) {
            let input = text.as_bytes();
            if lexes_whole(input) {
                fn walk(mut tokens: Tokens<'_>) -> Vec<(ValueKind, &[u8], usize)> {
                    let mut seen = Vec::new();
                    while let Some(value) = Value::take(&mut tokens) {
                        tokens.skip_comma();
                        seen.push((value.kind, value.text, tokens.position()));
                    }
                    seen
                }
                proptest::prop_assert_eq!(
                    walk(Tokens::of_valid(input)),
                    walk(Tokens::new(input)),
                    "{}",
                    text
                );
            }
        }

        /// So the parser's verdict on such input is the same either way.
        #[test]
        fn framed_validation_is_validation(text in proptest::prop_oneof![soup(), text()]) {
            let input = text.as_bytes();
            if lexes_whole(input) {
                proptest::prop_assert_eq!(
                    crate::parser::validate_framed(input),
                    crate::parser::validate(input),
                    "{}",
                    text
                );
            }
        }
    }

    /// Whether the lexer takes all of `input` as whole tokens and
    /// whitespace, without an error: what a frame is made of.
    #[cfg(feature = "speed")]
    fn lexes_whole(input: &[u8]) -> bool {
        let mut lexer = crate::lexer::Lexer::new();
        let mut rest = input;
        let mut whitespace = 0;
        while !rest.is_empty() {
            let step = lexer.step(rest);
            match step.lexeme {
                Lexeme::Error | Lexeme::Oversized => return false,
                Lexeme::Skipped => whitespace += step.consumed,
                _ => {}
            }
            rest = rest.get(step.consumed..).unwrap_or_default();
        }
        let tokens: usize = Tokens::new(input).map(|t| t.text.len()).sum();
        tokens + whitespace == input.len()
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
