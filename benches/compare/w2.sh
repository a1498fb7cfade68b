#!/usr/bin/env bash
# W2a, W2b and W3 side by side: weir, DuckDB, DataFusion and Polars on the same TPC-H
# tables, run alternately, medians, peak RSS and ratios to DuckDB printed at the end.
#
#   benches/compare/w2.sh [--scale 1] [--memory "256MiB 64MiB"] [--workloads "w2a w2b w3"]
#                         [--threads 1] [--runs 3] [--dir DIR]
#
# Builds weir in release, generates the tables once with `weir gen tpch` (weir records)
# and once with `tpchgen-cli parquet` (the same generator, so the same rows, as Parquet for
# the peers: lineitem, and orders for W3), and installs duckdb, datafusion, polars, pyarrow and tpchgen-cli in a
# virtualenv. Generation and installs are not timed. Each system's time covers scanning
# its input files, aggregating or joining, and getting the result (weir: W2a's groups
# streamed into a checksum, W3's count and sum; the peers: fetched as an Arrow table);
# validation runs after it (w2_peers.py says what each peer's check is; weir's is a
# second, full-decoding scan: for Q1 at SF 1 against the TPC-H answer, for W3 a merge
# join of both files). Polars has no memory limit: its runs are unlimited and marked so.
set -euo pipefail
cd "$(dirname "$0")/../.."

scale=1 memories="256MiB 64MiB" workloads="w2a w2b w3" threads=1 runs=3
dir=${TMPDIR:-/tmp}/weir-w2
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --memory) memories=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir/spill"
here=$(pwd)

parquet_tables="lineitem orders"
# shellcheck source=benches/compare/tpch_setup.sh
source "$here/benches/compare/tpch_setup.sh"
peers=$here/benches/compare/w2_peers.py

results=$dir/results.jsonl
: > "$results"
for memory in $memories; do
  for run in $(seq "$runs"); do
    for workload in $workloads; do
      echo "== $workload, $memory, run $run of $runs =="
      if out=$("$weir" bench "$workload" --input "$tables" --memory "$memory" \
          --threads "$threads" --spill-dir "$dir/spill" 2>"$dir/weir.err"); then
        echo "$out" | tail -n 1 | "$py" -c 'import json,sys; r=json.loads(sys.stdin.read()); r["budget"]=sys.argv[1]; r["error"]=None; print(json.dumps(r))' "$memory" | tee -a "$results"
      else
        error=$(tail -n 1 "$dir/weir.err" | tr '"' "'")
        echo "{\"workload\":\"${workload^^}\",\"system\":\"weir\",\"budget\":\"$memory\",\"wall_s\":null,\"valid\":false,\"error\":\"$error\"}" \
          | sed 's/W2A/W2a/; s/W2B/W2b/' | tee -a "$results"
      fi
      for system in duckdb datafusion polars; do
        "$py" "$peers" "$system" "$workload" "$parquet" "$memory" "$threads" "$dir/spill" \
          | "$py" -c 'import json,sys; r=json.loads(sys.stdin.read()); r["budget"]=sys.argv[1]; print(json.dumps(r))' "$memory" \
          | tee -a "$results"
      done
    done
  done
done

"$py" "$here/benches/compare/summarize.py" "$results" workload budget
