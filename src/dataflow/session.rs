//! Session windows: per key, records closer together than a gap share a window.
//!
//! ```text
//!   key_by(k) ══hash exchange══▶ session operator
//!     record at t ─▶ session [t, t + gap), merged into the key's list of sessions:
//!       sessions that overlap or touch coalesce ([min start, max end), accumulators merged)
//!       a record whose session would end at or below the watermark is late: dropped, counted
//!     watermark w ─▶ when some session may have closed (the smallest end − 1 the operator
//!       knows of is ≤ w): every key's list read once; sessions with end − 1 ≤ w go out as
//!       (window, key, acc), the others into a fresh table
//! ```
//!
//! One difference from Flink: a record is judged late by its own session `[t, t + gap)`
//! before it is merged, so a record at or behind the watermark that would have extended a
//! session still open is counted late and dropped (Flink merges first and judges the
//! merged session). Each watermark that may close a session reads the whole table once.
//!
//! The state is one kernel hash aggregation keyed by the key alone, whose accumulator is
//! the key's open sessions, `Vec<(start, end, A)>` sorted by start and coalesced (the
//! merge of two lists is associative and commutative when `A`'s merge is). Half of the
//! operator's share holds it; a watermark that closes sessions moves the open ones into
//! the other half, so a closed session's memory comes home at once; a table that outgrows
//! its half spills like any aggregation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use weir_kernel::hash::HashAggregate;
use weir_kernel::memory::Owner;
use weir_kernel::spill::SpillStore;

use super::event_time::{Timestamp, Watermark, unix_micros};
use super::graph::MemoryOp;
use super::metrics::Meter;
use super::operators::{Merge, aggregate_table, append_key, append_record, decode, decode_key};
use super::runtime::{Counters, OperatorSlot};
use super::window::Window;
use super::{Data, Key, KeyedStream, Push, Stream, TaskContext};
use crate::error::Result;

/// A key's open sessions: `(start, end, accumulator)`, sorted by start, none touching.
type Sessions<A> = Vec<(i64, i64, A)>;

/// A keyed stream cut into session windows. See [`KeyedStream::session_windows`].
pub struct SessionStream<K, T> {
    keyed: KeyedStream<K, T>,
    gap_ms: i64,
    timestamp: Timestamp<T>,
}

impl<K, T> std::fmt::Debug for SessionStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStream")
            .field("gap_ms", &self.gap_ms)
            .finish_non_exhaustive()
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// The stream cut into session windows by `timestamp` (milliseconds): per key, a
    /// record at `t` opens the session `[t, t + gap)`, and sessions that overlap or touch
    /// are one (Flink's event-time session windows). Aggregate each session with
    /// [`SessionStream::aggregate`].
    ///
    /// # Panics
    ///
    /// When `gap` is under a millisecond.
    pub fn session_windows(
        self,
        gap: Duration,
        timestamp: impl Fn(&T) -> i64 + Send + Sync + 'static,
    ) -> SessionStream<K, T> {
        let gap_ms = i64::try_from(gap.as_millis()).unwrap_or(i64::MAX);
        assert!(gap_ms >= 1, "a session gap of at least a millisecond");
        SessionStream {
            keyed: self,
            gap_ms,
            timestamp: Arc::new(timestamp),
        }
    }
}

impl<K: Key, T: Data> SessionStream<K, T> {
    /// One `(window, key, accumulator)` per session, when the watermark passes its end
    /// (the last record's time plus the gap): `lift` makes a record's accumulator, `merge`
    /// folds one into another (associative and commutative).
    pub fn aggregate<A: Data>(
        self,
        lift: impl Fn(&T) -> A + Send + Sync + 'static,
        merge: impl Fn(&mut A, A) + Send + Sync + 'static,
    ) -> Stream<(Window, K, A)> {
        let SessionStream {
            keyed,
            gap_ms,
            timestamp,
        } = self;
        let key = Arc::clone(&keyed.key);
        let lift: Arc<dyn Fn(&T) -> A + Send + Sync> = Arc::new(lift);
        let merge: Merge<A> = Arc::new(merge);
        let sessions: Merge<Sessions<A>> = Arc::new(move |a, b| merge_sessions(&merge, a, b));
        keyed
            .partition()
            .chain("session", &[MemoryOp::Window], move |ctx, down| {
                let slot = ctx.operator(MemoryOp::Window);
                Ok(Box::new(SessionAggregate::new(
                    ctx,
                    slot,
                    SessionFunctions {
                        key: Arc::clone(&key),
                        timestamp: Arc::clone(&timestamp),
                        lift: Arc::clone(&lift),
                        merge: Arc::clone(&sessions),
                    },
                    gap_ms,
                    down,
                )?))
            })
    }
}

/// `b`'s sessions into `a`'s: sorted by start, the ones that overlap or touch coalesced.
fn merge_sessions<A>(merge: &Merge<A>, a: &mut Sessions<A>, b: Sessions<A>) {
    let mut all = std::mem::take(a);
    all.extend(b);
    all.sort_by_key(|session| session.0);
    let mut out: Sessions<A> = Vec::with_capacity(all.len());
    for (start, end, acc) in all {
        match out.last_mut() {
            Some(last) if start <= last.1 => {
                last.1 = last.1.max(end);
                merge(&mut last.2, acc);
            }
            _ => out.push((start, end, acc)),
        }
    }
    *a = out;
}

struct SessionFunctions<K, T, A> {
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    timestamp: Timestamp<T>,
    lift: Arc<dyn Fn(&T) -> A + Send + Sync>,
    merge: Merge<Sessions<A>>,
}

/// The session operator of one task. See the module documentation.
struct SessionAggregate<K, T, A> {
    functions: SessionFunctions<K, T, A>,
    gap_ms: i64,
    table: Option<HashAggregate>,
    /// The ends of sessions in the table (at most: a record's own end, or its merged
    /// session's), the smallest first: when a session may close.
    ends: BTreeSet<i64>,
    owner: Owner,
    store: Arc<dyn SpillStore>,
    table_segments: usize,
    watermark: i64,
    late: u64,
    spilled: u64,
    meter: Meter,
    counters: Arc<Counters>,
    key: Vec<u8>,
    value: Vec<u8>,
    down: Box<dyn Push<(Window, K, A)>>,
}

impl<K: Key, T: Data, A: Data> SessionAggregate<K, T, A> {
    fn new(
        ctx: &mut TaskContext,
        slot: OperatorSlot,
        functions: SessionFunctions<K, T, A>,
        gap_ms: i64,
        down: Box<dyn Push<(Window, K, A)>>,
    ) -> Result<SessionAggregate<K, T, A>> {
        let OperatorSlot {
            owner,
            segments,
            meter,
        } = slot;
        let store = ctx.spill_store();
        let table_segments = segments / 2;
        let table = aggregate_table(&owner, table_segments, Arc::clone(&store), &functions.merge)?;
        Ok(SessionAggregate {
            functions,
            gap_ms,
            table: Some(table),
            ends: BTreeSet::new(),
            owner,
            store,
            table_segments,
            watermark: i64::MIN,
            late: 0,
            spilled: 0,
            meter,
            counters: ctx.counters(),
            key: Vec::new(),
            value: Vec::new(),
            down,
        })
    }

    fn fresh_table(&self) -> Result<HashAggregate> {
        aggregate_table(
            &self.owner,
            self.table_segments,
            Arc::clone(&self.store),
            &self.functions.merge,
        )
    }

    /// Emits the sessions that end at or below `time` (their last millisecond), keeps the
    /// others in a fresh table.
    fn fire(&mut self, time: i64, emitted_us: Option<u64>) -> Result<()> {
        if self.ends.first().is_none_or(|end| end - 1 > time) {
            return Ok(());
        }
        let old = self.table.take().expect("a table between records");
        let mut groups = old.finish()?;
        let mut fresh = self.fresh_table()?;
        let (mut ends, mut closed) = (BTreeSet::new(), 0u64);
        while let Some((key, acc)) = groups.next()? {
            let sessions: Sessions<A> = decode(acc)?;
            let mut open: Sessions<A> = Vec::new();
            for (start, end, acc) in sessions {
                if end - 1 > time {
                    ends.insert(end);
                    open.push((start, end, acc));
                    continue;
                }
                closed += 1;
                self.meter.gave(1);
                self.down
                    .push((Window { start, end }, decode_key(key)?, acc))?;
            }
            if !open.is_empty() {
                self.value.clear();
                append_record(&mut self.value, &open)?;
                fresh.push_partial(key, &self.value)?;
            }
        }
        self.spilled += groups.stats().spilled_bytes;
        drop(groups);
        self.table = Some(fresh);
        self.ends = ends;
        if let Some(emitted) = emitted_us {
            let latency = unix_micros().saturating_sub(emitted);
            for _ in 0..closed {
                self.counters.add_window_latency(latency);
            }
        }
        Ok(())
    }
}

impl<K: Key, T: Data, A: Data> Push<T> for SessionAggregate<K, T, A> {
    fn push(&mut self, record: T) -> Result<()> {
        self.meter.took(1);
        let time = (self.functions.timestamp)(&record);
        let end = time.saturating_add(self.gap_ms);
        if end - 1 <= self.watermark {
            self.late += 1;
            return Ok(());
        }
        self.key.clear();
        append_key(&mut self.key, &(self.functions.key)(&record));
        self.value.clear();
        let session = (time, end, (self.functions.lift)(&record));
        append_record(&mut self.value, std::slice::from_ref(&session))?;
        self.ends.insert(end);
        self.meter.stored(self.key.len() + self.value.len());
        let table = self.table.as_mut().expect("a table between records");
        Ok(table.push_partial(&self.key, &self.value)?)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        if watermark.time <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark.time;
        let emitted = (watermark.time != Watermark::END).then_some(watermark.emitted_us);
        self.fire(watermark.time, emitted)?;
        self.down.watermark(watermark)
    }

    fn finish(&mut self) -> Result<()> {
        self.meter.finishing();
        self.fire(Watermark::END - 1, None)?;
        if let Some(table) = self.table.take() {
            self.spilled += table.stats().spilled_bytes;
        }
        self.counters.add_late(self.late);
        self.meter.done(self.spilled);
        self.down.finish()
    }
}
