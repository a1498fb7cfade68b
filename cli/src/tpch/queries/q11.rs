//! Q11, important stock identification: the parts whose stock held by German suppliers
//! is worth more than a fraction of all of it.
//!
//! ```text
//!   supplier ⋈ nation GERMANY ─▶ broadcast ─┐
//!   partsupp ─────────────────────▶ join(suppkey) ─▶ aggregate by partkey: value ─┐
//!     (the same again) ─▶ aggregate (one group): total ─▶ broadcast ─▶ join(unit) ─▶ value > total / 10,000
//!     ─▶ top (value desc) ─▶ collect
//! ```
//!
//! The total (a scalar subquery) is computed in the dataflow and joined to every part's
//! value on the unit key.

use std::path::Path;

use super::{Answer, top};
use crate::tpch::q1::decimal;
use crate::tpch::{partsupp, supplier};
use weir::dataflow::{Dataflow, Stream};
use weir::serde_fmt::Descending;

const NATION: &str = "GERMANY";
/// The fraction: a part's value must exceed the total divided by this.
const FRACTION_DIVISOR: i128 = 10_000;

/// Each part's stock value with German suppliers (cents × units), by partkey.
fn values(flow: &Dataflow, dir: &Path) -> Stream<(i64, i128)> {
    let germany = super::nation_named(flow, dir, NATION);
    let suppliers = supplier::scan(flow, dir, |s| Ok(Some((s.s_suppkey(), s.s_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(germany)
        .map(|((suppkey, _), _)| suppkey)
        .key_by(|suppkey| *suppkey);
    partsupp::scan(flow, dir, |ps| {
        let value = i128::from(ps.ps_supplycost()) * i128::from(ps.ps_availqty());
        Ok(Some((ps.ps_suppkey(), ps.ps_partkey(), value)))
    })
    .key_by(|(suppkey, _, _)| *suppkey)
    .broadcast_join(suppliers)
    .key_by(|((_, partkey, _), _)| *partkey)
    .aggregate(|((_, _, value), _)| *value, |a, b| *a += b)
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let total = values(flow, dir)
        .key_by(|_| ())
        .aggregate(|(_, value)| *value, |a, b| *a += b)
        .key_by(|_| ());
    let important = values(flow, dir)
        .key_by(|_| ())
        .broadcast_join(total)
        .filter(|((_, value), (_, total))| *value * FRACTION_DIVISOR > *total)
        .map(|(part, _)| part);
    let result = top(important, |(_, value)| Descending(*value), None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(partkey, value)| vec![partkey.to_string(), decimal(value, 2)])
            .collect();
        Answer::new(&["ps_partkey", "value"], rows)
    })
}
