//! Hostile streams against `guest-agent -m unix-listen`: random bytes,
//! endless tokens, deep nesting, slow writers, a reader that never reads,
//! a flood of pipelined requests. After each, a reset byte and a valid
//! request must be answered, and the agent's memory must stay bounded.
//! (The long versions, e.g. 1 GiB of random bytes, are for the benchmark:
//! `cargo build --release -p agent-linux && QGA_HOSTILE_MIB=1024
//! QGA_AGENT_BIN=target/release/guest-agent cargo test -p tests --test
//! hostile -- --nocapture`.)

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tests::RunningAgent;

const FINAL: &[u8] =
    b"\xff{\"execute\":\"guest-sync\",\"arguments\":{\"id\":31337},\"id\":\"final\"}";
const FINAL_REPLY: &[u8] = b"{\"return\": 31337, \"id\": \"final\"}\n";

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The agent's peak resident memory, KiB.
fn peak_rss_kib(agent: &RunningAgent) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Send `produce`'s bytes from a thread while draining the agent's output
/// here, until the final reply arrives. Returns the output's size.
fn stream_and_drain(
    agent: &RunningAgent,
    produce: impl FnOnce(&mut UnixStream) + Send + 'static,
) -> u64 {
    let stream = UnixStream::connect(&agent.socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        produce(&mut writer);
        writer.write_all(FINAL).unwrap();
    });
    let mut reader = stream;
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while !tail.ends_with(FINAL_REPLY) {
        let n = reader.read(&mut buf).expect("agent stopped answering");
        assert!(n > 0, "agent closed the connection");
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 256);
        }
    }
    sender.join().unwrap();
    total
}

fn mib(default: usize) -> usize {
    std::env::var("QGA_HOSTILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_bytes_then_reset() {
    let agent = RunningAgent::start("hostile-random", &[]);
    let before = peak_rss_kib(&agent);
    let size = mib(16) << 20;
    let output = stream_and_drain(&agent, move |w| {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut chunk = vec![0u8; 1 << 16];
        for _ in 0..size / chunk.len() {
            rng.fill(&mut chunk);
            w.write_all(&chunk).unwrap();
        }
    });
    let after = peak_rss_kib(&agent);
    eprintln!("{} MiB of random bytes: {output} bytes of error responses, peak RSS {before} -> {after} KiB", size >> 20);
    // The request buffer (4 MiB) and reply batches (64 KiB) bound it.
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

#[test]
fn endless_tokens_and_deep_nesting_then_reset() {
    let agent = RunningAgent::start("hostile-tokens", &[]);
    let before = peak_rss_kib(&agent);
    stream_and_drain(&agent, |w| {
        // A string longer than QEMU's 64 MiB token limit, never closed.
        w.write_all(b"{\"execute\": \"").unwrap();
        let body = vec![b'a'; 1 << 20];
        for _ in 0..65 {
            w.write_all(&body).unwrap();
        }
        // An endless number.
        w.write_all(b"\xff[").unwrap();
        let digits = vec![b'7'; 1 << 20];
        for _ in 0..8 {
            w.write_all(&digits).unwrap();
        }
        // Nesting at and past the limit, many times.
        for _ in 0..100 {
            w.write_all(&[b'['; 1025]).unwrap();
            w.write_all(b"\xff").unwrap();
        }
        // Max-size request buffer overflow.
        w.write_all(b"{\"execute\":\"guest-ping\",\"arguments\":{\"x\":\"")
            .unwrap();
        for _ in 0..5 {
            w.write_all(&body).unwrap();
        }
        w.write_all(b"\"}}").unwrap();
    });
    let after = peak_rss_kib(&agent);
    eprintln!("endless tokens: peak RSS {before} -> {after} KiB");
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

#[test]
fn slow_loris_is_answered() {
    let agent = RunningAgent::start("hostile-slow", &[]);
    let mut conn = agent.connect();
    for &b in b"{\"execute\": \"guest-sync\", \"arguments\": {\"id\": 5}}" {
        conn.send(&[b]);
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(conn.answer().0, Ok("5".into()));
}

#[test]
fn a_client_that_never_reads_does_not_grow_the_agent() {
    let agent = RunningAgent::start("hostile-noread", &[]);
    let before = peak_rss_kib(&agent);
    let stream = UnixStream::connect(&agent.socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let done_w = done.clone();
    let n = 200_000;
    let sender = thread::spawn(move || {
        let batch = b"{\"execute\":\"guest-ping\"}".repeat(1000);
        for _ in 0..n / 1000 {
            writer.write_all(&batch).unwrap();
        }
        done_w.store(true, Ordering::SeqCst);
    });
    // Nobody reads: the agent blocks on its full socket and stops reading,
    // so the sender blocks too. Memory must not grow meanwhile.
    thread::sleep(Duration::from_secs(1));
    assert!(
        !done.load(Ordering::SeqCst),
        "the agent buffered everything instead of pushing back"
    );
    let stalled = peak_rss_kib(&agent);
    // Now read it all: every request answered, in order.
    let mut reader = stream;
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let want = b"{\"return\": {}}\n".len() * n;
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < want && Instant::now() < deadline {
        got += reader.read(&mut buf).unwrap();
    }
    sender.join().unwrap();
    assert_eq!(got, want);
    eprintln!("never-reading client: peak RSS {before} -> {stalled} KiB while stalled");
    assert!(stalled < before + 2 * 1024);
}

#[test]
fn a_hundred_thousand_pipelined_requests_in_order() {
    let agent = RunningAgent::start("hostile-pipeline", &[]);
    let n = 100_000;
    let stream = UnixStream::connect(&agent.socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..n {
            batch.extend_from_slice(
                format!("{{\"execute\":\"guest-sync\",\"arguments\":{{\"id\":{i}}}}}").as_bytes(),
            );
            if batch.len() > 1 << 16 {
                writer.write_all(&batch).unwrap();
                batch.clear();
            }
        }
        writer.write_all(&batch).unwrap();
    });
    let mut reader = std::io::BufReader::new(stream);
    for i in 0..n {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        assert_eq!(line, format!("{{\"return\": {i}}}\n"));
    }
    sender.join().unwrap();
}

/// Open file descriptors of the agent.
fn fd_count(agent: &RunningAgent) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))
        .unwrap()
        .count()
}

#[test]
fn reconnect_storm_leaks_nothing() {
    let agent = RunningAgent::start("hostile-storm", &[]);
    let cycles = std::env::var("QGA_STORM_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // Warm up, then take the baseline with one client connected and
    // answered, the same state as at the end of the storm.
    let mut warm = agent.connect();
    warm.sync(1);
    let (fds, rss) = (fd_count(&agent), peak_rss_kib(&agent));
    drop(warm);
    let t = Instant::now();
    for i in 0..cycles {
        let mut stream = UnixStream::connect(&agent.socket).unwrap();
        match i % 3 {
            0 => {}
            1 => stream.write_all(b"{\"execute\": \"guest-sy").unwrap(),
            _ => stream.write_all(b"\"unterminated \\\\ string ").unwrap(),
        }
    }
    // Every new client that follows the handshake gets the right answer.
    let mut conn = agent.connect();
    conn.sync(2);
    assert_eq!(conn.call("guest-ping", None).0, Ok("{}".into()));
    let (fds_after, rss_after) = (fd_count(&agent), peak_rss_kib(&agent));
    eprintln!(
        "{cycles} connect/partial/disconnect cycles in {:.1} s: fds {fds} -> {fds_after}, peak RSS {rss} -> {rss_after} KiB",
        t.elapsed().as_secs_f64()
    );
    // One connection is open now, as at the baseline.
    assert_eq!(fds_after, fds);
    assert!(rss_after < rss + 1024);
}
