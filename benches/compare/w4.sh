#!/usr/bin/env bash
# W4 beside the wire: weir's keyed shuffle across 2 worker processes on loopback, and
# iperf3's single-stream loopback bandwidth measured in the same session, run alternately.
#
#   benches/compare/w4.sh [--records N] [--large-records N] [--runs 3]
#
# Prints, per run and as medians: weir's records/s with 16-byte records, weir's bytes/s
# with 1 KiB records, iperf3's bytes/s, and weir's 1 KiB bytes/s as a share of iperf3's.
# Half of the shuffle's records stay in their worker (its own sink reads them over a local
# channel), so the TCP link carries half the bytes counted; both figures are printed.
# Needs iperf3 (Debian: apt-get install iperf3).
set -euo pipefail
cd "$(dirname "$0")/../.."

records=50000000 large=5000000 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --large-records) large=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v iperf3 >/dev/null || { echo "w4.sh: iperf3 is not installed" >&2; exit 2; }
cargo build --release --quiet
weir=target/release/weir
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

small=() big=() wire=() remote=()
port=$((20000 + RANDOM % 20000))
for run in $(seq "$runs"); do
  line=$($weir bench shuffle --workers 2 --records "$records" 2>/dev/null | tail -1)
  echo "run $run weir 16 B:   $line"
  small+=("$(echo "$line" | field records_per_s)")
  line=$($weir bench shuffle --workers 2 --records "$large" --record-size 1024 2>/dev/null | tail -1)
  echo "run $run weir 1 KiB:  $line"
  big+=("$(echo "$line" | field bytes_per_s)")
  wall=$(echo "$line" | field wall_s)
  remote+=("$(echo "$line" | field remote_bytes | awk -v w="$wall" '{print $1 / w}')")
  iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
  sleep 0.3
  bits=$(iperf3 -c 127.0.0.1 -p "$port" -t 3 -J | "${PYTHON:-python3}" -c \
    'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
  wait
  echo "run $run iperf3:      $(awk -v b="$bits" 'BEGIN {printf "%.0f bytes/s\n", b / 8}')"
  wire+=("$(awk -v b="$bits" 'BEGIN {print b / 8}')")
done

s=$(printf '%s\n' "${small[@]}" | median)
b=$(printf '%s\n' "${big[@]}" | median)
r=$(printf '%s\n' "${remote[@]}" | median)
w=$(printf '%s\n' "${wire[@]}" | median)
awk -v s="$s" -v b="$b" -v r="$r" -v w="$w" 'BEGIN {
  printf "median weir 16 B records:   %.1f M records/s\n", s / 1e6
  printf "median weir 1 KiB records:  %.2f GB/s of records (%.2f GB/s over TCP)\n", b / 1e9, r / 1e9
  printf "median iperf3 single stream: %.2f GB/s\n", w / 1e9
  printf "weir 1 KiB / iperf3:         %.0f%% (records), %.0f%% (TCP bytes)\n", 100 * b / w, 100 * r / w
}'
