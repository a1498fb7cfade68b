#!/usr/bin/env bash
# TPC-H Q1, Q3, Q6 and Q10 as users run them: `weir run tpch` (one worker, --slots T,
# --memory M) beside DuckDB, DataFusion and Polars at the same thread count and budget,
# run alternately; medians, peak RSS and ratios to DuckDB printed at the end.
#
#   benches/compare/tpch.sh [--scale 1] [--memory 256MiB] [--threads "1 2"]
#                           [--queries "1 3 6 10"] [--systems "duckdb datafusion polars"]
#                           [--runs 3] [--dir DIR]
#
# Builds weir in release, generates the tables once with `weir gen tpch` (weir records)
# and once with `tpchgen-cli parquet` (the same generator, so the same rows, as Parquet for
# the peers), and installs the peers and tpchgen-cli in a virtualenv. Generation and
# installs are not timed. weir's time is the job wall it prints (scans, operators,
# exchanges, the answer on worker 0), without process start and without the answer check
# that follows it; `valid` means its answer equals the reference answer tpchgen ships
# (SF 1) — a run whose answer differs is reported as failed. The peers' time is the query
# alone, result fetched as Arrow (tpch_peers.py says what each peer's check is). Polars has
# no memory limit: its runs are unlimited and marked so.
set -euo pipefail
cd "$(dirname "$0")/../.."

scale=1 memory=256MiB threadss="1 2" queries="1 3 6 10" systems="duckdb datafusion polars"
runs=3 dir=${TMPDIR:-/tmp}/weir-tpch-compare
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --threads) threadss=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --systems) systems=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir/spill"
here=$(pwd)

parquet_tables="lineitem orders customer nation"
# shellcheck source=benches/compare/tpch_setup.sh
source "$here/benches/compare/tpch_setup.sh"
peers=$here/benches/compare/tpch_peers.py

results=$dir/results.jsonl
: > "$results"
for run in $(seq "$runs"); do
  for threads in $threadss; do
    for query in $queries; do
      echo "== Q$query, $threads thread(s), $memory, run $run of $runs =="
      if out=$("$weir" run tpch --data "$tables" --scale "$scale" --query "$query" \
          --workers 1 --slots "$threads" --memory "$memory" --spill-dir "$dir/spill" 2>&1); then
        wall=$(echo "$out" | sed -n 's/^  wall \([0-9.]*\) s.*/\1/p' | head -n 1)
        rss=$(echo "$out" | sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' | head -n 1)
        valid=false
        if echo "$out" | grep -q "equals the reference answer"; then valid=true; fi
        echo "{\"query\":\"Q$query\",\"system\":\"weir\",\"budget\":\"$memory\",\"threads\":$threads,\"wall_s\":$wall,\"peak_rss_mib\":${rss:-null},\"valid\":$valid,\"error\":null}" \
          | tee -a "$results"
      else
        error=$(echo "$out" | tail -n 1 | tr '"' "'")
        echo "{\"query\":\"Q$query\",\"system\":\"weir\",\"budget\":\"$memory\",\"threads\":$threads,\"wall_s\":null,\"valid\":false,\"error\":\"$error\"}" \
          | tee -a "$results"
      fi
      for system in $systems; do
        "$py" "$peers" "$system" "$query" "$parquet" "$memory" "$threads" "$dir/spill" "$scale" \
          | tee -a "$results"
      done
    done
  done
done

"$py" "$here/benches/compare/summarize.py" "$results" query threads
