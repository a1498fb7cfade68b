"""W2 and W3 peers: DuckDB, DataFusion and Polars on the same TPC-H tables, as Parquet.

Used by w2.sh. The Parquet files come from `tpchgen-cli` (the same generator, the same
rows as `weir gen tpch`); writing them is not timed.

  python w2_peers.py SYSTEM WORKLOAD PARQUET_DIR MEMORY THREADS SPILL_DIR

SYSTEM is duckdb, datafusion or polars; WORKLOAD is w2a (GROUP BY l_orderkey:
SUM(l_extendedprice), COUNT(*)), w2b (TPC-H Q1) or w3 (orders JOIN lineitem ON the order
key: COUNT(*), SUM(l_extendedprice)). PARQUET_DIR holds lineitem.parquet (and
orders.parquet for w3). Prints one line of JSON:
{"workload", "system", "budget", "wall_s", "peak_rss_mib", "valid", "error"}.
`wall_s` covers the query: scan the Parquet files, aggregate or join, and fetch the result
as an Arrow table or DataFrame (weir streams its groups into a checksum; neither writes a
file). `valid` checks the result against TPC-H at SF 1: W2a 1,500,000 groups holding
6,001,215 rows; W2b the four count_order values of the TPC-H answer; W3 6,001,215 joined
rows whose l_extendedprice sums to 229,577,310,901.20 (weir's answer, which its own
validation checks with a merge join of the two tables).
Polars has no memory limit: it runs its streaming engine unlimited, and says so.
"""

import sys
import time

import peers
import tpch_peers

# TPC-H Q1, as tpch_peers.py runs it.
Q1 = tpch_peers.load_query(1)

W2A = """
select l_orderkey, sum(l_extendedprice) as sum_extendedprice, count(*) as count_order
from lineitem
group by l_orderkey
"""

W3 = """
select count(*) as count, sum(l_extendedprice) as sum_extendedprice
from orders join lineitem on o_orderkey = l_orderkey
"""

# W3 at SF 1: joined rows and the sum of their l_extendedprice, in cents.
W3_SF1 = (6_001_215, 22_957_731_090_120)

# count_order of TPC-H Q1 at SF 1 (A|F, N|F, N|O, R|F), from the TPC-H answer set.
Q1_COUNTS_SF1 = [1478493, 38854, 2920374, 1478870]


def check(workload, table):
    """Whether an Arrow table has the shape of the SF 1 answer."""
    if workload == "w2a":
        counts = table.column("count_order").to_pylist()
        return table.num_rows == 1_500_000 and sum(counts) == 6_001_215
    if workload == "w3":
        count = int(table.column("count")[0].as_py())
        # A decimal or a float, by system: compared to the cent.
        cents = round(float(table.column("sum_extendedprice")[0].as_py()) * 100)
        return table.num_rows == 1 and (count, cents) == W3_SF1
    return [int(c) for c in table.column("count_order").to_pylist()] == Q1_COUNTS_SF1


QUERIES = {"w2a": W2A, "w2b": Q1, "w3": W3}


def tables(workload):
    """The tables a workload reads."""
    return ["lineitem", "orders"] if workload == "w3" else ["lineitem"]


def run_duckdb(workload, parquet, memory, threads, spill_dir):
    con = peers.duckdb(memory, threads, spill_dir)
    for table in tables(workload):
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{parquet}/{table}.parquet')"
        )
    start = time.perf_counter()
    table = peers.fetch_duckdb(con.sql(QUERIES[workload]))
    return time.perf_counter() - start, table


def run_datafusion(workload, parquet, memory, threads, spill_dir):
    import pyarrow as pa

    ctx = peers.datafusion(memory, threads, spill_dir)
    for table in tables(workload):
        ctx.register_parquet(table, f"{parquet}/{table}.parquet")
    start = time.perf_counter()
    batches = ctx.sql(QUERIES[workload]).collect()
    return time.perf_counter() - start, pa.Table.from_batches(batches)


def run_polars(workload, parquet, memory, threads, spill_dir):
    # POLARS_MAX_THREADS is set by the caller before polars is imported.
    import datetime

    import polars as pl

    lineitem = pl.scan_parquet(f"{parquet}/lineitem.parquet")
    start = time.perf_counter()
    if workload == "w3":
        orders = pl.scan_parquet(f"{parquet}/orders.parquet")
        query = orders.join(lineitem, left_on="o_orderkey", right_on="l_orderkey").select(
            pl.len().alias("count"),
            pl.col("l_extendedprice").sum().alias("sum_extendedprice"),
        )
    elif workload == "w2a":
        query = lineitem.group_by("l_orderkey").agg(
            pl.col("l_extendedprice").sum().alias("sum_extendedprice"),
            pl.len().alias("count_order"),
        )
    else:
        price, disc, tax = pl.col("l_extendedprice"), pl.col("l_discount"), pl.col("l_tax")
        query = (
            lineitem.filter(pl.col("l_shipdate") <= datetime.date(1998, 9, 2))
            .group_by("l_returnflag", "l_linestatus")
            .agg(
                pl.col("l_quantity").sum().alias("sum_qty"),
                price.sum().alias("sum_base_price"),
                (price * (1 - disc)).sum().alias("sum_disc_price"),
                (price * (1 - disc) * (1 + tax)).sum().alias("sum_charge"),
                pl.col("l_quantity").mean().alias("avg_qty"),
                price.mean().alias("avg_price"),
                disc.mean().alias("avg_disc"),
                pl.len().alias("count_order"),
            )
            .sort("l_returnflag", "l_linestatus")
        )
    frame = query.collect(engine="streaming")
    elapsed = time.perf_counter() - start
    return elapsed, frame.to_arrow()


def main():
    system, workload, parquet, memory, threads, spill_dir = sys.argv[1:7]
    if system == "polars":
        peers.polars_threads(threads)
    runner = {"duckdb": run_duckdb, "datafusion": run_datafusion, "polars": run_polars}[system]
    fields = {
        "workload": workload.upper().replace("W2A", "W2a").replace("W2B", "W2b"),
        "system": system,
        "budget": memory if system != "polars" else f"{memory} (not enforced)",
    }
    peers.result(
        fields,
        lambda: runner(workload, parquet, memory, int(threads), spill_dir),
        lambda table: check(workload, table),
    )


if __name__ == "__main__":
    main()
