#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60) on nightly, starting
# from the checked-in seeds, and prints each target's executions. Says "skipped" and
# succeeds when nightly or cargo-fuzz is missing; fails when a target finds something
# (the input is in fuzz/artifacts/TARGET/).
#
#   scripts/fuzz.sh 600          # ten minutes per target
#   JOBS=2 scripts/fuzz.sh 600   # two targets at a time
set -euo pipefail
seconds="${1:-60}"
jobs="${JOBS:-1}"
cd "$(dirname "$0")/../fuzz"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: skipped (no nightly toolchain: rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped (cargo-fuzz missing: cargo install cargo-fuzz)"
  exit 0
fi

targets=$(cargo +nightly fuzz list)
# Build once, before any timing starts.
cargo +nightly fuzz build --release >/dev/null

run() {
  local target="$1" log
  mkdir -p "corpus/$target"
  if [ -d "seeds/$target" ]; then cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true; fi
  log="$(mktemp)"
  if cargo +nightly fuzz run --release "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 >"$log" 2>&1; then
    local execs
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    printf '%-26s %12s executions in %ss, no finding\n' "$target" "$execs" "$seconds"
    rm -f "$log"
  else
    printf '%-26s FINDING: see %s and fuzz/artifacts/%s/\n' "$target" "$log" "$target"
    return 1
  fi
}

status=0
running=0
for target in $targets; do
  run "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
exit "$status"
