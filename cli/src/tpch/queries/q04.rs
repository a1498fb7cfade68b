//! Q4, order priority checking: orders of a quarter with at least one line item received
//! after its commit date, counted per priority.
//!
//! ```text
//!   orders ─quarter─▶ broadcast ─┐
//!   lineitem ─commit < receipt─▶ join(orderkey) ─▶ aggregate by orderkey (each order once)
//!     ─▶ aggregate by priority: count ─▶ top (by priority) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, top};
use crate::tpch::{days_from_civil, lineitem, orders};
use weir::dataflow::Dataflow;

const DATES: (i32, i32) = (days_from_civil(1993, 7, 1), days_from_civil(1993, 10, 1));

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let quarter = orders::scan(flow, dir, |o| {
        if !(DATES.0..DATES.1).contains(&o.o_orderdate()) {
            return Ok(None);
        }
        Ok(Some((o.o_orderkey(), o.o_orderpriority()?.to_owned())))
    })
    .key_by(|(orderkey, _)| *orderkey);
    let late = lineitem::scan(flow, dir, |l| {
        Ok((l.l_commitdate() < l.l_receiptdate()).then(|| l.l_orderkey()))
    })
    .key_by(|orderkey| *orderkey)
    .broadcast_join(quarter);
    let counts = late
        .key_by(|(orderkey, _)| *orderkey)
        .aggregate(|(_, (_, priority))| priority.clone(), |_, _| {})
        .key_by(|(_, priority)| priority.clone())
        .aggregate(|_| 1u64, |a, b| *a += b);
    let result = top(counts, |(priority, _)| priority.clone(), None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(priority, count)| vec![priority, count.to_string()])
            .collect();
        Answer::new(&["o_orderpriority", "order_count"], rows)
    })
}
