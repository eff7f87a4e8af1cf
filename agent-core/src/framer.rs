//! Splitting the byte stream into messages, as QEMU's `json-streamer.c`
//! does, into a buffer the caller owns, and checking each message's
//! grammar as its tokens arrive.
//!
//! The framer drives the [`Lexer`] and keeps QEMU's message accounting
//! (PROTOCOL.md §2.3–2.4): brace and bracket counts, token count and token
//! bytes. A message is complete when both counts are back to zero or
//! either went negative (a stray `}` is a complete, if invalid, message).
//! Its bytes are copied into the caller's buffer, and each complete token
//! is handed to the [`Parser`], so that when the message ends its grammar
//! has been checked and the request's parts found in one pass over its
//! tokens. A message that does not fit is still followed to its end and
//! then reported as [`FrameError::TooLarge`], so the stream stays in sync.
//!
//! Long string values of `arguments` members can go to the command
//! table's [`Spill`] instead of the buffer (see [`spill`](crate::spill)):
//! the parser says when the next token is such a value, and the framer is
//! the one owner of the spilled string, from [`Spill::begin`] to
//! [`Spill::discard`].

use core::fmt;

use crate::lexer::{Lexeme, Lexer, TokenKind, MAX_TOKEN_BYTES};
use crate::parser::{ParseError, Parser};
use crate::record::Recorder;
use crate::spill::{Spill, StringStream};
use crate::unicode::ModUtf8Chars;

/// QEMU's `MAX_TOKEN_COUNT`: the most tokens in one message.
pub(crate) const MAX_TOKEN_COUNT: u32 = 2 * 1024 * 1024;
/// QEMU's `MAX_NESTING`: the most open braces plus brackets.
pub(crate) const MAX_NESTING: i64 = 1024;

/// A complete message, or the error that ended one.
#[derive(Debug)]
pub(crate) enum Frame<'b, const ARGS: usize> {
    /// A message whose grammar the parser accepted.
    Valid(Validated<'b, ARGS>),
    /// A complete message the parser rejected.
    Invalid(ParseError<'b>),
    /// A lexical error or an exceeded limit; the message was dropped.
    Error(FrameError<'b>),
}

/// A message the parser accepted, with the record of its parts. Only the
/// framer makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validated<'b, const ARGS: usize> {
    message: &'b [u8],
    record: &'b Recorder<ARGS>,
    spilled: Option<usize>,
}

impl<'b, const ARGS: usize> Validated<'b, ARGS> {
    /// The message's bytes (a placeholder in place of a spilled string).
    pub(crate) fn message(&self) -> &'b [u8] {
        self.message
    }

    /// Where the parser found the request's parts.
    pub(crate) fn record(&self) -> &'b Recorder<ARGS> {
        self.record
    }

    /// Where the placeholder of a string that went to the spill starts.
    pub(crate) fn spilled(&self) -> Option<usize> {
        self.spilled
    }
}

/// Why a message was dropped. [`Display`](fmt::Display) gives the
/// description qemu-ga sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError<'b> {
    /// A lexical error: "JSON parse error, stray '`token`'".
    Stray(StrayToken<'b>),
    /// "JSON token size limit exceeded" (64 MiB of tokens in one message,
    /// or one token longer than that).
    TokenSizeLimit,
    /// "JSON token count limit exceeded" (2 Mi tokens in one message).
    TokenCountLimit,
    /// "JSON nesting depth limit exceeded" (more than 1024 open).
    NestingLimit,
    /// The message was longer than the caller's buffer.
    TooLarge {
        /// Bytes in the message, from its first token to its last.
        size: usize,
        /// The buffer's capacity.
        capacity: usize,
    },
}

/// The text of the token a lexical error ended: the unfinished token's bytes
/// and the offending byte, raw (invalid UTF-8 is possible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StrayToken<'b> {
    /// The token's bytes as far as the buffer held them, offending byte
    /// included when `elided` is false.
    pub head: &'b [u8],
    /// Whether part of the token did not fit the buffer; the offending
    /// byte is then `last`, after the elision.
    pub elided: bool,
    /// The offending byte.
    pub last: u8,
}

impl fmt::Display for FrameError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Stray(token) => {
                // QEMU formats the token with "%s": it ends at a NUL byte,
                // and its JSON writer turns invalid UTF-8 into U+FFFD.
                let nul = token.head.iter().position(|&b| b == 0);
                let head = token
                    .head
                    .get(..nul.unwrap_or(token.head.len()))
                    .unwrap_or_default();
                f.write_str("JSON parse error, stray '")?;
                for ch in ModUtf8Chars::new(head) {
                    fmt::Write::write_char(f, ch)?;
                }
                if token.elided && nul.is_none() {
                    f.write_str("...")?;
                    if token.last != 0 {
                        fmt::Write::write_char(
                            f,
                            ModUtf8Chars::new(&[token.last]).next().unwrap_or('?'),
                        )?;
                    }
                }
                f.write_str("'")
            }
            FrameError::TokenSizeLimit => f.write_str("JSON token size limit exceeded"),
            FrameError::TokenCountLimit => f.write_str("JSON token count limit exceeded"),
            FrameError::NestingLimit => f.write_str("JSON nesting depth limit exceeded"),
            FrameError::TooLarge { size, capacity } => {
                f.write_str("JSON request too large: ")?;
                crate::writer::fmt_decimal(f, *size as u64)?;
                f.write_str(" bytes exceed the agent's request buffer of ")?;
                crate::writer::fmt_decimal(f, *capacity as u64)?;
                f.write_str(" bytes")
            }
        }
    }
}

/// Collects one message at a time into the buffer `B` (`&mut [u8]`,
/// `[u8; N]`, a `Vec<u8>`...), checking its grammar on the way; `ARGS` is
/// the size of the parser's table of `arguments` members.
#[derive(Debug)]
pub(crate) struct Framer<B, const ARGS: usize> {
    lexer: Lexer,
    parser: Parser<ARGS>,
    buf: B,
    /// Bytes of the current message stored in `buf`.
    len: usize,
    /// Bytes of the current message seen (stored, spilled or dropped).
    size: usize,
    /// Some of the message did not fit in `buf`.
    overflowed: bool,
    /// Message bytes before the end of `buf` that are not in it (a
    /// spilled string, less its placeholder).
    removed: usize,
    /// Offset in the buffer where the unfinished token began.
    token_start: usize,
    /// Bytes of the unfinished token seen so far.
    token_len: usize,
    braces: i64,
    brackets: i64,
    tokens: u32,
    token_bytes: usize,
    /// The previous `push` returned a frame that borrowed `buf`.
    emitted: bool,
    /// The spilled string of this message, if any.
    spill: SpillState,
}

/// What happened to this message's long string, if it had one.
#[derive(Clone, Debug, Default)]
enum SpillState {
    /// Nothing spilled.
    #[default]
    None,
    /// The spill refused the string being read: it is not offered again.
    Declined,
    /// The string starting at `at` is going to the spill.
    Streaming { at: usize, stream: StringStream },
    /// The string was taken whole; its placeholder starts at `at`.
    Taken { at: usize },
}

/// A frame decided but not yet borrowed from the buffer.
enum Pending {
    Value,
    Limit(FrameError<'static>),
    Stray(u8),
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, const ARGS: usize> Framer<B, ARGS> {
    /// A framer that stores messages in `buf`; its length is the largest
    /// message accepted.
    pub(crate) fn new(buf: B) -> Self {
        Framer {
            lexer: Lexer::new(),
            parser: Parser::new(),
            buf,
            len: 0,
            size: 0,
            overflowed: false,
            removed: 0,
            token_start: 0,
            token_len: 0,
            braces: 0,
            brackets: 0,
            tokens: 0,
            token_bytes: 0,
            emitted: false,
            spill: SpillState::None,
        }
    }

    /// Drop any partial message and unfinished token, and leave error
    /// recovery: the next byte is lexed from the start state. A string
    /// spilled for the message is discarded.
    pub(crate) fn reset(&mut self, spill: Option<&mut (dyn Spill + '_)>) {
        self.lexer.reset();
        self.clear_message(spill);
    }

    /// Whether no message or token is in progress and no error recovery is
    /// under way.
    pub(crate) fn is_idle(&self) -> bool {
        self.lexer.is_idle() && self.tokens == 0 && self.token_len == 0
    }

    /// The frame returned last has been dealt with: forget it, and discard
    /// what it spilled (its command has run, or it was rejected).
    pub(crate) fn done(&mut self, spill: Option<&mut (dyn Spill + '_)>) {
        if self.emitted {
            self.clear_message(spill);
        }
    }

    /// Consume input until one frame is complete or the input is used up.
    /// Returns the bytes consumed and the frame, if one completed; feed the
    /// rest of the input in the next call. Long string values of
    /// `arguments` members are offered to `spill`, if given.
    pub(crate) fn push(
        &mut self,
        input: &[u8],
        mut spill: Option<&mut (dyn Spill + '_)>,
    ) -> (usize, Option<Frame<'_, ARGS>>) {
        if self.emitted {
            self.clear_message(spill.as_deref_mut());
        }
        // Asked once per input: strings up to this long stay in the buffer.
        let threshold = spill.as_deref().map(|s| s.threshold().max(1));
        let mut pos = 0usize;
        while let Some(rest) = input.get(pos..).filter(|rest| !rest.is_empty()) {
            let step = self.lexer.step(rest);
            let bytes = rest.get(..step.consumed).unwrap_or_default();
            pos = pos.saturating_add(step.consumed);
            match step.lexeme {
                Lexeme::Skipped => {
                    // Whitespace inside a message is kept; between messages
                    // (and during recovery, which only happens between
                    // messages) it is dropped.
                    if self.tokens > 0 {
                        self.store(bytes);
                    }
                }
                Lexeme::Partial => match spill.as_deref_mut() {
                    Some(spill) => self.partial_spilling(bytes, spill),
                    None => self.store_token_bytes(bytes),
                },
                Lexeme::Token(kind) => {
                    match spill.as_deref_mut() {
                        Some(spill) => {
                            // A long string that ends in this input is
                            // offered too: its body as a partial token.
                            let long = kind == TokenKind::String
                                && matches!(self.spill, SpillState::None)
                                && threshold.is_some_and(|t| {
                                    self.token_len.saturating_add(bytes.len()) > t
                                });
                            match (bytes.split_last(), &self.spill) {
                                (Some((quote, body)), _) if long => {
                                    self.partial_spilling(body, spill);
                                    self.end_spilling(core::slice::from_ref(quote), kind, spill);
                                }
                                (_, SpillState::Streaming { .. }) => {
                                    self.end_spilling(bytes, kind, spill);
                                }
                                _ => {
                                    self.forget_declined_string();
                                    self.store_token_bytes(bytes);
                                }
                            }
                        }
                        None => self.store_token_bytes(bytes),
                    }
                    if let Some(pending) = self.on_token(kind) {
                        return (pos, Some(self.frame(pending, spill)));
                    }
                }
                Lexeme::Error => {
                    if matches!(self.spill, SpillState::Streaming { .. }) {
                        // The error's text is the stored head, elided.
                        self.count_token_bytes(bytes.len());
                        self.overflowed = true;
                    } else {
                        self.store_token_bytes(bytes);
                    }
                    let last = bytes.last().copied().unwrap_or(0);
                    return (pos, Some(self.frame(Pending::Stray(last), spill)));
                }
                Lexeme::Oversized => {
                    let limit = Pending::Limit(FrameError::TokenSizeLimit);
                    return (pos, Some(self.frame(limit, spill)));
                }
            }
        }
        (pos, None)
    }

    fn clear_message(&mut self, spill: Option<&mut (dyn Spill + '_)>) {
        if !matches!(self.spill, SpillState::None | SpillState::Declined) {
            if let Some(spill) = spill {
                spill.discard();
            }
        }
        self.spill = SpillState::None;
        self.parser.reset();
        self.len = 0;
        self.size = 0;
        self.overflowed = false;
        self.removed = 0;
        self.token_start = 0;
        self.token_len = 0;
        self.braces = 0;
        self.brackets = 0;
        self.tokens = 0;
        self.token_bytes = 0;
        self.emitted = false;
    }

    fn store_token_bytes(&mut self, bytes: &[u8]) {
        if self.token_len == 0 {
            // Where the token starts in the buffer (if it fits).
            self.token_start = self.size.saturating_sub(self.removed);
        }
        self.token_len = self.token_len.saturating_add(bytes.len());
        self.store(bytes);
    }

    fn store(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        self.put(bytes);
    }

    /// Append to the buffer without counting the bytes as message bytes.
    fn put(&mut self, bytes: &[u8]) {
        let buf = self.buf.as_mut();
        // Most tokens and most whitespace are one byte: no memcpy call.
        if let ([byte], Some(slot)) = (bytes, buf.get_mut(self.len)) {
            *slot = *byte;
            self.len = self.len.saturating_add(1);
            return;
        }
        let room = buf.get_mut(self.len..).unwrap_or_default();
        let n = bytes.len().min(room.len());
        if let (Some(dst), Some(src)) = (room.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
            self.len = self.len.saturating_add(n);
        }
        if n < bytes.len() {
            self.overflowed = true;
        }
    }

    /// Part of a token, with a spill at hand: a long enough string value
    /// of an `arguments` member goes to it instead of the buffer. The
    /// first `threshold` bytes stay, for the text of a lexical error.
    fn partial_spilling(&mut self, bytes: &[u8], spill: &mut dyn Spill) {
        if let SpillState::Streaming { stream, .. } = &mut self.spill {
            stream.feed(bytes, false, spill);
            self.count_token_bytes(bytes.len());
            return;
        }
        let limit = spill.threshold().max(1);
        let candidate = matches!(self.spill, SpillState::None)
            && !self.overflowed
            && self.token_len.saturating_add(bytes.len()) > limit;
        if !candidate {
            self.store_token_bytes(bytes);
            return;
        }
        let (head, rest) = bytes.split_at(limit.saturating_sub(self.token_len).min(bytes.len()));
        self.store_token_bytes(head);
        if self.overflowed || !self.begin_spill(spill) {
            // Once per string: the rest of it stays in the buffer.
            self.spill = SpillState::Declined;
            self.store_token_bytes(rest);
            return;
        }
        if let SpillState::Streaming { stream, .. } = &mut self.spill {
            stream.feed(rest, false, spill);
        }
        self.count_token_bytes(rest.len());
    }

    /// Offer the string token in the buffer to `spill` if it is the value
    /// of an `arguments` member; if taken, stream what is stored of it.
    fn begin_spill(&mut self, spill: &mut dyn Spill) -> bool {
        let Some((key_at, key_len)) = self.parser.argument_key() else {
            return false;
        };
        let buf = self.buf.as_ref();
        let start = self.token_start;
        let Some(&(b'"' | b'\'')) = buf.get(start) else {
            return false;
        };
        let key = buf
            .get(key_at..key_at.saturating_add(key_len))
            .unwrap_or_default();
        if !spill.begin(crate::json::JsonStr::from_token(key)) {
            return false;
        }
        let mut stream = StringStream::new();
        let body = buf
            .get(start.saturating_add(1)..self.len)
            .unwrap_or_default();
        stream.feed(body, false, spill);
        self.spill = SpillState::Streaming { at: start, stream };
        true
    }

    /// Bytes of a token that are not stored.
    fn count_token_bytes(&mut self, n: usize) {
        self.size = self.size.saturating_add(n);
        self.token_len = self.token_len.saturating_add(n);
    }

    /// A string the spill declined has ended: a later one may be offered.
    fn forget_declined_string(&mut self) {
        if matches!(self.spill, SpillState::Declined) {
            self.spill = SpillState::None;
        }
    }

    /// The end of a token, with a spill at hand.
    #[cfg_attr(feature = "speed", inline(always))]
    fn end_spilling(&mut self, bytes: &[u8], kind: TokenKind, spill: &mut dyn Spill) {
        let SpillState::Streaming { at, stream } = &mut self.spill else {
            self.forget_declined_string();
            self.store_token_bytes(bytes);
            return;
        };
        let at = *at;
        // The last byte is the closing quote.
        let (quote, body) = bytes.split_last().unwrap_or((&b'"', bytes));
        stream.feed(body, true, spill);
        self.size = self.size.saturating_add(bytes.len());
        self.token_len = self.token_len.saturating_add(bytes.len());
        // The placeholder replaces the string's stored head.
        self.len = at.saturating_add(1);
        let mut placeholder = [0u8; 16];
        let text = stream.placeholder();
        let n = text.len().min(placeholder.len().saturating_sub(1));
        if let (Some(dst), Some(src)) = (placeholder.get_mut(..n), text.get(..n)) {
            dst.copy_from_slice(src);
        }
        if let Some(q) = placeholder.get_mut(n) {
            *q = *quote;
        }
        let failed = stream.failed();
        self.put(placeholder.get(..n.saturating_add(1)).unwrap_or_default());
        self.removed = self.size.saturating_sub(self.len);
        self.spill = if failed || kind != TokenKind::String {
            // The parser will reject the placeholder as it would have
            // rejected the string; nothing staged is of use.
            spill.discard();
            SpillState::None
        } else {
            SpillState::Taken { at }
        };
    }

    /// QEMU's `json_message_process_token` for one complete token, and the
    /// token to the parser.
    #[cfg_attr(feature = "speed", inline(always))]
    fn on_token(&mut self, kind: TokenKind) -> Option<Pending> {
        let token_len = core::mem::take(&mut self.token_len);
        match kind {
            TokenKind::LeftBrace => self.braces = self.braces.saturating_add(1),
            TokenKind::RightBrace => self.braces = self.braces.saturating_sub(1),
            TokenKind::LeftBracket => self.brackets = self.brackets.saturating_add(1),
            TokenKind::RightBracket => self.brackets = self.brackets.saturating_sub(1),
            _ => {}
        }
        if self.token_bytes.saturating_add(token_len).saturating_add(1) > MAX_TOKEN_BYTES {
            return Some(Pending::Limit(FrameError::TokenSizeLimit));
        }
        if self.tokens.saturating_add(1) > MAX_TOKEN_COUNT {
            return Some(Pending::Limit(FrameError::TokenCountLimit));
        }
        let opens = matches!(kind, TokenKind::LeftBrace | TokenKind::LeftBracket);
        if opens && self.braces.saturating_add(self.brackets) > MAX_NESTING {
            return Some(Pending::Limit(FrameError::NestingLimit));
        }
        self.tokens = self.tokens.saturating_add(1);
        self.token_bytes = self.token_bytes.saturating_add(token_len);
        if !self.overflowed {
            let message = self.buf.as_ref().get(..self.len).unwrap_or_default();
            let plain = self.lexer.was_plain_string();
            self.parser.token(kind, message, self.token_start, plain);
        }
        let open = self.braces > 0 || self.brackets > 0;
        if open && self.braces >= 0 && self.brackets >= 0 {
            return None;
        }
        Some(Pending::Value)
    }

    /// The frame for `pending`. A message that failed discards what it
    /// spilled at once; a valid one keeps it for its command until
    /// [`done`](Self::done).
    fn frame(&mut self, pending: Pending, spill: Option<&mut (dyn Spill + '_)>) -> Frame<'_, ARGS> {
        self.emitted = true;
        let complete = !self.overflowed;
        let taken = match self.spill {
            SpillState::Taken { at } if complete && matches!(pending, Pending::Value) => Some(at),
            _ => None,
        };
        let stored = self.buf.as_ref().get(..self.len).unwrap_or_default();
        let verdict = match pending {
            Pending::Value if complete => Some(self.parser.finish(stored)),
            _ => None,
        };
        let keep = taken.is_some() && matches!(verdict, Some(Ok(_)));
        if !keep && !matches!(self.spill, SpillState::None | SpillState::Declined) {
            if let Some(spill) = spill {
                spill.discard();
            }
            self.spill = SpillState::None;
        }
        match (pending, verdict) {
            (_, Some(Ok(record))) => Frame::Valid(Validated {
                message: stored,
                record,
                spilled: taken,
            }),
            (_, Some(Err(error))) => Frame::Invalid(error),
            (Pending::Value, None) => Frame::Error(FrameError::TooLarge {
                size: self.size,
                capacity: self.buf.as_ref().len(),
            }),
            (Pending::Limit(error), None) => Frame::Error(error),
            (Pending::Stray(last), None) => {
                let head = stored.get(self.token_start..).unwrap_or_default();
                Frame::Error(FrameError::Stray(StrayToken {
                    head,
                    elided: !complete,
                    last,
                }))
            }
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
    use std::vec::Vec;

    /// Every frame in `input`, rendered as text.
    fn frames_with(capacity: usize, input: &[u8]) -> Vec<String> {
        let mut framer = Framer::<_, 4>::new(vec![0u8; capacity]);
        let mut out = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let (n, frame) = framer.push(rest, None);
            match frame {
                Some(Frame::Valid(v)) => {
                    out.push(String::from_utf8_lossy(v.message()).into_owned())
                }
                Some(Frame::Invalid(e)) => out.push(std::format!("invalid: {e}")),
                Some(Frame::Error(e)) => out.push(std::format!("error: {e}")),
                None => {}
            }
            rest = &rest[n..];
        }
        out
    }

    fn frames(input: &[u8]) -> Vec<String> {
        frames_with(4096, input)
    }

    #[test]
    fn splits_values() {
        assert_eq!(
            frames(b" {\"a\": [1, 2]}\n{\"b\":{}} [3]"),
            ["{\"a\": [1, 2]}", "{\"b\":{}}", "[3]"]
        );
    }

    #[test]
    fn scalars_are_messages_of_their_own() {
        assert_eq!(frames(b"42 \"x\" true "), ["42", "\"x\"", "true"]);
        // A number needs its lookahead byte.
        assert_eq!(frames(b"42"), Vec::<String>::new());
    }

    #[test]
    fn stray_closers_end_a_message() {
        // A stray closer is a message of its own, which the parser rejects.
        let expecting = "invalid: JSON parse error, expecting value";
        assert_eq!(frames(b"}"), [expecting]);
        assert_eq!(
            frames(b"{\"a\":1]"),
            ["invalid: JSON parse error, expected separator in dict"]
        );
        // Misnested but balanced: kept together.
        assert_eq!(frames(b"[{]}"), [expecting]);
    }

    #[test]
    fn lexical_error_drops_the_message_and_reports_the_token() {
        assert_eq!(
            frames(b"{\"execute\":\"guest-pi\xFF{\"execute\":\"guest-ping\"}"),
            [
                "error: JSON parse error, stray '\"guest-pi\u{FFFD}'",
                "{\"execute\":\"guest-ping\"}"
            ]
        );
        assert_eq!(
            frames(b"\xFF"),
            ["error: JSON parse error, stray '\u{FFFD}'"]
        );
        // A newline is whitespace, not a reset.
        assert_eq!(
            frames(b"{\"execute\":\"guest-ping\"\n}"),
            ["{\"execute\":\"guest-ping\"\n}"]
        );
    }

    #[test]
    fn nesting_limit() {
        let ok = [&[b'['; 1024][..], &[b']'; 1024][..]].concat();
        assert_eq!(frames(&ok).len(), 1);
        let deep = [&[b'['; 1025][..], b"]"].concat();
        // QEMU drops the message at the 1025th `[`; the `]` then stands alone.
        assert_eq!(
            frames(&deep),
            [
                "error: JSON nesting depth limit exceeded",
                "invalid: JSON parse error, expecting value"
            ]
        );
    }

    #[test]
    fn token_count_limit() {
        // `[` + 2Mi - 1 tokens "0," ... then more: the 2Mi+1-th token fails.
        let mut input = Vec::from(&b"["[..]);
        for _ in 0..(MAX_TOKEN_COUNT / 2) {
            input.extend_from_slice(b"0,");
        }
        input.extend_from_slice(b"0]");
        let got = frames_with(8 << 20, &input);
        assert_eq!(got[0], "error: JSON token count limit exceeded");
    }

    #[test]
    fn too_large_is_reported_after_the_end_and_keeps_sync() {
        let got = frames_with(16, b"{\"execute\": \"guest-sync\", \"id\": 1} {\"a\":1}");
        assert_eq!(
            got,
            [
                "error: JSON request too large: 34 bytes exceed the agent's request buffer of 16 bytes",
                "{\"a\":1}"
            ]
        );
        // A stray token that did not fit is elided.
        let got = frames_with(4, b"\"abcdefgh\x01");
        assert_eq!(got, ["error: JSON parse error, stray '\"abc...\u{1}'"]);
    }

    #[test]
    fn token_size_limit_counts_all_tokens_of_a_message() {
        // Two 40 MiB strings in one message: 80 MiB of tokens. The framer
        // counts them even though its buffer holds almost nothing.
        let body = vec![b'a'; 40 << 20];
        let mut input = Vec::from(&b"[\""[..]);
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\", \"");
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\"] {}");
        assert_eq!(
            frames_with(64, &input),
            [
                "error: JSON token size limit exceeded",
                "invalid: JSON parse error, expecting value",
                "{}"
            ]
        );
    }

    #[test]
    fn reset_drops_partial_input() {
        let mut framer = Framer::<_, 4>::new([0u8; 64]);
        assert!(framer.push(b"{\"execute\":", None).1.is_none());
        assert!(!framer.is_idle());
        framer.reset(None);
        assert!(framer.is_idle());
        let (_, frame) = framer.push(b"{}", None);
        assert!(matches!(frame, Some(Frame::Valid(v)) if v.message() == b"{}"));
        assert_eq!(
            FrameError::TokenSizeLimit.to_string(),
            "JSON token size limit exceeded"
        );
    }
}
