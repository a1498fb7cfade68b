#!/usr/bin/env bash
# W1 side by side: weir, DataFusion, GNU sort and DuckDB on the same 10M W1 records,
# run alternately, medians and ratios to the fastest peer printed at the end.
#
#   benches/compare/w1.sh [--count N] [--memory 256MiB] [--threads 1] [--runs 3] [--dir DIR]
#
# Builds weir in release, generates the input once, converts it once for the peers
# (Parquet for DuckDB and DataFusion, a line form for GNU sort: the key in hex, then the
# record's remaining 90 text bytes), and installs duckdb, datafusion and pyarrow in a
# virtualenv. Conversions and installs are not timed; each system's time covers reading
# its input, sorting and writing its output.
set -euo pipefail
cd "$(dirname "$0")/../.."

count=10000000 memory=256MiB threads=1 runs=3 dir=${TMPDIR:-/tmp}/weir-w1
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$dir/spill"
here=$(pwd)

cargo build --release --quiet
weir=$here/target/release/weir
venv=$dir/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet duckdb datafusion pyarrow
fi
py=$venv/bin/python
peers=$here/benches/compare/w1_peers.py

input=$dir/input.w1
if [ ! -f "$input" ] || [ "$(stat -c %s "$input")" != $((count * 100)) ]; then
  "$weir" gen sort-records --count "$count" --seed 42 --out "$input"
  rm -f "$dir/w1.parquet" "$dir/w1.lines"
fi
[ -f "$dir/w1.parquet" ] || "$py" "$peers" prepare "$input" "$dir"

sort_mem=$(echo "$memory" | sed -E 's/MiB$/M/I; s/GiB$/G/I')
results=$dir/results.jsonl
: > "$results"
for run in $(seq "$runs"); do
  echo "== run $run of $runs =="
  "$weir" sort --input "$input" --output "$dir/out.w1" --memory "$memory" --threads "$threads" \
      --spill-dir "$dir/spill" --verify | tail -n 1 | tee -a "$results"
  rm -f "$dir/out.w1"
  "$py" "$peers" datafusion "$dir/w1.parquet" "$dir/out.df.parquet" "$memory" "$threads" "$dir/spill" "$count" | tee -a "$results"
  rm -rf "$dir/out.df.parquet"
  start=$(date +%s.%N)
  if /usr/bin/time -f '%M' -o "$dir/gnu.rss" env LC_ALL=C sort -S "$sort_mem" --parallel="$threads" \
      -T "$dir/spill" -o "$dir/out.lines" "$dir/w1.lines"; then
    end=$(date +%s.%N)
    valid=$(LC_ALL=C sort -c "$dir/out.lines" 2>/dev/null && echo true || echo false)
    echo "{\"system\":\"gnu-sort\",\"wall_s\":$(echo "$end - $start" | bc),\"peak_rss_mib\":$(( $(cat "$dir/gnu.rss") / 1024 )),\"valid\":$valid,\"error\":null}" | tee -a "$results"
  else
    echo '{"system":"gnu-sort","wall_s":null,"valid":false,"error":"failed"}' | tee -a "$results"
  fi
  rm -f "$dir/out.lines"
  "$py" "$peers" duckdb "$dir/w1.parquet" "$dir/out.duck.parquet" "$memory" "$threads" "$dir/spill" "$count" | tee -a "$results"
  rm -f "$dir/out.duck.parquet"
done

"$py" - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {}
for row in rows:
    by.setdefault(row["system"], []).append(row)
table = {}
for system, runs in by.items():
    times = [r["wall_s"] for r in runs if r.get("wall_s") is not None and r.get("valid")]
    rss = [r.get("peak_rss_mib") or 0 for r in runs]
    table[system] = (statistics.median(times) if times else None, min(times) if times else None,
                     max(times) if times else None, max(rss), runs[-1].get("error"))
peers = [t[0] for s, t in table.items() if s != "weir" and t[0] is not None]
fastest = min(peers) if peers else None
print(f"{'system':<12}{'median s':>10}{'min':>8}{'max':>8}{'peak MiB':>10}{'weir/peer':>11}  error")
weir = table.get("weir", (None,))[0]
for system, (median, lo, hi, rss, error) in table.items():
    ratio = f"{weir / median:.2f}" if weir and median and system != "weir" else ""
    fmt = lambda v: f"{v:.2f}" if v is not None else "failed"
    print(f"{system:<12}{fmt(median):>10}{fmt(lo):>8}{fmt(hi):>8}{rss:>10.0f}{ratio:>11}  {error or ''}")
if weir and fastest:
    print(f"weir median / fastest peer median = {weir / fastest:.2f}")
PY
