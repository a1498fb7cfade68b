//! The io_uring backend: write-behind and read-ahead with several blocks in flight.
//!
//! ```text
//!   RunWriter ─write_block─▶ Queue ──SQE (segment bytes)──▶ kernel ──CQE──▶ segment back
//!             ◀─ Some(oldest segment) once `write_behind` are in flight
//!   RunReader ─refill─▶ Queue ──SQE × (free segments)──▶ kernel ──CQE──▶ decode ─▶ Block
//! ```
//!
//! **One small ring per run writer or reader**, not one shared ring. A run's reads and
//! writes are sequential and owned by one thread at a time, so a private ring needs no
//! lock and no routing of completions between threads, and errors stay with the run they
//! belong to. The cost is a ring per open run: a merge of [`SORT_FAN_IN_MAX`] = 128 runs
//! opens 128 rings of a few entries each (two small mappings and a descriptor apiece,
//! charged to the memory cgroup rather than `RLIMIT_MEMLOCK` since Linux 5.12), and the
//! kernel's worker pool for blocking file I/O is per thread, not per ring, so it does not
//! multiply. Setting up a ring takes microseconds, against milliseconds of I/O per run.
//!
//! **Segments lent to the kernel stay in the [`Queue`]'s table until their last CQE.** The
//! table, not the caller, owns a segment while its bytes are being read or written; it
//! hands it back only when the transfer has completed or failed, and [`Queue`]'s `Drop`
//! waits for every outstanding CQE before the segments can go home. A short transfer is
//! resubmitted for the rest; `EINTR` and `EAGAIN` are retried up to
//! [`SPILL_IO_RETRIES_MAX`] times. If the ring itself fails while a segment is still lent
//! out, that segment is leaked (never freed), so the kernel can never write into memory
//! the manager has handed to someone else; the leak check then reports it.
//!
//! Not done: registered buffers (`READ_FIXED`/`WRITE_FIXED`) and registered files. The
//! 8 MiB `RLIMIT_MEMLOCK` of this machine's users is far below a segment arena, and
//! registering per ring the few segments a run holds costs a pin per segment per run; a
//! shared registration of the whole arena belongs with the memory manager, later.
//!
//! [`SORT_FAN_IN_MAX`]: crate::constants::SORT_FAN_IN_MAX

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{IoUring, opcode, types};

use super::file::SpillFile;
use super::run::{Extent, ReadPlan, RunBuilder, RunLayout, decode};
use super::{Block, RunReader, RunWriter, SpillRun};
use crate::constants::{SPILL_IN_FLIGHT_MAX, SPILL_IO_RETRIES_MAX};
use crate::error::Result;
use crate::memory::MemorySegment;

/// Sets up a ring, checks that reads and writes are supported, and runs a no-op through
/// it: the kernel may lack io_uring (`ENOSYS`), forbid it (`EPERM` under a container's
/// seccomp profile, or `kernel.io_uring_disabled`), or predate the opcodes.
///
/// # Errors
///
/// The first failure, as text for the store's description.
pub(super) fn probe() -> std::result::Result<(), String> {
    let mut ring = IoUring::new(2).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    if !probe.is_supported(opcode::Read::CODE) || !probe.is_supported(opcode::Write::CODE) {
        return Err("io_uring lacks READ or WRITE".into());
    }
    let nop = opcode::Nop::new().build().user_data(1);
    // SAFETY: a NOP names no buffer and no file, so nothing must outlive its completion.
    unsafe { ring.submission().push(&nop) }.map_err(|_| "io_uring queue full".to_string())?;
    ring.submit_and_wait(1)
        .map_err(|e| format!("io_uring_enter failed: {e}"))?;
    match ring.completion().next() {
        Some(cqe) if cqe.result() >= 0 => Ok(()),
        Some(cqe) => Err(format!(
            "io_uring no-op failed: {}",
            io::Error::from_raw_os_error(-cqe.result())
        )),
        None => Err("io_uring no-op did not complete".into()),
    }
}

/// Direction of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// Where a transfer stands.
#[derive(Debug)]
enum State {
    /// An SQE for it is in the kernel: its segment must not be touched or freed.
    InKernel,
    /// Finished: `done` bytes moved (fewer than `len` only at the end of the file).
    Done,
    /// Failed with this error; the kernel no longer holds the segment.
    Failed(io::Error),
}

/// One block's transfer, owning the segment lent to the kernel.
#[derive(Debug)]
struct Transfer {
    segment: MemorySegment,
    direction: Direction,
    offset: u64,
    len: usize,
    done: usize,
    retries: u32,
    state: State,
}

impl Transfer {
    fn new(segment: MemorySegment, direction: Direction, offset: u64, len: usize) -> Transfer {
        assert!(
            len <= segment.size(),
            "a transfer of {len} bytes from a smaller segment"
        );
        Transfer {
            segment,
            direction,
            offset,
            len,
            done: 0,
            retries: 0,
            state: State::InKernel,
        }
    }

    /// The SQE for the rest of the transfer.
    fn entry(&mut self, fd: types::Fd, slot: usize) -> io_uring::squeue::Entry {
        let (position, remaining) = (self.offset + self.done as u64, self.len - self.done);
        let remaining_u32 = u32::try_from(remaining).expect("a block is smaller than 4 GiB");
        let entry = match self.direction {
            Direction::Write => {
                let bytes = self.segment.bytes(self.done, remaining);
                opcode::Write::new(fd, bytes.as_ptr(), remaining_u32)
                    .offset(position)
                    .build()
            }
            Direction::Read => {
                let bytes = self.segment.bytes_mut(self.done, remaining);
                opcode::Read::new(fd, bytes.as_mut_ptr(), remaining_u32)
                    .offset(position)
                    .build()
            }
        };
        entry.user_data(slot as u64)
    }

    /// Takes a CQE's result. Returns whether the rest must be submitted again.
    fn complete(&mut self, result: i32, file: &SpillFile) -> bool {
        match (result, self.direction) {
            (e, _) if e < 0 => {
                let retry = (-e == libc::EINTR || -e == libc::EAGAIN)
                    && self.retries < SPILL_IO_RETRIES_MAX;
                self.retries += 1;
                if !retry {
                    self.state = State::Failed(io::Error::from_raw_os_error(-e));
                }
                retry
            }
            (0, Direction::Write) => {
                self.state = State::Failed(io::ErrorKind::WriteZero.into());
                false
            }
            (0, Direction::Read) => {
                self.state = State::Done;
                false
            }
            (n, _) => {
                self.done += n as usize;
                let position = self.offset + self.done as u64;
                let more = self.done < self.len && file.can_resume_at(position);
                if !more {
                    self.state = State::Done;
                }
                more
            }
        }
    }
}

/// A ring and the transfers it has lent to the kernel.
///
/// Invariants:
/// 1. Every SQE pushed names the bytes of the segment of the transfer in `slots[user_data]`,
///    and that transfer stays in its slot, in [`State::InKernel`], until the SQE's CQE has
///    been reaped.
/// 2. `in_kernel` counts the SQEs pushed whose CQE has not been reaped.
struct Queue {
    ring: IoUring,
    file: Arc<SpillFile>,
    slots: Vec<Option<Transfer>>,
    in_kernel: usize,
}

impl Queue {
    /// A ring for `depth` transfers in flight.
    fn new(file: Arc<SpillFile>, depth: usize) -> Result<Queue> {
        assert!((1..=SPILL_IN_FLIGHT_MAX).contains(&depth));
        let entries = depth.next_power_of_two() as u32;
        let ring = IoUring::new(entries).map_err(|e| file.io_error("set up io_uring", 0, e))?;
        Ok(Queue {
            ring,
            file,
            slots: (0..depth).map(|_| None).collect(),
            in_kernel: 0,
        })
    }

    /// Lends `transfer` to the kernel; returns its slot.
    ///
    /// # Panics
    ///
    /// When every slot is taken (callers keep at most `depth` transfers).
    fn start(&mut self, transfer: Transfer) -> Result<usize> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .expect("a free slot: callers keep at most `depth` transfers");
        self.slots[slot] = Some(transfer);
        self.push(slot);
        self.submit()?;
        Ok(slot)
    }

    /// Pushes the SQE for the rest of the transfer in `slot`.
    fn push(&mut self, slot: usize) {
        let fd = types::Fd(self.file.file().as_raw_fd());
        let transfer = self.slots[slot].as_mut().expect("a transfer to push");
        let entry = transfer.entry(fd, slot);
        // SAFETY: invariant 1: the entry names `transfer.segment`'s bytes, and the transfer
        // stays in `slots[slot]` in `State::InKernel`, never touched or freed, until this
        // SQE's CQE is reaped (`Drop` waits for it). Segment bytes live in the arena, so
        // moving the `MemorySegment` handle does not move them.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        // The ring has at least `depth` entries and each transfer has at most one SQE in it.
        assert!(pushed.is_ok(), "io_uring submission queue full");
        self.in_kernel += 1;
    }

    /// Whether an `io_uring_enter` error is worth another go: interrupted, or busy until
    /// completions are reaped.
    fn retry_enter(&mut self, error: &io::Error) -> bool {
        match error.raw_os_error() {
            Some(libc::EINTR) => true,
            Some(libc::EBUSY | libc::EAGAIN) => {
                self.reap();
                true
            }
            _ => false,
        }
    }

    /// Hands queued SQEs to the kernel.
    fn submit(&mut self) -> Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(error) if self.retry_enter(&error) => {}
                Err(error) => return Err(self.file.io_error("submit to io_uring", 0, error)),
            }
        }
    }

    /// Takes every available CQE, resubmitting transfers cut short.
    fn reap(&mut self) {
        let mut again = Vec::new();
        for cqe in self.ring.completion() {
            let slot = cqe.user_data() as usize;
            self.in_kernel -= 1;
            let transfer = self.slots[slot]
                .as_mut()
                .expect("a CQE for a lent transfer");
            if transfer.complete(cqe.result(), &self.file) {
                again.push(slot);
            }
        }
        for slot in again {
            self.push(slot);
        }
    }

    /// Whether the transfer in `slot` is still in the kernel.
    fn is_in_kernel(&self, slot: usize) -> bool {
        matches!(
            self.slots[slot].as_ref().map(|t| &t.state),
            Some(State::InKernel)
        )
    }

    /// Waits until the transfer in `slot` is finished and takes it out of the table.
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`] when the ring itself fails; the transfer stays in the
    /// table (and in the kernel), for `Drop` to wait for.
    fn wait(&mut self, slot: usize) -> Result<Transfer> {
        self.reap();
        while self.is_in_kernel(slot) {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error) if self.retry_enter(&error) => {}
                Err(error) => {
                    return Err(self.file.io_error("wait for io_uring", 0, error));
                }
            }
            self.reap();
        }
        Ok(self.slots[slot].take().expect("a transfer to take"))
    }

    /// Takes the transfer in `slot` if it has finished, without waiting.
    fn try_take(&mut self, slot: usize) -> Option<Transfer> {
        self.reap();
        if self.is_in_kernel(slot) {
            return None;
        }
        self.slots[slot].take()
    }

    /// Waits for every transfer and returns their segments, finished or failed. Segments
    /// the kernel may still hold when the ring fails are leaked, never freed.
    fn drain(&mut self) -> Vec<MemorySegment> {
        while self.in_kernel > 0 {
            let waited = match self.ring.submit_and_wait(1) {
                Ok(_) => true,
                Err(error) => self.retry_enter(&error),
            };
            self.reap();
            if !waited {
                self.leak_in_kernel();
                break;
            }
        }
        self.slots
            .iter_mut()
            .filter_map(Option::take)
            .map(|transfer| transfer.segment)
            .collect()
    }

    /// Forgets the segments of transfers still in the kernel: the kernel may write into
    /// them, so they must never go back to the manager.
    fn leak_in_kernel(&mut self) {
        for slot in &mut self.slots {
            if matches!(slot.as_ref().map(|t| &t.state), Some(State::InKernel)) {
                std::mem::forget(slot.take());
            }
        }
        self.in_kernel = 0;
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("file", &self.file.path())
            .field("entries", &self.ring.params().sq_entries())
            .field("in_kernel", &self.in_kernel)
            .finish()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        drop(self.drain());
    }
}

/// A run writer with up to `depth` block writes in flight.
#[derive(Debug)]
pub(super) struct UringWriter {
    builder: RunBuilder,
    queue: Queue,
    /// Slots in the order their writes were started, with each block's payload length.
    order: VecDeque<(usize, usize)>,
    depth: usize,
}

impl UringWriter {
    /// A writer keeping `write_behind` writes in flight (at least 1, at most
    /// [`SPILL_IN_FLIGHT_MAX`]).
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`] when the ring cannot be set up.
    pub(super) fn new(builder: RunBuilder, write_behind: usize) -> Result<UringWriter> {
        let depth = write_behind.clamp(1, SPILL_IN_FLIGHT_MAX);
        let queue = Queue::new(Arc::clone(builder.file()), depth)?;
        Ok(UringWriter {
            builder,
            queue,
            order: VecDeque::with_capacity(depth),
            depth,
        })
    }

    /// Checks a finished write and returns its segment.
    fn settle(&self, transfer: Transfer, payload_len: usize) -> Result<MemorySegment> {
        let file = self.builder.file();
        match transfer.state {
            State::Done if transfer.done == transfer.len => {
                file.disk().count_write(transfer.len, payload_len);
                Ok(transfer.segment)
            }
            State::Done => Err(file.io_error(
                "write block",
                transfer.offset,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("wrote {} of {} bytes", transfer.done, transfer.len),
                ),
            )),
            State::Failed(source) => Err(file.io_error("write block", transfer.offset, source)),
            State::InKernel => unreachable!("a settled transfer is out of the kernel"),
        }
    }

    /// Waits for the oldest write and returns its segment.
    fn complete_oldest(&mut self) -> Result<MemorySegment> {
        let (slot, payload_len) = self.order.pop_front().expect("a write in flight");
        let transfer = self.queue.wait(slot)?;
        self.settle(transfer, payload_len)
    }

    /// The oldest write's segment if it has finished.
    fn poll_oldest(&mut self) -> Result<Option<MemorySegment>> {
        let Some(&(slot, payload_len)) = self.order.front() else {
            return Ok(None);
        };
        let Some(transfer) = self.queue.try_take(slot) else {
            return Ok(None);
        };
        self.order.pop_front();
        self.settle(transfer, payload_len).map(Some)
    }
}

impl RunWriter for UringWriter {
    fn write_block(
        &mut self,
        mut segment: MemorySegment,
        payload_len: usize,
    ) -> Result<Option<MemorySegment>> {
        let pending = self.builder.prepare(&mut segment, payload_len)?;
        let mut done = None;
        if self.order.len() == self.depth {
            done = Some(self.complete_oldest()?);
        }
        let transfer = Transfer::new(segment, Direction::Write, pending.offset, pending.len);
        let slot = self.queue.start(transfer)?;
        self.order.push_back((slot, pending.payload_len));
        match done {
            Some(segment) => Ok(Some(segment)),
            None => self.poll_oldest(),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(SpillRun, Vec<MemorySegment>)> {
        let mut segments = Vec::with_capacity(self.order.len());
        while !self.order.is_empty() {
            segments.push(self.complete_oldest()?);
        }
        let UringWriter { builder, queue, .. } = *self;
        drop(queue);
        Ok((builder.finish(), segments))
    }
}

/// A run reader with as many reads in flight as it has spare lent segments.
///
/// Invariant: every lent segment is in `free`, in the queue, or out with the caller.
#[derive(Debug)]
pub(super) struct UringReader {
    plan: ReadPlan,
    queue: Queue,
    /// Slots of reads in flight, in block order.
    order: VecDeque<(usize, Extent)>,
    free: Vec<MemorySegment>,
    /// Segments kept out of read-ahead: one when blocks must be decompressed into it.
    reserve: usize,
    depth: usize,
}

impl UringReader {
    /// A reader of `layout` reading ahead into `buffers`.
    ///
    /// # Errors
    ///
    /// [`KernelError::SpillIo`] when the ring cannot be set up.
    pub(super) fn new(layout: Arc<RunLayout>, buffers: Vec<MemorySegment>) -> Result<UringReader> {
        let depth = buffers.len().clamp(1, SPILL_IN_FLIGHT_MAX);
        let reserve = usize::from(layout.has_compressed_blocks());
        let queue = Queue::new(Arc::clone(&layout.file), depth)?;
        Ok(UringReader {
            plan: ReadPlan::new(layout),
            queue,
            order: VecDeque::with_capacity(depth),
            free: buffers,
            reserve,
            depth,
        })
    }

    /// Starts reads of the next blocks into free segments, keeping the reserve.
    fn refill(&mut self) -> Result<()> {
        while self.order.len() < self.depth && self.free.len() > self.reserve {
            let Some(extent) = self.plan.next_extent() else {
                break;
            };
            let segment = self.free.pop().expect("a free segment");
            let transfer = Transfer::new(segment, Direction::Read, extent.offset, extent.len);
            let slot = self.queue.start(transfer)?;
            self.order.push_back((slot, extent));
        }
        Ok(())
    }

    /// Waits for the oldest read and verifies (and decompresses) its block.
    fn complete_oldest(&mut self, slot: usize, extent: Extent) -> Result<Block> {
        let transfer = self.queue.wait(slot)?;
        let file = &self.plan.layout().file;
        if let State::Failed(source) = transfer.state {
            self.free.push(transfer.segment);
            return Err(file.io_error("read block", extent.offset, source));
        }
        file.disk().count_read(transfer.done);
        decode(
            self.plan.layout(),
            extent,
            transfer.segment,
            transfer.done,
            &mut self.free,
        )
    }
}

impl RunReader for UringReader {
    fn next_block(&mut self) -> Result<Option<Block>> {
        self.refill()?;
        let Some((slot, extent)) = self.order.pop_front() else {
            assert!(
                self.plan.is_done(),
                "run reader has no segment to read into: recycle blocks before asking for more"
            );
            return Ok(None);
        };
        let block = self.complete_oldest(slot, extent)?;
        self.refill()?;
        Ok(Some(block))
    }

    fn recycle(&mut self, segment: MemorySegment) {
        self.free.push(segment);
    }

    fn into_segments(mut self: Box<Self>) -> Vec<MemorySegment> {
        let mut segments = self.queue.drain();
        segments.append(&mut self.free);
        segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryConfig, MemoryManager};
    use crate::spill::file::Disk;

    #[test]
    fn the_probe_runs_here() {
        // The machines weir is developed on have io_uring; a container
        // without it reports why instead, which is what the probe is for.
        match probe() {
            Ok(()) => {}
            Err(why) => assert!(why.contains("io_uring"), "{why}"),
        }
    }

    /// Feeds CQE results to a transfer: retries, short transfers, failures, end of file.
    #[test]
    fn completions_retry_resume_and_fail_as_they_should() {
        let dir = std::env::temp_dir().join(format!("weir-uring-cqe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let disk = Arc::new(Disk::new(dir.clone(), false, None));
        let file = SpillFile::create(&disk).unwrap();
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 8192,
            ..MemoryConfig::with_budget(8192)
        })
        .unwrap();
        let segment = manager.owner("t").allocate_one().unwrap();
        let mut write = Transfer::new(segment, Direction::Write, 4096, 8192);
        assert!(write.complete(-libc::EINTR, &file), "EINTR is retried");
        assert!(write.complete(-libc::EAGAIN, &file), "EAGAIN is retried");
        assert!(write.complete(3000, &file), "a short write resumes");
        assert_eq!(write.done, 3000);
        let entry = format!("{:?}", write.entry(types::Fd(0), 5));
        assert!(entry.contains("user_data: 5"), "{entry}");
        assert!(!write.complete(5192, &file));
        assert!(matches!(write.state, State::Done) && write.done == 8192);
        write.state = State::InKernel;
        assert!(!write.complete(0, &file), "a write of nothing fails");
        assert!(matches!(&write.state, State::Failed(e) if e.kind() == io::ErrorKind::WriteZero));
        let mut read = Transfer::new(write.segment, Direction::Read, 0, 8192);
        assert!(
            !read.complete(0, &file),
            "a read of nothing is the end of the file"
        );
        assert!(matches!(read.state, State::Done) && read.done == 0);
        read.state = State::InKernel;
        read.retries = SPILL_IO_RETRIES_MAX;
        assert!(!read.complete(-libc::EINTR, &file), "retries are bounded");
        assert!(matches!(&read.state, State::Failed(e) if e.raw_os_error() == Some(libc::EINTR)));
        read.state = State::InKernel;
        assert!(!read.complete(-libc::EIO, &file));
        assert!(matches!(&read.state, State::Failed(e) if e.raw_os_error() == Some(libc::EIO)));
        drop((read, file));
        manager.leak_check().unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
