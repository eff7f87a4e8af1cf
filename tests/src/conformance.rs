//! JSON conformance cases in JSONTestSuite's three categories, generated
//! here rather than copied, each with the verdict QEMU's documented rules
//! give (PROTOCOL.md §2.1–2.2, `qobject/json-lexer.c`, `json-parser.c`,
//! `util/unicode.c`):
//!
//! * `y`: RFC 8259 text that every parser must accept — QEMU accepts it;
//! * `n`: text RFC 8259 forbids — QEMU rejects it;
//! * `i`: text RFC 8259 leaves to the implementation (limits, number
//!   range, lone surrogates, duplicate names, a byte-order mark), and the
//!   places where QEMU deliberately departs from RFC 8259 (single quotes,
//!   `0e5`, modified UTF-8, noncharacters). Each says why it gets its
//!   verdict.
//!
//! A case is one JSON text. [`Case::request`] puts it where a client's
//! arbitrary value goes, as the `id` of a `guest-ping` (which the reply
//! echoes), followed by a reset byte and a final `guest-ping` with id
//! `"end"`, so that its verdict shows on the wire: the first reply is a
//! `return` (accepted) or an `error`.
//! `tests/json_conformance.rs` checks agent-core's verdicts against these
//! and against `serde_json`; `tests/differential.rs` checks them, and our
//! bytes, against Debian's real `qemu-ga`.

/// JSONTestSuite's category of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Valid RFC 8259 text.
    Y,
    /// Invalid RFC 8259 text.
    N,
    /// Implementation-defined, or a deliberate QEMU departure.
    I,
}

/// One JSON text and the verdict QEMU's rules give it.
#[derive(Clone, Debug)]
pub struct Case {
    /// A name in JSONTestSuite's style, unique among the cases.
    pub name: String,
    /// The JSON text.
    pub text: Vec<u8>,
    /// Its category.
    pub category: Category,
    /// Whether QEMU accepts it as a value.
    pub accept: bool,
    /// For `i` cases, the rule behind the verdict.
    pub why: &'static str,
}

/// The reply every case's request ends with.
pub const END: &[u8] = b"{\"return\": {}, \"id\": \"end\"}\n";

impl Case {
    /// The bytes to send: the text as a `guest-ping`'s id, a reset byte, and
    /// a final `guest-ping` answered with [`END`].
    pub fn request(&self) -> Vec<u8> {
        let mut out = b"{\"execute\":\"guest-ping\",\"id\":".to_vec();
        out.extend_from_slice(&self.text);
        out.extend_from_slice(b"}\xff{\"execute\":\"guest-ping\",\"id\":\"end\"}");
        out
    }

    /// The verdict an agent's output to [`Case::request`] shows: `Some(true)`
    /// when the first reply is a return, `Some(false)` for an error,
    /// `None` for anything else (no reply, or no final reply).
    pub fn verdict(output: &[u8]) -> Option<bool> {
        if !output.ends_with(END) {
            return None;
        }
        if output.starts_with(b"{\"return\": ") {
            Some(true)
        } else if output.starts_with(b"{\"error\": ") {
            Some(false)
        } else {
            None
        }
    }
}

struct Builder(Vec<Case>);

impl Builder {
    fn add(
        &mut self,
        category: Category,
        name: impl Into<String>,
        text: impl AsRef<[u8]>,
        accept: bool,
        why: &'static str,
    ) {
        self.0.push(Case {
            name: name.into(),
            text: text.as_ref().to_vec(),
            category,
            accept,
            why,
        });
    }
    fn y(&mut self, name: impl Into<String>, text: impl AsRef<[u8]>) {
        self.add(Category::Y, name, text, true, "");
    }
    fn n(&mut self, name: impl Into<String>, text: impl AsRef<[u8]>) {
        self.add(Category::N, name, text, false, "");
    }
    fn i(
        &mut self,
        name: impl Into<String>,
        text: impl AsRef<[u8]>,
        accept: bool,
        why: &'static str,
    ) {
        self.add(Category::I, name, text, accept, why);
    }
}

/// A string token with `body` between double quotes.
fn quoted(body: &[u8]) -> Vec<u8> {
    let mut s = vec![b'"'];
    s.extend_from_slice(body);
    s.push(b'"');
    s
}

/// `depth` nested arrays around `1`.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut s = vec![b'['; depth];
    s.push(b'1');
    s.extend(std::iter::repeat_n(b']', depth));
    s
}

/// `depth` nested objects `{"a": ...}` around `1`.
fn nested_objects(depth: usize) -> Vec<u8> {
    let mut s = b"{\"a\":".repeat(depth);
    s.push(b'1');
    s.extend(std::iter::repeat_n(b'}', depth));
    s
}

/// Every case, in a fixed order.
pub fn cases() -> Vec<Case> {
    let mut b = Builder(Vec::new());
    numbers(&mut b);
    strings(&mut b);
    utf8(&mut b);
    literals(&mut b);
    structures(&mut b);
    bytes_outside_strings(&mut b);
    big(&mut b);
    b.0
}

fn numbers(b: &mut Builder) {
    for (i, text) in [
        "0",
        "-0",
        "1",
        "-1",
        "9",
        "10",
        "-10",
        "1234567890",
        "0.5",
        "-0.5",
        "10.25",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1E+05",
        "1.5e10",
        "-1.5E-10",
        "1.0",
        "0.0",
        "-0.0",
        "123.456e-78",
        "1e308",
        "-1e-308",
        "5e-324",
        "2.2250738585072014e-308",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        "0.1",
        "0.30000000000000004",
        "123456789012345678",
    ]
    .iter()
    .enumerate()
    {
        b.y(format!("y_number_{i}_{text}"), text);
    }
    for (i, text) in [
        "01",
        "-01",
        "00",
        "001",
        "1.",
        "-1.",
        ".5",
        "-.5",
        "+1",
        "-",
        "--1",
        "1e",
        "1e+",
        "1E-",
        "1.e5",
        "0x1F",
        "0x",
        "1_000",
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1.5e5.5",
        "2.",
        "1ee5",
        "1e5e5",
        "1.2.3",
        "-a",
        "1e5.",
        "\u{661}",
        "1+2",
        "0.e1",
        "1.5E",
        "- 1",
        "1 000",
        "0.5.",
        "[-]",
        "[+1]",
        "[.1]",
        "[1.]",
        "[012]",
    ]
    .iter()
    .enumerate()
    {
        b.n(format!("n_number_{i}"), text);
    }
    b.i(
        "i_number_uint64_plus_one",
        "18446744073709551616",
        true,
        "integers beyond uint64 become doubles",
    );
    b.i(
        "i_number_int64_minus_one",
        "-9223372036854775809",
        true,
        "integers beyond int64 become doubles",
    );
    b.i(
        "i_number_huge_exp",
        "1e400",
        true,
        "strtod overflows to infinity; QEMU keeps it",
    );
    b.i(
        "i_number_neg_huge_exp",
        "-1e400",
        true,
        "strtod overflows to -infinity; QEMU keeps it",
    );
    b.i(
        "i_number_real_underflow",
        "1e-400",
        true,
        "strtod underflows to 0",
    );
    b.i(
        "i_number_very_long_int",
        "1".repeat(400),
        true,
        "a 400-digit integer is a double (infinity)",
    );
    b.i(
        "i_number_very_long_fraction",
        format!("0.{}", "1".repeat(400)),
        true,
        "rounded by strtod",
    );
    for (i, text) in ["0e5", "0E5", "0e+1", "-0e-1", "0e0", "[0e1]"]
        .iter()
        .enumerate()
    {
        b.i(
            format!("i_number_zero_exponent_{i}"),
            text,
            false,
            "QEMU's lexer ends a leading 0 before an exponent: `0e5` is `0` then the keyword `e5`",
        );
    }
}

fn strings(b: &mut Builder) {
    for (i, body) in [
        &b""[..],
        b"a",
        b"\\\"",
        b"\\\\",
        b"\\/",
        b"\\b",
        b"\\f",
        b"\\n",
        b"\\r",
        b"\\t",
        b"\\u0041",
        b"\\u00e9",
        b"\\u00E9",
        b"\\u20ac",
        b"\\ud83d\\ude00",
        b"\\uD83D\\uDE00",
        b"\\u0000",
        b"\\u001f",
        b"\\u007f",
        b"\\uFFFD",
        b"\\uD7FF",
        b"\\uE000",
        b"\\udbff\\udffd",
        b" ",
        b"\x7f",
        b"a\\nb\\tc",
        b"\\\\u0041",
        b"//",
        b"'",
        b"a'b",
        b"[]{}:,",
        b"\\\"\\\\\\/\\b\\f\\n\\r\\t",
    ]
    .iter()
    .enumerate()
    {
        b.y(format!("y_string_{i}"), quoted(body));
    }
    for (i, text) in [
        &b"\"abc"[..],
        b"\"",
        b"\"\\",
        b"\"\\\"",
        b"\"\\x\"",
        b"\"\\a\"",
        b"\"\\'x",
        b"\"\\u12\"",
        b"\"\\u12G4\"",
        b"\"\\U0041\"",
        b"\"\\u\"",
        b"\"\\uD83D\\u\"",
        b"\"\\0\"",
        b"\"\\ \"",
        b"abc\"",
        b"\"a\"\"",
        b"\"\\u-123\"",
    ]
    .iter()
    .enumerate()
    {
        b.n(format!("n_string_{i}"), text);
    }
    // Every control byte, and the two bytes the lexer never takes, raw
    // inside a string.
    for byte in (0x00..0x20u8).chain([0xFE, 0xFF]) {
        b.n(
            format!("n_string_raw_{byte:02x}"),
            quoted(&[b'a', byte, b'b']),
        );
    }
    // Lone and mispaired surrogate escapes: RFC 8259 §8.2 leaves their
    // meaning open; QEMU rejects them.
    for (i, body) in [
        &b"\\ud800"[..],
        b"\\udc00",
        b"\\ud800\\u0041",
        b"\\udbff",
        b"\\ud800\\ud800",
        b"\\ude00\\ud83d",
        b"\\ud800x",
        b"\\ud800\\n",
        b"\\uDFFF",
    ]
    .iter()
    .enumerate()
    {
        b.i(
            format!("i_string_lone_surrogate_{i}"),
            quoted(body),
            false,
            "a surrogate escape that is not half of a pair is invalid",
        );
    }
    // QEMU's noncharacters (`is_valid_codepoint`): RFC 8259 allows them.
    for (i, body) in [
        &b"\\uFDD0"[..],
        b"\\ufdef",
        b"\\uFFFE",
        b"\\uffff",
        b"\\ud83f\\udfff",
        b"\\udbff\\udfff",
    ]
    .iter()
    .enumerate()
    {
        b.i(
            format!("i_string_nonchar_escape_{i}"),
            quoted(body),
            false,
            "QEMU rejects noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)",
        );
    }
    // QEMU's single-quoted strings and the `\'` escape.
    for (i, text) in [
        &b"'abc'"[..],
        b"''",
        b"'a\"b'",
        b"'it\\'s'",
        b"\"\\'\"",
        b"['x', \"y\"]",
        b"{'k': 1}",
    ]
    .iter()
    .enumerate()
    {
        b.i(
            format!("i_string_single_quote_{i}"),
            text,
            true,
            "QEMU extension: single-quoted strings and the \\' escape",
        );
    }
    b.n("n_string_single_quote_unterminated", "'abc");
    b.n("n_string_single_quote_bad_escape", "'\\x'");
}

fn utf8(b: &mut Builder) {
    for (i, body) in [
        &b"\xc3\xa9"[..],
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\xf4\x8f\xbf\xbd",
        b"\xc2\x80",
        b"\xdf\xbf",
        b"\xe0\xa0\x80",
        b"\xed\x9f\xbf",
        b"\xee\x80\x80",
        b"\xef\xbf\xbd",
        b"\xf0\x90\x80\x80",
        b"\xe6\x97\xa5\xe6\x9c\xac",
    ]
    .iter()
    .enumerate()
    {
        b.y(format!("y_string_utf8_{i}"), quoted(body));
    }
    // RFC 8259 §8.1: JSON text is UTF-8; these are not.
    for (i, body) in [
        &b"\x80"[..],
        b"\xbf",
        b"\xc3",
        b"\xc3x",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\xf5\x80\x80\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xfc\x84\x80\x80\x80\x80",
        b"\xc1\xbf",
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xe0\x9f\xbf",
        b"\xf0\x80\x80\xaf",
        b"\xf0\x8f\xbf\xbf",
        b"\xed\xa0\x80",
        b"\xed\xbf\xbf",
        b"\xed\xa0\xbd\xed\xb8\x80",
        b"\xf4\x90\x80\x80",
        b"\xe9",
        b"\xe9t\xe9",
        b"\x80\x80",
        b"a\xc3\xa9\xa9",
    ]
    .iter()
    .enumerate()
    {
        b.n(format!("n_string_utf8_{i}"), quoted(body));
    }
    b.i(
        "i_string_modified_utf8_nul",
        quoted(b"a\xc0\x80b"),
        true,
        "QEMU strings are modified UTF-8: C0 80 is U+0000",
    );
    for (i, body) in [
        &b"\xef\xb7\x90"[..],
        b"\xef\xbf\xbe",
        b"\xef\xbf\xbf",
        b"\xf0\x9f\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
    ]
    .iter()
    .enumerate()
    {
        b.i(
            format!("i_string_nonchar_raw_{i}"),
            quoted(body),
            false,
            "QEMU rejects noncharacters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)",
        );
    }
    b.i("i_structure_utf8_bom", b"\xef\xbb\xbf[]", false, "RFC 8259 §8.1 lets a parser ignore a BOM; QEMU's lexer rejects every byte >= 0x80 outside strings");
    b.i(
        "i_string_utf16le_bom",
        b"\xff\xfe[\x00]\x00",
        false,
        "only UTF-8 is read",
    );
}

fn literals(b: &mut Builder) {
    for text in ["true", "false", "null"] {
        b.y(format!("y_literal_{text}"), text);
    }
    for (i, text) in [
        "True",
        "TRUE",
        "nul",
        "tru",
        "truee",
        "nulll",
        "falsy",
        "undefined",
        "t",
        "n",
        "fals",
        "[tru]",
        "[true false]",
        "nil",
        "none",
        "truefalse",
    ]
    .iter()
    .enumerate()
    {
        b.n(format!("n_literal_{i}"), text);
    }
}

fn structures(b: &mut Builder) {
    for (i, text) in [
        "[]",
        "{}",
        "[1]",
        "[1,2]",
        "{\"a\":1}",
        "{\"a\":{\"b\":[]}}",
        " [ 1 , 2 ] ",
        "\t[1]\n",
        "\r\n{}\r\n",
        "{\"a\":1,\"b\":2}",
        "[[[]]]",
        "[null,true,false,\"x\",1.5,{},[]]",
        "{\"\":0}",
        "{\"a\" : [ { } ] }",
        "[\"a\",\n\t\"b\"\r]",
        "{\"b\":1,\"a\":2,\"c\":3}",
        "[1e5,-0,0.5]",
        "{\"a\":null}",
        "[[],[[]],{}]",
    ]
    .iter()
    .enumerate()
    {
        b.y(format!("y_structure_{i}"), text);
    }
    b.y("y_structure_100_nested_arrays", nested_arrays(100));
    b.y("y_structure_100_nested_objects", nested_objects(100));
    for (i, text) in [
        "[1,]",
        "[,1]",
        "[,]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{:1}",
        "{1:2}",
        "{null:1}",
        "{[]:1}",
        "[1 2]",
        "[1:2]",
        "{\"a\":1 \"b\":2}",
        "[",
        "]",
        "{",
        "}",
        "[]]",
        "[[]",
        "{\"a\":[}",
        "[}",
        "{]",
        "1 2",
        "[] []",
        "",
        " ",
        "/* c */ []",
        "// c\n[]",
        "#",
        "[1] x",
        "<>",
        "@",
        "[1,,2]",
        "{\"a\"::1}",
        "{\"a\":1,,\"b\":2}",
        "[\"a\"]]",
        "[{}}]",
        "[1]x",
        "(1)",
        "{\"a\",\"b\"}",
        "[\"\\\"]",
    ]
    .iter()
    .enumerate()
    {
        b.n(format!("n_structure_{i}"), text);
    }
    b.i(
        "i_structure_duplicate_key",
        "{\"a\":1,\"a\":2}",
        false,
        "RFC 8259 §4: names SHOULD be unique; QEMU rejects a duplicate",
    );
    b.i(
        "i_structure_duplicate_key_nested",
        "[{\"b\":{\"x\":1,\"x\":1}}]",
        false,
        "RFC 8259 §4: names SHOULD be unique; QEMU rejects a duplicate",
    );
    b.i(
        "i_structure_duplicate_key_escaped",
        "{\"a\":1,\"\\u0061\":2}",
        false,
        "duplicate after unescaping",
    );
    // Nesting: RFC 8259 §9 allows a limit. QEMU's is 1024 open brackets
    // and braces in all; the request around the case holds one of them.
    for depth in [129, 500, 1023] {
        b.i(
            format!("i_structure_{depth}_nested_arrays"),
            nested_arrays(depth),
            true,
            "QEMU nests up to 1024 (serde_json's default limit is 128)",
        );
    }
    b.i(
        "i_structure_1023_nested_objects",
        nested_objects(1023),
        true,
        "QEMU nests up to 1024 (serde_json's default limit is 128)",
    );
    b.i(
        "i_structure_1024_nested_arrays",
        nested_arrays(1024),
        false,
        "QEMU nests up to 1024, counted from the top of the request",
    );
    b.i(
        "i_structure_5000_nested_arrays",
        nested_arrays(5000),
        false,
        "QEMU nests up to 1024",
    );
}

fn bytes_outside_strings(b: &mut Builder) {
    for byte in (0x00..0x20u8).filter(|c| !matches!(c, b'\t' | b'\n' | b'\r')) {
        b.n(
            format!("n_structure_control_{byte:02x}"),
            [b'[', byte, b'1', b']'],
        );
    }
    b.n("n_structure_del", b"[\x7f1]");
    for byte in 0x80..=0xFFu8 {
        b.n(
            format!("n_structure_high_{byte:02x}"),
            [b'[', byte, b'1', b']'],
        );
    }
    for (i, text) in [
        &b"[\xc2\xa01]"[..],
        b"[\xe2\x80\x8b1]",
        b"\xc3\xa9",
        b"[1]\xc3\xa9",
    ]
    .iter()
    .enumerate()
    {
        b.n(format!("n_structure_unicode_outside_{i}"), text);
    }
    for (i, text) in ["\u{b}[1]", "\u{c}[1]", "[1\u{b}]", "[1\u{c}]"]
        .iter()
        .enumerate()
    {
        b.n(format!("n_structure_nonjson_space_{i}"), text);
    }
}

fn big(b: &mut Builder) {
    b.y("y_string_1mib", quoted(&b"abcdefgh".repeat(128 * 1024)));
    b.y(
        "y_string_1mib_escapes",
        quoted(&b"\\n\\u00e9\\\"".repeat(65536)),
    );
    b.y(
        "y_structure_100k_members",
        format!("[{}1]", "1,".repeat(100_000)),
    );
    b.n(
        "n_string_1mib_then_control",
        [quoted(&b"x".repeat(1 << 20)), b"\x01".to_vec()].concat(),
    );
    b.i(
        "i_number_1mib_digits",
        "9".repeat(1 << 20),
        true,
        "a 1 MiB integer is a double (infinity)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let cases = cases();
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
