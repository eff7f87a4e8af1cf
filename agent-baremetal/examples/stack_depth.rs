//! The deepest stack `Agent::feed` uses, measured by stack painting on the
//! host: a thread's stack is filled with a pattern below the measuring
//! frame, the agent is fed a workload that reaches every deep path, and
//! the lowest word that no longer holds the pattern marks the high-water
//! point. An empty workload measured the same way is the baseline.
//!
//! ```text
//! cargo run --release -p agent-baremetal --example stack_depth
//! cargo run --profile min-size -p agent-baremetal --example stack_depth
//! ```
//!
//! The workload: every input of the qemu-ga corpus
//! (`tests/fixtures/qemu-ga-7.2.jsonl`: lexical errors, parser and envelope
//! errors, ids of every type, limits), plus ids that reach the writer's
//! deepest paths (objects nested past the reorder depth, 1000 nested
//! arrays, extreme floats, long escaped strings), `guest-info`, and a
//! request larger than the buffer. Host frames are 64-bit x86 frames; the
//! figure is an upper bound for 32-bit targets, whose frames are smaller.
//! The agent itself is the caller's (here on the heap): its size is
//! printed beside the stack figure.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
mod host {
    use agent_core::{Agent, CoreCommands, Policy};
    use std::hint::black_box;

    const CORPUS: &str = include_str!("../../tests/fixtures/qemu-ga-7.2.jsonl");
    /// Bytes painted below the measuring frame.
    const PAINT: usize = 256 * 1024;
    const PATTERN: u64 = 0xA5A5_5A5A_C3C3_3C3C;

    /// Fill `PAINT` bytes of stack below the caller's frame with the
    /// pattern, and return the lowest painted address.
    #[inline(never)]
    fn paint() -> usize {
        let mut area = [PATTERN; PAINT / 8];
        black_box(&mut area);
        area.as_ptr() as usize
    }

    /// The lowest address in `bottom..top` that lost the pattern.
    #[inline(never)]
    fn lowest_touched(bottom: usize, top: usize) -> usize {
        let mut addr = bottom;
        while addr < top {
            // SAFETY: `bottom..top` lies inside this thread's stack, which
            // is mapped and was written by `paint`; volatile reads of dead
            // stack words are how stack painting works.
            let word = unsafe { core::ptr::read_volatile(addr as *const u64) };
            if word != PATTERN {
                return addr;
            }
            addr += 8;
        }
        top
    }

    /// The agent under test: the caller's memory, not `feed`'s stack
    /// (`size_of::<Agent>()` is printed on its own).
    type TestAgent = Agent<'static, Vec<u8>, CoreCommands>;

    /// Stack bytes used below this frame while `work` runs.
    #[inline(never)]
    fn measure(
        work: fn(&mut TestAgent, &mut Vec<u8>, &[Vec<u8>]),
        agent: &mut TestAgent,
        out: &mut Vec<u8>,
        inputs: &[Vec<u8>],
    ) -> usize {
        let bottom = paint();
        let here = 0u8;
        let top = black_box(&here) as *const u8 as usize;
        work(black_box(agent), black_box(out), black_box(inputs));
        top - lowest_touched(bottom, top)
    }

    fn nothing(agent: &mut TestAgent, out: &mut Vec<u8>, inputs: &[Vec<u8>]) {
        black_box((agent, out, inputs));
    }

    #[inline(never)]
    fn feed_all(agent: &mut TestAgent, out: &mut Vec<u8>, inputs: &[Vec<u8>]) {
        for input in inputs {
            let _ = agent.feed(input, out);
            agent.reset();
            out.clear();
        }
        black_box(&out);
    }

    fn unhex(s: &str) -> Vec<u8> {
        s.as_bytes()
            .chunks(2)
            .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect()
    }

    /// The value of the string member `key` in one corpus line.
    fn member<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        let start = line.find(&format!("\"{key}\": \""))? + key.len() + 5;
        let len = line.get(start..)?.find('"')?;
        line.get(start..start + len)
    }

    /// The corpus inputs and the extra deep cases, with their names.
    fn workload() -> (Vec<String>, Vec<Vec<u8>>) {
        let (mut names, mut inputs): (Vec<String>, Vec<Vec<u8>>) = CORPUS
            .lines()
            .filter_map(|line| {
                Some((
                    member(line, "name")?.to_string(),
                    unhex(member(line, "input_hex")?),
                ))
            })
            .unzip();
        assert!(inputs.len() >= 200, "corpus not found");
        let ping = |id: &str| format!("{{\"execute\":\"guest-ping\",\"id\":{id}}}").into_bytes();
        let mut deep_object = "1.5e300".to_string();
        for level in 0..12 {
            deep_object =
                format!("{{\"z{level}\": {deep_object}, \"a\": -0.1, \"m\": [2.5e-308]}}");
        }
        inputs.push(ping(&deep_object));
        inputs.push(ping(&format!("{}1{}", "[".repeat(1000), "]".repeat(1000))));
        inputs.push(ping("[1e400, -1.7976931348623157e308, 5e-324, 0.1, 18446744073709551616, -9223372036854775809]"));
        inputs.push(ping(&format!(
            "\"{}\"",
            "\\u00e9\\ud83d\\ude00\\n\\\"\\u0000".repeat(500)
        )));
        inputs.push(b"{\"execute\":\"guest-info\"}".to_vec());
        inputs.push(b"{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":-1}}".to_vec());
        inputs.push(b"{\"execute\":\"guest-sync\",\"arguments\":{\"id\":1,\"x\":[{}]}}".to_vec());
        inputs.push(ping(&format!("\"{}\"", "x".repeat(100_000))));
        let corpus = names.len();
        names.extend((corpus..inputs.len()).map(|i| format!("extra-{}", i - corpus)));
        (names, inputs)
    }

    pub fn main() {
        let (names, inputs) = workload();
        let n = inputs.len();
        let (base, used, mut each) = std::thread::Builder::new()
            .stack_size(4 << 20)
            .spawn(move || {
                let mut agent = Box::new(Agent::new(
                    vec![0u8; 64 * 1024],
                    CoreCommands::new(),
                    Policy::new(),
                ));
                let mut out = Vec::with_capacity(1 << 20);
                let base = measure(nothing, &mut agent, &mut out, &inputs);
                let used = measure(feed_all, &mut agent, &mut out, &inputs);
                let each: Vec<usize> = inputs
                    .chunks(1)
                    .map(|one| measure(feed_all, &mut agent, &mut out, one).saturating_sub(base))
                    .collect();
                (base, used, each.into_iter().zip(names).collect::<Vec<_>>())
            })
            .expect("spawn")
            .join()
            .expect("join");
        println!(
            "feed stack high-water: {} bytes over {n} inputs (measured {used}, baseline {base}); \
             size_of::<Agent>() = {} bytes besides its buffer",
            used.saturating_sub(base),
            std::mem::size_of::<Agent<'static, &'static mut [u8], CoreCommands>>()
        );
        each.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        for (bytes, name) in each.iter().take(5) {
            println!("  {bytes:>6} bytes  {name}");
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    host::main();
}

#[cfg(target_os = "none")]
#[panic_handler]
#[allow(clippy::empty_loop)] // nothing to do but stop: no OS to sleep with
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
