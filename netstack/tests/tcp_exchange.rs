//! Two workers in one test process, each with its own memory manager, grant and transport,
//! connected over loopback: records written on one arrive on the other through a remote
//! input channel under credit-based flow control, once and in order, and every segment of
//! both workers comes home.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::input::{RemoteChannelSpec, RemoteInputChannel};
use weir_netstack::partition::ForwardSelector;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::transport::{NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, NetworkBufferPool, RecordReader,
    RecordWriter, ResultPartition,
};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn manager() -> Arc<MemoryManager> {
    Arc::new(
        MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(64 * 4096)
        })
        .unwrap(),
    )
}

/// Starts both services (each waits for the other at startup).
fn start_pair(managers: &[Arc<MemoryManager>; 2]) -> (NetworkService, NetworkService) {
    let peers = free_addresses(2);
    let handles: Vec<_> = (0..2u32)
        .map(|process| {
            let config = NetworkConfig::new(process, peers.clone());
            let owner = managers[process as usize].owner("network events");
            std::thread::spawn(move || NetworkService::start(config, owner).unwrap())
        })
        .collect();
    let mut services = handles.into_iter().map(|h| h.join().unwrap());
    (services.next().unwrap(), services.next().unwrap())
}

#[test]
fn records_cross_the_connection_once_in_order_under_credit() {
    const RECORDS: u64 = 200_000;
    let managers = [manager(), manager()];
    let (producer_side, consumer_side) = start_pair(&managers);

    // Worker 0: one partition of one subpartition, registered for remote readers.
    let owner0 = managers[0].owner("network");
    let grant0 = NetworkBufferPool::new(&owner0, 16).unwrap();
    let partition = ResultPartition::new(
        grant0.create_pool(LocalPoolSpec::for_partition(1)).unwrap(),
        1,
    );
    let id = PartitionId {
        dataset: 7,
        producer: 0,
    };
    producer_side.register_partition(id, &partition);

    // Worker 1: a gate of one remote channel with 2 exclusive buffers and a floating pool.
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let spec = RemoteChannelSpec {
        index: ChannelIndex(0),
        receiver: consumer_side.next_receiver(),
        partition: id,
        subpartition: 0,
        peer: consumer_side.peer_name(0),
    };
    let channel = RemoteInputChannel::new(
        spec,
        2,
        &grant1,
        Arc::clone(&floating),
        consumer_side.channel_events(),
        Duration::from_secs(5),
    )
    .unwrap();
    consumer_side.open_channel(0, channel.shared());

    let reader = std::thread::spawn(move || {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut gate = InputGate::new(vec![channel]);
        let mut records = RecordReader::new(ChannelIndex(0));
        let mut next = 0u64;
        let mut listening = false;
        loop {
            match gate.poll_next().unwrap() {
                GatePoll::Buffer(_, buffer) => {
                    listening = false;
                    if buffer.data_type() == DataType::Data {
                        records.push(buffer);
                        while let Some(record) = records.next_record().unwrap() {
                            let value = u64::from_le_bytes(record[..8].try_into().unwrap());
                            assert_eq!(value, next);
                            assert_eq!(record.len(), 8 + (value % 50) as usize);
                            next += 1;
                        }
                    } else if buffer.data_type() == DataType::EndOfPartition {
                        records.finish().unwrap();
                    }
                }
                GatePoll::Pending if !listening => {
                    gate.register_listener(&waker);
                    listening = true;
                }
                GatePoll::Pending => {
                    std::thread::park_timeout(Duration::from_millis(100));
                    listening = false;
                }
                GatePoll::EndOfPartitions => return next,
            }
        }
    });

    let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::default());
    let mut record = [0u8; 8 + 49];
    for i in 0..RECORDS {
        let len = 8 + (i % 50) as usize;
        record[..8].copy_from_slice(&i.to_le_bytes());
        writer.emit(&record[..len]).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(reader.join().unwrap(), RECORDS);
    let sent = producer_side.metrics();
    let received = consumer_side.metrics();
    assert_eq!(sent.buffers_sent, received.buffers_received);
    assert!(received.credit_messages > 0, "{received:?}");
    drop(writer);
    producer_side.stop().unwrap();
    consumer_side.stop().unwrap();
    drop((floating, grant0, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
}
