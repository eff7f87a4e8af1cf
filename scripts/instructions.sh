#!/usr/bin/env bash
# User-space instructions per request of the whole agent process, pipelined
# over a unix socket, counted by callgrind (scripts/instructions.py): our
# guest-agent as shipped (agent-core's `speed`), the same without `speed`
# (agent-core's bare-metal build), and Debian's qemu-ga, side by side.
# Instruction counts do not depend on the machine's load. Prints figures;
# the targets are in issue 14 (<= 5 500 and <= 2 500, no-speed within 1.2x).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends valgrind; }
cargo build -q --release -p agent-linux --bin guest-agent
cargo build -q --release -p agent-linux --bin guest-agent --no-default-features \
  --target-dir target/no-speed
agents=(guest-agent=target/release/guest-agent
        guest-agent-no-speed=target/no-speed/release/guest-agent)
python3 scripts/instructions.py "${agents[@]}"
qemu_ga=$(command -v qemu-ga || echo /usr/sbin/qemu-ga)
[ -x "$qemu_ga" ] && QGA_INSTR_REQUESTS=4000 python3 scripts/instructions.py "qemu-ga=$qemu_ga"
exit 0
