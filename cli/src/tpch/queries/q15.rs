//! Q15, top supplier: the suppliers with the most revenue in a quarter.
//!
//! ```text
//!   lineitem ─quarter─▶ aggregate by suppkey: revenue ─▶ fold per task: the top revenue
//!     and its suppliers ─▶ gather ─▶ fold: the top of the tops ─▶ flat_map suppliers ─▶ broadcast ─┐
//!   supplier ─────────────────────────────────────────────────────────────────▶ join(suppkey)
//!     ─▶ top (suppkey) ─▶ collect
//! ```
//!
//! The view and its `max` (a scalar subquery) are the per-task folds: each task keeps
//! only the suppliers tied at its highest revenue.

use std::path::Path;

use super::{Answer, revenue, top};
use crate::tpch::q1::decimal;
use crate::tpch::{days_from_civil, lineitem, supplier};
use weir::dataflow::Dataflow;

const DATES: (i32, i32) = (days_from_civil(1996, 1, 1), days_from_civil(1996, 4, 1));

/// The highest revenue seen and the suppliers that have it.
type Best = (i128, Vec<i64>);

/// Folds a supplier's revenue into the best so far.
fn keep_best(best: &mut Best, (suppkey, revenue): (i64, i128)) {
    if revenue > best.0 || best.1.is_empty() {
        *best = (revenue, vec![suppkey]);
    } else if revenue == best.0 {
        best.1.push(suppkey);
    }
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let best = lineitem::scan(flow, dir, |l| {
        Ok((DATES.0..DATES.1)
            .contains(&l.l_shipdate())
            .then(|| (l.l_suppkey(), revenue(&l))))
    })
    .key_by(|(suppkey, _)| *suppkey)
    .aggregate(|(_, revenue)| i128::from(*revenue), |a, b| *a += b)
    .fold(|_| Best::default(), keep_best, |best| best)
    .gather()
    .fold(
        |_| Best::default(),
        |best, (revenue, suppkeys)| {
            for suppkey in suppkeys {
                keep_best(best, (suppkey, revenue));
            }
        },
        |best| best,
    )
    .flat_map(|(revenue, suppkeys)| {
        suppkeys
            .into_iter()
            .map(move |s| (s, revenue))
            .collect::<Vec<_>>()
    })
    .key_by(|(suppkey, _)| *suppkey);
    let rows = supplier::scan(flow, dir, |s| {
        Ok(Some((
            s.s_suppkey(),
            s.s_name()?.to_owned(),
            s.s_address()?.to_owned(),
            s.s_phone()?.to_owned(),
        )))
    })
    .key_by(|(suppkey, _, _, _)| *suppkey)
    .broadcast_join(best);
    let result = top(rows, |((suppkey, _, _, _), _)| *suppkey, None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|((suppkey, name, address, phone), (_, revenue))| {
                vec![
                    suppkey.to_string(),
                    name,
                    address,
                    phone,
                    decimal(revenue, 4),
                ]
            })
            .collect();
        Answer::new(
            &[
                "s_suppkey",
                "s_name",
                "s_address",
                "s_phone",
                "total_revenue",
            ],
            rows,
        )
    })
}
