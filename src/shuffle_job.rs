//! W4 in one process: a keyed shuffle from source tasks to sink tasks over local channels
//! (WORKLOADS.md), with the network stack's record writers, input gates and record readers.
//!
//! ```text
//!   source 0 ──RecordWriter(hash by key)──▶ partition 0 ─┬─ subpartition 0 ──┐
//!                                                        └─ subpartition 1 ──┼─┐
//!   source 1 ──RecordWriter(hash by key)──▶ partition 1 ─┬─ subpartition 0 ──┘ │
//!                                                        └─ subpartition 1 ────┤
//!   sink 0: InputGate(local channels from subpartition 0 of each source) ◀─────┘ …
//! ```
//!
//! Record `i` is its key (splitmix64 of the seed and `i`), its value `i`, and for records
//! larger than 16 bytes a constant filler. Each sink checks that every key it receives
//! belongs to its key groups, and every side sums an order-independent checksum (a
//! word-wise hash per record): the run is valid when the sinks received as many records as
//! were sent with the same checksum, every key on its channel, and every segment came home.
//! One thread per task; two cores run four tasks, so the figures include the switching.

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use weir_kernel::constants::SEGMENT_SIZE_DEFAULT;
use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::partition::{HashSelector, channel_for_key_group, key_group};
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, LocalInputChannel, NetworkBufferPool,
    RecordReader, RecordWriter, ResultPartition, SubpartitionIndex,
};

use crate::error::{Result, WeirError};

/// The smallest record: a u64 key and a u64 value.
pub const RECORD_BYTES_MIN: usize = 16;

/// Key groups of the hash exchange (the maximum parallelism).
const KEY_GROUPS: u32 = 128;

/// What to shuffle, and how.
#[derive(Debug, Clone)]
pub struct ShuffleJob {
    /// Records in total, over all sources.
    pub records: u64,
    /// Bytes per record, at least [`RECORD_BYTES_MIN`].
    pub record_bytes: usize,
    /// Source tasks.
    pub sources: usize,
    /// Sink tasks.
    pub sinks: usize,
    /// When written records become readable.
    pub flush: FlushMode,
    /// Seed of the keys.
    pub seed: u64,
}

impl Default for ShuffleJob {
    fn default() -> ShuffleJob {
        ShuffleJob {
            records: 10_000_000,
            record_bytes: RECORD_BYTES_MIN,
            sources: 2,
            sinks: 2,
            flush: FlushMode::default(),
            seed: 42,
        }
    }
}

/// What a shuffle did: the fields of the WORKLOADS.md JSON line.
#[derive(Debug, Clone)]
pub struct ShuffleReport {
    /// Records the sources sent.
    pub records_sent: u64,
    /// Records the sinks received.
    pub records_received: u64,
    /// Wall time from the first record to the last sink's end.
    pub wall_s: f64,
    /// Time the sources waited for buffers, summed.
    pub back_pressured_s: f64,
    /// Buffers the sinks received (data and events).
    pub buffers: u64,
    /// The process's peak resident set, in bytes.
    pub peak_rss_bytes: u64,
    /// The network memory granted, in bytes.
    pub network_bytes: u64,
    /// Counts, checksums, key placement and the leak check all held.
    pub valid: bool,
}

impl ShuffleReport {
    /// Records per second through the exchange.
    pub fn records_per_s(&self) -> f64 {
        self.records_received as f64 / self.wall_s
    }

    /// The one-line JSON summary of WORKLOADS.md.
    pub fn to_json(&self, job: &ShuffleJob) -> String {
        let bytes = self.records_received as f64 * job.record_bytes as f64;
        format!(
            concat!(
                "{{\"workload\":\"W4\",\"system\":\"weir\",\"workers\":1,\"sources\":{},",
                "\"sinks\":{},\"records\":{},\"record_bytes\":{},\"flush\":\"{}\",",
                "\"wall_s\":{:.3},\"records_per_s\":{:.0},\"bytes_per_s\":{:.0},",
                "\"back_pressured_s\":{:.3},\"buffers\":{},\"network_mib\":{:.1},",
                "\"peak_rss_mib\":{:.1},\"valid\":{}}}"
            ),
            job.sources,
            job.sinks,
            self.records_received,
            job.record_bytes,
            flush_name(job.flush),
            self.wall_s,
            self.records_per_s(),
            bytes / self.wall_s,
            self.back_pressured_s,
            self.buffers,
            self.network_bytes as f64 / f64::from(1 << 20),
            self.peak_rss_bytes as f64 / f64::from(1 << 20),
            self.valid,
        )
    }
}

/// The flush mode as the CLI spells it.
pub fn flush_name(flush: FlushMode) -> String {
    match flush {
        FlushMode::EveryRecord => "every".to_owned(),
        FlushMode::WhenFull => "full".to_owned(),
        FlushMode::Timeout(t) => format!("{}ms", t.as_millis()),
    }
}

/// Parses a flush mode: `every` (or `0`), `full` (or `none`), or a timeout like `100ms`.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_flush(text: &str) -> std::result::Result<FlushMode, String> {
    match text {
        "every" | "0" | "0ms" => Ok(FlushMode::EveryRecord),
        "full" | "none" => Ok(FlushMode::WhenFull),
        _ => text
            .strip_suffix("ms")
            .and_then(|n| n.parse::<u64>().ok())
            .map(|ms| FlushMode::Timeout(Duration::from_millis(ms)))
            .ok_or_else(|| format!("flush mode {text:?}: expected every, full, or <N>ms")),
    }
}

/// Runs the shuffle.
///
/// # Errors
///
/// [`WeirError::Input`] for an invalid job; kernel and network errors as they happen.
///
/// # Panics
///
/// When a task thread cannot be started, or a task panicked (a bug; its panic goes on).
pub fn run_shuffle(job: &ShuffleJob) -> Result<ShuffleReport> {
    validate(job)?;
    let spec = LocalPoolSpec::for_partition(job.sinks);
    let segments = job.sources * spec.max;
    let manager = MemoryManager::new(MemoryConfig::with_budget(segments * SEGMENT_SIZE_DEFAULT))?;
    let network_bytes = (segments * manager.segment_size()) as u64;
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, segments)?;
    let partitions = (0..job.sources)
        .map(|_| Ok(ResultPartition::new(grant.create_pool(spec)?, job.sinks)))
        .collect::<Result<Vec<_>>>()?;
    let gates: Vec<InputGate> = (0..job.sinks)
        .map(|sink| {
            let channels = partitions
                .iter()
                .enumerate()
                .map(|(source, partition)| {
                    let subpartition = partition.subpartition(SubpartitionIndex::from_usize(sink));
                    LocalInputChannel::new(channel(source), subpartition)
                })
                .collect();
            InputGate::new(channels)
        })
        .collect();

    let start = Instant::now();
    let (sent, received) = std::thread::scope(|scope| {
        let sinks: Vec<_> = gates
            .into_iter()
            .enumerate()
            .map(|(sink, gate)| {
                let sinks = job.sinks;
                std::thread::Builder::new()
                    .name(format!("weir-sink-{sink}"))
                    .spawn_scoped(scope, move || run_sink(gate, sink, sinks))
                    .expect("a sink thread starts")
            })
            .collect();
        let sources: Vec<_> = partitions
            .into_iter()
            .enumerate()
            .map(|(source, partition)| {
                std::thread::Builder::new()
                    .name(format!("weir-source-{source}"))
                    .spawn_scoped(scope, move || run_source(job, source, partition))
                    .expect("a source thread starts")
            })
            .collect();
        let sent: Vec<Result<SourceTally>> = sources.into_iter().map(join).collect();
        let received: Vec<Result<SinkTally>> = sinks.into_iter().map(join).collect();
        (sent, received)
    });
    let wall_s = start.elapsed().as_secs_f64();
    let sent = sent.into_iter().collect::<Result<Vec<_>>>()?;
    let received = received.into_iter().collect::<Result<Vec<_>>>()?;
    drop(grant);
    let leak_free = manager.leak_check().is_ok();

    let total_sent = sent.iter().fold(Tally::default(), |t, s| t.plus(s.tally));
    let total_received = received
        .iter()
        .fold(Tally::default(), |t, s| t.plus(s.tally));
    let placed = received.iter().all(|s| s.misplaced == 0);
    Ok(ShuffleReport {
        records_sent: total_sent.records,
        records_received: total_received.records,
        wall_s,
        back_pressured_s: sent.iter().map(|s| s.back_pressured.as_secs_f64()).sum(),
        buffers: received.iter().map(|s| s.buffers).sum(),
        peak_rss_bytes: weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes),
        network_bytes,
        valid: total_sent == total_received
            && total_sent.records == job.records
            && placed
            && leak_free,
    })
}

fn validate(job: &ShuffleJob) -> Result<()> {
    let invalid = |message: String| Err(WeirError::Input { message });
    if job.record_bytes < RECORD_BYTES_MIN {
        return invalid(format!(
            "record size {} bytes: at least {RECORD_BYTES_MIN} (a u64 key and a u64 value)",
            job.record_bytes
        ));
    }
    if job.record_bytes > 1 << 20 {
        return invalid(format!(
            "record size {} bytes: at most 1 MiB",
            job.record_bytes
        ));
    }
    if job.sources == 0 || job.sinks == 0 || job.sinks > KEY_GROUPS as usize || job.sources > 64 {
        return invalid(format!(
            "{} sources and {} sinks: 1 to 64 sources and 1 to {KEY_GROUPS} sinks",
            job.sources, job.sinks
        ));
    }
    Ok(())
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn channel(i: usize) -> ChannelIndex {
    ChannelIndex(u32::try_from(i).expect("at most 64 sources"))
}

/// Record count and checksum: equal on both sides of a correct exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    records: u64,
    sum: u64,
}

impl Tally {
    #[inline]
    fn add(&mut self, record: &[u8]) {
        self.records += 1;
        self.sum = self.sum.wrapping_add(record_hash(record));
    }

    fn plus(self, other: Tally) -> Tally {
        Tally {
            records: self.records + other.records,
            sum: self.sum.wrapping_add(other.sum),
        }
    }
}

struct SourceTally {
    tally: Tally,
    back_pressured: Duration,
}

struct SinkTally {
    tally: Tally,
    misplaced: u64,
    buffers: u64,
}

/// A word-wise hash of a record (fast enough not to dominate a 1 KiB record's cost).
#[inline]
fn record_hash(record: &[u8]) -> u64 {
    let mut chunks = record.chunks_exact(8);
    let mut hash = 0x9e37_79b9_7f4a_7c15u64 ^ record.len() as u64;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        hash = (hash ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(23);
    }
    for &byte in chunks.remainder() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash the exchange partitions by: the key's two halves folded.
fn key_hash(record: &[u8]) -> u32 {
    let key = u64::from_le_bytes(
        record[..8]
            .try_into()
            .expect("a record starts with its key"),
    );
    (key ^ (key >> 32)) as u32
}

fn run_source(job: &ShuffleJob, source: usize, partition: ResultPartition) -> Result<SourceTally> {
    let selector = HashSelector::with_max_parallelism(key_hash as fn(&[u8]) -> u32, KEY_GROUPS);
    let mut writer = RecordWriter::new(partition, selector, job.flush);
    let mut record = vec![0u8; job.record_bytes];
    for (i, byte) in record[RECORD_BYTES_MIN..].iter_mut().enumerate() {
        *byte = b'a' + (i % 26) as u8;
    }
    let mut tally = Tally::default();
    let mut i = source as u64;
    while i < job.records {
        let key = mix(job.seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        record[..8].copy_from_slice(&key.to_le_bytes());
        record[8..16].copy_from_slice(&i.to_le_bytes());
        tally.add(&record);
        if let Err(error) = writer.emit(&record) {
            writer.release();
            return Err(error.into());
        }
        i += job.sources as u64;
    }
    writer.finish()?;
    Ok(SourceTally {
        tally,
        back_pressured: writer.metrics().back_pressured,
    })
}

/// Unparks the sink's thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn run_sink(mut gate: InputGate, sink: usize, sinks: usize) -> Result<SinkTally> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut readers: Vec<RecordReader> = (0..gate.channel_count())
        .map(|i| RecordReader::new(channel(i)))
        .collect();
    let sinks = u32::try_from(sinks).expect("at most 128 sinks");
    let mut tally = Tally::default();
    let mut misplaced = 0;
    let mut buffers = 0;
    let mut listening = false;
    loop {
        match gate.poll_next()? {
            GatePoll::Buffer(channel, buffer) => {
                buffers += 1;
                listening = false;
                let reader = &mut readers[channel.as_usize()];
                match buffer.data_type() {
                    DataType::Data => {
                        reader.push(buffer);
                        while let Some(record) = reader.next_record()? {
                            tally.add(record);
                            let group = key_group(key_hash(record), KEY_GROUPS);
                            let owner = channel_for_key_group(group, sinks, KEY_GROUPS);
                            misplaced += u64::from(owner.as_usize() != sink);
                        }
                    }
                    DataType::EndOfPartition => reader.finish()?,
                    _ => {}
                }
            }
            // Register, then poll once more: data may have arrived in between.
            GatePoll::Pending if !listening => {
                gate.register_listener(&waker);
                listening = true;
            }
            GatePoll::Pending => {
                std::thread::park();
                listening = false;
            }
            GatePoll::EndOfPartitions => break,
        }
    }
    Ok(SinkTally {
        tally,
        misplaced,
        buffers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_shuffle_is_valid_in_every_flush_mode_and_record_size() {
        for (flush, record_bytes) in [
            (FlushMode::default(), 16),
            (FlushMode::EveryRecord, 100),
            (FlushMode::WhenFull, 1024),
            (FlushMode::Timeout(Duration::from_millis(1)), 40_000),
        ] {
            let job = ShuffleJob {
                records: 20_000,
                record_bytes,
                flush,
                ..ShuffleJob::default()
            };
            let report = run_shuffle(&job).unwrap();
            assert!(report.valid, "{flush:?} {record_bytes}: {report:?}");
            assert_eq!(report.records_received, 20_000);
            let json = report.to_json(&job);
            assert!(json.contains("\"valid\":true"), "{json}");
        }
    }

    #[test]
    fn flush_modes_parse_and_print() {
        assert_eq!(parse_flush("every"), Ok(FlushMode::EveryRecord));
        assert_eq!(parse_flush("none"), Ok(FlushMode::WhenFull));
        assert_eq!(
            parse_flush("5ms"),
            Ok(FlushMode::Timeout(Duration::from_millis(5)))
        );
        assert!(
            parse_flush("fast")
                .unwrap_err()
                .contains("expected every, full")
        );
        assert_eq!(flush_name(FlushMode::default()), "100ms");
    }

    #[test]
    fn an_invalid_job_is_a_usage_error() {
        let job = ShuffleJob {
            record_bytes: 8,
            ..ShuffleJob::default()
        };
        let error = run_shuffle(&job).unwrap_err();
        assert!(error.is_usage());
        assert!(error.to_string().contains("at least 16"), "{error}");
    }
}
