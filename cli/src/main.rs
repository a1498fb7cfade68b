//! The `weir` command line.
//!
//! `weir` with no arguments runs the main job, the 22 TPC-H queries across two worker
//! processes (`weir run tpch` with other queries, scales and configurations); `weir demo`
//! the verified external sort; `weir gen sort-records` writes W1 input;
//! `weir sort` sorts it within a memory budget; `weir gen tpch` writes TPC-H tables;
//! `weir bench shuffle|latency|barrier` run W4, W5 and W6 (`weir worker` is one worker
//! process of those), `weir bench w2a|w2b` W2 (hash aggregation of TPC-H lineitem) and
//! `weir bench w3` W3 (the hybrid hash join orders ⋈ lineitem). Usage errors and bad input
//! exit with 2, failures while running with 1.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use weir_cli::args::describe;
use weir_cli::commands::{Cli, run};

fn main() -> ExitCode {
    // Before any thread exists: the signal mask and the heap setting are inherited.
    weir::lifecycle::install("weir");
    weir::kernel::sys::limit_heap_arenas();
    weir::lifecycle::watch_launcher("weir");
    let result = run(Cli::parse());
    // A signal that stopped the job exits with its own code and message, not the job's.
    weir::lifecycle::defer_to_signal();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            weir::lifecycle::report_line(&format!("weir: {}", describe(&error)));
            ExitCode::from(error.exit_code())
        }
    }
}
