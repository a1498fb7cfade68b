//! Q1, the pricing summary report: `lineitem` up to a ship date, eight sums and averages
//! per return flag and line status.
//!
//! ```text
//!   lineitem ─shipdate ≤ 1998-09-02─▶ key_by(flag, status) ─aggregate sums─▶ collect
//! ```

use std::path::Path;

use super::Answer;
use crate::tpch::lineitem;
use crate::tpch::q1::{AVG_SCALE, Q1_SHIPDATE_MAX, Q1Sums, decimal};
use weir::dataflow::{Collected, Dataflow, Stream};

/// Q1's groups: `lineitem` up to its ship date, aggregated by return flag and line
/// status (one record per group, unordered).
pub fn q1_groups(flow: &Dataflow, dir: &Path) -> Stream<((u8, u8), Q1Sums)> {
    lineitem::scan(flow, dir, |line| {
        Ok((line.l_shipdate() <= Q1_SHIPDATE_MAX).then(|| {
            let sums = Q1Sums::of_row(
                line.l_quantity(),
                line.l_extendedprice(),
                line.l_discount(),
                line.l_tax(),
            );
            ((line.l_returnflag(), line.l_linestatus()), sums)
        }))
    })
    .key_by(|(group, _)| *group)
    .aggregate(|(_, sums)| *sums, |acc, sums| acc.add(&sums))
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let groups: Collected<((u8, u8), Q1Sums)> = q1_groups(flow, dir).collect();
    Box::new(move || {
        let mut groups = groups.take();
        groups.sort_by_key(|(group, _)| *group);
        q1_answer(&groups)
    })
}

/// Q1's answer from its groups (sorted by flag and status).
pub fn q1_answer(groups: &[((u8, u8), Q1Sums)]) -> Answer {
    let rows = groups
        .iter()
        .map(|((flag, status), sums)| {
            let [avg_qty, avg_price, avg_disc] = sums.averages();
            vec![
                char::from(*flag).to_string(),
                char::from(*status).to_string(),
                decimal(i128::from(sums.qty), 2),
                decimal(i128::from(sums.base_price), 2),
                decimal(sums.disc_price, 4),
                decimal(sums.charge, 6),
                decimal(avg_qty, AVG_SCALE),
                decimal(avg_price, AVG_SCALE),
                decimal(avg_disc, AVG_SCALE),
                sums.count.to_string(),
            ]
        })
        .collect();
    Answer::new(
        &[
            "l_returnflag",
            "l_linestatus",
            "sum_qty",
            "sum_base_price",
            "sum_disc_price",
            "sum_charge",
            "avg_qty",
            "avg_price",
            "avg_disc",
            "count_order",
        ],
        rows,
    )
}
