//! TPC-H tables as files of weir records: their layouts, generation and scanning.
//!
//! ```text
//!   tpchgen generators ──row──▶ Lineitem / Order / Customer ──serde-fmt──▶ DIR/lineitem
//!                                                                          DIR/orders
//!                                                                          DIR/customer
//!                                             totals of the generator's rows ──▶ DIR/weir-tables.manifest
//!   file = [header block][data block]...  (4 KiB blocks, each with a CRC-32, whole rows)
//!
//!   TableScan: file ──read_vectored, 16 segments at a time──▶ blocks checked ──▶ rows as
//!              &[u8] ──▶ query   (row ends found by skipping the string lengths; the
//!              scan's row count and column totals checked against the manifest)
//! ```
//!
//! Every row type puts its fixed-width fields first and its strings last, so a query
//! reads the numbers it needs at fixed offsets ([`lineitem`]) and finds the end of a row
//! by skipping a few varint lengths, without decoding (or validating) the strings. The
//! full serde-fmt decoding of the row types is the independent path used by validation
//! and tests. Decimals are exact integers in cents (scale 2), dates are days since
//! 1970-01-01, one-letter flags are their ASCII byte. Byte layouts: docs/FORMAT.md,
//! section 7.

pub mod block;
pub mod generate;
pub mod manifest;
pub mod q1;
pub mod queries;
mod scan;
pub mod source;

pub use block::table_rows;
pub use generate::{check_scale, generate_tables};
pub use scan::{TableScan, chunk_share, record_len};
pub use source::table;

use serde::{Deserialize, Serialize};

/// The first eight bytes of every table file.
pub const MAGIC: [u8; 8] = *b"WEIRTPCH";

/// The version of the table files and their manifest; a reader rejects any other. Version
/// 1 had no blocks and no checksums; version 2 brought the blocks of [`block`]; version 3
/// adds the manifest's per-chunk totals, which let a scan split a file among tasks.
pub const FORMAT_VERSION: u32 = 3;

/// The longest row a reader accepts, in bytes: far above the longest TPC-H row (a
/// customer: 24 fixed bytes and about 220 bytes of strings), far below a block.
pub const ROW_BYTES_MAX: usize = 1024;

/// A table file's first record, at the start of its header block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHeader<'a> {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The table's name: `lineitem`, `orders` or `customer`.
    pub table: &'a str,
    /// The TPC-H scale factor the rows were generated for.
    pub scale_factor: f64,
    /// Rows in the data blocks.
    pub rows: u64,
    /// Data blocks after the header block.
    pub blocks: u64,
    /// Bytes of every block (header block included).
    pub block_bytes: u32,
}

/// The tables `weir gen tpch` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// LINEITEM, rows [`Lineitem`].
    Lineitem,
    /// ORDERS, rows [`Order`].
    Orders,
    /// CUSTOMER, rows [`Customer`].
    Customer,
}

impl Table {
    /// Every table, in the order they are written.
    pub const ALL: [Table; 3] = [Table::Lineitem, Table::Orders, Table::Customer];

    /// The table's name, which is also its file name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Lineitem => "lineitem",
            Table::Orders => "orders",
            Table::Customer => "customer",
        }
    }

    /// The table named `name`.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| table.name() == name)
    }

    /// Bytes of the fixed-width fields at the start of each row.
    pub fn fixed_bytes(self) -> usize {
        match self {
            Table::Lineitem => lineitem::FIXED_BYTES,
            Table::Orders => orders::FIXED_BYTES,
            Table::Customer => 24,
        }
    }

    /// The `i64` columns whose totals the manifest records and every scan checks: name
    /// and offset in the row.
    pub fn summed_columns(self) -> &'static [(&'static str, usize)] {
        match self {
            Table::Lineitem => &[
                ("l_orderkey", lineitem::ORDERKEY),
                ("l_quantity", lineitem::QUANTITY),
                ("l_extendedprice", lineitem::EXTENDEDPRICE),
            ],
            Table::Orders => &[
                ("o_orderkey", orders::ORDERKEY),
                ("o_totalprice", orders::TOTALPRICE),
            ],
            Table::Customer => &[("c_custkey", 0), ("c_acctbal", 16)],
        }
    }

    /// Strings (each a varint length and UTF-8 bytes) after the fixed-width fields.
    pub fn strings(self) -> usize {
        match self {
            Table::Lineitem => 3,
            Table::Orders => 3,
            Table::Customer => 5,
        }
    }
}

/// A LINEITEM row, in the TPC-H column order (which already puts strings last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the TPC-H column names; units are in the struct doc"
)]
pub struct Lineitem<'a> {
    pub l_orderkey: i64,
    pub l_partkey: i64,
    pub l_suppkey: i64,
    pub l_linenumber: i32,
    /// Cents: 17 items are 1700.
    pub l_quantity: i64,
    /// Cents.
    pub l_extendedprice: i64,
    /// Hundredths: 0.04 is 4.
    pub l_discount: i64,
    /// Hundredths.
    pub l_tax: i64,
    pub l_returnflag: u8,
    pub l_linestatus: u8,
    /// Days since 1970-01-01, like the three dates.
    pub l_shipdate: i32,
    pub l_commitdate: i32,
    pub l_receiptdate: i32,
    pub l_shipinstruct: &'a str,
    pub l_shipmode: &'a str,
    pub l_comment: &'a str,
}

/// An ORDERS row: the fixed-width columns first (`o_shippriority` moves up), then the
/// strings in TPC-H order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the TPC-H column names; units are in the struct doc"
)]
pub struct Order<'a> {
    pub o_orderkey: i64,
    pub o_custkey: i64,
    /// `F`, `O` or `P`.
    pub o_orderstatus: u8,
    /// Cents.
    pub o_totalprice: i64,
    /// Days since 1970-01-01.
    pub o_orderdate: i32,
    pub o_shippriority: i32,
    pub o_orderpriority: &'a str,
    pub o_clerk: &'a str,
    pub o_comment: &'a str,
}

/// A CUSTOMER row: the fixed-width columns first, then the strings in TPC-H order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the TPC-H column names; units are in the struct doc"
)]
pub struct Customer<'a> {
    pub c_custkey: i64,
    pub c_nationkey: i64,
    /// Cents (may be negative).
    pub c_acctbal: i64,
    pub c_name: &'a str,
    pub c_address: &'a str,
    pub c_phone: &'a str,
    pub c_mktsegment: &'a str,
    pub c_comment: &'a str,
}

/// Lean access to the fixed-width fields of an encoded [`Lineitem`] row.
///
/// Each accessor reads at a fixed offset. The caller passes a whole row, as
/// [`TableScan`] hands it out (at least [`FIXED_BYTES`](lineitem::FIXED_BYTES) long).
pub mod lineitem {
    /// Offset of `l_orderkey` (`i64`).
    pub const ORDERKEY: usize = 0;
    /// Offset of `l_quantity` (`i64`, cents).
    pub const QUANTITY: usize = 28;
    /// Offset of `l_extendedprice` (`i64`, cents).
    pub const EXTENDEDPRICE: usize = 36;
    /// Offset of `l_discount` (`i64`, hundredths).
    pub const DISCOUNT: usize = 44;
    /// Offset of `l_tax` (`i64`, hundredths).
    pub const TAX: usize = 52;
    /// Offset of `l_returnflag` (`u8`).
    pub const RETURNFLAG: usize = 60;
    /// Offset of `l_linestatus` (`u8`).
    pub const LINESTATUS: usize = 61;
    /// Offset of `l_shipdate` (`i32`, days since 1970-01-01).
    pub const SHIPDATE: usize = 62;
    /// Bytes of the fixed-width fields; the three strings follow.
    pub const FIXED_BYTES: usize = 74;

    /// The little-endian `i64` at `offset` of `row`.
    ///
    /// # Panics
    ///
    /// When `row` is shorter than `offset + 8` (not a whole row).
    #[inline]
    pub fn i64_at(row: &[u8], offset: usize) -> i64 {
        let bytes: [u8; 8] = row[offset..offset + 8].try_into().expect("eight bytes");
        i64::from_le_bytes(bytes)
    }

    /// The little-endian `i32` at `offset` of `row`.
    ///
    /// # Panics
    ///
    /// When `row` is shorter than `offset + 4` (not a whole row).
    #[inline]
    pub fn i32_at(row: &[u8], offset: usize) -> i32 {
        let bytes: [u8; 4] = row[offset..offset + 4].try_into().expect("four bytes");
        i32::from_le_bytes(bytes)
    }
}

/// Lean access to the fixed-width fields of an encoded [`Order`] row: the same accessors
/// as [`lineitem`], at the offsets of docs/FORMAT.md, section 7.
pub mod orders {
    /// Offset of `o_orderkey` (`i64`).
    pub const ORDERKEY: usize = 0;
    /// Offset of `o_custkey` (`i64`).
    pub const CUSTKEY: usize = 8;
    /// Offset of `o_totalprice` (`i64`, cents).
    pub const TOTALPRICE: usize = 17;
    /// Offset of `o_orderdate` (`i32`, days since 1970-01-01).
    pub const ORDERDATE: usize = 25;
    /// Offset of `o_shippriority` (`i32`).
    pub const SHIPPRIORITY: usize = 29;
    /// Bytes of the fixed-width fields; the three strings follow.
    pub const FIXED_BYTES: usize = 33;
}

/// The proleptic Gregorian date `days` after 1970-01-01 as `YYYY-MM-DD` (Howard
/// Hinnant's `civil_from_days`).
pub fn date_text(days: i32) -> String {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day` (Howard
/// Hinnant's `days_from_civil`).
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = y - era * 400;
    let m = month as i32;
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for (y, m, d) in [
            (1970, 1, 1),
            (1992, 1, 1),
            (1995, 3, 15),
            (1998, 12, 1),
            (2000, 2, 29),
        ] {
            assert_eq!(
                date_text(days_from_civil(y, m, d)),
                format!("{y:04}-{m:02}-{d:02}")
            );
        }
    }

    fn row() -> Lineitem<'static> {
        Lineitem {
            l_orderkey: 1,
            l_partkey: 155_190,
            l_suppkey: 7706,
            l_linenumber: 1,
            l_quantity: 1700,
            l_extendedprice: 2_116_823,
            l_discount: 4,
            l_tax: 2,
            l_returnflag: b'N',
            l_linestatus: b'O',
            l_shipdate: 9_568,
            l_commitdate: 9_538,
            l_receiptdate: 9_577,
            l_shipinstruct: "DELIVER IN PERSON",
            l_shipmode: "TRUCK",
            l_comment: "egular courts above the",
        }
    }

    #[test]
    fn lineitem_offsets_match_the_serde_layout() {
        use lineitem::*;
        let bytes = weir_serde_fmt::to_vec(&row()).unwrap();
        assert_eq!(i64_at(&bytes, ORDERKEY), row().l_orderkey);
        assert_eq!(i64_at(&bytes, QUANTITY), 1700);
        assert_eq!(i64_at(&bytes, EXTENDEDPRICE), 2_116_823);
        assert_eq!(i64_at(&bytes, DISCOUNT), 4);
        assert_eq!(i64_at(&bytes, TAX), 2);
        assert_eq!(bytes[RETURNFLAG], b'N');
        assert_eq!(bytes[LINESTATUS], b'O');
        assert_eq!(i32_at(&bytes, SHIPDATE), 9_568);
        assert_eq!(bytes[FIXED_BYTES], 17, "the first string's length follows");
        assert_eq!(record_len(Table::Lineitem, &bytes), Ok(Some(bytes.len())));
    }

    #[test]
    fn format_doc_example() {
        let doc = include_str!("../../../docs/FORMAT.md");
        let section = &doc[doc.find("## 7. TPC-H table files").unwrap()..];
        let example = &section[section.find("```text\n01 00").unwrap() + 8..];
        let hex: Vec<u8> = example
            .lines()
            .take_while(|line| !line.contains('"'))
            .flat_map(|line| line[..28].split_whitespace())
            .map(|byte| u8::from_str_radix(byte, 16).unwrap())
            .collect();
        let bytes = weir_serde_fmt::to_vec(&row()).unwrap();
        assert_eq!(hex, &bytes[..lineitem::FIXED_BYTES]);
        assert_eq!(bytes.len(), 122);
    }

    #[test]
    fn fixed_sizes_match_the_serde_layout() {
        let order = Order {
            o_orderkey: 1,
            o_custkey: 2,
            o_orderstatus: b'O',
            o_totalprice: 3,
            o_orderdate: 4,
            o_shippriority: 5,
            o_orderpriority: "",
            o_clerk: "",
            o_comment: "",
        };
        let customer = Customer {
            c_custkey: 1,
            c_nationkey: 2,
            c_acctbal: -3,
            c_name: "",
            c_address: "",
            c_phone: "",
            c_mktsegment: "",
            c_comment: "",
        };
        let sizes = [
            (Table::Orders, weir_serde_fmt::to_vec(&order).unwrap().len()),
            (
                Table::Customer,
                weir_serde_fmt::to_vec(&customer).unwrap().len(),
            ),
        ];
        for (table, len) in sizes {
            assert_eq!(len, table.fixed_bytes() + table.strings(), "{table:?}");
        }
    }

    #[test]
    fn civil_dates_count_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1996, 3, 13), 9_568);
        assert_eq!(
            days_from_civil(1998, 12, 1) - 90,
            days_from_civil(1998, 9, 2)
        );
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
