//! The eight TPC-H tables, each declared once: its row type (what the generator writes,
//! serde-fmt), a zero-copy row view with an accessor per column, its layout constants and
//! the columns its manifest totals sum.
//!
//! ```text
//!   tpch_table! { Lineitem, LineitemRow, lineitem, "lineitem" { fixed fields } strings { … } }
//!     ├─ struct Lineitem<'a>          the row, for writing and for full decoding
//!     ├─ struct LineitemRow<'a>       a view over the encoded bytes:
//!     │    .l_shipdate() -> i32          fixed-width field: one load at a constant offset
//!     │    .l_comment() -> Result<&str>  string: its varint lengths skipped, bytes borrowed
//!     └─ mod lineitem                 FIXED_BYTES, STRINGS, SUMMED, offset::<column>,
//!                                     scan(flow, dir, |row: LineitemRow| …) -> Stream
//! ```
//!
//! Each row puts its fixed-width fields first and its strings last (docs/FORMAT.md,
//! section 7), so the offsets below are sums of the sizes before each field, computed
//! at compile time from the declaration: nobody maintains them by hand. Decimals are
//! exact integers in hundredths (cents), dates are days since 1970-01-01, one-letter
//! flags are their ASCII byte.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Table;
use super::manifest::SUMS_MAX;
use super::scan::string_len;
use super::source::table;
use weir::dataflow::{Data, Dataflow, Stream};
use weir::error::{Result, WeirError};

/// A column type a row's fixed-width part may hold: read little-endian at an offset.
pub trait Fixed: Copy {
    /// Bytes of the encoded value.
    const SIZE: usize;
    /// The value at the start of `bytes` (at least [`Fixed::SIZE`] long).
    fn read(bytes: &[u8]) -> Self;
    /// The value as one of the manifest's sums.
    fn as_sum(self) -> i64;
}

macro_rules! fixed {
    ($($ty:ty),*) => {$(
        impl Fixed for $ty {
            const SIZE: usize = size_of::<$ty>();
            #[inline]
            fn read(bytes: &[u8]) -> Self {
                let mut le = [0u8; size_of::<$ty>()];
                le.copy_from_slice(&bytes[..size_of::<$ty>()]);
                <$ty>::from_le_bytes(le)
            }
            #[inline]
            fn as_sum(self) -> i64 {
                i64::from(self)
            }
        }
    )*};
}
fixed!(u8, i32, i64);

/// The offset of field `index` given the sizes of all fixed fields in order.
const fn offset_of(sizes: &[usize], index: usize) -> usize {
    let mut at = 0;
    let mut i = 0;
    while i < index {
        at += sizes[i];
        i += 1;
    }
    at
}

/// The string `index` (counting from 0) after the fixed fields of `row`, borrowed.
fn string_at(table: Table, row: &[u8], index: usize) -> Result<&str> {
    let malformed = |what: &str| WeirError::Data {
        message: format!("a malformed {} row: {what}", table.name()),
    };
    let mut at = table.fixed_bytes();
    for i in 0..=index {
        let (len, next) = string_len(row, at)
            .map_err(malformed)?
            .ok_or_else(|| malformed("a string is cut short"))?;
        at = next;
        let len = usize::try_from(len).map_err(|_| malformed("a string is too long"))?;
        let end = at
            .checked_add(len)
            .filter(|end| *end <= row.len())
            .ok_or_else(|| malformed("a string runs past the row"))?;
        if i == index {
            return std::str::from_utf8(&row[at..end])
                .map_err(|_| malformed("a string is not UTF-8"));
        }
        at = end;
    }
    unreachable!("the loop returns at its last pass")
}

macro_rules! tpch_table {
    (
        $(#[$doc:meta])*
        $name:ident, $view:ident, $module:ident, $variant:ident {
            $( $(#[$fdoc:meta])* $field:ident : $ty:ty, )*
        }
        strings { $( $(#[$sdoc:meta])* $string:ident, )* }
        sums { $( $sum:ident ),* }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name<'a> {
            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                $(#[$fdoc])*
                pub $field: $ty,
            )*
            $(
                #[doc = concat!("`", stringify!($string), "`.")]
                $(#[$sdoc])*
                pub $string: &'a str,
            )*
        }

        impl $name<'_> {
            /// The values of the columns the manifest sums ([`Table::summed_columns`]),
            /// zeros after them.
            pub fn summed_values(&self) -> [i64; SUMS_MAX] {
                let mut values = [0; SUMS_MAX];
                let columns = [$( Fixed::as_sum(self.$sum) ),*];
                values[..columns.len()].copy_from_slice(&columns);
                values
            }
        }

        #[doc = concat!("A zero-copy view of an encoded [`", stringify!($name), "`] row: ",
            "fixed-width columns read at their offsets, strings borrowed from the row.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $view<'a> {
            bytes: &'a [u8],
        }

        impl<'a> $view<'a> {
            /// A view of `bytes`, one whole encoded row.
            ///
            /// # Errors
            ///
            /// [`WeirError::Data`] when `bytes` is shorter than the row's fixed fields.
            #[inline]
            pub fn new(bytes: &'a [u8]) -> Result<$view<'a>> {
                if bytes.len() < $module::FIXED_BYTES {
                    return Err(WeirError::Data {
                        message: format!(
                            "a malformed {} row: {} bytes, its fixed fields take {}",
                            stringify!($module),
                            bytes.len(),
                            $module::FIXED_BYTES
                        ),
                    });
                }
                Ok($view { bytes })
            }

            /// The encoded row.
            pub fn bytes(&self) -> &'a [u8] {
                self.bytes
            }

            /// The whole row, decoded and checked by serde-fmt (the strings too).
            ///
            /// # Errors
            ///
            /// [`WeirError::Data`] when the bytes are not a row of this table.
            pub fn decode(&self) -> Result<$name<'a>> {
                weir::serde_fmt::from_slice(self.bytes).map_err(|e| WeirError::Data {
                    message: format!("a malformed {} row: {e}", stringify!($module)),
                })
            }

            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                $(#[$fdoc])*
                #[inline]
                pub fn $field(&self) -> $ty {
                    const AT: usize = $module::offset::$field;
                    <$ty as Fixed>::read(&self.bytes[AT..])
                }
            )*

            $(
                #[doc = concat!("`", stringify!($string), "`, borrowed from the row.")]
                $(#[$sdoc])*
                ///
                /// # Errors
                ///
                /// [`WeirError::Data`] when the row's strings are malformed.
                #[inline]
                pub fn $string(&self) -> Result<&'a str> {
                    string_at(Table::$variant, self.bytes, $module::strings::$string as usize)
                }
            )*
        }

        #[doc = concat!("The layout of [`", stringify!($name), "`] rows and their scan.")]
        pub mod $module {
            use super::*;

            /// The fixed fields' indexes, in order.
            #[allow(non_camel_case_types, dead_code, reason = "the TPC-H column names")]
            enum Field { $( $field, )* }

            /// The strings' indexes, in order.
            #[allow(non_camel_case_types, reason = "the TPC-H column names")]
            pub(super) enum strings { $( $string, )* }

            const SIZES: &[usize] = &[$( <$ty as Fixed>::SIZE ),*];

            /// Each fixed field's offset in the row.
            #[allow(non_upper_case_globals, reason = "the TPC-H column names")]
            pub mod offset {
                use super::*;
                $(
                    #[doc = concat!("Offset of `", stringify!($field), "`.")]
                    pub const $field: usize = offset_of(SIZES, Field::$field as usize);
                )*
            }

            /// Bytes of the fixed-width fields; the strings follow.
            pub const FIXED_BYTES: usize = offset_of(SIZES, SIZES.len());

            /// Strings after the fixed-width fields.
            pub const STRINGS: usize = [$( stringify!($string) ),*].len();

            /// The `i64`-summable columns whose totals the manifest records: name, offset.
            pub const SUMMED: &[(&str, usize)] = &[$( (stringify!($sum), offset::$sum) ),*];

            const _: () = assert!(SUMMED.len() <= SUMS_MAX);

            #[doc = concat!("The rows of the `", stringify!($module), "` file in `dir` as ",
                "views, through `project` (which returns the record or `None` to drop ",
                "the row). See [`table`](super::super::table) for how tasks share the file.")]
            pub fn scan<T: Data>(
                flow: &Dataflow,
                dir: impl Into<PathBuf>,
                project: impl Fn($view<'_>) -> Result<Option<T>> + Send + Sync + 'static,
            ) -> Stream<T> {
                table(flow, dir, Table::$variant, move |row| project($view::new(row)?))
            }
        }
    };
}

tpch_table! {
    /// A LINEITEM row, in the TPC-H column order (which already puts strings last).
    Lineitem, LineitemRow, lineitem, Lineitem {
        l_orderkey: i64,
        l_partkey: i64,
        l_suppkey: i64,
        l_linenumber: i32,
        /// Hundredths: 17 items are 1700.
        l_quantity: i64,
        /// Cents.
        l_extendedprice: i64,
        /// Hundredths: 0.04 is 4.
        l_discount: i64,
        /// Hundredths.
        l_tax: i64,
        /// `A`, `N` or `R`.
        l_returnflag: u8,
        /// `F` or `O`.
        l_linestatus: u8,
        /// Days since 1970-01-01.
        l_shipdate: i32,
        /// Days since 1970-01-01.
        l_commitdate: i32,
        /// Days since 1970-01-01.
        l_receiptdate: i32,
    }
    strings {
        /// How to ship, like `DELIVER IN PERSON`.
        l_shipinstruct,
        /// Like `TRUCK`.
        l_shipmode,
        /// Free text.
        l_comment,
    }
    sums { l_orderkey, l_quantity, l_extendedprice }
}

tpch_table! {
    /// An ORDERS row: the fixed-width columns first (`o_shippriority` moves up), then the
    /// strings in TPC-H order.
    Order, OrderRow, orders, Orders {
        o_orderkey: i64,
        o_custkey: i64,
        /// `F`, `O` or `P`.
        o_orderstatus: u8,
        /// Cents.
        o_totalprice: i64,
        /// Days since 1970-01-01.
        o_orderdate: i32,
        /// Always 0 in generated data.
        o_shippriority: i32,
    }
    strings {
        /// Like `1-URGENT`.
        o_orderpriority,
        /// Like `Clerk#000000951`.
        o_clerk,
        /// Free text.
        o_comment,
    }
    sums { o_orderkey, o_totalprice }
}

tpch_table! {
    /// A CUSTOMER row: the fixed-width columns first, then the strings in TPC-H order.
    Customer, CustomerRow, customer, Customer {
        c_custkey: i64,
        c_nationkey: i64,
        /// Cents (may be negative).
        c_acctbal: i64,
    }
    strings {
        /// Like `Customer#000000001`.
        c_name,
        /// Random text.
        c_address,
        /// Like `25-989-741-2988` (the country code is 10 + the nation key).
        c_phone,
        /// Like `BUILDING`.
        c_mktsegment,
        /// Free text.
        c_comment,
    }
    sums { c_custkey, c_acctbal }
}

tpch_table! {
    /// A PART row: the fixed-width columns first, then the strings in TPC-H order.
    Part, PartRow, part, Part {
        p_partkey: i64,
        /// 1 to 50.
        p_size: i32,
        /// Cents.
        p_retailprice: i64,
    }
    strings {
        /// Five color words, like `goldenrod lavender spring chocolate lace`.
        p_name,
        /// Like `Manufacturer#1`.
        p_mfgr,
        /// Like `Brand#13`.
        p_brand,
        /// Like `PROMO BURNISHED COPPER`.
        p_type,
        /// Like `JUMBO PKG`.
        p_container,
        /// Free text.
        p_comment,
    }
    sums { p_partkey, p_retailprice }
}

tpch_table! {
    /// A SUPPLIER row: the fixed-width columns first, then the strings in TPC-H order.
    Supplier, SupplierRow, supplier, Supplier {
        s_suppkey: i64,
        s_nationkey: i64,
        /// Cents (may be negative).
        s_acctbal: i64,
    }
    strings {
        /// Like `Supplier#000000001`.
        s_name,
        /// Random text.
        s_address,
        /// Like `27-918-335-1736`.
        s_phone,
        /// Free text; some hold `Customer … Complaints` or `Customer … Recommends`.
        s_comment,
    }
    sums { s_suppkey, s_acctbal }
}

tpch_table! {
    /// A PARTSUPP row: the fixed-width columns first, then the comment.
    PartSupp, PartSuppRow, partsupp, PartSupp {
        ps_partkey: i64,
        ps_suppkey: i64,
        /// 1 to 9999.
        ps_availqty: i32,
        /// Cents.
        ps_supplycost: i64,
    }
    strings {
        /// Free text.
        ps_comment,
    }
    sums { ps_partkey, ps_supplycost }
}

tpch_table! {
    /// A NATION row (25 of them at every scale).
    Nation, NationRow, nation, Nation {
        n_nationkey: i64,
        n_regionkey: i64,
    }
    strings {
        /// Like `GERMANY`.
        n_name,
        /// Free text.
        n_comment,
    }
    sums { n_nationkey, n_regionkey }
}

tpch_table! {
    /// A REGION row (5 of them at every scale).
    Region, RegionRow, region, Region {
        r_regionkey: i64,
    }
    strings {
        /// Like `EUROPE`.
        r_name,
        /// Free text.
        r_comment,
    }
    sums { r_regionkey }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_the_declaration() {
        assert_eq!(lineitem::FIXED_BYTES, 74);
        assert_eq!(lineitem::offset::l_quantity, 28);
        assert_eq!(lineitem::offset::l_shipdate, 62);
        assert_eq!(orders::offset::o_totalprice, 17);
        assert_eq!(orders::FIXED_BYTES, 33);
        assert_eq!(customer::FIXED_BYTES, 24);
        assert_eq!(partsupp::offset::ps_supplycost, 20);
        assert_eq!(region::STRINGS, 2);
    }

    #[test]
    fn a_view_reads_what_serde_wrote() {
        let part = Part {
            p_partkey: 7,
            p_size: 31,
            p_retailprice: 90_700,
            p_name: "goldenrod lavender",
            p_mfgr: "Manufacturer#1",
            p_brand: "Brand#13",
            p_type: "PROMO BURNISHED COPPER",
            p_container: "JUMBO PKG",
            p_comment: "ly. slyly ironi",
        };
        let bytes = weir_serde_fmt::to_vec(&part).unwrap();
        let view = PartRow::new(&bytes).unwrap();
        assert_eq!(view.p_partkey(), 7);
        assert_eq!(view.p_size(), 31);
        assert_eq!(view.p_retailprice(), 90_700);
        assert_eq!(view.p_name().unwrap(), "goldenrod lavender");
        assert_eq!(view.p_type().unwrap(), "PROMO BURNISHED COPPER");
        assert_eq!(view.p_comment().unwrap(), "ly. slyly ironi");
        assert_eq!(view.decode().unwrap(), part);
        assert_eq!(part.summed_values(), [7, 90_700, 0]);
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        assert!(RegionRow::new(&[1, 2, 3]).is_err());
        let region = Region {
            r_regionkey: 3,
            r_name: "EUROPE",
            r_comment: "x",
        };
        let mut bytes = weir_serde_fmt::to_vec(&region).unwrap();
        let view = RegionRow::new(&bytes[..10]).unwrap();
        assert!(view.r_name().is_err(), "cut short");
        bytes[9] = 0xff; // inside "EUROPE": not UTF-8
        let view = RegionRow::new(&bytes).unwrap();
        let error = view.r_name().unwrap_err().to_string();
        assert!(
            error.contains("region") && error.contains("UTF-8"),
            "{error}"
        );
        bytes[8] = 0x7f; // a length past the row
        assert!(RegionRow::new(&bytes).unwrap().r_name().is_err());
    }
}
