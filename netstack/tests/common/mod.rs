//! Helpers shared by the network stack's integration tests: a memory manager, free
//! loopback addresses, a waker that unparks the test's thread, remote channels and a gate
//! reader that counts records.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_netstack::input::{RemoteChannelSpec, RemoteInputChannel};
use weir_netstack::pool::LocalBufferPool;
use weir_netstack::transport::{NetworkService, PartitionId};
use weir_netstack::{
    ChannelIndex, DataType, GatePoll, InputGate, NetError, NetworkBufferPool, RecordReader,
};

/// Wakes the thread that made it.
pub(crate) struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker that unparks the current thread.
pub(crate) fn thread_waker() -> Waker {
    Waker::from(Arc::new(Unpark(std::thread::current())))
}

/// `n` loopback addresses free a moment ago.
pub(crate) fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A manager of 64 segments of 4 KiB.
pub(crate) fn manager() -> MemoryManager {
    MemoryManager::new(MemoryConfig {
        segment_size: 4096,
        ..MemoryConfig::with_budget(64 * 4096)
    })
    .unwrap()
}

/// Channel `index` of a gate of `reader_side`, reading `subpartition` of `partition` at
/// worker `peer`, with 2 exclusive buffers.
pub(crate) fn remote_channel(
    reader_side: &NetworkService,
    peer: u32,
    (grant, floating): (&NetworkBufferPool, &Arc<LocalBufferPool>),
    index: u32,
    partition: PartitionId,
    subpartition: u32,
) -> RemoteInputChannel {
    let spec = RemoteChannelSpec {
        index: ChannelIndex(index),
        receiver: reader_side.next_receiver(),
        partition,
        subpartition,
        peer: reader_side.peer_name(peer),
    };
    let channel = RemoteInputChannel::new(
        spec,
        2,
        grant,
        Arc::clone(floating),
        reader_side.channel_events(),
        Duration::from_secs(5),
    )
    .unwrap();
    reader_side.open_channel(peer, channel.shared());
    channel
}

/// Reads a one-channel gate until its end or an error; counts records.
pub(crate) fn read_all(channel: RemoteInputChannel) -> Result<u64, NetError> {
    let waker = thread_waker();
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
