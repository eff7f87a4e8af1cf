//! Arbitrary bytes through the whole agent (lexer, framer, parser,
//! envelope, dispatch, writer), in arbitrary pieces, with a small buffer:
//! never a panic; output is whole ASCII lines (0xFF only as a sentinel);
//! the same bytes in one piece give the same output.
#![no_main]

use agent_core::{Agent, CoreCommands, Policy};
use libfuzzer_sys::fuzz_target;

fn run(input: &[u8], piece: usize) -> Vec<u8> {
    let mut agent = Agent::new([0u8; 96], CoreCommands::new(), Policy::new());
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        agent.feed(chunk, &mut out).unwrap();
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len());
    assert_eq!(run(input, usize::from(piece % 17)), whole);
    assert!(whole.iter().all(|&b| b.is_ascii() || b == 0xFF));
    assert!(whole.is_empty() || whole.ends_with(b"\n"));
    for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_prefix(b"\xff").unwrap_or(line);
        assert!(
            line.starts_with(b"{\"return\": ")
                || line.starts_with(b"{\"error\": ")
                || line.starts_with(b"{\"id\": ")
        );
    }
});
