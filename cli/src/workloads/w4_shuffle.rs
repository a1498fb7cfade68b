//! W4: keyed shuffle throughput (docs/WORKLOADS.md), as a dataflow program on the weir
//! library: what a user gets from `Dataflow`, `key_by` and `runtime::execute`.
//!
//! ```text
//!   generate(i ↦ record i) ──key_by(key).partition()──▶ fold(check each record) ──▶ collect
//!   └── stage 0: workers × slots source tasks ──┘ hash  └─ stage 1: as many sinks ─┘  gather
//!        (also: rebalance, broadcast, gather)     exchange: local channels in a worker,
//!                                                 TCP with credit between workers
//! ```
//!
//! Record `i` is its key (splitmix64 of the seed and `i`), its value `i`, and for records
//! larger than 16 bytes a filler of letters: the encoded record is `record_bytes` long.
//! Each sink task folds what it reads into a [`SinkTally`]: records, an order-independent
//! checksum (a hash of key, value and the filler's bytes as received) and records out of
//! their source's order. The run is valid when every sink's tally equals a model computed
//! apart from the job — each record on the sink its key routes to ([`KeyRouter`]), on sink
//! 0 for gather, on every sink for broadcast; for rebalance the total — nothing is out of
//! order, and every worker's segments came home.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use weir::config::Config;
use weir::dataflow::{Collected, Data, Dataflow, JobReport, KeyRouter, Stream, WorkerReport};
use weir::error::{Result, WeirError};
use weir::netstack::transport::NetworkConfig;
use weir_kernel::hash::hash_bytes;

use crate::args::flush_name;
use crate::report::{Report, round};

/// The smallest record: a u64 key and a u64 value.
pub const RECORD_BYTES_MIN: usize = 16;

/// The largest record.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

/// How long a shuffle may run before its worker processes are killed.
const SHUFFLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// What to shuffle, and how.
#[derive(Debug, Clone)]
pub struct ShuffleJob {
    /// Records in total, over all sources.
    pub records: u64,
    /// Bytes per record (encoded), at least [`RECORD_BYTES_MIN`].
    pub record_bytes: usize,
    /// Seed of the keys.
    pub seed: u64,
    /// How records are routed from sources to sinks.
    pub exchange: Exchange,
    /// Workers, slots (sources = sinks = workers × slots), network memory, flushing.
    pub config: Config,
}

impl Default for ShuffleJob {
    fn default() -> ShuffleJob {
        ShuffleJob {
            records: 10_000_000,
            record_bytes: RECORD_BYTES_MIN,
            seed: 42,
            exchange: Exchange::Hash,
            config: Config {
                workers: 2,
                ..Config::default()
            },
        }
    }
}

/// How a shuffle routes records: one of the dataflow API's exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exchange {
    /// By key: each key to one sink (`key_by(…).partition()`).
    #[default]
    Hash,
    /// Round robin over the sinks (`rebalance`).
    Rebalance,
    /// Every record to every sink (`broadcast`).
    Broadcast,
    /// Every record to one sink, on worker 0 (`gather`).
    Gather,
}

impl Exchange {
    const ALL: [Exchange; 4] = [
        Exchange::Hash,
        Exchange::Rebalance,
        Exchange::Broadcast,
        Exchange::Gather,
    ];

    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Hash => "hash",
            Exchange::Rebalance => "rebalance",
            Exchange::Broadcast => "broadcast",
            Exchange::Gather => "gather",
        }
    }

    /// Parses [`name`](Self::name).
    ///
    /// # Errors
    ///
    /// A message naming the accepted names.
    pub fn parse(text: &str) -> std::result::Result<Exchange, String> {
        Exchange::ALL
            .into_iter()
            .find(|e| e.name() == text)
            .ok_or_else(|| {
                format!("exchange {text:?}: expected hash, rebalance, broadcast or gather")
            })
    }

    fn route<R: Data>(self, stream: Stream<R>, key: fn(&R) -> u64) -> Stream<R> {
        match self {
            Exchange::Hash => stream.key_by(key).partition(),
            Exchange::Rebalance => stream.rebalance(),
            Exchange::Broadcast => stream.broadcast(),
            Exchange::Gather => stream.gather(),
        }
    }

    /// Sink tasks of `parallelism` producer tasks.
    fn sinks(self, parallelism: usize) -> usize {
        if self == Exchange::Gather {
            1
        } else {
            parallelism
        }
    }
}

/// What a shuffle did: the fields of its docs/WORKLOADS.md JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct ShuffleReport {
    /// Worker processes.
    pub workers: usize,
    /// Task slots per worker.
    pub slots: usize,
    /// The exchange's name.
    pub exchange: &'static str,
    /// Source tasks.
    pub sources: usize,
    /// Sink tasks.
    pub sinks: usize,
    /// Records the sinks received.
    pub records: u64,
    /// Bytes per record, encoded.
    pub record_bytes: usize,
    /// The flush mode.
    pub flush: String,
    /// The job's wall time (the slowest worker's, from its tasks' start to their end).
    pub wall_s: f64,
    /// Records per second through the exchange.
    pub records_per_s: f64,
    /// Record bytes per second through the exchange.
    pub bytes_per_s: f64,
    /// Time the sources waited for buffers, summed.
    pub back_pressured_s: f64,
    /// Network buffers granted, per worker, in MiB.
    pub network_mib: f64,
    /// Payload bytes sent over TCP between workers.
    pub remote_bytes: u64,
    /// The largest peak resident set of a worker, in MiB.
    pub peak_rss_mib: f64,
    /// The tallies equal the model, nothing misplaced, every segment home.
    pub valid: bool,
}

impl ShuffleReport {
    /// The one-line JSON of docs/WORKLOADS.md.
    pub fn to_json(&self) -> String {
        Report::new("W4", self).to_json()
    }
}

/// What one sink task read: equal to the model's share in a correct exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkTally {
    /// The sink task.
    pub task: usize,
    /// Records read.
    pub records: u64,
    /// The wrapping sum of their hashes.
    pub sum: u64,
    /// Records that came out of their source's order.
    pub out_of_order: u64,
}

impl SinkTally {
    #[inline]
    fn add(&mut self, hash: u64) {
        self.records += 1;
        self.sum = self.sum.wrapping_add(hash);
    }
}

/// Runs the shuffle on `job.config.workers` workers: this process is worker 0, the others
/// are started with `worker_args` (`weir worker … shuffle …`).
///
/// # Errors
///
/// [`WeirError::Usage`] for an invalid job; the runtime's errors (a lost peer, memory).
pub fn run_shuffle(job: &ShuffleJob, worker_args: &[String]) -> Result<ShuffleReport> {
    validate(job)?;
    let (report, tallies) =
        crate::cluster::run_job(&job.config, worker_args, SHUFFLE_TIMEOUT, |network| {
            let (flow, tallies) = program(job);
            let report = weir::dataflow::execute(&flow, &job.config, network)?;
            Ok((report, tallies.take()))
        })?;
    Ok(summarize(job, &report, &tallies))
}

/// This worker's part of a shuffle across worker processes. Worker 0, where the sinks'
/// tallies arrive, checks them against the model (so a cluster started by hand checks its
/// answer too).
///
/// # Errors
///
/// As [`run_shuffle`]; on worker 0, [`WeirError::WrongAnswer`] when the tallies differ
/// from the model.
pub fn run_shuffle_worker(job: &ShuffleJob, network: NetworkConfig) -> Result<WorkerReport> {
    validate(job)?;
    let first = network.process == 0;
    let (flow, tallies) = program(job);
    let report = weir::dataflow::execute(&flow, &job.config, Some(network))?;
    if first && !tallies_equal_model(job, &tallies.take()) {
        return Err(WeirError::WrongAnswer {
            detail: "the shuffle lost, duplicated or misplaced records".to_owned(),
        });
    }
    Ok(report)
}

/// The shuffle as a dataflow program: its sinks' tallies, collected on worker 0.
fn program(job: &ShuffleJob) -> (Dataflow, Collected<SinkTally>) {
    let flow = Dataflow::new();
    let tallies = if job.record_bytes == RECORD_BYTES_MIN {
        shuffle::<Small>(&flow, job)
    } else {
        shuffle::<Large>(&flow, job)
    };
    (flow, tallies)
}

fn shuffle<R: Record>(flow: &Dataflow, job: &ShuffleJob) -> Collected<SinkTally> {
    let (seed, filler) = (job.seed, filler_len(job.record_bytes));
    let sources = job.config.parallelism();
    let records = flow.generate(job.records, move |i| R::new(key_of(seed, i), i, filler));
    job.exchange
        .route(records, R::key)
        .fold(
            move |ctx| SinkCheck::new(ctx.task(), sources),
            SinkCheck::add,
            |check| check.tally,
        )
        .collect()
}

/// A sink task's checks: its tally and each source's order (where each record belongs is
/// checked by the model, sink by sink).
struct SinkCheck {
    tally: SinkTally,
    // The value (record index) last received from each source: task s of the sources
    // generates the indices i with i % sources == s, in increasing order.
    last: Vec<Option<u64>>,
}

impl SinkCheck {
    fn new(task: usize, sources: usize) -> SinkCheck {
        SinkCheck {
            tally: SinkTally {
                task,
                ..SinkTally::default()
            },
            last: vec![None; sources],
        }
    }

    #[inline]
    fn add<R: Record>(&mut self, record: R) {
        let value = record.value();
        self.tally
            .add(record_hash(record.key(), value, record.filler_hash()));
        let sources = self.last.len() as u64;
        let source = if sources.is_power_of_two() {
            value & (sources - 1)
        } else {
            value % sources
        };
        let last = &mut self.last[source as usize];
        self.tally.out_of_order += u64::from(last.is_some_and(|last| value <= last));
        *last = Some(value);
    }
}

/// The job's report from the workers' reports and the sinks' tallies, checked against the
/// model.
fn summarize(job: &ShuffleJob, report: &JobReport, tallies: &[SinkTally]) -> ShuffleReport {
    let sources = job.config.parallelism();
    let sinks = job.exchange.sinks(sources);
    let received = total(tallies);
    let wall_s = report.wall_s();
    let bytes = received.records as f64 * job.record_bytes as f64;
    let max = |f: fn(&WorkerReport) -> u64| report.workers.iter().map(f).max().unwrap_or(0);
    let mib = |bytes: u64| round(bytes as f64 / f64::from(1 << 20), 1);
    ShuffleReport {
        workers: job.config.workers,
        slots: job.config.slots,
        exchange: job.exchange.name(),
        sources,
        sinks,
        records: received.records,
        record_bytes: encoded_bytes(job.record_bytes),
        flush: flush_name(job.config.flush),
        wall_s: round(wall_s, 3),
        records_per_s: (received.records as f64 / wall_s).round(),
        bytes_per_s: (bytes / wall_s).round(),
        back_pressured_s: round(report.total(|w| w.back_pressured_us) as f64 / 1e6, 3),
        network_mib: mib(max(|w| w.network_granted)),
        remote_bytes: report.total(|w| w.remote_bytes),
        peak_rss_mib: mib(max(|w| w.peak_rss)),
        valid: tallies_equal_model(job, tallies)
            && report.workers.len() == job.config.workers
            && report.leak_free(),
    }
}

fn total(tallies: &[SinkTally]) -> SinkTally {
    tallies.iter().fold(SinkTally::default(), |t, s| SinkTally {
        task: 0,
        records: t.records + s.records,
        sum: t.sum.wrapping_add(s.sum),
        out_of_order: t.out_of_order + s.out_of_order,
    })
}

/// Whether the sinks received what the model says, sink by sink: every record once on the
/// sink its key routes to (hash), on sink 0 (gather), on every sink (broadcast); for
/// rebalance, which spreads records as it pleases, every record once over all sinks. And
/// no source's records out of order.
fn tallies_equal_model(job: &ShuffleJob, tallies: &[SinkTally]) -> bool {
    let mut tallies = tallies.to_vec();
    tallies.sort_unstable_by_key(|t| t.task);
    let expected = model_tallies(job);
    match job.exchange {
        Exchange::Rebalance => {
            tallies.len() == expected.len() && total(&tallies) == total(&expected)
        }
        _ => tallies == expected,
    }
}

/// What each sink must receive, computed apart from the job from the records the sources
/// generate (for rebalance, all on sink 0: only the total is compared).
fn model_tallies(job: &ShuffleJob) -> Vec<SinkTally> {
    let filler = match job.record_bytes {
        RECORD_BYTES_MIN => Small::new(0, 0, 0).filler_hash(),
        bytes => Large::new(0, 0, filler_len(bytes)).filler_hash(),
    };
    let sinks = job.exchange.sinks(job.config.parallelism());
    let mut tallies: Vec<SinkTally> = (0..sinks)
        .map(|task| SinkTally {
            task,
            ..SinkTally::default()
        })
        .collect();
    let mut router = KeyRouter::new(sinks);
    for i in 0..job.records {
        let key = key_of(job.seed, i);
        let hash = record_hash(key, i, filler);
        match job.exchange {
            Exchange::Hash => tallies[router.task_of(&key)].add(hash),
            Exchange::Gather | Exchange::Rebalance => tallies[0].add(hash),
            Exchange::Broadcast => tallies.iter_mut().for_each(|t| t.add(hash)),
        }
    }
    tallies
}

fn validate(job: &ShuffleJob) -> Result<()> {
    job.config.validate()?;
    if !(RECORD_BYTES_MIN..=RECORD_BYTES_MAX).contains(&job.record_bytes) {
        return Err(WeirError::Usage {
            message: format!(
                "--record-size {}: allowed {RECORD_BYTES_MIN} (a u64 key and a u64 value) to \
                 {} (1 MiB)",
                job.record_bytes, RECORD_BYTES_MAX
            ),
        });
    }
    Ok(())
}

/// Record `i`'s key.
fn key_of(seed: u64, i: u64) -> u64 {
    mix(seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

fn record_hash(key: u64, value: u64, filler: u64) -> u64 {
    mix(key ^ mix(value.wrapping_add(filler)))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A W4 record type: key and value, and for the larger sizes a filler.
trait Record: Data {
    fn new(key: u64, value: u64, filler: usize) -> Self;
    fn key(&self) -> u64;
    fn value(&self) -> u64;
    /// The hash of the filler's bytes (0 without one).
    fn filler_hash(&self) -> u64;
}

/// The 16-byte record: a u64 key and a u64 value.
#[derive(Serialize, Deserialize)]
struct Small {
    key: u64,
    value: u64,
}

impl Record for Small {
    #[inline]
    fn new(key: u64, value: u64, _filler: usize) -> Small {
        Small { key, value }
    }
    fn key(&self) -> u64 {
        self.key
    }
    fn value(&self) -> u64 {
        self.value
    }
    fn filler_hash(&self) -> u64 {
        0
    }
}

/// A larger record: key, value and a filler of letters.
#[derive(Serialize, Deserialize)]
struct Large {
    key: u64,
    value: u64,
    filler: Filler,
}

impl Record for Large {
    #[inline]
    fn new(key: u64, value: u64, filler: usize) -> Large {
        Large {
            key,
            value,
            filler: Filler::Write(filler),
        }
    }
    fn key(&self) -> u64 {
        self.key
    }
    fn value(&self) -> u64 {
        self.value
    }
    fn filler_hash(&self) -> u64 {
        match self.filler {
            Filler::Write(len) => filler_hash(&filler_bytes(len)),
            Filler::Read { hash } => hash,
        }
    }
}

/// The filler of a large record: written as `len` letters (serde bytes), read as the hash
/// of the bytes received (no copy of them is kept).
enum Filler {
    Write(usize),
    Read { hash: u64 },
}

/// The letters every filler is a prefix of.
static LETTERS: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| filler_bytes(RECORD_BYTES_MAX));

fn filler_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn filler_hash(bytes: &[u8]) -> u64 {
    hash_bytes(0, bytes)
}

impl Serialize for Filler {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            Filler::Write(len) => serializer.serialize_bytes(&LETTERS[..len]),
            Filler::Read { .. } => Err(serde::ser::Error::custom(
                "a received filler is not sent again",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Filler {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Filler, D::Error> {
        struct Hashing;
        impl Visitor<'_> for Hashing {
            type Value = Filler;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("filler bytes")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> std::result::Result<Filler, E> {
                Ok(Filler::Read {
                    hash: filler_hash(bytes),
                })
            }
        }
        deserializer.deserialize_bytes(Hashing)
    }
}

/// The filler length that makes a record `record_bytes` long encoded (key, value, the
/// filler's varint length and its bytes); the longest that fits when none is exact.
fn filler_len(record_bytes: usize) -> usize {
    let room = record_bytes.saturating_sub(RECORD_BYTES_MIN);
    (0..=room)
        .rev()
        .find(|&len| len + varint_len(len) <= room)
        .unwrap_or(0)
}

/// The encoded size of a record asked to be `record_bytes` long.
fn encoded_bytes(record_bytes: usize) -> usize {
    if record_bytes == RECORD_BYTES_MIN {
        return RECORD_BYTES_MIN;
    }
    let filler = filler_len(record_bytes);
    RECORD_BYTES_MIN + varint_len(filler) + filler
}

fn varint_len(value: usize) -> usize {
    let bits = usize::BITS - value.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::netstack::FlushMode;

    fn job(records: u64, record_bytes: usize, flush: FlushMode, exchange: Exchange) -> ShuffleJob {
        ShuffleJob {
            records,
            record_bytes,
            exchange,
            config: Config {
                workers: 1,
                slots: 2,
                flush,
                ..Config::default()
            },
            ..ShuffleJob::default()
        }
    }

    #[test]
    fn a_small_shuffle_is_valid_in_every_flush_mode_record_size_and_exchange() {
        // Records larger than a 32 KiB buffer included.
        for (flush, record_bytes, records) in [
            (FlushMode::default(), 16, 20_000),
            (FlushMode::EveryRecord, 100, 5_000),
            (FlushMode::WhenFull, 1024, 5_000),
            (FlushMode::Timeout(Duration::from_millis(1)), 40_000, 300),
        ] {
            for exchange in Exchange::ALL {
                let job = job(records, record_bytes, flush, exchange);
                let report = run_shuffle(&job, &[]).unwrap();
                assert!(
                    report.valid,
                    "{flush:?} {record_bytes} {exchange:?}: {report:?}"
                );
                assert_eq!(
                    report.records,
                    records
                        * if exchange == Exchange::Broadcast {
                            2
                        } else {
                            1
                        },
                    "{exchange:?}"
                );
                assert_eq!(report.record_bytes, record_bytes);
                assert!(report.to_json().contains("\"valid\":true"));
            }
        }
    }

    #[test]
    fn the_model_catches_a_lost_or_changed_record() {
        let job = job(1_000, 16, FlushMode::default(), Exchange::Hash);
        let (flow, tallies) = program(&job);
        let report = weir::dataflow::execute(&flow, &job.config, None).unwrap();
        let tallies = tallies.take();
        let jobs = JobReport {
            workers: vec![report],
        };
        assert!(summarize(&job, &jobs, &tallies).valid);
        let mut lost = tallies.clone();
        lost[0].records -= 1;
        assert!(!summarize(&job, &jobs, &lost).valid);
        let mut changed = tallies.clone();
        changed[1].sum ^= 1;
        assert!(!summarize(&job, &jobs, &changed).valid);
        // A record on the wrong sink: the totals agree, the sinks do not.
        let mut moved = tallies;
        let hash = record_hash(key_of(job.seed, 0), 0, 0);
        moved[0].sum = moved[0].sum.wrapping_add(hash);
        moved[0].records += 1;
        moved[1].sum = moved[1].sum.wrapping_sub(hash);
        moved[1].records -= 1;
        assert!(!summarize(&job, &jobs, &moved).valid);
    }

    #[test]
    fn records_are_as_long_as_asked_and_bad_sizes_are_usage_errors() {
        for bytes in [17, 100, 1024, 1 << 20] {
            assert_eq!(encoded_bytes(bytes), bytes);
            let record = Large::new(1, 2, filler_len(bytes));
            assert_eq!(weir_serde_fmt::to_vec(&record).unwrap().len(), bytes);
        }
        let small = job(10, 8, FlushMode::default(), Exchange::Hash);
        let error = run_shuffle(&small, &[]).unwrap_err();
        assert!(error.is_usage());
        assert!(
            error.to_string().contains("allowed 16 (a u64 key"),
            "{error}"
        );
        assert_eq!(
            Exchange::parse("rescale").unwrap_err(),
            "exchange \"rescale\": expected hash, rebalance, broadcast or gather"
        );
    }
}
