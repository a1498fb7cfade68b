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

cargo build --release --quiet
weir=${CARGO_TARGET_DIR:-$here/target}/release/weir
venv=$dir/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import duckdb, datafusion, polars, pyarrow' 2>/dev/null \
    || [ ! -x "$venv/bin/tpchgen-cli" ]; then
  "$venv/bin/pip" install --quiet duckdb datafusion polars pyarrow tpchgen-cli
fi
py=$venv/bin/python
peers=$here/benches/compare/w2_peers.py

tables=$dir/tpch-sf$scale
[ -f "$tables/lineitem" ] || "$weir" gen tpch --scale "$scale" --out "$tables"
parquet=$dir/parquet-sf$scale
for table in lineitem orders; do
  if [ ! -f "$parquet/$table.parquet" ]; then
    "$venv/bin/tpchgen-cli" parquet -s "$scale" --tables "$table" --output-dir "$parquet"
  fi
done

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

"$py" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for row in rows:
    groups.setdefault((row["workload"], row["budget"]), {}).setdefault(row["system"], []).append(row)
print(f"{'workload':<9}{'budget':<9}{'system':<12}{'median s':>9}{'min':>7}{'max':>7}"
      f"{'peak MiB':>10}{'/duckdb':>9}  failures")
for (workload, budget), systems in groups.items():
    medians = {}
    for system, runs in systems.items():
        times = [r["wall_s"] for r in runs if r.get("wall_s") is not None and r.get("valid")]
        medians[system] = statistics.median(times) if times else None
    duck = medians.get("duckdb")
    for system, runs in systems.items():
        times = sorted(r["wall_s"] for r in runs if r.get("wall_s") is not None and r.get("valid"))
        rss = max((r.get("peak_rss_mib") or 0) for r in runs)
        failures = [r.get("error") or "invalid" for r in runs if not r.get("valid")]
        fmt = lambda v: f"{v:.2f}" if v is not None else "failed"
        median = medians[system]
        ratio = f"{median / duck:.2f}" if median and duck else ""
        note = f"{len(failures)}/{len(runs)}: {failures[0]}" if failures else ""
        print(f"{workload:<9}{budget:<9}{system:<12}{fmt(median):>9}"
              f"{fmt(times[0] if times else None):>7}{fmt(times[-1] if times else None):>7}"
              f"{rss:>10.0f}{ratio:>9}  {note}")
print("polars runs without a memory limit (it has none to set); its budget column is nominal.")
PY
