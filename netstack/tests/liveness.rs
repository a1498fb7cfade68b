//! Liveness of the transport: strangers on a worker's port (silent, or `WEIR` and garbage)
//! neither fail nor delay the startup; a peer that greets and then goes silent fails the
//! channels on its connection within the peer timeout, with an error naming it; and
//! heartbeats keep an idle but live connection up well past the timeout. Every test checks
//! that every segment came home.

mod common;

use common::{free_addresses, manager, read_all, remote_channel};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_kernel::memory::MemoryManager;
use weir_netstack::partition::ForwardSelector;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::transport::frame::PROTOCOL_VERSION;
use weir_netstack::transport::{FrameDecoder, Message, NetworkConfig, NetworkService, PartitionId};
use weir_netstack::{FlushMode, NetworkBufferPool, RecordWriter, ResultPartition};

/// Bytes of a seeded generator (an LCG's high bytes).
fn seeded_bytes(mut state: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// Connects to `address` as soon as something listens there.
fn connect_when_listening(address: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(address) {
            Ok(stream) => return stream,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "{address} never listened: {error}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Worker 0 sends `records` records on a partition that worker 1 reads; returns the count
/// worker 1 read and checks every segment of both came home. `pause` runs after half the
/// records (with the channel open and idle).
fn exchange(
    managers: &[Arc<MemoryManager>; 2],
    services: (NetworkService, NetworkService),
    records: u64,
    pause: impl FnOnce(),
) -> [weir_netstack::transport::TransportMetrics; 2] {
    let (producer_side, consumer_side) = services;
    let owner0 = managers[0].owner("network");
    let grant0 = NetworkBufferPool::new(&owner0, 16).unwrap();
    let partition = ResultPartition::new(
        grant0.create_pool(LocalPoolSpec::for_partition(1)).unwrap(),
        1,
    );
    let id = PartitionId {
        dataset: 1,
        producer: 0,
    };
    producer_side.register_partition(id, &partition);
    let owner1 = managers[1].owner("network");
    let grant1 = NetworkBufferPool::new(&owner1, 16).unwrap();
    let floating = Arc::new(grant1.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let channel = remote_channel(&consumer_side, 0, (&grant1, &floating), 0, id, 0);
    let reader = std::thread::spawn(move || read_all(channel));
    let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::EveryRecord);
    for i in 0..records / 2 {
        writer.emit(&i.to_le_bytes()).unwrap();
    }
    pause();
    for i in records / 2..records {
        writer.emit(&i.to_le_bytes()).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), records);
    drop(writer);
    let metrics = [producer_side.metrics(), consumer_side.metrics()];
    producer_side.stop().unwrap();
    consumer_side.stop().unwrap();
    drop((floating, grant0, grant1));
    managers[0].leak_check().unwrap();
    managers[1].leak_check().unwrap();
    metrics
}

#[test]
fn strangers_on_the_port_neither_fail_nor_delay_the_startup() {
    let managers = [Arc::new(manager()), Arc::new(manager())];
    let peers = free_addresses(2);
    let started = Instant::now();
    let first = {
        let config = NetworkConfig::new(0, peers.clone());
        let owner = managers[0].owner("network events");
        std::thread::spawn(move || NetworkService::start(config, owner))
    };
    // Before worker 1 starts: one stranger that says nothing, one that sends the magic and
    // seeded garbage (as the bug report's), and one that sends a plausible header only.
    let silent = connect_when_listening(peers[0]);
    let mut garbage = connect_when_listening(peers[0]);
    let mut bytes = b"WEIR".to_vec();
    bytes.extend(seeded_bytes(0x5eed_11fe, 64));
    garbage.write_all(&bytes).unwrap();
    let mut half = connect_when_listening(peers[0]);
    half.write_all(&[200, 0, 0, 0, b'W', b'E', b'I', b'R', 0])
        .unwrap();
    let second = {
        let config = NetworkConfig::new(1, peers.clone());
        let owner = managers[1].owner("network events");
        std::thread::spawn(move || NetworkService::start(config, owner))
    };
    // A stranger on worker 1's port too, after its start.
    let silent_later = connect_when_listening(peers[1]);
    let services = (
        first.join().unwrap().unwrap(),
        second.join().unwrap().unwrap(),
    );
    let startup = started.elapsed();
    assert!(startup < Duration::from_secs(5), "startup took {startup:?}");
    assert!(
        services.0.metrics().connections_rejected >= 1,
        "the garbage connection was rejected: {:?}",
        services.0.metrics()
    );
    let metrics = exchange(&managers, services, 2_000, || {});
    assert_eq!(metrics[0].connections_failed, 0);
    assert_eq!(metrics[1].connections_failed, 0);
    drop((silent, garbage, half, silent_later));
}

/// Plays worker 1 over a raw socket: connects to worker 0, greets it, and then says
/// nothing more and reads nothing (a stopped process).
fn silent_raw_peer(address: SocketAddr) -> TcpStream {
    let mut stream = connect_when_listening(address);
    let mut hello = Vec::new();
    Message::Hello {
        process: 1,
        version: PROTOCOL_VERSION,
    }
    .encode(&mut hello);
    stream.write_all(&hello).unwrap();
    let mut decoder = FrameDecoder::new();
    loop {
        let read = stream.read(decoder.spare()).unwrap();
        assert!(read > 0, "worker 0 closed before its hello");
        if let Some(message) = decoder.advance(read).unwrap() {
            assert!(matches!(message, Message::Hello { process: 0, .. }));
            return stream;
        }
    }
}

#[test]
fn a_peer_silent_after_its_hello_fails_the_channels_naming_it() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let manager = Arc::new(manager());
    let peers = free_addresses(2);
    let service = {
        let config = NetworkConfig::new(0, peers.clone()).with_peer_timeout(TIMEOUT);
        let owner = manager.owner("network events");
        std::thread::spawn(move || NetworkService::start(config, owner).unwrap())
    };
    let raw = silent_raw_peer(peers[0]);
    let service = service.join().unwrap();
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, 16).unwrap();
    let floating = Arc::new(grant.create_pool(LocalPoolSpec::new(1, 8)).unwrap());
    let id = PartitionId {
        dataset: 2,
        producer: 1,
    };
    let started = Instant::now();
    let channel = remote_channel(&service, 1, (&grant, &floating), 0, id, 0);
    let error = read_all(channel).unwrap_err().to_string();
    let waited = started.elapsed();
    // Nothing arrived since the hello, a little before `started`: at most the timeout
    // after it, plus the slack of a loaded machine.
    assert!(waited < TIMEOUT + Duration::from_secs(5), "{waited:?}");
    assert!(
        error.contains(&format!("worker 1 at {}", peers[1])),
        "names the peer: {error}"
    );
    assert!(error.contains("sent nothing for "), "{error}");
    assert!(error.contains("stopped, hung or partitioned"), "{error}");
    let metrics = service.metrics();
    assert_eq!(metrics.connections_failed, 1, "{metrics:?}");
    assert!(metrics.heartbeats_sent >= 1, "{metrics:?}");
    service.stop().unwrap();
    drop((raw, floating, grant));
    manager.leak_check().unwrap();
}

#[test]
fn heartbeats_keep_an_idle_connection_up_past_the_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let managers = [Arc::new(manager()), Arc::new(manager())];
    let peers = free_addresses(2);
    let handles: Vec<_> = (0..2u32)
        .map(|process| {
            let config = NetworkConfig::new(process, peers.clone()).with_peer_timeout(TIMEOUT);
            let owner = managers[process as usize].owner("network events");
            std::thread::spawn(move || NetworkService::start(config, owner).unwrap())
        })
        .collect();
    let mut started = handles.into_iter().map(|h| h.join().unwrap());
    let services = (started.next().unwrap(), started.next().unwrap());
    // Idle before any channel, and again with a channel open in the middle of its stream:
    // each gap three timeouts long.
    std::thread::sleep(TIMEOUT * 3);
    let metrics = exchange(&managers, services, 1_000, || {
        std::thread::sleep(TIMEOUT * 3);
    });
    for (process, metrics) in metrics.iter().enumerate() {
        assert_eq!(
            metrics.connections_failed, 0,
            "worker {process}: {metrics:?}"
        );
        assert!(
            metrics.heartbeats_sent >= 4 && metrics.heartbeats_received >= 4,
            "worker {process}: {metrics:?}"
        );
    }
}

#[test]
fn an_invalid_liveness_configuration_is_an_error_naming_the_field() {
    let manager = Arc::new(manager());
    let peers = free_addresses(1);
    let mut config = NetworkConfig::new(0, peers.clone());
    config.heartbeat_interval = config.peer_timeout;
    let error = NetworkService::start(config, manager.owner("events")).unwrap_err();
    assert!(error.to_string().contains("heartbeat_interval"), "{error}");
    let config = NetworkConfig::new(0, peers).with_peer_timeout(Duration::from_millis(10));
    let error = NetworkService::start(config, manager.owner("events")).unwrap_err();
    assert!(error.to_string().contains("peer_timeout"), "{error}");
    manager.leak_check().unwrap();
}
