//! TPC-H Q1 and W2a in exact integers: their aggregators, decimal printing, and the
//! reference answer of Q1 at SF 1.
//!
//! ```text
//!   Q1 value (40 bytes, LE):  qty | price | price*(100-disc) | price*(100-disc)*(100+tax) | disc
//!   Q1 accumulator (64 bytes, LE):
//!     sum_qty i64 | sum_base_price i64 | sum_disc_price i128 | sum_charge i128 | sum_disc i64 | count i64
//!   W2a value: l_extendedprice i64;  accumulator: sum i64 | count i64
//! ```
//!
//! Prices are cents (scale 2), discounts and taxes hundredths, so `sum_disc_price` has
//! scale 4 and `sum_charge` scale 6. Those two sums are 128-bit: at scale 6 an `i64`
//! would overflow from about SF 40 on. Every sum is exact; only the averages divide,
//! rounded half away from zero to [`AVG_SCALE`] decimals.

pub use super::decimal::{decimal, quotient, round};
use weir_kernel::hash::Aggregator;

use super::days_from_civil;

/// `l_shipdate <= date '1998-12-01' - interval '90' day`, in days since 1970-01-01.
pub const Q1_SHIPDATE_MAX: i32 = days_from_civil(1998, 12, 1) - 90;

/// Decimals printed for averages.
pub const AVG_SCALE: u32 = 8;

/// Bytes of a Q1 value.
pub const Q1_VALUE_BYTES: usize = 40;

/// The sums of one Q1 group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Q1Sums {
    /// `sum(l_quantity)`, scale 2.
    pub qty: i64,
    /// `sum(l_extendedprice)`, scale 2.
    pub base_price: i64,
    /// `sum(l_extendedprice * (1 - l_discount))`, scale 4.
    pub disc_price: i128,
    /// `sum(l_extendedprice * (1 - l_discount) * (1 + l_tax))`, scale 6.
    pub charge: i128,
    /// `sum(l_discount)`, scale 2.
    pub disc: i64,
    /// `count(*)`.
    pub count: i64,
}

impl Q1Sums {
    /// The sums of one row, from its quantity, price, discount and tax (all scale 2).
    pub fn of_row(qty: i64, price: i64, discount: i64, tax: i64) -> Q1Sums {
        let disc_price = i128::from(price) * (100 - i128::from(discount));
        Q1Sums {
            qty,
            base_price: price,
            disc_price,
            charge: disc_price * (100 + i128::from(tax)),
            disc: discount,
            count: 1,
        }
    }

    /// Adds `other`'s sums to these.
    pub fn add(&mut self, other: &Q1Sums) {
        self.qty = self.qty.wrapping_add(other.qty);
        self.base_price = self.base_price.wrapping_add(other.base_price);
        self.disc_price = self.disc_price.wrapping_add(other.disc_price);
        self.charge = self.charge.wrapping_add(other.charge);
        self.disc = self.disc.wrapping_add(other.disc);
        self.count = self.count.wrapping_add(other.count);
    }

    /// Decodes a Q1 accumulator.
    ///
    /// # Panics
    ///
    /// When `acc` is not 64 bytes.
    pub fn from_acc(acc: &[u8]) -> Q1Sums {
        assert_eq!(acc.len(), 64, "a Q1 accumulator");
        Q1Sums {
            qty: i64_at(acc, 0),
            base_price: i64_at(acc, 8),
            disc_price: i128_at(acc, 16),
            charge: i128_at(acc, 32),
            disc: i64_at(acc, 48),
            count: i64_at(acc, 56),
        }
    }

    fn write_acc(&self, acc: &mut [u8]) {
        acc[0..8].copy_from_slice(&self.qty.to_le_bytes());
        acc[8..16].copy_from_slice(&self.base_price.to_le_bytes());
        acc[16..32].copy_from_slice(&self.disc_price.to_le_bytes());
        acc[32..48].copy_from_slice(&self.charge.to_le_bytes());
        acc[48..56].copy_from_slice(&self.disc.to_le_bytes());
        acc[56..64].copy_from_slice(&self.count.to_le_bytes());
    }

    /// The row's contribution as a Q1 value.
    pub fn value_of_row(qty: i64, price: i64, discount: i64, tax: i64) -> [u8; Q1_VALUE_BYTES] {
        // Wrapping: a corrupt row must not panic; generated rows are far from the bounds
        // (a price below 2^24 cents times 100 times 110).
        let disc_price = price.wrapping_mul(100i64.wrapping_sub(discount));
        let charge = disc_price.wrapping_mul(100i64.wrapping_add(tax));
        let mut value = [0u8; Q1_VALUE_BYTES];
        for (i, field) in [qty, price, disc_price, charge, discount]
            .iter()
            .enumerate()
        {
            value[i * 8..i * 8 + 8].copy_from_slice(&field.to_le_bytes());
        }
        value
    }

    /// The averages: `avg_qty`, `avg_price` and `avg_disc`, at [`AVG_SCALE`] (zeros for
    /// no rows).
    pub fn averages(&self) -> [i128; 3] {
        if self.count <= 0 {
            return [0; 3];
        }
        [self.qty, self.base_price, self.disc]
            .map(|sum| quotient(i128::from(sum), 2, self.count, AVG_SCALE))
    }
}

#[inline]
fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

#[inline]
fn i128_at(bytes: &[u8], at: usize) -> i128 {
    i128::from_le_bytes(bytes[at..at + 16].try_into().expect("sixteen bytes"))
}

/// Q1's aggregator over [`Q1Sums::value_of_row`] values: its sums, in one 64-byte
/// accumulator, updated in place with straight-line code.
#[derive(Debug, Clone, Copy, Default)]
pub struct Q1Aggregator;

impl Q1Aggregator {
    #[inline]
    fn of_value(value: &[u8]) -> Q1Sums {
        Q1Sums {
            qty: i64_at(value, 0),
            base_price: i64_at(value, 8),
            disc_price: i128::from(i64_at(value, 16)),
            charge: i128::from(i64_at(value, 24)),
            disc: i64_at(value, 32),
            count: 1,
        }
    }
}

impl Aggregator for Q1Aggregator {
    fn accumulator_size(&self) -> Option<usize> {
        Some(64)
    }

    fn init(&self, value: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + 64, 0);
        Q1Aggregator::of_value(value).write_acc(&mut out[at..]);
    }

    #[inline]
    fn update(&self, acc: &mut [u8], value: &[u8]) {
        let mut sums = Q1Sums::from_acc(acc);
        sums.add(&Q1Aggregator::of_value(value));
        sums.write_acc(acc);
    }

    fn merge(&self, acc: &mut [u8], other: &[u8]) {
        let mut sums = Q1Sums::from_acc(acc);
        sums.add(&Q1Sums::from_acc(other));
        sums.write_acc(acc);
    }
}

/// W2a's aggregator: `SUM` of the `i64` value and `COUNT(*)`, a 16-byte accumulator.
#[derive(Debug, Clone, Copy, Default)]
pub struct SumCount;

impl Aggregator for SumCount {
    fn accumulator_size(&self) -> Option<usize> {
        Some(16)
    }

    fn init(&self, value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&value[..8]);
        out.extend_from_slice(&1i64.to_le_bytes());
    }

    #[inline]
    fn update(&self, acc: &mut [u8], value: &[u8]) {
        let sum = i64_at(acc, 0).wrapping_add(i64_at(value, 0));
        let count = i64_at(acc, 8).wrapping_add(1);
        acc[..8].copy_from_slice(&sum.to_le_bytes());
        acc[8..16].copy_from_slice(&count.to_le_bytes());
    }

    fn merge(&self, acc: &mut [u8], other: &[u8]) {
        let sum = i64_at(acc, 0).wrapping_add(i64_at(other, 0));
        let count = i64_at(acc, 8).wrapping_add(i64_at(other, 8));
        acc[..8].copy_from_slice(&sum.to_le_bytes());
        acc[8..16].copy_from_slice(&count.to_le_bytes());
    }
}

/// The CSV header of Q1's output, in the specification's column order.
pub const Q1_CSV_HEADER: &str = "l_returnflag,l_linestatus,sum_qty,sum_base_price,sum_disc_price,\
                                 sum_charge,avg_qty,avg_price,avg_disc,count_order";

/// One Q1 output row as CSV (no newline).
pub fn q1_csv_row(returnflag: u8, linestatus: u8, sums: &Q1Sums) -> String {
    let [avg_qty, avg_price, avg_disc] = sums.averages();
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        char::from(returnflag),
        char::from(linestatus),
        decimal(i128::from(sums.qty), 2),
        decimal(i128::from(sums.base_price), 2),
        decimal(sums.disc_price, 4),
        decimal(sums.charge, 6),
        decimal(avg_qty, AVG_SCALE),
        decimal(avg_price, AVG_SCALE),
        decimal(avg_disc, AVG_SCALE),
        sums.count
    )
}

/// Checks Q1's groups against the answer `tpchgen` ships for SF 1 (derived from the
/// official TPC-H tools): every column rounded half away from zero to the answer's two
/// decimals must equal it as text, and the counts exactly. Returns the mismatches, one
/// line each (empty: the answer is the reference).
pub fn check_sf1_reference(groups: &[(u8, u8, Q1Sums)]) -> Vec<String> {
    let answer = tpchgen::q_and_a::answers_sf1::Q1_ANSWER;
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.next(); // the column names
    let expected: Vec<Vec<&str>> = lines
        .map(|line| line.split('|').map(str::trim).collect())
        .collect();
    let mut problems = Vec::new();
    if expected.len() != groups.len() {
        problems.push(format!(
            "{} groups, the reference has {}",
            groups.len(),
            expected.len()
        ));
    }
    for ((flag, status, sums), reference) in groups.iter().zip(&expected) {
        let [avg_qty, avg_price, avg_disc] = sums.averages();
        let ours = [
            char::from(*flag).to_string(),
            char::from(*status).to_string(),
            decimal(i128::from(sums.qty), 2),
            decimal(i128::from(sums.base_price), 2),
            decimal(round(sums.disc_price, 4, 2), 2),
            decimal(round(sums.charge, 6, 2), 2),
            decimal(round(avg_qty, AVG_SCALE, 2), 2),
            decimal(round(avg_price, AVG_SCALE, 2), 2),
            decimal(round(avg_disc, AVG_SCALE, 2), 2),
            sums.count.to_string(),
        ];
        if ours
            .iter()
            .map(String::as_str)
            .ne(reference.iter().copied())
        {
            problems.push(format!(
                "group {}{}: {} differs from the reference {}",
                char::from(*flag),
                char::from(*status),
                ours.join("|"),
                reference.join("|")
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_exactly() {
        assert_eq!(decimal(123_456, 2), "1234.56");
        assert_eq!(decimal(-5, 2), "-0.05");
        assert_eq!(decimal(7, 0), "7");
        assert_eq!(decimal(1, 6), "0.000001");
    }

    #[test]
    fn averages_and_rounding_go_half_away_from_zero() {
        assert_eq!(quotient(5, 0, 2, 0), 3);
        assert_eq!(quotient(-5, 0, 2, 0), -3);
        assert_eq!(quotient(100, 2, 3, 4), 3333);
        assert_eq!(round(12_345, 3, 2), 1235);
        assert_eq!(round(-12_345, 3, 2), -1235);
        assert_eq!(round(12_344, 3, 2), 1234);
    }

    #[test]
    fn q1_aggregator_sums_rows_and_merges_partials() {
        let rows = [(1700, 2_116_823, 4, 2), (3600, 4_598_316, 9, 6)];
        let mut acc = Vec::new();
        Q1Aggregator.init(&Q1Sums::value_of_row(1700, 2_116_823, 4, 2), &mut acc);
        let mut other = Vec::new();
        Q1Aggregator.init(&Q1Sums::value_of_row(3600, 4_598_316, 9, 6), &mut other);
        Q1Aggregator.merge(&mut acc, &other);
        Q1Aggregator.update(&mut acc, &Q1Sums::value_of_row(3600, 4_598_316, 9, 6));
        let mut expected = Q1Sums::default();
        for (qty, price, disc, tax) in [rows[0], rows[1], rows[1]] {
            expected.add(&Q1Sums::of_row(qty, price, disc, tax));
        }
        assert_eq!(Q1Sums::from_acc(&acc), expected);
        assert_eq!(expected.count, 3);
    }

    #[test]
    fn sum_count_sums_and_counts() {
        let mut acc = Vec::new();
        SumCount.init(&5i64.to_le_bytes(), &mut acc);
        SumCount.update(&mut acc, &7i64.to_le_bytes());
        let other = [3i64.to_le_bytes(), 2i64.to_le_bytes()].concat();
        SumCount.merge(&mut acc, &other);
        assert_eq!((i64_at(&acc, 0), i64_at(&acc, 8)), (15, 4));
    }

    #[test]
    fn the_reference_rejects_a_wrong_answer() {
        let problems = check_sf1_reference(&[(b'A', b'F', Q1Sums::default())]);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn the_ship_date_bound_is_september_2_1998() {
        assert_eq!(Q1_SHIPDATE_MAX, days_from_civil(1998, 9, 2));
    }
}
