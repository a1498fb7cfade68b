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
peers=$here/benches/compare/tpch_peers.py

tables=$dir/tpch-sf$scale
[ -f "$tables/weir-tables.manifest" ] || "$weir" gen tpch --scale "$scale" --out "$tables"
parquet=$dir/parquet-sf$scale
for table in lineitem orders customer nation; do
  if [ ! -f "$parquet/$table.parquet" ]; then
    "$venv/bin/tpchgen-cli" parquet -s "$scale" --tables "$table" --output-dir "$parquet"
  fi
done

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

"$py" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for row in rows:
    groups.setdefault((row["query"], row["threads"]), {}).setdefault(row["system"], []).append(row)
print(f"{'query':<7}{'threads':<9}{'system':<12}{'median s':>9}{'min':>7}{'max':>7}"
      f"{'peak MiB':>10}{'/duckdb':>9}  failures")
for (query, threads), systems in groups.items():
    medians = {}
    for system, runs in systems.items():
        times = [r["wall_s"] for r in runs if r.get("wall_s") is not None and r.get("valid")]
        medians[system] = statistics.median(times) if times else None
    duck = medians.get("duckdb")
    for system, runs in systems.items():
        times = sorted(r["wall_s"] for r in runs if r.get("wall_s") is not None and r.get("valid"))
        rss = max((r.get("peak_rss_mib") or 0) for r in runs)
        failures = [r.get("error") or "invalid" for r in runs if not r.get("valid")]
        fmt = lambda v: f"{v:.3f}" if v is not None else "failed"
        median = medians[system]
        ratio = f"{median / duck:.2f}" if median and duck else ""
        note = f"{len(failures)}/{len(runs)}: {failures[0]}" if failures else ""
        print(f"{query:<7}{threads:<9}{system:<12}{fmt(median):>9}"
              f"{fmt(times[0] if times else None):>7}{fmt(times[-1] if times else None):>7}"
              f"{rss:>10.0f}{ratio:>9}  {note}")
print("polars runs without a memory limit (it has none to set); its budget column is nominal.")
PY
