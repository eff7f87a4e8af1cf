//! QEMU's JSON grammar checks (`qobject/json-parser.c`) on a framed value.
//!
//! The parser validates without building anything: it walks the tokens
//! with an explicit stack (no recursion, bounded by the framer's nesting
//! limit), checks strings (escapes, `\u` code points, raw UTF-8) and
//! keywords, and rejects duplicate keys. The first error in QEMU's order
//! wins, with QEMU's text (PROTOCOL.md §2.5).
//!
//! ```
//! use agent_core::parser::{validate, ParseError};
//!
//! assert_eq!(validate(br#"{"execute": "guest-ping"}"#), Ok(()));
//! assert_eq!(validate(b"[1,]"), Err(ParseError::ExpectingValue));
//! let err = validate(br#"{"a": 1, "a": 2}"#).unwrap_err();
//! assert_eq!(err.to_string(), "JSON parse error, duplicate key");
//! ```

use core::fmt;

use crate::json::{self, JsonStr, Token, Tokens, Value};
use crate::lexer::TokenKind;
use crate::unicode;

/// The most containers the parser can have open: the framer's limit.
const MAX_DEPTH: usize = crate::framer::MAX_NESTING as usize;

/// A grammar error. [`Display`](fmt::Display) gives qemu-ga's description.
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
    /// "invalid keyword '<word>'"
    InvalidKeyword(&'a [u8]),
    /// "invalid escape sequence in string"
    InvalidEscape,
    /// "<escape> is not a valid Unicode character"; holds the escape text.
    InvalidCodepoint(&'a [u8]),
    /// "invalid UTF-8 sequence in string"
    InvalidUtf8,
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
                f.write_str(core::str::from_utf8(shown).unwrap_or("?"))?;
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
        };
        f.write_str(text)
    }
}

/// An error and where it was found (QEMU reports the first one in token
/// order; duplicate keys count at the end of the duplicate pair's value).
#[derive(Clone, Copy, Debug)]
struct Located<'a> {
    error: ParseError<'a>,
    at: usize,
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
}

/// A stack of open containers, two bits each: is-object, and for objects
/// whether the value being parsed is a key.
struct Stack {
    objects: [u64; MAX_DEPTH / 64],
    keys: [u64; MAX_DEPTH / 64],
    depth: usize,
}

impl Stack {
    fn new() -> Self {
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

/// Check `input`, one complete framed value, against QEMU's grammar.
pub fn validate(input: &[u8]) -> Result<(), ParseError<'_>> {
    validate_with(input, KeySets::new(), false)
}

/// [`validate`] for a value the framer produced, which the lexer accepted
/// whole: with feature `speed` its tokens are found by the quick scan
/// (the same tokens, as a property test in `json` checks), not by the
/// lexer a second time.
pub(crate) fn validate_framed(input: &[u8]) -> Result<(), ParseError<'_>> {
    validate_with(input, KeySets::new(), cfg!(feature = "speed"))
}

#[inline(never)]
fn validate_with<'a>(
    input: &'a [u8],
    mut keys: KeySets,
    lexed: bool,
) -> Result<(), ParseError<'a>> {
    let tokens = if lexed {
        Tokens::of_valid(input)
    } else {
        Tokens::new(input)
    };
    let structural = check_structure(input, tokens, &mut keys).err();
    match structural {
        // A duplicate found on the way is the first error: everything
        // before it was checked.
        Some(e) if e.error == ParseError::DuplicateKey => return Err(e.error),
        Some(e) if !keys.untracked => return Err(e.error),
        None if !keys.untracked => return Ok(()),
        _ => {}
    }
    let limit = structural.map_or(input.len(), |e| e.at);
    let duplicate = if structural.is_some_and(|e| e.at == 0) {
        None
    } else {
        first_duplicate(input, limit)
    };
    match (structural, duplicate) {
        (Some(s), Some(d)) => Err(if d.at <= s.at { d.error } else { s.error }),
        (Some(e), None) | (None, Some(e)) => Err(e.error),
        (None, None) => Ok(()),
    }
}

fn fail<'a>(error: ParseError<'a>, token: Option<Token<'a>>, tokens: &Tokens<'a>) -> Located<'a> {
    Located {
        error,
        at: token.map_or(tokens.position(), |t| t.offset),
    }
}

/// Objects at most this deep have their keys checked for duplicates on
/// the structure pass ...
const TRACKED_DEPTH: usize = 4;
/// ... if they have at most this many keys.
const TRACKED_KEYS: usize = 8;

/// The keys of the objects open at the first [`TRACKED_DEPTH`] levels
/// (hash and offset), so that small requests are checked for duplicate
/// keys in the same pass as their structure. Anything bigger is left to
/// [`first_duplicate`].
#[cfg_attr(not(feature = "speed"), allow(dead_code))]
struct KeySets {
    hashes: [[u32; TRACKED_KEYS]; TRACKED_DEPTH],
    offsets: [[u32; TRACKED_KEYS]; TRACKED_DEPTH],
    counts: [u8; TRACKED_DEPTH],
    /// Some object's keys were not all tracked.
    untracked: bool,
    /// The depth of the object whose member being parsed repeats a key.
    pending: Option<usize>,
}

impl KeySets {
    fn new() -> Self {
        KeySets {
            hashes: [[0; TRACKED_KEYS]; TRACKED_DEPTH],
            offsets: [[0; TRACKED_KEYS]; TRACKED_DEPTH],
            counts: [0; TRACKED_DEPTH],
            untracked: false,
            pending: None,
        }
    }

    /// An object opened at `depth` (1 for the top level).
    fn open(&mut self, depth: usize) {
        if self.counts.first() == Some(&u8::MAX) {
            return;
        }
        if let Some(count) = self.counts.get_mut(depth.wrapping_sub(1)) {
            *count = 0;
        }
    }

    /// No tracking at all: every duplicate is left to [`first_duplicate`].
    #[cfg(all(test, feature = "speed"))]
    fn none() -> Self {
        KeySets {
            counts: [u8::MAX; TRACKED_DEPTH],
            untracked: true,
            ..KeySets::new()
        }
    }

    /// Without the `speed` feature nothing is tracked.
    #[cfg(not(feature = "speed"))]
    fn add(&mut self, _depth: usize, _key: &Token<'_>, _input: &[u8]) {
        self.untracked = true;
    }

    /// `key` (a token at `offset` of `input`) of the object at `depth`.
    #[cfg(feature = "speed")]
    fn add(&mut self, depth: usize, key: &Token<'_>, input: &[u8]) {
        if self.counts.first() == Some(&u8::MAX) {
            return; // `none()`
        }
        let level = depth.wrapping_sub(1);
        let (Some(hashes), Some(offsets), Some(count), Ok(offset)) = (
            self.hashes.get_mut(level),
            self.offsets.get_mut(level),
            self.counts.get_mut(level),
            u32::try_from(key.offset),
        ) else {
            self.untracked = true;
            return;
        };
        let n = usize::from(*count);
        let this = JsonStr::from_token(key.text);
        let hash = key_hash(&this);
        let earlier = |&(&h, &at): &(&u32, &u32)| {
            h == hash
                && Tokens::new(input.get(at as usize..).unwrap_or_default())
                    .next()
                    .is_some_and(|t| JsonStr::from_token(t.text).eq_json(&this))
        };
        if hashes
            .iter()
            .zip(offsets.iter())
            .take(n)
            .any(|p| earlier(&p))
        {
            self.pending = Some(depth);
        }
        match (hashes.get_mut(n), offsets.get_mut(n)) {
            (Some(h), Some(o)) => {
                *h = hash;
                *o = offset;
                *count = count.saturating_add(1);
            }
            _ => self.untracked = true,
        }
    }
}

/// Everything but the duplicate keys `keys` does not track.
fn check_structure<'a>(
    input: &'a [u8],
    mut tokens: Tokens<'a>,
    keys: &mut KeySets,
) -> Result<(), Located<'a>> {
    let mut stack = Stack::new();
    let mut expect = Expect::Value;
    // A member's value just ended: was its key a repeat?
    let repeated = |keys: &KeySets, stack: &Stack, expect: Expect| {
        cfg!(feature = "speed")
            && expect == Expect::SeparatorOrClose
            && keys.pending == Some(stack.depth)
            && stack.top_is_object()
    };
    let duplicate = |tokens: &Tokens<'a>| Located {
        error: ParseError::DuplicateKey,
        at: tokens.position(),
    };
    loop {
        match expect {
            Expect::Value | Expect::Key { .. } | Expect::FirstElement => {
                // Each token is lexed once: taken here, whatever it is.
                let before = tokens.position();
                let Some(token) = tokens.next() else {
                    return Err(Located {
                        error: ParseError::PrematureEnd,
                        at: before,
                    });
                };
                if let Expect::Key { first: true } = expect {
                    if token.kind == TokenKind::RightBrace {
                        stack.pop();
                        expect = after_value(&mut stack, None, &tokens)?;
                        if repeated(keys, &stack, expect) {
                            return Err(duplicate(&tokens));
                        }
                        if stack.depth == 0 && expect == Expect::SeparatorOrClose {
                            return Ok(());
                        }
                        continue;
                    }
                }
                if expect == Expect::FirstElement && token.kind == TokenKind::RightBracket {
                    stack.pop();
                    expect = after_value(&mut stack, None, &tokens)?;
                    if repeated(keys, &stack, expect) {
                        return Err(duplicate(&tokens));
                    }
                    if stack.depth == 0 && expect == Expect::SeparatorOrClose {
                        return Ok(());
                    }
                    continue;
                }
                if let Expect::Key { .. } = expect {
                    stack.set_parsing_key(true);
                }
                match token.kind {
                    TokenKind::LeftBrace | TokenKind::LeftBracket => {
                        let object = token.kind == TokenKind::LeftBrace;
                        if !stack.push(object) {
                            return Err(fail(ParseError::ExpectingValue, Some(token), &tokens));
                        }
                        if object && cfg!(feature = "speed") {
                            keys.open(stack.depth);
                        }
                        expect = if object {
                            Expect::Key { first: true }
                        } else {
                            Expect::FirstElement
                        };
                        continue;
                    }
                    TokenKind::String => {
                        check_string(token.text).map_err(|error| Located {
                            error,
                            at: token.offset,
                        })?;
                        if let Expect::Key { .. } = expect {
                            keys.add(stack.depth, &token, input);
                        }
                    }
                    TokenKind::Integer | TokenKind::Float => {}
                    TokenKind::Keyword => {
                        if !matches!(token.text, b"true" | b"false" | b"null") {
                            return Err(fail(
                                ParseError::InvalidKeyword(token.text),
                                Some(token),
                                &tokens,
                            ));
                        }
                    }
                    _ => return Err(fail(ParseError::ExpectingValue, Some(token), &tokens)),
                }
                expect = after_value(&mut stack, Some(token.kind), &tokens)?;
                if repeated(keys, &stack, expect) {
                    return Err(duplicate(&tokens));
                }
                if stack.depth == 0 {
                    return Ok(());
                }
            }
            Expect::Colon => {
                let token = tokens.next();
                match token {
                    None => return Err(fail(ParseError::PrematureEnd, None, &tokens)),
                    Some(t) if t.kind == TokenKind::Colon => expect = Expect::Value,
                    Some(t) => return Err(fail(ParseError::MissingColon, Some(t), &tokens)),
                }
            }
            Expect::SeparatorOrClose => {
                let token = tokens.next();
                let object = stack.top_is_object();
                let (close, error) = if object {
                    (TokenKind::RightBrace, ParseError::ExpectedDictSeparator)
                } else {
                    (TokenKind::RightBracket, ParseError::ExpectedListSeparator)
                };
                match token {
                    None => return Err(fail(ParseError::PrematureEnd, None, &tokens)),
                    Some(t) if t.kind == close => {
                        stack.pop();
                        expect = after_value(&mut stack, None, &tokens)?;
                        if repeated(keys, &stack, expect) {
                            return Err(duplicate(&tokens));
                        }
                        if stack.depth == 0 {
                            return Ok(());
                        }
                    }
                    Some(t) if t.kind == TokenKind::Comma => {
                        expect = if object {
                            Expect::Key { first: false }
                        } else {
                            Expect::Value
                        };
                    }
                    Some(t) => return Err(fail(error, Some(t), &tokens)),
                }
            }
        }
    }
}

/// A value just ended (`kind` is its token for scalars, `None` for a
/// closed container): what does the enclosing container expect now?
fn after_value<'a>(
    stack: &mut Stack,
    kind: Option<TokenKind>,
    tokens: &Tokens<'a>,
) -> Result<Expect, Located<'a>> {
    if stack.depth == 0 {
        return Ok(Expect::SeparatorOrClose);
    }
    if stack.top_is_object() && stack.parsing_key() {
        stack.set_parsing_key(false);
        if kind != Some(TokenKind::String) {
            // QEMU points at the key's first token; its offset is before
            // any later error, which is all that matters here.
            return Err(Located {
                error: ParseError::KeyNotString,
                at: tokens.position(),
            });
        }
        return Ok(Expect::Colon);
    }
    Ok(Expect::SeparatorOrClose)
}

/// QEMU's `parse_string` checks on one string token.
fn check_string(raw: &[u8]) -> Result<(), ParseError<'_>> {
    let body = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    let mut pos = 0usize;
    while let Some(rest) = body.get(pos..).filter(|r| !r.is_empty()) {
        let Some(&first) = rest.first() else {
            break;
        };
        if first != b'\\' {
            // Plain ASCII runs need no decoding.
            let ascii = crate::lexer::scan_plain_ascii(rest);
            if ascii > 0 {
                pos = pos.saturating_add(ascii);
                continue;
            }
            let (ch, used) = unicode::decode(rest);
            if ch.is_none() {
                return Err(ParseError::InvalidUtf8);
            }
            pos = pos.saturating_add(used.max(1));
            continue;
        }
        match json::escape_at(rest) {
            json::Escape::Char(_, len) => pos = pos.saturating_add(len),
            json::Escape::InvalidCodepoint(len) => {
                // QEMU prints the escape's bytes (at most `len`), as far as
                // the token goes (its text ends at the closing quote).
                let shown = raw.get(pos.saturating_add(1)..).unwrap_or_default();
                return Err(ParseError::InvalidCodepoint(
                    shown.get(..len).unwrap_or(shown),
                ));
            }
            json::Escape::Invalid => return Err(ParseError::InvalidEscape),
        }
    }
    Ok(())
}

/// Objects with fewer keys than this are checked for duplicates with the
/// key hashes on the stack; larger ones re-walk earlier keys in blocks.
const HASH_BLOCK: usize = 32;

/// The first duplicate key before `limit`, located at the end of the
/// duplicate pair's value.
fn first_duplicate(input: &[u8], limit: usize) -> Option<Located<'_>> {
    let mut best: Option<usize> = None;
    let tokens = Tokens::new(input);
    for token in tokens {
        if token.offset >= limit || best.is_some_and(|b| token.offset >= b) {
            break;
        }
        if token.kind == TokenKind::LeftBrace {
            let object = input.get(token.offset..).unwrap_or_default();
            if let Some(at) = duplicate_in_object(object, limit.saturating_sub(token.offset)) {
                let at = at.saturating_add(token.offset);
                best = Some(best.map_or(at, |b| b.min(at)));
            }
        }
    }
    best.map(|at| Located {
        error: ParseError::DuplicateKey,
        at,
    })
}

/// Keys of the object at the start of `object` (offsets relative to it),
/// complete pairs only, up to `limit`: (key, end of the pair's value).
fn pairs(object: &[u8], limit: usize) -> impl Iterator<Item = (JsonStr<'_>, usize)> + '_ {
    let mut tokens = Tokens::new(object);
    tokens.next(); // `{`
    core::iter::from_fn(move || {
        let key = tokens.next()?;
        if key.kind != TokenKind::String || key.offset >= limit {
            return None;
        }
        if tokens.next()?.kind != TokenKind::Colon {
            return None;
        }
        Value::take(&mut tokens)?;
        let end = tokens.position();
        if end > limit {
            return None;
        }
        if tokens.peek().is_some_and(|t| t.kind == TokenKind::Comma) {
            tokens.next();
        }
        Some((JsonStr::from_token(key.text), end))
    })
}

fn key_hash(key: &JsonStr<'_>) -> u32 {
    // FNV-1a over the decoded characters (plain ASCII is its own).
    let step = |h: u32, c: u32| (h ^ c).wrapping_mul(0x0100_0193);
    match key.plain() {
        Some(body) => body
            .iter()
            .fold(0x811c_9dc5u32, |h, &b| step(h, u32::from(b))),
        None => key
            .chars()
            .fold(0x811c_9dc5u32, |h, ch| step(h, u32::from(ch))),
    }
}

/// Offset (relative to `object`) of the end of the first pair whose key
/// repeats an earlier one.
///
/// Keys are hashed in blocks of [`HASH_BLOCK`] on the stack; each block is
/// compared with itself and, in one more walk, with all earlier keys, so an
/// object of `n` keys costs about `n / HASH_BLOCK` walks over it. Equal
/// hashes are confirmed by comparing the decoded keys.
fn duplicate_in_object(object: &[u8], limit: usize) -> Option<usize> {
    let mut all = pairs(object, limit);
    let mut first_index = 0usize;
    loop {
        // (hash, end of the pair's value): 8 bytes a key. A message is at
        // most 64 MiB (the token size limit), so offsets fit in 32 bits.
        let mut block = [(0u32, 0u32); HASH_BLOCK];
        let mut filled = 0usize;
        for (slot, (key, end)) in block.iter_mut().zip(all.by_ref()) {
            *slot = (key_hash(&key), u32::try_from(end).unwrap_or(u32::MAX));
            filled = filled.saturating_add(1);
        }
        let block = block.get(..filled).unwrap_or_default();
        if block.is_empty() {
            return None;
        }
        let key_at = |index: usize| pairs(object, limit).nth(index).map(|(k, _)| k);
        let same = |a: usize, b: usize| match (key_at(a), key_at(b)) {
            (Some(x), Some(y)) => x.eq_json(&y),
            _ => false,
        };
        // The first key of the block that repeats an earlier key of the
        // block or of an earlier block.
        let mut found: Option<usize> = None;
        for (i, &(hash, _)) in block.iter().enumerate() {
            let this = first_index.saturating_add(i);
            let in_block = block
                .iter()
                .take(i)
                .enumerate()
                .any(|(j, &(h, _))| h == hash && same(first_index.saturating_add(j), this));
            if in_block {
                found = Some(i);
                break;
            }
        }
        if first_index > 0 {
            for (key, _) in pairs(object, limit).take(first_index) {
                let hash = key_hash(&key);
                let bound = found.unwrap_or(block.len());
                let hit = (0..bound).find(|&i| {
                    block.get(i).is_some_and(|&(h, _)| h == hash)
                        && key_at(first_index.saturating_add(i)).is_some_and(|k| k.eq_json(&key))
                });
                if hit.is_some() {
                    found = hit;
                }
            }
        }
        if let Some(i) = found {
            return block.get(i).map(|&(_, end)| end as usize);
        }
        first_index = first_index.saturating_add(block.len());
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

    fn err(input: &[u8]) -> String {
        validate(input).unwrap_err().to_string()
    }

    /// JSON-ish text with few distinct keys, nesting, and the odd error.
    #[cfg(feature = "speed")]
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
                proptest::collection::vec((key, inner.clone()), 0..10).prop_map(|m| {
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

    #[cfg(feature = "speed")]
    proptest::proptest! {
        /// Duplicates found on the structure pass give exactly the verdict
        /// of the separate duplicate pass.
        #[test]
        fn single_pass_duplicates_agree(text in doc(), cut in 0usize..200) {
            let text = text.as_bytes();
            let cut = text.get(..text.len().saturating_sub(cut % 3)).unwrap();
            for input in [text, cut] {
                proptest::prop_assert_eq!(
                    validate(input),
                    validate_with(input, KeySets::none(), false),
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
    }
}
