//! The dataflow API: programs written once, run by every task of every worker.
//!
//! ```text
//!   let flow = Dataflow::new();                       (the same program on every worker)
//!   flow.generate(n, f) ─map─filter─▶ key_by(k) ══hash exchange══▶ aggregate ─▶ collect()
//!   └──────────── stage 0: one task per slot ────┘              └── stage 1 ──┘
//!
//!   a stage = a chain of operators between exchanges, one thread per task;
//!   inside a chain, records are values passed by function call (never serialized);
//!   across an exchange, records are serde-fmt bytes in network buffers, local channels
//!   for tasks of the same worker, TCP with credit-based flow control between workers.
//! ```
//!
//! A program is SPMD like timely's: every worker process builds the same [`Dataflow`]
//! and [`runtime::execute`]s it with its own process index. Task `t` of a stage with
//! parallelism P (workers × slots) runs on worker `t / slots`; a stage fed by
//! [`Stream::gather`] has one task, on worker 0, which is also where [`Stream::collect`]
//! delivers.
//!
//! Blocking operators ([`KeyedStream::aggregate`], [`KeyedStream::join`],
//! [`Stream::sort_by`]) run in the kernel: hash aggregation, hybrid hash join and external
//! sort, each with its share of the worker's memory budget, spilling to disk when the share
//! is used up. An aggregation pre-aggregates before its exchange (a combiner), so only
//! partial accumulators cross the network. A join reads its build (right) input to the end
//! before its probe (left) input; the right input must therefore not depend on the left
//! one's progress (as for any blocking exchange).
//!
//! The operators a query plan needs beside these — fallible transforms, `distinct`,
//! `limit`, `top_k`, semi and anti joins — are built from them (module `relational`). A
//! stream read by two consumers is split with [`Stream::tee`]: both branches run in the
//! stream's chain, record by record, so they must not meet again in a join or union
//! (module `tee` says why; such a program is refused before it runs).
//!
//! Keys are encoded with serde-fmt's order-preserving key format: the exchange hashes
//! those bytes into key groups (Flink's scheme), the kernel operators compare them, and a
//! sort orders by them (wrap a field in [`crate::serde_fmt::Descending`] to reverse it).

mod barrier;
mod committed;
mod event_time;
mod graph;
mod group_cache;
mod keyed;
mod merge;
mod metrics;
mod operators;
mod relational;
mod replay;
pub mod runtime;
mod session;
mod sources;
mod tee;
mod window;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_kernel::hash::JoinType;

use crate::error::Result;
pub use barrier::Barrier;
pub use committed::{TransactionalSink, read_committed};
pub(crate) use event_time::unix_micros as event_time_micros;
pub use event_time::{WATERMARK_INTERVAL_DEFAULT, Watermark, Watermarks};
use graph::{DatasetId, Ending, Exchange, Graph, MemoryOp, Parallelism, Stage};
pub use keyed::{Keyed, ProcessError};
pub use metrics::OperatorReport;
pub(crate) use operators::decode as decode_record;
pub use replay::{PULL_BATCH, ReplayableSource};
pub use runtime::{BarrierSample, JobReport, TaskContext, WorkerReport, execute, execute_observed};
pub use session::SessionStream;
pub use window::{Window, WindowedStream, Windows};

/// What flows through a stream: a record type serde-fmt can encode and decode.
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

/// What a key is: data that is also cloned into the kernel operators' key bytes.
pub trait Key: Data + Clone {}

impl<K: Data + Clone> Key for K {}

/// The receiving end of an operator: records pushed one at a time, then `finish`.
///
/// Chains are built from these: `map` wraps its downstream `Push` in one that applies the
/// function, so a record goes through a chain as nested calls.
pub trait Push<T>: Send {
    /// Takes one record.
    ///
    /// # Errors
    ///
    /// Whatever the operator or its downstream fails with; the task then stops.
    fn push(&mut self, record: T) -> Result<()>;

    /// No more records will come: emit what is held back and finish downstream.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    fn finish(&mut self) -> Result<()>;

    /// Whether this consumer takes no more records: a [`limit`](Stream::limit) that has
    /// passed its last one, and the operators in front of it that only forward (`map`,
    /// `filter`, `flat_map` and their fallible forms, a `tee` whose branches are all
    /// done). Sources look at it now and then and stop early, so a limit ends the scan
    /// (or the unbounded source) in front of it; records pushed after are dropped. A
    /// source of one's own ([`Dataflow::source_push`]) should look too. `false` by
    /// default: sorts, aggregations, joins and exchanges need all their input.
    fn is_done(&self) -> bool {
        false
    }

    /// Event time has reached `watermark` (see [`Watermark`]): operators that only
    /// forward pass it on, window operators fire the windows it closes, and an exchange
    /// sends it to every consumer task. Dropped by default (sinks, and the batch
    /// operators, which emit at the end of their input).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        let _ = watermark;
        Ok(())
    }

    /// A barrier came (see [`Barrier`]): every operator with a downstream passes it on
    /// in order with its records (an exchange sends it to every consumer task, whose gate
    /// aligns it). Dropped by default: sinks end its way. An operator of one's own that
    /// has a downstream must pass it on, or barriers stop at it.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        let _ = barrier;
        Ok(())
    }
}

/// The source of a task's records: it pushes them into the task's chain, then finishes it.
pub(crate) trait Driver: Send {
    /// Runs to the end of the input.
    fn run(&mut self, ctx: &mut TaskContext) -> Result<()>;
}

/// Builds a chain for one task: given the downstream `Push`, the driver that feeds it.
type Open<T> =
    Arc<dyn Fn(&mut TaskContext, Box<dyn Push<T>>) -> Result<Box<dyn Driver>> + Send + Sync>;

/// A dataflow program under construction. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Dataflow {
    graph: Rc<RefCell<Graph>>,
}

impl Dataflow {
    /// An empty program.
    pub fn new() -> Dataflow {
        Dataflow::default()
    }

    /// The stages and exchanges built so far, for [`runtime::execute`].
    pub(crate) fn graph(&self) -> Rc<RefCell<Graph>> {
        Rc::clone(&self.graph)
    }

    /// A stream of `f(0)`, …, `f(count − 1)`: task `t` of P generates the indices `i`
    /// with `i % P == t`.
    pub fn generate<T: Data>(
        &self,
        count: u64,
        f: impl Fn(u64) -> T + Send + Sync + 'static,
    ) -> Stream<T> {
        self.source("generate", 0, sources::generate(count, f))
    }

    /// A stream from a source that pushes its task's records itself: `run(ctx, down)` runs
    /// once in each task, pushes that task's share into `down` and returns (the runtime
    /// finishes the chain). `io_segments` is how many segments the source reads through:
    /// the runtime sets them aside in the worker's budget for each task, and the source
    /// takes them from [`TaskContext::io_owner`]. A long-running source should call
    /// [`TaskContext::check_cancelled`] every few thousand records and may report its
    /// progress with [`TaskContext::count_rows_read`]. This is how file formats outside the
    /// library (the TPC-H tables of `weir-cli`) read at full speed inside the budget.
    pub fn source_push<T: Data>(
        &self,
        name: &str,
        io_segments: usize,
        run: impl Fn(&TaskContext, &mut dyn Push<T>) -> Result<()> + Send + Sync + 'static,
    ) -> Stream<T> {
        self.source(name, io_segments, sources::push_fn(run))
    }

    /// The lines of a UTF-8 text file (`.tbl`, CSV, logs) without their line ends (`\n`
    /// or `\r\n`). Task `t` of P reads about 1/P of the file's bytes: the lines that
    /// start in the `t`-th of P equal byte ranges, so the tasks read every line once
    /// between them and the file once (the task whose range ends inside a line reads it
    /// to its end; the next one skips it).
    pub fn text_lines(&self, path: impl Into<std::path::PathBuf>) -> Stream<String> {
        self.source("text", 0, sources::text_lines(path.into()))
    }

    /// The records of a file of fixed-width binary records (`width` bytes each): task `t`
    /// of P reads the `t`-th of P contiguous ranges of records.
    pub fn fixed_width(
        &self,
        path: impl Into<std::path::PathBuf>,
        width: usize,
    ) -> Stream<Vec<u8>> {
        self.source("fixed-width", 0, sources::fixed_width(path.into(), width))
    }

    /// A stream from a custom source: `open(ctx)` runs in each task and returns an
    /// iterator of that task's records (use [`TaskContext::task`] and
    /// [`TaskContext::parallelism`] to pick its share).
    pub fn source_fn<T: Data, I>(
        &self,
        name: &str,
        open: impl Fn(&TaskContext) -> Result<I> + Send + Sync + 'static,
    ) -> Stream<T>
    where
        I: Iterator<Item = Result<T>> + Send + 'static,
    {
        self.source(name, 0, sources::from_fn(open))
    }

    fn source<T: Data>(&self, name: &str, io_segments: usize, open: Open<T>) -> Stream<T> {
        Stream {
            graph: Rc::clone(&self.graph),
            open,
            inputs: Vec::new(),
            parallelism: Parallelism::All,
            memory_ops: Vec::new(),
            io_segments,
            name: name.to_string(),
            branch: None,
            tees: Vec::new(),
        }
    }
}

/// A stream of records of type `T` in the program being built.
pub struct Stream<T> {
    graph: Rc<RefCell<Graph>>,
    open: Open<T>,
    // Exchanges this chain reads.
    inputs: Vec<DatasetId>,
    parallelism: Parallelism,
    // Kernel operators (each takes a share of the worker's memory) and I/O buffers.
    memory_ops: Vec<MemoryOp>,
    io_segments: usize,
    name: String,
    // The tee this chain is a branch of, when it is one (its stage is registered when
    // every branch of the tee has ended).
    branch: Option<tee::Branch>,
    // Every tee upstream of this stream, across exchanges: two streams that share one
    // cannot be merged (see `merged`).
    tees: Vec<tee::TeeId>,
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("parallelism", &self.parallelism)
            .field("tees", &self.tees)
            .finish_non_exhaustive()
    }
}

impl<T: Data> Stream<T> {
    /// Appends an operator to the chain: `wrap` turns the downstream `Push<U>` into this
    /// stream's `Push<T>`.
    fn chain<U: Data>(
        self,
        name: &str,
        memory_ops: &[MemoryOp],
        wrap: impl Fn(&mut TaskContext, Box<dyn Push<U>>) -> Result<Box<dyn Push<T>>>
        + Send
        + Sync
        + 'static,
    ) -> Stream<U> {
        let upstream = self.open;
        Stream {
            graph: self.graph,
            open: Arc::new(move |ctx, down| {
                let push = wrap(ctx, down)?;
                upstream(ctx, push)
            }),
            inputs: self.inputs,
            parallelism: self.parallelism,
            memory_ops: [self.memory_ops, memory_ops.to_vec()].concat(),
            io_segments: self.io_segments,
            name: format!("{} → {name}", self.name),
            branch: self.branch,
            tees: self.tees,
        }
    }

    /// Each record through `f`.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        let f: Arc<dyn Fn(T) -> U + Send + Sync> = Arc::new(f);
        self.chain("map", &[], move |_, down| {
            Ok(Box::new(operators::Map {
                f: Arc::clone(&f),
                down,
            }))
        })
    }

    /// The records for which `f` holds.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f: Arc<dyn Fn(&T) -> bool + Send + Sync> = Arc::new(f);
        self.chain("filter", &[], move |_, down| {
            Ok(Box::new(operators::Filter {
                f: Arc::clone(&f),
                down,
            }))
        })
    }

    /// Every record `f` returns for each record.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U> + 'static>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        let f: Arc<dyn Fn(T) -> I + Send + Sync> = Arc::new(f);
        self.chain("flat_map", &[], move |_, down| {
            Ok(Box::new(operators::FlatMap {
                f: Arc::clone(&f),
                down,
                _items: PhantomData,
            }))
        })
    }

    /// The stream in event time: `timestamp` gives each record's time in milliseconds,
    /// and watermarks made by `watermarks` follow the records from here on, through the
    /// operators that forward and across exchanges, to the window operators
    /// ([`KeyedStream::window`]). Put it right after the source, where the order of the
    /// records is the source's own. See [`Watermarks`].
    pub fn event_time(
        self,
        timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static,
        watermarks: Watermarks,
    ) -> Stream<T> {
        let timestamp: event_time::Timestamp<T> = Arc::new(timestamp);
        self.chain("event_time", &[], move |ctx, down| {
            let mut assigner = event_time::EventTime::new(Arc::clone(&timestamp), watermarks, down);
            assigner.snapshots(ctx.snapshot_slot())?;
            Ok(Box::new(assigner))
        })
    }

    /// Partitions the stream by `key` for a keyed operator (aggregate, join): records with
    /// equal keys meet in one task. The exchange happens in the operator that follows, so
    /// an aggregation can pre-aggregate before it.
    ///
    /// `key` must be a pure function of the record: it runs again on the same record
    /// when a keyed process operator replays records it deferred while their state was
    /// spilled, and when a job restored from a checkpoint reprocesses its sources' records.
    pub fn key_by<K: Key>(
        self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        KeyedStream {
            stream: self,
            key: Arc::new(key),
        }
    }

    /// Records spread round robin over the next stage's tasks.
    pub fn rebalance(self) -> Stream<T> {
        self.exchange("rebalance", Exchange::RoundRobin, Parallelism::All)
    }

    /// Every record to every task of the next stage.
    pub fn broadcast(self) -> Stream<T> {
        self.exchange("broadcast", Exchange::Broadcast, Parallelism::All)
    }

    /// Every record to one task, on worker 0 (for a global sort, limit or result).
    pub fn gather(self) -> Stream<T> {
        self.exchange("gather", Exchange::Gather, Parallelism::One)
    }

    /// Ends this stage with an exchange; the returned stream reads it in the next stage.
    fn exchange(self, name: &str, exchange: Exchange<T>, parallelism: Parallelism) -> Stream<T> {
        let graph = Rc::clone(&self.graph);
        let dataset = graph.borrow_mut().add_dataset(exchange.kind());
        let exchange = Arc::new(exchange);
        let tees = self.tees.clone();
        self.into_stage(vec![dataset], move |ctx| {
            let writer = ctx.take_writer(dataset)?;
            let counters = ctx.counters();
            Ok(Box::new(operators::ExchangeOut::new(
                writer,
                Arc::clone(&exchange),
                counters,
            )) as Box<dyn Push<T>>)
        });
        Stream {
            graph,
            open: Arc::new(move |ctx, down| {
                let gate = ctx.take_gate(dataset)?;
                // Its channel state (after the chain's operators: the same place in
                // every run).
                let slot = ctx.snapshot_slot();
                Ok(Box::new(operators::ExchangeIn::<T>::new(gate, down, slot)) as Box<dyn Driver>)
            }),
            inputs: vec![dataset],
            parallelism,
            memory_ops: Vec::new(),
            io_segments: 0,
            name: name.to_string(),
            branch: None,
            tees,
        }
    }

    /// Ends the chain in `sink`, which writes the exchanges `outputs` (if any), and
    /// registers it as a stage (or, for a tee's branch, as one of the tee's ends).
    fn into_stage(
        self,
        outputs: Vec<DatasetId>,
        sink: impl Fn(&mut TaskContext) -> Result<Box<dyn Push<T>>> + Send + Sync + 'static,
    ) {
        let open = self.open;
        let stage = Stage {
            name: self.name,
            parallelism: self.parallelism,
            memory_ops: self.memory_ops,
            io_segments: self.io_segments,
            open: Arc::new(move |ctx| {
                let push = sink(ctx)?;
                open(ctx, push)
            }),
        };
        let ending = Ending {
            stage,
            inputs: self.inputs,
            outputs,
        };
        tee::end(&self.graph, self.branch, ending);
    }

    /// The records of each task sorted by `key` (serde-fmt key order; wrap fields in
    /// [`crate::serde_fmt::Descending`] to reverse them), at most `limit` of them. An external
    /// sort: it spills runs to disk when its memory share is full. For a total order,
    /// sort, [`gather`](Self::gather) and sort again (with a limit, each task sends only
    /// its first `limit` records).
    pub fn sort_by<K: Key>(
        self,
        key: impl Fn(&T) -> K + Send + Sync + 'static,
        limit: Option<u64>,
    ) -> Stream<T> {
        let key: Arc<dyn Fn(&T) -> K + Send + Sync> = Arc::new(key);
        self.chain("sort", &[MemoryOp::Sort], move |ctx, down| {
            Ok(Box::new(operators::Sort::new(
                ctx,
                Arc::clone(&key),
                limit,
                down,
            )?))
        })
    }

    /// The whole stream, in the process of worker 0, after the job ran (empty on the other
    /// workers). Use for results, not for bulk data: the records are held in memory.
    pub fn collect(self) -> Collected<T> {
        let stream = if self.parallelism == Parallelism::One {
            self
        } else {
            self.gather()
        };
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        stream.into_stage(Vec::new(), move |ctx| {
            ctx.refuse_checkpoints("collect (not a transactional sink)")?;
            Ok(Box::new(operators::CollectSink {
                records: Arc::clone(&sink),
                local: Vec::new(),
            }))
        });
        Collected { records }
    }

    /// One record per task: each of the task's records folded by `f` into a state that
    /// `init` makes when the task starts; when the input ends, `finish` turns the state
    /// into the task's one record (Flink's `mapPartition` with one result). The state is
    /// any type (it never leaves the task); per-task summaries, checks and sketches use
    /// it, and [`collect`](Self::collect) brings their results to worker 0.
    pub fn fold<A: Send + 'static, U: Data, F>(
        self,
        init: impl Fn(&TaskContext) -> A + Send + Sync + 'static,
        f: F,
        finish: impl Fn(A) -> U + Send + Sync + 'static,
    ) -> Stream<U>
    where
        F: Fn(&mut A, T) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let finish: Arc<dyn Fn(A) -> U + Send + Sync> = Arc::new(finish);
        self.chain("fold", &[], move |ctx, down| {
            Ok(Box::new(operators::Fold {
                state: Some(init(ctx)),
                f: Arc::clone(&f),
                finish: Arc::clone(&finish),
                down,
                _records: PhantomData,
            }))
        })
    }

    /// The number of records each task saw: one count per task, collected in the process
    /// of worker 0 after the job ran; the stream's total is their sum
    /// (`counts.take().iter().sum::<u64>()`).
    pub fn count(self) -> Collected<u64> {
        self.chain("count", &[], |_, down| {
            Ok(Box::new(operators::Count { count: 0, down }))
        })
        .collect()
    }

    /// Ends the stream in a custom sink: `open(ctx)` runs in each task and returns the
    /// [`Push`] that takes that task's records (its `finish` is called at the end).
    pub fn sink(
        self,
        open: impl Fn(&TaskContext) -> Result<Box<dyn Push<T>>> + Send + Sync + 'static,
    ) {
        self.into_stage(Vec::new(), move |ctx| open(ctx));
    }

    /// Consumes the stream and drops every record.
    pub fn discard(self) {
        self.into_stage(Vec::new(), |_| Ok(Box::new(operators::Discard)));
    }

    /// Writes each record as one line `line(&record)` to `DIR/part-T` (T the task index),
    /// creating `dir` when missing.
    pub fn write_lines(
        self,
        dir: impl Into<std::path::PathBuf>,
        line: impl Fn(&T) -> String + Send + Sync + 'static,
    ) {
        let dir = dir.into();
        let line: Arc<dyn Fn(&T) -> String + Send + Sync> = Arc::new(line);
        self.into_stage(Vec::new(), move |ctx| {
            ctx.refuse_checkpoints("write_lines (use write_committed)")?;
            Ok(Box::new(operators::LinesSink::create(
                &dir,
                ctx.task(),
                Arc::clone(&line),
            )?))
        });
    }

    /// Both streams' records, read at once: each side goes through a round-robin
    /// exchange, and the next stage's tasks poll the two gates in turn, so neither side
    /// waits for the other to end (as [`union`](Self::union) makes the right one wait).
    /// The merged stream's watermark is the smaller of the two sides'. For streams that do
    /// not end; a batch job reads its inputs with `union` without the exchanges.
    ///
    /// # Panics
    ///
    /// When one stream runs on every task and the other on one (after `gather`).
    pub fn merge(self, other: Stream<T>) -> Stream<T> {
        merge_exchanged(self.rebalance(), other.rebalance())
    }

    /// Both streams' records (the left's first in each task, then the right's).
    ///
    /// # Panics
    ///
    /// When one stream runs on every task and the other on one (after `gather`).
    pub fn union(self, other: Stream<T>) -> Stream<T> {
        merged("union", self, other, &[], |left, right| {
            Arc::new(move |ctx, down| {
                let shared = operators::Shared::new(down, 2);
                let first = left(ctx, Box::new(shared.clone()))?;
                let second = right(ctx, Box::new(shared))?;
                Ok(Box::new(operators::Sequence(vec![first, second])) as Box<dyn Driver>)
            })
        })
    }
}

/// A stream fed by two (a union, a join): `open` builds its chain from theirs; their
/// exchanges, memory and I/O add up, and the kernel operators `memory_ops` join them.
///
/// Two streams from one tee are refused (the program's [`runtime::execute`] fails with
/// the reason): a union or join reads one input to its end before the other, and the tee
/// upstream pushes each record to both, so it could run ahead of the waiting input only
/// by holding all of it. So are two tee branches of one chain from different tees.
///
/// # Panics
///
/// When one input runs on every task and the other on one (after `gather`).
fn merged<A, B, C>(
    what: &str,
    mut left: Stream<A>,
    mut right: Stream<B>,
    memory_ops: &[MemoryOp],
    open: impl FnOnce(Open<A>, Open<B>) -> Open<C>,
) -> Stream<C> {
    assert_eq!(
        left.parallelism, right.parallelism,
        "{what} of streams with different parallelism"
    );
    let branch = tee::merged_branch(what, &mut left, &mut right);
    let mut tees = left.tees;
    tees.extend(right.tees);
    tees.sort_unstable();
    tees.dedup();
    let mut inputs = left.inputs;
    inputs.extend(right.inputs);
    Stream {
        graph: left.graph,
        open: open(left.open, right.open),
        inputs,
        parallelism: left.parallelism,
        memory_ops: [left.memory_ops, right.memory_ops, memory_ops.to_vec()].concat(),
        io_segments: left.io_segments + right.io_segments,
        name: format!("{what}({}, {})", left.name, right.name),
        branch,
        tees,
    }
}

/// Two streams that each start at an exchange (nothing chained after it yet), read at
/// once by one stage (module `merge`).
fn merge_exchanged<T: Data>(left: Stream<T>, right: Stream<T>) -> Stream<T> {
    let gates = match (left.inputs.as_slice(), right.inputs.as_slice()) {
        ([l], [r]) => [*l, *r],
        _ => unreachable!("both sides were just exchanged"),
    };
    merged("merge", left, right, &[], move |_, _| {
        Arc::new(move |ctx, down| {
            let gates = [ctx.take_gate(gates[0])?, ctx.take_gate(gates[1])?];
            // Its channel state (after the chain's operators: the same place in every run).
            let slot = ctx.snapshot_slot();
            Ok(Box::new(merge::MergeIn::new(gates, down, slot)) as Box<dyn Driver>)
        })
    })
}

/// A stream with a key per record, ready for a keyed operator. See [`Stream::key_by`].
pub struct KeyedStream<K, T> {
    stream: Stream<T>,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
}

impl<K, T> std::fmt::Debug for KeyedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// The stream hash-partitioned by key: each record to the task that owns its key.
    pub fn partition(self) -> Stream<T> {
        let key = self.key;
        self.stream.exchange(
            "key_by",
            Exchange::Hash(Arc::new(move |record: &T, out: &mut Vec<u8>| {
                operators::append_key(out, &key(record));
            })),
            Parallelism::All,
        )
    }

    /// One `(key, accumulator)` per key: `lift` makes a record's accumulator and `merge`
    /// folds one accumulator into another (associative and commutative: partial
    /// accumulators are merged in an order that depends on the memory budget). The
    /// records are pre-aggregated before the exchange, so only one partial accumulator per
    /// key and task crosses it. Kernel hash aggregation on both sides: it spills partial
    /// accumulators by hash partition when its memory share is full, and re-aggregates
    /// them partition by partition.
    pub fn aggregate<A: Data>(
        self,
        lift: impl Fn(&T) -> A + Send + Sync + 'static,
        merge: impl Fn(&mut A, A) + Send + Sync + 'static,
    ) -> Stream<(K, A)> {
        let merge: operators::Merge<A> = Arc::new(merge);
        let key = self.key;
        let lift: Arc<dyn Fn(&T) -> A + Send + Sync> = Arc::new(lift);
        let combine_merge = Arc::clone(&merge);
        let combined = self
            .stream
            .chain("combine", &[MemoryOp::Combine], move |ctx, down| {
                Ok(Box::new(operators::Combine::new(
                    ctx,
                    Arc::clone(&key),
                    Arc::clone(&lift),
                    Arc::clone(&combine_merge),
                    down,
                )?))
            });
        combined
            .key_by(|(key, _): &(K, A)| key.clone())
            .partition()
            .chain("aggregate", &[MemoryOp::Aggregate], move |ctx, down| {
                Ok(Box::new(operators::Aggregate::new(
                    ctx,
                    Arc::clone(&merge),
                    down,
                )?))
            })
    }

    /// The stream cut into event-time `windows` by `timestamp` (milliseconds, the same
    /// times the stream's [`Stream::event_time`] gave): aggregate each key's records per
    /// window with [`WindowedStream::aggregate`]. The stream needs watermarks upstream,
    /// or its windows fire only at the end of the input.
    pub fn window(
        self,
        windows: Windows,
        timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static,
    ) -> WindowedStream<K, T> {
        WindowedStream {
            keyed: self,
            windows,
            timestamp: Arc::new(timestamp),
        }
    }

    /// The inner join with `right` on equal keys: one `(left, right)` per matching pair.
    /// A hybrid hash join that builds on `right` (put the smaller input there) and spills
    /// partitions of both sides when its memory share is full.
    pub fn join<R: Data>(self, right: KeyedStream<K, R>) -> Stream<(T, R)> {
        self.join_as(right, JoinType::Inner).map(inner_row)
    }

    /// A join of `join_type` with `right` on equal keys: for inner and outer joins one
    /// row per matching pair and, for outer joins, one per unmatched record of the outer
    /// side(s) with `None` for the other; for left semi and anti joins the left records
    /// with (without) a match, with `None` on the right; for right semi and anti joins the
    /// right records with (without) a match, with `None` on the left. The table is built
    /// on `right` in every case: to build on the smaller side, put it on the right and
    /// choose the type that keeps the records wanted (a left outer join building on the
    /// left is `right.join_as(left, JoinType::RightOuter)`).
    ///
    /// # Panics
    ///
    /// When one input runs on every task and the other on one (after `gather`).
    pub fn join_as<R: Data>(
        self,
        right: KeyedStream<K, R>,
        join_type: JoinType,
    ) -> Stream<(Option<T>, Option<R>)> {
        let (left_key, right_key) = (Arc::clone(&self.key), Arc::clone(&right.key));
        hash_join(
            self.partition(),
            left_key,
            right.partition(),
            right_key,
            join_type,
        )
    }

    /// The inner join with a small `right` that is broadcast: every task builds a hash
    /// table of all of `right` and probes it with its own left records, which stay where
    /// they are (no exchange on the left: the records of a large scan are joined in the
    /// scan's chain, not serialized and shuffled). Use it when `right` is small beside the
    /// left (a dimension table, a filtered side); each task holds a copy of it in its
    /// memory share, spilling as any join when it does not fit.
    ///
    /// # Panics
    ///
    /// When the left stream runs on one task (after `gather`).
    pub fn broadcast_join<R: Data>(self, right: KeyedStream<K, R>) -> Stream<(T, R)> {
        self.broadcast_join_as(right, JoinType::Inner)
            .map(inner_row)
    }

    /// [`broadcast_join`](Self::broadcast_join) of `join_type`: inner, left outer, left
    /// semi or left anti (the types whose rows each task can decide from its own left
    /// records and the whole right side).
    ///
    /// # Panics
    ///
    /// For a right or full outer join (every task would emit the unmatched right records,
    /// each once per task), or when the left stream runs on one task.
    pub fn broadcast_join_as<R: Data>(
        self,
        right: KeyedStream<K, R>,
        join_type: JoinType,
    ) -> Stream<(Option<T>, Option<R>)> {
        assert!(
            matches!(
                join_type,
                JoinType::Inner | JoinType::LeftOuter | JoinType::LeftSemi | JoinType::LeftAnti
            ),
            "a broadcast join cannot be a {join_type:?} join: each task sees all of the right side"
        );
        let (left_key, right_key) = (Arc::clone(&self.key), Arc::clone(&right.key));
        hash_join(
            self.stream,
            left_key,
            right.stream.broadcast(),
            right_key,
            join_type,
        )
    }
}

/// An inner join's row: both sides are there.
fn inner_row<T, R>(row: (Option<T>, Option<R>)) -> (T, R) {
    match row {
        (Some(l), Some(r)) => (l, r),
        _ => unreachable!("an inner join row has both sides"),
    }
}

/// A hash join of two streams already placed for it (both partitioned by key, or the
/// right broadcast): the right input is read to its end into the kernel join's build
/// side, then the left one probes it.
fn hash_join<K: Key, T: Data, R: Data>(
    left: Stream<T>,
    left_key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    right: Stream<R>,
    right_key: Arc<dyn Fn(&R) -> K + Send + Sync>,
    join_type: JoinType,
) -> Stream<(Option<T>, Option<R>)> {
    merged(
        "join",
        left,
        right,
        &[MemoryOp::Join],
        |left_open, right_open| {
            Arc::new(move |ctx, down| {
                let join = operators::Join::new(ctx, join_type, down)?;
                let build = right_open(
                    ctx,
                    Box::new(operators::JoinBuild {
                        join: join.clone(),
                        key: Arc::clone(&right_key),
                    }),
                )?;
                let probe = left_open(
                    ctx,
                    Box::new(operators::JoinProbe::new(join, Arc::clone(&left_key))),
                )?;
                Ok(Box::new(operators::Sequence(vec![build, probe])) as Box<dyn Driver>)
            })
        },
    )
}

/// The task, of a stage with `parallelism` tasks, that [`KeyedStream::partition`] (and
/// every keyed operator) sends records with this key to — for sinks that check their
/// placement and sources that read pre-partitioned data. Per record, a [`KeyRouter`]
/// saves the setup.
///
/// # Panics
///
/// When `parallelism` is 0 or above `u32::MAX`, or the key's type has no key encoding.
pub fn task_of_key<K: Key>(key: &K, parallelism: usize) -> usize {
    KeyRouter::new(parallelism).task_of(key)
}

/// Routes keys as a keyed exchange to `parallelism` tasks does ([`task_of_key`]), with
/// its key buffer reused from call to call.
#[derive(Debug, Clone)]
pub struct KeyRouter {
    channels: u32,
    max_parallelism: u32,
    bytes: Vec<u8>,
}

impl KeyRouter {
    /// A router to `parallelism` tasks.
    ///
    /// # Panics
    ///
    /// When `parallelism` is 0 or above `u32::MAX`.
    pub fn new(parallelism: usize) -> KeyRouter {
        let channels = u32::try_from(parallelism).expect("a parallelism that fits a u32");
        assert!(channels >= 1, "a stage has at least one task");
        KeyRouter {
            channels,
            max_parallelism: weir_netstack::partition::default_max_parallelism(channels),
            bytes: Vec::new(),
        }
    }

    /// The task records with `key` go to.
    ///
    /// # Panics
    ///
    /// When the key's type has no key encoding.
    #[inline]
    pub fn task_of<K: Key>(&mut self, key: &K) -> usize {
        self.bytes.clear();
        operators::append_key(&mut self.bytes, key);
        operators::channel_of_key_bytes(&self.bytes, self.channels, self.max_parallelism) as usize
    }
}

/// Records a job delivers to the process of worker 0. See [`Stream::collect`].
#[derive(Debug, Clone)]
pub struct Collected<T> {
    records: Arc<Mutex<Vec<T>>>,
}

impl<T> Collected<T> {
    /// Nothing to collect: what a program whose results go to a sink gives
    /// [`crate::spmd::run`].
    pub fn none() -> Collected<T> {
        Collected {
            records: Arc::default(),
        }
    }

    /// Takes the records (empty before the job ran, and on workers other than 0).
    ///
    /// # Panics
    ///
    /// When a task panicked while adding to them (the job failed then).
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.records.lock().expect("collected records"))
    }
}

#[cfg(test)]
mod barrier_tests;
#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod keyed_tests;
#[cfg(test)]
mod relational_tests;
#[cfg(test)]
mod tee_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transactional_tests;
#[cfg(test)]
mod window_tests;
