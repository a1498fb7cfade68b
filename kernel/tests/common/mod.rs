//! Helpers shared by the kernel's integration tests: a memory manager, a seeded generator
//! and a spill directory that is checked empty and removed.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::path::{Path, PathBuf};

use weir_kernel::memory::{MemoryConfig, MemoryManager};

/// The segment size of the integration tests: small, so few records fill a segment.
pub(crate) const SEGMENT_SIZE: usize = 4096;

/// A manager of `segments` segments of [`SEGMENT_SIZE`].
pub(crate) fn manager(segments: usize) -> MemoryManager {
    MemoryManager::new(MemoryConfig {
        segment_size: SEGMENT_SIZE,
        ..MemoryConfig::with_budget(segments * SEGMENT_SIZE)
    })
    .unwrap()
}

/// splitmix64: small, seeded, good enough to make keys and payloads.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `len` bytes drawn from the first `alphabet` byte values.
    pub(crate) fn bytes(&mut self, len: usize, alphabet: u64) -> Vec<u8> {
        (0..len).map(|_| (self.next() % alphabet) as u8).collect()
    }
}

/// A fresh spill directory, removed when dropped.
pub(crate) struct SpillDir(PathBuf);

impl SpillDir {
    pub(crate) fn new(name: &str) -> SpillDir {
        let dir = std::env::temp_dir().join(format!("weir-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SpillDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn assert_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.0).unwrap().collect();
        assert!(left.is_empty(), "spill files left behind: {left:?}");
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
