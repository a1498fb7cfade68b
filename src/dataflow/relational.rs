//! The operators a query engine plans with beside map, aggregate, join and sort:
//! fallible transforms, duplicate removal, limits and top-k, and the joins whose rows
//! are one side's records (semi and anti joins).
//!
//! ```text
//!   try_map(f)        f(record)? ─▶ down          an Err fails the job (WeirError::Task)
//!   try_map_or_skip(f)                             an Err drops the record, counted
//!   distinct()        key_by(record) ─▶ aggregate(()) ─▶ the keys
//!   limit(n)          each task ≤ n ─▶ gather ─▶ the first n
//!   top_k(n, key)     each task sort_by(key, n) ─▶ gather ─▶ sort_by(key, n)
//!   semi_join(right)  join_as(right, LeftSemi) ─▶ the left records
//! ```
//!
//! Each is built from the kernel operators the rest of the API uses, so each stays in
//! its memory share and spills as they do: `distinct` is a hash aggregation with an
//! empty accumulator, `top_k` two external sorts with a limit, and the semi and anti
//! joins hybrid hash joins.

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;

use weir_kernel::hash::JoinType;

use super::graph::Parallelism;
use super::runtime::Counters;
use super::{Barrier, Data, Key, KeyedStream, Push, Stream, TaskContext, Watermark};
use crate::error::{Result, WeirError};

/// Where a user's function failed: what a fallible operator names in the job's error.
#[derive(Debug, Clone, Copy)]
struct Failing {
    operator: &'static str,
    stage: usize,
    task: usize,
}

impl Failing {
    fn of(operator: &'static str, ctx: &TaskContext) -> Failing {
        Failing {
            operator,
            stage: ctx.stage(),
            task: ctx.task(),
        }
    }

    /// The job's error for the user's `error`: a task failure whose cause is the
    /// operator and the user's message (not a panic: nothing is wrong with the program).
    fn error(self, error: impl Display) -> WeirError {
        WeirError::Task {
            stage: self.stage,
            task: self.task,
            cause: format!("{}: {error}", self.operator),
        }
    }
}

/// A user's function that may fail.
type Fallible<T, U, E> = Arc<dyn Fn(T) -> Result<U, E> + Send + Sync>;

/// A user's predicate that may fail.
type FalliblePredicate<T, E> = Arc<dyn Fn(&T) -> Result<bool, E> + Send + Sync>;

struct TryMap<T, U, E> {
    f: Fallible<T, U, E>,
    failing: Failing,
    /// `Some` when errors are skipped: the records skipped so far, and where the task's
    /// count goes at its end.
    skipping: Option<(u64, Arc<Counters>)>,
    down: Box<dyn Push<U>>,
}

impl<T: Data, U: Data, E: Display> Push<T> for TryMap<T, U, E> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        match (self.f)(record) {
            Ok(out) => self.down.push(out),
            Err(error) => match &mut self.skipping {
                Some((skipped, _)) => {
                    *skipped += 1;
                    Ok(())
                }
                None => Err(self.failing.error(error)),
            },
        }
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((skipped, counters)) = &mut self.skipping {
            counters.add_skipped(std::mem::take(skipped));
        }
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

struct TryFilter<T, E> {
    f: FalliblePredicate<T, E>,
    failing: Failing,
    down: Box<dyn Push<T>>,
}

impl<T: Data, E: Display> Push<T> for TryFilter<T, E> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        match (self.f)(&record) {
            Ok(true) => self.down.push(record),
            Ok(false) => Ok(()),
            Err(error) => Err(self.failing.error(error)),
        }
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

struct TryFlatMap<T, U, I, E> {
    f: Fallible<T, I, E>,
    failing: Failing,
    down: Box<dyn Push<U>>,
    _items: PhantomData<fn() -> I>,
}

impl<T: Data, U: Data, I: IntoIterator<Item = U>, E: Display> Push<T> for TryFlatMap<T, U, I, E> {
    fn push(&mut self, record: T) -> Result<()> {
        let items = (self.f)(record).map_err(|error| self.failing.error(error))?;
        for item in items {
            self.down.push(item)?;
        }
        Ok(())
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.down.is_done()
    }
}

/// Forwards the first `left` records of its task and drops the rest.
struct Limit<T> {
    left: u64,
    down: Box<dyn Push<T>>,
}

impl<T: Data> Push<T> for Limit<T> {
    #[inline]
    fn push(&mut self, record: T) -> Result<()> {
        if self.left == 0 {
            return Ok(());
        }
        self.left -= 1;
        self.down.push(record)
    }

    fn watermark(&mut self, watermark: Watermark) -> Result<()> {
        self.down.watermark(watermark)
    }

    fn barrier(&mut self, barrier: Barrier) -> Result<()> {
        self.down.barrier(barrier)
    }

    fn finish(&mut self) -> Result<()> {
        self.down.finish()
    }

    fn is_done(&self) -> bool {
        self.left == 0 || self.down.is_done()
    }
}

/// A key function shared by the two sorts of a top-k.
type SortKey<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;

impl<T: Data> Stream<T> {
    /// Each record through `f`, which may fail: the first `Err` fails the job with a
    /// [`WeirError::Task`] naming the stage, the task and the operator, whose message is
    /// `try_map: ` and the error's [`Display`]. A parse of input fields is the typical
    /// use. `E` is any error that displays (a `String`, a `std::num::ParseIntError`, a
    /// `Box<dyn std::error::Error + Send + Sync>`): only its message reaches the job's
    /// error, as the job's error crosses threads and processes as text.
    pub fn try_map<U: Data, E: Display + 'static>(
        self,
        f: impl Fn(T) -> Result<U, E> + Send + Sync + 'static,
    ) -> Stream<U> {
        let f: Fallible<T, U, E> = Arc::new(f);
        self.chain("try_map", &[], move |ctx, down| {
            Ok(Box::new(TryMap {
                f: Arc::clone(&f),
                failing: Failing::of("try_map", ctx),
                skipping: None,
                down,
            }))
        })
    }

    /// Each record through `f`, which may fail: a record whose `f` returns `Err` is
    /// dropped and counted, in [`WorkerReport::skipped_records`](super::WorkerReport),
    /// instead of failing the job (for input where a bad line is to be expected and
    /// counted, not fatal).
    pub fn try_map_or_skip<U: Data, E: Display + 'static>(
        self,
        f: impl Fn(T) -> Result<U, E> + Send + Sync + 'static,
    ) -> Stream<U> {
        let f: Fallible<T, U, E> = Arc::new(f);
        self.chain("try_map_or_skip", &[], move |ctx, down| {
            Ok(Box::new(TryMap {
                f: Arc::clone(&f),
                failing: Failing::of("try_map_or_skip", ctx),
                skipping: Some((0, ctx.counters())),
                down,
            }))
        })
    }

    /// The records for which `f` returns `Ok(true)`; the first `Err` fails the job as in
    /// [`try_map`](Self::try_map) (with `try_filter: ` before the message).
    pub fn try_filter<E: Display + 'static>(
        self,
        f: impl Fn(&T) -> Result<bool, E> + Send + Sync + 'static,
    ) -> Stream<T> {
        let f: FalliblePredicate<T, E> = Arc::new(f);
        self.chain("try_filter", &[], move |ctx, down| {
            Ok(Box::new(TryFilter {
                f: Arc::clone(&f),
                failing: Failing::of("try_filter", ctx),
                down,
            }))
        })
    }

    /// Every record of what `f` returns for each record; the first `Err` fails the job as
    /// in [`try_map`](Self::try_map) (with `try_flat_map: ` before the message).
    pub fn try_flat_map<U: Data, I: IntoIterator<Item = U> + 'static, E: Display + 'static>(
        self,
        f: impl Fn(T) -> Result<I, E> + Send + Sync + 'static,
    ) -> Stream<U> {
        let f: Fallible<T, I, E> = Arc::new(f);
        self.chain("try_flat_map", &[], move |ctx, down| {
            Ok(Box::new(TryFlatMap {
                f: Arc::clone(&f),
                failing: Failing::of("try_flat_map", ctx),
                down,
                _items: PhantomData,
            }))
        })
    }

    /// At most `n` records of the stream, on one task: each task forwards its first `n`,
    /// which are gathered to one task (on worker 0) that forwards the first `n` it
    /// receives. Which `n` records is unspecified (it depends on the tasks' timing)
    /// unless the stream is ordered: for the first `n` by a key use
    /// [`top_k`](Self::top_k). Once a task has forwarded its `n`-th record, the source of
    /// its chain stops at its next look ([`Push::is_done`]), so a limit ends a scan or an
    /// unbounded source in front of it; upstream of an exchange, the other stages run to
    /// their end.
    pub fn limit(self, n: u64) -> Stream<T> {
        let limit = move |ctx: &mut TaskContext, down: Box<dyn Push<T>>| {
            ctx.refuse_checkpoints("a limit")?;
            Ok(Box::new(Limit { left: n, down }) as Box<dyn Push<T>>)
        };
        let local = self.chain("limit", &[], limit);
        if local.parallelism == Parallelism::One {
            return local;
        }
        local.gather().chain("limit", &[], limit)
    }

    /// The `n` records first in the order of `key` (serde-fmt key order, as
    /// [`sort_by`](Self::sort_by)), in that order, on one task (on worker 0): each task
    /// sorts its records and sends its first `n`, and the gathering task sorts those
    /// `n` × tasks records and forwards the first `n`. Records with equal keys are in no
    /// particular order. Both sorts are external sorts that spill when their memory
    /// share is full.
    ///
    /// # Panics
    ///
    /// When the key's type has no key encoding, at the first record.
    pub fn top_k<K: Key>(self, n: u64, key: impl Fn(&T) -> K + Send + Sync + 'static) -> Stream<T> {
        let key: SortKey<T, K> = Arc::new(key);
        if self.parallelism == Parallelism::One {
            return self.sort_by(move |record| key(record), Some(n));
        }
        let local: SortKey<T, K> = Arc::clone(&key);
        self.sort_by(move |record| local(record), Some(n))
            .gather()
            .sort_by(move |record| key(record), Some(n))
    }
}

impl<T: Key> Stream<T> {
    /// Each distinct record once (by its key encoding: two records are the same when
    /// their serde-fmt key bytes are). The stream is hash-partitioned by the records, as
    /// by [`key_by`](Self::key_by), and deduplicated by a kernel hash aggregation with an
    /// empty accumulator, before the exchange (in each task) and after it: it spills when
    /// its memory share is full, as [`KeyedStream::aggregate`] does.
    ///
    /// # Panics
    ///
    /// When `T` has no key encoding (a map, an unsized sequence of floats), at the first
    /// record.
    pub fn distinct(self) -> Stream<T> {
        self.key_by(T::clone)
            .aggregate(|_| (), |(), ()| {})
            .map(|(record, ())| record)
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// The full outer join with `right` on equal keys: one `(Some(left), Some(right))` per
    /// matching pair, and each record of either side without a match once, with `None`
    /// for the other. A hybrid hash join that builds on `right`: each task emits the
    /// unmatched right records of its own keys once it has read all of its left side.
    ///
    /// # Panics
    ///
    /// When one input runs on every task and the other on one (after `gather`).
    pub fn full_outer_join<R: Data>(
        self,
        right: KeyedStream<K, R>,
    ) -> Stream<(Option<T>, Option<R>)> {
        self.join_as(right, JoinType::FullOuter)
    }

    /// The left records with at least one right record of the same key, each once (SQL's
    /// `EXISTS` and `IN`). A hybrid hash join that builds on `right`, as
    /// [`join`](Self::join).
    ///
    /// # Panics
    ///
    /// When one input runs on every task and the other on one (after `gather`).
    pub fn semi_join<R: Data>(self, right: KeyedStream<K, R>) -> Stream<T> {
        self.join_as(right, JoinType::LeftSemi).map(left_row)
    }

    /// The left records with no right record of the same key (SQL's `NOT EXISTS`). A
    /// hybrid hash join that builds on `right`, as [`join`](Self::join).
    ///
    /// # Panics
    ///
    /// When one input runs on every task and the other on one (after `gather`).
    pub fn anti_join<R: Data>(self, right: KeyedStream<K, R>) -> Stream<T> {
        self.join_as(right, JoinType::LeftAnti).map(left_row)
    }

    /// [`semi_join`](Self::semi_join) that builds on the left side: use it when the left
    /// input is the smaller one (the orders of one quarter against every late line item).
    /// The kernel's right semi join with the inputs swapped: each task holds its left
    /// records in the join table and emits each once, at the first right record that
    /// matches it, with no deduplication of the right side; the right records are probed
    /// as they come and dropped.
    ///
    /// # Panics
    ///
    /// When one input runs on every task and the other on one (after `gather`).
    pub fn semi_join_build_left<R: Data>(self, right: KeyedStream<K, R>) -> Stream<T> {
        right.join_as(self, JoinType::RightSemi).map(right_row)
    }

    /// [`anti_join`](Self::anti_join) that builds on the left side (the smaller input):
    /// each task holds its left records in the join table, marks those a right record
    /// matches, and emits the others once its right side has ended.
    ///
    /// # Panics
    ///
    /// When one input runs on every task and the other on one (after `gather`).
    pub fn anti_join_build_left<R: Data>(self, right: KeyedStream<K, R>) -> Stream<T> {
        right.join_as(self, JoinType::RightAnti).map(right_row)
    }

    /// [`semi_join`](Self::semi_join) with a small `right` that is broadcast, as
    /// [`broadcast_join`](Self::broadcast_join): the left records stay where they are.
    ///
    /// # Panics
    ///
    /// When the left stream runs on one task (after `gather`).
    pub fn broadcast_semi_join<R: Data>(self, right: KeyedStream<K, R>) -> Stream<T> {
        self.broadcast_join_as(right, JoinType::LeftSemi)
            .map(left_row)
    }

    /// [`anti_join`](Self::anti_join) with a small `right` that is broadcast, as
    /// [`broadcast_join`](Self::broadcast_join): the left records stay where they are.
    ///
    /// # Panics
    ///
    /// When the left stream runs on one task (after `gather`).
    pub fn broadcast_anti_join<R: Data>(self, right: KeyedStream<K, R>) -> Stream<T> {
        self.broadcast_join_as(right, JoinType::LeftAnti)
            .map(left_row)
    }
}

/// A right semi or anti join's row: the right (build) record alone.
fn right_row<T, R>(row: (Option<T>, Option<R>)) -> R {
    match row {
        (None, Some(right)) => right,
        _ => unreachable!("a right semi or anti join row is a right record alone"),
    }
}

/// A semi or anti join's row: the left record alone.
fn left_row<T, R>(row: (Option<T>, Option<R>)) -> T {
    match row {
        (Some(left), None) => left,
        _ => unreachable!("a semi or anti join row is a left record alone"),
    }
}
