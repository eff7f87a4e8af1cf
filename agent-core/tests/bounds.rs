//! Bounds the core promises: a blocked or disabled command never runs,
//! whatever the policy and the request; and `feed` runs in a small stack
//! on the worst inputs (deep nesting, ids to be reordered, huge keys).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

use std::cell::RefCell;
use std::rc::Rc;

use agent_core::prelude::*;
use proptest::prelude::*;

const NAMES: [&str; 6] = [
    "guest-a",
    "guest-b",
    "guest-c",
    "guest-fsfreeze-thaw",
    "guest-ping-x",
    "guest-d",
];

/// Records every command it runs.
struct Recorder {
    ran: Rc<RefCell<Vec<String>>>,
    frozen: bool,
}

/// A handler that records that command `NAMES[$i]` ran.
macro_rules! recording {
    ($i:expr) => {
        |table: &mut Recorder, args: &Args<'_>, reply: Reply<'_>| {
            table.ran.borrow_mut().push(NAMES[$i].to_string());
            args.finish()?;
            Ok(reply.ok_empty()?)
        }
    };
}

impl Recorder {
    const COMMANDS: [Command<Self>; 10] = [
        Command::guest_sync_delimited(),
        Command::guest_sync(),
        Command::guest_ping(),
        Command::guest_info(),
        Command::new(NAMES[0], recording!(0)),
        Command::new(NAMES[1], recording!(1)),
        Command::new(NAMES[2], recording!(2)).without_success_response(),
        Command::new(NAMES[3], recording!(3)).allowed_while_frozen(),
        Command::new(NAMES[4], recording!(4)),
        Command::new(NAMES[5], recording!(5)),
    ];
}

impl Commands for Recorder {
    type Error = core::convert::Infallible;
    fn commands(&self) -> &[Command<Self>] {
        &Self::COMMANDS
    }
    fn is_frozen(&self) -> bool {
        self.frozen
    }
}

fn request() -> impl Strategy<Value = String> {
    (
        prop::sample::select(NAMES.to_vec()),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(name, escaped, id)| {
            // Sometimes spell the name with escapes: the policy applies to the
            // decoded name.
            let name = if escaped {
                name.replace('-', "\\u002d")
            } else {
                name.to_string()
            };
            format!(r#"{{"execute": "{name}", "id": {id}}}"#)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn blocked_commands_never_run(
        block in proptest::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len()),
        allow in proptest::sample::subsequence(NAMES.to_vec(), 0..=NAMES.len()),
        frozen in any::<bool>(),
        requests in proptest::collection::vec(request(), 1..24),
    ) {
        let ran = Rc::new(RefCell::new(Vec::new()));
        let policy = Policy::new().block(&block).allow(&allow);
        let table = Recorder { ran: ran.clone(), frozen };
        let mut agent = Agent::new(vec![0u8; 4096], table, policy);
        let mut out = Vec::new();
        agent.feed(requests.concat().as_bytes(), &mut out).unwrap();
        // Only guest-fsfreeze-thaw (of these) runs while frozen.
        let enabled = |name: &str| policy.is_enabled(name) && (!frozen || name == NAMES[3]);
        for name in ran.borrow().iter() {
            prop_assert!(enabled(name), "{name} ran although disabled");
        }
        // And every enabled request did run: nothing silently dropped.
        let expected = requests
            .iter()
            .map(|r| NAMES.iter().find(|n| r.contains(&n.replace('-', "\\u002d")) || r.contains(*n)).unwrap())
            .filter(|n| enabled(n))
            .count();
        prop_assert_eq!(ran.borrow().len(), expected);
    }
}

/// Worst cases for the core's stack: the parser and the id writer must not
/// recurse with the input.
#[test]
fn feed_runs_in_a_small_stack() {
    let deep_array = format!("{}{}", "[".repeat(1024), "]".repeat(1024));
    let deep_id = format!(
        r#"{{"execute": "guest-ping", "id": {}1{}}}"#,
        r#"{"b": 1, "a": "#.repeat(500),
        "}".repeat(500)
    );
    let wide_id = format!(
        r#"{{"execute": "guest-ping", "id": {{{}}}}}"#,
        (0..2000)
            .map(|i| format!(r#""k{i}": [{i}, {{"y": 1, "x": 2}}]"#))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let inputs = [deep_array, deep_id, wide_id, "\u{1}".repeat(10_000)];
    // Debug builds use several times the stack of release builds; the
    // core's frames must still fit in 32 KiB here (16 KiB is too little for a debug build).
    let handle = std::thread::Builder::new()
        .stack_size(32 << 10)
        .spawn(move || {
            let mut agent = Agent::new(vec![0u8; 1 << 20], CoreCommands::new(), Policy::new());
            let mut out = Vec::new();
            for input in &inputs {
                out.clear();
                agent.feed(input.as_bytes(), &mut out).unwrap();
                assert!(out.ends_with(b"\n"));
            }
        })
        .unwrap();
    handle.join().expect("feed overflowed a 32 KiB stack");
}
