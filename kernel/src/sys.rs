//! Facts about the running process that the kernel reports (resident memory, free disk
//! space, the filesystem a path is on), the one process setting it makes (the C heap's
//! arena count), and the few signal primitives a process needs to end cleanly: block the
//! termination signals so one thread takes them synchronously, ask for a signal when the
//! parent dies, and send a signal to a child. Everything here that calls into libc is one
//! documented call per block.

use std::fs;
use std::io;

/// The signals that ask a process to end: SIGINT (Ctrl-C), SIGTERM (a supervisor, `kill`)
/// and SIGHUP (the terminal closed).
#[cfg(unix)]
pub const TERMINATION_SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// SIGTERM: asks a process to end.
#[cfg(unix)]
pub const SIGNAL_TERMINATE: i32 = libc::SIGTERM;

/// SIGCONT: resumes a stopped process (so that it can act on a pending SIGTERM).
#[cfg(unix)]
pub const SIGNAL_CONTINUE: i32 = libc::SIGCONT;

/// The signal set of [`TERMINATION_SIGNALS`].
#[cfg(unix)]
fn termination_set() -> libc::sigset_t {
    // SAFETY: `sigset_t` is a plain C bit set for which all-zero bytes are a valid value;
    // `sigemptyset` below initialises it properly before any other use.
    #[allow(unsafe_code, reason = "a zeroed C struct, initialised just after")]
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `sigset_t`.
    #[allow(unsafe_code, reason = "sigemptyset on our own set")]
    unsafe {
        libc::sigemptyset(&raw mut set);
    }
    for signal in TERMINATION_SIGNALS {
        // SAFETY: `set` is an initialised `sigset_t`; `signal` is a valid signal number.
        #[allow(unsafe_code, reason = "sigaddset on our own set")]
        unsafe {
            libc::sigaddset(&raw mut set, signal);
        }
    }
    set
}

/// Blocks [`TERMINATION_SIGNALS`] in the calling thread; threads it starts afterwards
/// inherit the mask. Call it first thing in `main`, before any thread exists, and take the
/// signals in one thread with [`wait_termination_signal`]: then no signal interrupts a
/// thread at a random point, and the handling code is ordinary code, not a signal handler.
///
/// # Errors
///
/// The system refused to change the mask.
#[cfg(unix)]
pub fn block_termination_signals() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is an initialised signal set; a null old-set pointer is allowed.
    #[allow(unsafe_code, reason = "pthread_sigmask on the calling thread")]
    let error =
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
    if error == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(error))
    }
}

/// Waits until one of [`TERMINATION_SIGNALS`] is pending (they must be blocked in every
/// thread, see [`block_termination_signals`]) and returns its number.
///
/// # Errors
///
/// The system call failed.
#[cfg(unix)]
pub fn wait_termination_signal() -> io::Result<i32> {
    let set = termination_set();
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is an initialised signal set and `signal` a writable int.
    #[allow(unsafe_code, reason = "sigwait on our own set")]
    let error = unsafe { libc::sigwait(&raw const set, &raw mut signal) };
    if error == 0 {
        Ok(signal)
    } else {
        Err(io::Error::from_raw_os_error(error))
    }
}

/// Asks the system to send `signal` to this process when its parent dies (Linux
/// `PR_SET_PDEATHSIG`). Returns `Ok(false)` on other systems, where a caller relies on
/// another check (a pipe from the parent closing). Linux sends the signal when the parent
/// *thread* that forked this process ends, so a launcher must start its workers from a
/// thread that outlives them (weir's launcher starts them from its main thread).
///
/// # Errors
///
/// The system call failed.
pub fn set_parent_death_signal(signal: i32) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        let signal = libc::c_ulong::try_from(signal)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        #[allow(
            unsafe_code,
            reason = "the one prctl call that sets the parent-death signal"
        )]
        // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` only records a signal number for this
        // process; it takes no pointers.
        let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) };
        if result == 0 {
            Ok(true)
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = signal;
        Ok(false)
    }
}

/// Sends `signal` to process `pid` (a child this process started).
///
/// # Errors
///
/// No such process, or no permission; a pid that does not fit the system's type.
#[cfg(unix)]
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `kill` takes two integers and has no memory effects in this process.
    #[allow(unsafe_code, reason = "the one kill call that signals a child")]
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

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

/// The type of the filesystem `path` is on (`ext4`, `tmpfs`, …), from the mount table
/// (`/proc/self/mountinfo`: the mount point that is the longest prefix of the canonical
/// path). `None` where the table or the path cannot be read (not Linux).
pub fn filesystem_type(path: &std::path::Path) -> Option<String> {
    let path = fs::canonicalize(path).ok()?;
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in table.lines() {
        // "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER"
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else {
            continue;
        };
        let Some(fs_type) = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
        else {
            continue;
        };
        // Spaces and other bytes in mount points are octal escapes; such a mount point
        // never equals a path prefix unescaped, which only loses precision, not safety.
        let mount_point = std::path::Path::new(mount_point);
        let depth = mount_point.components().count();
        if path.starts_with(mount_point) && best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, fs_type.to_owned()));
        }
    }
    best.map(|(_, fs_type)| fs_type)
}

/// Whether `path` is on a filesystem that lives in memory (`tmpfs`, `ramfs`): spilling
/// there takes memory outside any budget. `false` when it cannot be told.
pub fn is_memory_filesystem(path: &std::path::Path) -> bool {
    filesystem_type(path).is_some_and(|t| t == "tmpfs" || t == "ramfs")
}

/// Starts writing `len` bytes of `file` from `offset` on back to its disk, without waiting
/// for them (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`): a later `fsync` of the file
/// then finds them written or on their way, and waits that much less. It makes nothing
/// durable by itself. Does nothing where the call does not exist (not Linux, Miri).
///
/// # Errors
///
/// The system refused (a range out of bounds, an I/O error already known).
pub fn start_writeback(file: &fs::File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        use std::os::fd::AsRawFd as _;
        let offset = i64::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let len = i64::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: the descriptor belongs to `file`, which the borrow keeps open during the
        // call; the call reads no memory of ours.
        #[allow(unsafe_code, reason = "the one libc call that starts writeback")]
        let result = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    {
        let _ = (file, offset, len);
        Ok(())
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
    fn knows_the_root_and_dev_shm() {
        let root = super::filesystem_type(std::path::Path::new("/")).expect("a root mount");
        assert!(!root.is_empty());
        if std::path::Path::new("/dev/shm").is_dir() {
            assert!(super::is_memory_filesystem(std::path::Path::new(
                "/dev/shm"
            )));
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "miri has no /proc")]
    fn reads_own_rss() {
        let rss = super::resident_memory().expect("linux has /proc/self/status");
        assert!(rss.current_bytes > 0);
        assert!(rss.peak_bytes >= rss.current_bytes);
    }
}
