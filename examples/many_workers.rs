//! Your own program on several worker processes: this binary is the launcher and, started
//! again by it, every worker (SPMD). Each process builds the same dataflow; the launcher
//! prints the answer gathered from all of them.
//!
//! ```sh
//! cargo run --release --example many_workers -- [WORKERS] [NUMBERS]
//! ```

use std::error::Error;

use weir::config::Config;
use weir::spmd;

fn main() -> Result<(), Box<dyn Error>> {
    // Every process reads the same arguments: the workers are started with the
    // launcher's command line.
    let mut args = std::env::args().skip(1);
    let workers = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let numbers: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let config = Config {
        workers,
        ..Config::default()
    };

    // The program: numbers by their last digit, summed. Each worker generates its share
    // of the numbers; the sums are exchanged by digit over TCP between the workers.
    let outcome = spmd::run(&config, |flow| {
        flow.generate(numbers, |i| (i % 10, i))
            .key_by(|(digit, _)| *digit)
            .aggregate(|(_, n)| *n, |sum, n| *sum += n)
            .collect()
    })?;
    let Some(outcome) = outcome else {
        return Ok(()); // a worker process: its part is done
    };

    let mut sums = outcome.records;
    sums.sort_unstable();
    for (digit, sum) in &sums {
        println!("numbers ending in {digit}: sum {sum}");
    }
    let expected: u64 = (0..numbers).sum();
    let total: u64 = sums.iter().map(|(_, sum)| sum).sum();
    assert_eq!(total, expected, "every number counted once");
    println!(
        "{numbers} numbers on {workers} worker processes in {:.3} s",
        outcome.report.wall_s()
    );
    Ok(())
}
