#!/usr/bin/env bash
# Nexmark answers checked by another engine: `weir gen nexmark` writes N events as CSV,
# `weir run nexmark --query Q --output DIR` writes weir's rows (2 workers), and DuckDB runs
# nexmark_queries/qQ.sql over the CSV; the two row sets must be equal (nexmark_check.py).
# Then each query's throughput, as `weir run nexmark` prints it, without --output.
#
#   benches/compare/nexmark.sh [--events 1000000] [--queries "0 1 2 3 4 5 7 8"] [--workers 2]
#                              [--dir DIR] [--python PYTHON_WITH_DUCKDB]
set -euo pipefail
cd "$(dirname "$0")/../.."

events=1000000 queries="0 1 2 3 4 5 7 8" workers=2 dir=${TMPDIR:-/tmp}/weir-nexmark-compare python=""
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p weir-cli -q
weir=target/release/weir
mkdir -p "$dir"
if [ -z "$python" ]; then
  python="$dir/venv/bin/python"
  [ -x "$python" ] || { python3 -m venv "$dir/venv" && "$dir/venv/bin/pip" -q install duckdb; }
fi

"$weir" gen nexmark --events "$events" --out "$dir/events.csv"
status=0
for q in $queries; do
  rm -rf "$dir/q$q"
  "$weir" run nexmark --query "$q" --events "$events" --workers "$workers" --output "$dir/q$q" \
    --no-verify > /dev/null
  "$python" benches/compare/nexmark_check.py "$dir/events.csv" "$q" "$dir/q$q" || status=1
done
for q in $queries; do
  "$weir" run nexmark --query "$q" --events "$events" --workers "$workers" --ceiling | tail -1
done
exit $status
