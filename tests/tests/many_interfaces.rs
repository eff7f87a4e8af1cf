//! `guest-network-get-interfaces` with 1000 interfaces: a network
//! namespace of its own (`ip netns add`, deleted by a guard even when the
//! test fails) with 1000 virtual links, each up with an IPv4 address, a
//! global IPv6 address and the kernel's link-local one, and `lo` up.
//! Debian's qemu-ga and our guest-agent run inside it (`ip netns exec`) on
//! unix sockets, which the test reaches from outside (a socket bound to a
//! path is not confined to a network namespace). Prints each agent's time
//! and reply size side by side; asserts that our answer is qemu-ga's text,
//! byte for byte, once the statistics (counters that move) are replaced by
//! a placeholder, as `differential_commands.rs` compares interfaces.
//!
//! The links are `dummy` ones where the kernel has that driver; kernels
//! built without it (and without modules, such as this project's test
//! machine's) get `ifb` links, which are as inert.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`
//! (`scripts/e2e-setup.sh` installs it):
//!
//! ```text
//! cargo test -p tests --test many_interfaces -- --nocapture
//! cargo test -p tests --release --test many_interfaces -- --nocapture  # times of the release build
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tests::LinePeer;

const LINKS: usize = 1000;

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("run `ip` (Debian package iproute2: bash scripts/e2e-setup.sh)")
}

fn ok_or_panic(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("qga-ifaces-{}", std::process::id());
        let out = ip(&["netns", "add", &name]);
        assert!(
            out.status.success(),
            "`ip netns add {name}` failed ({}): this test needs root (CAP_SYS_ADMIN to \
             create the namespace and mount it under /run/netns, CAP_NET_ADMIN for its links)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = ip(&["netns", "delete", &self.0]);
        if !out.status.success() {
            eprintln!(
                "could not delete network namespace {}: {}",
                self.0,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// An agent inside the namespace, on a unix socket; SIGKILLed on drop
/// (README difference 10).
fn start_agent(ns: &Netns, bin: &Path, dir: &Path) -> LinePeer {
    std::fs::create_dir_all(dir).unwrap();
    let socket = dir.join("sock");
    // `ip netns exec` execs the agent: the child is the agent.
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(bin)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent");
    LinePeer::connect(child, &socket, bin, Duration::from_secs(120))
}

/// One request, its response line (without the newline) and the time
/// from sending to the end of the line.
fn timed_call(agent: &mut LinePeer, request: &str) -> (String, Duration) {
    let t = Instant::now();
    let line = agent.call(request);
    (line, t.elapsed())
}

/// The end of the JSON value starting at `text[start..]` (as in
/// `differential_commands.rs`).
fn value_end(text: &str, start: usize) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            match b {
                b'\\' => i += 1,
                b'"' => {
                    in_str = false;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
        } else {
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return i,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                b',' if depth == 0 => return i,
                _ => {}
            }
        }
        i += 1;
    }
    i
}

/// Every `"statistics": {...}` value replaced by `"<statistics>"`.
fn mask_statistics(text: &str) -> String {
    let pattern = "\"statistics\": ";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(pattern) {
        let start = at + pattern.len();
        let end = value_end(rest, start);
        out.push_str(&rest[..start]);
        out.push_str("\"<statistics>\"");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `dummy` if the kernel has it, else `ifb`.
fn link_kind(ns: &Netns) -> &'static str {
    let probe = ip(&["-n", &ns.0, "link", "add", "qga-probe", "type", "dummy"]);
    if probe.status.success() {
        ok_or_panic(
            &ip(&["-n", &ns.0, "link", "del", "qga-probe"]),
            "deleting the probe link",
        );
        return "dummy";
    }
    eprintln!(
        "no dummy links here (ip: \"{}\"; the kernel has no dummy driver, built in or loadable); using ifb links",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    "ifb"
}

/// The number of addresses in the namespace (`ip -o addr` lines).
fn address_count(ns: &Netns) -> usize {
    let out = ip(&["-n", &ns.0, "-o", "addr", "show"]);
    ok_or_panic(&out, "ip addr show");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Why two parsed answers differ, interface by interface (at most 20).
fn describe_difference(theirs: &str, ours: &str) -> String {
    let parse = |t: &str| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(t).expect("JSON reply");
        v["return"].as_array().cloned().unwrap_or_default()
    };
    let (a, b) = (parse(theirs), parse(ours));
    let mut lines = vec![format!(
        "{} interfaces from qemu-ga, {} from ours",
        a.len(),
        b.len()
    )];
    let same_json = a == b;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if x != y {
            lines.push(format!("#{i}\n  qemu-ga: {x}\n  ours:    {y}"));
        }
        if lines.len() > 20 {
            break;
        }
    }
    if same_json {
        let at = theirs
            .bytes()
            .zip(ours.bytes())
            .position(|(x, y)| x != y)
            .unwrap_or(theirs.len().min(ours.len()));
        let from = at.saturating_sub(80);
        lines.push(format!(
            "equal as JSON, different text from byte {at}:\n  qemu-ga: {}\n  ours:    {}",
            &theirs[from..(at + 80).min(theirs.len())],
            &ours[from..(at + 80).min(ours.len())]
        ));
    }
    lines.join("\n")
}

#[test]
fn a_thousand_interfaces_against_qemu_ga() {
    let ns = Netns::new();
    let kind = link_kind(&ns);
    let mut batch = String::from("link set lo up\n");
    for i in 0..LINKS {
        batch.push_str(&format!(
            "link add d{i} type {kind}\nlink set d{i} up\n\
             addr add 10.{}.{}.1/24 dev d{i}\n\
             addr add fd00:0:0:{i:x}::1/64 dev d{i} nodad\n",
            i / 256,
            i % 256
        ));
    }
    let dir: PathBuf = tests::scratch_dir("many-interfaces");
    let batch_file = dir.join("links.batch");
    std::fs::write(&batch_file, batch).unwrap();
    let t = Instant::now();
    ok_or_panic(
        &ip(&["-n", &ns.0, "-batch", batch_file.to_str().unwrap()]),
        "ip -batch",
    );
    // The kernel's IPv6 link-local addresses come with `up`; wait until
    // the count is complete and still, so that both agents see the same.
    let want = 2 + 3 * LINKS; // lo's two, and three per link
    let deadline = Instant::now() + Duration::from_secs(30);
    while address_count(&ns) < want {
        assert!(Instant::now() < deadline, "addresses did not all appear");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(address_count(&ns), want);
    eprintln!(
        "{LINKS} {kind} links with {want} addresses set up in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let request = r#"{"execute": "guest-network-get-interfaces"}"#;
    let mut theirs = start_agent(&ns, &tests::qemu_ga_bin(), &dir.join("qemu-ga"));
    // The agent built as the test is: compare times with `--release`.
    let (bin, build) = if cfg!(debug_assertions) {
        (tests::guest_agent_bin(), "debug")
    } else {
        (tests::guest_agent_release_bin(), "release")
    };
    let mut ours = start_agent(&ns, bin, &dir.join("ours"));
    // Turns, three calls each; the first answers are compared.
    let (mut their_times, mut our_times) = (Vec::new(), Vec::new());
    let (mut their_text, mut our_text) = (String::new(), String::new());
    for turn in 0..3 {
        let (text, took) = timed_call(&mut theirs, request);
        their_times.push(took);
        if turn == 0 {
            their_text = text;
        }
        let (text, took) = timed_call(&mut ours, request);
        our_times.push(took);
        if turn == 0 {
            our_text = text;
        }
    }
    let (t_q, t_o) = (median(their_times), median(our_times));
    println!();
    println!(
        "guest-network-get-interfaces, {} interfaces ({LINKS} {kind} + lo), median of 3:",
        LINKS + 1
    );
    println!("{:<16}{:>12}{:>14}", "", "time, ms", "reply, bytes");
    println!(
        "{:<16}{:>12.2}{:>14}",
        "qemu-ga",
        t_q.as_secs_f64() * 1e3,
        their_text.len() + 1
    );
    println!("(guest-agent: its {build} build)");
    println!(
        "{:<16}{:>12.2}{:>14}",
        "guest-agent",
        t_o.as_secs_f64() * 1e3,
        our_text.len() + 1
    );
    println!(
        "{:<16}{:>12.2}{:>14.3}",
        "ours / qemu-ga",
        t_o.as_secs_f64() / t_q.as_secs_f64(),
        (our_text.len() + 1) as f64 / (their_text.len() + 1) as f64
    );

    // What the answer must contain.
    let v: serde_json::Value = serde_json::from_str(&our_text).expect("JSON reply");
    let list = v["return"]
        .as_array()
        .unwrap_or_else(|| panic!("{our_text:.300}"));
    assert_eq!(list.len(), LINKS + 1, "lo and {LINKS} links");
    for i in [0, LINKS / 2, LINKS - 1] {
        let name = format!("d{i}");
        let entry = list.iter().find(|e| e["name"] == name.as_str()).unwrap();
        let addrs: Vec<std::net::IpAddr> = entry["ip-addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip-address"].as_str().unwrap().parse().unwrap())
            .collect();
        let v4: std::net::IpAddr = format!("10.{}.{}.1", i / 256, i % 256).parse().unwrap();
        let v6: std::net::IpAddr = format!("fd00:0:0:{i:x}::1").parse().unwrap();
        assert!(
            addrs.contains(&v4) && addrs.contains(&v6) && addrs.len() == 3,
            "{entry}"
        );
    }

    println!(
        "unmasked texts {}",
        if their_text == our_text {
            "identical, statistics included"
        } else {
            "differ (compared without statistics below)"
        }
    );
    let (a, b) = (mask_statistics(&their_text), mask_statistics(&our_text));
    assert!(
        a == b,
        "our answer differs from qemu-ga's:\n{}",
        describe_difference(&a, &b)
    );
    drop((theirs, ours));
    let _ = std::fs::remove_dir_all(&dir);
}
