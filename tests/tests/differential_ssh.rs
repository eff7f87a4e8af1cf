//! Differential test of the ssh key commands: the same add / remove /
//! reset / get sequences, virsh's (a key list ending in `""`, what
//! `virsh set-user-sshkeys --file` sends for a file ending in a newline)
//! among them, sent to Debian's `qemu-ga` 7.2 and to our `guest-agent`,
//! comparing each reply and, after each step, the bytes, mode and owner of
//! `~/.ssh/authorized_keys` and of `~/.ssh`, and the names in `~/.ssh`
//! (no temporary file left behind).
//!
//! qemu-ga finds users with `getpwnam`, so each agent runs in a mount
//! namespace of its own (util-linux `unshare -m`) with a test passwd file
//! bound over `/etc/passwd`: a throwaway user, uid 4242 gid 4243, whose
//! home is in the scratch directory, and nothing changed on the machine.
//! Needs root; skipped otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tests::LinePeer;

const USER: &str = "qga-ssh-test";
const UID: u32 = 4242;
const GID: u32 = 4243;

/// An agent on a unix socket in its own mount namespace; SIGKILLed on
/// drop.
fn start_peer(bin: &Path, dir: &Path, passwd: &Path) -> LinePeer {
    let socket = dir.join("sock");
    // unshare execs sh, which execs the agent: the child is the agent.
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/passwd && exec "$@""#)
        .arg(passwd)
        .arg(bin)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-t")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    LinePeer::connect(child, &socket, bin, Duration::from_secs(10))
}

/// One step of a session.
enum Step {
    /// A request, its `arguments` (the username is added first).
    Call(&'static str, &'static str),
    /// Set up `~/.ssh/authorized_keys` with these bytes (and `~/.ssh`).
    File(&'static [u8]),
    /// Chmod and chown (to root) the file: the agent must set them back.
    Spoil,
    /// Remove `~/.ssh`.
    NoDir,
    /// Make `~/.ssh` a root-owned 0755 directory with no file.
    RootDir,
    /// Make `authorized_keys` a directory.
    DirAsFile,
}

use Step::{Call, DirAsFile, File, NoDir, RootDir, Spoil};

const GET: &str = "guest-ssh-get-authorized-keys";
const ADD: &str = "guest-ssh-add-authorized-keys";
const REMOVE: &str = "guest-ssh-remove-authorized-keys";

const STEPS: &[Step] = &[
    Call(GET, ""),
    Call(REMOVE, r#""keys": ["k"]"#),
    Call(ADD, r#""keys": []"#),
    // virsh set-user-sshkeys --file of a file ending in a newline.
    Call(
        ADD,
        r#""keys": ["ssh-rsa AAA a@b", "ssh-ed25519 BBB c@d", ""]"#,
    ),
    Call(GET, ""),
    // The empty key is there already: ssh-x follows the last newline.
    Call(ADD, r#""keys": ["ssh-x CCC", "ssh-x CCC", ""]"#),
    Call(GET, ""),
    Call(ADD, r#""keys": ["", "k0"]"#),
    Call(ADD, r#""keys": ["k1", "k2", ""], "reset": true"#),
    Call(ADD, r#""keys": ["k2", ""], "reset": false"#),
    Call(REMOVE, r#""keys": ["k1"]"#),
    Call(REMOVE, r#""keys": ["", "k2"]"#),
    Call(REMOVE, r#""keys": []"#),
    Call(ADD, r#""keys": [], "reset": true"#),
    Call(GET, ""),
    Call(ADD, r#""keys": [""], "reset": true"#),
    Call(GET, ""),
    // White space, \r, comments, blank lines.
    File(b"a\r\n  \n\tb c \x0b\n# c\n\n d\n\r\n\x0cz\x0c \n  # e"),
    Call(GET, ""),
    Call(ADD, r#""keys": [" a\r", "a\r", "a", "   ", "\t"]"#),
    Call(GET, ""),
    Call(REMOVE, r#""keys": ["a\r", "", "b c"]"#),
    Call(GET, ""),
    // Duplicated lines stay on add, all go on remove.
    File(b"d\nd\ne\nd"),
    Call(ADD, r#""keys": ["d", "f"]"#),
    Call(REMOVE, r#""keys": ["d"]"#),
    // A NUL ends the file for GLib.
    File(b"x\ny\0z\n"),
    Call(GET, ""),
    Call(ADD, r#""keys": ["w"]"#),
    File(b"x\0y\n"),
    Call(REMOVE, r#""keys": ["q"]"#),
    File(b""),
    Call(GET, ""),
    Call(ADD, r#""keys": ["v"]"#),
    File(b""),
    Call(REMOVE, r#""keys": [""]"#),
    File(b"\n"),
    Call(ADD, r#""keys": ["u"]"#),
    // Bytes that are not UTF-8 are kept.
    File(b"caf\xe9\nok\n"),
    Call(ADD, r#""keys": ["t"]"#),
    Call(GET, ""),
    Call(REMOVE, r#""keys": ["ok"]"#),
    // Mode and owner are set back; the directory is made as qemu-ga does.
    Spoil,
    Call(ADD, r#""keys": ["s"]"#),
    Spoil,
    Call(REMOVE, r#""keys": ["s"]"#),
    NoDir,
    Call(ADD, r#""keys": ["r"], "reset": true"#),
    NoDir,
    Call(REMOVE, r#""keys": ["r"]"#),
    Call(GET, ""),
    RootDir,
    Call(ADD, r#""keys": ["p"]"#),
    // Refused keys: nothing written.
    Call(ADD, r##""keys": ["ok", "#c"]"##),
    Call(ADD, r#""keys": ["a\nb"]"#),
    Call(ADD, r#""keys": ["a\n"], "reset": true"#),
    Call(REMOVE, r##""keys": ["#"]"##),
    Call(REMOVE, r#""keys": ["", "\n"]"#),
    // authorized_keys a directory.
    DirAsFile,
    Call(GET, ""),
    Call(REMOVE, r#""keys": ["k"]"#),
];

/// What `~/.ssh` holds, as text to compare.
fn snapshot(home: &Path) -> String {
    let describe = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) => format!(
            "{:o} {}:{}",
            m.permissions().mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
        Err(_) => "absent".to_string(),
    };
    let ssh = home.join(".ssh");
    let file = ssh.join("authorized_keys");
    let mut names: Vec<String> = std::fs::read_dir(&ssh)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let bytes = if file.is_file() {
        format!(
            "{:?}",
            String::from_utf8_lossy(&std::fs::read(&file).unwrap())
        )
    } else {
        "-".to_string()
    };
    format!(
        ".ssh {} {names:?}; authorized_keys {} {bytes}",
        describe(&ssh),
        describe(&file)
    )
}

fn run(bin: &Path, root: &Path, name: &str) -> Vec<String> {
    let dir = root.join(name);
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let passwd = dir.join("passwd");
    std::fs::write(
        &passwd,
        format!(
            "root:x:0:0:root:/root:/bin/sh\n{USER}:x:{UID}:{GID}::{}:/bin/sh\n",
            home.display()
        ),
    )
    .unwrap();
    let mut peer = start_peer(bin, &dir, &passwd);
    let ssh = home.join(".ssh");
    let file = ssh.join("authorized_keys");
    let home_text = home.display().to_string();
    let mut log = Vec::new();
    for step in STEPS {
        match step {
            Call(execute, args) => {
                let sep = if args.is_empty() { "" } else { ", " };
                let request = format!(
                    r#"{{"execute": "{execute}", "arguments": {{"username": "{USER}"{sep}{args}}}}}"#
                );
                let reply = peer.call(&request).replace(&home_text, "<home>");
                log.push(format!("{request}\n  -> {reply}\n  {}", snapshot(&home)));
            }
            File(bytes) => {
                let _ = std::fs::remove_dir_all(&file);
                std::fs::create_dir_all(&ssh).unwrap();
                std::fs::write(&file, bytes).unwrap();
            }
            Spoil => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
                std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
            }
            NoDir => {
                let _ = std::fs::remove_dir_all(&ssh);
            }
            RootDir => {
                let _ = std::fs::remove_dir_all(&ssh);
                std::fs::create_dir(&ssh).unwrap();
                std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            DirAsFile => {
                let _ = std::fs::remove_file(&file);
                std::fs::create_dir_all(&file).unwrap();
            }
        }
    }
    // The nonexistent-user check, outside the namespace's user.
    let request = format!(
        r#"{{"execute": "{ADD}", "arguments": {{"username": "nobody-qga-test", "keys": [""]}}}}"#
    );
    log.push(format!("{request}\n  -> {}", peer.call(&request)));
    log
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

#[test]
fn ssh_keys_against_qemu_ga() {
    if !is_root() {
        eprintln!("skipped: needs root (a mount namespace over /etc/passwd)");
        return;
    }
    let root: PathBuf = tests::scratch_dir("diffssh");
    let theirs = run(&tests::qemu_ga_bin(), &root, "qemu-ga");
    let ours = run(tests::guest_agent_bin(), &root, "ours");
    assert_eq!(theirs.len(), ours.len());
    let differences: Vec<String> = theirs
        .iter()
        .zip(&ours)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("qemu-ga: {a}\nours:    {b}"))
        .collect();
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n\n")
    );
    // Spot checks that the steps did what they are for.
    let virsh = &theirs[3];
    assert!(
        virsh.contains(r#"-> {"return": {}}"#)
            && virsh.contains(r#""ssh-rsa AAA a@b\nssh-ed25519 BBB c@d\n""#)
            && virsh.contains("authorized_keys 600 4242:4243"),
        "{virsh}"
    );
    assert!(theirs[2].contains(".ssh 700 4242:4243"), "{}", theirs[2]);
    let _ = std::fs::remove_dir_all(&root);
}
