//! `Aggregator`: what a hash aggregation computes per group, as bytes in and bytes out.
//!
//! ```text
//!   first value of a group ──init──▶ accumulator
//!   next value  ──update──▶ accumulator (in place when fixed-size, new bytes otherwise)
//!   two partial accumulators of one group (after a spill) ──merge──▶ one accumulator
//! ```
//!
//! An accumulator of fixed size lives in the table's record and is updated where it lies.
//! One of variable size (a string, a list) is rebuilt by the general `update_into` /
//! `merge_into`, and the table re-appends the record when its length changes. Because the
//! table spills partial accumulators and merges them later, in an order that depends on the
//! memory budget, `merge` must be associative and commutative up to what the caller
//! considers equal (a list's order, for example, is not kept).
//!
//! Ready-made aggregators for SQL: [`Count`], [`SumI64`], [`MinI64`], [`MaxI64`] (fixed
//! 8-byte little-endian accumulators reading an `i64` at an offset of the value),
//! [`Composite`] (several fixed aggregators side by side: TPC-H Q1's sums and count),
//! and [`ConcatBytes`] (variable: every value of the group, concatenated).

use std::fmt;

/// Per-group accumulation over byte values. See the module documentation.
///
/// An implementation overrides `update` and `merge` when `accumulator_size` is `Some`, and
/// `update_into` and `merge_into` when it is `None`.
pub trait Aggregator: Send + fmt::Debug {
    /// `Some(n)`: every accumulator is `n` bytes and is updated in place; `None`: sizes
    /// vary and updates produce new bytes.
    fn accumulator_size(&self) -> Option<usize>;

    /// Appends the accumulator of a group whose first value is `value` to `out`: exactly
    /// `n` bytes for a fixed size `n`. (`out` may hold other bytes before it: a
    /// [`Composite`] builds its parts' accumulators side by side.)
    fn init(&self, value: &[u8], out: &mut Vec<u8>);

    /// Folds `value` into the fixed-size accumulator `acc`, in place.
    ///
    /// # Panics
    ///
    /// The default panics: a variable-size aggregator is never updated in place.
    fn update(&self, acc: &mut [u8], value: &[u8]) {
        let _ = (acc, value);
        panic!("{self:?} has no in-place update: its accumulators vary in size");
    }

    /// Folds the partial accumulator `other` of the same group into `acc`, in place.
    ///
    /// # Panics
    ///
    /// The default panics: a variable-size aggregator is never merged in place.
    fn merge(&self, acc: &mut [u8], other: &[u8]) {
        let _ = (acc, other);
        panic!("{self:?} has no in-place merge: its accumulators vary in size");
    }

    /// Appends to `out` (empty) the accumulator `acc` with `value` folded in. The default
    /// copies `acc` and updates the copy in place.
    fn update_into(&self, acc: &[u8], value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(acc);
        self.update(out, value);
    }

    /// Appends to `out` (empty) the merge of the partial accumulators `acc` and `other`.
    /// The default copies `acc` and merges into the copy in place.
    fn merge_into(&self, acc: &[u8], other: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(acc);
        self.merge(out, other);
    }
}

/// Reads the little-endian `i64` at `offset` of `bytes`.
///
/// # Panics
///
/// When `bytes` is shorter than `offset + 8`.
#[inline]
fn read_i64(bytes: &[u8], offset: usize) -> i64 {
    let word: [u8; 8] = bytes[offset..offset + 8].try_into().expect("eight bytes");
    i64::from_le_bytes(word)
}

#[inline]
fn write_i64(bytes: &mut [u8], value: i64) {
    bytes[..8].copy_from_slice(&value.to_le_bytes());
}

/// Counts the values of a group: a `u64`, little-endian. `COUNT(*)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl Aggregator for Count {
    fn accumulator_size(&self) -> Option<usize> {
        Some(8)
    }

    fn init(&self, _value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&1u64.to_le_bytes());
    }

    fn update(&self, acc: &mut [u8], _value: &[u8]) {
        let count = read_i64(acc, 0).wrapping_add(1);
        write_i64(acc, count);
    }

    fn merge(&self, acc: &mut [u8], other: &[u8]) {
        let count = read_i64(acc, 0).wrapping_add(read_i64(other, 0));
        write_i64(acc, count);
    }
}

/// Defines an aggregator over the `i64` (little-endian) at an offset of each value, whose
/// accumulator is one `i64` combined by `$combine`.
macro_rules! i64_aggregator {
    ($(#[$doc:meta])* $name:ident, $combine:expr) => {
        $(#[$doc])*
        ///
        /// # Panics
        ///
        /// Its methods panic when a value is shorter than `offset + 8` bytes.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name {
            /// Where the `i64` lies in each value.
            pub offset: usize,
        }

        impl Aggregator for $name {
            fn accumulator_size(&self) -> Option<usize> {
                Some(8)
            }

            fn init(&self, value: &[u8], out: &mut Vec<u8>) {
                out.extend_from_slice(&read_i64(value, self.offset).to_le_bytes());
            }

            fn update(&self, acc: &mut [u8], value: &[u8]) {
                let combine: fn(i64, i64) -> i64 = $combine;
                write_i64(acc, combine(read_i64(acc, 0), read_i64(value, self.offset)));
            }

            fn merge(&self, acc: &mut [u8], other: &[u8]) {
                let combine: fn(i64, i64) -> i64 = $combine;
                write_i64(acc, combine(read_i64(acc, 0), read_i64(other, 0)));
            }
        }
    };
}

i64_aggregator!(
    /// Sums an `i64`: `SUM` of integers or of decimals as scaled integers (cents).
    /// Wrapping, so that the result does not depend on the order partial sums are merged
    /// in; a sum that overflows `i64` is the caller's to detect (with a wider type).
    SumI64,
    |a, b| a.wrapping_add(b)
);
i64_aggregator!(
    /// The least `i64`: `MIN`.
    MinI64,
    |a, b| a.min(b)
);
i64_aggregator!(
    /// The greatest `i64`: `MAX`.
    MaxI64,
    |a, b| a.max(b)
);

/// Several fixed-size aggregators over the same values, their accumulators side by side
/// in the order given: `SELECT SUM(a), SUM(b), COUNT(*)` is
/// `Composite::new(vec![Box::new(SumI64 { offset: 0 }), Box::new(SumI64 { offset: 8 }),
/// Box::new(Count)])`.
#[derive(Debug)]
pub struct Composite {
    parts: Vec<(Box<dyn Aggregator>, usize)>,
    size: usize,
}

impl Composite {
    /// Aggregates with every part, each part reading the whole value.
    ///
    /// # Panics
    ///
    /// When a part's accumulator is of variable size: only fixed-size parts compose.
    pub fn new(parts: Vec<Box<dyn Aggregator>>) -> Composite {
        let mut size = 0;
        let parts = parts
            .into_iter()
            .map(|part| {
                let part_size = part
                    .accumulator_size()
                    .unwrap_or_else(|| panic!("composite part {part:?} is not of fixed size"));
                size += part_size;
                (part, part_size)
            })
            .collect();
        Composite { parts, size }
    }
}

impl Aggregator for Composite {
    fn accumulator_size(&self) -> Option<usize> {
        Some(self.size)
    }

    fn init(&self, value: &[u8], out: &mut Vec<u8>) {
        for (part, size) in &self.parts {
            let before = out.len();
            part.init(value, out);
            assert_eq!(
                out.len(),
                before + size,
                "{part:?} broke its accumulator size"
            );
        }
    }

    fn update(&self, acc: &mut [u8], value: &[u8]) {
        let mut acc = acc;
        for (part, size) in &self.parts {
            let (head, tail) = std::mem::take(&mut acc).split_at_mut(*size);
            part.update(head, value);
            acc = tail;
        }
    }

    fn merge(&self, acc: &mut [u8], other: &[u8]) {
        let (mut acc, mut other) = (acc, other);
        for (part, size) in &self.parts {
            let (head, tail) = std::mem::take(&mut acc).split_at_mut(*size);
            let (other_head, other_tail) = other.split_at(*size);
            part.merge(head, other_head);
            (acc, other) = (tail, other_tail);
        }
    }
}

/// Every value of a group, concatenated (in no particular order): a variable-size
/// accumulator, for `ARRAY_AGG` / `STRING_AGG` of fixed-width values or tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConcatBytes;

impl Aggregator for ConcatBytes {
    fn accumulator_size(&self) -> Option<usize> {
        None
    }

    fn init(&self, value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }

    fn update_into(&self, acc: &[u8], value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(acc);
        out.extend_from_slice(value);
    }

    fn merge_into(&self, acc: &[u8], other: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(acc);
        out.extend_from_slice(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(a: i64, b: i64) -> Vec<u8> {
        [a.to_le_bytes(), b.to_le_bytes()].concat()
    }

    fn i64s(acc: &[u8]) -> Vec<i64> {
        acc.chunks(8).map(|c| read_i64(c, 0)).collect()
    }

    #[test]
    fn composite_sums_min_max_and_counts() {
        let aggregator = Composite::new(vec![
            Box::new(SumI64 { offset: 0 }),
            Box::new(MinI64 { offset: 8 }),
            Box::new(MaxI64 { offset: 8 }),
            Box::new(Count),
        ]);
        assert_eq!(aggregator.accumulator_size(), Some(32));
        let mut acc = Vec::new();
        aggregator.init(&value(5, -3), &mut acc);
        aggregator.update(&mut acc, &value(7, 10));
        let mut other = Vec::new();
        aggregator.init(&value(-2, -8), &mut other);
        aggregator.merge(&mut acc, &other);
        assert_eq!(i64s(&acc), vec![10, -8, 10, 3]);
        let mut out = Vec::new();
        aggregator.update_into(&acc, &value(1, 0), &mut out);
        assert_eq!(i64s(&out), vec![11, -8, 10, 4]);
    }

    #[test]
    fn sums_wrap_so_merge_order_does_not_matter() {
        let sum = SumI64 { offset: 0 };
        let mut acc = Vec::new();
        sum.init(&i64::MAX.to_le_bytes(), &mut acc);
        sum.update(&mut acc, &1i64.to_le_bytes());
        assert_eq!(read_i64(&acc, 0), i64::MIN);
    }

    #[test]
    fn concat_builds_new_accumulators() {
        let mut acc = Vec::new();
        ConcatBytes.init(b"ab", &mut acc);
        let mut out = Vec::new();
        ConcatBytes.update_into(&acc, b"c", &mut out);
        let mut merged = Vec::new();
        ConcatBytes.merge_into(&out, b"de", &mut merged);
        assert_eq!(merged, b"abcde");
        assert_eq!(ConcatBytes.accumulator_size(), None);
    }

    #[test]
    #[should_panic(expected = "not of fixed size")]
    fn a_composite_of_variable_parts_is_a_bug() {
        let _ = Composite::new(vec![Box::new(ConcatBytes)]);
    }

    #[test]
    #[should_panic(expected = "no in-place update")]
    fn variable_aggregators_are_not_updated_in_place() {
        ConcatBytes.update(&mut [0; 4], b"x");
    }
}
