//! Exact decimals as TPC-H needs them: an integer and a scale (the digits after the
//! point), printed, divided and rounded exactly. The tables hold money in cents (scale
//! 2), discounts and taxes in hundredths; a revenue `price × (100 − discount)` is at
//! scale 4, and so on: multiplying adds scales, and [`Decimal`] carries the scale with
//! the value so no one tracks it by hand.

use std::fmt;

/// An exact decimal: `value / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits, as an integer: 12.05 at scale 2 is 1205.
    pub value: i128,
    /// Digits after the point.
    pub scale: u32,
}

impl Decimal {
    /// `value` at `scale`: `Decimal::new(1205, 2)` is 12.05.
    pub const fn new(value: i128, scale: u32) -> Decimal {
        Decimal { value, scale }
    }

    /// Cents (scale 2), as the tables hold money.
    pub const fn cents(cents: i64) -> Decimal {
        Decimal::new(cents as i128, 2)
    }

    /// The exact product: scales add.
    pub const fn times(self, other: Decimal) -> Decimal {
        Decimal::new(self.value * other.value, self.scale + other.scale)
    }

    /// `self / count` at `scale` (at least `self.scale`), rounded half away from zero.
    ///
    /// # Panics
    ///
    /// When `count` is not positive or `scale < self.scale`.
    pub fn divided(self, count: i64, scale: u32) -> Decimal {
        Decimal::new(quotient(self.value, self.scale, count, scale), scale)
    }

    /// Rounded half away from zero to `to` digits (at most `self.scale`).
    ///
    /// # Panics
    ///
    /// When `to > self.scale`.
    pub fn rounded(self, to: u32) -> Decimal {
        Decimal::new(round(self.value, self.scale, to), to)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&decimal(self.value, self.scale))
    }
}

/// `value` (a decimal with `scale` digits after the point) as text: `-12.0500`.
pub fn decimal(value: i128, scale: u32) -> String {
    let unit = 10u128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{magnitude}");
    }
    let (whole, fraction) = (magnitude / unit, magnitude % unit);
    format!("{sign}{whole}.{fraction:0width$}", width = scale as usize)
}

/// `sum / count` for a sum of scale `sum_scale`, at scale `scale` (at least
/// `sum_scale`), rounded half away from zero.
///
/// # Panics
///
/// When `count` is not positive or `scale < sum_scale`.
pub fn quotient(sum: i128, sum_scale: u32, count: i64, scale: u32) -> i128 {
    assert!(
        count > 0 && scale >= sum_scale,
        "an average of {count} values"
    );
    let numerator = sum.unsigned_abs() * 10u128.pow(scale - sum_scale);
    let count = count as u128;
    let rounded = (2 * numerator + count) / (2 * count);
    let rounded = rounded as i128;
    if sum < 0 { -rounded } else { rounded }
}

/// `value` of scale `scale` rounded half away from zero to scale `to` (at most `scale`).
///
/// # Panics
///
/// When `to > scale`.
pub fn round(value: i128, scale: u32, to: u32) -> i128 {
    assert!(to <= scale, "rounding scale {scale} up to {to}");
    let unit = 10u128.pow(scale - to);
    let rounded = ((2 * value.unsigned_abs() + unit) / (2 * unit)) as i128;
    if value < 0 { -rounded } else { rounded }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_multiply_divide_and_round_exactly() {
        let price = Decimal::cents(2_116_823);
        let revenue = price.times(Decimal::new(96, 2));
        assert_eq!(revenue.to_string(), "20321.5008");
        assert_eq!(revenue.rounded(2).to_string(), "20321.50");
        assert_eq!(Decimal::new(-5, 2).to_string(), "-0.05");
        assert_eq!(Decimal::new(-15, 1).rounded(0).to_string(), "-2");
        assert_eq!(Decimal::cents(1000).divided(3, 4).to_string(), "3.3333");
        assert_eq!(Decimal::new(7, 0).to_string(), "7");
    }
}
