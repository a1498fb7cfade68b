//! `BufferBuilder` / `BufferConsumer`: one writer and one reader sharing one segment.
//!
//! ```text
//!              committed (atomic, Release on commit / Acquire on read)
//!                  │
//!   segment: [ read by buffers │ consumer may read │ writer appends here │ unused ]
//!            0            consumer.read      committed           written      limit ≤ size
//! ```
//!
//! The task thread appends record bytes with [`BufferBuilder::append`] and publishes them
//! with [`BufferBuilder::commit`], one `Release` store of the position word. The reader
//! (the subpartition, later the network thread) calls [`BufferConsumer::build`], which
//! loads the word with `Acquire` and returns the newly committed bytes as a
//! [`NetworkBuffer`] sharing the segment: no copy. The writer's "finished" flag is the high
//! bit of the same word ([`BUFFER_POSITION_FINISHED_BIT`]), so a reader never sees a
//! finished builder without its last bytes.
//!
//! This is the only module of the crate with `unsafe` code (listed in docs/SAFETY.md): the
//! segment's bytes are written by one thread and read by others at the same time, which no
//! safe borrow can express. The rules that make it sound are [`SharedSegment`]'s numbered
//! invariants: the writer touches only bytes at or above the committed position, readers
//! only bytes below it, and no reference ever covers bytes the other side may touch.

use crate::sync::{AtomicU32, Ordering};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use weir_kernel::memory::MemorySegment;

use super::data_type::DataType;
use super::network_buffer::NetworkBuffer;
use super::recycler::Recycler;
use crate::constants::{
    BUFFER_POSITION_FINISHED_BIT, BUFFER_POSITION_MAX, RECORD_LENGTH_PREFIX_BYTES,
};

/// One segment shared by a builder, its consumer and every buffer sliced from it; the
/// segment goes home (to its recycler, or its manager) when the last of them drops.
///
/// Invariants:
/// 1. `base .. base + capacity` are the bytes of `segment`, taken once from
///    `as_mut_slice` while the segment was owned exclusively. The segment is never
///    accessed through its own methods again while this value lives; all access goes
///    through `base`.
/// 2. The committed position (`position` without the finished bit) never decreases and
///    never exceeds `capacity`; once the finished bit is set, the word never changes.
/// 3. At most one writer exists (the [`BufferBuilder`] that created the value, or none for
///    a sealed buffer). It writes only bytes in `committed .. capacity`, and publishes
///    them with a `Release` store before anyone may read them. Bytes below the committed
///    position are never written again.
/// 4. Every [`CommittedBytes`] range `start .. start + len` lies below a committed
///    position that was loaded with `Acquire` (or set before the value was shared), so by
///    invariants 2 and 3 its bytes are initialised, visible, and immutable for as long as
///    the range lives.
pub(crate) struct SharedSegment {
    base: NonNull<u8>,
    capacity: usize,
    position: AtomicU32,
    // `Some` until `Drop` hands the segment home.
    segment: Option<MemorySegment>,
    recycler: Option<Arc<dyn Recycler>>,
}

// SAFETY: the raw `base` pointer is the only reason this is not automatically `Send`; it
// points into the segment the value owns (invariant 1), so moving the value moves that
// ownership, and the recycler is `Send + Sync` by its trait bound.
unsafe impl Send for SharedSegment {}
// SAFETY: shared access goes through `base` under invariants 3 and 4: concurrent writes
// (one writer) and reads never touch the same bytes, and the position word is atomic.
unsafe impl Sync for SharedSegment {}

impl SharedSegment {
    /// Takes `segment` with `position` as its initial position word.
    fn new(
        mut segment: MemorySegment,
        position: u32,
        recycler: Option<Arc<dyn Recycler>>,
    ) -> SharedSegment {
        let capacity = segment.size();
        assert!(
            capacity <= BUFFER_POSITION_MAX as usize,
            "segment of {capacity} bytes does not fit the position word"
        );
        assert!((position & BUFFER_POSITION_MAX) as usize <= capacity);
        let base = NonNull::from(segment.as_mut_slice()).cast::<u8>();
        SharedSegment {
            base,
            capacity,
            position: AtomicU32::new(position),
            segment: Some(segment),
            recycler,
        }
    }

    /// A pointer to byte `offset`, which may be one past the end.
    fn ptr_at(&self, offset: usize) -> *mut u8 {
        assert!(offset <= self.capacity);
        // In bounds of the segment by the assert, so `wrapping_add` never wraps and keeps
        // the segment's provenance.
        self.base.as_ptr().wrapping_add(offset)
    }

    /// The committed position and whether the writer has finished, loaded with `Acquire`.
    fn load(&self) -> (usize, bool) {
        let word = self.position.load(Ordering::Acquire);
        let committed = (word & BUFFER_POSITION_MAX) as usize;
        (committed, word & BUFFER_POSITION_FINISHED_BIT != 0)
    }
}

impl Drop for SharedSegment {
    fn drop(&mut self) {
        // `&mut self`: no builder, consumer or buffer refers to the bytes any more.
        let segment = self.segment.take().expect("the segment is home only once");
        match self.recycler.take() {
            Some(recycler) => recycler.recycle(segment),
            None => drop(segment),
        }
    }
}

/// A read-only range of committed bytes of a [`SharedSegment`]; clones share the segment.
///
/// Invariant: `start + len` is at most a committed position of `shared` (invariant 4).
pub(crate) struct CommittedBytes {
    shared: Arc<SharedSegment>,
    start: usize,
    len: usize,
}

impl CommittedBytes {
    /// A finished, unpooled-or-pooled segment whose first `len` bytes are its content.
    ///
    /// # Panics
    ///
    /// When `len` exceeds the segment.
    pub(crate) fn sealed(
        segment: MemorySegment,
        len: usize,
        recycler: Option<Arc<dyn Recycler>>,
    ) -> CommittedBytes {
        assert!(
            len <= segment.size(),
            "buffer of {len} bytes in a segment of {}",
            segment.size()
        );
        let position =
            u32::try_from(len).expect("len fits the position word") | BUFFER_POSITION_FINISHED_BIT;
        // No writer: the bytes were written through the segment before it was moved here.
        CommittedBytes {
            shared: Arc::new(SharedSegment::new(segment, position, recycler)),
            start: 0,
            len,
        }
    }

    /// The bytes of the range.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        let start = self.shared.ptr_at(self.start);
        // `ptr_at` checked `start <= capacity`; the range invariant gives the end.
        debug_assert!(self.start + self.len <= self.shared.capacity);
        // SAFETY: invariant 4 of `SharedSegment`: the range lies below a committed
        // position, so its bytes are initialised, visible to this thread and never written
        // again while `self.shared` keeps the segment alive (the returned slice borrows
        // `self`). The writer touches only bytes at or above the committed position, so
        // this shared reference overlaps no write.
        unsafe { std::slice::from_raw_parts(start, self.len) }
    }

    /// The `len` bytes at `offset` within this range, sharing the segment.
    ///
    /// # Panics
    ///
    /// When the sub-range does not lie within this range.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> CommittedBytes {
        assert!(
            len <= self.len && offset <= self.len - len,
            "slice of {len} bytes at offset {offset} of a {}-byte buffer",
            self.len
        );
        CommittedBytes {
            shared: Arc::clone(&self.shared),
            start: self.start + offset,
            len,
        }
    }

    /// Bytes in the range.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Handles sharing the segment: builder, consumer and buffers together.
    pub(crate) fn segment_refs(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    /// Whether both ranges are views of the same segment.
    pub(crate) fn shares_segment_with(&self, other: &CommittedBytes) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Clone for CommittedBytes {
    fn clone(&self) -> CommittedBytes {
        CommittedBytes {
            shared: Arc::clone(&self.shared),
            start: self.start,
            len: self.len,
        }
    }
}

/// The writing end: appends bytes into a segment and publishes them to its
/// [`BufferConsumer`].
///
/// Single writer: the builder is not `Clone` and every write takes `&mut self`.
/// Dropping the builder finishes it, so its consumer never waits for a writer that is
/// gone.
pub struct BufferBuilder {
    shared: Arc<SharedSegment>,
    // Bytes appended; `committed <= written <= limit <= shared.capacity`.
    written: usize,
    // The position last published.
    committed: usize,
    // The usable capacity, lowered by `trim`.
    limit: usize,
    finished: bool,
}

impl BufferBuilder {
    /// A builder over `segment`, whose bytes return to its manager when the builder, the
    /// consumer and every buffer built from them have dropped; and its one consumer, whose
    /// buffers have type `data_type`.
    pub fn new(segment: MemorySegment, data_type: DataType) -> (BufferBuilder, BufferConsumer) {
        BufferBuilder::with_recycler(segment, data_type, None)
    }

    /// As [`BufferBuilder::new`], but the segment goes to `recycler` (its pool) at the end.
    pub fn pooled(
        segment: MemorySegment,
        data_type: DataType,
        recycler: Arc<dyn Recycler>,
    ) -> (BufferBuilder, BufferConsumer) {
        BufferBuilder::with_recycler(segment, data_type, Some(recycler))
    }

    fn with_recycler(
        segment: MemorySegment,
        data_type: DataType,
        recycler: Option<Arc<dyn Recycler>>,
    ) -> (BufferBuilder, BufferConsumer) {
        let shared = Arc::new(SharedSegment::new(segment, 0, recycler));
        let builder = BufferBuilder {
            shared: Arc::clone(&shared),
            written: 0,
            committed: 0,
            limit: shared.capacity,
            finished: false,
        };
        let consumer = BufferConsumer {
            shared,
            read: 0,
            data_type,
        };
        (builder, consumer)
    }

    /// Copies as much of `bytes` as fits below the capacity and returns how many bytes it
    /// copied. The bytes are not visible to the consumer until [`commit`](Self::commit).
    pub fn append(&mut self, bytes: &[u8]) -> usize {
        let count = bytes.len().min(self.limit - self.written);
        if count == 0 {
            return 0;
        }
        let target = self.shared.ptr_at(self.written);
        // `ptr_at` checked the start; the end is within `limit <= capacity`.
        debug_assert!(self.written + count <= self.shared.capacity);
        // SAFETY: invariant 3 of `SharedSegment`: this builder is the one writer, and
        // `written .. written + count` lies at or above the committed position (`commit`
        // publishes `written`, which only grows) and below the capacity, so no reader and
        // no reference covers these bytes. `bytes` cannot overlap them either: any slice
        // of this segment a caller holds covers committed bytes only.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), target, count) };
        self.written += count;
        count
    }

    /// Appends `record` behind its 4-byte little-endian length and commits both, when all
    /// of it fits; answers `false` and writes nothing otherwise. The writer's fast path:
    /// one bounds check and one `Release` store per record.
    ///
    /// # Panics
    ///
    /// When the record's length does not fit a `u32`.
    #[inline]
    pub fn try_append_framed(&mut self, record: &[u8]) -> bool {
        let framed = RECORD_LENGTH_PREFIX_BYTES + record.len();
        if framed > self.limit - self.written {
            return false;
        }
        let prefix = u32::try_from(record.len())
            .expect("a record length fits a u32")
            .to_le_bytes();
        let start = self.shared.ptr_at(self.written);
        debug_assert!(self.written + framed <= self.shared.capacity);
        // SAFETY: invariant 3 of `SharedSegment`, as in `append`: this builder is the one
        // writer, and `written .. written + framed` lies at or above the committed position
        // and (checked above) below `limit <= capacity`, so no reader and no other
        // reference covers these bytes while this exclusive one lives (to the end of this
        // call). `record` can only cover committed bytes of this segment, so it does not
        // overlap the target.
        let target = unsafe { std::slice::from_raw_parts_mut(start, framed) };
        let (head, body) = target.split_at_mut(RECORD_LENGTH_PREFIX_BYTES);
        head.copy_from_slice(&prefix);
        copy_small(body, record);
        self.written += framed;
        self.publish(false);
        true
    }

    /// Publishes every appended byte to the consumer: one `Release` store.
    pub fn commit(&mut self) {
        self.publish(false);
    }

    /// [`append`](Self::append) then [`commit`](Self::commit).
    pub fn append_and_commit(&mut self, bytes: &[u8]) -> usize {
        let count = self.append(bytes);
        self.commit();
        count
    }

    /// Commits and marks the builder finished, and returns the bytes written.
    pub fn finish(mut self) -> usize {
        self.publish(true);
        self.written
    }

    /// Lowers (or raises, up to the segment size) the usable capacity to `size` bytes,
    /// never below the bytes already written. Buffer debloating produces smaller buffers
    /// from full-size segments this way.
    pub fn trim(&mut self, size: usize) {
        self.limit = size.max(self.written).min(self.shared.capacity);
    }

    /// Bytes appended so far, committed or not.
    pub fn written_bytes(&self) -> usize {
        self.written
    }

    /// Bytes published to the consumer so far.
    pub fn committed_bytes(&self) -> usize {
        self.committed
    }

    /// The usable capacity in bytes (the segment size unless trimmed).
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// The segment's size: the capacity `trim` can raise the builder to.
    pub fn segment_size(&self) -> usize {
        self.shared.capacity
    }

    /// Bytes that still fit.
    pub fn writable_bytes(&self) -> usize {
        self.limit - self.written
    }

    /// Whether no byte fits any more.
    pub fn is_full(&self) -> bool {
        self.written == self.limit
    }

    fn publish(&mut self, finish: bool) {
        assert!(!self.finished, "buffer builder used after it finished");
        let mut word = u32::try_from(self.written).expect("written fits the position word");
        if finish {
            word |= BUFFER_POSITION_FINISHED_BIT;
            self.finished = true;
        }
        self.shared.position.store(word, Ordering::Release);
        self.committed = self.written;
    }
}

/// `target.copy_from_slice(source)`, with records of up to 16 bytes copied by two
/// overlapping fixed-size moves instead of a call to `memcpy` (whose call costs more than
/// the copy at that size: small records are the common case of a keyed exchange).
#[inline]
fn copy_small(target: &mut [u8], source: &[u8]) {
    let len = source.len();
    match len {
        8..=16 => {
            let (first, last) = (&source[..8], &source[len - 8..]);
            target[..8].copy_from_slice(first);
            target[len - 8..].copy_from_slice(last);
        }
        4..=7 => {
            let (first, last) = (&source[..4], &source[len - 4..]);
            target[..4].copy_from_slice(first);
            target[len - 4..].copy_from_slice(last);
        }
        _ => target.copy_from_slice(source),
    }
}

impl Drop for BufferBuilder {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(true);
        }
    }
}

impl fmt::Debug for BufferBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferBuilder")
            .field("written", &self.written)
            .field("committed", &self.committed)
            .field("capacity", &self.limit)
            .field("finished", &self.finished)
            .finish()
    }
}

/// The reading end: hands out the bytes its [`BufferBuilder`] committed since the last
/// read, as [`NetworkBuffer`]s that share the segment.
pub struct BufferConsumer {
    shared: Arc<SharedSegment>,
    // Bytes already handed out; at most the committed position.
    read: usize,
    data_type: DataType,
}

impl BufferConsumer {
    /// The bytes committed since the last call, as a buffer sharing the segment (possibly
    /// empty).
    ///
    /// # Panics
    ///
    /// When the committed position went backwards, which invariant 2 rules out (a bug).
    pub fn build(&mut self) -> NetworkBuffer {
        let (committed, _) = self.shared.load();
        assert!(committed >= self.read, "committed position went backwards");
        let bytes = CommittedBytes {
            shared: Arc::clone(&self.shared),
            start: self.read,
            len: committed - self.read,
        };
        self.read = committed;
        NetworkBuffer::from_committed(bytes, self.data_type)
    }

    /// Another consumer of the same builder, standing where this one stands: a broadcast
    /// record is written once and read by every subpartition through its own copy (one
    /// copy of the bytes, N readers). Each copy keeps the segment alive.
    pub fn copy(&self) -> BufferConsumer {
        BufferConsumer {
            shared: Arc::clone(&self.shared),
            read: self.read,
            data_type: self.data_type,
        }
    }

    /// Committed bytes not yet built.
    pub fn unread_bytes(&self) -> usize {
        self.shared.load().0 - self.read
    }

    /// Whether committed bytes are waiting to be built.
    pub fn is_data_available(&self) -> bool {
        self.shared.load().0 > self.read
    }

    /// Whether the writer has finished (its last bytes may still be waiting to be built).
    pub fn is_finished(&self) -> bool {
        self.shared.load().1
    }

    /// Whether the writer has finished and every byte has been built.
    pub fn is_drained(&self) -> bool {
        let (committed, finished) = self.shared.load();
        finished && committed == self.read
    }

    /// Bytes handed out so far.
    pub fn read_bytes(&self) -> usize {
        self.read
    }

    /// The data type of the buffers this consumer builds.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }
}

impl fmt::Debug for BufferConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (committed, finished) = self.shared.load();
        f.debug_struct("BufferConsumer")
            .field("read", &self.read)
            .field("committed", &committed)
            .field("finished", &finished)
            .field("data_type", &self.data_type)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::{KeepingRecycler, Rng, manager};

    #[test]
    fn appended_bytes_are_invisible_until_committed() {
        let manager = manager(1);
        let owner = manager.owner("builder");
        let (mut builder, mut consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        assert_eq!(builder.append(b"hello "), 6);
        assert!(!consumer.is_data_available());
        assert!(consumer.build().is_empty());
        builder.commit();
        assert!(consumer.is_data_available());
        let first = consumer.build();
        assert_eq!(first.as_bytes(), b"hello ");
        assert_eq!(builder.append_and_commit(b"world"), 5);
        let second = consumer.build();
        assert_eq!(second.as_bytes(), b"world");
        assert_eq!(second.data_type(), DataType::Data);
        assert!(first.shares_segment_with(&second), "zero copy: one segment");
        assert_eq!(consumer.read_bytes(), 11);
        assert_eq!(builder.committed_bytes(), 11);
        drop((builder, consumer, first, second));
        manager.leak_check().unwrap();
    }

    #[test]
    fn append_copies_what_fits_and_finish_is_seen_with_the_last_bytes() {
        let manager = manager(1);
        let owner = manager.owner("builder");
        let payload = Rng::new(11).bytes(5000);
        let (mut builder, mut consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        assert_eq!(builder.append(&payload), 4096);
        assert!(builder.is_full());
        assert_eq!(builder.append(&payload[4096..]), 0);
        assert!(!consumer.is_finished());
        assert_eq!(builder.finish(), 4096);
        assert!(consumer.is_finished());
        assert!(!consumer.is_drained());
        let buffer = consumer.build();
        assert_eq!(buffer.as_bytes(), &payload[..4096]);
        assert!(consumer.is_drained());
        drop(consumer);
        assert_eq!(buffer.segment_refs(), 1);
        drop(buffer);
        manager.leak_check().unwrap();
    }

    #[test]
    fn trim_lowers_capacity_but_never_below_what_is_written() {
        let manager = manager(1);
        let owner = manager.owner("debloat");
        let (mut builder, consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        builder.trim(256);
        assert_eq!(builder.capacity(), 256);
        assert_eq!(builder.append(&[1; 300]), 256);
        builder.trim(100);
        assert_eq!(builder.capacity(), 256, "never below the written bytes");
        builder.trim(1 << 20);
        assert_eq!(builder.capacity(), 4096, "never above the segment");
        assert_eq!(builder.writable_bytes(), 4096 - 256);
        assert_eq!(builder.written_bytes(), 256);
        drop((builder, consumer));
        manager.leak_check().unwrap();
    }

    #[test]
    fn dropping_the_builder_finishes_it() {
        let manager = manager(1);
        let owner = manager.owner("builder");
        let (mut builder, mut consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Barrier);
        builder.append(b"uncommitted");
        drop(builder);
        assert!(consumer.is_finished());
        let buffer = consumer.build();
        assert_eq!(buffer.as_bytes(), b"uncommitted");
        assert_eq!(buffer.data_type(), DataType::Barrier);
        assert!(consumer.is_drained());
        drop((consumer, buffer));
        manager.leak_check().unwrap();
    }

    #[test]
    fn pooled_segment_is_recycled_after_builder_consumer_and_buffers() {
        let manager = manager(1);
        let owner = manager.owner("pooled");
        let recycler = Arc::new(KeepingRecycler::default());
        let (mut builder, mut consumer) = BufferBuilder::pooled(
            owner.allocate_one().unwrap(),
            DataType::Data,
            Arc::clone(&recycler) as Arc<dyn Recycler>,
        );
        builder.append_and_commit(b"abc");
        let buffer = consumer.build();
        drop(builder);
        drop(consumer);
        assert_eq!(recycler.count(), 0, "the buffer still reads the segment");
        assert_eq!(buffer.as_bytes(), b"abc");
        drop(buffer);
        assert_eq!(recycler.count(), 1);
        drop(recycler.take_all());
        manager.leak_check().unwrap();
    }

    #[test]
    fn framed_appends_of_every_small_size_round_trip() {
        let manager = manager(1);
        let owner = manager.owner("framed");
        let (mut builder, mut consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        let records: Vec<Vec<u8>> = (0..=40u8)
            .map(|n| (0..n).map(|b| b ^ n).collect())
            .collect();
        let mut expected = Vec::new();
        for record in &records {
            assert!(builder.try_append_framed(record));
            expected.extend_from_slice(&u32::try_from(record.len()).unwrap().to_le_bytes());
            expected.extend_from_slice(record);
        }
        assert_eq!(consumer.build().as_bytes(), expected);
        let room = builder.writable_bytes();
        assert!(
            !builder.try_append_framed(&vec![1; room - 3]),
            "one byte too many"
        );
        assert_eq!(builder.writable_bytes(), room, "nothing written");
        assert!(builder.try_append_framed(&vec![1; room - 4]));
        assert!(builder.is_full());
        drop((builder, consumer));
        manager.leak_check().unwrap();
    }

    #[test]
    fn copies_of_a_consumer_read_the_same_bytes_independently() {
        let manager = manager(1);
        let owner = manager.owner("broadcast");
        let (mut builder, mut first) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        builder.append_and_commit(b"ab");
        let mut second = first.copy();
        assert_eq!(first.build().as_bytes(), b"ab");
        builder.append_and_commit(b"cd");
        assert_eq!(first.unread_bytes(), 2);
        assert_eq!(second.unread_bytes(), 4);
        assert_eq!(first.build().as_bytes(), b"cd");
        let whole = second.build();
        assert_eq!(whole.as_bytes(), b"abcd");
        drop((builder, first, second));
        assert_eq!(whole.segment_refs(), 1);
        drop(whole);
        manager.leak_check().unwrap();
    }

    #[test]
    #[should_panic(expected = "buffer builder used after it finished")]
    fn publishing_after_finish_is_a_bug() {
        // `finish` takes the builder; the only way to publish after it is a bug in
        // `publish` itself, which the flag catches.
        let manager = manager(1);
        let owner = manager.owner("builder");
        let (mut builder, _consumer) =
            BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
        builder.publish(true);
        builder.publish(false);
    }

    /// The writer appends seeded chunks and commits each while the reader, on another
    /// thread, builds buffers as bytes appear; the concatenation is the payload.
    #[test]
    fn producer_and_consumer_on_two_threads() {
        const SEED: u64 = 0x5eed_b0ff;
        const SEGMENTS: usize = 2;
        let manager = manager(SEGMENTS);
        let owner = manager.owner("two-threads");
        let mut rng = Rng::new(SEED);
        let payload = rng.bytes(SEGMENTS * 4096 - 100);
        let (sender, receiver) = std::sync::mpsc::sync_channel::<BufferConsumer>(SEGMENTS);
        let reader = std::thread::spawn(move || {
            let mut received = Vec::new();
            let mut buffers = Vec::new();
            for mut consumer in receiver {
                loop {
                    let drained = consumer.is_drained();
                    let buffer = consumer.build();
                    received.extend_from_slice(buffer.as_bytes());
                    buffers.push(buffer);
                    if drained {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            (received, buffers.len())
        });
        let mut rest = &payload[..];
        while !rest.is_empty() {
            let (mut builder, consumer) =
                BufferBuilder::new(owner.allocate_one().unwrap(), DataType::Data);
            sender.send(consumer).unwrap();
            while !rest.is_empty() && !builder.is_full() {
                let chunk = (1 + rng.below(700)).min(rest.len());
                let copied = builder.append_and_commit(&rest[..chunk]);
                rest = &rest[copied..];
            }
            builder.finish();
        }
        drop(sender);
        let (received, buffers) = reader.join().unwrap();
        assert!(received == payload, "seed {SEED:#x}: bytes differ");
        assert!(buffers >= SEGMENTS, "seed {SEED:#x}: {buffers} buffers");
        manager.leak_check().unwrap();
    }
}
