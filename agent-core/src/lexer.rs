//! QEMU's JSON token grammar, one byte at a time, with its error recovery.
//!
//! The lexer follows `qobject/json-lexer.c` exactly (PROTOCOL.md §2.1–2.2):
//!
//! * tokens: `{ } [ ] : ,`, double- and single-quoted strings, RFC 8259
//!   numbers (a leading `0` may not be followed by a digit, and — a QEMU
//!   quirk — not by an exponent either: `0e5` lexes as `0` then `e5`),
//!   and keywords `[a-z]+` (the parser rejects all but `true`, `false`,
//!   `null`);
//! * whitespace is space, TAB, CR and LF only;
//! * inside strings every byte `0x20..=0xFD` is accepted (UTF-8 validity is
//!   the parser's job); a byte below `0x20`, `0xFE` or `0xFF` is an error;
//! * a number or keyword ends at the first byte that cannot extend it; that
//!   byte is *not* consumed but lexed on its own (so `12\xFF` is the
//!   integer `12`, then an error for `\xFF`, as qemu-ga 7.2 shows);
//! * after an error the lexer skips input up to a resynchronisation point:
//!   a structural character, a control character other than TAB, or
//!   `0xFE`/`0xFF`. That byte is not consumed but lexed again from the start
//!   state, so a control character or `0xFF` always produces a fresh error
//!   and leaves the lexer clean.
//! * a token longer than 64 MiB is cut ([`Lexeme::Oversized`]).
//!
//! The lexer is sans-IO and stores nothing: it tells its caller which bytes
//! it consumed and what they were. String bodies are scanned a machine word
//! at a time.

/// QEMU's `MAX_TOKEN_SIZE`: the longest token, and the most token bytes in
/// one message (64 MiB).
pub const MAX_TOKEN_BYTES: usize = 64 << 20;

/// The kind of a complete token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TokenKind {
    /// `{`
    LeftBrace,
    /// `}`
    RightBrace,
    /// `[`
    LeftBracket,
    /// `]`
    RightBracket,
    /// `:`
    Colon,
    /// `,`
    Comma,
    /// A double- or single-quoted string, quotes included.
    String,
    /// An integer literal (`-?(0|[1-9][0-9]*)`).
    Integer,
    /// A number with a fraction or an exponent.
    Float,
    /// A run of `[a-z]`.
    Keyword,
}

/// What the bytes consumed by one [`Lexer::step`] were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Lexeme {
    /// Whitespace between tokens, or input skipped while recovering from an
    /// error. Also returned, with nothing consumed, for empty input.
    Skipped,
    /// The beginning or middle of a token; the input ended before it did.
    Partial,
    /// The end of a token (the whole token if it began in this step).
    Token(TokenKind),
    /// A lexical error. The last consumed byte is the offending one; the
    /// error token is the unfinished token's bytes up to and including it.
    Error,
    /// The unfinished token grew past [`MAX_TOKEN_BYTES`] and was cut; the
    /// lexer starts afresh with the next byte, as QEMU does.
    Oversized,
}

/// The result of one [`Lexer::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Step {
    /// How many bytes of the input were consumed.
    pub consumed: usize,
    /// What they were.
    pub lexeme: Lexeme,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum State {
    Start,
    Recovery,
    DqString,
    DqEscape,
    SqString,
    SqEscape,
    Zero,
    Sign,
    Digits,
    Mantissa,
    MantissaDigits,
    ExpE,
    ExpSign,
    ExpDigits,
    Keyword,
}

/// The byte-level JSON lexer. See the [module documentation](self).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Lexer {
    state: State,
    /// Bytes of the unfinished token so far.
    token_len: usize,
    /// The string being lexed (or the last) is plain: ASCII without
    /// escapes.
    plain: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new()
    }
}

/// Outcome of offering one byte to a token state.
enum Next {
    /// Consume the byte and stay in (or move to) this state.
    Go(State),
    /// Do not consume the byte; the token ended before it.
    EndBefore(TokenKind),
    /// Consume the byte; it is a lexical error.
    Error,
}

impl Lexer {
    /// A lexer in its start state.
    pub const fn new() -> Self {
        Lexer {
            state: State::Start,
            token_len: 0,
            plain: false,
        }
    }

    /// Forget any unfinished token or error recovery.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether the string token just lexed is plain: ASCII without escapes,
    /// so its body is its text (and valid).
    pub(crate) fn was_plain_string(&self) -> bool {
        self.plain
    }

    /// Whether the lexer is between tokens (not inside a token and not
    /// recovering from an error).
    pub fn is_idle(&self) -> bool {
        self.state == State::Start
    }

    /// Consume bytes from `input` until one lexeme is complete or the input
    /// is exhausted. Each step's bytes are all of one [`Lexeme`] kind;
    /// a step consumes at least one byte unless `input` is empty.
    #[cfg_attr(feature = "speed", inline(always))]
    pub fn step(&mut self, input: &[u8]) -> Step {
        if self.state == State::Recovery {
            // Skip to a resynchronisation point, which is lexed afresh.
            match input.iter().position(|&b| is_resync_point(b)) {
                Some(0) => self.state = State::Start,
                Some(skipped) => {
                    self.state = State::Start;
                    return Self::skipped(skipped);
                }
                None => return Self::skipped(input.len()),
            }
        }
        let mut pos = 0usize;
        if self.state == State::Start {
            let Some(&byte) = input.first() else {
                return Self::skipped(0);
            };
            if is_whitespace(byte) {
                return Self::skipped(crate::scan::whitespace_len(input));
            }
            self.token_len = 1;
            pos = 1;
            self.state = match byte {
                b'{' => return self.finish(1, TokenKind::LeftBrace),
                b'}' => return self.finish(1, TokenKind::RightBrace),
                b'[' => return self.finish(1, TokenKind::LeftBracket),
                b']' => return self.finish(1, TokenKind::RightBracket),
                b':' => return self.finish(1, TokenKind::Colon),
                b',' => return self.finish(1, TokenKind::Comma),
                b'"' => {
                    self.plain = true;
                    State::DqString
                }
                b'\'' => {
                    self.plain = true;
                    State::SqString
                }
                b'0' => State::Zero,
                b'1'..=b'9' => State::Digits,
                b'-' => State::Sign,
                b'a'..=b'z' => State::Keyword,
                _ => return self.error(1),
            };
        }
        loop {
            let Some(&byte) = input.get(pos) else {
                // The input ended inside the token.
                return Step {
                    consumed: pos,
                    lexeme: Lexeme::Partial,
                };
            };
            match self.state {
                State::DqString | State::SqString => {
                    let quote = if self.state == State::DqString {
                        b'"'
                    } else {
                        b'\''
                    };
                    // Scan plain string bytes in bulk, but never past the
                    // point where the token would exceed the size limit.
                    let room = MAX_TOKEN_BYTES
                        .saturating_add(1)
                        .saturating_sub(self.token_len);
                    let rest = input.get(pos..).unwrap_or_default();
                    let window = rest.get(..room).unwrap_or(rest);
                    let plain = crate::scan::scan_string_body(window, quote);
                    if plain > 0 {
                        pos = pos.saturating_add(plain);
                        self.token_len = self.token_len.saturating_add(plain);
                        if self.token_len > MAX_TOKEN_BYTES {
                            return self.oversized(pos);
                        }
                        continue;
                    }
                    pos = pos.saturating_add(1);
                    self.token_len = self.token_len.saturating_add(1);
                    match byte {
                        b'\\' => {
                            self.plain = false;
                            self.state = if quote == b'"' {
                                State::DqEscape
                            } else {
                                State::SqEscape
                            };
                        }
                        b if b == quote => return self.finish(pos, TokenKind::String),
                        // UTF-8 is the parser's to check.
                        0x80..=0xFD => self.plain = false,
                        _ => return self.error(pos),
                    }
                    if self.token_len > MAX_TOKEN_BYTES {
                        return self.oversized(pos);
                    }
                }
                state => {
                    let next = Self::next_in_token(state, byte);
                    match next {
                        Next::Go(state) => {
                            pos = pos.saturating_add(1);
                            self.token_len = self.token_len.saturating_add(1);
                            self.state = state;
                            if self.token_len > MAX_TOKEN_BYTES {
                                return self.oversized(pos);
                            }
                        }
                        Next::EndBefore(kind) => return self.finish(pos, kind),
                        Next::Error => return self.error(pos.saturating_add(1)),
                    }
                }
            }
        }
    }

    /// `n` bytes of whitespace or of input skipped while recovering.
    fn skipped(n: usize) -> Step {
        Step {
            consumed: n,
            lexeme: Lexeme::Skipped,
        }
    }

    /// Treat the end of the input as the end of any unfinished number or
    /// keyword (QEMU's flush). Used when re-lexing a complete, stored value
    /// whose final scalar had no lookahead byte. Returns the kind of the
    /// token so ended, if any.
    pub fn finish_at_end(&mut self) -> Option<TokenKind> {
        let kind = match self.state {
            State::Zero | State::Digits => TokenKind::Integer,
            State::MantissaDigits | State::ExpDigits => TokenKind::Float,
            State::Keyword => TokenKind::Keyword,
            _ => return None,
        };
        self.state = State::Start;
        self.token_len = 0;
        Some(kind)
    }

    fn finish(&mut self, consumed: usize, kind: TokenKind) -> Step {
        self.state = State::Start;
        self.token_len = 0;
        Step {
            consumed,
            lexeme: Lexeme::Token(kind),
        }
    }

    fn error(&mut self, consumed: usize) -> Step {
        self.state = State::Recovery;
        self.token_len = 0;
        Step {
            consumed,
            lexeme: Lexeme::Error,
        }
    }

    fn oversized(&mut self, consumed: usize) -> Step {
        self.state = State::Start;
        self.token_len = 0;
        Step {
            consumed,
            lexeme: Lexeme::Oversized,
        }
    }

    /// Transitions of the number, keyword and escape states.
    fn next_in_token(state: State, byte: u8) -> Next {
        use State::*;
        let ends_before = Next::EndBefore;
        match state {
            DqEscape | SqEscape => match byte {
                0x20..=0xFD => Next::Go(if state == DqEscape {
                    DqString
                } else {
                    SqString
                }),
                _ => Next::Error,
            },
            Zero => match byte {
                b'0'..=b'9' => Next::Error,
                b'.' => Next::Go(Mantissa),
                _ => ends_before(TokenKind::Integer),
            },
            Sign => match byte {
                b'0' => Next::Go(Zero),
                b'1'..=b'9' => Next::Go(Digits),
                _ => Next::Error,
            },
            Digits => match byte {
                b'0'..=b'9' => Next::Go(Digits),
                b'e' | b'E' => Next::Go(ExpE),
                b'.' => Next::Go(Mantissa),
                _ => ends_before(TokenKind::Integer),
            },
            Mantissa => match byte {
                b'0'..=b'9' => Next::Go(MantissaDigits),
                _ => Next::Error,
            },
            MantissaDigits => match byte {
                b'0'..=b'9' => Next::Go(MantissaDigits),
                b'e' | b'E' => Next::Go(ExpE),
                _ => ends_before(TokenKind::Float),
            },
            ExpE => match byte {
                b'+' | b'-' => Next::Go(ExpSign),
                b'0'..=b'9' => Next::Go(ExpDigits),
                _ => Next::Error,
            },
            ExpSign => match byte {
                b'0'..=b'9' => Next::Go(ExpDigits),
                _ => Next::Error,
            },
            ExpDigits => match byte {
                b'0'..=b'9' => Next::Go(ExpDigits),
                _ => ends_before(TokenKind::Float),
            },
            Keyword => match byte {
                b'a'..=b'z' => Next::Go(Keyword),
                _ => ends_before(TokenKind::Keyword),
            },
            // Handled by `step` itself.
            Start | Recovery | DqString | SqString => Next::Error,
        }
    }
}

/// JSON whitespace as QEMU knows it.
pub const fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

/// Where error recovery stops: structural characters, control characters
/// other than TAB, and the impossible UTF-8 bytes 0xFE and 0xFF.
pub const fn is_resync_point(byte: u8) -> bool {
    match byte {
        b'\t' => false,
        0x00..=0x1F | 0xFE | 0xFF => true,
        b'[' | b']' | b'{' | b'}' | b':' | b',' => true,
        _ => false,
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

    /// The module's example.
    #[test]
    fn doc_example() {
        use crate::lexer::{Lexeme, Lexer, TokenKind};

        let mut lexer = Lexer::new();
        let step = lexer.step(br#"  "abc" 12"#);
        assert_eq!((step.consumed, step.lexeme), (2, Lexeme::Skipped));
        let step = lexer.step(br#""abc" 12"#);
        assert_eq!(
            (step.consumed, step.lexeme),
            (5, Lexeme::Token(TokenKind::String))
        );
    }

    /// Lex `input` completely, returning each lexeme with its bytes.
    fn lex(input: &[u8]) -> Vec<(Lexeme, Vec<u8>)> {
        let mut lexer = Lexer::new();
        let mut out = Vec::new();
        let mut rest = input;
        let mut partial = Vec::new();
        while !rest.is_empty() {
            let step = lexer.step(rest);
            assert!(step.consumed > 0 || matches!(step.lexeme, Lexeme::Token(_)));
            let (bytes, tail) = rest.split_at(step.consumed);
            rest = tail;
            match step.lexeme {
                Lexeme::Partial => partial.extend_from_slice(bytes),
                Lexeme::Skipped => out.push((Lexeme::Skipped, bytes.to_vec())),
                other => {
                    partial.extend_from_slice(bytes);
                    out.push((other, core::mem::take(&mut partial)));
                }
            }
        }
        if let Some(kind) = lexer.finish_at_end() {
            out.push((Lexeme::Token(kind), partial));
        }
        out
    }

    fn tokens(input: &[u8]) -> Vec<(Lexeme, std::string::String)> {
        lex(input)
            .into_iter()
            .filter(|(l, _)| *l != Lexeme::Skipped)
            .map(|(l, b)| (l, std::string::String::from_utf8_lossy(&b).into_owned()))
            .collect()
    }

    use Lexeme::{Error, Token};
    use TokenKind::*;

    #[test]
    fn structural_and_scalars() {
        assert_eq!(
            tokens(br#"{"a": [1, -2.5e+3, 'x"y', true]}"#),
            vec![
                (Token(LeftBrace), "{".into()),
                (Token(String), "\"a\"".into()),
                (Token(Colon), ":".into()),
                (Token(LeftBracket), "[".into()),
                (Token(Integer), "1".into()),
                (Token(Comma), ",".into()),
                (Token(Float), "-2.5e+3".into()),
                (Token(Comma), ",".into()),
                (Token(String), "'x\"y'".into()),
                (Token(Comma), ",".into()),
                (Token(Keyword), "true".into()),
                (Token(RightBracket), "]".into()),
                (Token(RightBrace), "}".into()),
            ]
        );
    }

    #[test]
    fn number_errors_consume_the_offending_byte() {
        assert_eq!(tokens(b"01"), vec![(Error, "01".into())]);
        assert_eq!(tokens(b"1.}"), vec![(Error, "1.}".into())]);
        assert_eq!(tokens(b"-x"), vec![(Error, "-x".into())]);
        assert_eq!(tokens(b"1e "), vec![(Error, "1e ".into())]);
        assert_eq!(tokens(b"1e+,"), vec![(Error, "1e+,".into())]);
        // After an error the lexer skips to a resync point: `,` here.
        assert_eq!(
            tokens(b"1e+x 5,2"),
            vec![
                (Error, "1e+x".into()),
                (Token(Comma), ",".into()),
                (Token(Integer), "2".into())
            ]
        );
    }

    #[test]
    fn zero_takes_no_exponent() {
        assert_eq!(
            tokens(b"0e5 "),
            vec![
                (Token(Integer), "0".into()),
                (Token(Keyword), "e".into()),
                (Token(Integer), "5".into())
            ]
        );
        assert_eq!(tokens(b"0.5e5 "), vec![(Token(Float), "0.5e5".into())]);
    }

    #[test]
    fn any_other_byte_ends_numbers_and_keywords() {
        assert_eq!(
            tokens(b"12\xC3"),
            vec![(Token(Integer), "12".into()), (Error, "\u{FFFD}".into())]
        );
        assert_eq!(
            tokens(b"tru\xFF"),
            vec![(Token(Keyword), "tru".into()), (Error, "\u{FFFD}".into())]
        );
        assert_eq!(
            tokens(b"abc\x01"),
            vec![(Token(Keyword), "abc".into()), (Error, "\u{1}".into())]
        );
        assert_eq!(
            tokens(b"0.5e1\xFF"),
            vec![(Token(Float), "0.5e1".into()), (Error, "\u{FFFD}".into())]
        );
    }

    #[test]
    fn invalid_start_bytes() {
        for byte in (0u8..=0xFF).filter(|b| {
            !is_whitespace(*b) && !b"{}[]:,\"'-0123456789abcdefghijklmnopqrstuvwxyz".contains(b)
        }) {
            let got = lex(&[byte]);
            assert_eq!(got, vec![(Error, vec![byte])], "byte {byte:#x}");
        }
    }

    #[test]
    fn control_bytes_and_ff_end_strings_with_an_error() {
        for byte in (0u8..0x20).chain([0xFE, 0xFF]) {
            let input = [b'"', b'a', byte];
            assert_eq!(lex(&input), vec![(Error, input.to_vec())], "byte {byte:#x}");
        }
        // 0x7F and other high bytes are fine inside strings.
        assert_eq!(
            tokens(b"\"\x7f\xc3\xa9\""),
            vec![(Token(String), "\"\x7fé\"".into())]
        );
    }

    #[test]
    fn recovery_stops_at_resync_points_and_relexes_them() {
        // Error, skip "bc", then `{` starts cleanly.
        assert_eq!(
            tokens(b"%bc{"),
            vec![(Error, "%".into()), (Token(LeftBrace), "{".into())]
        );
        // TAB does not stop recovery; LF does.
        let got = lex(b"%a\tb\nc");
        assert_eq!(
            got,
            vec![
                (Error, b"%".to_vec()),
                (Lexeme::Skipped, b"a\tb".to_vec()),
                (Lexeme::Skipped, b"\n".to_vec()),
                (Token(Keyword), b"c".to_vec()),
            ]
        );
        // A control byte or 0xFF during recovery is an error of its own.
        assert_eq!(
            tokens(b"%x\x01"),
            vec![(Error, "%".into()), (Error, "\u{1}".into())]
        );
        assert_eq!(
            lex(b"%x\xFF"),
            vec![
                (Error, b"%".to_vec()),
                (Lexeme::Skipped, b"x".to_vec()),
                (Error, vec![0xFF])
            ]
        );
    }

    #[test]
    fn reset_byte_inside_a_string_token() {
        assert_eq!(
            lex(b"{\"execute\":\"guest-pi\xFF{"),
            vec![
                (Token(LeftBrace), b"{".to_vec()),
                (Token(String), b"\"execute\"".to_vec()),
                (Token(Colon), b":".to_vec()),
                (Error, b"\"guest-pi\xFF".to_vec()),
                (Token(LeftBrace), b"{".to_vec()),
            ]
        );
    }

    #[test]
    fn escapes_accept_any_printable_byte() {
        assert_eq!(
            tokens(br#""\x\"" "#),
            vec![(Token(String), r#""\x\"""#.into())]
        );
        assert_eq!(tokens(br#"'\'' "#), vec![(Token(String), r#"'\''"#.into())]);
        assert_eq!(lex(b"\"\\\x01"), vec![(Error, b"\"\\\x01".to_vec())]);
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input: &[u8] = b"{\"execute\" : 'guest-sync', \"arguments\":{\"id\":-12.5E-3}} 0e1 %x [\"\xc3\xa9\\u0041\"]";
        let whole = lex(input);
        let mut lexer = Lexer::new();
        let mut out: Vec<(Lexeme, Vec<u8>)> = Vec::new();
        let mut partial = Vec::new();
        let mut skipped = Vec::new();
        for (i, _) in input.iter().enumerate() {
            let mut rest = &input[i..=i];
            while !rest.is_empty() {
                let step = lexer.step(rest);
                let (bytes, tail) = rest.split_at(step.consumed);
                rest = tail;
                match step.lexeme {
                    Lexeme::Partial => partial.extend_from_slice(bytes),
                    Lexeme::Skipped => skipped.extend_from_slice(bytes),
                    other => {
                        if !skipped.is_empty() {
                            out.push((Lexeme::Skipped, core::mem::take(&mut skipped)));
                        }
                        partial.extend_from_slice(bytes);
                        out.push((other, core::mem::take(&mut partial)));
                    }
                }
            }
        }
        let strip = |v: Vec<(Lexeme, Vec<u8>)>| -> Vec<(Lexeme, Vec<u8>)> {
            v.into_iter()
                .filter(|(l, _)| *l != Lexeme::Skipped)
                .collect()
        };
        assert_eq!(strip(out), strip(whole));
    }

    #[test]
    fn oversized_token_is_cut_after_the_limit() {
        let mut lexer = Lexer::new();
        let body = vec![b'a'; MAX_TOKEN_BYTES + 10];
        assert_eq!(lexer.step(b"\"").lexeme, Lexeme::Partial);
        let step = lexer.step(&body);
        // The token ("" + MAX bytes) reaches MAX + 1 bytes after MAX body bytes.
        assert_eq!(
            step,
            Step {
                consumed: MAX_TOKEN_BYTES,
                lexeme: Lexeme::Oversized
            }
        );
        assert!(lexer.is_idle());
        // The rest is lexed from the start state: a keyword.
        assert_eq!(lexer.step(&body[MAX_TOKEN_BYTES..]).lexeme, Lexeme::Partial);
    }
}
