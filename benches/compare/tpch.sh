#!/usr/bin/env bash
# The 22 TPC-H queries as users run them: `weir run tpch` (one worker, --slots T,
# --memory M) beside DuckDB, DataFusion and Polars at the same thread count and budget,
# run alternately; medians, peak RSS and ratios to DuckDB printed at the end, then per
# thread count a table of the queries (weir, each peer, weir / peer) and the sum of weir's
# medians beside the sum of each peer's over the same queries.
#
#   benches/compare/tpch.sh [--scale 1] [--memory 256MiB] [--threads "1 2"]
#                           [--queries "1 2 ... 22" | all] [--systems "duckdb datafusion polars"]
#                           [--runs 3] [--timeout 600] [--dir DIR]
#
# Builds weir in release, generates the tables once with `weir gen tpch` (weir records)
# and once with `tpchgen-cli parquet` (the same generator, so the same rows, as Parquet for
# the peers), and installs the peers and tpchgen-cli in a virtualenv. Generation and
# installs are not timed. weir's time is the job wall it prints (scans, operators,
# exchanges, the answer on worker 0), without process start and without the answer check
# that follows it; `valid` means its answer equals the reference answer tpchgen ships
# (SF 1) — a run whose answer differs is reported as failed. A query weir does not run yet
# (it lists the ones it runs when asked for --query 23) is recorded as such for weir, not
# run, and still run by the peers. The peers' time is the query alone, result fetched as
# Arrow; their SQL is tpch_queries/qNN.sql (tpch_peers.py says what each peer's check is
# and which queries a peer could not run). A query a peer fails, or any run that takes
# longer than --timeout seconds or crashes, is recorded as failed and the benchmark goes
# on. Polars has no memory limit: its runs are unlimited and marked so.
set -euo pipefail
cd "$(dirname "$0")/../.."

scale=1 memory=256MiB threadss="1 2" queries=all systems="duckdb datafusion polars"
runs=3 timeout=600 dir=${TMPDIR:-/tmp}/weir-tpch-compare
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --threads) threadss=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$queries" = all ]; then queries=$(seq -s ' ' 22); fi
mkdir -p "$dir/spill"
here=$(pwd)

parquet_tables="lineitem orders customer nation region supplier part partsupp"
# shellcheck source=benches/compare/tpch_setup.sh
source "$here/benches/compare/tpch_setup.sh"
peers=$here/benches/compare/tpch_peers.py

# The queries weir runs, from its answer to one it has not: "weir runs TPC-H queries 1, 3,
# 6, ... (or all)". If the message changes, every query is tried.
weir_has=$("$weir" run tpch --query 23 2>&1 | sed -n 's/.*TPC-H queries \([0-9, ]*\).*/\1/p' \
  | tr -d ',' || true)
echo "weir runs TPC-H queries: ${weir_has:-(unknown: trying all)}"
has() { [ -z "$weir_has" ] || [[ " $weir_has " == *" $1 "* ]]; }

results=$dir/results.jsonl
: > "$results"
json_failure() { # system query threads budget error
  echo "{\"query\":\"Q$2\",\"system\":\"$1\",\"budget\":\"$4\",\"threads\":$3,\"wall_s\":null,\"peak_rss_mib\":null,\"valid\":false,\"error\":\"$5\"}"
}
for run in $(seq "$runs"); do
  for threads in $threadss; do
    for query in $queries; do
      echo "== Q$query, $threads thread(s), $memory, run $run of $runs =="
      if ! has "$query"; then
        json_failure weir "$query" "$threads" "$memory" "weir does not run Q$query" \
          | tee -a "$results"
      elif out=$(timeout "$timeout" "$weir" run tpch --data "$tables" --scale "$scale" \
          --query "$query" --workers 1 --slots "$threads" --memory "$memory" \
          --spill-dir "$dir/spill" 2>&1); then
        wall=$(echo "$out" | sed -n 's/^  wall \([0-9.]*\) s.*/\1/p' | head -n 1)
        rss=$(echo "$out" | sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' | head -n 1)
        valid=false
        if echo "$out" | grep -q "equals the reference answer"; then valid=true; fi
        echo "{\"query\":\"Q$query\",\"system\":\"weir\",\"budget\":\"$memory\",\"threads\":$threads,\"wall_s\":${wall:-null},\"peak_rss_mib\":${rss:-null},\"valid\":$valid,\"error\":null}" \
          | tee -a "$results"
      else
        status=$?
        error=$(echo "$out" | tail -n 1 | tr -d '\\' | tr '"' "'")
        if [ "$status" = 124 ]; then error="timed out after ${timeout} s"; fi
        json_failure weir "$query" "$threads" "$memory" "$error" | tee -a "$results"
      fi
      for system in $systems; do
        line=$(timeout "$timeout" "$py" "$peers" "$system" "$query" "$parquet" \
          "$memory" "$threads" "$dir/spill" "$scale") && status=0 || status=$?
        if [ "$status" != 0 ] || [ -z "$line" ]; then
          error="exited with status $status"
          if [ "$status" = 124 ]; then error="timed out after ${timeout} s"; fi
          line=$(json_failure "$system" "$query" "$threads" "$memory" "$error")
        fi
        echo "$line" | tee -a "$results"
      done
    done
  done
done

"$py" "$here/benches/compare/summarize.py" "$results" query threads
"$py" "$here/benches/compare/tpch_summary.py" "$results"
