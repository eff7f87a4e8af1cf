//! `guest-shutdown` and `guest-suspend-{disk,ram,hybrid}`. Neither answers
//! on success; failures are reported.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent_core::args::Args;

use super::error::CmdResult;
use super::params::text;
use super::run::{exit_status, run_command};
use super::{Error, Out, SystemPaths};

/// guest-shutdown's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// `halt`
    Halt,
    /// `powerdown` (the default)
    Powerdown,
    /// `reboot`
    Reboot,
}

impl ShutdownMode {
    /// Parse qemu-ga's mode names.
    pub fn parse(mode: &str) -> Option<Self> {
        match mode {
            "halt" => Some(ShutdownMode::Halt),
            "powerdown" => Some(ShutdownMode::Powerdown),
            "reboot" => Some(ShutdownMode::Reboot),
            _ => None,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `guest-shutdown {mode?}`.
pub fn shutdown<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let mode = args.opt_str("mode")?;
    args.finish()?;
    let mode = match mode.map(|m| text(&m)) {
        None => ShutdownMode::Powerdown,
        Some(m) => ShutdownMode::parse(&m).ok_or_else(|| {
            Error::msg("mode is invalid (valid values are: halt|powerdown|reboot")
        })?,
    };
    let (direct, flag) = match mode {
        ShutdownMode::Halt => (&sys.halt, "-H"),
        ShutdownMode::Powerdown => (&sys.poweroff, "-P"),
        ShutdownMode::Reboot => (&sys.reboot, "-r"),
    };
    if is_executable(direct) {
        run_command(direct.as_os_str(), &[] as &[&str], None, "shutdown")?;
    } else {
        run_command(
            sys.shutdown.as_os_str(),
            &["-h", flag, "+0", "hypervisor initiated shutdown"],
            None,
            "shutdown",
        )?;
    }
    Ok(Out::Unit)
}

/// Which suspend a guest-suspend-* command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendMode {
    /// guest-suspend-disk (hibernate)
    Disk,
    /// guest-suspend-ram
    Ram,
    /// guest-suspend-hybrid
    Hybrid,
}

impl SuspendMode {
    fn systemd_unit(self) -> &'static str {
        match self {
            SuspendMode::Disk => "hibernate",
            SuspendMode::Ram => "suspend",
            SuspendMode::Hybrid => "hybrid-sleep",
        }
    }

    fn pm_flag(self) -> &'static str {
        match self {
            SuspendMode::Disk => "--hibernate",
            SuspendMode::Ram => "--suspend",
            SuspendMode::Hybrid => "--suspend-hybrid",
        }
    }

    fn pm_program(self) -> &'static str {
        match self {
            SuspendMode::Disk => "pm-hibernate",
            SuspendMode::Ram => "pm-suspend",
            SuspendMode::Hybrid => "pm-suspend-hybrid",
        }
    }

    /// The word written to `/sys/power/state` (hybrid has none).
    fn sysfs_state(self) -> Option<&'static str> {
        match self {
            SuspendMode::Disk => Some("disk"),
            SuspendMode::Ram => Some("mem"),
            SuspendMode::Hybrid => None,
        }
    }
}

/// Try one strategy: `Some(result)` if it supports the mode.
fn systemd(mode: SuspendMode, sys: &SystemPaths) -> Option<Result<(), Error>> {
    let unit = format!("systemd-{}", mode.systemd_unit());
    // LSB status codes: 1..=3 mean the unit exists (3: not running); 4 is
    // an unknown unit.
    let status = exit_status(sys.systemctl.as_os_str(), &["status", unit.as_str()])?;
    if !(1..4).contains(&status) {
        return None;
    }
    let code = exit_status(sys.systemctl.as_os_str(), &[mode.systemd_unit()]);
    Some(match code {
        Some(0) => Ok(()),
        Some(c) => Err(Error::msg(format!(
            "the helper program 'systemctl {}' returned an unexpected exit status code ({c})",
            mode.systemd_unit()
        ))),
        None => Err(Error::msg(format!(
            "failed to run 'systemctl {}'",
            mode.systemd_unit()
        ))),
    })
}

fn pm_utils(mode: SuspendMode, sys: &SystemPaths) -> Option<Result<(), Error>> {
    if exit_status(sys.pm_is_supported.as_os_str(), &[mode.pm_flag()]) != Some(0) {
        return None;
    }
    let program = sys.pm_dir.join(mode.pm_program());
    Some(match exit_status(program.as_os_str(), &[] as &[&str]) {
        Some(0) => Ok(()),
        Some(c) => Err(Error::msg(format!(
            "the helper program '{}' returned an unexpected exit status code ({c})",
            mode.pm_program()
        ))),
        None => Err(Error::msg(format!("failed to run '{}'", mode.pm_program()))),
    })
}

fn sysfs(mode: SuspendMode, sys: &SystemPaths) -> Option<Result<(), Error>> {
    let word = mode.sysfs_state()?;
    let path = sys.sysfs.join("power/state");
    let states = std::fs::read_to_string(&path).ok()?;
    if !states.split_whitespace().any(|s| s == word) {
        return None;
    }
    Some(
        std::fs::write(&path, word)
            .map_err(|e| Error::os(format!("suspend: cannot write to '{}'", path.display()), &e)),
    )
}

/// `guest-suspend-disk`, `-ram`, `-hybrid`: systemd, then pm-utils, then
/// `/sys/power/state`, as qemu-ga tries them.
pub fn suspend<'a>(args: &Args<'a>, mode: SuspendMode, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let mut last = None;
    for strategy in [systemd, pm_utils, sysfs] {
        match strategy(mode, sys) {
            Some(Ok(())) => return Ok(Out::Unit),
            Some(Err(e)) => last = Some(e),
            None => {}
        }
    }
    Err(last
        .unwrap_or_else(|| Error::msg("the requested suspend mode is not supported by the guest"))
        .into())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, Harness, TempDir};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn shutdown_validation() {
        let mut t = Harness::new();
        assert_eq!(
            t.error(r#"{"execute": "guest-shutdown", "arguments": {"mode": "off"}}"#),
            "mode is invalid (valid values are: halt|powerdown|reboot"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-shutdown", "arguments": {"mode": 1}}"#),
            "Invalid parameter type for 'mode', expected: string"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-shutdown", "arguments": {"x": 1}}"#),
            "Parameter 'x' is unexpected"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-shutdown"}"#),
            "child process has failed to shutdown"
        );
    }

    #[test]
    fn shutdown_runs_the_program_silently() {
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        let marker = dir.path().join("ran");
        let script = dir.path().join("reboot");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" > {}\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        cfg.system.reboot = script;
        let mut t = Harness::with_config(dir, cfg);
        let out = t.raw(r#"{"execute": "guest-shutdown", "arguments": {"mode": "reboot"}}"#);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert!(marker.exists());
    }

    #[test]
    fn suspend_unsupported() {
        let mut t = Harness::new();
        // The test paths have no systemctl and no pm-utils; the real
        // /sys/power/state may exist, so point sysfs away from it.
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        cfg.system.sysfs = dir.path().join("nosys");
        let mut t2 = Harness::with_config(dir, cfg);
        for cmd in [
            "guest-suspend-disk",
            "guest-suspend-ram",
            "guest-suspend-hybrid",
        ] {
            assert_eq!(
                t2.error(&format!(r#"{{"execute": "{cmd}"}}"#)),
                "the requested suspend mode is not supported by the guest"
            );
        }
        assert_eq!(
            t.error(r#"{"execute": "guest-suspend-ram", "arguments": {"a": 1}}"#),
            "Parameter 'a' is unexpected"
        );
    }

    #[test]
    fn suspend_via_fake_sysfs() {
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        let sysfs = dir.path().join("sys");
        std::fs::create_dir_all(sysfs.join("power")).unwrap();
        std::fs::write(sysfs.join("power/state"), "freeze mem\n").unwrap();
        cfg.system.sysfs = sysfs.clone();
        let mut t = Harness::with_config(dir, cfg);
        assert!(t.raw(r#"{"execute": "guest-suspend-ram"}"#).is_empty());
        assert_eq!(
            std::fs::read_to_string(sysfs.join("power/state")).unwrap(),
            "mem"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-suspend-disk"}"#),
            "the requested suspend mode is not supported by the guest"
        );
    }
}
