//! The bare-metal guest under `qemu-system-riscv64 -machine virt`: build
//! `agent-baremetal`'s `virt-guest` for `riscv64gc-unknown-none-elf`, boot
//! it with two named virtserialports, and talk to the agent's port over
//! QEMU's unix-socket chardev.
//!
//! Every wait is bounded; [`VirtGuest`] kills QEMU on drop.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{scratch_dir, workspace_root, Conn};

/// The bare-metal target.
pub const TARGET: &str = "riscv64gc-unknown-none-elf";
/// The agent's port name.
pub const AGENT_PORT: &str = "org.qemu.guest_agent.0";
/// The other port's name (discovery must pick the agent's by name).
pub const OTHER_PORT: &str = "org.example.other";
/// The emulator.
pub const QEMU: &str = "qemu-system-riscv64";

const SETUP_HINT: &str =
    "run `bash scripts/e2e-setup.sh` to install QEMU, its firmware and the riscv64 target";

/// Path of the guest image, built once per test process with the cargo
/// that runs the tests.
pub fn guest_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "agent-baremetal",
                "--bin",
                "virt-guest",
                "--target",
                TARGET,
                "--release",
            ])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build");
        assert!(
            output.status.success(),
            "cargo build of virt-guest for {TARGET} failed ({SETUP_HINT}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map_or_else(
                || workspace_root().join("target"),
                |dir| workspace_root().join(dir),
            );
        target.join(TARGET).join("release").join("virt-guest")
    })
}

/// Fail with the set-up hint unless QEMU for riscv64 is installed.
fn require_qemu() {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "{QEMU} not found: {SETUP_HINT}");
}

/// A running guest: QEMU with the agent's port and a second port, each on
/// a unix socket; killed on drop.
pub struct VirtGuest {
    child: Child,
    /// When QEMU was started.
    pub started: Instant,
    /// The agent's socket.
    pub socket: PathBuf,
    /// The other port's socket.
    pub other_socket: PathBuf,
    /// The serial console's log.
    pub serial_log: PathBuf,
}

impl VirtGuest {
    /// Build the image (once), boot it, and wait for QEMU's sockets.
    pub fn boot(name: &str) -> VirtGuest {
        let image = guest_image();
        require_qemu();
        let dir = scratch_dir(&format!("baremetal-{name}"));
        let socket = dir.join("qga.sock");
        let other_socket = dir.join("other.sock");
        let serial_log = dir.join("serial.log");
        let log = std::fs::File::create(&serial_log).expect("create serial log");
        let started = Instant::now();
        let child = Command::new(QEMU)
            .args([
                "-machine", "virt", "-accel", "tcg", "-m", "128M", "-smp", "1",
            ])
            .args(["-nographic", "-monitor", "none", "-serial", "stdio"])
            .args(["-no-reboot", "-bios", "default", "-kernel"])
            .arg(image)
            .args(["-device", "virtio-serial-device"])
            // The other port first, so the agent's is not simply the first.
            .arg("-chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=other0",
                other_socket.display()
            ))
            .args([
                "-device",
                &format!("virtserialport,chardev=other0,name={OTHER_PORT}"),
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=qga0",
                socket.display()
            ))
            .args([
                "-device",
                &format!("virtserialport,chardev=qga0,name={AGENT_PORT}"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {QEMU}: {e} ({SETUP_HINT})"));
        let mut guest = VirtGuest {
            child,
            started,
            socket,
            other_socket,
            serial_log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(guest.socket.exists() && guest.other_socket.exists()) {
            if let Some(status) = guest.child.try_wait().expect("poll qemu") {
                panic!("{QEMU} exited with {status}:\n{}", guest.log());
            }
            assert!(
                Instant::now() < deadline,
                "{QEMU} did not create its sockets:\n{}",
                guest.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        guest
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

    /// What the guest printed on its UART so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.serial_log).unwrap_or_default()
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
}

impl Drop for VirtGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
