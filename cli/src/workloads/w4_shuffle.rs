//! W4 in one process: a keyed shuffle from source tasks to sink tasks over local channels
//! (docs/WORKLOADS.md), with the network stack's record writers, input gates and record readers.
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir_kernel::constants::SEGMENT_SIZE_DEFAULT;
use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::constants::EVENT_SEGMENTS;
use weir_netstack::partition::{
    BroadcastSelector, ChannelSelector, ForwardSelector, HashSelector, RescaleSelector,
    RoundRobinSelector, channel_for_key_group, key_group,
};
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::transport::{NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, ChannelSource, ExchangeBuffers, ExchangeEnvironment, FlushMode, GateHandler,
    GateReader, InputGate, LocalInputChannel, NetError, NetworkBufferPool, RecordWriter,
    ResultPartition, SubpartitionIndex,
};

use weir::error::{Result, WeirError};

/// The record writer of a source: records hash-partitioned by key.
type KeyedWriter = RecordWriter<AnySelector>;

/// A cancel flag that is never raised (the in-process job fails as a whole).
static NEVER: AtomicBool = AtomicBool::new(false);

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
    /// Worker processes (1: every task in this process, over local channels).
    pub workers: usize,
    /// How records are routed from sources to sinks.
    pub exchange: Exchange,
}

/// How a shuffle routes records: one of the channel selectors of the network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exchange {
    /// By key: each key group to one sink (key_by).
    #[default]
    Hash,
    /// Every record to sink 0.
    Forward,
    /// Round robin over the sinks.
    Rebalance,
    /// Round robin over the sinks of the source's partition (rescale).
    Rescale,
    /// Every record to every sink.
    Broadcast,
}

impl Exchange {
    /// The name the CLI uses.
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Hash => "hash",
            Exchange::Forward => "forward",
            Exchange::Rebalance => "rebalance",
            Exchange::Rescale => "rescale",
            Exchange::Broadcast => "broadcast",
        }
    }

    /// Parses [`name`](Self::name).
    ///
    /// # Errors
    ///
    /// A message naming the accepted names.
    pub fn parse(text: &str) -> std::result::Result<Exchange, String> {
        [
            Exchange::Hash,
            Exchange::Forward,
            Exchange::Rebalance,
            Exchange::Rescale,
            Exchange::Broadcast,
        ]
        .into_iter()
        .find(|e| e.name() == text)
        .ok_or_else(|| {
            format!("exchange {text:?}: expected hash, forward, rebalance, rescale or broadcast")
        })
    }

    /// How many sinks receive each record.
    fn copies(self, sinks: usize) -> u64 {
        if self == Exchange::Broadcast {
            sinks as u64
        } else {
            1
        }
    }

    fn selector(self, source: usize) -> AnySelector {
        match self {
            Exchange::Hash => AnySelector::Hash(HashSelector::with_max_parallelism(
                key_hash as fn(&[u8]) -> u32,
                KEY_GROUPS,
            )),
            Exchange::Forward => AnySelector::Forward(ForwardSelector),
            Exchange::Rebalance => AnySelector::RoundRobin(RoundRobinSelector::starting_at(
                u32::try_from(source).unwrap_or(0),
            )),
            Exchange::Rescale => AnySelector::Rescale(RescaleSelector::default()),
            Exchange::Broadcast => AnySelector::Broadcast(BroadcastSelector),
        }
    }

    /// Whether sink `sink` of `sinks` may receive `record`.
    fn placed(self, record: &[u8], sink: usize, sinks: u32) -> bool {
        match self {
            Exchange::Hash => {
                let group = key_group(key_hash(record), KEY_GROUPS);
                channel_for_key_group(group, sinks, KEY_GROUPS).as_usize() == sink
            }
            Exchange::Forward => sink == 0,
            Exchange::Rebalance | Exchange::Rescale | Exchange::Broadcast => true,
        }
    }
}

/// One of the selectors, chosen at run time.
#[derive(Debug)]
enum AnySelector {
    Hash(HashSelector<fn(&[u8]) -> u32>),
    Forward(ForwardSelector),
    RoundRobin(RoundRobinSelector),
    Rescale(RescaleSelector),
    Broadcast(BroadcastSelector),
}

impl ChannelSelector for AnySelector {
    fn setup(&mut self, channels: u32) {
        match self {
            AnySelector::Hash(s) => s.setup(channels),
            AnySelector::Forward(s) => s.setup(channels),
            AnySelector::RoundRobin(s) => s.setup(channels),
            AnySelector::Rescale(s) => s.setup(channels),
            AnySelector::Broadcast(s) => s.setup(channels),
        }
    }

    fn select_channel(&mut self, record: &[u8]) -> ChannelIndex {
        match self {
            AnySelector::Hash(s) => s.select_channel(record),
            AnySelector::Forward(s) => s.select_channel(record),
            AnySelector::RoundRobin(s) => s.select_channel(record),
            AnySelector::Rescale(s) => s.select_channel(record),
            AnySelector::Broadcast(s) => s.select_channel(record),
        }
    }

    fn is_broadcast(&self) -> bool {
        matches!(self, AnySelector::Broadcast(_))
    }
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
            workers: 1,
            exchange: Exchange::Hash,
        }
    }
}

/// What a shuffle did: the fields of the docs/WORKLOADS.md JSON line.
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
    /// The network memory granted, in bytes (per worker).
    pub network_bytes: u64,
    /// Payload bytes sent over TCP between workers.
    pub remote_bytes: u64,
    /// Counts, checksums, key placement and the leak check all held.
    pub valid: bool,
}

impl ShuffleReport {
    /// Records per second through the exchange.
    pub fn records_per_s(&self) -> f64 {
        self.records_received as f64 / self.wall_s
    }

    /// The one-line JSON summary of docs/WORKLOADS.md.
    pub fn to_json(&self, job: &ShuffleJob) -> String {
        let bytes = self.records_received as f64 * job.record_bytes as f64;
        format!(
            concat!(
                "{{\"workload\":\"W4\",\"system\":\"weir\",\"workers\":{},\"exchange\":\"{}\",\"sources\":{},",
                "\"sinks\":{},\"records\":{},\"record_bytes\":{},\"flush\":\"{}\",",
                "\"wall_s\":{:.3},\"records_per_s\":{:.0},\"bytes_per_s\":{:.0},",
                "\"back_pressured_s\":{:.3},\"buffers\":{},\"network_mib\":{:.1},",
                "\"remote_bytes\":{},\"peak_rss_mib\":{:.1},\"valid\":{}}}"
            ),
            job.workers,
            job.exchange.name(),
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
            self.remote_bytes,
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
        FlushMode::WhenIdle => "idle".to_owned(),
        FlushMode::Timeout(t) => format!("{}ms", t.as_millis()),
    }
}

/// Parses a flush mode: `every` (or `0`), `full` (or `none`), `idle`, or a timeout like
/// `100ms`.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_flush(text: &str) -> std::result::Result<FlushMode, String> {
    match text {
        "every" | "0" | "0ms" => Ok(FlushMode::EveryRecord),
        "full" | "none" => Ok(FlushMode::WhenFull),
        "idle" => Ok(FlushMode::WhenIdle),
        _ => text
            .strip_suffix("ms")
            .and_then(|n| n.parse::<u64>().ok())
            .map(|ms| FlushMode::Timeout(Duration::from_millis(ms)))
            .ok_or_else(|| format!("flush mode {text:?}: expected every, full, idle, or <N>ms")),
    }
}

/// Runs the shuffle.
///
/// # Errors
///
/// [`WeirError::Usage`] for an invalid job; kernel and network errors as they happen.
///
/// # Panics
///
/// When a task thread cannot be started, or a task panicked (a bug; its panic goes on).
#[allow(
    clippy::too_many_lines,
    reason = "hand-wired W4 job; goes when W4 becomes a dataflow program"
)]
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
                    .spawn_scoped(scope, move || {
                        run_sink(gate, job.exchange, sink, sinks, &NEVER)
                    })
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
        remote_bytes: 0,
        valid: expected_received(job, total_sent) == total_received
            && total_sent.records == job.records
            && placed
            && leak_free,
    })
}

/// What one worker process of a multi-process shuffle did: its source's and its sink's
/// tallies, summed by the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// This worker's process index.
    pub process: u32,
    /// Records its source sent, and their checksum.
    pub sent: (u64, u64),
    /// Records its sink received, and their checksum.
    pub received: (u64, u64),
    /// Records its sink received on the wrong sink (a key of another sink's, forward's
    /// records off sink 0) or out of their channel's order.
    pub misplaced: u64,
    /// Time from the connected transport to the sink's end, in microseconds.
    pub wall_us: u64,
    /// Time its source waited for buffers, in microseconds.
    pub back_pressured_us: u64,
    /// Its peak resident set, in bytes.
    pub peak_rss_bytes: u64,
    /// Payload bytes its transport sent.
    pub bytes_sent: u64,
    /// AddCredit messages its transport sent.
    pub credit_messages: u64,
    /// Every segment of its memory manager came home.
    pub leak_free: bool,
}

impl WorkerReport {
    /// One line of `key=value` pairs, what a worker prints last for its launcher.
    pub fn to_line(&self) -> String {
        format!(
            "worker-report process={} sent={},{} received={},{} misplaced={} wall_us={} \
             back_pressured_us={} peak_rss_bytes={} bytes_sent={} credit_messages={} leak_free={}",
            self.process,
            self.sent.0,
            self.sent.1,
            self.received.0,
            self.received.1,
            self.misplaced,
            self.wall_us,
            self.back_pressured_us,
            self.peak_rss_bytes,
            self.bytes_sent,
            self.credit_messages,
            self.leak_free
        )
    }

    /// Parses [`to_line`](Self::to_line)'s output.
    ///
    /// # Errors
    ///
    /// A message naming the missing or malformed field.
    pub fn parse(line: &str) -> std::result::Result<WorkerReport, String> {
        let rest = line
            .strip_prefix("worker-report ")
            .ok_or_else(|| format!("not a worker report: {line:?}"))?;
        let fields: std::collections::HashMap<&str, &str> = rest
            .split(' ')
            .filter_map(|pair| pair.split_once('='))
            .collect();
        let get = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| format!("worker report without {name}: {line:?}"))
        };
        let number = |name: &str| {
            get(name)?
                .parse::<u64>()
                .map_err(|e| format!("worker report field {name}: {e}"))
        };
        let pair = |name: &str| {
            let (a, b) = get(name)?
                .split_once(',')
                .ok_or_else(|| format!("worker report field {name} is not a pair"))?;
            let parse = |v: &str| {
                v.parse::<u64>()
                    .map_err(|e| format!("worker report field {name}: {e}"))
            };
            Ok::<_, String>((parse(a)?, parse(b)?))
        };
        Ok(WorkerReport {
            process: u32::try_from(number("process")?).map_err(|e| e.to_string())?,
            sent: pair("sent")?,
            received: pair("received")?,
            misplaced: number("misplaced")?,
            wall_us: number("wall_us")?,
            back_pressured_us: number("back_pressured_us")?,
            peak_rss_bytes: number("peak_rss_bytes")?,
            bytes_sent: number("bytes_sent")?,
            credit_messages: number("credit_messages")?,
            leak_free: get("leak_free")? == "true",
        })
    }
}

/// Runs this worker's share of a shuffle across `config.peers.len()` worker processes:
/// one source task hash-partitioning its records to one sink per worker, and one sink
/// task reading one channel per worker — local for its own source, remote for the others.
///
/// # Errors
///
/// An invalid job; the transport's startup and failures (a peer lost mid-stream is an
/// error naming the peer, reported by the sink within a connection timeout); kernel
/// errors.
///
/// # Panics
///
/// When a task thread cannot be started, or a task panicked (a bug).
#[allow(
    clippy::too_many_lines,
    reason = "hand-wired W4 worker; goes when W4 becomes a dataflow program"
)]
pub fn run_shuffle_worker(job: &ShuffleJob, config: NetworkConfig) -> Result<WorkerReport> {
    let workers = config.peers.len();
    let job = ShuffleJob {
        sources: workers,
        sinks: workers,
        ..job.clone()
    };
    validate(&job)?;
    let process = config.process;
    let me = process as usize;
    let WorkerExchange {
        manager,
        grant,
        service,
        partition,
        gate,
    } = worker_exchange(config)?;

    let start = Instant::now();
    let cancel_sink = AtomicBool::new(false);
    let writer = RecordWriter::new(partition, job.exchange.selector(me), job.flush);
    let cancel_source = writer.canceller();
    let (sent, received) = std::thread::scope(|scope| {
        let cancel_sink = &cancel_sink;
        let sink = std::thread::Builder::new()
            .name("weir-sink".into())
            .spawn_scoped(scope, move || {
                let result = run_sink(gate, job.exchange, me, workers, cancel_sink);
                if result.is_err() {
                    cancel_source.cancel();
                }
                result
            })
            .expect("the sink thread starts");
        let job = &job;
        let source = std::thread::Builder::new()
            .name("weir-source".into())
            .spawn_scoped(scope, move || {
                let result = write_records(job, me, writer);
                if result.is_err() {
                    cancel_sink.store(true, Ordering::Release);
                }
                result
            })
            .expect("the source thread starts");
        (join(source), join(sink))
    });
    let wall = start.elapsed();
    // The sink's error says what went wrong first (a lost peer); the source's is then
    // only the cancellation.
    let received = received?;
    let sent = sent?;
    let transport = service.metrics();
    service.stop()?;
    drop(grant);
    let leak_free = match manager.leak_check() {
        Ok(()) => true,
        Err(error) => {
            weir::lifecycle::report_line(&format!("weir: worker {process}: {error}"));
            false
        }
    };
    Ok(WorkerReport {
        process,
        sent: (sent.tally.records, sent.tally.sum),
        received: (received.tally.records, received.tally.sum),
        misplaced: received.misplaced,
        wall_us: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
        back_pressured_us: u64::try_from(sent.back_pressured.as_micros()).unwrap_or(u64::MAX),
        peak_rss_bytes: weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes),
        bytes_sent: transport.bytes_sent,
        credit_messages: transport.credit_messages,
        leak_free,
    })
}

/// One worker's end of an all-to-all exchange: its memory, network grant and transport,
/// its output partition (one subpartition per worker, registered as dataset 0) and its
/// input gate (one channel per worker: local for its own partition, remote for the
/// others').
#[derive(Debug)]
pub struct WorkerExchange {
    /// The worker's memory manager (network grant and incoming events).
    pub manager: MemoryManager,
    /// The network grant.
    pub grant: NetworkBufferPool,
    /// The transport.
    pub service: NetworkService,
    /// The worker's output.
    pub partition: ResultPartition,
    /// The worker's input.
    pub gate: InputGate,
}

/// Sets up one worker's end of an all-to-all exchange between `config.peers` workers,
/// with the netstack's default buffers per channel and per gate.
///
/// # Errors
///
/// The transport's startup (peers that cannot be reached); memory the budget cannot
/// grant.
///
/// # Panics
///
/// When there are more than `u32::MAX` workers.
pub fn worker_exchange(config: NetworkConfig) -> Result<WorkerExchange> {
    let workers = config.peers.len();
    let process = config.process;
    let buffers = ExchangeBuffers::default();
    let segments =
        ExchangeBuffers::partition_segments(workers) + buffers.gate_segments(workers - 1);
    let manager = MemoryManager::new(MemoryConfig::with_budget(
        (segments + EVENT_SEGMENTS) * SEGMENT_SIZE_DEFAULT,
    ))?;
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, segments)?;
    let service = NetworkService::start(config, manager.owner("network events"))?;
    let env = ExchangeEnvironment::new(&grant, Some(&service), buffers);
    let id = |producer| PartitionId {
        dataset: 0,
        producer,
    };
    let partition = env.partition(id(process), workers)?;
    let sources = (0..workers)
        .map(|producer| {
            let producer = u32::try_from(producer).expect("few workers");
            match producer == process {
                true => ChannelSource::Local(
                    partition.subpartition(SubpartitionIndex::from_usize(process as usize)),
                ),
                false => ChannelSource::Remote {
                    peer: producer,
                    partition: id(producer),
                    subpartition: process,
                },
            }
        })
        .collect();
    let gate = env.gate(sources)?;
    Ok(WorkerExchange {
        manager,
        grant,
        service,
        partition,
        gate,
    })
}

/// Combines the reports of every worker of a shuffle into the job's report.
pub fn combine_workers(job: &ShuffleJob, reports: &[WorkerReport]) -> ShuffleReport {
    let sum = |f: fn(&WorkerReport) -> (u64, u64)| {
        reports.iter().fold((0u64, 0u64), |(n, s), r| {
            let (rn, rs) = f(r);
            (n + rn, s.wrapping_add(rs))
        })
    };
    let sent = sum(|r| r.sent);
    let received = sum(|r| r.received);
    let complete = reports.len() == job.workers;
    ShuffleReport {
        records_sent: sent.0,
        records_received: received.0,
        wall_s: reports.iter().map(|r| r.wall_us).max().unwrap_or(0) as f64 / 1e6,
        back_pressured_s: reports.iter().map(|r| r.back_pressured_us).sum::<u64>() as f64 / 1e6,
        buffers: 0,
        peak_rss_bytes: reports.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        network_bytes: 0,
        remote_bytes: reports.iter().map(|r| r.bytes_sent).sum(),
        valid: complete
            && expected_received(
                job,
                Tally {
                    records: sent.0,
                    sum: sent.1,
                },
            ) == (Tally {
                records: received.0,
                sum: received.1,
            })
            && sent.0 == job.records
            && reports.iter().all(|r| r.misplaced == 0 && r.leak_free),
    }
}

/// What the sinks must receive when the sources sent `sent`: every record once, or once
/// per sink for broadcast.
fn expected_received(job: &ShuffleJob, sent: Tally) -> Tally {
    let copies = job.exchange.copies(job.sinks);
    Tally {
        records: sent.records * copies,
        sum: sent.sum.wrapping_mul(copies),
    }
}

fn validate(job: &ShuffleJob) -> Result<()> {
    let invalid = |message: String| Err(WeirError::Usage { message });
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

#[derive(Default)]
struct SinkTally {
    tally: Tally,
    misplaced: u64,
    buffers: u64,
}

/// A word-wise hash of a record, four independent lanes of 8-byte words so the
/// multiplications overlap (fast enough not to dominate a 1 KiB record's cost).
#[inline]
fn record_hash(record: &[u8]) -> u64 {
    const K: u64 = 0x0000_0100_0000_01b3;
    let mut lanes = [
        0x9e37_79b9_7f4a_7c15u64 ^ record.len() as u64,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x85eb_ca77_c2b2_ae63,
    ];
    let mut blocks = record.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            *lane = (*lane ^ word).wrapping_mul(K).rotate_left(23);
        }
    }
    // The tail: whole words into the lanes in turn, then single bytes.
    let mut words = blocks.remainder().chunks_exact(8);
    for (lane, word) in lanes.iter_mut().zip(&mut words) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        *lane = (*lane ^ word).wrapping_mul(K).rotate_left(23);
    }
    for &byte in words.remainder() {
        lanes[3] = (lanes[3] ^ u64::from(byte)).wrapping_mul(K);
    }
    mix(lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(31) ^ lanes[3].rotate_left(47))
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
    let writer = RecordWriter::new(partition, job.exchange.selector(source), job.flush);
    write_records(job, source, writer)
}

fn write_records(job: &ShuffleJob, source: usize, mut writer: KeyedWriter) -> Result<SourceTally> {
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

fn run_sink(
    gate: InputGate,
    exchange: Exchange,
    sink: usize,
    sinks: usize,
    cancel: &AtomicBool,
) -> Result<SinkTally> {
    let mut check = SinkCheck {
        exchange,
        sink,
        sinks: u32::try_from(sinks).expect("at most 128 sinks"),
        cancel,
        tally: SinkTally::default(),
        last_value: vec![None; gate.channel_count()],
    };
    GateReader::new(gate).run(&mut check)?;
    Ok(check.tally)
}

/// A sink's checks on what it reads: the tally, placement, and each channel's order.
struct SinkCheck<'a> {
    exchange: Exchange,
    sink: usize,
    sinks: u32,
    cancel: &'a AtomicBool,
    tally: SinkTally,
    // The value (record index) last received per channel: a source's records come in
    // increasing index order, so each channel's must too.
    last_value: Vec<Option<u64>>,
}

impl GateHandler for SinkCheck<'_> {
    type Error = WeirError;

    #[inline]
    fn record(&mut self, channel: ChannelIndex, record: &[u8]) -> Result<()> {
        self.tally.tally.add(record);
        let value = u64::from_le_bytes(record[8..16].try_into().expect("16 bytes"));
        let last = &mut self.last_value[channel.as_usize()];
        let in_order = last.is_none_or(|last| value > last);
        *last = Some(value);
        self.tally.misplaced +=
            u64::from(!in_order || !self.exchange.placed(record, self.sink, self.sinks));
        Ok(())
    }

    fn buffer(&mut self, _gate: &InputGate) -> Result<()> {
        self.tally.buffers += 1;
        Ok(())
    }

    fn check_cancelled(&mut self) -> Result<()> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(NetError::Cancelled.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_shuffle_is_valid_in_every_flush_mode_and_record_size() {
        // Records larger than a 32 KiB buffer included.
        for (flush, record_bytes, records) in [
            (FlushMode::default(), 16, 20_000),
            (FlushMode::EveryRecord, 100, 5_000),
            (FlushMode::WhenFull, 1024, 5_000),
            (FlushMode::Timeout(Duration::from_millis(1)), 40_000, 300),
        ] {
            let job = ShuffleJob {
                records,
                record_bytes,
                flush,
                ..ShuffleJob::default()
            };
            let report = run_shuffle(&job).unwrap();
            assert!(report.valid, "{flush:?} {record_bytes}: {report:?}");
            assert_eq!(report.records_received, records);
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
                .contains("expected every, full, idle")
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
