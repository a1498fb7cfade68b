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
use weir_netstack::pool::LocalBufferPool;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::transport::{NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, NetError, NetworkBufferPool,
    RecordReader, RecordWriter, ResultPartition, SubpartitionIndex,
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
    start_pair_with(managers, |_| {}).0
}

/// As `start_pair`, with each configuration adjusted by `tweak`; also the addresses.
fn start_pair_with(
    managers: &[Arc<MemoryManager>; 2],
    tweak: impl Fn(&mut NetworkConfig),
) -> ((NetworkService, NetworkService), Vec<SocketAddr>) {
    let peers = free_addresses(2);
    let handles: Vec<_> = (0..2u32)
        .map(|process| {
            let mut config = NetworkConfig::new(process, peers.clone());
            tweak(&mut config);
            let owner = managers[process as usize].owner("network events");
            std::thread::spawn(move || NetworkService::start(config, owner).unwrap())
        })
        .collect();
    let mut services = handles.into_iter().map(|h| h.join().unwrap());
    ((services.next().unwrap(), services.next().unwrap()), peers)
}

/// A remote channel of worker 1 reading `partition`'s `subpartition` at worker 0.
fn remote_channel(
    consumer_side: &NetworkService,
    grant: &NetworkBufferPool,
    floating: &Arc<LocalBufferPool>,
    index: u32,
    partition: PartitionId,
    subpartition: u32,
) -> RemoteInputChannel {
    let spec = RemoteChannelSpec {
        index: ChannelIndex(index),
        receiver: consumer_side.next_receiver(),
        partition,
        subpartition,
        peer: consumer_side.peer_name(0),
    };
    let channel = RemoteInputChannel::new(
        spec,
        2,
        grant,
        Arc::clone(floating),
        consumer_side.channel_events(),
        Duration::from_secs(5),
    )
    .unwrap();
    consumer_side.open_channel(0, channel.shared());
    channel
}

/// Reads a one-channel gate until its end or an error; counts records.
fn read_all(channel: RemoteInputChannel) -> Result<u64, NetError> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut gate = InputGate::new(vec![channel]);
    let mut records = RecordReader::new(ChannelIndex(0));
    let mut count = 0u64;
    let mut listening = false;
    loop {
        match gate.poll_next()? {
            GatePoll::Buffer(_, buffer) => {
                listening = false;
                if buffer.data_type() == DataType::Data {
                    records.push(buffer);
                    while records.next_record()?.is_some() {
                        count += 1;
                    }
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
            GatePoll::EndOfPartitions => return Ok(count),
        }
    }
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

#[test]
fn a_partition_never_registered_fails_the_channel_with_partition_not_found() {
    let managers = [manager(), manager()];
    let ((producer_side, consumer_side), _) = start_pair_with(&managers, |config| {
        config.request_timeout = Duration::from_millis(300);
    });
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let missing = PartitionId {
        dataset: 1,
        producer: 9,
    };
    let channel = remote_channel(&consumer_side, &grant1, &floating, 0, missing, 0);
    let started = std::time::Instant::now();
    let error = read_all(channel).unwrap_err().to_string();
    assert!(error.contains("worker 0 at 127.0.0.1:"), "{error}");
    assert!(
        error.contains("partition 1.9 subpartition 0 was not registered"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    producer_side.stop().unwrap();
    consumer_side.stop().unwrap();
    drop((floating, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
}

/// Two channels share the connection; one consumer never reads. The other channel still
/// gets every record: whatever is on the wire has a buffer waiting for it.
#[test]
fn a_stalled_channel_does_not_block_the_others_on_the_connection() {
    const RECORDS: u64 = 50_000;
    let managers = [manager(), manager()];
    let ((producer_side, consumer_side), _) = start_pair_with(&managers, |config| {
        config.drain_timeout = Duration::from_millis(200);
    });
    let owner0 = managers[0].owner("network");
    let grant0 = NetworkBufferPool::new(&owner0, 16).unwrap();
    let partition = ResultPartition::new(
        grant0.create_pool(LocalPoolSpec::for_partition(2)).unwrap(),
        2,
    );
    let id = PartitionId {
        dataset: 2,
        producer: 0,
    };
    producer_side.register_partition(id, &partition);
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let stalled = remote_channel(&consumer_side, &grant1, &floating, 0, id, 0);
    let flowing = remote_channel(&consumer_side, &grant1, &floating, 0, id, 1);
    let reader = std::thread::spawn(move || read_all(flowing));

    // Records alternate between the stalled and the flowing subpartition until the
    // stalled one's buffers run out; then only the flowing one gets records.
    let mut writer_partition = partition;
    let record = [5u8; 100];
    let mut stalled_sent = 0u64;
    for i in 0..RECORDS {
        let target = if i % 2 == 0 && stalled_sent < 200 {
            stalled_sent += 1;
            SubpartitionIndex(0)
        } else {
            SubpartitionIndex(1)
        };
        let mut waits = 0;
        while writer_partition.try_emit_record(&record, target) == weir_netstack::Emit::NoBuffer {
            waits += 1;
            assert!(waits < 10_000, "the flowing channel stopped");
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let flowing_count = RECORDS - stalled_sent;
    writer_partition.flush_all();
    // EndOfPartition goes to both subpartitions; the flowing reader ends with it.
    let mut finished = false;
    for _ in 0..10_000 {
        if writer_partition.try_finish() == weir_netstack::Emit::Done {
            finished = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    assert!(finished, "EndOfPartition could not be written");
    assert_eq!(reader.join().unwrap().unwrap(), flowing_count);
    assert_eq!(
        stalled_sent, 200,
        "the stalled subpartition holds unread records"
    );
    assert!(!stalled.is_ended(), "nobody read the stalled channel");
    drop(stalled);
    drop(writer_partition);
    producer_side.stop().unwrap();
    consumer_side.stop().unwrap();
    drop((floating, grant0, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
}

/// The producing worker goes away mid-stream: the reader gets an error naming it (no
/// hang), and both workers' segments come home.
#[test]
fn a_lost_peer_fails_the_reader_with_an_error_naming_it() {
    let managers = [manager(), manager()];
    let ((producer_side, consumer_side), _) = start_pair_with(&managers, |config| {
        config.drain_timeout = Duration::from_millis(50);
    });
    let owner0 = managers[0].owner("network");
    let grant0 = NetworkBufferPool::new(&owner0, 16).unwrap();
    let mut partition = ResultPartition::new(
        grant0.create_pool(LocalPoolSpec::for_partition(1)).unwrap(),
        1,
    );
    let id = PartitionId {
        dataset: 3,
        producer: 0,
    };
    producer_side.register_partition(id, &partition);
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let channel = remote_channel(&consumer_side, &grant1, &floating, 0, id, 0);
    let reader = std::thread::spawn(move || read_all(channel));
    for _ in 0..100 {
        let _ = partition.try_emit_record(&[1u8; 1000], SubpartitionIndex(0));
    }
    partition.flush_all();
    std::thread::sleep(Duration::from_millis(50));
    let started = std::time::Instant::now();
    // The producer's transport stops without finishing the partition: its connection
    // closes under the reader.
    producer_side.stop().unwrap();
    let error = reader.join().unwrap().unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("worker 0 at 127.0.0.1:"), "{error}");
    assert!(error.contains("connection lost"), "{error}");
    partition.release();
    drop(partition);
    consumer_side.stop().unwrap();
    drop((floating, grant0, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
}

/// Garbage sent to a worker's listening port closes that connection only: the exchange
/// on the real connection completes.
#[test]
fn garbage_on_the_listening_port_does_not_disturb_the_workers() {
    use std::io::Write as _;
    const RECORDS: u64 = 20_000;
    let managers = [manager(), manager()];
    let ((producer_side, consumer_side), peers) = start_pair_with(&managers, |_| {});
    for garbage in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 64],
        &[9, 0, 0, 0, b'W', b'E', b'I', b'R', 5],
    ] {
        for address in &peers {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream.write_all(garbage).unwrap();
        }
    }
    let owner0 = managers[0].owner("network");
    let grant0 = NetworkBufferPool::new(&owner0, 16).unwrap();
    let partition = ResultPartition::new(
        grant0.create_pool(LocalPoolSpec::for_partition(1)).unwrap(),
        1,
    );
    let id = PartitionId {
        dataset: 4,
        producer: 0,
    };
    producer_side.register_partition(id, &partition);
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let channel = remote_channel(&consumer_side, &grant1, &floating, 0, id, 0);
    let reader = std::thread::spawn(move || read_all(channel));
    let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::default());
    for i in 0..RECORDS {
        writer.emit(&i.to_le_bytes()).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), RECORDS);
    drop(writer);
    producer_side.stop().unwrap();
    consumer_side.stop().unwrap();
    drop((floating, grant0, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
}
