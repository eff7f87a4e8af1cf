//! The bare-metal guest (`agent-baremetal`'s `virt-guest`) under
//! `qemu-system-riscv64 -machine virt`, with its agent port found by name
//! among two virtserialports: the sync handshake from a clean start, stale
//! input and output left by earlier clients, garbage, reconnect storms,
//! `guest-info`, `guest-get-time` and `guest-shutdown`.
//!
//! Needs `qemu-system-riscv64`, OpenSBI and the `riscv64gc-unknown-none-elf`
//! target (`bash scripts/e2e-setup.sh`).

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::baremetal::{VirtGuest, AGENT_PORT, OTHER_PORT};

/// The commands the guest serves, as `guest-info` lists them (reverse
/// registration order), with their success-response flags.
const SERVED: [(&str, bool); 6] = [
    ("guest-shutdown", false),
    ("guest-get-time", true),
    ("guest-info", true),
    ("guest-ping", true),
    ("guest-sync", true),
    ("guest-sync-delimited", true),
];

fn err(class: &str, desc: &str) -> Result<String, (String, String)> {
    Err((class.into(), desc.into()))
}

#[test]
fn baremetal_e2e_handshake_info_time_and_shutdown() {
    let mut guest = VirtGuest::boot("handshake");
    let mut conn = guest.connect();
    conn.sync(0x0b0a_7001);
    let first_response = guest.started.elapsed();
    println!("boot to first response: {first_response:?}");

    assert_eq!(conn.call("guest-ping", None), (Ok("{}".into()), None));
    assert_eq!(
        conn.call("guest-sync", Some(r#"{"id": -7}"#)),
        (Ok("-7".into()), None)
    );

    let (info, _) = conn.call("guest-info", None);
    let info: serde_json::Value = serde_json::from_str(&info.unwrap()).unwrap();
    let listed: Vec<(&str, bool)> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["enabled"], true);
            (
                c["name"].as_str().unwrap(),
                c["success-response"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, SERVED);

    // guest-get-time: an int, ns since the epoch, from the RTC (QEMU
    // seeds it from the host clock).
    let (time, _) = conn.call("guest-get-time", None);
    let guest_ns: i128 = time
        .unwrap()
        .parse()
        .expect("guest-get-time returns an int");
    let host_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!(
        (guest_ns - host_ns).abs() < 60_000_000_000,
        "guest time {guest_ns} vs host {host_ns}"
    );
    assert_eq!(
        conn.call("guest-get-time", Some(r#"{"utc": true}"#)).0,
        err("GenericError", "Parameter 'utc' is unexpected")
    );

    // Round trips.
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        assert_eq!(conn.call("guest-ping", None).0, Ok("{}".into()));
    }
    println!("guest-ping round trip: {:?}", t.elapsed() / rounds);

    // guest-shutdown's argument checks, as qemu-ga makes them.
    assert_eq!(
        conn.call("guest-shutdown", Some(r#"{"mode": "off"}"#)).0,
        err(
            "GenericError",
            "mode is invalid (valid values are: halt|powerdown|reboot"
        )
    );
    assert_eq!(
        conn.call("guest-shutdown", Some(r#"{"mode": 1}"#)).0,
        err(
            "GenericError",
            "Invalid parameter type for 'mode', expected: string"
        )
    );
    assert_eq!(
        conn.call("guest-shutdown", Some(r#"{"mode": "halt", "x": 1}"#))
            .0,
        err("GenericError", "Parameter 'x' is unexpected")
    );
    assert!(
        guest.is_running(),
        "a rejected guest-shutdown must not stop the guest"
    );

    // The agent's port was picked by name, with another port present.
    let log = guest.log();
    assert!(log.contains(&format!("\"{OTHER_PORT}\"")), "{log}");
    assert!(log.contains(&format!("\"{AGENT_PORT}\"")), "{log}");

    // No success response; QEMU ends with status 0.
    conn.send(br#"{"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}"#);
    let status = guest.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "QEMU did not exit cleanly after guest-shutdown: {status:?}\n{}",
        guest.log()
    );
    let leftover = conn.read_for(Duration::from_millis(100));
    assert!(
        !leftover.contains(&b'{'),
        "guest-shutdown answered: {:?}",
        String::from_utf8_lossy(&leftover)
    );
}

#[test]
fn baremetal_e2e_partial_request_is_cleared_by_the_reset_byte() {
    let guest = VirtGuest::boot("partial");
    // Inside a string, then outside one (where a newline would not reset).
    for (round, partial) in [
        &br#"{"execute":"guest-pi"#[..],
        br#"{"execute":"guest-ping""#,
    ]
    .into_iter()
    .enumerate()
    {
        {
            let mut first = guest.stream();
            first.write_all(partial).unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut second = guest.connect();
        second.sync(100 + round as i64);
        assert_eq!(second.call("guest-ping", None), (Ok("{}".into()), None));
        assert_eq!(
            second.call("guest-sync", Some(r#"{"id": 5}"#)).0,
            Ok("5".into())
        );
    }
}

#[test]
fn baremetal_e2e_unread_output_is_skipped_via_the_sentinel() {
    let guest = VirtGuest::boot("unread");
    {
        let mut first = guest.stream();
        // Requests whose answers are never read, some in flight when the
        // client leaves.
        for id in 0..50 {
            write!(first, "{{\"execute\": \"guest-info\", \"id\": {id}}}").unwrap();
        }
        first.write_all(br#"{"execute": "guest-ping"}"#).unwrap();
    }
    let mut second = guest.connect();
    second.sync(0x5e_47_1e);
    assert_eq!(second.call("guest-ping", None), (Ok("{}".into()), None));
    let (answer, id) = second.call("guest-sync", Some(r#"{"id": 77}"#));
    assert_eq!((answer, id), (Ok("77".into()), None));
    // QEMU serves one client at a time: the next waits for this one to go.
    drop(second);

    // A stale answer produced while nobody listens does not reach the next
    // client ahead of its sync reply either.
    {
        let mut third = guest.stream();
        third
            .write_all(br#"{"execute": "guest-ping", "id": "stale"}"#)
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut fourth = guest.connect();
    fourth.sync(4);
    assert_eq!(fourth.call("guest-ping", None), (Ok("{}".into()), None));
}

#[test]
fn baremetal_e2e_garbage_and_reconnect_storms_do_not_wedge_it() {
    let mut guest = VirtGuest::boot("garbage");
    // Garbage: invalid UTF-8, control bytes, unbalanced brackets, a deep
    // nest, a long unterminated string, then a sync on the same connection.
    let mut conn = guest.connect();
    conn.send(b"\xc3\x28 \x00\x01 }}]] {\"a\":");
    conn.send(&[b'['; 2000]);
    conn.send(b"\"");
    conn.send(&[b'x'; 20000]);
    conn.send(b"\n\x80\xfe");
    conn.sync(1);
    assert_eq!(conn.call("guest-ping", None), (Ok("{}".into()), None));
    drop(conn);

    // A host that connects and disconnects in a loop, sometimes leaving
    // bytes behind.
    let mut seed = 0x2545_f491_u32;
    for round in 0..40u32 {
        let mut stream = guest.stream();
        match round % 4 {
            0 => {}
            1 => stream.write_all(br#"{"execute": "guest-ping"}"#).unwrap(),
            2 => stream.write_all(br#"{"execute": ["#).unwrap(),
            _ => {
                let noise: Vec<u8> = (0..256)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect();
                stream.write_all(&noise).unwrap();
            }
        }
        if round % 8 == 7 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(guest.is_running(), "the guest died:\n{}", guest.log());

    let mut conn = guest.connect();
    conn.sync(2);
    assert_eq!(conn.call("guest-ping", None), (Ok("{}".into()), None));
    assert_eq!(
        conn.call("guest-sync", Some(r#"{"id": 3}"#)).0,
        Ok("3".into())
    );
    conn.send(br#"{"execute": "guest-shutdown"}"#);
    let status = guest.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "QEMU did not exit cleanly: {status:?}\n{}",
        guest.log()
    );
}
