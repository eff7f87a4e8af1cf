//! Arbitrary complete values through the parser, envelope and dispatch:
//! every value the parser accepts is answered by exactly one response line
//! (guest-ping and the sync commands always answer), and the views of
//! accepted values never fail.
#![no_main]

use agent_core::dispatch::{self, Info, Policy};
use agent_core::json::Value;
use agent_core::{parser, CoreCommands};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut table = CoreCommands::new();
    let mut out = Vec::new();
    dispatch::dispatch(
        data,
        &mut table,
        &Policy::new(),
        Info { version: "fuzz" },
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one response per value"
    );
    if parser::validate(data).is_ok() {
        let value = Value::parse(data).expect("an accepted value has a view");
        // Walking every member and element of an accepted value succeeds.
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            stack.extend(v.members().map(|(_, m)| m));
            stack.extend(v.elements());
            if let Some(s) = v.as_str() {
                let _ = s.chars().count();
            }
            let _ = v.as_number();
        }
    }
});
