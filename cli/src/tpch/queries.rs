//! TPC-H Q1, Q3, Q6 and Q10 as dataflow programs over the tables of `weir gen tpch`,
//! their answers as text tables, and the check against the answers `tpchgen` ships for
//! SF 1.
//!
//! ```text
//!   Q1   lineitem ─filter shipdate─▶ key_by(flag, status) ─aggregate sums─▶ collect
//!   Q3   customer ─BUILDING─▶ broadcast ─┐
//!        orders ─date─▶ join(custkey) ─▶ broadcast ─┐
//!        lineitem ─shipdate──────────────▶ join(orderkey) ─aggregate revenue─▶ top 10 ─▶ collect
//!   Q6   lineitem ─filters─▶ aggregate revenue ─▶ collect
//!   Q10  orders ─quarter─▶ broadcast ─┐
//!        lineitem ─R──▶ join(orderkey) ─aggregate by custkey─▶ broadcast ─┐
//!        customer ──────────────────────────────────────▶ join(custkey) ─▶
//!        join nation (broadcast) ─▶ top 20 ─▶ collect
//!
//!   The large side of every join (lineitem, orders, customer) is probed where it is
//!   scanned; the small filtered side is broadcast to every task (a broadcast join).
//! ```
//!
//! Sums are exact integers: prices in cents times (100 − discount) give revenues at
//! scale 4. [`Answer`] prints them exactly; [`Answer::check_sf1`] rounds a cell half away
//! from zero to the reference's decimals before comparing.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::lineitem::{
    DISCOUNT, EXTENDEDPRICE, LINESTATUS, ORDERKEY, QUANTITY, RETURNFLAG, SHIPDATE, TAX, i32_at,
    i64_at,
};
use super::manifest::Q1Totals;
use super::q1::{AVG_SCALE, Q1_SHIPDATE_MAX, Q1Sums, decimal, round};
use super::{Customer, Table, date_text, days_from_civil, orders};
use weir::dataflow::{Collected, Dataflow};
use weir::error::{Result, WeirError};
use weir::serde_fmt::Descending;

/// The queries weir runs as dataflow programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// Pricing summary report: one scan and a 4-group aggregation.
    Q1,
    /// Shipping priority: two joins, an aggregation and a top 10.
    Q3,
    /// Forecasting revenue change: filters and one global sum.
    Q6,
    /// Returned item reporting: three joins, an aggregation and a top 20.
    Q10,
}

impl Query {
    /// Every query, in number order.
    pub const ALL: [Query; 4] = [Query::Q1, Query::Q3, Query::Q6, Query::Q10];

    /// The query's number.
    pub fn number(self) -> u32 {
        match self {
            Query::Q1 => 1,
            Query::Q3 => 3,
            Query::Q6 => 6,
            Query::Q10 => 10,
        }
    }

    /// The query of a number.
    ///
    /// # Errors
    ///
    /// A message listing the queries there are.
    pub fn from_number(number: u32) -> std::result::Result<Query, String> {
        Query::ALL
            .into_iter()
            .find(|q| q.number() == number)
            .ok_or_else(|| format!("--query {number}: weir runs TPC-H queries 1, 3, 6 and 10"))
    }

    /// Adds the query to `flow`, reading the tables in `dir`; the returned function gives
    /// the answer after the job ran (on worker 0; empty elsewhere).
    pub fn build(self, flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
        match self {
            Query::Q1 => q1(flow, dir),
            Query::Q3 => q3(flow, dir),
            Query::Q6 => q6(flow, dir),
            Query::Q10 => q10(flow, dir),
        }
    }
}

/// A query's answer as text: exact decimals, dates as `YYYY-MM-DD`, rows in the query's
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The column names.
    pub header: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<String>>,
}

impl Answer {
    fn new(header: &[&str], rows: Vec<Vec<String>>) -> Answer {
        Answer {
            header: header.iter().map(|h| (*h).to_string()).collect(),
            rows,
        }
    }

    /// The answer as an aligned text table.
    pub fn to_table(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            format!("{}\n", cells.join(" | ").trim_end())
        };
        let mut out = line(&self.header);
        out.push_str(&format!(
            "{}\n",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("-+-")
        ));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    /// Compares with the answer `tpchgen` ships for query `number` at SF 1: the same
    /// rows in the same order, every cell equal as text after rounding ours half away
    /// from zero to the reference's decimals. Returns the differences (empty: equal).
    pub fn check_sf1(&self, number: u32) -> Vec<String> {
        let Some(reference) =
            tpchgen::q_and_a::answers_sf1::answer(i32::try_from(number).unwrap_or(0))
        else {
            return vec![format!("no reference answer for Q{number}")];
        };
        let mut lines = reference.lines().filter(|l| !l.trim().is_empty());
        lines.next(); // the column names
        let expected: Vec<Vec<&str>> = lines
            .map(|l| l.split('|').map(str::trim).collect())
            .collect();
        let mut problems = Vec::new();
        if expected.len() != self.rows.len() {
            problems.push(format!(
                "{} rows, the reference has {}",
                self.rows.len(),
                expected.len()
            ));
        }
        for (index, (ours, theirs)) in self.rows.iter().zip(&expected).enumerate() {
            for (column, (ours, theirs)) in ours.iter().zip(theirs).enumerate() {
                if !cell_matches(ours, theirs) {
                    problems.push(format!(
                        "row {index} {}: {ours}, the reference says {theirs}",
                        self.header[column]
                    ));
                }
            }
        }
        problems
    }
}

/// Compares Q1's answer with the totals the generator recorded for the rows Q1 reads (the
/// manifest's `q1` line): `count_order`, `sum_qty` and `sum_base_price` summed over the
/// groups, a check independent of the bytes the answer was computed from. Returns the
/// differences (empty: equal).
pub fn check_q1_totals(answer: &Answer, q1: &Q1Totals) -> Vec<String> {
    let sum = |name: &str, scale: u32| -> Option<i128> {
        let column = answer.header.iter().position(|h| h == name)?;
        answer
            .rows
            .iter()
            .map(|row| {
                let (value, found) = parse_decimal(row.get(column)?)?;
                (found == scale).then_some(value)
            })
            .sum()
    };
    let expected = [
        ("count_order", 0, i128::from(q1.rows)),
        ("sum_qty", 2, i128::from(q1.quantity)),
        ("sum_base_price", 2, i128::from(q1.extendedprice)),
    ];
    expected
        .into_iter()
        .filter_map(|(name, scale, theirs)| match sum(name, scale) {
            Some(ours) if ours == theirs => None,
            Some(ours) => Some(format!(
                "{name} totals {}, the generator's rows (manifest) total {}",
                decimal(ours, scale),
                decimal(theirs, scale)
            )),
            None => Some(format!("the answer has no {name} column of scale {scale}")),
        })
        .collect()
}

/// Whether our exact cell equals the reference's: as text, or as decimals after rounding
/// ours to the reference's scale.
fn cell_matches(ours: &str, theirs: &str) -> bool {
    if ours.trim() == theirs {
        return true;
    }
    match (parse_decimal(ours), parse_decimal(theirs)) {
        (Some((value, scale)), Some((_, to))) if to <= scale => {
            decimal(round(value, scale, to), to) == theirs
        }
        _ => false,
    }
}

/// A decimal's integer value and scale: `-12.05` is (-1205, 2).
fn parse_decimal(text: &str) -> Option<(i128, u32)> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    Some((digits.parse().ok()?, u32::try_from(fraction.len()).ok()?))
}

/// A table's rows through `project`; a malformed row is an error naming the table.
fn table<T: weir::dataflow::Data>(
    flow: &Dataflow,
    dir: &Path,
    table: Table,
    project: impl Fn(&[u8]) -> Option<T> + Send + Sync + 'static,
) -> weir::dataflow::Stream<T> {
    super::table(flow, dir, table, move |row| Ok(project(row)))
}

/// Revenue of a line item at scale 4: `l_extendedprice * (1 - l_discount)`.
#[inline]
fn revenue(row: &[u8]) -> i64 {
    i64_at(row, EXTENDEDPRICE) * (100 - i64_at(row, DISCOUNT))
}

/// Q1's groups: `lineitem` up to its ship date, aggregated by return flag and line
/// status (one record per group, unordered).
pub fn q1_groups(flow: &Dataflow, dir: &Path) -> weir::dataflow::Stream<((u8, u8), Q1Sums)> {
    table(flow, dir, Table::Lineitem, |row| {
        (i32_at(row, SHIPDATE) <= Q1_SHIPDATE_MAX).then(|| {
            let sums = Q1Sums::of_row(
                i64_at(row, QUANTITY),
                i64_at(row, EXTENDEDPRICE),
                i64_at(row, DISCOUNT),
                i64_at(row, TAX),
            );
            ((row[RETURNFLAG], row[LINESTATUS]), sums)
        })
    })
    .key_by(|(group, _)| *group)
    .aggregate(|(_, sums)| *sums, |acc, sums| acc.add(&sums))
}

fn q1(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let groups: Collected<((u8, u8), Q1Sums)> = q1_groups(flow, dir).collect();
    Box::new(move || {
        let mut groups = groups.take();
        groups.sort_by_key(|(group, _)| *group);
        q1_answer(&groups)
    })
}

/// Q1's answer from its groups (sorted by flag and status).
pub fn q1_answer(groups: &[((u8, u8), Q1Sums)]) -> Answer {
    let rows = groups
        .iter()
        .map(|((flag, status), sums)| {
            let [avg_qty, avg_price, avg_disc] = sums.averages();
            vec![
                char::from(*flag).to_string(),
                char::from(*status).to_string(),
                decimal(i128::from(sums.qty), 2),
                decimal(i128::from(sums.base_price), 2),
                decimal(sums.disc_price, 4),
                decimal(sums.charge, 6),
                decimal(avg_qty, AVG_SCALE),
                decimal(avg_price, AVG_SCALE),
                decimal(avg_disc, AVG_SCALE),
                sums.count.to_string(),
            ]
        })
        .collect();
    Answer::new(
        &[
            "l_returnflag",
            "l_linestatus",
            "sum_qty",
            "sum_base_price",
            "sum_disc_price",
            "sum_charge",
            "avg_qty",
            "avg_price",
            "avg_disc",
            "count_order",
        ],
        rows,
    )
}

/// Q3's date parameter: 1995-03-15.
pub const Q3_DATE: i32 = days_from_civil(1995, 3, 15);
/// Q3's market segment parameter.
pub const Q3_SEGMENT: &str = "BUILDING";

/// A Q3 group: `(l_orderkey, o_orderdate, o_shippriority)` and its revenue at scale 4.
pub type Q3Row = ((i64, i32, i32), i64);

fn q3(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let customers = super::table(flow, dir, Table::Customer, |row| {
        let customer: Customer<'_> =
            weir::serde_fmt::from_slice(row).map_err(|e| WeirError::Data {
                message: format!("a malformed customer row: {e}"),
            })?;
        Ok((customer.c_mktsegment == Q3_SEGMENT).then_some(customer.c_custkey))
    })
    .key_by(|custkey| *custkey);
    // (o_orderkey, o_custkey, o_orderdate, o_shippriority)
    let orders = table(flow, dir, Table::Orders, |row| {
        let date = i32_at(row, orders::ORDERDATE);
        (date < Q3_DATE).then(|| {
            (
                i64_at(row, orders::ORDERKEY),
                i64_at(row, orders::CUSTKEY),
                date,
                i32_at(row, orders::SHIPPRIORITY),
            )
        })
    })
    .key_by(|order| order.1);
    let their_orders = orders
        .broadcast_join(customers)
        .map(|((orderkey, _, date, priority), _)| (orderkey, date, priority))
        .key_by(|order| order.0);
    let lineitems = table(flow, dir, Table::Lineitem, |row| {
        (i32_at(row, SHIPDATE) > Q3_DATE).then(|| (i64_at(row, ORDERKEY), revenue(row)))
    })
    .key_by(|line| line.0);
    let top = |rows: weir::dataflow::Stream<Q3Row>| {
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

/// Q6's parameters: the year 1994, discount 0.06 ± 0.01, quantity below 24.
pub const Q6_DATES: (i32, i32) = (days_from_civil(1994, 1, 1), days_from_civil(1995, 1, 1));

/// Whether a line item passes Q6's filters.
#[inline]
pub fn q6_selects(shipdate: i32, discount: i64, quantity: i64) -> bool {
    (Q6_DATES.0..Q6_DATES.1).contains(&shipdate) && (5..=7).contains(&discount) && quantity < 2400
}

fn q6(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let sums = table(flow, dir, Table::Lineitem, |row| {
        q6_selects(
            i32_at(row, SHIPDATE),
            i64_at(row, DISCOUNT),
            i64_at(row, QUANTITY),
        )
        .then(|| i64_at(row, EXTENDEDPRICE) * i64_at(row, DISCOUNT))
    })
    .key_by(|_| ())
    .aggregate(|revenue| *revenue, |acc, revenue| *acc += revenue)
    .collect();
    Box::new(move || {
        let total: i64 = sums.take().iter().map(|(_, sum)| sum).sum();
        q6_answer(total)
    })
}

/// Q6's answer from its revenue at scale 4.
pub fn q6_answer(revenue: i64) -> Answer {
    Answer::new(&["revenue"], vec![vec![decimal(i128::from(revenue), 4)]])
}

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

fn q10(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    // (o_orderkey, o_custkey)
    let orders = table(flow, dir, Table::Orders, |row| {
        let date = i32_at(row, orders::ORDERDATE);
        (Q10_DATES.0..Q10_DATES.1)
            .contains(&date)
            .then(|| (i64_at(row, orders::ORDERKEY), i64_at(row, orders::CUSTKEY)))
    })
    .key_by(|order| order.0);
    let returned = table(flow, dir, Table::Lineitem, |row| {
        (row[RETURNFLAG] == b'R').then(|| (i64_at(row, ORDERKEY), revenue(row)))
    })
    .key_by(|line| line.0);
    let per_customer = returned
        .broadcast_join(orders)
        .key_by(|(_, order)| order.1)
        .aggregate(|(line, _)| line.1, |acc, revenue| *acc += revenue)
        .key_by(|(custkey, _)| *custkey);
    let customers = super::table(flow, dir, Table::Customer, |row| {
        let c: Customer<'_> = weir::serde_fmt::from_slice(row).map_err(|e| WeirError::Data {
            message: format!("a malformed customer row: {e}"),
        })?;
        let strings = [c.c_name, c.c_address, c.c_phone, c.c_comment].map(str::to_string);
        Ok(Some((c.c_custkey, c.c_acctbal, c.c_nationkey, strings)))
    })
    .key_by(|c| c.0);
    let nation_names = flow
        .generate(NATIONS.len() as u64, |i| {
            (i as i64, NATIONS[i as usize].to_string())
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
    let top = |rows: weir::dataflow::Stream<Q10Row>| {
        rows.sort_by(|r| (Descending(r.revenue), r.c_custkey), Some(20))
    };
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

/// Runs nothing; checks an answer against the SF 1 reference and says so in one line.
pub fn reference_verdict(query: Query, answer: &Answer, scale: f64) -> String {
    if scale != 1.0 {
        return format!("no reference answer at SF {scale} (tpchgen ships SF 1's)");
    }
    let problems = answer.check_sf1(query.number());
    match problems.first() {
        None => "equals the reference answer shipped by tpchgen".into(),
        Some(first) => format!(
            "DIFFERS from the reference answer ({} differences; first: {first})",
            problems.len()
        ),
    }
}

/// `Ok` when `answer` equals the SF 1 reference, else an error listing the differences.
///
/// # Errors
///
/// [`WeirError::Usage`] with the first differences.
pub fn expect_sf1(query: Query, answer: &Answer) -> Result<()> {
    let problems = answer.check_sf1(query.number());
    if problems.is_empty() {
        return Ok(());
    }
    Err(WeirError::WrongAnswer {
        detail: format!(
            "Q{} differs from the reference: {}",
            query.number(),
            problems[..problems.len().min(5)].join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q1_totals_are_checked_against_the_manifest() {
        let mut a = Q1Sums::of_row(1700, 2_116_823, 4, 2);
        a.add(&Q1Sums::of_row(100, 5, 0, 0));
        let b = Q1Sums::of_row(300, 7, 1, 1);
        let answer = q1_answer(&[((b'A', b'F'), a), ((b'N', b'O'), b)]);
        let q1 = Q1Totals {
            rows: 3,
            quantity: 2100,
            extendedprice: 2_116_835,
        };
        assert_eq!(check_q1_totals(&answer, &q1), Vec::<String>::new());
        let off = Q1Totals {
            extendedprice: q1.extendedprice + 1,
            ..q1
        };
        let problems = check_q1_totals(&answer, &off);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("sum_base_price totals 21168.35"),
            "{problems:?}"
        );
    }
}
