//! `KeyedState`: the keyed state of a stream operator, one value per key, in segments;
//! whole partitions spill to disk and their work waits until they come back.
//!
//! ```text
//!   get / put / remove(key) ──▶ Table (the aggregation's: buckets + record area)
//!        full ──▶ the largest resident partitions (never the key's own while another
//!                 is resident) ──▶ one run each [key_len << 1][value_len][key][value];
//!                 their partitions are now spilled
//!   a record for a spilled partition ──▶ defer: appended to the one log
//!        [partition][kind][u32 len][bytes] in segments of the deferral share, in
//!        arrival order
//!   restore(p) ──▶ p's run back into the table (others spill to make room), then p's
//!                  entries of the log in order: records handed back to the caller, puts
//!                  and removes applied; the entries marked done
//!   drain ──▶ restore every partition with entries; the log is empty again
//! ```
//!
//! An operator that keeps per-key state (Flink's keyed state, with a heap or RocksDB
//! backend) cannot finish a spilled key's work after its input ends, the way a join or
//! an aggregation does: its results are due while the stream runs. So a spilled
//! partition lags behind instead: its records wait, in order, in a log in memory, and
//! the caller brings the partition back ([`KeyedState::restore`]) when a watermark needs
//! the partition's timers, every partition ([`KeyedState::drain`]) when the log fills its
//! share or at the end, and replays the records against the state as it was. Each key's
//! records are still seen in arrival order, so results are the same as with all state in
//! memory; only their time changes. The log is one for all partitions (a log per
//! partition would take a segment each, however few its records), so restoring one
//! partition scans the whole log; a drain scans it once per partition with entries.
//!
//! Memory is split once: a run writer and a run reader, the deferral share
//! ([`StateConfig::deferral_percent`] of the rest), and the table. A partition larger
//! than the whole table cannot come back: [`KeyedState::restore`] then fails with
//! [`KernelError::BudgetExceeded`], naming the partition (with 64 partitions that takes
//! state about 64 times the table, or one key as large as it).
//!
//! Invariants:
//! 1. A partition is resident (its keys, if any, in the table; no live entry in the log)
//!    or spilled (none of its keys in the table; its state in at most one run, what came
//!    after in the log's live entries).
//! 2. `log_live[p]` counts the bytes of `p`'s live entries; the log is emptied (its
//!    segments back in the deferral share) when none is left.

use std::sync::Arc;

use super::config::validate_spilling;
use super::hasher::hash_bytes;
use super::table::{Slot, Table};
use crate::constants::{HASH_PARTITIONS_MAX, SPILL_READ_AHEAD_DEFAULT, SPILL_WRITE_BEHIND_DEFAULT};
use crate::error::{KernelError, Result};
use crate::memory::{MemorySegment, Owner, Reservation};
use crate::spill::{RunInput, RunOptions, RunOutput, SpillRun, SpillStore};

/// Segments the table needs at least: a bucket segment and two of records.
const TABLE_SEGMENTS_MIN: usize = 3;
/// Segments the deferral share has at least.
const DEFERRAL_SEGMENTS_MIN: usize = 2;

/// A deferred entry: a record to hand back to the caller.
const KIND_RECORD: u8 = 0;
/// A deferred entry: a key's new value.
const KIND_PUT: u8 = 1;
/// A deferred entry: a key removed.
const KIND_REMOVE: u8 = 2;

/// How a [`KeyedState`] partitions, spills and defers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateConfig {
    /// Partitions (spilled and restored whole): a power of two from 2 to 64.
    pub partitions: usize,
    /// The hash seed.
    pub seed: u64,
    /// Percent of the memory (after the run writer and reader) that holds the logs of
    /// spilled partitions: 1 to 50.
    pub deferral_percent: usize,
    /// LZ4-compress spilled blocks.
    pub compress: bool,
    /// Blocks a run reader reads ahead (at least 1).
    pub read_ahead: usize,
    /// Blocks a run writer keeps in flight (at least 1).
    pub write_behind: usize,
}

impl Default for StateConfig {
    fn default() -> StateConfig {
        StateConfig {
            partitions: HASH_PARTITIONS_MAX,
            seed: 0x5745_4952_5354_4154,
            deferral_percent: 25,
            compress: false,
            read_ahead: SPILL_READ_AHEAD_DEFAULT,
            write_behind: SPILL_WRITE_BEHIND_DEFAULT,
        }
    }
}

impl StateConfig {
    fn io_segments(&self) -> usize {
        self.read_ahead + 1 + self.write_behind + 1
    }

    /// The smallest memory, in segments, a keyed state with this configuration accepts.
    pub fn memory_segments_min(&self) -> usize {
        self.io_segments() + DEFERRAL_SEGMENTS_MIN + TABLE_SEGMENTS_MIN
    }

    fn validate(&self) -> Result<()> {
        if !(1..=50).contains(&self.deferral_percent) {
            return Err(KernelError::InvalidConfig {
                field: "deferral_percent",
                value: self.deferral_percent.to_string(),
                expected: "1 to 50",
            });
        }
        validate_spilling(self.partitions, self.read_ahead, self.write_behind)
    }
}

/// What a keyed state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateStats {
    /// Keys in memory now.
    pub keys: u64,
    /// Bytes of keys and values in memory now.
    pub bytes: u64,
    /// Bytes written to disk so far.
    pub spilled_bytes: u64,
    /// Partitions written out so far (a partition may go out more than once).
    pub partition_spills: u64,
    /// Partitions brought back so far.
    pub restores: u64,
    /// Records deferred so far.
    pub deferred_records: u64,
}

/// A key's state as [`KeyedState::get`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The key's value.
    Value(&'a [u8]),
    /// The key has no value.
    Absent,
    /// The key's partition is spilled: defer the record ([`KeyedState::defer`]).
    Spilled,
}

/// The deferred entries of spilled partitions, in segments, in arrival order.
#[derive(Debug, Default)]
struct Log {
    segments: Vec<MemorySegment>,
    len: u64,
}

/// An entry's partition byte once it has been replayed.
const DONE: u8 = 0xFF;

impl Log {
    /// Appends `parts` as one entry if the log's room and `memory` together hold it;
    /// `false` (nothing written) when they do not.
    fn append(&mut self, memory: &mut Reservation, parts: &[&[u8]]) -> Result<bool> {
        let size = memory.owner().segment_size() as u64;
        let needed: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let room = self.segments.len() as u64 * size - self.len;
        if needed > room + memory.segments() as u64 * size {
            return Ok(false);
        }
        for mut bytes in parts.iter().copied() {
            while !bytes.is_empty() {
                if self.len == self.segments.len() as u64 * size {
                    self.segments.push(memory.allocate_one()?);
                }
                let offset = (self.len % size) as usize;
                let n = bytes.len().min(size as usize - offset);
                let segment = self.segments.last_mut().expect("a segment with room");
                segment.put_bytes(offset, &bytes[..n]);
                self.len += n as u64;
                bytes = &bytes[n..];
            }
        }
        Ok(true)
    }

    /// Copies the log's bytes at `position` into `target`.
    fn read_at(&self, mut position: u64, target: &mut [u8]) {
        let size = self.segments[0].size() as u64;
        let mut done = 0;
        while done < target.len() {
            let offset = (position % size) as usize;
            let n = (target.len() - done).min(size as usize - offset);
            self.segments[(position / size) as usize]
                .get_bytes(offset, &mut target[done..done + n]);
            done += n;
            position += n as u64;
        }
    }

    fn u32_at(&self, position: u64) -> usize {
        let mut bytes = [0; 4];
        self.read_at(position, &mut bytes);
        u32::from_le_bytes(bytes) as usize
    }

    fn mark_done(&mut self, position: u64) {
        let size = self.segments[0].size() as u64;
        self.segments[(position / size) as usize].put_u8((position % size) as usize, DONE);
    }
}

/// Reads a run's next entry into `record` (key, then value): the key's length, or
/// `None` at the run's end.
fn next_entry(input: &mut RunInput, run: &SpillRun, record: &mut Vec<u8>) -> Result<Option<usize>> {
    if input.is_at_end()? {
        return Ok(None);
    }
    let key_word = input.read_varint()?;
    let value_len = input.read_varint()?;
    let key_len = key_word >> 1;
    let left = run.payload_bytes() - input.bytes_read();
    if key_word & 1 == 1 || key_len.saturating_add(value_len) > left {
        return Err(KernelError::Malformed {
            position: input.bytes_read(),
            what: "a keyed state record marked dead, or its lengths do not fit the run",
        });
    }
    record.clear();
    record.resize((key_len + value_len) as usize, 0);
    input.read_exact(record)?;
    Ok(Some(key_len as usize))
}

/// A log entry's length field.
fn len_bytes(len: usize) -> Result<[u8; 4]> {
    u32::try_from(len)
        .map(u32::to_le_bytes)
        .map_err(|_| KernelError::InvalidConfig {
            field: "keyed state record",
            value: format!("{len} bytes"),
            expected: "under 4 GiB",
        })
}

/// Where a partition's state is.
#[derive(Debug)]
enum Partition {
    Resident,
    Spilled { run: Option<SpillRun> },
}

/// Per-key state in segments. See the module documentation.
#[derive(Debug)]
pub struct KeyedState {
    store: Arc<dyn SpillStore>,
    config: StateConfig,
    table: Table,
    io: Reservation,
    deferral: Reservation,
    partitions: Vec<Partition>,
    log: Log,
    log_live: Vec<u64>,
    stats: StateStats,
    value: Vec<u8>,
    /// The partition whose log is being replayed (never chosen to spill meanwhile).
    replaying: Option<usize>,
}

impl KeyedState {
    /// A keyed state that takes `memory_segments` segments of budget from `owner` now and
    /// spills to `store`.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] for a configuration out of range or fewer segments
    /// than [`StateConfig::memory_segments_min`]; [`KernelError::BudgetExceeded`] when
    /// the budget cannot grant the memory.
    pub fn new(
        owner: &Owner,
        memory_segments: usize,
        store: Arc<dyn SpillStore>,
        config: StateConfig,
    ) -> Result<KeyedState> {
        config.validate()?;
        let min = config.memory_segments_min();
        if memory_segments < min {
            return Err(KernelError::InvalidConfig {
                field: "keyed state memory",
                value: format!("{memory_segments} segments, below the minimum of {min}"),
                expected: "a run writer, a run reader, a deferral share and a table",
            });
        }
        let mut memory = owner.reserve(memory_segments)?;
        let io = memory.split(config.io_segments());
        let rest = memory.segments();
        let deferral_segments = (rest * config.deferral_percent / 100)
            .clamp(DEFERRAL_SEGMENTS_MIN, rest - TABLE_SEGMENTS_MIN);
        let deferral = memory.split(deferral_segments);
        let table = Table::new(memory, config.seed, config.partitions.trailing_zeros())?;
        Ok(KeyedState {
            store,
            config,
            table,
            io,
            deferral,
            partitions: (0..config.partitions)
                .map(|_| Partition::Resident)
                .collect(),
            log: Log::default(),
            log_live: vec![0; config.partitions],
            stats: StateStats::default(),
            value: Vec::new(),
            replaying: None,
        })
    }

    /// What the state did so far.
    pub fn stats(&self) -> StateStats {
        StateStats {
            keys: self.table.groups() as u64,
            bytes: self.table.live_bytes(),
            ..self.stats
        }
    }

    /// The hash of `key` that the other methods take.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash_bytes(self.table.seed(), key)
    }

    /// The partition of a key whose hash is `hash`.
    #[inline]
    pub fn partition_of(&self, hash: u64) -> usize {
        self.table.partition_of(hash)
    }

    /// Whether `partition`'s state is in memory.
    #[inline]
    pub fn is_resident(&self, partition: usize) -> bool {
        matches!(self.partitions[partition], Partition::Resident)
    }

    /// The spilled partitions.
    pub fn spilled(&self) -> Vec<usize> {
        (0..self.partitions.len())
            .filter(|&p| !self.is_resident(p))
            .collect()
    }

    /// Bytes of deferred entries waiting in the log.
    pub fn deferred_bytes(&self) -> u64 {
        self.log_live.iter().sum()
    }

    /// Bytes of `partition`'s deferred entries waiting in the log.
    pub fn deferred_bytes_of(&self, partition: usize) -> u64 {
        self.log_live[partition]
    }

    /// The value of `key` (whose hash is `hash`), copied into a buffer of the state's
    /// when it crosses a segment boundary.
    pub fn get(&mut self, hash: u64, key: &[u8]) -> Lookup<'_> {
        if !self.is_resident(self.partition_of(hash)) {
            return Lookup::Spilled;
        }
        match self.table.find(hash, key) {
            Slot::Found { address, .. } => {
                let (_, value) = self.table.record(address, &mut self.value);
                Lookup::Value(value)
            }
            Slot::Vacant { .. } => Lookup::Absent,
        }
    }

    /// Sets the value of `key` (whose hash is `hash`): in the table, making room by
    /// spilling other partitions; when the key's own partition fills the table alone, it
    /// spills too and the value goes to its log.
    ///
    /// # Errors
    ///
    /// A memory or spill error; [`KernelError::BudgetExceeded`] when the value does not fit
    /// the table nor the deferral share, or when the key's partition fills the table
    /// while its log is being replayed.
    ///
    /// # Panics
    ///
    /// During a replay ([`restore`](Self::restore)), for a key of another spilled
    /// partition.
    pub fn put(&mut self, hash: u64, key: &[u8], value: &[u8]) -> Result<()> {
        let partition = self.partition_of(hash);
        if self.is_resident(partition) && self.put_resident(hash, key, value)? {
            return Ok(());
        }
        if self.replaying == Some(partition) {
            return Err(self.too_large(partition));
        }
        if self.is_resident(partition) {
            self.spill(&[partition])?;
        }
        self.log(partition, KIND_PUT, key, value)
    }

    /// Removes the value of `key` (whose hash is `hash`), if it has one.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), when the key's partition is spilled.
    ///
    /// # Panics
    ///
    /// As [`put`](Self::put).
    pub fn remove(&mut self, hash: u64, key: &[u8]) -> Result<()> {
        let partition = self.partition_of(hash);
        if !self.is_resident(partition) {
            return self.log(partition, KIND_REMOVE, key, &[]);
        }
        if matches!(self.table.find(hash, key), Slot::Found { .. }) {
            self.table.remove(hash, key);
        }
        Ok(())
    }

    /// Appends `record` (for a key whose hash is `hash`, of a spilled partition) to the
    /// log; `false`, nothing appended, when the deferral share is full: bring the
    /// partitions back ([`drain`](Self::drain)) and try again.
    ///
    /// # Errors
    ///
    /// A memory error other than the share running out; a record of 4 GiB or more.
    ///
    /// # Panics
    ///
    /// When the partition is resident, or during a replay.
    pub fn defer(&mut self, hash: u64, record: &[u8]) -> Result<bool> {
        let partition = self.partition_of(hash);
        assert!(
            !self.is_resident(partition) && self.replaying.is_none(),
            "a record deferred for resident partition {partition}, or during a replay"
        );
        let head = [partition as u8, KIND_RECORD];
        let len = len_bytes(record.len())?;
        let appended = self
            .log
            .append(&mut self.deferral, &[&head, &len, record])?;
        if appended {
            self.log_live[partition] += (head.len() + len.len() + record.len()) as u64;
            self.stats.deferred_records += 1;
        }
        Ok(appended)
    }

    /// Brings back every spilled partition with deferred entries ([`restore`](Self::restore)
    /// each, with `replay`): the log is empty after.
    ///
    /// # Errors
    ///
    /// As [`restore`](Self::restore).
    pub fn drain(
        &mut self,
        mut replay: impl FnMut(&mut KeyedState, &[u8]) -> Result<()>,
    ) -> Result<()> {
        while let Some(partition) = (0..self.log_live.len()).find(|&p| self.log_live[p] > 0) {
            self.restore(partition, &mut replay)?;
        }
        Ok(())
    }

    /// Brings spilled `partition` back: its state into the table (spilling others to
    /// make room), then its log in order: each deferred record to `replay`, which may
    /// get, put and remove keys of the partition (now resident), each put or remove
    /// applied.
    ///
    /// # Errors
    ///
    /// [`KernelError::BudgetExceeded`] when the partition alone does not fit the table; a
    /// spill or memory error; [`KernelError::Malformed`] for a corrupt run; the first
    /// error of `replay`. The state must be dropped after an error.
    ///
    /// # Panics
    ///
    /// When the partition is resident.
    pub fn restore(
        &mut self,
        partition: usize,
        mut replay: impl FnMut(&mut KeyedState, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let Partition::Spilled { run } =
            std::mem::replace(&mut self.partitions[partition], Partition::Resident)
        else {
            panic!("restore of resident partition {partition}");
        };
        if let Some(run) = run {
            self.read_run(partition, &run)?;
        }
        self.stats.restores += 1;
        if self.log_live[partition] > 0 {
            self.replay_log(partition, &mut replay)?;
        }
        Ok(())
    }

    /// Replays `partition`'s live entries of the log (the partition now resident).
    fn replay_log(
        &mut self,
        partition: usize,
        replay: &mut impl FnMut(&mut KeyedState, &[u8]) -> Result<()>,
    ) -> Result<()> {
        // The log is out of `self` while `replay` runs; nothing is appended meanwhile:
        // the partition is resident and is never chosen to spill (its filling the table
        // alone is an error), and a write to another spilled partition panics in `log`.
        let mut log = std::mem::take(&mut self.log);
        self.replaying = Some(partition);
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let mut position = 0;
        let mut result = Ok(());
        while position < log.len && self.log_live[partition] > 0 {
            let mut head = [0; 2];
            log.read_at(position, &mut head);
            let start = position;
            let first = log.u32_at(position + 2);
            position += 6;
            let second = if head[1] == KIND_PUT {
                let len = log.u32_at(position + first as u64);
                Some(len)
            } else {
                None
            };
            let end = position + first as u64 + second.map_or(0, |len| 4 + len as u64);
            if head[0] != partition as u8 {
                position = end;
                continue;
            }
            key.resize(first, 0);
            log.read_at(position, &mut key);
            if let Some(len) = second {
                value.resize(len, 0);
                log.read_at(position + first as u64 + 4, &mut value);
            }
            log.mark_done(start);
            self.log_live[partition] -= end - start;
            position = end;
            result = match head[1] {
                KIND_RECORD => replay(self, &key),
                KIND_PUT => {
                    let hash = self.hash(&key);
                    self.put(hash, &key, &value)
                }
                _ => {
                    let hash = self.hash(&key);
                    self.remove(hash, &key)
                }
            };
            if result.is_ok() && !self.is_resident(partition) {
                result = Err(self.too_large(partition));
            }
            if result.is_err() {
                break;
            }
        }
        self.replaying = None;
        if self.deferred_bytes() == 0 {
            for segment in log.segments.drain(..) {
                self.deferral.give_back(segment);
            }
            log.len = 0;
        }
        self.log = log;
        result
    }

    /// Hands every key's value to `out`, the state unchanged: the resident partitions'
    /// from the table, then each spilled partition's from its run (all of one partition
    /// together). Putting them in that order into a fresh state of the same memory
    /// rebuilds this one: the resident ones fit together, and each spilled partition
    /// comes in whole, as a [`restore`](Self::restore) brings it.
    ///
    /// # Errors
    ///
    /// [`KernelError::InvalidConfig`] while records wait in the log (bring them back
    /// first: [`drain`](Self::drain)); a spill or memory error;
    /// [`KernelError::Malformed`] for a corrupt run (each as `E`); the first error of
    /// `out`.
    pub fn snapshot<E: From<KernelError>>(
        &mut self,
        mut out: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        if self.deferred_bytes() > 0 {
            return Err(E::from(KernelError::InvalidConfig {
                field: "keyed state snapshot",
                value: format!("{} bytes deferred", self.deferred_bytes()),
                expected: "no deferred entry (drain first)",
            }));
        }
        let mut scratch = Vec::new();
        let mut address = 0;
        while let Some((live, next)) = self.table.live_record(address) {
            let (key, value) = self.table.record(live, &mut scratch);
            out(key, value)?;
            address = next;
        }
        for partition in 0..self.partitions.len() {
            let Partition::Spilled { run: Some(run) } = &self.partitions[partition] else {
                continue;
            };
            let buffers = self.io.allocate(self.config.read_ahead + 1)?;
            let mut input = RunInput::new(self.store.open_run(run, buffers)?);
            let mut record = Vec::new();
            let mut result = Ok(());
            while result.is_ok() {
                let Some(key_len) = next_entry(&mut input, run, &mut record)? else {
                    break;
                };
                let (key, value) = record.split_at(key_len);
                result = out(key, value);
            }
            for segment in input.into_segments() {
                self.io.give_back(segment);
            }
            result?;
        }
        Ok(())
    }

    /// Gives every segment back to the budget and deletes every run.
    pub fn into_memory(self) -> Reservation {
        let KeyedState {
            table,
            mut io,
            mut deferral,
            log,
            ..
        } = self;
        for segment in log.segments {
            deferral.give_back(segment);
        }
        let mut memory = table.into_memory();
        io.absorb(deferral);
        memory.absorb(io);
        memory
    }

    /// Puts `value` in the table, spilling other partitions than the key's for room;
    /// `false` when there are no others left.
    fn put_resident(&mut self, hash: u64, key: &[u8], value: &[u8]) -> Result<bool> {
        let own = self.partition_of(hash);
        let mut compacted = false;
        loop {
            let stored = match self.table.find(hash, key) {
                Slot::Found { .. } => self.table.replace(hash, key, value)?,
                Slot::Vacant { index } => self.table.insert(index, hash, key, value)?,
            };
            if stored {
                return Ok(true);
            }
            let victims = self.victims(own);
            if victims.is_empty() {
                // Below the table's own threshold for compacting, but cheaper than
                // spilling the key's partition: once per put, when the garbage would hold
                // the record and is at least 1/64 of the area (so a compaction's cost is
                // paid back by 1/64 of the area each time).
                let garbage = self.table.garbage_bytes();
                let needed = (key.len() + value.len()) as u64;
                if compacted || garbage < needed || garbage * 64 < self.table.record_bytes() {
                    return Ok(false);
                }
                self.table.rebuild();
                compacted = true;
                continue;
            }
            self.spill(&victims)?;
        }
    }

    /// The resident partitions other than `own` to spill: the largest, until together
    /// they hold at least half of the table's live bytes.
    fn victims(&self, own: usize) -> Vec<usize> {
        let mut order: Vec<(usize, u64)> = (0..self.partitions.len())
            .filter(|&p| p != own && Some(p) != self.replaying && self.is_resident(p))
            .map(|p| (p, self.table.partition_live_bytes(p)))
            .filter(|&(_, bytes)| bytes > 0)
            .collect();
        order.sort_by_key(|&(_, bytes)| std::cmp::Reverse(bytes));
        let live = self.table.live_bytes();
        let mut chosen = 0;
        let mut victims = Vec::new();
        for (p, bytes) in order {
            if !victims.is_empty() && chosen * 2 >= live {
                break;
            }
            chosen += bytes;
            victims.push(p);
        }
        victims
    }

    /// Writes `partitions` (resident) out, a run each, and marks them spilled.
    fn spill(&mut self, partitions: &[usize]) -> Result<()> {
        let ranges = self.table.scatter();
        for &partition in partitions {
            let range = ranges[partition].clone();
            let run = if range.is_empty() {
                None
            } else {
                let writer = self.store.create_run(RunOptions {
                    compress: self.config.compress,
                    write_behind: self.config.write_behind,
                })?;
                let segments = self.io.allocate(self.config.write_behind + 1)?;
                let mut output = RunOutput::new(writer, segments);
                for index in range.clone() {
                    let address = self
                        .table
                        .entry_address(index)
                        .expect("a scattered range holds keys");
                    self.table.write_record(address, &mut output)?;
                }
                let (run, segments) = output.finish()?;
                for segment in segments {
                    self.io.give_back(segment);
                }
                self.stats.spilled_bytes += run.disk_bytes();
                Some(run)
            };
            self.table.drop_partition(partition, range);
            self.partitions[partition] = Partition::Spilled { run };
            self.stats.partition_spills += 1;
        }
        self.table.rebuild();
        Ok(())
    }

    /// Reads `partition`'s run back into the table.
    fn read_run(&mut self, partition: usize, run: &SpillRun) -> Result<()> {
        let buffers = self.io.allocate(self.config.read_ahead + 1)?;
        let mut input = RunInput::new(self.store.open_run(run, buffers)?);
        let mut record = Vec::new();
        while let Some(key_len) = next_entry(&mut input, run, &mut record)? {
            let (key, value) = record.split_at(key_len);
            let hash = self.hash(key);
            if self.partition_of(hash) != partition {
                return Err(KernelError::Malformed {
                    position: input.bytes_read(),
                    what: "a keyed state record of another partition",
                });
            }
            if !self.put_resident(hash, key, value)? {
                return Err(self.too_large(partition));
            }
        }
        for segment in input.into_segments() {
            self.io.give_back(segment);
        }
        Ok(())
    }

    /// Appends a put or remove of `key` to the log, for spilled `partition`.
    fn log(&mut self, partition: usize, kind: u8, key: &[u8], value: &[u8]) -> Result<()> {
        assert!(
            self.replaying.is_none(),
            "a write to spilled keyed state partition {partition} while partition {} replays",
            self.replaying.unwrap_or_default()
        );
        let head = [partition as u8, kind];
        let key_len = len_bytes(key.len())?;
        let value_len = len_bytes(value.len())?;
        let parts: [&[u8]; 5] = if kind == KIND_PUT {
            [&head, &key_len, key, &value_len, value]
        } else {
            [&head, &key_len, key, &[], &[]]
        };
        if self.log.append(&mut self.deferral, &parts)? {
            self.log_live[partition] += parts.iter().map(|p| p.len() as u64).sum::<u64>();
            return Ok(());
        }
        Err(KernelError::BudgetExceeded {
            consumer: format!(
                "the log of spilled keyed state partition {partition} ({})",
                self.deferral.consumer()
            ),
            requested_bytes: key.len() + value.len(),
            available_bytes: self.deferral.size_bytes(),
            segment_size: self.deferral.owner().segment_size(),
        })
    }

    /// The error of a partition that does not fit the table alone.
    fn too_large(&self, partition: usize) -> KernelError {
        KernelError::BudgetExceeded {
            consumer: format!(
                "keyed state partition {partition} of {} (one partition of {} must fit \
                 the table; give the operator more memory)",
                self.deferral.consumer(),
                self.partitions.len()
            ),
            requested_bytes: self.table.live_bytes() as usize,
            available_bytes: self.table.memory_bytes(),
            segment_size: self.deferral.owner().segment_size(),
        }
    }
}
