//! M3 (docs/WORKLOADS.md): records through the in-process network stack, one producer thread and
//! one consumer thread. The producer writes through a `RecordWriter` (framing, buffer
//! hand-off, waiting for buffers); the consumer reads an `InputGate` of local channels with
//! a `RecordReader` per channel (zero-copy within a buffer) and touches each record's first
//! byte. `forward`: one subpartition. `hash`: four subpartitions by key, all read by the
//! one consumer through a gate of four channels. Records of 16 bytes and 1 KiB; buffer
//! timeout 100 ms (the default), so buffers go out when full.
//!
//! Run: `cargo bench --bench subpartition_throughput`. Flink's own network benchmark
//! reports 50–70 M records/s per receiver (docs/WORKLOADS.md, M3).

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use weir::kernel::memory::{MemoryConfig, MemoryManager};
use weir::netstack::partition::{ChannelSelector, ForwardSelector, HashSelector};
use weir::netstack::pool::LocalPoolSpec;
use weir::netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, LocalInputChannel, NetworkBufferPool,
    RecordReader, RecordWriter, ResultPartition, SubpartitionIndex,
};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn key_hash(record: &[u8]) -> u32 {
    u32::from_le_bytes(
        record[..4]
            .try_into()
            .expect("a record of at least 4 bytes"),
    )
}

/// Sends `records` records of `record_bytes` bytes through `subpartitions` subpartitions
/// and returns the time from the first write to the consumer's end.
fn run<S: ChannelSelector + 'static>(
    selector: S,
    subpartitions: usize,
    records: u64,
    record_bytes: usize,
) -> Duration {
    let spec = LocalPoolSpec::for_partition(subpartitions);
    let manager = MemoryManager::new(MemoryConfig::with_budget(spec.max * 32 * 1024))
        .expect("a small manager");
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, spec.max).expect("the grant");
    let partition = ResultPartition::new(grant.create_pool(spec).expect("the pool"), subpartitions);
    let channels = (0..subpartitions)
        .map(|i| {
            let index = ChannelIndex(u32::try_from(i).expect("few channels"));
            LocalInputChannel::new(
                index,
                partition.subpartition(SubpartitionIndex::from_usize(i)),
            )
        })
        .collect();
    let gate = InputGate::new(channels);
    let start = Instant::now();
    let consumer = std::thread::spawn(move || consume(gate));
    let mut writer = RecordWriter::new(partition, selector, FlushMode::default());
    let mut record = vec![7u8; record_bytes];
    for i in 0..records {
        record[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        writer.emit(&record).expect("no cancellation");
    }
    writer.finish().expect("no cancellation");
    let received = consumer.join().expect("the consumer");
    let elapsed = start.elapsed();
    assert_eq!(received, records);
    drop((writer, grant));
    manager.leak_check().expect("every segment home");
    elapsed
}

fn consume(mut gate: InputGate) -> u64 {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut readers: Vec<RecordReader> = (0..gate.channel_count())
        .map(|i| RecordReader::new(ChannelIndex(u32::try_from(i).expect("few channels"))))
        .collect();
    let mut count = 0u64;
    let mut listening = false;
    loop {
        match gate.poll_next().expect("local channels do not fail") {
            GatePoll::Buffer(channel, buffer) => {
                listening = false;
                if buffer.data_type() == DataType::Data {
                    let reader = &mut readers[channel.as_usize()];
                    reader.push(buffer);
                    while let Some(record) = reader.next_record().expect("well framed") {
                        black_box(record[0]);
                        count += 1;
                    }
                }
            }
            GatePoll::Pending if !listening => {
                gate.register_listener(&waker);
                listening = true;
            }
            GatePoll::Pending => {
                std::thread::park();
                listening = false;
            }
            GatePoll::EndOfPartitions => return count,
        }
    }
}

fn subpartition_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("subpartition_throughput");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for (record_bytes, records) in [(16usize, 2_000_000u64), (1024, 200_000)] {
        group.throughput(Throughput::Elements(records));
        group.bench_function(BenchmarkId::new("forward", record_bytes), |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| run(ForwardSelector, 1, records, record_bytes))
                    .sum()
            });
        });
        group.bench_function(BenchmarkId::new("hash", record_bytes), |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| run(HashSelector::new(key_hash), 4, records, record_bytes))
                    .sum()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, subpartition_throughput);
criterion_main!(benches);
