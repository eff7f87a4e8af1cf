//! The commands a guest without an operating system answers: agent-core's
//! (`guest-sync(-delimited)`, `guest-ping`, `guest-info`) and these, with
//! qemu-ga's arguments, checks, texts and result shapes:
//!
//! | command | result | from |
//! |---|---|---|
//! | `guest-get-time` | int: ns since the epoch, µs resolution | [`Platform::hardware_clock_ns`] + this table's offset |
//! | `guest-set-time {time?}` | `{}` | sets the offset; without `time`, back to the hardware clock |
//! | `guest-shutdown {mode?}` | nothing (no success response) | recorded; the serve loop ends the machine |
//! | `guest-get-host-name` | `{"host-name"}` | [`Platform::host_name`] |
//! | `guest-get-osinfo` | `{"kernel-release", ..., "version-id"}` | [`Platform::os_info`] |
//!
//! Every other name is not in the table, so the agent answers qemu-ga's
//! CommandNotFound ("The command X has not been found"), as qemu-ga does
//! for a command its build lacks.

use agent_core::prelude::*;

use super::Platform;

/// Seconds from the epoch to 2070-01-01: qemu-ga's guest-set-time
/// accepts years 1970 to 2069.
const YEAR_2070_S: i64 = 3_155_760_000;

/// How `guest-shutdown` ends the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShutdownMode {
    /// "halt": stop the processor with the power on (qemu-ga runs
    /// `shutdown -h -H`): the machine stays, doing nothing, until the
    /// host ends it. The example guests park the processor with
    /// interrupts off; QEMU keeps running.
    Halt,
    /// "powerdown" (the default): power the machine off; QEMU exits.
    Powerdown,
    /// "reboot": reset the machine; the image boots again (QEMU exits
    /// instead under `-no-reboot`).
    Reboot,
}

/// What `guest-get-osinfo` reports: the image's own identity, in the
/// members of qemu-ga's `GuestOSInfo` (each left out when `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OsInfo<'a> {
    /// `kernel-release`: the image's release, e.g. its version.
    pub kernel_release: Option<&'a str>,
    /// `kernel-version`: a longer build description.
    pub kernel_version: Option<&'a str>,
    /// `machine`: the architecture, as `uname -m` says it (`riscv64`,
    /// `x86_64`).
    pub machine: Option<&'a str>,
    /// `id`: a lower-case name without spaces, as os-release's `ID`.
    pub id: Option<&'a str>,
    /// `name`: the image's name.
    pub name: Option<&'a str>,
    /// `pretty-name`: name and version for people.
    pub pretty_name: Option<&'a str>,
    /// `version`.
    pub version: Option<&'a str>,
    /// `version-id`: the version for programs.
    pub version_id: Option<&'a str>,
    /// `variant`.
    pub variant: Option<&'a str>,
    /// `variant-id`.
    pub variant_id: Option<&'a str>,
}

/// The [`OsInfo`] of an image built from this workspace: binary `bin`
/// (e.g. `"q35-guest"`) for `machine` (`uname -m`, e.g. `"x86_64"`) on
/// `board` (e.g. `"q35"`), at its package's version: `id`
/// `qga-rs-<bin>`, `name` `qga-rs <bin>`, the version as
/// `kernel-release`, `version` and `version-id`.
///
/// ```
/// let info: agent_baremetal::guest::OsInfo<'static> =
///     agent_baremetal::image_os_info!(bin: "q35-guest", machine: "x86_64", board: "q35");
/// assert_eq!(info.id, Some("qga-rs-q35-guest"));
/// assert_eq!(info.kernel_version, Some("agent-baremetal q35-guest, x86_64 q35, no OS"));
/// ```
#[macro_export]
macro_rules! image_os_info {
    (bin: $bin:literal, machine: $machine:literal, board: $board:literal $(,)?) => {
        $crate::guest::OsInfo {
            kernel_release: Some(env!("CARGO_PKG_VERSION")),
            kernel_version: Some(concat!(
                "agent-baremetal ",
                $bin,
                ", ",
                $machine,
                " ",
                $board,
                ", no OS"
            )),
            machine: Some($machine),
            id: Some(concat!("qga-rs-", $bin)),
            name: Some(concat!("qga-rs ", $bin)),
            pretty_name: Some(concat!("qga-rs ", $bin, " ", env!("CARGO_PKG_VERSION"))),
            version: Some(env!("CARGO_PKG_VERSION")),
            version_id: Some(env!("CARGO_PKG_VERSION")),
            variant: None,
            variant_id: None,
        }
    };
}

/// The guest's command table, agent-core's commands included.
pub struct GuestCommands<'p, P: Platform> {
    platform: &'p P,
    /// Added to the hardware clock by `guest-get-time` (set by
    /// `guest-set-time`).
    offset_ns: i64,
    shutdown: Option<ShutdownMode>,
}

impl<'p, P: Platform> GuestCommands<'p, P> {
    /// The commands, on `platform`'s clock with no offset.
    pub const fn new(platform: &'p P) -> Self {
        GuestCommands {
            platform,
            offset_ns: 0,
            shutdown: None,
        }
    }

    /// The shutdown a successful `guest-shutdown` asked for.
    pub fn shutdown_requested(&self) -> Option<ShutdownMode> {
        self.shutdown
    }

    /// The guest's wall-clock time: the hardware clock plus the offset
    /// `guest-set-time` set, ns since the epoch.
    pub fn now_ns(&self) -> i64 {
        self.platform
            .hardware_clock_ns()
            .saturating_add(self.offset_ns)
    }

    /// The offset `guest-set-time` set, in ns.
    pub fn clock_offset_ns(&self) -> i64 {
        self.offset_ns
    }
}

/// `ns` with qemu-ga's microsecond resolution (`g_get_real_time() * 1000`,
/// `tv_usec` in `settimeofday`).
fn to_micros(ns: i64) -> i64 {
    ns / 1000 * 1000
}

impl<P: Platform> Commands for GuestCommands<'_, P> {
    type Error = &'static str;

    fn commands(&self) -> &[Command<Self>] {
        &Self::COMMANDS
    }
}

impl<P: Platform> GuestCommands<'_, P> {
    /// The commands, in qemu-ga's registration (schema) order.
    const COMMANDS: [Command<Self>; 9] = [
        Command::guest_sync_delimited(),
        Command::guest_sync(),
        Command::guest_ping(),
        Command::new("guest-get-time", Self::get_time),
        Command::new("guest-set-time", Self::set_time),
        Command::guest_info(),
        Command::new("guest-shutdown", Self::shutdown).without_success_response(),
        Command::new("guest-get-host-name", Self::get_host_name),
        Command::new("guest-get-osinfo", Self::get_osinfo),
    ];

    /// `guest-get-time` → ns since the epoch, µs resolution.
    fn get_time<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
        args.finish()?;
        let mut value = reply.ok()?;
        value.i64(to_micros(self.now_ns()))?;
        Ok(value.finish()?)
    }

    /// `guest-set-time {time?}`.
    fn set_time<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
        let time = args.opt_int("time")?;
        args.finish()?;
        match time {
            Some(ns) => {
                // qemu-ga: the year of `time` (seconds truncated toward
                // zero) must be 1970 to 2069.
                let secs = ns / 1_000_000_000;
                if !(0..YEAR_2070_S).contains(&secs) {
                    return Err("Invalid time".into());
                }
                let hardware = self.platform.hardware_clock_ns();
                self.offset_ns = to_micros(ns).saturating_sub(hardware);
            }
            // No time: set the clock from the hardware clock (qemu-ga runs
            // `hwclock -s`).
            None => self.offset_ns = 0,
        }
        Ok(reply.ok_empty()?)
    }

    /// `guest-shutdown {mode?}`: recorded; the serve loop ends the machine.
    fn shutdown<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
        let mode = args.opt_str("mode")?;
        args.finish()?;
        let mode = match mode {
            None => ShutdownMode::Powerdown,
            Some(m) if m.eq_str("powerdown") => ShutdownMode::Powerdown,
            Some(m) if m.eq_str("halt") => ShutdownMode::Halt,
            Some(m) if m.eq_str("reboot") => ShutdownMode::Reboot,
            // qemu-ga's text, unbalanced parenthesis included.
            Some(_) => {
                return Err("mode is invalid (valid values are: halt|powerdown|reboot".into())
            }
        };
        self.shutdown = Some(mode);
        Ok(reply.ok_empty()?)
    }

    /// `guest-get-host-name` → `{"host-name"}`.
    fn get_host_name<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
        args.finish()?;
        let mut value = reply.ok()?;
        value.begin_object()?;
        value.key("host-name")?;
        value.str(self.platform.host_name())?;
        value.end_object()?;
        Ok(value.finish()?)
    }

    /// `guest-get-osinfo` → the members of `GuestOSInfo` the platform gives.
    fn get_osinfo<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, Self> {
        args.finish()?;
        let info = self.platform.os_info();
        let members = [
            ("kernel-release", info.kernel_release),
            ("kernel-version", info.kernel_version),
            ("machine", info.machine),
            ("id", info.id),
            ("name", info.name),
            ("pretty-name", info.pretty_name),
            ("version", info.version),
            ("version-id", info.version_id),
            ("variant", info.variant),
            ("variant-id", info.variant_id),
        ];
        let mut value = reply.ok()?;
        value.begin_object()?;
        for (key, text) in members {
            if let Some(text) = text {
                value.key(key)?;
                value.str(text)?;
            }
        }
        value.end_object()?;
        Ok(value.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::{Agent, Policy};

    /// A platform with a fixed hardware clock.
    struct Fixed;

    impl Platform for Fixed {
        fn uptime_us(&self) -> u64 {
            0
        }
        fn hardware_clock_ns(&self) -> i64 {
            1_700_000_000_123_456_789
        }
        fn wait_for_interrupt(&self, _deadline_us: Option<u64>) {}
        fn shutdown(&self, mode: ShutdownMode) -> ! {
            panic!("shutdown {mode:?}")
        }
        fn fail(&self, code: u16) -> ! {
            panic!("fail {code}")
        }
        fn os_info(&self) -> OsInfo<'_> {
            OsInfo {
                kernel_release: Some("0.1.0"),
                machine: Some("riscv64"),
                id: Some("qga-rs"),
                name: Some("qga-rs \"guest\""),
                version_id: Some("0.1.0"),
                ..OsInfo::default()
            }
        }
        fn host_name(&self) -> &str {
            "unikernel-7"
        }
    }

    type Table<'p> = GuestCommands<'p, Fixed>;

    fn agent(platform: &Fixed) -> Agent<'static, [u8; 512], Table<'_>> {
        Agent::new([0u8; 512], GuestCommands::new(platform), Policy::new())
    }

    fn run(agent: &mut Agent<'static, [u8; 512], Table<'_>>, input: &str) -> String {
        let mut out = Vec::new();
        agent.feed(input.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn error(desc: &str) -> String {
        format!("{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"{desc}\"}}}}\n")
    }

    #[test]
    fn get_time_has_microsecond_resolution() {
        let p = Fixed;
        let mut a = agent(&p);
        assert_eq!(
            run(&mut a, r#"{"execute": "guest-get-time", "id": 3}"#),
            "{\"return\": 1700000000123456000, \"id\": 3}\n"
        );
        assert_eq!(
            run(
                &mut a,
                r#"{"execute": "guest-get-time", "arguments": {"x": 1}}"#
            ),
            error("Parameter 'x' is unexpected")
        );
    }

    #[test]
    fn set_time_moves_the_guest_clock_and_back() {
        let p = Fixed;
        let mut a = agent(&p);
        let set =
            |t: &str| format!(r#"{{"execute": "guest-set-time", "arguments": {{"time": {t}}}}}"#);
        assert_eq!(
            run(&mut a, &set("1234567890987654321")),
            "{\"return\": {}}\n"
        );
        assert_eq!(
            run(&mut a, r#"{"execute": "guest-get-time"}"#),
            "{\"return\": 1234567890987654000}\n"
        );
        assert_eq!(
            a.commands().clock_offset_ns(),
            1_234_567_890_987_654_000 - 1_700_000_000_123_456_789
        );
        // Without a time: from the hardware clock again.
        assert_eq!(
            run(&mut a, r#"{"execute": "guest-set-time"}"#),
            "{\"return\": {}}\n"
        );
        assert_eq!(a.commands().now_ns(), 1_700_000_000_123_456_789);
        // Years 1970 to 2069 only; the clock stays as it was.
        for bad in ["-1000000000", "3155760000000000000", "9223372036854775807"] {
            assert_eq!(run(&mut a, &set(bad)), error("Invalid time"), "{bad}");
        }
        assert_eq!(a.commands().clock_offset_ns(), 0);
        // The last nanosecond of 2069 and -1 ns (second 0) are accepted.
        assert_eq!(
            run(&mut a, &set("3155759999999999999")),
            "{\"return\": {}}\n"
        );
        assert_eq!(run(&mut a, &set("-1")), "{\"return\": {}}\n");
        assert_eq!(
            run(&mut a, &set("\"now\"")),
            error("Invalid parameter type for 'time', expected: integer")
        );
        assert_eq!(
            run(
                &mut a,
                r#"{"execute": "guest-set-time", "arguments": {"time": 1, "y": 2}}"#
            ),
            error("Parameter 'y' is unexpected")
        );
    }

    #[test]
    fn shutdown_modes_and_errors() {
        let p = Fixed;
        for (args, want) in [
            ("{}", ShutdownMode::Powerdown),
            (r#"{"mode": "halt"}"#, ShutdownMode::Halt),
            (r#"{"mode": "powerdown"}"#, ShutdownMode::Powerdown),
            (r#"{"mode": "reboot"}"#, ShutdownMode::Reboot),
        ] {
            let mut a = agent(&p);
            let request = format!(r#"{{"execute": "guest-shutdown", "arguments": {args}}}"#);
            assert_eq!(run(&mut a, &request), "", "no success response");
            assert_eq!(a.commands().shutdown_requested(), Some(want));
        }
        let mut a = agent(&p);
        let bad = |a: &mut Agent<'static, [u8; 512], Table<'_>>, args: &str| {
            run(
                a,
                &format!(r#"{{"execute": "guest-shutdown", "arguments": {args}}}"#),
            )
        };
        assert_eq!(
            bad(&mut a, r#"{"mode": "off"}"#),
            error("mode is invalid (valid values are: halt|powerdown|reboot")
        );
        assert_eq!(
            bad(&mut a, r#"{"mode": 1}"#),
            error("Invalid parameter type for 'mode', expected: string")
        );
        assert_eq!(
            bad(&mut a, r#"{"mode": "halt", "now": true}"#),
            error("Parameter 'now' is unexpected")
        );
        assert_eq!(a.commands().shutdown_requested(), None);
    }

    #[test]
    fn host_name_and_osinfo() {
        let p = Fixed;
        let mut a = agent(&p);
        assert_eq!(
            run(&mut a, r#"{"execute": "guest-get-host-name"}"#),
            "{\"return\": {\"host-name\": \"unikernel-7\"}}\n"
        );
        assert_eq!(
            run(&mut a, r#"{"execute": "guest-get-osinfo"}"#),
            "{\"return\": {\"kernel-release\": \"0.1.0\", \"machine\": \"riscv64\", \"id\": \"qga-rs\", \"name\": \"qga-rs \\\"guest\\\"\", \"version-id\": \"0.1.0\"}}\n"
        );
        assert_eq!(
            run(
                &mut a,
                r#"{"execute": "guest-get-osinfo", "arguments": {"a": 1}}"#
            ),
            error("Parameter 'a' is unexpected")
        );
    }

    #[test]
    fn os_commands_are_not_found_and_guest_info_lists_the_table() {
        let p = Fixed;
        let mut a = agent(&p);
        for name in [
            "guest-file-open",
            "guest-exec",
            "guest-fsfreeze-status",
            "nope",
        ] {
            assert_eq!(
                run(&mut a, &format!(r#"{{"execute": "{name}"}}"#)),
                format!("{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"The command {name} has not been found\"}}}}\n")
            );
        }
        let info = run(&mut a, r#"{"execute": "guest-info"}"#);
        let names: Vec<&str> = info
            .split("\"name\": \"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        assert_eq!(
            names,
            [
                "guest-get-osinfo",
                "guest-get-host-name",
                "guest-shutdown",
                "guest-info",
                "guest-set-time",
                "guest-get-time",
                "guest-ping",
                "guest-sync",
                "guest-sync-delimited"
            ]
        );
        assert!(info
            .contains(r#"{"enabled": true, "name": "guest-shutdown", "success-response": false}"#));
    }
}
