//! Backpressure end to end: a fast producer and a slow consumer in one process. The
//! producer must wait (its writer reports back-pressured time), its pool must never hold
//! more than its maximum plus overdraft although the grant has far more free, the process's
//! network memory must stay the fixed grant, and every record must arrive once, in order.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::partition::ForwardSelector;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, LocalInputChannel, NetworkBufferPool,
    RecordReader, RecordWriter, ResultPartition, SubpartitionIndex,
};

#[test]
fn a_slow_consumer_back_pressures_the_producer_within_the_pools_bounds() {
    const GRANT: usize = 64;
    const RECORDS: u64 = 20_000;
    let manager = Arc::new(
        MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(GRANT * 4096)
        })
        .unwrap(),
    );
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, GRANT).unwrap();
    let spec = LocalPoolSpec::for_partition(1);
    let partition = ResultPartition::new(grant.create_pool(spec).unwrap(), 1);
    let channel = LocalInputChannel::new(
        ChannelIndex(0),
        partition.subpartition(SubpartitionIndex(0)),
    );
    let used_at_start = manager.stats().used_bytes;

    // Samples the grant while the exchange runs: the pool's share never exceeds its bound.
    let done = Arc::new(AtomicBool::new(false));
    let most_lent = Arc::new(AtomicUsize::new(0));
    let monitor = {
        let (grant, done, most_lent) = (grant.clone(), Arc::clone(&done), Arc::clone(&most_lent));
        let manager = Arc::clone(&manager);
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let lent = grant.total_segments() - grant.free_segments();
                most_lent.fetch_max(lent, Ordering::AcqRel);
                assert_eq!(
                    manager.stats().used_bytes,
                    used_at_start,
                    "network memory is fixed"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };

    let consumer = std::thread::spawn(move || {
        let waker = common::thread_waker();
        let mut gate = InputGate::new(vec![channel]);
        let mut reader = RecordReader::new(ChannelIndex(0));
        let mut next = 0u64;
        let mut buffers = 0u64;
        let mut listening = false;
        loop {
            match gate.poll_next().unwrap() {
                GatePoll::Buffer(_, buffer) => {
                    listening = false;
                    if buffer.data_type() != DataType::Data {
                        continue;
                    }
                    buffers += 1;
                    // Slow: 1 ms per buffer for the first 100 buffers.
                    if buffers <= 100 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    reader.push(buffer);
                    while let Some(record) = reader.next_record().unwrap() {
                        let value = u64::from_le_bytes(record[..8].try_into().unwrap());
                        assert_eq!(value, next, "in order, each once");
                        next += 1;
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
                GatePoll::EndOfPartitions => return next,
            }
        }
    });

    let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::WhenFull);
    let mut record = [0u8; 100];
    for i in 0..RECORDS {
        record[..8].copy_from_slice(&i.to_le_bytes());
        writer.emit(&record).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(consumer.join().unwrap(), RECORDS);
    done.store(true, Ordering::Release);
    monitor.join().unwrap();

    let metrics = writer.metrics();
    assert!(metrics.back_pressured > Duration::ZERO, "{metrics:?}");
    assert!(metrics.no_buffer_answers > 0);
    let bound = spec.max + spec.max_overdraft;
    let lent = most_lent.load(Ordering::Acquire);
    assert!(
        lent <= bound,
        "the pool held {lent} segments, bound {bound}"
    );
    assert!(lent >= spec.min, "the pool used its buffers: {lent}");
    drop((writer, grant));
    manager.leak_check().unwrap();
}
