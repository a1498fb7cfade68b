//! Two workers in one test process, each with its own memory manager, grant and transport,
//! connected over loopback: records written on one arrive on the other through a remote
//! input channel under credit-based flow control, once and in order, and every segment of
//! both workers comes home.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]

mod common;

use common::{free_addresses, manager, read_all, remote_channel, thread_waker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_kernel::memory::MemoryManager;
use weir_netstack::debloat::{DebloatConfig, SystemClock};
use weir_netstack::input::{RemoteChannelSpec, RemoteInputChannel};
use weir_netstack::partition::ForwardSelector;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::transport::{NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, DataType, FlushMode, GatePoll, InputGate, NetworkBufferPool, RecordReader,
    RecordWriter, ResultPartition, SubpartitionIndex,
};

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

#[test]
fn records_cross_the_connection_once_in_order_under_credit() {
    const RECORDS: u64 = 200_000;
    let managers = [Arc::new(manager()), Arc::new(manager())];
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
        let waker = thread_waker();
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
    let managers = [Arc::new(manager()), Arc::new(manager())];
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
    let channel = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, missing, 0);
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

/// A gate that starts debloating announces its initial buffer size at once, before the
/// producer has registered its partition: the size waits with the partition request and
/// applies when the partition appears (it used to be dropped, leaving whole segments).
#[test]
fn a_buffer_size_announced_before_the_partition_is_registered_applies_to_it() {
    let managers = [Arc::new(manager()), Arc::new(manager())];
    let (producer_side, consumer_side) = start_pair(&managers);
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let id = PartitionId {
        dataset: 3,
        producer: 0,
    };
    let channel = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, id, 0);
    let mut gate = InputGate::new(vec![channel]);
    let config = DebloatConfig::new(managers[1].segment_size());
    gate.enable_debloating(config, Arc::new(SystemClock::default()))
        .unwrap();
    // Give the announcement time to reach the producer before the partition exists (if
    // it comes later, it applies directly: the test passes either way, as it should).
    std::thread::sleep(Duration::from_millis(100));
    let owner0 = managers[0].owner("network");
    let grant0 = NetworkBufferPool::new(&owner0, 16).unwrap();
    let partition = ResultPartition::new(
        grant0.create_pool(LocalPoolSpec::for_partition(1)).unwrap(),
        1,
    );
    producer_side.register_partition(id, &partition);
    let subpartition = partition.subpartition(SubpartitionIndex(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while subpartition.buffer_size() != config.initial_size {
        assert!(std::time::Instant::now() < deadline, "never applied");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(gate);
    drop((subpartition, partition));
    producer_side.stop().unwrap();
    consumer_side.stop().unwrap();
    drop((floating, grant0, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
}

/// Two channels share the connection; one consumer never reads. The other channel still
/// gets every record: whatever is on the wire has a buffer waiting for it.
#[test]
fn a_stalled_channel_does_not_block_the_others_on_the_connection() {
    const RECORDS: u64 = 50_000;
    let managers = [Arc::new(manager()), Arc::new(manager())];
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
    let stalled = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, id, 0);
    let flowing = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, id, 1);
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
    let managers = [Arc::new(manager()), Arc::new(manager())];
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
    let channel = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, id, 0);
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
    let managers = [Arc::new(manager()), Arc::new(manager())];
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
    let channel = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, id, 0);
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

/// One worker's side of a two-worker exchange: its source writes through `selector` to a
/// partition of two subpartitions (one per worker), its sink reads a gate of a local
/// channel (its own source) and a remote one (the other worker's). Returns, per channel of
/// the sink, the records received; checks order per channel on the way.
fn worker_side<S: weir_netstack::ChannelSelector + 'static>(
    service: &NetworkService,
    manager: &Arc<MemoryManager>,
    me: u32,
    selector: S,
    records: u64,
) -> [u64; 2] {
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, 24).unwrap();
    let partition = ResultPartition::new(
        grant.create_pool(LocalPoolSpec::for_partition(2)).unwrap(),
        2,
    );
    service.register_partition(
        PartitionId {
            dataset: 5,
            producer: me,
        },
        &partition,
    );
    let floating = Arc::new(grant.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let other = 1 - me;
    let local = weir_netstack::LocalInputChannel::new(
        ChannelIndex(me),
        partition.subpartition(SubpartitionIndex(me)),
    );
    let spec = RemoteChannelSpec {
        index: ChannelIndex(other),
        receiver: service.next_receiver(),
        partition: PartitionId {
            dataset: 5,
            producer: other,
        },
        subpartition: me,
        peer: service.peer_name(other),
    };
    let remote = RemoteInputChannel::new(
        spec,
        2,
        &grant,
        Arc::clone(&floating),
        service.channel_events(),
        Duration::from_secs(5),
    )
    .unwrap();
    service.open_channel(other, remote.shared());
    let mut channels: Vec<weir_netstack::input::InputChannel> = vec![local.into(), remote.into()];
    if me == 1 {
        channels.swap(0, 1);
    }
    let gate = InputGate::new(channels);
    let sink = std::thread::spawn(move || {
        let waker = thread_waker();
        let mut gate = gate;
        let mut readers = [
            RecordReader::new(ChannelIndex(0)),
            RecordReader::new(ChannelIndex(1)),
        ];
        let mut next = [0u64; 2];
        let mut counts = [0u64; 2];
        let mut listening = false;
        loop {
            match gate.poll_next().unwrap() {
                GatePoll::Buffer(channel, buffer) => {
                    listening = false;
                    let c = channel.as_usize();
                    match buffer.data_type() {
                        DataType::Data => {
                            readers[c].push(buffer);
                            while let Some(record) = readers[c].next_record().unwrap() {
                                assert_eq!(
                                    usize::from(record[0]),
                                    c,
                                    "channel c carries producer c"
                                );
                                let seq = u64::from_le_bytes(record[1..9].try_into().unwrap());
                                assert!(
                                    seq >= next[c],
                                    "order per channel: {seq} after {}",
                                    next[c]
                                );
                                assert_eq!(record.len(), 9 + (seq % 5000) as usize);
                                next[c] = seq + 1;
                                counts[c] += 1;
                            }
                        }
                        DataType::EndOfPartition => readers[c].finish().unwrap(),
                        _ => {}
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
                GatePoll::EndOfPartitions => return counts,
            }
        }
    });
    let mut writer = RecordWriter::new(
        partition,
        selector,
        FlushMode::Timeout(Duration::from_millis(5)),
    );
    let mut record = vec![0u8; 9 + 5000];
    record[0] = u8::try_from(me).unwrap();
    for seq in 0..records {
        record[1..9].copy_from_slice(&seq.to_le_bytes());
        writer.emit(&record[..9 + (seq % 5000) as usize]).unwrap();
    }
    writer.finish().unwrap();
    let counts = sink.join().unwrap();
    drop((writer, floating, grant));
    counts
}

/// Two workers over loopback exchange records of 9 to 5 008 bytes (larger than the 4 KiB
/// buffers) with every selector: each record arrives exactly once, in order per channel.
#[test]
fn every_selector_across_two_workers_delivers_each_record_once_in_order() {
    use weir_netstack::partition::{
        BroadcastSelector, HashSelector, RescaleSelector, RoundRobinSelector,
    };
    const RECORDS: u64 = 3_000;
    fn run<S: weir_netstack::ChannelSelector + 'static>(make: impl Fn() -> S, copies: u64) {
        let managers = [Arc::new(manager()), Arc::new(manager())];
        let (a, b) = start_pair(&managers);
        let (left_selector, right_selector) = (make(), make());
        let (counts_a, counts_b) = std::thread::scope(|scope| {
            let left = scope.spawn(|| worker_side(&a, &managers[0], 0, left_selector, RECORDS));
            let right = scope.spawn(|| worker_side(&b, &managers[1], 1, right_selector, RECORDS));
            (left.join().unwrap(), right.join().unwrap())
        });
        // Records from producer p arrive on channel p of the sinks.
        for producer in 0..2 {
            let received = counts_a[producer] + counts_b[producer];
            assert_eq!(
                received,
                RECORDS * copies,
                "producer {producer}: {counts_a:?} {counts_b:?}"
            );
        }
        a.stop().unwrap();
        b.stop().unwrap();
        managers[0].leak_check().unwrap();
        managers[1].leak_check().unwrap();
    }
    run(|| weir_netstack::partition::ForwardSelector, 1);
    run(|| RoundRobinSelector::starting_at(1), 1);
    run(RescaleSelector::default, 1);
    run(
        || HashSelector::new(|r: &[u8]| u32::from_le_bytes(r[1..5].try_into().unwrap())),
        1,
    );
    run(|| BroadcastSelector, 2);
}
