//! Facts about the running process that the kernel reports (resident memory, free disk
//! space), and the one process setting it makes (the C heap's arena count).

use std::fs;

/// The most C heap arenas [`limit_heap_arenas`] allows.
pub const HEAP_ARENAS_MAX: i32 = 2;

/// Caps glibc's malloc arenas at [`HEAP_ARENAS_MAX`] (a no-op on other C libraries and
/// under Miri). glibc gives threads their own arenas, up to eight per core, and keeps the
/// memory freed in each; a worker that runs job after job starts new task threads each
/// time, and its resident set then creeps up by what every arena retains (measured: from
/// 7 MiB to over 90 MiB in 40 soak rounds, flat at 7 MiB with one arena). Large data lives
/// in segments, so the heap holds small, short-lived objects and needs little concurrency.
/// Call once at process start, before threads exist. Returns whether the cap was set.
pub fn limit_heap_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(miri)))]
    {
        // SAFETY: `mallopt` only changes a glibc malloc parameter; `M_ARENA_MAX` with a
        // positive value is documented as valid at any time, and no Rust invariant depends
        // on the heap's arena count.
        #[allow(unsafe_code, reason = "the one libc call that sets a malloc parameter")]
        let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, HEAP_ARENAS_MAX) };
        set == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", not(miri))))]
    {
        false
    }
}

/// Bytes an unprivileged process may still write to the file system holding `path`
/// (`statvfs`: available blocks times the fragment size). `None` where that cannot be
/// found (no such path, a path with a NUL byte, not Unix, Miri).
pub fn free_space(path: &std::path::Path) -> Option<u64> {
    #[cfg(all(unix, not(miri)))]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a NUL-terminated string that outlives the call, and `stats`
        // points to writable memory the size of a `statvfs`, which the call fills in
        // full when it returns 0.
        #[allow(unsafe_code, reason = "the one libc call that reads free space")]
        let result = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
        if result != 0 {
            return None;
        }
        // SAFETY: `statvfs` returned 0, so it initialized `stats`.
        #[allow(unsafe_code, reason = "reading what statvfs wrote")]
        let stats = unsafe { stats.assume_init() };
        #[allow(
            clippy::useless_conversion,
            reason = "the field types differ between platforms"
        )]
        Some(u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize)))
    }
    #[cfg(not(all(unix, not(miri))))]
    {
        let _ = path;
        None
    }
}

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
    #[cfg_attr(miri, ignore = "miri has no statvfs")]
    fn reads_free_space() {
        assert!(super::free_space(&std::env::temp_dir()).is_some());
        assert!(super::free_space(std::path::Path::new("/no/such/dir")).is_none());
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri has no /proc")]
    fn reads_own_rss() {
        let rss = super::resident_memory().expect("linux has /proc/self/status");
        assert!(rss.current_bytes > 0);
        assert!(rss.peak_bytes >= rss.current_bytes);
    }
}
