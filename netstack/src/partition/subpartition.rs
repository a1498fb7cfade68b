//! `ResultSubpartition`: the pipelined queue of one output channel.
//!
//! ```text
//!   producer (task thread)                       consumer (channel / network thread)
//!   add(BufferConsumer) ──┐
//!   add_event(event)    ──┼──▶ [ priority events ]  ──poll_buffer──▶ (NetworkBuffer, backlog)
//!   finish(EndOfPartition)┘    [ data, events, …  ]      priority first, then in order
//! ```
//!
//! The queue holds [`BufferConsumer`]s whose builders the producer may still be filling.
//! `poll_buffer` builds the committed bytes of the head consumer into a buffer that shares
//! its segment (no copy) and moves past the head once its builder has finished and every
//! byte has been handed out. An unfinished head is read only after [`flush`] (otherwise the
//! consumer waits for a full buffer). The backlog handed out with each buffer is the number
//! of finished data buffers still queued: what the receiver should have credit for.
//!
//! One producer and one consumer share it through a mutex held only for queue moves; the
//! availability listener is woken after the lock is released.
//!
//! [`flush`]: ResultSubpartition::flush

use crate::sync::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::fmt;
use std::task::Waker;

use super::ids::SubpartitionIndex;
use crate::buffer::{BufferConsumer, DataType, NetworkBuffer};
use crate::constants::SUBPARTITION_QUEUE_MAX;

/// A buffer handed out by [`ResultSubpartition::poll_buffer`] and the backlog after it.
#[derive(Debug)]
pub struct PolledBuffer {
    /// Record bytes (possibly part of a record) or one event.
    pub buffer: NetworkBuffer,
    /// Finished data buffers still queued after this one.
    pub backlog: usize,
}

/// Counters of one subpartition, read with [`ResultSubpartition::metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubpartitionMetrics {
    /// Buffers handed out (data and events).
    pub buffers_out: u64,
    /// Bytes handed out (data and events).
    pub bytes_out: u64,
    /// Finished data buffers queued now.
    pub backlog: usize,
    /// Bytes queued and not yet handed out: committed data bytes and events.
    pub queued_bytes: u64,
}

/// One output channel's queue of data buffers and events (pipelined: the consumer reads
/// while the producer writes).
///
/// [`poll_buffer`](Self::poll_buffer) hands out priority events first, then the queue in
/// order: the committed bytes of the head data buffer as a buffer sharing its segment (no
/// copy), the head's unfinished bytes only after [`flush`](Self::flush). The backlog
/// handed out with each buffer is the number of finished data buffers still queued. One
/// producer and one consumer share it through a mutex held only for queue moves.
pub struct ResultSubpartition {
    index: SubpartitionIndex,
    state: Mutex<State>,
    // The buffer size its reader asked for (debloating); 0 for whole segments.
    buffer_size: std::sync::atomic::AtomicUsize,
}

enum Entry {
    Data(BufferConsumer),
    Event(NetworkBuffer),
}

#[derive(Default)]
struct State {
    // Data buffers and in-order events, oldest first.
    queue: VecDeque<Entry>,
    // Priority events, oldest first; they overtake `queue`.
    priority: VecDeque<NetworkBuffer>,
    // Committed bytes of an unfinished head may be read.
    flush_requested: bool,
    // EndOfPartition is queued: nothing may follow it.
    finished: bool,
    // Released: everything queued was dropped, and whatever is added is dropped.
    released: bool,
    listener: Option<Waker>,
    buffers_out: u64,
    bytes_out: u64,
}

impl ResultSubpartition {
    /// An empty subpartition.
    pub fn new(index: SubpartitionIndex) -> ResultSubpartition {
        ResultSubpartition {
            index,
            state: Mutex::new(State::default()),
            buffer_size: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// This subpartition's index in its partition.
    pub fn index(&self) -> SubpartitionIndex {
        self.index
    }

    /// Sets the size of the buffers the writer starts from now on (buffer debloating, from
    /// the reader's side: a local channel directly, a remote one through NewBufferSize); 0
    /// for whole segments. A hint: a record's last buffer may grow past it rather than
    /// block the writer mid-record.
    pub fn set_buffer_size(&self, bytes: usize) {
        self.buffer_size
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// The buffer size asked for; 0 for whole segments.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues a data buffer (its builder may still be writing). After
    /// [`release`](Self::release) the consumer is dropped instead.
    ///
    /// # Panics
    ///
    /// When the consumer's buffers are not data, after [`finish`](Self::finish), or when the
    /// queue holds [`SUBPARTITION_QUEUE_MAX`] entries (bugs of the producer).
    pub fn add(&self, consumer: BufferConsumer) {
        assert_eq!(
            consumer.data_type(),
            DataType::Data,
            "add takes data buffers"
        );
        self.enqueue(Entry::Data(consumer), false);
    }

    /// Queues one serialized event: a priority event ahead of every queued data buffer and
    /// in-order event, any other in order. After [`release`](Self::release) it is dropped.
    ///
    /// # Panics
    ///
    /// When `event` is data or EndOfPartition (use [`finish`](Self::finish)), after
    /// `finish`, or when the queue is full.
    pub fn add_event(&self, event: NetworkBuffer) {
        let data_type = event.data_type();
        assert!(
            data_type.is_event(),
            "add_event takes events, not {data_type:?}"
        );
        assert_ne!(
            data_type,
            DataType::EndOfPartition,
            "finish queues EndOfPartition"
        );
        self.enqueue(Entry::Event(event), false);
    }

    /// Queues `end` (an EndOfPartition buffer) as the last entry and makes everything
    /// queued available, unfinished head included.
    ///
    /// # Panics
    ///
    /// When `end` is not EndOfPartition, or the subpartition already finished.
    pub fn finish(&self, end: NetworkBuffer) {
        assert_eq!(
            end.data_type(),
            DataType::EndOfPartition,
            "finish takes EndOfPartition"
        );
        self.enqueue(Entry::Event(end), true);
    }

    fn enqueue(&self, entry: Entry, finishing: bool) {
        let (listener, dropped) = {
            let mut state = self.lock();
            if state.released {
                (None, Some(entry))
            } else {
                assert!(
                    !state.finished,
                    "{} received a buffer after it finished",
                    self.index
                );
                let queued = state.queue.len() + state.priority.len();
                assert!(
                    queued < SUBPARTITION_QUEUE_MAX,
                    "{} queue is full",
                    self.index
                );
                match entry {
                    Entry::Event(event) if event.data_type().is_priority() => {
                        state.priority.push_back(event);
                    }
                    entry => state.queue.push_back(entry),
                }
                if finishing {
                    state.finished = true;
                    state.flush_requested = true;
                }
                (state.listener.take(), None)
            }
        };
        // Outside the lock: dropping recycles segments, and a woken consumer polls.
        drop(dropped);
        if let Some(listener) = listener {
            listener.wake();
        }
    }

    /// Wakes the listener: a queued buffer's writer finished it, so it is readable. The
    /// producer calls this after finishing a builder it queued earlier.
    pub fn notify_data_available(&self) {
        let listener = self.lock().listener.take();
        if let Some(listener) = listener {
            listener.wake();
        }
    }

    /// Makes the committed bytes of an unfinished head buffer available, so a consumer
    /// need not wait for the buffer to fill. A no-op when nothing is queued or a flush is
    /// already pending (the reader was woken for it).
    pub fn flush(&self) {
        let listener = {
            let mut state = self.lock();
            if state.queue.is_empty() || state.flush_requested {
                return;
            }
            state.flush_requested = true;
            state.listener.take()
        };
        if let Some(listener) = listener {
            listener.wake();
        }
    }

    /// The next buffer: a priority event, else the head's newly committed bytes or the next
    /// in-order event; `None` when nothing is available (more may come later).
    ///
    /// # Panics
    ///
    /// When a consumer misbehaves (see [`BufferConsumer::build`]).
    pub fn poll_buffer(&self) -> Option<PolledBuffer> {
        self.poll(true)
    }

    /// As [`poll_buffer`](Self::poll_buffer), but without credit (`has_credit` false) only
    /// an event at the head (or a priority event) is handed out: a remote reader sends a
    /// data buffer only when its receiver has a buffer for it, and events need no credit.
    ///
    /// # Panics
    ///
    /// As [`poll_buffer`](Self::poll_buffer).
    pub fn poll_buffer_with_credit(&self, has_credit: bool) -> Option<PolledBuffer> {
        self.poll(has_credit)
    }

    fn poll(&self, data_allowed: bool) -> Option<PolledBuffer> {
        let mut drained = Vec::new();
        let polled = {
            let mut state = self.lock();
            let buffer = state.poll(&mut drained, data_allowed)?;
            state.buffers_out += 1;
            state.bytes_out += buffer.len() as u64;
            PolledBuffer {
                buffer,
                backlog: state.backlog(),
            }
        };
        // Consumers of finished buffers drop outside the lock.
        drop(drained);
        Some(polled)
    }

    /// Registers `listener`, woken once (then forgotten) the next time a buffer, an event
    /// or a flush may have made data available. A spurious wake-up is possible: poll again.
    pub fn register_listener(&self, listener: &Waker) {
        self.lock().listener = Some(listener.clone());
    }

    /// Drops everything queued (each segment goes home once its builder and buffers have
    /// dropped too); whatever is added later is dropped at once.
    pub fn release(&self) {
        let (queue, priority) = {
            let mut state = self.lock();
            state.released = true;
            state.listener = None;
            (
                std::mem::take(&mut state.queue),
                std::mem::take(&mut state.priority),
            )
        };
        drop((queue, priority));
    }

    /// Whether [`release`](Self::release) was called.
    pub fn is_released(&self) -> bool {
        self.lock().released
    }

    /// Whether EndOfPartition is queued (or was handed out).
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// Whether its reader has taken everything up to EndOfPartition, or it was released:
    /// nothing is left for a reader.
    pub fn is_consumed(&self) -> bool {
        let state = self.lock();
        state.released || (state.finished && state.queue.is_empty() && state.priority.is_empty())
    }

    /// Finished data buffers queued now.
    pub fn backlog(&self) -> usize {
        self.lock().backlog()
    }

    /// Data buffers queued now: the finished ones (the backlog) and the one the writer is
    /// still filling, if queued. Buffer debloating counts these as in flight to the reader.
    pub fn data_buffers_queued(&self) -> usize {
        let state = self.lock();
        state
            .queue
            .iter()
            .filter(|entry| matches!(entry, Entry::Data(_)))
            .count()
    }

    /// The counters now.
    pub fn metrics(&self) -> SubpartitionMetrics {
        let state = self.lock();
        SubpartitionMetrics {
            buffers_out: state.buffers_out,
            bytes_out: state.bytes_out,
            backlog: state.backlog(),
            queued_bytes: state.queued_bytes(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// The next buffer; drained consumers are moved to `drained` to be dropped unlocked.
    fn poll(
        &mut self,
        drained: &mut Vec<BufferConsumer>,
        data_allowed: bool,
    ) -> Option<NetworkBuffer> {
        if let Some(event) = self.priority.pop_front() {
            return Some(event);
        }
        loop {
            match self.queue.front_mut()? {
                Entry::Event(_) => match self.queue.pop_front() {
                    Some(Entry::Event(event)) => return Some(event),
                    _ => unreachable!("the head is an event"),
                },
                Entry::Data(_) if !data_allowed => return None,
                Entry::Data(consumer) => {
                    let finished = consumer.is_finished();
                    if !finished && !self.flush_requested {
                        return None;
                    }
                    let buffer = consumer.build();
                    if finished {
                        // Every committed byte is in `buffer`: the head is done.
                        match self.queue.pop_front() {
                            Some(Entry::Data(consumer)) => drained.push(consumer),
                            _ => unreachable!("the head is data"),
                        }
                    } else if buffer.is_empty() {
                        // Flushed and nothing new: the flush is served; bytes committed
                        // later wait for the next flush or for the buffer to finish.
                        self.flush_requested = false;
                        return None;
                    }
                    if !buffer.is_empty() {
                        return Some(buffer);
                    }
                }
            }
        }
    }

    fn queued_bytes(&self) -> u64 {
        let queued = self.queue.iter().map(|entry| match entry {
            Entry::Data(consumer) => consumer.unread_bytes(),
            Entry::Event(event) => event.len(),
        });
        let priority = self.priority.iter().map(NetworkBuffer::len);
        queued.chain(priority).map(|bytes| bytes as u64).sum()
    }

    fn backlog(&self) -> usize {
        self.queue
            .iter()
            .filter(|entry| matches!(entry, Entry::Data(consumer) if consumer.is_finished()))
            .count()
    }
}

impl fmt::Debug for ResultSubpartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("ResultSubpartition")
            .field("index", &self.index.0)
            .field("queued", &state.queue.len())
            .field("priority", &state.priority.len())
            .field("flush_requested", &state.flush_requested)
            .field("finished", &state.finished)
            .field("released", &state.released)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::buffer::test_support::{CountingWaker, manager};
    use crate::pool::NetworkBufferPool;

    fn event(pool: &crate::LocalBufferPool, data_type: DataType, bytes: &[u8]) -> NetworkBuffer {
        let mut segment = pool.try_request().unwrap();
        segment.segment_mut().put_bytes(0, bytes);
        segment.into_buffer(bytes.len(), data_type)
    }

    fn drain(subpartition: &ResultSubpartition) -> Vec<(DataType, Vec<u8>, usize)> {
        std::iter::from_fn(|| subpartition.poll_buffer())
            .map(|p| {
                (
                    p.buffer.data_type(),
                    p.buffer.as_bytes().to_vec(),
                    p.backlog,
                )
            })
            .collect()
    }

    #[test]
    fn unfinished_head_waits_for_flush_and_finished_buffers_count_in_the_backlog() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let pool = global.create_local_pool(4, 4).unwrap();
        let subpartition = ResultSubpartition::new(SubpartitionIndex(0));
        let (mut first, consumer) = pool.try_request().unwrap().into_builder(DataType::Data);
        subpartition.add(consumer);
        first.append_and_commit(b"abc");
        assert!(
            subpartition.poll_buffer().is_none(),
            "unfinished, not flushed"
        );
        subpartition.flush();
        let polled = subpartition.poll_buffer().unwrap();
        assert_eq!((polled.buffer.as_bytes(), polled.backlog), (&b"abc"[..], 0));
        drop(polled);
        assert!(subpartition.poll_buffer().is_none(), "the flush was served");
        first.append_and_commit(b"de");
        first.finish();
        let (mut second, consumer) = pool.try_request().unwrap().into_builder(DataType::Data);
        subpartition.add(consumer);
        second.append_and_commit(b"fg");
        second.finish();
        assert_eq!(subpartition.backlog(), 2);
        assert_eq!(
            drain(&subpartition),
            [
                (DataType::Data, b"de".to_vec(), 1),
                (DataType::Data, b"fg".to_vec(), 0)
            ]
        );
        let metrics = subpartition.metrics();
        assert_eq!(
            (metrics.buffers_out, metrics.bytes_out, metrics.backlog),
            (3, 7, 0)
        );
        drop((pool, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn priority_events_overtake_and_other_events_keep_their_place() {
        let manager = manager(6);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 6).unwrap();
        let pool = global.create_local_pool(6, 6).unwrap();
        let subpartition = ResultSubpartition::new(SubpartitionIndex(1));
        let (mut builder, consumer) = pool.try_request().unwrap().into_builder(DataType::Data);
        subpartition.add(consumer);
        builder.append_and_commit(b"r1");
        builder.finish();
        subpartition.add_event(event(&pool, DataType::Barrier, b"b1"));
        subpartition.add_event(event(&pool, DataType::PriorityEvent, b"p1"));
        subpartition.add_event(event(&pool, DataType::Event, b"e1"));
        subpartition.add_event(event(&pool, DataType::PriorityEvent, b"p2"));
        subpartition.finish(event(&pool, DataType::EndOfPartition, b""));
        assert!(subpartition.is_finished());
        let order: Vec<(DataType, Vec<u8>)> = drain(&subpartition)
            .into_iter()
            .map(|(t, b, _)| (t, b))
            .collect();
        assert_eq!(
            order,
            [
                (DataType::PriorityEvent, b"p1".to_vec()),
                (DataType::PriorityEvent, b"p2".to_vec()),
                (DataType::Data, b"r1".to_vec()),
                (DataType::Barrier, b"b1".to_vec()),
                (DataType::Event, b"e1".to_vec()),
                (DataType::EndOfPartition, Vec::new()),
            ]
        );
        drop((pool, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn release_drops_the_queue_and_later_adds_and_buffers_in_flight_go_home() {
        let manager = manager(4);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 4).unwrap();
        let pool = global.create_local_pool(4, 4).unwrap();
        let subpartition = ResultSubpartition::new(SubpartitionIndex(0));
        let (mut builder, consumer) = pool.try_request().unwrap().into_builder(DataType::Data);
        subpartition.add(consumer);
        builder.append_and_commit(b"in flight");
        subpartition.flush();
        let in_flight = subpartition.poll_buffer().unwrap().buffer;
        subpartition.add_event(event(&pool, DataType::Event, b"queued"));
        subpartition.release();
        assert!(subpartition.is_released());
        subpartition.add_event(event(&pool, DataType::Event, b"late"));
        assert!(subpartition.poll_buffer().is_none());
        assert_eq!(
            pool.free_segments(),
            1,
            "two fetched; the builder and the buffer share one"
        );
        drop(builder);
        assert_eq!(in_flight.as_bytes(), b"in flight");
        drop(in_flight);
        assert_eq!(pool.free_segments(), 2);
        drop((pool, global));
        manager.leak_check().unwrap();
    }

    #[test]
    fn the_listener_is_woken_once_per_registration() {
        let manager = manager(2);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 2).unwrap();
        let pool = global.create_local_pool(2, 2).unwrap();
        let subpartition = ResultSubpartition::new(SubpartitionIndex(0));
        let counter = Arc::new(CountingWaker::default());
        subpartition.register_listener(&Waker::from(Arc::clone(&counter)));
        subpartition.add_event(event(&pool, DataType::Event, b"one"));
        subpartition.flush();
        assert_eq!(counter.wakes(), 1);
        drop(subpartition);
        drop((pool, global));
        manager.leak_check().unwrap();
    }

    /// One producer thread writes and finishes buffers while the consumer polls: every byte
    /// arrives once, in order.
    #[test]
    fn producer_and_consumer_on_two_threads() {
        let manager = manager(3);
        let owner = manager.owner("network");
        let global = NetworkBufferPool::new(&owner, 3).unwrap();
        let pool = Arc::new(global.create_local_pool(3, 3).unwrap());
        let subpartition = Arc::new(ResultSubpartition::new(SubpartitionIndex(0)));
        let rounds: u8 = if cfg!(miri) { 4 } else { 50 };
        let producer = {
            let (pool, subpartition) = (Arc::clone(&pool), Arc::clone(&subpartition));
            std::thread::spawn(move || {
                for round in 0..rounds {
                    let segment = loop {
                        match pool.try_request() {
                            Some(segment) => break segment,
                            None => std::thread::sleep(std::time::Duration::from_micros(10)),
                        }
                    };
                    let (mut builder, consumer) = segment.into_builder(DataType::Data);
                    subpartition.add(consumer);
                    builder.append_and_commit(&[round; 3]);
                    subpartition.flush();
                    builder.append_and_commit(&[round; 2]);
                    builder.finish();
                }
                // The consumer may still hold every segment: wait for one, as for data
                // (`event` would panic on an empty pool and the consumer wait forever).
                let end = loop {
                    match pool.try_request() {
                        Some(segment) => break segment,
                        None => std::thread::sleep(std::time::Duration::from_micros(10)),
                    }
                };
                subpartition.finish(end.into_buffer(0, DataType::EndOfPartition));
            })
        };
        let mut bytes = Vec::new();
        // A producer that panicked sends no end: once it has ended, a poll that finds
        // nothing (after one that saw it ended) stops, and `join` says why.
        let mut ended = false;
        loop {
            match subpartition.poll_buffer() {
                Some(p) if p.buffer.data_type() == DataType::EndOfPartition => break,
                Some(p) => bytes.extend_from_slice(p.buffer.as_bytes()),
                None if ended => break,
                None => {
                    ended = producer.is_finished();
                    std::thread::sleep(std::time::Duration::from_micros(10));
                }
            }
        }
        producer.join().unwrap();
        let expected: Vec<u8> = (0..rounds).flat_map(|r| [r; 5]).collect();
        assert_eq!(bytes, expected);
        drop((subpartition, pool, global));
        manager.leak_check().unwrap();
    }
}
