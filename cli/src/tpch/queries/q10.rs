//! Q10, returned item reporting: the 20 customers whose returned items in a quarter lost
//! the most revenue.
//!
//! ```text
//!   orders ─quarter─▶ broadcast ─┐
//!   lineitem ─R──▶ join(orderkey) ─aggregate by custkey─▶ broadcast ─┐
//!   customer ──────────────────────────────────────▶ join(custkey) ─▶
//!   join nation (broadcast) ─▶ top 20 ─▶ collect
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Answer, revenue};
use crate::tpch::q1::decimal;
use crate::tpch::{customer, days_from_civil, lineitem, nation, orders};
use weir::dataflow::{Dataflow, Stream};
use weir::serde_fmt::Descending;

/// Q10's quarter: from 1993-10-01 to 1994-01-01.
pub const Q10_DATES: (i32, i32) = (days_from_civil(1993, 10, 1), days_from_civil(1994, 1, 1));

/// A Q10 result row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs, reason = "the TPC-H column names")]
pub struct Q10Row {
    pub c_custkey: i64,
    pub c_name: String,
    /// Scale 4.
    pub revenue: i64,
    /// Cents.
    pub c_acctbal: i64,
    pub n_name: String,
    pub c_address: String,
    pub c_phone: String,
    pub c_comment: String,
}

/// The 25 nations of TPC-H (specification 4.2.3), in key order.
pub const NATIONS: [&str; 25] = [
    "ALGERIA",
    "ARGENTINA",
    "BRAZIL",
    "CANADA",
    "EGYPT",
    "ETHIOPIA",
    "FRANCE",
    "GERMANY",
    "INDIA",
    "INDONESIA",
    "IRAN",
    "IRAQ",
    "JAPAN",
    "JORDAN",
    "KENYA",
    "MOROCCO",
    "MOZAMBIQUE",
    "PERU",
    "CHINA",
    "ROMANIA",
    "SAUDI ARABIA",
    "VIETNAM",
    "RUSSIA",
    "UNITED KINGDOM",
    "UNITED STATES",
];

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    // (o_orderkey, o_custkey)
    let orders = orders::scan(flow, dir, |o| {
        Ok((Q10_DATES.0..Q10_DATES.1)
            .contains(&o.o_orderdate())
            .then(|| (o.o_orderkey(), o.o_custkey())))
    })
    .key_by(|order| order.0);
    let returned = lineitem::scan(flow, dir, |line| {
        Ok((line.l_returnflag() == b'R').then(|| (line.l_orderkey(), revenue(&line))))
    })
    .key_by(|line| line.0);
    let per_customer = returned
        .broadcast_join(orders)
        .key_by(|(_, order)| order.1)
        .aggregate(|(line, _)| line.1, |acc, revenue| *acc += revenue)
        .key_by(|(custkey, _)| *custkey);
    let customers = customer::scan(flow, dir, |c| {
        let strings = [c.c_name()?, c.c_address()?, c.c_phone()?, c.c_comment()?];
        Ok(Some((
            c.c_custkey(),
            c.c_acctbal(),
            c.c_nationkey(),
            strings.map(str::to_string),
        )))
    })
    .key_by(|c| c.0);
    let nation_names = nation::scan(flow, dir, |n| {
        Ok(Some((n.n_nationkey(), n.n_name()?.to_string())))
    })
    .key_by(|n| n.0);
    let rows = customers
        .broadcast_join(per_customer)
        .key_by(|(customer, _)| customer.2)
        .broadcast_join(nation_names)
        .map(
            |(
                ((_, acctbal, _, [name, address, phone, comment]), (custkey, revenue)),
                (_, nation),
            )| Q10Row {
                c_custkey: custkey,
                c_name: name,
                revenue,
                c_acctbal: acctbal,
                n_name: nation,
                c_address: address,
                c_phone: phone,
                c_comment: comment,
            },
        );
    let top =
        |rows: Stream<Q10Row>| rows.sort_by(|r| (Descending(r.revenue), r.c_custkey), Some(20));
    let result = top(top(rows).gather()).collect();
    Box::new(move || q10_answer(&result.take()))
}

/// Q10's answer from its top rows (in order).
pub fn q10_answer(rows: &[Q10Row]) -> Answer {
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                r.c_custkey.to_string(),
                r.c_name.clone(),
                decimal(i128::from(r.revenue), 4),
                decimal(i128::from(r.c_acctbal), 2),
                r.n_name.clone(),
                r.c_address.clone(),
                r.c_phone.clone(),
                r.c_comment.clone(),
            ]
        })
        .collect();
    Answer::new(
        &[
            "c_custkey",
            "c_name",
            "revenue",
            "c_acctbal",
            "n_name",
            "c_address",
            "c_phone",
            "c_comment",
        ],
        rows,
    )
}
