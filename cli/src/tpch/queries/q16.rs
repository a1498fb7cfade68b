//! Q16, parts/supplier relationship: suppliers (without complaints) of parts of some
//! sizes, not of one brand or type, counted per brand, type and size.
//!
//! ```text
//!   part ─brand, type, sizes─▶ broadcast ─┐
//!   partsupp ──────────────────────▶ join(partkey) ─┐
//!   supplier ─Customer…Complaints─▶ broadcast ──▶ anti join(suppkey)
//!     ─▶ distinct (brand, type, size, suppkey)
//!     ─▶ aggregate by (brand, type, size): count ─▶ sort ─▶ gather ─▶ sort ─▶ collect
//! ```

use std::path::Path;

use super::Answer;
use crate::tpch::{part, partsupp, supplier};
use weir::dataflow::{Dataflow, Stream};
use weir::serde_fmt::Descending;

/// Q16's parameters: the brand and type prefix left out, the sizes kept.
const BRAND: &str = "Brand#45";
const TYPE_PREFIX: &str = "MEDIUM POLISHED";
const SIZES: [i32; 8] = [49, 14, 23, 45, 19, 3, 36, 9];

/// A group: `(p_brand, p_type, p_size)`.
type Group = (String, String, i32);

/// Whether a supplier's comment matches `%Customer%Complaints%`.
fn complains(comment: &str) -> bool {
    comment
        .find("Customer")
        .is_some_and(|at| comment[at + "Customer".len()..].contains("Complaints"))
}

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let parts = part::scan(flow, dir, |p| {
        let (brand, kind) = (p.p_brand()?, p.p_type()?);
        let keep = brand != BRAND && !kind.starts_with(TYPE_PREFIX) && SIZES.contains(&p.p_size());
        Ok(keep.then(|| {
            (
                p.p_partkey(),
                (brand.to_owned(), kind.to_owned(), p.p_size()),
            )
        }))
    })
    .key_by(|(partkey, _)| *partkey);
    let complained = supplier::scan(flow, dir, |s| {
        Ok(complains(s.s_comment()?).then(|| s.s_suppkey()))
    })
    .key_by(|suppkey| *suppkey);
    let suppliers = partsupp::scan(flow, dir, |ps| Ok(Some((ps.ps_partkey(), ps.ps_suppkey()))))
        .key_by(|(partkey, _)| *partkey)
        .broadcast_join(parts)
        .map(|((_, suppkey), (_, group))| (suppkey, group))
        .key_by(|(suppkey, _)| *suppkey)
        .broadcast_anti_join(complained);
    let counts = suppliers
        .map(|(suppkey, group)| (group, suppkey))
        .distinct()
        .key_by(|(group, _)| group.clone())
        .aggregate(|_| 1u64, |a, b| *a += b);
    let order = |rows: Stream<(Group, u64)>| {
        rows.sort_by(
            |((brand, kind, size), count)| (Descending(*count), brand.clone(), kind.clone(), *size),
            None,
        )
    };
    let result = order(order(counts).gather()).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|((brand, kind, size), count)| {
                vec![brand, kind, size.to_string(), count.to_string()]
            })
            .collect();
        Answer::new(&["p_brand", "p_type", "p_size", "supplier_cnt"], rows)
    })
}
