//! Helpers for the end-to-end tests in a Linux guest under QEMU
//! (`tests/tests/linux_guest_e2e.rs`): a static `guest-agent`, an
//! initramfs that runs it (or Debian's `qemu-ga`) on the virtio-serial
//! port `org.qemu.guest_agent.0`, a QEMU process that is always killed,
//! and a host-side connection to the port's chardev socket in which every
//! wait is bounded.
//!
//! The facts this relies on are in `/work/shared/E2E-NOTES.md` (kernel
//! modules, QEMU command line, what the guest sees while no host client is
//! connected). `scripts/e2e-setup.sh` installs QEMU, busybox-static, cpio,
//! Debian's qemu-guest-agent and unpacks Debian's kernel into
//! `target/e2e/kernel` of the workspace.
//!
//! The guest's `/init` prints, once a second, a line
//! `e2e-cpu up=<uptime s> pid=<pid> ticks=<utime+stime> run_ns=<ns on cpu>
//! slices=<times scheduled> fds=<open fds> hwm_kib=<peak RSS>` for the agent
//! under test (from `/proc/<pid>/stat`, `schedstat`, `fd/` and `status`), which
//! [`Guest::cpu_sample_after`] reads back from the console log.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agent_core::client::{Client, Event, Outcome, SyncMode};

use crate::{scratch_dir, workspace_root, Answer};

/// The kernel modules the guest loads, in this order (E2E-NOTES).
pub const MODULES: [&str; 6] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_console",
];

/// The extra kernel modules of a guest with a scratch disk
/// ([`GuestOptions::scratch`]): ext4 and virtio-blk, loaded in this order
/// after [`MODULES`].
pub const DISK_MODULES: [&str; 6] = [
    "crc16",
    "crc32c_generic",
    "mbcache",
    "jbd2",
    "ext4",
    "virtio_blk",
];

/// Where the guest mounts the scratch disk.
pub const SCRATCH_MOUNT: &str = "/mnt/scratch";

/// The virtio-serial port name both agents open by default.
pub const PORT_NAME: &str = "org.qemu.guest_agent.0";

const SETUP_HINT: &str = "run `bash scripts/e2e-setup.sh` first";

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else the
/// workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace_root().join("target"),
        |d| {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        },
    )
}

/// `guest-agent` linked statically for x86_64 musl, release profile, built
/// once per test process with the cargo that runs the tests.
/// `QGA_E2E_AGENT=<path>` uses that (static) binary instead.
pub fn static_agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("QGA_E2E_AGENT") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = "x86_64-unknown-linux-musl";
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--release", "-p", "agent-linux"])
            .args(["--bin", "guest-agent", "--target", target])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of the static guest-agent failed (is the {target} rustup target \
             installed? {SETUP_HINT})"
        );
        target_dir()
            .join(target)
            .join("release")
            .join("guest-agent")
    })
}

/// Where the host-side programs and the guest's kernel are.
#[derive(Debug)]
pub struct Assets {
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// The kernel image (`target/e2e/kernel/boot/vmlinuz-<version>`).
    pub vmlinuz: PathBuf,
    /// The kernel version.
    pub kernel_version: String,
    /// The modules of [`MODULES`], in order (possibly compressed).
    pub modules: Vec<PathBuf>,
    /// The modules of [`DISK_MODULES`] that were found, with their names
    /// (a guest that needs a missing one reports `insmod ... failed`).
    pub disk_modules: Vec<(&'static str, PathBuf)>,
    /// A static busybox.
    pub busybox: PathBuf,
    /// Debian's `qemu-ga`.
    pub qemu_ga: PathBuf,
}

/// Find `name` in `PATH` (or at one of `extra`).
fn which(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(extra.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
}

/// The shared libraries and dynamic loader `ldd` lists for `bin`.
fn ldd(bin: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("run ldd");
    assert!(out.status.success(), "ldd {} failed", bin.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// Whether `bin` is statically linked (`ldd` finds nothing to load).
fn is_static(bin: &Path) -> bool {
    Command::new("ldd")
        .arg(bin)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout) + String::from_utf8_lossy(&o.stderr);
            text.contains("not a dynamic executable") || text.contains("statically linked")
        })
        .unwrap_or(false)
}

/// Locate QEMU, busybox, qemu-ga and the kernel; panics with a hint to run
/// `scripts/e2e-setup.sh` when something is missing.
pub fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let qemu = which("qemu-system-x86_64", &[])
            .unwrap_or_else(|| panic!("qemu-system-x86_64 not found: {SETUP_HINT}"));
        let busybox = which("busybox", &["/bin/busybox", "/usr/bin/busybox"])
            .filter(|b| is_static(b))
            .unwrap_or_else(|| panic!("no static busybox (busybox-static): {SETUP_HINT}"));
        let qemu_ga = which("qemu-ga", &["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"])
            .unwrap_or_else(|| panic!("qemu-ga not found (qemu-guest-agent): {SETUP_HINT}"));
        which("cpio", &[]).unwrap_or_else(|| panic!("cpio not found: {SETUP_HINT}"));
        let kernel_dir = workspace_root().join("target/e2e/kernel");
        let mut versions: Vec<String> = fs::read_dir(kernel_dir.join("lib/modules"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|v| {
                        kernel_dir
                            .join("boot")
                            .join(format!("vmlinuz-{v}"))
                            .is_file()
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        let kernel_version = versions.pop().unwrap_or_else(|| {
            panic!(
                "no kernel (boot/vmlinuz-* with lib/modules/*) in {}: {SETUP_HINT}",
                kernel_dir.display()
            )
        });
        let vmlinuz = kernel_dir
            .join("boot")
            .join(format!("vmlinuz-{kernel_version}"));
        let mut files = Vec::new();
        walk(
            &kernel_dir.join("lib/modules").join(&kernel_version),
            &mut files,
        );
        // `<name>.ko`, possibly compressed (`<name>.ko.xz`, ...).
        let find = |m: &str| {
            let prefix = format!("{m}.ko");
            files
                .iter()
                .find(|f| {
                    f.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n == prefix || n.strip_prefix(&prefix).is_some_and(|s| s.starts_with('.'))
                    })
                })
                .cloned()
        };
        let modules = MODULES
            .iter()
            .map(|m| {
                find(m).unwrap_or_else(|| {
                    panic!("module {m} not found for kernel {kernel_version}: {SETUP_HINT}")
                })
            })
            .collect();
        let disk_modules = DISK_MODULES
            .iter()
            .filter_map(|&m| Some((m, find(m)?)))
            .collect();
        Assets {
            qemu,
            vmlinuz,
            kernel_version,
            modules,
            disk_modules,
            busybox,
            qemu_ga,
        }
    })
}

/// Copy `src` (following symlinks) to `root` + `at`, keeping the mode.
pub(crate) fn install(src: &Path, root: &Path, at: &str) {
    let dest = root.join(at.trim_start_matches('/'));
    fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
    fs::copy(src, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
}

/// Write an executable file.
pub(crate) fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A module as an uncompressed `.ko` (decompressing `.xz`, `.zst`, `.gz`
/// with the host's tools).
pub(crate) fn module_bytes(path: &Path) -> Vec<u8> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::read(path).expect("read module");
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{tool} -dc {name}: {e}"));
    assert!(out.status.success(), "{tool} -dc {name} failed");
    out.stdout
}

/// The guest's `/init`: mounts, modules, the port symlinks, the agent
/// chosen by `qga_e2e=ours|qemu-ga` on the kernel command line, a console
/// reader (a line `poweroff` powers the guest off, `e2e-run <command>` runs
/// a shell command) and the CPU report loop. SIGUSR1/SIGUSR2/SIGTERM to
/// init (busybox `halt`/`poweroff`/`reboot` without `-f`) power off too.
///
/// A per-guest archive ([`GuestOptions`]) may add `/e2e/setup.sh`
/// (sourced before the agent starts: the scratch disk), `/e2e/agent.sh`
/// (run instead of the default agent command) and `/e2e/supervised` (the
/// agent is restarted by `agent.sh`, which keeps the current agent's pid
/// in `/run/e2e-agent.pid`: the report loop follows it and does not stop
/// when an agent exits).
fn init_script() -> String {
    let modules = MODULES.join(" ");
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run /var/run /var/log /dev/virtio-ports
for m in {modules}; do
  insmod /lib/modules/e2e/$m.ko || echo "e2e: insmod $m failed"
done
n=0
while [ ! -e /dev/virtio-ports/{PORT_NAME} ] && [ $n -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] && ln -sf "../${{p##*/}}" "/dev/virtio-ports/$(cat "$p/name")"
  done
  [ -e /dev/virtio-ports/{PORT_NAME} ] || usleep 20000
  n=$((n+1))
done
ls -l /dev/virtio-ports
[ -r /e2e/setup.sh ] && . /e2e/setup.sh
trap 'echo "e2e: signal, poweroff"; poweroff -f' USR1 USR2 TERM
agent=ours
for a in $(cat /proc/cmdline); do
  case "$a" in qga_e2e=*) agent="${{a#qga_e2e=}}";; esac
done
if [ -x /e2e/agent.sh ]; then
  /e2e/agent.sh </dev/null >/dev/console 2>&1 &
else
  case "$agent" in
    qemu-ga) /usr/sbin/qemu-ga -m virtio-serial </dev/null >/dev/console 2>&1 & ;;
    *) /usr/bin/guest-agent -m virtio-serial </dev/null >/dev/console 2>&1 & ;;
  esac
fi
pid=$!
supervised=
[ -e /e2e/supervised ] && supervised=1
echo "e2e: agent $agent pid $pid"
(while read -r cmd arg; do
  case "$cmd" in
    poweroff) echo "e2e: poweroff"; poweroff -f;;
    e2e-run) echo "e2e: run $arg"; eval "$arg";;
  esac
done) </dev/console &
while :; do
  [ -n "$supervised" ] && [ -r /run/e2e-agent.pid ] && read -r pid </run/e2e-agent.pid
  if [ -r /proc/$pid/schedstat ] && read -r s </proc/$pid/stat; then
    set -- $s
    if [ "$3" = Z ]; then
      [ -n "$supervised" ] && {{ sleep 1; continue; }}
      echo "e2e: agent $pid exited"
      break
    fi
    ticks=$((${{14}} + ${{15}}))
    read -r run wait slices </proc/$pid/schedstat
    read -r up idle </proc/uptime
    fds=$(ls /proc/$pid/fd | wc -l)
    hwm=0
    while read -r key value unit; do
      [ "$key" = VmHWM: ] && hwm=$value
    done </proc/$pid/status
    echo "e2e-cpu up=$up pid=$pid ticks=$ticks run_ns=$run slices=$slices fds=$fds hwm_kib=$hwm"
  elif [ -n "$supervised" ]; then
    sleep 1
    continue
  else
    echo "e2e: agent $pid exited"
    break
  fi
  sleep 1
done
while :; do sleep 1000; done
"#
    )
}

/// The initramfs (uncompressed newc cpio) serving both agents, built once
/// per test process under `<target>/e2e-guest/<pid>/`.
pub fn initramfs() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        let assets = assets();
        let agent = static_agent_bin();
        let base = target_dir().join("e2e-guest");
        // Drop what earlier test processes left.
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.parse::<u32>().is_ok() && !Path::new("/proc").join(&name).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(std::process::id().to_string());
        let root = dir.join("root");
        let _ = fs::remove_dir_all(&dir);
        for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev"] {
            fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        install(&assets.busybox, &root, "/bin/busybox");
        symlink("busybox", root.join("bin/sh")).expect("symlink sh");
        install(agent, &root, "/usr/bin/guest-agent");
        install(&assets.qemu_ga, &root, "/usr/sbin/qemu-ga");
        for lib in ldd(&assets.qemu_ga) {
            install(&lib, &root, &lib.to_string_lossy());
        }
        // qemu-ga's guest-shutdown runs `shutdown -h -P +0 ...`; busybox
        // has none, and its `poweroff` without -f only signals init.
        write_exec(
            &root.join("sbin/shutdown"),
            "#!/bin/sh\necho \"e2e: shutdown $*\"\nexec /bin/busybox poweroff -f\n",
        );
        let moddir = root.join("lib/modules/e2e");
        fs::create_dir_all(&moddir).expect("mkdir");
        for (name, path) in MODULES.iter().zip(&assets.modules) {
            fs::write(moddir.join(format!("{name}.ko")), module_bytes(path)).expect("write module");
        }
        for (name, path) in &assets.disk_modules {
            fs::write(moddir.join(format!("{name}.ko")), module_bytes(path)).expect("write module");
        }
        write_exec(&root.join("init"), &init_script());
        let cpio = dir.join("initramfs.cpio");
        let out = File::create(&cpio).expect("create initramfs");
        let status = Command::new("sh")
            .args(["-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet"])
            .current_dir(&root)
            .stdout(out)
            .status()
            .expect("run cpio");
        assert!(status.success(), "cpio failed");
        let _ = fs::remove_dir_all(&root);
        cpio
    })
}

/// Which agent the guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentKind {
    /// Our static `guest-agent -m virtio-serial`.
    Ours,
    /// Debian's `/usr/sbin/qemu-ga -m virtio-serial` (the reference).
    QemuGa,
}

impl AgentKind {
    /// A short name (also the `qga_e2e=` value).
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Ours => "ours",
            AgentKind::QemuGa => "qemu-ga",
        }
    }
}

/// Figures that two tests, one per agent, print side by side: each test
/// records its own; the second to finish (in either order, in parallel or
/// not) prints the table `label: ours | qemu-ga`.
pub struct SideBySide(std::sync::Mutex<Vec<(AgentKind, String, String)>>);

impl SideBySide {
    /// No figures yet (for a `static`).
    pub const fn new() -> SideBySide {
        SideBySide(std::sync::Mutex::new(Vec::new()))
    }

    /// Keep `kind`'s `(label, value)` figures; once both agents have some,
    /// print the table.
    pub fn record(&self, kind: AgentKind, figures: Vec<(&str, String)>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(figures.into_iter().map(|(l, v)| (kind, l.to_string(), v)));
        let of = |k: AgentKind| all.iter().filter(move |f| f.0 == k);
        if of(AgentKind::Ours).next().is_none() || of(AgentKind::QemuGa).next().is_none() {
            return;
        }
        println!("side by side (ours | qemu-ga):");
        for o in of(AgentKind::Ours) {
            let t = of(AgentKind::QemuGa)
                .find(|t| t.1 == o.1)
                .map_or("-", |t| t.2.as_str());
            println!("  {:<52} {} | {}", o.1, o.2, t);
        }
    }
}

impl Default for SideBySide {
    fn default() -> Self {
        SideBySide::new()
    }
}

/// One `e2e-cpu` console line: the agent's CPU use so far.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSample {
    /// Guest uptime, seconds.
    pub uptime: f64,
    /// utime + stime, in clock ticks (1/100 s).
    pub ticks: u64,
    /// Time on the CPU, nanoseconds (`schedstat`).
    pub run_ns: u64,
    /// Times the agent was scheduled (`schedstat`): about its wake-ups.
    pub slices: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub hwm_kib: u64,
}

impl CpuSample {
    /// Parse `e2e-cpu up=.. pid=.. ticks=.. run_ns=.. slices=.. fds=.. hwm_kib=..`.
    pub fn parse(line: &str) -> Option<CpuSample> {
        let rest = line.trim().strip_prefix("e2e-cpu ")?;
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        Some(CpuSample {
            uptime: field("up")?.parse().ok()?,
            ticks: field("ticks")?.parse().ok()?,
            run_ns: field("run_ns")?.parse().ok()?,
            slices: field("slices")?.parse().ok()?,
            fds: field("fds")?.parse().ok()?,
            hwm_kib: field("hwm_kib")?.parse().ok()?,
        })
    }
}

/// A booted guest: QEMU running, killed on drop (which prints the console
/// log when the test is failing).
pub struct Guest {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    exit: Option<ExitStatus>,
    /// Which agent runs inside.
    pub agent: AgentKind,
    /// The host end of the agent's port (QEMU's chardev socket).
    pub socket: PathBuf,
    /// The serial console log (QEMU's stdout and stderr).
    pub console: PathBuf,
    /// When QEMU was started.
    pub started: Instant,
    /// This guest's host directory (socket, console log, images).
    pub dir: PathBuf,
    /// The scratch disk's image, if any.
    pub scratch_image: Option<PathBuf>,
    /// The sectors blkdebug fails reads of ([`ScratchDisk::eio_at`]).
    pub eio_sectors: Vec<u64>,
    shell_runs: usize,
}

/// A file in the scratch disk's image (put there by `mkfs.ext4 -d`).
#[derive(Clone, Debug)]
pub struct ScratchFile {
    /// Path inside the filesystem, e.g. `/big`.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
}

/// A scratch ext4 disk: made on the host (`mkfs.ext4 -F -q -b 4096 -d`,
/// no mounts), attached as virtio-blk and mounted by the guest's init at
/// [`SCRATCH_MOUNT`] before the agent starts. Inside the initramfs it is
/// the only block-device mount, so `guest-fsfreeze-freeze` freezes exactly
/// it.
#[derive(Clone, Debug)]
pub struct ScratchDisk {
    /// Image size, MiB.
    pub size_mib: u32,
    /// Files in the image.
    pub files: Vec<ScratchFile>,
    /// Real read errors (EIO) injected by QEMU's blkdebug: each entry is a
    /// file of [`ScratchDisk::files`] and a byte offset in it; every read
    /// request covering the disk sector that holds that byte fails (the
    /// rule stays on). Empty: no blkdebug.
    pub eio_at: Vec<(String, u64)>,
}

impl Default for ScratchDisk {
    fn default() -> Self {
        ScratchDisk {
            size_mib: 64,
            files: Vec::new(),
            eio_at: Vec::new(),
        }
    }
}

/// What a guest runs besides the defaults of [`Guest::boot`]. Everything
/// here goes into a small per-guest cpio archive appended to the shared
/// initramfs (the kernel unpacks concatenated archives).
#[derive(Clone, Debug, Default)]
pub struct GuestOptions {
    /// The agent's arguments (after the binary: `/usr/bin/guest-agent` or
    /// `/usr/sbin/qemu-ga`, by [`AgentKind`]); `None` with an empty
    /// [`GuestOptions::env`] and no supervision keeps the init's default
    /// `-m virtio-serial`.
    pub agent_args: Option<Vec<String>>,
    /// Environment for the agent (`TMPDIR`, ...).
    pub env: Vec<(String, String)>,
    /// Restart the agent whenever it exits (as systemd's `Restart=always`),
    /// printing `e2e: agent exited <status>` on the console each time and
    /// `e2e: agent started pid <pid>` for each start.
    pub supervised: bool,
    /// Executable scripts added to the guest: (absolute path, text).
    pub scripts: Vec<(String, String)>,
    /// A scratch disk at [`SCRATCH_MOUNT`].
    pub scratch: Option<ScratchDisk>,
}

/// Quote a word for the guest's shell.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Run a host tool; panics with its output when it fails.
pub(crate) fn run_tool(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e} ({SETUP_HINT})"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The block size of an ext4 image (`debugfs -R stats`).
fn ext4_block_size(img: &Path) -> u64 {
    let stats = run_tool(Command::new("debugfs").args(["-R", "stats"]).arg(img));
    stats
        .lines()
        .find_map(|l| l.strip_prefix("Block size:")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no block size in debugfs stats of {}", img.display()))
}

/// The 512-byte disk sector holding byte `offset` of `file` in the ext4
/// image `img` (`debugfs -R "bmap FILE BLOCK"`).
pub fn ext4_sector_of(img: &Path, file: &str, offset: u64) -> u64 {
    let bs = ext4_block_size(img);
    let out = run_tool(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("bmap {file} {}", offset / bs))
            .arg(img),
    );
    let phys: u64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("debugfs bmap {file}: {out:?}"));
    assert!(phys > 0, "{file} has no block at offset {offset}");
    phys * (bs / 512) + (offset % bs) / 512
}

/// Write a newc cpio archive of everything under `root` to `out`.
pub(crate) fn cpio_of(root: &Path, out: &Path) {
    let file = File::create(out).expect("create cpio");
    let status = Command::new("sh")
        .args(["-c", "find . | LC_ALL=C sort | cpio -o -H newc --quiet"])
        .current_dir(root)
        .stdout(file)
        .status()
        .expect("run cpio");
    assert!(status.success(), "cpio failed");
}

/// Numbers the guests of one test process (their directories).
static GUESTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `/e2e/setup.sh` of a guest with a scratch disk: the disk modules, then
/// mount `/dev/vda` at [`SCRATCH_MOUNT`]. (A launcher that needs more
/// set-up sources this text first in its own `/e2e/setup.sh`.)
pub fn setup_script() -> String {
    let modules = DISK_MODULES.join(" ");
    format!(
        r#"for m in {modules}; do
  insmod /lib/modules/e2e/$m.ko || echo "e2e: insmod $m failed"
done
mkdir -p {SCRATCH_MOUNT}
n=0
while [ ! -b /dev/vda ] && [ $n -lt 250 ]; do usleep 20000; n=$((n+1)); done
if mount -t ext4 /dev/vda {SCRATCH_MOUNT}; then
  echo "e2e: scratch mounted"
else
  echo "e2e: scratch mount failed"
fi
"#
    )
}

/// `/e2e/agent.sh`: the agent with its environment and arguments, once
/// (`exec`) or supervised.
fn agent_script(agent: AgentKind, options: &GuestOptions) -> String {
    let bin = match agent {
        AgentKind::Ours => "/usr/bin/guest-agent",
        AgentKind::QemuGa => "/usr/sbin/qemu-ga",
    };
    let default = ["-m".to_string(), "virtio-serial".to_string()];
    let args = options.agent_args.as_deref().unwrap_or(&default);
    let mut command = bin.to_string();
    for a in args {
        command.push(' ');
        command.push_str(&sh_quote(a));
    }
    let mut text = String::from("#!/bin/sh\n");
    for (k, v) in &options.env {
        text.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    if options.supervised {
        text.push_str(&format!(
            r#"while :; do
  {command} </dev/null &
  echo $! >/run/e2e-agent.pid
  echo "e2e: agent started pid $!"
  wait $!
  echo "e2e: agent exited $?"
  usleep 200000
done
"#
        ));
    } else {
        text.push_str(&format!("exec {command} </dev/null\n"));
    }
    text
}

/// The initrd of a guest running `agent` with `options`: the shared
/// [`initramfs`] followed by a small per-guest archive (in `dir`) with
/// the scripts `options` asks for, or the shared one alone when it asks
/// for none. [`Guest::boot_with`] uses it; so can other launchers (the
/// libvirt tests give it to libvirt as the domain's `<initrd>`).
pub fn guest_initrd(dir: &Path, agent: AgentKind, options: &GuestOptions) -> PathBuf {
    let base = initramfs();
    let extra = dir.join("extra");
    let mut scripts = options.scripts.clone();
    if options.scratch.is_some() {
        scripts.push(("/e2e/setup.sh".into(), setup_script()));
    }
    if options.agent_args.is_some() || !options.env.is_empty() || options.supervised {
        scripts.push(("/e2e/agent.sh".into(), agent_script(agent, options)));
    }
    if options.supervised {
        scripts.push(("/e2e/supervised".into(), String::new()));
    }
    if scripts.is_empty() {
        return base.to_path_buf();
    }
    for (path, text) in &scripts {
        write_exec(&extra.join(path.trim_start_matches('/')), text);
    }
    let extra_cpio = dir.join("extra.cpio");
    cpio_of(&extra, &extra_cpio);
    let initrd = dir.join("initrd.cpio");
    let mut all = fs::read(base).expect("read the initramfs");
    all.extend_from_slice(&fs::read(&extra_cpio).expect("read extra.cpio"));
    fs::write(&initrd, all).expect("write the initrd");
    initrd
}

/// Make the ext4 image of `disk` as `dir/scratch.ext4` (`mkfs.ext4 -d`,
/// no mounts) and return its path.
pub fn make_scratch_image(dir: &Path, disk: &ScratchDisk) -> PathBuf {
    let root = dir.join("scratch-root");
    fs::create_dir_all(&root).expect("mkdir");
    for f in &disk.files {
        let at = root.join(f.path.trim_start_matches('/'));
        fs::create_dir_all(at.parent().expect("a parent")).expect("mkdir");
        fs::write(&at, &f.data).expect("write a scratch file");
    }
    let img = dir.join("scratch.ext4");
    run_tool(
        Command::new("mkfs.ext4")
            .args(["-F", "-q", "-b", "4096", "-d"])
            .arg(&root)
            .arg(&img)
            .arg(format!("{}M", disk.size_mib)),
    );
    let _ = fs::remove_dir_all(&root);
    img
}

impl Guest {
    /// Boot a guest running `agent`, with the QEMU command line of
    /// E2E-NOTES.
    pub fn boot(agent: AgentKind) -> Guest {
        Guest::boot_with(agent, &GuestOptions::default())
    }

    /// Boot a guest running `agent` with `options`: the agent's command
    /// line, environment and supervision, extra scripts, a scratch disk
    /// (optionally under blkdebug).
    pub fn boot_with(agent: AgentKind, options: &GuestOptions) -> Guest {
        let assets = assets();
        let n = GUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = scratch_dir(&format!("e2e-{}-{n}", agent.name()));
        let socket = dir.join("qga.sock");
        let console = dir.join("console.log");

        let initrd = guest_initrd(&dir, agent, options);

        // The scratch disk.
        let mut drive_args: Vec<std::ffi::OsString> = Vec::new();
        let mut scratch_image = None;
        let mut eio_sectors = Vec::new();
        if let Some(disk) = &options.scratch {
            let img = make_scratch_image(&dir, disk);
            let mut drive = std::ffi::OsString::new();
            if disk.eio_at.is_empty() {
                drive.push("file=");
                drive.push(&img);
                drive.push(",format=raw,if=none,id=scratch");
            } else {
                let mut config = String::new();
                for (file, offset) in &disk.eio_at {
                    let sector = ext4_sector_of(&img, file, *offset);
                    eio_sectors.push(sector);
                    config.push_str(&format!(
                        "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\n\
                         sector = \"{sector}\"\nonce = \"off\"\n\n"
                    ));
                }
                let cfg = dir.join("blkdebug.conf");
                fs::write(&cfg, config).expect("write blkdebug.conf");
                // raw over blkdebug over the file: raw's reads raise the
                // read_aio event on its child, which arms the rules. With
                // blkdebug on top (`driver=blkdebug,image.driver=raw,
                // image.file.filename=...`) QEMU 7.2 boots but no event
                // reaches blkdebug and every read succeeds (measured), and
                // `image.filename=` there is refused ("A block device must
                // be specified for \"file\"").
                drive.push("driver=raw,file.driver=blkdebug,file.config=");
                drive.push(&cfg);
                drive.push(",file.image.driver=file,file.image.filename=");
                drive.push(&img);
                drive.push(",if=none,id=scratch");
            }
            drive_args.push("-drive".into());
            drive_args.push(drive);
            drive_args.push("-device".into());
            drive_args.push("virtio-blk-pci,drive=scratch".into());
            scratch_image = Some(img);
        }

        let log = File::create(&console).expect("create console log");
        let mut chardev = std::ffi::OsString::from("socket,path=");
        chardev.push(&socket);
        chardev.push(",server=on,wait=off,id=qga0");
        let mut child = Command::new(&assets.qemu)
            .args([
                "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
            ])
            .args(["-m", "256M", "-nographic", "-no-reboot", "-nodefaults"])
            .args(["-serial", "stdio", "-monitor", "none", "-kernel"])
            .arg(&assets.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 quiet panic=-1 qga_e2e={}",
                agent.name()
            ))
            .args(["-device", "virtio-serial-pci,id=vser0", "-chardev"])
            .arg(chardev)
            .args(["-device"])
            .arg(format!(
                "virtserialport,bus=vser0.0,chardev=qga0,name={PORT_NAME}"
            ))
            .args(&drive_args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} ({SETUP_HINT})", assets.qemu.display()));
        let stdin = child.stdin.take();
        Guest {
            child: Some(child),
            stdin,
            exit: None,
            agent,
            socket,
            console,
            started: Instant::now(),
            dir,
            scratch_image,
            eio_sectors,
            shell_runs: 0,
        }
    }

    /// The console's complete lines so far (CR stripped).
    pub fn console_lines(&self) -> Vec<String> {
        self.console_text()
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    }

    /// How many console lines satisfy `pred` so far.
    pub fn count_lines(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.console_lines().iter().filter(|l| pred(l)).count()
    }

    /// Wait (at most `timeout`) until more than `seen` console lines
    /// satisfy `pred`; returns the time waited, `None` on time-out.
    pub fn wait_lines(
        &mut self,
        seen: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Duration> {
        let t = Instant::now();
        loop {
            if self.count_lines(&pred) > seen {
                return Some(t.elapsed());
            }
            self.assert_running();
            if t.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start a shell command in the guest (`e2e-run`; the init echoes it
    /// as a line `e2e: run <command>`). End it with `&` to run it in the
    /// background.
    pub fn run(&mut self, command: &str) {
        assert!(!command.contains('\n'), "one line: {command:?}");
        self.console_line(&format!("e2e-run {command}"));
    }

    /// Run a shell command in the guest and return its output (stdout and
    /// stderr), or `None` if it does not finish within `timeout`.
    pub fn shell(&mut self, command: &str, timeout: Duration) -> Option<String> {
        self.shell_runs += 1;
        let tag = format!("e2e-sh{}", self.shell_runs);
        let out_prefix = format!("{tag}: ");
        let end = format!("{tag}-end");
        self.run(&format!(
            "{{ {command} ; }} 2>&1 | sed 's/^/{out_prefix}/'; echo {end}"
        ));
        self.wait_lines(0, timeout, |l| l == end)?;
        Some(
            self.console_lines()
                .iter()
                .filter_map(|l| l.strip_prefix(&out_prefix))
                .map(|l| format!("{l}\n"))
                .collect(),
        )
    }

    /// The console output so far.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Type a line on the guest's serial console (the init understands
    /// `poweroff` and `e2e-run <shell command>`).
    pub fn console_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("QEMU's stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the console");
        stdin.flush().expect("flush console");
    }

    /// Whether QEMU is still running (panics if it has exited).
    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.exit = Some(status);
                panic!("QEMU exited unexpectedly: {status}");
            }
        }
    }

    /// Connect to the agent's port, waiting (at most `timeout`) for QEMU
    /// to create its socket.
    pub fn connect(&mut self, timeout: Duration) -> HostConn {
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(&self.socket) {
                Ok(stream) => return HostConn::new(stream),
                Err(e) => {
                    self.assert_running();
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to {}: {e}",
                        self.socket.display()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// The `e2e-cpu` samples printed so far.
    pub fn cpu_samples(&self) -> Vec<CpuSample> {
        self.console_text()
            .lines()
            .filter_map(CpuSample::parse)
            .collect()
    }

    /// Wait (at most `timeout`) for a CPU sample printed after the
    /// `seen`-th one, and return it with its index.
    pub fn cpu_sample_after(&mut self, seen: usize, timeout: Duration) -> (usize, CpuSample) {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.cpu_samples();
            if let Some(s) = samples.get(seen) {
                return (seen, *s);
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "no e2e-cpu line from the guest in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (at most `timeout`) for QEMU to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("QEMU is running");
        loop {
            if let Some(status) = child.try_wait().expect("wait for QEMU") {
                self.exit = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                self.child = Some(child);
                panic!("QEMU did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- console of the {} guest ({}) ----\n{}\n---- end of console ----",
                self.agent.name(),
                self.console.display(),
                self.console_text()
            );
        }
    }
}

/// A host client on the agent's port: agent-core's [`Client`] over the
/// chardev socket. Every read has a deadline; everything received is also
/// kept in [`HostConn::received`] for byte-level assertions.
pub struct HostConn {
    stream: UnixStream,
    client: Client<Vec<u8>>,
    pending: Vec<u8>,
    received: Vec<u8>,
}

/// How long [`HostConn::call`] waits for an answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl HostConn {
    pub(crate) fn new(stream: UnixStream) -> HostConn {
        HostConn {
            stream,
            client: Client::new(vec![0u8; 1 << 20]),
            pending: Vec::new(),
            received: Vec::new(),
        }
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the port");
    }

    /// Read once, waiting until `deadline`; false on time-out.
    fn fill(&mut self, deadline: Instant) -> bool {
        let before = self.pending.len();
        match crate::read_until(&mut self.stream, deadline, &mut self.pending) {
            None => false,
            Some(0) => panic!("QEMU closed the chardev connection"),
            Some(_) => {
                self.received.extend_from_slice(&self.pending[before..]);
                true
            }
        }
    }

    /// Everything received on this connection so far.
    pub fn received(&self) -> &[u8] {
        &self.received
    }

    /// Forget what was received so far (for the next assertion); unparsed
    /// input stays queued for the client.
    pub fn clear_received(&mut self) {
        self.received.clear();
    }

    /// Receive for `wait` without parsing (the bytes stay queued for the
    /// client and are also in [`HostConn::received`]).
    pub fn receive_for(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while self.fill(deadline) {}
    }

    /// Receive until `done(received)` holds or `timeout` passes; returns
    /// whether it held.
    pub fn receive_until(&mut self, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.received) {
                return true;
            }
            if !self.fill(deadline) && Instant::now() >= deadline {
                return done(&self.received);
            }
        }
    }

    /// The handshake (reset byte + `guest-sync-delimited`, skip to the
    /// sentinel), sent again with a fresh id every `retry` until it
    /// completes; panics after `timeout`. Returns the id that synced.
    pub fn sync(&mut self, first_id: i64, retry: Duration, timeout: Duration) -> i64 {
        self.try_sync(first_id, retry, timeout).unwrap_or_else(|| {
            panic!(
                "no answer to the sync handshake within {timeout:?}; received: {:?}",
                String::from_utf8_lossy(&self.received)
            )
        })
    }

    /// [`HostConn::sync`] that gives up after `timeout`: `None` then.
    /// Also what a client does after an agent restart or a broken reply:
    /// the reset byte clears the agent's parser, and everything before the
    /// sentinel and the matching reply is skipped.
    pub fn try_sync(&mut self, first_id: i64, retry: Duration, timeout: Duration) -> Option<i64> {
        let deadline = Instant::now() + timeout;
        let mut id = first_id;
        loop {
            let hello = self.client.begin_sync(id, SyncMode::Delimited);
            if !self.send_within(&hello, deadline.saturating_duration_since(Instant::now())) {
                return None;
            }
            let round = (Instant::now() + retry).min(deadline);
            loop {
                while !self.pending.is_empty() {
                    let (used, event) = self.client.feed(&self.pending);
                    let synced = matches!(event, Some(Event::Synced));
                    self.pending.drain(..used);
                    if synced {
                        return Some(id);
                    }
                }
                if !self.fill(round) && Instant::now() >= round {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            id = id.wrapping_add(1);
        }
    }

    /// Send raw bytes, giving up after `timeout` (an agent that stops
    /// reading stops QEMU reading the socket): whether all were sent. On
    /// a time-out, part of `bytes` may have been sent.
    pub fn send_within(&mut self, bytes: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut rest = bytes;
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_write_timeout(Some(left))
                .expect("set write timeout");
            // Small writes, so that one blocked write cannot overrun the
            // deadline by much.
            let chunk = &rest[..rest.len().min(64 << 10)];
            match self.stream.write(chunk) {
                Ok(0) => panic!("QEMU closed the chardev connection"),
                Ok(n) => rest = &rest[n..],
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("send to the port: {e}"),
            }
        }
        self.stream
            .set_write_timeout(None)
            .expect("set write timeout");
        true
    }

    /// The raw bytes of the next non-blank output line (up to and
    /// including its newline), bypassing the client's parser, within `timeout`; `None`
    /// on time-out (what arrived stays queued). For replies that may be
    /// broken or too large for the client's buffer; resynchronise with
    /// [`HostConn::sync`] afterwards.
    pub fn raw_line_within(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            if let Some(at) = self.pending[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + at + 1;
                let line: Vec<u8> = self.pending.drain(..end).collect();
                scanned = 0;
                // Skip what is left between messages (the newline after a
                // reply the client already took).
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(line);
            }
            scanned = self.pending.len();
            if !self.fill(deadline) && Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Send a request and wait at most `timeout` for its answer; `None`
    /// if it is not answered (or could not be sent) in time.
    pub fn try_call(
        &mut self,
        execute: &str,
        arguments: Option<&str>,
        timeout: Duration,
    ) -> Option<Answer> {
        let deadline = Instant::now() + timeout;
        let mut request = Vec::new();
        self.client
            .write_request(&mut request, execute, arguments.map(str::as_bytes))
            .expect("write request");
        if !self.send_within(&request, timeout) {
            return None;
        }
        self.answer_within(deadline.saturating_duration_since(Instant::now()))
    }

    /// The next response within `timeout`, if any (values that are not
    /// responses are a failure).
    pub fn answer_within(&mut self, timeout: Duration) -> Option<Answer> {
        let deadline = Instant::now() + timeout;
        loop {
            while !self.pending.is_empty() {
                let (used, event) = self.client.feed(&self.pending);
                let answer = match event {
                    None | Some(Event::Synced) => None,
                    Some(Event::Response(r)) => {
                        let id = r.id.map(|v| String::from_utf8_lossy(v.text()).into_owned());
                        Some(match r.outcome {
                            Outcome::Return(v) => {
                                (Ok(String::from_utf8_lossy(v.text()).into_owned()), id)
                            }
                            Outcome::Error { class, desc } => {
                                (Err((class.chars().collect(), desc.chars().collect())), id)
                            }
                        })
                    }
                    Some(Event::Invalid(e)) => panic!("invalid agent output: {e}"),
                };
                self.pending.drain(..used);
                if answer.is_some() {
                    return answer;
                }
            }
            if !self.fill(deadline) && Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Send a request (`arguments`: an object's JSON text) and wait for
    /// its answer (at most [`CALL_TIMEOUT`]).
    pub fn call(&mut self, execute: &str, arguments: Option<&str>) -> Answer {
        let mut request = Vec::new();
        self.client
            .write_request(&mut request, execute, arguments.map(str::as_bytes))
            .expect("write request");
        self.send(&request);
        self.answer_within(CALL_TIMEOUT)
            .unwrap_or_else(|| panic!("no answer to {execute} within {CALL_TIMEOUT:?}"))
    }

    /// [`HostConn::call`] that must succeed; returns the return value's
    /// JSON text.
    pub fn call_ok(&mut self, execute: &str, arguments: Option<&str>) -> String {
        match self.call(execute, arguments).0 {
            Ok(v) => v,
            Err((class, desc)) => panic!("{execute} failed: {class}: {desc}"),
        }
    }
}
