//! Hash aggregation and hash join of byte records by byte keys, within a memory budget
//! and beyond it.
//!
//! ```text
//!   push(key, value) ──▶ Table in segments: buckets [tag | address] ──▶ records
//!                          [key_len][acc_len][key][acc], accumulators updated in place
//!        full ──▶ largest partitions (top hash bits) ──▶ partial aggregates, a run each;
//!                 the other partitions stay in memory
//!   finish ──▶ AggregateStream: in-memory groups, then each spilled partition
//!              re-aggregated with a new seed (recursively), or sorted when it does not
//!              shrink (one hot key) or is too deep
//!
//!   push_build(key, record) ──▶ JoinTable: 10–127 partitions of records in segments
//!        full ──▶ the largest partition ──▶ build runs + bloom filter
//!   probe(key, record, emit) ──▶ matches now, or (bloom permitting) the partition's probe run
//!   finish ──▶ JoinStream: unmatched build records, then each spilled pair joined again
//!              with a new seed (recursively), or sort-merged when it does not shrink
//! ```
//!
//! Neither operator looks inside keys or values: keys are compared as bytes, and values are
//! folded into accumulators by an [`Aggregator`] or carried through a join as they are.
//! Every byte of a table lives in segments of one reservation taken when the operator is
//! created. Files, by concept: `hasher` (the seeded hash), `aggregator` (what is computed),
//! `area` (records in segments), `table` (buckets over the area: lookup, growth,
//! partitions, rebuild), `config` ([`AggregateConfig`], [`AggregateStats`]),
//! `aggregate_level` (a spilled partition, the groups a level keeps), `aggregate`
//! ([`HashAggregate`]: input and spilling), `stream` ([`AggregateStream`]: re-aggregation,
//! sort fallback and output); for the join, `join_config` ([`JoinType`], [`JoinConfig`],
//! [`JoinStats`]), `join_row` ([`JoinRow`]), `join_run` (the run record format),
//! `join_table` (partitioned build records and their buckets), `bloom` (a spilled
//! partition's filter), `join_context` (what the join's parts share: store, config, run
//! io, stats), `join_level` (spilled partitions and the pairs still to join),
//! `merge_join` (the sort-merge fallback), `join` ([`HashJoin`]: build, probe, spilling)
//! and `join_stream` ([`JoinStream`]: recursion and output). Each operator's files import
//! downwards only: its stream stands on top (and defines its `finish`), the parts below
//! take what they use rather than the whole operator.
//!
//! ```text
//!   stream ──▶ aggregate ──▶ aggregate_level, table, config, aggregator
//!
//!   join_stream ──▶ join ──▶ merge_join ──▶ join_context ──▶ join_run, join_config
//!        │            └────▶ join_level ───────┘
//!        └──▶ join_row (also under join and merge_join), join_table (under join)
//! ```
//!
//! ```
//! use weir_kernel::hash::{AggregateConfig, Count, HashAggregate};
//! use weir_kernel::memory::MemoryManager;
//! use weir_kernel::spill::{SpillConfig, open_store};
//!
//! let manager = MemoryManager::with_budget(4 << 20)?;
//! let dir = std::env::temp_dir().join(format!("weir-doc-hash-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = open_store(&SpillConfig::new(dir.clone()))?;
//! let config = AggregateConfig::default();
//! let owner = manager.owner("count-words");
//! let segments = config.memory_segments_min();
//! let mut aggregate = HashAggregate::new(&owner, segments, store, Box::new(Count), config)?;
//! for word in ["to", "be", "or", "not", "to", "be"] {
//!     aggregate.push(word.as_bytes(), b"")?;
//! }
//! let mut stream = aggregate.finish()?;
//! let mut counts = Vec::new();
//! while let Some((word, count)) = stream.next()? {
//!     counts.push((word.to_vec(), u64::from_le_bytes(count.try_into()?)));
//! }
//! counts.sort();
//! assert_eq!(counts[0], (b"be".to_vec(), 2));
//! assert_eq!(counts.len(), 4);
//! drop(stream);
//! manager.leak_check()?;
//! std::fs::remove_dir(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A join of orders (build, right) with their lines (probe, left):
//!
//! ```
//! use weir_kernel::hash::{HashJoin, JoinConfig, JoinType};
//! use weir_kernel::memory::MemoryManager;
//! use weir_kernel::spill::{SpillConfig, open_store};
//!
//! let manager = MemoryManager::with_budget(8 << 20)?;
//! let dir = std::env::temp_dir().join(format!("weir-doc-join-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = open_store(&SpillConfig::new(dir.clone()))?;
//! let config = JoinConfig::default();
//! let owner = manager.owner("orders-lines");
//! let segments = config.memory_segments_min();
//! let mut join = HashJoin::new(&owner, segments, store, JoinType::LeftOuter, config)?;
//! join.push_build(b"order-1", b"alice")?;
//! join.push_build(b"order-2", b"bob")?;
//! join.finish_build()?;
//! let mut rows = Vec::new();
//! for (order, line) in [(&b"order-1"[..], &b"pen"[..]), (b"order-3", b"ink")] {
//!     join.probe(order, line, |row| {
//!         rows.push((row.build.map(<[u8]>::to_vec), row.probe.map(<[u8]>::to_vec)));
//!         Ok(())
//!     })?;
//! }
//! let mut rest = join.finish()?;
//! assert!(rest.next()?.is_none(), "nothing spilled");
//! assert_eq!(rows[0], (Some(b"alice".to_vec()), Some(b"pen".to_vec())));
//! assert_eq!(rows[1], (None, Some(b"ink".to_vec())));
//! drop(rest);
//! manager.leak_check()?;
//! std::fs::remove_dir(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod aggregate_level;
mod aggregator;
mod area;
mod bloom;
mod config;
mod hasher;
mod join;
mod join_config;
mod join_context;
mod join_level;
mod join_row;
mod join_run;
mod join_stream;
mod join_table;
mod key_filter;
mod merge_join;
mod state;
mod stream;
mod table;

pub use aggregate::HashAggregate;
pub use aggregator::{Aggregator, Composite, ConcatBytes, Count, MaxI64, MinI64, SumI64};
pub use config::{AggregateConfig, AggregateStats};
pub use hasher::{hash_bytes, seed_at};
pub use join::{HashJoin, ProbeHash};
pub use join_config::{JoinConfig, JoinStats, JoinType};
pub use join_row::JoinRow;
pub use join_stream::JoinStream;
pub use state::{KeyedState, Lookup, StateConfig, StateStats};
pub use stream::AggregateStream;
