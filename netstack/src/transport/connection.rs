//! One connection to a peer process and everything multiplexed over it: the local
//! channels reading through it, the remote readers of this process's subpartitions, and
//! what waits to be written — and the writing itself, one bounded pass at a time.
//!
//! ```text
//!   control (requests, cancels, errors, heartbeats) ─┐ first
//!   credit_pending ──▶ AddCredit (all unannounced) ──┼ then       next_frame ──▶ outgoing
//!   available views, round robin ──▶ BufferResponse ─┘ last       (one frame, maybe half
//!     (data only with credit; events need none)                    written) ──writev──▶ peer
//! ```
//!
//! Invariants: at most one frame is half written (`outgoing`), so frames never interleave
//! on the wire; a view is in `available` at most once (`queued`), so a reader with much
//! data takes one turn per frame like the others; a pass writes at most
//! [`FRAMES_PER_PASS`] frames, so one connection never holds the event loop from the
//! others. The stream type is a parameter only so tests write to memory.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Write};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use mio::net::TcpStream;
use weir_kernel::memory::MemorySegment;

use super::frame::{BufferHeader, FrameDecoder, Message, ReceiverId};
use super::liveness::Liveness;
use super::shared::{TransportMetrics, lock};
use crate::buffer::{DataType, NetworkBuffer};
use crate::constants::FRAMES_PER_PASS;
use crate::error::{NetError, Result};
use crate::input::RemoteShared;
use crate::partition::ResultSubpartition;
use crate::pool::PooledSegment;

/// A remote reader of one of this process's subpartitions.
pub(super) struct ViewReader {
    pub(super) subpartition: Arc<ResultSubpartition>,
    pub(super) credit: u32,
    pub(super) sequence: u32,
    /// In the connection's `available` queue.
    pub(super) queued: bool,
    /// Posts ReaderAvailable when the subpartition has something again.
    pub(super) waker: Waker,
}

/// Where an arriving payload goes.
pub(super) enum Target {
    Data(PooledSegment),
    Event(MemorySegment),
    /// A channel that is gone: read and drop the bytes.
    Discard,
}

/// A BufferResponse whose payload is being read.
pub(super) struct Incoming {
    pub(super) header: BufferHeader,
    pub(super) target: Target,
    pub(super) filled: usize,
}

/// A frame being written: its encoded header, then the buffer's bytes without a copy.
pub(super) struct Outgoing {
    header: Vec<u8>,
    written: usize,
    payload: Option<NetworkBuffer>,
}

/// One connection to a peer process.
pub(super) struct Connection<S = TcpStream> {
    pub(super) name: String,
    pub(super) stream: S,
    pub(super) decoder: FrameDecoder,
    pub(super) incoming: Option<Incoming>,
    pub(super) outgoing: Option<Outgoing>,
    pub(super) control: VecDeque<Message>,
    pub(super) credit_pending: VecDeque<ReceiverId>,
    pub(super) views: HashMap<ReceiverId, ViewReader>,
    pub(super) available: VecDeque<ReceiverId>,
    pub(super) channels: HashMap<ReceiverId, Arc<RemoteShared>>,
    /// The socket said WouldBlock on write: wait for a WRITABLE event.
    pub(super) write_blocked: bool,
    /// The peer closed its end.
    pub(super) closed: bool,
    /// When to send a heartbeat, and when the peer has been silent too long.
    pub(super) liveness: Liveness,
    /// Bytes arrived during this read pass (the clock is read once per pass, not per read).
    pub(super) read_any: bool,
    /// Bytes left during this write pass.
    pub(super) wrote_any: bool,
}

impl<S> Connection<S> {
    /// A greeted connection to the peer `name`, nothing queued yet.
    pub(super) fn new(name: String, stream: S, liveness: Liveness) -> Connection<S> {
        Connection {
            name,
            stream,
            decoder: FrameDecoder::new(),
            incoming: None,
            outgoing: None,
            control: VecDeque::new(),
            credit_pending: VecDeque::new(),
            views: HashMap::new(),
            available: VecDeque::new(),
            channels: HashMap::new(),
            write_blocked: false,
            closed: false,
            liveness,
            read_any: false,
            wrote_any: false,
        }
    }

    /// Puts the view in line to send (once: a queued view keeps its place).
    pub(super) fn queue_view(&mut self, receiver: ReceiverId) {
        if let Some(view) = self.views.get_mut(&receiver)
            && !view.queued
        {
            view.queued = true;
            self.available.push_back(receiver);
        }
    }

    /// Nothing left to send: every view finished, no frame half written, no control
    /// message waiting.
    pub(super) fn is_drained(&self) -> bool {
        self.views.is_empty() && self.outgoing.is_none() && self.control.is_empty()
    }

    /// Every channel got all it waits for and every view's subpartition was consumed: a
    /// peer closing such a connection (it finished first) is no failure.
    pub(super) fn owes_nothing(&self) -> bool {
        self.channels.values().all(|channel| channel.is_complete())
            && self
                .views
                .values()
                .all(|view| view.subpartition.is_consumed())
    }

    /// Chooses the next frame: control messages first, then accumulated credit, then a
    /// buffer of the next view reader with something it may send (round robin). `false`
    /// when there is nothing to send.
    fn next_frame(&mut self, metrics: &Mutex<TransportMetrics>) -> bool {
        if let Some(message) = self.control.pop_front() {
            if message == Message::Heartbeat {
                self.liveness.heartbeat_taken();
                lock(metrics).heartbeats_sent += 1;
            }
            self.outgoing = Some(encoded(&message, None));
            return true;
        }
        while let Some(receiver) = self.credit_pending.pop_front() {
            let Some(channel) = self.channels.get(&receiver) else {
                continue;
            };
            let credit = channel.take_unannounced_credit();
            if credit > 0 {
                let mut metrics = lock(metrics);
                metrics.credit_messages += 1;
                metrics.credit_announced += u64::from(credit);
                drop(metrics);
                self.outgoing = Some(encoded(&Message::AddCredit { receiver, credit }, None));
                return true;
            }
        }
        while let Some(receiver) = self.available.pop_front() {
            if let Some(outgoing) = self.next_buffer(receiver, metrics) {
                self.outgoing = Some(outgoing);
                return true;
            }
        }
        false
    }

    /// The view's next buffer as a BufferResponse, if it has one it may send (data only
    /// with credit); requeues the view behind the others unless it ended.
    fn next_buffer(
        &mut self,
        receiver: ReceiverId,
        metrics: &Mutex<TransportMetrics>,
    ) -> Option<Outgoing> {
        let view = self.views.get_mut(&receiver)?;
        view.queued = false;
        let polled = view
            .subpartition
            .poll_buffer_with_credit(view.credit > 0)
            .or_else(|| {
                // Nothing now: listen, then look once more (data may have come in between).
                view.subpartition.register_listener(&view.waker);
                view.subpartition.poll_buffer_with_credit(view.credit > 0)
            })?;
        let buffer = polled.buffer;
        if buffer.data_type() == DataType::Data {
            view.credit -= 1;
        }
        let header = BufferHeader {
            receiver,
            subpartition: view.subpartition.index().0,
            sequence: view.sequence,
            backlog: u32::try_from(polled.backlog).unwrap_or(u32::MAX),
            data_type: buffer.data_type(),
            size: u32::try_from(buffer.len()).expect("a buffer fits a frame"),
        };
        view.sequence = view.sequence.wrapping_add(1);
        if buffer.data_type() == DataType::EndOfPartition {
            self.views.remove(&receiver);
        } else {
            view.queued = true;
            self.available.push_back(receiver);
        }
        {
            let mut metrics = lock(metrics);
            metrics.buffers_sent += 1;
            metrics.bytes_sent += buffer.len() as u64;
        }
        Some(encoded(&Message::BufferResponse(header), Some(buffer)))
    }
}

impl<S: Write> Connection<S> {
    /// Writes frames until the stream would block (then `write_blocked`), nothing is left,
    /// or [`FRAMES_PER_PASS`] frames were chosen; `Ok(true)` when work is left.
    ///
    /// # Errors
    ///
    /// The stream failed or stopped accepting bytes (the peer is lost).
    pub(super) fn write_frames(&mut self, metrics: &Mutex<TransportMetrics>) -> Result<bool> {
        for _ in 0..FRAMES_PER_PASS {
            if self.outgoing.is_none() && !self.next_frame(metrics) {
                return Ok(false);
            }
            let outgoing = self.outgoing.as_mut().expect("a frame to write");
            let header_left = outgoing.header.len().saturating_sub(outgoing.written);
            let payload_at = outgoing.written.saturating_sub(outgoing.header.len());
            let payload = outgoing
                .payload
                .as_ref()
                .map_or(&[][..], |b| &b.as_bytes()[payload_at..]);
            let slices = [
                IoSlice::new(&outgoing.header[outgoing.header.len() - header_left..]),
                IoSlice::new(payload),
            ];
            match self.stream.write_vectored(&slices) {
                Ok(0) => return Err(lost("stopped accepting bytes")),
                Ok(written) => {
                    self.wrote_any = true;
                    outgoing.written += written;
                    let total = outgoing.header.len()
                        + outgoing.payload.as_ref().map_or(0, NetworkBuffer::len);
                    if outgoing.written == total {
                        self.outgoing = None;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(false);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(lost(&error.to_string())),
            }
        }
        Ok(true)
    }
}

fn encoded(message: &Message, payload: Option<NetworkBuffer>) -> Outgoing {
    let mut header = Vec::with_capacity(40);
    message.encode(&mut header);
    Outgoing {
        header,
        written: 0,
        payload,
    }
}

/// The peer is gone (closed, reset, or its socket failed): `what` says how.
pub(super) fn lost(what: &str) -> NetError {
    NetError::Remote {
        peer: "the peer".to_owned(),
        message: what.to_owned(),
    }
}

/// The peer broke the protocol.
pub(super) fn protocol(detail: String) -> NetError {
    NetError::MalformedFrame { detail }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::buffer::BufferBuilder;
    use crate::buffer::test_support::manager;
    use crate::partition::SubpartitionIndex;
    use crate::transport::frame::decode_all;

    /// A socket in memory: takes at most `per_write` bytes a call and `room` in all, then
    /// says WouldBlock (a full send buffer).
    struct Socket {
        bytes: Vec<u8>,
        per_write: usize,
        room: usize,
        writes: usize,
    }

    impl Socket {
        fn new(per_write: usize, room: usize) -> Socket {
            Socket {
                bytes: Vec::new(),
                per_write,
                room,
                writes: 0,
            }
        }
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut budget = self.per_write.min(self.room);
            if budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.writes += 1;
            let mut taken = 0;
            for slice in slices {
                let n = slice.len().min(budget);
                self.bytes.extend_from_slice(&slice[..n]);
                budget -= n;
                taken += n;
            }
            self.room -= taken;
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn connection(socket: Socket) -> Connection<Socket> {
        let liveness = Liveness::new(
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(4),
        );
        Connection::new("worker 1".to_owned(), socket, liveness)
    }

    fn cancels(count: u64) -> Vec<Message> {
        (0..count)
            .map(|r| Message::CancelPartition {
                receiver: ReceiverId(r),
            })
            .collect()
    }

    fn sent(connection: &Connection<Socket>) -> Vec<Message> {
        decode_all(&connection.stream.bytes, &[usize::MAX]).expect("whole frames")
    }

    #[test]
    fn a_pass_writes_at_most_frames_per_pass_and_says_work_is_left() {
        let metrics = Mutex::new(TransportMetrics::default());
        let mut connection = connection(Socket::new(usize::MAX, usize::MAX));
        let messages = cancels(FRAMES_PER_PASS as u64 + 10);
        connection.control.extend(messages.iter().cloned());
        assert!(
            connection.write_frames(&metrics).expect("written"),
            "work left"
        );
        assert_eq!(sent(&connection).len(), FRAMES_PER_PASS);
        assert!(
            !connection.write_frames(&metrics).expect("written"),
            "all sent"
        );
        assert_eq!(sent(&connection), messages);
        assert!(connection.wrote_any && !connection.write_blocked);
        assert!(connection.is_drained());
    }

    #[test]
    fn a_frame_cut_by_a_full_socket_resumes_where_it_stopped() {
        let metrics = Mutex::new(TransportMetrics::default());
        // 7 bytes a call, 20 in all: the first frames are cut mid-header.
        let mut connection = connection(Socket::new(7, 20));
        let messages = cancels(5);
        connection.control.extend(messages.iter().cloned());
        assert!(!connection.write_frames(&metrics).expect("written"));
        assert!(connection.write_blocked, "waits for WRITABLE");
        assert!(connection.outgoing.is_some(), "one frame half written");
        assert_eq!(connection.stream.bytes.len(), 20);
        connection.write_blocked = false;
        connection.stream.room = usize::MAX;
        assert!(!connection.write_frames(&metrics).expect("written"));
        assert_eq!(sent(&connection), messages, "whole frames, in order");
    }

    #[test]
    fn a_closed_socket_is_a_lost_peer() {
        let metrics = Mutex::new(TransportMetrics::default());
        struct Refusing;
        impl Write for Refusing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let liveness = Liveness::new(
            Instant::now(),
            Duration::from_secs(1),
            Duration::from_secs(4),
        );
        let mut connection = Connection::new("worker 1".to_owned(), Refusing, liveness);
        connection.control.push_back(Message::Heartbeat);
        let error = connection.write_frames(&metrics).expect_err("lost");
        assert!(
            error.to_string().contains("stopped accepting bytes"),
            "{error}"
        );
    }

    fn view(index: u32, credit: u32) -> ViewReader {
        ViewReader {
            subpartition: Arc::new(ResultSubpartition::new(SubpartitionIndex(index))),
            credit,
            sequence: 0,
            queued: true,
            waker: Waker::noop().clone(),
        }
    }

    #[test]
    fn control_goes_first_then_readers_take_turns_and_data_waits_for_credit() {
        let manager = manager(16);
        let owner = manager.owner("connection-test");
        let metrics = Mutex::new(TransportMetrics::default());
        let mut connection = connection(Socket::new(usize::MAX, usize::MAX));
        for receiver in 1..=2 {
            let view = view(receiver, 0);
            for _ in 0..3 {
                let segment = owner.allocate_one().expect("a segment");
                let event = NetworkBuffer::new(segment, 8, DataType::Event);
                view.subpartition.add_event(event);
            }
            connection.views.insert(ReceiverId(receiver.into()), view);
            connection.available.push_back(ReceiverId(receiver.into()));
        }
        // Reader 3 has data but no credit: it must not send it.
        let starved = view(3, 0);
        let segment = owner.allocate_one().expect("a segment");
        let (mut builder, consumer) = BufferBuilder::new(segment, DataType::Data);
        builder.append_and_commit(b"record");
        builder.finish();
        starved.subpartition.add(consumer);
        starved.subpartition.flush();
        connection.views.insert(ReceiverId(3), starved);
        connection.available.push_back(ReceiverId(3));
        connection.control.push_back(Message::Heartbeat);

        assert!(!connection.write_frames(&metrics).expect("written"));
        let order: Vec<Option<u64>> = sent(&connection)
            .iter()
            .map(|message| match message {
                Message::BufferResponse(header) => Some(header.receiver.0),
                _ => None,
            })
            .collect();
        let turns = [None, Some(1), Some(2), Some(1), Some(2), Some(1), Some(2)];
        assert_eq!(order, turns);
        let counts = *lock(&metrics);
        assert_eq!((counts.heartbeats_sent, counts.buffers_sent), (1, 6));
        assert_eq!(
            connection.views[&ReceiverId(3)]
                .subpartition
                .data_buffers_queued(),
            1
        );
        // Credit arrives: now it goes.
        connection
            .views
            .get_mut(&ReceiverId(3))
            .expect("a view")
            .credit = 1;
        connection.queue_view(ReceiverId(3));
        assert!(!connection.write_frames(&metrics).expect("written"));
        assert_eq!(lock(&metrics).bytes_sent, 6 * 8 + 6);
        assert_eq!(connection.views[&ReceiverId(3)].credit, 0);
        for view in connection.views.values() {
            view.subpartition.release();
        }
    }
}
