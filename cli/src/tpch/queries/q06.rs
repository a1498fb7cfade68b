//! Q6, forecasting revenue change: filters on `lineitem` and one global sum.
//!
//! ```text
//!   lineitem ─year, discount, quantity─▶ aggregate revenue (one group) ─▶ collect
//! ```

use std::path::Path;

use super::Answer;
use crate::tpch::q1::decimal;
use crate::tpch::{days_from_civil, lineitem};
use weir::dataflow::Dataflow;

/// Q6's parameters: the year 1994, discount 0.06 ± 0.01, quantity below 24.
pub const Q6_DATES: (i32, i32) = (days_from_civil(1994, 1, 1), days_from_civil(1995, 1, 1));

/// Whether a line item passes Q6's filters.
#[inline]
pub fn q6_selects(shipdate: i32, discount: i64, quantity: i64) -> bool {
    (Q6_DATES.0..Q6_DATES.1).contains(&shipdate) && (5..=7).contains(&discount) && quantity < 2400
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let sums = lineitem::scan(flow, dir, |line| {
        Ok(
            q6_selects(line.l_shipdate(), line.l_discount(), line.l_quantity())
                .then(|| line.l_extendedprice() * line.l_discount()),
        )
    })
    .key_by(|_| ())
    .aggregate(|revenue| *revenue, |acc, revenue| *acc += revenue)
    .collect();
    Box::new(move || {
        let total: i64 = sums.take().iter().map(|(_, sum)| sum).sum();
        q6_answer(total)
    })
}

/// Q6's answer from its revenue at scale 4.
pub fn q6_answer(revenue: i64) -> Answer {
    Answer::new(&["revenue"], vec![vec![decimal(i128::from(revenue), 4)]])
}
