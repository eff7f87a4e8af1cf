//! The bare-metal guests under QEMU: build an `agent-baremetal` guest
//! image for its target, boot it with virtio-serial devices carrying
//! several named ports (the agent's among them, not first), talk to the
//! agent's port over QEMU's unix-socket chardev, and watch the machine
//! through QMP (why QEMU stopped, whether it runs).
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

use serde_json::Value;

use crate::linux_guest::target_dir;
use crate::qmp::Qmp;
use crate::{scratch_dir, workspace_root, Conn};

/// The agent's port name.
pub const AGENT_PORT: &str = "org.qemu.guest_agent.0";
/// The other ports' names in the standard layout (discovery must pick
/// the agent's by name).
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
    /// `qemu-system-x86_64 -machine q35`, SeaBIOS (or qboot) and PVH,
    /// virtio-pci: `agent-baremetal`'s `q35-guest`.
    X86_64Q35,
}

impl Arch {
    /// The emulator.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "qemu-system-riscv64",
            Arch::X86_64Q35 => "qemu-system-x86_64",
        }
    }

    /// The Rust target of the image.
    pub fn target(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "riscv64gc-unknown-none-elf",
            Arch::X86_64Q35 => "x86_64-unknown-none",
        }
    }

    /// The `agent-baremetal` binary that is the image.
    pub fn bin(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "virt-guest",
            Arch::X86_64Q35 => "q35-guest",
        }
    }

    /// `uname -m` of the platform, as `guest-get-osinfo` reports it.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::Riscv64Virt => "riscv64",
            Arch::X86_64Q35 => "x86_64",
        }
    }

    /// The exit status of QEMU when the guest fails with `code`
    /// (`agent_baremetal::guest::exit`): the sifive_test device exits with
    /// the code, q35's isa-debug-exit with `(code << 1) | 1`.
    pub fn fail_status(self, code: i32) -> i32 {
        match self {
            Arch::Riscv64Virt => code,
            Arch::X86_64Q35 => (code << 1) | 1,
        }
    }

    /// Machine, firmware and kernel options, up to the devices.
    fn machine_args(self, image: &Path, boot: &Boot) -> Vec<String> {
        let mut args: Vec<String> = match self {
            Arch::Riscv64Virt => [
                "-machine", "virt", "-accel", "tcg", "-m", "128M", "-smp", "1", "-bios", "default",
            ]
            .map(String::from)
            .to_vec(),
            Arch::X86_64Q35 => [
                "-machine",
                "q35",
                "-accel",
                "tcg",
                "-m",
                "128M",
                "-smp",
                "1",
                // A failed guest makes QEMU exit with (code << 1) | 1.
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ]
            .map(String::from)
            .to_vec(),
        };
        match boot.firmware {
            Firmware::Default => {}
            Firmware::Qboot => {
                assert_eq!(self, Arch::X86_64Q35, "qboot is x86 firmware");
                args.extend(["-bios".into(), "qboot.rom".into()]);
            }
        }
        if boot.high_bars {
            assert_eq!(self, Arch::X86_64Q35, "a PCI layout");
            args.extend(
                [
                    "-object",
                    "memory-backend-ram,id=big,size=1G",
                    "-device",
                    "ivshmem-plain,memdev=big",
                ]
                .map(String::from),
            );
        }
        args.push("-kernel".into());
        args.push(image.display().to_string());
        args
    }

    /// The `-device` value of virtio-serial controller `id` at `slot`.
    fn serial_device(self, id: &str, slot: Slot) -> String {
        match (self, slot) {
            (Arch::Riscv64Virt, Slot::Root) => format!("virtio-serial-device,id={id}"),
            (Arch::X86_64Q35, Slot::Root) => format!("virtio-serial-pci,id={id}"),
            (Arch::X86_64Q35, Slot::RootPort(port)) => {
                format!("virtio-serial-pci,id={id},bus={port}")
            }
            (Arch::Riscv64Virt, Slot::RootPort(_)) => panic!("no PCI on riscv64 virt here"),
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
    target_dir().join(target).join("release").join(bin)
}

/// The firmware QEMU runs before the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// The machine's default: OpenSBI on riscv64 `virt`, SeaBIOS on q35
    /// (which assigns every PCI BAR).
    Default,
    /// q35 only: qboot (`-bios qboot.rom`), which numbers the PCI buses
    /// and assigns no BARs.
    Qboot,
}

/// Where a virtio-serial controller sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// On the root bus (riscv64: a virtio-mmio slot).
    Root,
    /// q35 only: behind the PCIe root port with this id (created with
    /// it), as libvirt places devices.
    RootPort(&'static str),
}

/// One port of a virtio-serial controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Port {
    /// A `virtconsole` at port 0 with no host side (a null chardev).
    Console,
    /// A `virtserialport` with this name, on a unix socket.
    Named(String),
}

/// A virtio-serial controller and its ports, in the order QEMU gets them
/// (QEMU numbers a virtconsole 0 and virtserialports from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Where it sits.
    pub slot: Slot,
    /// Its ports.
    pub ports: Vec<Port>,
}

impl Device {
    /// A controller at `slot` with named ports `names`.
    pub fn named(slot: Slot, names: &[&str]) -> Device {
        Device {
            slot,
            ports: names.iter().map(|n| Port::Named(n.to_string())).collect(),
        }
    }

    /// The standard layout: a console at port 0, then the agent's port
    /// between two others, so it is neither the first nor the last
    /// (ports 1, 2 and 3: the agent's is 2).
    pub fn standard() -> Device {
        let mut device = Device::named(Slot::Root, &[OTHER_PORTS[0], AGENT_PORT, OTHER_PORTS[1]]);
        device.ports.insert(0, Port::Console);
        device
    }
}

/// How to boot a guest.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Boot arguments (`-append`), e.g. `qga.wait=poll`.
    pub append: Option<String>,
    /// Whether a reset ends QEMU (`-no-reboot`) instead of rebooting.
    pub no_reboot: bool,
    /// The virtio-serial controllers.
    pub devices: Vec<Device>,
    /// The firmware.
    pub firmware: Firmware,
    /// q35 only: a 1 GiB 64-bit BAR (ivshmem) that makes SeaBIOS place
    /// every 64-bit BAR above 4 GiB.
    pub high_bars: bool,
}

impl Default for Boot {
    fn default() -> Self {
        Boot {
            append: None,
            no_reboot: true,
            devices: vec![Device::standard()],
            firmware: Firmware::Default,
            high_bars: false,
        }
    }
}

/// A running guest: QEMU with the devices of its [`Boot`], each named
/// port on a unix socket, QMP on another; killed on drop.
pub struct Guest {
    child: Child,
    /// The platform.
    pub arch: Arch,
    /// When QEMU was started.
    pub started: Instant,
    /// The agent's socket (a path nothing listens on if no port has the
    /// agent's name).
    pub socket: PathBuf,
    /// Every named port's socket: (name, path).
    pub sockets: Vec<(String, PathBuf)>,
    /// The serial line's bytes (firmware text, then the guest's log).
    pub serial_log: PathBuf,
    /// QMP's socket.
    pub qmp_socket: PathBuf,
    /// The image booted.
    pub image: PathBuf,
}

impl Guest {
    /// Build the image (once), boot it with `-no-reboot` and the standard
    /// layout, and wait for QEMU's sockets.
    pub fn boot(arch: Arch, name: &str) -> Guest {
        Self::boot_with(arch, name, &Boot::default())
    }

    /// [`boot`](Self::boot) with options.
    pub fn boot_with(arch: Arch, name: &str, boot: &Boot) -> Guest {
        let image = arch.image();
        arch.require_qemu();
        let dir = scratch_dir(&format!("baremetal-{arch:?}-{name}"));
        let serial_log = dir.join("serial.log");
        let qmp_socket = dir.join("qmp.sock");
        let stderr = std::fs::File::create(dir.join("qemu.stderr")).expect("create stderr log");
        let mut qemu = Command::new(arch.qemu());
        qemu.args(arch.machine_args(&image, boot))
            .args(["-nographic", "-monitor", "none", "-nodefaults"])
            .arg("-serial")
            .arg(format!("file:{}", serial_log.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()));
        if boot.no_reboot {
            qemu.arg("-no-reboot");
        }
        if let Some(append) = &boot.append {
            qemu.args(["-append", append]);
        }
        let mut sockets = Vec::new();
        for (d, device) in boot.devices.iter().enumerate() {
            if let Slot::RootPort(port) = device.slot {
                qemu.args([
                    "-device",
                    &format!("pcie-root-port,id={port},chassis={}", d + 1),
                ]);
            }
            let controller = format!("vser{d}");
            qemu.args(["-device", &arch.serial_device(&controller, device.slot)]);
            for (p, port) in device.ports.iter().enumerate() {
                let chardev = format!("ch{d}x{p}");
                match port {
                    Port::Console => {
                        qemu.args(["-chardev", &format!("null,id={chardev}")])
                            .args([
                                "-device",
                                &format!("virtconsole,bus={controller}.0,chardev={chardev},nr=0"),
                            ]);
                    }
                    Port::Named(name) => {
                        let socket = dir.join(format!("port-{d}-{p}.sock"));
                        qemu.arg("-chardev")
                            .arg(format!(
                                "socket,path={},server=on,wait=off,id={chardev}",
                                socket.display()
                            ))
                            .args([
                                "-device",
                                &format!(
                                    "virtserialport,bus={controller}.0,chardev={chardev},name={name}"
                                ),
                            ]);
                        sockets.push((name.clone(), socket));
                    }
                }
            }
        }
        let socket = sockets
            .iter()
            .find(|(n, _)| n == AGENT_PORT)
            .map_or_else(|| dir.join("no-agent-port.sock"), |(_, s)| s.clone());
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
            sockets,
            serial_log,
            qmp_socket,
            image,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(guest.qmp_socket.exists() && guest.sockets.iter().all(|(_, s)| s.exists())) {
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

    /// A QMP connection, capabilities negotiated (20 s to connect).
    pub fn qmp(&self) -> Qmp {
        Qmp::connect(&self.qmp_socket, Instant::now() + Duration::from_secs(20))
    }

    /// A QMP command's `return` value (panics on QMP's error).
    pub fn qmp_execute(&self, command: &str) -> Value {
        self.qmp()
            .execute(command, None, Instant::now() + Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("QMP {command}: {e}"))
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
