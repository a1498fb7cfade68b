//! `weir gen tpch`: the tables from the `tpchgen` generators, streamed to weir records.
//!
//! ```text
//!   tpchgen row ──convert (cents, days, flag bytes)──▶ Lineitem/Order/Customer
//!     ──serde-fmt──▶ BufWriter ──▶ DIR/<table>
//!   header written first with rows = 0, rewritten in place at the end (same length)
//! ```
//!
//! One row at a time: no table is ever held in memory. Generation is not part of any
//! timing and runs outside the memory budget (the tpchgen text pool is about 300 MB of
//! its own, shared by all tables). The output is a function of the scale factor only.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tpchgen::generators::{CustomerGenerator, LineItemGenerator, OrderGenerator};

use super::{Customer, FORMAT_VERSION, FileHeader, Lineitem, MAGIC, Order, Table};
use crate::error::{Result, WeirError};

/// Bytes of the write buffer of each table file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Writes `lineitem`, `orders` and `customer` for `scale_factor` into `dir` (created if
/// missing); returns the rows written per table, in [`Table::ALL`] order.
///
/// # Errors
///
/// [`WeirError::Input`] for a scale factor that is not a positive finite number;
/// [`WeirError::File`] when a file cannot be created or written.
///
/// # Panics
///
/// When the generator produces a row this conversion does not expect (a flag of more
/// than one letter): a bug, not an input error.
pub fn generate_tables(scale_factor: f64, dir: &Path) -> Result<[u64; 3]> {
    if !(scale_factor.is_finite() && scale_factor > 0.0 && scale_factor <= 1000.0) {
        return Err(WeirError::Input {
            message: format!("--scale {scale_factor}: expected a number above 0, at most 1000"),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| WeirError::file("create directory", dir, e))?;
    let lineitem = write_table(dir, Table::Lineitem, scale_factor, |sink| {
        for row in LineItemGenerator::new(scale_factor, 1, 1).iter() {
            let row = Lineitem {
                l_orderkey: row.l_orderkey,
                l_partkey: row.l_partkey,
                l_suppkey: row.l_suppkey,
                l_linenumber: row.l_linenumber,
                l_quantity: row.l_quantity * 100,
                l_extendedprice: row.l_extendedprice.into_inner(),
                l_discount: row.l_discount.into_inner(),
                l_tax: row.l_tax.into_inner(),
                l_returnflag: flag(row.l_returnflag),
                l_linestatus: flag(row.l_linestatus),
                l_shipdate: row.l_shipdate.to_unix_epoch(),
                l_commitdate: row.l_commitdate.to_unix_epoch(),
                l_receiptdate: row.l_receiptdate.to_unix_epoch(),
                l_shipinstruct: row.l_shipinstruct,
                l_shipmode: row.l_shipmode,
                l_comment: row.l_comment,
            };
            sink.row(&row)?;
        }
        Ok(())
    })?;
    let orders = write_table(dir, Table::Orders, scale_factor, |sink| {
        let mut clerk = String::new();
        for row in OrderGenerator::new(scale_factor, 1, 1).iter() {
            clerk.clear();
            write!(clerk, "{}", row.o_clerk).expect("formatting into a String");
            sink.row(&Order {
                o_orderkey: row.o_orderkey,
                o_custkey: row.o_custkey,
                o_orderstatus: flag(row.o_orderstatus.as_str()),
                o_totalprice: row.o_totalprice.into_inner(),
                o_orderdate: row.o_orderdate.to_unix_epoch(),
                o_shippriority: row.o_shippriority,
                o_orderpriority: row.o_orderpriority,
                o_clerk: &clerk,
                o_comment: row.o_comment,
            })?;
        }
        Ok(())
    })?;
    let customer = write_table(dir, Table::Customer, scale_factor, |sink| {
        let mut text = String::new();
        for row in CustomerGenerator::new(scale_factor, 1, 1).iter() {
            text.clear();
            write!(text, "{}|{}|{}", row.c_name, row.c_address, row.c_phone)
                .expect("formatting into a String");
            let mut parts = text.splitn(3, '|');
            let mut next = || parts.next().expect("three formatted parts");
            let (name, address, phone) = (next(), next(), next());
            sink.row(&Customer {
                c_custkey: row.c_custkey,
                c_nationkey: row.c_nationkey,
                c_acctbal: row.c_acctbal.into_inner(),
                c_name: name,
                c_address: address,
                c_phone: phone,
                c_mktsegment: row.c_mktsegment,
                c_comment: row.c_comment,
            })?;
        }
        Ok(())
    })?;
    Ok([lineitem, orders, customer])
}

/// A one-letter TPC-H flag as its byte.
///
/// # Panics
///
/// When the generator produced something else (a bug in this conversion).
fn flag(text: &str) -> u8 {
    assert_eq!(text.len(), 1, "a one-letter flag, got {text:?}");
    text.as_bytes()[0]
}

/// Where rows of one table go.
struct Sink {
    out: BufWriter<File>,
    path: PathBuf,
    rows: u64,
}

impl Sink {
    fn row<T: Serialize>(&mut self, row: &T) -> Result<()> {
        self.rows += 1;
        weir_serde_fmt::to_writer(&mut self.out, row).map_err(|e| self.encode_error(e))
    }

    fn encode_error(&self, error: weir_serde_fmt::Error) -> WeirError {
        WeirError::file("write", &self.path, io::Error::other(error))
    }
}

/// Creates `dir/<table>`, writes the header, the rows `fill` produces, and the header
/// again with the row count.
fn write_table(
    dir: &Path,
    table: Table,
    scale_factor: f64,
    fill: impl FnOnce(&mut Sink) -> Result<()>,
) -> Result<u64> {
    let path = dir.join(table.name());
    let file = File::create(&path).map_err(|e| WeirError::file("create", &path, e))?;
    let header = |rows| FileHeader {
        magic: MAGIC,
        version: FORMAT_VERSION,
        table: table.name(),
        scale_factor,
        rows,
    };
    let mut sink = Sink {
        out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
        path,
        rows: 0,
    };
    weir_serde_fmt::to_writer(&mut sink.out, &header(0)).map_err(|e| sink.encode_error(e))?;
    fill(&mut sink)?;
    let (path, rows) = (sink.path, sink.rows);
    let mut file = sink
        .out
        .into_inner()
        .map_err(|e| WeirError::file("write", &path, e.into_error()))?;
    // The header's length does not depend on the row count (a fixed-width u64), so it is
    // rewritten in place.
    file.seek(SeekFrom::Start(0))
        .and_then(|_| {
            let bytes = weir_serde_fmt::to_vec(&header(rows)).map_err(io::Error::other)?;
            file.write_all(&bytes)
        })
        .map_err(|e| WeirError::file("write header of", &path, e))?;
    Ok(rows)
}
