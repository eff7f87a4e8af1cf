//! Streaming long string arguments out of the request buffer.
//!
//! A request's size is bounded by the caller's buffer, but one argument
//! can be far larger than anything else in it: the base64 data of
//! `guest-file-write` may be 64 MiB. An adapter that implements [`Spill`]
//! (and returns it from [`Commands::spill`](crate::Commands::spill)) is
//! offered each string value of a top-level `arguments` member once the
//! string has grown past [`Spill::threshold`] bytes. If it accepts, the
//! string's decoded content is handed to it as it arrives and never stored;
//! the buffer keeps a short placeholder in its place, and the command reads
//! the data back from the adapter ([`Args::large_str`](crate::args::Args::large_str)).
//!
//! Nothing about the request's meaning changes. The framer checks the
//! string exactly as the parser would (escapes, UTF-8, code points), and an
//! invalid string leaves a placeholder that makes the parser report the
//! same error at the same place. A request that fails in any way after a
//! spill began is answered as before, and the adapter is told to
//! [`discard`](Spill::discard) what it staged: a command only ever sees
//! data of a request that parsed.
//!
//! ```
//! use agent_core::prelude::*;
//! use agent_core::{json::JsonStr, spill::Spill, LargeStr};
//!
//! /// Collects the `data` argument of `guest-put`, counting its bytes.
//! #[derive(Default)]
//! struct Put {
//!     staged: Vec<u8>,
//!     received: usize,
//! }
//!
//! impl Spill for Put {
//!     fn threshold(&self) -> usize { 16 }
//!     fn begin(&mut self, key: JsonStr<'_>) -> bool { key.eq_str("data") }
//!     fn data(&mut self, bytes: &[u8]) { self.staged.extend_from_slice(bytes) }
//!     fn discard(&mut self) { self.staged.clear() }
//! }
//!
//! impl Put {
//!     const COMMANDS: [Command<Self>; 1] = [Command::new("guest-put", Self::put)];
//!
//!     fn put<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
//!         let n = match args.large_str("data")? {
//!             LargeStr::Spilled => self.staged.len(),
//!             LargeStr::Inline(s) => s.bytes().count(),
//!         };
//!         args.finish()?;
//!         self.received += n;
//!         Ok(reply.ok_empty()?)
//!     }
//! }
//!
//! impl Commands for Put {
//!     type Error = core::convert::Infallible;
//!     fn commands(&self) -> &[Command<Self>] { &Self::COMMANDS }
//!     fn spill(&mut self) -> Option<&mut dyn Spill> { Some(self) }
//! }
//!
//! // A 64-byte buffer, and a request of over 1000 bytes.
//! let mut agent = Agent::new([0u8; 64], Put::default(), Policy::new());
//! let request = format!(r#"{{"execute": "guest-put", "arguments": {{"data": "{}\u00e9"}}}}"#, "x".repeat(1000));
//! let mut out = Vec::new();
//! agent.feed(request.as_bytes(), &mut out).unwrap();
//! assert_eq!(out, b"{\"return\": {}}\n");
//! assert_eq!(agent.commands().received, 1002); // UTF-8 of "x" * 1000 + "é"
//! ```

use crate::json::{self, JsonStr};
use crate::scan::scan_plain_ascii;
use crate::unicode;

/// Where the adapter keeps a long string argument while its request
/// arrives. All calls come from inside [`Agent::feed`](crate::Agent::feed).
pub trait Spill {
    /// Strings of at most this many bytes (quotes included) stay in the
    /// request buffer. Choose it well below the buffer's size.
    fn threshold(&self) -> usize;

    /// Whether to take the value of argument `key`, which has just grown
    /// past the threshold. Only one string per request is offered at a
    /// time; after an accepted one ends, later ones stay in the buffer.
    fn begin(&mut self, key: JsonStr<'_>) -> bool;

    /// The next piece of the string's content, decoded: the bytes QEMU
    /// would store (UTF-8, with `\u0000` as `C0 80`).
    fn data(&mut self, bytes: &[u8]);

    /// Forget the string being or last taken: its request failed, was
    /// answered, or the agent was reset.
    fn discard(&mut self);
}

/// Longest piece of a string that must be seen whole to be decoded: a
/// surrogate pair of `\u` escapes.
const LOOKAHEAD: usize = 12;

/// A string body checked and decoded piece by piece, as the parser's
/// string rules and [`JsonStr::bytes`] would on the whole of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct StringStream {
    /// An escape or UTF-8 sequence cut by the end of the previous piece.
    carry: [u8; LOOKAHEAD],
    carried: u8,
    /// What to leave in the buffer: empty, or the first invalid sequence.
    placeholder: [u8; LOOKAHEAD],
    placeholder_len: u8,
    failed: bool,
}

impl StringStream {
    /// A stream at the start of a string body.
    pub(crate) const fn new() -> Self {
        StringStream {
            carry: [0; LOOKAHEAD],
            carried: 0,
            placeholder: [0; LOOKAHEAD],
            placeholder_len: 0,
            failed: false,
        }
    }

    /// Whether the body so far broke the parser's string rules (nothing
    /// more is passed on once it did).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// A short body for which the parser gives the same verdict as for
    /// the whole string: empty if it is valid, else its first invalid
    /// sequence. Complete once `feed` was called with `end`.
    pub(crate) fn placeholder(&self) -> &[u8] {
        self.placeholder
            .get(..usize::from(self.placeholder_len))
            .unwrap_or_default()
    }

    /// Take the next piece of the body (the bytes between the quotes);
    /// `end` says it is the last. Decoded content goes to `sink`.
    pub(crate) fn feed(&mut self, piece: &[u8], end: bool, sink: &mut dyn Spill) {
        let mut piece = piece;
        if self.carried > 0 {
            // Join the carried bytes with enough of this piece to finish
            // the sequence they began.
            let take = piece.len().min(LOOKAHEAD);
            let mut window = [0u8; 2 * LOOKAHEAD];
            let carried = usize::from(self.carried);
            let (Some(dst_carry), Some(src_carry)) =
                (window.get_mut(..carried), self.carry.get(..carried))
            else {
                return;
            };
            dst_carry.copy_from_slice(src_carry);
            let total = carried.saturating_add(take);
            if let (Some(dst), Some(src)) = (window.get_mut(carried..total), piece.get(..take)) {
                dst.copy_from_slice(src);
            }
            let joined = window.get(..total).unwrap_or_default();
            let whole = end && take == piece.len();
            let used = self.process(joined, whole, sink);
            if used < carried {
                // Still cut short (this piece was tiny): carry on.
                self.keep(joined.get(used..).unwrap_or_default());
                return;
            }
            self.carried = 0;
            piece = piece
                .get(used.saturating_sub(carried)..)
                .unwrap_or_default();
        }
        let used = self.process(piece, end, sink);
        self.keep(piece.get(used..).unwrap_or_default());
    }

    fn keep(&mut self, rest: &[u8]) {
        if self.failed {
            self.carried = 0;
            return;
        }
        let n = rest.len().min(LOOKAHEAD);
        if let (Some(dst), Some(src)) = (self.carry.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.carried = n as u8; // n <= LOOKAHEAD
    }

    fn fail(&mut self, sequence: &[u8]) {
        let n = sequence.len().min(LOOKAHEAD);
        if let (Some(dst), Some(src)) = (self.placeholder.get_mut(..n), sequence.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.placeholder_len = n as u8; // n <= LOOKAHEAD
        self.failed = true;
    }

    /// Decode whole sequences from the front of `body`; a sequence that
    /// may continue past its end is left unless `end`. Returns the bytes
    /// used.
    fn process(&mut self, body: &[u8], end: bool, sink: &mut dyn Spill) -> usize {
        let mut pos = 0usize;
        while let Some(rest) = body.get(pos..).filter(|r| !r.is_empty()) {
            if self.failed {
                return body.len();
            }
            let ascii = scan_plain_ascii(rest);
            if ascii > 0 {
                sink.data(rest.get(..ascii).unwrap_or_default());
                pos = pos.saturating_add(ascii);
                continue;
            }
            let escape = rest.first() == Some(&b'\\');
            // A UTF-8 lead byte looks at up to six bytes.
            let need = if escape { LOOKAHEAD } else { 6 };
            if !end && rest.len() < need {
                break;
            }
            if !escape {
                let (ch, used) = unicode::decode(rest);
                if ch.is_none() {
                    // Any lone continuation byte fails the same way.
                    self.fail(b"\x80");
                    return body.len();
                }
                sink.data(rest.get(..used).unwrap_or_default());
                pos = pos.saturating_add(used.max(1));
                continue;
            }
            match json::escape_at(rest) {
                json::Escape::Char(ch, len) => {
                    let mut buf = [0u8; 4];
                    sink.data(unicode::encode_mod_utf8(ch, &mut buf));
                    pos = pos.saturating_add(len);
                }
                json::Escape::InvalidCodepoint(len) => {
                    self.fail(rest.get(..len).unwrap_or(rest));
                    return body.len();
                }
                json::Escape::Invalid => {
                    self.fail(rest.get(..2).unwrap_or(rest));
                    return body.len();
                }
            }
        }
        pos
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
    use std::vec::Vec;

    #[derive(Default)]
    struct Collect(Vec<u8>);

    impl Spill for Collect {
        fn threshold(&self) -> usize {
            0
        }
        fn begin(&mut self, _key: JsonStr<'_>) -> bool {
            true
        }
        fn data(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn discard(&mut self) {
            self.0.clear();
        }
    }

    /// Stream `body` cut at every `step` bytes.
    fn stream(body: &[u8], step: usize) -> (Vec<u8>, Vec<u8>, bool) {
        let mut s = StringStream::new();
        let mut sink = Collect::default();
        let mut pieces = body.chunks(step).peekable();
        if body.is_empty() {
            s.feed(b"", true, &mut sink);
        }
        while let Some(piece) = pieces.next() {
            s.feed(piece, pieces.peek().is_none(), &mut sink);
        }
        (sink.0, s.placeholder().to_vec(), s.failed())
    }

    /// Streaming agrees with the parser and with `JsonStr::bytes` on the
    /// whole body, however the body is cut.
    fn agrees(body: &[u8]) {
        let token = [&b"\""[..], body, b"\""].concat();
        let parsed = crate::parser::validate(&token);
        let decoded: Vec<u8> = JsonStr::from_token(&token).bytes().collect();
        for step in [1, 2, 3, 5, 7, 11, 13, 64, body.len().max(1)] {
            let (data, placeholder, failed) = stream(body, step);
            assert_eq!(failed, parsed.is_err(), "{body:?} step {step}");
            if failed {
                let stand_in = [&b"\""[..], &placeholder, b"\""].concat();
                assert_eq!(
                    crate::parser::validate(&stand_in),
                    parsed,
                    "{body:?} step {step}"
                );
            } else {
                assert_eq!(data, decoded, "{body:?} step {step}");
                assert!(placeholder.is_empty());
            }
        }
    }

    #[test]
    fn valid_bodies_decode_like_the_parser() {
        for body in [
            &b""[..],
            b"plain ascii, long enough to take the word-at-a-time path",
            br#"esc \" \' \\ \/ \b \f \n \r \t end"#,
            br"\u0041\u00e9\u20ac\ud83d\ude00\u0000",
            "é€😀 mixed UTF-8 and \\u00e9".as_bytes(),
            b"\xc0\x80 modified NUL",
            b"QUJD/+==\\/\\/",
        ] {
            agrees(body);
        }
    }

    #[test]
    fn invalid_bodies_leave_a_placeholder_with_the_same_error() {
        for body in [
            &br"abc\ud800"[..],
            br"abc\ud800\u0041 more",
            br"\udc00",
            br"x\uffff",
            br"\udbff\udfff",
            br"\ufdd0",
            b"bad \xe2\x28\xa1 utf-8",
            b"\xed\xa0\x80 encoded surrogate",
            b"truncated \xe2\x82",
            b"\xf8\x88\x80\x80\x80 five bytes",
            b"\xc1\xbf overlong",
            b"ok then \x80",
        ] {
            agrees(body);
        }
    }
}
