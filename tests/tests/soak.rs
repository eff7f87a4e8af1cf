//! Soak: one connection to the release `guest-agent -m unix-listen`, a
//! million mixed requests, pipelined in batches. Every answer must come
//! back in order, with its id, and with the right shape (no errors); the
//! agent's descriptor count after the run must equal the count after the
//! warm-up. Resident memory and descriptors are sampled every tenth of the
//! run and printed as a table; memory is not asserted (figures, not
//! behaviour).
//!
//! ```text
//! cargo test -p tests --release --test soak -- --ignored --nocapture
//! QGA_SOAK_REQUESTS=20000 cargo test -p tests --release --test soak -- --ignored --nocapture
//! ```
//!
//! The mix repeats a cycle of 16 rounds of the five getters
//! (`guest-info`, `guest-get-osinfo`, `guest-get-fsinfo`,
//! `guest-network-get-interfaces`, `guest-get-users`: 80 requests), five
//! file chains (`guest-file-open`, `-read`, `-close` of a small file: 15)
//! and one exec chain (`guest-exec` of `/bin/true`, output captured every
//! other time, then `guest-exec-status` until it has exited: 2 or more):
//! about 80 % getters, 15 % file, 2 % exec, so about 10 000 processes per
//! million requests. A follow-up request (read after open, status after
//! exec) goes into the next batch that is sent after its predecessor's
//! answer. The count includes every request; exec-status polls that find
//! the child still running add to it, so the total sent can end a few
//! above the target, and is printed. The agent's state directory is on
//! tmpfs (`/dev/shm`) where there is one: each guest-file-open fsyncs
//! `qga.state` first, which on a disk would make the run a disk benchmark.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::RunningAgent;

/// Requests per batch; two batches are in flight at a time (one being
/// answered while the next is queued), far below the socket buffers.
const BATCH: usize = 200;
const DEPTH: usize = 2;
const CONTENT: &[u8] = b"soak test file: a small one\n";

#[derive(Clone, Copy, Debug)]
enum Step {
    Info,
    OsInfo,
    FsInfo,
    Interfaces,
    Users,
    Open,
    Read(i64),
    Close(i64),
    Exec(bool),
    Status(i64),
}

impl Step {
    /// Requests of the chain this step starts, itself included (an exec
    /// chain's minimum).
    fn chain_len(self) -> usize {
        match self {
            Step::Open => 3,
            Step::Exec(_) => 2,
            _ => 1,
        }
    }
}

/// One cycle of the mix (see the module documentation).
fn cycle() -> Vec<Step> {
    let mut steps = Vec::new();
    for round in 0..16 {
        steps.extend([
            Step::Info,
            Step::OsInfo,
            Step::FsInfo,
            Step::Interfaces,
            Step::Users,
        ]);
        if round % 3 == 0 {
            steps.push(Step::Open);
        }
        if round == 15 {
            steps.push(Step::Exec(false));
        }
    }
    steps
}

fn request(step: Step, id: u64, file: &str) -> String {
    let (execute, args) = match step {
        Step::Info => ("guest-info", None),
        Step::OsInfo => ("guest-get-osinfo", None),
        Step::FsInfo => ("guest-get-fsinfo", None),
        Step::Interfaces => ("guest-network-get-interfaces", None),
        Step::Users => ("guest-get-users", None),
        Step::Open => ("guest-file-open", Some(format!("{{\"path\":{file}}}"))),
        Step::Read(h) => ("guest-file-read", Some(format!("{{\"handle\":{h}}}"))),
        Step::Close(h) => ("guest-file-close", Some(format!("{{\"handle\":{h}}}"))),
        Step::Exec(capture) => (
            "guest-exec",
            Some(format!(
                "{{\"path\":\"/bin/true\",\"capture-output\":{capture}}}"
            )),
        ),
        Step::Status(pid) => ("guest-exec-status", Some(format!("{{\"pid\":{pid}}}"))),
    };
    match args {
        Some(a) => format!("{{\"execute\":\"{execute}\",\"arguments\":{a},\"id\":{id}}}\n"),
        None => format!("{{\"execute\":\"{execute}\",\"id\":{id}}}\n"),
    }
}

/// Check an answer's shape; the follow-up request, if any.
fn check(step: Step, id: u64, line: &[u8], b64: &str) -> Option<Step> {
    let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
        panic!(
            "answer to {step:?} is not JSON ({e}): {}",
            String::from_utf8_lossy(line)
        )
    });
    assert_eq!(v["id"], id, "answer out of order: {v}");
    let r = v
        .get("return")
        .unwrap_or_else(|| panic!("{step:?} (id {id}) failed: {v}"));
    let objects_with = |r: &Value, key: &str| {
        r.as_array()
            .is_some_and(|a| a.iter().all(|e| e.get(key).is_some()))
    };
    let shaped = match step {
        Step::Info => {
            r["version"].is_string()
                && r["supported_commands"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "guest-ping"))
        }
        Step::OsInfo => r["kernel-release"].is_string() && r["machine"].is_string(),
        Step::FsInfo => objects_with(r, "mountpoint"),
        Step::Interfaces => {
            objects_with(r, "name")
                && r.as_array()
                    .is_some_and(|a| a.iter().any(|i| i["name"] == "lo"))
        }
        Step::Users => objects_with(r, "user"),
        Step::Open => return Some(Step::Read(r.as_i64().expect("a handle"))),
        Step::Read(h) => {
            assert!(
                r["count"] == CONTENT.len() && r["buf-b64"] == b64 && r["eof"] == true,
                "read of handle {h}: {v}"
            );
            return Some(Step::Close(h));
        }
        Step::Close(_) => r.as_object().is_some_and(|o| o.is_empty()),
        Step::Exec(_) => return Some(Step::Status(r["pid"].as_i64().expect("a pid"))),
        Step::Status(pid) => match r["exited"].as_bool() {
            Some(false) => return Some(Step::Status(pid)),
            Some(true) => r["exitcode"] == 0,
            None => false,
        },
    };
    assert!(shaped, "unexpected answer to {step:?}: {v}");
    None
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// The driver: one connection, batches of requests, answers checked.
struct Soak {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    file: String,
    b64: String,
    mix: Vec<Step>,
    next_in_mix: usize,
    next_id: u64,
    /// Follow-up requests waiting for the next batch.
    ready: VecDeque<Step>,
    /// Sent and not yet answered, in order.
    in_flight: VecDeque<(u64, Step)>,
    /// Sizes of the batches in flight.
    batches: VecDeque<usize>,
    /// Follow-ups still owed by started chains (at least).
    owed: usize,
    sent: usize,
    answered: usize,
    execs: usize,
    counts: [usize; 10],
}

impl Soak {
    fn new(agent: &RunningAgent, file: &std::path::Path) -> Soak {
        let stream = UnixStream::connect(&agent.socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Soak {
            reader: BufReader::with_capacity(1 << 16, stream.try_clone().unwrap()),
            writer: stream,
            file: serde_json::to_string(file.to_str().unwrap()).unwrap(),
            b64: tests::base64(CONTENT),
            mix: cycle(),
            next_in_mix: 0,
            next_id: 1,
            ready: VecDeque::new(),
            in_flight: VecDeque::new(),
            batches: VecDeque::new(),
            owed: 0,
            sent: 0,
            answered: 0,
            execs: 0,
            counts: [0; 10],
        }
    }

    /// The next fresh chain that fits in `limit` requests.
    fn fresh(&mut self, limit: usize) -> Option<Step> {
        let room = limit.saturating_sub(self.sent + self.owed);
        if room == 0 {
            return None;
        }
        let mut step = self.mix[self.next_in_mix % self.mix.len()];
        self.next_in_mix += 1;
        if let Step::Exec(_) = step {
            // Output captured every other time.
            self.execs += 1;
            step = Step::Exec(self.execs.is_multiple_of(2));
        }
        if step.chain_len() <= room {
            Some(step)
        } else {
            Some(Step::Users)
        }
    }

    fn send_batch(&mut self, limit: usize) -> bool {
        let mut text = String::new();
        let mut n = 0;
        while n < BATCH {
            let step = match self.ready.pop_front() {
                Some(s) => {
                    self.owed = self.owed.saturating_sub(1);
                    s
                }
                None => match self.fresh(limit) {
                    Some(s) => {
                        self.owed += s.chain_len() - 1;
                        s
                    }
                    None => break,
                },
            };
            let id = self.next_id;
            self.next_id += 1;
            text.push_str(&request(step, id, &self.file));
            self.in_flight.push_back((id, step));
            self.sent += 1;
            n += 1;
        }
        if n == 0 {
            return false;
        }
        self.writer.write_all(text.as_bytes()).expect("send");
        self.batches.push_back(n);
        true
    }

    fn answer_batch(&mut self) {
        let n = self.batches.pop_front().expect("a batch in flight");
        let mut line = Vec::new();
        for _ in 0..n {
            line.clear();
            self.reader
                .read_until(b'\n', &mut line)
                .expect("an answer (timed out?)");
            assert!(line.ends_with(b"\n"), "agent closed the connection");
            let (id, step) = self.in_flight.pop_front().unwrap();
            self.counts[kind(step)] += 1;
            if let Some(next) = check(step, id, &line, &self.b64) {
                // A repeated exec-status poll is owed on top of the plan.
                if matches!((step, next), (Step::Status(_), Step::Status(_))) {
                    self.owed += 1;
                }
                self.ready.push_back(next);
            }
            self.answered += 1;
        }
    }

    /// Run until `limit` requests in total were sent and answered, calling
    /// `sample` after each batch.
    fn run(&mut self, limit: usize, mut sample: impl FnMut(&Soak)) {
        loop {
            while self.batches.len() < DEPTH && self.send_batch(limit) {}
            if self.batches.is_empty() {
                break;
            }
            self.answer_batch();
            sample(self);
        }
        assert!(self.in_flight.is_empty() && self.ready.is_empty());
        assert_eq!(self.owed, 0);
    }
}

const KINDS: [&str; 10] = [
    "guest-info",
    "guest-get-osinfo",
    "guest-get-fsinfo",
    "guest-network-get-interfaces",
    "guest-get-users",
    "guest-file-open",
    "guest-file-read",
    "guest-file-close",
    "guest-exec",
    "guest-exec-status",
];

fn kind(step: Step) -> usize {
    match step {
        Step::Info => 0,
        Step::OsInfo => 1,
        Step::FsInfo => 2,
        Step::Interfaces => 3,
        Step::Users => 4,
        Step::Open => 5,
        Step::Read(_) => 6,
        Step::Close(_) => 7,
        Step::Exec(_) => 8,
        Step::Status(_) => 9,
    }
}

struct Sample {
    requests: usize,
    seconds: f64,
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
}

#[test]
#[ignore = "a long run: cargo test -p tests --release --test soak -- --ignored --nocapture"]
fn a_million_mixed_requests_on_one_connection() {
    let total: usize = std::env::var("QGA_SOAK_REQUESTS")
        .ok()
        .map(|v| v.parse().expect("QGA_SOAK_REQUESTS: a count"))
        .unwrap_or(1_000_000);
    let every = (total / 10).max(1);
    let dir = tests::scratch_dir("soak-data");
    let file = dir.join("small.txt");
    std::fs::write(&file, CONTENT).unwrap();
    // The state directory on tmpfs when there is one: every
    // guest-file-open persists the handle counter to `<statedir>/qga.state`
    // with an fsync first (as qemu-ga does), which took 7.5 ms on this
    // machine's ext4 disk: 60 000 opens would spend 7.5 minutes waiting
    // for the disk. The soak is about the agent, not the disk.
    let shm = std::path::Path::new("/dev/shm");
    let state = if shm.is_dir() {
        let state = shm.join(format!("qga-soak-{}", std::process::id()));
        std::fs::create_dir_all(&state).unwrap();
        state
    } else {
        tests::scratch_dir("soak-state")
    };
    let agent = RunningAgent::start_bin(
        tests::guest_agent_release_bin(),
        "soak",
        &["-t", state.to_str().unwrap()],
    );
    let pid = agent.pid();
    let mut soak = Soak::new(&agent, &file);

    // Warm-up: two cycles of the mix, every chain finished.
    let warm = 2 * 100;
    soak.run(warm, |_| {});
    let warmed = soak.sent;
    let fds_warm = fd_count(pid);
    let mut samples = vec![Sample {
        requests: 0,
        seconds: 0.0,
        rss_kib: status_kib(pid, "VmRSS:"),
        hwm_kib: status_kib(pid, "VmHWM:"),
        fds: fds_warm,
    }];
    soak.counts = [0; 10];

    let started = Instant::now();
    let mut next_sample = every;
    soak.run(warmed + total, |s| {
        let done = s.answered - warmed;
        if done >= next_sample {
            next_sample += every;
            let sample = Sample {
                requests: done,
                seconds: started.elapsed().as_secs_f64(),
                rss_kib: status_kib(pid, "VmRSS:"),
                hwm_kib: status_kib(pid, "VmHWM:"),
                fds: fd_count(pid),
            };
            eprintln!(
                "soak: {} requests, {:.1} s, VmRSS {} KiB, {} fds",
                sample.requests, sample.seconds, sample.rss_kib, sample.fds
            );
            samples.push(sample);
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let done = soak.answered - warmed;

    // Every handle is closed and every child reaped: the descriptors come
    // back to the warm-up count (the last child's are freed as its status
    // is reported, so a short wait at most).
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count(pid) != fds_warm && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let fds_end = fd_count(pid);
    samples.push(Sample {
        requests: done,
        seconds: elapsed,
        rss_kib: status_kib(pid, "VmRSS:"),
        hwm_kib: status_kib(pid, "VmHWM:"),
        fds: fds_end,
    });

    println!();
    println!(
        "soak: {done} requests ({warmed} warm-up before) on one connection in {elapsed:.1} s, {:.0} requests/s",
        done as f64 / elapsed
    );
    for (name, n) in KINDS.iter().zip(soak.counts) {
        println!(
            "  {name:<30} {n:>9} ({:.1} %)",
            100.0 * n as f64 / done as f64
        );
    }
    println!(
        "{:>10} {:>9} {:>12} {:>12} {:>5}",
        "requests", "seconds", "VmRSS KiB", "VmHWM KiB", "fds"
    );
    for s in &samples {
        println!(
            "{:>10} {:>9.1} {:>12} {:>12} {:>5}",
            s.requests, s.seconds, s.rss_kib, s.hwm_kib, s.fds
        );
    }
    assert!(done >= total, "only {done} of {total} requests were sent");
    assert_eq!(
        fds_end, fds_warm,
        "the agent's descriptors after the run differ from after the warm-up"
    );
    // Still serving after all that.
    drop(soak);
    let mut conn = agent.connect();
    conn.sync(1);
    assert_eq!(conn.call("guest-ping", None).0, Ok("{}".into()));
    drop(agent);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_dir_all(&dir);
}
