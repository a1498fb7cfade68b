//! weir: a memory-managed dataflow kernel — the library an engine links.
//!
//! ```text
//!   Dataflow (SPMD: every worker builds the same program)
//!     sources ─▶ map/filter/flat_map (chained calls) ─▶ key_by ─▶ aggregate | join | sort_by
//!        │                                             └─ hash exchange (netstack)
//!        └─ runtime::execute(program, &Config, network)  one thread per task; every byte of
//!           managed memory in segments of one MemoryManager (kernel), network buffers in a
//!           second budget; operators spill (kernel sort, hash aggregation, hybrid hash join)
//! ```
//!
//! [`dataflow`] is the API and [`dataflow::runtime`] runs it on one worker (or, with a
//! [`netstack::transport::NetworkConfig`], as one of several worker processes); [`config`]
//! holds what a job may set; [`workers`] starts worker processes on one host and
//! [`lifecycle`] makes them end with their launcher; [`output`] writes files that replace
//! their target only on success; [`record_file`] writes records once as checksummed,
//! splittable blocks that [`Dataflow::read_records`](dataflow::Dataflow::read_records)
//! reads back as a source; [`spmd`] runs a user's own binary as launcher and workers. The kernel's crates are re-exported: [`kernel`] (memory,
//! spill, sort, hash), [`netstack`] (the network stack) and [`serde_fmt`] (record and key
//! formats). The `weir` command line, TPC-H and the benchmark workloads are the `weir-cli`
//! package in `cli/`, built on this library.
//!
//! ```
//! use weir::config::Config;
//! use weir::dataflow::{Dataflow, runtime};
//!
//! // Word lengths, counted per length, in one process.
//! let flow = Dataflow::new();
//! let counts = flow
//!     .generate(1000, |i| (i % 7) as u32)
//!     .key_by(|len: &u32| *len)
//!     .aggregate(|_| 1u64, |count, one| *count += one)
//!     .collect();
//! runtime::execute(&flow, &Config::default(), None)?;
//! let mut counts = counts.take();
//! counts.sort_unstable();
//! assert_eq!(counts.len(), 7);
//! assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1000);
//! # Ok::<(), weir::error::WeirError>(())
//! ```
#![cfg_attr(
    test,
    allow(
        clippy::too_many_lines,
        reason = "a test is a scenario read top to bottom"
    )
)]
#![forbid(unsafe_code)]
// A library reports through its caller (errors, metrics), never on the process's streams.
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod checkpoint;
pub mod config;
pub mod constants;
pub mod dataflow;
pub mod error;
pub mod lifecycle;
pub mod output;
pub mod record_file;
pub mod size;
pub mod spmd;
pub mod workers;

pub use weir_kernel as kernel;
pub use weir_netstack as netstack;
pub use weir_serde_fmt as serde_fmt;
