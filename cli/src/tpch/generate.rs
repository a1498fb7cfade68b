//! `weir gen tpch`: the tables from the `tpchgen` generators, streamed to weir records,
//! into a staging directory that replaces the target only when everything is written.
//!
//! ```text
//!   DIR checked: absent, empty, or weir's tables (its manifest) ── else refused
//!   free space checked against the estimate ── else refused, nothing written
//!   tpchgen row ──convert (cents, days, flag bytes)──▶ Lineitem/Order/Customer
//!     ──serde-fmt──▶ TableWriter (4 KiB checksummed blocks) ──▶ STAGING/<table>
//!     └─ totals of the row values, per table and per chunk of blocks
//!                                  ──▶ STAGING/weir-tables.manifest (last, by rename)
//!   STAGING renamed to DIR (absent or empty DIR), or its files renamed over the files
//!   DIR's manifest lists, the manifest last; STAGING removed on failure
//! ```
//!
//! One row at a time: no table is ever held in memory. Generation is not part of any
//! timing and runs outside the memory budget: the tpchgen text pool is 300 MB of its own,
//! shared by all tables, whatever the scale. (tpchgen can take a smaller pool, but row
//! comments are drawn at offsets below the pool's size, so every comment would change and
//! the tables would no longer be TPC-H's.) The output is a function of the scale factor.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

use super::block::{TableWriter, Written};
use super::manifest::{
    DirState, Manifest, Q1Totals, SUMS_MAX, TableEntry, Totals, inspect, staging_dir,
};
use super::q1::Q1_SHIPDATE_MAX;
use super::{Customer, Lineitem, Nation, Order, Part, PartSupp, Region, Supplier, Table};
use crate::constants::{
    TABLE_BYTES_FIXED, TABLE_BYTES_PER_SCALE, TABLE_CHUNK_BLOCKS, TABLES_MANIFEST,
};
use weir::error::{Result, WeirError};

/// Bytes of the write buffer of each table file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Rows generated between two updates of the progress counter.
const PROGRESS_ROWS: u64 = 1024;

/// The largest scale factor `weir gen tpch` accepts.
const SCALE_MAX: f64 = 1000.0;

/// Checks that `scale_factor` is one `weir gen tpch` accepts.
///
/// # Errors
///
/// [`WeirError::Usage`] for a scale factor that is not a number above 0, at most 1000.
pub fn check_scale(scale_factor: f64) -> Result<()> {
    if scale_factor.is_finite() && scale_factor > 0.0 && scale_factor <= SCALE_MAX {
        return Ok(());
    }
    Err(WeirError::Usage {
        message: format!("--scale {scale_factor}: expected a number above 0, at most {SCALE_MAX}"),
    })
}

/// Bytes the tables of `scale_factor` take, rounded up.
pub fn estimated_bytes(scale_factor: f64) -> u64 {
    (scale_factor * TABLE_BYTES_PER_SCALE as f64) as u64 + TABLE_BYTES_FIXED
}

/// Checks that the file system where `dir` would be has room for the tables of
/// `scale_factor` (found on `dir`'s nearest existing ancestor; no check where the free
/// space cannot be found).
///
/// # Errors
///
/// [`WeirError::Usage`] naming the bytes needed and available.
pub fn check_space(dir: &Path, scale_factor: f64) -> Result<()> {
    let needed = estimated_bytes(scale_factor);
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Some((place, free)) = absolute
        .ancestors()
        .find_map(|a| weir_kernel::sys::free_space(a).map(|free| (a, free)))
    else {
        return Ok(());
    };
    if free >= needed {
        return Ok(());
    }
    Err(WeirError::Usage {
        message: format!(
            "the TPC-H tables of SF {scale_factor} need about {needed} bytes ({:.1} GB) but \
             the file system of {} has {free} bytes ({:.1} GB) free: nothing was written; \
             free space, choose another directory, or a smaller --scale",
            needed as f64 / 1e9,
            place.display(),
            free as f64 / 1e9
        ),
    })
}

/// Writes the eight tables and the manifest for `scale_factor` into
/// `dir`, counting the rows written in `progress`; returns the manifest.
///
/// `dir` may be absent, empty, or hold weir's tables (of any scale or format version):
/// those files, and only those, are replaced once the new ones are complete. Anything else
/// is refused untouched.
///
/// # Errors
///
/// [`WeirError::Usage`] for a scale factor that is not a positive finite number up to
/// 1000, too little free space, or a `dir` holding what weir did not write;
/// [`WeirError::File`] when a file cannot be created, written or renamed.
///
/// # Panics
///
/// When the generator produces a row this conversion does not expect (a flag of more
/// than one letter): a bug, not an input error.
pub fn generate_tables(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<Manifest> {
    check_scale(scale_factor)?;
    let state = inspect(dir)?;
    if let DirState::Foreign { found } = &state {
        return Err(WeirError::Usage {
            message: format!(
                "{} holds {found}: weir writes tables only into an absent or empty directory \
                 or one holding weir's tables (its {TABLES_MANIFEST}); nothing was touched; \
                 choose another directory",
                dir.display()
            ),
        });
    }
    check_space(dir, scale_factor)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| WeirError::file("create directory", parent, e))?;
    }
    let staging = staging_dir(dir);
    // Registered first: a signal between creating and removing it removes it too.
    let _registered = weir::lifecycle::remove_on_exit(&staging);
    std::fs::create_dir(&staging).map_err(|e| WeirError::file("create directory", &staging, e))?;
    let result = write_all_tables(scale_factor, &staging, progress)
        .and_then(|manifest| install(&staging, dir, &state).map(|()| manifest));
    if result.is_err() {
        // The staging directory is this process's own (created above, named by its id).
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Moves the complete tables of `staging` into `dir`.
fn install(staging: &Path, dir: &Path, state: &DirState) -> Result<()> {
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|e| WeirError::file("rename tables into", to, e))
    };
    let old_files = match state {
        DirState::Absent => return rename(staging, dir),
        DirState::Empty => {
            // Fails, touching nothing, if something appeared in the meantime.
            std::fs::remove_dir(dir).map_err(|e| WeirError::file("replace empty", dir, e))?;
            return rename(staging, dir);
        }
        DirState::Tables(_) => {
            let mut files = vec![TABLES_MANIFEST.to_owned()];
            files.extend(Table::ALL.iter().map(|t| t.name().to_owned()));
            files
        }
        DirState::OtherVersion { files, .. } => files.clone(),
        DirState::Foreign { .. } => unreachable!("refused before generating"),
    };
    // The old manifest (or marker) goes first: from here on `dir` does not claim complete
    // tables until the new manifest arrives, last.
    for name in old_files
        .iter()
        .filter(|n| !Table::ALL.iter().any(|t| t.name() == *n))
    {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|e| WeirError::file("remove", &path, e))?;
    }
    for table in Table::ALL {
        rename(&staging.join(table.name()), &dir.join(table.name()))?;
    }
    rename(&staging.join(TABLES_MANIFEST), &dir.join(TABLES_MANIFEST))?;
    std::fs::remove_dir(staging).map_err(|e| WeirError::file("remove", staging, e))
}

/// Generates the eight tables and the manifest into `dir`.
fn write_all_tables(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<Manifest> {
    let (lineitem, q1) = write_lineitem(scale_factor, dir, progress)?;
    let manifest = Manifest {
        scale_factor,
        tables: vec![
            lineitem,
            write_orders(scale_factor, dir, progress)?,
            write_customer(scale_factor, dir, progress)?,
            write_part(scale_factor, dir, progress)?,
            write_supplier(scale_factor, dir, progress)?,
            write_partsupp(scale_factor, dir, progress)?,
            write_nation(scale_factor, dir, progress)?,
            write_region(scale_factor, dir, progress)?,
        ],
        q1,
    };
    manifest.write(dir)?;
    Ok(manifest)
}

/// Writes `lineitem`; returns its entry and the totals of the rows Q1 reads.
fn write_lineitem(
    scale_factor: f64,
    dir: &Path,
    progress: &AtomicU64,
) -> Result<(TableEntry, Q1Totals)> {
    let mut q1 = Q1Totals::default();
    let lineitem = write_table(dir, Table::Lineitem, scale_factor, progress, |sink| {
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
            if row.l_shipdate <= Q1_SHIPDATE_MAX {
                q1.rows += 1;
                q1.quantity = q1.quantity.wrapping_add(row.l_quantity);
                q1.extendedprice = q1.extendedprice.wrapping_add(row.l_extendedprice);
            }
            sink.row(&row, &row.summed_values())?;
        }
        Ok(())
    })?;
    Ok((lineitem, q1))
}

fn write_orders(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::Orders, scale_factor, progress, |sink| {
        let mut clerk = String::new();
        for row in OrderGenerator::new(scale_factor, 1, 1).iter() {
            clerk.clear();
            write!(clerk, "{}", row.o_clerk).expect("formatting into a String");
            let order = Order {
                o_orderkey: row.o_orderkey,
                o_custkey: row.o_custkey,
                o_orderstatus: flag(row.o_orderstatus.as_str()),
                o_totalprice: row.o_totalprice.into_inner(),
                o_orderdate: row.o_orderdate.to_unix_epoch(),
                o_shippriority: row.o_shippriority,
                o_orderpriority: row.o_orderpriority,
                o_clerk: &clerk,
                o_comment: row.o_comment,
            };
            sink.row(&order, &order.summed_values())?;
        }
        Ok(())
    })
}

fn write_customer(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::Customer, scale_factor, progress, |sink| {
        let mut text = Texts::default();
        for row in CustomerGenerator::new(scale_factor, 1, 1).iter() {
            let [name, address, phone] = text.of([&row.c_name, &row.c_address, &row.c_phone]);
            let customer = Customer {
                c_custkey: row.c_custkey,
                c_nationkey: row.c_nationkey,
                c_acctbal: row.c_acctbal.into_inner(),
                c_name: name,
                c_address: address,
                c_phone: phone,
                c_mktsegment: row.c_mktsegment,
                c_comment: row.c_comment,
            };
            sink.row(&customer, &customer.summed_values())?;
        }
        Ok(())
    })
}

fn write_part(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::Part, scale_factor, progress, |sink| {
        let mut text = Texts::default();
        for row in PartGenerator::new(scale_factor, 1, 1).iter() {
            let [name, mfgr, brand] = text.of([&row.p_name, &row.p_mfgr, &row.p_brand]);
            let part = Part {
                p_partkey: row.p_partkey,
                p_size: row.p_size,
                p_retailprice: row.p_retailprice.into_inner(),
                p_name: name,
                p_mfgr: mfgr,
                p_brand: brand,
                p_type: row.p_type,
                p_container: row.p_container,
                p_comment: row.p_comment,
            };
            sink.row(&part, &part.summed_values())?;
        }
        Ok(())
    })
}

fn write_supplier(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::Supplier, scale_factor, progress, |sink| {
        let mut text = Texts::default();
        for row in SupplierGenerator::new(scale_factor, 1, 1).iter() {
            let [name, address, phone] = text.of([&row.s_name, &row.s_address, &row.s_phone]);
            let supplier = Supplier {
                s_suppkey: row.s_suppkey,
                s_nationkey: row.s_nationkey,
                s_acctbal: row.s_acctbal.into_inner(),
                s_name: name,
                s_address: address,
                s_phone: phone,
                s_comment: &row.s_comment,
            };
            sink.row(&supplier, &supplier.summed_values())?;
        }
        Ok(())
    })
}

fn write_partsupp(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::PartSupp, scale_factor, progress, |sink| {
        for row in PartSuppGenerator::new(scale_factor, 1, 1).iter() {
            let partsupp = PartSupp {
                ps_partkey: row.ps_partkey,
                ps_suppkey: row.ps_suppkey,
                ps_availqty: row.ps_availqty,
                ps_supplycost: row.ps_supplycost.into_inner(),
                ps_comment: row.ps_comment,
            };
            sink.row(&partsupp, &partsupp.summed_values())?;
        }
        Ok(())
    })
}

fn write_nation(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::Nation, scale_factor, progress, |sink| {
        for row in NationGenerator::new(scale_factor, 1, 1).iter() {
            let nation = Nation {
                n_nationkey: row.n_nationkey,
                n_regionkey: row.n_regionkey,
                n_name: row.n_name,
                n_comment: row.n_comment,
            };
            sink.row(&nation, &nation.summed_values())?;
        }
        Ok(())
    })
}

fn write_region(scale_factor: f64, dir: &Path, progress: &AtomicU64) -> Result<TableEntry> {
    write_table(dir, Table::Region, scale_factor, progress, |sink| {
        for row in RegionGenerator::new(scale_factor, 1, 1).iter() {
            let region = Region {
                r_regionkey: row.r_regionkey,
                r_name: row.r_name,
                r_comment: row.r_comment,
            };
            sink.row(&region, &region.summed_values())?;
        }
        Ok(())
    })
}

/// Text columns the generator hands out as values that format themselves (names, phone
/// numbers, addresses), formatted into one reused buffer.
#[derive(Default)]
struct Texts {
    buffer: String,
}

impl Texts {
    /// Each of `values` formatted, borrowed from the buffer.
    fn of<const N: usize>(&mut self, values: [&dyn std::fmt::Display; N]) -> [&str; N] {
        self.buffer.clear();
        let mut ends = [0; N];
        for (end, value) in ends.iter_mut().zip(values) {
            write!(self.buffer, "{value}").expect("formatting into a String");
            *end = self.buffer.len();
        }
        let mut start = 0;
        ends.map(|end| {
            let text = &self.buffer[start..end];
            start = end;
            text
        })
    }
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
struct Sink<'a> {
    out: TableWriter<BufWriter<File>>,
    path: std::path::PathBuf,
    encoded: Vec<u8>,
    totals: Totals,
    chunks: Vec<Totals>,
    progress: &'a AtomicU64,
}

impl Sink<'_> {
    /// Appends `row`, whose summed columns ([`Table::summed_columns`]) hold `sums`.
    fn row<T: Serialize>(&mut self, row: &T, sums: &[i64; SUMS_MAX]) -> Result<()> {
        self.encoded.clear();
        weir_serde_fmt::to_writer(&mut self.encoded, row)
            .map_err(|e| WeirError::file("write", &self.path, io::Error::other(e)))?;
        let block = self
            .out
            .row(&self.encoded)
            .map_err(|e| WeirError::file("write", &self.path, e))?;
        self.totals.add(sums);
        // The writer names the block; the totals are the generator's values.
        let chunk = usize::try_from(block / TABLE_CHUNK_BLOCKS).expect("a chunk index");
        if chunk == self.chunks.len() {
            self.chunks.push(Totals::default());
        }
        self.chunks[chunk].add(sums);
        if self.totals.rows.is_multiple_of(PROGRESS_ROWS) {
            self.progress.fetch_add(PROGRESS_ROWS, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Creates `dir/<table>` and writes the rows `fill` produces; returns its manifest entry.
fn write_table(
    dir: &Path,
    table: Table,
    scale_factor: f64,
    progress: &AtomicU64,
    fill: impl FnOnce(&mut Sink<'_>) -> Result<()>,
) -> Result<TableEntry> {
    let path = dir.join(table.name());
    let file = File::create(&path).map_err(|e| WeirError::file("create", &path, e))?;
    let out = TableWriter::new(
        BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
        table,
        scale_factor,
    )
    .map_err(|e| WeirError::file("write", &path, e))?;
    let mut sink = Sink {
        out,
        path,
        encoded: Vec::new(),
        totals: Totals::default(),
        chunks: Vec::new(),
        progress,
    };
    fill(&mut sink)?;
    let Sink {
        out,
        path,
        totals,
        chunks,
        ..
    } = sink;
    progress.fetch_add(totals.rows % PROGRESS_ROWS, Ordering::Relaxed);
    let (
        out,
        Written {
            rows,
            blocks,
            bytes,
        },
    ) = out
        .finish()
        .map_err(|e| WeirError::file("write", &path, e))?;
    debug_assert_eq!(rows, totals.rows);
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all())
        .map_err(|e| WeirError::file("write", &path, e))?;
    Ok(TableEntry {
        table,
        bytes,
        blocks,
        totals,
        chunks,
    })
}
