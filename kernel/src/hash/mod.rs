//! Hash aggregation of byte records by byte keys, within a memory budget and beyond it.
//!
//! ```text
//!   push(key, value) ──▶ Table in segments: buckets [tag | address] ──▶ records
//!                          [key_len][acc_len][key][acc], accumulators updated in place
//!        full ──▶ radix-partition by hash ──▶ partial aggregates, one run per partition
//!   finish ──▶ AggregateStream: in-memory groups, then each spilled partition
//!              re-aggregated with a new seed (recursively), or sorted when it does not
//!              shrink (one hot key) or is too deep
//! ```
//!
//! The aggregation never looks inside keys or values: keys are compared as bytes, and
//! values are folded into accumulators by an [`Aggregator`]. Every byte of the table lives
//! in segments of one reservation taken when the aggregation is created. Files, by
//! concept: `hasher` (the seeded hash), `aggregator` (what is computed), `table` (the hash
//! table), `aggregate` ([`HashAggregate`]: input and spilling), `stream`
//! ([`AggregateStream`]: re-aggregation, sort fallback and output).

mod aggregate;
mod aggregator;
mod hasher;
mod stream;
mod table;

pub use aggregate::{AggregateConfig, AggregateStats, HashAggregate};
pub use aggregator::{Aggregator, Composite, ConcatBytes, Count, MaxI64, MinI64, SumI64};
pub use hasher::{hash_bytes, seed_at};
pub use stream::AggregateStream;
