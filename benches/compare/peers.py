"""What the peer scripts share: sessions of DuckDB, DataFusion and Polars under a budget,
and the one-line JSON result of a run.

  duckdb(memory, threads, spill_dir)          a connection with the limits set
  datafusion(memory, threads, spill_dir)      a SessionContext with a fair spill pool
  polars_threads(threads)                     POLARS_MAX_THREADS, before polars is imported
  fetch_duckdb(relation)                      the relation's Arrow table (DuckDB 1 and 2)
  result(fields, run, check)                  runs `run()` -> (wall_s, table), checks it
                                              with `check(table)`, prints one JSON line
"""

import json
import os
import resource


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_size(text):
    units = {"kib": 10, "mib": 20, "gib": 30, "kb": 10, "mb": 20, "gb": 30}
    for unit, shift in units.items():
        if text.lower().endswith(unit):
            return int(text[: -len(unit)]) << shift
    return int(text)


def duckdb(memory, threads, spill_dir):
    import duckdb as db

    con = db.connect()
    con.execute(f"SET memory_limit='{memory}'")
    con.execute(f"SET threads={threads}")
    con.execute(f"SET temp_directory='{spill_dir}'")
    return con


def fetch_duckdb(relation):
    # DuckDB 2 calls it to_arrow_table; DuckDB 1 arrow.
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()


def datafusion(memory, threads, spill_dir):
    from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext

    runtime = (
        RuntimeEnvBuilder()
        .with_disk_manager_specified(spill_dir)
        .with_fair_spill_pool(parse_size(memory))
    )
    return SessionContext(SessionConfig().with_target_partitions(threads), runtime)


def polars_threads(threads):
    os.environ["POLARS_MAX_THREADS"] = str(threads)


def result(fields, run, check):
    """Prints `fields` with wall_s, peak_rss_mib, valid and error filled in from
    `run()` (which returns the wall time and the result table) and `check(table)`. A
    failure (under the budget, say) is a result too, recorded as such."""
    fields = dict(fields, wall_s=None, peak_rss_mib=None, valid=False, error=None)
    try:
        fields["wall_s"], table = run()
        fields["peak_rss_mib"] = peak_rss_mib()
        fields["valid"] = check(table)
    except Exception as error:
        fields["error"] = str(error).splitlines()[0][:200]
        fields["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(fields))
