//! Q12, shipping modes and order priority: line items of two ship modes received in a
//! year, late in a particular way, counted per mode by their order's priority.
//!
//! ```text
//!   lineitem ─modes, dates─▶ broadcast ─┐
//!   orders ────────────────────▶ join(orderkey) ─▶ aggregate by mode (high, low) ─▶ top ─▶ collect
//! ```

use std::path::Path;

use super::{Answer, top};
use crate::tpch::{days_from_civil, lineitem, orders};
use weir::dataflow::Dataflow;

const MODES: [&str; 2] = ["MAIL", "SHIP"];
const DATES: (i32, i32) = (days_from_civil(1994, 1, 1), days_from_civil(1995, 1, 1));

pub(super) fn build(flow: &Dataflow, dir: &Path) -> Box<dyn FnOnce() -> Answer> {
    let lines = lineitem::scan(flow, dir, |l| {
        let (ship, commit, receipt) = (l.l_shipdate(), l.l_commitdate(), l.l_receiptdate());
        if !(commit < receipt && ship < commit && (DATES.0..DATES.1).contains(&receipt)) {
            return Ok(None);
        }
        let mode = l.l_shipmode()?;
        Ok(MODES
            .contains(&mode)
            .then(|| (l.l_orderkey(), mode.to_owned())))
    })
    .key_by(|(orderkey, _)| *orderkey);
    let counts = orders::scan(flow, dir, |o| {
        let priority = o.o_orderpriority()?;
        let high = priority == "1-URGENT" || priority == "2-HIGH";
        Ok(Some((o.o_orderkey(), high)))
    })
    .key_by(|(orderkey, _)| *orderkey)
    .broadcast_join(lines)
    .key_by(|(_, (_, mode))| mode.clone())
    .aggregate(
        |((_, high), _)| if *high { (1u64, 0u64) } else { (0, 1) },
        |a, b| {
            a.0 += b.0;
            a.1 += b.1;
        },
    );
    let result = top(counts, |(mode, _)| mode.clone(), None).collect();
    Box::new(move || {
        let rows = result
            .take()
            .into_iter()
            .map(|(mode, (high, low))| vec![mode, high.to_string(), low.to_string()])
            .collect();
        Answer::new(&["l_shipmode", "high_line_count", "low_line_count"], rows)
    })
}
