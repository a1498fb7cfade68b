//! The W1 sort job behind `weir gen sort-records` and `weir sort`: W1 records from a file,
//! sorted by their 10-byte key within a memory budget, to a file.
//!
//! ```text
//!   input ──keys at evenly spaced positions──▶ T-1 splitters: T key ranges
//!   thread t (of T):
//!     input file ──read into a segment──▶ records ──range t?──push──▶ ExternalSorter
//!                                            └──count per range      ──spill──▶ disk
//!     SortedStream ──next──▶ segment ──write at the offset of range t──▶ output file
//!   (--verify: output order + checksum against the input's, both read back)
//! ```
//!
//! The ranges are disjoint and in key order, so the output is their concatenation: no
//! serial merge. Ranges divide (key, position in the input) pairs, so even equal keys are
//! shared evenly between the threads. Each thread reads the whole input (cheaper than
//! handing records between threads) and counts every range's records, so it knows its
//! offset in the output as soon as it has read the input.
//!
//! Every byte the job holds is in the budget: the read and write buffers are segments of
//! the same memory manager as the sorter.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use weir_kernel::memory::{MemoryManager, MemorySegment, Owner};
use weir_kernel::sort::{ExternalSorter, SortConfig, SortStats};
use weir_kernel::spill::{SpillConfig, SpillStore, open_store};

use crate::report::{KernelRun, Report, round};
use crate::workloads::w1_records::{self as w1, Checksum, KEY_SIZE, OrderCheck, RECORD_SIZE};
use weir::config::check_physical_memory;
use weir::error::{Result, WeirError};
use weir::output::{OutputFile, check_output};
use weir::size::format_size;

/// Segments each sorting thread keeps to read its input into; the output takes one more.
const IO_SEGMENTS_PER_THREAD: usize = 1;

/// Budget left outside each thread's sorter for its compressing writer's LZ4 buffer.
const LZ4_SEGMENTS_PER_THREAD: usize = 2;

/// What `weir sort` was asked to do.
#[derive(Debug, Clone)]
pub struct SortJob {
    /// The W1 input file.
    pub input: PathBuf,
    /// Where the sorted records go.
    pub output: PathBuf,
    /// The memory budget in bytes, every buffer included.
    pub memory_bytes: u64,
    /// Threads: each sorts one key range of the input in its share of the memory.
    pub threads: usize,
    /// Where spill files go (default: the output's directory).
    pub spill_dir: Option<PathBuf>,
    /// Check the output's order and checksum against the input's.
    pub verify: bool,
    /// LZ4-compress spilled blocks.
    pub compress: bool,
    /// Show progress on stderr (only when it is a terminal).
    pub progress: bool,
}

/// What a sort did: the fields of the docs/WORKLOADS.md JSON line.
#[derive(Debug, Clone)]
pub struct SortReport {
    /// Records sorted.
    pub records: u64,
    /// Wall time of the whole job.
    pub wall_s: f64,
    /// Reading the input and spilling runs: until the last thread had done so.
    pub sort_phase_s: f64,
    /// Merging and writing the output: the rest of `wall_s`.
    pub merge_phase_s: f64,
    /// The verification pass (not part of `wall_s`).
    pub verify_s: f64,
    /// The process's peak resident set, in bytes.
    pub peak_rss_bytes: u64,
    /// The sorter's counters.
    pub stats: SortStats,
    /// The spill backend that ran.
    pub io_backend: String,
    /// The spill store's own account of its backend and why it was chosen.
    pub io_description: String,
    /// Whether the output verified (`None` when not asked).
    pub valid: Option<bool>,
}

impl SortReport {
    /// The one-line JSON summary of docs/WORKLOADS.md.
    pub fn to_json(&self, job: &SortJob) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            run: KernelRun,
            sort_phase_s: f64,
            merge_phase_s: f64,
            records: u64,
            runs: u64,
            merge_passes: u64,
            fan_in: u64,
            io_backend: &'a str,
            valid: Option<bool>,
        }
        let line = Line {
            run: KernelRun::new(
                (job.threads, job.memory_bytes),
                (self.wall_s, self.verify_s),
                (self.peak_rss_bytes, self.stats.spilled_bytes),
            ),
            sort_phase_s: round(self.sort_phase_s, 3),
            merge_phase_s: round(self.merge_phase_s, 3),
            records: self.records,
            runs: (self.stats.runs + self.stats.merge_runs),
            merge_passes: self.stats.merge_passes,
            fan_in: self.stats.fan_in,
            io_backend: &self.io_backend,
            valid: self.valid,
        };
        Report::new("W1", line).to_json()
    }
}

/// Writes `count` W1 records for `seed` to `path`.
///
/// # Errors
///
/// A file that cannot be created or written.
pub fn generate(count: u64, seed: u64, path: &Path) -> Result<()> {
    let output = OutputFile::create("--out", path, &[])?;
    let temp = output.temp_path();
    let mut out = io::BufWriter::with_capacity(1 << 20, output.try_clone()?);
    let mut record = [0u8; RECORD_SIZE];
    for i in 0..count {
        w1::record(seed, i, &mut record);
        out.write_all(&record)
            .map_err(|e| WeirError::file("write", temp, e))?;
    }
    out.flush().map_err(|e| WeirError::file("write", temp, e))?;
    drop(out);
    output.commit()
}

/// Runs the sort job.
///
/// With T threads the records are split into T key ranges by splitters sampled from the
/// input (see `sample_splitters`), so that the threads' sorted outputs are disjoint and the
/// output is their concatenation. Each thread reads the whole input, sorts the records of
/// its range within its share of the memory, counts every range's records on the way, and
/// then writes its sorted range into the output at the offset of the ranges before it:
/// there is no serial merge, and no thread waits for another.
///
/// # Errors
///
/// [`WeirError::Usage`] for an input that is not W1 records (or changes while it is
/// read) or a budget below the minimum, [`WeirError::File`] for files that cannot be read
/// or written, [`WeirError::Kernel`] for spill failures.
///
/// # Panics
///
/// When a sorting thread panicked (a bug).
pub fn run_sort(job: &SortJob) -> Result<SortReport> {
    let started = Instant::now();
    // Every argument is checked before the output is touched: a refused run leaves an
    // existing output as it was.
    let (input, records) = open_input(&job.input)?;
    if !(1..=64).contains(&job.threads) {
        return Err(WeirError::Usage {
            message: format!("--threads {}: expected 1 to 64", job.threads),
        });
    }
    check_output("--output", &job.output, &[&job.input])?;
    let sort_segments = sort_memory(job.memory_bytes, job.threads, job.compress)?;
    let manager =
        MemoryManager::with_budget(usize::try_from(job.memory_bytes).unwrap_or(usize::MAX))?;
    let store = open_spill_store(job, &manager)?;
    let output = OutputFile::create("--output", &job.output, &[&job.input])?;
    let io_owner = manager.owner("sort/io");
    let splitters = sample_splitters(&input, &job.input, records, job.threads, &io_owner)?;
    drop(input);
    let sorters = Sorters {
        job,
        records,
        started,
        manager: &manager,
        segments: sort_segments,
        store: &store,
        config: SortConfig {
            compress: job.compress,
            ..SortConfig::default()
        },
        io_owner: &io_owner,
    };
    let (stats, sort_phase_s) = sorters.run(&splitters, &output)?;
    manager.leak_check()?;
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_bytes = weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes);
    let verify_started = Instant::now();
    let valid = if job.verify {
        let progress = Progress::new(job.progress, "verifying", 2 * records);
        let valid = verify_files(&job.input, output.temp_path(), records, &manager, &progress)?;
        progress.finish();
        Some(valid)
    } else {
        None
    };
    // Only a verified (or unverified, when not asked) output replaces the target.
    if valid != Some(false) {
        output.commit()?;
    }
    Ok(SortReport {
        records,
        wall_s,
        sort_phase_s,
        merge_phase_s: wall_s - sort_phase_s,
        verify_s: verify_started.elapsed().as_secs_f64(),
        peak_rss_bytes,
        stats,
        io_backend: store.backend().to_string(),
        io_description: store.describe(),
        valid,
    })
}

/// Bytes of one sampled key in the sample segment: the key, then the sample's index as a
/// big-endian `u16` (samples are taken in input order, so it orders as their positions).
const SAMPLE_ENTRY: usize = KEY_SIZE + 2;

/// A record's place in the order the key ranges divide: its key (as two big-endian
/// numbers, which order as the bytes do), then its position in the input. The position
/// breaks ties, so that even records with equal keys are shared evenly between ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Place {
    key_high: u64,
    key_low: u16,
    position: u64,
}

impl Place {
    /// The place of the record at `position` whose key is `key` (`KEY_SIZE` bytes).
    #[inline]
    fn new(key: &[u8], position: u64) -> Place {
        let mut high = [0; 8];
        high.copy_from_slice(&key[..8]);
        Place {
            key_high: u64::from_be_bytes(high),
            key_low: u16::from_be_bytes([key[8], key[9]]),
            position,
        }
    }

    /// The key range the record at this place is in: how many splitters it is at or past.
    #[inline]
    fn range(&self, splitters: &[Place]) -> usize {
        splitters.partition_point(|splitter| splitter <= self)
    }
}

/// The `threads - 1` splitters that divide the input's records into key ranges of about
/// equal size: the places of records at evenly spaced positions of the input (as many as
/// one segment holds), sorted, taken at the quantiles. Deterministic for a given input;
/// none for one thread or an empty input (one range then holds every record).
fn sample_splitters(
    input: &File,
    path: &Path,
    records: u64,
    threads: usize,
    owner: &Owner,
) -> Result<Vec<Place>> {
    use std::os::unix::fs::FileExt as _;
    if threads == 1 || records == 0 {
        return Ok(Vec::new());
    }
    let mut segment = owner.allocate_one()?;
    let capacity = (segment.size() / SAMPLE_ENTRY).min(usize::from(u16::MAX) + 1);
    let count = usize::try_from(records).unwrap_or(usize::MAX).min(capacity);
    let position = |i: usize| (i as u128 * u128::from(records) / count as u128) as u64;
    let (entries, _) = segment.as_mut_slice().as_chunks_mut::<SAMPLE_ENTRY>();
    let entries = &mut entries[..count];
    for (i, entry) in entries.iter_mut().enumerate() {
        let (key, index) = entry.split_at_mut(KEY_SIZE);
        input
            .read_exact_at(key, position(i) * RECORD_SIZE as u64)
            .map_err(|e| WeirError::file("read input", path, e))?;
        index.copy_from_slice(&(i as u16).to_be_bytes());
    }
    // Key, then big-endian sample index: byte order is the order of places.
    entries.sort_unstable();
    Ok((1..threads)
        .map(|j| {
            let entry = &entries[j * count / threads];
            let i = u16::from_be_bytes([entry[KEY_SIZE], entry[KEY_SIZE + 1]]);
            Place::new(&entry[..KEY_SIZE], position(usize::from(i)))
        })
        .collect())
}

/// Records a sorting thread sorts into ranges at a time (their indices are bytes).
const CLASSIFY_BATCH: usize = 256;
const _: () = assert!(CLASSIFY_BATCH <= u8::MAX as usize + 1);

/// What every sorting thread shares.
struct Sorters<'a> {
    job: &'a SortJob,
    records: u64,
    started: Instant,
    manager: &'a MemoryManager,
    segments: usize,
    store: &'a Arc<dyn SpillStore>,
    config: SortConfig,
    io_owner: &'a Owner,
}

/// What one thread did.
struct RangeDone {
    /// Its sorter's counters.
    stats: SortStats,
    /// When it had read the input and spilled its runs, since the job started.
    sorted_s: f64,
    /// The records of every range, as this thread counted them on its read of the input.
    counts: Vec<u64>,
}

impl Sorters<'_> {
    /// Sorts each key range on a thread of its own into the output; answers the sorters'
    /// counters together and the time at which the last thread finished its sort phase.
    fn run(&self, splitters: &[Place], output: &OutputFile) -> Result<(SortStats, f64)> {
        let progress = Progress::new(self.job.progress, "sorting", 2 * self.records);
        let done: Vec<Result<RangeDone>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.job.threads)
                .map(|t| {
                    let owner = self.manager.owner(format!("sort[{t}]"));
                    let progress = &progress;
                    scope.spawn(move || self.sort_range(t, splitters, &owner, output, progress))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("sort thread panicked"))
                .collect()
        });
        progress.finish();
        let done = done.into_iter().collect::<Result<Vec<_>>>()?;
        // Each thread placed its range by its own counts: they must agree, or the input
        // changed between the threads' reads and the output is not the sorted input.
        let counts = &done[0].counts;
        if counts.iter().sum::<u64>() != self.records || done.iter().any(|d| d.counts != *counts) {
            return Err(changed_while_read(&self.job.input));
        }
        let stats = done
            .iter()
            .map(|d| d.stats)
            .fold(SortStats::default(), add_stats);
        let sort_phase_s = done.iter().map(|d| d.sorted_s).fold(0.0, f64::max);
        Ok((stats, sort_phase_s))
    }

    /// Range `t`, on its own thread: reads the whole input, sorts the records of the range
    /// and counts those of every range, then writes the sorted range into the output at
    /// the offset of the records of the ranges before it.
    fn sort_range(
        &self,
        t: usize,
        splitters: &[Place],
        owner: &Owner,
        output: &OutputFile,
        progress: &Progress,
    ) -> Result<RangeDone> {
        let path = &self.job.input;
        let file = File::open(path).map_err(|e| WeirError::file("open input", path, e))?;
        let mut sorter =
            ExternalSorter::new(owner, self.segments, Arc::clone(self.store), self.config)?;
        // One count per thread: with fewer splitters (an empty input) the last stay 0.
        let mut counts = vec![0u64; self.job.threads];
        let mut position = 0;
        let read = read_record_batches(file, path, self.io_owner, |batch| {
            for batch in batch.chunks(CLASSIFY_BATCH * RECORD_SIZE) {
                // This range's records, picked without a branch on each: with random keys
                // such a branch goes the other way about every other record.
                let mut mine = [0u8; CLASSIFY_BATCH];
                let mut n = 0;
                for (i, record) in batch.chunks_exact(RECORD_SIZE).enumerate() {
                    let range = Place::new(&record[..KEY_SIZE], position).range(splitters);
                    position += 1;
                    counts[range] += 1;
                    mine[n] = i as u8;
                    n += usize::from(range == t);
                }
                for &i in &mine[..n] {
                    let at = usize::from(i) * RECORD_SIZE;
                    progress.tick();
                    sorter.push_keyed(&batch[at..at + RECORD_SIZE], KEY_SIZE)?;
                }
            }
            Ok(())
        })?;
        if read != self.records {
            return Err(changed_while_read(path));
        }
        let mut stream = sorter.finish()?;
        let sorted_s = self.started.elapsed().as_secs_f64();
        let offset = counts[..t].iter().sum::<u64>() * RECORD_SIZE as u64;
        let mut writer = SegmentWriter::at(
            output.try_clone()?,
            output.temp_path(),
            self.io_owner.allocate_one()?,
            offset,
        );
        while let Some((_, record)) = stream.next()? {
            progress.tick();
            writer.write(record)?;
        }
        writer.finish()?;
        // Dropped here, so that each thread deletes its own runs.
        let stats = stream.stats();
        drop(stream);
        Ok(RangeDone {
            stats,
            sorted_s,
            counts,
        })
    }
}

fn changed_while_read(path: &Path) -> WeirError {
    WeirError::Usage {
        message: format!(
            "{} changed while it was read: the records read differ from its size",
            path.display()
        ),
    }
}

fn add_stats(total: SortStats, stats: SortStats) -> SortStats {
    SortStats {
        records: total.records + stats.records,
        runs: total.runs + stats.runs,
        merge_runs: total.merge_runs + stats.merge_runs,
        spilled_bytes: total.spilled_bytes + stats.spilled_bytes,
        merge_passes: total.merge_passes.max(stats.merge_passes),
        fan_in: total.fan_in.max(stats.fan_in),
    }
}

/// The verification pass, after the sort and outside its timing: reads the input and the
/// output files back and checks that the output is in key order, has every record, and has
/// the input's order-independent checksum.
fn verify_files(
    input: &Path,
    output: &Path,
    records: u64,
    manager: &MemoryManager,
    progress: &Progress,
) -> Result<bool> {
    let owner = manager.owner("sort/verify");
    let open = |path: &Path| {
        File::open(path).map_err(|e| WeirError::file("open for verification", path, e))
    };
    let mut input_checksum = Checksum::default();
    read_records(open(input)?, input, &owner, |record| {
        progress.tick();
        input_checksum.add(record);
        Ok(())
    })?;
    let (mut order, mut output_checksum) = (OrderCheck::default(), Checksum::default());
    read_records(open(output)?, output, &owner, |record| {
        progress.tick();
        order.check(record);
        output_checksum.add(record);
        Ok(())
    })?;
    Ok(order.violations == 0
        && output_checksum == input_checksum
        && input_checksum.records == records)
}

fn open_input(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).map_err(|e| WeirError::file("open input", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| WeirError::file("read metadata of", path, e))?;
    if !meta.is_file() {
        // A directory, a device such as /dev/zero, a pipe: none has a size to split into
        // records, and a device may never end.
        return Err(WeirError::Usage {
            message: format!(
                "--input {}: is {}, not a regular file of W1 records",
                path.display(),
                if meta.is_dir() {
                    "a directory"
                } else {
                    "a device, pipe or socket"
                }
            ),
        });
    }
    let len = meta.len();
    if len % RECORD_SIZE as u64 != 0 {
        return Err(WeirError::Usage {
            message: format!(
                "{} is not a file of W1 records: its size {len} is not a multiple of {RECORD_SIZE}",
                path.display()
            ),
        });
    }
    Ok((file, len / RECORD_SIZE as u64))
}

/// The spill store; a compressing one charges its LZ4 buffers to the job's budget.
fn open_spill_store(job: &SortJob, manager: &MemoryManager) -> Result<Arc<dyn SpillStore>> {
    let dir = match &job.spill_dir {
        Some(dir) => dir.clone(),
        None => match job.output.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        },
    };
    let mut config = SpillConfig::new(dir);
    // The output's directory, when no spill directory was named, is accepted wherever it
    // is; a named one is refused on a filesystem in memory.
    config.allow_memory_filesystem = job.spill_dir.is_none();
    config.scratch = job.compress.then(|| manager.owner("sort/lz4"));
    Ok(open_store(&config)?)
}

/// Segments for each thread's sorter: the budget less the I/O buffers, or an error
/// naming the exact budget asked for and the minimum (and the machine's memory when the
/// budget exceeds it).
fn sort_memory(memory_bytes: u64, threads: usize, compress: bool) -> Result<usize> {
    let segment_size = weir_kernel::constants::SEGMENT_SIZE_DEFAULT;
    let segments = usize::try_from(memory_bytes / segment_size as u64).unwrap_or(usize::MAX);
    // A compressing run writer holds an LZ4 output buffer of about 1.1 segments; each
    // thread has one writer open at a time.
    let lz4 = if compress {
        LZ4_SEGMENTS_PER_THREAD * threads
    } else {
        0
    };
    let io = IO_SEGMENTS_PER_THREAD * threads + 1 + lz4;
    let minimum = SortConfig::default().memory_segments_min() * threads + io;
    if segments < minimum {
        let minimum_bytes = (minimum * segment_size) as u64;
        return Err(WeirError::Usage {
            message: format!(
                "--memory {memory_bytes} bytes is below the minimum of {minimum_bytes} bytes \
                 ({}) for sorting with {threads} thread(s)",
                format_size(minimum_bytes)
            ),
        });
    }
    check_physical_memory("--memory", memory_bytes)?;
    Ok((segments - io) / threads)
}

/// Reads W1 records from `file` through one segment, calling `push` for each; returns how
/// many there were.
fn read_records(
    file: impl Read,
    path: &Path,
    owner: &Owner,
    mut push: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    read_record_batches(file, path, owner, |batch| {
        batch.chunks_exact(RECORD_SIZE).try_for_each(&mut push)
    })
}

/// Reads W1 records from `file` through one segment, calling `push` with whole records,
/// several at a time; returns how many there were.
fn read_record_batches(
    mut file: impl Read,
    path: &Path,
    owner: &Owner,
    mut push: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let mut segment = owner.allocate_one()?;
    let mut count = 0;
    let mut carry = [0u8; RECORD_SIZE];
    let mut carried = 0;
    loop {
        let n = read_full(&mut file, segment.as_mut_slice())
            .map_err(|e| WeirError::file("read input", path, e))?;
        if n == 0 {
            break;
        }
        let mut bytes = &segment.as_slice()[..n];
        if carried > 0 {
            let take = (RECORD_SIZE - carried).min(bytes.len());
            carry[carried..carried + take].copy_from_slice(&bytes[..take]);
            carried += take;
            bytes = &bytes[take..];
            if carried < RECORD_SIZE {
                continue;
            }
            count += 1;
            push(&carry)?;
        }
        let whole = bytes.len() - bytes.len() % RECORD_SIZE;
        if whole > 0 {
            count += (whole / RECORD_SIZE) as u64;
            push(&bytes[..whole])?;
        }
        let rest = &bytes[whole..];
        carry[..rest.len()].copy_from_slice(rest);
        carried = rest.len();
    }
    if carried != 0 {
        return Err(WeirError::Usage {
            message: format!(
                "{} changed while it was read: it ends inside a record",
                path.display()
            ),
        });
    }
    Ok(count)
}

/// Reads until `buffer` is full or the file ends; answers the bytes read.
///
/// # Errors
///
/// The read's error (an interrupted read is retried).
pub(crate) fn read_full(file: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Bytes a positional [`SegmentWriter`] writes between two starts of writeback.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// Buffers output in one segment, written to the file whenever it fills: at the file's
/// cursor, or from a given offset on with positional writes (for writers that share a
/// file; these also start the disk writes of every [`WRITEBACK_BYTES`] they wrote, so
/// that the output's `fsync` at commit has less left to wait for).
pub(crate) struct SegmentWriter<'p> {
    file: File,
    path: &'p Path,
    segment: MemorySegment,
    filled: usize,
    offset: Option<u64>,
    // Where the bytes not yet sent to writeback start.
    written_back: u64,
}

impl<'p> SegmentWriter<'p> {
    pub(crate) fn new(file: File, path: &'p Path, segment: MemorySegment) -> SegmentWriter<'p> {
        SegmentWriter {
            file,
            path,
            segment,
            filled: 0,
            offset: None,
            written_back: 0,
        }
    }

    /// A writer whose bytes go to `file` from `offset` on, whatever its cursor.
    pub(crate) fn at(
        file: File,
        path: &'p Path,
        segment: MemorySegment,
        offset: u64,
    ) -> SegmentWriter<'p> {
        SegmentWriter {
            offset: Some(offset),
            written_back: offset,
            ..SegmentWriter::new(file, path, segment)
        }
    }

    #[inline]
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(self.segment.size() - self.filled);
            self.segment.put_bytes(self.filled, &bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == self.segment.size() {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let bytes = &self.segment.as_slice()[..self.filled];
        match &mut self.offset {
            Some(offset) => {
                std::os::unix::fs::FileExt::write_all_at(&self.file, bytes, *offset)
                    .map_err(|e| WeirError::file("write output", self.path, e))?;
                *offset += bytes.len() as u64;
                if *offset - self.written_back >= WRITEBACK_BYTES {
                    // Best effort: commit's fsync writes whatever this did not.
                    let _ = weir_kernel::sys::start_writeback(
                        &self.file,
                        self.written_back,
                        *offset - self.written_back,
                    );
                    self.written_back = *offset;
                }
            }
            None => self
                .file
                .write_all(bytes)
                .map_err(|e| WeirError::file("write output", self.path, e))?,
        }
        self.filled = 0;
        Ok(())
    }

    /// Writes what is buffered. No fsync: like the tools it is compared with, the job ends
    /// when the output is in the page cache.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

/// A percentage on stderr for one phase (`label`), redrawn when it changes, only when
/// stderr is a terminal. Shared by the sorting threads.
struct Progress {
    enabled: bool,
    label: &'static str,
    total: u64,
    done: AtomicU64,
}

impl Progress {
    fn new(wanted: bool, label: &'static str, total: u64) -> Progress {
        Progress {
            enabled: wanted && io::stderr().is_terminal() && total > 0,
            label,
            total,
            done: AtomicU64::new(0),
        }
    }

    #[inline]
    fn tick(&self) {
        if !self.enabled {
            return;
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if done * 100 / self.total != (done - 1) * 100 / self.total {
            eprint!(
                "\r{}: {:3}% of {} records",
                self.label,
                done * 100 / self.total,
                self.total
            );
        }
    }

    fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}
