//! `JoinStream`: the rows of a [`HashJoin`] that come after its probe side ends.
//!
//! ```text
//!   next ──▶ Unmatched: build records of the table never matched (right outer only)
//!        ──▶ Next: pop a spilled pair
//!              shrinks and shallow enough ──▶ rebuild the table from its build runs
//!                 (next seed; may spill sub-pairs) ──▶ Probe: its probe run, record by
//!                 record, each match a row ──▶ end of level ──▶ Unmatched ──▶ Next
//!              otherwise ──▶ Merge: both sides sorted, merged ──▶ Next
//!        ──▶ nothing pending: the end
//! ```
//!
//! Each output row is produced once: a key's build and probe records always meet in the
//! same partition at a level, a partition is joined in memory or spilled whole (both
//! sides), and the rows of a spilled pair are produced only from its runs.
//!
//! [`HashJoin::finish`] is defined here, with the stream it makes: the stream stands above
//! the join and uses it, and the join does not need to know its stream.

use super::hasher::hash_bytes;
use super::join::{Emit, HashJoin, Matcher, Route};
use super::join_config::JoinStats;
use super::join_row::JoinRow;
use super::join_run::read_record;
use super::merge_join::{MergeEmit, MergeJoin};
use crate::error::Result;
use crate::spill::{RunInput, SpillRun};

impl HashJoin {
    /// Ends the probe side: probe runs are closed, and the stream emits the rows still to
    /// come (unmatched build records, then the spilled pairs joined).
    ///
    /// # Errors
    ///
    /// A write of a probe run that fails.
    ///
    /// # Panics
    ///
    /// Before [`HashJoin::finish_build`].
    pub fn finish(mut self) -> Result<JoinStream> {
        assert!(self.is_probing(), "finish before finish_build");
        self.end_level()?;
        Ok(JoinStream::new(self))
    }
}

/// Where the next row comes from.
#[derive(Debug)]
enum Source {
    /// The probe run of a rebuilt pair; `matcher` walks the current probe record's matches.
    Probe {
        run: SpillRun,
        input: RunInput,
        matcher: Option<Matcher>,
    },
    /// The table's build records, scanned for unmatched ones.
    Unmatched { partition: usize, position: u64 },
    /// A sort-merge fallback.
    Merge(Box<MergeJoin>),
    /// The next pending pair.
    Next,
    /// Nothing left.
    Done,
    /// A read or spill failed; the stream must be dropped.
    Failed,
}

/// A row of the stream, resolved to bytes by [`JoinStream::next`].
#[derive(Debug, Clone, Copy)]
enum Row {
    Table(Emit),
    Merge(MergeEmit),
}

/// The rows of a join still to come after [`HashJoin::finish`]. Holds the join's memory
/// and spilled runs until dropped.
#[derive(Debug)]
pub struct JoinStream {
    join: HashJoin,
    source: Source,
    probe_key: Vec<u8>,
    probe_record: Vec<u8>,
    scratch: Vec<u8>,
}

impl JoinStream {
    fn new(join: HashJoin) -> JoinStream {
        let source = after_probe(&join);
        JoinStream {
            join,
            source,
            probe_key: Vec::new(),
            probe_record: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// What the join did so far.
    pub fn stats(&self) -> JoinStats {
        self.join.stats()
    }

    /// The next row, or `None` after the last. The slices are valid until the next call.
    /// Spilled pairs are joined here, as the stream reaches them.
    ///
    /// # Errors
    ///
    /// A failed or corrupt read of a spilled run, or a failed spill while joining one. The
    /// stream must be dropped after an error.
    ///
    /// # Panics
    ///
    /// When called again after it returned an error.
    #[allow(
        clippy::should_implement_trait,
        reason = "a lending iterator: rows borrow the stream"
    )]
    pub fn next(&mut self) -> Result<Option<JoinRow<'_>>> {
        assert!(
            !matches!(self.source, Source::Failed),
            "JoinStream::next after an error: the stream must be dropped"
        );
        let row = match self.advance() {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(error) => {
                self.source = Source::Failed;
                return Err(error);
            }
        };
        self.join.context_mut().stats.output_rows += 1;
        Ok(Some(match row {
            Row::Table(emit) => {
                self.join
                    .row(emit, &self.probe_key, &self.probe_record, &mut self.scratch)
            }
            Row::Merge(emit) => match &self.source {
                Source::Merge(merge) => merge.row(emit),
                _ => unreachable!("a merge row comes from a merge"),
            },
        }))
    }

    /// Moves to the next row, through as many sources as it takes.
    fn advance(&mut self) -> Result<Option<Row>> {
        loop {
            match &mut self.source {
                Source::Done => return Ok(None),
                Source::Failed => unreachable!("checked by next"),
                Source::Probe {
                    run,
                    input,
                    matcher,
                } => {
                    if let Some(current) = matcher {
                        if let Some(emit) = self.join.next_emit(current) {
                            return Ok(Some(Row::Table(emit)));
                        }
                        *matcher = None;
                    }
                    let payload = run.payload_bytes();
                    if !read_record(input, payload, &mut self.probe_key, &mut self.probe_record)? {
                        self.end_probe()?;
                        continue;
                    }
                    let hash = hash_bytes(self.join.table().seed(), &self.probe_key);
                    match self.join.route(hash, &self.probe_key, &self.probe_record)? {
                        Route::Match(found) => *matcher = Some(found),
                        Route::Unmatched => return Ok(Some(Row::Table(Emit::Probe))),
                        Route::Done => {}
                    }
                }
                Source::Unmatched {
                    partition,
                    position,
                } => {
                    let table = self.join.table();
                    while *partition < table.partitions() {
                        if *position >= table.bytes(*partition) {
                            *partition += 1;
                            *position = 0;
                            continue;
                        }
                        let at = *position;
                        *position = table.after(*partition, at);
                        if !table.record(*partition, at, &mut self.scratch).matched {
                            return Ok(Some(Row::Table(Emit::Build {
                                partition: *partition,
                                position: at,
                            })));
                        }
                    }
                    self.source = Source::Next;
                }
                Source::Merge(merge) => {
                    if let Some(emit) = merge.advance(self.join.context_mut())? {
                        return Ok(Some(Row::Merge(emit)));
                    }
                    let Source::Merge(merge) = std::mem::replace(&mut self.source, Source::Next)
                    else {
                        unreachable!("the source is a merge");
                    };
                    self.join.return_memory(merge.into_memory());
                }
                Source::Next => self.source = self.next_source()?,
            }
        }
    }

    /// Ends the probe run of a rebuilt pair: its level ends, and its unmatched build
    /// records (if kept) come next.
    fn end_probe(&mut self) -> Result<()> {
        let Source::Probe { run, input, .. } = std::mem::replace(&mut self.source, Source::Next)
        else {
            unreachable!("the source is a probe run");
        };
        self.join.context_mut().close_run(input);
        drop(run);
        self.join.end_level()?;
        self.source = after_probe(&self.join);
        Ok(())
    }

    /// Takes the next pending pair and makes it the source.
    fn next_source(&mut self) -> Result<Source> {
        let Some(pair) = self.join.pop_pair() else {
            return Ok(Source::Done);
        };
        if self.join.needs_sort(&pair) {
            return Ok(Source::Merge(Box::new(self.join.sort_pair(pair)?)));
        }
        match self.join.rebuild(pair)? {
            Some(run) => {
                let input = self.join.context_mut().open_run(&run)?;
                Ok(Source::Probe {
                    run,
                    input,
                    matcher: None,
                })
            }
            None => {
                self.join.end_level()?;
                Ok(after_probe(&self.join))
            }
        }
    }
}

/// What follows the probe side of a level: its unmatched build records, when kept.
fn after_probe(join: &HashJoin) -> Source {
    if join.join_type().keeps_unmatched_build() {
        Source::Unmatched {
            partition: 0,
            position: 0,
        }
    } else {
        Source::Next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_moves_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<HashJoin>();
        assert_send::<JoinStream>();
    }
}
