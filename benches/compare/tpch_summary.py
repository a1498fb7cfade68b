"""Per thread count, the TPC-H queries side by side: weir's median wall, each peer's and
weir / peer, then the sum of weir's medians beside the sum of each peer's over the same
queries (those both ran validly) and the ratio of the sums.

  python tpch_summary.py RESULTS.jsonl

Only valid runs count towards a median. A cell is `failed` when no run of it was valid (the
first error is listed below the table), `-` when the system was not run.
"""

import json
import statistics
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    systems = list(dict.fromkeys(row["system"] for row in rows))
    peers = [s for s in systems if s != "weir"]
    by_threads = {}
    for row in rows:
        cell = by_threads.setdefault(row["threads"], {}).setdefault(row["query"], {})
        cell.setdefault(row["system"], []).append(row)
    order = lambda query: int(query.lstrip("Q"))
    fmt = lambda v: f"{v:.3f}" if v is not None else "failed"
    for threads, queries in by_threads.items():
        print(f"\nTPC-H, {threads} thread(s): median wall in seconds, weir / peer")
        print(f"{'query':<7}{'weir':>9}" + "".join(f"{s:>12}{'weir/' + s:>17}" for s in peers))
        medians, failures = {}, []
        for query in sorted(queries, key=order):
            medians[query] = {}
            for system, runs in queries[query].items():
                walls = [r["wall_s"] for r in runs if r.get("valid") and r.get("wall_s") is not None]
                medians[query][system] = statistics.median(walls) if walls else None
                if not walls:
                    failures.append((query, system, next((r.get("error") for r in runs
                                                          if r.get("error")), "invalid")))
            weir = medians[query].get("weir")
            line = f"{query:<7}{fmt(weir) if 'weir' in queries[query] else '-':>9}"
            for system in peers:
                if system not in queries[query]:
                    line += f"{'-':>12}{'':>17}"
                    continue
                peer = medians[query][system]
                ratio = f"{weir / peer:.2f}" if weir and peer else ""
                line += f"{fmt(peer):>12}{ratio:>17}"
            print(line)
        ran = [q for q in medians if medians[q].get("weir") is not None]
        print(f"sum of weir's medians over the {len(ran)} queries it ran: "
              f"{sum(medians[q]['weir'] for q in ran):.3f} s")
        for system in peers:
            both = [q for q in ran if medians[q].get(system) is not None]
            weir_sum = sum(medians[q]["weir"] for q in both)
            peer_sum = sum(medians[q][system] for q in both)
            missing = [q for q in ran if q not in both]
            ratio = f"{weir_sum / peer_sum:.2f}" if peer_sum else "-"
            print(f"  over the {len(both)} it and {system} ran: weir {weir_sum:.3f} s, "
                  f"{system} {peer_sum:.3f} s, weir / {system} {ratio}"
                  + (f" ({system} failed {', '.join(missing)})" if missing else ""))
        for query, system, error in failures:
            print(f"  {query} {system}: {error}")


if __name__ == "__main__":
    main()
