//! `guest-exec` and `guest-exec-status`.
//!
//! Each child gets one monitor thread that polls its output pipes and a
//! pidfd (or, on kernels without pidfds, polls every 100 ms), appending
//! output to bounded buffers ([`MAX_OUTPUT`] per stream, the rest read and
//! discarded, `*-truncated: true`). A child counts as exited once it is
//! reaped and the output already in its pipes has been read — unlike
//! qemu-ga, a grandchild that keeps a pipe open does not keep `exited`
//! false forever. Input data is written by its own thread, then stdin is
//! closed.
//!
//! At most [`MAX_CHILDREN`] children are tracked at once (running, or
//! finished and not yet collected by guest-exec-status); past that
//! guest-exec fails as a failed fork would.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_core::json::JsonStr;
use agent_core::json::ValueKind;
use agent_core::{ArgError, Args};
use rustix::event::{PollFd, PollFlags};

use super::error::{strerror, CmdResult};
use super::file::decode_base64;
use super::params::{os_string, text};
use super::{Error, Obj, Out};

/// Captured output per stream (`GUEST_EXEC_MAX_OUTPUT`, 16 MiB).
pub const MAX_OUTPUT: usize = 16 << 20;
/// Children tracked at once.
pub const MAX_CHILDREN: usize = 64;
/// Bytes read per pipe read.
const READ_CHUNK: usize = 64 << 10;
/// Most bytes read from a pipe after the child was reaped (what a
/// grandchild writes later is not waited for).
const DRAIN_AFTER_EXIT: usize = 4 << 20;

/// guest-exec's `capture-output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureMode {
    /// `none` / `false` / absent: output to /dev/null.
    None,
    /// `stdout`: stdout captured, stderr to /dev/null.
    Stdout,
    /// `stderr`: stderr captured, stdout to /dev/null.
    Stderr,
    /// `separated` / `true`: both captured apart.
    Separated,
    /// `merged`: both into one pipe, reported as `out-data`.
    Merged,
}

impl CaptureMode {
    /// Parse the mode names of `GuestExecCaptureOutputMode`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => CaptureMode::None,
            "stdout" => CaptureMode::Stdout,
            "stderr" => CaptureMode::Stderr,
            "separated" => CaptureMode::Separated,
            "merged" => CaptureMode::Merged,
            _ => return None,
        })
    }
}

fn capture_arg<'a>(args: &Args<'a>) -> Result<CaptureMode, ArgError<'a>> {
    const NAME: &str = "capture-output";
    let Some(v) = args.value(NAME) else {
        return Ok(CaptureMode::None);
    };
    match (v.kind(), v.as_str()) {
        (ValueKind::True, _) => Ok(CaptureMode::Separated),
        (ValueKind::False, _) => Ok(CaptureMode::None),
        (_, Some(s)) => CaptureMode::parse(&text(&s)).ok_or_else(|| args.invalid_value(NAME, s)),
        _ => Err(args.invalid_type(NAME, "GuestExecCaptureOutput")),
    }
}

/// An optional list of strings (`arg`, `env`).
fn opt_strings<'a>(
    args: &Args<'a>,
    name: &'static str,
) -> Result<Option<Vec<JsonStr<'a>>>, ArgError<'a>> {
    args.opt_list(name)?
        .map(|list| list.into_iter().map(|e| e.str()).collect())
        .transpose()
}

/// One stream's captured bytes.
#[derive(Debug, Default)]
struct Captured {
    data: Vec<u8>,
    truncated: bool,
}

impl Captured {
    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }
}

/// What the monitor thread reports.
#[derive(Debug, Default)]
struct State {
    /// How the child ended, or the errno of a failed `wait` (nothing to
    /// report as an exit status: the child was reaped elsewhere).
    status: Option<Result<ExitStatus, i32>>,
    out: Captured,
    err: Captured,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The tracked children by pid.
#[derive(Default)]
pub struct Children {
    procs: HashMap<i64, Arc<Mutex<State>>>,
}

/// Which captured buffer a pipe feeds.
#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

struct Pipe {
    reader: std::io::PipeReader,
    stream: Stream,
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(flags) = rustix::fs::fcntl_getfl(fd) {
        let _ = rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK);
    }
}

/// Read what `pipe` has now, up to `budget` bytes: false at EOF or error.
fn read_available(pipe: &mut Pipe, state: &Mutex<State>, budget: &mut usize) -> bool {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if *budget == 0 {
            return true;
        }
        match pipe.reader.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                *budget = budget.saturating_sub(n);
                let mut s = lock(state);
                let target = match pipe.stream {
                    Stream::Out => &mut s.out,
                    Stream::Err => &mut s.err,
                };
                target.append(buf.get(..n).unwrap_or_default());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn monitor(mut child: Child, mut pipes: Vec<Pipe>, state: Arc<Mutex<State>>) {
    for p in &pipes {
        set_nonblocking(p.reader.as_fd());
    }
    let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
    });
    loop {
        let mut fds: Vec<PollFd<'_>> = pipes
            .iter()
            .map(|p| PollFd::new(&p.reader, PollFlags::IN))
            .collect();
        if let Some(pidfd) = &pidfd {
            fds.push(PollFd::new(pidfd, PollFlags::IN));
        }
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        let wait = if pidfd.is_some() {
            None
        } else {
            Some(&timeout)
        };
        if fds.is_empty() {
            break;
        }
        match rustix::event::poll(&mut fds, wait) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut open = Vec::new();
        for (pipe, ready) in pipes.drain(..).zip(ready.iter().copied()) {
            let mut pipe = pipe;
            let mut budget = usize::MAX;
            if !ready || read_available(&mut pipe, &state, &mut budget) {
                open.push(pipe);
            }
        }
        pipes = open;
        // Exited, or cannot be waited for (then `wait` below says why).
        if !matches!(child.try_wait(), Ok(None)) {
            break;
        }
        if pipes.is_empty() && pidfd.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let status = child.wait();
    // What the child wrote before it exited is in the pipes now.
    for mut pipe in pipes {
        let mut budget = DRAIN_AFTER_EXIT;
        read_available(&mut pipe, &state, &mut budget);
    }
    let mut s = lock(&state);
    s.status = Some(status.map_err(|e| e.raw_os_error().unwrap_or(0)));
}

impl Children {
    /// No children.
    pub fn new() -> Self {
        Children::default()
    }

    /// `guest-exec {path, arg?, env?, input-data?, capture-output?}` →
    /// `{pid}`.
    pub fn spawn<'a>(&mut self, args: &Args<'a>) -> CmdResult<'a> {
        let path = args.str("path")?;
        let argv = opt_strings(args, "arg")?;
        let env = opt_strings(args, "env")?;
        let input = args.opt_str("input-data")?;
        let capture = capture_arg(args)?;
        args.finish()?;
        let input = input.map(|s| decode_base64(&text(&s))).transpose()?;
        let path_text = text(&path);
        // Finished records no one collects would otherwise pile up.
        if self.procs.len() >= MAX_CHILDREN {
            return Err(Error::msg(format!("Failed to fork ({})", strerror(libc::EAGAIN))).into());
        }
        let mut command = Command::new(os_string(&path));
        for a in argv.unwrap_or_default() {
            command.arg(os_string(&a));
        }
        if let Some(env) = env {
            command.env_clear();
            for entry in env {
                let entry: OsString = os_string(&entry);
                let bytes = entry.as_bytes();
                if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
                    let (k, v) = bytes.split_at(eq);
                    command.env(
                        std::ffi::OsStr::from_bytes(k),
                        std::ffi::OsStr::from_bytes(v.get(1..).unwrap_or_default()),
                    );
                }
            }
        }
        command.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        // GLib's message, wrapped as qemu-ga does (QERR_QGA_COMMAND_FAILED).
        let spawn_error = |e: &std::io::Error| {
            Error::msg(format!(
                "Guest agent command failed, error was 'Failed to execute child process \u{201c}{path_text}\u{201d} ({})'",
                strerror(e.raw_os_error().unwrap_or(0))
            ))
        };
        let mut pipes = Vec::new();
        let mut new_pipe = |stream| -> Result<std::io::PipeWriter, Error> {
            let (reader, writer) =
                std::io::pipe().map_err(|e| Error::os("Failed to create pipe", &e))?;
            pipes.push(Pipe { reader, stream });
            Ok(writer)
        };
        match capture {
            CaptureMode::None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
            CaptureMode::Stdout => {
                command.stdout(new_pipe(Stream::Out)?).stderr(Stdio::null());
            }
            CaptureMode::Stderr => {
                command.stdout(Stdio::null()).stderr(new_pipe(Stream::Err)?);
            }
            CaptureMode::Separated => {
                command.stdout(new_pipe(Stream::Out)?);
                command.stderr(new_pipe(Stream::Err)?);
            }
            CaptureMode::Merged => {
                let w = new_pipe(Stream::Out)?;
                let w2 = w
                    .try_clone()
                    .map_err(|e| Error::os("Failed to create pipe", &e))?;
                command.stdout(w).stderr(w2);
            }
        }
        let spawned = command.spawn();
        // The write ends now belong to the child only.
        drop(command);
        let mut child = spawned.map_err(|e| spawn_error(&e))?;
        let pid = i64::from(child.id());
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || monitor(child, pipes, shared));
        self.procs.insert(pid, state);
        Ok(Obj::new().int("pid", pid).into())
    }

    /// `guest-exec-status {pid}` → `{exited, exitcode?, signal?,
    /// out-data?, err-data?, out-truncated?, err-truncated?}`; a finished
    /// child's record is removed once reported.
    pub fn status<'a>(&mut self, args: &Args<'a>) -> CmdResult<'a> {
        let pid = args.int("pid")?;
        args.finish()?;
        let Some(state) = self.procs.get(&pid) else {
            return Err(Error::msg(format!("PID {pid} does not exist")).into());
        };
        let s = lock(state);
        let status = match s.status {
            None => return Ok(Obj::new().bool("exited", false).into()),
            Some(Ok(status)) => status,
            Some(Err(errno)) => {
                // qemu-ga's ga_wait_child text; the record goes, as for
                // any finished child.
                drop(s);
                self.procs.remove(&pid);
                return Err(
                    Error::Os(format!("failed to wait for child (pid: {pid})"), errno).into(),
                );
            }
        };
        let b64 = |c: &Captured| {
            (!c.data.is_empty()).then(|| Out::Str(base64_simd::STANDARD.encode_to_string(&c.data)))
        };
        let result = Obj::new()
            .bool("exited", true)
            .opt("exitcode", status.code().map(|c| Out::Int(c.into())))
            .opt(
                "signal",
                status
                    .code()
                    .is_none()
                    .then(|| status.signal())
                    .flatten()
                    .map(|s| Out::Int(s.into())),
            )
            .opt("out-data", b64(&s.out))
            .opt("err-data", b64(&s.err))
            .opt(
                "out-truncated",
                (!s.out.data.is_empty()).then_some(Out::Bool(s.out.truncated)),
            )
            .opt(
                "err-truncated",
                (!s.err.data.is_empty()).then_some(Out::Bool(s.err.truncated)),
            );
        drop(s);
        self.procs.remove(&pid);
        Ok(result.into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::*;
    use base64::Engine as _;

    fn run(t: &mut Harness, args: &str) -> serde_json::Value {
        let v = t.json(&format!(
            r#"{{"execute": "guest-exec", "arguments": {args}}}"#
        ));
        let pid = v["return"]["pid"].as_i64().unwrap_or_else(|| panic!("{v}"));
        for _ in 0..500 {
            let s = t.json(&format!(
                r#"{{"execute": "guest-exec-status", "arguments": {{"pid": {pid}}}}}"#
            ));
            if s["return"]["exited"] == true {
                // The record is gone once reported.
                assert_eq!(
                    t.error(&format!(
                        r#"{{"execute": "guest-exec-status", "arguments": {{"pid": {pid}}}}}"#
                    )),
                    format!("PID {pid} does not exist")
                );
                return s["return"].clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("child did not exit");
    }

    fn decoded(v: &serde_json::Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    #[test]
    fn echo_captured() {
        let mut t = Harness::new();
        let r = run(
            &mut t,
            r#"{"path": "/bin/echo", "arg": ["-n", "\" test_str \""], "capture-output": true}"#,
        );
        assert_eq!(r["exitcode"], 0);
        assert_eq!(decoded(&r["out-data"]), b"\" test_str \"");
        assert_eq!(r["out-truncated"], false);
        assert!(r.get("err-data").is_none() && r.get("signal").is_none());
    }

    #[test]
    fn separated_and_merged() {
        let mut t = Harness::new();
        let script = r#"for i in 1 2; do echo stdout; echo stderr >&2; done"#;
        let r = run(
            &mut t,
            &format!(
                r#"{{"path": "/bin/sh", "arg": ["-c", "{script}"], "capture-output": "separated"}}"#
            ),
        );
        assert_eq!(decoded(&r["out-data"]), b"stdout\nstdout\n");
        assert_eq!(decoded(&r["err-data"]), b"stderr\nstderr\n");
        let r = run(
            &mut t,
            &format!(
                r#"{{"path": "/bin/sh", "arg": ["-c", "{script}"], "capture-output": "merged"}}"#
            ),
        );
        assert_eq!(decoded(&r["out-data"]), b"stdout\nstderr\nstdout\nstderr\n");
        assert!(r.get("err-data").is_none());
        let r = run(
            &mut t,
            &format!(
                r#"{{"path": "/bin/sh", "arg": ["-c", "{script}"], "capture-output": "stderr"}}"#
            ),
        );
        assert_eq!(decoded(&r["err-data"]), b"stderr\nstderr\n");
        assert!(r.get("out-data").is_none());
        let r = run(
            &mut t,
            &format!(r#"{{"path": "/bin/sh", "arg": ["-c", "{script}"]}}"#),
        );
        assert_eq!(r, serde_json::json!({"exited": true, "exitcode": 0}));
    }

    #[test]
    fn exit_code_signal_input_env() {
        let mut t = Harness::new();
        let r = run(&mut t, r#"{"path": "/bin/sh", "arg": ["-c", "exit 3"]}"#);
        assert_eq!(r["exitcode"], 3);
        let r = run(
            &mut t,
            r#"{"path": "/bin/sh", "arg": ["-c", "kill -9 $$"]}"#,
        );
        assert_eq!(r["signal"], 9);
        assert!(r.get("exitcode").is_none());
        let r = run(
            &mut t,
            r#"{"path": "cat", "input-data": "aGVsbG8=", "capture-output": "stdout", "env": ["PATH=/bin:/usr/bin"]}"#,
        );
        assert_eq!(decoded(&r["out-data"]), b"hello");
        let r = run(
            &mut t,
            r#"{"path": "/usr/bin/env", "env": ["A=b=c", "NOEQUALS"], "capture-output": true}"#,
        );
        assert_eq!(decoded(&r["out-data"]), b"A=b=c\n");
    }

    #[test]
    fn grandchild_holding_the_pipe() {
        let mut t = Harness::new();
        let r = run(
            &mut t,
            r#"{"path": "/bin/sh", "arg": ["-c", "echo early; sleep 30 & exit 0"], "capture-output": true}"#,
        );
        assert_eq!(decoded(&r["out-data"]), b"early\n");
    }

    #[test]
    fn truncation() {
        let mut t = Harness::new();
        let r = run(
            &mut t,
            r#"{"path": "/bin/sh", "arg": ["-c", "head -c 17000000 /dev/zero"], "capture-output": true}"#,
        );
        assert_eq!(r["out-truncated"], true);
        assert_eq!(decoded(&r["out-data"]).len(), MAX_OUTPUT);
    }

    #[test]
    fn errors() {
        let mut t = Harness::new();
        assert_eq!(
            t.error(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/invalid-cmd42"}}"#),
            "Guest agent command failed, error was 'Failed to execute child process \u{201c}/bin/invalid-cmd42\u{201d} (No such file or directory)'"
        );
        assert_eq!(
            t.call(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/invalid-cmd42"}}"#),
            r#"{"error": {"class": "GenericError", "desc": "Guest agent command failed, error was 'Failed to execute child process \u201C/bin/invalid-cmd42\u201D (No such file or directory)'"}}"#
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec-status", "arguments": {"pid": 0}}"#),
            "PID 0 does not exist"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/true", "arg": [1]}}"#),
            "Invalid parameter type for 'arg[0]', expected: string"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/true", "capture-output": "x"}}"#),
            "Parameter 'capture-output' does not accept value 'x'"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/true", "capture-output": 1}}"#),
            "Invalid parameter type for 'capture-output', expected: GuestExecCaptureOutput"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec", "arguments": {"path": "/bin/true", "input-data": "!"}}"#),
            "Base64 data contains invalid characters"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec", "arguments": {"arg": []}}"#),
            "Parameter 'path' is missing"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-exec-status", "arguments": {"pid": 1, "x": 2}}"#),
            "Parameter 'x' is unexpected"
        );
    }
}
