//! TPC-H Q1 (the pricing summary report) written with the dataflow API over the tables of
//! `weir gen tpch`: a scan that reads only the fields it needs through a zero-copy row view, a
//! filter pushed into the scan, and a keyed aggregation with a combiner before the shuffle.
//!
//! ```sh
//! cargo run --release -p weir-cli --example tpch_q1 -- [SCALE] [SLOTS]
//! ```

use std::error::Error;

use weir::config::Config;
use weir::dataflow::{Dataflow, runtime};
use weir_cli::run_tpch::{Generator, ensure_default_tables};
use weir_cli::tpch::lineitem;
use weir_cli::tpch::q1::{Q1_SHIPDATE_MAX, Q1Sums};
use weir_cli::tpch::queries::q1_answer;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let scale: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0.01);
    let slots = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let (dir, _) = ensure_default_tables(scale, Generator::InProcess)?;

    let flow = Dataflow::new();
    let groups = lineitem::scan(&flow, &dir, |line| {
        if line.l_shipdate() > Q1_SHIPDATE_MAX {
            return Ok(None);
        }
        let group = (line.l_returnflag(), line.l_linestatus());
        let sums = Q1Sums::of_row(
            line.l_quantity(),
            line.l_extendedprice(),
            line.l_discount(),
            line.l_tax(),
        );
        Ok(Some((group, sums)))
    })
    .key_by(|(group, _)| *group)
    .aggregate(|(_, sums)| *sums, |acc, sums| acc.add(&sums))
    .collect();

    let config = Config {
        slots,
        ..Config::default()
    };
    let report = runtime::execute(&flow, &config, None)?;
    let mut groups = groups.take();
    groups.sort_by_key(|(group, _)| *group);
    print!("{}", q1_answer(&groups).to_table());
    println!("Q1 at SF {scale} in {:.3} s", report.wall_us as f64 / 1e6);
    Ok(())
}
