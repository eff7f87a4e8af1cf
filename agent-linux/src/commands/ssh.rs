//! `guest-ssh-get-authorized-keys`, `-add-`, `-remove-`: the user's
//! `~/.ssh/authorized_keys`, found through the passwd database, written
//! back owned by the user with mode 0600.
//!
//! As qemu-ga (qga/commands-posix-ssh.c, commands-common-ssh.c): a key is
//! refused only if it starts with `#` or holds a newline (so `""`, which
//! virsh sends after a key file's last newline, is a key); the file is
//! read as GLib's `g_file_get_contents` + `g_strsplit(.., "\n", -1)` give
//! it (up to its first NUL; an empty file has no lines, one ending in a
//! newline has a last empty line) and written as the lines joined with
//! `"\n"`, no newline added. So an empty key written last is the file's
//! final newline, and lines are compared and kept as bytes.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use agent_core::{ArgError, Args};

use super::error::CmdResult;
use super::params::text;
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
pub fn lookup_user(passwd: &Path, user: &str) -> Result<PasswdEntry, Error> {
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

/// `“path”` as GLib's file errors quote it.
fn quoted(path: &Path) -> String {
    format!("\u{201c}{}\u{201d}", path.display())
}

/// The file's lines as `g_strsplit(contents, "\n", -1)` gives them from
/// `g_file_get_contents`: a C string, so cut at the first NUL; no lines
/// at all for an empty one. Errors are "failed to read '`path`': " and
/// GLib's message.
fn read_lines(path: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let fail = |what: &str, e: std::io::Error| {
        Error::msg(format!(
            "failed to read '{}': {what} {}: {}",
            path.display(),
            quoted(path),
            super::error::strerror(e.raw_os_error().unwrap_or(0))
        ))
    };
    let mut file = std::fs::File::open(path).map_err(|e| fail("Failed to open file", e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| fail("Error reading file", e))?;
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(nul);
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect())
}

/// A name for the temporary file beside `path`: `path.XXXXXX` as
/// `g_mkstemp` makes them.
fn temp_name(path: &Path, attempt: u32) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    h.write_u32(std::process::id());
    let mut n = h.finish();
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    let suffix: String = (0..6)
        .map(|_| {
            let c = CHARS[(n % CHARS.len() as u64) as usize];
            n /= CHARS.len() as u64;
            char::from(c)
        })
        .collect();
    name.push(suffix);
    PathBuf::from(name)
}

/// `g_file_set_contents`: a new file (mode 0666 less the umask) beside
/// `path`, written, then renamed over it. The error is GLib's message.
fn set_contents(path: &Path, contents: &[u8]) -> Result<(), String> {
    let strerror = |e: &std::io::Error| super::error::strerror(e.raw_os_error().unwrap_or(0));
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = temp_name(path, attempt);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1;
            }
            Err(e) => {
                return Err(format!(
                    "Failed to create file {}: {}",
                    quoted(&tmp),
                    strerror(&e)
                ))
            }
        }
    };
    let existed = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0);
    let written = file
        .write_all(contents)
        .map_err(|e| {
            format!(
                "Failed to write file {}: write() failed: {}",
                quoted(&tmp),
                strerror(&e)
            )
        })
        .and_then(|()| {
            if existed {
                file.sync_all().map_err(|e| {
                    format!(
                        "Failed to write file {}: fsync() failed: {}",
                        quoted(&tmp),
                        strerror(&e)
                    )
                })
            } else {
                Ok(())
            }
        });
    drop(file);
    let renamed = written.and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| {
            format!(
                "Failed to rename file {} to {}: g_rename() failed: {}",
                quoted(&tmp),
                quoted(path),
                strerror(&e)
            )
        })
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// qemu-ga's `write_authkeys`: the lines joined with `"\n"` (no newline
/// added), then chown to the user and chmod 0600.
fn write_keys(path: &Path, lines: &[&[u8]], p: &PasswdEntry) -> Result<(), Error> {
    set_contents(path, &lines.join(&b'\n'))
        .map_err(|m| Error::msg(format!("failed to write to '{}': {m}", path.display())))?;
    // "of directory" for the file too: qemu-ga's text.
    std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid)).map_err(|e| {
        Error::os(
            format!("failed to set ownership of directory '{}'", path.display()),
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

/// qemu-ga's `mkdir_for_user`: mkdir with `mode`, chown, chmod.
fn mkdir_for_user(dir: &Path, p: &PasswdEntry, mode: u32) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(dir)
        .map_err(|e| {
            Error::os(
                format!("failed to create directory '{}'", dir.display()),
                &e,
            )
        })?;
    std::os::unix::fs::chown(dir, Some(p.uid), Some(p.gid)).map_err(|e| {
        Error::os(
            format!("failed to set ownership of directory '{}'", dir.display()),
            &e,
        )
    })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        Error::os(
            format!("failed to set permissions of directory '{}'", dir.display()),
            &e,
        )
    })
}

/// A key as qemu-ga holds it: its bytes (modified UTF-8, as QEMU stores
/// JSON strings) and its text for messages.
struct Key {
    bytes: Vec<u8>,
    text: String,
}

fn key_args<'a>(args: &Args<'a>) -> Result<Vec<Key>, ArgError<'a>> {
    args.list("keys")?
        .into_iter()
        .map(|e| {
            let s = e.str()?;
            Ok(Key {
                bytes: s.bytes().collect(),
                text: text(&s),
            })
        })
        .collect()
}

/// qemu-ga's `check_openssh_pub_keys`: no key may start with `#` or
/// hold a newline; anything else, the empty key included, passes.
fn check_keys(keys: &[Key]) -> Result<(), Error> {
    for key in keys {
        if key.bytes.first() == Some(&b'#') || key.bytes.contains(&b'\n') {
            return Err(Error::msg(format!(
                "invalid OpenSSH public key: '{}'",
                key.text
            )));
        }
    }
    Ok(())
}

/// `g_strstrip`: ASCII white space as `g_ascii_isspace` knows it (space,
/// tab, newline, form feed, carriage return; not vertical tab, unlike C's
/// `isspace`) off both ends.
fn g_strstrip(line: &[u8]) -> &[u8] {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r');
    let start = line.iter().position(|b| !space(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    &line[start..end]
}

/// `guest-ssh-get-authorized-keys {username}` → `{keys}`: the stripped
/// lines that are neither empty nor comments, last line first (qemu-ga
/// prepends each to its list).
pub fn get_authorized_keys<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let user = text(&args.str("username")?);
    args.finish()?;
    let p = lookup_user(&sys.passwd, &user)?;
    let lines = read_lines(&keys_path(&p))?;
    let keys = lines
        .iter()
        .map(|l| g_strstrip(l))
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .rev()
        .map(|l| Out::str(String::from_utf8_lossy(l)))
        .collect();
    Ok(Obj::new().put("keys", Out::List(keys)).into())
}

/// `guest-ssh-add-authorized-keys {username, keys, reset?}`: the keys not
/// yet among the file's lines (or, with `reset`, among none) appended to
/// them, in order, each once.
pub fn add_authorized_keys<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let user = text(&args.str("username")?);
    let keys = key_args(args)?;
    let reset = args.opt_bool("reset")?.unwrap_or(false);
    args.finish()?;
    check_keys(&keys)?;
    let p = lookup_user(&sys.passwd, &user)?;
    let dir = p.home.join(".ssh");
    let path = dir.join("authorized_keys");
    // A file that cannot be read is overwritten, as by qemu-ga.
    let existing = if reset { None } else { read_lines(&path).ok() };
    if existing.is_none() && !dir.is_dir() {
        mkdir_for_user(&dir, &p, 0o700)?;
    }
    let existing = existing.unwrap_or_default();
    let mut all: Vec<&[u8]> = existing.iter().map(Vec::as_slice).collect();
    for key in &keys {
        if !all.contains(&key.bytes.as_slice()) {
            all.push(&key.bytes);
        }
    }
    write_keys(&path, &all, &p)?;
    Ok(Out::Unit)
}

/// `guest-ssh-remove-authorized-keys {username, keys}`: every line equal
/// to one of the keys dropped; nothing done if there is no file.
pub fn remove_authorized_keys<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let user = text(&args.str("username")?);
    let keys = key_args(args)?;
    args.finish()?;
    check_keys(&keys)?;
    let p = lookup_user(&sys.passwd, &user)?;
    let path = keys_path(&p);
    // g_file_test(G_FILE_TEST_EXISTS), which follows links.
    if std::fs::metadata(&path).is_err() {
        return Ok(Out::Unit);
    }
    let lines = read_lines(&path)?;
    let kept: Vec<&[u8]> = lines
        .iter()
        .map(Vec::as_slice)
        .filter(|l| !keys.iter().any(|k| k.bytes == *l))
        .collect();
    write_keys(&path, &kept, &p)?;
    Ok(Out::Unit)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, Harness, TempDir};
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// An agent whose passwd file has `tester`, home in a temp dir; the
    /// uid and gid are ours, or 4242:4243 as root (to see the chown).
    struct Keys {
        t: Harness,
        home: PathBuf,
        path: PathBuf,
        owner: (u32, u32),
    }

    impl Keys {
        fn new() -> Keys {
            let dir = TempDir::new();
            let mut cfg = config(dir.path());
            let home = dir.path().join("home");
            std::fs::create_dir(&home).unwrap();
            let owner = if rustix::process::geteuid().is_root() {
                (4242, 4243)
            } else {
                (
                    rustix::process::getuid().as_raw(),
                    rustix::process::getgid().as_raw(),
                )
            };
            cfg.system.passwd = dir.path().join("passwd");
            std::fs::write(
                &cfg.system.passwd,
                format!(
                    "root:x:0:0::/root:/bin/sh\ntester:x:{}:{}::{}:/bin/sh\n",
                    owner.0,
                    owner.1,
                    home.display()
                ),
            )
            .unwrap();
            let path = home.join(".ssh/authorized_keys");
            Keys {
                t: Harness::with_config(dir, cfg),
                home,
                path,
                owner,
            }
        }

        fn request(execute: &str, args: &str) -> String {
            let sep = if args.is_empty() { "" } else { ", " };
            format!(
                r#"{{"execute": "{execute}", "arguments": {{"username": "tester"{sep}{args}}}}}"#
            )
        }

        /// `guest-ssh-add-authorized-keys` with `keys` (JSON), reset or not.
        fn add(&mut self, keys: &str, reset: bool) -> String {
            let args = format!(r#""keys": {keys}, "reset": {reset}"#);
            self.t
                .call(&Self::request("guest-ssh-add-authorized-keys", &args))
        }

        fn remove(&mut self, keys: &str) -> String {
            self.t.call(&Self::request(
                "guest-ssh-remove-authorized-keys",
                &format!(r#""keys": {keys}"#),
            ))
        }

        fn get(&mut self) -> String {
            self.t
                .call(&Self::request("guest-ssh-get-authorized-keys", ""))
        }

        fn set(&self, bytes: &[u8]) {
            std::fs::create_dir_all(self.path.parent().unwrap()).unwrap();
            std::fs::write(&self.path, bytes).unwrap();
        }

        fn bytes(&self) -> Vec<u8> {
            std::fs::read(&self.path).unwrap()
        }

        /// Mode and owner of `p`.
        fn meta(p: &Path) -> (u32, u32, u32) {
            let m = std::fs::metadata(p).unwrap();
            (m.mode() & 0o7777, m.uid(), m.gid())
        }
    }

    const OK: &str = r#"{"return": {}}"#;

    #[test]
    fn virsh_key_list_ending_in_an_empty_key() {
        let mut k = Keys::new();
        // virsh set-user-sshkeys --file of "ssh-rsa AAA a@b\nssh-ed25519 BBB c@d\n".
        assert_eq!(
            k.add(r#"["ssh-rsa AAA a@b", "ssh-ed25519 BBB c@d", ""]"#, false),
            OK
        );
        assert_eq!(k.bytes(), b"ssh-rsa AAA a@b\nssh-ed25519 BBB c@d\n");
        let (uid, gid) = k.owner;
        assert_eq!(Keys::meta(&k.home.join(".ssh")), (0o700, uid, gid));
        assert_eq!(Keys::meta(&k.path), (0o600, uid, gid));
        // The empty line is there: the empty key is not added again, and
        // a new key follows it.
        assert_eq!(k.add(r#"["ssh-x CCC", ""]"#, false), OK);
        assert_eq!(
            k.bytes(),
            b"ssh-rsa AAA a@b\nssh-ed25519 BBB c@d\n\nssh-x CCC"
        );
        // Last line first, as qemu-ga lists them.
        assert_eq!(
            k.get(),
            r#"{"return": {"keys": ["ssh-x CCC", "ssh-ed25519 BBB c@d", "ssh-rsa AAA a@b"]}}"#
        );
        // --reset.
        assert_eq!(k.add(r#"["k1", "k2", ""]"#, true), OK);
        assert_eq!(k.bytes(), b"k1\nk2\n");
        assert_eq!(k.add(r#"["k2", ""]"#, false), OK);
        assert_eq!(k.bytes(), b"k1\nk2\n");
        // --remove of a key file: the empty key takes the last newline.
        assert_eq!(k.remove(r#"["k1"]"#), OK);
        assert_eq!(k.bytes(), b"k2\n");
        assert_eq!(k.remove(r#"["k2", ""]"#), OK);
        assert_eq!(k.bytes(), b"");
        assert_eq!(k.get(), r#"{"return": {"keys": []}}"#);
        assert_eq!(
            std::fs::read_dir(k.home.join(".ssh")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn no_newline_is_added() {
        let mut k = Keys::new();
        assert_eq!(k.add("[]", false), OK);
        assert_eq!(k.bytes(), b"");
        assert_eq!(k.add(r#"["a"]"#, false), OK);
        assert_eq!(k.bytes(), b"a");
        // Duplicates within the list are added once.
        assert_eq!(k.add(r#"["b", "a", "b"]"#, false), OK);
        assert_eq!(k.bytes(), b"a\nb");
        assert_eq!(k.add(r#"[""]"#, true), OK);
        assert_eq!(k.bytes(), b"");
        assert_eq!(k.add("[]", true), OK);
        assert_eq!(k.bytes(), b"");
        k.set(b"\n");
        assert_eq!(k.add(r#"["u"]"#, false), OK);
        assert_eq!(k.bytes(), b"\n\nu");
        k.set(b"");
        assert_eq!(k.remove(r#"[""]"#), OK);
        assert_eq!(k.bytes(), b"");
    }

    #[test]
    fn lines_are_bytes_up_to_a_nul() {
        let mut k = Keys::new();
        // Existing duplicates stay on add; all go on remove.
        k.set(b"d\nd\ne\nd");
        assert_eq!(k.add(r#"["d", "f"]"#, false), OK);
        assert_eq!(k.bytes(), b"d\nd\ne\nd\nf");
        assert_eq!(k.remove(r#"["d"]"#), OK);
        assert_eq!(k.bytes(), b"e\nf");
        // GLib reads a C string.
        k.set(b"x\ny\0z\n");
        assert_eq!(k.get(), r#"{"return": {"keys": ["y", "x"]}}"#);
        assert_eq!(k.add(r#"["w"]"#, false), OK);
        assert_eq!(k.bytes(), b"x\ny\nw");
        // Bytes that are not UTF-8 are kept, and shown replaced.
        k.set(b"caf\xe9\nok\n");
        assert_eq!(k.remove(r#"["ok"]"#), OK);
        assert_eq!(k.bytes(), b"caf\xe9\n");
        assert_eq!(k.get(), r#"{"return": {"keys": ["caf\uFFFD"]}}"#);
    }

    #[test]
    fn white_space_and_carriage_returns() {
        let mut k = Keys::new();
        k.set(b"a\r\n  \n\tb c \x0b\n# c\n\n d\n\x0cz\x0c \n  # e");
        // g_strstrip: not vertical tab.
        assert_eq!(
            k.get(),
            r#"{"return": {"keys": ["z", "d", "b c \u000B", "a"]}}"#
        );
        // White space and \r are part of a key.
        assert_eq!(k.add(r#"[" a\r", "a\r", "a", "   ", "\t"]"#, false), OK);
        assert_eq!(
            k.bytes(),
            b"a\r\n  \n\tb c \x0b\n# c\n\n d\n\x0cz\x0c \n  # e\n a\r\na\n   \n\t"
        );
        assert_eq!(k.remove(r#"["a\r", "", "b c", "  "]"#), OK);
        assert_eq!(
            k.bytes(),
            b"\tb c \x0b\n# c\n d\n\x0cz\x0c \n  # e\n a\r\na\n   \n\t"
        );
    }

    #[test]
    fn refused_keys() {
        let mut k = Keys::new();
        k.set(b"p");
        for (request, key) in [
            (r##"["ok", "#c"]"##, "#c"),
            (r#"["a\nb"]"#, "a\nb"),
            (r#"["", "\n"]"#, "\n"),
        ] {
            for reply in [
                k.add(request, false),
                k.add(request, true),
                k.remove(request),
            ] {
                let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
                assert_eq!(
                    v["error"]["desc"],
                    format!("invalid OpenSSH public key: '{key}'")
                );
            }
        }
        assert_eq!(k.bytes(), b"p");
        // Checked before the user is looked up.
        assert_eq!(
            k.t.error(r##"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "nosuchuser", "keys": ["#x"]}}"##),
            "invalid OpenSSH public key: '#x'"
        );
        assert_eq!(
            k.t.error(r#"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "nosuchuser", "keys": [""]}}"#),
            "failed to lookup user 'nosuchuser': Success"
        );
    }

    #[test]
    fn files_and_directories() {
        let mut k = Keys::new();
        let ssh = k.home.join(".ssh");
        let (uid, gid) = k.owner;
        assert_eq!(
            k.get(),
            format!(
                r#"{{"error": {{"class": "GenericError", "desc": "failed to read '{0}': Failed to open file \u201C{0}\u201D: No such file or directory"}}}}"#,
                k.path.display()
            )
        );
        // No file: remove does nothing, creates nothing.
        assert_eq!(k.remove(r#"["k"]"#), OK);
        assert!(!ssh.exists());
        // Mode and owner are set back on every write.
        k.set(b"s");
        std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(k.remove(r#"["x"]"#), OK);
        assert_eq!(Keys::meta(&k.path), (0o600, uid, gid));
        std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(k.add(r#"["t"]"#, false), OK);
        assert_eq!(Keys::meta(&k.path), (0o600, uid, gid));
        assert_eq!(k.bytes(), b"s\nt");
        // An existing ~/.ssh is left as it is.
        std::fs::remove_dir_all(&ssh).unwrap();
        std::fs::create_dir(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = Keys::meta(&ssh);
        assert_eq!(k.add(r#"["p"]"#, false), OK);
        assert_eq!(Keys::meta(&ssh), before);
        assert_eq!(k.bytes(), b"p");
        // reset makes ~/.ssh too.
        std::fs::remove_dir_all(&ssh).unwrap();
        assert_eq!(k.add(r#"["r"]"#, true), OK);
        assert_eq!(Keys::meta(&ssh), (0o700, uid, gid));
        assert_eq!(k.bytes(), b"r");
        // authorized_keys a directory.
        std::fs::remove_file(&k.path).unwrap();
        std::fs::create_dir(&k.path).unwrap();
        let want = format!(
            "failed to read '{0}': Error reading file \u{201c}{0}\u{201d}: Is a directory",
            k.path.display()
        );
        for reply in [k.get(), k.remove(r#"["k"]"#)] {
            let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
            assert_eq!(v["error"]["desc"], want.as_str());
        }
    }

    #[test]
    fn argument_errors() {
        let mut k = Keys::new();
        assert_eq!(
            k.t.error(r#"{"execute": "guest-ssh-get-authorized-keys", "arguments": {"username": "nosuchuser"}}"#),
            "failed to lookup user 'nosuchuser': Success"
        );
        assert_eq!(
            k.t.error(r#"{"execute": "guest-ssh-add-authorized-keys", "arguments": {"username": "tester"}}"#),
            "Parameter 'keys' is missing"
        );
        assert_eq!(
            k.t.error(r#"{"execute": "guest-ssh-remove-authorized-keys", "arguments": {"username": "tester", "keys": [1]}}"#),
            "Invalid parameter type for 'keys[0]', expected: string"
        );
    }

    #[test]
    fn strip_as_glib() {
        assert_eq!(g_strstrip(b" \t\r\n\x0ca b\x0c\n\r\t "), b"a b");
        assert_eq!(g_strstrip(b"\x0ba\x0b"), b"\x0ba\x0b");
        assert_eq!(g_strstrip(b"   "), b"");
        assert_eq!(g_strstrip(b""), b"");
    }
}
