//! Runs a dataflow program on one worker: its tasks, their exchanges and their memory.
//!
//! ```text
//!   execute(program, config, network)            (on every worker, with its process index)
//!     1. place tasks: task t of a stage with P tasks runs on worker t / slots
//!     2. managed budget (config.memory): per task, the sources' I/O buffers; each kernel
//!        operator its own minimum; of the rest, a combiner up to its most useful size
//!        (4 MiB) and the sorts, final aggregations and joins equal shares (by need)
//!     3. network budget (config.network_memory): one output pool per local producer task
//!        and exchange (Flink's sizes), exclusive buffers per remote channel and a
//!        floating pool per gate with remote channels; too little is an error at start
//!     4. partitions registered with the transport, gates over local and remote channels
//!     5. one thread per task: build its chain, run it to the end
//!     6. a failing task cancels the others (flag and writer cancellers); the first
//!        error is the job's; every segment home (leak check) and spill files deleted
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_kernel::memory::{MemoryConfig, MemoryManager, Owner};
use weir_kernel::spill::{SpillConfig, SpillStore, open_store};
use weir_netstack::constants::EVENT_SEGMENTS;
use weir_netstack::debloat::{DebloatConfig, SystemClock};
use weir_netstack::partition::{ChannelSelector, IdleFlusher, WriterCanceller};
use weir_netstack::transport::{NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, ChannelSource, ExchangeBuffers, ExchangeEnvironment, InputGate, NetError,
    NetworkBufferPool, RecordWriter, ResultPartition, SubpartitionIndex,
};

use super::barrier::{Barrier, BarrierSchedule};
use super::graph::{DatasetId, Graph, MemoryOp, Parallelism};
use super::metrics::{Meter, OperatorReport, OperatorTotals};
use super::tee::TeeId;
use super::{Data, Dataflow, Driver, Push};
use crate::checkpoint::{self, SnapshotSlot, Store, TaskCheckpoint};
use crate::config::Config;
use crate::error::{Result, WeirError};

/// The channel the exchange picked for the record being written; the record writer's
/// selector reads it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target(pub(crate) Arc<AtomicU32>);

impl ChannelSelector for Target {
    fn setup(&mut self, channels: u32) {
        assert!(channels >= 1, "an exchange needs a consumer");
    }

    #[inline]
    fn select_channel(&mut self, _record: &[u8]) -> ChannelIndex {
        ChannelIndex(self.0.load(Ordering::Relaxed))
    }
}

/// A worker's counters, shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    spilled_bytes: AtomicU64,
    records_exchanged: AtomicU64,
    bytes_exchanged: AtomicU64,
    back_pressured_us: AtomicU64,
    idle_us: AtomicU64,
    buffer_size_max: AtomicU64,
    in_flight_bytes_max: AtomicU64,
    // Rows the sources read (all they scanned, their share or not), for progress.
    rows_read: Arc<AtomicU64>,
    operators: OperatorTotals,
    late_records: AtomicU64,
    state_bytes: AtomicU64,
    skipped_records: AtomicU64,
    barriers_unaligned: AtomicU64,
    channel_state_bytes: AtomicU64,
    // For each fired window, microseconds from the emit of the watermark that fired it
    // to the end of its results.
    window_latency_us: Mutex<Vec<u64>>,
    // Each barrier a gate aligned.
    barriers: Mutex<Vec<BarrierSample>>,
}

impl Counters {
    pub(crate) fn operators(&self) -> &OperatorTotals {
        &self.operators
    }

    pub(crate) fn add_rows_read(&self, rows: u64) {
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
    }

    pub(crate) fn add_spilled(&self, bytes: u64) {
        self.spilled_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_skipped(&self, records: u64) {
        self.skipped_records.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn add_state_bytes(&self, bytes: u64) {
        self.state_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A gate released a barrier unaligned; its late channels' records took `bytes` in
    /// the checkpoint.
    pub(crate) fn add_unaligned(&self, bytes: u64) {
        self.barriers_unaligned.fetch_add(1, Ordering::Relaxed);
        self.channel_state_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_late(&self, records: u64) {
        self.late_records.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn add_window_latency(&self, micros: u64) {
        self.window_latency_us
            .lock()
            .expect("window latencies")
            .push(micros);
    }

    pub(crate) fn add_barrier(&self, sample: BarrierSample) {
        self.barriers.lock().expect("barrier samples").push(sample);
    }

    fn windows_fired(&self) -> u64 {
        self.window_latency_us
            .lock()
            .expect("window latencies")
            .len() as u64
    }

    /// The `percent` percentile of the window latencies (0 when no window fired).
    fn window_latency(&self, percent: usize) -> u64 {
        let mut latencies = self
            .window_latency_us
            .lock()
            .expect("window latencies")
            .clone();
        if latencies.is_empty() {
            return 0;
        }
        latencies.sort_unstable();
        latencies[(latencies.len() - 1) * percent / 100]
    }

    pub(crate) fn add_exchanged(&self, records: u64, bytes: u64, back_pressured: Duration) {
        self.records_exchanged.fetch_add(records, Ordering::Relaxed);
        self.bytes_exchanged.fetch_add(bytes, Ordering::Relaxed);
        self.back_pressured_us
            .fetch_add(micros(back_pressured), Ordering::Relaxed);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The job's cancel flag: set by the first failing task, seen by the others when they
/// wait for input and every few thousand source records.
#[derive(Debug, Clone, Default)]
pub(crate) struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// `Err(Cancelled)` once the job is cancelled.
    pub(crate) fn check(&self) -> Result<()> {
        if self.0.load(Ordering::Acquire) {
            return Err(NetError::Cancelled.into());
        }
        Ok(())
    }
}

/// What one task of a stage has: its index, its exchanges, its memory and the worker's
/// spill store. Custom sources ([`super::Dataflow::source_fn`]) read their share from it.
pub struct TaskContext {
    stage: usize,
    task: usize,
    parallelism: usize,
    gates: HashMap<DatasetId, InputGate>,
    writers: HashMap<DatasetId, (RecordWriter<Target>, Target)>,
    // Flushes the task's outputs when its input runs dry (flush mode WhenIdle only).
    idle: Vec<IdleFlusher>,
    memory: Owner,
    operator_shares: OperatorShares,
    operators_opened: usize,
    io: Owner,
    store: Arc<dyn SpillStore>,
    counters: Arc<Counters>,
    cancel: CancelFlag,
    // A source task's barrier schedule (`Config::barrier_interval`).
    barriers: Option<BarrierSchedule>,
    // The task's checkpoints (`Config::checkpoint`).
    checkpoint: Option<Arc<TaskCheckpoint>>,
    // The chains of tee branches built so far, by tee and branch, for the chain above the
    // tee (each a `Box<dyn Push<T>>`, its record type erased).
    branch_heads: HashMap<(TeeId, usize), Box<dyn Any + Send>>,
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("stage", &self.stage)
            .field("task", &self.task)
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl TaskContext {
    /// This task's index among its stage's tasks.
    pub fn task(&self) -> usize {
        self.task
    }

    /// This task's stage: its index in the program, as errors name it.
    pub(crate) fn stage(&self) -> usize {
        self.stage
    }

    /// The number of tasks of this stage.
    pub fn parallelism(&self) -> usize {
        self.parallelism
    }

    pub(crate) fn take_gate(&mut self, dataset: DatasetId) -> Result<InputGate> {
        self.gates.remove(&dataset).ok_or_else(|| WeirError::Usage {
            message: format!(
                "task {} has no input gate for exchange {dataset}",
                self.task
            ),
        })
    }

    pub(crate) fn take_writer(
        &mut self,
        dataset: DatasetId,
    ) -> Result<(RecordWriter<Target>, Target)> {
        self.writers
            .remove(&dataset)
            .ok_or_else(|| WeirError::Usage {
                message: format!("task {} has no output for exchange {dataset}", self.task),
            })
    }

    /// What a kernel operator `op` of this task's chain runs with: the owner to charge
    /// its memory to, its share in segments ([`OperatorShares`]) and its meter. Each
    /// kernel operator calls it once, as its chain is opened.
    pub(crate) fn operator(&mut self, op: MemoryOp) -> OperatorSlot {
        let id = (self.stage, self.operators_opened);
        self.operators_opened += 1;
        OperatorSlot {
            owner: self.memory.clone(),
            segments: self.operator_shares.of(op, self.memory.segment_size()),
            meter: Meter::new(id, op, Arc::clone(&self.counters)),
        }
    }

    /// The memory owner a source charges its I/O buffers to: the runtime set aside the
    /// `io_segments` the source declared ([`Dataflow::source_push`](super::Dataflow::source_push))
    /// in the worker's budget for this task; take at most that many, and give them back
    /// (drop them) before the source returns.
    pub fn io_owner(&self) -> Owner {
        self.io.clone()
    }

    /// Counts `rows` a source has read (every row it scanned, kept or not), for the
    /// job's progress and its rows/s.
    pub fn count_rows_read(&self, rows: u64) {
        self.counters.add_rows_read(rows);
    }

    pub(crate) fn spill_store(&self) -> Arc<dyn SpillStore> {
        Arc::clone(&self.store)
    }

    /// Keeps the chain of branch `index` of tee `tee`, built from its sink up to the tee,
    /// for [`take_branch_head`](Self::take_branch_head).
    pub(crate) fn put_branch_head<T: Data>(
        &mut self,
        tee: TeeId,
        index: usize,
        head: Box<dyn Push<T>>,
    ) {
        let previous = self.branch_heads.insert((tee, index), Box::new(head));
        assert!(previous.is_none(), "a tee's branch is built once per task");
    }

    /// The chain of branch `index` of tee `tee`.
    ///
    /// # Panics
    ///
    /// When it was not built, or with another record type (a bug of the tee).
    pub(crate) fn take_branch_head<T: Data>(
        &mut self,
        tee: TeeId,
        index: usize,
    ) -> Box<dyn Push<T>> {
        let head = self
            .branch_heads
            .remove(&(tee, index))
            .expect("a tee's branches are built before it");
        *head
            .downcast::<Box<dyn Push<T>>>()
            .expect("a tee's branch takes the tee's records")
    }

    pub(crate) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// `Err(Cancelled)` once another task failed.
    ///
    /// # Errors
    ///
    /// [`NetError::Cancelled`].
    pub fn check_cancelled(&self) -> Result<()> {
        self.cancel.check()
    }

    /// Pushes into `down` the barriers due by now (with
    /// [`Config::barrier_interval`](crate::config::Config) set; a no-op otherwise). A
    /// source calls it now and then (when it looks at the cancel flag): its first call
    /// starts the schedule. The built-in sources do.
    ///
    /// # Errors
    ///
    /// As `down`'s [`Push::barrier`].
    pub fn inject_barriers<T: Data>(&self, down: &mut dyn Push<T>) -> Result<()> {
        let Some(schedule) = &self.barriers else {
            return Ok(());
        };
        if self.checkpoint.is_some() {
            return Err(WeirError::Usage {
                message: format!(
                    "stage {} task {}: this source is not replayable, so a job reading it \
                     cannot take checkpoints (make it a Dataflow::replayable_source)",
                    self.stage, self.task
                ),
            });
        }
        schedule.inject(|barrier| down.barrier(barrier))
    }

    /// As [`inject_barriers`](Self::inject_barriers), for a replayable source whose
    /// encoded position `position` gives: with checkpoints, each barrier's piece of
    /// `slot` is the position, and the task acknowledges the barrier once it passed.
    pub(crate) fn inject_barriers_at<T: Data>(
        &self,
        down: &mut dyn Push<T>,
        slot: Option<&SnapshotSlot>,
        position: impl Fn() -> Result<Vec<u8>>,
    ) -> Result<()> {
        let Some(schedule) = &self.barriers else {
            return Ok(());
        };
        schedule.inject(|barrier| {
            if let Some(slot) = slot {
                let bytes = position()?;
                slot.write(barrier.id, |piece| piece.frame(&bytes))?;
            }
            down.barrier(barrier)?;
            self.barrier_passed(&barrier)
        })
    }

    /// The task's chain has passed barrier `id` (every operator snapshotted): with
    /// checkpoints, the task's snapshot of `id` is finished, its acknowledgement.
    pub(crate) fn barrier_passed(&self, barrier: &Barrier) -> Result<()> {
        match &self.checkpoint {
            Some(checkpoint) => checkpoint.complete(barrier.id, barrier.scheduled_us),
            None => Ok(()),
        }
    }

    /// Gives up the task's file of checkpoint `id` (it declines it, for `why`): nothing
    /// half-written is left.
    pub(crate) fn abandon_checkpoint(&self, id: u64, why: String) {
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.abandon(id, why);
        }
    }

    /// The task's checkpoints (`None` without).
    pub(crate) fn task_checkpoint(&self) -> Option<Arc<TaskCheckpoint>> {
        self.checkpoint.clone()
    }

    /// Whether the job takes checkpoints.
    pub(crate) fn checkpointing(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// The next operator's place in the task's checkpoints (`None` without).
    pub(crate) fn snapshot_slot(&self) -> Option<SnapshotSlot> {
        self.checkpoint.as_ref().map(TaskCheckpoint::operator)
    }

    /// Fails when the job takes checkpoints: `what` keeps state it cannot snapshot yet.
    pub(crate) fn refuse_checkpoints(&self, what: &str) -> Result<()> {
        if self.checkpoint.is_none() {
            return Ok(());
        }
        Err(WeirError::Usage {
            message: format!(
                "stage {} task {}: {what} cannot take part in checkpoints yet (its state is \
                 not snapshotted); run the job without a checkpoint directory",
                self.stage, self.task
            ),
        })
    }

    /// A gate of the task aligned `barrier` in `alignment`: its delay counted.
    pub(crate) fn barrier_aligned(&self, barrier: &Barrier, alignment: Duration) {
        let delay = super::event_time::unix_micros().saturating_sub(barrier.scheduled_us);
        self.counters.add_barrier(BarrierSample {
            id: barrier.id,
            stage: u32::try_from(self.stage).unwrap_or(u32::MAX),
            delay_us: delay,
            alignment_us: u64::try_from(alignment.as_micros()).unwrap_or(u64::MAX),
        });
    }

    /// The task has no input available for now (a source waiting for its next record):
    /// with `--flush idle` ([`FlushMode::WhenIdle`](weir_netstack::FlushMode::WhenIdle))
    /// what its outputs hold goes out now; a no-op in the other modes. Tasks reading an
    /// exchange are flushed so by the runtime whenever their input gate runs dry.
    pub fn input_idle(&self) {
        for flusher in &self.idle {
            flusher.input_idle();
        }
    }

    pub(crate) fn add_idle(&self, idle: Duration) {
        self.counters
            .idle_us
            .fetch_add(micros(idle), Ordering::Relaxed);
    }

    /// Records a gate's debloated buffer size and in-flight bytes (the largest seen).
    pub(crate) fn record_gate(&self, gate: &InputGate) {
        let metrics = gate.metrics();
        self.counters
            .buffer_size_max
            .fetch_max(metrics.debloated_buffer_size as u64, Ordering::Relaxed);
        self.counters
            .in_flight_bytes_max
            .fetch_max(metrics.in_flight_bytes, Ordering::Relaxed);
    }
}

/// What one worker did in a job (serde types: a worker process sends it to its launcher).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerReport {
    /// The worker's process index.
    pub process: u32,
    /// Tasks it ran.
    pub tasks: usize,
    /// From the start of its first task to the end of its last, in microseconds.
    pub wall_us: u64,
    /// Records its tasks wrote to exchanges.
    pub records_exchanged: u64,
    /// Bytes of those records (framed).
    pub bytes_exchanged: u64,
    /// Bytes its transport sent to other workers.
    pub remote_bytes: u64,
    /// Bytes its kernel operators spilled.
    pub spilled_bytes: u64,
    /// The managed budget and its peak use.
    pub memory_budget: u64,
    /// The most managed memory in use at once.
    pub memory_peak: u64,
    /// The network budget and the segments granted to its pools.
    pub network_budget: u64,
    /// Bytes of network buffers granted to its pools.
    pub network_granted: u64,
    /// The process's peak resident set.
    pub peak_rss: u64,
    /// Time its writers waited for buffers (back-pressure), summed over tasks.
    pub back_pressured_us: u64,
    /// Time its tasks waited for input, summed over tasks.
    pub idle_us: u64,
    /// The largest debloated buffer size of its gates at their end (0: debloating off).
    pub buffer_size: u64,
    /// The most bytes in flight to one of its gates, as debloating measured them (0:
    /// debloating off).
    pub in_flight_bytes: u64,
    /// Whether every segment came home.
    pub leak_free: bool,
    /// Times the job restarted from a checkpoint after a failure.
    #[serde(default)]
    pub restarts: u32,
    /// The checkpoints completed (worker 0's coordinator completes them; empty on the
    /// others), of the last run when the job restarted.
    #[serde(default)]
    pub checkpoints: Vec<crate::checkpoint::CheckpointSample>,
    /// Why checkpoints were declined on this worker (a task that could not write its
    /// snapshot; the coordinator's errors): each such checkpoint never completed.
    #[serde(default)]
    pub checkpoints_declined: Vec<String>,
    /// The longest a task's checkpoint file took to finish (fsync, rename) in the
    /// background while the task went on, in microseconds: the asynchronous part.
    #[serde(default)]
    pub checkpoint_async_us_max: u64,
    /// From the last failure's detection to the restarted job's tasks running, in
    /// microseconds (worker 0 of a restarted SPMD launch; 0 otherwise).
    #[serde(default)]
    pub recovery_us: u64,
    /// What each kernel operator did, in stage order.
    #[serde(default)]
    pub operators: Vec<OperatorReport>,
    /// Records that reached a window operator after the watermark had passed every
    /// window they belong to: counted and dropped.
    #[serde(default)]
    pub late_records: u64,
    /// Bytes of keyed state in memory (keys and values in the operators' tables), the
    /// largest each keyed process operator held, summed over the worker's tasks.
    #[serde(default)]
    pub state_bytes: u64,
    /// Barriers its gates released unaligned (`Config::alignment_timeout`), by the task
    /// that took the checkpoint's snapshot at each.
    #[serde(default)]
    pub barriers_unaligned: u64,
    /// Bytes of channel state those checkpoints recorded: the records of the channels
    /// whose barrier had not come when the snapshot was taken.
    #[serde(default)]
    pub channel_state_bytes: u64,
    /// Records a [`Stream::try_map_or_skip`](super::Stream::try_map_or_skip) dropped
    /// because its function failed on them.
    #[serde(default)]
    pub skipped_records: u64,
    /// Windows its window operators fired before the end of their input.
    #[serde(default)]
    pub windows_fired: u64,
    /// Median of the time from a watermark's emit at its source to the end of the results
    /// of a window it fired, in microseconds (0: no window fired before the end).
    #[serde(default)]
    pub window_latency_p50_us: u64,
    /// The 99th percentile of that time, in microseconds.
    #[serde(default)]
    pub window_latency_p99_us: u64,
    /// Each barrier a gate of the worker aligned (see
    /// [`Config::barrier_interval`](crate::config::Config)), in the order they were.
    #[serde(default)]
    pub barriers: Vec<BarrierSample>,
}

/// A barrier as one gate aligned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BarrierSample {
    /// The barrier's id.
    pub id: u64,
    /// The stage of the task whose gate aligned it.
    pub stage: u32,
    /// From when its sources' schedule called for it to its alignment, in microseconds
    /// (the schedule of the source whose barrier completed the alignment: each source
    /// keeps its own, from its start).
    pub delay_us: u64,
    /// From the first of the gate's channels bringing it to the last, in microseconds.
    pub alignment_us: u64,
}

/// What every worker of a job did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobReport {
    /// One report per worker, by process index.
    pub workers: Vec<WorkerReport>,
}

impl JobReport {
    /// The slowest worker's wall time, in seconds.
    pub fn wall_s(&self) -> f64 {
        self.workers.iter().map(|w| w.wall_us).max().unwrap_or(0) as f64 / 1e6
    }

    /// Sum of a counter over the workers.
    pub fn total(&self, counter: impl Fn(&WorkerReport) -> u64) -> u64 {
        self.workers.iter().map(counter).sum()
    }

    /// The largest value of a counter over the workers (0 without workers).
    pub fn max_of(&self, counter: impl Fn(&WorkerReport) -> u64) -> u64 {
        self.workers.iter().map(counter).max().unwrap_or(0)
    }

    /// Whether every worker's segments all came home.
    pub fn leak_free(&self) -> bool {
        self.workers.iter().all(|w| w.leak_free)
    }
}

/// Where the tasks of a job run.
#[derive(Debug, Clone, Copy)]
struct Placement {
    process: usize,
    slots: usize,
    workers: usize,
}

impl Placement {
    fn tasks(&self, parallelism: Parallelism) -> usize {
        match parallelism {
            Parallelism::All => self.workers * self.slots,
            Parallelism::One => 1,
        }
    }

    fn worker_of(&self, parallelism: Parallelism, task: usize) -> usize {
        match parallelism {
            Parallelism::All => task / self.slots,
            Parallelism::One => 0,
        }
    }

    fn is_local(&self, parallelism: Parallelism, task: usize) -> bool {
        self.worker_of(parallelism, task) == self.process
    }

    fn local_tasks(&self, parallelism: Parallelism) -> impl Iterator<Item = usize> + '_ {
        (0..self.tasks(parallelism)).filter(move |&t| self.is_local(parallelism, t))
    }
}

/// Runs `program` on this worker: in one process when `network` is `None` (then
/// `config.workers` must be 1), else as process `network.process` of `network.peers`.
/// Returns when every local task finished.
///
/// # Errors
///
/// An invalid configuration or program; memory too small for the program's operators or
/// exchanges (naming the flag and the amount needed); the first error of any task (a
/// failing operator, bad input, a lost peer), after every task stopped and every segment
/// came home; a leak found at the end.
///
/// # Panics
///
/// When a task thread cannot be started.
pub fn execute(
    program: &Dataflow,
    config: &Config,
    network: Option<NetworkConfig>,
) -> Result<WorkerReport> {
    execute_observed(program, config, network, &Arc::default())
}

/// As [`execute`], counting in `rows_read` the rows this worker's sources read while the
/// job runs (every row they scan, for a progress display).
///
/// # Errors
///
/// As [`execute`].
///
/// # Panics
///
/// As [`execute`].
pub fn execute_observed(
    program: &Dataflow,
    config: &Config,
    network: Option<NetworkConfig>,
    rows_read: &Arc<AtomicU64>,
) -> Result<WorkerReport> {
    let mut config = config.clone();
    if let Some(checkpoint) = &config.checkpoint
        && let Some(id) = checkpoint.restore
    {
        // The checkpoint asked for is restored or named as bad, never replaced by another.
        checkpoint::verify(&checkpoint.dir, id)?;
    }
    let mut restarts = 0;
    loop {
        let result = execute_once(program, &config, network.clone(), rows_read);
        let Some(checkpoint) = config.checkpoint.as_mut() else {
            return result;
        };
        let error = match result {
            Ok(mut report) => {
                report.restarts = restarts;
                return Ok(report);
            }
            Err(error) => error,
        };
        let fatal = matches!(
            error,
            WeirError::Usage { .. } | WeirError::Config { .. } | WeirError::Leak { .. }
        );
        if fatal || config.workers > 1 || restarts >= checkpoint.restarts {
            return Err(error);
        }
        restarts += 1;
        std::thread::sleep(checkpoint.restart_delay);
        checkpoint.restore = checkpoint::restart_point(&checkpoint.dir)?;
    }
}

/// One run of the job: [`execute_observed`] without its restarts.
fn execute_once(
    program: &Dataflow,
    config: &Config,
    network: Option<NetworkConfig>,
    rows_read: &Arc<AtomicU64>,
) -> Result<WorkerReport> {
    let graph = program.graph();
    let graph = graph.borrow();
    validate(config, &graph)?;
    let place = placement(config, network.as_ref())?;
    let (process, workers) = (place.process, place.workers);
    let managed = budget(config, config.memory)?;
    let operator_shares = operator_share(&graph, &place, config)?;
    let net = budget(config, config.network_memory)?;
    let needed = network_share(&graph, &place, config)?;
    // A job without exchanges still gets a pool (it needs at least one segment).
    let grant = NetworkBufferPool::new(&net.owner("network"), needed.max(1))?;
    // Before the network: every worker lists the checkpoint directory (for this run's
    // first id) before any worker's tasks start, as the peers connect only once all are up.
    let checkpoints = checkpoint_store(config, &graph, &place)?;
    let service = network_service(network, workers, config, &net)?;
    let store = spill_store(config)?;
    let counters = Arc::new(Counters {
        rows_read: Arc::clone(rows_read),
        ..Counters::default()
    });
    let cancel = CancelFlag::default();

    let (contexts, cancellers) = wire(
        &graph,
        &place,
        config,
        &grant,
        service.as_ref(),
        TaskShared {
            checkpoints: checkpoints.as_ref(),
            managed: &managed,
            operator_shares,
            store: &store,
            counters: &counters,
            cancel: &cancel,
        },
    )?;
    let tasks = contexts.len();
    let started = Instant::now();
    let result = with_coordinator(checkpoints.as_ref(), process, || {
        run_tasks(&graph, contexts, &cancel, &cancellers)
    });
    let wall = started.elapsed();
    drop(cancellers);
    let transport = service.as_ref().map(NetworkService::metrics);
    if let Some(service) = service {
        if result.is_ok() {
            service.stop()?;
        } else {
            service.abort();
        }
    }
    drop(store);
    let network_granted = (grant.total_segments() * config.segment_size) as u64;
    drop(grant);
    // A failed job must still have freed everything: its error says so when it did not.
    leak_verdict(result, [managed.leak_check(), net.leak_check()])?;
    let mut report = counters.report(
        &graph,
        config,
        Ended {
            process,
            tasks,
            wall,
            remote_bytes: transport.map_or(0, |t| t.bytes_sent),
            memory_peak: managed.stats().peak_bytes as u64,
            network_granted,
            leak_free: true,
        },
    );
    if let Some(store) = &checkpoints {
        (report.checkpoints, report.checkpoints_declined) = (store.completed(), store.declined());
        report.checkpoint_async_us_max = store.async_us_max();
    }
    Ok(report)
}

/// The worker's network service, for a job of several workers.
fn network_service(
    network: Option<NetworkConfig>,
    workers: usize,
    config: &Config,
    net: &MemoryManager,
) -> Result<Option<NetworkService>> {
    Ok(match network {
        Some(network) if workers > 1 => Some(NetworkService::start(
            network.with_peer_timeout(config.peer_timeout),
            net.owner("network events"),
        )?),
        _ => None,
    })
}

/// The job's checkpoint store (`None` without checkpoints): every task of every worker
/// acknowledges each checkpoint.
fn checkpoint_store(
    config: &Config,
    graph: &Graph,
    place: &Placement,
) -> Result<Option<Arc<Store>>> {
    let Some(checkpoint) = &config.checkpoint else {
        return Ok(None);
    };
    if config.barrier_interval.is_none() {
        return Err(WeirError::Config {
            field: "checkpoint",
            value: checkpoint.dir.display().to_string(),
            allowed: "a job with a barrier interval (the checkpoint interval)".to_owned(),
        });
    }
    let tasks = graph
        .stages
        .iter()
        .map(|s| place.tasks(s.parallelism))
        .sum();
    let timeout = checkpoint::checkpoint_timeout(config.barrier_interval.unwrap_or_default());
    Ok(Some(Arc::new(Store::new(checkpoint, tasks, timeout)?)))
}

/// Runs `job` beside the checkpoint coordinator of `store` (on worker 0), which stops
/// after one last pass once the job ended; a job that ended well waits for its final
/// checkpoint (every task of every worker ended) and runs its sinks' final commits.
fn with_coordinator(
    store: Option<&Arc<Store>>,
    process: usize,
    job: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let coordinator = store
            .filter(|_| process == 0)
            .map(|store| scope.spawn(|| checkpoint::coordinate(store, &stop)));
        let mut result = job();
        if let Some(store) = store {
            store.join_finishers();
            if result.is_ok() {
                result = store.await_final();
            }
        }
        stop.store(true, Ordering::Release);
        if let Some(coordinator) = coordinator {
            coordinator.join().expect("the coordinator does not panic");
        }
        result
    })
}

/// The job's outcome given the leak checks of its budgets: the job's error (a leak after
/// it named in it), else the first leak, else `Ok`: every segment came home.
fn leak_verdict(result: Result<()>, leaks: [weir_kernel::Result<()>; 2]) -> Result<()> {
    if let Err(error) = result {
        return Err(match leaks.into_iter().find_map(std::result::Result::err) {
            Some(leak) => WeirError::Leak {
                detail: format!("{leak}, after the job failed: {error}"),
            },
            None => error,
        });
    }
    for leak in leaks {
        leak?;
    }
    Ok(())
}

/// What a worker's report takes from the end of its job beside the counters.
struct Ended {
    process: usize,
    tasks: usize,
    wall: Duration,
    remote_bytes: u64,
    memory_peak: u64,
    network_granted: u64,
    leak_free: bool,
}

impl Counters {
    fn report(&self, graph: &Graph, config: &Config, ended: Ended) -> WorkerReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WorkerReport {
            process: u32::try_from(ended.process).expect("few workers"),
            tasks: ended.tasks,
            wall_us: micros(ended.wall),
            records_exchanged: load(&self.records_exchanged),
            bytes_exchanged: load(&self.bytes_exchanged),
            remote_bytes: ended.remote_bytes,
            spilled_bytes: load(&self.spilled_bytes),
            memory_budget: config.memory,
            memory_peak: ended.memory_peak,
            network_budget: config.network_memory,
            network_granted: ended.network_granted,
            peak_rss: weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes),
            back_pressured_us: load(&self.back_pressured_us),
            idle_us: load(&self.idle_us),
            buffer_size: load(&self.buffer_size_max),
            in_flight_bytes: load(&self.in_flight_bytes_max),
            leak_free: ended.leak_free,
            restarts: 0,
            checkpoints: Vec::new(),
            checkpoints_declined: Vec::new(),
            recovery_us: 0,
            checkpoint_async_us_max: 0,
            operators: self.operators.reports(graph),
            late_records: load(&self.late_records),
            state_bytes: load(&self.state_bytes),
            barriers_unaligned: load(&self.barriers_unaligned),
            channel_state_bytes: load(&self.channel_state_bytes),
            skipped_records: load(&self.skipped_records),
            windows_fired: self.windows_fired(),
            window_latency_p50_us: self.window_latency(50),
            window_latency_p99_us: self.window_latency(99),
            barriers: self.barriers.lock().expect("barrier samples").clone(),
        }
    }
}

/// The configuration's and the program's own checks.
fn validate(config: &Config, graph: &Graph) -> Result<()> {
    config.validate()?;
    graph
        .validate()
        .map_err(|message| WeirError::Usage { message })
}

/// Where this worker's tasks run: its process index among the configured workers.
fn placement(config: &Config, network: Option<&NetworkConfig>) -> Result<Placement> {
    let (process, workers) = network.map_or((0, 1), |n| (n.process as usize, n.peers.len()));
    if workers != config.workers {
        return Err(WeirError::Usage {
            message: format!(
                "the configuration has {} workers, the peer list {workers}",
                config.workers
            ),
        });
    }
    Ok(Placement {
        process,
        slots: config.slots,
        workers,
    })
}

/// A memory manager of `bytes` in the configuration's segments.
fn budget(config: &Config, bytes: u64) -> Result<MemoryManager> {
    Ok(MemoryManager::new(MemoryConfig {
        segment_size: config.segment_size,
        ..MemoryConfig::with_budget(usize::try_from(bytes).unwrap_or(usize::MAX))
    })?)
}

/// The worker's spill store in the configured directory and backend.
fn spill_store(config: &Config) -> Result<Arc<dyn SpillStore>> {
    let mut spill = SpillConfig::new(config.spill_dir.clone());
    spill.backend = config.io_backend;
    // The default directory is the system's temp dir, whatever it is on; one the user
    // chose is refused on a filesystem in memory (Config::validate says so by flag).
    spill.allow_memory_filesystem = config.spill_dir == std::env::temp_dir();
    Ok(open_store(&spill)?)
}

/// Checks, without allocating anything, that `program` fits `config`'s budgets on every
/// one of its `config.workers` workers: what [`execute`] would refuse at start. A caller
/// that runs several programs in a row (a list of queries) checks them all first, so a
/// later one that does not fit fails before the earlier ones ran.
///
/// # Errors
///
/// As [`execute`] refuses at start: an invalid configuration or program, too little
/// managed or network memory on some worker (naming the flag and the amount needed).
pub fn check_budgets(program: &Dataflow, config: &Config) -> Result<()> {
    let graph = program.graph();
    let graph = graph.borrow();
    validate(config, &graph)?;
    for process in 0..config.workers {
        let place = Placement {
            process,
            slots: config.slots,
            workers: config.workers,
        };
        operator_share(&graph, &place, config)?;
        network_share(&graph, &place, config)?;
    }
    Ok(())
}

/// Segments of network memory the local exchanges need ([`network_segments`]), or an
/// error naming `--network-memory` when they (with the event segments) do not fit.
fn network_share(graph: &Graph, place: &Placement, config: &Config) -> Result<usize> {
    let needed = network_segments(graph, place, config);
    let available = config.network_memory / config.segment_size as u64;
    if (needed + EVENT_SEGMENTS) as u64 > available {
        return Err(WeirError::Config {
            field: "network_memory",
            value: crate::size::format_size(config.network_memory),
            allowed: format!(
                "at least {}: this job's exchanges need it on worker {}",
                crate::size::format_size(((needed + EVENT_SEGMENTS) * config.segment_size) as u64),
                place.process,
            ),
        });
    }
    Ok(needed)
}

/// What a kernel operator of a task runs with ([`TaskContext::operator`]).
pub(crate) struct OperatorSlot {
    /// The owner its memory is charged to.
    pub(crate) owner: Owner,
    /// Its share, in segments.
    pub(crate) segments: usize,
    /// Its counts, for the report.
    pub(crate) meter: Meter,
}

/// Segments each kernel operator of a worker gets beyond its own minimum
/// ([`MemoryOp::segments_min`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OperatorShares {
    /// For a bounded operator (a combiner), up to its most useful size.
    bounded_extra: usize,
    /// For an operator whose need is open-ended (sort, final aggregation, join).
    elastic_extra: usize,
}

impl OperatorShares {
    /// The segments of an `op` for `segment_size`.
    pub(crate) fn of(&self, op: MemoryOp, segment_size: usize) -> usize {
        let min = op.segments_min();
        match op.segments_max(segment_size) {
            Some(most) => min + self.bounded_extra.min(most.saturating_sub(min)),
            None => min + self.elastic_extra,
        }
    }
}

/// The kernel operators' shares of the managed budget, by need: each gets its own
/// minimum; of what the sources' I/O buffers and the minimums leave, a bounded operator
/// (a combiner) takes up to its most useful size but no more than an equal slice, and the
/// operators whose need is open-ended (sorts, final aggregations, joins) share the rest
/// equally. The error, when the minimums do not fit, names the operator that needs the
/// most and the budget that would do.
fn operator_share(graph: &Graph, place: &Placement, config: &Config) -> Result<OperatorShares> {
    let (mut io, mut minimums) = (0, 0);
    let mut ops: Vec<(MemoryOp, &str)> = Vec::new();
    for stage in &graph.stages {
        let local = place.local_tasks(stage.parallelism).count();
        io += local * stage.io_segments;
        for &op in &stage.memory_ops {
            ops.extend(std::iter::repeat_n((op, stage.name.as_str()), local));
            minimums += local * op.segments_min();
        }
    }
    if ops.is_empty() {
        return Ok(OperatorShares::default());
    }
    let segments = config.memory_segments();
    let Some(surplus) = segments.checked_sub(io + minimums) else {
        return Err(too_small(&ops, io + minimums, io, place.process, config));
    };
    let bounded: Vec<usize> = ops
        .iter()
        .filter_map(|(op, _)| {
            op.segments_max(config.segment_size)
                .map(|m| m - op.segments_min())
        })
        .collect();
    let slice = surplus / ops.len();
    let bounded_extra = bounded.iter().copied().max().unwrap_or(0).min(slice);
    let taken: usize = bounded.iter().map(|most| (*most).min(bounded_extra)).sum();
    let elastic = ops.len() - bounded.len();
    Ok(OperatorShares {
        bounded_extra,
        elastic_extra: (surplus - taken).checked_div(elastic).unwrap_or(0),
    })
}

/// The error of a budget below the `needed` segments: the operators, the one that
/// needs the most, and the I/O buffers.
fn too_small(
    ops: &[(MemoryOp, &str)],
    needed: usize,
    io: usize,
    process: usize,
    config: &Config,
) -> WeirError {
    let size = |segments: usize| crate::size::format_size((segments * config.segment_size) as u64);
    let counts: Vec<String> = [
        MemoryOp::Join,
        MemoryOp::Aggregate,
        MemoryOp::Sort,
        MemoryOp::Combine,
        MemoryOp::Window,
        MemoryOp::WindowCombine,
        MemoryOp::State,
    ]
    .into_iter()
    .filter_map(|kind| {
        let n = ops.iter().filter(|(op, _)| *op == kind).count();
        (n > 0).then(|| format!("{n} {}{}", kind.name(), if n == 1 { "" } else { "s" }))
    })
    .collect();
    let (op, stage) = ops
        .iter()
        .max_by_key(|(op, _)| op.segments_min())
        .expect("at least one operator");
    WeirError::Config {
        field: "memory",
        value: crate::size::format_size(config.memory),
        allowed: format!(
            "at least {}: worker {process} runs {} (a {} needs at least {}: the largest is in \
             \"{stage}\") and the sources' {} of I/O buffers",
            size(needed),
            counts.join(", "),
            op.name(),
            size(op.segments_min()),
            size(io),
        ),
    }
}

/// Segments the local exchanges need: output pools at their maximum, exclusive buffers of
/// remote channels and floating pools of gates with remote channels.
fn network_segments(graph: &Graph, place: &Placement, config: &Config) -> usize {
    let buffers = exchange_buffers(config);
    let mut segments = 0;
    for dataset in &graph.datasets {
        let producer = graph.stages[dataset.producer.expect("validated")].parallelism;
        let consumer = graph.stages[dataset.consumer.expect("validated")].parallelism;
        let consumers = place.tasks(consumer);
        segments +=
            place.local_tasks(producer).count() * ExchangeBuffers::partition_segments(consumers);
        let remote = (0..place.tasks(producer))
            .filter(|&t| !place.is_local(producer, t))
            .count();
        segments += place.local_tasks(consumer).count() * buffers.gate_segments(remote);
    }
    segments
}

/// The buffers of a job's exchanges, from its configuration.
fn exchange_buffers(config: &Config) -> ExchangeBuffers {
    ExchangeBuffers {
        per_channel: config.buffers_per_channel,
        floating_per_gate: config.floating_per_gate,
    }
}

/// What every task of a worker shares.
struct TaskShared<'a> {
    checkpoints: Option<&'a Arc<Store>>,
    managed: &'a MemoryManager,
    operator_shares: OperatorShares,
    store: &'a Arc<dyn SpillStore>,
    counters: &'a Arc<Counters>,
    cancel: &'a CancelFlag,
}

/// A source task's barrier schedule (`None` without barriers): paced with checkpoints.
fn barrier_schedule(
    config: &Config,
    checkpoints: Option<&Arc<Store>>,
    after: u64,
) -> Option<BarrierSchedule> {
    let interval = config.barrier_interval?;
    Some(match checkpoints {
        Some(store) => BarrierSchedule::paced(interval, after, Arc::clone(store)),
        None => BarrierSchedule::new(interval, after),
    })
}

/// Creates the local tasks' partitions, gates and writers; returns their contexts and the
/// writers' cancellers.
fn wire(
    graph: &Graph,
    place: &Placement,
    config: &Config,
    grant: &NetworkBufferPool,
    service: Option<&NetworkService>,
    shared: TaskShared<'_>,
) -> Result<(Vec<TaskContext>, Vec<WriterCanceller>)> {
    let env = ExchangeEnvironment::new(grant, service, exchange_buffers(config));
    let mut partitions: HashMap<(DatasetId, usize), ResultPartition> = HashMap::new();
    for (dataset, meta) in graph.datasets.iter().enumerate() {
        let producer = graph.stages[meta.producer.expect("validated")].parallelism;
        let consumers = place.tasks(graph.stages[meta.consumer.expect("validated")].parallelism);
        for task in place.local_tasks(producer) {
            let partition = env.partition(partition_id(dataset, task), consumers)?;
            partitions.insert((dataset, task), partition);
        }
    }
    let mut gates: HashMap<(DatasetId, usize), InputGate> = HashMap::new();
    for (dataset, meta) in graph.datasets.iter().enumerate() {
        let producer = graph.stages[meta.producer.expect("validated")].parallelism;
        let consumer = graph.stages[meta.consumer.expect("validated")].parallelism;
        for task in place.local_tasks(consumer) {
            let gate = gate(&env, (dataset, task), producer, place, config, &partitions)?;
            gates.insert((dataset, task), gate);
        }
    }
    let (mut writers, cancellers) = writers(partitions, config);
    // The barrier before this run's first checkpoint.
    let after = shared.checkpoints.map_or(0, |c| c.first() - 1);
    let mut contexts = Vec::new();
    for (index, stage) in graph.stages.iter().enumerate() {
        for task in place.local_tasks(stage.parallelism) {
            let mut ctx = TaskContext {
                stage: index,
                task,
                parallelism: place.tasks(stage.parallelism),
                gates: HashMap::new(),
                writers: HashMap::new(),
                idle: Vec::new(),
                memory: shared.managed.owner(format!("stage {index} task {task}")),
                operator_shares: shared.operator_shares,
                operators_opened: 0,
                io: shared
                    .managed
                    .owner(format!("stage {index} task {task} io")),
                store: Arc::clone(shared.store),
                counters: Arc::clone(shared.counters),
                cancel: shared.cancel.clone(),
                barriers: barrier_schedule(config, shared.checkpoints, after),
                checkpoint: shared
                    .checkpoints
                    .map(|store| TaskCheckpoint::new(store, index, task).map(Arc::new))
                    .transpose()?,
                branch_heads: HashMap::new(),
            };
            for (dataset, meta) in graph.datasets.iter().enumerate() {
                if meta.consumer == Some(index)
                    && let Some(gate) = gates.remove(&(dataset, task))
                {
                    ctx.gates.insert(dataset, gate);
                }
                if meta.producer == Some(index)
                    && let Some(writer) = writers.remove(&(dataset, task))
                {
                    ctx.idle.extend(writer.0.idle_flusher());
                    ctx.writers.insert(dataset, writer);
                }
            }
            contexts.push(ctx);
        }
    }
    Ok((contexts, cancellers))
}

/// A record writer per local partition, and their cancellers.
fn writers(
    partitions: HashMap<(DatasetId, usize), ResultPartition>,
    config: &Config,
) -> (Writers, Vec<WriterCanceller>) {
    let mut cancellers = Vec::new();
    let mut writers = HashMap::new();
    for (key, partition) in partitions {
        let target = Target::default();
        let writer = RecordWriter::new(partition, target.clone(), config.flush);
        cancellers.push(writer.canceller());
        writers.insert(key, (writer, target));
    }
    (writers, cancellers)
}

/// The record writers of a worker's partitions, by exchange and producer task.
type Writers = HashMap<(DatasetId, usize), (RecordWriter<Target>, Target)>;

fn partition_id(dataset: DatasetId, task: usize) -> PartitionId {
    PartitionId {
        dataset: u32::try_from(dataset).expect("few exchanges"),
        producer: u32::try_from(task).expect("few tasks"),
    }
}

/// The gate of consumer task `task` of `dataset`: channel `t` reads producer task `t`,
/// locally when it runs on this worker.
fn gate(
    env: &ExchangeEnvironment<'_>,
    (dataset, task): (DatasetId, usize),
    producer: Parallelism,
    place: &Placement,
    config: &Config,
    partitions: &HashMap<(DatasetId, usize), ResultPartition>,
) -> Result<InputGate> {
    let sources = (0..place.tasks(producer))
        .map(|t| match place.is_local(producer, t) {
            true => ChannelSource::Local(
                partitions[&(dataset, t)].subpartition(SubpartitionIndex::from_usize(task)),
            ),
            false => ChannelSource::Remote {
                peer: u32::try_from(place.worker_of(producer, t)).expect("few workers"),
                partition: partition_id(dataset, t),
                subpartition: u32::try_from(task).expect("few tasks"),
            },
        })
        .collect();
    let mut gate = env.gate(sources)?;
    gate.set_alignment_timeout(config.alignment_timeout);
    if config.debloat {
        let debloat = DebloatConfig {
            enabled: true,
            target: config.debloat_target,
            ..DebloatConfig::new(config.segment_size)
        };
        gate.enable_debloating(debloat, Arc::new(SystemClock::default()))?;
    }
    Ok(gate)
}

/// Runs every task in its own thread; the first failure cancels the others. Returns the
/// first error that is not a cancellation (or the cancellation when that is all there is).
fn run_tasks(
    graph: &Graph,
    contexts: Vec<TaskContext>,
    cancel: &CancelFlag,
    cancellers: &[WriterCanceller],
) -> Result<()> {
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = contexts
            .into_iter()
            .map(|mut ctx| {
                let open = Arc::clone(&graph.stages[ctx.stage].open);
                std::thread::Builder::new()
                    .name(format!("weir-s{}-t{}", ctx.stage, ctx.task))
                    .spawn_scoped(scope, move || {
                        let run = std::panic::AssertUnwindSafe(|| {
                            open(&mut ctx)
                                .and_then(|mut driver: Box<dyn Driver>| driver.run(&mut ctx))
                                .and_then(|()| match &ctx.checkpoint {
                                    Some(checkpoint) => checkpoint.complete_final(),
                                    None => Ok(()),
                                })
                        });
                        let result = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                            Err(WeirError::Task {
                                stage: ctx.stage,
                                task: ctx.task,
                                cause: "panicked (a bug; see the message above)".to_owned(),
                            })
                        });
                        if result.is_err() {
                            cancel.cancel();
                            for canceller in cancellers {
                                canceller.cancel();
                            }
                        }
                        result
                    })
                    .expect("a task thread starts")
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("task panics are caught in the task"))
            .collect()
    });
    let mut first = None;
    for result in results {
        match result {
            Ok(()) => {}
            Err(WeirError::Net(NetError::Cancelled)) => {
                first.get_or_insert(Err(NetError::Cancelled.into()));
            }
            Err(error) => match &first {
                Some(Err(WeirError::Net(NetError::Cancelled))) | None => first = Some(Err(error)),
                Some(_) => {}
            },
        }
    }
    first.unwrap_or(Ok(()))
}
