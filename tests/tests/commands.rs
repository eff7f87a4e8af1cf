//! Every command `guest-info` lists, driven over the socket of
//! `guest-agent -m unix-listen -t <scratch>` with agent-core's client: a
//! success case wherever one is harmless on the machine running the tests,
//! and the argument errors (wrong types, missing and unknown members, huge
//! counts, bad base64, bad handles, missing paths) with qemu-ga's class and
//! exact text, which Debian's qemu-ga 7.2 gives byte for byte (see
//! `differential_commands.rs`). After every error the agent must still
//! answer. Handles and exec children are opened past their caps and freed,
//! and the agent's descriptor count must come back to its baseline.
//!
//! Nothing here changes the system: the commands that would (shutdown,
//! suspend, set-time, set-vcpus, set-memory-blocks, set-user-password,
//! fsfreeze, fstrim, the ssh key editors) only get requests that fail
//! argument validation, name a user or CPU that does not exist, or are
//! empty lists, which both agents answer without touching anything.
//!
//! The last tests use the `qapi` crate's typed QGA client for a
//! representative subset.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tests::{Conn, RunningAgent};

const GENERIC: &str = "GenericError";
const NOT_FOUND: &str = "CommandNotFound";

/// An agent with its own state directory, and a synced connection.
fn start(name: &str) -> (RunningAgent, Conn, PathBuf) {
    let state = tests::scratch_dir(&format!("{name}-state"));
    let agent = RunningAgent::start(name, &["-t", state.to_str().unwrap()]);
    let mut conn = agent.connect();
    conn.sync(4242);
    (agent, conn, state)
}

/// A successful call's return value, parsed.
fn ok(conn: &mut Conn, execute: &str, args: &str) -> Value {
    match conn.call(execute, Some(args)).0 {
        Ok(text) => serde_json::from_str(&text).unwrap(),
        Err(e) => panic!("{execute} {args}: {e:?}"),
    }
}

/// A failing call's (class, desc).
fn err(conn: &mut Conn, execute: &str, args: &str) -> (String, String) {
    match conn.call(execute, Some(args)).0 {
        Ok(v) => panic!("{execute} {args}: expected an error, got {v}"),
        Err(e) => e,
    }
}

/// The agent still serves.
fn still_serves(conn: &mut Conn, after: &str) {
    assert_eq!(
        conn.call("guest-ping", None).0,
        Ok("{}".into()),
        "agent stopped serving after {after}"
    );
}

fn expect_error(conn: &mut Conn, execute: &str, args: &str, class: &str, desc: &str) {
    assert_eq!(
        err(conn, execute, args),
        (class.to_string(), desc.to_string()),
        "{execute} {args}"
    );
    still_serves(conn, &format!("{execute} {args}"));
}

/// Argument errors of every command, with qemu-ga's texts (all
/// GenericError). `H` stands for a handle number that is not open.
const ERRORS: &[(&str, &str, &str)] = &[
    ("guest-sync", "{}", "Parameter 'id' is missing"),
    (
        "guest-sync",
        r#"{"id": "x"}"#,
        "Invalid parameter type for 'id', expected: integer",
    ),
    (
        "guest-sync",
        r#"{"id": 1.5}"#,
        "Invalid parameter type for 'id', expected: integer",
    ),
    (
        "guest-sync",
        r#"{"id": 9223372036854775808}"#,
        "Invalid parameter type for 'id', expected: integer",
    ),
    (
        "guest-sync",
        r#"{"id": 1, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-sync-delimited", "{}", "Parameter 'id' is missing"),
    (
        "guest-sync-delimited",
        r#"{"id": 1.5}"#,
        "Invalid parameter type for 'id', expected: integer",
    ),
    (
        "guest-sync-delimited",
        r#"{"id": 1, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-ping",
        r#"{"foo": 42}"#,
        "Parameter 'foo' is unexpected",
    ),
    ("guest-info", r#"{"x": 1}"#, "Parameter 'x' is unexpected"),
    (
        "guest-get-time",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    // guest-set-time: never a valid time; these fail before the clock.
    (
        "guest-set-time",
        r#"{"time": "x"}"#,
        "Invalid parameter type for 'time', expected: integer",
    ),
    (
        "guest-set-time",
        r#"{"time": 1.5}"#,
        "Invalid parameter type for 'time', expected: integer",
    ),
    (
        "guest-set-time",
        r#"{"time": 9223372036854775808}"#,
        "Invalid parameter type for 'time', expected: integer",
    ),
    (
        "guest-set-time",
        r#"{"time": "x", "y": 1}"#,
        "Invalid parameter type for 'time', expected: integer",
    ),
    (
        "guest-set-time",
        r#"{"time": 9223372036854775807}"#,
        "Invalid time",
    ),
    (
        "guest-set-time",
        r#"{"time": -1}"#,
        "Failed to set time to guest: Invalid argument",
    ),
    (
        "guest-set-time",
        r#"{"y": 1}"#,
        "Parameter 'y' is unexpected",
    ),
    (
        "guest-shutdown",
        r#"{"mode": "bogus"}"#,
        "mode is invalid (valid values are: halt|powerdown|reboot",
    ),
    (
        "guest-shutdown",
        r#"{"mode": 1}"#,
        "Invalid parameter type for 'mode', expected: string",
    ),
    (
        "guest-shutdown",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-file-open", "{}", "Parameter 'path' is missing"),
    (
        "guest-file-open",
        r#"{"path": 1}"#,
        "Invalid parameter type for 'path', expected: string",
    ),
    (
        "guest-file-open",
        r#"{"path": "/nonexistent/x"}"#,
        "failed to open file '/nonexistent/x' (mode: 'r'): No such file or directory",
    ),
    (
        "guest-file-open",
        r#"{"path": "/nonexistent/x", "mode": "w"}"#,
        "failed to open file '/nonexistent/x' (mode: 'w'): No such file or directory",
    ),
    (
        "guest-file-open",
        r#"{"path": "/nonexistent/x", "mode": "bogus"}"#,
        "invalid file open mode 'bogus'",
    ),
    (
        "guest-file-open",
        r#"{"path": "/nonexistent/x", "mode": "rw"}"#,
        "invalid file open mode 'rw'",
    ),
    (
        "guest-file-open",
        r#"{"path": "/nonexistent/x", "mode": 1}"#,
        "Invalid parameter type for 'mode', expected: string",
    ),
    (
        "guest-file-open",
        r#"{"path": "/nonexistent/x", "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-file-open",
        r#"{"path": "/", "mode": "w"}"#,
        "failed to open file '/' (mode: 'w'): Is a directory",
    ),
    ("guest-file-close", "{}", "Parameter 'handle' is missing"),
    (
        "guest-file-close",
        r#"{"handle": "x"}"#,
        "Invalid parameter type for 'handle', expected: integer",
    ),
    (
        "guest-file-close",
        r#"{"handle": 1.5}"#,
        "Invalid parameter type for 'handle', expected: integer",
    ),
    (
        "guest-file-close",
        r#"{"handle": 999999}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-close",
        r#"{"handle": -1}"#,
        "handle '-1' has not been found",
    ),
    (
        "guest-file-close",
        r#"{"handle": 999999, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-file-read", "{}", "Parameter 'handle' is missing"),
    (
        "guest-file-read",
        r#"{"handle": 999999}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-read",
        r#"{"handle": 999999, "count": -1}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-read",
        r#"{"handle": 999999, "count": "x"}"#,
        "Invalid parameter type for 'count', expected: integer",
    ),
    (
        "guest-file-read",
        r#"{"handle": 999999, "count": 18446744073709551615}"#,
        "Invalid parameter type for 'count', expected: integer",
    ),
    (
        "guest-file-read",
        r#"{"handle": 999999, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-file-write", "{}", "Parameter 'handle' is missing"),
    (
        "guest-file-write",
        r#"{"handle": 999999}"#,
        "Parameter 'buf-b64' is missing",
    ),
    (
        "guest-file-write",
        r#"{"handle": 999999, "buf-b64": "QUJD"}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-write",
        r#"{"handle": 999999, "buf-b64": "Q!"}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-write",
        r#"{"handle": 999999, "buf-b64": 1}"#,
        "Invalid parameter type for 'buf-b64', expected: string",
    ),
    (
        "guest-file-write",
        r#"{"handle": 999999, "buf-b64": "QUJD", "count": "x"}"#,
        "Invalid parameter type for 'count', expected: integer",
    ),
    (
        "guest-file-write",
        r#"{"handle": 999999, "buf-b64": "", "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-file-seek", "{}", "Parameter 'handle' is missing"),
    (
        "guest-file-seek",
        r#"{"handle": 999999}"#,
        "Parameter 'offset' is missing",
    ),
    (
        "guest-file-seek",
        r#"{"handle": 999999, "offset": 0}"#,
        "Parameter 'whence' is missing",
    ),
    (
        "guest-file-seek",
        r#"{"handle": 999999, "offset": 0, "whence": 0}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-seek",
        r#"{"handle": 999999, "offset": 0, "whence": "foo"}"#,
        "Parameter 'whence' does not accept value 'foo'",
    ),
    (
        "guest-file-seek",
        r#"{"handle": 999999, "offset": 0, "whence": true}"#,
        "Invalid parameter type for 'whence', expected: GuestFileWhence",
    ),
    (
        "guest-file-seek",
        r#"{"handle": 999999, "offset": "x", "whence": 0}"#,
        "Invalid parameter type for 'offset', expected: integer",
    ),
    (
        "guest-file-seek",
        r#"{"handle": 999999, "offset": 0, "whence": 0, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-file-flush", "{}", "Parameter 'handle' is missing"),
    (
        "guest-file-flush",
        r#"{"handle": 999999}"#,
        "handle '999999' has not been found",
    ),
    (
        "guest-file-flush",
        r#"{"handle": []}"#,
        "Invalid parameter type for 'handle', expected: integer",
    ),
    (
        "guest-fsfreeze-status",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-fsfreeze-freeze",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-fsfreeze-freeze-list",
        r#"{"mountpoints": "x"}"#,
        "Invalid parameter type for 'mountpoints', expected: array",
    ),
    (
        "guest-fsfreeze-freeze-list",
        r#"{"mountpoints": [1]}"#,
        "Invalid parameter type for 'mountpoints[0]', expected: string",
    ),
    (
        "guest-fsfreeze-freeze-list",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-fsfreeze-thaw",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-fstrim",
        r#"{"minimum": "x"}"#,
        "Invalid parameter type for 'minimum', expected: integer",
    ),
    ("guest-fstrim", r#"{"x": 1}"#, "Parameter 'x' is unexpected"),
    (
        "guest-suspend-disk",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-suspend-ram",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-suspend-hybrid",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-network-get-interfaces",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-vcpus",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-set-vcpus", "{}", "Parameter 'vcpus' is missing"),
    (
        "guest-set-vcpus",
        r#"{"vcpus": "x"}"#,
        "Invalid parameter type for 'vcpus', expected: array",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [1]}"#,
        "Invalid parameter type for 'vcpus[0]', expected: object",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [{"online": true}]}"#,
        "Parameter 'vcpus[0].logical-id' is missing",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [{"logical-id": 0}]}"#,
        "Parameter 'vcpus[0].online' is missing",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [{"logical-id": "x", "online": true}]}"#,
        "Invalid parameter type for 'vcpus[0].logical-id', expected: integer",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [{"logical-id": 0, "online": true, "x": 1}]}"#,
        "Parameter 'vcpus[0].x' is unexpected",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [{"logical-id": 0, "online": true}], "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-set-vcpus",
        r#"{"vcpus": [{"logical-id": 99999, "online": true}]}"#,
        "open(\"/sys/devices/system/cpu/cpu99999/\"): No such file or directory",
    ),
    (
        "guest-get-disks",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-fsinfo",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-set-user-password",
        "{}",
        "Parameter 'username' is missing",
    ),
    (
        "guest-set-user-password",
        r#"{"username": "nobody-qga-test"}"#,
        "Parameter 'password' is missing",
    ),
    (
        "guest-set-user-password",
        r#"{"username": "nobody-qga-test", "password": "eA=="}"#,
        "Parameter 'crypted' is missing",
    ),
    (
        "guest-set-user-password",
        r#"{"username": 1, "password": "eA==", "crypted": false}"#,
        "Invalid parameter type for 'username', expected: string",
    ),
    (
        "guest-set-user-password",
        r#"{"username": "nobody-qga-test", "password": "eA==", "crypted": "x"}"#,
        "Invalid parameter type for 'crypted', expected: boolean",
    ),
    (
        "guest-set-user-password",
        r#"{"username": "nobody-qga-test", "password": "!!", "crypted": false}"#,
        "Base64 data contains invalid characters",
    ),
    (
        "guest-set-user-password",
        r#"{"username": "nobody-qga-test", "password": "eA==", "crypted": false, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-memory-blocks",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-set-memory-blocks",
        "{}",
        "Parameter 'mem-blks' is missing",
    ),
    (
        "guest-set-memory-blocks",
        r#"{"mem-blks": "x"}"#,
        "Invalid parameter type for 'mem-blks', expected: array",
    ),
    (
        "guest-set-memory-blocks",
        r#"{"mem-blks": [{"online": true}]}"#,
        "Parameter 'mem-blks[0].phys-index' is missing",
    ),
    (
        "guest-set-memory-blocks",
        r#"{"mem-blks": [{"phys-index": 0}]}"#,
        "Parameter 'mem-blks[0].online' is missing",
    ),
    (
        "guest-set-memory-blocks",
        r#"{"mem-blks": [{"phys-index": 0, "online": true, "x": 1}]}"#,
        "Parameter 'mem-blks[0].x' is unexpected",
    ),
    (
        "guest-get-memory-block-info",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    ("guest-exec-status", "{}", "Parameter 'pid' is missing"),
    (
        "guest-exec-status",
        r#"{"pid": "x"}"#,
        "Invalid parameter type for 'pid', expected: integer",
    ),
    (
        "guest-exec-status",
        r#"{"pid": 999999, "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    // README difference 13: qemu-ga 7.2 "Invalid parameter 'pid'", later
    // versions "PID ld does not exist".
    ("guest-exec-status", r#"{"pid": 0}"#, "PID 0 does not exist"),
    ("guest-exec", "{}", "Parameter 'path' is missing"),
    (
        "guest-exec",
        r#"{"path": 1}"#,
        "Invalid parameter type for 'path', expected: string",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "arg": "x"}"#,
        "Invalid parameter type for 'arg', expected: array",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "arg": [1]}"#,
        "Invalid parameter type for 'arg[0]', expected: string",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "env": "x"}"#,
        "Invalid parameter type for 'env', expected: array",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "env": [1]}"#,
        "Invalid parameter type for 'env[0]', expected: string",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "input-data": "Q!"}"#,
        "Base64 data contains invalid characters",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "input-data": 1}"#,
        "Invalid parameter type for 'input-data', expected: string",
    ),
    // QEMU >= 8.0's alternate (bool or mode); 7.2 takes a bool only
    // (README difference 14).
    (
        "guest-exec",
        r#"{"path": "/bin/true", "capture-output": "x"}"#,
        "Parameter 'capture-output' does not accept value 'x'",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "capture-output": 1}"#,
        "Invalid parameter type for 'capture-output', expected: GuestExecCaptureOutput",
    ),
    (
        "guest-exec",
        r#"{"path": "/bin/true", "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-host-name",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-users",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-timezone",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-osinfo",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-ssh-get-authorized-keys",
        "{}",
        "Parameter 'username' is missing",
    ),
    (
        "guest-ssh-get-authorized-keys",
        r#"{"username": 1}"#,
        "Invalid parameter type for 'username', expected: string",
    ),
    (
        "guest-ssh-get-authorized-keys",
        r#"{"username": "nobody-qga-test"}"#,
        "failed to lookup user 'nobody-qga-test': Success",
    ),
    (
        "guest-ssh-get-authorized-keys",
        r#"{"username": "nobody-qga-test", "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-ssh-add-authorized-keys",
        "{}",
        "Parameter 'username' is missing",
    ),
    (
        "guest-ssh-add-authorized-keys",
        r#"{"username": "nobody-qga-test"}"#,
        "Parameter 'keys' is missing",
    ),
    (
        "guest-ssh-add-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": "x"}"#,
        "Invalid parameter type for 'keys', expected: array",
    ),
    (
        "guest-ssh-add-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": [1]}"#,
        "Invalid parameter type for 'keys[0]', expected: string",
    ),
    (
        "guest-ssh-add-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": ["ssh-rsa AAAA"]}"#,
        "failed to lookup user 'nobody-qga-test': Success",
    ),
    (
        "guest-ssh-add-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": [], "reset": "x"}"#,
        "Invalid parameter type for 'reset', expected: boolean",
    ),
    (
        "guest-ssh-add-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": [], "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-ssh-remove-authorized-keys",
        "{}",
        "Parameter 'username' is missing",
    ),
    (
        "guest-ssh-remove-authorized-keys",
        r#"{"username": "nobody-qga-test"}"#,
        "Parameter 'keys' is missing",
    ),
    (
        "guest-ssh-remove-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": [1]}"#,
        "Invalid parameter type for 'keys[0]', expected: string",
    ),
    (
        "guest-ssh-remove-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": ["ssh-rsa AAAA"]}"#,
        "failed to lookup user 'nobody-qga-test': Success",
    ),
    (
        "guest-ssh-remove-authorized-keys",
        r#"{"username": "nobody-qga-test", "keys": [], "x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-diskstats",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-cpustats",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-network-get-route",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
    (
        "guest-get-load",
        r#"{"x": 1}"#,
        "Parameter 'x' is unexpected",
    ),
];

/// The names `guest-info` lists.
fn listed_commands(conn: &mut Conn) -> Vec<String> {
    ok(conn, "guest-info", "{}")["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn argument_errors_of_every_command() {
    let (_agent, mut conn, _state) = start("cmd-errors");
    for (execute, args, desc) in ERRORS {
        expect_error(&mut conn, execute, args, GENERIC, desc);
    }
    // Every command guest-info lists has error cases above.
    let listed = listed_commands(&mut conn);
    assert_eq!(listed.len(), 43);
    let covered: BTreeSet<&str> = ERRORS.iter().map(|(c, _, _)| *c).collect();
    let missing: Vec<&String> = listed
        .iter()
        .filter(|c| !covered.contains(c.as_str()))
        .collect();
    assert!(missing.is_empty(), "no error cases for {missing:?}");
    // Commands that do not exist here.
    for name in ["guest-get-devices", "nonexistent-cmd"] {
        expect_error(
            &mut conn,
            name,
            "{}",
            NOT_FOUND,
            &format!("The command {name} has not been found"),
        );
    }
}

/// A guest-exec that cannot spawn answers GLib's message wrapped as
/// qemu-ga (7.2 and current upstream, `QERR_QGA_COMMAND_FAILED`) does:
/// "Guest agent command failed, error was '<GLib message>'".
#[test]
fn exec_spawn_failure_text_matches_qemu_ga() {
    let (_agent, mut conn, _state) = start("cmd-spawn-bug");
    expect_error(
        &mut conn,
        "guest-exec",
        r#"{"path": "/bin/invalid-cmd42"}"#,
        GENERIC,
        "Guest agent command failed, error was 'Failed to execute child process \u{201c}/bin/invalid-cmd42\u{201d} (No such file or directory)'",
    );
}

fn is_list_of(v: &Value, members: &[&str]) -> bool {
    v.as_array()
        .is_some_and(|l| l.iter().all(|e| members.iter().all(|m| e.get(m).is_some())))
}

#[test]
fn harmless_commands_succeed() {
    let (_agent, mut conn, _state) = start("cmd-ok");
    assert_eq!(ok(&mut conn, "guest-sync", r#"{"id": -7}"#), -7);
    conn.sync(99); // guest-sync-delimited, again
    assert_eq!(ok(&mut conn, "guest-ping", "{}"), serde_json::json!({}));

    let info = ok(&mut conn, "guest-info", "{}");
    assert_eq!(info["version"], "10.2.0");
    for c in info["supported_commands"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let silent = name == "guest-shutdown" || name.starts_with("guest-suspend-");
        assert_eq!(c["enabled"], true, "{name}");
        assert_eq!(c["success-response"], !silent, "{name}");
    }

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let t = ok(&mut conn, "guest-get-time", "{}").as_i64().unwrap();
    let t = Duration::from_nanos(u64::try_from(t).unwrap());
    assert!(
        t.abs_diff(now) < Duration::from_secs(30),
        "{t:?} vs {now:?}"
    );

    assert_eq!(ok(&mut conn, "guest-fsfreeze-status", "{}"), "thawed");

    let ifs = ok(&mut conn, "guest-network-get-interfaces", "{}");
    let lo = ifs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .expect("lo is listed");
    assert!(lo["ip-addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["ip-address"] == "127.0.0.1"
            && a["ip-address-type"] == "ipv4"
            && a["prefix"] == 8));

    let vcpus = ok(&mut conn, "guest-get-vcpus", "{}");
    assert!(is_list_of(&vcpus, &["logical-id", "online"]), "{vcpus}");
    assert!(vcpus
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["logical-id"] == 0));
    // Changes nothing: an empty list.
    assert_eq!(ok(&mut conn, "guest-set-vcpus", r#"{"vcpus": []}"#), 0);

    let cpustats = ok(&mut conn, "guest-get-cpustats", "{}");
    assert!(
        is_list_of(&cpustats, &["cpu", "type", "user", "idle"]),
        "{cpustats}"
    );

    let disks = ok(&mut conn, "guest-get-disks", "{}");
    assert!(is_list_of(&disks, &["name", "partition"]), "{disks}");
    let stats = ok(&mut conn, "guest-get-diskstats", "{}");
    assert!(
        is_list_of(&stats, &["name", "major", "minor", "stats"]),
        "{stats}"
    );
    let fs = ok(&mut conn, "guest-get-fsinfo", "{}");
    assert!(
        is_list_of(&fs, &["name", "mountpoint", "type", "disk"]),
        "{fs}"
    );

    // Memory blocks exist only with memory hotplug support in the kernel.
    match conn.call("guest-get-memory-blocks", None).0 {
        Ok(v) => {
            let v: Value = serde_json::from_str(&v).unwrap();
            assert!(is_list_of(&v, &["phys-index", "online"]), "{v}");
            let size = ok(&mut conn, "guest-get-memory-block-info", "{}");
            assert!(size["size"].as_u64().unwrap() > 0);
        }
        Err((class, desc)) => assert_eq!(class, GENERIC, "{desc}"),
    }
    assert_eq!(
        ok(&mut conn, "guest-set-memory-blocks", r#"{"mem-blks": []}"#),
        serde_json::json!([])
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-set-memory-blocks",
            r#"{"mem-blks": [{"phys-index": 999999, "online": true}]}"#
        ),
        serde_json::json!([{"phys-index": 999999, "response": "not-found", "error-code": 2}])
    );

    let host = ok(&mut conn, "guest-get-host-name", "{}");
    let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host["host-name"], expected.trim());
    assert!(ok(&mut conn, "guest-get-users", "{}").is_array());
    let tz = ok(&mut conn, "guest-get-timezone", "{}");
    assert!(tz["offset"].is_i64(), "{tz}");
    let os = ok(&mut conn, "guest-get-osinfo", "{}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(os["kernel-release"], release.trim());
    assert_eq!(os["machine"], std::env::consts::ARCH);

    let routes = ok(&mut conn, "guest-network-get-route", "{}");
    assert!(is_list_of(&routes, &["iface", "destination"]), "{routes}");
    let load = ok(&mut conn, "guest-get-load", "{}");
    for m in ["load1m", "load5m", "load15m"] {
        assert!(load[m].as_f64().unwrap() >= 0.0, "{load}");
    }
}

/// Base64 of `bytes` (the standard alphabet, padded).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn open(conn: &mut Conn, path: &Path, mode: &str) -> i64 {
    let args = serde_json::json!({"path": path, "mode": mode}).to_string();
    ok(conn, "guest-file-open", &args).as_i64().unwrap()
}

#[test]
fn file_commands_round_trip_and_errors() {
    let (_agent, mut conn, state) = start("cmd-files");
    let dir = tests::scratch_dir("cmd-files-data");
    let path = dir.join("f");
    let h = open(&mut conn, &path, "w+");
    assert_eq!(h, 1000, "handles start at 1000");
    let text = b"hello, world\n";
    let call = |execute: &str, args: String| (execute.to_string(), args);
    let (e, a) = call(
        "guest-file-write",
        format!(r#"{{"handle": {h}, "buf-b64": "{}"}}"#, b64(text)),
    );
    assert_eq!(
        ok(&mut conn, &e, &a),
        serde_json::json!({"count": 13, "eof": false})
    );
    // Reading right after writing flushes: at the end, nothing.
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-read",
            &format!(r#"{{"handle": {h}}}"#)
        ),
        serde_json::json!({"count": 0, "buf-b64": "", "eof": true})
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-seek",
            &format!(r#"{{"handle": {h}, "offset": 7, "whence": "set"}}"#)
        ),
        serde_json::json!({"position": 7, "eof": false})
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-read",
            &format!(r#"{{"handle": {h}, "count": 5}}"#)
        ),
        serde_json::json!({"count": 5, "buf-b64": b64(b"world"), "eof": false})
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-seek",
            &format!(r#"{{"handle": {h}, "offset": -1, "whence": 2}}"#)
        ),
        serde_json::json!({"position": 12, "eof": false})
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-seek",
            &format!(r#"{{"handle": {h}, "offset": 0, "whence": "cur"}}"#)
        ),
        serde_json::json!({"position": 12, "eof": false})
    );
    // Argument errors on a real handle.
    let bad: &[(String, &str)] = &[
        (
            format!(r#"{{"handle": {h}, "count": -1}}"#),
            "value '-1' is invalid for argument count",
        ),
        (
            format!(r#"{{"handle": {h}, "count": 50331649}}"#),
            "value '50331649' is invalid for argument count",
        ),
        (
            format!(r#"{{"handle": {h}, "count": 9223372036854775807}}"#),
            "value '9223372036854775807' is invalid for argument count",
        ),
    ];
    for (args, desc) in bad {
        expect_error(&mut conn, "guest-file-read", args, GENERIC, desc);
    }
    let bad: &[(String, &str)] = &[
        (
            format!(r#"{{"handle": {h}, "buf-b64": "Q!"}}"#),
            "Base64 data contains invalid characters",
        ),
        (
            format!(r#"{{"handle": {h}, "buf-b64": "QUJD", "count": 4}}"#),
            "value '4' is invalid for argument count",
        ),
        (
            format!(r#"{{"handle": {h}, "buf-b64": "QUJD", "count": -1}}"#),
            "value '-1' is invalid for argument count",
        ),
    ];
    for (args, desc) in bad {
        expect_error(&mut conn, "guest-file-write", args, GENERIC, desc);
    }
    let bad: &[(String, &str)] = &[
        (
            format!(r#"{{"handle": {h}, "offset": 0, "whence": 5}}"#),
            "invalid whence code 5",
        ),
        (
            format!(r#"{{"handle": {h}, "offset": -100, "whence": "set"}}"#),
            "failed to seek file: Invalid argument",
        ),
    ];
    for (args, desc) in bad {
        expect_error(&mut conn, "guest-file-seek", args, GENERIC, desc);
    }
    // The maximum count is allowed; a short file gives what it has.
    ok(
        &mut conn,
        "guest-file-seek",
        &format!(r#"{{"handle": {h}, "offset": 0, "whence": 0}}"#),
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-read",
            &format!(r#"{{"handle": {h}, "count": 50331648}}"#)
        ),
        serde_json::json!({"count": 13, "buf-b64": b64(text), "eof": true})
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-flush",
            &format!(r#"{{"handle": {h}}}"#)
        ),
        serde_json::json!({})
    );
    assert_eq!(
        ok(
            &mut conn,
            "guest-file-close",
            &format!(r#"{{"handle": {h}}}"#)
        ),
        serde_json::json!({})
    );
    assert_eq!(std::fs::read(&path).unwrap(), text);
    for execute in ["guest-file-close", "guest-file-flush", "guest-file-read"] {
        expect_error(
            &mut conn,
            execute,
            &format!(r#"{{"handle": {h}}}"#),
            GENERIC,
            &format!("handle '{h}' has not been found"),
        );
    }
    // The counter is persisted in the state directory.
    let h2 = open(&mut conn, &path, "r");
    assert_eq!(h2, 1001);
    assert!(std::fs::read_to_string(state.join("qga.state"))
        .unwrap()
        .contains("1002"));
    expect_error(
        &mut conn,
        "guest-file-write",
        &format!(r#"{{"handle": {h2}, "buf-b64": "QUJD"}}"#),
        GENERIC,
        "failed to write to file: Bad file descriptor",
    );
    ok(
        &mut conn,
        "guest-file-close",
        &format!(r#"{{"handle": {h2}}}"#),
    );
    let h3 = open(&mut conn, &path, "a");
    expect_error(
        &mut conn,
        "guest-file-read",
        &format!(r#"{{"handle": {h3}}}"#),
        GENERIC,
        "failed to read file: Bad file descriptor",
    );
    ok(
        &mut conn,
        "guest-file-close",
        &format!(r#"{{"handle": {h3}}}"#),
    );
    let h4 = open(&mut conn, &dir, "r");
    expect_error(
        &mut conn,
        "guest-file-read",
        &format!(r#"{{"handle": {h4}}}"#),
        GENERIC,
        "failed to read file: Is a directory",
    );
    ok(
        &mut conn,
        "guest-file-close",
        &format!(r#"{{"handle": {h4}}}"#),
    );
    let missing = dir.join("nodir").join("f");
    expect_error(
        &mut conn,
        "guest-file-open",
        &serde_json::json!({"path": missing, "mode": "a+"}).to_string(),
        GENERIC,
        &format!(
            "failed to open file '{}' (mode: 'a+'): No such file or directory",
            missing.display()
        ),
    );
}

/// Poll guest-exec-status until the child has exited.
fn wait_exec(conn: &mut Conn, pid: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ok(conn, "guest-exec-status", &format!(r#"{{"pid": {pid}}}"#));
        if status["exited"] == true {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} did not exit: {status}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exec(conn: &mut Conn, args: Value) -> i64 {
    ok(conn, "guest-exec", &args.to_string())["pid"]
        .as_i64()
        .unwrap()
}

#[test]
fn exec_commands() {
    let (_agent, mut conn, _state) = start("cmd-exec");
    let pid = exec(
        &mut conn,
        serde_json::json!({"path": "echo", "arg": ["-n", "\" test_str \""], "capture-output": true}),
    );
    assert_eq!(
        wait_exec(&mut conn, pid),
        serde_json::json!({"exited": true, "exitcode": 0, "out-data": b64(b"\" test_str \""), "out-truncated": false})
    );
    // A finished status is given once.
    expect_error(
        &mut conn,
        "guest-exec-status",
        &format!(r#"{{"pid": {pid}}}"#),
        GENERIC,
        &format!("PID {pid} does not exist"),
    );
    let script = "cat; echo err >&2; exit 3";
    let pid = exec(
        &mut conn,
        serde_json::json!({"path": "/bin/sh", "arg": ["-c", script], "input-data": b64(b"in\n"), "capture-output": "separated"}),
    );
    assert_eq!(
        wait_exec(&mut conn, pid),
        serde_json::json!({"exited": true, "exitcode": 3, "out-data": b64(b"in\n"), "out-truncated": false,
                           "err-data": b64(b"err\n"), "err-truncated": false})
    );
    let pid = exec(
        &mut conn,
        serde_json::json!({"path": "/bin/sh", "arg": ["-c", "echo a; echo b >&2; echo c"], "capture-output": "merged"}),
    );
    assert_eq!(
        wait_exec(&mut conn, pid),
        serde_json::json!({"exited": true, "exitcode": 0, "out-data": b64(b"a\nb\nc\n"), "out-truncated": false})
    );
    let pid = exec(
        &mut conn,
        serde_json::json!({"path": "/bin/sh", "arg": ["-c", "kill -9 $$"]}),
    );
    assert_eq!(
        wait_exec(&mut conn, pid),
        serde_json::json!({"exited": true, "signal": 9})
    );
    let pid = exec(
        &mut conn,
        serde_json::json!({"path": "printenv", "arg": ["FOO"], "env": ["FOO=bar", "PATH=/usr/bin:/bin"], "capture-output": true}),
    );
    assert_eq!(wait_exec(&mut conn, pid)["out-data"], b64(b"bar\n"));
    // Spawn failures: GenericError with GLib's text in qemu-ga's wrapper.
    for (path, why) in [
        ("/bin/invalid-cmd42", "No such file or directory"),
        ("/", "Permission denied"),
    ] {
        let (class, desc) = err(
            &mut conn,
            "guest-exec",
            &serde_json::json!({"path": path}).to_string(),
        );
        assert_eq!(class, GENERIC);
        assert!(
            desc.contains(&format!(
                "Failed to execute child process \u{201c}{path}\u{201d} ({why})"
            )),
            "{desc}"
        );
        still_serves(&mut conn, path);
    }
}

/// The agent's open descriptors.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Wait (briefly) for the descriptor count to settle at `want`.
fn assert_fds(pid: u32, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count(pid) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fd_count(pid), want, "descriptors after {what}");
}

#[test]
fn handles_and_children_are_capped_and_freed() {
    let (agent, mut conn, _state) = start("cmd-limits");
    let pid = agent.pid();
    let dir = tests::scratch_dir("cmd-limits-data");
    let path = dir.join("f");
    std::fs::write(&path, b"x").unwrap();
    still_serves(&mut conn, "start");
    let baseline = fd_count(pid);
    for round in 0..2 {
        let handles: Vec<i64> = (0..256).map(|_| open(&mut conn, &path, "r")).collect();
        assert_eq!(fd_count(pid), baseline + 256);
        expect_error(
            &mut conn,
            "guest-file-open",
            &serde_json::json!({"path": path}).to_string(),
            GENERIC,
            &format!(
                "failed to open file '{}' (mode: 'r'): Too many open files",
                path.display()
            ),
        );
        for h in handles {
            ok(
                &mut conn,
                "guest-file-close",
                &format!(r#"{{"handle": {h}}}"#),
            );
        }
        assert_fds(
            pid,
            baseline,
            &format!("closing 256 handles (round {round})"),
        );
    }
    // The cap frees up: one more open and close.
    let h = open(&mut conn, &path, "r");
    ok(
        &mut conn,
        "guest-file-close",
        &format!(r#"{{"handle": {h}}}"#),
    );

    for round in 0..2 {
        let pids: Vec<i64> = (0..64)
            .map(|_| {
                exec(
                    &mut conn,
                    serde_json::json!({"path": "/bin/true", "capture-output": true}),
                )
            })
            .collect();
        let (class, desc) = err(&mut conn, "guest-exec", r#"{"path": "/bin/true"}"#);
        assert_eq!(
            (class.as_str(), desc.as_str()),
            (GENERIC, "Failed to fork (Resource temporarily unavailable)")
        );
        still_serves(&mut conn, "the 65th child");
        for p in pids {
            assert_eq!(wait_exec(&mut conn, p)["exitcode"], 0);
        }
        assert_fds(
            pid,
            baseline,
            &format!("reaping 64 children (round {round})"),
        );
    }
    let p = exec(&mut conn, serde_json::json!({"path": "/bin/true"}));
    wait_exec(&mut conn, p);
    assert_fds(pid, baseline, "the last child");
}

/// The `qapi` crate (0.15, feature `qga`): its sync `Qga` client over a
/// `UnixStream` (`&UnixStream` is `Read + Write + Clone`, which
/// `Qga::from_stream` needs), with its typed commands.
mod qapi_client {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use qapi::qga;
    use qapi::{ExecuteError, Qga};

    use super::start;

    #[test]
    fn typed_commands_through_the_qapi_crate() {
        let (agent, conn, _state) = start("cmd-qapi");
        // The agent serves one client at a time.
        drop(conn);
        let stream = UnixStream::connect(&agent.socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut qga = Qga::from_stream(&stream);
        // Its handshake: guest-sync with a value, compared on return.
        qga.guest_sync(0x1234_5678).unwrap();

        let info = qga.execute(&qga::guest_info {}).unwrap();
        assert_eq!(info.version, "10.2.0");
        assert_eq!(info.supported_commands.len(), 43);
        assert!(info
            .supported_commands
            .iter()
            .any(|c| c.name == "guest-shutdown" && !c.success_response && c.enabled));

        let os = qga.execute(&qga::guest_get_osinfo {}).unwrap();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(os.kernel_release.as_deref(), Some(release.trim()));

        let host = qga.execute(&qga::guest_get_host_name {}).unwrap();
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(host.host_name, expected.trim());

        // A file round trip.
        let dir = tests::scratch_dir("cmd-qapi-data");
        let path = dir.join("f").to_str().unwrap().to_string();
        let handle = qga
            .execute(&qga::guest_file_open {
                path: path.clone(),
                mode: Some("w+".into()),
            })
            .unwrap();
        let written = qga
            .execute(&qga::guest_file_write {
                handle,
                buf_b64: b"typed\0bytes".to_vec(),
                count: None,
            })
            .unwrap();
        assert_eq!((written.count, written.eof), (11, false));
        let pos = qga
            .execute(&qga::guest_file_seek {
                handle,
                offset: 0,
                whence: qga::GuestFileWhence::name(qga::QGASeek::set),
            })
            .unwrap();
        assert_eq!((pos.position, pos.eof), (0, false));
        let read = qga
            .execute(&qga::guest_file_read {
                handle,
                count: Some(100),
            })
            .unwrap();
        assert_eq!(
            (read.count, read.buf_b64.as_slice(), read.eof),
            (11, &b"typed\0bytes"[..], true)
        );
        let pos = qga
            .execute(&qga::guest_file_seek {
                handle,
                offset: 6,
                whence: qga::GuestFileWhence::value(0),
            })
            .unwrap();
        assert_eq!(pos.position, 6);
        qga.execute(&qga::guest_file_flush { handle }).unwrap();
        qga.execute(&qga::guest_file_close { handle }).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"typed\0bytes");

        // guest-exec and its status.
        let exec = qga
            .execute(&qga::guest_exec {
                path: "/bin/sh".into(),
                arg: Some(vec!["-c".into(), "cat; echo e >&2".into()]),
                env: None,
                input_data: Some(b"piped".to_vec()),
                capture_output: Some(qga::GuestExecCaptureOutput::flag(true)),
            })
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let status = loop {
            let s = qga
                .execute(&qga::guest_exec_status { pid: exec.pid })
                .unwrap();
            if s.exited {
                break s;
            }
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.exitcode, Some(0));
        assert_eq!(status.out_data.as_deref(), Some(&b"piped"[..]));
        assert_eq!(status.err_data.as_deref(), Some(&b"e\n"[..]));
        assert_eq!(status.out_truncated, Some(false));

        let fs = qga.execute(&qga::guest_get_fsinfo {}).unwrap();
        for f in &fs {
            assert!(!f.mountpoint.is_empty() && !f.type_.is_empty());
        }

        // An error: its class decoded, its desc kept.
        match qga.execute(&qga::guest_file_close { handle: 999_999 }) {
            Err(ExecuteError::Qapi(e)) => {
                assert_eq!(e.class, qapi::ErrorClass::GenericError);
                assert_eq!(e.desc, "handle '999999' has not been found");
            }
            other => panic!("expected a QAPI error, got {other:?}"),
        }
        // And the connection goes on.
        qga.execute(&qga::guest_ping {}).unwrap();
    }
}
