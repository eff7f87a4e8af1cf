//! guest-exec when `wait` fails: with SIGCHLD ignored the kernel reaps
//! children itself, so `waitpid` gives ECHILD. guest-exec-status must say
//! so with qemu-ga's `ga_wait_child` text, not report exit status 0 (it
//! once did). Its own test binary: the signal disposition is per process.

use std::time::{Duration, Instant};

use agent_core::{Agent, Policy};
use agent_linux::commands::{CommandsConfig, LinuxCommands};

fn call(agent: &mut Agent<'_, Vec<u8>, LinuxCommands>, req: &str) -> String {
    let mut out = Vec::new();
    agent.feed(req.as_bytes(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_failed_wait_is_an_error_not_exit_status_zero() {
    // SAFETY: SIG_IGN runs no code of ours; this process runs only this test.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    let dir = std::env::temp_dir().join(format!("qga-exec-wait-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let commands = LinuxCommands::new(CommandsConfig::new(dir.clone(), None));
    let mut agent = Agent::new(vec![0u8; 1 << 16], commands, Policy::new());
    let reply = call(
        &mut agent,
        r#"{"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", "exit 7"]}}"#,
    );
    let pid: i64 = reply
        .split("\"pid\": ")
        .nth(1)
        .and_then(|r| r.split('}').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {reply}"));
    let status = format!(r#"{{"execute": "guest-exec-status", "arguments": {{"pid": {pid}}}}}"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answer = call(&mut agent, &status);
        if !answer.contains(r#""exited": false"#) || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        answer,
        format!(
            "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"failed to wait for child (pid: {pid}): No child processes\"}}}}\n"
        )
    );
    // Reported once, then forgotten like any finished child.
    assert!(call(&mut agent, &status).contains("does not exist"));
    let _ = std::fs::remove_dir_all(&dir);
}
