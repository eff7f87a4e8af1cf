#!/usr/bin/env bash
# Fuzz agent-core with cargo-fuzz: every target for SECONDS (default 30),
# starting from the checked-in seeds (fuzz/seeds/<target>) plus whatever an
# earlier run left in fuzz/corpus/<target>. A crash fails the run and
# leaves the input in fuzz/artifacts/<target>/ (make it a regression test).
#
#   bash scripts/fuzz.sh            # smoke run, as in the test command
#   bash scripts/fuzz.sh 3600       # a longer campaign
#
# The machine's toolchain is stable; cargo-fuzz needs one unstable flag
# set, which RUSTC_BOOTSTRAP=1 allows for this build only. No sanitizer:
# agent-core forbids unsafe code, so memory errors cannot occur in it;
# the fuzzers look for panics, hangs and wrong answers (the targets
# assert the oracle).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
for target in framer dispatch client recovery; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${seconds}s"
  log=$(mktemp)
  status=0
  cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    rm -f "$log"
    echo "fuzz target $target failed (status $status); the input is in fuzz/artifacts/$target/"
    exit "$status"
  fi
  rm -f "$log"
done
