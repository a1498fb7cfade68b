//! The benchmark workloads, one file each, named `wN_operation`: what each measures and
//! how its answer is checked is in its module documentation.

pub mod soak;
pub mod w1_records;
pub mod w1_sort;
pub mod w2_aggregate;
pub mod w3_join;
pub mod w4_shuffle;
pub mod w5_latency;
pub mod w6_barrier;
