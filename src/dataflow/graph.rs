//! The job graph a program builds: stages (chains, one task per slot or one task) joined
//! by datasets (the exchanges between them).

use std::fmt;
use std::sync::Arc;

use super::{Driver, TaskContext};
use crate::constants::COMBINE_MEMORY_BYTES;
use crate::error::Result;
use crate::kernel::hash::{AggregateConfig, JoinConfig, StateConfig};
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
    /// A window combiner before an exchange: like [`MemoryOp::Combine`], bounded; it
    /// forwards what it is given once its table spills.
    WindowCombine,
    /// An event-time window operator: two hash aggregations (the open windows, and the
    /// table they move to when a watermark fires some): more memory, fewer spilled
    /// partitions.
    Window,
    /// A keyed process operator's state: more memory, fewer spilled partitions.
    State,
}

impl MemoryOp {
    /// The operator's name in reports and errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MemoryOp::Sort => "sort",
            MemoryOp::Aggregate => "aggregate",
            MemoryOp::Combine => "combiner",
            MemoryOp::Join => "join",
            MemoryOp::Window => "window",
            MemoryOp::WindowCombine => "window combiner",
            MemoryOp::State => "keyed state",
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
            MemoryOp::Window | MemoryOp::WindowCombine => {
                2 * AggregateConfig::default().memory_segments_min()
            }
            MemoryOp::State => StateConfig::default().memory_segments_min(),
        }
    }

    /// The most segments that help the operator, for `segment_size`: `None` when more
    /// memory always means less spilling.
    pub(crate) fn segments_max(self, segment_size: usize) -> Option<usize> {
        match self {
            MemoryOp::Combine | MemoryOp::WindowCombine => {
                Some((COMBINE_MEMORY_BYTES / segment_size).max(self.segments_min()))
            }
            MemoryOp::Sort
            | MemoryOp::Aggregate
            | MemoryOp::Join
            | MemoryOp::Window
            | MemoryOp::State => None,
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

/// A chain ended in its sink (or, through a tee, its sinks) with the exchanges it reads
/// and writes: what becomes a stage once every branch of its tees has ended.
pub(crate) struct Ending {
    pub(crate) stage: Stage,
    pub(crate) inputs: Vec<DatasetId>,
    pub(crate) outputs: Vec<DatasetId>,
}

/// Stages and datasets, in the order they were built. A stage is registered when its
/// chain ends, so the consumer of a tee's branch may come before the tee's stage.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    pub(crate) stages: Vec<Stage>,
    pub(crate) datasets: Vec<Dataset>,
    /// Tees made so far (the next tee's identity).
    tees: usize,
    /// Tees with a branch that has not ended yet.
    tees_open: usize,
    /// What the program asked for that cannot run, found while it was built.
    refusals: Vec<String>,
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

    /// Adds the stage of `ending`, the consumer of its inputs and the producer of its
    /// outputs.
    pub(crate) fn add_stage(&mut self, ending: Ending) {
        let index = self.stages.len();
        self.stages.push(ending.stage);
        for dataset in ending.inputs {
            self.datasets[dataset].consumer = Some(index);
        }
        for dataset in ending.outputs {
            self.datasets[dataset].producer = Some(index);
        }
    }

    /// A new tee, open until [`close_tee`](Self::close_tee); returns its identity.
    pub(crate) fn open_tee(&mut self) -> usize {
        self.tees += 1;
        self.tees_open += 1;
        self.tees - 1
    }

    /// Every branch of a tee has ended.
    pub(crate) fn close_tee(&mut self) {
        assert!(self.tees_open > 0, "a tee closes once");
        self.tees_open -= 1;
    }

    /// Notes that the program cannot run, and why: [`execute`](super::execute) refuses
    /// it before anything runs.
    pub(crate) fn refuse(&mut self, why: String) {
        self.refusals.push(why);
    }

    /// Checks that the program can run: nothing was refused while it was built, and every
    /// exchange has both ends (a stream that was built and never ended in a sink leaves a
    /// dataset without consumer, or a tee open).
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if let Some(why) = self.refusals.first() {
            return Err(why.clone());
        }
        if self.tees_open > 0 {
            return Err(format!(
                "{} of {} tees have a branch that is not consumed: end both streams of a \
                 tee in a sink",
                self.tees_open, self.tees
            ));
        }
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
