//! Q19, discounted revenue: line items of three brand, container, size and quantity
//! classes shipped by air in person.
//!
//! ```text
//!   part ─three classes─▶ broadcast ─┐
//!   lineitem ─air, in person─▶ join(partkey) ─▶ class quantity and size ─▶ aggregate ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, revenue};
use crate::tpch::q1::decimal;
use crate::tpch::{lineitem, part};
use weir::dataflow::Dataflow;

/// A class: brand, containers, quantity range (in items), the largest size.
type Class = (&'static str, [&'static str; 4], (i64, i64), i32);

/// Q19's three classes.
const CLASSES: [Class; 3] = [
    (
        "Brand#12",
        ["SM CASE", "SM BOX", "SM PACK", "SM PKG"],
        (1, 11),
        5,
    ),
    (
        "Brand#23",
        ["MED BAG", "MED BOX", "MED PKG", "MED PACK"],
        (10, 20),
        10,
    ),
    (
        "Brand#34",
        ["LG CASE", "LG BOX", "LG PACK", "LG PKG"],
        (20, 30),
        15,
    ),
];

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    // (p_partkey, class index)
    let parts = part::scan(flow, dir, |p| {
        let (brand, container, size) = (p.p_brand()?, p.p_container()?, p.p_size());
        Ok(CLASSES
            .iter()
            .position(|(b, containers, _, most)| {
                *b == brand && containers.contains(&container) && (1..=*most).contains(&size)
            })
            .map(|class| (p.p_partkey(), class)))
    })
    .key_by(|(partkey, _)| *partkey);
    let sums = lineitem::scan(flow, dir, |l| {
        let mode = l.l_shipmode()?;
        if !(mode == "AIR" || mode == "AIR REG") || l.l_shipinstruct()? != "DELIVER IN PERSON" {
            return Ok(None);
        }
        Ok(Some((l.l_partkey(), l.l_quantity(), revenue(&l))))
    })
    .key_by(|(partkey, _, _)| *partkey)
    .broadcast_join(parts)
    .filter(|((_, quantity, _), (_, class))| {
        let (low, high) = CLASSES[*class].2;
        (low * 100..=high * 100).contains(quantity)
    })
    .key_by(|_| ())
    .aggregate(|((_, _, revenue), _)| i128::from(*revenue), |a, b| *a += b)
    .collect();
    Box::new(move || {
        let total: i128 = sums.take().into_iter().map(|(_, sum)| sum).sum();
        Answer::new(&["revenue"], vec![vec![decimal(total, 4)]])
    })
}
