//! Q13, customer distribution: customers by their number of orders (without special
//! requests), the customers with none included.
//!
//! ```text
//!   orders ─comment─▶ aggregate by custkey: count ─┐
//!   customer ─────────────────────────────▶ left outer join(custkey) ─▶ count or 0
//!     ─▶ aggregate by count: customers ─▶ top (customers, count desc) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, top};
use crate::tpch::{customer, orders};
use weir::dataflow::Dataflow;
use weir::kernel::hash::JoinType;
use weir::serde_fmt::Descending;

/// Whether an order's comment matches `%special%requests%`.
fn special_requests(comment: &str) -> bool {
    comment
        .find("special")
        .is_some_and(|at| comment[at + "special".len()..].contains("requests"))
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let counts = orders::scan(flow, dir, |o| {
        Ok((!special_requests(o.o_comment()?)).then(|| o.o_custkey()))
    })
    .key_by(|custkey| *custkey)
    .aggregate(|_| 1u64, |a, b| *a += b)
    .key_by(|(custkey, _)| *custkey);
    let distribution = customer::scan(flow, dir, |c| Ok(Some(c.c_custkey())))
        .key_by(|custkey| *custkey)
        .join_as(counts, JoinType::LeftOuter)
        .map(|(_, count)| count.map_or(0, |(_, n)| n))
        .key_by(|count| *count)
        .aggregate(|_| 1u64, |a, b| *a += b);
    let result = top(
        distribution,
        |(count, customers)| (Descending(*customers), Descending(*count)),
        None,
    )
    .collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(count, customers)| vec![count.to_string(), customers.to_string()])
            .collect();
        Answer::new(&["c_count", "custdist"], rows)
    })
}
