//! `NetworkBuffer`: a segment's readable bytes and what they are, reference counted.
//!
//! ```text
//!   NetworkBuffer ──┐
//!   NetworkBuffer ──┼──▶ Arc ──▶ segment [ readable bytes │ ... ] ──last drop──▶ recycler
//!   (clone/slice) ──┘                                               (or the manager)
//! ```
//!
//! Cloning a buffer shares its bytes (broadcast sends one copy of the bytes to every
//! subpartition as N references); [`NetworkBuffer::slice`] narrows the view and shares the
//! same count. The bytes are read only: a buffer is written before it is wrapped (by
//! filling the segment, or through a [`BufferBuilder`](crate::BufferBuilder)).

use std::fmt;
use std::sync::Arc;

use weir_kernel::memory::MemorySegment;

use super::builder::CommittedBytes;
use super::data_type::DataType;
use super::recycler::Recycler;

/// Readable bytes of a memory segment and their [`DataType`], reference counted.
///
/// When the last clone (or slice, or builder and consumer sharing the segment) drops, the
/// segment goes to the [`Recycler`] it came with, or back to its memory manager.
pub struct NetworkBuffer {
    bytes: CommittedBytes,
    data_type: DataType,
}

impl NetworkBuffer {
    /// The first `size` bytes of `segment`, not from a pool: the segment returns to its
    /// manager on the last drop.
    ///
    /// # Panics
    ///
    /// When `size` exceeds the segment.
    pub fn new(segment: MemorySegment, size: usize, data_type: DataType) -> NetworkBuffer {
        NetworkBuffer::from_committed(CommittedBytes::sealed(segment, size, None), data_type)
    }

    /// The first `size` bytes of `segment`, which goes to `recycler` on the last drop.
    ///
    /// # Panics
    ///
    /// When `size` exceeds the segment.
    pub fn pooled(
        segment: MemorySegment,
        size: usize,
        data_type: DataType,
        recycler: Arc<dyn Recycler>,
    ) -> NetworkBuffer {
        let bytes = CommittedBytes::sealed(segment, size, Some(recycler));
        NetworkBuffer::from_committed(bytes, data_type)
    }

    pub(crate) fn from_committed(bytes: CommittedBytes, data_type: DataType) -> NetworkBuffer {
        NetworkBuffer { bytes, data_type }
    }

    /// The readable bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_bytes()
    }

    /// Readable bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the bytes are.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The `len` bytes at `offset` of this buffer, sharing its segment and its count.
    ///
    /// # Panics
    ///
    /// When the range does not lie within the buffer.
    pub fn slice(&self, offset: usize, len: usize) -> NetworkBuffer {
        NetworkBuffer {
            bytes: self.bytes.slice(offset, len),
            data_type: self.data_type,
        }
    }

    /// How many handles share the segment now (buffers, and a builder and consumer if the
    /// buffer came from one). For metrics and tests; racy by nature.
    pub fn segment_refs(&self) -> usize {
        self.bytes.segment_refs()
    }

    /// Whether both buffers are views of the same segment.
    pub fn shares_segment_with(&self, other: &NetworkBuffer) -> bool {
        self.bytes.shares_segment_with(&other.bytes)
    }
}

impl Clone for NetworkBuffer {
    /// Another reference to the same bytes: no copy.
    fn clone(&self) -> NetworkBuffer {
        NetworkBuffer {
            bytes: self.bytes.clone(),
            data_type: self.data_type,
        }
    }
}

impl fmt::Debug for NetworkBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkBuffer")
            .field("len", &self.len())
            .field("data_type", &self.data_type)
            .field("segment_refs", &self.segment_refs())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::buffer::test_support::{KeepingRecycler, Rng, manager};

    #[test]
    fn readable_bytes_are_the_first_size_bytes() {
        let manager = manager(2);
        let owner = manager.owner("buffer");
        let mut segment = owner.allocate_one().unwrap();
        let payload = Rng::new(7).bytes(100);
        segment.put_bytes(0, &payload);
        let buffer = NetworkBuffer::new(segment, payload.len(), DataType::Data);
        assert_eq!(buffer.as_bytes(), &payload[..]);
        assert_eq!(buffer.len(), 100);
        assert!(!buffer.is_empty());
        assert_eq!(buffer.data_type(), DataType::Data);
        assert_eq!(owner.segments(), 1);
        drop(buffer);
        assert_eq!(owner.segments(), 0);
        manager.leak_check().unwrap();
    }

    #[test]
    fn clones_share_bytes_and_the_segment_goes_home_after_the_last() {
        let manager = manager(2);
        let owner = manager.owner("broadcast");
        let recycler = Arc::new(KeepingRecycler::default());
        let mut segment = owner.allocate_one().unwrap();
        segment.put_bytes(0, b"one copy, many readers");
        let first = NetworkBuffer::pooled(
            segment,
            22,
            DataType::Event,
            Arc::clone(&recycler) as Arc<dyn Recycler>,
        );
        let copies: Vec<NetworkBuffer> = (0..4).map(|_| first.clone()).collect();
        assert_eq!(first.segment_refs(), 5);
        for copy in &copies {
            assert!(copy.shares_segment_with(&first));
            assert_eq!(copy.as_bytes().as_ptr(), first.as_bytes().as_ptr());
        }
        drop(copies);
        assert_eq!(recycler.count(), 0);
        drop(first);
        assert_eq!(recycler.count(), 1, "the last drop recycles");
        // The pool still holds it; it goes to the manager when the pool lets go.
        assert_eq!(owner.segments(), 1);
        drop(recycler.take_all());
        manager.leak_check().unwrap();
    }

    #[test]
    fn slices_narrow_the_view_and_share_the_count() {
        let manager = manager(1);
        let owner = manager.owner("slice");
        let mut segment = owner.allocate_one().unwrap();
        segment.put_bytes(0, b"headerpayload");
        let buffer = NetworkBuffer::new(segment, 13, DataType::Data);
        let payload = buffer.slice(6, 7);
        assert_eq!(payload.as_bytes(), b"payload");
        assert_eq!(payload.slice(0, 3).as_bytes(), b"pay");
        assert!(buffer.slice(13, 0).is_empty());
        assert_eq!(buffer.segment_refs(), 2);
        drop(buffer);
        assert_eq!(
            payload.as_bytes(),
            b"payload",
            "a slice keeps the segment alive"
        );
        drop(payload);
        manager.leak_check().unwrap();
    }

    #[test]
    #[should_panic(expected = "slice of 5 bytes at offset 10 of a 13-byte buffer")]
    fn slice_out_of_range_is_a_bug() {
        let manager = manager(1);
        let owner = manager.owner("slice");
        let buffer = NetworkBuffer::new(owner.allocate_one().unwrap(), 13, DataType::Data);
        let _ = buffer.slice(10, 5);
    }

    #[test]
    #[should_panic(expected = "buffer of 4097 bytes in a segment of 4096")]
    fn size_beyond_the_segment_is_a_bug() {
        let manager = manager(1);
        let owner = manager.owner("oversize");
        let _ = NetworkBuffer::new(owner.allocate_one().unwrap(), 4097, DataType::Data);
    }

    #[test]
    fn buffers_move_between_threads() {
        let manager = manager(1);
        let owner = manager.owner("threads");
        let mut segment = owner.allocate_one().unwrap();
        segment.put_bytes(0, b"abc");
        let buffer = NetworkBuffer::new(segment, 3, DataType::Data);
        let copy = buffer.clone();
        let reader = std::thread::spawn(move || copy.as_bytes().to_vec());
        assert_eq!(reader.join().unwrap(), b"abc");
        assert_eq!(buffer.as_bytes(), b"abc");
        drop(buffer);
        manager.leak_check().unwrap();
    }
}
