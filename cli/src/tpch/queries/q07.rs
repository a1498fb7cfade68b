//! Q7, volume shipping: the revenue of goods shipped between France and Germany, per
//! supplier nation, customer nation and year.
//!
//! ```text
//!   supplier ⋈ nation (FRANCE, GERMANY) ─▶ broadcast ─┐
//!   lineitem ─1995–1996─────────────────────▶ join(suppkey) ─┐
//!   customer ⋈ nation (FRANCE, GERMANY) ─▶ broadcast ─┐        │
//!   orders ──────────────────────────────────▶ join(custkey) ─▶ broadcast
//!     ─▶ join(orderkey), nations differ ─▶ aggregate by (supp, cust, year) ─▶ top ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, revenue, top};
use crate::tpch::q1::decimal;
use crate::tpch::{customer, days_from_civil, lineitem, nation, orders, supplier, year_of};
use weir::dataflow::{Dataflow, KeyedStream};

const NATIONS: [&str; 2] = ["FRANCE", "GERMANY"];
const DATES: (i32, i32) = (days_from_civil(1995, 1, 1), days_from_civil(1996, 12, 31));

/// The two nations, keyed by key, for a broadcast join.
fn two_nations(flow: &Dataflow, dir: &Path) -> KeyedStream<i64, (i64, String)> {
    nation::scan(flow, dir, |n| {
        let name = n.n_name()?;
        Ok(NATIONS
            .contains(&name)
            .then(|| (n.n_nationkey(), name.to_owned())))
    })
    .key_by(|(nationkey, _)| *nationkey)
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let suppliers = supplier::scan(flow, dir, |s| Ok(Some((s.s_suppkey(), s.s_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(two_nations(flow, dir))
        .map(|((suppkey, _), (_, name))| (suppkey, name))
        .key_by(|(suppkey, _)| *suppkey);
    let customers = customer::scan(flow, dir, |c| Ok(Some((c.c_custkey(), c.c_nationkey()))))
        .key_by(|(_, nationkey)| *nationkey)
        .broadcast_join(two_nations(flow, dir))
        .map(|((custkey, _), (_, name))| (custkey, name))
        .key_by(|(custkey, _)| *custkey);
    let their_orders = orders::scan(flow, dir, |o| Ok(Some((o.o_orderkey(), o.o_custkey()))))
        .key_by(|(_, custkey)| *custkey)
        .broadcast_join(customers)
        .map(|((orderkey, _), (_, name))| (orderkey, name))
        .key_by(|(orderkey, _)| *orderkey);
    let volumes = lineitem::scan(flow, dir, |l| {
        let date = l.l_shipdate();
        Ok((DATES.0..=DATES.1)
            .contains(&date)
            .then(|| (l.l_orderkey(), l.l_suppkey(), year_of(date), revenue(&l))))
    })
    .key_by(|(_, suppkey, _, _)| *suppkey)
    .broadcast_join(suppliers)
    .map(|((orderkey, _, year, revenue), (_, supp_nation))| (orderkey, supp_nation, year, revenue))
    .key_by(|(orderkey, _, _, _)| *orderkey)
    .broadcast_join(their_orders)
    .filter(|((_, supp_nation, _, _), (_, cust_nation))| supp_nation != cust_nation)
    .key_by(|((_, supp_nation, year, _), (_, cust_nation))| {
        (supp_nation.clone(), cust_nation.clone(), *year)
    })
    .aggregate(
        |((_, _, _, revenue), _)| i128::from(*revenue),
        |a, b| *a += b,
    );
    let result = top(volumes, |(group, _)| group.clone(), None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|((supp, cust, year), revenue)| {
                vec![supp, cust, year.to_string(), decimal(revenue, 4)]
            })
            .collect();
        Answer::new(&["supp_nation", "cust_nation", "l_year", "revenue"], rows)
    })
}
