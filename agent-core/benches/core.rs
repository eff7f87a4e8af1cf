//! Whole-core throughput (lexer, framer, parser and dispatch in their one
//! pass) on (a) a stream of small `guest-ping` requests and (b) one
//! request with a 1 MiB base64 string.
//! Run with `cargo bench -p agent-core`; divan prints time and MB/s.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use agent_core::{Agent, CoreCommands, Policy};
use divan::counter::BytesCount;
use divan::Bencher;

fn main() {
    divan::main();
}

/// 4 KiB of back-to-back pings (what one qemu-ga read would see).
fn ping_stream() -> Vec<u8> {
    let one = br#"{"execute": "guest-ping", "id": 1}"#;
    let mut out = Vec::new();
    while out.len() + one.len() <= 4096 {
        out.extend_from_slice(one);
    }
    out
}

/// A guest-file-write-shaped request carrying 1 MiB of base64.
fn big_string_request() -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let payload: Vec<u8> = (0..1 << 20)
        .map(|i| alphabet[(i * 7 + i / 64) % 64])
        .collect();
    let mut out =
        br#"{"execute": "guest-file-write", "arguments": {"handle": 1000, "buf-b64": ""#.to_vec();
    out.extend_from_slice(&payload);
    out.extend_from_slice(br#""}}"#);
    out
}

#[divan::bench]
fn agent_ping_stream(bencher: Bencher) {
    let input = ping_stream();
    let mut agent = Agent::new(vec![0u8; 64 << 10], CoreCommands::new(), Policy::new());
    let mut out = Vec::with_capacity(1 << 16);
    bencher
        .counter(BytesCount::of_slice(&input))
        .bench_local(|| {
            out.clear();
            agent.feed(&input, &mut out).unwrap();
        });
}

#[divan::bench]
fn agent_1mib_string(bencher: Bencher) {
    // Framing, parsing (UTF-8 and escape checks) and dispatch to an unknown
    // command: the whole path a large request takes through the core.
    let input = big_string_request();
    let mut agent = Agent::new(vec![0u8; 2 << 20], CoreCommands::new(), Policy::new());
    let mut out = Vec::with_capacity(1 << 10);
    bencher
        .counter(BytesCount::of_slice(&input))
        .bench_local(|| {
            out.clear();
            agent.feed(&input, &mut out).unwrap();
        });
}
