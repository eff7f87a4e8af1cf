//! The bare-metal guests under QEMU: build an `agent-baremetal` guest
//! image for its target, boot it with several named virtio-serial ports
//! (the agent's among them, not first), and talk to the agent's port over
//! QEMU's unix-socket chardev.
//!
//! Each platform is an [`Arch`]: its QEMU, machine options, target, image
//! and virtio-serial device. Adding a platform means a variant here and
//! one `scenarios!` line in `tests/baremetal_e2e.rs`.
//!
//! Every wait is bounded; [`Guest`] kills QEMU on drop.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{scratch_dir, workspace_root, Conn};

/// The agent's port name.
pub const AGENT_PORT: &str = "org.qemu.guest_agent.0";
/// The other ports' names (discovery must pick the agent's by name).
pub const OTHER_PORTS: [&str; 2] = ["org.example.other", "org.example.spare"];

/// The host name the images are built with (`QGA_GUEST_HOST_NAME`), which
/// `guest-get-host-name` reports.
pub const HOST_NAME: &str = "qga-rs-e2e";

const SETUP_HINT: &str =
    "run `bash scripts/e2e-setup.sh` to install QEMU, its firmware and the bare-metal targets";

/// A platform the bare-metal guest runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// `qemu-system-riscv64 -machine virt`, OpenSBI, virtio-mmio:
    /// `agent-baremetal`'s `virt-guest`.
    Riscv64Virt,
}

impl Arch {
    /// The emulator.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "qemu-system-riscv64",
        }
    }

    /// The Rust target of the image.
    pub fn target(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "riscv64gc-unknown-none-elf",
        }
    }

    /// The `agent-baremetal` binary that is the image.
    pub fn bin(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "virt-guest",
        }
    }

    /// `uname -m` of the platform, as `guest-get-osinfo` reports it.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "riscv64",
        }
    }

    /// Machine, firmware and kernel options, up to the devices.
    fn machine_args(self, image: &Path) -> Vec<String> {
        let mut args: Vec<String> = match self {
            Arch::Riscv64Virt => [
                "-machine", "virt", "-accel", "tcg", "-m", "128M", "-smp", "1", "-bios", "default",
            ]
            .map(String::from)
            .to_vec(),
        };
        args.push("-kernel".into());
        args.push(image.display().to_string());
        args
    }

    /// The virtio-serial controller's `-device` value.
    fn serial_device(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "virtio-serial-device,id=vser0",
        }
    }

    /// The guest image, built once per test process and platform with the
    /// cargo that runs the tests.
    pub fn image(self) -> PathBuf {
        static IMAGES: Mutex<Vec<(Arch, PathBuf)>> = Mutex::new(Vec::new());
        let mut images = IMAGES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, path)) = images.iter().find(|(arch, _)| *arch == self) {
            return path.clone();
        }
        let path = build_image(self.target(), self.bin());
        images.push((self, path.clone()));
        path
    }

    /// Fail with the set-up hint unless the platform's QEMU is installed.
    pub fn require_qemu(self) {
        let found = Command::new(self.qemu())
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{} not found: {SETUP_HINT}", self.qemu());
    }
}

/// `cargo build` an agent-baremetal guest binary (release, feature
/// defmt) for `target`; its path.
fn build_image(target: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "agent-baremetal",
            "--features",
            "defmt",
        ])
        .args(["--bin", bin, "--target", target, "--release"])
        .env("QGA_GUEST_HOST_NAME", HOST_NAME)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build of {bin} for {target} failed ({SETUP_HINT}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || workspace_root().join("target"),
            |dir| workspace_root().join(dir),
        );
    target_dir.join(target).join("release").join(bin)
}

/// How to boot a guest.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Boot arguments (`-append`), e.g. `qga.wait=poll`.
    pub append: Option<String>,
    /// Whether a reset ends QEMU (`-no-reboot`) instead of rebooting.
    pub no_reboot: bool,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            append: None,
            no_reboot: true,
        }
    }
}

/// A running guest: QEMU with a virtconsole (port 0, no host side) and
/// three named virtserialports, the agent's second, each on a unix
/// socket; killed on drop.
pub struct Guest {
    child: Child,
    /// The platform.
    pub arch: Arch,
    /// When QEMU was started.
    pub started: Instant,
    /// The agent's socket.
    pub socket: PathBuf,
    /// The other named ports' sockets.
    pub other_sockets: Vec<PathBuf>,
    /// The serial line's bytes (firmware text, then the guest's log).
    pub serial_log: PathBuf,
    /// The image booted.
    pub image: PathBuf,
}

impl Guest {
    /// Build the image (once), boot it with `-no-reboot`, and wait for
    /// QEMU's sockets.
    pub fn boot(arch: Arch, name: &str) -> Guest {
        Self::boot_with(arch, name, &Boot::default())
    }

    /// [`boot`](Self::boot) with options.
    pub fn boot_with(arch: Arch, name: &str, boot: &Boot) -> Guest {
        let image = arch.image();
        arch.require_qemu();
        let dir = scratch_dir(&format!("baremetal-{arch:?}-{name}"));
        let socket = dir.join("qga.sock");
        let other_sockets: Vec<PathBuf> = (0..OTHER_PORTS.len())
            .map(|i| dir.join(format!("other{i}.sock")))
            .collect();
        let serial_log = dir.join("serial.log");
        let stderr = std::fs::File::create(dir.join("qemu.stderr")).expect("create stderr log");
        let chardev = |id: &str, path: &Path| {
            format!("socket,path={},server=on,wait=off,id={id}", path.display())
        };
        let mut qemu = Command::new(arch.qemu());
        qemu.args(arch.machine_args(&image))
            .args(["-nographic", "-monitor", "none", "-nodefaults"])
            .arg("-serial")
            .arg(format!("file:{}", serial_log.display()));
        if boot.no_reboot {
            qemu.arg("-no-reboot");
        }
        if let Some(append) = &boot.append {
            qemu.args(["-append", append]);
        }
        qemu.args(["-device", arch.serial_device()])
            // Port 0: a console without a host side.
            .args(["-chardev", "null,id=con0"])
            .args(["-device", "virtconsole,bus=vser0.0,chardev=con0,nr=0"])
            // The agent's port between two others, so it is neither the
            // first nor the last.
            .args(["-chardev", &chardev("other0", &other_sockets[0])])
            .args([
                "-device",
                &format!(
                    "virtserialport,bus=vser0.0,chardev=other0,name={}",
                    OTHER_PORTS[0]
                ),
            ])
            .args(["-chardev", &chardev("qga0", &socket)])
            .args([
                "-device",
                &format!("virtserialport,bus=vser0.0,chardev=qga0,name={AGENT_PORT}"),
            ])
            .args(["-chardev", &chardev("other1", &other_sockets[1])])
            .args([
                "-device",
                &format!(
                    "virtserialport,bus=vser0.0,chardev=other1,name={}",
                    OTHER_PORTS[1]
                ),
            ]);
        let started = Instant::now();
        let child = qemu
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e} ({SETUP_HINT})", arch.qemu()));
        let mut guest = Guest {
            child,
            arch,
            started,
            socket,
            other_sockets,
            serial_log,
            image,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(guest.socket.exists() && guest.other_sockets.iter().all(|s| s.exists())) {
            if let Some(status) = guest.child.try_wait().expect("poll qemu") {
                panic!(
                    "{} exited with {status}:\n{}",
                    arch.qemu(),
                    guest.qemu_stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not create its sockets:\n{}",
                arch.qemu(),
                guest.qemu_stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        guest
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A raw connection to the agent's port.
    pub fn stream(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).expect("connect to the agent's port");
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .expect("set write timeout");
        stream
    }

    /// A client connection to the agent's port (10 s read time-out).
    pub fn connect(&self) -> Conn {
        Conn::new(self.stream())
    }

    /// The serial line's bytes so far.
    pub fn serial(&self) -> Vec<u8> {
        std::fs::read(&self.serial_log).unwrap_or_default()
    }

    /// What QEMU printed on stderr.
    pub fn qemu_stderr(&self) -> String {
        let path = self.serial_log.with_file_name("qemu.stderr");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Wait up to `timeout` for QEMU to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll qemu") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll qemu").is_none()
    }

    /// CPU time QEMU has used so far, all threads: the first field of
    /// each `/proc/<pid>/task/*/schedstat` (ns on a CPU).
    pub fn cpu_time(&self) -> Duration {
        let tasks =
            std::fs::read_dir(format!("/proc/{}/task", self.pid())).expect("list QEMU's threads");
        let ns: u64 = tasks
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Duration::from_nanos(ns)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The guests' log banner: the text line before the defmt frames
/// (`agent_baremetal::guest::log::LOG_BANNER`).
pub const LOG_BANNER: &[u8] = b"qga-rs guest: the log below is defmt frames";

/// Split a serial line into the boots it holds: per boot, the firmware
/// text before the guest's banner and the guest's defmt frames (every
/// byte after the banner's zero byte up to and including the last zero
/// byte before the next boot's firmware text).
pub fn split_boots(serial: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut boots = Vec::new();
    let mut rest = serial;
    while let Some(at) = find(rest, LOG_BANNER) {
        let text = rest[..at].to_vec();
        let after = &rest[at..];
        // The banner line ends with a zero byte: frames follow it.
        let Some(zero) = after.iter().position(|&b| b == 0) else {
            boots.push((text, Vec::new()));
            break;
        };
        let frames_and_more = &after[zero + 1..];
        let next = find(frames_and_more, LOG_BANNER).unwrap_or(frames_and_more.len());
        let segment = &frames_and_more[..next];
        // Frames end with a zero byte; what follows the last one is the
        // next boot's firmware text.
        let end = segment.iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
        boots.push((text, segment[..end].to_vec()));
        rest = &frames_and_more[end..];
    }
    boots
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
