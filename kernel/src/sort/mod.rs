//! Sorting byte records by byte keys, in memory and beyond it.
//!
//! The sorter never looks inside a record: keys are byte strings that order as unsigned
//! lexicographic bytes (serde-fmt's key format produces such keys from typed values), and
//! records are opaque bytes. [`InMemorySorter`] sorts an index of key prefixes and record
//! addresses; [`ExternalSorter`] spills sorted runs through a
//! [`SpillStore`](crate::spill::SpillStore) and merges them with a loser tree.

mod cursor;
mod external;
mod in_memory;
mod index;
mod loser_tree;
mod record;

pub use external::{ExternalSorter, SortConfig, SortStats, SortedStream};
pub use in_memory::InMemorySorter;
