//! Byte-scanning primitives: how far a run of bytes goes that needs no
//! attention (plain string content, plain ASCII, JSON-safe output), and
//! how far a value of text the parser has accepted reaches.
//!
//! These are the only places where feature `speed` changes what the code
//! does (elsewhere it only asks the compiler to inline the per-token
//! path), and only in how they scan, never in what they return: with it, a
//! run that goes past 64 bytes goes on in 64-byte blocks that compilers
//! vectorise; without it, eight bytes at a time. Every function has a byte-at-a-time
//! twin in the tests that it must agree with.
//!
//! The `*_unchecked` functions read text the parser accepted (a
//! [`Validated`](crate::parser) frame or a part of one that starts at a
//! token): they find where a token or value ends by its first byte and a
//! scan, not by the lexer's grammar. On other text their answers are
//! meaningless, but they never panic and never read past the input.

use crate::lexer::is_whitespace;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `word` is zero (exact for the "any" question).
const fn has_zero_byte(word: u64) -> bool {
    word.wrapping_sub(ONES) & !word & HIGHS != 0
}

/// Whether any byte of `word` is below 0x20.
const fn has_control_byte(word: u64) -> bool {
    word.wrapping_sub(ONES.wrapping_mul(0x20)) & !word & HIGHS != 0
}

/// Whether `word` holds a byte that ends a plain run inside a string:
/// the quote, a backslash, a control byte, or a byte that is not ASCII.
const fn has_special_byte(word: u64, quote: u8) -> bool {
    has_control_byte(word)
        || has_zero_byte(word ^ ONES.wrapping_mul(quote as u64))
        || has_zero_byte(word ^ ONES.wrapping_mul(b'\\' as u64))
        || word & HIGHS != 0
}

/// Whether `byte` is plain string content: ASCII, printable, neither the
/// quote nor a backslash (the string's body is then its own text).
pub(crate) const fn is_plain_string_byte(byte: u8, quote: u8) -> bool {
    byte >= 0x20 && byte < 0x80 && byte != quote && byte != b'\\'
}

/// The length of the leading run of `bytes` whose every byte `keep`
/// accepts, where `words` finds such a run (eight bytes at a time).
///
/// With feature `speed`, a run that goes past 64 bytes goes on in whole
/// 64-byte blocks, each checked by a branch-free fold that compilers
/// vectorise: long strings (a file's base64) are scanned at memory speed,
/// while short ones cost no more than the words.
#[inline(always)]
pub(crate) fn plain_run(
    bytes: &[u8],
    words: impl Fn(&[u8]) -> usize,
    keep: impl Fn(u8) -> bool,
) -> usize {
    #[cfg(feature = "speed")]
    {
        // A short input (a small request's rest) is scanned as it is.
        let Some(first) = bytes.get(..BLOCK).filter(|_| bytes.len() > 2 * BLOCK) else {
            return words(bytes);
        };
        let head = words(first);
        if head < BLOCK {
            return head;
        }
        long_run(bytes, words, keep)
    }
    #[cfg(not(feature = "speed"))]
    {
        let _ = keep;
        words(bytes)
    }
}

/// Bytes per block of [`plain_run`]'s long runs.
#[cfg(feature = "speed")]
const BLOCK: usize = 64;

/// [`plain_run`] past its first [`BLOCK`] bytes, which were all kept: whole
/// blocks, then words (not inlined: short runs never get here).
#[cfg(feature = "speed")]
#[inline(never)]
fn long_run(bytes: &[u8], words: impl Fn(&[u8]) -> usize, keep: impl Fn(u8) -> bool) -> usize {
    let rest = bytes.get(BLOCK..).unwrap_or_default();
    let blocks = rest
        .chunks_exact(BLOCK)
        .take_while(|block| block.iter().fold(true, |all, &b| all & keep(b)))
        .count()
        .saturating_mul(BLOCK);
    let tail = rest.get(blocks..).unwrap_or_default();
    BLOCK.saturating_add(blocks).saturating_add(words(tail))
}

/// Length of the leading run of `bytes` that is ASCII without backslashes
/// (string content the parser need not decode), eight bytes at a time.
#[inline]
pub(crate) fn scan_plain_ascii(bytes: &[u8]) -> usize {
    plain_run(bytes, plain_ascii_words, |b| b != b'\\' && b < 0x80)
}

fn plain_ascii_words(bytes: &[u8]) -> usize {
    let mut done = 0usize;
    for chunk in bytes.chunks_exact(8) {
        let Ok(array) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(array);
        if word & HIGHS != 0 || has_zero_byte(word ^ ONES.wrapping_mul(b'\\' as u64)) {
            break;
        }
        done = done.saturating_add(8);
    }
    let tail = bytes.get(done..).unwrap_or_default();
    done.saturating_add(tail.iter().take_while(|&&b| b != b'\\' && b < 0x80).count())
}

/// Offset of the first `quote` or backslash in `bytes` (or its length),
/// scanned eight bytes at a time: the end of a run of string content that
/// is already known to be valid.
pub(crate) fn find_quote_or_backslash(bytes: &[u8], quote: u8) -> usize {
    let mut done = 0usize;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let Ok(array) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(array);
        let hits = zero_bytes(word ^ ONES.wrapping_mul(quote as u64))
            | zero_bytes(word ^ ONES.wrapping_mul(b'\\' as u64));
        if hits != 0 {
            // The lowest flag is exact: borrows only run upwards.
            return done.saturating_add((hits.trailing_zeros() / 8) as usize);
        }
        done = done.saturating_add(8);
    }
    done.saturating_add(
        words
            .remainder()
            .iter()
            .take_while(|&&b| b != quote && b != b'\\')
            .count(),
    )
}

/// The high bit of each zero byte of `word`, and perhaps of bytes above
/// one (a borrow): the lowest flag set marks the first zero byte exactly.
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// Length of the leading run of `bytes` that is plain content of a string
/// delimited by `quote` (see [`is_plain_string_byte`]), scanned eight
/// bytes at a time.
#[inline]
pub(crate) fn scan_string_body(bytes: &[u8], quote: u8) -> usize {
    plain_run(
        bytes,
        |b| string_body_words(b, quote),
        |b| is_plain_string_byte(b, quote),
    )
}

fn string_body_words(bytes: &[u8], quote: u8) -> usize {
    let mut done = 0usize;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let Ok(array) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        if has_special_byte(u64::from_le_bytes(array), quote) {
            break;
        }
        done = done.saturating_add(8);
    }
    let tail = bytes.get(done..).unwrap_or_default();
    let plain = tail
        .iter()
        .take_while(|&&b| is_plain_string_byte(b, quote))
        .count();
    done.saturating_add(plain)
}

/// How many bytes of whitespace `bytes` starts with.
#[inline]
pub(crate) fn whitespace_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_whitespace(b)).count()
}

/// The length of the string token at the start of `text` (its opening
/// quote first), in accepted text: up to the matching quote, each
/// backslash taking the byte after it. `None` if the text ends first.
pub(crate) fn string_len_unchecked(text: &[u8]) -> Option<usize> {
    let quote = *text.first()?;
    let mut at = 1usize;
    loop {
        let body = text.get(at..).unwrap_or_default();
        at = at.saturating_add(find_quote_or_backslash(body, quote));
        match text.get(at)? {
            b'\\' => at = at.saturating_add(2),
            _ => return Some(at.saturating_add(1)),
        }
    }
}

/// The length of the number or keyword at the start of `text`, in
/// accepted text: there a scalar is always followed by whitespace, a
/// separator, a closing bracket or the end (the parser rejects `1-2`,
/// `1true` and `0e5`, which the lexer splits into two tokens).
fn scalar_len_unchecked(text: &[u8]) -> usize {
    text.iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'))
        .count()
        .max(1)
}

/// The length of the container at the start of `text` (its opening
/// bracket first), in accepted text: brackets are counted and strings
/// skipped. `None` if the text ends first.
fn container_len_unchecked(text: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0usize;
    loop {
        let rest = text.get(at..)?;
        let skip = rest
            .iter()
            .position(|&b| matches!(b, b'{' | b'}' | b'[' | b']' | b'"' | b'\''))?;
        at = at.saturating_add(skip);
        match *text.get(at)? {
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at.saturating_add(1));
                }
            }
            _ => {
                at = at.saturating_add(string_len_unchecked(text.get(at..)?)?);
                continue;
            }
        }
        at = at.saturating_add(1);
    }
}

/// The length of the value at the start of `text` (which starts at its
/// first token), in accepted text. `None` if the text ends first.
pub(crate) fn value_len_unchecked(text: &[u8]) -> Option<usize> {
    match *text.first()? {
        b'{' | b'[' => container_len_unchecked(text),
        b'"' | b'\'' => string_len_unchecked(text),
        _ => Some(scalar_len_unchecked(text)),
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
    use std::vec;

    #[test]
    fn word_scan_matches_byte_scan() {
        for quote in [b'"', b'\''] {
            for special in [
                b'"', b'\'', b'\\', 0x00, 0x1F, 0xFE, 0xFF, 0x20, 0x7F, 0xFD, 0x80,
            ] {
                // Past 128 bytes, so that the 64-byte blocks of feature
                // `speed` stop at every place of a block.
                for at in 0..200 {
                    let mut bytes = vec![b'A'; 200];
                    bytes[at] = special;
                    let expect = bytes
                        .iter()
                        .take_while(|&&b| is_plain_string_byte(b, quote))
                        .count();
                    assert_eq!(
                        scan_string_body(&bytes, quote),
                        expect,
                        "special {special:#x} at {at}"
                    );
                    let ascii = bytes
                        .iter()
                        .take_while(|&&b| b != b'\\' && b < 0x80)
                        .count();
                    assert_eq!(scan_plain_ascii(&bytes), ascii, "{special:#x} at {at}");
                    // Also with a second stop after the first, and a
                    // byte one above the quote before it (where a
                    // borrow could raise a false flag).
                    let mut two = bytes.clone();
                    if at + 1 < two.len() {
                        two[at + 1] = quote;
                    }
                    if at > 0 {
                        two[at - 1] = quote.wrapping_add(1);
                    }
                    for input in [&bytes, &two] {
                        for from in [0, 1, 3] {
                            let input = &input[from..];
                            let expected = input
                                .iter()
                                .take_while(|&&b| b != quote && b != b'\\')
                                .count();
                            assert_eq!(
                                find_quote_or_backslash(input, quote),
                                expected,
                                "{special:#x} at {at} from {from}"
                            );
                        }
                    }
                }
            }
        }
    }
}
