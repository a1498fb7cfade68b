# Sourced by w2.sh and tpch.sh with $dir, $scale and $here set and the tables' names in
# $parquet_tables: builds weir in release ($weir), installs the peers and tpchgen-cli in a
# virtualenv under $dir ($py), and generates the TPC-H tables once with `weir gen tpch`
# ($tables, weir records) and once with `tpchgen-cli parquet` ($parquet: the same
# generator, so the same rows). None of it is timed.
cargo build --release --quiet
weir=${CARGO_TARGET_DIR:-$here/target}/release/weir
venv=$dir/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import duckdb, datafusion, polars, pyarrow' 2>/dev/null \
    || [ ! -x "$venv/bin/tpchgen-cli" ]; then
  "$venv/bin/pip" install --quiet duckdb datafusion polars pyarrow tpchgen-cli
fi
py=$venv/bin/python

tables=$dir/tpch-sf$scale
# Tables of an older weir (another format line) are regenerated: `gen tpch` replaces weir's
# own tables. The format is docs/FORMAT.md §7's FORMAT_VERSION.
if ! head -n 1 "$tables/weir-tables.manifest" 2>/dev/null | grep -qx "weir-tables format 4"; then
  "$weir" gen tpch --scale "$scale" --out "$tables"
fi
parquet=$dir/parquet-sf$scale
for table in $parquet_tables; do
  if [ ! -f "$parquet/$table.parquet" ]; then
    "$venv/bin/tpchgen-cli" parquet -s "$scale" --tables "$table" --output-dir "$parquet"
  fi
done
