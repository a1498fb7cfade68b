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
pub mod decimal;
pub mod generate;
pub mod manifest;
pub mod q1;
pub mod queries;
mod scan;
pub mod schema;
pub mod source;

pub use block::table_rows;
pub use decimal::Decimal;
pub use generate::{check_scale, generate_tables};
pub use scan::{TableScan, chunk_share, record_len};
pub use schema::{
    Customer, CustomerRow, Lineitem, LineitemRow, Nation, NationRow, Order, OrderRow, Part,
    PartRow, PartSupp, PartSuppRow, Region, RegionRow, Supplier, SupplierRow, customer, lineitem,
    nation, orders, part, partsupp, region, supplier,
};
pub use source::table;

use serde::{Deserialize, Serialize};

/// The first eight bytes of every table file.
pub const MAGIC: [u8; 8] = *b"WEIRTPCH";

/// The version of the table files and their manifest; a reader rejects any other. Version
/// 1 had no blocks and no checksums; version 2 brought the blocks of [`block`]; version 3
/// adds the manifest's per-chunk totals, which let a scan split a file among tasks;
/// version 4 writes all eight TPC-H tables (three before).
pub const FORMAT_VERSION: u32 = 4;

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

/// The tables `weir gen tpch` writes, each declared in [`schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// LINEITEM, rows [`Lineitem`].
    Lineitem,
    /// ORDERS, rows [`Order`].
    Orders,
    /// CUSTOMER, rows [`Customer`].
    Customer,
    /// PART, rows [`Part`].
    Part,
    /// SUPPLIER, rows [`Supplier`].
    Supplier,
    /// PARTSUPP, rows [`PartSupp`].
    PartSupp,
    /// NATION, rows [`Nation`].
    Nation,
    /// REGION, rows [`Region`].
    Region,
}

impl Table {
    /// Every table, in the order they are written.
    pub const ALL: [Table; 8] = [
        Table::Lineitem,
        Table::Orders,
        Table::Customer,
        Table::Part,
        Table::Supplier,
        Table::PartSupp,
        Table::Nation,
        Table::Region,
    ];

    /// The table's name, which is also its file name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Lineitem => "lineitem",
            Table::Orders => "orders",
            Table::Customer => "customer",
            Table::Part => "part",
            Table::Supplier => "supplier",
            Table::PartSupp => "partsupp",
            Table::Nation => "nation",
            Table::Region => "region",
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
            Table::Customer => customer::FIXED_BYTES,
            Table::Part => part::FIXED_BYTES,
            Table::Supplier => supplier::FIXED_BYTES,
            Table::PartSupp => partsupp::FIXED_BYTES,
            Table::Nation => nation::FIXED_BYTES,
            Table::Region => region::FIXED_BYTES,
        }
    }

    /// The `i64` columns whose totals the manifest records and every scan checks: name
    /// and offset in the row.
    pub fn summed_columns(self) -> &'static [(&'static str, usize)] {
        match self {
            Table::Lineitem => lineitem::SUMMED,
            Table::Orders => orders::SUMMED,
            Table::Customer => customer::SUMMED,
            Table::Part => part::SUMMED,
            Table::Supplier => supplier::SUMMED,
            Table::PartSupp => partsupp::SUMMED,
            Table::Nation => nation::SUMMED,
            Table::Region => region::SUMMED,
        }
    }

    /// Strings (each a varint length and UTF-8 bytes) after the fixed-width fields.
    pub fn strings(self) -> usize {
        match self {
            Table::Lineitem => lineitem::STRINGS,
            Table::Orders => orders::STRINGS,
            Table::Customer => customer::STRINGS,
            Table::Part => part::STRINGS,
            Table::Supplier => supplier::STRINGS,
            Table::PartSupp => partsupp::STRINGS,
            Table::Nation => nation::STRINGS,
            Table::Region => region::STRINGS,
        }
    }
}

/// The year, month and day of the proleptic Gregorian date `days` after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub const fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year as i32, month as u32, day as u32)
}

/// The year of the date `days` after 1970-01-01.
pub const fn year_of(days: i32) -> i32 {
    civil_from_days(days).0
}

/// The proleptic Gregorian date `days` after 1970-01-01 as `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    let (year, month, day) = civil_from_days(days);
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
        let bytes = weir_serde_fmt::to_vec(&row()).unwrap();
        let view = LineitemRow::new(&bytes).unwrap();
        assert_eq!(view.l_orderkey(), row().l_orderkey);
        assert_eq!(view.l_partkey(), 155_190);
        assert_eq!(view.l_suppkey(), 7706);
        assert_eq!(view.l_linenumber(), 1);
        assert_eq!(view.l_quantity(), 1700);
        assert_eq!(view.l_extendedprice(), 2_116_823);
        assert_eq!(view.l_discount(), 4);
        assert_eq!(view.l_tax(), 2);
        assert_eq!(view.l_returnflag(), b'N');
        assert_eq!(view.l_linestatus(), b'O');
        assert_eq!(view.l_shipdate(), 9_568);
        assert_eq!(view.l_commitdate(), 9_538);
        assert_eq!(view.l_receiptdate(), 9_577);
        assert_eq!(view.l_shipinstruct().unwrap(), "DELIVER IN PERSON");
        assert_eq!(view.l_shipmode().unwrap(), "TRUCK");
        assert_eq!(view.l_comment().unwrap(), "egular courts above the");
        assert_eq!(view.decode().unwrap(), row());
        assert_eq!(
            bytes[lineitem::FIXED_BYTES],
            17,
            "the first string's length follows"
        );
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
