//! Q20, potential part promotion: Canadian suppliers holding more than half of what they
//! shipped in a year of some forest-colored parts.
//!
//! ```text
//!   part ─forest%─▶ broadcast ─┬──────────────────────────────────────────┐
//!   lineitem ─1994─────────▶ join(partkey) ─▶ aggregate by (partkey, suppkey): quantity ─┐
//!   partsupp ───────────────▶ join(partkey) ─▶ broadcast ─────────────▶ join(partkey, suppkey)
//!     ─▶ availqty > half the quantity ─▶ aggregate by suppkey (each once) ─▶ broadcast ─┐
//!   supplier ⋈ nation CANADA ───────────────────────────────────────────────▶ semi join
//!     ─▶ top (name) ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, top};
use crate::tpch::{days_from_civil, lineitem, part, partsupp, supplier};
use weir::dataflow::{Dataflow, KeyedStream};

const COLOR: &str = "forest";
const NATION: &str = "CANADA";
const DATES: (i32, i32) = (days_from_civil(1994, 1, 1), days_from_civil(1995, 1, 1));

fn forest_parts(flow: &Dataflow, dir: &Path) -> KeyedStream<i64, i64> {
    part::scan(flow, dir, |p| {
        Ok(p.p_name()?.starts_with(COLOR).then(|| p.p_partkey()))
    })
    .key_by(|partkey| *partkey)
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let shipped = lineitem::scan(flow, dir, |l| {
        Ok((DATES.0..DATES.1)
            .contains(&l.l_shipdate())
            .then(|| (l.l_partkey(), l.l_suppkey(), l.l_quantity())))
    })
    .key_by(|(partkey, _, _)| *partkey)
    .broadcast_join(forest_parts(flow, dir))
    .key_by(|((partkey, suppkey, _), _)| (*partkey, *suppkey))
    .aggregate(|((_, _, quantity), _)| *quantity, |a, b| *a += b);
    let stock = partsupp::scan(flow, dir, |ps| {
        Ok(Some(((ps.ps_partkey(), ps.ps_suppkey()), ps.ps_availqty())))
    })
    .key_by(|((partkey, _), _)| *partkey)
    .broadcast_join(forest_parts(flow, dir))
    .map(|(stock, _)| stock)
    .key_by(|(key, _)| *key);
    // availqty > 0.5 × sum(quantity): 2 × availqty × 100 > quantity in hundredths
    let suppliers = shipped
        .key_by(|(key, _)| *key)
        .join(stock)
        .filter(|((_, quantity), (_, available))| 200 * i64::from(*available) > *quantity)
        .map(|(((_, suppkey), _), _)| suppkey)
        .distinct()
        .key_by(|suppkey| *suppkey);
    let canada = super::nation_named(flow, dir, NATION);
    let rows = supplier::scan(flow, dir, |s| {
        Ok(Some((
            s.s_nationkey(),
            s.s_suppkey(),
            s.s_name()?.to_owned(),
            s.s_address()?.to_owned(),
        )))
    })
    .key_by(|(nationkey, _, _, _)| *nationkey)
    .broadcast_join(canada)
    .map(|((_, suppkey, name, address), _)| (suppkey, name, address))
    .key_by(|(suppkey, _, _)| *suppkey)
    .broadcast_semi_join(suppliers);
    let result = top(rows, |(_, name, _)| name.clone(), None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(_, name, address)| vec![name, address])
            .collect();
        Answer::new(&["s_name", "s_address"], rows)
    })
}
