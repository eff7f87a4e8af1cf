//! Spilling long string arguments changes nothing but memory: an agent
//! whose command table streams `arguments` strings to a [`Spill`] answers
//! every byte stream exactly as one that buffers whole requests, and its
//! commands see the same data.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

use agent_core::json::JsonStr;
use agent_core::prelude::*;
use agent_core::spill::Spill;
use agent_core::LargeStr;
use proptest::prelude::*;

/// A spill that keeps what it is given, and counts what it was asked.
#[derive(Default)]
struct Collect {
    threshold: usize,
    data: Vec<u8>,
    open: bool,
    begun: usize,
    offered: usize,
}

impl Spill for Collect {
    fn threshold(&self) -> usize {
        self.threshold
    }
    fn begin(&mut self, key: JsonStr<'_>) -> bool {
        assert!(!self.open, "one string at a time");
        self.offered += 1;
        if !key.eq_str("data") {
            return false;
        }
        self.open = true;
        self.begun += 1;
        self.data.clear();
        true
    }
    fn data(&mut self, bytes: &[u8]) {
        assert!(self.open);
        self.data.extend_from_slice(bytes);
    }
    fn discard(&mut self) {
        self.open = false;
        self.data.clear();
    }
}

/// `test-digest {data, other?}`: the length and FNV hash of `data`'s
/// bytes, and whether it came through the spill.
struct Digest {
    spill: Option<Collect>,
}

fn fnv(bytes: impl Iterator<Item = u8>) -> (u64, u64) {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut n = 0u64;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        n += 1;
    }
    (n, h)
}

impl Digest {
    const COMMANDS: [Command<Self>; 5] = [
        Command::guest_sync_delimited(),
        Command::guest_sync(),
        Command::guest_ping(),
        Command::guest_info(),
        Command::new("test-digest", Self::digest),
    ];

    fn digest<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
        let data = args.large_str("data")?;
        args.opt_str("other")?;
        args.finish()?;
        let (len, hash) = match data {
            LargeStr::Inline(s) => fnv(s.bytes()),
            LargeStr::Spilled => {
                let spill = self.spill.as_ref().unwrap();
                assert!(spill.open, "spilled data is still held");
                fnv(spill.data.iter().copied())
            }
        };
        let mut value = reply.ok()?;
        value.begin_object()?;
        value.key("len")?;
        value.i64(len as i64)?;
        value.key("hash")?;
        value.i64(hash as i64 >> 1)?;
        value.end_object()?;
        Ok(value.finish()?)
    }
}

impl Commands for Digest {
    type Error = core::convert::Infallible;
    fn commands(&self) -> &[Command<Self>] {
        &Self::COMMANDS
    }
    fn spill(&mut self) -> Option<&mut dyn Spill> {
        self.spill.as_mut().map(|s| s as &mut dyn Spill)
    }
}

type TestAgent = Agent<'static, Vec<u8>, Digest>;

fn agents(threshold: usize) -> (TestAgent, TestAgent) {
    let buffered = Agent::new(vec![0u8; 1 << 16], Digest { spill: None }, Policy::new());
    let spilling = Agent::new(
        vec![0u8; 1 << 16],
        Digest {
            spill: Some(Collect {
                threshold,
                ..Collect::default()
            }),
        },
        Policy::new(),
    );
    (buffered, spilling)
}

fn feed_in_pieces(agent: &mut TestAgent, input: &[u8], step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in input.chunks(step.max(1)) {
        agent.feed(piece, &mut out).unwrap();
    }
    out
}

/// Bodies for the long string: plain, escaped, non-ASCII, and broken.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        8 => Just(b"QUJDREVGR0hJSktMTU5PUA==".to_vec()),
        2 => Just(br#"\/\u0041\n\\\""#.to_vec()),
        2 => Just("é€😀".as_bytes().to_vec()),
        1 => Just(br"\ud83d\ude00\u0000".to_vec()),
        1 => Just(br"\ud800".to_vec()),
        1 => Just(br"\udbff\udfff".to_vec()),
        1 => Just(b"\xe2\x28\xa1".to_vec()),
        1 => Just(b"\xc0\x80".to_vec()),
        1 => Just(b"\x01".to_vec()),
        1 => Just(b"'".to_vec()),
    ];
    proptest::collection::vec(atom, 0..40).prop_map(|a| a.concat())
}

/// Requests around the long string: the usual shape, other member orders,
/// quotes, places where nothing may be spilled, and breakage after it.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (body(), 0usize..10).prop_map(|(body, shape)| {
        let b = String::from_utf8_lossy(&body).into_owned();
        let text = match shape {
            0 => format!(r#"{{"execute":"test-digest","arguments":{{"data":"{b}"}}}}"#),
            1 => format!(
                r#"{{"arguments":{{"other":"x","data":"{b}"}},"execute":"test-digest","id":[1]}}"#
            ),
            2 => format!(r#"{{'execute':'test-digest','arguments':{{'data':'{b}'}}}}"#),
            3 => format!(r#"{{"execute":"test-digest","arguments":{{"other":"{b}","data":""}}}}"#),
            4 => format!(r#"{{"execute":"test-digest","arguments":{{"data":"{b}","data":"x"}}}}"#),
            5 => format!(r#"{{"execute":"test-digest","arguments":{{"data":"{b}"}},"id":"{b}"}}"#),
            6 => format!(r#"{{"execute":"test-digest","arguments":{{"data":"{b}",}}}}"#),
            7 => format!(
                r#"{{"execute":"test-digest","id":{{"data":"{b}"}},"arguments":{{"data":"y"}}}}"#
            ),
            8 => format!(r#"{{"execute":"test-digest","arguments":{{"data":"{b}" "#),
            _ => format!(r#"{{"execute":"test-digest","arguments":{{"data":["{b}"]}}}}"#),
        };
        // Lossy decoding turned broken UTF-8 into U+FFFD; put it back.
        if body.iter().any(|&c| c >= 0x80) && String::from_utf8(body.clone()).is_err() {
            let mut raw = text.into_bytes();
            let marker = "\u{FFFD}".as_bytes();
            let pos = raw.windows(marker.len()).position(|w| w == marker);
            if let Some(pos) = pos {
                raw.splice(pos..pos + marker.len(), b"\xe2\x28\xa1".iter().copied());
            }
            return raw;
        }
        text.into_bytes()
    })
}

/// Replies are equal, except that a lexical error inside a spilled string
/// names the token by its head, elided (`stray '"QUJD...\u0001'`), as for
/// a token longer than the buffer: the rest of it was never stored.
fn same_reply(got: &str, expected: &str) -> bool {
    if got == expected {
        return true;
    }
    let stray = |line: &str| -> Option<String> {
        let at = line.find("stray '")? + "stray '".len();
        Some(line[at..line.rfind("'\"}}")?].to_string())
    };
    let (Some(g), Some(e)) = (stray(got), stray(expected)) else {
        return false;
    };
    let Some((head, last)) = g.split_once("...") else {
        return false;
    };
    // The head may end inside a UTF-8 sequence, shown as U+FFFD.
    let head = head.strip_suffix("\\uFFFD").unwrap_or(head);
    e.starts_with(head) && e.ends_with(last)
}

const LAST: &[u8] = br#"{"execute":"test-digest","arguments":{"data":"end"},"id":"last"}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn spilling_changes_no_reply(
        requests in proptest::collection::vec(request(), 1..4),
        threshold in prop_oneof![Just(0usize), Just(3), Just(20), Just(200)],
        step in prop_oneof![Just(1usize), Just(7), Just(64), Just(100_000)],
    ) {
        let (mut buffered, mut spilling) = agents(threshold);
        let mut input = Vec::new();
        for r in &requests {
            input.extend_from_slice(r);
            input.push(b'\n');
        }
        // Whatever came before, a reset byte and one more request.
        input.extend_from_slice(b"\xff");
        input.extend_from_slice(LAST);
        let expected = feed_in_pieces(&mut buffered, &input, 100_000);
        let got = feed_in_pieces(&mut spilling, &input, step);
        let (got, expected) = (String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
        prop_assert_eq!(got.lines().count(), expected.lines().count(), "{}\n{}", got, expected);
        for (g, e) in got.lines().zip(expected.lines()) {
            prop_assert!(same_reply(g, e), "{}\n{}", g, e);
        }
        prop_assert!(expected.ends_with("\"id\": \"last\"}\n"), "the last request is answered");
        let spill = spilling.commands().spill.as_ref().unwrap();
        prop_assert!(!spill.open, "everything staged was released");
    }
}

/// The usual request does go through the spill, in pieces, and its data
/// never reaches the request buffer.
#[test]
fn long_data_bypasses_the_buffer() {
    let data = "QUJD".repeat(50_000);
    let request = format!(r#"{{"execute":"test-digest","arguments":{{"data":"{data}"}}}}"#);
    let mut agent = Agent::new(
        vec![0u8; 1024],
        Digest {
            spill: Some(Collect {
                threshold: 512,
                ..Collect::default()
            }),
        },
        Policy::new(),
    );
    let (len, hash) = fnv(data.bytes());
    let out = feed_in_pieces(&mut agent, request.as_bytes(), 4096);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "{{\"return\": {{\"len\": {len}, \"hash\": {}}}}}\n",
            hash as i64 >> 1
        )
    );
    assert_eq!(agent.commands().spill.as_ref().unwrap().begun, 1);
    // Without the spill, the same request is too large for the buffer.
    let mut plain = Agent::new(vec![0u8; 1024], Digest { spill: None }, Policy::new());
    let out = feed_in_pieces(&mut plain, request.as_bytes(), 4096);
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("JSON request too large"));
    // A string the spill refuses is offered once, not once per piece.
    let other = format!(
        r#"{{"execute":"test-digest","arguments":{{"other":"{}","data":""}}}}"#,
        "x".repeat(600)
    );
    let mut declines = Agent::new(
        vec![0u8; 1024],
        Digest {
            spill: Some(Collect {
                threshold: 512,
                ..Collect::default()
            }),
        },
        Policy::new(),
    );
    let out = feed_in_pieces(&mut declines, other.as_bytes(), 7);
    assert!(String::from_utf8(out)
        .unwrap()
        .starts_with("{\"return\": {\"len\": 0"));
    assert_eq!(declines.commands().spill.as_ref().unwrap().offered, 1);
    // A reset in the middle of a spilled string releases it.
    let mut out = Vec::new();
    agent.feed(&request.as_bytes()[..20_000], &mut out).unwrap();
    assert!(agent.commands().spill.as_ref().unwrap().open);
    agent.reset();
    assert!(!agent.commands().spill.as_ref().unwrap().open);
}
