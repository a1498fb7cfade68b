//! Q21, suppliers who kept orders waiting: Saudi suppliers that were the only late one
//! on a finished multi-supplier order, counted by late line items.
//!
//! ```text
//!   lineitem ─late─▶ join(suppkey) with Saudi suppliers (broadcast) ─▶ distinct orderkeys
//!     ─▶ broadcast ─┐
//!   lineitem ─▶ semi join(orderkey): only those orders' lines
//!     ─▶ aggregate by orderkey: up to two distinct suppliers, up to two distinct late
//!     suppliers, the late lines (the EXISTS and NOT EXISTS subqueries, decorrelated)
//!     ─▶ orders with two suppliers and exactly one late ─▶ join(suppkey) with Saudi
//!     suppliers (broadcast) ─▶ broadcast ─┐
//!   orders ─status F──────────────────────▶ join(orderkey)
//!     ─▶ aggregate by supplier: late lines ─▶ top 100 (count desc, name) ─▶ collect
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Answer, top};
use crate::tpch::{lineitem, orders, supplier};
use weir::dataflow::{Dataflow, KeyedStream};
use weir::serde_fmt::Descending;

const NATION: &str = "SAUDI ARABIA";

/// Up to two distinct values (0: none; keys start at 1), enough to tell "one" from
/// "more than one".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Two(i64, i64);

impl Two {
    fn of(key: i64) -> Two {
        Two(key, 0)
    }

    fn add(&mut self, key: i64) {
        if key == 0 || key == self.0 || key == self.1 {
            return;
        }
        if self.0 == 0 {
            self.0 = key;
        } else if self.1 == 0 {
            self.1 = key;
        }
    }

    fn merge(&mut self, other: Two) {
        self.add(other.0);
        self.add(other.1);
    }

    fn count(self) -> u8 {
        u8::from(self.0 != 0) + u8::from(self.1 != 0)
    }
}

/// An order's suppliers, late suppliers and late lines.
type Order = (Two, Two, u64);

/// The Saudi suppliers' keys and names, keyed by key.
fn saudi_suppliers(flow: &Dataflow, dir: &Path) -> KeyedStream<i64, (i64, String)> {
    let nations = super::nation_named(flow, dir, NATION);
    supplier::scan(flow, dir, |s| {
        Ok(Some((
            s.s_nationkey(),
            s.s_suppkey(),
            s.s_name()?.to_owned(),
        )))
    })
    .key_by(|(nationkey, _, _)| *nationkey)
    .broadcast_join(nations)
    .map(|((_, suppkey, name), _)| (suppkey, name))
    .key_by(|(suppkey, _)| *suppkey)
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let saudi = || saudi_suppliers(flow, dir);
    // The orders with a late line of a Saudi supplier: the only ones that can count (a
    // semi-join reduction of the second scan).
    let candidates = lineitem::scan(flow, dir, |l| {
        Ok((l.l_receiptdate() > l.l_commitdate()).then(|| (l.l_orderkey(), l.l_suppkey())))
    })
    .key_by(|(_, suppkey)| *suppkey)
    .broadcast_join(saudi())
    .map(|((orderkey, _), _)| orderkey)
    .distinct()
    .key_by(|orderkey| *orderkey);
    // (orderkey, the one late supplier's name, its late lines)
    let waiting = lineitem::scan(flow, dir, |l| {
        let late = l.l_receiptdate() > l.l_commitdate();
        Ok(Some((l.l_orderkey(), l.l_suppkey(), late)))
    })
    .key_by(|(orderkey, _, _)| *orderkey)
    .broadcast_semi_join(candidates)
    .key_by(|(orderkey, _, _)| *orderkey)
    .aggregate(
        |(_, suppkey, late)| -> Order {
            if *late {
                (Two::of(*suppkey), Two::of(*suppkey), 1)
            } else {
                (Two::of(*suppkey), Two::default(), 0)
            }
        },
        |a, b| {
            a.0.merge(b.0);
            a.1.merge(b.1);
            a.2 += b.2;
        },
    )
    .filter(|(_, (all, late, _))| all.count() == 2 && late.count() == 1)
    .map(|(orderkey, (_, late, lines))| (orderkey, late.0, lines))
    .key_by(|(_, suppkey, _)| *suppkey)
    .broadcast_join(saudi())
    .map(|((orderkey, _, lines), (_, name))| (orderkey, name, lines))
    .key_by(|(orderkey, _, _)| *orderkey);
    let counts = orders::scan(flow, dir, |o| {
        Ok((o.o_orderstatus() == b'F').then(|| o.o_orderkey()))
    })
    .key_by(|orderkey| *orderkey)
    .broadcast_join(waiting)
    .key_by(|(_, (_, name, _))| name.clone())
    .aggregate(|(_, (_, _, lines))| *lines, |a, b| *a += b);
    let result = top(
        counts,
        |(name, count)| (Descending(*count), name.clone()),
        Some(100),
    )
    .collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(name, count)| vec![name, count.to_string()])
            .collect();
        Answer::new(&["s_name", "numwait"], rows)
    })
}
