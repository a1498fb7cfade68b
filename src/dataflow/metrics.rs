//! Per-operator metrics: what each kernel operator (sort, final aggregation, combiner,
//! join) of each stage did, summed over a worker's tasks, in the worker's report.
//!
//! ```text
//!   task opens its chain ── ctx.operator(op) ──▶ OperatorSlot { owner, segments, meter }
//!     (the n-th kernel operator a task opens is the n-th of its stage: the same on every
//!      task, so tasks' meters of one operator meet under one id)
//!   operator: meter.took(n) per record in, meter.gave(n) per record out,
//!             meter.stored(b) per encoded record given to the kernel,
//!             meter.emitted(b) per encoded record the kernel gave back,
//!             at its end meter.done(spilled bytes, finish time) ──▶ Counters
//!   worker report: operators = [OperatorReport { stage, operator, tasks, records_in,
//!                  records_out, bytes_in, bytes_out, spilled_bytes, finish_us }],
//!                  in stage order
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::graph::{Graph, MemoryOp};
use super::runtime::Counters;

/// What one kernel operator of a stage did on one worker, summed over its tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorReport {
    /// The stage's chain, like `lineitem → map → combine`.
    pub stage: String,
    /// `sort`, `aggregate`, `combiner` or `join`.
    pub operator: String,
    /// Its place among the stage's kernel operators: from the source (0) on in a chain
    /// and a join; a stage ending in a tee counts its branches' operators first.
    pub index: u64,
    /// Tasks of this worker that ran it.
    pub tasks: u64,
    /// Records it took (a join: build and probe records).
    pub records_in: u64,
    /// Records it gave to the rest of its chain (groups, sorted records, joined rows).
    pub records_out: u64,
    /// Bytes of the encoded records (key and record, in serde-fmt's formats) it gave its
    /// kernel operator: the sort's records, the join's build records and the probe
    /// records that passed its key filter, the accumulators that reached an aggregation's
    /// table (records folded in the typed group cache first count when the cache hands
    /// them on, and a combiner that forwards without its table encodes nothing).
    pub bytes_in: u64,
    /// Bytes of the encoded records its kernel operator gave back (sorted records,
    /// groups, the probe and build records of joined rows).
    pub bytes_out: u64,
    /// Bytes it wrote to spill files.
    pub spilled_bytes: u64,
    /// Time from the end of its input to the end of its output (sorting and merging,
    /// reading spilled partitions back, emitting groups; for a join, from the end of
    /// its probe input), summed over tasks, in microseconds.
    pub finish_us: u64,
}

/// An operator's place: the stage and its position among the stage's kernel operators.
pub(crate) type OperatorId = (usize, usize);

/// The worker's operators' totals, by id.
#[derive(Debug, Default)]
pub(crate) struct OperatorTotals(Mutex<BTreeMap<OperatorId, (MemoryOp, OperatorReport)>>);

impl OperatorTotals {
    fn add(&self, id: OperatorId, op: MemoryOp, task: &OperatorReport) {
        let mut totals = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_, total) = totals
            .entry(id)
            .or_insert_with(|| (op, OperatorReport::default()));
        total.tasks += 1;
        total.records_in += task.records_in;
        total.records_out += task.records_out;
        total.bytes_in += task.bytes_in;
        total.bytes_out += task.bytes_out;
        total.spilled_bytes += task.spilled_bytes;
        total.finish_us += task.finish_us;
    }

    /// The reports, in stage order and within a stage from its source on, each named
    /// after its stage in `graph`. (A chain opens its operators from its sink back, so
    /// the first one opened is the last in the chain.)
    pub(crate) fn reports(&self, graph: &Graph) -> Vec<OperatorReport> {
        let totals = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut reports: Vec<(usize, OperatorReport)> = totals
            .iter()
            .map(|(&(stage, opened), (op, total))| {
                let report = OperatorReport {
                    stage: graph.stages[stage].name.clone(),
                    operator: op.name().to_owned(),
                    index: (graph.stages[stage].memory_ops.len() - 1 - opened) as u64,
                    ..total.clone()
                };
                (stage, report)
            })
            .collect();
        reports.sort_by_key(|(stage, report)| (*stage, report.index));
        reports.into_iter().map(|(_, report)| report).collect()
    }
}

/// One task's counts for one kernel operator, given to the worker's totals when the
/// operator ends ([`Meter::done`]); an operator that never ends (its job failed) reports
/// nothing.
pub(crate) struct Meter {
    id: OperatorId,
    op: MemoryOp,
    counters: Arc<Counters>,
    task: OperatorReport,
    finishing: Option<Instant>,
}

impl Meter {
    pub(crate) fn new(id: OperatorId, op: MemoryOp, counters: Arc<Counters>) -> Meter {
        Meter {
            id,
            op,
            counters,
            task: OperatorReport::default(),
            finishing: None,
        }
    }

    /// `n` records in.
    #[inline]
    pub(crate) fn took(&mut self, n: u64) {
        self.task.records_in += n;
    }

    /// `n` records out.
    #[inline]
    pub(crate) fn gave(&mut self, n: u64) {
        self.task.records_out += n;
    }

    /// `bytes` of encoded records given to the kernel operator.
    #[inline]
    pub(crate) fn stored(&mut self, bytes: usize) {
        self.task.bytes_in += bytes as u64;
    }

    /// `bytes` of encoded records the kernel operator gave back.
    #[inline]
    pub(crate) fn emitted(&mut self, bytes: usize) {
        self.task.bytes_out += bytes as u64;
    }

    /// The input ended: the finish time starts (once).
    pub(crate) fn finishing(&mut self) {
        self.finishing.get_or_insert_with(Instant::now);
    }

    /// The operator is done, having spilled `spilled_bytes`: its counts go to the
    /// worker's totals (and its spilled bytes to the worker's).
    pub(crate) fn done(&mut self, spilled_bytes: u64) {
        let finish = self
            .finishing
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        self.task.spilled_bytes += spilled_bytes;
        self.task.finish_us = u64::try_from(finish.as_micros()).unwrap_or(u64::MAX);
        self.counters.add_spilled(self.task.spilled_bytes);
        self.counters.operators().add(self.id, self.op, &self.task);
        self.task = OperatorReport::default();
    }

    /// Spilled bytes of a table the operator replaced before its end (a combiner's full
    /// table), counted with the rest at [`Meter::done`].
    pub(crate) fn spilled(&mut self, bytes: u64) {
        self.task.spilled_bytes += bytes;
    }
}
