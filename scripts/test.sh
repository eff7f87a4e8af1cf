#!/usr/bin/env bash
# The project's test command (README "Test it"; .ci/run calls exactly this).
# Installs what is missing, then runs every check and test:
#   - rustup targets for the bare-metal builds, and what the end-to-end
#     tests need (scripts/e2e-setup.sh: QEMU, qemu-ga, a Debian kernel),
#   - formatting and clippy (warnings are errors),
#   - the dependency policy of deny.toml (cargo-deny, from crates.io),
#   - agent-core for thumbv7em-none-eabihf and riscv64gc-unknown-none-elf
#     (with and without defmt): proves no_std and no alloc,
#   - the footprint of the agent on both targets, and its deepest stack
#     (printed),
#   - clippy for agent-baremetal's guests on their targets (riscv64,
#     x86_64), the guest images' sizes and the agent's .text in them, and
#     the guests' idle CPU and guest-ping round trip (printed, not
#     asserted),
#   - all tests of the workspace: unit, property, corpus, doc and
#     integration tests; agent-core's again without its `speed` feature.
set -euo pipefail
cd "$(dirname "$0")/.."

# agent-core's no_std targets (footprint); the guests' are riscv64 and
# x86_64-unknown-none.
targets=(thumbv7em-none-eabihf riscv64gc-unknown-none-elf)
installed=$(rustup target list --installed)
for t in "${targets[@]}" x86_64-unknown-none; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
command -v python3 >/dev/null || { apt-get update && apt-get install -y --no-install-recommends python3; }
# QEMU, qemu-ga, busybox, cpio, Debian's kernel, musl target (for the e2e tests).
bash scripts/e2e-setup.sh

echo "== fmt, clippy and docs (warnings are errors)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps --workspace
# agent-core without its `speed` feature (the workspace build enables it).
cargo clippy -p agent-core --all-targets -- -D warnings

echo "== dependency policy (deny.toml: licenses, bans, sources; advisories need GitHub)"
command -v cargo-deny >/dev/null || cargo install --locked --quiet cargo-deny --version 0.20.2
cargo deny --log-level error check bans licenses sources

echo "== agent-core on bare-metal targets (no std, no alloc)"
for t in "${targets[@]}"; do
  cargo build -q -p agent-core --target "$t"
  cargo build -q -p agent-core --target "$t" --features defmt
  cargo build -q -p agent-baremetal --example footprint --target "$t" --profile min-size
done

echo "== agent-baremetal on the guests' targets: library, guest image (feature defmt), examples"
cargo clippy -q -p agent-baremetal --features defmt --lib --bin virt-guest --examples --target riscv64gc-unknown-none-elf -- -D warnings
cargo clippy -q -p agent-baremetal --features defmt --lib --bin q35-guest --examples --target x86_64-unknown-none -- -D warnings

echo "== guest images: size, and the agent's .text in them (release, feature defmt)"
for guest in virt-guest:riscv64gc-unknown-none-elf q35-guest:x86_64-unknown-none; do
  bin=${guest%%:*} t=${guest#*:}
  cargo build -q -p agent-baremetal --features defmt --bin "$bin" --target "$t" --release
  map=$(ls -t target/"$t"/release/build/agent-baremetal-*/out/"$bin".map | head -n 1)
  python3 scripts/guest_image_size.py "target/$t/release/$bin" "$map"
done

echo "== footprint: the whole agent with core commands (opt-level z, LTO)"
files=()
for t in "${targets[@]}"; do files+=("target/$t/min-size/examples/footprint"); done
python3 scripts/elf_sizes.py "${files[@]}"
echo "== stack: the deepest Agent::feed reaches (stack painting, x86_64 host frames)"
cargo run -q --profile min-size -p agent-baremetal --example stack_depth
echo "== instructions per request (callgrind, whole process, pipelined)"
bash scripts/instructions.sh
echo "== installed size on Linux: static guest-agent against qemu-ga and its libraries"
bash scripts/binary_sizes.sh

# Each target 15 s in each configuration (default, speed): 2 min in all.
echo "== fuzz smoke run (scripts/fuzz.sh; longer campaigns: bash scripts/fuzz.sh 900)"
bash scripts/fuzz.sh "${QGA_FUZZ_SECONDS:-15}"

# One guest at a time: a polling guest takes a whole host core.
echo "== bare-metal guests: QEMU's CPU while idle, guest-ping round trip (polled vs interrupts; printed)"
cargo test -q -p tests --test baremetal_e2e -- --ignored --nocapture --test-threads=1 idle_cpu_and_round_trip 2>&1 \
  | grep -v -E '^running [0-9]+ tests?$|^test result:|^\.?$'

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# agent-core alone, without the `speed` feature that the workspace enables,
# and with `serde`.
cargo test -p agent-core 2>&1 | tee -a "$log"
status=$(( status | PIPESTATUS[0] ))
cargo test -p agent-core --features serde --lib 2>&1 | tee -a "$log"
status=$(( status | PIPESTATUS[0] ))
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
