//! `guest-ssh-get-authorized-keys`, `-add-`, `-remove-`: the user's
//! `~/.ssh/authorized_keys`, found through the passwd database, written
//! back owned by the user with mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agent_core::args::Args;

use super::error::CmdResult;
use super::params::{list, str_elem, text};
use super::{Error, Obj, Out, SystemPaths};

/// What the commands need of a passwd entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Look `user` up in a passwd-format file.
pub fn lookup_user<'a>(passwd: &Path, user: &str) -> Result<PasswdEntry, Error<'a>> {
    let fail = || Error::msg(format!("failed to lookup user '{user}': Success"));
    let text = std::fs::read_to_string(passwd).map_err(|_| fail())?;
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 7 && f[0] == user {
            let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) else {
                return Err(fail());
            };
            return Ok(PasswdEntry {
                uid,
                gid,
                home: PathBuf::from(f[5]),
            });
        }
    }
    Err(fail())
}

fn keys_path(p: &PasswdEntry) -> PathBuf {
    p.home.join(".ssh").join("authorized_keys")
}

/// The file's lines as GLib's `g_strsplit(contents, "\n")` gives them.
fn read_lines<'a>(path: &Path) -> Result<Vec<String>, (Error<'a>, std::io::ErrorKind)> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .split('\n')
            .map(str::to_owned)
            .collect()),
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            Err((
                Error::msg(format!(
                    "failed to read '{0}': Failed to open file \u{201c}{0}\u{201d}: {1}",
                    path.display(),
                    super::error::strerror(errno)
                )),
                e.kind(),
            ))
        }
    }
}

fn write_keys<'a>(path: &Path, keys: &[String], p: &PasswdEntry) -> Result<(), Error<'a>> {
    let mut contents = keys.join("\n");
    contents.push('\n');
    let tmp = path.with_extension("qga-tmp");
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::msg(format!(
                "failed to write to '{}': {}",
                path.display(),
                super::error::strerror(e.raw_os_error().unwrap_or(0))
            ))
        })?;
    std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid)).map_err(|e| {
        Error::os(
            format!("failed to set ownership of '{}'", path.display()),
            &e,
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        Error::os(
            format!("failed to set permissions of '{}'", path.display()),
            &e,
        )
    })
}

fn checked_keys<'a>(args: &Args<'a>) -> Result<Vec<String>, Error<'a>> {
    let keys: Vec<String> = list(args, "keys", str_elem)?.iter().map(text).collect();
    Ok(keys)
}

fn check_keys<'a>(keys: &[String]) -> Result<(), Error<'a>> {
    for key in keys {
        if key.is_empty() || key.starts_with('#') || key.contains('\n') {
            return Err(Error::msg(format!("invalid OpenSSH public key: '{key}'")));
        }
    }
    Ok(())
}

/// `guest-ssh-get-authorized-keys {username}` → `{keys}`.
pub fn get_authorized_keys<'a>(args: Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let user = text(&args.str("username")?);
    args.reject_unknown(&["username"])?;
    let p = lookup_user(&sys.passwd, &user)?;
    let lines = read_lines(&keys_path(&p)).map_err(|(e, _)| e)?;
    let keys = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Out::str)
        .collect();
    Ok(Obj::new().put("keys", Out::List(keys)).into())
}

/// `guest-ssh-add-authorized-keys {username, keys, reset?}`.
pub fn add_authorized_keys<'a>(args: Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let user = text(&args.str("username")?);
    let keys = checked_keys(&args)?;
    let reset = args.opt_bool("reset")?.unwrap_or(false);
    args.reject_unknown(&["username", "keys", "reset"])?;
    check_keys(&keys)?;
    let p = lookup_user(&sys.passwd, &user)?;
    let path = keys_path(&p);
    let existing = if reset { None } else { read_lines(&path).ok() };
    if existing.is_none() {
        let dir = p.home.join(".ssh");
        if !dir.is_dir() {
            std::fs::create_dir(&dir).map_err(|e| {
                Error::os(
                    format!("failed to create directory '{}'", dir.display()),
                    &e,
                )
            })?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(
                |e| {
                    Error::os(
                        format!("failed to set permissions of '{}'", dir.display()),
                        &e,
                    )
                },
            )?;
            std::os::unix::fs::chown(&dir, Some(p.uid), Some(p.gid)).map_err(|e| {
                Error::os(
                    format!("failed to set ownership of '{}'", dir.display()),
                    &e,
                )
            })?;
        }
    }
    let mut all = existing.unwrap_or_default();
    // A file ending in a newline splits into a last empty line, which the
    // join below turns back into that newline.
    if all.last().is_some_and(String::is_empty) {
        all.pop();
    }
    for key in keys {
        if !all.contains(&key) {
            all.push(key);
        }
    }
    write_keys(&path, &all, &p)?;
    Ok(Out::Unit)
}

/// `guest-ssh-remove-authorized-keys {username, keys}`.
pub fn remove_authorized_keys<'a>(args: Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let user = text(&args.str("username")?);
    let keys = checked_keys(&args)?;
    args.reject_unknown(&["username", "keys"])?;
    check_keys(&keys)?;
    let p = lookup_user(&sys.passwd, &user)?;
    let path = keys_path(&p);
    let mut lines = match read_lines(&path) {
        Ok(l) => l,
        Err((_, std::io::ErrorKind::NotFound)) => return Ok(Out::Unit),
        Err((e, _)) => return Err(e),
    };
    if lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.retain(|l| !keys.contains(l));
    write_keys(&path, &lines, &p)?;
    Ok(Out::Unit)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, Harness, TempDir};
    use super::*;

    #[test]
    fn keys_on_a_temp_home() {
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        cfg.system.passwd = dir.path().join("passwd");
        std::fs::write(
            &cfg.system.passwd,
            format!("tester:x:{uid}:{gid}::{}:/bin/sh\n", home.display()),
        )
        .unwrap();
        let mut t = Harness::with_config(dir, cfg);
        let path = home.join(".ssh/authorized_keys");
        assert_eq!(
            t.error(r#"{"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "tester"}}"#),
            format!("failed to read '{0}': Failed to open file \u{201c}{0}\u{201d}: No such file or directory", path.display())
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "tester", "keys": ["ssh-rsa AAA a@b", "ssh-ed25519 BBB c@d"]}}"#),
            r#"{"return": {}}"#
        );
        assert_eq!(
            std::fs::metadata(home.join(".ssh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        t.call(r#"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "tester", "keys": ["ssh-rsa AAA a@b", "ssh-x CCC"]}}"#);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "ssh-rsa AAA a@b\nssh-ed25519 BBB c@d\nssh-x CCC\n"
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "tester"}}"#),
            r#"{"return": {"keys": ["ssh-rsa AAA a@b", "ssh-ed25519 BBB c@d", "ssh-x CCC"]}}"#
        );
        t.call(r#"{"execute": "guest-ssh-remove-authorized-keys", "arguments": {"username": "tester", "keys": ["ssh-ed25519 BBB c@d"]}}"#);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "ssh-rsa AAA a@b\nssh-x CCC\n"
        );
        t.call(r#"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "tester", "keys": ["k1"], "reset": true}}"#);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "k1\n");
        assert_eq!(
            t.error(r##"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "tester", "keys": ["#x"]}}"##),
            "invalid OpenSSH public key: '#x'"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "nosuchuser"}}"#),
            "failed to lookup user 'nosuchuser': Success"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "tester"}}"#),
            "Parameter 'keys' is missing"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-ssh-remove-authorized-keys", "arguments": {"username": "tester", "keys": [1]}}"#),
            "Invalid parameter type for 'keys[0]', expected: string"
        );
    }
}
