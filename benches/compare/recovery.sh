#!/usr/bin/env bash
# Exactly-once recovery at full size (issue: checkpoints): Nexmark q5 and q8 on 2 worker
# processes with a checkpoint every 2 s; worker 1 killed with SIGKILL at three seeded
# points; the committed rows of each killed run must equal a failure-free run's, line for
# line (q4, a changelog whose lines depend on when watermarks came: its last line per
# category). Prints, per run, the restarts, the recovery time (failure detected to the restarted
# job's tasks running), the checkpoints and their p50/p99 duration, from the JSON line.
# (`cargo test` runs the same at a small size: cli/tests/recovery_cli.rs.)
#
#   benches/compare/recovery.sh [--events 4000000] [--rate 500000] [--interval-ms 2000]
#                               [--queries "5 8"] [--seed 42] [--dir DIR]
#                               [--alignment-timeout-ms MS]   (unaligned barriers)
set -euo pipefail
cd "$(dirname "$0")/../.."

events=4000000 rate=500000 interval=2000 queries="5 8" seed=42 unaligned=()
dir=${TMPDIR:-/tmp}/weir-recovery
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --interval-ms) interval=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --alignment-timeout-ms) unaligned=(--alignment-timeout-ms "$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p weir-cli -q
weir=$PWD/target/release/weir
rm -rf "$dir"
mkdir -p "$dir"
# The job runs events / rate seconds; kills fall between 25% and 60% of it (several
# checkpoints in, several after), from a linear congruential sequence of the seed.
run_ms=$((events * 1000 / rate))
kills=()
state=$seed
for _ in 1 2 3 4 5 6; do
  state=$(( (state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff ))
  kills+=($(( run_ms * 25 / 100 + (state >> 20) % (run_ms * 35 / 100) )))
done

# run NAME QUERY [KILL_MS]: the committed rows sorted into $dir/NAME.rows, JSON printed.
run() {
  local name=$1 q=$2 kill=${3:-}
  "$weir" run nexmark --query "$q" --events "$events" --rate "$rate" --workers 2 \
    --checkpoint-interval-ms "$interval" --checkpoint-dir "$dir/$name-chk" \
    --output "$dir/$name-out" "${unaligned[@]}" > "$dir/$name.json" 2> "$dir/$name.err" &
  local launcher=$!
  if [ -n "$kill" ]; then
    sleep "$(awk "BEGIN { print $kill / 1000 }")"
    local worker
    worker=$(pgrep -P "$launcher" | head -1 || true)
    if [ -n "$worker" ]; then kill -9 "$worker"; else echo "no worker 1 to kill" >&2; fi
  fi
  wait "$launcher" || { echo "$name failed:"; cat "$dir/$name.err"; return 1; }
  if [ "$q" = 4 ]; then
    # q4's changelog depends on when watermarks came: its last line per category.
    cat "$dir/$name-out"/part-* | awk -F, '$2 >= n[$1] { n[$1] = $2; l[$1] = $0 } END { for (c in l) print l[c] }' \
      | LC_ALL=C sort > "$dir/$name.rows"
  else
    cat "$dir/$name-out"/part-* | LC_ALL=C sort > "$dir/$name.rows"
  fi
  tail -1 "$dir/$name.json"
}

field() { grep -o "\"$1\":[^,}]*" | cut -d: -f2; }

status=0
k=0
for q in $queries; do
  json=$(run "q$q-plain" "$q")
  echo "q$q failure-free: $(wc -l < "$dir/q$q-plain.rows") rows, valid $(echo "$json" | field valid)"
  for round in 1 2 3; do
    at=${kills[$((k % 6))]}
    k=$((k + 1))
    json=$(run "q$q-kill$round" "$q" "$at") || { status=1; continue; }
    if cmp -s "$dir/q$q-plain.rows" "$dir/q$q-kill$round.rows"; then same=yes; else same=NO; status=1; fi
    from=$(cat "$dir/q$q-kill$round.err" "$dir/q$q-kill$round.json" | grep -o "from [a-z ]*[0-9]*" | tail -1 || true)
    printf 'q%s killed at %5d ms: restarts %s (%s), recovery %s ms, checkpoints after %s (p50 %s ms, p99 %s ms), rows equal: %s\n' \
      "$q" "$at" "$(echo "$json" | field restarts)" "$from" "$(echo "$json" | field recovery_ms)" \
      "$(echo "$json" | field checkpoints)" "$(echo "$json" | field checkpoint_p50_ms)" \
      "$(echo "$json" | field checkpoint_p99_ms)" "$same"
  done
done
rm -rf "$dir"
exit $status
