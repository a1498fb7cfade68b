"""W1 peers: convert W1 records to the peers' input forms, and run DuckDB and DataFusion.

Used by w1.sh; not part of the timed work of any system except where it says so.

  python w1_peers.py prepare INPUT.w1 OUT_DIR      writes OUT_DIR/w1.parquet and OUT_DIR/w1.lines
  python w1_peers.py duckdb PARQUET OUT MEMORY THREADS SPILL_DIR
  python w1_peers.py datafusion PARQUET OUT MEMORY THREADS SPILL_DIR

The run commands print one line of JSON: {"system", "wall_s", "peak_rss_mib", "valid", "error"}.
`wall_s` covers the query only: scan the Parquet input, sort by key, write the output.
"""

import json
import os
import sys
import time

import peers

RECORD = 100
KEY = 10


def prepare(w1_path, out_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    data = open(w1_path, "rb").read()
    n = len(data) // RECORD
    # Parquet: key as a 10-byte binary column, the other 90 bytes as a binary payload.
    batch = 1_000_000
    writer = None
    with open(os.path.join(out_dir, "w1.lines"), "wb") as lines:
        for start in range(0, n, batch):
            end = min(n, start + batch)
            keys = [data[i * RECORD : i * RECORD + KEY] for i in range(start, end)]
            payloads = [data[i * RECORD + KEY : (i + 1) * RECORD] for i in range(start, end)]
            table = pa.table({"key": pa.array(keys, pa.binary()), "payload": pa.array(payloads, pa.binary())})
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(out_dir, "w1.parquet"), table.schema)
            writer.write_table(table)
            # GNU sort's line form: the binary key in lowercase hex (same order, no newlines),
            # then the record's remaining 90 bytes, which are text ending in '\n'.
            lines.write(b"".join(k.hex().encode() + p for k, p in zip(keys, payloads)))
    writer.close()


def verify(parquet_out, n_expected):
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_out, columns=["key"])
    keys = table.column("key").to_pylist()
    ordered = all(keys[i] <= keys[i + 1] for i in range(len(keys) - 1))
    return ordered and len(keys) == n_expected


def run_duckdb(parquet, out, memory, threads, spill_dir):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory}'")
    con.execute(f"SET threads={threads}")
    con.execute(f"SET temp_directory='{spill_dir}'")
    con.execute("SET preserve_insertion_order=true")
    start = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}') ORDER BY key) TO '{out}' (FORMAT parquet)")
    return time.perf_counter() - start


def run_datafusion(parquet, out, memory, threads, spill_dir):
    import datafusion
    from datafusion import SessionConfig, SessionContext, RuntimeEnvBuilder, col

    limit = peers.parse_size(memory)
    runtime = RuntimeEnvBuilder().with_disk_manager_specified(spill_dir).with_fair_spill_pool(limit)
    config = SessionConfig().with_target_partitions(threads)
    ctx = SessionContext(config, runtime)
    start = time.perf_counter()
    df = ctx.read_parquet(parquet).sort(col("key").sort(ascending=True))
    df.write_parquet(out)
    return time.perf_counter() - start


def main():
    command = sys.argv[1]
    if command == "prepare":
        prepare(sys.argv[2], sys.argv[3])
        return
    parquet, out, memory, threads, spill_dir = sys.argv[2:7]
    n_expected = int(sys.argv[7])
    runner = {"duckdb": run_duckdb, "datafusion": run_datafusion}[command]
    result = {"system": command, "wall_s": None, "peak_rss_mib": None, "valid": False, "error": None}
    try:
        result["wall_s"] = runner(parquet, out, memory, int(threads), spill_dir)
        result["peak_rss_mib"] = peers.peak_rss_mib()
        result["valid"] = verify(out, n_expected)
    except Exception as error:  # a failure under the budget is a result, recorded as such
        result["error"] = str(error).splitlines()[0][:200]
        result["peak_rss_mib"] = peers.peak_rss_mib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
