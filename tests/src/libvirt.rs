//! Helpers for the libvirt end-to-end tests (`tests/tests/libvirt_e2e.rs`):
//! a private `libvirtd` (Debian's libvirt 9.0, QEMU driver) per test, a
//! transient libvirt domain booting the Linux test guest of
//! [`crate::linux_guest`] (Debian's kernel, the busybox initramfs with our
//! static agent or Debian's qemu-ga, a scratch ext4 disk, a user with a
//! home), its serial console, and `virsh` run as a user types it, every
//! call bounded in time.
//!
//! **A private daemon.** Each [`Libvirtd`] runs in a mount namespace of its
//! own (util-linux `unshare --mount`) in which a directory of the test
//! (`etc/`, `run/`, `lib/`, `log/`, `cache/`) is bound over
//! `/etc/libvirt`, `/run/libvirt`, `/var/lib/libvirt`, `/var/log/libvirt`
//! and `/var/cache/libvirt`, and a copy of `/etc/passwd` and `/etc/group`
//! with libvirt's built-in `libvirt-qemu` user and `kvm` group (libvirt
//! looks them up before it reads `qemu.conf`) is bound over those files.
//! Nothing on the machine changes (except for the empty mount points, which
//! are created when missing), no system daemon is needed (no systemd, no
//! D-Bus), and two tests can run side by side. `qemu.conf` is the one
//! E2E-NOTES measured (root, no security driver, no cgroups, no
//! namespaces) with `stdio_handler = "file"`, so no `virtlogd` is needed
//! either. `libvirtd.conf` logs libvirt's agent module at debug level
//! (`log_filters="1:qemu.qemu_agent"`) to `log/libvirtd.log`: every line
//! libvirt sends to the agent and receives from it
//! ([`Libvirtd::agent_exchange`]). `virsh` reaches the daemon through
//! `LIBVIRT_DEFAULT_URI=qemu+unix:///system?socket=<dir>/run/libvirt-sock`,
//! so each command line is exactly what a user types.
//!
//! **Clean-up.** Dropping a [`Libvirtd`] destroys its domains, kills any
//! QEMU it started that is still running (by the pid files under `run/`)
//! and kills the daemon; when the test is failing it first prints what
//! libvirt exchanged with the agent and the guest's console, and keeps
//! the directory, which it removes otherwise.
//!
//! Needs root, `unshare`, and `bash scripts/e2e-setup.sh` (the packages
//! `libvirt-daemon`, `libvirt-daemon-driver-qemu`, `libvirt-clients`).

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::linux_guest::{
    assets, guest_initrd, make_scratch_image, setup_script, AgentKind, GuestOptions, ScratchDisk,
    PORT_NAME,
};
use crate::scratch_dir;

const SETUP_HINT: &str = "run `bash scripts/e2e-setup.sh` first (libvirt-daemon, \
                          libvirt-daemon-driver-qemu, libvirt-clients)";

/// How long `libvirtd` may take to open its socket (it loads its drivers
/// and probes QEMU's capabilities first: seconds, more on a busy machine).
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(120);

/// The unprivileged user the guest's `/e2e/setup.sh` creates, with a home
/// at `/home/e2e` (for the ssh key commands).
pub const GUEST_USER: &str = "e2e";

/// The guest's host name (`hostname` in `/e2e/setup.sh`).
pub const GUEST_HOSTNAME: &str = "qga-e2e";

/// `libvirtd.conf`: the agent module's debug log to a file.
const LIBVIRTD_CONF: &str = r#"log_filters="1:qemu.qemu_agent"
log_outputs="1:file:/var/log/libvirt/libvirtd.log"
"#;

/// `qemu.conf` for a host without systemd, D-Bus or cgroups (E2E-NOTES),
/// writing QEMU's own output to files instead of through virtlogd.
const QEMU_CONF: &str = r#"user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"#;

/// The shell script run by `unshare --mount` (with the daemon's directory
/// as `$0`): the bind mounts, then libvirtd.
const NAMESPACE_SCRIPT: &str = r#"set -e
d=$0
for m in /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
  mkdir -p "$m"
done
mount --bind "$d/etc" /etc/libvirt
mount --bind "$d/run" /run/libvirt
mount --bind "$d/lib" /var/lib/libvirt
mount --bind "$d/log" /var/log/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mount --bind "$d/passwd" /etc/passwd
mount --bind "$d/group" /etc/group
exec libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid
"#;

/// What a bounded command did.
#[derive(Debug)]
pub struct Ran {
    /// The exit status; `None` if it was killed at its time-out.
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Ran {
    /// Whether it exited with status 0.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// One line for the test's output: status, time, and what it printed.
    pub fn summary(&self) -> String {
        let status = match self.status {
            Some(s) if s.success() => "ok".to_string(),
            Some(s) => format!("failed ({s})"),
            None => "timed out".to_string(),
        };
        let text = format!("{} {}", self.stdout.trim(), self.stderr.trim());
        format!(
            "{status} in {:.2?}: {}",
            self.elapsed,
            text.trim().replace('\n', " / ")
        )
    }
}

/// Run `cmd` for at most `timeout` (then kill it), collecting its output.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Ran {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} ({SETUP_HINT})"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = started + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// `/etc/passwd` or `/etc/group` of the machine plus `extra` lines whose
/// names it lacks.
fn with_entries(path: &str, extra: &[&str]) -> String {
    let mut text = fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for line in extra {
        let name = line.split(':').next().unwrap_or_default();
        if !text.lines().any(|l| l.split(':').next() == Some(name)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// A private libvirtd (see the module docs); stopped, with everything it
/// started, on drop.
pub struct Libvirtd {
    /// The daemon's directory (configuration, state, logs, domains).
    pub dir: PathBuf,
    child: Option<Child>,
    uri: String,
    /// The domains created through [`Libvirtd::create`] (destroyed on drop)
    /// and their console logs (printed on failure).
    domains: Vec<(String, Arc<Mutex<Vec<u8>>>)>,
    /// How many times the daemon was started.
    starts: usize,
}

impl Libvirtd {
    /// Start a private libvirtd for the test `name` and wait (bounded) for
    /// its socket.
    pub fn start(name: &str) -> Libvirtd {
        assert!(
            Path::new("/usr/sbin/libvirtd").exists(),
            "libvirtd not found: {SETUP_HINT}"
        );
        let dir = scratch_dir(&format!("libvirt-{name}"));
        for d in ["etc", "run", "lib", "log", "cache"] {
            fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        fs::write(dir.join("etc/libvirtd.conf"), LIBVIRTD_CONF).expect("write libvirtd.conf");
        fs::write(dir.join("etc/qemu.conf"), QEMU_CONF).expect("write qemu.conf");
        fs::write(
            dir.join("passwd"),
            with_entries(
                "/etc/passwd",
                &["libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin"],
            ),
        )
        .expect("write passwd");
        fs::write(
            dir.join("group"),
            with_entries("/etc/group", &["kvm:x:64054:", "libvirt-qemu:x:64055:"]),
        )
        .expect("write group");
        let uri = format!(
            "qemu+unix:///system?socket={}",
            dir.join("run/libvirt-sock").display()
        );
        let mut daemon = Libvirtd {
            dir,
            child: None,
            uri,
            domains: Vec::new(),
            starts: 0,
        };
        daemon.spawn();
        daemon
    }

    /// Start the daemon (again) and wait for it to answer.
    fn spawn(&mut self) {
        self.starts += 1;
        let sock = self.dir.join("run/libvirt-sock");
        let _ = fs::remove_file(&sock);
        let out = fs::File::create(self.dir.join(format!("libvirtd-{}.out", self.starts)))
            .expect("create libvirtd output");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(NAMESPACE_SCRIPT)
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start unshare ... libvirtd: {e} ({SETUP_HINT})"));
        self.child = Some(child);
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        loop {
            if UnixStream::connect(&sock).is_ok() && self.virsh(&["uri"]).ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "libvirtd exited with {status}: {}",
                        self.daemon_output().trim()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "libvirtd did not answer within {DAEMON_START_TIMEOUT:?}: {}",
                self.daemon_output().trim()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the daemon printed in its last start, and the last lines of
    /// its log (where its errors go).
    fn daemon_output(&self) -> String {
        let out = fs::read_to_string(self.dir.join(format!("libvirtd-{}.out", self.starts)))
            .unwrap_or_default();
        let log = fs::read_to_string(self.dir.join("log/libvirtd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("{out}\n{tail}")
    }

    /// Kill the daemon with SIGKILL (its domains keep running; QEMU sees
    /// its monitor and agent connections close).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the daemon again after [`Libvirtd::kill`]; it reconnects to
    /// the running domains (their monitors and agents).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "libvirtd is running");
        self.spawn();
    }

    /// Run `virsh ARGS...` against this daemon, for at most 2 minutes.
    pub fn virsh(&self, args: &[&str]) -> Ran {
        self.virsh_within(args, Duration::from_secs(120))
    }

    /// Run `virsh ARGS...` against this daemon, for at most `timeout`.
    pub fn virsh_within(&self, args: &[&str], timeout: Duration) -> Ran {
        run_bounded(
            Command::new("virsh")
                .env("LIBVIRT_DEFAULT_URI", &self.uri)
                .args(args),
            timeout,
        )
    }

    /// The libvirt log of everything libvirt sent to and received from the
    /// guest agent (the `qemu.qemu_agent` module's debug lines), from byte
    /// `from` of the log on; and the log's length.
    pub fn agent_exchange(&self, from: usize) -> (Vec<String>, usize) {
        let log = fs::read(self.dir.join("log/libvirtd.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned();
        let keep = [
            "Line [",
            "Send command",
            "Sending guest-sync",
            "Guest returned ID",
            "returned ID",
            "Ignoring",
            "Received garbage",
            "Error on agent",
            "qemuAgentSend returned",
            "Receive command reply",
            "unable to execute",
            "New agent",
        ];
        let lines = text
            .lines()
            .filter(|l| keep.iter().any(|k| l.contains(k)))
            .map(|l| {
                // Drop the time stamp and thread id before "debug :".
                l.find(": debug : ")
                    .map_or(l, |at| &l[at + ": debug : ".len()..])
                    .to_string()
            })
            .collect();
        (lines, log.len())
    }

    /// Wait (at most `timeout`) until libvirt has opened an agent
    /// connection (its log says "New agent") after byte `from` of its log:
    /// after [`Libvirtd::restart`], libvirtd reconnects to running domains
    /// in a thread of its own, and a command before that fails with "QEMU
    /// guest agent is not connected". Whether it did.
    pub fn wait_agent_connected(&self, from: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .agent_exchange(from)
                .0
                .iter()
                .any(|l| l.contains("New agent"))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Create a transient domain running `agent` (see [`Domain`]), paused
    /// until its serial console is connected, then resumed.
    pub fn create(&mut self, agent: AgentKind, name: &str) -> Domain {
        let assets = assets();
        let dir = self.dir.join(format!("domain-{name}"));
        fs::create_dir_all(&dir).expect("mkdir");
        let options = GuestOptions {
            scripts: vec![("/e2e/setup.sh".into(), guest_setup_script())],
            ..GuestOptions::default()
        };
        let initrd = guest_initrd(&dir, agent, &options);
        let disk = make_scratch_image(&dir, &ScratchDisk::default());
        let agent_socket = dir.join("qga.sock");
        let console_socket = dir.join("console.sock");
        let xml = domain_xml(
            name,
            &assets.qemu,
            &assets.vmlinuz,
            &initrd,
            &format!("console=ttyS0 quiet panic=-1 qga_e2e={}", agent.name()),
            &disk,
            &console_socket,
            &agent_socket,
        );
        let xml_path = dir.join("domain.xml");
        fs::write(&xml_path, xml).expect("write domain.xml");
        let created = self.virsh(&["create", "--paused", &xml_path.to_string_lossy()]);
        assert!(created.ok(), "virsh create: {}", created.summary());
        let console = Console::connect(&console_socket, &dir.join("console.log"));
        self.domains.push((name.to_string(), console.log.clone()));
        let resumed = self.virsh(&["resume", name]);
        assert!(resumed.ok(), "virsh resume: {}", resumed.summary());
        Domain {
            name: name.to_string(),
            agent,
            agent_socket,
            console,
            created: Instant::now(),
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            let (lines, _) = self.agent_exchange(0);
            let tail = lines.len().saturating_sub(200);
            eprintln!(
                "---- what libvirt exchanged with the agent ({}, last {} lines) ----\n{}\n\
                 ---- end ----",
                self.dir.join("log/libvirtd.log").display(),
                lines.len() - tail,
                lines[tail..].join("\n")
            );
            for (name, log) in &self.domains {
                let text = log.lock().map(|l| l.clone()).unwrap_or_default();
                eprintln!(
                    "---- console of domain {name} ----\n{}\n---- end of console ----",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        if self.child.is_some() {
            for (name, _) in &self.domains {
                let _ = self.virsh_within(&["destroy", name], Duration::from_secs(30));
            }
        }
        self.kill();
        // Whatever QEMU is left (the daemon was killed, or destroy failed).
        if let Ok(entries) = fs::read_dir(self.dir.join("run/qemu")) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "pid") {
                    if let Some(pid) = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok())
                    {
                        if Path::new(&format!("/proc/{pid}")).exists() {
                            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                        }
                    }
                }
            }
        }
        // Keep the directory (logs, console, images) of a failed test.
        if !failing {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The guest's `/e2e/setup.sh`: the scratch disk (mounted at
/// [`crate::linux_guest::SCRATCH_MOUNT`]), the host name, and the user
/// [`GUEST_USER`] (uid 1000) with an empty home.
fn guest_setup_script() -> String {
    format!(
        r#"{}
mkdir -p /etc /home/{GUEST_USER} /root
[ -e /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd
echo '{GUEST_USER}:x:1000:1000:e2e:/home/{GUEST_USER}:/bin/sh' >>/etc/passwd
echo 'root:x:0:' >/etc/group
echo '{GUEST_USER}:x:1000:' >>/etc/group
chown 1000:1000 /home/{GUEST_USER}
chmod 700 /home/{GUEST_USER}
hostname {GUEST_HOSTNAME}
"#,
        setup_script()
    )
}

/// Escape text for an XML attribute or element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// A transient domain as E2E-NOTES measured it: type `qemu` (TCG), q35,
/// direct kernel boot, the scratch disk as virtio-blk `vda`, the serial
/// console on a unix socket, and the agent channel
/// `org.qemu.guest_agent.0` (libvirt adds the virtio-serial controller)
/// with its host socket at `agent_socket`.
#[allow(clippy::too_many_arguments)]
fn domain_xml(
    name: &str,
    emulator: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    disk: &Path,
    console_socket: &Path,
    agent_socket: &Path,
) -> String {
    let p = |p: &Path| xml_escape(&p.to_string_lossy());
    format!(
        r#"<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='unix'>
      <source mode='bind' path='{console}'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <source mode='bind' path='{agent}'/>
      <target type='virtio' name='{PORT_NAME}'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
"#,
        name = xml_escape(name),
        kernel = p(kernel),
        initrd = p(initrd),
        cmdline = xml_escape(cmdline),
        emulator = p(emulator),
        disk = p(disk),
        console = p(console_socket),
        agent = p(agent_socket),
    )
}

/// A domain created by [`Libvirtd::create`].
pub struct Domain {
    /// Its libvirt name.
    pub name: String,
    /// Which agent runs inside.
    pub agent: AgentKind,
    /// The host end of the agent's channel (QEMU's socket; libvirt is its
    /// client while libvirtd runs).
    pub agent_socket: PathBuf,
    /// The guest's serial console.
    pub console: Console,
    /// When it was created.
    pub created: Instant,
}

/// The guest's serial console (QEMU's socket): everything the guest prints
/// is kept (and written to a log file); lines typed here reach the
/// initramfs's `/init`, which runs `e2e-run <shell command>`.
pub struct Console {
    stream: UnixStream,
    log: Arc<Mutex<Vec<u8>>>,
    _reader: JoinHandle<()>,
    runs: usize,
}

impl Console {
    /// Connect to the console socket (bounded) and start keeping its output.
    fn connect(socket: &Path, log_file: &Path) -> Console {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = crate::connect_until(socket, deadline, "the console");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut reader = stream.try_clone().expect("clone the console socket");
        let mut file = fs::File::create(log_file).expect("create the console log");
        let kept = log.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = file.write_all(&buf[..n]);
                        if let Ok(mut log) = kept.lock() {
                            log.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        Console {
            stream,
            log,
            _reader: reader,
            runs: 0,
        }
    }

    /// The console's complete lines so far (CR stripped).
    pub fn lines(&self) -> Vec<String> {
        let text = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    }

    /// Wait (at most `timeout`) until a console line satisfies `pred`;
    /// whether one did.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lines().iter().any(|l| pred(l)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type a line (the init understands `e2e-run <shell command>`).
    pub fn type_line(&mut self, line: &str) {
        assert!(!line.contains('\n'), "one line: {line:?}");
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the console");
    }

    /// Run a shell command in the guest and return its output (stdout and
    /// stderr), or `None` if it does not finish within `timeout`.
    pub fn shell(&mut self, command: &str, timeout: Duration) -> Option<String> {
        self.runs += 1;
        let prefix = format!("e2e-lv{}: ", self.runs);
        let end = format!("e2e-lv{}-end", self.runs);
        self.type_line(&format!(
            "e2e-run {{ {command} ; }} 2>&1 | sed 's/^/{prefix}/'; echo {end}"
        ));
        if !self.wait_line(timeout, |l| l == end) {
            return None;
        }
        Some(
            self.lines()
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|l| format!("{l}\n"))
                .collect(),
        )
    }
}
