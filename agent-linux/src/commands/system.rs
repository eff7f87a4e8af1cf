//! System information: vcpus, memory blocks, host name, users, timezone,
//! osinfo, load, cpu statistics.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use agent_core::{ArgError, Args};

use super::error::CmdResult;
use super::time::local_time;
use super::{Error, Obj, Out, SystemPaths};

fn cpu_dir(sys: &SystemPaths) -> PathBuf {
    sys.sysfs.join("devices/system/cpu")
}

fn memory_dir(sys: &SystemPaths) -> PathBuf {
    sys.sysfs.join("devices/system/memory")
}

/// The number in a directory entry named `<prefix><digits>...`, as C's
/// `sscanf("<prefix>%ld")` reads it.
fn numbered(name: &str, prefix: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Read the first byte of `<dir>/online`: `Ok(None)` if there is none.
fn read_online(dir: &str) -> Result<Option<u8>, Error> {
    let path = format!("{dir}/online");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::os(format!("open(\"{path}\")"), &e)),
    };
    let mut byte = [0u8; 1];
    match file.read_at(&mut byte, 0) {
        Ok(0) => Err(Error::msg(format!("pread(\"{path}\"): unexpected EOF"))),
        Ok(_) => Ok(Some(byte[0])),
        Err(e) => Err(Error::os(format!("pread(\"{path}\")"), &e)),
    }
}

fn check_dir(dir: &str) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Os(format!("open(\"{dir}\")"), libc::ENOTDIR)),
        Err(e) => Err(Error::os(format!("open(\"{dir}\")"), &e)),
    }
}

/// `guest-get-vcpus` → `[{logical-id, online, can-offline}]`, in
/// directory order as qemu-ga lists them.
pub fn get_vcpus<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let base = cpu_dir(sys);
    let entries = std::fs::read_dir(&base)
        .map_err(|e| Error::os(format!("failed to list entries: {}", base.display()), &e))?;
    let mut cpus = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().and_then(|n| numbered(n, "cpu")) else {
            continue;
        };
        let dir = format!("{}/cpu{id}/", base.display());
        check_dir(&dir)?;
        let (online, can_offline) = match read_online(&dir)? {
            None => (true, false),
            Some(status) => (status != b'0', true),
        };
        cpus.push(
            Obj::new()
                .int("logical-id", id)
                .bool("online", online)
                .bool("can-offline", can_offline)
                .into(),
        );
    }
    if cpus.is_empty() {
        return Err(Error::msg("guest reported zero VCPUs").into());
    }
    Ok(Out::List(cpus))
}

/// `guest-set-vcpus {vcpus}` → the number of entries processed before the
/// first failure (whose error is reported only if none was processed).
pub fn set_vcpus<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let vcpus = args
        .list("vcpus")?
        .into_iter()
        .map(|e| {
            let a = e.object()?;
            let id = a.int("logical-id")?;
            let online = a.bool("online")?;
            a.opt_bool("can-offline")?;
            a.finish()?;
            Ok((id, online))
        })
        .collect::<Result<Vec<_>, ArgError<'a>>>()?;
    args.finish()?;
    let base = cpu_dir(sys);
    let mut processed = 0i64;
    for (id, online) in vcpus {
        let dir = format!("{}/cpu{id}/", base.display());
        match set_one_vcpu(&dir, id, online) {
            Ok(()) => processed = processed.saturating_add(1),
            Err(e) if processed == 0 => return Err(e.into()),
            Err(_) => break,
        }
    }
    Ok(Out::Int(processed))
}

fn set_one_vcpu(dir: &str, id: i64, online: bool) -> Result<(), Error> {
    check_dir(dir)?;
    let path = format!("{dir}/online");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return if online {
                Ok(())
            } else {
                Err(Error::msg(format!(
                    "logical processor #{id} can't be offlined"
                )))
            };
        }
        Err(e) => return Err(Error::os(format!("open(\"{path}\")"), &e)),
    };
    let mut byte = [0u8; 1];
    match file.read_at(&mut byte, 0) {
        Ok(0) => Err(Error::msg(format!("pread(\"{path}\"): unexpected EOF"))),
        Err(e) => Err(Error::os(format!("pread(\"{path}\")"), &e)),
        Ok(_) if (byte[0] != b'0') == online => Ok(()),
        Ok(_) => file
            .write_at(if online { b"1" } else { b"0" }, 0)
            .map(|_| ())
            .map_err(|e| Error::os(format!("pwrite(\"{path}\")"), &e)),
    }
}

/// qemu-ga's `ga_read_sysfs_file`: up to `size` bytes of `dir/name`.
fn read_sysfs(dir: &Path, name: &str, size: usize) -> Result<Vec<u8>, (Error, i32)> {
    let file = File::open(dir.join(name)).map_err(|e| {
        let errno = e.raw_os_error().unwrap_or(0);
        (Error::os(format!("open sysfs file \"{name}\""), &e), errno)
    })?;
    let mut buf = vec![0u8; size];
    match file.read_at(&mut buf, 0) {
        Ok(0) => Err((
            Error::msg(format!("pread sysfs file \"{name}\": unexpected EOF")),
            0,
        )),
        Ok(n) => {
            buf.truncate(n);
            Ok(buf)
        }
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            Err((Error::os(format!("pread sysfs file \"{name}\""), &e), errno))
        }
    }
}

/// `guest-get-memory-blocks` → `[{phys-index, online, can-offline}]`.
pub fn get_memory_blocks<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let base = memory_dir(sys);
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        // No memory blocks in sysfs is fine: an empty list.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Out::List(Vec::new())),
        Err(e) => {
            return Err(
                Error::os(format!("Can't open directory \"{}/\"", base.display()), &e).into(),
            )
        }
    };
    let mut blocks = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("memory")) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let index: u64 = digits.parse().unwrap_or(0);
        let dir = base.join(format!("memory{index}"));
        if let Err(e) = std::fs::metadata(&dir) {
            return Err(Error::os(format!("open(\"{}/\")", dir.display()), &e).into());
        }
        let (online, can_offline) = match read_sysfs(&dir, "state", 10) {
            Ok(state) => {
                let online = state.starts_with(b"online");
                let can_offline = match read_sysfs(&dir, "removable", 1) {
                    Ok(r) => r.first().is_some_and(|&b| b != b'0'),
                    Err((_, libc::ENOENT)) => false,
                    Err((e, _)) => return Err(e.into()),
                };
                (online, can_offline)
            }
            Err((_, libc::ENOENT)) => (true, false),
            Err((e, _)) => return Err(e.into()),
        };
        blocks.push(
            Obj::new()
                .put("phys-index", Out::UInt(index))
                .bool("online", online)
                .bool("can-offline", can_offline)
                .into(),
        );
    }
    if blocks.is_empty() {
        return Err(Error::msg("guest reported zero memory blocks!").into());
    }
    Ok(Out::List(blocks))
}

/// guest-set-memory-blocks' per-block outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockResponse {
    /// `success`
    Success,
    /// `not-found`
    NotFound,
    /// `operation-not-supported`
    NotSupported,
    /// `operation-failed`
    Failed,
}

impl BlockResponse {
    fn name(self) -> &'static str {
        match self {
            BlockResponse::Success => "success",
            BlockResponse::NotFound => "not-found",
            BlockResponse::NotSupported => "operation-not-supported",
            BlockResponse::Failed => "operation-failed",
        }
    }
}

fn set_one_block(base: &Path, index: u64, online: bool) -> (BlockResponse, Option<i32>) {
    let dir = base.join(format!("memory{index}"));
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return (BlockResponse::Failed, Some(libc::ENOTDIR)),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            let response = if e.kind() == ErrorKind::NotFound {
                BlockResponse::NotFound
            } else {
                BlockResponse::Failed
            };
            return (response, Some(errno));
        }
    }
    let state = match read_sysfs(&dir, "state", 10) {
        Ok(s) => s,
        Err((_, libc::ENOENT)) => {
            // An old kernel without the file: blocks are always online.
            let response = if online {
                BlockResponse::Success
            } else {
                BlockResponse::NotSupported
            };
            return (response, Some(libc::ENOENT));
        }
        Err((_, errno)) => return (BlockResponse::Failed, Some(errno)),
    };
    if state.starts_with(b"online") == online {
        return (BlockResponse::Success, None);
    }
    let word: &[u8] = if online { b"online" } else { b"offline" };
    match std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("state"))
        .and_then(|f| f.write_at(word, 0))
    {
        Ok(_) => (BlockResponse::Success, None),
        Err(e) => (BlockResponse::Failed, Some(e.raw_os_error().unwrap_or(0))),
    }
}

/// `guest-set-memory-blocks {mem-blks}` → `[{phys-index, response,
/// error-code?}]`.
pub fn set_memory_blocks<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let blocks = args
        .list("mem-blks")?
        .into_iter()
        .map(|e| {
            let a = e.object()?;
            let index = a.int("phys-index")?;
            let online = a.bool("online")?;
            a.opt_bool("can-offline")?;
            a.finish()?;
            // QAPI's uint64 accepts non-negative integers (and wraps
            // negative ones); keep the bit pattern.
            Ok((index as u64, online))
        })
        .collect::<Result<Vec<_>, ArgError<'a>>>()?;
    args.finish()?;
    let base = memory_dir(sys);
    let results = blocks
        .into_iter()
        .map(|(index, online)| {
            let (response, errno) = set_one_block(&base, index, online);
            Obj::new()
                .put("phys-index", Out::UInt(index))
                .str("response", response.name())
                .opt("error-code", errno.map(|e| Out::Int(e.into())))
                .into()
        })
        .collect();
    Ok(Out::List(results))
}

/// `guest-get-memory-block-info` → `{size}` (bytes per block).
pub fn get_memory_block_info<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let base = memory_dir(sys);
    if let Err(e) = std::fs::read_dir(&base) {
        return Err(Error::os(format!("open(\"{}/\")", base.display()), &e).into());
    }
    let text = read_sysfs(&base, "block_size_bytes", 20).map_err(|(e, _)| e)?;
    let text = String::from_utf8_lossy(&text);
    let hex: String = text
        .trim_start()
        .trim_start_matches("0x")
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let size = u64::from_str_radix(&hex, 16).unwrap_or(0);
    Ok(Obj::new().put("size", Out::UInt(size)).into())
}

/// `guest-get-host-name` → `{host-name}` ("localhost" if unknown).
pub fn get_host_name<'a>(args: &Args<'a>) -> CmdResult<'a> {
    args.finish()?;
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    let name = if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    };
    Ok(Obj::new().str("host-name", name).into())
}

/// One `struct utmp` record as glibc lays it out on Linux (384 bytes).
const UTMP_RECORD: usize = 384;
const USER_PROCESS: i16 = 7;

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(bytes.get(..end).unwrap_or_default()).into_owned()
}

fn i32_at(record: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    if let Some(s) = record.get(at..at.saturating_add(4)) {
        b.copy_from_slice(s);
    }
    i32::from_ne_bytes(b)
}

/// The logged-in users of a utmp database: `(user, login time in s)`, one
/// per user with the earliest login, in first-seen order.
pub fn utmp_users(data: &[u8]) -> Vec<(String, f64)> {
    let mut users: Vec<(String, f64)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for record in data.chunks_exact(UTMP_RECORD) {
        let kind = i16::from_ne_bytes([record[0], record[1]]);
        if kind != USER_PROCESS {
            continue;
        }
        // ut_type, pad, ut_pid (4), ut_line[32], ut_id[4], ut_user[32]...
        let user = c_string(record.get(44..76).unwrap_or_default());
        // ... ut_host[256], ut_exit (4), ut_session (4), ut_tv (2 × i32).
        let sec = i32_at(record, 340);
        let usec = i32_at(record, 344);
        let login = f64::from(sec) + f64::from(usec) / 1_000_000.0;
        match seen.get(&user) {
            Some(&i) => {
                if let Some(entry) = users.get_mut(i) {
                    if login < entry.1 {
                        entry.1 = login;
                    }
                }
            }
            None => {
                seen.insert(user.clone(), users.len());
                users.push((user, login));
            }
        }
    }
    users
}

/// `guest-get-users` → `[{user, login-time}]`.
pub fn get_users<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    // A missing database means nobody is logged in, as for getutxent.
    let data = std::fs::read(&sys.utmp).unwrap_or_default();
    let users = utmp_users(&data)
        .into_iter()
        .map(|(user, login)| {
            Obj::new()
                .str("user", user)
                .put("login-time", Out::Float(login))
                .into()
        })
        .collect();
    Ok(Out::List(users))
}

/// `guest-get-timezone` → `{zone?, offset}`.
pub fn get_timezone<'a>(args: &Args<'a>) -> CmdResult<'a> {
    args.finish()?;
    let now = super::time::now_ns() / 1_000_000_000;
    let local = local_time(now).ok_or_else(|| Error::msg("Failed to get local time"))?;
    Ok(Obj::new()
        .opt("zone", local.zone.map(Out::Str))
        .int("offset", local.utc_offset_s)
        .into())
}

/// Undo os-release quoting as qemu-ga does: a double-quoted value loses
/// its quotes and the escapes `\$ \' \" \\ \``; any other value is cut at
/// its first space or semicolon.
pub fn unquote_os_release(value: &str) -> String {
    let Some(body) = value.strip_prefix('"') else {
        let end = value.find([' ', ';']).unwrap_or(value.len());
        return value.get(..end).unwrap_or(value).to_owned();
    };
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('$' | '\'' | '"' | '\\' | '`')) => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

/// Parse an os-release file the way qemu-ga's GKeyFile does: `KEY=value`
/// lines, `#` comments, blank lines; any other line makes the whole file
/// unusable.
pub fn parse_os_release(text: &str) -> Option<HashMap<String, String>> {
    let mut keys = HashMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=')?;
        let key = key.trim_end();
        if key.is_empty() {
            return None;
        }
        keys.insert(key.to_owned(), value.trim_start().to_owned());
    }
    Some(keys)
}

/// The os-release fields from `override_path` (qemu-ga's
/// `QGA_OS_RELEASE`), else `/etc/os-release`, else `/usr/lib/os-release`.
fn os_release(override_path: Option<OsString>) -> Option<HashMap<String, String>> {
    let read = |p: &Path| -> Option<HashMap<String, String>> {
        let bytes = std::fs::read(p).ok()?;
        parse_os_release(std::str::from_utf8(&bytes).ok()?)
    };
    match override_path {
        Some(p) => read(Path::new(&p)),
        None => {
            read(Path::new("/etc/os-release")).or_else(|| read(Path::new("/usr/lib/os-release")))
        }
    }
}

/// guest-get-osinfo's result for an os-release override path.
pub fn osinfo(override_path: Option<OsString>) -> Out {
    let uname = rustix::system::uname();
    let text = |s: &std::ffi::CStr| Out::Str(s.to_string_lossy().into_owned());
    let release = os_release(override_path).unwrap_or_default();
    let field = |k: &str| release.get(k).map(|v| Out::Str(unquote_os_release(v)));
    Obj::new()
        .put("kernel-release", text(uname.release()))
        .put("kernel-version", text(uname.version()))
        .put("machine", text(uname.machine()))
        .opt("id", field("ID"))
        .opt("name", field("NAME"))
        .opt("pretty-name", field("PRETTY_NAME"))
        .opt("version", field("VERSION"))
        .opt("version-id", field("VERSION_ID"))
        .opt("variant", field("VARIANT"))
        .opt("variant-id", field("VARIANT_ID"))
        .into()
}

/// `guest-get-osinfo`.
pub fn get_osinfo<'a>(args: &Args<'a>) -> CmdResult<'a> {
    args.finish()?;
    Ok(osinfo(std::env::var_os("QGA_OS_RELEASE")))
}

/// `guest-get-load` → `{load1m, load5m, load15m}` from `/proc/loadavg`.
pub fn get_load<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let text = std::fs::read_to_string(sys.procfs.join("loadavg"))
        .map_err(|e| Error::os("cannot query load average", &e))?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    let (Some(Some(l1)), Some(Some(l5)), Some(Some(l15))) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(Error::Os("cannot query load average".into(), libc::EINVAL).into());
    };
    Ok(Obj::new()
        .put("load1m", Out::Float(l1))
        .put("load5m", Out::Float(l5))
        .put("load15m", Out::Float(l15))
        .into())
}

/// `guest-get-cpustats` → one `{type: "linux", cpu, user, nice, system,
/// idle, iowait?, irq?, softirq?, steal?, guest?, guestnice?}` per cpu
/// line of `/proc/stat`.
pub fn get_cpustats<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let path = sys.procfs.join("stat");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::os(format!("open(\"{}\")", path.display()), &e))?;
    const NAMES: [&str; 10] = [
        "user",
        "nice",
        "system",
        "idle",
        "iowait",
        "irq",
        "softirq",
        "steal",
        "guest",
        "guestnice",
    ];
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(name) = fields.next() else { continue };
        let Some(id) = name.strip_prefix("cpu").filter(|r| !r.is_empty()) else {
            continue;
        };
        let values: Vec<i64> = fields
            .map_while(|f| f.parse::<u64>().ok())
            .map(|v| v as i64)
            .take(10)
            .collect();
        if values.len() < 4 {
            break;
        }
        let digits: String = id.chars().take_while(char::is_ascii_digit).collect();
        let mut obj = Obj::new()
            .str("type", "linux")
            .int("cpu", digits.parse().unwrap_or(0));
        // qemu-ga reports milliseconds: ticks × 1000 / USER_HZ (100 on
        // Linux, whatever the kernel's HZ).
        for (name, value) in NAMES.iter().zip(values) {
            obj = obj.int(name, value.saturating_mul(1000) / USER_HZ);
        }
        cpus.push(obj.into());
    }
    Ok(Out::List(cpus))
}

/// The clock ticks of `/proc/stat` per second (`USER_HZ`).
const USER_HZ: i64 = 100;

#[cfg(test)]
mod tests {
    use super::super::testing::{config, Harness, TempDir};
    use super::*;

    #[test]
    fn vcpus() {
        let mut t = Harness::new();
        if Path::new("/sys/devices/system/cpu/cpu0").exists() {
            let v = t.json(r#"{"execute": "guest-get-vcpus"}"#);
            let first = &v["return"][0];
            assert!(
                first["online"].is_boolean() && first["logical-id"].is_i64(),
                "{v}"
            );
        }
        assert_eq!(
            t.error(
                r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0}]}}"#
            ),
            "Parameter 'vcpus[0].online' is missing"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0, "online": true, "x": 1}]}}"#),
            "Parameter 'vcpus[0].x' is unexpected"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": [1]}}"#),
            "Invalid parameter type for 'vcpus[0]', expected: object"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-vcpus"}"#),
            "Parameter 'vcpus' is missing"
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": []}}"#),
            r#"{"return": 0}"#
        );
    }

    fn fake_sysfs(dir: &Path) -> PathBuf {
        let sys = dir.join("sys");
        let cpu = sys.join("devices/system/cpu");
        std::fs::create_dir_all(cpu.join("cpu0")).unwrap();
        std::fs::create_dir_all(cpu.join("cpu1")).unwrap();
        std::fs::create_dir_all(cpu.join("cpufreq")).unwrap();
        std::fs::write(cpu.join("cpu1/online"), "1\n").unwrap();
        let mem = sys.join("devices/system/memory");
        std::fs::create_dir_all(mem.join("memory3")).unwrap();
        std::fs::create_dir_all(mem.join("memory7")).unwrap();
        std::fs::write(mem.join("block_size_bytes"), "8000000\n").unwrap();
        std::fs::write(mem.join("memory3/state"), "online\n").unwrap();
        std::fs::write(mem.join("memory3/removable"), "1\n").unwrap();
        std::fs::write(mem.join("memory7/state"), "offline\n").unwrap();
        sys
    }

    #[test]
    fn set_vcpus_and_memory_blocks_on_a_fake_sysfs() {
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        let sys = fake_sysfs(dir.path());
        cfg.system.sysfs = sys.clone();
        let mut t = Harness::with_config(dir, cfg);
        let v = t.json(r#"{"execute": "guest-get-vcpus"}"#);
        let mut cpus: Vec<_> = v["return"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        cpus.sort();
        assert_eq!(
            cpus,
            [
                r#"{"can-offline":false,"logical-id":0,"online":true}"#,
                r#"{"can-offline":true,"logical-id":1,"online":true}"#
            ]
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 1, "online": false}, {"logical-id": 0, "online": false}]}}"#),
            r#"{"return": 1}"#
        );
        assert_eq!(
            std::fs::read_to_string(sys.join("devices/system/cpu/cpu1/online")).unwrap(),
            "0\n"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 0, "online": false}]}}"#),
            "logical processor #0 can't be offlined"
        );
        let cpu9 = format!("{}/devices/system/cpu/cpu9/", sys.display());
        assert_eq!(
            t.error(r#"{"execute": "guest-set-vcpus", "arguments": {"vcpus": [{"logical-id": 9, "online": true}]}}"#),
            format!("open(\"{cpu9}\"): No such file or directory")
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-get-memory-block-info"}"#),
            r#"{"return": {"size": 134217728}}"#
        );
        let v = t.json(r#"{"execute": "guest-get-memory-blocks"}"#);
        let mut blocks: Vec<_> = v["return"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        blocks.sort();
        assert_eq!(
            blocks,
            [
                r#"{"can-offline":false,"online":false,"phys-index":7}"#,
                r#"{"can-offline":true,"online":true,"phys-index":3}"#,
            ]
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-set-memory-blocks", "arguments": {"mem-blks": [{"phys-index": 7, "online": true}, {"phys-index": 3, "online": true}, {"phys-index": 99, "online": true}]}}"#),
            r#"{"return": [{"response": "success", "phys-index": 7}, {"response": "success", "phys-index": 3}, {"response": "not-found", "error-code": 2, "phys-index": 99}]}"#
        );
        // sysfs takes the word; a plain file keeps the old tail.
        assert!(
            std::fs::read_to_string(sys.join("devices/system/memory/memory7/state"))
                .unwrap()
                .starts_with("online")
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-memory-blocks", "arguments": {"mem-blks": [{"phys-index": 7}]}}"#),
            "Parameter 'mem-blks[0].online' is missing"
        );
    }

    #[test]
    fn host_name_timezone_load_users_cpustats() {
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-get-host-name"}"#);
        assert!(!v["return"]["host-name"].as_str().unwrap().is_empty());
        let v = t.json(r#"{"execute": "guest-get-timezone"}"#);
        assert!(v["return"]["offset"].is_i64(), "{v}");
        let out = t.call(r#"{"execute": "guest-get-load"}"#);
        assert!(out.starts_with(r#"{"return": {"load15m": "#), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["return"]["load1m"].is_number() && v["return"]["load5m"].is_number());
        assert_eq!(
            t.call(r#"{"execute": "guest-get-users"}"#),
            r#"{"return": []}"#
        );
        let v = t.json(r#"{"execute": "guest-get-cpustats"}"#);
        assert_eq!(v["return"][0]["type"], "linux");
        assert_eq!(
            t.error(r#"{"execute": "guest-get-load", "arguments": {"a": 1}}"#),
            "Parameter 'a' is unexpected"
        );
    }

    #[test]
    fn utmp_records() {
        let mut data = Vec::new();
        for (kind, user, sec, usec) in [
            (7i16, "bob", 200i32, 5i32),
            (8, "dead", 1, 0),
            (7, "alice", 300, 0),
            (7, "bob", 100, 250_000),
        ] {
            let mut r = vec![0u8; UTMP_RECORD];
            r[..2].copy_from_slice(&kind.to_ne_bytes());
            r[44..44 + user.len()].copy_from_slice(user.as_bytes());
            r[340..344].copy_from_slice(&sec.to_ne_bytes());
            r[344..348].copy_from_slice(&usec.to_ne_bytes());
            data.extend(r);
        }
        assert_eq!(
            utmp_users(&data),
            [("bob".to_owned(), 100.25), ("alice".to_owned(), 300.0)]
        );
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        cfg.system.utmp = dir.path().join("utmp");
        std::fs::write(&cfg.system.utmp, &data).unwrap();
        let mut t = Harness::with_config(dir, cfg);
        assert_eq!(
            t.call(r#"{"execute": "guest-get-users"}"#),
            r#"{"return": [{"login-time": 100.25, "user": "bob"}, {"login-time": 300, "user": "alice"}]}"#
        );
    }

    #[test]
    fn osinfo_from_qemu_test_file() {
        let dir = TempDir::new();
        let path = dir.path().join("os-release");
        std::fs::write(
            &path,
            "ID=qemu-ga-test\nNAME=QEMU-GA\nPRETTY_NAME=\"QEMU Guest Agent test\"\nVERSION=\"Test 1\"\nVERSION_ID=1\nVARIANT=\"Unit test \\\"\\'\\$\\`\\\\ and \\\\\\\\ etc.\"\nVARIANT_ID=unit-test\n",
        )
        .unwrap();
        let Out::Obj(info) = osinfo(Some(path.into())) else {
            panic!()
        };
        let get = |k: &str| {
            info.ordered()
                .into_iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("id"), Some(Out::str("qemu-ga-test")));
        assert_eq!(get("name"), Some(Out::str("QEMU-GA")));
        assert_eq!(get("pretty-name"), Some(Out::str("QEMU Guest Agent test")));
        assert_eq!(get("version"), Some(Out::str("Test 1")));
        assert_eq!(get("version-id"), Some(Out::str("1")));
        assert_eq!(
            get("variant"),
            Some(Out::str("Unit test \"'$`\\ and \\\\ etc."))
        );
        assert_eq!(get("variant-id"), Some(Out::str("unit-test")));
        assert!(get("kernel-release").is_some());
        // Member order of qemu-ga.
        let names: Vec<_> = info.ordered().into_iter().map(|(n, _)| *n).collect();
        assert_eq!(names[..3], ["name", "kernel-release", "version"]);
        assert_eq!(unquote_os_release("a b;c"), "a");
        assert!(parse_os_release("junk line\n").is_none());
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-get-osinfo"}"#);
        assert!(v["return"]["kernel-release"].is_string());
    }
}
