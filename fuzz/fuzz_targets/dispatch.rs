//! Arbitrary values through the parser, envelope and dispatch: every
//! complete value fed to the agent is answered by exactly one response
//! line (guest-ping and the sync commands always answer), and the views of
//! every value `Value::parse` accepts walk without failing.
#![no_main]

use agent_core::json::Value;
use agent_core::{Agent, CoreCommands, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = Value::parse(data) {
        // One accepted value, then a space (a number needs its lookahead
        // byte): one answer.
        let mut agent = Agent::new(vec![0u8; 1 << 16], CoreCommands::new(), Policy::new());
        let mut out = Vec::new();
        let mut input = data.to_vec();
        input.push(b' ');
        agent.feed(&input, &mut out).unwrap();
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            1,
            "one response per value: {:?}",
            String::from_utf8_lossy(&out)
        );
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
