//! Q2, minimum cost supplier: for each brass part of one size, the European suppliers
//! that offer it at the lowest European cost; the 100 with the highest balances.
//!
//! ```text
//!   nation ⋈ region EUROPE ─▶ broadcast ─┐
//!   supplier ─────────────────────▶ join(nationkey) ─▶ broadcast ─┐
//!   part ─size 15, %BRASS─▶ broadcast ─┐                            │
//!   partsupp ────────────────▶ join(partkey) ─────────────▶ join(suppkey)
//!     ─▶ aggregate by partkey: the lowest cost and its suppliers (the correlated
//!        subquery, decorrelated) ─▶ flat_map ─▶ join supplier details (broadcast)
//!     ─▶ top 100 (balance desc, nation, name, partkey) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, region_nations, top};
use crate::tpch::q1::decimal;
use crate::tpch::{part, partsupp, supplier};
use weir::dataflow::Dataflow;
use weir::serde_fmt::Descending;

const SIZE: i32 = 15;
const TYPE_SUFFIX: &str = "BRASS";
const REGION: &str = "EUROPE";

/// A European supplier: `(s_suppkey, s_acctbal, s_name, n_name, s_address, s_phone,
/// s_comment)`.
type Supplier = (i64, i64, String, String, String, String, String);

/// The lowest cost of a part and the suppliers offering it at that cost.
type Cheapest = (i64, Vec<i64>);

fn cheapest(a: &mut Cheapest, b: Cheapest) {
    if b.0 < a.0 {
        *a = b;
    } else if b.0 == a.0 {
        a.1.extend(b.1);
    }
}

/// The European suppliers, with their nation's name.
fn european_suppliers(flow: &Dataflow, dir: &Path) -> weir::dataflow::Stream<Supplier> {
    supplier::scan(flow, dir, |s| {
        Ok(Some((
            s.s_nationkey(),
            (
                s.s_suppkey(),
                s.s_acctbal(),
                s.s_name()?.to_owned(),
                s.s_address()?.to_owned(),
                s.s_phone()?.to_owned(),
                s.s_comment()?.to_owned(),
            ),
        )))
    })
    .key_by(|(nationkey, _)| *nationkey)
    .broadcast_join(region_nations(flow, dir, REGION))
    .map(
        |((_, (suppkey, balance, name, address, phone, comment)), (_, nation))| -> Supplier {
            (suppkey, balance, name, nation, address, phone, comment)
        },
    )
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let suppliers = || european_suppliers(flow, dir);
    let parts = part::scan(flow, dir, |p| {
        if p.p_size() != SIZE || !p.p_type()?.ends_with(TYPE_SUFFIX) {
            return Ok(None);
        }
        Ok(Some((p.p_partkey(), p.p_mfgr()?.to_owned())))
    })
    .key_by(|(partkey, _)| *partkey);
    let offers = partsupp::scan(flow, dir, |ps| {
        Ok(Some((ps.ps_partkey(), ps.ps_suppkey(), ps.ps_supplycost())))
    })
    .key_by(|(partkey, _, _)| *partkey)
    .broadcast_join(parts)
    .map(|((partkey, suppkey, cost), (_, mfgr))| (partkey, mfgr, suppkey, cost))
    .key_by(|offer| offer.2)
    .broadcast_join(suppliers().map(|s| s.0).key_by(|suppkey| *suppkey))
    .map(|(offer, _)| offer)
    .key_by(|(partkey, mfgr, _, _)| (*partkey, mfgr.clone()))
    .aggregate(|(_, _, suppkey, cost)| (*cost, vec![*suppkey]), cheapest)
    .flat_map(|((partkey, mfgr), (_, suppkeys))| {
        suppkeys
            .into_iter()
            .map(|suppkey| (suppkey, partkey, mfgr.clone()))
            .collect::<Vec<_>>()
    })
    .key_by(|(suppkey, _, _)| *suppkey)
    .broadcast_join(suppliers().key_by(|s: &Supplier| s.0));
    let result = top(
        offers,
        |((_, partkey, _), s)| (Descending(s.1), s.3.clone(), s.2.clone(), *partkey),
        Some(100),
    )
    .collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(
                |((_, partkey, mfgr), (_, balance, name, nation, address, phone, comment))| {
                    vec![
                        decimal(i128::from(balance), 2),
                        name,
                        nation,
                        partkey.to_string(),
                        mfgr,
                        address,
                        phone,
                        comment,
                    ]
                },
            )
            .collect();
        Answer::new(
            &[
                "s_acctbal",
                "s_name",
                "n_name",
                "p_partkey",
                "p_mfgr",
                "s_address",
                "s_phone",
                "s_comment",
            ],
            rows,
        )
    })
}
