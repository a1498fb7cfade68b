"""Medians, ranges, peak RSS and ratios to DuckDB of the JSON lines a compare script
collected, grouped by two fields.

  python summarize.py RESULTS.jsonl FIELD FIELD

Only valid runs count towards a median; failed and invalid runs are listed with the first
error.
"""

import json
import statistics
import sys


def main():
    path, first, second = sys.argv[1:4]
    rows = [json.loads(line) for line in open(path) if line.strip()]
    groups = {}
    for row in rows:
        key = (row[first], row[second])
        groups.setdefault(key, {}).setdefault(row["system"], []).append(row)
    print(f"{first:<10}{second:<10}{'system':<12}{'median s':>9}{'min':>7}{'max':>7}"
          f"{'peak MiB':>10}{'/duckdb':>9}  failures")
    fmt = lambda v: f"{v:.3f}" if v is not None else "failed"
    for (a, b), systems in groups.items():
        times = {
            system: sorted(r["wall_s"] for r in runs
                           if r.get("wall_s") is not None and r.get("valid"))
            for system, runs in systems.items()
        }
        medians = {s: statistics.median(t) if t else None for s, t in times.items()}
        duck = medians.get("duckdb")
        for system, runs in systems.items():
            spread = times[system]
            rss = max((r.get("peak_rss_mib") or 0) for r in runs)
            failures = [r.get("error") or "invalid" for r in runs if not r.get("valid")]
            median = medians[system]
            ratio = f"{median / duck:.2f}" if median and duck else ""
            note = f"{len(failures)}/{len(runs)}: {failures[0]}" if failures else ""
            print(f"{str(a):<10}{str(b):<10}{system:<12}{fmt(median):>9}"
                  f"{fmt(spread[0] if spread else None):>7}"
                  f"{fmt(spread[-1] if spread else None):>7}"
                  f"{rss:>10.0f}{ratio:>9}  {note}")
    print("polars runs without a memory limit (it has none to set); its budget is nominal.")


if __name__ == "__main__":
    main()
