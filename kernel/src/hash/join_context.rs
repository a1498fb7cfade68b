//! `JoinContext`: what every part of a hash join shares — the spill store, the
//! configuration, the join type, the run writer's and reader's memory, and the stats.
//!
//! ```text
//!   HashJoin ──owns──▶ JoinContext ◀──&mut── Levels (end of a level, probe runs)
//!                          │        ◀──&mut── MergeJoin (group runs, sorted sides)
//!                          ▼
//!        io: one run writer's + one run reader's segments ──▶ SpillStore
//! ```
//!
//! The join's parts borrow this context rather than the whole join, so none of them
//! reaches the table or another part's state. Invariant (checked by
//! [`JoinContext::assert_io_home`] between runs): at most one run writer and one run
//! reader are open on the io segments at a time, and each gives its segments back when
//! it finishes.

use std::sync::Arc;

use super::join_config::{JoinConfig, JoinStats, JoinType};
use super::join_run::read_record;
use crate::error::Result;
use crate::memory::Reservation;
use crate::spill::{RunInput, RunOptions, RunOutput, SpillRun, SpillStore};

/// The shared context of one hash join. See the module documentation.
#[derive(Debug)]
pub(super) struct JoinContext {
    pub(super) store: Arc<dyn SpillStore>,
    pub(super) config: JoinConfig,
    pub(super) join_type: JoinType,
    pub(super) stats: JoinStats,
    io: Reservation,
    key: Vec<u8>,
    record: Vec<u8>,
}

impl JoinContext {
    /// A context whose runs are written and read with `io`'s segments.
    pub(super) fn new(
        store: Arc<dyn SpillStore>,
        config: JoinConfig,
        join_type: JoinType,
        io: Reservation,
    ) -> JoinContext {
        JoinContext {
            store,
            config,
            join_type,
            stats: JoinStats::default(),
            io,
            key: Vec::new(),
            record: Vec::new(),
        }
    }

    /// Bytes of one memory segment of the join.
    pub(super) fn segment_size(&self) -> usize {
        self.io.owner().segment_size()
    }

    /// A new run, written with the io writer's segments.
    ///
    /// # Errors
    ///
    /// The store cannot create the run; the io writer's segments are out (a bug).
    pub(super) fn create_output(&mut self) -> Result<RunOutput> {
        let writer = self.store.create_run(RunOptions {
            compress: self.config.compress,
            write_behind: self.config.write_behind,
        })?;
        let segments = self.io.allocate(self.config.segments_per_writer())?;
        Ok(RunOutput::new(writer, segments))
    }

    /// Finishes a run the io writer wrote, and counts its bytes as spilled; returns it.
    ///
    /// # Errors
    ///
    /// The last write of the run fails.
    pub(super) fn finish_io_output(&mut self, output: RunOutput) -> Result<SpillRun> {
        let (run, segments) = output.finish()?;
        for segment in segments {
            self.io.give_back(segment);
        }
        self.stats.spilled_bytes += run.disk_bytes();
        Ok(run)
    }

    /// Opens `run` with the io reader's segments.
    ///
    /// # Errors
    ///
    /// The store cannot open the run; the io reader's segments are out (a bug).
    pub(super) fn open_run(&mut self, run: &SpillRun) -> Result<RunInput> {
        let buffers = self.io.allocate(self.config.segments_per_reader())?;
        Ok(RunInput::new(self.store.open_run(run, buffers)?))
    }

    /// Gives the io reader's segments back from a finished input.
    pub(super) fn close_run(&mut self, input: RunInput) {
        for segment in input.into_segments() {
            self.io.give_back(segment);
        }
    }

    /// Calls `sink(key, record)` for every record of `run`.
    ///
    /// # Errors
    ///
    /// A failed or corrupt read of `run`; the first error of `sink`.
    pub(super) fn read_run(
        &mut self,
        run: &SpillRun,
        mut sink: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut input = self.open_run(run)?;
        let (mut key, mut record) = self.take_buffers();
        while read_record(&mut input, run.payload_bytes(), &mut key, &mut record)? {
            sink(&key, &record)?;
        }
        self.put_buffers(key, record);
        self.close_run(input);
        Ok(())
    }

    /// The key and record buffers of run reads, lent to a reader that needs the context
    /// itself while it reads (a rebuild spills as it goes): give them back with
    /// [`JoinContext::put_buffers`] so the next read allocates nothing.
    pub(super) fn take_buffers(&mut self) -> (Vec<u8>, Vec<u8>) {
        (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.record),
        )
    }

    /// Takes back the buffers of [`JoinContext::take_buffers`].
    pub(super) fn put_buffers(&mut self, key: Vec<u8>, record: Vec<u8>) {
        (self.key, self.record) = (key, record);
    }

    /// Checks that the run writer's and reader's segments came back between runs.
    ///
    /// # Panics
    ///
    /// When a run writer or reader kept segments of the join.
    pub(super) fn assert_io_home(&self) {
        assert_eq!(
            self.io.segments(),
            self.config.segments_per_writer() + self.config.segments_per_reader(),
            "a run writer or reader kept segments of the join"
        );
    }
}
