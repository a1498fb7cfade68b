//! `PooledSegment`: a segment lent by a pool, which goes back to the pool when dropped.

use std::fmt;
use std::sync::Arc;

use weir_kernel::memory::MemorySegment;

use crate::buffer::{BufferBuilder, BufferConsumer, DataType, NetworkBuffer, Recycler};

/// A segment lent by a [`LocalBufferPool`](crate::pool::LocalBufferPool). Dropped, it goes
/// back to the pool; turned into a builder or a buffer, it goes back when the last handle
/// of those drops.
pub struct PooledSegment {
    // `Some` until the segment is handed on or home.
    segment: Option<MemorySegment>,
    recycler: Arc<dyn Recycler>,
}

impl PooledSegment {
    pub(crate) fn new(segment: MemorySegment, recycler: Arc<dyn Recycler>) -> PooledSegment {
        PooledSegment {
            segment: Some(segment),
            recycler,
        }
    }

    /// The segment, to fill before [`into_buffer`](Self::into_buffer).
    pub fn segment_mut(&mut self) -> &mut MemorySegment {
        self.present_mut()
    }

    /// The segment's size in bytes.
    pub fn size(&self) -> usize {
        self.present().size()
    }

    /// The first `size` bytes of the segment as a buffer of `data_type`.
    ///
    /// # Panics
    ///
    /// When `size` exceeds the segment.
    pub fn into_buffer(mut self, size: usize, data_type: DataType) -> NetworkBuffer {
        let segment = self.take();
        NetworkBuffer::pooled(segment, size, data_type, Arc::clone(&self.recycler))
    }

    /// A builder writing into the segment, and its consumer.
    pub fn into_builder(mut self, data_type: DataType) -> (BufferBuilder, BufferConsumer) {
        let segment = self.take();
        BufferBuilder::pooled(segment, data_type, Arc::clone(&self.recycler))
    }

    // The segment is `None` only after `take`, which consumes the `PooledSegment`, or in
    // `Drop`: no method can observe it missing.
    fn present(&self) -> &MemorySegment {
        self.segment.as_ref().expect("present until handed on")
    }

    fn present_mut(&mut self) -> &mut MemorySegment {
        self.segment.as_mut().expect("present until handed on")
    }

    fn take(&mut self) -> MemorySegment {
        self.segment.take().expect("present until handed on")
    }
}

impl Drop for PooledSegment {
    fn drop(&mut self) {
        if let Some(segment) = self.segment.take() {
            self.recycler.recycle(segment);
        }
    }
}

impl fmt::Debug for PooledSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledSegment")
            .field("segment", &self.segment)
            .finish_non_exhaustive()
    }
}
