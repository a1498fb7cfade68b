//! The job graph a program builds: stages (chains, one task per slot or one task) joined
//! by datasets (the exchanges between them).

use std::fmt;
use std::sync::Arc;

use super::{Driver, TaskContext};
use crate::constants::COMBINE_MEMORY_BYTES;
use crate::error::Result;
use crate::kernel::hash::{AggregateConfig, JoinConfig};
use crate::kernel::sort::SortConfig;

/// A dataset's index in the graph: its exchange's identity on the wire.
pub(crate) type DatasetId = usize;

/// How many tasks a stage has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parallelism {
    /// One per slot of every worker.
    All,
    /// One, on worker 0.
    One,
}

/// A kernel operator in a chain: each task running it gets a share of the worker's
/// managed memory for it, by what it can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemoryOp {
    /// An external sort: more memory, fewer and longer runs.
    Sort,
    /// A final hash aggregation: more memory, fewer spilled partitions.
    Aggregate,
    /// A combiner before an exchange: its table only pre-aggregates, and it hands its
    /// groups on when the table is full, so a few MiB serve it as well as a lot.
    Combine,
    /// A hybrid hash join: more memory, fewer spilled partitions.
    Join,
}

impl MemoryOp {
    /// The operator's name in reports and errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MemoryOp::Sort => "sort",
            MemoryOp::Aggregate => "aggregate",
            MemoryOp::Combine => "combiner",
            MemoryOp::Join => "join",
        }
    }

    /// Segments below which the kernel operator cannot run.
    pub(crate) fn segments_min(self) -> usize {
        match self {
            MemoryOp::Sort => SortConfig::default().memory_segments_min(),
            MemoryOp::Aggregate | MemoryOp::Combine => {
                AggregateConfig::default().memory_segments_min()
            }
            MemoryOp::Join => JoinConfig::default().memory_segments_min(),
        }
    }

    /// The most segments that help the operator, for `segment_size`: `None` when more
    /// memory always means less spilling.
    pub(crate) fn segments_max(self, segment_size: usize) -> Option<usize> {
        match self {
            MemoryOp::Combine => {
                Some((COMBINE_MEMORY_BYTES / segment_size).max(self.segments_min()))
            }
            MemoryOp::Sort | MemoryOp::Aggregate | MemoryOp::Join => None,
        }
    }
}

/// Appends a record's key bytes to the buffer.
pub(crate) type KeyBytes<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;

/// How an exchange routes a record of type `T` to the consumer's tasks.
pub(crate) enum Exchange<T> {
    /// By the hash of the record's key bytes (which the function appends to the buffer)
    /// through key groups.
    Hash(KeyBytes<T>),
    /// Round robin.
    RoundRobin,
    /// To every task.
    Broadcast,
    /// To the one consumer task.
    Gather,
}

impl<T> Exchange<T> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Exchange::Hash(_) => "hash",
            Exchange::RoundRobin => "rebalance",
            Exchange::Broadcast => "broadcast",
            Exchange::Gather => "gather",
        }
    }
}

/// Builds the driver of one task of a stage, its chain ending in the stage's sink.
pub(crate) type OpenStage = Arc<dyn Fn(&mut TaskContext) -> Result<Box<dyn Driver>> + Send + Sync>;

/// A chain run by each of its tasks.
pub(crate) struct Stage {
    /// The operators, for reports.
    pub(crate) name: String,
    pub(crate) parallelism: Parallelism,
    /// Kernel operators in the chain: each task gets a share of the worker's memory for
    /// each.
    pub(crate) memory_ops: Vec<MemoryOp>,
    /// Segments of I/O buffers each task's sources hold.
    pub(crate) io_segments: usize,
    pub(crate) open: OpenStage,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.name)
            .field("parallelism", &self.parallelism)
            .field("memory_ops", &self.memory_ops)
            .field("io_segments", &self.io_segments)
            .finish_non_exhaustive()
    }
}

/// An exchange between two stages.
#[derive(Debug, Clone)]
pub(crate) struct Dataset {
    pub(crate) kind: &'static str,
    pub(crate) producer: Option<usize>,
    pub(crate) consumer: Option<usize>,
}

/// Stages and datasets, in the order they were built (producers before consumers).
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) stages: Vec<Stage>,
    pub(crate) datasets: Vec<Dataset>,
}

impl Graph {
    pub(crate) fn add_dataset(&mut self, kind: &'static str) -> DatasetId {
        self.datasets.push(Dataset {
            kind,
            producer: None,
            consumer: None,
        });
        self.datasets.len() - 1
    }

    pub(crate) fn set_producer(&mut self, dataset: DatasetId, stage: usize) {
        self.datasets[dataset].producer = Some(stage);
    }

    /// Adds `stage`, the consumer of `inputs`; returns its index.
    pub(crate) fn add_stage(&mut self, stage: Stage, inputs: &[DatasetId]) -> usize {
        let index = self.stages.len();
        self.stages.push(stage);
        for &dataset in inputs {
            self.datasets[dataset].consumer = Some(index);
        }
        index
    }

    /// Checks that every exchange has both ends: a stream that was built and never ended
    /// in a sink leaves a dataset without consumer.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.stages.is_empty() {
            return Err("the program has no sink (collect, count, discard, write_lines)".into());
        }
        for (index, dataset) in self.datasets.iter().enumerate() {
            if dataset.producer.is_none() || dataset.consumer.is_none() {
                return Err(format!(
                    "exchange {index} ({}) is not consumed: end every stream in a sink",
                    dataset.kind
                ));
            }
        }
        Ok(())
    }
}
