//! W6: barriers under backpressure (docs/WORKLOADS.md). Each worker runs a source that emits as
//! fast as it may (always back-pressured) and a slow map (a fixed busy time per record)
//! with its sink chained to it; records go from every source to every map by key. Every
//! interval the sources inject an aligned barrier; its delay is the time from its
//! scheduled injection until the slow map's gate has it on every input channel — the time
//! it queued behind the data in flight, plus alignment. Buffer debloating shrinks that
//! data to about `target` worth of the map's throughput.
//!
//! ```text
//!   source (as fast as credit allows) ──hash──▶ map gate (debloating on/off) ──▶ busy
//!     every 2 s: Barrier(k, scheduled, injected)  aligned barrier ──▶ delay = now − scheduled
//! ```
//!
//! The launcher passes a wall-clock epoch so both workers share the barrier schedule.
//! Everything is measured in the window after the warm-up (default 10 s of 40): barriers
//! scheduled before it are aligned but not counted, and throughput, gate samples and task
//! times cover the window only, so on and off are compared on the same footing. The
//! warm-up covers connection set-up, the sources filling every queue, and the debloater's
//! first moving-average span (4 s); it is stated in the JSON line (`warmup_s`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_kernel::constants::SEGMENT_SIZE_DEFAULT;
use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::constants::EVENT_SEGMENTS;
use weir_netstack::debloat::{DebloatConfig, SystemClock};
use weir_netstack::partition::HashSelector;
use weir_netstack::transport::{NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, DataType, GateHandler, GateReader, InputGate, NetError, NetworkBuffer,
    RecordWriter, TaskTimeMeter,
};
use weir_netstack::{
    ChannelSource, ExchangeBuffers, ExchangeEnvironment, NetworkBufferPool, ResultPartition,
    SubpartitionIndex,
};

use crate::workloads::w6_report::TaskMsPerSecond;
pub use crate::workloads::w6_report::{BarrierJob, BarrierReport, BarrierWorkerReport};
use weir::error::{Result, WeirError};

/// How often the map samples its gate's metrics.
const GATE_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// The longest the map parks while its gate has nothing: how often it checks its window
/// without input.
const MAP_PARK_TIMEOUT: Duration = Duration::from_millis(20);

fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

fn key_hash(record: &[u8]) -> u32 {
    u32::from_le_bytes(
        record[..4]
            .try_into()
            .expect("a record starts with its key"),
    )
}

/// Runs this worker's source and slow map.
///
/// # Errors
///
/// The transport's startup and failures (a peer lost mid-stream is an error naming the
/// peer); memory the budget cannot grant; an invalid debloating configuration.
///
/// # Panics
///
/// When a task panicked (a bug).
pub fn run_barrier_worker(job: &BarrierJob, config: NetworkConfig) -> Result<BarrierWorkerReport> {
    let process = config.process;
    let WorkerExchange {
        manager,
        grant,
        service,
        partition,
        mut gate,
    } = worker_exchange(config)?;
    let segment_size = manager.segment_size();
    if job.debloat {
        let debloat = DebloatConfig {
            target: job.target,
            ..DebloatConfig::new(segment_size)
        };
        gate.enable_debloating(debloat, Arc::new(SystemClock::default()))?;
    }
    let selector = HashSelector::new(key_hash as fn(&[u8]) -> u32);
    let mut writer = RecordWriter::new(partition, selector, weir_netstack::FlushMode::default());
    let cancel_source = writer.canceller();
    let cancel_map = AtomicBool::new(false);
    let (source, map) = std::thread::scope(|scope| {
        let cancel_map = &cancel_map;
        let map = scope.spawn(move || {
            let result = slow_map(gate, job, segment_size, process, cancel_map);
            if result.is_err() {
                cancel_source.cancel();
            }
            result
        });
        let source = scope.spawn(move || {
            let result = source(&mut writer, process, job);
            if result.is_err() {
                cancel_map.store(true, Ordering::Release);
            }
            result
        });
        (
            source
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            map.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let mut report = map?;
    report.source = source?;
    service.stop()?;
    drop(grant);
    manager.leak_check()?;
    Ok(report)
}

/// The measured window in wall-clock nanoseconds: from the end of the warm-up to the end
/// of emission.
fn window_ns(job: &BarrierJob) -> (u64, u64) {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    (
        job.epoch_ns.saturating_add(nanos(job.warmup)),
        job.epoch_ns.saturating_add(nanos(job.duration)),
    )
}

/// Emits records as fast as it may from the epoch for the job's duration, and a barrier
/// (barrier number and scheduled time) at every interval; answers where its time went in
/// the measured window.
fn source<S: weir_netstack::ChannelSelector>(
    writer: &mut RecordWriter<S>,
    process: u32,
    job: &BarrierJob,
) -> Result<TaskMsPerSecond> {
    if let Some(wait) = job.epoch_ns.checked_sub(now_ns()) {
        std::thread::sleep(Duration::from_nanos(wait));
    }
    let (window_start, end) = window_ns(job);
    let interval = u64::try_from(job.interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut meter = TaskTimeMeter::new(Arc::new(SystemClock::default()));
    let mut waited = Duration::ZERO;
    let mut in_window = false;
    let mut next_barrier = 1u64;
    let mut record = [0u8; 16];
    let mut key = u64::from(process) << 48;
    let mut result = Ok(());
    while result.is_ok() {
        let now = now_ns();
        let back_pressured = writer.metrics().back_pressured;
        meter.add_back_pressured(back_pressured.saturating_sub(waited));
        waited = back_pressured;
        if !in_window && now >= window_start {
            meter.take();
            in_window = true;
        }
        if now >= end {
            break;
        }
        let scheduled = job.epoch_ns + next_barrier * interval;
        if now >= scheduled {
            // Barrier number, scheduled time, and the time it is really injected (later
            // when the source was waiting for a buffer or for a CPU).
            let mut payload = [0u8; 24];
            payload[..8].copy_from_slice(&next_barrier.to_le_bytes());
            payload[8..16].copy_from_slice(&scheduled.to_le_bytes());
            payload[16..].copy_from_slice(&now_ns().to_le_bytes());
            result = writer.broadcast_event(DataType::Barrier, &payload);
            next_barrier += 1;
            continue;
        }
        // A batch of records between clock reads.
        for _ in 0..64 {
            key = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
            record[..8].copy_from_slice(&key.to_le_bytes());
            if let Err(error) = writer.emit(&record) {
                result = Err(error);
                break;
            }
        }
    }
    let times = meter.take();
    match result {
        Ok(()) => {
            writer.finish()?;
            Ok(times.into())
        }
        Err(error) => {
            writer.release();
            Err(error.into())
        }
    }
}

/// What the slow map measures in the window.
struct MapWindow {
    start: u64,
    end: u64,
    started: bool,
    ended: bool,
    records: u64,
    next_sample: Instant,
}

/// Spins `busy` per record; records each aligned barrier's delay and alignment time, and
/// samples its gate, in the measured window.
fn slow_map(
    gate: InputGate,
    job: &BarrierJob,
    segment_size: usize,
    process: u32,
    cancel: &AtomicBool,
) -> Result<BarrierWorkerReport> {
    let (start, end) = window_ns(job);
    let mut map = SlowMap {
        job,
        segment_size,
        cancel,
        window: MapWindow {
            start,
            end,
            started: false,
            ended: false,
            records: 0,
            next_sample: Instant::now(),
        },
        report: BarrierWorkerReport {
            process,
            ..BarrierWorkerReport::default()
        },
        meter: TaskTimeMeter::new(Arc::new(SystemClock::default())),
    };
    let mut reader = GateReader::new(gate).with_park_timeout(MAP_PARK_TIMEOUT);
    map.step(reader.gate());
    reader.run(&mut map)?;
    map.report.buffer_size = map.buffer_size(reader.gate());
    Ok(map.report)
}

/// The slow map's handler: its records, barriers, window and gate samples.
struct SlowMap<'a> {
    job: &'a BarrierJob,
    segment_size: usize,
    cancel: &'a AtomicBool,
    window: MapWindow,
    report: BarrierWorkerReport,
    meter: TaskTimeMeter,
}

impl SlowMap<'_> {
    /// The buffer size its producers use: debloated, or whole segments.
    fn buffer_size(&self, gate: &InputGate) -> usize {
        buffer_size(self.job.debloat, self.segment_size, gate)
    }

    fn step(&mut self, gate: &InputGate) {
        let (debloat, segment_size) = (self.job.debloat, self.segment_size);
        window_step(
            &mut self.window,
            &mut self.meter,
            gate,
            &mut self.report,
            |gate| buffer_size(debloat, segment_size, gate),
        );
    }
}

impl GateHandler for SlowMap<'_> {
    type Error = WeirError;

    fn record(&mut self, _channel: ChannelIndex, _record: &[u8]) -> Result<()> {
        let until = Instant::now() + self.job.busy;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.window.records += 1;
        Ok(())
    }

    fn buffer(&mut self, gate: &InputGate) -> Result<()> {
        self.step(gate);
        self.meter.busy();
        Ok(())
    }

    fn event(
        &mut self,
        _channel: ChannelIndex,
        buffer: &NetworkBuffer,
        gate: &InputGate,
    ) -> Result<()> {
        if buffer.data_type() != DataType::Barrier {
            return Ok(());
        }
        let (scheduled, injected) = barrier_times(buffer.as_bytes())?;
        if scheduled >= self.window.start && scheduled < self.window.end {
            let report = &mut self.report;
            report.delays_ns.push(now_ns().saturating_sub(scheduled));
            report
                .injection_lags_ns
                .push(injected.saturating_sub(scheduled));
            let alignment = gate.metrics().last_alignment;
            report
                .alignments_ns
                .push(u64::try_from(alignment.as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(())
    }

    fn check_cancelled(&mut self) -> Result<()> {
        if self.cancel.load(Ordering::Acquire) {
            return Err(NetError::Cancelled.into());
        }
        self.meter.idle();
        Ok(())
    }

    fn parked(&mut self, gate: &InputGate, _slept: Duration) {
        self.step(gate);
    }
}

/// The buffer size a gate's producers use: debloated, or whole segments.
fn buffer_size(debloat: bool, segment_size: usize, gate: &InputGate) -> usize {
    if debloat {
        gate.metrics().debloated_buffer_size
    } else {
        segment_size
    }
}

/// The scheduled and the injection time of a barrier's payload.
fn barrier_times(payload: &[u8]) -> Result<(u64, u64)> {
    let time = |at: usize| {
        payload
            .get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| WeirError::Data {
                message: format!("a barrier of {} bytes, not 24", payload.len()),
            })
    };
    Ok((time(8)?, time(16)?))
}

/// Starts and ends the measured window of the slow map, and samples its gate in it.
fn window_step(
    window: &mut MapWindow,
    meter: &mut TaskTimeMeter,
    gate: &InputGate,
    report: &mut BarrierWorkerReport,
    buffer_size: impl Fn(&InputGate) -> usize,
) {
    if window.ended {
        return;
    }
    let now = now_ns();
    if !window.started {
        if now < window.start {
            return;
        }
        window.started = true;
        window.records = 0;
        meter.take();
    }
    if now >= window.end {
        window.ended = true;
        let times = meter.take();
        report.records = window.records;
        report.window_us = u64::try_from(times.elapsed.as_micros()).unwrap_or(u64::MAX);
        report.map = times.into();
        return;
    }
    if Instant::now() >= window.next_sample {
        window.next_sample = Instant::now() + GATE_SAMPLE_INTERVAL;
        report.gate.add(&gate.metrics(), buffer_size(gate));
    }
}

/// Wall-clock nanoseconds `delay` from now: the epoch a launcher hands its workers.
pub fn epoch_after(delay: Duration) -> u64 {
    now_ns() + u64::try_from(delay.as_nanos()).unwrap_or(0)
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
