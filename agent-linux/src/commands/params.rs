//! Strings of arguments as Rust and OS strings. (The argument getters and
//! every QAPI error sentence are agent-core's [`Args`](agent_core::Args).)

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use agent_core::json::JsonStr;

/// The decoded text of a JSON string.
pub fn text(s: &JsonStr<'_>) -> String {
    s.chars().collect()
}

/// A JSON string as the bytes qemu-ga would pass to the OS (QEMU stores
/// strings as modified UTF-8, so `\u0000` becomes `C0 80`).
pub fn os_string(s: &JsonStr<'_>) -> OsString {
    OsString::from_vec(s.bytes().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::json::Value;

    #[test]
    fn nul_is_modified_utf8() {
        let v = Value::parse(br#""a\u0000""#).unwrap();
        assert_eq!(
            os_string(&v.as_str().unwrap()).into_vec(),
            [b'a', 0xC0, 0x80]
        );
        assert_eq!(text(&v.as_str().unwrap()), "a\0");
    }
}
