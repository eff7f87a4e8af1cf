//! The commands of the Linux agent: everything qemu-ga answers on Linux.
//!
//! [`LinuxCommands`] is one [`Commands`] table, a list of the commands in
//! the order of qemu-ga's registration (its schema, `qga/qapi-schema.json`,
//! with agent-core's four core commands where qemu-ga registers them), so
//! `guest-info` lists it the way qemu-ga does. One module per family:
//!
//! | module | commands |
//! |---|---|
//! | [`time`] | `guest-get-time`, `guest-set-time` |
//! | [`power`] | `guest-shutdown`, `guest-suspend-{disk,ram,hybrid}` |
//! | [`file`](mod@file) | `guest-file-{open,close,read,write,seek,flush}` |
//! | [`stage`] | large guest-file-write data, staged as it arrives |
//! | [`fs`] | `guest-fsfreeze-*`, `guest-fstrim`, `guest-get-fsinfo` |
//! | [`freeze`] | the frozen state, its hook, thaw on exit, the auto-thaw watchdog |
//! | [`network`] | `guest-network-get-interfaces` |
//! | [`system`] | vcpus, memory blocks, host name, users, timezone, osinfo, load |
//! | [`disks`] | `guest-get-disks` |
//! | [`user`] | `guest-set-user-password` |
//! | [`exec`] | `guest-exec`, `guest-exec-status` |
//! | [`ssh`] | `guest-ssh-{get,add,remove}-authorized-keys` |
//!
//! `guest-get-devices` is Windows-only and, as in a Linux build of
//! qemu-ga, not registered (CommandNotFound).
//!
//! Every argument is read with agent-core's typed getters in schema order,
//! then [`Args::finish`] rejects unknown members, which reproduces QAPI's
//! error order.
//! Results are written in qemu-ga's member order (`QDict` buckets, see
//! [`out`]). A command this system cannot carry out answers qemu-ga's
//! error for that case.
//!
//! ```
//! use agent_core::{Agent, Policy};
//! use agent_linux::commands::{CommandsConfig, LinuxCommands};
//!
//! let dir = std::env::temp_dir();
//! let commands = LinuxCommands::new(CommandsConfig::new(dir, None));
//! let mut agent = Agent::new(vec![0u8; 4096], commands, Policy::new());
//! let mut out = Vec::new();
//! agent.feed(br#"{"execute": "guest-fsfreeze-status"}"#, &mut out).unwrap();
//! assert_eq!(out, b"{\"return\": \"thawed\"}\n");
//! ```

pub mod disks;
pub mod error;
pub mod exec;
pub mod file;
pub mod freeze;
pub mod fs;
pub mod network;
pub mod out;
pub mod params;
pub mod power;
pub mod run;
pub mod ssh;
pub mod stage;
pub mod system;
pub mod time;
pub mod user;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_core::prelude::*;
use agent_core::spill::Spill;

pub use error::Error;
pub use out::{Obj, Out};

use error::CmdResult;

/// Send a command's result: `{}` for [`Out::Unit`] (or nothing, for a
/// command without success response), else the value.
fn respond<'a>(reply: Reply<'_>, result: CmdResult<'a>) -> Outcome<'a, LinuxCommands> {
    match result? {
        Out::Unit => Ok(reply.ok_empty()?),
        value => {
            let mut writer = reply.ok()?;
            value.write(&mut writer)?;
            Ok(writer.finish()?)
        }
    }
}

/// A table entry for a command `run` answers with a value.
macro_rules! command {
    ($name:literal, |$t:pat_param, $args:ident| $run:expr) => {
        Command::new($name, |$t: &mut LinuxCommands, $args, reply| {
            respond(reply, $run)
        })
    };
}

/// Programs and system paths the commands use. The defaults are the real
/// ones; tests point the side-effecting ones at harmless stand-ins.
#[derive(Clone, Debug)]
pub struct SystemPaths {
    /// `hwclock` (guest-set-time), run as `hwclock -w` / `hwclock -s`.
    pub hwclock: PathBuf,
    /// `shutdown`, run as `shutdown -h -P|-H|-r +0 "hypervisor initiated shutdown"`.
    pub shutdown: PathBuf,
    /// `poweroff`, preferred for mode powerdown when executable.
    pub poweroff: PathBuf,
    /// `halt`, preferred for mode halt when executable.
    pub halt: PathBuf,
    /// `reboot`, preferred for mode reboot when executable.
    pub reboot: PathBuf,
    /// `systemctl` (suspend via systemd), searched in `PATH` if relative.
    pub systemctl: PathBuf,
    /// `pm-is-supported` (suspend via pm-utils).
    pub pm_is_supported: PathBuf,
    /// Directory holding `pm-hibernate`, `pm-suspend`, `pm-suspend-hybrid`
    /// (empty: search `PATH`).
    pub pm_dir: PathBuf,
    /// `chpasswd` (guest-set-user-password).
    pub chpasswd: PathBuf,
    /// The sysfs mount (`/sys`): cpus, memory blocks, power state, disks.
    pub sysfs: PathBuf,
    /// The procfs mount (`/proc`): mounts, load, network statistics.
    pub procfs: PathBuf,
    /// The utmp database (`/var/run/utmp`) for guest-get-users.
    pub utmp: PathBuf,
    /// The passwd database (`/etc/passwd`) for the ssh commands.
    pub passwd: PathBuf,
    /// udev's device database (`/run/udev/data`), for disk serials.
    pub udev_data: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            hwclock: "/sbin/hwclock".into(),
            shutdown: "/sbin/shutdown".into(),
            poweroff: "/sbin/poweroff".into(),
            halt: "/sbin/halt".into(),
            reboot: "/sbin/reboot".into(),
            systemctl: "systemctl".into(),
            pm_is_supported: "pm-is-supported".into(),
            pm_dir: PathBuf::new(),
            chpasswd: "chpasswd".into(),
            sysfs: "/sys".into(),
            procfs: "/proc".into(),
            utmp: "/var/run/utmp".into(),
            passwd: "/etc/passwd".into(),
            udev_data: "/run/udev/data".into(),
        }
    }
}

/// What the commands need from the agent's configuration.
#[derive(Clone, Debug)]
pub struct CommandsConfig {
    /// qemu-ga's `-t`/`--statedir`: holds `qga.state` (the file-handle
    /// counter) and `qga.state.isfrozen`.
    pub statedir: PathBuf,
    /// qemu-ga's `-F`/`--fsfreeze-hook`, run with `freeze` / `thaw`.
    pub fsfreeze_hook: Option<PathBuf>,
    /// How long the hook may run (`--fsfreeze-hook-timeout`).
    pub fsfreeze_hook_timeout: Duration,
    /// Programs and system paths; [`SystemPaths::default`] in production.
    pub system: SystemPaths,
}

impl CommandsConfig {
    /// A configuration with the real system paths.
    pub fn new(statedir: PathBuf, fsfreeze_hook: Option<PathBuf>) -> Self {
        CommandsConfig {
            statedir,
            fsfreeze_hook,
            fsfreeze_hook_timeout: freeze::DEFAULT_HOOK_TIMEOUT,
            system: SystemPaths::default(),
        }
    }
}

/// The Linux command table and the state its commands keep: open file
/// handles, exec children, the frozen state.
pub struct LinuxCommands {
    config: CommandsConfig,
    files: file::Files,
    exec: exec::Children,
    freeze: Arc<freeze::Freezer>,
    stage: stage::Stage,
}

impl LinuxCommands {
    /// Every command, in qemu-ga's registration (schema) order, agent-core's
    /// four included: `guest-info` lists them in reverse.
    const COMMANDS: [Command<Self>; 43] = [
        Command::guest_sync_delimited(),
        Command::guest_sync(),
        Command::guest_ping(),
        command!("guest-get-time", |_, args| time::get_time(args)),
        command!("guest-set-time", |t, args| time::set_time(
            args,
            &t.config.system
        )),
        Command::guest_info(),
        command!("guest-shutdown", |t, args| power::shutdown(
            args,
            &t.config.system
        ))
        .without_success_response(),
        command!("guest-file-open", |t, args| t.files.open(args)),
        command!("guest-file-close", |t, args| t.files.close(args)),
        Command::new("guest-file-read", |t, args, reply| {
            t.files.read(args, reply)
        }),
        command!("guest-file-write", |t, args| t
            .files
            .write(args, &mut t.stage)),
        command!("guest-file-seek", |t, args| t.files.seek(args)),
        command!("guest-file-flush", |t, args| t.files.flush(args)),
        command!("guest-fsfreeze-status", |t, args| fs::status(
            args, &t.freeze
        ))
        .allowed_while_frozen(),
        command!("guest-fsfreeze-freeze", |t, args| fs::freeze(
            args, false, &t.freeze
        )),
        command!("guest-fsfreeze-freeze-list", |t, args| fs::freeze(
            args, true, &t.freeze
        )),
        command!("guest-fsfreeze-thaw", |t, args| fs::thaw(args, &t.freeze)).allowed_while_frozen(),
        command!("guest-fstrim", |t, args| fs::fstrim(args, &t.config.system)),
        command!("guest-suspend-disk", |t, args| power::suspend(
            args,
            power::SuspendMode::Disk,
            &t.config.system
        ))
        .without_success_response(),
        command!("guest-suspend-ram", |t, args| power::suspend(
            args,
            power::SuspendMode::Ram,
            &t.config.system
        ))
        .without_success_response(),
        command!("guest-suspend-hybrid", |t, args| power::suspend(
            args,
            power::SuspendMode::Hybrid,
            &t.config.system
        ))
        .without_success_response(),
        command!("guest-network-get-interfaces", |t, args| {
            network::get_interfaces(args, &t.config.system)
        }),
        command!("guest-get-vcpus", |t, args| system::get_vcpus(
            args,
            &t.config.system
        )),
        command!("guest-set-vcpus", |t, args| system::set_vcpus(
            args,
            &t.config.system
        )),
        command!("guest-get-disks", |t, args| disks::get_disks(
            args,
            &t.config.system
        )),
        command!("guest-get-fsinfo", |t, args| fs::get_fsinfo(
            args,
            &t.config.system
        )),
        command!(
            "guest-set-user-password",
            |t, args| user::set_user_password(args, &t.config.system)
        ),
        command!("guest-get-memory-blocks", |t, args| {
            system::get_memory_blocks(args, &t.config.system)
        }),
        command!("guest-set-memory-blocks", |t, args| {
            system::set_memory_blocks(args, &t.config.system)
        }),
        command!("guest-get-memory-block-info", |t, args| {
            system::get_memory_block_info(args, &t.config.system)
        }),
        command!("guest-exec-status", |t, args| t.exec.status(args)),
        command!("guest-exec", |t, args| t.exec.spawn(args)),
        command!("guest-get-host-name", |_, args| system::get_host_name(args)),
        command!("guest-get-users", |t, args| system::get_users(
            args,
            &t.config.system
        )),
        command!("guest-get-timezone", |_, args| system::get_timezone(args)),
        command!("guest-get-osinfo", |_, args| system::get_osinfo(args)),
        command!("guest-ssh-get-authorized-keys", |t, args| {
            ssh::get_authorized_keys(args, &t.config.system)
        }),
        command!("guest-ssh-add-authorized-keys", |t, args| {
            ssh::add_authorized_keys(args, &t.config.system)
        }),
        command!("guest-ssh-remove-authorized-keys", |t, args| {
            ssh::remove_authorized_keys(args, &t.config.system)
        }),
        command!("guest-get-diskstats", |t, args| disks::get_diskstats(
            args,
            &t.config.system
        )),
        command!("guest-get-cpustats", |t, args| system::get_cpustats(
            args,
            &t.config.system
        )),
        command!("guest-network-get-route", |t, args| network::get_route(
            args,
            &t.config.system
        )),
        command!("guest-get-load", |t, args| system::get_load(
            args,
            &t.config.system
        )),
    ];

    /// The commands, with state restored from `config.statedir` (the
    /// handle counter and, if `qga.state.isfrozen` exists, the frozen
    /// state).
    pub fn new(config: CommandsConfig) -> Self {
        let files = file::Files::new(&config.statedir);
        let hook = config.fsfreeze_hook.clone().map(|path| freeze::Hook {
            path,
            timeout: config.fsfreeze_hook_timeout,
        });
        let freeze = freeze::Freezer::new(&config.statedir, hook, &config.system);
        let stage = stage::Stage::new(
            vec![std::env::temp_dir(), config.statedir.clone()],
            Arc::clone(&freeze),
        );
        LinuxCommands {
            config,
            files,
            exec: exec::Children::new(),
            freeze,
            stage,
        }
    }

    /// Whether filesystems are frozen by guest-fsfreeze-freeze. While they
    /// are, only the commands allowed while frozen run: the table reports
    /// it through [`Commands::is_frozen`], and agent-core's dispatcher
    /// enforces it.
    pub fn is_frozen(&self) -> bool {
        self.freeze.is_frozen()
    }

    /// The owner of the frozen state, for the daemon's logger, signal
    /// thread, panic hook and watchdog.
    pub fn freezer(&self) -> Arc<freeze::Freezer> {
        Arc::clone(&self.freeze)
    }

    /// The configuration.
    pub fn config(&self) -> &CommandsConfig {
        &self.config
    }
}

impl Commands for LinuxCommands {
    type Error = Error;

    fn commands(&self) -> &[Command<Self>] {
        &Self::COMMANDS
    }

    /// The dispatcher then disables all but the commands allowed while
    /// frozen (and `guest-info` shows it).
    fn is_frozen(&self) -> bool {
        self.freeze.is_frozen()
    }

    /// Large `buf-b64` strings go to the stage.
    fn spill(&mut self) -> Option<&mut dyn Spill> {
        Some(&mut self.stage)
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn table_order_and_success_response() {
        let (_dir, cmds) = commands();
        let names: Vec<_> = cmds.commands().iter().map(|c| c.info().name()).collect();
        assert_eq!(names.len(), 43);
        assert_eq!(
            names[..6],
            [
                "guest-sync-delimited",
                "guest-sync",
                "guest-ping",
                "guest-get-time",
                "guest-set-time",
                "guest-info"
            ]
        );
        assert_eq!(names[30], "guest-exec-status");
        assert_eq!(names[31], "guest-exec");
        assert_eq!(*names.last().unwrap(), "guest-get-load");
        assert!(!names.contains(&"guest-get-devices"));
        let silent: Vec<_> = cmds
            .commands()
            .iter()
            .filter(|c| !c.info().has_success_response())
            .map(|c| c.info().name())
            .collect();
        assert_eq!(
            silent,
            [
                "guest-shutdown",
                "guest-suspend-disk",
                "guest-suspend-ram",
                "guest-suspend-hybrid"
            ]
        );
    }

    #[test]
    fn devices_not_found() {
        let mut t = Harness::new();
        assert_eq!(
            t.call(r#"{"execute": "guest-get-devices"}"#),
            r#"{"error": {"class": "CommandNotFound", "desc": "The command guest-get-devices has not been found"}}"#
        );
    }

    #[test]
    fn info_lists_the_combined_table() {
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-info"}"#);
        let cmds = v["return"]["supported_commands"].as_array().unwrap();
        assert_eq!(cmds.len(), 43);
        assert_eq!(cmds[0]["name"], "guest-get-load");
        assert_eq!(cmds[42]["name"], "guest-sync-delimited");
    }
}
