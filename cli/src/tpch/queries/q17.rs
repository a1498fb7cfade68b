//! Q17, small-quantity-order revenue: the yearly revenue lost on small orders of one
//! brand and container, "small" meaning under a fifth of the part's average quantity.
//!
//! ```text
//!   part ─brand, container─▶ broadcast ─┐
//!   lineitem ──────────────────▶ join(partkey) ─▶ aggregate by partkey: its lines
//!     ─▶ per part: the price of lines under 0.2 × its average quantity
//!     ─▶ aggregate (one group) ─▶ collect ─▶ / 7
//! ```
//!
//! The correlated subquery (each part's average) is decorrelated into the per-part
//! aggregation, which holds the part's few lines (about 30 each).

use std::path::Path;

use super::Answer;
use crate::tpch::q1::{decimal, quotient};
use crate::tpch::{lineitem, part};
use weir::dataflow::Dataflow;

const BRAND: &str = "Brand#23";
const CONTAINER: &str = "MED BOX";

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let parts = part::scan(flow, dir, |p| {
        Ok((p.p_brand()? == BRAND && p.p_container()? == CONTAINER).then(|| p.p_partkey()))
    })
    .key_by(|partkey| *partkey);
    let small = lineitem::scan(flow, dir, |l| {
        Ok(Some((l.l_partkey(), l.l_quantity(), l.l_extendedprice())))
    })
    .key_by(|(partkey, _, _)| *partkey)
    .broadcast_join(parts)
    .key_by(|((partkey, _, _), _)| *partkey)
    .aggregate(
        |((_, quantity, price), _)| vec![(*quantity, *price)],
        |a, b| a.extend(b),
    )
    .map(|(_, lines)| {
        let count = lines.len() as i128;
        let total: i128 = lines.iter().map(|(q, _)| i128::from(*q)).sum();
        // quantity < 0.2 × total / count  ⇔  5 × quantity × count < total
        lines
            .iter()
            .filter(|(q, _)| 5 * i128::from(*q) * count < total)
            .map(|(_, price)| i128::from(*price))
            .sum::<i128>()
    })
    .key_by(|_| ())
    .aggregate(|price| *price, |a, b| *a += b)
    .collect();
    Box::new(move || {
        let total: i128 = small.take().into_iter().map(|(_, sum)| sum).sum();
        Answer::new(
            &["avg_yearly"],
            vec![vec![decimal(quotient(total, 2, 7, 6), 6)]],
        )
    })
}
