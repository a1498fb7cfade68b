//! Q22, global sales opportunity: customers of seven country codes with more than the
//! average positive balance and no orders, counted and summed per country code.
//!
//! ```text
//!   customer ─codes, balance > 0─▶ aggregate (sum, count) ─broadcast─┐   (the average)
//!   customer ─codes───────────────────────────────────────────▶ join(unit) ─balance > avg─┐
//!   orders ─▶ semi join(custkey) with those customers (broadcast) ─▶ distinct ───▶ anti join(custkey)
//!     ─▶ aggregate by code (count, sum) ─▶ gather ─▶ sort by code ─▶ collect
//! ```
//!
//! The scalar subquery (the average) is computed in the dataflow and joined to every
//! customer on the unit key, as an engine decorrelates it.

use std::path::Path;

use super::Answer;
use crate::tpch::q1::decimal;
use crate::tpch::{customer, orders};
use weir::dataflow::Dataflow;

/// Q22's country codes: the first two characters of `c_phone`.
const Q22_CODES: [&str; 7] = ["13", "31", "23", "29", "30", "18", "17"];

/// A customer of the seven codes: `(c_custkey, code, c_acctbal)`.
type Customer = (i64, String, i64);

fn customers(flow: &Dataflow, dir: &Path) -> weir::dataflow::Stream<Customer> {
    customer::scan(flow, dir, |c| {
        let code = c.c_phone()?.get(..2).unwrap_or_default();
        Ok(Q22_CODES
            .contains(&code)
            .then(|| (c.c_custkey(), code.to_owned(), c.c_acctbal())))
    })
}

/// The customers of the seven codes whose balance is above the average positive one,
/// keyed by customer: the average (a scalar subquery) is a one-record aggregation
/// broadcast to every customer and compared on the unit key.
fn above_average(flow: &Dataflow, dir: &Path) -> weir::dataflow::KeyedStream<i64, Customer> {
    let average = customers(flow, dir)
        .filter(|(_, _, balance)| *balance > 0)
        .key_by(|_| ())
        .aggregate(
            |(_, _, balance)| (i128::from(*balance), 1i64),
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        )
        .key_by(|_| ());
    customers(flow, dir)
        .key_by(|_| ())
        .broadcast_join(average)
        .filter(|((_, _, balance), (_, (sum, count)))| {
            i128::from(*balance) * i128::from(*count) > *sum
        })
        .map(|(customer, _)| customer)
        .key_by(|(custkey, _, _)| *custkey)
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let above = above_average(flow, dir);
    // Of those customers, the ones with orders: the orders scan probes them where it
    // reads (a broadcast semi join), so only their orders go on, not all 1.5M.
    let with_orders = orders::scan(flow, dir, |o| Ok(Some(o.o_custkey())))
        .key_by(|custkey| *custkey)
        .broadcast_semi_join(above_average(flow, dir))
        .distinct()
        .key_by(|custkey| *custkey);
    let per_code = above
        .anti_join(with_orders)
        .key_by(|(_, code, _)| code.clone())
        .aggregate(
            |(_, _, balance)| (1u64, *balance),
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        )
        .gather()
        .sort_by(|(code, _)| code.clone(), None)
        .collect();
    Box::new(move || {
        let rows = per_code
            .take()
            .into_iter()
            .map(|(code, (count, balance))| {
                vec![code, count.to_string(), decimal(i128::from(balance), 2)]
            })
            .collect();
        Answer::new(&["cntrycode", "numcust", "totacctbal"], rows)
    })
}
