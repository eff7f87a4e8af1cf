//! QEMU's (modified) UTF-8 rules, shared by the parser and the writer.
//!
//! QEMU stores strings as *modified* UTF-8: U+0000 is the two bytes
//! `C0 80`, every other code point is ordinary UTF-8, and surrogates,
//! noncharacters (U+FDD0–U+FDEF, U+xxFFFE, U+xxFFFF) and values beyond
//! U+10FFFF are invalid (`util/unicode.c`).

/// Whether QEMU accepts `cp` as a character (`is_valid_codepoint`).
pub const fn is_valid_codepoint(cp: u32) -> bool {
    if cp > 0x10FFFF {
        return false;
    }
    if (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE {
        return false;
    }
    !(cp >= 0xD800 && cp <= 0xDFFF)
}

/// Decode one character from the front of `bytes` as QEMU's
/// `mod_utf8_codepoint` does: returns the character (or `None` if the
/// sequence is invalid) and how many bytes it took. An invalid sequence
/// takes its lead byte and the continuation bytes before the first
/// missing one. Empty input gives `(None, 0)`.
pub fn decode(bytes: &[u8]) -> (Option<char>, usize) {
    let Some(&lead) = bytes.first() else {
        return (None, 0);
    };
    if lead < 0x80 {
        return (Some(char::from(lead)), 1);
    }
    if lead >= 0xFE || lead & 0x40 == 0 {
        // Impossible byte, or a continuation byte with no lead.
        return (None, 1);
    }
    let len = lead.leading_ones(); // 2..=6
    let mut cp = u32::from(lead) & (0x7F_u32 >> len);
    let mut used = 1usize;
    while used < len as usize {
        match bytes.get(used) {
            Some(&b) if b & 0xC0 == 0x80 => {
                cp = (cp << 6) | u32::from(b & 0x3F);
                used = used.saturating_add(1);
            }
            _ => return (None, used),
        }
    }
    const MIN: [u32; 5] = [0x80, 0x800, 0x10000, 0x20_0000, 0x400_0000];
    let min = MIN
        .get((len as usize).saturating_sub(2))
        .copied()
        .unwrap_or(0);
    if !is_valid_codepoint(cp) {
        return (None, used);
    }
    if cp < min && !(cp == 0 && len == 2) {
        return (None, used); // overlong, other than C0 80
    }
    (char::from_u32(cp), used)
}

/// The characters of a modified-UTF-8 byte string, each invalid sequence
/// replaced by U+FFFD (what QEMU's JSON writer does).
#[derive(Clone, Debug)]
pub struct ModUtf8Chars<'a> {
    rest: &'a [u8],
}

impl<'a> ModUtf8Chars<'a> {
    /// Iterate over the characters of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        ModUtf8Chars { rest: bytes }
    }
}

impl Iterator for ModUtf8Chars<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        if self.rest.is_empty() {
            return None;
        }
        let (ch, used) = decode(self.rest);
        self.rest = self.rest.get(used.max(1)..).unwrap_or_default();
        Some(ch.unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

/// The modified-UTF-8 encoding of `ch`: U+0000 becomes `C0 80`.
pub fn encode_mod_utf8(ch: char, buf: &mut [u8; 4]) -> &[u8] {
    if ch == '\0' {
        buf[0] = 0xC0;
        buf[1] = 0x80;
        return buf.get(..2).unwrap_or_default();
    }
    ch.encode_utf8(buf).as_bytes()
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
        use crate::unicode::{decode, ModUtf8Chars};

        assert_eq!(decode(b"\xc3\xa9x"), (Some('é'), 2));
        assert_eq!(decode(b"\xc0\x80"), (Some('\0'), 2)); // modified UTF-8 NUL
        assert_eq!(decode(b"\xef\xbf\xbf"), (None, 3)); // U+FFFF: noncharacter
        let text: String = ModUtf8Chars::new(b"a\xffb").collect();
        assert_eq!(text, "a\u{FFFD}b");
    }

    #[test]
    fn qemu_rules() {
        assert_eq!(decode(b"\xc0\xaf"), (None, 2)); // overlong '/'
        assert_eq!(decode(b"\xe0\x80\xaf"), (None, 3));
        assert_eq!(decode(b"\x80"), (None, 1));
        assert_eq!(decode(b"\xe2\x82"), (None, 2)); // truncated
        assert_eq!(decode(b"\xe2\x82\""), (None, 2));
        assert_eq!(decode(b"\xed\xa0\x80"), (None, 3)); // surrogate
        assert_eq!(decode(b"\xf4\x90\x80\x80"), (None, 4)); // > U+10FFFF
        assert_eq!(decode(b"\xef\xb7\x90"), (None, 3)); // U+FDD0
        assert_eq!(decode(b"\xf0\x9f\x98\x80"), (Some('😀'), 4));
        assert_eq!(decode(b"\xfc\x80\x80\x80\x80\x80"), (None, 6));
        assert_eq!(decode(b"\xfe"), (None, 1));
        assert_eq!(decode(b"\x7f"), (Some('\x7f'), 1));
    }

    #[test]
    fn agrees_with_std_on_valid_utf8_outside_nonchars() {
        for cp in (0u32..0x11_0000).step_by(7) {
            let Some(ch) = char::from_u32(cp) else {
                continue;
            };
            let mut buf = [0; 4];
            let bytes = ch.encode_utf8(&mut buf).as_bytes().to_vec();
            let expect = if is_valid_codepoint(cp) {
                Some(ch)
            } else {
                None
            };
            assert_eq!(decode(&bytes), (expect, bytes.len()), "U+{cp:04X}");
        }
    }

    #[test]
    fn nul_round_trip() {
        let mut buf = [0; 4];
        assert_eq!(encode_mod_utf8('\0', &mut buf), b"\xc0\x80");
        assert_eq!(encode_mod_utf8('é', &mut buf), "é".as_bytes());
    }
}
