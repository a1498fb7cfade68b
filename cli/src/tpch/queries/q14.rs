//! Q14, promotion effect: the share of a month's revenue from promotional parts.
//!
//! ```text
//!   lineitem ─month─▶ broadcast ─┐
//!   part ─PROMO?──────────▶ join(partkey) ─▶ aggregate (promo, total) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, revenue};
use crate::tpch::q1::{decimal, quotient};
use crate::tpch::{days_from_civil, lineitem, part};
use weir::dataflow::Dataflow;

const DATES: (i32, i32) = (days_from_civil(1995, 9, 1), days_from_civil(1995, 10, 1));

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let lines = lineitem::scan(flow, dir, |l| {
        Ok((DATES.0..DATES.1)
            .contains(&l.l_shipdate())
            .then(|| (l.l_partkey(), revenue(&l))))
    })
    .key_by(|(partkey, _)| *partkey);
    let sums = part::scan(flow, dir, |p| {
        Ok(Some((p.p_partkey(), p.p_type()?.starts_with("PROMO"))))
    })
    .key_by(|(partkey, _)| *partkey)
    .broadcast_join(lines)
    .key_by(|_| ())
    .aggregate(
        |((_, promo), (_, revenue))| {
            let revenue = i128::from(*revenue);
            (if *promo { revenue } else { 0 }, revenue)
        },
        |a, b| {
            a.0 += b.0;
            a.1 += b.1;
        },
    )
    .collect();
    Box::new(move || {
        let (promo, total) = sums
            .take()
            .into_iter()
            .fold((0, 0), |(p, t), (_, (promo, total))| (p + promo, t + total));
        let total = i64::try_from(total).expect("a month's revenue fits an i64");
        let share = if total == 0 {
            0
        } else {
            quotient(100 * promo, 0, total, 8)
        };
        Answer::new(&["promo_revenue"], vec![vec![decimal(share, 8)]])
    })
}
