//! The OS commands of the Linux agent: everything qemu-ga answers on Linux
//! except the four core commands (`guest-sync-delimited`, `guest-sync`,
//! `guest-ping`, `guest-info`), which agent-core's
//! [`CoreCommands`](agent_core::CoreCommands) provides.
//!
//! [`LinuxCommands`] is one [`Commands`] table, registered in the order of
//! qemu-ga's schema (`qga/qapi-schema.json`), so `guest-info` lists the
//! combined table `(CoreCommands::new(), LinuxCommands::new(..))` the way
//! qemu-ga does. One module per family:
//!
//! | module | commands |
//! |---|---|
//! | [`time`] | `guest-get-time`, `guest-set-time` |
//! | [`power`] | `guest-shutdown`, `guest-suspend-{disk,ram,hybrid}` |
//! | [`file`] | `guest-file-{open,close,read,write,seek,flush}` |
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
//! then unknown members are rejected, which reproduces QAPI's error order.
//! Results are written in qemu-ga's member order (`QDict` buckets, see
//! [`out`]). A command this system cannot carry out answers qemu-ga's
//! error for that case.
//!
//! ```
//! use agent_core::{Agent, CoreCommands, Policy};
//! use agent_linux::commands::{CommandsConfig, LinuxCommands};
//!
//! let dir = std::env::temp_dir();
//! let commands = (CoreCommands::new(), LinuxCommands::new(CommandsConfig::new(dir, None)));
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

use agent_core::args::Args;
use agent_core::dispatch::{CommandInfo, Commands, DispatchError, FROZEN_ALLOWED};
use agent_core::response::{ErrorClass, Replied, Reply};
use agent_core::spill::Spill;
use embedded_io::Write;

pub use error::Error;
pub use out::{Obj, Out};

/// The command table, in qemu-ga's registration (schema) order.
const TABLE: [CommandInfo; 39] = [
    CommandInfo::new("guest-get-time"),
    CommandInfo::new("guest-set-time"),
    CommandInfo::without_success_response("guest-shutdown"),
    CommandInfo::new("guest-file-open"),
    CommandInfo::new("guest-file-close"),
    CommandInfo::new("guest-file-read"),
    CommandInfo::new("guest-file-write"),
    CommandInfo::new("guest-file-seek"),
    CommandInfo::new("guest-file-flush"),
    CommandInfo::new("guest-fsfreeze-status"),
    CommandInfo::new("guest-fsfreeze-freeze"),
    CommandInfo::new("guest-fsfreeze-freeze-list"),
    CommandInfo::new("guest-fsfreeze-thaw"),
    CommandInfo::new("guest-fstrim"),
    CommandInfo::without_success_response("guest-suspend-disk"),
    CommandInfo::without_success_response("guest-suspend-ram"),
    CommandInfo::without_success_response("guest-suspend-hybrid"),
    CommandInfo::new("guest-network-get-interfaces"),
    CommandInfo::new("guest-get-vcpus"),
    CommandInfo::new("guest-set-vcpus"),
    CommandInfo::new("guest-get-disks"),
    CommandInfo::new("guest-get-fsinfo"),
    CommandInfo::new("guest-set-user-password"),
    CommandInfo::new("guest-get-memory-blocks"),
    CommandInfo::new("guest-set-memory-blocks"),
    CommandInfo::new("guest-get-memory-block-info"),
    CommandInfo::new("guest-exec-status"),
    CommandInfo::new("guest-exec"),
    CommandInfo::new("guest-get-host-name"),
    CommandInfo::new("guest-get-users"),
    CommandInfo::new("guest-get-timezone"),
    CommandInfo::new("guest-get-osinfo"),
    CommandInfo::new("guest-ssh-get-authorized-keys"),
    CommandInfo::new("guest-ssh-add-authorized-keys"),
    CommandInfo::new("guest-ssh-remove-authorized-keys"),
    CommandInfo::new("guest-get-diskstats"),
    CommandInfo::new("guest-get-cpustats"),
    CommandInfo::new("guest-network-get-route"),
    CommandInfo::new("guest-get-load"),
];

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
    /// are, only agent-core's [`FROZEN_ALLOWED`] commands run: the table
    /// reports it through [`Commands::is_frozen`], and also enforces it for
    /// its own commands.
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
    fn list(&self) -> impl Iterator<Item = CommandInfo> + '_ {
        TABLE.into_iter()
    }

    /// Tells the dispatcher, which then disables all but the frozen set
    /// (and `guest-info` shows it).
    fn is_frozen(&self) -> bool {
        self.freeze.is_frozen()
    }

    /// Large `buf-b64` strings go to the stage.
    fn spill(&mut self) -> Option<&mut dyn Spill> {
        Some(&mut self.stage)
    }

    fn call<W: Write + ?Sized>(
        &mut self,
        name: &str,
        args: Args<'_>,
        reply: Reply<'_, W>,
    ) -> Result<Replied, W::Error> {
        if self.freeze.is_frozen() && !FROZEN_ALLOWED.contains(&name) {
            return reply.error(ErrorClass::CommandNotFound, &DispatchError::Disabled(name));
        }
        let sys = &self.config.system;
        let result = match name {
            "guest-get-time" => time::get_time(args),
            "guest-set-time" => time::set_time(args, sys),
            "guest-shutdown" => power::shutdown(args, sys),
            "guest-file-open" => self.files.open(args),
            "guest-file-close" => self.files.close(args),
            "guest-file-read" => return self.files.read(args, reply),
            "guest-file-write" => self.files.write(args, &mut self.stage),
            "guest-file-seek" => self.files.seek(args),
            "guest-file-flush" => self.files.flush(args),
            "guest-fsfreeze-status" => fs::status(args, &self.freeze),
            "guest-fsfreeze-freeze" => fs::freeze(args, false, &self.freeze),
            "guest-fsfreeze-freeze-list" => fs::freeze(args, true, &self.freeze),
            "guest-fsfreeze-thaw" => fs::thaw(args, &self.freeze),
            "guest-fstrim" => fs::fstrim(args, sys),
            "guest-suspend-disk" => power::suspend(args, power::SuspendMode::Disk, sys),
            "guest-suspend-ram" => power::suspend(args, power::SuspendMode::Ram, sys),
            "guest-suspend-hybrid" => power::suspend(args, power::SuspendMode::Hybrid, sys),
            "guest-network-get-interfaces" => network::get_interfaces(args, sys),
            "guest-get-vcpus" => system::get_vcpus(args, sys),
            "guest-set-vcpus" => system::set_vcpus(args, sys),
            "guest-get-disks" => disks::get_disks(args, sys),
            "guest-get-fsinfo" => fs::get_fsinfo(args, sys),
            "guest-set-user-password" => user::set_user_password(args, sys),
            "guest-get-memory-blocks" => system::get_memory_blocks(args, sys),
            "guest-set-memory-blocks" => system::set_memory_blocks(args, sys),
            "guest-get-memory-block-info" => system::get_memory_block_info(args, sys),
            "guest-exec-status" => self.exec.status(args),
            "guest-exec" => self.exec.spawn(args),
            "guest-get-host-name" => system::get_host_name(args),
            "guest-get-users" => system::get_users(args, sys),
            "guest-get-timezone" => system::get_timezone(args),
            "guest-get-osinfo" => system::get_osinfo(args),
            "guest-ssh-get-authorized-keys" => ssh::get_authorized_keys(args, sys),
            "guest-ssh-add-authorized-keys" => ssh::add_authorized_keys(args, sys),
            "guest-ssh-remove-authorized-keys" => ssh::remove_authorized_keys(args, sys),
            "guest-get-diskstats" => disks::get_diskstats(args, sys),
            "guest-get-cpustats" => system::get_cpustats(args, sys),
            "guest-network-get-route" => network::get_route(args, sys),
            "guest-get-load" => system::get_load(args, sys),
            _ => Err(Error::msg(format!("The command {name} has not been found"))),
        };
        match result {
            Ok(Out::Unit) => reply.ok_empty(),
            Ok(value) => {
                let mut writer = reply.ok()?;
                value.write(&mut writer)?;
                writer.finish()
            }
            Err(e) => reply.error(ErrorClass::GenericError, &e),
        }
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
        let names: Vec<_> = cmds.list().map(|c| c.name).collect();
        assert_eq!(names.len(), 39);
        assert_eq!(names[0], "guest-get-time");
        assert_eq!(names[26], "guest-exec-status");
        assert_eq!(names[27], "guest-exec");
        assert_eq!(*names.last().unwrap(), "guest-get-load");
        assert!(!names.contains(&"guest-get-devices"));
        let silent: Vec<_> = cmds
            .list()
            .filter(|c| !c.success_response)
            .map(|c| c.name)
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
