//! A worker's transport against a peer played by the test over a raw socket: the sender
//! never puts more data buffers on the wire than the credit it was granted, numbers them
//! without gaps and piggybacks its backlog; a malformed frame from the peer closes the
//! connection with an error and no hang.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]

mod common;

use common::manager;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use weir_kernel::memory::MemoryManager;
use weir_netstack::partition::ForwardSelector;
use weir_netstack::pool::LocalPoolSpec;
use weir_netstack::transport::frame::PROTOCOL_VERSION;
use weir_netstack::transport::{
    ErrorKind, FrameDecoder, Message, NetworkConfig, NetworkService, PartitionId, ReceiverId,
};
use weir_netstack::{DataType, FlushMode, NetworkBufferPool, RecordWriter, ResultPartition};

fn addresses() -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn send(stream: &mut TcpStream, message: &Message) {
    let mut bytes = Vec::new();
    message.encode(&mut bytes);
    stream.write_all(&bytes).unwrap();
}

/// The next message but a heartbeat, and for a BufferResponse its payload; `None` at end
/// of stream.
fn receive(stream: &mut TcpStream, decoder: &mut FrameDecoder) -> Option<(Message, Vec<u8>)> {
    loop {
        let spare = decoder.spare();
        let read = stream.read(spare).unwrap();
        if read == 0 {
            return None;
        }
        if let Some(message) = decoder.advance(read).unwrap() {
            if message == Message::Heartbeat {
                continue;
            }
            let mut payload = Vec::new();
            if let Message::BufferResponse(header) = &message {
                payload = vec![0; header.size as usize];
                stream.read_exact(&mut payload).unwrap();
            }
            return Some((message, payload));
        }
    }
}

/// Worker 0 for real; the test connects as worker 1 and says hello.
fn worker_and_raw_peer(
    manager: &MemoryManager,
    request_timeout: Duration,
) -> (NetworkService, TcpStream) {
    let peers = addresses();
    // The test's peer sends no heartbeats: the worker must not time it out mid-test.
    let mut config =
        NetworkConfig::new(0, peers.clone()).with_peer_timeout(Duration::from_secs(600));
    config.request_timeout = request_timeout;
    let owner = manager.owner("network events");
    let service = std::thread::spawn(move || NetworkService::start(config, owner).unwrap());
    let mut stream = loop {
        match TcpStream::connect(peers[0]) {
            Ok(stream) => break stream,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    send(
        &mut stream,
        &Message::Hello {
            process: 1,
            version: PROTOCOL_VERSION,
        },
    );
    let mut decoder = FrameDecoder::new();
    let (hello, _) = receive(&mut stream, &mut decoder).unwrap();
    assert_eq!(
        hello,
        Message::Hello {
            process: 0,
            version: PROTOCOL_VERSION
        }
    );
    (service.join().unwrap(), stream)
}

#[test]
fn the_sender_never_exceeds_the_credit_granted() {
    const RECORDS: usize = 300;
    let manager = manager();
    let (service, mut stream) = worker_and_raw_peer(&manager, Duration::from_secs(10));
    let owner = manager.owner("network");
    let grant = NetworkBufferPool::new(&owner, 16).unwrap();
    let partition = ResultPartition::new(
        grant.create_pool(LocalPoolSpec::for_partition(1)).unwrap(),
        1,
    );
    let id = PartitionId {
        dataset: 9,
        producer: 0,
    };
    service.register_partition(id, &partition);
    let producer = std::thread::spawn(move || {
        let mut writer = RecordWriter::new(partition, ForwardSelector, FlushMode::WhenFull);
        for i in 0..RECORDS {
            writer
                .emit(&[u8::try_from(i % 251).unwrap(); 1000])
                .unwrap();
        }
        writer.finish().unwrap();
        writer
    });

    let receiver = ReceiverId(77);
    send(
        &mut stream,
        &Message::PartitionRequest {
            partition: id,
            subpartition: 0,
            receiver,
            initial_credit: 2,
        },
    );
    let mut decoder = FrameDecoder::new();
    let (mut granted, mut data_buffers, mut sequence, mut bytes) = (2u64, 0u64, 0u32, 0usize);
    let mut backlog_seen = false;
    loop {
        let (message, payload) =
            receive(&mut stream, &mut decoder).expect("the stream ends with EndOfPartition");
        let Message::BufferResponse(header) = message else {
            panic!("unexpected {message:?}");
        };
        assert_eq!(header.receiver, receiver);
        assert_eq!(header.sequence, sequence, "no gap, no reordering");
        sequence += 1;
        backlog_seen |= header.backlog > 0;
        match header.data_type {
            DataType::Data => {
                data_buffers += 1;
                bytes += payload.len();
                assert!(
                    data_buffers <= granted,
                    "{data_buffers} data buffers on the wire with {granted} credit"
                );
            }
            DataType::EndOfPartition => break,
            other => panic!("unexpected {other:?}"),
        }
        if data_buffers == granted {
            // Slow consumer: one credit at a time, only once everything granted arrived.
            std::thread::sleep(Duration::from_millis(2));
            send(
                &mut stream,
                &Message::AddCredit {
                    receiver,
                    credit: 1,
                },
            );
            granted += 1;
        }
    }
    assert_eq!(bytes, RECORDS * 1004, "every framed byte");
    assert!(backlog_seen, "the sender piggybacked its backlog");
    let writer = producer.join().unwrap();
    assert!(writer.metrics().back_pressured > Duration::ZERO);
    drop(writer);
    send(&mut stream, &Message::Close);
    drop(stream);
    service.stop().unwrap();
    drop(grant);
    manager.leak_check().unwrap();
}

#[test]
fn a_malformed_frame_from_the_peer_closes_the_connection_with_an_error() {
    let manager = manager();
    let (service, mut stream) = worker_and_raw_peer(&manager, Duration::from_secs(10));
    // A frame with a wrong magic.
    stream
        .write_all(&[9, 0, 0, 0, b'X', b'E', b'I', b'R', 5])
        .unwrap();
    let mut decoder = FrameDecoder::new();
    match receive(&mut stream, &mut decoder) {
        Some((
            Message::ErrorResponse {
                receiver,
                kind,
                message,
            },
            _,
        )) => {
            assert_eq!((receiver, kind), (None, ErrorKind::Protocol));
            assert!(message.contains("wrong magic"), "{message}");
            assert!(receive(&mut stream, &mut decoder).is_none(), "then closed");
        }
        None => {}
        Some(other) => panic!("unexpected {other:?}"),
    }
    service.stop().unwrap();
    manager.leak_check().unwrap();
}

/// Without the partition ever registered the request is answered, for that channel only,
/// with PartitionNotFound after the backoff.
#[test]
fn an_unknown_partition_is_answered_with_partition_not_found() {
    let manager = manager();
    let (service, mut stream) = worker_and_raw_peer(&manager, Duration::from_millis(300));
    send(
        &mut stream,
        &Message::PartitionRequest {
            partition: PartitionId {
                dataset: 1,
                producer: 0,
            },
            subpartition: 3,
            receiver: ReceiverId(5),
            initial_credit: 2,
        },
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut decoder = FrameDecoder::new();
    let (message, _) = receive(&mut stream, &mut decoder).unwrap();
    match message {
        Message::ErrorResponse {
            receiver: Some(ReceiverId(5)),
            kind: ErrorKind::PartitionNotFound,
            message,
        } => assert!(
            message.contains("partition 1.0 subpartition 3"),
            "{message}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    send(&mut stream, &Message::Close);
    drop(stream);
    service.stop().unwrap();
    manager.leak_check().unwrap();
}
