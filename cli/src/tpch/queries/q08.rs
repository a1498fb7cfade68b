//! Q8, national market share: Brazil's share of the revenue from a part type in the
//! Americas, per year.
//!
//! ```text
//!   part ─type─▶ broadcast ─┐
//!   lineitem ───────▶ join(partkey) ─▶ join(suppkey) with supplier ⋈ nation (broadcast)
//!     ─▶ (orderkey, brazil?, revenue) ─▶ broadcast ─┐
//!   customer ⋈ nation ⋈ region AMERICA ─▶ broadcast ─┐  │
//!   orders ─1995–1996───────────────────────▶ join(custkey) ─▶ join(orderkey)
//!     ─▶ aggregate by year (brazil, total) ─▶ top ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, region_nations, revenue, top};
use crate::tpch::q1::{decimal, quotient};
use crate::tpch::{customer, days_from_civil, lineitem, nation, orders, part, supplier, year_of};
use weir::dataflow::Dataflow;

const NATION: &str = "BRAZIL";
const TYPE: &str = "ECONOMY ANODIZED STEEL";
const DATES: (i32, i32) = (days_from_civil(1995, 1, 1), days_from_civil(1996, 12, 31));

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let parts = part::scan(flow, dir, |p| {
        Ok((p.p_type()? == TYPE).then(|| p.p_partkey()))
    })
    .key_by(|partkey| *partkey);
    let brazil = nation::scan(flow, dir, |n| {
        Ok(Some((n.n_nationkey(), n.n_name()? == NATION)))
    })
    .key_by(|(nationkey, _)| *nationkey);
    let suppliers = supplier::scan(flow, dir, |s| Ok(Some((s.s_suppkey(), s.s_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(brazil)
        .map(|((suppkey, _), (_, brazil))| (suppkey, brazil))
        .key_by(|(suppkey, _)| *suppkey);
    // (l_orderkey, Brazilian supplier?, revenue)
    let lines = lineitem::scan(flow, dir, |l| {
        Ok(Some((
            l.l_partkey(),
            l.l_orderkey(),
            l.l_suppkey(),
            revenue(&l),
        )))
    })
    .key_by(|(partkey, _, _, _)| *partkey)
    .broadcast_join(parts)
    .map(|((_, orderkey, suppkey, revenue), _)| (orderkey, suppkey, revenue))
    .key_by(|(_, suppkey, _)| *suppkey)
    .broadcast_join(suppliers)
    .map(|((orderkey, _, revenue), (_, brazil))| (orderkey, brazil, revenue))
    .key_by(|(orderkey, _, _)| *orderkey);
    let customers = customer::scan(flow, dir, |c| Ok(Some((c.c_custkey(), c.c_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(region_nations(flow, dir, "AMERICA"))
        .map(|((custkey, _), _)| custkey)
        .key_by(|custkey| *custkey);
    let shares = orders::scan(flow, dir, |o| {
        let date = o.o_orderdate();
        Ok((DATES.0..=DATES.1)
            .contains(&date)
            .then(|| (o.o_orderkey(), o.o_custkey(), year_of(date))))
    })
    .key_by(|(_, custkey, _)| *custkey)
    .broadcast_join(customers)
    .map(|((orderkey, _, year), _)| (orderkey, year))
    .key_by(|(orderkey, _)| *orderkey)
    .broadcast_join(lines)
    .key_by(|((_, year), _)| *year)
    .aggregate(
        |(_, (_, brazil, revenue))| {
            let revenue = i128::from(*revenue);
            (if *brazil { revenue } else { 0 }, revenue)
        },
        |a, b| {
            a.0 += b.0;
            a.1 += b.1;
        },
    );
    let result = top(shares, |(year, _)| *year, None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(year, (brazil, total))| {
                let total = i64::try_from(total).expect("a year's revenue fits an i64");
                vec![year.to_string(), decimal(quotient(brazil, 0, total, 8), 8)]
            })
            .collect();
        Answer::new(&["o_year", "mkt_share"], rows)
    })
}
