#!/usr/bin/env bash
# Fuzz agent-core with cargo-fuzz: every target for SECONDS (default 15) in
# each of agent-core's two configurations, one build after the other:
#   default  agent-core without features: the bare-metal build
#   speed    agent-core with `speed` (fuzz crate feature `speed`): the build
#            agent-linux ships
# so a run takes 4 targets x 2 configurations x SECONDS (2 min for the
# smoke run). Each run starts from the checked-in seeds (fuzz/seeds/<target>)
# plus whatever an earlier run, of either configuration, left in
# fuzz/corpus/<target> (not in git). A crash, timeout or OOM fails the run
# and leaves the input in fuzz/artifacts/<target>/ (make it a regression
# test).
#
#   bash scripts/fuzz.sh            # smoke run, as in the test command
#   bash scripts/fuzz.sh 900        # a campaign: 15 min per target and configuration, 2 h
#
# QGA_FUZZ_LOGS=DIR keeps each run's full libFuzzer log as DIR/<config>-<target>.log.
# QGA_FUZZ_ARGS adds libFuzzer flags, e.g. QGA_FUZZ_ARGS=-max_len=256 for
# shorter inputs and so more executions a second (fuzz/CAMPAIGN.md).
#
# The machine's toolchain is stable; cargo-fuzz needs one unstable flag
# set, which RUSTC_BOOTSTRAP=1 allows for this build only. No sanitizer:
# agent-core forbids unsafe code, so memory errors cannot occur in it;
# the fuzzers look for panics, hangs and wrong answers (the targets
# assert the oracle).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-15}
logs=${QGA_FUZZ_LOGS:-}
read -r -a extra <<<"${QGA_FUZZ_ARGS:-}"
[ -z "$logs" ] || mkdir -p "$logs"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for config in default speed; do
  features=()
  [ "$config" = default ] || features=(--features "$config")
  echo "== build fuzz targets ($config)"
  cargo fuzz build -s none "${features[@]}"
  for target in framer dispatch client recovery; do
    mkdir -p "corpus/$target"
    echo "== fuzz $target ($config) for ${seconds}s"
    log=$(mktemp)
    status=0
    cargo fuzz run -s none "${features[@]}" "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
    [ -z "$logs" ] || cp "$log" "$logs/$config-$target.log"
    if [ "$status" -ne 0 ]; then
      tail -n 60 "$log"
      rm -f "$log"
      echo "fuzz target $target ($config) failed (status $status); the input is in fuzz/artifacts/$target/"
      exit "$status"
    fi
    rm -f "$log"
  done
done
