//! Argument helpers beyond agent-core's scalar getters: lists, nested
//! structs, and strings as Rust and OS strings. Error texts are QAPI's,
//! with its element names (`arg[0]`, `vcpus[1].online`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use agent_core::args::{Args, CommandError};
use agent_core::json::{JsonStr, Value, ValueKind};

use super::Error;

/// The decoded text of a JSON string.
pub fn text(s: &JsonStr<'_>) -> String {
    s.chars().collect()
}

/// A JSON string as the bytes qemu-ga would pass to the OS (QEMU stores
/// strings as modified UTF-8, so `\u0000` becomes `C0 80`).
pub fn os_string(s: &JsonStr<'_>) -> OsString {
    OsString::from_vec(s.bytes().collect())
}

/// "Invalid parameter type for '<name>', expected: <expected>"
pub fn invalid_type<'a>(name: &str, expected: &str) -> Error<'a> {
    Error::msg(format!(
        "Invalid parameter type for '{name}', expected: {expected}"
    ))
}

/// An optional list argument: `None` if absent; each element is checked
/// with `elem`, which gets the element's QAPI name (`name[i]`).
pub fn opt_list<'a, T>(
    args: &Args<'a>,
    name: &'static str,
    mut elem: impl FnMut(&str, Value<'a>) -> Result<T, Error<'a>>,
) -> Result<Option<Vec<T>>, Error<'a>> {
    let Some(value) = args.get(name) else {
        return Ok(None);
    };
    if value.kind() != ValueKind::Array {
        return Err(CommandError::InvalidParameterType {
            name,
            expected: "array",
        }
        .into());
    }
    value
        .elements()
        .enumerate()
        .map(|(i, v)| elem(&format!("{name}[{i}]"), v))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// A required list argument.
pub fn list<'a, T>(
    args: &Args<'a>,
    name: &'static str,
    elem: impl FnMut(&str, Value<'a>) -> Result<T, Error<'a>>,
) -> Result<Vec<T>, Error<'a>> {
    opt_list(args, name, elem)?.ok_or(CommandError::MissingParameter(name).into())
}

/// A list element that must be a string.
pub fn str_elem<'a>(name: &str, v: Value<'a>) -> Result<JsonStr<'a>, Error<'a>> {
    v.as_str().ok_or_else(|| invalid_type(name, "string"))
}

/// A struct element of a list: its members through `Args`, after checking
/// it is an object. Unknown members are reported with the full name.
pub fn struct_elem<'a>(name: &str, v: Value<'a>) -> Result<Args<'a>, Error<'a>> {
    if v.kind() != ValueKind::Object {
        return Err(invalid_type(name, "object"));
    }
    Ok(Args::new(Some(v)))
}

/// Re-name an argument error from a nested struct (`online` becomes
/// `vcpus[0].online`).
pub fn nested<'a>(prefix: &str, e: CommandError<'a>) -> Error<'a> {
    match e {
        CommandError::MissingParameter(n) => {
            Error::msg(format!("Parameter '{prefix}.{n}' is missing"))
        }
        CommandError::InvalidParameterType { name, expected } => {
            invalid_type(&format!("{prefix}.{name}"), expected)
        }
        CommandError::UnexpectedParameter(key) => {
            Error::msg(format!("Parameter '{prefix}.{}' is unexpected", text(&key)))
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        let v = Value::parse(br#"{"a": ["x", 1], "b": 3, "c": ["\u0000"]}"#).unwrap();
        let args = Args::new(Some(v));
        assert_eq!(
            opt_list(&args, "a", str_elem).unwrap_err().to_string(),
            "Invalid parameter type for 'a[1]', expected: string"
        );
        assert_eq!(
            opt_list(&args, "b", str_elem).unwrap_err().to_string(),
            "Invalid parameter type for 'b', expected: array"
        );
        assert!(opt_list(&args, "z", str_elem).unwrap().is_none());
        assert_eq!(
            list(&args, "z", str_elem).unwrap_err().to_string(),
            "Parameter 'z' is missing"
        );
        let c = list(&args, "c", str_elem).unwrap();
        assert_eq!(os_string(&c[0]).into_vec(), [0xC0, 0x80]);
    }
}
