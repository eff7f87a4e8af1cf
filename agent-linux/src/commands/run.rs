//! Running helper programs the way qemu-ga's `ga_run_command` does: stdio
//! on `/dev/null` (or stdin from a pipe), a new session, wait for the exit
//! status, and qemu-ga's error texts.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;

/// Run `program` with `args`, feeding `input` on stdin if given. `action`
/// completes qemu-ga's message "child process has failed to <action>".
pub fn run_command<'a, S: AsRef<OsStr>>(
    program: &OsStr,
    args: &[S],
    input: Option<&[u8]>,
    action: &str,
) -> Result<(), Error<'a>> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // qemu-ga forks first and reports a failed exec as the child's exit
    // status 1, so a missing program is "failed to <action>".
    let Ok(mut child) = command.spawn() else {
        return Err(Error::msg(format!("child process has failed to {action}")));
    };
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        if let Err(e) = stdin.write_all(data) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::os("cannot write to child's stdin", &e));
        }
    }
    let status = child.wait().map_err(|e| {
        Error::os(
            format!("failed to wait for child (pid: {})", child.id()),
            &e,
        )
    })?;
    match status.code() {
        None => Err(Error::msg("child process has terminated abnormally")),
        Some(0) => Ok(()),
        Some(_) => Err(Error::msg(format!("child process has failed to {action}"))),
    }
}

/// Find `program` as GLib's `g_find_program_in_path` does: a name with a
/// slash is taken as is, others are searched in `PATH`; only executable
/// regular files count.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_os_str().as_bytes().contains(&b'/') {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// Run `program` and return its exit status (`None` if it could not be
/// started or was killed), as qemu-ga's `run_process_child` does.
pub fn exit_status<S: AsRef<OsStr>>(program: &OsStr, args: &[S]) -> Option<i32> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .and_then(|s| s.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(run_command(OsStr::new("/bin/true"), &[] as &[&str], None, "x").is_ok());
        assert_eq!(
            run_command(OsStr::new("/bin/false"), &[] as &[&str], None, "shutdown")
                .unwrap_err()
                .to_string(),
            "child process has failed to shutdown"
        );
        assert_eq!(
            run_command(
                OsStr::new("/nonexistent/x"),
                &[] as &[&str],
                None,
                "shutdown"
            )
            .unwrap_err()
            .to_string(),
            "child process has failed to shutdown"
        );
        assert!(run_command(
            OsStr::new("/bin/sh"),
            &["-c", "read x; test \"$x\" = hi"],
            Some(b"hi\n"),
            "x"
        )
        .is_ok());
        assert_eq!(
            exit_status(OsStr::new("/bin/sh"), &["-c", "exit 3"]),
            Some(3)
        );
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("/nonexistent/sh")).is_none());
        assert_eq!(
            exit_status(OsStr::new("/nonexistent"), &[] as &[&str]),
            None
        );
    }
}
