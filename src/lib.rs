//! weir: a memory-managed dataflow kernel.
//!
//! This root crate is where the kernel's crates meet: [`kernel`] (memory, spill, sort,
//! hash), [`netstack`] (the network stack) and [`serde_fmt`] (record and key formats).
//! Here: the dataflow API and its runtime ([`dataflow`], [`config`]), TPC-H tables and
//! queries ([`tpch`], [`run_job`]), the benchmark jobs of WORKLOADS.md, worker processes
//! ([`workers`]) and what the `weir` command line is built from.
#![forbid(unsafe_code)]

pub mod barrier_job;
pub mod barrier_report;
pub mod config;
pub mod constants;
pub mod dataflow;
pub mod error;
pub mod latency_job;
pub mod lifecycle;
pub mod output;
pub mod run_job;
pub mod shuffle_job;
pub mod size;
pub mod soak_job;
pub mod sort_job;
pub mod tpch;
pub mod w1;
pub mod w2_job;
pub mod w3_job;
pub mod workers;

pub use weir_kernel as kernel;
pub use weir_netstack as netstack;
pub use weir_serde_fmt as serde_fmt;
