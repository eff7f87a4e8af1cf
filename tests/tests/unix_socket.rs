//! `guest-agent -m unix-listen` driven over its socket by agent-core's
//! client: the sync handshake, the core commands, policy options, errors,
//! and reconnection.

use std::time::Duration;

use tests::RunningAgent;

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
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let names: Vec<&str> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // qemu-ga lists commands in reverse registration order.
    assert_eq!(
        names,
        [
            "guest-info",
            "guest-ping",
            "guest-sync",
            "guest-sync-delimited"
        ]
    );
    assert!(info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["enabled"] == true && c["success-response"] == true));
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
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "guest-sync-delimited\nguest-sync\nguest-ping\nguest-info\n"
    );
    let out = std::process::Command::new(tests::guest_agent_bin())
        .args(["-m", "unix-listen"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must specify a path for this channel"));
}
