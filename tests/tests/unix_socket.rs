//! `guest-agent -m unix-listen` driven over its socket by agent-core's
//! client: the sync handshake, the core commands, policy options, errors,
//! and reconnection.

use std::time::Duration;

use tests::RunningAgent;

#[test]
fn guest_info_version_is_overridable() {
    let agent = RunningAgent::start("version", &["--guest-info-version", "7.2.0"]);
    let mut conn = agent.connect();
    conn.sync(7);
    let (info, _) = conn.call("guest-info", None);
    let info: serde_json::Value = serde_json::from_str(&info.unwrap()).unwrap();
    assert_eq!(info["version"], "7.2.0");
}

#[test]
fn handshake_and_core_commands() {
    let agent = RunningAgent::start("core", &[]);
    let mut conn = agent.connect();
    conn.sync(0x5eed_1234);
    assert_eq!(conn.call("guest-ping", None), (Ok("{}".into()), None));
    assert_eq!(
        conn.call("guest-sync", Some(r#"{"id": -42}"#)),
        (Ok("-42".into()), None)
    );
    let (info, _) = conn.call("guest-info", None);
    let info: serde_json::Value = serde_json::from_str(&info.unwrap()).unwrap();
    assert_eq!(info["version"], "10.2.0");
    let names: Vec<&str> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // qemu-ga lists commands in reverse registration order (its schema's):
    // the same order `-b help` prints forwards.
    let help = std::process::Command::new(tests::guest_agent_bin())
        .args(["-b", "help"])
        .output()
        .unwrap();
    let mut registered: Vec<String> = String::from_utf8_lossy(&help.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        registered[..7],
        [
            "guest-sync-delimited",
            "guest-sync",
            "guest-ping",
            "guest-get-time",
            "guest-set-time",
            "guest-info",
            "guest-shutdown"
        ]
    );
    assert_eq!(
        registered.len(),
        43,
        "a Linux qemu-ga 10.x registers 43 commands"
    );
    registered.reverse();
    assert_eq!(names, registered);
    // All enabled; only shutdown and the suspends send no success response.
    for c in info["supported_commands"].as_array().unwrap() {
        assert_eq!(c["enabled"], true);
        let silent = c["name"] == "guest-shutdown"
            || c["name"].as_str().unwrap().starts_with("guest-suspend-");
        assert_eq!(c["success-response"], !silent, "{}", c["name"]);
    }
}

#[test]
fn errors_have_qemu_classes_and_texts() {
    let agent = RunningAgent::start("errors", &[]);
    let mut conn = agent.connect();
    conn.sync(7);
    let err = |class: &str, desc: &str| Err((class.to_string(), desc.to_string()));
    assert_eq!(
        conn.call("guest-nope", None).0,
        err(
            "CommandNotFound",
            "The command guest-nope has not been found"
        )
    );
    assert_eq!(
        conn.call("guest-ping", Some(r#"{"foo": 42}"#)).0,
        err("GenericError", "Parameter 'foo' is unexpected")
    );
    assert_eq!(
        conn.call("guest-sync", Some("{}")).0,
        err("GenericError", "Parameter 'id' is missing")
    );
    assert_eq!(
        conn.call("guest-sync", Some(r#"{"id": 9223372036854775808}"#))
            .0,
        err(
            "GenericError",
            "Invalid parameter type for 'id', expected: integer"
        )
    );
    conn.send(br#"{"exec-oob": "guest-ping", "id": {"b": [1.0], "a": 'x'}}"#);
    assert_eq!(
        conn.answer(),
        (
            err("GenericError", "QMP input member 'exec-oob' is unexpected"),
            Some(r#"{"a": "x", "b": [1]}"#.into())
        )
    );
}

#[test]
fn block_and_allow_lists() {
    let agent = RunningAgent::start("block", &["-b", "guest-ping,guest-sync"]);
    let mut conn = agent.connect();
    conn.sync(1);
    let (answer, _) = conn.call("guest-ping", None);
    assert_eq!(
        answer.unwrap_err().1,
        "Command guest-ping has been disabled: the command is not allowed"
    );
    let (info, _) = conn.call("guest-info", None);
    let info: serde_json::Value = serde_json::from_str(&info.unwrap()).unwrap();
    let ping = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "guest-ping")
        .unwrap()
        .clone();
    assert_eq!(ping["enabled"], false);
    drop(conn);

    let agent = RunningAgent::start("allow", &["-a", "guest-sync-delimited,guest-ping"]);
    let mut conn = agent.connect();
    conn.sync(2);
    assert_eq!(conn.call("guest-ping", None).0, Ok("{}".into()));
    assert!(conn
        .call("guest-info", None)
        .0
        .unwrap_err()
        .1
        .contains("has been disabled"));
}

#[test]
fn reset_byte_recovers_a_poisoned_parser_and_reconnect_starts_clean() {
    let agent = RunningAgent::start("reset", &[]);
    // A partial request in a connection is poison only for that connection.
    let mut conn = agent.connect();
    conn.send(br#"{"execute":"guest-pi"#);
    conn.send(b"\xff{\"execute\":\"guest-ping\",\"id\":1}");
    let got = conn.read_for(Duration::from_millis(300));
    assert_eq!(
        got,
        b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray '\\\"guest-pi\\uFFFD'\"}}\n\
          {\"return\": {}, \"id\": 1}\n"
    );
    conn.send(br#"{"execute":"guest-ping""#);
    drop(conn);
    // The next client finds a clean parser: its plain request works.
    let mut conn = agent.connect();
    conn.send(b"{\"execute\":\"guest-ping\",\"id\":2}");
    assert_eq!(
        conn.read_for(Duration::from_millis(300)),
        b"{\"return\": {}, \"id\": 2}\n"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let agent = RunningAgent::start("pipeline", &[]);
    let mut conn = agent.connect();
    conn.sync(3);
    let mut batch = Vec::new();
    for i in 0..2000 {
        batch.extend_from_slice(
            format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{i}}}}}").as_bytes(),
        );
    }
    conn.send(&batch);
    for i in 0..2000 {
        assert_eq!(conn.answer().0, Ok(i.to_string()));
    }
}

#[test]
fn command_line() {
    let out = std::process::Command::new(tests::guest_agent_bin())
        .arg("-V")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("guest-agent "));
    let out = std::process::Command::new(tests::guest_agent_bin())
        .args(["-b", "help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .starts_with("guest-sync-delimited\nguest-sync\nguest-ping\n"));
    let out = std::process::Command::new(tests::guest_agent_bin())
        .args(["-m", "unix-listen"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must specify a path for this channel"));
}

#[test]
fn unknown_options_are_refused() {
    let out = std::process::Command::new(tests::guest_agent_bin())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Unknown option"));
}

/// QEMU's /qga/config test: `QGA_CONF=... qemu-ga -D` prints the config.
#[test]
fn dump_conf_of_qemus_test_config() {
    let dir = tests::scratch_dir("config");
    let conf = dir.join("test-qga-config");
    std::fs::write(
        &conf,
        "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\n\
         pidfile=/var/foo/qemu-ga.pid\nstatedir=/var/state\nverbose=true\nblock-rpcs=guest-ping;guest-get-time\n",
    )
    .unwrap();
    let out = std::process::Command::new(tests::guest_agent_bin())
        .arg("-D")
        .env("QGA_CONF", &conf)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What Debian's qemu-ga 7.2 prints for the same file.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[general]\ndaemon=false\nmethod=virtio-serial\npath=/path/to/org.qemu.guest_agent.0\npidfile=/var/foo/qemu-ga.pid\n\
         statedir=/var/state\nverbose=true\nretry-path=false\nblock-rpcs=guest-ping;guest-get-time\n"
    );
}

#[test]
fn daemon_writes_its_pid_file_and_exits_cleanly_on_sigterm() {
    let dir = tests::scratch_dir("daemon");
    let socket = dir.join("qga.sock");
    let pidfile = dir.join("qga.pid");
    let daemon = |socket: &std::path::Path| {
        std::process::Command::new(tests::guest_agent_bin())
            .args(["-d", "-m", "unix-listen", "-p"])
            .arg(socket)
            .arg("-f")
            .arg(&pidfile)
            .status()
            .unwrap()
    };
    assert!(
        daemon(&socket).success(),
        "the parent returns once the daemon runs"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(pidfile.exists() && socket.exists()) {
        assert!(std::time::Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut conn = tests::Conn::new(std::os::unix::net::UnixStream::connect(&socket).unwrap());
    conn.sync(11);
    assert_eq!(conn.call("guest-ping", None).0, Ok("{}".into()));
    // A second daemon with the same pid file cannot take it over.
    assert!(daemon(&dir.join("other.sock")).success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pidfile.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "pid file not removed on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn client_subcommand_talks_to_the_agent() {
    let agent = RunningAgent::start("client", &[]);
    let run = |args: &[&str]| {
        std::process::Command::new(tests::guest_agent_bin())
            .arg("client")
            .arg("--socket")
            .arg(&agent.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["guest-info"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["supported_commands"].as_array().unwrap().len(), 43);
    let out = run(&["guest-sync", r#"{"id": 99}"#]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "99");
    let out = run(&[r#"{"execute": "guest-ping"}"#]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{}");
    let out = run(&["guest-nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "guest-agent client: CommandNotFound: The command guest-nope has not been found"
    );
    let out = run(&["--no-reset", "guest-ping"]);
    assert!(out.status.success());
    // Nobody listening: a clear failure, status 2.
    let out = std::process::Command::new(tests::guest_agent_bin())
        .args(["client", "--socket", "/nonexistent/qga.sock", "guest-ping"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
