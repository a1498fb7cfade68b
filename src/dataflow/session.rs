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

use std::sync::Arc;
use std::time::Duration;

use super::event_time::{Timestamp, Watermark};
use super::graph::MemoryOp;
use super::operators::{Merge, append_key, append_record, decode, decode_key};
use super::window::{Window, WindowState};
use super::{Barrier, Data, Key, KeyedStream, Push, Stream, TaskContext};
use crate::checkpoint::SnapshotSlot;
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
                Ok(Box::new(SessionAggregate::new(
                    ctx,
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
    /// The open sessions (keyed by key), the watermark, the counts.
    state: WindowState,
    /// A lower bound of the smallest session end in the table (a record's own end, or an
    /// open session's after a firing): no session closes before the watermark reaches it.
    first_end: Option<i64>,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Its place in the task's checkpoints.
    slot: Option<SnapshotSlot>,
    down: Box<dyn Push<(Window, K, A)>>,
}

impl<K: Key, T: Data, A: Data> SessionAggregate<K, T, A> {
    fn new(
        ctx: &mut TaskContext,
        functions: SessionFunctions<K, T, A>,
        gap_ms: i64,
        down: Box<dyn Push<(Window, K, A)>>,
    ) -> Result<SessionAggregate<K, T, A>> {
        let mut operator = SessionAggregate {
            state: WindowState::new(ctx, MemoryOp::Window, &functions.merge)?,
            functions,
            gap_ms,
            first_end: None,
            key: Vec::new(),
            value: Vec::new(),
            slot: ctx.snapshot_slot(),
            down,
        };
        // The checkpoint the job started from: the watermark, the first end, every
        // key's open sessions.
        if let Some(header) = operator
            .state
            .restore_groups(operator.slot.as_ref(), |_| Ok(()))?
        {
            (operator.state.watermark, operator.first_end) = decode(&header)?;
        }
        Ok(operator)
    }

    /// Emits the sessions that end at or below `time` (their last millisecond), keeps the
    /// others in a fresh table.
    fn fire(&mut self, time: i64, emitted_us: Option<u64>) -> Result<()> {
        if self.first_end.is_none_or(|end| end - 1 > time) {
            return Ok(());
        }
        let old = self.state.table.take().expect("a table between records");
        let mut groups = old.finish()?;
        let mut fresh = self.state.fresh_table(&self.functions.merge)?;
        let (mut first_end, mut closed) = (None::<i64>, 0u64);
        while let Some((key, acc)) = groups.next()? {
            let sessions: Sessions<A> = decode(acc)?;
            let mut open: Sessions<A> = Vec::new();
            for (start, end, acc) in sessions {
                if end - 1 > time {
                    first_end = Some(first_end.map_or(end, |first| first.min(end)));
                    open.push((start, end, acc));
                    continue;
                }
                closed += 1;
                self.state.meter.gave(1);
                self.down
                    .push((Window { start, end }, decode_key(key)?, acc))?;
            }
            if !open.is_empty() {
                self.value.clear();
                append_record(&mut self.value, &open)?;
                fresh.push_partial(key, &self.value)?;
            }
        }
        self.state.spilled += groups.stats().spilled_bytes;
        drop(groups);
        self.state.table = Some(fresh);
        self.first_end = first_end;
        self.state.fired(closed, emitted_us);
        Ok(())
    }
}

impl<K: Key, T: Data, A: Data> Push<T> for SessionAggregate<K, T, A> {
    fn push(&mut self, record: T) -> Result<()> {
        self.state.meter.took(1);
        let time = (self.functions.timestamp)(&record);
        let end = time.saturating_add(self.gap_ms);
        if end - 1 <= self.state.watermark {
            self.state.late += 1;
            return Ok(());
        }
        self.key.clear();
        append_key(&mut self.key, &(self.functions.key)(&record));
        self.value.clear();
        let session = (time, end, (self.functions.lift)(&record));
        append_record(&mut self.value, std::slice::from_ref(&session))?;
        self.first_end = Some(self.first_end.map_or(end, |first| first.min(end)));
        self.state.meter.stored(self.key.len() + self.value.len());
        let table = self.state.table.as_mut().expect("a table between records");
        Ok(table.push_partial(&self.key, &self.value)?)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        let Some(emitted) = self.state.advance(&watermark) else {
            return Ok(());
        };
        self.fire(watermark.time, emitted)?;
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        if let Some(slot) = self.slot.clone() {
            let mut header = Vec::new();
            append_record(&mut header, &(self.state.watermark, self.first_end))?;
            self.state
                .snapshot_groups(&self.functions.merge, (&slot, barrier.id), &header)?;
        }
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.state.meter.finishing();
        self.fire(Watermark::END - 1, None)?;
        self.state.end();
        self.down.finish()
    }
}
