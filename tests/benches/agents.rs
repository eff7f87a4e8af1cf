//! Side-by-side benchmark: our `guest-agent`, Debian's `qemu-ga` and a
//! trivial line-echo server (the transport's ceiling), each on a unix
//! socket, measured in the same run. Prints a table with ratios; asserts
//! nothing (figures on a shared machine are noisy).
//!
//! ```text
//! cargo bench -p tests --bench agents
//! ```
//!
//! Figures: sequential `guest-ping` round trips per second with client and
//! server pinned to one CPU; pipelined `guest-ping` requests per second;
//! server CPU time per request under the pipelined load; latency of
//! `guest-sync-delimited` (p50/p99, all servers sampled in turns); time
//! from process start to the first answer; resident memory idle and at
//! peak; 48 MiB file reads and a write.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::thread::{sched_setaffinity, CpuSet};

const PING: &[u8] = b"{\"execute\":\"guest-ping\"}\n";
const PONG: &[u8] = b"{\"return\": {}}\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--echo-server") {
        echo_server(Path::new(&args[at + 1]));
        return;
    }
    let sequential_n = env_count("QGA_BENCH_SEQUENTIAL", 20_000);
    let pipelined_n = env_count("QGA_BENCH_PIPELINED", 200_000);
    let latency_n = env_count("QGA_BENCH_LATENCY", 5_000);

    let _ = cpus();
    let ours = build_release_agent(false).expect("host build");
    let ours_static = build_release_agent(true);
    let qemu_ga = ["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let me = std::env::current_exe().expect("own path");
    let agent_argv = |bin: &Path| {
        vec![
            bin.display().to_string(),
            "-m".into(),
            "unix-listen".into(),
            "-p".into(),
        ]
    };
    let mut servers: Vec<(&str, Vec<String>)> = vec![
        (
            "echo ceiling",
            vec![me.display().to_string(), "--echo-server".into()],
        ),
        ("guest-agent", agent_argv(&ours)),
    ];
    if let Some(bin) = &ours_static {
        servers.push(("static (musl)", agent_argv(bin)));
    }
    match &qemu_ga {
        Some(q) => servers.push(("qemu-ga", agent_argv(q))),
        None => eprintln!(
            "qemu-ga not installed (Debian package qemu-guest-agent): its column is skipped"
        ),
    }

    let names: Vec<&str> = servers.iter().map(|(n, _)| *n).collect();
    let mut results: Vec<Figures> = Vec::new();
    for (name, argv) in &servers {
        eprintln!("benchmarking {name} ...");
        results.push(measure(
            argv,
            *name == "echo ceiling",
            sequential_n,
            pipelined_n,
        ));
    }
    // guest-sync-delimited latency, all servers up and their
    // samples interleaved, so that each is compared with the echo ceiling
    // under the same machine conditions (a shared machine drifts by more
    // than the 1 µs the target allows between one server's turn and the
    // next's).
    let argvs: Vec<&[String]> = servers.iter().map(|(_, argv)| argv.as_slice()).collect();
    for (figures, (p50, p99)) in results
        .iter_mut()
        .zip(interleaved_sync_latency(&argvs, latency_n))
    {
        figures.sync_p50_us = p50;
        figures.sync_p99_us = p99;
    }
    type Metric<'m> = &'m dyn Fn(&Figures) -> Option<f64>;
    let rows: Vec<(&str, Metric<'_>)> = vec![
        ("sequential ping, round trips/s (1 CPU)", &|r| {
            Some(r.sequential_per_s)
        }),
        ("pipelined ping, requests/s", &|r| Some(r.pipelined_per_s)),
        ("server CPU per pipelined request, µs", &|r| {
            Some(r.cpu_us_per_request)
        }),
        ("guest-sync-delimited p50, µs, interleaved", &|r| {
            r.sync_p50_us
        }),
        ("guest-sync-delimited p99, µs, interleaved", &|r| {
            r.sync_p99_us
        }),
        ("start to first answer, ms", &|r| Some(r.startup_ms)),
        ("RSS idle, KiB", &|r| Some(r.rss_idle_kib)),
        ("RSS peak (ping loads), KiB", &|r| Some(r.rss_peak_kib)),
        ("guest-file-read 48 MiB, MB/s, median", &|r| {
            r.file_read_mb_s
        }),
        ("RSS peak after the 48 MiB read, KiB", &|r| {
            r.rss_read_peak_kib
        }),
        ("guest-file-write 48 MiB, one request, MB/s", &|r| {
            r.file_write_mb_s
        }),
        ("RSS peak after the 48 MiB write, KiB", &|r| {
            r.rss_write_peak_kib
        }),
    ];
    let qemu_at = names.iter().position(|n| *n == "qemu-ga");
    let ratio_of: Vec<usize> = (1..names.len()).filter(|&i| Some(i) != qemu_at).collect();

    println!();
    println!("machine: {} CPUs; {sequential_n} sequential, {pipelined_n} pipelined, {latency_n} sync requests", cpus());
    print!("{:<42}", "");
    for n in &names {
        print!("{n:>16}");
    }
    if qemu_at.is_some() {
        for &i in &ratio_of {
            print!(
                "{:>18}",
                format!("{} / qemu", names[i].split(' ').next().unwrap_or(""))
            );
        }
    }
    println!();
    for (label, metric) in rows {
        let values: Vec<Option<f64>> = results.iter().map(metric).collect();
        print!("{label:<42}");
        for v in &values {
            match v {
                Some(v) => print!("{:>16}", format_figure(*v)),
                None => print!("{:>16}", "-"),
            }
        }
        if let Some(Some(theirs)) = qemu_at.map(|q| values[q]) {
            for &i in &ratio_of {
                match values[i] {
                    Some(ours) => print!("{:>17.2}x", ours / theirs),
                    None => print!("{:>18}", "-"),
                }
            }
        }
        println!();
    }
    if let Some(ceiling) = results.first() {
        for (i, r) in results.iter().enumerate().skip(1) {
            if Some(i) != qemu_at {
                println!(
                    "{} reaches {:.0} % of the echo ceiling on sequential round trips",
                    names[i],
                    100.0 * r.sequential_per_s / ceiling.sequential_per_s
                );
            }
        }
    }
}

fn format_figure(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPUs of the machine (read once: pinning changes what the OS reports).
fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `cargo build --release` of the agent, for the host (glibc, dynamic,
/// like Debian's qemu-ga) or static (musl: the build dropped into test
/// guests; `None` when that target is not installed); its path.
fn build_release_agent(musl: bool) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let triple = "x86_64-unknown-linux-musl";
    if musl {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == triple)
            });
        if !installed {
            eprintln!("target {triple} not installed: the static build is skipped");
            return None;
        }
    }
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "agent-linux",
            "--bin",
            "guest-agent",
        ])
        .current_dir(&root);
    if musl {
        build.args(["--target", triple]);
    }
    assert!(build.status().expect("cargo build").success());
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let dir = if musl {
        target.join(triple).join("release")
    } else {
        target.join("release")
    };
    let path = dir.join("guest-agent");
    eprintln!(
        "built {} ({} bytes)",
        path.display(),
        std::fs::metadata(&path).map_or(0, |m| m.len())
    );
    Some(path)
}

/// The ceiling: answers each request line with a fixed reply line.
fn echo_server(path: &Path) {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).expect("bind");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::with_capacity(4096, stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let reply: &[u8] = if line.starts_with(b"{\"execute\":\"guest-sync-delimited\"")
                    {
                        b"\xff{\"return\": 1}\n"
                    } else {
                        PONG
                    };
                    if writer.write_all(reply).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

struct Figures {
    sequential_per_s: f64,
    pipelined_per_s: f64,
    cpu_us_per_request: f64,
    sync_p50_us: Option<f64>,
    sync_p99_us: Option<f64>,
    startup_ms: f64,
    rss_idle_kib: f64,
    rss_peak_kib: f64,
    /// guest-file-read of 48 MiB (the maximum count), MB/s.
    file_read_mb_s: Option<f64>,
    /// guest-file-write of just under 48 MiB in one request, MB/s.
    file_write_mb_s: Option<f64>,
    /// Peak RSS after the 48 MiB read, KiB.
    rss_read_peak_kib: Option<f64>,
    /// Peak RSS after the 48 MiB write as well, KiB.
    rss_write_peak_kib: Option<f64>,
}

struct Server {
    child: Child,
    socket: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(argv: &[String], tag: usize) -> (Server, Duration) {
    let dir = std::env::temp_dir().join(format!("qga-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("sock");
    let started = Instant::now();
    // Pinned to CPU 0, like the client's measuring thread.
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .args(argv)
        .arg(&socket)
        .args(if argv.iter().any(|a| a == "unix-listen") {
            vec!["-t".to_string(), dir.display().to_string()]
        } else {
            vec![]
        })
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let server = Server { child, socket };
    // Time to the first answer: connect as soon as the socket exists.
    let mut stream = loop {
        if let Ok(s) = UnixStream::connect(&server.socket) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    stream.write_all(PING).unwrap();
    read_replies(&mut stream, 1);
    (server, started.elapsed())
}

/// Read until `n` reply lines (newlines) arrived.
fn read_replies(stream: &mut UnixStream, n: usize) {
    let mut buf = [0u8; 65536];
    let mut seen = 0;
    while seen < n {
        let got = stream.read(&mut buf).expect("read reply");
        assert!(got > 0, "server closed");
        seen += buf[..got].iter().filter(|&&b| b == b'\n').count();
    }
}

fn pin_to_cpu0() {
    pin_to(0);
}

fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    if cpu < CpuSet::MAX_CPU {
        set.set(cpu);
    }
    let _ = sched_setaffinity(None, &set);
}

fn unpin() {
    let mut set = CpuSet::new();
    for cpu in 0..cpus().min(CpuSet::MAX_CPU) {
        set.set(cpu);
    }
    let _ = sched_setaffinity(None, &set);
}

/// CPU time of all of `pid`'s threads, in seconds: the nanosecond
/// `sum_exec_runtime` of `/proc/<pid>/task/*/schedstat` (utime + stime
/// count 10 ms ticks, too coarse for the ~0.15 s a fast agent spends on
/// the pipelined load), else those ticks.
fn cpu_seconds(pid: u32) -> f64 {
    let precise: Option<f64> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
                .filter_map(|line| line.split_whitespace().next()?.parse::<f64>().ok())
                .sum::<f64>()
                / 1e9
        })
        .filter(|&s| s > 0.0);
    if let Some(seconds) = precise {
        return seconds;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0 // USER_HZ
}

fn status_kib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The pid of the server itself (taskset execs it, so it is the child).
fn server_pid(server: &Server) -> u32 {
    server.child.id()
}

fn measure(argv: &[String], is_echo: bool, sequential_n: usize, pipelined_n: usize) -> Figures {
    let tag = if is_echo { 0 } else { argv[0].len() };
    let (server, startup) = start(argv, tag);
    let pid = server_pid(&server);
    std::thread::sleep(Duration::from_millis(200));
    let rss_idle_kib = status_kib(pid, "VmRSS:");

    // Sequential round trips, client and server on CPU 0.
    let mut stream = UnixStream::connect(&server.socket).unwrap();
    pin_to_cpu0();
    for _ in 0..1000 {
        stream.write_all(PING).unwrap();
        read_replies(&mut stream, 1);
    }
    let t = Instant::now();
    for _ in 0..sequential_n {
        stream.write_all(PING).unwrap();
        read_replies(&mut stream, 1);
    }
    let sequential_per_s = sequential_n as f64 / t.elapsed().as_secs_f64();

    unpin();
    drop(stream);

    // Pipelined: a writer thread floods, this thread reads.
    let stream = UnixStream::connect(&server.socket).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = stream;
    let cpu_before = cpu_seconds(pid);
    let t = Instant::now();
    let flood = std::thread::spawn(move || {
        let batch: Vec<u8> = PING.repeat(256);
        let mut sent = 0;
        while sent < pipelined_n {
            let n = (pipelined_n - sent).min(256);
            writer.write_all(&batch[..n * PING.len()]).unwrap();
            sent += n;
        }
    });
    read_replies(&mut reader, pipelined_n);
    let elapsed = t.elapsed().as_secs_f64();
    flood.join().unwrap();
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_peak_kib = status_kib(pid, "VmHWM:");
    // The agents serve one client at a time: hang up before the next.
    drop(reader);
    let transfers = (!is_echo).then(|| file_transfers(&server, pid));
    Figures {
        sequential_per_s,
        pipelined_per_s: pipelined_n as f64 / elapsed,
        cpu_us_per_request: cpu * 1e6 / pipelined_n as f64,
        // Filled in by the interleaved phase.
        sync_p50_us: None,
        sync_p99_us: None,
        startup_ms: startup.as_secs_f64() * 1e3,
        rss_idle_kib,
        rss_peak_kib,
        file_read_mb_s: transfers.map(|t| t.read_mb_s),
        rss_read_peak_kib: transfers.map(|t| t.read_peak_kib),
        file_write_mb_s: transfers.map(|t| t.write_mb_s),
        rss_write_peak_kib: transfers.map(|t| t.write_peak_kib),
    }
}

/// p50 and p99 of guest-sync-delimited round trips for each server, all
/// started at once and sampled in turns, client and servers on CPU 0.
fn interleaved_sync_latency(argvs: &[&[String]], n: usize) -> Vec<(Option<f64>, Option<f64>)> {
    let servers: Vec<Server> = argvs
        .iter()
        .enumerate()
        .map(|(i, argv)| start(argv, 100 + i).0)
        .collect();
    let mut streams: Vec<UnixStream> = servers
        .iter()
        .map(|s| UnixStream::connect(&s.socket).unwrap())
        .collect();
    pin_to_cpu0();
    // Turns of BLOCK requests per server, the first WARM of each not
    // counted: each server runs warm, as in its own turn above, and the
    // machine's drift is spread over all servers alike.
    const BLOCK: usize = 200;
    const WARM: usize = 20;
    let mut samples = vec![Vec::with_capacity(n); streams.len()];
    let mut id = 0u64;
    while samples.iter().any(|s| s.len() < n) {
        for (stream, samples) in streams.iter_mut().zip(samples.iter_mut()) {
            for k in 0..BLOCK {
                id += 1;
                let request = format!(
                    "{{\"execute\":\"guest-sync-delimited\",\"arguments\":{{\"id\":{id}}}}}\n"
                );
                let t = Instant::now();
                stream.write_all(request.as_bytes()).unwrap();
                read_replies(stream, 1);
                if k >= WARM && samples.len() < n {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
    unpin();
    drop(servers);
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            (
                s.get(s.len() / 2).copied(),
                s.get(s.len() * 99 / 100).copied(),
            )
        })
        .collect()
}

/// Send one request line, read one reply line, return it parsed.
fn call(stream: &mut UnixStream, request: &str) -> serde_json::Value {
    let mut reply = Vec::new();
    call_raw(stream, request, &mut reply);
    serde_json::from_slice(&reply).expect("JSON reply")
}

/// Send a request and read its reply line, unparsed (so that a transfer's
/// timing is the agent's and the socket's, not the client's JSON parser's).
/// The caller passes the reply buffer, so that a transfer's client can
/// keep one that has room for the largest reply (and whose pages are in
/// place) rather than spend the transfer reallocating or faulting in pages.
fn call_raw(stream: &mut UnixStream, request: &str, reply: &mut Vec<u8>) {
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    reply.clear();
    let mut buf = vec![0u8; 1 << 20];
    while !reply.ends_with(b"\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed");
        reply.extend_from_slice(&buf[..n]);
    }
}

/// The file transfers' figures.
#[derive(Clone, Copy)]
struct Transfers {
    read_mb_s: f64,
    read_peak_kib: f64,
    write_mb_s: f64,
    write_peak_kib: f64,
}

/// Data bytes of the largest guest-file-write qemu-ga accepts: its base64,
/// the rest of the request and the 64 MiB token-size limit leave this.
const LARGEST_WRITE: usize = ((64 << 20) - 1024) / 4 * 3;

/// Reads of 48 MiB timed; the median is reported.
const READ_REPEATS: usize = 5;

/// guest-file-read of 48 MiB (the median of [`READ_REPEATS`]), then guest-file-write of just under 48 MiB
/// in one request, both agents alike; the agent's peak RSS after each.
fn file_transfers(server: &Server, pid: u32) -> Transfers {
    const READ: usize = 48 << 20;
    let dir = server.socket.parent().unwrap().to_path_buf();
    let source = dir.join("read-me");
    let data = tests::pattern(READ, 0x9E37_79B9_7F4A_7C15);
    std::fs::write(&source, &data).unwrap();
    let mut stream = UnixStream::connect(&server.socket).unwrap();
    let open = |stream: &mut UnixStream, path: &Path, mode: &str| {
        let reply = call(stream, &format!("{{\"execute\":\"guest-file-open\",\"arguments\":{{\"path\":\"{}\",\"mode\":\"{mode}\"}}}}", path.display()));
        reply["return"].as_i64().expect("handle")
    };
    let handle = open(&mut stream, &source, "r");
    // The median of a few reads (one read on a shared machine is noisy),
    // with the client on the other CPU (the agent is on CPU 0; left to the
    // scheduler, the client sometimes shared it) and one reply buffer,
    // its pages touched before, for all reads.
    let mut read_times = Vec::new();
    if cpus() > 1 {
        pin_to(1);
    }
    let mut raw = vec![1u8; 66 << 20];
    for _ in 0..READ_REPEATS {
        call(
            &mut stream,
            &format!("{{\"execute\":\"guest-file-seek\",\"arguments\":{{\"handle\":{handle},\"offset\":0,\"whence\":\"set\"}}}}"),
        );
        let t = Instant::now();
        call_raw(&mut stream, &format!("{{\"execute\":\"guest-file-read\",\"arguments\":{{\"handle\":{handle},\"count\":{READ}}}}}"), &mut raw);
        read_times.push(t.elapsed().as_secs_f64());
        let reply: serde_json::Value = serde_json::from_slice(&raw).expect("JSON reply");
        assert_eq!(reply["return"]["count"].as_u64(), Some(READ as u64));
        assert!(
            reply["return"]["buf-b64"].as_str() == Some(tests::base64(&data).as_str()),
            "read data differ"
        );
    }
    read_times.sort_by(f64::total_cmp);
    let read_s = read_times[read_times.len() / 2];
    let read_peak_kib = status_kib(pid, "VmHWM:");
    call(
        &mut stream,
        &format!("{{\"execute\":\"guest-file-close\",\"arguments\":{{\"handle\":{handle}}}}}"),
    );
    unpin();
    let target = dir.join("written");
    let handle = open(&mut stream, &target, "w");
    let written = &data[..LARGEST_WRITE];
    let request = format!("{{\"execute\":\"guest-file-write\",\"arguments\":{{\"handle\":{handle},\"buf-b64\":\"{}\"}}}}", tests::base64(written));
    let t = Instant::now();
    let reply = call(&mut stream, &request);
    let write_s = t.elapsed().as_secs_f64();
    let write_peak_kib = status_kib(pid, "VmHWM:");
    assert_eq!(
        reply["return"]["count"].as_u64(),
        Some(LARGEST_WRITE as u64),
        "{reply}"
    );
    call(
        &mut stream,
        &format!("{{\"execute\":\"guest-file-close\",\"arguments\":{{\"handle\":{handle}}}}}"),
    );
    assert!(
        std::fs::read(&target).unwrap() == written,
        "written data differ"
    );
    let mb = |bytes: usize, s: f64| bytes as f64 / 1e6 / s;
    Transfers {
        read_mb_s: mb(READ, read_s),
        read_peak_kib,
        write_mb_s: mb(LARGEST_WRITE, write_s),
        write_peak_kib,
    }
}
