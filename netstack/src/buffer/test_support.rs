//! Shared by the buffer tests: a small manager, a recycler that keeps what it is given,
//! and a seeded generator.

use std::sync::Mutex;

use weir_kernel::memory::{MemoryConfig, MemoryManager, MemorySegment};

use super::Recycler;

/// A manager of `segments` 4 KiB segments (small enough for Miri).
pub(crate) fn manager(segments: usize) -> MemoryManager {
    MemoryManager::new(MemoryConfig {
        segment_size: 4096,
        ..MemoryConfig::with_budget(segments * 4096)
    })
    .expect("a valid test configuration")
}

/// Keeps recycled segments, as a pool's free list would.
#[derive(Debug, Default)]
pub(crate) struct KeepingRecycler {
    segments: Mutex<Vec<MemorySegment>>,
}

impl KeepingRecycler {
    /// Segments recycled so far and not taken back.
    pub(crate) fn count(&self) -> usize {
        self.segments.lock().unwrap().len()
    }

    /// Takes every recycled segment (dropping them sends them to the manager).
    pub(crate) fn take_all(&self) -> Vec<MemorySegment> {
        std::mem::take(&mut *self.segments.lock().unwrap())
    }
}

impl Recycler for KeepingRecycler {
    fn recycle(&self, segment: MemorySegment) {
        self.segments.lock().unwrap().push(segment);
    }
}

/// SplitMix64: a seeded, deterministic stream of numbers.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next_u64() % bound as u64).unwrap()
    }

    /// `len` seeded bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A waker that counts its wake-ups.
#[derive(Debug, Default)]
pub(crate) struct CountingWaker(std::sync::atomic::AtomicUsize);

impl CountingWaker {
    pub(crate) fn wakes(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
