//! JSON conformance: agent-core's verdict on every generated case
//! (`tests::conformance`, JSONTestSuite's y/n/i categories) is the one
//! QEMU's rules give, and on RFC 8259 text it agrees with `serde_json`.
//! The implementation-defined cases, and what each parser does with them,
//! are printed; `tests/README.md` lists the deliberate differences.

use agent_core::{Agent, CoreCommands, Policy};
use tests::conformance::{cases, Case, Category};

/// The verdict agent-core gives: the case's request fed to a bare core
/// agent with a 4 MiB buffer, the size `guest-agent` uses.
fn core_verdict(case: &Case) -> Option<bool> {
    let mut agent = Agent::new(vec![0u8; 4 << 20], CoreCommands::new(), Policy::new());
    let mut out = Vec::new();
    agent
        .feed(&case.request(), &mut out)
        .expect("Vec never fails");
    Case::verdict(&out)
}

/// serde_json's verdict on the text alone, with its default limits.
fn serde_verdict(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text).is_ok()
}

#[test]
fn every_case_gets_qemus_verdict_and_rfc_text_matches_serde_json() {
    let cases = cases();
    let mut wrong = Vec::new();
    let mut disagree = Vec::new();
    let mut implementation_defined = Vec::new();
    let mut counts = [[0usize; 2]; 3];
    for case in &cases {
        let ours = core_verdict(case);
        let serde = serde_verdict(&case.text);
        if ours != Some(case.accept) {
            wrong.push(format!(
                "{}: ours {ours:?}, QEMU's rules {}",
                case.name, case.accept
            ));
        }
        let row = match case.category {
            Category::Y => 0,
            Category::N => 1,
            Category::I => 2,
        };
        counts[row][usize::from(case.accept)] += 1;
        match case.category {
            Category::Y | Category::N if serde != (case.category == Category::Y) => {
                disagree.push(format!("{}: serde_json {serde}", case.name));
            }
            Category::I => implementation_defined.push(format!(
                "  {:<40} ours {:<6} serde_json {:<6} {}",
                case.name,
                if case.accept { "accept" } else { "reject" },
                if serde { "accept" } else { "reject" },
                case.why
            )),
            _ => {}
        }
    }
    eprintln!(
        "{} cases: y {} (all accepted), n {} (all rejected), i {} ({} accepted, {} rejected)",
        cases.len(),
        counts[0][1],
        counts[1][0],
        counts[2][0] + counts[2][1],
        counts[2][1],
        counts[2][0]
    );
    eprintln!(
        "implementation-defined:\n{}",
        implementation_defined.join("\n")
    );
    assert!(
        wrong.is_empty(),
        "verdicts differ from QEMU's rules:\n{}",
        wrong.join("\n")
    );
    assert!(
        disagree.is_empty(),
        "y/n cases where serde_json differs:\n{}",
        disagree.join("\n")
    );
    // The generator really covers each category in both directions.
    assert_eq!(counts[0][0], 0);
    assert_eq!(counts[1][1], 0);
    assert!(counts[0][1] > 100 && counts[1][0] > 300 && counts[2][0] > 20 && counts[2][1] > 10);
}
