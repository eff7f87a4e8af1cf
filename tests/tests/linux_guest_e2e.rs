//! End to end in a Linux guest (issue 5, items 2 and 3): a Debian kernel
//! under QEMU (TCG), an initramfs with busybox, our static `guest-agent
//! -m virtio-serial` and Debian's `qemu-ga`, and the host talking to the
//! port `org.qemu.guest_agent.0` through QEMU's chardev socket with
//! agent-core's client.
//!
//! One boot per agent (about 5 s each under TCG), both tests running side
//! by side. Each checks the handshake, a round of real commands and the
//! stale-input scenarios of a transport without connection semantics
//! (PROTOCOL.md §1, §4): (a) a half-sent request left by an earlier client,
//! (b) an unread reply left by an earlier client. Ours is also checked for
//! (c) many host reconnects (no fd leaked, peak RSS bounded), and (d)
//! `guest-shutdown` ending QEMU with status 0. qemu-ga, the reference,
//! gets the same (a), (b), handshake and commands. Both agents' CPU time
//! and wake-ups with the host away are printed, never asserted (qemu-ga
//! wakes every 100 ms).
//! Both get (e) a libvirt-style plain guest-sync after a killed client's
//! half request (answered by ours: asserted; by qemu-ga: printed), (f) a
//! close and immediate reopen after half a request, cut inside a string or
//! between two members, then plain guest-syncs as libvirt sends them
//! (printed: how often the first and the second are answered; no agent
//! can see so quick a close, tests/README.md difference 3), (g) wake-ups
//! per minute with the host
//! away and the first answer after it returns, printed side by side.
//! qemu-ga alone keeps (a): ours resets its parser on the host's close.
//!
//! Run with `--nocapture` to see the figures; `QGA_E2E_AGENT=<path>` puts
//! that static binary in the guest instead of building one. Needs `bash
//! scripts/e2e-setup.sh` (QEMU, busybox-static, cpio, qemu-guest-agent,
//! Debian's kernel in `target/e2e/kernel`, the musl target).

use std::time::{Duration, Instant};

use serde_json::Value;
use tests::linux_guest::{assets, AgentKind, CpuSample, Guest, HostConn, SideBySide};

/// First answer after QEMU starts (about 5 s; two guests share the host).
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Resend the handshake this often while the guest boots. QEMU holds what
/// the host sends until the agent opens the port, so every attempt is
/// answered (they are skipped by id); resending only guards against a lost
/// handshake.
const SYNC_RETRY: Duration = Duration::from_secs(1);
/// How long a connect to the chardev socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to listen for output that must not come.
const QUIET: Duration = Duration::from_millis(1000);
/// Host close/reopen cycles in (c).
const CYCLES: usize = 1000;
/// The host-absent period over which the agent's CPU time is measured.
const ABSENT: Duration = Duration::from_secs(15);
/// Tries of the fast close-and-reopen scenario (f), for each of its two
/// half requests.
const FAST_TRIES: usize = 8;
/// How long (f) waits for the answer to a plain guest-sync (under a
/// millisecond when it comes).
const FAST_WAIT: Duration = Duration::from_millis(1500);

/// The figures both tests print side by side.
static FIGURES: SideBySide = SideBySide::new();

/// A fresh handshake id.
fn fresh_id() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    (nanos as i64 & 0x3fff_ffff_ffff) ^ (i64::from(std::process::id()) << 46)
}

/// Lines of raw agent output, shown readably.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\u{fffd}', "\\xff")
}

/// The 0xFF sentinel and `{"return": id}` line of guest-sync-delimited.
fn sentinel_reply(id: i64) -> Vec<u8> {
    let mut v = vec![0xff];
    v.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
    v
}

/// Boot a guest running `kind` and complete the first handshake; returns
/// the guest, the connection and the time from QEMU's start to the first
/// answer.
fn boot_and_sync(kind: AgentKind) -> (Guest, HostConn, Duration) {
    let mut guest = Guest::boot(kind);
    let mut conn = guest.connect(CONNECT_TIMEOUT);
    let first = fresh_id();
    let id = conn.sync(first, SYNC_RETRY, BOOT_TIMEOUT);
    let boot = guest.started.elapsed();
    // The reply (after the 0xFF sentinel) carried exactly our id.
    let got = conn.received();
    assert!(
        got.ends_with(&sentinel_reply(id)),
        "sync reply: {}",
        show(got)
    );
    let replies = got.iter().filter(|&&b| b == 0xff).count();
    println!(
        "{}: first handshake after {} attempts, {replies} sentinel replies",
        kind.name(),
        id - first + 1
    );
    (guest, conn, boot)
}

/// guest-info's command names.
fn supported_commands(conn: &mut HostConn) -> Vec<String> {
    let info: Value = serde_json::from_str(&conn.call_ok("guest-info", None)).expect("json");
    assert!(info["version"].is_string(), "guest-info: {info}");
    info["supported_commands"]
        .as_array()
        .expect("supported_commands")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

/// The core commands, on both agents.
fn check_core_commands(conn: &mut HostConn, commands: &[String]) {
    for c in [
        "guest-info",
        "guest-ping",
        "guest-sync",
        "guest-sync-delimited",
    ] {
        assert!(commands.iter().any(|n| n == c), "{c} not listed");
    }
    assert_eq!(conn.call_ok("guest-ping", None), "{}");
    assert_eq!(
        conn.call_ok("guest-sync", Some(r#"{"id": 424242}"#)),
        "424242"
    );
    assert_eq!(
        conn.call_ok("guest-sync", Some(r#"{"id": -9223372036854775808}"#)),
        "-9223372036854775808"
    );
    let (answer, id) = conn.call("guest-nonexistent", None);
    assert_eq!(id, None);
    let (class, desc) = answer.expect_err("unknown command");
    assert_eq!(class, "CommandNotFound", "{desc}");
}

/// `n` guest-ping round trips: (mean, median).
fn ping_round_trips(conn: &mut HostConn, n: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(conn.call_ok("guest-ping", None), "{}");
            t.elapsed()
        })
        .collect();
    let mean = times.iter().sum::<Duration>() / n as u32;
    times.sort();
    (mean, times[n / 2])
}

/// The OS commands, each only if guest-info lists it: another engineer is
/// adding them to agent-linux, so our agent may not have them yet
/// (qemu-ga has them all). Returns the names checked.
fn check_os_commands(conn: &mut HostConn, commands: &[String]) -> Vec<&'static str> {
    let has = |c: &str| commands.iter().any(|n| n == c);
    let mut checked = Vec::new();
    if has("guest-get-osinfo") {
        let os: Value = serde_json::from_str(&conn.call_ok("guest-get-osinfo", None)).unwrap();
        assert_eq!(
            os["kernel-release"].as_str(),
            Some(assets().kernel_version.as_str()),
            "guest-get-osinfo: {os}"
        );
        assert_eq!(os["machine"].as_str(), Some("x86_64"), "{os}");
        checked.push("guest-get-osinfo");
    }
    if has("guest-network-get-interfaces") {
        let ifs: Value =
            serde_json::from_str(&conn.call_ok("guest-network-get-interfaces", None)).unwrap();
        let names: Vec<&str> = ifs
            .as_array()
            .expect("an array")
            .iter()
            .filter_map(|i| i["name"].as_str())
            .collect();
        assert!(names.contains(&"lo"), "guest-network-get-interfaces: {ifs}");
        checked.push("guest-network-get-interfaces");
    }
    let file_commands = [
        "guest-file-open",
        "guest-file-write",
        "guest-file-read",
        "guest-file-close",
    ];
    if file_commands.iter().all(|c| has(c)) {
        // "e2e round trip\n"
        let b64 = "ZTJlIHJvdW5kIHRyaXAK";
        let open = |conn: &mut HostConn, mode: &str| -> i64 {
            let args = format!(r#"{{"path": "/tmp/e2e-file.txt", "mode": "{mode}"}}"#);
            conn.call_ok("guest-file-open", Some(&args))
                .parse()
                .expect("a handle")
        };
        let h = open(conn, "w");
        let w: Value = serde_json::from_str(&conn.call_ok(
            "guest-file-write",
            Some(&format!(r#"{{"handle": {h}, "buf-b64": "{b64}"}}"#)),
        ))
        .unwrap();
        assert_eq!(w["count"], 15, "guest-file-write: {w}");
        let close = format!(r#"{{"handle": {h}}}"#);
        assert_eq!(conn.call_ok("guest-file-close", Some(&close)), "{}");
        let h = open(conn, "r");
        let r: Value = serde_json::from_str(&conn.call_ok(
            "guest-file-read",
            Some(&format!(r#"{{"handle": {h}, "count": 4096}}"#)),
        ))
        .unwrap();
        assert_eq!(r["buf-b64"], b64, "guest-file-read: {r}");
        assert_eq!(r["count"], 15, "{r}");
        assert_eq!(r["eof"], true, "{r}");
        let close = format!(r#"{{"handle": {h}}}"#);
        assert_eq!(conn.call_ok("guest-file-close", Some(&close)), "{}");
        checked.push("guest-file-*");
    }
    if has("guest-exec") && has("guest-exec-status") {
        let started: Value = serde_json::from_str(&conn.call_ok(
            "guest-exec",
            Some(r#"{"path": "/bin/echo", "arg": ["e2e", "exec"], "capture-output": true}"#),
        ))
        .unwrap();
        let pid = started["pid"].as_i64().expect("a pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            let s: Value = serde_json::from_str(
                &conn.call_ok("guest-exec-status", Some(&format!(r#"{{"pid": {pid}}}"#))),
            )
            .unwrap();
            if s["exited"] == true {
                break s;
            }
            assert!(Instant::now() < deadline, "guest-exec never exited: {s}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status["exitcode"], 0, "guest-exec-status: {status}");
        // "e2e exec\n"
        assert_eq!(status["out-data"], "ZTJlIGV4ZWMK", "{status}");
        checked.push("guest-exec");
    }
    checked
}

/// Split agent output into lines (each response ends with a newline).
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// (a) A first client leaves `{"execute":"guest-pi` and disconnects; the
/// second client's plain request draws errors and no return; its reset
/// byte + guest-sync-delimited then draws the reset byte's parse error and
/// the 0xFF-prefixed reply. Returns what the second client received.
fn partial_request_left_behind(guest: &mut Guest) -> Vec<u8> {
    let mut first = guest.connect(CONNECT_TIMEOUT);
    first.send(br#"{"execute":"guest-pi"#);
    // Let the bytes reach the agent before the host end closes.
    first.receive_for(Duration::from_millis(300));
    assert_eq!(first.received(), b"", "a partial request draws nothing");
    drop(first);

    let mut second = guest.connect(CONNECT_TIMEOUT);
    second.send(b"{\"execute\": \"guest-ping\"}\n");
    second.receive_for(QUIET);
    let plain = second.received().to_vec();
    assert!(
        !show(&plain).contains("\"return\""),
        "the plain request succeeded despite the stale partial input: {}",
        show(&plain)
    );
    assert!(
        !plain.is_empty() && lines(&plain).iter().all(|l| l.starts_with(b"{\"error\": ")),
        "expected errors only: {}",
        show(&plain)
    );
    second.clear_received();
    let id = fresh_id();
    let synced = second.sync(id, Duration::from_secs(10), Duration::from_secs(10));
    assert_eq!(synced, id, "the first handshake must work");
    let sync = second.received().to_vec();
    let at = sync.iter().rposition(|&b| b == 0xff).expect("a sentinel");
    let (before, after) = sync.split_at(at);
    // First half: the reset byte's parse error (and nothing else).
    assert!(
        !before.is_empty()
            && lines(before).iter().all(|l| l.starts_with(
                b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "
            )),
        "the reset byte must draw a parse error: {}",
        show(&sync)
    );
    // Second half: the sentinel, then the reply with our id.
    assert_eq!(after, sentinel_reply(id), "sync reply: {}", show(&sync));
    assert_eq!(second.call_ok("guest-ping", None), "{}");
    // The whole transcript, with the handshake id made comparable.
    let mut all = plain;
    all.extend_from_slice(&sync);
    let id = id.to_string();
    show(&all).replace(&id, "<id>").into_bytes()
}

/// (b) A first client sends guest-ping and leaves without reading; the
/// second client may receive that stale reply unprompted, and its
/// handshake skips it. Returns whether the stale reply arrived.
fn unread_reply_left_behind(guest: &mut Guest) -> (bool, Vec<u8>) {
    let mut first = guest.connect(CONNECT_TIMEOUT);
    first.send(b"{\"execute\": \"guest-ping\"}\n");
    drop(first);

    let mut second = guest.connect(CONNECT_TIMEOUT);
    // Unprompted: whatever the channel holds for us.
    let stale = second.receive_until(QUIET, |r| r.ends_with(b"\n"));
    let unprompted = second.received().to_vec();
    if stale {
        assert_eq!(
            unprompted,
            b"{\"return\": {}}\n",
            "unprompted: {}",
            show(&unprompted)
        );
    } else {
        assert_eq!(unprompted, b"", "unprompted: {}", show(&unprompted));
    }
    // The handshake skips it: the client is fed those bytes first.
    let id = fresh_id();
    let synced = second.sync(id, Duration::from_secs(10), Duration::from_secs(10));
    assert_eq!(synced, id);
    assert_eq!(second.call_ok("guest-ping", None), "{}");
    (stale, second.received().to_vec())
}

/// CPU use of the agent over a host-absent period.
#[derive(Debug)]
struct Idle {
    /// Guest seconds between the two samples.
    seconds: f64,
    /// CPU time, ms (schedstat).
    cpu_ms: f64,
    /// utime + stime ticks (1/100 s).
    ticks: u64,
    /// Times scheduled (≈ wake-ups).
    wakeups: u64,
}

/// Measure the agent's CPU with no host connected: a sample printed after
/// the host left, [`ABSENT`] of waiting, a sample printed after that.
fn host_absent_cpu(guest: &mut Guest) -> Idle {
    let seen = guest.cpu_samples().len();
    let (_, a) = guest.cpu_sample_after(seen, Duration::from_secs(10));
    std::thread::sleep(ABSENT);
    let seen = guest.cpu_samples().len();
    let (_, b) = guest.cpu_sample_after(seen, Duration::from_secs(10));
    idle_between(&a, &b)
}

fn idle_between(a: &CpuSample, b: &CpuSample) -> Idle {
    Idle {
        seconds: b.uptime - a.uptime,
        cpu_ms: (b.run_ns - a.run_ns) as f64 / 1e6,
        ticks: b.ticks - a.ticks,
        wakeups: b.slices - a.slices,
    }
}

/// Time from connecting to the first answer of a handshake.
fn reconnect_sync(guest: &mut Guest) -> (HostConn, Duration) {
    let t = Instant::now();
    let mut conn = guest.connect(CONNECT_TIMEOUT);
    conn.sync(fresh_id(), Duration::from_secs(10), Duration::from_secs(10));
    (conn, t.elapsed())
}

/// (c) [`CYCLES`] host closes and reopens: some cycles leave nothing, some
/// a half request, most a full handshake + ping. Returns the time taken,
/// the part of it the host stayed away on purpose, and the slowest cycle.
fn close_reopen_cycles(guest: &mut Guest) -> (Duration, Duration, Duration) {
    /// Names the cycle a failure happened in.
    struct Progress(usize);
    impl Drop for Progress {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("failed in close/reopen cycle {}", self.0);
            }
        }
    }
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut gaps = Duration::ZERO;
    let mut progress = Progress(0);
    for i in 0..CYCLES {
        progress.0 = i;
        if i % 100 == 99 {
            // Now and then the host stays away long enough for the agent's
            // back-off to grow.
            let gap = Duration::from_millis(50 * (i as u64 / 100 + 1));
            std::thread::sleep(gap);
            gaps += gap;
        }
        let c = Instant::now();
        let mut conn = guest.connect(CONNECT_TIMEOUT);
        match i % 4 {
            0 => {}
            1 => conn.send(br#"{"execute": "guest-sy"#),
            _ => {
                conn.sync(fresh_id(), Duration::from_secs(10), Duration::from_secs(10));
                assert_eq!(conn.call_ok("guest-ping", None), "{}", "cycle {i}");
            }
        }
        drop(conn);
        slowest = slowest.max(c.elapsed());
    }
    (t.elapsed(), gaps, slowest)
}

/// A libvirt-style request: plain guest-sync, no 0xFF.
fn plain_sync(id: i64) -> Vec<u8> {
    format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{id}}}}}\n").into_bytes()
}

/// (e) The stale half request, libvirt's way: client 1 sends
/// `{"execute":"guest-pi` and disconnects; after a pause, client 2 sends
/// a plain guest-sync (no 0xFF). Returns whether client 2 got its answer,
/// and what it received.
fn stale_half_request_plain_sync(guest: &mut Guest) -> (bool, Vec<u8>) {
    let mut first = guest.connect(CONNECT_TIMEOUT);
    first.send(br#"{"execute":"guest-pi"#);
    first.receive_for(Duration::from_millis(300));
    assert_eq!(first.received(), b"", "a partial request draws nothing");
    drop(first);
    // The host stays away a moment, as a killed client's successor would.
    std::thread::sleep(Duration::from_millis(300));
    plain_sync_answered(guest)
}

/// Connect, send a plain guest-sync and wait (3 s at most) for its answer.
fn plain_sync_answered(guest: &mut Guest) -> (bool, Vec<u8>) {
    let mut second = guest.connect(CONNECT_TIMEOUT);
    let id = fresh_id();
    second.send(&plain_sync(id));
    let want = format!("{{\"return\": {id}}}\n");
    let answered = second.receive_until(Duration::from_secs(3), |r| show(r).contains(&want));
    let got = show(second.received()).replace(&id.to_string(), "<id>");
    // Leave the channel clean for what follows (0xFF + delimited sync).
    second.sync(fresh_id(), Duration::from_secs(10), Duration::from_secs(10));
    (answered, got.into_bytes())
}

/// How often the plain guest-syncs of (f) were answered, for one half
/// request.
struct FastReopen {
    /// Answered at the first plain guest-sync.
    first: usize,
    /// Answered at the second (what libvirt sends after the first timed
    /// out), when the first was not.
    second: usize,
}

impl FastReopen {
    /// `first a/n, second b/m` for the side-by-side table.
    fn show(&self) -> String {
        format!(
            "1st {}/{FAST_TRIES}, 2nd {}/{}",
            self.first,
            self.second,
            FAST_TRIES - self.first
        )
    }
}

/// A plain guest-sync on `conn`: whether its answer came within
/// [`FAST_WAIT`].
fn plain_sync_on(conn: &mut HostConn) -> bool {
    let id = fresh_id();
    conn.send(&plain_sync(id));
    let want = format!("{{\"return\": {id}}}\n");
    conn.receive_until(FAST_WAIT, |r| show(r).contains(&want))
}

/// (f) A close and reopen at once: connect, send `half`, close, reconnect
/// immediately and send a plain guest-sync, and another if the first is
/// not answered (libvirt re-sends its guest-sync after a time-out); then
/// the reset byte and guest-sync-delimited put the channel right again.
fn fast_reopen_half_request(guest: &mut Guest, half: &[u8]) -> FastReopen {
    let mut counts = FastReopen {
        first: 0,
        second: 0,
    };
    for _ in 0..FAST_TRIES {
        let mut first = guest.connect(CONNECT_TIMEOUT);
        first.send(half);
        drop(first);
        let mut second = guest.connect(CONNECT_TIMEOUT);
        if plain_sync_on(&mut second) {
            counts.first += 1;
        } else if plain_sync_on(&mut second) {
            counts.second += 1;
        }
        second.sync(fresh_id(), Duration::from_secs(10), Duration::from_secs(10));
    }
    counts
}

/// (f) for both half requests: (cut inside a string, cut between members).
fn fast_reopen(guest: &mut Guest) -> (FastReopen, FastReopen) {
    let in_string = fast_reopen_half_request(guest, br#"{"execute":"guest-pi"#);
    let between = fast_reopen_half_request(guest, br#"{"execute":"guest-ping""#);
    println!(
        "{}: (f) close+reopen at once after half a request, plain guest-sync answered: cut in \
         a string {}; cut between members {}",
        guest.agent.name(),
        in_string.show(),
        between.show()
    );
    (in_string, between)
}

/// (g) First answer after the host returns: a plain guest-sync on a new
/// connection, timed from the connect to the answer.
fn first_answer_after_absence(guest: &mut Guest) -> Duration {
    let t = Instant::now();
    let mut conn = guest.connect(CONNECT_TIMEOUT);
    let id = fresh_id();
    conn.send(&plain_sync(id));
    let want = format!("{{\"return\": {id}}}\n");
    assert!(
        conn.receive_until(Duration::from_secs(10), |r| show(r).contains(&want)),
        "no answer after the host returned: {}",
        show(conn.received())
    );
    t.elapsed()
}

/// Wake-ups per minute over a host-absent period.
fn per_minute(idle: &Idle) -> f64 {
    idle.wakeups as f64 * 60.0 / idle.seconds
}

#[test]
fn linux_guest_e2e_guest_agent() {
    let total = Instant::now();
    let (mut guest, mut conn, boot) = boot_and_sync(AgentKind::Ours);
    let commands = supported_commands(&mut conn);
    check_core_commands(&mut conn, &commands);
    let (mean, median) = ping_round_trips(&mut conn, 200);
    let os = check_os_commands(&mut conn, &commands);
    drop(conn);

    // (e) libvirt after a killed client: answered, no 0xFF needed.
    let (answered, e) = stale_half_request_plain_sync(&mut guest);
    println!(
        "ours: (e) plain guest-sync after a stale half request: answered {answered}; received {}",
        show(&e).trim_end()
    );
    assert!(
        answered,
        "the host's close must reset the parser: {}",
        show(&e)
    );
    let (fast_string, fast_member) = fast_reopen(&mut guest);
    let (stale, b) = unread_reply_left_behind(&mut guest);

    // (c) Many host closes and reopens.
    let seen = guest.cpu_samples().len();
    let (_, before) = guest.cpu_sample_after(seen, Duration::from_secs(10));
    let (cycles, gaps, slowest) = close_reopen_cycles(&mut guest);
    let (mut conn, _) = reconnect_sync(&mut guest);
    assert!(supported_commands(&mut conn).contains(&"guest-ping".to_string()));
    drop(conn);
    let seen = guest.cpu_samples().len();
    let (_, after) = guest.cpu_sample_after(seen, Duration::from_secs(10));
    let idle = host_absent_cpu(&mut guest);
    let back = first_answer_after_absence(&mut guest);
    let (mut conn, _) = reconnect_sync(&mut guest);
    assert_eq!(conn.call_ok("guest-ping", None), "{}");

    // (d) guest-shutdown, or the init's poweroff when the agent has none.
    let via = if commands.iter().any(|c| c == "guest-shutdown") {
        conn.send(b"{\"execute\": \"guest-shutdown\"}\n");
        "guest-shutdown"
    } else {
        guest.console_line("poweroff");
        "console poweroff"
    };
    drop(conn);
    let status = guest.wait_exit(Duration::from_secs(30));

    println!("ours: boot to first answer {boot:.2?}");
    println!("ours: guest-ping round trip mean {mean:.2?}, median {median:.2?}");
    println!(
        "ours: OS commands checked: {os:?} (of {} listed)",
        commands.len()
    );
    println!(
        "ours: (b) stale reply delivered to the next client: {stale}; it received {}",
        show(&b).trim_end()
    );
    println!(
        "ours: (c) {CYCLES} host close/reopen cycles in {cycles:.2?} (of which {gaps:.2?} host \
         away on purpose), slowest {slowest:.2?}; agent fds {} -> {}, peak RSS {} -> {} KiB",
        before.fds, after.fds, before.hwm_kib, after.hwm_kib
    );
    println!(
        "ours: host away {:.2} s: cpu {:.3} ms, {} ticks, {} wake-ups ({:.1}/min); first answer \
         after it {back:.2?}",
        idle.seconds,
        idle.cpu_ms,
        idle.ticks,
        idle.wakeups,
        per_minute(&idle)
    );
    FIGURES.record(
        AgentKind::Ours,
        vec![
            (
                "(e) plain sync after stale half request answered",
                answered.to_string(),
            ),
            (
                "(f) fast reopen, half cut in a string: syncs answered",
                fast_string.show(),
            ),
            (
                "(f) fast reopen, half cut between members: answered",
                fast_member.show(),
            ),
            (
                "(g) wake-ups per minute, host away",
                format!("{:.1}", per_minute(&idle)),
            ),
            (
                "(g) first answer after the host returns",
                format!("{back:.2?}"),
            ),
        ],
    );
    println!(
        "ours: (d) {via}: QEMU exited with {status}; total {:.2?}",
        total.elapsed()
    );
    assert!(status.success(), "QEMU exit status after {via}: {status}");
    // The close/reopen cycles leak nothing.
    assert_eq!(after.fds, before.fds, "fds after {CYCLES} cycles");
    assert!(
        after.hwm_kib < before.hwm_kib + 512,
        "peak RSS grew over {CYCLES} cycles: {before:?} -> {after:?}"
    );
    // Waiting on the driver's signal, ours should show no wake-ups with
    // the host away (qemu-ga makes ~600 a minute): printed above, never
    // asserted (figures are for benchmarks; tests assert behaviour).
}

#[test]
fn linux_guest_e2e_qemu_ga() {
    let total = Instant::now();
    let (mut guest, mut conn, boot) = boot_and_sync(AgentKind::QemuGa);
    let commands = supported_commands(&mut conn);
    check_core_commands(&mut conn, &commands);
    let (mean, median) = ping_round_trips(&mut conn, 200);
    let os = check_os_commands(&mut conn, &commands);
    drop(conn);

    let a = partial_request_left_behind(&mut guest);
    println!(
        "qemu-ga: (a) second client received:\n{}",
        show(&a).trim_end()
    );
    let (answered, e) = stale_half_request_plain_sync(&mut guest);
    println!(
        "qemu-ga: (e) plain guest-sync after a stale half request: answered {answered}; received {}",
        show(&e).trim_end()
    );
    let (fast_string, fast_member) = fast_reopen(&mut guest);
    let (stale, b) = unread_reply_left_behind(&mut guest);
    let (cycles, gaps, slowest) = close_reopen_cycles(&mut guest);
    let idle = host_absent_cpu(&mut guest);
    let back = first_answer_after_absence(&mut guest);
    let (mut conn, _) = reconnect_sync(&mut guest);
    assert_eq!(conn.call_ok("guest-ping", None), "{}");
    conn.send(b"{\"execute\": \"guest-shutdown\"}\n");
    drop(conn);
    let status = guest.wait_exit(Duration::from_secs(30));

    println!("qemu-ga: boot to first answer {boot:.2?}");
    println!("qemu-ga: guest-ping round trip mean {mean:.2?}, median {median:.2?}");
    println!(
        "qemu-ga: OS commands checked: {os:?} (of {} listed)",
        commands.len()
    );
    println!(
        "qemu-ga: (b) stale reply delivered to the next client: {stale}; it received {}",
        show(&b).trim_end()
    );
    println!(
        "qemu-ga: (c) {CYCLES} host close/reopen cycles in {cycles:.2?} (of which {gaps:.2?} host \
         away on purpose), slowest {slowest:.2?}"
    );
    println!(
        "qemu-ga: host away {:.2} s: cpu {:.3} ms, {} ticks, {} wake-ups ({:.1}/min); first \
         answer after it {back:.2?}",
        idle.seconds,
        idle.cpu_ms,
        idle.ticks,
        idle.wakeups,
        per_minute(&idle)
    );
    FIGURES.record(
        AgentKind::QemuGa,
        vec![
            (
                "(e) plain sync after stale half request answered",
                answered.to_string(),
            ),
            (
                "(f) fast reopen, half cut in a string: syncs answered",
                fast_string.show(),
            ),
            (
                "(f) fast reopen, half cut between members: answered",
                fast_member.show(),
            ),
            (
                "(g) wake-ups per minute, host away",
                format!("{:.1}", per_minute(&idle)),
            ),
            (
                "(g) first answer after the host returns",
                format!("{back:.2?}"),
            ),
        ],
    );
    println!(
        "qemu-ga: guest-shutdown: QEMU exited with {status}; total {:.2?}",
        total.elapsed()
    );
    // qemu-ga's behaviour is printed, never asserted.
    eprintln!("qemu-ga delivers the unread reply to the next client (E2E-NOTES): {stale}");
    assert!(
        status.success(),
        "QEMU exit status after guest-shutdown: {status}"
    );
    // It polls every 100 ms while the host is away: printed, not asserted.
    eprintln!("qemu-ga while the host is away: {idle:?}");
}
