//! Q9, product type profit measure: the profit on parts with a color in their name, per
//! supplier nation and order year.
//!
//! ```text
//!   part ─name has green─▶ broadcast ─┐
//!   lineitem ─────────────────▶ join(partkey) ─┐
//!   partsupp ─▶ join(partkey) with the green parts ─▶ broadcast ─▶ join(partkey, suppkey) ─┐
//!   supplier ⋈ nation (broadcast) ─▶ broadcast ───────────────────────▶ join(suppkey) ─┐
//!   orders ─▶ join(orderkey) with the line items' amounts, broadcast ◀───────────────┘
//!     ─▶ aggregate by (nation, year) ─▶ gather ─▶ sort ─▶ collect
//! ```

use std::path::Path;

use super::Answer;
use crate::tpch::q1::decimal;
use crate::tpch::{lineitem, nation, orders, part, partsupp, supplier, year_of};
use weir::dataflow::{Dataflow, KeyedStream};
use weir::serde_fmt::Descending;

/// Q9's color.
const COLOR: &str = "green";

/// The keys of the parts whose name has the color, for a broadcast join.
fn green_parts(flow: &Dataflow, dir: &Path) -> KeyedStream<i64, i64> {
    part::scan(flow, dir, |p| {
        Ok(p.p_name()?.contains(COLOR).then(|| p.p_partkey()))
    })
    .key_by(|partkey| *partkey)
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    // (l_orderkey, l_partkey, l_suppkey, revenue at scale 4, l_quantity in hundredths)
    let lines = lineitem::scan(flow, dir, |l| {
        Ok(Some((
            l.l_orderkey(),
            l.l_partkey(),
            l.l_suppkey(),
            super::revenue(&l),
            l.l_quantity(),
        )))
    })
    .key_by(|line| line.1)
    .broadcast_join(green_parts(flow, dir))
    .map(|(line, _)| line);
    // ((ps_partkey, ps_suppkey), ps_supplycost) of the green parts
    let costs = partsupp::scan(flow, dir, |ps| {
        Ok(Some((
            (ps.ps_partkey(), ps.ps_suppkey()),
            ps.ps_supplycost(),
        )))
    })
    .key_by(|((partkey, _), _)| *partkey)
    .broadcast_join(green_parts(flow, dir))
    .map(|(cost, _)| cost)
    .key_by(|(key, _)| *key);
    let nations = nation::scan(flow, dir, |n| {
        Ok(Some((n.n_nationkey(), n.n_name()?.to_owned())))
    })
    .key_by(|(nationkey, _)| *nationkey);
    let suppliers = supplier::scan(flow, dir, |s| Ok(Some((s.s_suppkey(), s.s_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(nations)
        .map(|((suppkey, _), (_, name))| (suppkey, name))
        .key_by(|(suppkey, _)| *suppkey);
    // (l_orderkey, nation, amount at scale 4)
    let amounts = lines
        .key_by(|line| (line.1, line.2))
        .broadcast_join(costs)
        .map(|((orderkey, _, suppkey, revenue, quantity), (_, cost))| {
            (orderkey, suppkey, revenue - cost * quantity)
        })
        .key_by(|line| line.1)
        .broadcast_join(suppliers)
        .map(|((orderkey, _, amount), (_, nation))| (orderkey, nation, amount))
        .key_by(|line| line.0);
    let years = orders::scan(flow, dir, |o| {
        Ok(Some((o.o_orderkey(), year_of(o.o_orderdate()))))
    })
    .key_by(|(orderkey, _)| *orderkey);
    let profits = years
        .broadcast_join(amounts)
        .key_by(|((_, year), (_, nation, _))| (nation.clone(), *year))
        .aggregate(|(_, (_, _, amount))| i128::from(*amount), |a, b| *a += b)
        .gather()
        .sort_by(
            |((nation, year), _)| (nation.clone(), Descending(*year)),
            None,
        )
        .collect();
    Box::new(move || {
        let rows = profits
            .take()
            .into_iter()
            .map(|((nation, year), profit)| vec![nation, year.to_string(), decimal(profit, 4)])
            .collect();
        Answer::new(&["nation", "o_year", "sum_profit"], rows)
    })
}
