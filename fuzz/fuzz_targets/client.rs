//! The host-side client on arbitrary agent output: never a panic, and it
//! only reports the handshake done after a sentinel followed by the
//! matching `{"return": <id>}`.
#![no_main]

use agent_core::client::{Client, Event, SyncMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, output)) = data.split_first() else {
        return;
    };
    let mode = if mode & 1 == 0 {
        SyncMode::Delimited
    } else {
        SyncMode::Plain
    };
    let mut client = Client::new([0u8; 128]);
    let _ = client.begin_sync(4242, mode);
    let mut rest = output;
    let mut consumed = 0;
    while !rest.is_empty() {
        let (n, event) = client.feed(rest);
        assert!(n <= rest.len());
        if let Some(Event::Synced) = event {
            let seen = &output[..consumed + n];
            assert!(
                seen.windows(4).any(|w| w == b"4242"),
                "synced without the id"
            );
            if mode == SyncMode::Delimited {
                assert!(seen.contains(&0xFF), "synced without a sentinel");
            }
        }
        if n == 0 && event.is_none() {
            break;
        }
        consumed += n;
        rest = &rest[n..];
    }
});
