//! The `weir` command line's parts: TPC-H tables and queries as dataflow jobs, and the
//! benchmark workloads, built on the `weir` library (never the reverse).
//!
//! ```text
//!   main.rs (clap) ─▶ run_tpch   TPC-H queries across worker processes (the main job)
//!                 ├─▶ tpch/      table files (checksummed blocks, manifest), generation,
//!                 │              scans, the queries as dataflow programs, reference answers
//!                 ├─▶ nexmark/   Nexmark events as a split source, queries q0–q2
//!                 └─▶ workloads/ W1 sort, W2 aggregation, W3 join, W4 shuffle, W5 latency,
//!                                W6 barriers, the soak
//! ```
#![cfg_attr(
    test,
    allow(
        clippy::too_many_lines,
        reason = "a test is a scenario read top to bottom"
    )
)]
#![forbid(unsafe_code)]

pub mod args;
pub mod cluster;
pub mod commands;
pub mod constants;
pub mod nexmark;
pub mod progress;
pub mod report;
pub mod run_tpch;
pub mod tpch;
pub mod workloads;
