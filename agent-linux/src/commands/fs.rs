//! Filesystems: `guest-fsfreeze-*`, `guest-fstrim`, `guest-get-fsinfo`.
//!
//! The mounts are those of `<procfs>/self/mountinfo` backed by a block
//! device (major number not 0, or btrfs), as qemu-ga lists them. Freezing
//! and thawing are [`Freezer`]'s (FIFREEZE/FITHAW), trimming is FITRIM.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use agent_core::args::Args;

use super::error::{strerror, CmdResult};
use super::freeze::Freezer;
use super::params::text;
use super::{Error, Obj, Out, SystemPaths};

/// One mounted filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Mount point.
    pub dir: String,
    /// Filesystem type.
    pub fstype: String,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            if let Some(oct) = bytes.get(i + 1..i + 4) {
                if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let v = oct.iter().fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
                    out.push(v as u8);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The block-device mounts of a mountinfo text, in its order.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = before.split(' ').collect();
        let mut tail = after.split(' ');
        let (Some(devno), Some(dir), Some(fstype), Some(source)) =
            (fields.get(2), fields.get(4), tail.next(), tail.next())
        else {
            continue;
        };
        let Some((major, minor)) = devno.split_once(':') else {
            continue;
        };
        let (Ok(mut major), Ok(mut minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else {
            continue;
        };
        if major == 0 {
            // btrfs reports major 0; its source device has the numbers.
            if fstype != "btrfs" {
                continue;
            }
            let Ok(meta) = std::fs::metadata(unescape(source)) else {
                continue;
            };
            if !meta.file_type().is_block_device() {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            let rdev = meta.rdev();
            major = rustix::fs::major(rdev);
            minor = rustix::fs::minor(rdev);
        }
        mounts.push(Mount {
            dir: unescape(dir),
            fstype: fstype.to_owned(),
            major,
            minor,
        });
    }
    mounts
}

/// The block-device mounts of `<procfs>/self/mountinfo`.
pub(crate) fn mounts(procfs: &Path) -> Result<Vec<Mount>, Error> {
    let path = procfs.join("self/mountinfo");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::os(format!("failed to open {}", path.display()), &e))?;
    Ok(parse_mountinfo(&text))
}

/// `struct fstrim_range`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

const FITRIM: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<FstrimRange>(b'X', 121);

fn fitrim(file: &File, range: &mut FstrimRange) -> rustix::io::Result<()> {
    // SAFETY: FITRIM is `_IOWR('X', 121, struct fstrim_range)`, which
    // `FstrimRange` lays out; the kernel reads and updates it in place.
    unsafe {
        rustix::ioctl::ioctl(
            file,
            rustix::ioctl::Updater::<FITRIM, FstrimRange>::new(range),
        )
    }
}

/// `guest-fsfreeze-status` → `"thawed"` | `"frozen"`.
pub fn status<'a>(args: &Args<'a>, freezer: &Freezer) -> CmdResult<'a> {
    args.finish()?;
    Ok(Out::str(if freezer.is_frozen() {
        "frozen"
    } else {
        "thawed"
    }))
}

/// `guest-fsfreeze-freeze` / `guest-fsfreeze-freeze-list {mountpoints?}`
/// → the number of filesystems frozen.
pub fn freeze<'a>(args: &Args<'a>, with_list: bool, freezer: &Freezer) -> CmdResult<'a> {
    let wanted: Option<Vec<String>> = if with_list {
        args.opt_list("mountpoints")?
            .map(|list| {
                list.into_iter()
                    .map(|e| e.str().map(|s| text(&s)))
                    .collect()
            })
            .transpose()?
    } else {
        None
    };
    args.finish()?;
    Ok(Out::Int(freezer.freeze(wanted.as_deref())?))
}

/// `guest-fsfreeze-thaw` → the number of filesystems thawed.
pub fn thaw<'a>(args: &Args<'a>, freezer: &Freezer) -> CmdResult<'a> {
    args.finish()?;
    Ok(Out::Int(freezer.thaw()?))
}

/// `guest-fstrim {minimum?}` → `{paths: [{path, trimmed?, minimum?,
/// error?}]}`.
pub fn fstrim<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let minimum = args.opt_int("minimum")?;
    args.finish()?;
    let mut paths = Vec::new();
    for mount in mounts(&sys.procfs)? {
        let entry = Obj::new().str("path", mount.dir.clone());
        let file = match File::open(&mount.dir) {
            Ok(f) => f,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                paths.push(
                    entry
                        .str("error", format!("failed to open: {}", strerror(errno)))
                        .into(),
                );
                continue;
            }
        };
        let mut range = FstrimRange {
            start: 0,
            len: u64::MAX,
            minlen: minimum.map_or(0, |m| m as u64),
        };
        let entry = match fitrim(&file, &mut range) {
            Ok(()) => entry
                .put("trimmed", Out::Int(range.len as i64))
                .put("minimum", Out::Int(range.minlen as i64)),
            Err(rustix::io::Errno::NOTTY | rustix::io::Errno::OPNOTSUPP) => entry,
            Err(e) => entry.str(
                "error",
                format!("failed to trim: {}", strerror(e.raw_os_error())),
            ),
        };
        paths.push(entry.into());
    }
    paths.reverse();
    Ok(Obj::new().put("paths", Out::List(paths)).into())
}

/// `guest-get-fsinfo` → `[{name, mountpoint, type, used-bytes?,
/// total-bytes?, total-bytes-privileged?, disk}]`, last mount first as
/// qemu-ga lists them. `disk` has the address of a virtio-blk disk (see
/// [`super::disks`] for the buses covered).
pub fn get_fsinfo<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let mut list = Vec::new();
    for mount in mounts(&sys.procfs)? {
        let devpath = sys
            .sysfs
            .join(format!("dev/block/{}:{}", mount.major, mount.minor));
        let real = std::fs::canonicalize(&devpath)
            .map_err(|e| Error::os(format!("realpath(\"{}\")", devpath.display()), &e))?;
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut info = Obj::new()
            .str("name", name)
            .str("mountpoint", mount.dir.clone())
            .str("type", mount.fstype.clone());
        if let Ok(st) = rustix::fs::statvfs(mount.dir.as_str()) {
            let used = st.f_blocks.saturating_sub(st.f_bfree);
            let nonroot = used.saturating_add(st.f_bavail);
            info = info
                .put("used-bytes", Out::UInt(used.saturating_mul(st.f_frsize)))
                .put(
                    "total-bytes",
                    Out::UInt(nonroot.saturating_mul(st.f_frsize)),
                )
                .put(
                    "total-bytes-privileged",
                    Out::UInt(st.f_blocks.saturating_mul(st.f_frsize)),
                );
        }
        let disk: Vec<Out> = super::disks::block_address(sys, &real)
            .into_iter()
            .collect();
        list.push(info.put("disk", Out::List(disk)).into());
    }
    list.reverse();
    Ok(Out::List(list))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, Harness, TempDir};
    use super::super::CommandsConfig;
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 254:2 / /mnt/with\\040space rw - xfs /dev/vdb rw
";

    #[test]
    fn mountinfo() {
        assert_eq!(
            parse_mountinfo(MOUNTINFO),
            [
                Mount {
                    dir: "/".into(),
                    fstype: "ext4".into(),
                    major: 254,
                    minor: 1
                },
                Mount {
                    dir: "/mnt/with space".into(),
                    fstype: "xfs".into(),
                    major: 254,
                    minor: 2
                },
            ]
        );
    }

    fn fake_proc() -> (TempDir, CommandsConfig) {
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        // Only virtual filesystems: nothing to freeze or trim.
        std::fs::write(
            proc.join("self/mountinfo"),
            "23 22 0:21 / /proc rw - proc proc rw\n",
        )
        .unwrap();
        cfg.system.procfs = proc;
        (dir, cfg)
    }

    #[test]
    fn freeze_without_filesystems() {
        let (dir, mut cfg) = fake_proc();
        let hook = dir.path().join("hook");
        let log = dir.path().join("hook.log");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$1\" >> {}\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        cfg.fsfreeze_hook = Some(hook);
        let mut t = Harness::with_config(dir, cfg);
        assert_eq!(
            t.call(r#"{"execute": "guest-fsfreeze-status"}"#),
            r#"{"return": "thawed"}"#
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-fsfreeze-freeze"}"#),
            r#"{"return": 0}"#
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-fsfreeze-status"}"#),
            r#"{"return": "thawed"}"#
        );
        assert_eq!(
            t.call(
                r#"{"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": ["/"]}}"#
            ),
            r#"{"return": 0}"#
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-fsfreeze-thaw"}"#),
            r#"{"return": 0}"#
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "freeze\nfreeze\nthaw\n"
        );
        assert_eq!(
            t.error(
                r#"{"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": "/"}}"#
            ),
            "Invalid parameter type for 'mountpoints', expected: array"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-fsfreeze-freeze", "arguments": {"mountpoints": ["/"]}}"#),
            "Parameter 'mountpoints' is unexpected"
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-fstrim"}"#),
            r#"{"return": {"paths": []}}"#
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-fstrim", "arguments": {"minimum": "x"}}"#),
            "Invalid parameter type for 'minimum', expected: integer"
        );
    }

    #[test]
    fn frozen_state_disables_commands() {
        let (dir, cfg) = fake_proc();
        std::fs::write(dir.path().join("qga.state.isfrozen"), "").unwrap();
        let mut t = Harness::with_config(dir, cfg);
        assert!(t.agent.commands().is_frozen());
        assert_eq!(
            t.call(r#"{"execute": "guest-fsfreeze-status"}"#),
            r#"{"return": "frozen"}"#
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-get-time"}"#),
            r#"{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been disabled: the command is not allowed"}}"#
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-fsfreeze-thaw"}"#),
            r#"{"return": 0}"#
        );
        assert!(!t.dir.path().join("qga.state.isfrozen").exists());
        assert!(t.json(r#"{"execute": "guest-get-time"}"#)["return"].is_i64());
    }

    #[test]
    fn fsinfo_on_this_machine() {
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-get-fsinfo"}"#);
        for fs in v["return"].as_array().unwrap() {
            assert!(fs["name"].is_string() && fs["mountpoint"].is_string());
            assert!(fs["type"].is_string() && fs["disk"].is_array());
        }
        assert_eq!(
            t.error(r#"{"execute": "guest-get-fsinfo", "arguments": {"a": 1}}"#),
            "Parameter 'a' is unexpected"
        );
    }

    #[test]
    fn hook_errors() {
        let (dir, mut cfg) = fake_proc();
        cfg.fsfreeze_hook = Some(dir.path().join("missing-hook"));
        let hook = cfg.fsfreeze_hook.clone().unwrap();
        let mut t = Harness::with_config(dir, cfg);
        assert_eq!(
            t.error(r#"{"execute": "guest-fsfreeze-freeze"}"#),
            format!(
                "can't access fsfreeze hook '{}': No such file or directory",
                hook.display()
            )
        );
    }
}
