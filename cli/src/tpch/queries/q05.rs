//! Q5, local supplier volume: the revenue of a year's orders whose customer and supplier
//! are of the same Asian nation, per nation. Every join is a broadcast join: lineitem
//! is probed where it is scanned, never shuffled.
//!
//! ```text
//!   nation ⋈ region ASIA ─▶ broadcast ─┐
//!   customer ─────────────────────▶ join(nationkey) ─▶ broadcast ─┐
//!   orders ─1994─────────────────────────────────────────▶ join(custkey) ─▶ broadcast ─┐
//!   lineitem ───────────────────────────────────────────────────────────▶ join(orderkey) ─┐
//!   supplier ─▶ broadcast ──────────────────────────────▶ join(suppkey), same nation ◀────┘
//!     ─▶ aggregate by nation ─▶ top (revenue) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, region_nations, revenue, top};
use crate::tpch::q1::decimal;
use crate::tpch::{customer, days_from_civil, lineitem, orders, supplier};
use weir::dataflow::Dataflow;
use weir::serde_fmt::Descending;

const DATES: (i32, i32) = (days_from_civil(1994, 1, 1), days_from_civil(1995, 1, 1));

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let asia = region_nations(flow, dir, "ASIA");
    // (c_custkey, nation)
    let customers = customer::scan(flow, dir, |c| Ok(Some((c.c_custkey(), c.c_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(asia)
        .map(|((custkey, nationkey), (_, name))| (custkey, nationkey, name))
        .key_by(|(custkey, _, _)| *custkey);
    // (o_orderkey, nationkey, nation)
    let their_orders = orders::scan(flow, dir, |o| {
        Ok((DATES.0..DATES.1)
            .contains(&o.o_orderdate())
            .then(|| (o.o_orderkey(), o.o_custkey())))
    })
    .key_by(|(_, custkey)| *custkey)
    .broadcast_join(customers)
    .map(|((orderkey, _), (_, nationkey, name))| (orderkey, nationkey, name))
    .key_by(|(orderkey, _, _)| *orderkey);
    let suppliers = supplier::scan(flow, dir, |s| Ok(Some((s.s_suppkey(), s.s_nationkey()))))
        .key_by(|(suppkey, _)| *suppkey);
    let per_nation = lineitem::scan(flow, dir, |l| {
        Ok(Some((l.l_orderkey(), l.l_suppkey(), revenue(&l))))
    })
    .key_by(|(orderkey, _, _)| *orderkey)
    .broadcast_join(their_orders)
    .map(|((_, suppkey, revenue), (_, nationkey, name))| (suppkey, nationkey, name, revenue))
    .key_by(|(suppkey, _, _, _)| *suppkey)
    .broadcast_join(suppliers)
    .filter(|((_, nationkey, _, _), (_, s_nationkey))| nationkey == s_nationkey)
    .key_by(|((_, _, name, _), _)| name.clone())
    .aggregate(
        |((_, _, _, revenue), _)| i128::from(*revenue),
        |a, b| *a += b,
    );
    let result = top(per_nation, |(_, revenue)| Descending(*revenue), None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(nation, revenue)| vec![nation, decimal(revenue, 4)])
            .collect();
        Answer::new(&["n_name", "revenue"], rows)
    })
}
