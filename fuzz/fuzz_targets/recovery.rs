//! Structure-aware: a stream of valid requests, reset bytes and garbage.
//! Oracle: every valid request that follows a reset byte gets exactly its
//! own response, in order, whatever came before.
#![no_main]

use agent_core::{Agent, CoreCommands, Policy};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Piece {
    /// A reset byte, then guest-sync with this id: must be answered.
    ResetThenSync(i64),
    /// Any bytes.
    Garbage(Vec<u8>),
    /// A valid request not preceded by a reset (may be swallowed by garbage).
    Ping,
    /// A half request.
    Partial,
}

fuzz_target!(|pieces: Vec<Piece>| {
    let mut agent = Agent::new([0u8; 256], CoreCommands::new(), Policy::new());
    for piece in &pieces {
        let mut out = Vec::new();
        match piece {
            Piece::ResetThenSync(id) => {
                let request = format!("\u{0}{{\"execute\": \"guest-sync\", \"arguments\": {{\"id\": {id}}}, \"id\": \"o\"}}");
                let mut bytes = request.into_bytes();
                bytes[0] = 0xFF;
                agent.feed(&bytes, &mut out).unwrap();
                let expect = format!("{{\"return\": {id}, \"id\": \"o\"}}\n");
                assert!(
                    out.ends_with(expect.as_bytes()),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
                // Only the reset byte's error (and answers to what came
                // before it) may precede it.
                let before = &out[..out.len() - expect.len()];
                assert!(before.is_empty() || before.ends_with(b"\n"));
            }
            Piece::Garbage(bytes) => {
                agent.feed(bytes, &mut out).unwrap();
            }
            Piece::Ping => {
                agent
                    .feed(b"{\"execute\":\"guest-ping\"}", &mut out)
                    .unwrap();
            }
            Piece::Partial => {
                agent.feed(b"{\"execute\":\"guest-pi", &mut out).unwrap();
            }
        }
    }
});
