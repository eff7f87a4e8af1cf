//! `guest-set-user-password`: `chpasswd` (with `-e` for a crypted
//! password) fed `user:password\n` on stdin.

use agent_core::args::Args;

use super::error::CmdResult;
use super::file::decode_base64;
use super::params::text;
use super::run::{find_program, run_command};
use super::{Error, Out, SystemPaths};

/// `guest-set-user-password {username, password, crypted}`.
pub fn set_user_password<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let username = args.str("username")?;
    let password = args.str("password")?;
    let crypted = args.bool("crypted")?;
    args.finish()?;
    let mut raw = decode_base64(&text(&password))?;
    // qemu-ga treats the password as a C string.
    if let Some(nul) = raw.iter().position(|&b| b == 0) {
        raw.truncate(nul);
    }
    if raw.contains(&b'\n') {
        return Err(Error::msg("forbidden characters in raw password").into());
    }
    let username = text(&username);
    if username.contains(['\n', ':']) {
        return Err(Error::msg("forbidden characters in username").into());
    }
    let mut input = format!("{username}:").into_bytes();
    input.extend_from_slice(&raw);
    input.push(b'\n');
    let Some(program) = find_program(&sys.chpasswd) else {
        return Err(Error::msg("cannot find 'passwd' program in PATH").into());
    };
    let args: &[&str] = if crypted { &["-e"] } else { &[] };
    run_command(program.as_os_str(), args, Some(&input), "set user password")?;
    Ok(Out::Unit)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{config, Harness, TempDir};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn validation_and_stand_in() {
        let mut t = Harness::new();
        let call = |t: &mut Harness, a: &str| {
            t.error(&format!(
                r#"{{"execute": "guest-set-user-password", "arguments": {a}}}"#
            ))
        };
        assert_eq!(
            call(
                &mut t,
                r#"{"username": "a:b", "password": "eA==", "crypted": false}"#
            ),
            "forbidden characters in username"
        );
        assert_eq!(
            call(
                &mut t,
                r#"{"username": "ab", "password": "eAp5", "crypted": false}"#
            ),
            "forbidden characters in raw password"
        );
        assert_eq!(
            call(&mut t, r#"{"username": "ab", "password": "eAp5"}"#),
            "Parameter 'crypted' is missing"
        );
        assert_eq!(
            call(
                &mut t,
                r#"{"username": "ab", "password": "!", "crypted": true}"#
            ),
            "Base64 data contains invalid characters"
        );
        assert_eq!(
            call(
                &mut t,
                r#"{"username": "ab", "password": "eA==", "crypted": true}"#
            ),
            "cannot find 'passwd' program in PATH"
        );
        let dir = TempDir::new();
        let mut cfg = config(dir.path());
        let log = dir.path().join("log");
        let script = dir.path().join("chpasswd");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" > {0}\ncat >> {0}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        cfg.system.chpasswd = script;
        let mut t = Harness::with_config(dir, cfg);
        assert_eq!(
            t.call(r#"{"execute": "guest-set-user-password", "arguments": {"username": "bob", "password": "c2VjcmV0", "crypted": true}}"#),
            r#"{"return": {}}"#
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "-e\nbob:secret\n");
    }
}
