//! Facts about the running process that the kernel reports: resident memory.

use std::fs;

/// The process's resident set size and its peak, in bytes, from `/proc/self/status`.
/// `None` where that file does not exist (not Linux) or cannot be parsed.
pub fn resident_memory() -> Option<ResidentMemory> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(ResidentMemory {
        current_bytes: field("VmRSS:")?,
        peak_bytes: field("VmHWM:")?,
    })
}

/// Resident memory of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentMemory {
    /// Resident now.
    pub current_bytes: u64,
    /// The highest resident size since the process started.
    pub peak_bytes: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore = "miri has no /proc")]
    fn reads_own_rss() {
        let rss = super::resident_memory().expect("linux has /proc/self/status");
        assert!(rss.current_bytes > 0);
        assert!(rss.peak_bytes >= rss.current_bytes);
    }
}
