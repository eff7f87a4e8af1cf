//! Helpers for the deployment tests (`tests/tests/deploy_e2e.rs`): a real
//! Debian guest with systemd and udev, the Debian package of
//! `guest-agent`, and the host's three ways into the guest.
//!
//! * **Images.** `scripts/debian-image.sh` debootstraps Debian
//!   ([`SUITE`], [`PACKAGES`]) from the machine's own apt mirror
//!   ([`apt_mirror`]) and makes two ext4 images with `mkfs.ext4 -d`:
//!   `base.ext4`, and `qemu-ga.ext4` with Debian's qemu-guest-agent and
//!   [`QGA_CONF`] as `/etc/qemu/qemu-ga.conf`. [`images`] caches them
//!   under `target/e2e/debian/<key>/`, the key being a hash of the
//!   script's text, the suite, the mirror, the package list, the
//!   configuration and the kernel version, and removes images of other
//!   keys.
//! * **Boot.** Debian's kernel (`target/e2e/kernel`, as the other guests)
//!   with a busybox initramfs that loads virtio-pci, virtio-blk and ext4,
//!   mounts `/dev/vda` read-only and `switch_root`s to systemd. Nothing
//!   else is prepared: the guest's udev loads `virtio_console` from the
//!   image's modules, names the ports, and systemd starts what the rules
//!   want. Each guest boots a copy of an image ([`DebianGuest::disk_from`]),
//!   which a second boot may reuse.
//! * **Channels.** The agent's port `org.qemu.guest_agent.0` (QEMU's
//!   chardev socket, spoken to with [`HostConn`]); the control port
//!   `org.e2e.control`, served by a unit the image adds
//!   ([`DebianGuest::sh`]: run a shell command, get its output and
//!   status); QEMU's QMP socket ([`DebianGuest::qmp`]) for hot-plug. A
//!   second virtio disk (serial `e2e-pkg`, read-only) carries the package.
//!
//! Every wait is bounded; QEMU is killed on drop, which also prints the
//! console log when the test is failing.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::linux_guest::{
    assets, cpio_of, install, module_bytes, run_tool, static_agent_bin, target_dir, write_exec,
    HostConn, PORT_NAME,
};
use crate::qmp::{Lines, Qmp};
use crate::{scratch_dir, workspace_root};

/// The Debian release the images are built from.
pub const SUITE: &str = "bookworm";

/// What debootstrap installs besides `minbase`: an init, a device
/// manager and module loading.
pub const PACKAGES: &str = "systemd,systemd-sysv,udev,kmod";

/// The qemu-ga configuration file of the `qemu-ga.ext4` image, as a user
/// of Debian's qemu-guest-agent might have written it.
pub const QGA_CONF: &str = "# /etc/qemu/qemu-ga.conf\n\
[general]\n\
block-rpcs=guest-get-memory-blocks,guest-set-vcpus\n";

/// The commands [`QGA_CONF`] disables.
pub const BLOCKED_BY_CONF: [&str; 2] = ["guest-get-memory-blocks", "guest-set-vcpus"];

/// The control port's name.
pub const CONTROL_PORT: &str = "org.e2e.control";

/// The agent port's QEMU device id (for `device_del`).
pub const AGENT_PORT_ID: &str = "qga-port";

/// The agent port's path in the guest, made by udev.
pub const AGENT_PORT_PATH: &str = "/dev/virtio-ports/org.qemu.guest_agent.0";

const SETUP_HINT: &str = "run `bash scripts/e2e-setup.sh` first";

/// The kernel modules the initramfs loads to mount the root disk, in
/// this order (`virtio_console` is left to the guest's udev).
const ROOT_MODULES: [&str; 11] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "crc16",
    "crc32c_generic",
    "mbcache",
    "jbd2",
    "ext4",
    "virtio_blk",
];

/// The first `URIs:` of the machine's apt sources
/// (`/etc/apt/sources.list.d/debian.sources`), else the first `deb` line
/// of `/etc/apt/sources.list`: the mirror this machine may reach.
pub fn apt_mirror() -> String {
    let sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let deb822 = sources.lines().find_map(|l| {
        let uris = l.trim().strip_prefix("URIs:")?;
        uris.split_whitespace().next().map(str::to_string)
    });
    let list = || {
        let text = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
        text.lines().find_map(|l| {
            let rest = l.trim().strip_prefix("deb ")?.trim_start();
            // `deb [option=value ...] URI suite components`
            let rest = match rest.strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            rest.split_whitespace().next().map(str::to_string)
        })
    };
    deb822
        .or_else(list)
        .expect("no apt mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list")
}

/// The SHA-256 of `data`, in hex (coreutils' `sha256sum`).
fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    assert!(out.status.success(), "sha256sum failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// The two guest images (see the module documentation).
#[derive(Debug)]
pub struct Images {
    /// Debian with systemd and udev, no guest agent.
    pub base: PathBuf,
    /// The same with Debian's qemu-guest-agent and [`QGA_CONF`].
    pub qemu_ga: PathBuf,
    /// How long building them took, if this process built them.
    pub built_in: Option<Duration>,
}

/// The images, built by `scripts/debian-image.sh` on first use and cached
/// under `target/e2e/debian/<key>/` (the build holds `flock` on
/// `target/e2e/debian/.lock`, so concurrent test processes build once).
pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let assets = assets();
        let script = workspace_root().join("scripts/debian-image.sh");
        let script_text = fs::read(&script).expect("read scripts/debian-image.sh");
        let mirror = apt_mirror();
        let key_material = format!(
            "script {}\nsuite {SUITE}\nmirror {mirror}\npackages {PACKAGES}\nkernel {}\nconf {QGA_CONF}",
            sha256_hex(&script_text),
            assets.kernel_version
        );
        let key = sha256_hex(key_material.as_bytes());
        let key = &key[..16];
        let base = target_dir().join("e2e/debian");
        let dir = base.join(key);
        fs::create_dir_all(&base).expect("mkdir target/e2e/debian");
        let images = Images {
            base: dir.join("base.ext4"),
            qemu_ga: dir.join("qemu-ga.ext4"),
            built_in: None,
        };
        if images.qemu_ga.is_file() {
            eprintln!("debian images: cached in {}", dir.display());
            return images;
        }
        let conf = base.join(format!("qemu-ga.conf.{}", std::process::id()));
        fs::write(&conf, QGA_CONF).expect("write qemu-ga.conf");
        let started = Instant::now();
        let status = Command::new("flock")
            .arg(base.join(".lock"))
            .arg("bash")
            .arg(&script)
            .arg(&dir)
            .arg(workspace_root().join("target/e2e/kernel"))
            .args([SUITE, &mirror, PACKAGES])
            .arg(&conf)
            .status()
            .unwrap_or_else(|e| panic!("run flock bash {}: {e} ({SETUP_HINT})", script.display()));
        let _ = fs::remove_file(&conf);
        assert!(
            status.success(),
            "scripts/debian-image.sh failed ({status}); needs root, debootstrap and e2fsprogs: \
             {SETUP_HINT}"
        );
        let built_in = started.elapsed();
        eprintln!(
            "debian images: built in {:.1} s into {}",
            built_in.as_secs_f64(),
            dir.display()
        );
        // Images of other keys are stale.
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name();
                if e.path().is_dir() && name != *key && !name.to_string_lossy().ends_with(".tmp") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Images {
            built_in: Some(built_in),
            ..images
        }
    })
}

/// The Debian package, built once per test process by
/// `scripts/package-deb.sh` (which builds the static agent, as
/// [`static_agent_bin`] does).
pub fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        static_agent_bin();
        let out = Command::new("bash")
            .arg(workspace_root().join("scripts/package-deb.sh"))
            .current_dir(workspace_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/package-deb.sh");
        assert!(out.status.success(), "scripts/package-deb.sh failed");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let path = workspace_root().join(path);
        assert!(path.is_file(), "no package at {}", path.display());
        path
    })
}

/// The initramfs that mounts the root disk and starts the image's
/// systemd, built once per test process.
fn initramfs() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        let assets = assets();
        let dir = scratch_dir("debian-initramfs");
        let root = dir.join("root");
        for d in ["bin", "proc", "sys", "dev", "newroot", "lib/modules"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        install(&assets.busybox, &root, "/bin/busybox");
        let known: Vec<(&str, &Path)> = crate::linux_guest::MODULES
            .iter()
            .copied()
            .zip(assets.modules.iter().map(PathBuf::as_path))
            .chain(assets.disk_modules.iter().map(|(n, p)| (*n, p.as_path())))
            .collect();
        for name in ROOT_MODULES {
            let (_, path) = known
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("kernel module {name} not found: {SETUP_HINT}"));
            fs::write(
                root.join(format!("lib/modules/{name}.ko")),
                module_bytes(path),
            )
            .expect("write module");
        }
        let modules = ROOT_MODULES.join(" ");
        write_exec(
            &root.join("init"),
            &format!(
                r#"#!/bin/busybox sh
# Mount the root disk read-only, as Debian's initramfs does, and hand over
# to its systemd.
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
  insmod /lib/modules/$m.ko || echo "initramfs: insmod $m failed"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 1500 ]; do usleep 20000; n=$((n+1)); done
if ! mount -t ext4 -o ro /dev/vda /newroot; then
  echo "initramfs: cannot mount /dev/vda"
  poweroff -f
fi
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
"#
            ),
        );
        let cpio = dir.join("initramfs.cpio");
        cpio_of(&root, &cpio);
        let _ = fs::remove_dir_all(&root);
        cpio
    })
}

/// One guest at a time: guests share two CPUs, and the readiness figures
/// are only comparable without a second guest running.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A command's result in the guest.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit status.
    pub status: i32,
    /// Its standard output and error, interleaved, one `\n` per line.
    pub text: String,
}

/// The control channel: lines `TAG COMMAND` out, `TAG: LINE` and
/// `TAG-end STATUS` back (see `scripts/debian-image.sh`).
struct Control {
    lines: Lines,
    runs: u64,
}

impl Control {
    /// Run `command`; `None` if it does not finish within `timeout` or
    /// QEMU closes the socket.
    fn run(&mut self, command: &str, timeout: Duration) -> Option<Output> {
        assert!(!command.contains('\n'), "one line: {command:?}");
        self.runs += 1;
        let tag = format!("c{}", self.runs);
        self.lines.send(format!("{tag} {command}\n").as_bytes());
        let deadline = Instant::now() + timeout;
        let prefix = format!("{tag}: ");
        let end = format!("{tag}-end ");
        let mut text = String::new();
        loop {
            let line = self.lines.next(deadline)?;
            let line = String::from_utf8_lossy(&line);
            if let Some(rest) = line.strip_prefix(&prefix) {
                text.push_str(rest);
                text.push('\n');
            } else if let Some(status) = line.strip_prefix(&end) {
                let status = status.trim().parse().expect("an exit status");
                return Some(Output { status, text });
            }
        }
    }
}

/// A booted Debian guest: QEMU running, killed on drop.
pub struct DebianGuest {
    child: Option<Child>,
    /// A name for messages (and the guest's host directory).
    pub name: String,
    /// When QEMU was started.
    pub started: Instant,
    /// The root disk image (a copy of an [`Images`] image).
    pub disk: PathBuf,
    /// The host end of the agent's port.
    pub agent_socket: PathBuf,
    /// The serial console log.
    pub console: PathBuf,
    control_socket: PathBuf,
    control: Option<Control>,
    qmp_socket: PathBuf,
    qmp: Option<Qmp>,
    /// Remove [`DebianGuest::disk`] when dropped (unless the test failed).
    pub remove_disk: bool,
}

/// How long a guest may take to boot to its control channel: a systemd
/// boot under TCG on a shared 2-core machine (about 10 s alone here).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

impl DebianGuest {
    /// A fresh copy of `image` (sparse) in a scratch directory named
    /// `name`, to boot with [`DebianGuest::boot`].
    pub fn disk_from(image: &Path, name: &str) -> PathBuf {
        let dir = scratch_dir(name);
        let disk = dir.join("root.ext4");
        run_tool(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(image)
                .arg(&disk),
        );
        disk
    }

    /// Boot `disk` (root file system, read-write) with the Debian package
    /// on a second, read-only disk (serial `e2e-pkg`).
    pub fn boot(disk: &Path, name: &str) -> DebianGuest {
        DebianGuest::boot_with(disk, name, "")
    }

    /// [`DebianGuest::boot`] with `append` added to the kernel command
    /// line (`e2e.slow_sysinit=SECONDS` holds `sysinit.target` that long:
    /// `scripts/debian-image.sh`).
    pub fn boot_with(disk: &Path, name: &str, append: &str) -> DebianGuest {
        let assets = assets();
        let dir = disk.parent().expect("a directory").join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        let pkg_root = dir.join("pkg");
        fs::create_dir_all(&pkg_root).expect("mkdir");
        let deb = package();
        fs::copy(deb, pkg_root.join("guest-agent.deb")).expect("copy the package");
        let pkg_disk = dir.join("pkg.ext4");
        run_tool(
            Command::new("mkfs.ext4")
                .args(["-F", "-q", "-d"])
                .arg(&pkg_root)
                .arg(&pkg_disk)
                .arg("16M"),
        );
        let agent_socket = dir.join("qga.sock");
        let control_socket = dir.join("control.sock");
        let qmp_socket = dir.join("qmp.sock");
        let console = dir.join("console.log");
        let log = File::create(&console).expect("create console log");
        let mut drive_root = std::ffi::OsString::from("file=");
        drive_root.push(disk);
        drive_root.push(",format=raw,if=none,id=root,cache=unsafe");
        let mut drive_pkg = std::ffi::OsString::from("file=");
        drive_pkg.push(&pkg_disk);
        drive_pkg.push(",format=raw,if=none,id=pkg,readonly=on");
        let chardev = |id: &str, path: &Path| {
            let mut c = std::ffi::OsString::from("socket,path=");
            c.push(path);
            c.push(format!(",server=on,wait=off,id={id}"));
            c
        };
        let mut qmp = std::ffi::OsString::from("unix:");
        qmp.push(&qmp_socket);
        qmp.push(",server=on,wait=off");
        let started = Instant::now();
        let child = Command::new(&assets.qemu)
            .args([
                "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
            ])
            .args([
                "-m",
                "512M",
                "-display",
                "none",
                "-no-reboot",
                "-nodefaults",
            ])
            .args(["-serial", "stdio", "-monitor", "none", "-qmp"])
            .arg(qmp)
            .arg("-kernel")
            .arg(&assets.vmlinuz)
            .arg("-initrd")
            .arg(initramfs())
            .arg("-append")
            .arg(format!("console=ttyS0 root=/dev/vda ro panic=-1 {append}"))
            .arg("-drive")
            .arg(drive_root)
            .args(["-device", "virtio-blk-pci,drive=root"])
            .arg("-drive")
            .arg(drive_pkg)
            .args(["-device", "virtio-blk-pci,drive=pkg,serial=e2e-pkg"])
            .args(["-device", "virtio-serial-pci,id=vser0", "-chardev"])
            .arg(chardev("qga0", &agent_socket))
            .arg("-device")
            .arg(format!(
                "virtserialport,bus=vser0.0,chardev=qga0,name={PORT_NAME},id={AGENT_PORT_ID}"
            ))
            .arg("-chardev")
            .arg(chardev("ctl0", &control_socket))
            .arg("-device")
            .arg(format!(
                "virtserialport,bus=vser0.0,chardev=ctl0,name={CONTROL_PORT}"
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} ({SETUP_HINT})", assets.qemu.display()));
        DebianGuest {
            child: Some(child),
            name: name.to_string(),
            started,
            disk: disk.to_path_buf(),
            agent_socket,
            console,
            control_socket,
            control: None,
            qmp_socket,
            qmp: None,
            remove_disk: true,
        }
    }

    /// The console output so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Panics if QEMU has exited.
    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("QEMU ({}) exited unexpectedly: {status}", self.name);
            }
        }
    }

    /// Connect to a QEMU socket, waiting at most `timeout` for it.
    fn connect_socket(&mut self, path: &Path, timeout: Duration) -> UnixStream {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => return stream,
                Err(e) => {
                    self.assert_running();
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to {}: {e}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// A host connection to the agent's port (bytes sent before an agent
    /// opens the port wait in QEMU).
    pub fn agent(&mut self, timeout: Duration) -> HostConn {
        let path = self.agent_socket.clone();
        HostConn::new(self.connect_socket(&path, timeout))
    }

    /// Wait (at most `timeout`) until the control channel answers; the
    /// time from QEMU's start.
    pub fn wait_control(&mut self, timeout: Duration) -> Duration {
        if self.control.is_none() {
            let path = self.control_socket.clone();
            let stream = self.connect_socket(&path, timeout);
            self.control = Some(Control {
                lines: Lines::new(stream),
                runs: 0,
            });
        }
        let control = self.control.as_mut().expect("control");
        let ready = control.run("true", timeout);
        assert!(
            ready.is_some_and(|o| o.status == 0),
            "no answer on the control port within {timeout:?}"
        );
        self.started.elapsed()
    }

    /// Run a shell command in the guest (as root, through the control
    /// port); panics if it does not finish within `timeout`.
    pub fn sh(&mut self, command: &str, timeout: Duration) -> Output {
        if self.control.is_none() {
            self.wait_control(BOOT_TIMEOUT);
        }
        let control = self.control.as_mut().expect("control");
        let out = control.run(command, timeout);
        if out.is_none() {
            self.assert_running();
        }
        out.unwrap_or_else(|| panic!("`{command}` did not finish within {timeout:?}"))
    }

    /// [`DebianGuest::sh`] with a 60 s limit that must exit 0; its output.
    pub fn sh_ok(&mut self, command: &str) -> String {
        let out = self.sh(command, Duration::from_secs(60));
        assert_eq!(
            out.status, 0,
            "`{command}` failed in the guest: {}",
            out.text
        );
        out.text
    }

    /// Wait (at most `timeout`, polling every 100 ms) until `command`'s
    /// output, trimmed, is `want`; the last output otherwise.
    pub fn sh_until(&mut self, command: &str, want: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.sh(command, Duration::from_secs(60));
            let text = out.text.trim().to_string();
            if text == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A QMP command; `Err` holds QMP's error object.
    pub fn qmp(&mut self, execute: &str, arguments: Option<Value>) -> Result<Value, Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        if self.qmp.is_none() {
            self.assert_running();
            self.qmp = Some(Qmp::connect(&self.qmp_socket, deadline));
        }
        self.qmp
            .as_mut()
            .expect("qmp")
            .execute(execute, arguments, deadline)
    }

    /// Wait (at most `timeout`) for the QMP event `name`.
    pub fn qmp_event(&mut self, name: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        self.qmp
            .as_mut()
            .expect("QMP connected")
            .wait_event(name, deadline)
    }

    /// Shut the guest down cleanly (`systemctl poweroff`) and wait at most
    /// `timeout` for QEMU to exit.
    pub fn poweroff(&mut self, timeout: Duration) -> ExitStatus {
        let control = self.control.as_mut().expect("control");
        // The command's answer may not come: the guest is going down.
        let _ = control.run(
            "sync; systemctl --no-block poweroff",
            Duration::from_secs(30),
        );
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("QEMU is running");
        loop {
            if let Some(status) = child.try_wait().expect("wait for QEMU") {
                return status;
            }
            if Instant::now() >= deadline {
                self.child = Some(child);
                panic!("{} did not power off within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DebianGuest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- console of {} ({}) ----\n{}\n---- end of console ----",
                self.name,
                self.console.display(),
                self.console_text()
            );
        } else if self.remove_disk {
            let _ = fs::remove_file(&self.disk);
        }
    }
}

/// Decode standard base64 (the agents' `buf-b64`).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.trim_end_matches('=').as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// One reading of the guest's `CLOCK_MONOTONIC` against the host's
/// clock: the guest's `/proc/timer_list` ("now at N nsecs") read through
/// the agent between two host instants.
#[derive(Clone, Copy, Debug)]
pub struct ClockPair {
    /// The host instant halfway through the read.
    pub host: Instant,
    /// The guest's monotonic clock then, in seconds.
    pub guest_s: f64,
    /// The read's round trip: the pairing is exact to half of it.
    pub round_trip: Duration,
}

impl ClockPair {
    /// The best of three readings (shortest round trip) through `conn`,
    /// a synced connection to an agent (ours or qemu-ga).
    pub fn read(conn: &mut HostConn) -> ClockPair {
        let mut best: Option<ClockPair> = None;
        for _ in 0..3 {
            let handle = conn.call_ok("guest-file-open", Some(r#"{"path": "/proc/timer_list"}"#));
            let args = format!(r#"{{"handle": {}, "count": 4096}}"#, handle.trim());
            let t0 = Instant::now();
            let read = conn.call_ok("guest-file-read", Some(&args));
            let t1 = Instant::now();
            conn.call_ok(
                "guest-file-close",
                Some(&format!(r#"{{"handle": {}}}"#, handle.trim())),
            );
            let read: Value = serde_json::from_str(&read).expect("guest-file-read's JSON");
            let data = base64_decode(read["buf-b64"].as_str().expect("buf-b64"));
            let text = String::from_utf8_lossy(&data);
            let ns: u64 = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("now at ")?
                        .strip_suffix(" nsecs")?
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("no 'now at' in /proc/timer_list: {text:?}"));
            let pair = ClockPair {
                host: t0 + (t1 - t0) / 2,
                guest_s: ns as f64 / 1e9,
                round_trip: t1 - t0,
            };
            if best.is_none_or(|b| pair.round_trip < b.round_trip) {
                best = Some(pair);
            }
        }
        best.expect("a reading")
    }

    /// A guest monotonic time (seconds) as seconds after `origin` on the
    /// host's clock.
    pub fn host_seconds_after(&self, origin: Instant, guest_s: f64) -> f64 {
        let mid = self.host.duration_since(origin).as_secs_f64();
        mid + (guest_s - self.guest_s)
    }
}
