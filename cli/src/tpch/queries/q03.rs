//! Q3, shipping priority: the ten unshipped orders of a market segment with the most
//! revenue.
//!
//! ```text
//!   customer ─BUILDING─▶ broadcast ─┐
//!   orders ─date─▶ join(custkey) ─▶ broadcast ─┐
//!   lineitem ─shipdate──────────────▶ join(orderkey) ─aggregate revenue─▶ top 10 ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, revenue};
use crate::tpch::q1::decimal;
use crate::tpch::{customer, date_text, days_from_civil, lineitem, orders};
use weir::dataflow::{Dataflow, Stream};
use weir::serde_fmt::Descending;

/// Q3's date parameter: 1995-03-15.
pub const Q3_DATE: i32 = days_from_civil(1995, 3, 15);
/// Q3's market segment parameter.
pub const Q3_SEGMENT: &str = "BUILDING";

/// A Q3 group: `(l_orderkey, o_orderdate, o_shippriority)` and its revenue at scale 4.
pub type Q3Row = ((i64, i32, i32), i64);

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let customers = customer::scan(flow, dir, |c| {
        Ok((c.c_mktsegment()? == Q3_SEGMENT).then_some(c.c_custkey()))
    })
    .key_by(|custkey| *custkey);
    // (o_orderkey, o_custkey, o_orderdate, o_shippriority)
    let orders = orders::scan(flow, dir, |o| {
        Ok((o.o_orderdate() < Q3_DATE).then(|| {
            (
                o.o_orderkey(),
                o.o_custkey(),
                o.o_orderdate(),
                o.o_shippriority(),
            )
        }))
    })
    .key_by(|order| order.1);
    let their_orders = orders
        .broadcast_join(customers)
        .map(|((orderkey, _, date, priority), _)| (orderkey, date, priority))
        .key_by(|order| order.0);
    let lineitems = lineitem::scan(flow, dir, |line| {
        Ok((line.l_shipdate() > Q3_DATE).then(|| (line.l_orderkey(), revenue(&line))))
    })
    .key_by(|line| line.0);
    let top = |rows: Stream<Q3Row>| {
        rows.sort_by(
            |((_, date, _), revenue)| (Descending(*revenue), *date),
            Some(10),
        )
    };
    let groups = lineitems
        .broadcast_join(their_orders)
        .key_by(|(_, order)| *order)
        .aggregate(|(line, _)| line.1, |acc, revenue| *acc += revenue);
    let result = top(top(groups).gather()).collect();
    Box::new(move || q3_answer(&result.take()))
}

/// Q3's answer from its top rows (in order).
pub fn q3_answer(rows: &[Q3Row]) -> Answer {
    let rows = rows
        .iter()
        .map(|((orderkey, date, priority), revenue)| {
            vec![
                orderkey.to_string(),
                decimal(i128::from(*revenue), 4),
                date_text(*date),
                priority.to_string(),
            ]
        })
        .collect();
    Answer::new(
        &["l_orderkey", "revenue", "o_orderdate", "o_shippriority"],
        rows,
    )
}
