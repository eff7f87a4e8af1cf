//! Byte-for-byte agreement with Debian's qemu-ga 7.2 on a recorded corpus
//! (`tests/fixtures/qemu-ga-7.2.jsonl`, made by `record_qemu_ga.py`
//! against the real agent): lexical errors and recovery, parser and
//! envelope errors, id echo, member order, limits, chunking.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs
)]

use agent_core::{Agent, CoreCommands, Policy};

const CORPUS: &str = include_str!("../../tests/fixtures/qemu-ga-7.2.jsonl");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Chunk sizes from a note's "[chunks: a,b,c]" part, if any.
fn chunks(note: &str) -> Option<Vec<usize>> {
    let start = note.find("[chunks: ")? + "[chunks: ".len();
    let end = start + note[start..].find(']')?;
    note[start..end]
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect()
}

#[test]
fn agrees_with_qemu_ga_7_2() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for line in CORPUS.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = case["name"].as_str().unwrap();
        let input = unhex(case["input_hex"].as_str().unwrap());
        let expect = unhex(case["output_hex"].as_str().unwrap());
        let note = case["note"].as_str().unwrap_or("");
        let mut agent = Agent::new(vec![0u8; 1 << 20], CoreCommands::new(), Policy::new());
        let mut out = Vec::new();
        match chunks(note) {
            Some(sizes) if sizes.iter().sum::<usize>() == input.len() => {
                let mut rest = &input[..];
                for n in sizes {
                    let (piece, tail) = rest.split_at(n);
                    agent.feed(piece, &mut out).unwrap();
                    rest = tail;
                }
            }
            _ => {
                agent.feed(&input, &mut out).unwrap();
            }
        }
        cases += 1;
        if out != expect {
            failures.push(format!(
                "{name}:\n  input:  {}\n  qemu-ga: {}\n  ours:    {}",
                String::from_utf8_lossy(&input).escape_debug(),
                String::from_utf8_lossy(&expect).escape_debug(),
                String::from_utf8_lossy(&out).escape_debug()
            ));
        }
    }
    assert!(cases >= 200, "corpus has only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
