//! Replayable sources: a source that can say where it is and start again from there.
//!
//! ```text
//!   make(ctx) ─▶ source (task t of P) ─▶ pull(ctx, down, PULL_BATCH)* ─▶ the task's chain
//!                  position() ◀── a checkpoint takes it at each barrier
//!                  seek(position) ◀── a restore rewinds to it (before the first pull),
//!                                     and the same records come
//! ```
//!
//! A position is whatever identifies the source's place in its input: an offset in a
//! log, a block of a file, an index into a deterministic generator. It is a [`Data`]
//! value, so it can be written to a checkpoint and read back in another process. The
//! source pushes its records itself, a batch of at most [`PULL_BATCH`] per call (its
//! own tight loop: records are not moved out through a return value, which costs a copy
//! of each for large ones); between batches the runtime looks at the cancel flag,
//! injects barriers and stops early for a `limit` downstream, so a barrier's position is
//! always a batch boundary. `Dataflow::generate` and the Nexmark generator of `weir-cli`
//! are replayable sources.

use std::sync::Arc;

use super::operators::append_record;
use super::sources::driver;
use super::{Data, Dataflow, Open, Push, Stream, TaskContext};
use crate::checkpoint::SnapshotSlot;
use crate::error::Result;

/// Records a replayable source's driver pulls between two looks at the cancel flag, the
/// barrier schedule and whether downstream is done.
pub const PULL_BATCH: u64 = 1024;

/// A source whose place in its input can be taken and gone back to. See the module
/// documentation.
pub trait ReplayableSource: Send + 'static {
    /// Its records.
    type Record: Data;
    /// Its place: enough to produce the same records again from there.
    type Position: Data + Clone + PartialEq + std::fmt::Debug;

    /// Its place before its next record.
    fn position(&self) -> Self::Position;

    /// Goes to `position` (one this source, or one made like it, gave): the records
    /// after it come next, the same as they came after it before.
    ///
    /// # Errors
    ///
    /// A position this source cannot reach (past its end, of another input).
    fn seek(&mut self, position: &Self::Position) -> Result<()>;

    /// Pushes its next records into `down`, at most `max`; answers how many: fewer than
    /// `max` only once it has no more (an unbounded source never ends). `ctx` is the
    /// task's: a paced source calls [`TaskContext::input_idle`] before it waits.
    ///
    /// # Errors
    ///
    /// The input's, and `down`'s: the job fails with it.
    fn pull(
        &mut self,
        ctx: &TaskContext,
        down: &mut dyn Push<Self::Record>,
        max: u64,
    ) -> Result<u64>;
}

impl Dataflow {
    /// A stream from a [`ReplayableSource`] per task, made by `make(ctx)` in each task
    /// (from `ctx.task()` and `ctx.parallelism()`, its share of the input). The runtime
    /// pulls its records; see the module documentation.
    pub fn replayable_source<S: ReplayableSource>(
        &self,
        name: &str,
        make: impl Fn(&TaskContext) -> Result<S> + Send + Sync + 'static,
    ) -> Stream<S::Record> {
        self.source(name, 0, replayable(make))
    }
}

/// The driver of a replayable source.
pub(crate) fn replayable<S: ReplayableSource>(
    make: impl Fn(&TaskContext) -> Result<S> + Send + Sync + 'static,
) -> Open<S::Record> {
    let make = Arc::new(make);
    Arc::new(move |_, down| {
        let make = Arc::clone(&make);
        Ok(driver(down, move |ctx, down| {
            let mut source = make(ctx)?;
            pull(ctx, &mut source, down)
        }))
    })
}

/// Pulls `source` into `down` until it ends, downstream is done or the job is cancelled.
fn pull<S: ReplayableSource>(
    ctx: &TaskContext,
    source: &mut S,
    down: &mut dyn Push<S::Record>,
) -> Result<()> {
    let slot = ctx.snapshot_slot();
    if let Some(position) = SnapshotSlot::restored_value::<S::Position>(slot.as_ref())? {
        source.seek(&position)?;
    }
    loop {
        ctx.check_cancelled()?;
        ctx.inject_barriers_at(down, slot.as_ref(), || {
            let mut bytes = Vec::new();
            append_record(&mut bytes, &source.position())?;
            Ok(bytes)
        })?;
        if down.is_done() || source.pull(ctx, down, PULL_BATCH)? < PULL_BATCH {
            // Its position at the end, for the final checkpoint and every later one (a
            // restore from them reads nothing more).
            if let Some(slot) = &slot {
                let mut bytes = Vec::new();
                append_record(&mut bytes, &source.position())?;
                slot.write(crate::checkpoint::FINAL, |piece| piece.frame(&bytes))?;
            }
            return Ok(());
        }
    }
}

/// `Dataflow::generate`'s source: records `f(i)` for the indexes `i` of one task's share
/// of `0..count` (`task`, `task + tasks`, …). Its position is the next index.
pub(crate) struct Generate<T> {
    pub(crate) f: Arc<dyn Fn(u64) -> T + Send + Sync>,
    pub(crate) next: u64,
    pub(crate) step: u64,
    pub(crate) count: u64,
}

impl<T: Data> ReplayableSource for Generate<T> {
    type Record = T;
    type Position = u64;

    fn position(&self) -> u64 {
        self.next
    }

    fn seek(&mut self, position: &u64) -> Result<()> {
        let offset = self.next % self.step;
        if position % self.step != offset {
            return Err(crate::error::WeirError::Data {
                message: format!(
                    "generate: position {position} is not one of this task's (every {} from {offset})",
                    self.step
                ),
            });
        }
        // A task's last position is its first index at or past `count`.
        if *position >= self.count + self.step {
            return Err(crate::error::WeirError::Data {
                message: format!(
                    "generate: position {position} is past the end ({} records)",
                    self.count
                ),
            });
        }
        self.next = *position;
        Ok(())
    }

    fn pull(&mut self, _ctx: &TaskContext, down: &mut dyn Push<T>, max: u64) -> Result<u64> {
        let mut pushed = 0;
        while pushed < max && self.next < self.count {
            down.push((self.f)(self.next))?;
            self.next += self.step;
            pushed += 1;
        }
        Ok(pushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::tests::{config, run};

    /// A source that, after `at` records, takes its position, goes `ahead` records on,
    /// and goes back there once: the records in between come twice.
    struct Rewinding<S: ReplayableSource> {
        inner: S,
        pulled: u64,
        at: u64,
        ahead: u64,
        mark: Option<S::Position>,
        rewound: bool,
    }

    impl<S: ReplayableSource> ReplayableSource for Rewinding<S> {
        type Record = S::Record;
        type Position = S::Position;

        fn position(&self) -> S::Position {
            self.inner.position()
        }

        fn seek(&mut self, position: &S::Position) -> Result<()> {
            self.inner.seek(position)
        }

        fn pull(
            &mut self,
            ctx: &TaskContext,
            down: &mut dyn Push<S::Record>,
            max: u64,
        ) -> Result<u64> {
            // One record at a time, to stop exactly at `at` and `at + ahead`.
            let mut pushed = 0;
            while pushed < max {
                if self.pulled == self.at {
                    self.mark = Some(self.inner.position());
                }
                if !self.rewound && self.pulled == self.at + self.ahead {
                    self.rewound = true;
                    let mark = self.mark.clone().expect("marked");
                    self.inner.seek(&mark)?;
                }
                if self.inner.pull(ctx, down, 1)? == 0 {
                    break;
                }
                self.pulled += 1;
                pushed += 1;
            }
            Ok(pushed)
        }
    }

    #[test]
    fn generate_seeks_back_and_gives_the_same_records_again() {
        for slots in [1, 3] {
            let flow = Dataflow::new();
            let f: Arc<dyn Fn(u64) -> u64 + Send + Sync> = Arc::new(|i| i * i);
            let out = flow
                .replayable_source("rewinding", move |ctx| {
                    Ok(Rewinding {
                        inner: Generate {
                            f: Arc::clone(&f),
                            next: ctx.task() as u64,
                            step: ctx.parallelism() as u64,
                            count: 1000,
                        },
                        pulled: 0,
                        at: 100,
                        ahead: 50,
                        mark: None,
                        rewound: false,
                    })
                })
                .collect();
            run(&flow, &config(slots, 16 << 20));
            let mut got = out.take();
            got.sort_unstable();
            // Each task's records 100..150 (its own count) came twice.
            let mut want: Vec<u64> = (0..1000).map(|i| i * i).collect();
            for task in 0..slots as u64 {
                let mine: Vec<u64> = (task..1000).step_by(slots).collect();
                want.extend(mine[100..150].iter().map(|i| i * i));
            }
            want.sort_unstable();
            assert_eq!(got, want, "slots {slots}");
        }
    }

    #[test]
    fn a_position_past_the_end_is_refused() {
        let mut source = Generate {
            f: Arc::new(|i| i),
            next: 1,
            step: 4,
            count: 100,
        };
        // The task's records are 1, 5, …, 97; at the end its position is 101.
        assert!(source.seek(&101).is_ok());
        let err = source.seek(&105).unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
    }

    #[test]
    fn a_position_of_another_task_is_refused() {
        let mut source = Generate {
            f: Arc::new(|i| i),
            next: 1,
            step: 4,
            count: 100,
        };
        assert!(source.seek(&9).is_ok());
        let err = source.seek(&10).unwrap_err().to_string();
        assert!(err.contains("not one of this task's"), "{err}");
    }
}
