"""TPC-H peers: DuckDB, DataFusion and Polars run Q1, Q3, Q6 and Q10 on the same tables.

Used by tpch.sh. The Parquet files come from `tpchgen-cli` (the same generator, the same
rows as `weir gen tpch`); writing them is not timed.

  python tpch_peers.py SYSTEM QUERY PARQUET_DIR MEMORY THREADS SPILL_DIR

SYSTEM is duckdb, datafusion or polars (its SQL context); QUERY is 1, 3, 6 or 10. Prints
one line of JSON: {"query", "system", "budget", "threads", "wall_s", "peak_rss_mib",
"valid", "error"}. `wall_s` covers the query alone: scan the Parquet files, run it and
fetch the result as an Arrow table. `valid` compares the result with the TPC-H answer at
SF 1 (the row count and the first row's key and revenue or counts, below); at other scales
it only says the query returned rows. Polars has no memory limit: it runs unlimited and
says so.
"""

import sys
import time

import peers

QUERIES = {
    1: """
select l_returnflag, l_linestatus,
       sum(l_quantity) as sum_qty,
       sum(l_extendedprice) as sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) as sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge,
       avg(l_quantity) as avg_qty,
       avg(l_extendedprice) as avg_price,
       avg(l_discount) as avg_disc,
       count(*) as count_order
from lineitem
where l_shipdate <= date '1998-12-01' - interval '90' day
group by l_returnflag, l_linestatus
order by l_returnflag, l_linestatus
""",
    3: """
select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue,
       o_orderdate, o_shippriority
from customer, orders, lineitem
where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15'
group by l_orderkey, o_orderdate, o_shippriority
order by revenue desc, o_orderdate
limit 10
""",
    6: """
select sum(l_extendedprice * l_discount) as revenue
from lineitem
where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01'
  and l_discount between 0.05 and 0.07 and l_quantity < 24
""",
    10: """
select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue,
       c_acctbal, n_name, c_address, c_phone, c_comment
from customer, orders, lineitem, nation
where c_custkey = o_custkey and l_orderkey = o_orderkey
  and o_orderdate >= date '1993-10-01' and o_orderdate < date '1994-01-01'
  and l_returnflag = 'R' and c_nationkey = n_nationkey
group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment
order by revenue desc
limit 20
""",
}

TABLES = {
    1: ["lineitem"],
    3: ["customer", "orders", "lineitem"],
    6: ["lineitem"],
    10: ["customer", "orders", "lineitem", "nation"],
}

# At SF 1 (the TPC-H answer set): rows, and the first row's (column, value).
SF1 = {
    1: (4, "count_order", 1478493),
    3: (10, "l_orderkey", 2456423),
    6: (1, "revenue", 123141078.2283),
    10: (20, "c_custkey", 57040),
}


def check(query, table, scale):
    if scale != "1":
        return table.num_rows > 0
    rows, column, value = SF1[query]
    first = table.column(column)[0].as_py()
    return table.num_rows == rows and abs(float(first) - value) < 0.005


def run_duckdb(query, parquet, memory, threads, spill_dir):
    con = peers.duckdb(memory, threads, spill_dir)
    for table in TABLES[query]:
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{parquet}/{table}.parquet')"
        )
    start = time.perf_counter()
    table = peers.fetch_duckdb(con.sql(QUERIES[query]))
    return time.perf_counter() - start, table


def run_datafusion(query, parquet, memory, threads, spill_dir):
    import pyarrow as pa

    ctx = peers.datafusion(memory, threads, spill_dir)
    for table in TABLES[query]:
        ctx.register_parquet(table, f"{parquet}/{table}.parquet")
    start = time.perf_counter()
    batches = ctx.sql(QUERIES[query]).collect()
    return time.perf_counter() - start, pa.Table.from_batches(batches)


def run_polars(query, parquet, memory, threads, spill_dir):
    import polars as pl

    ctx = pl.SQLContext()
    for table in TABLES[query]:
        ctx.register(table, pl.scan_parquet(f"{parquet}/{table}.parquet"))
    start = time.perf_counter()
    frame = ctx.execute(QUERIES[query]).collect(engine="streaming")
    return time.perf_counter() - start, frame.to_arrow()


def main():
    system, query, parquet, memory, threads, spill_dir = sys.argv[1:7]
    scale = sys.argv[7] if len(sys.argv) > 7 else "1"
    query = int(query)
    if system == "polars":
        peers.polars_threads(threads)
    runner = {"duckdb": run_duckdb, "datafusion": run_datafusion, "polars": run_polars}[system]
    fields = {
        "query": f"Q{query}",
        "system": system,
        "budget": memory if system != "polars" else f"{memory} (not enforced)",
        "threads": int(threads),
    }
    peers.result(
        fields,
        lambda: runner(query, parquet, memory, int(threads), spill_dir),
        lambda table: check(query, table, scale),
    )


if __name__ == "__main__":
    main()
