//! Keyed process functions: per-key state in managed memory and event-time timers
//! (Flink's `KeyedProcessFunction`).
//!
//! ```text
//!   key_by(k) ══hash exchange by k══▶ keyed process (one per task)
//!
//!   record ─▶ its key's partition resident? ─yes─▶ state ← decode(get(key))
//!                 │                                 on_record(ctx, record): emit, set
//!                 │                                 timers, change the state
//!                 │                                 put(key, encode(state)) or remove
//!                 └─spilled─▶ deferred: (watermark now, record) into the state's log
//!   watermark w ─▶ timers ≤ w of resident partitions fire: on_timer(ctx, time);
//!                  a spilled partition with due timers or waiting records lags behind
//!                  (its timers fired up to an earlier watermark), and the watermark
//!                  goes on held at the lowest a partition fired up to
//!   drain (every DRAIN_INTERVAL while a partition lags, with or without watermarks;
//!          when the log fills; at the end) ─▶ each lagging partition comes back:
//!                  its state read in, its log replayed (each record after the timers
//!                  due when it came, as they would have fired without spilling), then
//!                  its timers due now fired
//!   end ─▶ the log drained, every timer fired (the watermark reaches END)
//! ```
//!
//! The state of each key is one value of the user's type `S` (a struct, a list, a map),
//! stored encoded in a kernel [`KeyedState`]: the hash table of the aggregations, in
//! segments of the operator's memory share, spilling whole partitions to disk when it is
//! full (state larger than memory stays correct: a spilled partition's records wait in
//! order and are replayed against its state when it comes back). Setting the state to
//! `None` frees the key's memory. A value is decoded before each call and encoded after,
//! so a large value (a long list) costs its size per record: keep per-key state small,
//! or key finer.
//!
//! Timers are per (key, time). Event-time timers: `on_timer` runs when the operator's
//! watermark reaches the time (a timer set at or below the watermark fires at the next
//! watermark). Processing-time timers: `on_timer` runs at the first record or watermark
//! after the wall clock reaches the time (the operator is driven by its input; it has no
//! clock thread), and pending ones are dropped when the input ends. A timer's
//! `ctx.watermark()` is the operator's when it fires: for a partition catching up, the
//! watermark its next waiting record came at (or the current one), which may be above
//! the timer's time by more than without spilling. Timers live on the heap (a sorted
//! set per partition, the key's bytes and the time): their memory is not in the
//! operator's share.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_kernel::hash::{KeyedState, Lookup, StateConfig};

use super::event_time::{Watermark, unix_micros};
use super::graph::MemoryOp;
use super::metrics::Meter;
use super::operators::{append_key, append_record, decode, decode_key};
use super::runtime::{Counters, OperatorSlot};
use super::window::{Side, sides_by_key};
use super::{Barrier, Data, Key, Push, TaskContext};
use crate::checkpoint::SnapshotSlot;
use crate::error::{Result, WeirError};

/// The longest a spilled partition lags behind (its records waiting, its timers not
/// fired) before the log is drained; it also goes when the log fills. Spilled partitions
/// come back in one batch rather than at every watermark that has one of their timers
/// due: with timers on most keys, that would bring every partition back each time.
const DRAIN_INTERVAL: Duration = Duration::from_millis(500);

/// Records between two looks at the wall clock for processing-time timers.
const CLOCK_RECORDS: u32 = 64;

/// The wall clock in milliseconds since the Unix epoch.
fn unix_millis() -> i64 {
    i64::try_from(unix_micros() / 1000).unwrap_or(i64::MAX)
}

/// What a keyed process function's error is: any error, its message failing the job.
pub type ProcessError = Box<dyn std::error::Error + Send + Sync>;

/// What a keyed process function sees of one key: the key, its state, the watermark,
/// and the ways out (records and timers).
pub struct Keyed<'a, K, S, O> {
    key: &'a K,
    state: &'a mut Option<S>,
    watermark: i64,
    out: &'a mut Vec<O>,
    timers: &'a mut Vec<i64>,
    processing_timers: &'a mut Vec<i64>,
    by_processing_time: bool,
    late: &'a mut u64,
}

impl<K, S, O> Keyed<'_, K, S, O> {
    /// The key.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The key's state: `None` until set, and after it is set to `None` (which frees its
    /// memory).
    pub fn state(&mut self) -> &mut Option<S> {
        self.state
    }

    /// The operator's watermark when the record came (in `on_timer`, when the timer
    /// fired): event time up to it is complete.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Sends `record` on.
    pub fn emit(&mut self, record: O) {
        self.out.push(record);
    }

    /// Counts a record the function drops because it came too late (after the watermark
    /// passed what it needed): the job's report sums them in `late_records`.
    pub fn count_late(&mut self) {
        *self.late += 1;
    }

    /// Asks for `on_timer(time)` for this key when the watermark reaches `time` (once per
    /// key and time, however often it is asked).
    pub fn set_timer(&mut self, time: i64) {
        self.timers.push(time);
    }

    /// Asks for `on_timer(time)` for this key once the wall clock reaches `time`
    /// (milliseconds since the Unix epoch; see [`now_ms`](Self::now_ms)): it fires at the
    /// operator's next record or watermark after that (the operator has no clock of its
    /// own), and not at all if the input ends first. Once per key and time.
    pub fn set_processing_timer(&mut self, time: i64) {
        self.processing_timers.push(time);
    }

    /// The wall clock, in milliseconds since the Unix epoch: processing time.
    pub fn now_ms(&self) -> i64 {
        unix_millis()
    }

    /// In `on_timer`: whether a processing-time timer fired it (else an event-time one).
    pub fn fired_by_processing_time(&self) -> bool {
        self.by_processing_time
    }
}

impl<K, S, O> std::fmt::Debug for Keyed<'_, K, S, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

/// A keyed process function's record handler.
type OnRecord<K, T, S, O> =
    Arc<dyn Fn(&mut Keyed<'_, K, S, O>, T) -> std::result::Result<(), ProcessError> + Send + Sync>;
/// A keyed process function's timer handler.
type OnTimer<K, S, O> = Arc<
    dyn Fn(&mut Keyed<'_, K, S, O>, i64) -> std::result::Result<(), ProcessError> + Send + Sync,
>;

impl<K: Key, T: Data> super::KeyedStream<K, T> {
    /// Each record through `on_record` with its key's state, and `on_timer` when an
    /// event-time timer of a key fires (Flink's `KeyedProcessFunction`): both may emit
    /// records, set timers and change the key's state (see [`Keyed`]). The stream is
    /// hash-partitioned by key first. The state lives in the operator's share of managed
    /// memory and spills whole partitions to disk when it outgrows it; see the module
    /// documentation for what that costs. An `Err` from either function fails the job
    /// with its message. Each key's records come in the order they arrive; timers fire in
    /// time order per key, before records that arrive after the watermark that fires
    /// them.
    pub fn process<S: Data, O: Data>(
        self,
        on_record: impl Fn(&mut Keyed<'_, K, S, O>, T) -> std::result::Result<(), ProcessError>
        + Send
        + Sync
        + 'static,
        on_timer: impl Fn(&mut Keyed<'_, K, S, O>, i64) -> std::result::Result<(), ProcessError>
        + Send
        + Sync
        + 'static,
    ) -> super::Stream<O> {
        let key = Arc::clone(&self.key);
        keyed_process(
            self.partition(),
            key,
            Arc::new(on_record),
            Arc::new(on_timer),
        )
    }
}

impl<K: Key, L: Data> super::KeyedStream<K, L> {
    /// The interval join with `right` (Flink's interval join): one `join(key, left,
    /// right)` per pair of a left and a right record of the same key whose times
    /// (`left_time`, `right_time`, milliseconds) satisfy `right − left ∈ between`
    /// (inclusive, e.g. `-2000..=5000`). Both sides are hash-partitioned by key and read
    /// at once; each record waits in its key's state until the watermark (the smaller of
    /// the two sides') passes the last time a record of the other side could pair with
    /// it, then goes. A record at or behind the watermark is counted late and dropped.
    /// Each key's waiting records are one list per side in its state (decoded and
    /// encoded per record): keys with many records in one interval cost their count
    /// per record.
    ///
    /// # Panics
    ///
    /// When `between` is empty.
    pub fn interval_join<R: Data, U: Data>(
        self,
        right: super::KeyedStream<K, R>,
        between: std::ops::RangeInclusive<i64>,
        left_time: impl Fn(&L) -> i64 + Send + Sync + 'static,
        right_time: impl Fn(&R) -> i64 + Send + Sync + 'static,
        join: impl Fn(&K, &L, &R) -> U + Send + Sync + 'static,
    ) -> super::Stream<U> {
        let (lower, upper) = (*between.start(), *between.end());
        assert!(lower <= upper, "an empty interval {lower}..={upper}");
        let (merged, key) = sides_by_key(self, right);
        let on_record = move |ctx: &mut Keyed<'_, K, Waiting<L, R>, U>, side: Side<L, R>| {
            let (time, horizon) = match &side {
                Side::Left(l) => (left_time(l), left_time(l).saturating_add(upper)),
                Side::Right(r) => (right_time(r), right_time(r).saturating_sub(lower)),
            };
            if time <= ctx.watermark() {
                ctx.count_late();
                return Ok(());
            }
            let key = ctx.key().clone();
            let waiting = ctx.state().get_or_insert_with(|| (Vec::new(), Vec::new()));
            let pairs = pair_up(waiting, side, time, &between, |l, r| join(&key, l, r));
            for pair in pairs {
                ctx.emit(pair);
            }
            ctx.set_timer(horizon);
            Ok(())
        };
        let on_timer = move |ctx: &mut Keyed<'_, K, Waiting<L, R>, U>, time: i64| {
            let state = ctx.state();
            if let Some((lefts, rights)) = state.as_mut() {
                lefts.retain(|(t, _)| t.saturating_add(upper) > time);
                rights.retain(|(t, _)| t.saturating_sub(lower) > time);
                if lefts.is_empty() && rights.is_empty() {
                    *state = None;
                }
            }
            Ok(())
        };
        keyed_process(merged, key, Arc::new(on_record), Arc::new(on_timer))
    }
}

/// `side`'s record at `time` joined with every waiting record of the other side whose
/// time is within `between` of it, then added to the waiting records.
fn pair_up<L, R, U>(
    waiting: &mut Waiting<L, R>,
    side: Side<L, R>,
    time: i64,
    between: &std::ops::RangeInclusive<i64>,
    join: impl Fn(&L, &R) -> U,
) -> Vec<U> {
    match side {
        Side::Left(l) => {
            let pairs = waiting
                .1
                .iter()
                .filter(|(t, _)| between.contains(&(t - time)))
                .map(|(_, r)| join(&l, r))
                .collect();
            waiting.0.push((time, l));
            pairs
        }
        Side::Right(r) => {
            let pairs = waiting
                .0
                .iter()
                .filter(|(t, _)| between.contains(&(time - t)))
                .map(|(_, l)| join(l, &r))
                .collect();
            waiting.1.push((time, r));
            pairs
        }
    }
}

/// An interval join's waiting records of one key: the left side's and the right's, each
/// with its time.
type Waiting<L, R> = (Vec<(i64, L)>, Vec<(i64, R)>);

/// The keyed process operator over `stream`, already partitioned by `key`.
fn keyed_process<K: Key, T: Data, S: Data, O: Data>(
    stream: super::Stream<T>,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    on_record: OnRecord<K, T, S, O>,
    on_timer: OnTimer<K, S, O>,
) -> super::Stream<O> {
    stream.chain("keyed process", &[MemoryOp::State], move |ctx, down| {
        Ok(Box::new(KeyedProcess::new(
            ctx,
            Functions {
                key: Arc::clone(&key),
                on_record: Arc::clone(&on_record),
                on_timer: Arc::clone(&on_timer),
            },
            down,
        )?))
    })
}

struct Functions<K, T, S, O> {
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    on_record: OnRecord<K, T, S, O>,
    on_timer: OnTimer<K, S, O>,
}

/// The keyed process operator of one task: the state, and everything else (split so a
/// restore can lend the state to the rest while it replays).
struct KeyedProcess<K, T, S, O> {
    state: KeyedState,
    inner: Inner<K, T, S, O>,
    /// Where its checkpoints go (`None` without checkpoints).
    slot: Option<SnapshotSlot>,
}

/// A snapshot frame's first byte: an event-time timer, a processing-time timer, a key's
/// state (after the header frame).
const FRAME_TIMER: u8 = 0;
const FRAME_PROCESSING_TIMER: u8 = 1;
const FRAME_STATE: u8 = 2;

/// A snapshot's header frame: the watermark in and the one sent on, the latest
/// watermark's other fields, and each partition's fired watermark.
type Header = (i64, i64, u64, u32, Vec<i64>);

struct Inner<K, T, S, O> {
    functions: Functions<K, T, S, O>,
    /// Each partition's event-time timers: (time, key bytes).
    timers: Vec<BTreeSet<(i64, Vec<u8>)>>,
    /// Each partition's processing-time timers: (Unix milliseconds, key bytes).
    processing: Vec<BTreeSet<(i64, Vec<u8>)>>,
    /// Records since the clock was last read for processing-time timers.
    since_clock: u32,
    /// The watermark in, and the one sent on (held below deferred records').
    watermark: i64,
    sent: i64,
    /// Whether each partition has deferred records waiting.
    waiting: Vec<bool>,
    /// The watermark up to which each partition's event-time timers fired: the
    /// watermark in for resident partitions, behind it for spilled ones whose records
    /// wait.
    fired: Vec<i64>,
    last_drain: Instant,
    /// The latest watermark's fields other than its time, to send on.
    template: Watermark,
    /// Where an error names the operator.
    stage: usize,
    task: usize,
    state_bytes_max: u64,
    late: u64,
    meter: Meter,
    counters: Arc<Counters>,
    key: Vec<u8>,
    record: Vec<u8>,
    value: Vec<u8>,
    out: Vec<O>,
    new_timers: Vec<i64>,
    new_processing: Vec<i64>,
    /// Whether the timers firing now are processing-time ones.
    firing_processing: bool,
    down: Box<dyn Push<O>>,
}

impl<K: Key, T: Data, S: Data, O: Data> KeyedProcess<K, T, S, O> {
    fn new(
        ctx: &mut TaskContext,
        functions: Functions<K, T, S, O>,
        down: Box<dyn Push<O>>,
    ) -> Result<KeyedProcess<K, T, S, O>> {
        let OperatorSlot {
            owner,
            segments,
            meter,
        } = ctx.operator(MemoryOp::State);
        let config = StateConfig::default();
        let state = KeyedState::new(&owner, segments, ctx.spill_store(), config)?;
        let mut operator = KeyedProcess {
            slot: ctx.snapshot_slot(),
            state,
            inner: Inner {
                functions,
                timers: (0..config.partitions).map(|_| BTreeSet::new()).collect(),
                processing: (0..config.partitions).map(|_| BTreeSet::new()).collect(),
                since_clock: 0,
                watermark: i64::MIN,
                sent: i64::MIN,
                waiting: vec![false; config.partitions],
                fired: vec![i64::MIN; config.partitions],
                last_drain: Instant::now(),
                template: Watermark {
                    time: i64::MIN,
                    emitted_us: 0,
                    idle_ms: 0,
                },
                stage: ctx.stage(),
                task: ctx.task(),
                state_bytes_max: 0,
                late: 0,
                meter,
                counters: ctx.counters(),
                key: Vec::new(),
                record: Vec::new(),
                value: Vec::new(),
                out: Vec::new(),
                new_timers: Vec::new(),
                new_processing: Vec::new(),
                firing_processing: false,
                down,
            },
        };
        operator.restore()?;
        Ok(operator)
    }

    /// Checkpoint `id`: the records waiting for spilled partitions brought back first
    /// (a snapshot holds state, not a log), then the header, every timer and every key's
    /// state, resident or spilled (docs/FORMAT.md §13).
    fn snapshot(&mut self, id: u64) -> Result<()> {
        let Some(slot) = self.slot.clone() else {
            return Ok(());
        };
        self.drain()?;
        self.send_watermark()?;
        let (state, inner) = (&mut self.state, &self.inner);
        let mut frame = Vec::new();
        slot.write(id, |piece| {
            let header: Header = (
                inner.watermark,
                inner.sent,
                inner.template.emitted_us,
                inner.template.idle_ms,
                inner.fired.clone(),
            );
            append_record(&mut frame, &header)?;
            piece.frame(&frame)?;
            for (tag, timers) in [
                (FRAME_TIMER, &inner.timers),
                (FRAME_PROCESSING_TIMER, &inner.processing),
            ] {
                for (time, key) in timers.iter().flatten() {
                    frame.clear();
                    frame.push(tag);
                    frame.extend_from_slice(&time.to_le_bytes());
                    frame.extend_from_slice(key);
                    piece.frame(&frame)?;
                }
            }
            state.snapshot(|key, value| {
                frame.clear();
                frame.push(FRAME_STATE);
                let len = u32::try_from(key.len()).expect("keys are under 4 GiB");
                frame.extend_from_slice(&len.to_le_bytes());
                frame.extend_from_slice(key);
                frame.extend_from_slice(value);
                piece.frame(&frame)
            })?;
            Ok(())
        })
    }

    /// Loads the checkpoint the job started from: the watermarks, the timers and every
    /// key's state (put in the order the snapshot gave them: a state larger than the
    /// memory spills as it comes back).
    fn restore(&mut self) -> Result<()> {
        let mut frame = Vec::new();
        let Some(mut piece) = SnapshotSlot::restored_header(self.slot.as_ref(), &mut frame)? else {
            return Ok(());
        };
        let (watermark, sent, emitted_us, idle_ms, fired): Header = decode(&frame)?;
        let inner = &mut self.inner;
        if fired.len() != inner.fired.len() {
            return Err(WeirError::Data {
                message: format!(
                    "a keyed process checkpoint of {} partitions, this operator has {}",
                    fired.len(),
                    inner.fired.len()
                ),
            });
        }
        (inner.watermark, inner.sent, inner.fired) = (watermark, sent, fired);
        inner.template = Watermark {
            time: watermark,
            emitted_us,
            idle_ms,
        };
        let malformed = || WeirError::Data {
            message: "a keyed process checkpoint frame is malformed".to_owned(),
        };
        while piece.next_frame(&mut frame)? {
            let (&tag, rest) = frame.split_first().ok_or_else(malformed)?;
            match tag {
                FRAME_TIMER | FRAME_PROCESSING_TIMER => {
                    let (time, key) = rest.split_at_checked(8).ok_or_else(malformed)?;
                    let time = i64::from_le_bytes(time.try_into().expect("8 bytes"));
                    let partition = self.state.partition_of(self.state.hash(key));
                    let timers = if tag == FRAME_TIMER {
                        &mut inner.timers
                    } else {
                        &mut inner.processing
                    };
                    timers[partition].insert((time, key.to_vec()));
                }
                FRAME_STATE => {
                    let (len, rest) = rest.split_at_checked(4).ok_or_else(malformed)?;
                    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                    let (key, value) = rest.split_at_checked(len).ok_or_else(malformed)?;
                    let hash = self.state.hash(key);
                    self.state.put(hash, key, value)?;
                }
                _ => return Err(malformed()),
            }
        }
        inner.note_state(&self.state);
        Ok(())
    }

    /// Brings spilled `partition` back: its state read in, its log replayed (each
    /// deferred record after the timers that were due when it came).
    fn bring_back(&mut self, partition: usize) -> Result<()> {
        let inner = &mut self.inner;
        let mut failed = None;
        let restored = self.state.restore(partition, |state, entry| {
            match inner.replay(state, partition, entry) {
                Ok(()) => Ok(()),
                Err(error) => {
                    failed = Some(error);
                    Err(weir_kernel::KernelError::Malformed {
                        position: 0,
                        what: "a deferred record failed on replay",
                    })
                }
            }
        });
        if let Some(error) = failed {
            return Err(error);
        }
        restored?;
        inner.waiting[partition] = false;
        Ok(())
    }

    /// Makes `partition` what it would be had it never spilled: resident, its log
    /// replayed, its event-time timers fired up to the watermark.
    fn catch_up(&mut self, partition: usize) -> Result<()> {
        if !self.state.is_resident(partition) {
            self.bring_back(partition)?;
        }
        let watermark = self.inner.watermark;
        if watermark > self.inner.fired[partition] {
            self.fire(partition, watermark)?;
        }
        Ok(())
    }

    /// Fires `partition`'s event-time timers at or below `watermark` (the partition
    /// resident), bringing it back whenever a timer's state spills it.
    fn fire(&mut self, partition: usize, watermark: i64) -> Result<()> {
        loop {
            self.inner.fire(&mut self.state, partition, watermark)?;
            if self.state.is_resident(partition) {
                return Ok(());
            }
            self.bring_back(partition)?;
        }
    }

    /// Fires the processing-time timers due by the wall clock (bringing back spilled
    /// partitions that have some), and drains when it is time.
    fn check_clock(&mut self) -> Result<()> {
        self.inner.since_clock = 0;
        let now = unix_millis();
        for partition in 0..self.inner.processing.len() {
            let due = self.inner.processing[partition]
                .first()
                .is_some_and(|(time, _)| *time <= now);
            if !due {
                continue;
            }
            self.catch_up(partition)?;
            loop {
                self.inner
                    .fire_processing(&mut self.state, partition, now)?;
                if self.state.is_resident(partition) {
                    break;
                }
                self.bring_back(partition)?;
            }
        }
        let lagging = self.state.deferred_bytes() > 0 || self.inner.held() < self.inner.watermark;
        if lagging && self.inner.last_drain.elapsed() >= DRAIN_INTERVAL {
            self.drain()?;
            self.send_watermark()?;
        }
        Ok(())
    }

    /// Brings back every spilled partition with deferred entries or timers due, caught
    /// up to the watermark.
    fn drain(&mut self) -> Result<()> {
        let watermark = self.inner.watermark;
        for partition in 0..self.inner.fired.len() {
            if self.state.deferred_bytes_of(partition) > 0
                || (!self.state.is_resident(partition) && self.inner.fired[partition] < watermark)
            {
                self.catch_up(partition)?;
            }
        }
        self.inner.last_drain = Instant::now();
        Ok(())
    }

    /// Fires the due timers of resident partitions (spilled ones lag until the next
    /// drain), drains at the end, and sends the watermark on.
    fn advance(&mut self) -> Result<()> {
        let watermark = self.inner.watermark;
        for partition in 0..self.inner.timers.len() {
            let resident = self.state.is_resident(partition);
            let due = self.inner.timers[partition]
                .first()
                .is_some_and(|(time, _)| *time <= watermark);
            if resident && due {
                // At the end, also the timers set after an end watermark.
                self.fire(partition, watermark)?;
            } else if resident || (!due && !self.inner.waiting[partition]) {
                // Nothing to fire. A spilled partition with due timers, or with records
                // waiting (they may set timers due now), lags behind.
                self.inner.fired[partition] = watermark;
            }
        }
        if watermark == Watermark::END {
            self.drain()?;
            self.fire_all_at_end()?;
        }
        self.inner.note_state(&self.state);
        self.send_watermark()
    }

    /// At the end, the timers left anywhere: those set by records replayed at the end
    /// watermark (or deferred after an end watermark came), which a catch-up does not
    /// fire (they wait for a next watermark that never comes). Until none is left.
    fn fire_all_at_end(&mut self) -> Result<()> {
        loop {
            let due = (0..self.inner.timers.len()).find(|&p| !self.inner.timers[p].is_empty());
            let Some(partition) = due else {
                return Ok(());
            };
            if !self.state.is_resident(partition) {
                self.bring_back(partition)?;
            }
            self.fire(partition, Watermark::END)?;
        }
    }

    /// Sends the watermark on, held at the lowest up to which a partition fired.
    fn send_watermark(&mut self) -> Result<()> {
        let held = self.inner.held();
        let inner = &mut self.inner;
        if held > inner.sent {
            inner.sent = held;
            inner.down.watermark(Watermark {
                time: held,
                ..inner.template
            })?;
        }
        Ok(())
    }
}

impl<K: Key, T: Data, S: Data, O: Data> Inner<K, T, S, O> {
    /// The job's error for a user function's `error`.
    fn failed(&self, error: impl Display) -> WeirError {
        WeirError::Task {
            stage: self.stage,
            task: self.task,
            cause: format!("keyed process: {error}"),
        }
    }

    /// Runs `call` with the state of the key whose bytes are in `self.key` (its partition
    /// resident), then stores the state back, files the new timers and sends the
    /// records on.
    fn with_state(
        &mut self,
        state: &mut KeyedState,
        watermark: i64,
        call: impl FnOnce(
            &Functions<K, T, S, O>,
            &mut Keyed<'_, K, S, O>,
        ) -> std::result::Result<(), ProcessError>,
    ) -> Result<()> {
        let hash = state.hash(&self.key);
        let mut value: Option<S> = match state.get(hash, &self.key) {
            Lookup::Value(bytes) => Some(decode(bytes)?),
            Lookup::Absent => None,
            Lookup::Spilled => {
                return Err(self.failed("the state of a spilled partition was read (a bug)"));
            }
        };
        let had = value.is_some();
        let key: K = decode_key(&self.key)?;
        let mut ctx = Keyed {
            key: &key,
            state: &mut value,
            watermark,
            out: &mut self.out,
            timers: &mut self.new_timers,
            processing_timers: &mut self.new_processing,
            by_processing_time: self.firing_processing,
            late: &mut self.late,
        };
        let result = call(&self.functions, &mut ctx);
        result.map_err(|e| self.failed(e))?;
        match value {
            Some(value) => {
                self.value.clear();
                append_record(&mut self.value, &value)?;
                self.meter.stored(self.key.len() + self.value.len());
                state.put(hash, &self.key, &self.value)?;
            }
            None if had => state.remove(hash, &self.key)?,
            None => {}
        }
        let partition = state.partition_of(hash);
        for time in self.new_timers.drain(..) {
            self.timers[partition].insert((time, self.key.clone()));
        }
        for time in self.new_processing.drain(..) {
            self.processing[partition].insert((time, self.key.clone()));
        }
        self.meter.gave(self.out.len() as u64);
        for record in self.out.drain(..) {
            self.down.push(record)?;
        }
        Ok(())
    }

    /// `record` (its key's bytes in `self.key`, its partition resident) through
    /// `on_record`.
    fn apply(&mut self, state: &mut KeyedState, watermark: i64, record: T) -> Result<()> {
        self.with_state(state, watermark, |functions, ctx| {
            (functions.on_record)(ctx, record)
        })
    }

    /// Fires `partition`'s event-time timers at or below `watermark` (the partition
    /// resident), including those the firing sets, until none is due or a timer's state
    /// spills the partition.
    fn fire(&mut self, state: &mut KeyedState, partition: usize, watermark: i64) -> Result<()> {
        self.fired[partition] = self.fired[partition].max(watermark);
        while state.is_resident(partition)
            && self.timers[partition]
                .first()
                .is_some_and(|(time, _)| *time <= watermark)
        {
            let (time, key) = self.timers[partition].pop_first().expect("a due timer");
            self.key = key;
            self.with_state(state, watermark, |functions, ctx| {
                (functions.on_timer)(ctx, time)
            })?;
        }
        Ok(())
    }

    /// Fires `partition`'s processing-time timers at or below `now` (the partition
    /// resident), including those the firing sets, until none is due or a timer's state
    /// spills the partition.
    fn fire_processing(
        &mut self,
        state: &mut KeyedState,
        partition: usize,
        now: i64,
    ) -> Result<()> {
        self.firing_processing = true;
        let mut result = Ok(());
        while result.is_ok()
            && state.is_resident(partition)
            && self.processing[partition]
                .first()
                .is_some_and(|(time, _)| *time <= now)
        {
            let (time, key) = self.processing[partition].pop_first().expect("a due timer");
            self.key = key;
            let watermark = self.watermark;
            result = self.with_state(state, watermark, |functions, ctx| {
                (functions.on_timer)(ctx, time)
            });
        }
        self.firing_processing = false;
        result
    }

    /// A deferred entry of `partition` replayed: the timers due at its watermark (when
    /// the partition has not fired them yet: the timers its records set at a watermark
    /// wait for the next one, as without spilling), then its record. (A replay cannot
    /// spill the partition: its filling the table alone is an error.)
    fn replay(&mut self, state: &mut KeyedState, partition: usize, entry: &[u8]) -> Result<()> {
        let (watermark, bytes) = entry.split_at(8);
        let watermark = i64::from_le_bytes(watermark.try_into().expect("8 bytes"));
        if watermark > self.fired[partition] {
            self.fire(state, partition, watermark)?;
        }
        let record: T = decode(bytes)?;
        self.key.clear();
        append_key(&mut self.key, &(self.functions.key)(&record));
        self.apply(state, watermark, record)
    }

    /// The watermark that may go on: the lowest up to which a partition fired (its
    /// timers, and the records that wait, may still emit records above it).
    fn held(&self) -> i64 {
        self.fired
            .iter()
            .fold(self.watermark, |low, fired| low.min(*fired))
    }

    fn note_state(&mut self, state: &KeyedState) {
        self.state_bytes_max = self.state_bytes_max.max(state.stats().bytes);
    }
}

impl<K: Key, T: Data, S: Data, O: Data> Push<T> for KeyedProcess<K, T, S, O> {
    fn push(&mut self, record: T) -> Result<()> {
        self.inner.since_clock += 1;
        if self.inner.since_clock >= CLOCK_RECORDS {
            self.check_clock()?;
        }
        let inner = &mut self.inner;
        inner.meter.took(1);
        inner.key.clear();
        append_key(&mut inner.key, &(inner.functions.key)(&record));
        let hash = self.state.hash(&inner.key);
        let partition = self.state.partition_of(hash);
        if !self.state.is_resident(partition) {
            inner.record.clear();
            inner
                .record
                .extend_from_slice(&inner.watermark.to_le_bytes());
            append_record(&mut inner.record, &record)?;
            if self.state.defer(hash, &inner.record)? {
                inner.waiting[partition] = true;
                return Ok(());
            }
            // The log is full: every partition with entries comes back, then this one
            // (it may have none, or have spilled again to make room for the others).
            self.drain()?;
            self.catch_up(partition)?;
            self.send_watermark()?;
            // The replays used the key buffer: the record's key goes back in.
            let inner = &mut self.inner;
            inner.key.clear();
            append_key(&mut inner.key, &(inner.functions.key)(&record));
        }
        let inner = &mut self.inner;
        let watermark = inner.watermark;
        inner.apply(&mut self.state, watermark, record)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        if watermark.time <= self.inner.watermark {
            return Ok(());
        }
        self.inner.watermark = watermark.time;
        self.inner.template = watermark;
        self.advance()?;
        self.check_clock()
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.snapshot(barrier.id)?;
        self.inner.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.inner.meter.finishing();
        self.inner.watermark = Watermark::END;
        self.inner.template.time = Watermark::END;
        self.advance()?;
        let stats = self.state.stats();
        let inner = &mut self.inner;
        inner.counters.add_state_bytes(inner.state_bytes_max);
        inner.counters.add_late(inner.late);
        inner.meter.done(stats.spilled_bytes);
        inner.down.finish()
    }
}
