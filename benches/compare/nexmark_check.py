"""Checks `weir run nexmark` rows against DuckDB over the same events.

    nexmark_check.py EVENTS_CSV QUERY WEIR_OUTPUT_DIR

EVENTS_CSV is what `weir gen nexmark` wrote; WEIR_OUTPUT_DIR the part files `weir run
nexmark --output` wrote. DuckDB runs nexmark_queries/qQUERY.sql over the events; the two
row sets must be equal as multisets (EXCEPT ALL both ways is empty, and the counts agree).
Prints one line and exits 1 on a difference.
"""

import pathlib
import sys

import duckdb

HERE = pathlib.Path(__file__).parent
BID = [("auction", "BIGINT"), ("bidder", "BIGINT"), ("price", "BIGINT"),
       ("date_time", "BIGINT"), ("extra", "VARCHAR")]
COLUMNS = {
    "0": BID,
    "1": [(n, "DECIMAL(38,3)" if n == "price" else t) for n, t in BID],
    "2": [("auction", "BIGINT"), ("price", "BIGINT")],
    "3": [("name", "VARCHAR"), ("city", "VARCHAR"), ("state", "VARCHAR"), ("id", "BIGINT")],
    "4": [("category", "BIGINT"), ("auctions", "BIGINT"), ("total", "BIGINT"),
          ("avg_price", "DOUBLE")],
    "5": [("window_start", "BIGINT"), ("window_end", "BIGINT"), ("auction", "BIGINT"),
          ("num", "BIGINT")],
    "7": [("auction", "BIGINT"), ("price", "BIGINT"), ("bidder", "BIGINT"),
          ("date_time", "BIGINT"), ("extra", "VARCHAR")],
    "8": [("id", "BIGINT"), ("name", "VARCHAR"), ("window_start", "BIGINT")],
}


def columns_dict(columns):
    return "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in columns) + "}"


def main():
    events, query, output = sys.argv[1], sys.argv[2], sys.argv[3]
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW events AS SELECT * FROM read_csv('{events}', header = true, "
        "all_varchar = false, sample_size = -1)"
    )
    sql = (HERE / "nexmark_queries" / f"q{query}.sql").read_text()
    con.execute(f"CREATE TABLE expected AS {sql}")
    # Empty part files (tasks that wrote no row) are left out: DuckDB cannot sniff them.
    parts = [str(p) for p in sorted(pathlib.Path(output).glob("part-*")) if p.stat().st_size]
    columns = COLUMNS[query]
    if parts:
        con.execute(
            f"CREATE TABLE got AS SELECT * FROM read_csv({parts!r}, header = false, "
            f"delim = ',', columns = {columns_dict(columns)})"
        )
    else:
        con.execute(f"CREATE TABLE got ({', '.join(f'{n} {t}' for n, t in columns)})")
    if query == "4":
        # q4 is a changelog: a category's last row (the most auctions) is its answer.
        con.execute(
            "CREATE TABLE last AS SELECT category, auctions, total FROM got "
            "QUALIFY row_number() OVER (PARTITION BY category ORDER BY auctions DESC) = 1"
        )
        con.execute("DROP TABLE got")
        con.execute("ALTER TABLE last RENAME TO got")
    if query in ("0", "1", "7"):
        # An empty extra is NULL in one reading and '' in the other: compare them alike.
        for table in ("expected", "got"):
            con.execute(f"UPDATE {table} SET extra = coalesce(extra, '')")
    expected = con.execute("SELECT count(*) FROM expected").fetchone()[0]
    got = con.execute("SELECT count(*) FROM got").fetchone()[0]
    missing = con.execute("SELECT count(*) FROM (SELECT * FROM expected EXCEPT ALL SELECT * FROM got)").fetchone()[0]
    extra = con.execute("SELECT count(*) FROM (SELECT * FROM got EXCEPT ALL SELECT * FROM expected)").fetchone()[0]
    same = expected == got and missing == 0 and extra == 0
    print(
        f"q{query}: DuckDB {duckdb.__version__} {expected} rows, weir {got} rows, "
        f"{missing} missing, {extra} extra: {'EQUAL' if same else 'DIFFERENT'}"
    )
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
