//! Fuzz targets as plain functions: cargo-fuzz (nightly) calls them from `fuzz/`, and the
//! stable smoke test (`netstack/tests/fuzz_smoke.rs`) runs them on seeded inputs.

use std::collections::VecDeque;

use weir_kernel::memory::{MemoryConfig, MemoryManager};

use crate::buffer::{DataType, NetworkBuffer};
use crate::input::RecordReader;
use crate::partition::{ChannelIndex, Emit, ResultPartition, SubpartitionIndex};
use crate::pool::{LocalPoolSpec, NetworkBufferPool};
use crate::transport::frame::{Message, decode_all};

/// Arbitrary bytes into the frame decoder, fed in chunks chosen by the first bytes: it
/// must never panic nor buffer beyond its bound (an error is fine), and every message it
/// decodes must encode and decode back to itself.
///
/// # Panics
///
/// When the decoder breaks one of those promises (a finding).
pub fn frame_decode(data: &[u8]) {
    let split = data.len().min(3);
    let (chunking, stream) = data.split_at(split);
    let chunks: Vec<usize> = chunking.iter().map(|&b| usize::from(b) + 1).collect();
    let Ok(messages) = decode_all(stream, &chunks) else {
        return;
    };
    for message in messages {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        if let Message::BufferResponse(header) = &message {
            bytes.resize(bytes.len() + header.size as usize, 0);
        }
        let again = decode_all(&bytes, &[bytes.len()]).expect("an encoded message decodes");
        assert_eq!(again, [message], "round trip");
    }
}

/// Reads numbers from the fuzzer's bytes; zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&byte, rest)) => {
                self.0 = rest;
                byte
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

/// The producer and consumer ends of one credit-based channel, driven step by step.
struct Channel {
    partition: ResultPartition,
    reader: RecordReader,
    /// Credit the consumer announced and the sender has not used.
    credit: usize,
    /// Receive buffers of the consumer: credit plus data buffers received and not
    /// processed never exceed them (events need no credit and take no receive buffer).
    receive_buffers: usize,
    received: VecDeque<NetworkBuffer>,
    received_data: usize,
    /// Records written, the records count at each event written, and what arrived.
    written: Vec<Vec<u8>>,
    events: VecDeque<usize>,
    read: Vec<Vec<u8>>,
    pending: Option<Vec<u8>>,
    ended: bool,
    credit_granted: u64,
    data_sent: u64,
}

impl Channel {
    fn write(&mut self, record: Vec<u8>) {
        let record = self.pending.take().unwrap_or(record);
        match self
            .partition
            .try_emit_record(&record, SubpartitionIndex(0))
        {
            Emit::Done => self.written.push(record),
            Emit::NoBuffer => self.pending = Some(record),
        }
    }

    fn event(&mut self, tag: u8) {
        if self.pending.is_none()
            && self
                .partition
                .try_broadcast_event(DataType::Barrier, &[tag])
                == Emit::Done
        {
            self.events.push_back(self.written.len());
        }
    }

    fn grant(&mut self, credit: usize) {
        let room = self.receive_buffers - self.credit - self.received_data;
        let credit = credit.min(room);
        self.credit += credit;
        self.credit_granted += credit as u64;
    }

    /// The sender's step: a data buffer only with credit, events always.
    fn send(&mut self) {
        let subpartition = self.partition.subpartition(SubpartitionIndex(0));
        let Some(polled) = subpartition.poll_buffer_with_credit(self.credit > 0) else {
            return;
        };
        if polled.buffer.data_type() == DataType::Data {
            assert!(self.credit > 0, "a data buffer sent without credit");
            self.credit -= 1;
            self.data_sent += 1;
            self.received_data += 1;
        }
        self.received.push_back(polled.buffer);
    }

    /// The consumer's step: one received buffer read, its segment recycled.
    fn process(&mut self) {
        let Some(buffer) = self.received.pop_front() else {
            return;
        };
        match buffer.data_type() {
            DataType::Data => {
                self.received_data -= 1;
                self.reader.push(buffer);
                while let Some(record) = self.reader.next_record().expect("well-framed records") {
                    self.read.push(record.to_vec());
                }
            }
            DataType::Barrier => {
                let at = self.events.pop_front().expect("an event that was written");
                assert_eq!(
                    self.read.len(),
                    at,
                    "the event arrives at its record boundary"
                );
            }
            DataType::EndOfPartition => {
                self.reader
                    .finish()
                    .expect("the channel ends on a record boundary");
                self.ended = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// An arbitrary interleaving of record writes (spanning buffers), flushes, events, credit
/// announcements, credit-gated sends and consumer reads (which recycle segments) on one
/// channel with a small pool, then a drain to the end. Invariants: no data buffer is sent
/// without credit (and never more than were granted), the consumer never holds more than
/// its receive buffers, the pool never holds more than its maximum plus overdraft, every
/// record arrives once and in order, every event at its record boundary, and every
/// segment comes home.
///
/// # Panics
///
/// On a finding.
#[allow(
    clippy::too_many_lines,
    reason = "a fuzz target is one script: decode the operations, run them on one channel, check the invariants"
)]
pub fn credit_protocol(data: &[u8]) {
    let mut input = Input(data);
    let manager = MemoryManager::new(MemoryConfig {
        segment_size: 4096,
        ..MemoryConfig::with_budget(40 * 4096)
    })
    .expect("a valid manager");
    {
        let grant = NetworkBufferPool::new(&manager.owner("network"), 32).expect("the grant fits");
        // At least one segment per subpartition plus one.
        let min = 2 + usize::from(input.u8() % 4);
        let spec = LocalPoolSpec {
            max_overdraft: usize::from(input.u8() % 3),
            ..LocalPoolSpec::new(min, min + usize::from(input.u8() % 6))
        };
        let mut channel = Channel {
            partition: ResultPartition::new(grant.create_pool(spec).expect("a pool"), 1),
            reader: RecordReader::new(ChannelIndex(0)),
            credit: 0,
            receive_buffers: 1 + usize::from(input.u8() % 4),
            received: VecDeque::new(),
            received_data: 0,
            written: Vec::new(),
            events: VecDeque::new(),
            read: Vec::new(),
            pending: None,
            ended: false,
            credit_granted: 0,
            data_sent: 0,
        };
        for step in 0..4000u32 {
            if input.0.is_empty() {
                break;
            }
            match input.u8() % 6 {
                0 => {
                    let len = usize::from(input.u16()) % 9000;
                    let record = (0..len).map(|i| (i as u32 ^ step) as u8).collect();
                    channel.write(record);
                }
                1 => channel.partition.flush_all(),
                2 => channel.event(input.u8()),
                3 => channel.grant(1 + usize::from(input.u8() % 3)),
                4 => channel.send(),
                _ => channel.process(),
            }
            let metrics = channel.partition.metrics();
            assert!(
                metrics.pool_held <= spec.max + spec.max_overdraft,
                "the pool holds {} of at most {} + {}",
                metrics.pool_held,
                spec.max,
                spec.max_overdraft
            );
            assert!(channel.credit + channel.received_data <= channel.receive_buffers);
        }
        // Drain: finish the pending record, end the partition, and read everything.
        let mut finished = false;
        for _ in 0..1_000_000 {
            if channel.ended {
                break;
            }
            if let Some(record) = channel.pending.clone() {
                channel.write(record);
            } else if !finished {
                finished = channel.partition.try_finish() == Emit::Done;
            }
            channel.partition.flush_all();
            channel.grant(channel.receive_buffers);
            channel.send();
            channel.process();
        }
        assert!(channel.ended, "the channel drains to its end");
        assert!(
            channel.data_sent <= channel.credit_granted,
            "data only against credit"
        );
        assert_eq!(channel.read, channel.written, "every record once, in order");
        assert!(channel.events.is_empty(), "every event arrived");
    }
    manager.leak_check().expect("every segment came home");
}
