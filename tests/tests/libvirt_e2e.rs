//! libvirt as the agent's client (issue 16, items 3 and 4): a private
//! libvirtd (Debian's libvirt 9.0) runs a transient domain (TCG, q35,
//! direct kernel boot of the Linux test guest: Debian's kernel, the busybox
//! initramfs, a scratch ext4 disk at `/mnt/scratch`, a user `e2e` with a
//! home) whose agent is ours (one test) or Debian's qemu-ga 7.2 (the
//! other, the reference), and each test drives it with `virsh` exactly as a
//! user types it:
//!
//! 1. `virsh guestinfo`: the OS, host name, file systems, ...;
//! 2. `virsh domtime --sync` after the guest clock was set to 2000: the
//!    guest clock moves to the host's;
//! 3. `virsh set-user-sshkeys DOM e2e --file KEYS` with a file that ends
//!    in a newline (virsh then sends a last key `""`), then `--remove` and
//!    `--reset`: the guest's `authorized_keys` after each (its lines are
//!    checked, its bytes printed);
//! 4. `virsh domfsfreeze` / `domfsthaw`: a write to the frozen file system
//!    blocks until the thaw, and the guest is thawed after;
//! 5. a killed client: libvirtd is killed, another host program connects
//!    to the agent's channel, leaves half a request (cut inside a string,
//!    then cut between two members) and dies, libvirtd starts again, and
//!    `virsh domtime` is called until it works (at most three times):
//!    what libvirt exchanged and how many calls failed; then a client
//!    that knows the protocol (0xFF, guest-sync-delimited) clears the
//!    channel for what follows;
//! 6. `virsh shutdown --mode agent`: the domain ends.
//!
//! Ours is asserted at every step; qemu-ga's behaviour is printed (never
//! asserted), and a table compares both once both tests have run. When a
//! test fails, the libvirt log of everything libvirt exchanged with the
//! agent and the guest's console are printed. `cargo test libvirt_e2e`
//! runs both (with `-- --nocapture` to see the figures). Needs root and
//! `bash scripts/e2e-setup.sh`.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::libvirt::{Domain, Libvirtd, Ran, GUEST_HOSTNAME, GUEST_USER};
use tests::linux_guest::{assets, AgentKind, SideBySide};

/// From `virsh create` to the agent's first answer through libvirt
/// (about 6 s alone under TCG; generous for a shared, loaded machine).
const AGENT_UP_TIMEOUT: Duration = Duration::from_secs(300);
/// A console shell command.
const SHELL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a write to the frozen file system is watched for (it must
/// not complete).
const FROZEN_WATCH: Duration = Duration::from_secs(3);
/// How long the blocked write may take to complete after the thaw.
const THAW_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restarted libvirtd may take to reconnect to the agent.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the domain may take to end after `virsh shutdown`.
const END_TIMEOUT: Duration = Duration::from_secs(180);

/// The figures both tests print side by side.
static FIGURES: SideBySide = SideBySide::new();

/// The keys file of step 3: two keys, ending in a newline.
const KEYS: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eKeyOneE2eKeyOneE2eKeyOneE2eKeyOne1 one@e2e\n\
                    ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQE2eKeyTwoE2eKeyTwoE2eKeyTwo2 two@e2e\n";
/// The file given to `--remove`: the first key, ending in a newline.
const REMOVE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eKeyOneE2eKeyOneE2eKeyOneE2eKeyOne1 one@e2e\n";
/// The file given to `--reset`: one other key, ending in a newline.
const RESET: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eKeyThreeE2eKeyThreeE2eKeyThree3 three@e2e\n";

/// One agent's run: ours is asserted, qemu-ga is printed.
struct Run {
    kind: AgentKind,
    lv: Libvirtd,
    dom: Domain,
    figures: Vec<(&'static str, String)>,
    /// What qemu-ga did differently from what ours must do.
    differences: Vec<String>,
}

impl Run {
    /// The agent's name, for messages.
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Ours must satisfy `cond`; for qemu-ga a failure is recorded and
    /// printed.
    fn expect(&mut self, cond: bool, what: impl FnOnce() -> String) {
        if cond {
            return;
        }
        let what = what();
        assert!(self.kind != AgentKind::Ours, "ours: {what}");
        println!("qemu-ga: differs: {what}");
        self.differences.push(what);
    }

    /// `virsh ARGS...`, printed.
    fn virsh(&self, args: &[&str]) -> Ran {
        let ran = self.lv.virsh(args);
        println!(
            "{}: virsh {}: {}",
            self.name(),
            args.join(" "),
            ran.summary()
        );
        ran
    }

    /// A console shell command that must finish (for either agent: the
    /// console does not depend on the agent).
    fn shell(&mut self, command: &str) -> String {
        self.dom
            .console
            .shell(command, SHELL_TIMEOUT)
            .unwrap_or_else(|| panic!("console command did not finish: {command}"))
    }
}

/// Seconds since the epoch on the host.
fn host_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `key : value` lines of `virsh guestinfo`.
fn fields(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The value of `key` in `fields`.
fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Wait until libvirt gets an answer from the agent (`virsh
/// qemu-agent-command DOM '{"execute":"guest-ping"}'`); the time from
/// `virsh create`.
fn wait_for_agent(run: &Run) -> Duration {
    let deadline = Instant::now() + AGENT_UP_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        let ran = run.lv.virsh_within(
            &[
                "qemu-agent-command",
                &run.dom.name,
                r#"{"execute":"guest-ping"}"#,
            ],
            Duration::from_secs(60),
        );
        if ran.ok() {
            assert_eq!(ran.stdout.trim(), r#"{"return":{}}"#, "{}", ran.summary());
            return run.dom.created.elapsed();
        }
        last = Some(ran);
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "{}: no agent answer through libvirt within {AGENT_UP_TIMEOUT:?}; last: {}",
        run.name(),
        last.map(|r| r.summary()).unwrap_or_default()
    );
}

/// Step 1: `virsh guestinfo`.
fn guestinfo(run: &mut Run) {
    let ran = run.virsh(&["guestinfo", &run.dom.name.clone()]);
    let f = fields(&ran.stdout);
    for (k, v) in &f {
        println!("{}:   {k} = {v}", run.name());
    }
    run.expect(ran.ok(), || format!("virsh guestinfo: {}", ran.summary()));
    let kernel = assets().kernel_version.as_str();
    run.expect(field(&f, "os.kernel-release") == Some(kernel), || {
        format!("guestinfo os.kernel-release is not {kernel}")
    });
    run.expect(field(&f, "os.machine") == Some("x86_64"), || {
        "guestinfo os.machine is not x86_64".into()
    });
    run.expect(field(&f, "hostname") == Some(GUEST_HOSTNAME), || {
        format!("guestinfo hostname is not {GUEST_HOSTNAME}")
    });
    run.expect(field(&f, "user.count").is_some(), || {
        "guestinfo has no user.count".into()
    });
    run.expect(field(&f, "timezone.offset").is_some(), || {
        "guestinfo has no timezone".into()
    });
    let scratch = f
        .iter()
        .find(|(k, v)| k.starts_with("fs.") && k.ends_with(".mountpoint") && v == "/mnt/scratch")
        .map(|(k, _)| k.trim_end_matches(".mountpoint").to_string());
    run.expect(scratch.is_some(), || {
        "guestinfo lists no file system at /mnt/scratch".into()
    });
    if let Some(fs) = scratch {
        run.expect(field(&f, &format!("{fs}.fstype")) == Some("ext4"), || {
            "guestinfo: /mnt/scratch is not ext4".into()
        });
        run.expect(
            field(&f, &format!("{fs}.disk.0.alias")) == Some("vda"),
            || "guestinfo: /mnt/scratch is not on disk vda".into(),
        );
    }
    run.figures.push(("guestinfo fields", f.len().to_string()));
}

/// The guest's clock, seconds since the epoch (`date +%s`).
fn guest_clock(run: &mut Run) -> i64 {
    let out = run.shell("date +%s");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("date +%s printed {out:?}"))
}

/// `virsh domtime DOM`'s `Time: N`.
fn domtime(run: &Run) -> (Ran, Option<i64>) {
    let ran = run.virsh(&["domtime", &run.dom.name]);
    let t = ran
        .stdout
        .trim()
        .strip_prefix("Time:")
        .and_then(|t| t.trim().parse().ok());
    (ran, t)
}

/// Step 2: `virsh domtime --sync` sets the guest clock from the host's.
fn time_sync(run: &mut Run) {
    // 2000-01-01T00:00:00Z.
    run.shell("date -u -s '2000-01-01 00:00:00' >/dev/null");
    let before = guest_clock(run);
    assert!(
        before < 1_000_000_000,
        "the guest clock was not set back: {before}"
    );
    let (got, t) = domtime(run);
    run.expect(
        got.ok() && t.is_some_and(|t| (t - before).abs() < 600),
        || format!("virsh domtime before --sync: {}", got.summary()),
    );
    let sync = run.virsh(&["domtime", "--sync", &run.dom.name]);
    run.expect(sync.ok(), || {
        format!("virsh domtime --sync: {}", sync.summary())
    });
    let after = guest_clock(run);
    let host = host_now();
    println!(
        "{}: guest clock {before} before domtime --sync, {after} after (host {host})",
        run.name()
    );
    run.expect((after - host).abs() < 600, || {
        format!("the guest clock did not move to the host's: {after} against {host}")
    });
    let (got, t) = domtime(run);
    run.expect(
        got.ok() && t.is_some_and(|t| (t - host).abs() < 600),
        || format!("virsh domtime after --sync: {}", got.summary()),
    );
    run.figures.push((
        "domtime --sync: guest clock off the host's after, s",
        (after - host).to_string(),
    ));
}

/// The bytes of `path` in the guest (`od`), `None` if it cannot be read.
fn guest_file(run: &mut Run, path: &str) -> Option<Vec<u8>> {
    let out = run.shell(&format!("od -An -v -tx1 {path} && echo e2e-od-ok"));
    if !out.lines().any(|l| l == "e2e-od-ok") {
        return None;
    }
    Some(
        out.lines()
            .filter(|l| *l != "e2e-od-ok")
            .flat_map(|l| l.split_whitespace())
            .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|_| panic!("od printed {h:?}")))
            .collect(),
    )
}

/// Step 3: `virsh set-user-sshkeys` with files ending in a newline.
fn ssh_keys(run: &mut Run) {
    let dir = run.lv.dir.join("keys");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write a keys file");
        p.to_string_lossy().into_owned()
    };
    let (keys, remove, reset) = (
        file("keys", KEYS),
        file("remove", REMOVE),
        file("reset", RESET),
    );
    let authorized = format!("/home/{GUEST_USER}/.ssh/authorized_keys");
    let name = run.dom.name.clone();
    let key = |i: usize| KEYS.lines().nth(i).unwrap_or_default();
    let steps: [(&str, Vec<&str>, Vec<&str>); 3] = [
        (
            "set-user-sshkeys --file",
            vec!["set-user-sshkeys", &name, GUEST_USER, "--file", &keys],
            vec![key(0), key(1)],
        ),
        (
            "set-user-sshkeys --remove --file",
            vec![
                "set-user-sshkeys",
                &name,
                GUEST_USER,
                "--remove",
                "--file",
                &remove,
            ],
            vec![key(1)],
        ),
        (
            "set-user-sshkeys --reset --file",
            vec![
                "set-user-sshkeys",
                &name,
                GUEST_USER,
                "--reset",
                "--file",
                &reset,
            ],
            vec![RESET.trim_end()],
        ),
    ];
    for (label, args, want) in steps {
        let ran = run.virsh(&args);
        let got = guest_file(run, &authorized);
        let shown = got.as_deref().map_or("(no file)".to_string(), |b| {
            format!("{:?}", String::from_utf8_lossy(b))
        });
        println!("{}: {label}: authorized_keys = {shown}", run.name());
        run.expect(ran.ok(), || format!("virsh {label}: {}", ran.summary()));
        // The keys, one a line, and nothing else (no empty line from
        // virsh's last key ""); whether the file ends in a newline is
        // printed: both agents end it after an add and not after a
        // remove (qemu-ga's g_strjoinv, which ours matches byte for byte,
        // differential_ssh.rs).
        let lines: Option<Vec<String>> = got.as_deref().map(|b| {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::to_string)
                .collect()
        });
        run.expect(
            lines.as_deref().is_some_and(|l| l == want.as_slice()),
            || format!("after virsh {label}, authorized_keys is {shown}, not the lines {want:?}"),
        );
        let newline = got.as_deref().is_some_and(|b| b.ends_with(b"\n"));
        run.figures.push((
            label,
            format!(
                "{}, keys right: {}, ends in a newline: {newline}",
                if ran.ok() { "ok" } else { "failed" },
                lines.as_deref().is_some_and(|l| l == want.as_slice())
            ),
        ));
    }
    let listed = run.virsh(&["get-user-sshkeys", &name, GUEST_USER]);
    run.expect(listed.ok() && listed.stdout.trim() == RESET.trim(), || {
        format!("virsh get-user-sshkeys: {}", listed.summary())
    });
}

/// Step 4: `virsh domfsfreeze` / `domfsthaw`, with a write to the frozen
/// file system.
fn freeze_thaw(run: &mut Run) {
    let name = run.dom.name.clone();
    let status = |run: &Run| {
        run.virsh(&[
            "qemu-agent-command",
            &name,
            r#"{"execute":"guest-fsfreeze-status"}"#,
        ])
        .stdout
        .trim()
        .to_string()
    };
    let froze = run.virsh(&["domfsfreeze", &name]);
    run.expect(
        froze.ok() && froze.stdout.contains("Froze 1 filesystem(s)"),
        || format!("virsh domfsfreeze: {}", froze.summary()),
    );
    let frozen = status(run);
    run.expect(frozen == r#"{"return":"frozen"}"#, || {
        format!("fsfreeze-status after domfsfreeze: {frozen}")
    });
    // A write in the background: it must block until the thaw.
    run.dom.console.type_line(
        "e2e-run (echo frozen-write >/mnt/scratch/during-freeze; echo e2e-frozen-write-done) &",
    );
    let done = |l: &str| l == "e2e-frozen-write-done";
    let early = run.dom.console.wait_line(FROZEN_WATCH, done);
    run.expect(!early, || {
        "a write to the frozen file system completed before the thaw".into()
    });
    let thawed_at = Instant::now();
    let thaw = run.virsh(&["domfsthaw", &name]);
    run.expect(
        thaw.ok() && thaw.stdout.contains("Thawed 1 filesystem(s)"),
        || format!("virsh domfsthaw: {}", thaw.summary()),
    );
    let finished = run.dom.console.wait_line(THAW_TIMEOUT, done);
    let write_after = thawed_at.elapsed();
    run.expect(finished, || {
        format!("the blocked write did not complete within {THAW_TIMEOUT:?} of the thaw")
    });
    let thawed = status(run);
    run.expect(thawed == r#"{"return":"thawed"}"#, || {
        format!("fsfreeze-status after domfsthaw: {thawed}")
    });
    let written = run.shell(
        "cat /mnt/scratch/during-freeze; echo after >/mnt/scratch/after-thaw && echo e2e-wrote",
    );
    run.expect(written == "frozen-write\ne2e-wrote\n", || {
        format!("writes after the thaw: {written:?}")
    });
    println!(
        "{}: the write blocked while frozen: {}; it completed {write_after:.2?} after domfsthaw",
        run.name(),
        !early
    );
    run.figures.push((
        "domfsfreeze: write blocked until domfsthaw",
        (!early && finished).to_string(),
    ));
}

/// Connect to the agent's channel as another host program (libvirtd is
/// not running), bounded.
fn connect_channel(socket: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    let s = tests::connect_until(socket, deadline, "the agent's channel");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("set timeout");
    s
}

/// Read from `s` until `want` has arrived or `timeout` passes; whether it
/// arrived, and everything read.
fn read_until(s: &mut UnixStream, want: &[u8], timeout: Duration) -> (bool, Vec<u8>) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if got.windows(want.len()).any(|w| w == want) {
            return (true, got);
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read the channel: {e}"),
        }
    }
    let found = got.windows(want.len()).any(|w| w == want);
    (found, got)
}

/// Step 5 for one half request: kill libvirtd, leave `half` in the agent
/// as a killed client would, start libvirtd again and call `virsh
/// domtime` until it works (three calls at most). Returns how many calls
/// failed before one worked (3: none worked).
fn killed_client(run: &mut Run, label: &str, half: &str) -> usize {
    // A complete guest-ping and the half request in one write: the ping's
    // answer shows that the agent has read the whole write (it reads up to
    // 4096 bytes at a time, and QEMU puts a short write in one buffer).
    let mut bytes = b"{\"execute\": \"guest-ping\"}\n".to_vec();
    bytes.extend_from_slice(half.as_bytes());
    let (restarted, log_at) = as_other_client(run, &bytes, b"{\"return\": {}}\n");
    let mut failed = 0;
    let mut calls = Vec::new();
    for _ in 0..3 {
        let (ran, t) = domtime(run);
        let ok = ran.ok() && t.is_some();
        calls.push(ran.summary());
        if ok {
            break;
        }
        failed += 1;
    }
    let (exchange, _) = run.lv.agent_exchange(log_at);
    println!(
        "{}: (5) killed client left {half:?} ({label}); libvirt reconnected \
         {restarted:.2?} after the client closed; virsh domtime calls until one worked: {failed} failed\n    {}\n  \
         libvirt's exchange with the agent:\n    {}",
        run.name(),
        calls.join("\n    "),
        exchange.join("\n    ")
    );
    run.expect(failed == 0, || {
        format!("after a killed client left {half:?}, {failed} virsh calls failed")
    });
    failed
}

/// After step 5: clear whatever the agent still holds, as a client that
/// knows the protocol does (the reset byte 0xFF, then
/// guest-sync-delimited), with libvirtd stopped meanwhile.
fn reset_channel(run: &mut Run) {
    let id = 271_828_182;
    let mut hello = vec![0xffu8];
    hello.extend_from_slice(
        format!("{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}\n")
            .as_bytes(),
    );
    let mut want = vec![0xffu8];
    want.extend_from_slice(format!("{{\"return\": {id}}}\n").as_bytes());
    as_other_client(run, &hello, &want);
}

/// With libvirtd killed, talk to the agent's channel as another host
/// program: write `bytes`, read until `want` arrives (it must), close;
/// then start libvirtd again and wait until it has reconnected to the
/// agent. Returns the time from the close to that reconnection, and where
/// libvirt's log stood before the restart.
fn as_other_client(run: &mut Run, bytes: &[u8], want: &[u8]) -> (Duration, usize) {
    run.lv.kill();
    let mut client = connect_channel(&run.dom.agent_socket);
    client.write_all(bytes).expect("write to the channel");
    let (answered, got) = read_until(&mut client, want, Duration::from_secs(30));
    assert!(
        answered,
        "{}: no {:?} in answer to {:?}: {:?}",
        run.name(),
        String::from_utf8_lossy(want),
        String::from_utf8_lossy(bytes),
        String::from_utf8_lossy(&got)
    );
    drop(client);
    let closed = Instant::now();
    let (_, log_at) = run.lv.agent_exchange(0);
    run.lv.restart();
    assert!(
        run.lv.wait_agent_connected(log_at, RECONNECT_TIMEOUT),
        "{}: libvirtd did not reconnect to the agent within {RECONNECT_TIMEOUT:?}",
        run.name()
    );
    (closed.elapsed(), log_at)
}

/// Step 6: `virsh shutdown --mode agent`; the domain ends. Returns how
/// long it took.
fn shutdown(run: &mut Run) -> Option<Duration> {
    let name = run.dom.name.clone();
    let t = Instant::now();
    let ran = run.virsh(&["shutdown", "--mode", "agent", &name]);
    run.expect(ran.ok(), || {
        format!("virsh shutdown --mode agent: {}", ran.summary())
    });
    let deadline = Instant::now() + END_TIMEOUT;
    while Instant::now() < deadline {
        let state = run.lv.virsh(&["domstate", &name]);
        // A transient domain is gone once it ends.
        if !state.ok() || state.stdout.contains("shut off") {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    run.expect(false, || {
        format!("the domain did not end within {END_TIMEOUT:?} of virsh shutdown --mode agent")
    });
    None
}

/// The whole scenario for one agent.
fn scenario(kind: AgentKind) {
    let total = Instant::now();
    let mut lv = Libvirtd::start(kind.name());
    let name = format!("qga-e2e-{}-{}", kind.name(), std::process::id());
    let dom = lv.create(kind, &name);
    let mut run = Run {
        kind,
        lv,
        dom,
        figures: Vec::new(),
        differences: Vec::new(),
    };
    let up = wait_for_agent(&run);
    println!(
        "{}: first answer through libvirt {up:.2?} after virsh create",
        run.name()
    );
    run.figures.push((
        "first answer through libvirt after virsh create",
        format!("{up:.1?}"),
    ));

    guestinfo(&mut run);
    time_sync(&mut run);
    ssh_keys(&mut run);
    freeze_thaw(&mut run);
    for (label, half) in [
        ("cut inside a string", r#"{"execute":"guest-pi"#),
        ("cut between members", r#"{"execute":"guest-ping""#),
    ] {
        let failed = killed_client(&mut run, label, half);
        let key = match label {
            "cut inside a string" => "killed client, half cut in a string: calls failed",
            _ => "killed client, half cut between members: calls failed",
        };
        run.figures.push((
            key,
            if failed == 3 {
                "3 of 3 (no recovery)".into()
            } else {
                failed.to_string()
            },
        ));
        reset_channel(&mut run);
    }
    let (after, _) = domtime(&run);
    run.expect(after.ok(), || {
        format!("virsh domtime after the reset byte: {}", after.summary())
    });
    let ended = shutdown(&mut run);
    run.figures.push((
        "shutdown --mode agent: domain ended after",
        ended.map_or("no".into(), |d| format!("{d:.1?}")),
    ));
    println!(
        "{}: done in {:.2?}; differences from ours: {}",
        run.name(),
        total.elapsed(),
        if run.differences.is_empty() {
            "none".to_string()
        } else {
            run.differences.join("; ")
        }
    );
    FIGURES.record(kind, std::mem::take(&mut run.figures));
}

#[test]
fn libvirt_e2e_guest_agent() {
    scenario(AgentKind::Ours);
}

#[test]
fn libvirt_e2e_qemu_ga() {
    scenario(AgentKind::QemuGa);
}
