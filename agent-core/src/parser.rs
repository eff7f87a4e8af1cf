//! QEMU's JSON grammar (`qobject/json-parser.c`) as a push state machine:
//! the framer hands it each token of a message as the lexer completes it,
//! and when the message ends the parser has checked its grammar, found
//! its duplicate keys and recorded where the request's parts are
//! ([`record`](crate::record)), all in that one pass.
//!
//! Nothing is built: an explicit stack of two bits per open container
//! (bounded by the framer's nesting limit) stands in for recursion. The
//! first error in QEMU's order wins, with QEMU's text (PROTOCOL.md §2.5).
//! QEMU parses a message only once it is complete, so an error found here
//! is reported only if the framer completes the message without a
//! lexical error or an exceeded limit, which take precedence.
//!
//! Duplicate keys are found in a table of the keys of the open objects
//! (hash and place). An object whose keys do not all fit it is checked
//! by one more walk over the message once it is complete
//! ([`first_duplicate`]): only large or deeply nested requests pay it.
//!
//! ```
//! use agent_core::json::Value;
//!
//! assert!(Value::parse(br#"{"execute": "guest-ping"}"#).is_ok());
//! let error = Value::parse(br#"{"a": 1, "a": 2}"#).unwrap_err();
//! assert_eq!(error.to_string(), "JSON parse error, duplicate key");
//! assert_eq!(
//!     Value::parse(b"[1,]").unwrap_err().to_string(),
//!     "JSON parse error, expecting value"
//! );
//! ```

use core::fmt;

use crate::json::{self, JsonStr};
use crate::lexer::{Lexeme, Lexer, TokenKind};
use crate::record::Recorder;
use crate::{scan, unicode};

/// The most containers the parser can have open: the framer's limit.
const MAX_DEPTH: usize = crate::framer::MAX_NESTING as usize;

/// A grammar error. [`Display`](fmt::Display) gives qemu-ga's description
/// (all are sent as GenericError).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError<'a> {
    /// "premature EOI": the tokens ended inside a value.
    PrematureEnd,
    /// "expecting value"
    ExpectingValue,
    /// "key is not a string in object"
    KeyNotString,
    /// "missing : in object pair"
    MissingColon,
    /// "expected separator in dict"
    ExpectedDictSeparator,
    /// "expected separator in list"
    ExpectedListSeparator,
    /// "duplicate key"
    DuplicateKey,
    /// "invalid keyword '`word`'"
    InvalidKeyword(&'a [u8]),
    /// "invalid escape sequence in string"
    InvalidEscape,
    /// "`escape` is not a valid Unicode character"; holds the escape text.
    InvalidCodepoint(&'a [u8]),
    /// "invalid UTF-8 sequence in string"
    InvalidUtf8,
    /// "stray '`token`'": the text is not even made of tokens (a lexical
    /// error; [`Value::parse`](crate::json::Value::parse) only: the agent
    /// reports these as it frames a message).
    Stray(&'a [u8]),
}

/// QEMU formats parser messages into a 1024-byte buffer; longer ones are cut.
const MESSAGE_MAX: usize = 1023;

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON parse error, ")?;
        let text = match self {
            ParseError::PrematureEnd => "premature EOI",
            ParseError::ExpectingValue => "expecting value",
            ParseError::KeyNotString => "key is not a string in object",
            ParseError::MissingColon => "missing : in object pair",
            ParseError::ExpectedDictSeparator => "expected separator in dict",
            ParseError::ExpectedListSeparator => "expected separator in list",
            ParseError::DuplicateKey => "duplicate key",
            ParseError::InvalidEscape => "invalid escape sequence in string",
            ParseError::InvalidUtf8 => "invalid UTF-8 sequence in string",
            ParseError::InvalidKeyword(word) => {
                // "invalid keyword '" is 17 bytes; the word is [a-z]+.
                let room = MESSAGE_MAX.saturating_sub(17);
                f.write_str("invalid keyword '")?;
                let shown = word.get(..room).unwrap_or(word);
                // The word is [a-z]+: its bytes are its characters.
                for &b in shown {
                    fmt::Write::write_char(f, char::from(b))?;
                }
                return if shown.len() < room {
                    f.write_str("'")
                } else {
                    Ok(())
                };
            }
            ParseError::InvalidCodepoint(escape) => {
                for ch in unicode::ModUtf8Chars::new(escape) {
                    fmt::Write::write_char(f, ch)?;
                }
                " is not a valid Unicode character"
            }
            ParseError::Stray(token) => {
                f.write_str("stray '")?;
                for ch in unicode::ModUtf8Chars::new(token) {
                    fmt::Write::write_char(f, ch)?;
                }
                "'"
            }
        };
        f.write_str(text)
    }
}

/// An error as the parser keeps it: the text it quotes is a place in the
/// message (`at`, `len`), read back once the message is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    PrematureEnd,
    ExpectingValue,
    KeyNotString,
    MissingColon,
    ExpectedDictSeparator,
    ExpectedListSeparator,
    DuplicateKey,
    InvalidKeyword,
    InvalidEscape,
    InvalidCodepoint,
    InvalidUtf8,
}

/// A fault and where it was found: QEMU reports the first in token order;
/// a duplicate key counts at the end of its pair's value.
#[derive(Clone, Copy, Debug)]
struct Located {
    fault: Fault,
    /// Offset in the message where the error was found.
    at: usize,
    /// The quoted text of InvalidKeyword and InvalidCodepoint: its
    /// offset in the message and length.
    text: (usize, usize),
}

impl Located {
    fn at(fault: Fault, at: usize) -> Self {
        Located {
            fault,
            at,
            text: (0, 0),
        }
    }

    /// The error, its quoted text read from `message`.
    fn error<'a>(&self, message: &'a [u8]) -> ParseError<'a> {
        let (at, len) = self.text;
        let text = message.get(at..at.saturating_add(len)).unwrap_or_default();
        match self.fault {
            Fault::PrematureEnd => ParseError::PrematureEnd,
            Fault::ExpectingValue => ParseError::ExpectingValue,
            Fault::KeyNotString => ParseError::KeyNotString,
            Fault::MissingColon => ParseError::MissingColon,
            Fault::ExpectedDictSeparator => ParseError::ExpectedDictSeparator,
            Fault::ExpectedListSeparator => ParseError::ExpectedListSeparator,
            Fault::DuplicateKey => ParseError::DuplicateKey,
            Fault::InvalidKeyword => ParseError::InvalidKeyword(text),
            Fault::InvalidEscape => ParseError::InvalidEscape,
            Fault::InvalidCodepoint => ParseError::InvalidCodepoint(text),
            Fault::InvalidUtf8 => ParseError::InvalidUtf8,
        }
    }
}

/// What the container on top of the stack is waiting for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// A value (top level, array element, or member value).
    Value,
    /// An object's key: after `{` (where `}` may come) or after `,`.
    Key { first: bool },
    /// `:` after a key.
    Colon,
    /// `,` or the closing bracket.
    SeparatorOrClose,
    /// The first array element or `]`.
    FirstElement,
    /// The top-level value is complete.
    Done,
}

/// A stack of open containers, two bits each: is-object, and for objects
/// whether the value being parsed is a key.
#[derive(Clone, Debug)]
struct Stack {
    objects: [u64; MAX_DEPTH / 64],
    keys: [u64; MAX_DEPTH / 64],
    depth: usize,
}

impl Stack {
    const fn new() -> Self {
        Stack {
            objects: [0; MAX_DEPTH / 64],
            keys: [0; MAX_DEPTH / 64],
            depth: 0,
        }
    }
    fn bit(words: &mut [u64], index: usize, value: bool) {
        if let Some(word) = words.get_mut(index / 64) {
            let mask = 1u64 << (index % 64);
            if value {
                *word |= mask;
            } else {
                *word &= !mask;
            }
        }
    }
    fn get(words: &[u64], index: usize) -> bool {
        words
            .get(index / 64)
            .is_some_and(|w| w >> (index % 64) & 1 == 1)
    }
    fn push(&mut self, object: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        Self::bit(&mut self.objects, self.depth, object);
        Self::bit(&mut self.keys, self.depth, false);
        self.depth = self.depth.saturating_add(1);
        true
    }
    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
    fn top(&self) -> Option<usize> {
        self.depth.checked_sub(1)
    }
    fn top_is_object(&self) -> bool {
        self.top().is_some_and(|i| Self::get(&self.objects, i))
    }
    fn set_parsing_key(&mut self, key: bool) {
        if let Some(i) = self.top() {
            Self::bit(&mut self.keys, i, key);
        }
    }
    fn parsing_key(&self) -> bool {
        self.top().is_some_and(|i| Self::get(&self.keys, i))
    }
}

/// Keys of the open objects tracked for duplicates.
const TRACKED_KEYS: usize = 24;

/// One tracked key: its hash, where it is in the message, and the depth
/// of its object.
#[derive(Clone, Copy, Debug, Default)]
struct Key {
    hash: u32,
    at: u32,
    len: u32,
    depth: u32,
}

const NO_KEYS: [Key; TRACKED_KEYS] = [Key {
    hash: 0,
    at: 0,
    len: 0,
    depth: 0,
}; TRACKED_KEYS];

/// The keys of the open objects, innermost last: each object's keys sit
/// above those of the objects it is nested in, and go when it closes.
#[derive(Clone, Debug)]
struct KeyTable {
    keys: [Key; TRACKED_KEYS],
    count: usize,
    /// An object's keys did not all fit (or a key was too far into the
    /// message): its duplicates are left to [`first_duplicate`].
    untracked: bool,
    /// The depth of the object whose member being parsed repeats a key.
    pending: Option<usize>,
}

impl KeyTable {
    const fn new() -> Self {
        KeyTable {
            keys: NO_KEYS,
            count: 0,
            untracked: false,
            pending: None,
        }
    }

    /// The object at `depth` closed: forget its keys.
    fn close(&mut self, depth: usize) {
        let keys = self.keys.get(..self.count).unwrap_or_default();
        let kept = keys
            .iter()
            .rposition(|k| (k.depth as usize) < depth)
            .map_or(0, |i| i.saturating_add(1));
        self.count = kept;
    }

    /// Where an earlier key of the object at `depth` that reads as `key`
    /// (with `hash`) is, among the first `bound` entries.
    #[cfg_attr(feature = "speed", inline(always))]
    fn find(
        &self,
        depth: usize,
        message: &[u8],
        key: &JsonStr<'_>,
        hash: u32,
        bound: usize,
    ) -> Option<usize> {
        let keys = self.keys.get(..self.count.min(bound)).unwrap_or_default();
        keys.iter().position(|k| {
            k.depth as usize == depth && k.hash == hash && {
                let text = message
                    .get(k.at as usize..(k.at as usize).saturating_add(k.len as usize))
                    .unwrap_or_default();
                JsonStr::from_token(text).eq_json(key)
            }
        })
    }

    /// Key `key` (the token at `at` of `message`) of the object at
    /// `depth`; notes a repeat in [`pending`](Self::pending).
    /// `plain`: the key is ASCII without escapes.
    #[cfg_attr(feature = "speed", inline(always))]
    fn add(&mut self, depth: usize, message: &[u8], at: usize, key: &[u8], plain: bool) {
        let this = JsonStr::from_token(key);
        let hash = if plain {
            plain_hash(key.get(1..key.len().saturating_sub(1)).unwrap_or_default())
        } else {
            key_hash(&this)
        };
        if self.find(depth, message, &this, hash, usize::MAX).is_some() {
            self.pending = Some(depth);
        }
        self.push(depth, at, key.len(), hash);
    }

    /// Note a key (its place, length and hash) of the object at `depth`.
    fn push(&mut self, depth: usize, at: usize, len: usize, hash: u32) {
        let entry = (u32::try_from(at), u32::try_from(len), u32::try_from(depth));
        match (self.keys.get_mut(self.count), entry) {
            (Some(slot), (Ok(at), Ok(len), Ok(depth))) => {
                *slot = Key {
                    hash,
                    at,
                    len,
                    depth,
                };
                self.count = self.count.saturating_add(1);
            }
            _ => self.untracked = true,
        }
    }
}

/// The push parser: feed it the tokens of one message with
/// [`token`](Self::token), then ask for the verdict with
/// [`finish`](Self::finish).
#[derive(Clone, Debug)]
pub(crate) struct Parser<const ARGS: usize> {
    stack: Stack,
    expect: Expect,
    keys: KeyTable,
    /// The first error, once found; nothing more is checked after it.
    error: Option<Located>,
    /// Where the request's parts are.
    record: Recorder<ARGS>,
}

impl<const ARGS: usize> Parser<ARGS> {
    /// A parser at the start of a message.
    #[inline(never)]
    pub(crate) const fn new() -> Self {
        Parser {
            stack: Stack::new(),
            expect: Expect::Value,
            keys: KeyTable::new(),
            error: None,
            record: Recorder::new(),
        }
    }

    /// Forget the message so far.
    pub(crate) fn reset(&mut self) {
        self.stack.depth = 0;
        self.expect = Expect::Value;
        self.keys.count = 0;
        self.keys.untracked = false;
        self.keys.pending = None;
        self.error = None;
        self.record.reset();
    }

    /// If the next token is the value of a member of the request's
    /// `arguments` object, and nothing is wrong so far: where that
    /// member's key is in the message (offset and length).
    pub(crate) fn argument_key(&self) -> Option<(usize, usize)> {
        if self.error.is_some() || self.expect != Expect::Value {
            return None;
        }
        self.record.pending_argument_key(self.stack.depth)
    }

    /// The next token of the message: `kind`, at `at` of `message` (which
    /// holds the message's bytes up to the token's end). `plain`: the lexer
    /// saw a string without escapes or bytes beyond ASCII (valid as it is).
    pub(crate) fn token(&mut self, kind: TokenKind, message: &[u8], at: usize, plain: bool) {
        if self.error.is_some() {
            return;
        }
        let text = message.get(at..).unwrap_or_default();
        if let Err(located) = self.step(kind, text, message, at, plain) {
            self.error = Some(located);
        }
    }

    fn step(
        &mut self,
        kind: TokenKind,
        text: &[u8],
        message: &[u8],
        at: usize,
        plain: bool,
    ) -> Result<(), Located> {
        let end = at.saturating_add(text.len());
        match self.expect {
            Expect::Value | Expect::Key { .. } | Expect::FirstElement => {
                let closes = matches!(
                    (self.expect, kind),
                    (Expect::Key { first: true }, TokenKind::RightBrace)
                        | (Expect::FirstElement, TokenKind::RightBracket)
                );
                if closes {
                    return self.close(end);
                }
                let key = matches!(self.expect, Expect::Key { .. });
                if key {
                    self.stack.set_parsing_key(true);
                } else if self.stack.top_is_object() || self.stack.depth == 0 {
                    // A member's value (or the top-level value) begins.
                    self.record
                        .value_begins(self.stack.depth, kind, at, message);
                }
                match kind {
                    TokenKind::LeftBrace | TokenKind::LeftBracket => {
                        let object = kind == TokenKind::LeftBrace;
                        if !self.stack.push(object) {
                            return Err(Located::at(Fault::ExpectingValue, at));
                        }
                        self.expect = if object {
                            Expect::Key { first: true }
                        } else {
                            Expect::FirstElement
                        };
                        return Ok(());
                    }
                    TokenKind::String => {
                        let plain = plain
                            || check_string(text).map_err(|(fault, escape)| Located {
                                fault,
                                at,
                                text: escape
                                    .map_or((0, 0), |(from, len)| (at.saturating_add(from), len)),
                            })?;
                        if key {
                            self.keys.add(self.stack.depth, message, at, text, plain);
                            self.record.key(self.stack.depth, text, at, plain);
                        }
                    }
                    TokenKind::Integer | TokenKind::Float => {}
                    TokenKind::Keyword => {
                        if !matches!(text, b"true" | b"false" | b"null") {
                            return Err(Located {
                                fault: Fault::InvalidKeyword,
                                at,
                                text: (at, text.len()),
                            });
                        }
                    }
                    _ => return Err(Located::at(Fault::ExpectingValue, at)),
                }
                self.value_ends(Some(kind), end)
            }
            Expect::Colon => {
                if kind == TokenKind::Colon {
                    self.expect = Expect::Value;
                    Ok(())
                } else {
                    Err(Located::at(Fault::MissingColon, at))
                }
            }
            Expect::SeparatorOrClose => {
                let object = self.stack.top_is_object();
                let (close, fault) = if object {
                    (TokenKind::RightBrace, Fault::ExpectedDictSeparator)
                } else {
                    (TokenKind::RightBracket, Fault::ExpectedListSeparator)
                };
                if kind == close {
                    return self.close(end);
                }
                if kind == TokenKind::Comma {
                    self.expect = if object {
                        Expect::Key { first: false }
                    } else {
                        Expect::Value
                    };
                    return Ok(());
                }
                Err(Located::at(fault, at))
            }
            // A message is one value: the framer ends it there.
            Expect::Done => Err(Located::at(Fault::ExpectingValue, at)),
        }
    }

    /// The container on top closes with the token that ends at `end`.
    fn close(&mut self, end: usize) -> Result<(), Located> {
        if self.stack.top_is_object() {
            self.keys.close(self.stack.depth);
        }
        self.stack.pop();
        self.value_ends(None, end)
    }

    /// A value just ended at `end` (`kind` is its token for scalars,
    /// `None` for a closed container): what does the enclosing container
    /// expect now?
    fn value_ends(&mut self, kind: Option<TokenKind>, end: usize) -> Result<(), Located> {
        let depth = self.stack.depth;
        if depth == 0 {
            self.record.value_ends(0, end);
            self.expect = Expect::Done;
            return Ok(());
        }
        if self.stack.top_is_object() {
            if self.stack.parsing_key() {
                self.stack.set_parsing_key(false);
                if kind != Some(TokenKind::String) {
                    // QEMU points at the key's first token; the end of the
                    // key is before any later error, which is what matters.
                    return Err(Located::at(Fault::KeyNotString, end));
                }
                self.expect = Expect::Colon;
                return Ok(());
            }
            if self.keys.pending == Some(depth) {
                return Err(Located::at(Fault::DuplicateKey, end));
            }
            self.record.value_ends(depth, end);
        }
        self.expect = Expect::SeparatorOrClose;
        Ok(())
    }

    /// The message ended. Its verdict: the first error in QEMU's order,
    /// or the record of an accepted value. `message` is the whole message.
    pub(crate) fn finish<'m>(&self, message: &'m [u8]) -> Result<&Recorder<ARGS>, ParseError<'m>> {
        let structural = match (self.error, self.expect) {
            (Some(e), _) => Some(e),
            (None, Expect::Done) => None,
            (None, _) => Some(Located::at(Fault::PrematureEnd, message.len())),
        };
        match structural {
            // A duplicate found on the way is the first error: everything
            // before it was checked (a duplicate in an untracked object
            // before it would give the same text).
            Some(e) if e.fault == Fault::DuplicateKey => return Err(e.error(message)),
            Some(e) if !self.keys.untracked => return Err(e.error(message)),
            None if !self.keys.untracked => return Ok(&self.record),
            _ => {}
        }
        // Some object's keys did not fit the table: look for duplicates
        // before the first error (or in the whole message) by walking the
        // message once more.
        let limit = structural.map_or(message.len(), |e| e.at);
        let duplicate = if structural.is_some_and(|e| e.at == 0) {
            None
        } else {
            first_duplicate(message, limit)
        };
        match (structural, duplicate) {
            (Some(s), Some(d)) => Err(if d <= s.at {
                ParseError::DuplicateKey
            } else {
                s.error(message)
            }),
            (None, Some(_)) => Err(ParseError::DuplicateKey),
            (Some(e), None) => Err(e.error(message)),
            (None, None) => Ok(&self.record),
        }
    }
}

/// Check `input`, one complete value, against QEMU's grammar: the lexer
/// and the push parser over a whole text (for [`Value::parse`](crate::json::Value::parse)
/// and the tests; the agent's parser is fed by the framer instead).
pub(crate) fn validate(input: &[u8]) -> Result<(), ParseError<'_>> {
    validate_with(input, Parser::<0>::new())
}

/// [`validate`] with `parser`.
fn validate_with(input: &[u8], mut parser: Parser<0>) -> Result<(), ParseError<'_>> {
    let mut lexer = Lexer::new();
    let mut pos = 0usize;
    let mut start = None;
    while let Some(rest) = input.get(pos..).filter(|r| !r.is_empty()) {
        let step = lexer.step(rest);
        let at = pos;
        pos = pos.saturating_add(step.consumed);
        match step.lexeme {
            Lexeme::Skipped => {}
            Lexeme::Partial => {
                start.get_or_insert(at);
            }
            Lexeme::Token(kind) => {
                let from = start.take().unwrap_or(at);
                let plain = kind == TokenKind::String && lexer.was_plain_string();
                parser.token(kind, input.get(..pos).unwrap_or_default(), from, plain);
            }
            // Not tokens: a lexical error.
            Lexeme::Error | Lexeme::Oversized => {
                let token = input.get(start.unwrap_or(at)..pos).unwrap_or_default();
                return Err(ParseError::Stray(token));
            }
        }
    }
    match (lexer.finish_at_end(), start) {
        // A number or keyword the end of the text ends.
        (Some(kind), Some(from)) => parser.token(kind, input, from, false),
        // A token the end of the text cuts (a string, `-`, `1.`).
        (None, Some(from)) => {
            return Err(ParseError::Stray(input.get(from..).unwrap_or_default()));
        }
        _ => {}
    }
    parser.finish(input).map(|_| ())
}

/// QEMU's `parse_string` checks on one string token: whether the string
/// is plain (ASCII without escapes: its body is its text). On error, the
/// fault and, for an invalid code point, where its escape is in the token
/// and how long it is (as far as the token goes).
#[allow(clippy::type_complexity)]
fn check_string(raw: &[u8]) -> Result<bool, (Fault, Option<(usize, usize)>)> {
    let body = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    let mut pos = 0usize;
    if scan::scan_plain_ascii(body) == body.len() {
        return Ok(true);
    }
    while let Some(rest) = body.get(pos..).filter(|r| !r.is_empty()) {
        // Plain ASCII runs need no decoding.
        let ascii = scan::scan_plain_ascii(rest);
        if ascii > 0 {
            pos = pos.saturating_add(ascii);
            continue;
        }
        if rest.first() != Some(&b'\\') {
            let (ch, used) = unicode::decode(rest);
            if ch.is_none() {
                return Err((Fault::InvalidUtf8, None));
            }
            pos = pos.saturating_add(used.max(1));
            continue;
        }
        match json::escape_at(rest) {
            json::Escape::Char(_, len) => pos = pos.saturating_add(len),
            json::Escape::InvalidCodepoint(len) => {
                // QEMU prints the escape's bytes (at most `len`), as far as
                // the token goes (its text ends at the closing quote).
                let from = pos.saturating_add(1);
                let shown = raw.len().saturating_sub(from).min(len);
                return Err((Fault::InvalidCodepoint, Some((from, shown))));
            }
            json::Escape::Invalid => return Err((Fault::InvalidEscape, None)),
        }
    }
    Ok(false)
}

/// A key's hash: a filter in front of the full comparison (only equality
/// matters), over the decoded characters so that `"a"` and `"\u0061"`
/// agree: the length with the first and last characters. Constant time
/// for plain keys, which is what almost every key is, and distinct for
/// the keys one object usually has (names that differ in length, initial
/// or final character).
fn key_hash(key: &JsonStr<'_>) -> u32 {
    match key.plain() {
        Some(body) => plain_hash(body),
        None => {
            let (mut count, mut first, mut last) = (0u32, 0u32, 0u32);
            for ch in key.chars() {
                if count == 0 {
                    first = u32::from(ch);
                }
                last = u32::from(ch);
                count = count.wrapping_add(1);
            }
            mix(count, first, last)
        }
    }
}

/// [`key_hash`] of a key that is ASCII without escapes, from its body.
fn plain_hash(body: &[u8]) -> u32 {
    let first = body.first().map_or(0, |&b| u32::from(b));
    let last = body.last().map_or(0, |&b| u32::from(b));
    mix(body.len() as u32, first, last)
}

fn mix(len: u32, first: u32, last: u32) -> u32 {
    len << 16 ^ first << 8 ^ last
}

/// Where the first duplicate key before `limit` is found (the end of the
/// duplicate pair's value). The message's grammar is right up to `limit`,
/// so the views read that part of it.
#[inline(never)]
fn first_duplicate(message: &[u8], limit: usize) -> Option<usize> {
    let text = message.get(..limit)?;
    let mut best: Option<usize> = None;
    let mut at = 0usize;
    // Each `{` outside a string starts an object.
    while let Some(rest) = text.get(at..) {
        if best.is_some_and(|b| at >= b) {
            break;
        }
        let Some(skip) = rest.iter().position(|&b| matches!(b, b'{' | b'"' | b'\'')) else {
            break;
        };
        at = at.saturating_add(skip);
        let object = text.get(at..).unwrap_or_default();
        if object.first() == Some(&b'{') {
            if let Some(end) = duplicate_in_object(object) {
                let end = end.saturating_add(at);
                best = Some(best.map_or(end, |b| b.min(end)));
            }
            at = at.saturating_add(1);
        } else {
            // A string (one cut by `limit` ends the walk).
            let Some(len) = crate::scan::string_len_unchecked(object) else {
                break;
            };
            at = at.saturating_add(len);
        }
    }
    best
}

/// Offset (relative to `object`, which may be cut short) of the end of
/// the first pair whose key repeats an earlier one.
///
/// Keys go through a [`KeyTable`] in blocks of [`TRACKED_KEYS`]; each block
/// is checked against itself as it fills and, in one more walk, against
/// all earlier keys, so an object of `n` keys costs about
/// `n / TRACKED_KEYS` walks over it.
#[inline(never)]
fn duplicate_in_object(object: &[u8]) -> Option<usize> {
    let members = || json::Value::of_token_unchecked(object).map(|o| o.members());
    let mut all = members()?;
    let mut earlier = 0usize;
    loop {
        let mut block = KeyTable::new();
        // Where each block key's pair ends.
        let mut ends = [0usize; TRACKED_KEYS];
        // The first key of the block that repeats an earlier key of the
        // block ...
        let mut found = None;
        for (n, end_slot) in ends.iter_mut().enumerate() {
            let Some((key, _, at, end)) = all.next_pair() else {
                break;
            };
            let hash = key_hash(&key);
            if found.is_none() && block.find(1, object, &key, hash, n).is_some() {
                found = Some(n);
            }
            block.push(1, at, key.raw().len(), hash);
            *end_slot = end;
        }
        if block.count == 0 {
            return None;
        }
        // ... or of an earlier block.
        let mut walk = members()?;
        for _ in 0..earlier {
            let Some((key, _, _, _)) = walk.next_pair() else {
                break;
            };
            let bound = found.unwrap_or(block.count);
            if let Some(i) = block.find(1, object, &key, key_hash(&key), bound) {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            return ends.get(i).copied();
        }
        earlier = earlier.saturating_add(block.count);
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
    use std::vec::Vec;

    fn err(input: &[u8]) -> String {
        validate(input).unwrap_err().to_string()
    }

    /// JSON-ish text with few distinct keys, nesting, and the odd error.
    fn doc() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("1".to_string()),
            Just("'x'".to_string()),
            Just("[]".to_string()),
            Just("tru".to_string()),
            Just("\"\\ud800\"".to_string()),
        ];
        leaf.prop_recursive(5, 64, 9, |inner| {
            let key = prop_oneof![
                Just("\"a\""),
                Just("'a'"),
                Just("\"\\u0061\""),
                Just("\"b\""),
                Just("\"c\""),
                Just("1"),
            ];
            prop_oneof![
                proptest::collection::vec((key, inner.clone()), 0..40).prop_map(|m| {
                    let members: Vec<String> = m
                        .into_iter()
                        .map(|(k, v)| std::format!("{k}: {v}"))
                        .collect();
                    std::format!("{{{}}}", members.join(", "))
                }),
                proptest::collection::vec(inner, 0..4)
                    .prop_map(|e| std::format!("[{}]", e.join(","))),
            ]
        })
    }

    /// The verdict with duplicates found only by the fallback walk.
    fn untracked_verdict(input: &[u8]) -> Result<(), ParseError<'_>> {
        let mut parser = Parser::<0>::new();
        parser.keys.count = TRACKED_KEYS; // the table is full from the start
        validate_with(input, parser)
    }

    proptest::proptest! {
        /// Duplicates found on the parser's pass give exactly the verdict
        /// of the fallback walk.
        #[test]
        fn single_pass_duplicates_agree(text in doc(), cut in 0usize..200) {
            let text = text.as_bytes();
            let cut = text.get(..text.len().saturating_sub(cut % 3)).unwrap();
            for input in [text, cut] {
                proptest::prop_assert_eq!(
                    validate(input),
                    untracked_verdict(input),
                    "{}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn accepts_qemu_json() {
        for ok in [
            &br#"{"execute": "guest-sync", "arguments": {"id": 1}}"#[..],
            b"[]",
            b"{}",
            b"[[], {}, [1, 2.5, -0, 1e5, true, false, null]]",
            br#"{'a': 'b"c', "\u0000": "\ud83d\ude00\u00e9\/"}"#,
            b"\"\xc0\x80\xc3\xa9\x7f\"",
            b"42",
        ] {
            assert_eq!(validate(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn grammar_errors() {
        assert_eq!(err(b"}"), "JSON parse error, expecting value");
        assert_eq!(err(b"[1,]"), "JSON parse error, expecting value");
        assert_eq!(err(br#"{"a":1,}"#), "JSON parse error, expecting value");
        assert_eq!(err(br#"{"a":}"#), "JSON parse error, expecting value");
        assert_eq!(
            err(br#"{1:2}"#),
            "JSON parse error, key is not a string in object"
        );
        assert_eq!(
            err(br#"{[]:2}"#),
            "JSON parse error, key is not a string in object"
        );
        assert_eq!(
            err(br#"{"a" 1}"#),
            "JSON parse error, missing : in object pair"
        );
        assert_eq!(
            err(br#"{"a":1 "b":2}"#),
            "JSON parse error, expected separator in dict"
        );
        assert_eq!(
            err(b"[1 2]"),
            "JSON parse error, expected separator in list"
        );
        assert_eq!(
            err(br#"{"a":1]"#),
            "JSON parse error, expected separator in dict"
        );
        assert_eq!(err(b"[{]}"), "JSON parse error, expecting value");
        assert_eq!(
            err(b"[0 e]"),
            "JSON parse error, expected separator in list"
        );
        assert_eq!(err(b"nul"), "JSON parse error, invalid keyword 'nul'");
        assert_eq!(err(b"[1"), "JSON parse error, premature EOI");
        // A leading zero and a digit are a lexical error.
        assert_eq!(err(b"[01]"), "JSON parse error, stray '01'");
        assert_eq!(err(b"\"{\"\x01"), "JSON parse error, stray '\u{1}'");
        assert_eq!(err(b"\"{\"-"), "JSON parse error, stray '-'");
        assert_eq!(err(b"[\"ab"), "JSON parse error, stray '\"ab'");
    }

    #[test]
    fn long_keywords_are_cut_like_qemu() {
        let word = [b'x'; 2000];
        let text = err(&word);
        assert_eq!(text.len(), "JSON parse error, ".len() + 1023);
        assert!(text.ends_with('x'));
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            err(br#""\x""#),
            "JSON parse error, invalid escape sequence in string"
        );
        assert_eq!(
            err(br#""\ud800""#),
            r#"JSON parse error, \ud800 is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\udc00""#),
            r#"JSON parse error, \udc00 is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\ud800\u0041""#),
            r#"JSON parse error, \ud800 is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\ufdd0""#),
            r#"JSON parse error, \ufdd0 is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\uffff""#),
            r#"JSON parse error, \uffff is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\ud83f\udffe""#),
            r#"JSON parse error, \ud83f\udffe is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\u12""#),
            r#"JSON parse error, \u12" is not a valid Unicode character"#
        );
        assert_eq!(
            err(br#""\u12zz""#),
            r#"JSON parse error, \u12zz is not a valid Unicode character"#
        );
        for bad in [
            &b"\"\xc0\xaf\""[..],
            b"\"\x80\"",
            b"\"\xe2\x82\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xef\xbf\xbf\"",
        ] {
            assert_eq!(
                err(bad),
                "JSON parse error, invalid UTF-8 sequence in string"
            );
        }
    }

    #[test]
    fn duplicate_keys_in_order() {
        assert_eq!(
            err(br#"{"execute":"a","execute":"b"}"#),
            "JSON parse error, duplicate key"
        );
        assert_eq!(
            err(br#"{"a":1,'\u0061':2}"#),
            "JSON parse error, duplicate key"
        );
        // The duplicate is found before a later error ...
        assert_eq!(
            err(br#"{"a":1,"a":2,"b":tru}"#),
            "JSON parse error, duplicate key"
        );
        // ... but after an error inside the duplicate's value.
        assert_eq!(
            err(br#"{"a":1,"a":"\ud800"}"#),
            r#"JSON parse error, \ud800 is not a valid Unicode character"#
        );
        // Nested: the inner object's duplicate comes first.
        assert_eq!(
            err(br#"{"x":{"b":1,"b":2},"x":3}"#),
            "JSON parse error, duplicate key"
        );
        assert_eq!(validate(br#"{"a":{"a":1},"b":{"a":2}}"#), Ok(()));
        // Keys of closed objects are forgotten.
        assert_eq!(validate(br#"[{"a":1},{"a":2}]"#), Ok(()));
    }

    #[test]
    fn duplicates_in_large_objects() {
        let mut text = String::from("{");
        for i in 0..200 {
            text.push_str(&std::format!("\"k{i}\":{i},"));
        }
        text.push_str("\"last\":0}");
        assert_eq!(validate(text.as_bytes()), Ok(()));
        let dup = text.replace("\"last\"", "\"k3\"");
        assert_eq!(err(dup.as_bytes()), "JSON parse error, duplicate key");
        let dup = text.replace("\"last\"", "\"k150\"");
        assert_eq!(err(dup.as_bytes()), "JSON parse error, duplicate key");
        // A duplicate in a large object, then a structural error.
        let both = std::format!("[{}, ]", text.replace("\"last\"", "\"k9\""));
        assert_eq!(err(both.as_bytes()), "JSON parse error, duplicate key");
        // A structural error inside, before the duplicate.
        let early = text
            .replacen("\"k2\":2", "\"k2\":]", 1)
            .replace("\"last\"", "\"k9\"");
        assert_eq!(err(early.as_bytes()), "JSON parse error, expecting value");
    }
}
