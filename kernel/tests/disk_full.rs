//! A real full disk: a 256 KiB tmpfs mounted as the spill directory (when the test runs as
//! root and may mount; otherwise it says it skipped). An external sort of 2 MiB under a
//! tiny budget must fail with the disk-full error, on both backends, with every segment
//! home and no spill file left; the disk quota tests cover the same path without root.

use std::path::{Path, PathBuf};
use std::process::Command;

use weir_kernel::KernelError;
use weir_kernel::memory::{MemoryConfig, MemoryManager};
use weir_kernel::sort::{ExternalSorter, SortConfig};
use weir_kernel::spill::{IoBackend, SpillConfig, open_store};

/// A tmpfs of `size` mounted on a fresh directory, unmounted and removed on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("weir-small-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(SmallDisk(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_fails_the_sort_cleanly_on_both_backends() {
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("disk_full: skipped (cannot mount a tmpfs: not root, or no mount permission)");
        return;
    };
    for backend in [IoBackend::Sync, IoBackend::IoUring] {
        let segments = SortConfig::default().memory_segments_min() + 4;
        let manager = MemoryManager::new(MemoryConfig {
            segment_size: 4096,
            ..MemoryConfig::with_budget(segments * 4096)
        })
        .unwrap();
        let mut config = SpillConfig::new(disk.path().to_path_buf());
        config.allow_memory_filesystem = true;
        config.backend = Some(backend);
        config.direct_io = false;
        let store = open_store(&config).unwrap();
        let error = {
            let mut sorter = ExternalSorter::new(
                &manager.owner("sort"),
                segments,
                store,
                SortConfig::default(),
            )
            .unwrap();
            let mut failed = None;
            for i in 0..20_000u64 {
                let key = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
                if let Err(error) = sorter.push(&key, &[b'x'; 100]) {
                    failed = Some(error);
                    break;
                }
            }
            match failed {
                Some(error) => error,
                None => sorter.finish().map(drop).unwrap_err(),
            }
        };
        let message = error.to_string();
        assert!(
            matches!(error, KernelError::SpillIo { .. }) && message.contains("No space left"),
            "{backend}: {message}"
        );
        manager.leak_check().unwrap();
        let left = std::fs::read_dir(disk.path()).unwrap().count();
        assert_eq!(left, 0, "{backend}: no spill file left on the full disk");
    }
}
