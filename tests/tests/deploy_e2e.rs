//! The Debian package in a real Debian guest with systemd and udev
//! (`cargo test deploy_e2e`; helpers in `tests/src/debian_guest.rs`).
//!
//! * `package_contents`: the package's control fields, files, links and
//!   man page, on the host.
//! * `install_hotplug_restart_remove`: a Debian guest without any agent:
//!   `dpkg -i` starts the agent (udev link, unit, answer); reinstalling
//!   restarts it; QMP `device_del` of the port stops it and `device_add`
//!   starts it again; `systemctl restart` in the middle of traffic loses
//!   no request sent after the restart; `dpkg -r` and `--purge` remove it.
//! * `replaces_qemu_guest_agent`: a Debian guest with Debian's
//!   qemu-guest-agent and a qemu-ga.conf: `dpkg -i` replaces it, keeps the
//!   configuration file and honours it; then the readiness of both agents
//!   in that image, printed side by side.
//!
//! Timings are printed, never asserted. Guests run one at a time.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::debian_guest::{
    exclusive, images, package, ClockPair, DebianGuest, AGENT_PORT_ID, AGENT_PORT_PATH,
    BLOCKED_BY_CONF, BOOT_TIMEOUT, CONTROL_PORT,
};
use tests::linux_guest::{HostConn, PORT_NAME};

/// A test's wait for the first answer after the agent starts or restarts.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The fields of a package's control file.
fn control_fields(deb: &std::path::Path) -> BTreeMap<String, String> {
    let out = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(deb)
        .output()
        .expect("run dpkg-deb -f");
    assert!(out.status.success(), "dpkg-deb -f failed");
    let mut fields = BTreeMap::new();
    let mut last = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with(' ') {
            let value: &mut String = fields.get_mut(&last).expect("a field");
            value.push('\n');
            value.push_str(line);
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.to_string();
            fields.insert(last.clone(), v.trim().to_string());
        }
    }
    fields
}

#[test]
fn package_contents() {
    let deb = package();
    let fields = control_fields(deb);
    for field in ["Provides", "Conflicts", "Replaces"] {
        assert_eq!(
            fields.get(field).map(String::as_str),
            Some("qemu-guest-agent"),
            "{field}"
        );
    }
    assert_eq!(fields["Package"], "guest-agent");
    assert_eq!(fields["Architecture"], "amd64");
    assert_eq!(fields["Version"], env!("CARGO_PKG_VERSION"));
    assert!(fields["Pre-Depends"].starts_with("init-system-helpers"));
    assert!(
        !fields.contains_key("Depends"),
        "a static binary needs no libraries"
    );

    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .expect("dpkg-deb -c");
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let entry = |path: &str| {
        list.lines()
            .find(|l| l.split_whitespace().nth(5) == Some(path))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{list}"))
            .to_string()
    };
    assert!(entry("./usr/sbin/guest-agent").starts_with("-rwxr-xr-x root/root"));
    assert!(entry("./lib/systemd/system/guest-agent.service").starts_with("-rw-r--r-- root/root"));
    assert!(entry("./lib/udev/rules.d/60-guest-agent.rules").starts_with("-rw-r--r-- root/root"));
    assert!(entry("./usr/share/man/man8/guest-agent.8.gz").starts_with("-rw-r--r--"));
    assert!(entry("./usr/share/doc/guest-agent/copyright").starts_with("-rw-r--r--"));
    for (link, to) in [
        ("./usr/sbin/qemu-ga", "guest-agent"),
        (
            "./lib/systemd/system/qemu-guest-agent.service",
            "guest-agent.service",
        ),
        ("./usr/share/man/man8/qemu-ga.8.gz", "guest-agent.8.gz"),
    ] {
        assert!(entry(link).ends_with(&format!("{link} -> {to}")), "{link}");
    }

    // The files themselves.
    let dir = tests::scratch_dir("deb-contents");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&dir)
        .status()
        .expect("dpkg-deb -x");
    assert!(status.success());
    let ldd = Command::new("ldd")
        .arg(dir.join("usr/sbin/guest-agent"))
        .output()
        .expect("run ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "{ldd}"
    );
    let unit = std::fs::read_to_string(dir.join("lib/systemd/system/guest-agent.service")).unwrap();
    assert!(unit.contains("ExecStart=-/usr/sbin/guest-agent\n"));
    assert!(unit.contains("BindsTo=dev-virtio\\x2dports-org.qemu.guest_agent.0.device\n"));
    // The man page: rendered from the table --help uses, valid roff.
    let man = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc {} | groff -man -ww -z -Tutf8 2>&1",
            dir.join("usr/share/man/man8/guest-agent.8.gz").display()
        ))
        .output()
        .expect("groff");
    assert!(
        man.status.success() && man.stdout.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&man.stdout)
    );
    let page = Command::new("sh")
        .arg("-c")
        .arg(format!(
            // Plain text, long lines, no hyphenation: options stay whole.
            "gzip -dc {} | groff -man -rLL=300n -rHY=0 -Tutf8 -P -cbou 2>/dev/null",
            dir.join("usr/share/man/man8/guest-agent.8.gz").display()
        ))
        .output()
        .expect("render the man page");
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    let help = Command::new(dir.join("usr/sbin/guest-agent"))
        .arg("--help")
        .output()
        .expect("guest-agent --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut options = 0;
    for word in help.split_whitespace() {
        let option = word.trim_end_matches(',');
        if option.starts_with("--") && option.len() > 2 && !option.contains('|') {
            let option = option.split(['=', '[']).next().unwrap();
            assert!(
                page.contains(option),
                "{option} of --help is not in the man page"
            );
            options += 1;
        }
    }
    assert!(
        options >= 20,
        "only {options} options found in --help:\n{help}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The unit's main process id (0: not running).
fn main_pid(guest: &mut DebianGuest, unit: &str) -> u32 {
    guest
        .sh_ok(&format!("systemctl show -p MainPID --value {unit}"))
        .trim()
        .parse()
        .expect("a pid")
}

/// Sync a fresh connection to the agent, waiting at most `timeout` for an
/// agent to answer.
fn synced(guest: &mut DebianGuest, first_id: i64, timeout: Duration) -> HostConn {
    let mut conn = guest.agent(Duration::from_secs(30));
    conn.sync(first_id, Duration::from_secs(5), timeout);
    conn
}

/// `dpkg -i` of the package from the package disk; dpkg's output.
fn install_package(guest: &mut DebianGuest) -> String {
    guest.sh_ok("mkdir -p /mnt/pkg && (mountpoint -q /mnt/pkg || mount -o ro /dev/disk/by-id/virtio-e2e-pkg /mnt/pkg)");
    let out = guest.sh("dpkg -i /mnt/pkg/guest-agent.deb", Duration::from_secs(180));
    assert_eq!(out.status, 0, "dpkg -i failed:\n{}", out.text);
    out.text
}

/// What the port's udev device says and whose link it is.
fn assert_udev_port(guest: &mut DebianGuest) {
    let target = guest.sh_ok(&format!("readlink -f {AGENT_PORT_PATH}"));
    assert!(
        target.trim().starts_with("/dev/vport"),
        "{AGENT_PORT_PATH} -> {target}"
    );
    let props = guest.sh_ok(&format!("udevadm info -q property -n {AGENT_PORT_PATH}"));
    assert!(
        props.contains("TAGS=") && props.contains(":systemd:"),
        "{props}"
    );
    assert!(
        props.contains("SYSTEMD_WANTS=guest-agent.service"),
        "{props}"
    );
}

#[test]
fn install_hotplug_restart_remove() {
    let _one = exclusive();
    let images = images();
    let disk = DebianGuest::disk_from(&images.base, "deploy-fresh");
    let mut guest = DebianGuest::boot(&disk, "fresh");
    let ready = guest.wait_control(BOOT_TIMEOUT);
    eprintln!(
        "fresh guest: control channel after {:.1} s",
        ready.as_secs_f64()
    );

    // Nothing serves the port yet; udev has named both ports.
    let links = guest.sh_ok("ls /dev/virtio-ports");
    assert!(
        links.contains(PORT_NAME) && links.contains(CONTROL_PORT),
        "{links}"
    );
    assert_ne!(
        guest
            .sh("systemctl cat guest-agent.service", Duration::from_secs(30))
            .status,
        0
    );

    let t = Instant::now();
    let dpkg = install_package(&mut guest);
    eprintln!("dpkg -i took {:.1} s:\n{dpkg}", t.elapsed().as_secs_f64());
    assert_udev_port(&mut guest);
    guest
        .sh_until(
            "systemctl is-active guest-agent.service",
            "active",
            Duration::from_secs(30),
        )
        .expect("guest-agent.service active after dpkg -i");
    let pid = main_pid(&mut guest, "guest-agent.service");
    assert_ne!(pid, 0);
    assert_eq!(
        guest.sh_ok(&format!("readlink /proc/{pid}/exe")).trim(),
        "/usr/sbin/guest-agent"
    );
    let mut conn = synced(&mut guest, 100, ANSWER_TIMEOUT);
    assert_eq!(conn.call_ok("guest-ping", None), "{}");

    // The compatibility names.
    assert_eq!(
        guest
            .sh_ok("systemctl show -p Id --value qemu-guest-agent.service")
            .trim(),
        "guest-agent.service"
    );
    assert!(guest.sh_ok("qemu-ga -V").starts_with("guest-agent "));
    assert!(guest
        .sh_ok("systemctl status qemu-guest-agent")
        .contains("guest-agent.service"));

    // Reinstalling is an upgrade: the postinst restarts the agent.
    install_package(&mut guest);
    guest
        .sh_until(
            "systemctl is-active guest-agent.service",
            "active",
            Duration::from_secs(30),
        )
        .expect("active after reinstalling");
    let pid2 = main_pid(&mut guest, "guest-agent.service");
    assert!(
        pid2 != 0 && pid2 != pid,
        "not restarted by the upgrade ({pid} -> {pid2})"
    );
    conn.sync(200, Duration::from_secs(5), ANSWER_TIMEOUT);

    hot_unplug_and_plug(&mut guest, conn);
    restart_mid_traffic(&mut guest);

    // Removal stops the agent and takes every file; purge forgets it.
    let out = guest.sh("dpkg -r guest-agent", Duration::from_secs(120));
    assert_eq!(out.status, 0, "dpkg -r: {}", out.text);
    assert_eq!(main_pid(&mut guest, "guest-agent.service"), 0);
    let gone = guest.sh_ok(
        "for f in /usr/sbin/guest-agent /usr/sbin/qemu-ga /lib/systemd/system/guest-agent.service \
         /lib/systemd/system/qemu-guest-agent.service /lib/udev/rules.d/60-guest-agent.rules; do \
         [ -e $f ] || [ -L $f ] && echo $f; done; true",
    );
    assert!(gone.trim().is_empty(), "left after dpkg -r: {gone}");
    assert_eq!(
        guest
            .sh_ok("systemctl show -p LoadState --value guest-agent.service")
            .trim(),
        "not-found"
    );
    let out = guest.sh("dpkg --purge guest-agent", Duration::from_secs(120));
    assert_eq!(out.status, 0, "dpkg --purge: {}", out.text);
    assert_ne!(
        guest
            .sh("dpkg -s guest-agent", Duration::from_secs(30))
            .status,
        0
    );
}

/// QMP `device_del` of the agent's port; waits (at most 30 s) until
/// `unit` is inactive, as BindsTo the port's device makes it; the time
/// that took.
fn unplug(guest: &mut DebianGuest, unit: &str) -> Duration {
    guest
        .qmp(
            "device_del",
            Some(serde_json::json!({ "id": AGENT_PORT_ID })),
        )
        .expect("device_del");
    let t = Instant::now();
    let event = guest.qmp_event("DEVICE_DELETED", Duration::from_secs(30));
    assert!(event.is_some(), "no DEVICE_DELETED for {AGENT_PORT_ID}");
    guest
        .sh_until(
            &format!("systemctl is-active {unit}"),
            "inactive",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|state| panic!("{unit} is {state}, not inactive, after its port went"));
    t.elapsed()
}

/// QMP `device_add` of the agent's port, as it was at boot.
fn plug(guest: &mut DebianGuest) {
    guest
        .qmp(
            "device_add",
            Some(serde_json::json!({
                "driver": "virtserialport",
                "bus": "vser0.0",
                "chardev": "qga0",
                "name": PORT_NAME,
                "id": AGENT_PORT_ID,
            })),
        )
        .expect("device_add");
}

/// Hot-unplug stops the unit (and nothing restarts it while the port is
/// away); hot-plug starts it again and it answers.
fn hot_unplug_and_plug(guest: &mut DebianGuest, conn: HostConn) {
    drop(conn);
    let took = unplug(guest, "guest-agent.service");
    eprintln!(
        "hot-unplug: unit inactive {:.2} s after device_del",
        took.as_secs_f64()
    );
    assert_eq!(main_pid(guest, "guest-agent.service"), 0);
    let port = guest.sh(
        &format!("test -e {AGENT_PORT_PATH}"),
        Duration::from_secs(30),
    );
    assert_ne!(port.status, 0, "{AGENT_PORT_PATH} is still there");
    // Not restarted while the port is away (Restart=always does not apply
    // to a unit stopped by its binding).
    std::thread::sleep(Duration::from_secs(3));
    let state = guest.sh_ok("systemctl is-active guest-agent.service; true");
    assert_eq!(state.trim(), "inactive");

    plug(guest);
    let t = Instant::now();
    let mut conn = synced(guest, 300, ANSWER_TIMEOUT);
    eprintln!(
        "hot-plug: first answer {:.2} s after device_add",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(conn.call_ok("guest-ping", None), "{}");
    let state = guest.sh_ok("systemctl is-active guest-agent.service");
    assert_eq!(state.trim(), "active");
    assert_udev_port(guest);
}

/// One hot-plug of the port, in seconds after `device_add` (host clock).
#[derive(Debug, Clone, Copy)]
struct Plug {
    /// The new port's udev event (`USEC_INITIALIZED`).
    port_event: f64,
    /// systemd saw the port (its device unit active).
    device_unit: f64,
    /// The agent's process started.
    agent_started: f64,
    /// The first answer to the handshake sent right after `device_add`.
    first_answer: f64,
}

/// The guest's monotonic clock of an event, in seconds, from a command
/// printing microseconds.
fn guest_monotonic_s(guest: &mut DebianGuest, command: &str) -> f64 {
    let text = guest.sh_ok(command);
    let us: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("`{command}`: {text:?}"));
    assert!(us > 0, "`{command}`: 0");
    us as f64 / 1e6
}

/// The guest's monotonic times of the port's udev event, of systemd
/// seeing the port and of `unit`'s main process start, in seconds.
fn port_and_unit_times(guest: &mut DebianGuest, unit: &str) -> (f64, f64, f64) {
    let port_event = guest_monotonic_s(
        guest,
        &format!(
            "udevadm info -q property -n {AGENT_PORT_PATH} | sed -n 's/^USEC_INITIALIZED=//p'"
        ),
    );
    let device_unit = guest_monotonic_s(
        guest,
        &format!(
            "systemctl show -p ActiveEnterTimestampMonotonic --value \
             \"$(systemd-escape -p --suffix=device {AGENT_PORT_PATH})\""
        ),
    );
    let agent_started = guest_monotonic_s(
        guest,
        &format!("systemctl show -p ExecMainStartTimestampMonotonic --value {unit}"),
    );
    (port_event, device_unit, agent_started)
}

/// Unplug and plug the port `n` times with `unit` serving it, the host's
/// handshake waiting from `device_add` on: the agent's start on a guest
/// that has finished booting, where only the agent and systemd work.
fn plug_readiness(guest: &mut DebianGuest, unit: &str, n: usize, first_id: i64) -> Vec<Plug> {
    (0..n)
        .map(|i| {
            unplug(guest, unit);
            // Let the guest settle after the unplug.
            std::thread::sleep(Duration::from_millis(500));
            let added = Instant::now();
            plug(guest);
            let mut conn = guest.agent(Duration::from_secs(30));
            conn.sync(
                first_id + 10 * i as i64,
                Duration::from_secs(5),
                ANSWER_TIMEOUT,
            );
            let first_answer = added.elapsed().as_secs_f64();
            let pair = ClockPair::read(&mut conn);
            let (port_event, device_unit, agent_started) = port_and_unit_times(guest, unit);
            let at = |g: f64| pair.host_seconds_after(added, g);
            Plug {
                port_event: at(port_event),
                device_unit: at(device_unit),
                agent_started: at(agent_started),
                first_answer,
            }
        })
        .collect()
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Print two agents' hot-plug figures side by side (medians, ms).
fn print_plug_readiness(a: (&str, &[Plug]), b: (&str, &[Plug])) {
    type Figure = fn(&Plug) -> f64;
    let rows: [(&str, Figure); 5] = [
        ("device_add -> port's udev event", |p| p.port_event),
        ("port's udev event -> systemd sees the port", |p| {
            p.device_unit - p.port_event
        }),
        ("port's udev event -> agent process started", |p| {
            p.agent_started - p.port_event
        }),
        ("port's udev event -> first answer", |p| {
            p.first_answer - p.port_event
        }),
        ("agent process started -> first answer", |p| {
            p.first_answer - p.agent_started
        }),
    ];
    let m = |plugs: &[Plug], figure: Figure| median(plugs.iter().map(figure).collect()) * 1000.0;
    let rows: Vec<(&str, f64, f64, &str)> = rows
        .into_iter()
        .map(|(label, figure)| (label, m(a.1, figure), m(b.1, figure), "ms"))
        .collect();
    print_side_by_side(
        &format!(
            "hot-plug readiness in one boot, medians of {} and {} plugs:",
            a.1.len(),
            b.1.len()
        ),
        (a.0, b.0),
        &rows,
    );
}

/// A table of figures for two agents: (label, first, second, unit).
fn print_side_by_side(title: &str, names: (&str, &str), rows: &[(&str, f64, f64, &str)]) {
    eprintln!("{title}");
    eprintln!("  {:<46} {:>10} {:>10}", "", names.0, names.1);
    for (label, a, b, unit) in rows {
        eprintln!("  {label:<46} {a:>10.3} {b:>10.3} {unit}");
    }
}

/// The outcome of one request of the restart traffic.
#[derive(Debug, Clone, Copy)]
struct Sent {
    id: i64,
    at: Instant,
    answered: Option<Instant>,
}

/// `systemctl restart guest-agent` while the host sends `guest-sync`
/// requests one after another (each awaited at most 2 s, then the next
/// is sent). Asserted: every request sent after the host has seen the
/// restart command return is answered, exactly once and in order, without
/// the host resynchronising. Requests in flight during the restart may
/// be lost (the kernel drops a port's unread input when the old agent
/// closes it); they are counted and printed.
fn restart_mid_traffic(guest: &mut DebianGuest) {
    let mut conn = synced(guest, 400, ANSWER_TIMEOUT);
    let done = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let traffic = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut sent: Vec<Sent> = Vec::new();
            let mut late = Vec::new();
            let mut after_done = 0;
            let deadline = Instant::now() + Duration::from_secs(240);
            let mut id = 1000i64;
            while after_done < 50 && Instant::now() < deadline {
                id += 1;
                let args = format!(r#"{{"id": {id}}}"#);
                let at = Instant::now();
                let mut request = Vec::new();
                request.extend_from_slice(
                    format!("{{\"execute\": \"guest-sync\", \"arguments\": {args}}}\n").as_bytes(),
                );
                if done.lock().unwrap().is_some_and(|d| at > d) {
                    after_done += 1;
                }
                let mut entry = Sent {
                    id,
                    at,
                    answered: None,
                };
                if conn.send_within(&request, Duration::from_secs(2)) {
                    let until = at + Duration::from_secs(2);
                    while let Some((answer, _)) =
                        conn.answer_within(until.saturating_duration_since(Instant::now()))
                    {
                        let got: i64 = answer.expect("guest-sync succeeds").trim().parse().unwrap();
                        if got == id {
                            entry.answered = Some(Instant::now());
                            break;
                        }
                        late.push((got, Instant::now()));
                    }
                }
                sent.push(entry);
            }
            (sent, late)
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let out = guest.sh(
        "systemctl restart guest-agent.service",
        Duration::from_secs(60),
    );
    let restarted = Instant::now();
    *done.lock().unwrap() = Some(restarted);
    assert_eq!(out.status, 0, "systemctl restart: {}", out.text);
    let (sent, late) = traffic.join().expect("the traffic thread");
    let before: Vec<&Sent> = sent.iter().filter(|s| s.at <= restarted).collect();
    let after: Vec<&Sent> = sent.iter().filter(|s| s.at > restarted).collect();
    let lost_before = before.iter().filter(|s| s.answered.is_none()).count();
    let first_after = after
        .first()
        .and_then(|s| s.answered.map(|a| a.duration_since(s.at)));
    eprintln!(
        "restart mid-traffic: systemctl restart took {:.2} s; {} requests before it returned \
         ({lost_before} unanswered in time, {} answered late: {:?}), {} after (first answered in \
         {:?})",
        restarted.duration_since(t).as_secs_f64(),
        before.len(),
        late.len(),
        late.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        after.len(),
        first_after
    );
    assert!(
        after.len() >= 50,
        "only {} requests after the restart",
        after.len()
    );
    let unanswered: Vec<i64> = after
        .iter()
        .filter(|s| s.answered.is_none())
        .map(|s| s.id)
        .collect();
    assert!(
        unanswered.is_empty(),
        "requests sent after the restart not answered: {unanswered:?}"
    );
    let first_after_id = after[0].id;
    assert!(
        late.iter().all(|(id, _)| *id < first_after_id),
        "an answer to a request sent after the restart came late or twice: {late:?}"
    );
}

/// When things happened in one boot, in seconds after QEMU started (host
/// clock; the guest's monotonic times converted with a [`ClockPair`]).
#[derive(Debug, Clone)]
struct Readiness {
    /// The agent's unit.
    unit: &'static str,
    /// systemd (PID 1) started: the end of the kernel and initramfs.
    userspace: f64,
    /// The port's udev event: udev's `USEC_INITIALIZED` of the port.
    port_event: f64,
    /// systemd saw the port: its device unit became active.
    device_unit: f64,
    /// The agent's process started (`ExecMainStartTimestampMonotonic`).
    agent_started: f64,
    /// `basic.target` reached, where units with default dependencies
    /// may start.
    basic_target: f64,
    /// The first answer to the host's handshake, waiting in QEMU since
    /// QEMU started (host clock).
    first_answer: f64,
    /// The clock pairing's round trip, seconds (the error is half of it).
    pairing_round_trip: f64,
}

/// Boot `disk`, with the host's handshake waiting on the agent's port
/// from QEMU's start, and measure when each step of the agent's start
/// happened. Returns the guest and its synced connection.
fn boot_and_measure(
    disk: &std::path::Path,
    name: &str,
    unit: &'static str,
) -> (DebianGuest, HostConn, Readiness) {
    let mut guest = DebianGuest::boot(disk, name);
    let mut conn = guest.agent(Duration::from_secs(30));
    conn.sync(1, Duration::from_secs(5), BOOT_TIMEOUT);
    let first_answer = guest.started.elapsed().as_secs_f64();
    let pair = ClockPair::read(&mut conn);
    guest.wait_control(BOOT_TIMEOUT);
    let started = guest.started;
    let at = |g: f64| pair.host_seconds_after(started, g);
    let userspace = guest_monotonic_s(
        &mut guest,
        "systemctl show -p UserspaceTimestampMonotonic --value",
    );
    let basic_target = guest_monotonic_s(
        &mut guest,
        "systemctl show -p ActiveEnterTimestampMonotonic --value basic.target",
    );
    let (port_event, device_unit, agent_started) = port_and_unit_times(&mut guest, unit);
    let readiness = Readiness {
        unit,
        userspace: at(userspace),
        port_event: at(port_event),
        device_unit: at(device_unit),
        agent_started: at(agent_started),
        basic_target: at(basic_target),
        first_answer,
        pairing_round_trip: pair.round_trip.as_secs_f64(),
    };
    (guest, conn, readiness)
}

/// Print two agents' boot readiness side by side.
fn print_readiness(a: &Readiness, b: &Readiness) {
    type Figure = fn(&Readiness) -> f64;
    let rows: [(&str, Figure, &str); 10] = [
        ("QEMU start -> systemd starts", |r| r.userspace, "s"),
        ("QEMU start -> port's udev event", |r| r.port_event, "s"),
        ("QEMU start -> basic.target", |r| r.basic_target, "s"),
        (
            "QEMU start -> agent process started",
            |r| r.agent_started,
            "s",
        ),
        ("QEMU start -> first answer", |r| r.first_answer, "s"),
        (
            "port's udev event -> systemd sees the port",
            |r| r.device_unit - r.port_event,
            "ms",
        ),
        (
            "port's udev event -> agent process started",
            |r| r.agent_started - r.port_event,
            "ms",
        ),
        (
            "port's udev event -> first answer",
            |r| r.first_answer - r.port_event,
            "ms",
        ),
        (
            "agent process started -> first answer",
            |r| r.first_answer - r.agent_started,
            "ms",
        ),
        (
            "clock pairing round trip (error: half)",
            |r| r.pairing_round_trip,
            "ms",
        ),
    ];
    let rows: Vec<(&str, f64, f64, &str)> = rows
        .into_iter()
        .map(|(label, figure, unit)| {
            let scale = if unit == "ms" { 1000.0 } else { 1.0 };
            (label, figure(a) * scale, figure(b) * scale, unit)
        })
        .collect();
    print_side_by_side(
        &format!(
            "boot readiness in the same Debian {} image, one boot each (TCG, one vCPU):",
            tests::debian_guest::SUITE
        ),
        (
            a.unit.trim_end_matches(".service"),
            b.unit.trim_end_matches(".service"),
        ),
        &rows,
    );
}

/// guest-info's `enabled` per command.
fn enabled_commands(conn: &mut HostConn) -> BTreeMap<String, bool> {
    let info: Value = serde_json::from_str(&conn.call_ok("guest-info", None)).unwrap();
    info["supported_commands"]
        .as_array()
        .expect("supported_commands")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["enabled"] == true,
            )
        })
        .collect()
}

#[test]
fn replaces_qemu_guest_agent() {
    let _one = exclusive();
    let images = images();
    if let Some(t) = images.built_in {
        eprintln!(
            "debian images built by this run in {:.1} s",
            t.as_secs_f64()
        );
    }
    let disk = DebianGuest::disk_from(&images.qemu_ga, "deploy-replace");

    // Debian's qemu-guest-agent, as installed, with the configuration.
    let (mut guest, mut conn, theirs) =
        boot_and_measure(&disk, "qemu-ga", "qemu-guest-agent.service");
    guest.remove_disk = false;
    let version = guest.sh_ok("dpkg-query -W -f '${Version}' qemu-guest-agent");
    let version = version.trim();
    let enabled = enabled_commands(&mut conn);
    eprintln!(
        "qemu-ga {version}: commands disabled by qemu-ga.conf: {:?}",
        enabled
            .iter()
            .filter(|(_, e)| !**e)
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    );
    drop(conn);
    let their_plugs = plug_readiness(&mut guest, "qemu-guest-agent.service", 5, 1000);
    let conf_before = guest.sh_ok("md5sum /etc/qemu/qemu-ga.conf");

    // Replace it.
    let dpkg = install_package(&mut guest);
    eprintln!("dpkg -i over qemu-guest-agent:\n{dpkg}");
    // dpkg removed qemu-guest-agent (keeping its conffiles) in favour of ours.
    let status = |guest: &mut DebianGuest, package: &str| {
        guest
            .sh_ok(&format!(
                "dpkg-query -W -f '${{db:Status-Status}}' {package}"
            ))
            .trim()
            .to_string()
    };
    assert_eq!(status(&mut guest, "qemu-guest-agent"), "config-files");
    assert_eq!(status(&mut guest, "guest-agent"), "installed");
    guest
        .sh_until(
            "systemctl is-active guest-agent.service",
            "active",
            Duration::from_secs(30),
        )
        .expect("guest-agent.service active after replacing qemu-guest-agent");
    let pid = main_pid(&mut guest, "guest-agent.service");
    assert_eq!(
        guest.sh_ok(&format!("readlink /proc/{pid}/exe")).trim(),
        "/usr/sbin/guest-agent"
    );
    let qemu_ga = guest.sh("pidof qemu-ga", Duration::from_secs(30));
    assert_ne!(
        qemu_ga.status, 0,
        "Debian's qemu-ga still runs: {}",
        qemu_ga.text
    );
    assert_eq!(
        guest.sh_ok("md5sum /etc/qemu/qemu-ga.conf"),
        conf_before,
        "qemu-ga.conf changed"
    );
    assert_eq!(
        guest
            .sh_ok("systemctl show -p Id --value qemu-guest-agent.service")
            .trim(),
        "guest-agent.service"
    );
    assert_udev_port(&mut guest);

    // Ours honours the configuration file it found.
    let mut conn = synced(&mut guest, 500, ANSWER_TIMEOUT);
    let assert_config_honoured = |conn: &mut HostConn| {
        let enabled = enabled_commands(conn);
        for name in BLOCKED_BY_CONF {
            assert_eq!(enabled.get(name), Some(&false), "{name} in guest-info");
            let (answer, _) = conn.call(name, None);
            let (class, desc) = answer.expect_err("a disabled command fails");
            assert_eq!(class, "CommandNotFound");
            assert!(desc.contains("has been disabled"), "{desc}");
        }
        assert_eq!(enabled.get("guest-ping"), Some(&true));
        assert_eq!(
            enabled.values().filter(|e| !**e).count(),
            BLOCKED_BY_CONF.len()
        );
    };
    assert_config_honoured(&mut conn);
    drop(conn);
    let our_plugs = plug_readiness(&mut guest, "guest-agent.service", 5, 2000);
    let status = guest.poweroff(Duration::from_secs(120));
    assert!(status.success(), "QEMU: {status}");
    drop(guest);

    // The same disk again: ours starts at boot.
    let (mut guest, mut conn, ours) = boot_and_measure(&disk, "guest-agent", "guest-agent.service");
    guest.remove_disk = false;
    assert_config_honoured(&mut conn);
    assert_eq!(
        guest
            .sh_ok("systemctl is-active qemu-guest-agent.service")
            .trim(),
        "active"
    );
    drop(conn);
    let status = guest.poweroff(Duration::from_secs(120));
    assert!(status.success(), "QEMU: {status}");
    drop(guest);

    // A slow early boot: a unit holds sysinit.target, as cloud-init
    // waiting for a DHCP lease or a long file system check would. Units
    // with default dependencies (qemu-ga's) wait for basic.target, after
    // it; ours waits only for its port.
    let slow = format!("e2e.slow_sysinit={SLOW_SYSINIT_S}");
    let ours_slow = first_answer_after_boot(&disk, "guest-agent-slow", &slow);
    let their_disk = DebianGuest::disk_from(&images.qemu_ga, "deploy-slow-qemu-ga");
    let theirs_slow = first_answer_after_boot(&their_disk, "qemu-ga-slow", &slow);

    print_readiness(&theirs, &ours);
    print_plug_readiness(("qemu-ga", &their_plugs), ("ours", &our_plugs));
    print_side_by_side(
        &format!("a unit holding sysinit.target for {SLOW_SYSINIT_S} s, one boot each:"),
        ("qemu-ga", "ours"),
        &[("QEMU start -> first answer", theirs_slow, ours_slow, "s")],
    );
}

/// How long [`replaces_qemu_guest_agent`]'s slow boot holds `sysinit.target`.
const SLOW_SYSINIT_S: u32 = 15;

/// Boot `disk` with `append` on the kernel command line, the host's
/// handshake waiting from QEMU's start; seconds from QEMU's start to the
/// first answer. The guest is killed right after (its disk is not used
/// again).
fn first_answer_after_boot(disk: &std::path::Path, name: &str, append: &str) -> f64 {
    let mut guest = DebianGuest::boot_with(disk, name, append);
    let mut conn = guest.agent(Duration::from_secs(30));
    conn.sync(1, Duration::from_secs(5), BOOT_TIMEOUT);
    guest.started.elapsed().as_secs_f64()
}
