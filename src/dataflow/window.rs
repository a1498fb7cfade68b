//! Event-time windows on keyed streams: tumbling and sliding (hop), aggregated
//! incrementally in kernel hash tables, fired by the watermark.
//!
//! ```text
//!   key_by(k) ─▶ window combiner ══hash exchange by k══▶ window operator
//!
//!   both (the combiner in each upstream task, the final operator after the exchange):
//!     record ─▶ its windows [start, end): by its timestamp, 1 (tumbling) or size/slide
//!               (sliding); after the combiner, the one window of its partial
//!       window late (end − 1 ≤ watermark)? skipped; all of them late: the record is
//!       counted late and dropped; otherwise (end, key) ← merge(acc) in the state table
//!     watermark w ─▶ every window with end − 1 ≤ w fires: its groups out as
//!       (window, key, acc), its state freed; then w goes on downstream
//!   the combiner's output is partial accumulators, one per window, key and task; a
//!   combiner whose table does not reduce its input (after 64 Ki records, more than half
//!   as many groups as accumulators) forwards each record as a partial instead
//! ```
//!
//! The open windows' state is one kernel hash aggregation keyed by the window's end and
//! the key (the end first, as 8 order-preserving bytes). A watermark that closes windows
//! finishes that table: the closed windows' groups go out, the others go on into a fresh
//! table (the operator's memory share is split between the two), so the fired state's
//! memory comes home at once. Any number of windows may be open, however far records
//! run ahead of the watermark; a table that outgrows its half spills partitions to disk
//! like any aggregation, so state larger than memory stays correct. Re-inserting the open
//! windows costs one push per group still open per firing: for tumbling windows a few
//! groups of the next window, for sliding ones up to `size / slide` per group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_kernel::hash::HashAggregate;
use weir_kernel::memory::Owner;
use weir_kernel::spill::SpillStore;

use super::event_time::{Timestamp, Watermark, unix_micros};
use super::graph::MemoryOp;
use super::metrics::Meter;
use super::operators::{Merge, aggregate_table, append_key, append_record, decode, decode_key};
use super::runtime::{Counters, OperatorSlot};
use super::{Barrier, Data, Key, Push, TaskContext};
use crate::checkpoint::SnapshotSlot;
use crate::error::{Result, WeirError};

/// A window of event time: `[start, end)` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The first millisecond in it.
    pub start: i64,
    /// The first millisecond after it.
    pub end: i64,
}

impl Window {
    /// Its last millisecond: the watermark at which it fires.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// How records are assigned to windows: tumbling (each record in one window of `size`)
/// or sliding (in every window of `size` that starts each `slide`), aligned to time 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    size_ms: i64,
    slide_ms: i64,
}

impl Windows {
    /// Windows of `size` one after the other.
    ///
    /// # Panics
    ///
    /// When `size` is under a millisecond.
    pub fn tumbling(size: Duration) -> Windows {
        Windows::sliding(size, size)
    }

    /// Windows of `size`, one starting every `slide` (Flink's sliding, SQL's `HOP`): a
    /// record is in `size / slide` of them (rounded up).
    ///
    /// # Panics
    ///
    /// When `size` or `slide` is under a millisecond, or `slide` is larger than `size`.
    pub fn sliding(size: Duration, slide: Duration) -> Windows {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (size_ms, slide_ms) = (ms(size), ms(slide));
        assert!(slide_ms >= 1, "a window slide of at least a millisecond");
        assert!(size_ms >= slide_ms, "a window no shorter than its slide");
        Windows { size_ms, slide_ms }
    }

    /// The windows a record belongs to.
    #[cfg(test)]
    fn per_record(&self) -> usize {
        usize::try_from((self.size_ms + self.slide_ms - 1) / self.slide_ms).unwrap_or(usize::MAX)
    }

    /// Calls `f` with each window of a record at `time`, the latest first.
    ///
    /// # Errors
    ///
    /// [`WeirError::Data`] when a window of `time` would end past `i64::MAX`.
    pub(crate) fn assign(&self, time: i64, mut f: impl FnMut(Window) -> Result<()>) -> Result<()> {
        let overflow = || WeirError::Data {
            message: format!(
                "a record's timestamp {time} ms has no window of {} ms: its end \
                 overflows",
                self.size_ms
            ),
        };
        let mut start = time
            .checked_sub(time.rem_euclid(self.slide_ms))
            .ok_or_else(overflow)?;
        loop {
            let end = start
                .checked_add(self.size_ms)
                .ok_or_else(|| WeirError::Data {
                    message: format!(
                        "a record's timestamp {time} ms has no window of {} ms: its end \
                     overflows",
                        self.size_ms
                    ),
                })?;
            f(Window { start, end })?;
            match start.checked_sub(self.slide_ms) {
                Some(earlier) if earlier > time.saturating_sub(self.size_ms) => start = earlier,
                _ => return Ok(()),
            }
        }
    }
}

/// A keyed stream cut into event-time windows. See [`super::KeyedStream::window`].
pub struct WindowedStream<K, T> {
    pub(crate) keyed: super::KeyedStream<K, T>,
    pub(crate) windows: Windows,
    pub(crate) timestamp: Timestamp<T>,
}

impl<K, T> std::fmt::Debug for WindowedStream<K, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("windows", &self.windows)
            .finish_non_exhaustive()
    }
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    /// One `(window, key, accumulator)` per key and window that had records, when the
    /// watermark passes the window's end: `lift` makes a record's accumulator, `merge`
    /// folds one into another (associative and commutative). Incremental: a window holds
    /// one accumulator per key, in the kernel's hash table (updated in place when the
    /// accumulator has a fixed encoded size), never the records. A window's results come
    /// in the order of their keys' hashes, windows in the order of their ends; the output
    /// carries the watermark on, so windows can follow windows (time the results by
    /// `window.max_timestamp()`).
    pub fn aggregate<A: Data>(
        self,
        lift: impl Fn(&T) -> A + Send + Sync + 'static,
        merge: impl Fn(&mut A, A) + Send + Sync + 'static,
    ) -> super::Stream<(Window, K, A)> {
        let WindowedStream {
            keyed,
            windows,
            timestamp,
        } = self;
        let key = Arc::clone(&keyed.key);
        let lift: Arc<dyn Fn(&T) -> A + Send + Sync> = Arc::new(lift);
        let merge: Merge<A> = Arc::new(merge);
        let final_merge = Arc::clone(&merge);
        let combined = keyed.stream.chain(
            "window combine",
            &[MemoryOp::WindowCombine],
            move |ctx, down| {
                let (key, lift) = (Arc::clone(&key), Arc::clone(&lift));
                let functions = Functions {
                    key: Arc::new(move |record: &T, out: &mut Vec<u8>| {
                        append_key(out, &key(record))
                    }),
                    assign: Assign::ByTime(Arc::clone(&timestamp)),
                    value: Arc::new(move |record: &T, out: &mut Vec<u8>| {
                        append_record(out, &lift(record))
                    }),
                    merge: Arc::clone(&merge),
                };
                Ok(Box::new(WindowAggregate::new(
                    ctx, functions, windows, true, down,
                )?))
            },
        );
        combined
            .key_by(|(_, key, _): &(Window, K, A)| key.clone())
            .partition()
            .chain("window", &[MemoryOp::Window], move |ctx, down| {
                let functions = Functions {
                    key: Arc::new(|(_, key, _): &(Window, K, A), out: &mut Vec<u8>| {
                        append_key(out, key);
                    }),
                    assign: Assign::Own(Arc::new(|(window, _, _): &(Window, K, A)| *window)),
                    value: Arc::new(|(_, _, acc): &(Window, K, A), out: &mut Vec<u8>| {
                        append_record(out, acc)
                    }),
                    merge: Arc::clone(&final_merge),
                };
                Ok(Box::new(WindowAggregate::new(
                    ctx, functions, windows, false, down,
                )?))
            })
    }
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    /// Each key's records of each window, handed to `process` when the watermark passes
    /// the window's end (Flink's `ProcessWindowFunction`): every record `process` returns
    /// goes on. The window's records are kept, per key and window, in the kernel's hash
    /// table as a list (spilling when the operator's share is full) and freed when the
    /// window fires; use [`aggregate`](Self::aggregate) when an accumulator will do, as it
    /// keeps one value per key instead of every record. The records come in no
    /// particular order.
    pub fn process<U: Data, I: IntoIterator<Item = U> + 'static>(
        self,
        process: impl Fn(&Window, &K, Vec<T>) -> I + Send + Sync + 'static,
    ) -> super::Stream<U> {
        let WindowedStream {
            keyed,
            windows,
            timestamp,
        } = self;
        let key = Arc::clone(&keyed.key);
        keyed
            .partition()
            .chain("window process", &[MemoryOp::Window], move |ctx, down| {
                let key = Arc::clone(&key);
                let functions = Functions {
                    key: Arc::new(move |record: &T, out: &mut Vec<u8>| {
                        append_key(out, &key(record));
                    }),
                    assign: Assign::ByTime(Arc::clone(&timestamp)),
                    // A one-record list, encoded as the list type.
                    value: Arc::new(|record: &T, out: &mut Vec<u8>| {
                        append_record(out, std::slice::from_ref(record))
                    }),
                    merge: Arc::new(|a: &mut Vec<T>, b: Vec<T>| a.extend(b)),
                };
                Ok(Box::new(WindowAggregate::new(
                    ctx, functions, windows, false, down,
                )?))
            })
            .flat_map(move |(window, key, records): (Window, K, Vec<T>)| {
                process(&window, &key, records)
            })
    }
}

/// One side of a windowed join's input, in the merged stream.
#[derive(Serialize, Deserialize)]
pub(super) enum Side<L, R> {
    Left(L),
    Right(R),
}

/// A record's key.
pub(super) type KeyOf<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

/// The records of one key and window of a windowed join: the left side's and the right's.
type Sides<L, R> = (Vec<L>, Vec<R>);

impl<K: Key, L: Data> super::KeyedStream<K, L> {
    /// The windowed join with `right` (Flink's window join): for each window of
    /// `windows` and each key, one `join(key, left, right)` per pair of a left and a right
    /// record of that key whose times (`left_time`, `right_time`, milliseconds) lie in
    /// that window, when the watermark passes its end. Both sides are hash-partitioned by
    /// key and read at once (as [`super::Stream::merge`] reads), so neither waits for the
    /// other to end; the window's records are kept per key and window in the kernel's hash
    /// table (spilling when the operator's share is full) and freed when it fires. The
    /// watermark is the smaller of the two sides'.
    pub fn window_join<R: Data, U: Data>(
        self,
        right: super::KeyedStream<K, R>,
        windows: Windows,
        left_time: impl Fn(&L) -> i64 + Send + Sync + 'static,
        right_time: impl Fn(&R) -> i64 + Send + Sync + 'static,
        join: impl Fn(&K, &L, &R) -> U + Send + Sync + 'static,
    ) -> super::Stream<(Window, U)> {
        let (merged, key) = sides_by_key(self, right);
        let time: Timestamp<Side<L, R>> = Arc::new(move |side: &Side<L, R>| match side {
            Side::Left(l) => left_time(l),
            Side::Right(r) => right_time(r),
        });
        merged
            .chain("window join", &[MemoryOp::Window], move |ctx, down| {
                let key = Arc::clone(&key);
                let functions = Functions {
                    key: Arc::new(move |side: &Side<L, R>, out: &mut Vec<u8>| {
                        append_key(out, &key(side));
                    }),
                    assign: Assign::ByTime(Arc::clone(&time)),
                    // A one-record list of its side, encoded as the pair of lists.
                    value: Arc::new(|side: &Side<L, R>, out: &mut Vec<u8>| match side {
                        Side::Left(l) => {
                            append_record(out, &(std::slice::from_ref(l), &[] as &[R]))
                        }
                        Side::Right(r) => {
                            append_record(out, &(&[] as &[L], std::slice::from_ref(r)))
                        }
                    }),
                    merge: Arc::new(|a: &mut Sides<L, R>, b: Sides<L, R>| {
                        a.0.extend(b.0);
                        a.1.extend(b.1);
                    }),
                };
                Ok(Box::new(WindowAggregate::new(
                    ctx, functions, windows, false, down,
                )?))
            })
            .flat_map(
                move |(window, key, (lefts, rights)): (Window, K, Sides<L, R>)| {
                    let mut pairs = Vec::with_capacity(lefts.len() * rights.len());
                    for l in &lefts {
                        for r in &rights {
                            pairs.push((window, join(&key, l, r)));
                        }
                    }
                    pairs
                },
            )
    }
}

/// Both sides of a join read as one stream, and the key of a side.
pub(super) type MergedSides<K, L, R> = (super::Stream<Side<L, R>>, KeyOf<Side<L, R>, K>);

/// Both sides of a two-stream join as one stream of [`Side`]s, each side hash-partitioned
/// by its key and the two read at once, and the key of a side.
pub(super) fn sides_by_key<K: Key, L: Data, R: Data>(
    left: super::KeyedStream<K, L>,
    right: super::KeyedStream<K, R>,
) -> MergedSides<K, L, R> {
    let (left_key, right_key) = (left.key, right.key);
    let key: KeyOf<Side<L, R>, K> = Arc::new(move |side: &Side<L, R>| match side {
        Side::Left(l) => left_key(l),
        Side::Right(r) => right_key(r),
    });
    let by_key = |key: &KeyOf<Side<L, R>, K>| {
        let key = Arc::clone(key);
        move |side: &Side<L, R>| key(side)
    };
    let left = left.stream.map(Side::Left).key_by(by_key(&key)).partition();
    let right = right
        .stream
        .map(Side::Right)
        .key_by(by_key(&key))
        .partition();
    (super::merge_exchanged(left, right), key)
}

/// Appends a record's key or accumulator bytes.
type Bytes<T> = Arc<dyn Fn(&T, &mut Vec<u8>) + Send + Sync>;
type FallibleBytes<T> = Arc<dyn Fn(&T, &mut Vec<u8>) -> Result<()> + Send + Sync>;

/// How a window operator finds a record's windows.
enum Assign<T> {
    /// By its timestamp, through the operator's [`Windows`].
    ByTime(Timestamp<T>),
    /// Its own: a partial accumulator of one window, from the combiner.
    Own(Arc<dyn Fn(&T) -> Window + Send + Sync>),
}

/// A window operator's functions: the key and accumulator bytes of a record, its
/// windows, and the merge of accumulators.
struct Functions<T, A> {
    key: Bytes<T>,
    assign: Assign<T>,
    value: FallibleBytes<T>,
    merge: Merge<A>,
}

/// Records a window combiner takes before it judges whether its table reduces them.
const COMBINE_PROBATION: u64 = 1 << 16;
/// A window combiner whose table holds more groups than this percentage of what it was
/// given (after [`COMBINE_PROBATION`] records) forwards from then on.
const COMBINE_MAX_GROUP_PERCENT: u64 = 50;

/// The window operator of one task. See the module documentation.
struct WindowAggregate<K, T, A> {
    functions: Functions<T, A>,
    windows: Windows,
    /// A combiner before the exchange (it may forward instead, see `forward`), or the
    /// final operator.
    combine: bool,
    /// The combiner's table did not reduce its input: records go on as partials.
    forward: bool,
    /// Accumulators given to the table.
    pushed: u64,
    /// The open windows' groups (keyed by window end and key), the watermark, the counts.
    state: WindowState,
    /// The ends of the windows with groups in the table.
    open: BTreeSet<i64>,
    /// Records taken.
    taken: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Its place in the task's checkpoints.
    slot: Option<SnapshotSlot>,
    down: Box<dyn Push<(Window, K, A)>>,
}

/// A checkpoint frame's group: `[u32 key length][key][accumulator]`.
fn split_group(frame: &[u8]) -> Result<(&[u8], &[u8])> {
    let bad = || WeirError::Data {
        message: "a window group in a checkpoint is malformed".to_owned(),
    };
    let len = frame
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(bad)?;
    let rest = &frame[4..];
    if len > rest.len() {
        return Err(bad());
    }
    Ok(rest.split_at(len))
}

/// The bytes of a window end that sort like the end (sign bit flipped, big-endian).
fn end_bytes(end: i64) -> [u8; 8] {
    ((end as u64) ^ (1 << 63)).to_be_bytes()
}

fn end_of(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

impl<K: Key, T: Data, A: Data> WindowAggregate<K, T, A> {
    fn new(
        ctx: &mut TaskContext,
        functions: Functions<T, A>,
        windows: Windows,
        combine: bool,
        down: Box<dyn Push<(Window, K, A)>>,
    ) -> Result<WindowAggregate<K, T, A>> {
        let mut operator = WindowAggregate {
            state: WindowState::new(
                ctx,
                if combine {
                    MemoryOp::WindowCombine
                } else {
                    MemoryOp::Window
                },
                &functions.merge,
            )?,
            functions,
            windows,
            combine,
            forward: false,
            pushed: 0,
            open: BTreeSet::new(),
            taken: 0,
            key: Vec::new(),
            value: Vec::new(),
            slot: ctx.snapshot_slot(),
            down,
        };
        operator.restore()?;
        Ok(operator)
    }

    /// Loads the open windows' groups and the watermark from the checkpoint the job
    /// started from (a combiner keeps nothing across a barrier: it has none).
    fn restore(&mut self) -> Result<()> {
        let open = &mut self.open;
        let Some(header) = self.state.restore_groups(self.slot.as_ref(), |key| {
            // The key starts with the window's end.
            let end = key.get(..8).ok_or_else(|| WeirError::Data {
                message: "a window group in a checkpoint is malformed".to_owned(),
            })?;
            open.insert(end_of(end.try_into().expect("8 bytes")));
            Ok(())
        })?
        else {
            return Ok(());
        };
        self.state.watermark = decode(&header)?;
        Ok(())
    }

    /// Checkpoint `id`: a combiner sends its partial groups on (the final operator keeps
    /// them); the final operator writes the watermark and every open group (the table
    /// finished and its groups put back into a fresh one, as a firing does).
    fn snapshot(&mut self, id: u64) -> Result<()> {
        let Some(slot) = self.slot.clone() else {
            return Ok(());
        };
        if self.combine {
            return self.fire(Watermark::END - 1, None);
        }
        let mut header = Vec::new();
        append_record(&mut header, &self.state.watermark)?;
        self.state
            .snapshot_groups(&self.functions.merge, (&slot, id), &header)
    }

    /// Fires every window whose last millisecond is at or below `time`: their groups
    /// out, the other windows' into a fresh table.
    fn fire(&mut self, time: i64, emitted_us: Option<u64>) -> Result<()> {
        if self.open.first().is_none_or(|end| end - 1 > time) {
            return Ok(());
        }
        let closed = self.open.iter().take_while(|end| *end - 1 <= time).count();
        let old = self.state.table.take().expect("a table between records");
        let mut groups = old.finish()?;
        let mut fresh = None;
        if closed < self.open.len() {
            fresh = Some(self.state.fresh_table(&self.functions.merge)?);
        }
        while let Some((key, acc)) = groups.next()? {
            let (end, group_key) = key.split_at(8);
            let end = end_of(end.try_into().expect("8 bytes"));
            if end - 1 > time {
                fresh
                    .as_mut()
                    .expect("open windows remain")
                    .push_partial(key, acc)?;
                continue;
            }
            self.state.meter.emitted(key.len() + acc.len());
            let window = Window {
                start: end - self.windows.size_ms,
                end,
            };
            self.down
                .push((window, decode_key(group_key)?, decode(acc)?))?;
            self.state.meter.gave(1);
        }
        self.state.spilled += groups.stats().spilled_bytes;
        drop(groups);
        self.open = self.open.split_off(&(time.saturating_add(2)));
        self.state.table = Some(match fresh {
            Some(table) => table,
            None => self.state.fresh_table(&self.functions.merge)?,
        });
        self.state.fired(closed as u64, emitted_us);
        Ok(())
    }
}

impl<K: Key, T: Data, A: Data> WindowAggregate<K, T, A> {
    /// Whether the combiner's table, after its probation, holds too many groups for what
    /// it was given to be worth it.
    fn judge(&mut self) {
        if !self.combine || self.forward || self.taken != COMBINE_PROBATION {
            return;
        }
        let groups = self
            .state
            .table
            .as_ref()
            .map_or(0, |t| t.groups_in_memory()) as u64;
        self.forward = groups * 100 > self.pushed * COMBINE_MAX_GROUP_PERCENT;
    }

    /// The accumulator `value` of the key `key` (its end bytes first) for `window`: into
    /// the table, or on downstream as a partial.
    fn put(&mut self, window: Window, key: &mut [u8], value: &[u8]) -> Result<()> {
        // A combiner judges lateness by its own task's watermark, ahead of the final
        // operator's (the minimum over all tasks): what is late here goes on as a partial,
        // and the final operator decides.
        if self.forward || (self.combine && window.max_timestamp() <= self.state.watermark) {
            self.state.meter.gave(1);
            return self
                .down
                .push((window, decode_key(&key[8..])?, decode(value)?));
        }
        self.open.insert(window.end);
        key[..8].copy_from_slice(&end_bytes(window.end));
        self.state.meter.stored(key.len() + value.len());
        self.pushed += 1;
        let table = self.state.table.as_mut().expect("a table between records");
        table.push_partial(key, value)?;
        // A combiner whose table spilled forwards from now on: its share is small, and
        // spilling partials the final operator merges anyway does not pay.
        if self.combine && table.stats().spilled_bytes > 0 {
            self.forward = true;
        }
        Ok(())
    }
}

impl<K: Key, T: Data, A: Data> Push<T> for WindowAggregate<K, T, A> {
    fn push(&mut self, record: T) -> Result<()> {
        self.state.meter.took(1);
        self.taken += 1;
        let (mut key, mut value) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.value),
        );
        key.clear();
        key.extend_from_slice(&[0; 8]);
        (self.functions.key)(&record, &mut key);
        value.clear();
        let mut result = (self.functions.value)(&record, &mut value);
        let mut taken = false;
        let watermark = self.state.watermark;
        if result.is_ok() {
            result = match &self.functions.assign {
                Assign::Own(window) => {
                    let window = window(&record);
                    if window.max_timestamp() <= watermark && !self.combine {
                        Ok(())
                    } else {
                        taken = true;
                        self.put(window, &mut key, &value)
                    }
                }
                Assign::ByTime(timestamp) => {
                    let time = timestamp(&record);
                    let windows = self.windows;
                    let combine = self.combine;
                    windows.assign(time, |window| {
                        if window.max_timestamp() <= watermark && !combine {
                            return Ok(());
                        }
                        taken = true;
                        self.put(window, &mut key, &value)
                    })
                }
            };
        }
        (self.key, self.value) = (key, value);
        result?;
        if !taken {
            self.state.late += 1;
        }
        self.judge();
        Ok(())
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        let Some(emitted) = self.state.advance(&watermark) else {
            return Ok(());
        };
        self.fire(watermark.time, emitted)?;
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.snapshot(barrier.id)?;
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.state.meter.finishing();
        self.fire(Watermark::END - 1, None)?;
        self.state.end();
        self.down.finish()
    }
}

/// What the window operators (tumbling and sliding, session) keep alike: the state table
/// and the memory it comes from, the watermark, and the counts for the report.
pub(super) struct WindowState {
    /// The state; `None` only while a firing rebuilds it.
    pub(super) table: Option<HashAggregate>,
    owner: Owner,
    store: Arc<dyn SpillStore>,
    /// Half the operator's share: the other half takes what stays open when a watermark
    /// fires.
    table_segments: usize,
    pub(super) watermark: i64,
    pub(super) late: u64,
    pub(super) spilled: u64,
    pub(super) meter: Meter,
    counters: Arc<Counters>,
}

impl WindowState {
    /// The state of a window operator of the task, its table made for `merge`.
    pub(super) fn new<A: Data>(
        ctx: &mut TaskContext,
        op: MemoryOp,
        merge: &Merge<A>,
    ) -> Result<WindowState> {
        let OperatorSlot {
            owner,
            segments,
            meter,
        } = ctx.operator(op);
        let store = ctx.spill_store();
        let table_segments = segments / 2;
        let table = aggregate_table(&owner, table_segments, Arc::clone(&store), merge)?;
        Ok(WindowState {
            table: Some(table),
            owner,
            store,
            table_segments,
            watermark: i64::MIN,
            late: 0,
            spilled: 0,
            meter,
            counters: ctx.counters(),
        })
    }

    /// Writes `header`, then every group of the table, as `slot`'s piece of checkpoint
    /// `id` (`[u32 key length][key][accumulator]` each): the table finished and its groups
    /// put back into a fresh one made for `merge`, as a firing does.
    pub(super) fn snapshot_groups<A: Data>(
        &mut self,
        merge: &Merge<A>,
        (slot, id): (&SnapshotSlot, u64),
        header: &[u8],
    ) -> Result<()> {
        let old = self.table.take().expect("a table between records");
        let mut groups = old.finish()?;
        let mut fresh = self.fresh_table(merge)?;
        let mut frame = Vec::new();
        let written = slot.write(id, |piece| {
            piece.frame(header)?;
            while let Some((key, acc)) = groups.next()? {
                frame.clear();
                frame.extend_from_slice(
                    &u32::try_from(key.len()).expect("a short key").to_le_bytes(),
                );
                frame.extend_from_slice(key);
                frame.extend_from_slice(acc);
                piece.frame(&frame)?;
                fresh.push_partial(key, acc)?;
            }
            Ok(())
        });
        self.spilled += groups.stats().spilled_bytes;
        drop(groups);
        self.table = Some(fresh);
        written
    }

    /// Puts the groups of `slot`'s piece of the checkpoint the job started from back
    /// into the table, each key also to `each`; answers the piece's header (`None`
    /// without a piece).
    pub(super) fn restore_groups(
        &mut self,
        slot: Option<&SnapshotSlot>,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Vec<u8>>> {
        let mut header = Vec::new();
        let Some(mut piece) = SnapshotSlot::restored_header(slot, &mut header)? else {
            return Ok(None);
        };
        let table = self.table.as_mut().expect("a table between records");
        let mut frame = Vec::new();
        while piece.next_frame(&mut frame)? {
            let (key, acc) = split_group(&frame)?;
            each(key)?;
            table.push_partial(key, acc)?;
        }
        Ok(Some(header))
    }

    /// An empty table for `merge` in the other half of the share.
    pub(super) fn fresh_table<A: Data>(&self, merge: &Merge<A>) -> Result<HashAggregate> {
        aggregate_table(
            &self.owner,
            self.table_segments,
            Arc::clone(&self.store),
            merge,
        )
    }

    /// `watermark` came: `None` when it does not advance the operator's, else the emit
    /// time to measure the fired windows' latency from (`None` inside for END).
    pub(super) fn advance(&mut self, watermark: &Watermark) -> Option<Option<u64>> {
        if watermark.time <= self.watermark {
            return None;
        }
        self.watermark = watermark.time;
        Some((watermark.time != Watermark::END).then_some(watermark.emitted_us))
    }

    /// `windows` fired by a watermark emitted at `emitted_us`: their latency, counted.
    pub(super) fn fired(&self, windows: u64, emitted_us: Option<u64>) {
        if let Some(emitted) = emitted_us {
            let latency = unix_micros().saturating_sub(emitted);
            for _ in 0..windows {
                self.counters.add_window_latency(latency);
            }
        }
    }

    /// The operator's input ended and every window fired: the table goes, its counts to
    /// the report.
    pub(super) fn end(&mut self) {
        if let Some(table) = self.table.take() {
            self.spilled += table.stats().spilled_bytes;
        }
        self.counters.add_late(self.late);
        self.meter.done(self.spilled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows_of(windows: Windows, time: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        windows
            .assign(time, |w| {
                out.push((w.start, w.end));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn tumbling_windows_hold_each_time_once_including_negative_ones() {
        let tumbling = Windows::tumbling(Duration::from_millis(10));
        assert_eq!(windows_of(tumbling, 0), [(0, 10)]);
        assert_eq!(windows_of(tumbling, 9), [(0, 10)]);
        assert_eq!(windows_of(tumbling, 10), [(10, 20)]);
        assert_eq!(windows_of(tumbling, -1), [(-10, 0)]);
        assert_eq!(tumbling.per_record(), 1);
    }

    #[test]
    fn sliding_windows_hold_each_time_size_over_slide_times() {
        let hop = Windows::sliding(Duration::from_millis(10), Duration::from_millis(2));
        assert_eq!(
            windows_of(hop, 13),
            [(12, 22), (10, 20), (8, 18), (6, 16), (4, 14)]
        );
        assert_eq!(hop.per_record(), 5);
        let uneven = Windows::sliding(Duration::from_millis(5), Duration::from_millis(2));
        assert_eq!(windows_of(uneven, 4), [(4, 9), (2, 7), (0, 5)]);
        assert_eq!(windows_of(uneven, 5), [(4, 9), (2, 7)]);
        assert_eq!(uneven.per_record(), 3);
    }

    #[test]
    fn a_window_past_the_end_of_time_is_an_error() {
        let tumbling = Windows::tumbling(Duration::from_millis(10));
        let err = tumbling.assign(i64::MAX - 3, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        // The start of time's window starts before it: an error too, not a panic.
        let hop = Windows::sliding(Duration::from_millis(1000), Duration::from_millis(300));
        let err = hop.assign(i64::MIN, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("overflows"), "{err}");
        assert!(!windows_of(hop, i64::MIN + 1000).is_empty());
    }
}
