//! Buffer debloating end to end, in one process: a fast producer, a consumer that takes
//! 1 MB/s, and a gate debloating toward 200 ms of data in flight. Once settled, the bytes
//! actually between them (queued in the subpartition, held by the gate, handed out and not
//! yet consumed) stay within ±30% of throughput × target, where without debloating the
//! whole pool (10 segments of 32 KiB) would sit full.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::debloat::{DebloatConfig, SystemClock};
use weir_netstack::partition::ForwardSelector;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, LocalInputChannel, NetworkBufferPool,
    RecordReader, RecordWriter, ResultPartition, SubpartitionIndex,
};

#[test]
fn in_flight_bytes_converge_to_throughput_times_target() {
    const RATE: f64 = 1e6;
    const TARGET: Duration = Duration::from_millis(200);
    let manager = MemoryManager::new(MemoryConfig::with_budget(32 * 32 * 1024)).unwrap();
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, 32).unwrap();
    let spec = LocalPoolSpec::for_partition(1);
    let partition = ResultPartition::new(grant.create_pool(spec).unwrap(), 1);
    let subpartition = partition.subpartition(SubpartitionIndex(0));
    let mut gate = InputGate::new(vec![LocalInputChannel::new(
        ChannelIndex(0),
        Arc::clone(&subpartition),
    )]);
    let config = DebloatConfig {
        target: TARGET,
        period: Duration::from_millis(50),
        samples: 5,
        ..DebloatConfig::new(32 * 1024)
    };
    gate.enable_debloating(config, Arc::new(SystemClock::default()))
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::WhenFull);
            let canceller = writer.canceller();
            let stop = std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                canceller.cancel();
            });
            while writer.emit(&[7u8; 96]).is_ok() {}
            writer.release();
            stop.join().unwrap();
        })
    };

    // The consumer: 1 MB/s, paced by the clock.
    let waker = common::thread_waker();
    let mut reader = RecordReader::new(ChannelIndex(0));
    let start = Instant::now();
    let mut consumed = 0f64;
    let mut samples = Vec::new();
    let mut next_sample = Duration::from_millis(1500);
    while start.elapsed() < Duration::from_millis(3000) {
        match gate.poll_next().unwrap() {
            GatePoll::Buffer(_, buffer) if buffer.data_type() == DataType::Data => {
                consumed += buffer.len() as f64;
                reader.push(buffer);
                while reader.next_record().unwrap().is_some() {}
                let due = Duration::from_secs_f64(consumed / RATE);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            GatePoll::Buffer(..) => {}
            GatePoll::Pending => {
                gate.register_listener(&waker);
                std::thread::park_timeout(Duration::from_millis(5));
            }
            GatePoll::EndOfPartitions => break,
        }
        if start.elapsed() >= next_sample {
            next_sample += Duration::from_millis(100);
            // What is really between the writer and the consumer, not the gate's estimate:
            // queued in the subpartition, held in the gate, and handed out but not yet
            // due (the consumer takes a buffer at once and then sleeps off its bytes).
            let due = start.elapsed().as_secs_f64() * RATE;
            let in_flight = subpartition.metrics().queued_bytes
                + gate.metrics().queued_bytes
                + (consumed - due).max(0.0) as u64;
            samples.push(in_flight as f64);
        }
    }
    done.store(true, Ordering::Release);
    // Drain so the producer's last wait ends, then stop it.
    while let Ok(GatePoll::Buffer(..)) = gate.poll_next() {}
    producer.join().unwrap();

    let metrics = gate.metrics();
    let wanted = RATE * TARGET.as_secs_f64();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    assert!(metrics.debloated_buffer_size < 32 * 1024, "{metrics:?}");
    eprintln!("in flight: mean {mean:.0} bytes, wanted {wanted:.0}; {metrics:?}");
    assert!(
        (mean - wanted).abs() <= 0.3 * wanted,
        "in flight {mean:.0} bytes, wanted {wanted:.0} (±30%); samples {samples:?}; {metrics:?}"
    );
    drop((gate, reader, subpartition, grant));
    manager.leak_check().unwrap();
}
