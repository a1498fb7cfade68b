//! Q18, large volume customers: orders of more than 300 items, with their customer.
//!
//! ```text
//!   lineitem ─▶ aggregate by orderkey: quantity ─▶ > 300 ─▶ broadcast ─┐
//!   orders ───────────────────────────────────────────────▶ join(orderkey) ─▶ broadcast ─┐
//!   customer ────────────────────────────────────────────────────────────▶ join(custkey)
//!     ─▶ top 100 (total price desc, date) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, top};
use crate::tpch::q1::decimal;
use crate::tpch::{customer, date_text, lineitem, orders};
use weir::dataflow::Dataflow;
use weir::serde_fmt::Descending;

/// Q18's quantity, in hundredths.
const QUANTITY: i64 = 300 * 100;

/// A result row: `(c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, quantity)`.
type Row = (String, i64, i64, i32, i64, i64);

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let large = lineitem::scan(flow, dir, |l| Ok(Some((l.l_orderkey(), l.l_quantity()))))
        .key_by(|(orderkey, _)| *orderkey)
        .aggregate(|(_, quantity)| *quantity, |a, b| *a += b)
        .filter(|(_, quantity)| *quantity > QUANTITY)
        .key_by(|(orderkey, _)| *orderkey);
    // (o_orderkey, o_custkey, o_orderdate, o_totalprice, quantity)
    let their_orders = orders::scan(flow, dir, |o| {
        Ok(Some((
            o.o_orderkey(),
            o.o_custkey(),
            o.o_orderdate(),
            o.o_totalprice(),
        )))
    })
    .key_by(|order| order.0)
    .broadcast_join(large)
    .map(|((orderkey, custkey, date, price), (_, quantity))| {
        (orderkey, custkey, date, price, quantity)
    })
    .key_by(|order| order.1);
    let rows = customer::scan(flow, dir, |c| {
        Ok(Some((c.c_custkey(), c.c_name()?.to_owned())))
    })
    .key_by(|(custkey, _)| *custkey)
    .broadcast_join(their_orders)
    .map(
        |((custkey, name), (orderkey, _, date, price, quantity))| -> Row {
            (name, custkey, orderkey, date, price, quantity)
        },
    );
    let result = top(rows, |row: &Row| (Descending(row.4), row.3), Some(100)).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(name, custkey, orderkey, date, price, quantity)| {
                vec![
                    name,
                    custkey.to_string(),
                    orderkey.to_string(),
                    date_text(date),
                    decimal(i128::from(price), 2),
                    decimal(i128::from(quantity), 2),
                ]
            })
            .collect();
        Answer::new(
            &[
                "c_name",
                "c_custkey",
                "o_orderkey",
                "o_orderdate",
                "o_totalprice",
                "sum(l_quantity)",
            ],
            rows,
        )
    })
}
