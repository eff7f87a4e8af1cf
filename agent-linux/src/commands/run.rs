//! Running helper programs the way qemu-ga's `ga_run_command` does: stdio
//! on `/dev/null` (or stdin from a pipe), a new session, wait for the exit
//! status, and qemu-ga's error texts — but never waiting for ever.
//!
//! qemu-ga waits for `hwclock`, `shutdown`, `chpasswd` and the fsfreeze
//! hook with no time limit, so one stuck helper wedges its only thread
//! (and, during a freeze, the guest). Here every helper runs in a process
//! group of its own and is waited for at most [`HELPER_TIMEOUT`] (the
//! fsfreeze hook: its own configurable limit); past that the whole group
//! is killed with SIGKILL, reaped, and the command fails with
//! `child process has timed out after N seconds (it was to <action>)`
//! (the hook: `fsfreeze hook has timed out after N seconds`), texts
//! qemu-ga does not have.

use std::ffi::OsStr;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Error;

/// How long `hwclock`, `shutdown`, `chpasswd`, `systemctl` and the pm-utils
/// programs may run.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of [`wait_bounded`].
#[derive(Debug)]
pub enum Waited {
    /// The child exited (or was killed by a signal) in time.
    Exited(ExitStatus),
    /// It was still running at the deadline: its process group was killed
    /// and it has been reaped.
    TimedOut,
}

/// Wait for `child`, which leads its own process group, for at most
/// `timeout`; at the deadline kill the group and reap the child. Sleeps in
/// `poll` on a pidfd (Linux 5.3+), else in 10 ms steps.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> io::Result<Waited> {
    let deadline = Instant::now() + timeout;
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Waited::Exited(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match &pidfd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let ts = rustix::event::Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => std::thread::sleep(left.min(Duration::from_millis(10))),
        }
    }
    // The child leads its group (process_group(0)): kill all of it, so a
    // hook's own children cannot keep pipes or filesystems busy.
    if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    child.wait()?;
    Ok(Waited::TimedOut)
}

/// Whole seconds of `d`, for messages (at least 1 when nonzero).
pub fn seconds(d: Duration) -> u64 {
    if d.is_zero() {
        0
    } else {
        d.as_secs().max(1)
    }
}

/// Run `program` with `args`, feeding `input` on stdin if given. `action`
/// completes qemu-ga's message `child process has failed to <action>`.
/// Waits at most [`HELPER_TIMEOUT`].
pub fn run_command<S: AsRef<OsStr>>(
    program: &OsStr,
    args: &[S],
    input: Option<&[u8]>,
    action: &str,
) -> Result<(), Error> {
    run_command_within(program, args, input, action, HELPER_TIMEOUT)
}

/// [`run_command`] with its own time limit.
pub fn run_command_within<S: AsRef<OsStr>>(
    program: &OsStr,
    args: &[S],
    input: Option<&[u8]>,
    action: &str,
    timeout: Duration,
) -> Result<(), Error> {
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
        // The input is a line or two (a password), far below a pipe's
        // buffer, so this write cannot block on a child that never reads.
        if let Err(e) = stdin.write_all(data) {
            let _ = wait_bounded(&mut child, Duration::ZERO);
            return Err(Error::os("cannot write to child's stdin", &e));
        }
    }
    let waited = wait_bounded(&mut child, timeout).map_err(|e| {
        Error::os(
            format!("failed to wait for child (pid: {})", child.id()),
            &e,
        )
    })?;
    let status = match waited {
        Waited::Exited(status) => status,
        Waited::TimedOut => {
            return Err(Error::msg(format!(
                "child process has timed out after {} seconds (it was to {action})",
                seconds(timeout)
            )))
        }
    };
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
/// started, was killed, or ran past [`HELPER_TIMEOUT`]), as qemu-ga's
/// `run_process_child` does.
pub fn exit_status<S: AsRef<OsStr>>(program: &OsStr, args: &[S]) -> Option<i32> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    match wait_bounded(&mut child, HELPER_TIMEOUT).ok()? {
        Waited::Exited(status) => status.code(),
        Waited::TimedOut => None,
    }
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

    #[test]
    fn a_helper_that_never_ends_is_killed_with_its_children() {
        let dir = std::env::temp_dir().join(format!("qga-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("grandchild");
        // The helper starts a grandchild in its group, then hangs.
        let script = format!("sleep 1000 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = run_command_within(
            OsStr::new("/bin/sh"),
            &["-c", script.as_str()],
            None,
            "hang",
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "child process has timed out after 1 seconds (it was to hang)"
        );
        eprintln!("returned after {:?}", started.elapsed());
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed with the group: gone, or a zombie until init reaps it.
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat"));
            let dead = state.map_or(true, |s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            });
            if !dead {
                std::thread::sleep(Duration::from_millis(10));
            }
            dead
        });
        assert!(gone, "the helper's child survived the time-out");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
