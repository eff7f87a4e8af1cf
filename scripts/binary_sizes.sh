#!/usr/bin/env bash
# The installed footprint of each agent on Linux: our static guest-agent
# (musl, everything in one file) against Debian's qemu-ga plus the shared
# libraries it loads (from ldd). Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p agent-linux --bin guest-agent --target x86_64-unknown-linux-musl
ours=target/x86_64-unknown-linux-musl/release/guest-agent
qemu_ga=$(command -v qemu-ga || echo /usr/sbin/qemu-ga)
size() { stat -L -c %s "$1"; }
printf '%-44s %12s\n' "file" "bytes"
printf '%-44s %12s\n' "guest-agent (static, musl)" "$(size "$ours")"
total=0
for f in "$qemu_ga" $(ldd "$qemu_ga" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }'); do
  s=$(size "$f")
  total=$((total + s))
  printf '%-44s %12s\n' "  $(basename "$f")" "$s"
done
printf '%-44s %12s\n' "qemu-ga + shared libraries" "$total"
awk -v a="$(size "$ours")" -v b="$total" 'BEGIN { printf "%-44s %11.2fx\n", "ours / qemu-ga", a / b }'
