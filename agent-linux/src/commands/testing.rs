//! Test helpers: a temporary directory and an agent serving the table with harmless stand-ins for every side-effecting program.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use agent_core::{Agent, Policy};

use super::{CommandsConfig, LinuxCommands, SystemPaths};

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("agent-linux-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// System paths that cannot change the machine: every program is missing.
pub fn safe_paths(dir: &Path) -> SystemPaths {
    let missing = dir.join("missing");
    SystemPaths {
        hwclock: missing.join("hwclock"),
        shutdown: missing.join("shutdown"),
        poweroff: missing.join("poweroff"),
        halt: missing.join("halt"),
        reboot: missing.join("reboot"),
        systemctl: missing.join("systemctl"),
        pm_is_supported: missing.join("pm-is-supported"),
        pm_dir: missing.clone(),
        chpasswd: missing.join("chpasswd"),
        sysfs: "/sys".into(),
        procfs: "/proc".into(),
        utmp: missing.join("utmp"),
        passwd: missing.join("passwd"),
        udev_data: missing.join("udev"),
    }
}

pub fn config(dir: &Path) -> CommandsConfig {
    CommandsConfig {
        statedir: dir.to_path_buf(),
        fsfreeze_hook: None,
        fsfreeze_hook_timeout: super::freeze::DEFAULT_HOOK_TIMEOUT,
        system: safe_paths(dir),
    }
}

pub fn commands() -> (TempDir, LinuxCommands) {
    let dir = TempDir::new();
    let cmds = LinuxCommands::new(config(dir.path()));
    (dir, cmds)
}

type TestAgent = Agent<'static, Vec<u8>, LinuxCommands>;

/// An agent over a temporary state directory.
pub struct Harness {
    pub dir: TempDir,
    pub agent: TestAgent,
}

impl Harness {
    pub fn new() -> Self {
        let dir = TempDir::new();
        let cfg = config(dir.path());
        Self::with_config(dir, cfg)
    }

    pub fn with_config(dir: TempDir, cfg: CommandsConfig) -> Self {
        let agent = Agent::new(vec![0u8; 1 << 20], LinuxCommands::new(cfg), Policy::new());
        Harness { dir, agent }
    }

    /// The raw response bytes to `request`.
    pub fn raw(&mut self, request: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.agent.feed(request.as_bytes(), &mut out).unwrap();
        self.agent.feed(b"\n", &mut out).unwrap();
        out
    }

    /// The response to `request`, without its newline.
    pub fn call(&mut self, request: &str) -> String {
        let out = self.raw(request);
        let text = String::from_utf8(out).unwrap();
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    }

    /// The response parsed.
    pub fn json(&mut self, request: &str) -> serde_json::Value {
        serde_json::from_str(&self.call(request)).unwrap()
    }

    /// The `desc` of an error response.
    pub fn error(&mut self, request: &str) -> String {
        let v = self.json(request);
        v["error"]["desc"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error: {v}"))
            .to_owned()
    }
}
