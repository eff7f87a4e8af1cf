//! The effective configuration: qemu-ga's `[general]` key file, then the
//! command line on top (scalars override, lists append), and `-D`'s dump.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cli::AgentArgs;

/// Where the config file is looked for without `-c` (or `$QGA_CONF`).
pub const DEFAULT_CONFIG: &str = "/etc/qemu/qemu-ga.conf";
/// The default pid file.
pub const DEFAULT_PIDFILE: &str = "/var/run/qemu-ga.pid";
/// The default state directory.
pub const DEFAULT_STATEDIR: &str = "/var/run";
/// The version `guest-info` reports unless configured (documented, and
/// shown by `--help`, with the option table).
pub use agent_linux::options::GUEST_INFO_VERSION;
/// The default fsfreeze hook.
pub const DEFAULT_FSFREEZE_HOOK: &str = "/etc/qemu/fsfreeze-hook";

/// The transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A virtio-serial port (character device).
    VirtioSerial,
    /// A serial port (raw termios).
    IsaSerial,
    /// A unix socket the agent listens on.
    UnixListen,
    /// A vsock the agent listens on.
    VsockListen,
}

impl Method {
    /// Parse qemu-ga's method name.
    pub fn parse(name: &str) -> Option<Method> {
        Some(match name {
            "virtio-serial" => Method::VirtioSerial,
            "isa-serial" => Method::IsaSerial,
            "unix-listen" => Method::UnixListen,
            "vsock-listen" => Method::VsockListen,
            _ => return None,
        })
    }

    /// qemu-ga's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Method::VirtioSerial => "virtio-serial",
            Method::IsaSerial => "isa-serial",
            Method::UnixListen => "unix-listen",
            Method::VsockListen => "vsock-listen",
        }
    }

    /// The default path, if the method has one.
    pub fn default_path(self) -> Option<&'static str> {
        match self {
            Method::VirtioSerial => Some("/dev/virtio-ports/org.qemu.guest_agent.0"),
            Method::IsaSerial => Some("/dev/ttyS0"),
            Method::UnixListen | Method::VsockListen => None,
        }
    }
}

/// The configuration the agent runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Become a daemon.
    pub daemon: bool,
    /// Method name as given (checked when the channel is opened, as
    /// qemu-ga does, so `-D` echoes it).
    pub method: String,
    /// Channel path, if given or defaulted.
    pub path: Option<String>,
    /// Log file; stderr if none.
    pub logfile: Option<PathBuf>,
    /// Pid file.
    pub pidfile: PathBuf,
    /// fsfreeze hook script, if enabled.
    pub fsfreeze_hook: Option<PathBuf>,
    /// State directory.
    pub statedir: PathBuf,
    /// Debug logging.
    pub verbose: bool,
    /// Retry opening the channel.
    pub retry_path: bool,
    /// Blocked commands (qemu-ga's item order).
    pub block: Vec<String>,
    /// Allowed commands.
    pub allow: Vec<String>,
    /// How long the fsfreeze hook may run, seconds (`fsfreeze-hook-timeout`,
    /// ours; qemu-ga waits for ever).
    pub fsfreeze_hook_timeout: Option<u64>,
    /// Thaw by ourselves this many seconds after a freeze no thaw followed
    /// (`fsfreeze-auto-thaw`, ours; 0 or absent: never, as qemu-ga).
    pub fsfreeze_auto_thaw: Option<u64>,
    /// What guest-info reports as its version (`guest-info-version`, ours).
    pub guest_info_version: String,
}

/// A config file error: printed, exit status 1.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_seconds(key: &str, value: &str) -> Result<u64, ConfigError> {
    value.trim().parse().map_err(|_| {
        ConfigError(format!(
            "Key file contains key “{key}” which has a value that cannot be interpreted."
        ))
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError(format!(
            "Key file contains key “{key}” which has a value that cannot be interpreted."
        ))),
    }
}

/// Read `[general]` from a GLib key file's text.
fn read_keyfile(text: &str, into: &mut Config) -> Result<(), ConfigError> {
    // GLib key files: `#` comments on their own lines only, `=` between
    // key and value, case-sensitive keys; `;` is an ordinary character.
    let mut defaults = configparser::ini::IniDefault::default();
    defaults.comment_symbols = vec!['#'];
    defaults.delimiters = vec!['='];
    defaults.enable_inline_comments = false;
    defaults.case_sensitive = true;
    let mut ini = configparser::ini::Ini::new_from_defaults(defaults);
    let sections = ini
        .read(text.to_string())
        .map_err(|e| ConfigError(format!("error parsing configuration file: {e}")))?;
    let Some(general) = sections.get("general") else {
        return Ok(());
    };
    for (key, value) in general {
        let value = value.clone().unwrap_or_default();
        match key.as_str() {
            "daemon" => into.daemon = parse_bool(key, &value)?,
            "method" => into.method = value,
            "path" => into.path = Some(value),
            "logfile" => into.logfile = Some(value.into()),
            "pidfile" => into.pidfile = value.into(),
            "fsfreeze-hook" => into.fsfreeze_hook = Some(value.into()),
            "statedir" => into.statedir = value.into(),
            "verbose" => into.verbose = parse_bool(key, &value)?,
            "retry-path" => into.retry_path = parse_bool(key, &value)?,
            // qemu-ga reads these as one string split on ',' (items
            // reversed); `;` separators are honoured when the policy is built.
            "block-rpcs" | "blacklist" => {
                into.block = value.split(',').rev().map(str::to_string).collect()
            }
            "allow-rpcs" => into.allow = value.split(',').rev().map(str::to_string).collect(),
            "fsfreeze-hook-timeout" => {
                into.fsfreeze_hook_timeout = Some(parse_seconds(key, &value)?)
            }
            "fsfreeze-auto-thaw" => into.fsfreeze_auto_thaw = Some(parse_seconds(key, &value)?),
            "guest-info-version" => into.guest_info_version = value,
            _ => {}
        }
    }
    Ok(())
}

impl Config {
    /// The built-in defaults.
    pub fn defaults() -> Config {
        Config {
            daemon: false,
            method: Method::VirtioSerial.name().into(),
            path: None,
            logfile: None,
            pidfile: DEFAULT_PIDFILE.into(),
            fsfreeze_hook: None,
            statedir: DEFAULT_STATEDIR.into(),
            verbose: false,
            retry_path: false,
            block: Vec::new(),
            allow: Vec::new(),
            fsfreeze_hook_timeout: None,
            fsfreeze_auto_thaw: None,
            guest_info_version: GUEST_INFO_VERSION.into(),
        }
    }

    /// The config file (`-c`, else `$QGA_CONF`, else the default, which may
    /// be absent), then the command line.
    pub fn load(args: &AgentArgs, env_conf: Option<PathBuf>) -> Result<Config, ConfigError> {
        let mut config = Config::defaults();
        let (file, required) = match (&args.config, env_conf) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) => (path, false),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(&file) {
            Ok(text) => read_keyfile(&text, &mut config)?,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConfigError(format!(
                    "failed to read configuration file '{}': {e}",
                    file.display()
                )))
            }
        }
        config.apply(args);
        Ok(config)
    }

    fn apply(&mut self, args: &AgentArgs) {
        if let Some(m) = &args.method {
            self.method = m.clone();
        }
        if let Some(p) = &args.path {
            self.path = Some(p.clone());
        }
        if let Some(l) = &args.logfile {
            self.logfile = Some(l.clone());
        }
        if let Some(p) = &args.pidfile {
            self.pidfile = p.clone();
        }
        if let Some(hook) = &args.fsfreeze_hook {
            self.fsfreeze_hook = Some(hook.clone().unwrap_or_else(|| DEFAULT_FSFREEZE_HOOK.into()));
        }
        if let Some(s) = &args.statedir {
            self.statedir = s.clone();
        }
        self.daemon |= args.daemonize;
        self.verbose |= args.verbose;
        self.retry_path |= args.retry_path;
        self.block.extend(args.block.iter().cloned());
        self.allow.extend(args.allow.iter().cloned());
        if let Some(t) = args.fsfreeze_hook_timeout {
            self.fsfreeze_hook_timeout = Some(t);
        }
        if let Some(t) = args.fsfreeze_auto_thaw {
            self.fsfreeze_auto_thaw = Some(t);
        }
        if let Some(v) = &args.guest_info_version {
            self.guest_info_version = v.clone();
        }
        if self.path.is_none() {
            self.path = Method::parse(&self.method)
                .and_then(Method::default_path)
                .map(str::to_string);
        }
    }

    /// The method, checked.
    pub fn method(&self) -> Result<Method, ConfigError> {
        Method::parse(&self.method)
            .ok_or_else(|| ConfigError(format!("invalid method '{}'", self.method)))
    }

    /// The channel path, required.
    pub fn channel_path(&self) -> Result<&str, ConfigError> {
        self.path
            .as_deref()
            .ok_or_else(|| ConfigError("must specify a path for this channel".into()))
    }

    /// Command names of a list option, `;` separators honoured too.
    pub fn names(list: &[String]) -> Vec<&str> {
        list.iter()
            .flat_map(|item| item.split(';'))
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// `-D`: the configuration as a key file, as qemu-ga writes it.
    pub fn dump(&self) -> String {
        let mut out = String::from("[general]\n");
        let _ = writeln!(out, "daemon={}", self.daemon);
        let _ = writeln!(out, "method={}", self.method);
        if let Some(p) = &self.path {
            let _ = writeln!(out, "path={p}");
        }
        if let Some(l) = &self.logfile {
            let _ = writeln!(out, "logfile={}", l.display());
        }
        let _ = writeln!(out, "pidfile={}", self.pidfile.display());
        if let Some(h) = &self.fsfreeze_hook {
            let _ = writeln!(out, "fsfreeze-hook={}", h.display());
        }
        let _ = writeln!(out, "statedir={}", self.statedir.display());
        let _ = writeln!(out, "verbose={}", self.verbose);
        let _ = writeln!(out, "retry-path={}", self.retry_path);
        let _ = writeln!(out, "block-rpcs={}", self.block.join(","));
        if !self.allow.is_empty() {
            let _ = writeln!(out, "allow-rpcs={}", self.allow.join(","));
        }
        // Our keys, only when set, so a qemu-ga configuration dumps as
        // qemu-ga dumps it.
        if let Some(t) = self.fsfreeze_hook_timeout {
            let _ = writeln!(out, "fsfreeze-hook-timeout={t}");
        }
        if let Some(t) = self.fsfreeze_auto_thaw {
            let _ = writeln!(out, "fsfreeze-auto-thaw={t}");
        }
        if self.guest_info_version != GUEST_INFO_VERSION {
            let _ = writeln!(out, "guest-info-version={}", self.guest_info_version);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Invocation};

    fn args(list: &[&str]) -> AgentArgs {
        match cli::parse(list.iter().map(std::ffi::OsString::from)) {
            Ok(Invocation::Agent(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    /// The config of QEMU's own test (tests/data/test-qga-config).
    const QEMU_TEST_CONFIG: &str = "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\npidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\nblock-rpcs=guest-ping;guest-get-time\n";

    #[test]
    fn dump_matches_qemu_ga_for_its_test_config() {
        let dir = std::env::temp_dir().join(format!("qga-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("qemu-ga.conf");
        std::fs::write(&file, QEMU_TEST_CONFIG).unwrap();
        let config = Config::load(&args(&[]), Some(file.clone())).unwrap();
        // Byte for byte what Debian's qemu-ga 7.2 prints for this file.
        assert_eq!(
            config.dump(),
            "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\n\
             pidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\nretry-path=false\n\
             block-rpcs=guest-ping;guest-get-time\n"
        );
        assert_eq!(
            Config::names(&config.block),
            ["guest-ping", "guest-get-time"]
        );
        // -c makes a missing file fatal; the default may be absent.
        assert!(Config::load(&args(&["-c", "/nonexistent/qga.conf"]), None).is_err());
        assert!(Config::load(&args(&[]), Some(dir.join("absent.conf"))).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_line_overrides_and_appends() {
        let a = args(&[
            "-b",
            "a,b",
            "-b",
            "c",
            "-F",
            "-l",
            "/tmp/l",
            "-r",
            "-d",
            "-m",
            "isa-serial",
            "-t",
            "/s",
        ]);
        let mut config = Config::defaults();
        config.block = vec!["z".into()];
        config.apply(&a);
        // What qemu-ga 7.2 prints for the same options (plus the file's "z").
        assert_eq!(
            config.dump(),
            "[general]\ndaemon=true\nmethod=isa-serial\npath=/dev/ttyS0\nlogfile=/tmp/l\npidfile=/var/run/qemu-ga.pid\n\
             fsfreeze-hook=/etc/qemu/fsfreeze-hook\nstatedir=/s\nverbose=false\nretry-path=true\nblock-rpcs=z,b,a,c\n"
        );
    }

    #[test]
    fn method_and_path_checks() {
        let mut config = Config::defaults();
        config.apply(&args(&["-m", "unix-listen"]));
        assert_eq!(
            config.channel_path().unwrap_err().0,
            "must specify a path for this channel"
        );
        config.method = "bogus".into();
        assert_eq!(config.method().unwrap_err().0, "invalid method 'bogus'");
        let mut file = Config::defaults();
        assert!(read_keyfile("[general]\nverbose=maybe\n", &mut file).is_err());
        read_keyfile(
            "# comment\n[other]\nx=1\n[general]\nretry-path=1\n",
            &mut file,
        )
        .unwrap();
        assert!(file.retry_path);
    }

    #[test]
    fn fsfreeze_time_limits() {
        let mut file = Config::defaults();
        read_keyfile(
            "[general]\nfsfreeze-hook-timeout=10\nfsfreeze-auto-thaw=600\n",
            &mut file,
        )
        .unwrap();
        assert_eq!(
            (file.fsfreeze_hook_timeout, file.fsfreeze_auto_thaw),
            (Some(10), Some(600))
        );
        assert!(read_keyfile("[general]\nfsfreeze-auto-thaw=soon\n", &mut file).is_err());
        file.apply(&args(&[
            "--fsfreeze-auto-thaw",
            "5",
            "--fsfreeze-hook-timeout=3",
        ]));
        assert_eq!(
            (file.fsfreeze_hook_timeout, file.fsfreeze_auto_thaw),
            (Some(3), Some(5))
        );
        assert!(file
            .dump()
            .ends_with("fsfreeze-hook-timeout=3\nfsfreeze-auto-thaw=5\n"));
        assert!(cli::parse(["--fsfreeze-auto-thaw", "x"].map(std::ffi::OsString::from)).is_err());
    }
}
