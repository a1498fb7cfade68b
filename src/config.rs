//! [`Config`]: every knob of a dataflow job, with its default and its allowed range.

use std::path::PathBuf;
use std::time::Duration;

use weir_kernel::constants::{SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, SEGMENT_SIZE_MIN};
use weir_kernel::spill::IoBackend;
use weir_netstack::FlushMode;

use crate::error::{Result, WeirError};

/// The smallest managed memory per worker: a few kernel operators at their minimum.
pub const MEMORY_MIN: u64 = 4 << 20;
/// The smallest network memory per worker.
pub const NETWORK_MEMORY_MIN: u64 = 1 << 20;
/// The largest memory of either kind per worker.
pub const MEMORY_MAX: u64 = 1 << 40;
/// The most worker processes of a job.
pub const WORKERS_MAX: usize = 64;
/// The most task slots per worker.
pub const SLOTS_MAX: usize = 64;

/// How a dataflow job runs. [`Config::default`] gives the documented defaults;
/// [`Config::validate`] checks every field (the CLI names the flag of a field in error).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Managed memory per worker (`--memory`, default 64 MiB): the budget its sort, hash
    /// aggregation and join operators and its sources' I/O buffers share. Each kernel
    /// operator of each task gets its own minimum, a combiner up to 4 MiB, and the sorts,
    /// final aggregations and joins equal shares of the rest (by need).
    pub memory: u64,
    /// Network memory per worker (`--network-memory`, default 16 MiB), a budget of its
    /// own beside `memory`: the output pools of its tasks and the buffers of their remote
    /// input channels. A job that needs more fails at start with the amount.
    pub network_memory: u64,
    /// Segment size of both budgets (`--segment-size`, default 32 KiB, a power of two from
    /// 4 KiB to 1 MiB): also the largest network buffer.
    pub segment_size: usize,
    /// Exclusive buffers per remote input channel (`--buffers-per-channel`, default 2,
    /// 1 to 64): the credit a channel announces before any floating buffer.
    pub buffers_per_channel: usize,
    /// Floating buffers per input gate (`--floating-buffers`, default 8, 1 to 1024).
    pub floating_per_gate: usize,
    /// When output buffers are flushed (`--flush`, default every 100 ms).
    pub flush: FlushMode,
    /// Buffer debloating of input gates (`--debloat on|off`, default off).
    pub debloat: bool,
    /// The debloating target: the time to consume the data in flight (`--debloat-target`,
    /// default 1 s, 10 ms to 60 s).
    pub debloat_target: Duration,
    /// Where operators spill (`--spill-dir`, default the system temp directory): an
    /// existing, writable directory.
    pub spill_dir: PathBuf,
    /// The spill I/O backend (`--io auto|io_uring|sync`, default auto: io_uring when the
    /// kernel allows it).
    pub io_backend: Option<IoBackend>,
    /// Worker processes (`--workers`, default 1, 1 to 64).
    pub workers: usize,
    /// Task slots per worker (`--slots`, default 1, 1 to 64): each stage runs
    /// workers × slots tasks.
    pub slots: usize,
    /// How long a worker waits for any sign of life (data or a heartbeat) from a peer
    /// before it fails the job naming the peer (`--peer-timeout`, default 10 s, 100 ms to
    /// 1 h): a stopped, hung or partitioned peer is caught as a dead one is.
    pub peer_timeout: Duration,
    /// Every how long each source injects a barrier (`None`, the default: never; at
    /// least 1 ms): see [`Barrier`](crate::dataflow::Barrier). Set by programs that
    /// measure barriers (W6); checkpoints will set it from their interval.
    pub barrier_interval: Option<Duration>,
    /// Where checkpoints go, and the one to restore (`None`, the default: no
    /// checkpoints). Needs `barrier_interval`, the checkpoint interval; see
    /// [`crate::checkpoint`].
    pub checkpoint: Option<crate::checkpoint::CheckpointConfig>,
    /// How long a gate holds a barrier aligned before it releases it unaligned
    /// (`--alignment-timeout-ms`; `None`, the default: always aligned; zero: unaligned
    /// from its first arrival). The records of the channels whose barrier had not come
    /// then become part of the checkpoint (its channel state), replayed on restore; a
    /// task that reads two exchanges at once does the same across its two inputs.
    pub alignment_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            memory: 64 << 20,
            network_memory: 16 << 20,
            segment_size: SEGMENT_SIZE_DEFAULT,
            buffers_per_channel: weir_netstack::constants::BUFFERS_PER_CHANNEL_DEFAULT,
            floating_per_gate: weir_netstack::constants::FLOATING_BUFFERS_PER_GATE_DEFAULT,
            flush: FlushMode::default(),
            debloat: false,
            debloat_target: Duration::from_secs(1),
            spill_dir: std::env::temp_dir(),
            io_backend: None,
            barrier_interval: None,
            checkpoint: None,
            alignment_timeout: None,
            workers: 1,
            slots: 1,
            peer_timeout: weir_netstack::constants::PEER_TIMEOUT_DEFAULT,
        }
    }
}

/// This machine's physical memory in bytes (`MemTotal` of `/proc/meminfo`); `None` where
/// it cannot be read.
pub fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line["MemTotal:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// Refuses a memory budget larger than the machine's memory: the budget is reserved as
/// one mapping, and a budget that cannot be backed would end in the system's out-of-memory
/// killer rather than in spilling. `flag` names the setting in the message.
///
/// # Errors
///
/// [`WeirError::Usage`] naming the flag, the budget and the machine's memory.
pub fn check_physical_memory(flag: &str, bytes: u64) -> Result<()> {
    match physical_memory_bytes() {
        Some(physical) if bytes > physical => Err(WeirError::Usage {
            message: format!(
                "{flag} {}: more than this machine's {:.1} GiB of memory",
                crate::size::format_size(bytes),
                physical as f64 / f64::from(1 << 30)
            ),
        }),
        _ => Ok(()),
    }
}

impl Config {
    /// Tasks per stage: workers × slots.
    pub fn parallelism(&self) -> usize {
        self.workers * self.slots
    }

    /// Checks every field against its range.
    ///
    /// # Errors
    ///
    /// [`WeirError::Config`] naming the first invalid field, its value and the allowed
    /// range.
    #[allow(
        clippy::too_many_lines,
        reason = "one independent range check per field, in the order of the fields"
    )]
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, value: String, allowed: String| {
            Err(WeirError::Config {
                field,
                value,
                allowed,
            })
        };
        let size = |bytes: u64| crate::size::format_size(bytes);
        if let Some(interval) = self.barrier_interval
            && interval < Duration::from_millis(1)
        {
            return invalid(
                "barrier_interval",
                format!("{interval:?}"),
                "at least 1 ms".to_string(),
            );
        }
        if !(MEMORY_MIN..=MEMORY_MAX).contains(&self.memory) {
            return invalid(
                "memory",
                size(self.memory),
                format!("{} to {}", size(MEMORY_MIN), size(MEMORY_MAX)),
            );
        }
        if !(NETWORK_MEMORY_MIN..=MEMORY_MAX).contains(&self.network_memory) {
            return invalid(
                "network_memory",
                size(self.network_memory),
                format!("{} to {}", size(NETWORK_MEMORY_MIN), size(MEMORY_MAX)),
            );
        }
        if let Some(physical) = physical_memory_bytes() {
            for (field, bytes) in [
                ("memory", self.memory),
                ("network_memory", self.network_memory),
            ] {
                if bytes > physical {
                    return invalid(
                        field,
                        size(bytes),
                        format!(
                            "at most this machine's {:.1} GiB of memory",
                            physical as f64 / f64::from(1 << 30)
                        ),
                    );
                }
            }
        }
        if !self.segment_size.is_power_of_two()
            || !(SEGMENT_SIZE_MIN..=SEGMENT_SIZE_MAX).contains(&self.segment_size)
        {
            return invalid(
                "segment_size",
                size(self.segment_size as u64),
                format!(
                    "a power of two from {} to {}",
                    size(SEGMENT_SIZE_MIN as u64),
                    size(SEGMENT_SIZE_MAX as u64)
                ),
            );
        }
        if !(1..=64).contains(&self.buffers_per_channel) {
            return invalid(
                "buffers_per_channel",
                self.buffers_per_channel.to_string(),
                "1 to 64".into(),
            );
        }
        if !(1..=1024).contains(&self.floating_per_gate) {
            return invalid(
                "floating_per_gate",
                self.floating_per_gate.to_string(),
                "1 to 1024".into(),
            );
        }
        let target = self.debloat_target;
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&target) {
            return invalid(
                "debloat_target",
                format!("{}ms", target.as_millis()),
                "10ms to 60s".into(),
            );
        }
        if !self.spill_dir.is_dir() {
            return invalid(
                "spill_dir",
                self.spill_dir.display().to_string(),
                "an existing, writable directory".into(),
            );
        }
        if self.spill_dir != std::env::temp_dir()
            && weir_kernel::sys::is_memory_filesystem(&self.spill_dir)
        {
            return invalid(
                "spill_dir",
                format!("{} (a filesystem in memory)", self.spill_dir.display()),
                "a directory on a disk: spilling to a tmpfs or ramfs takes memory outside \
                 the budget"
                    .into(),
            );
        }
        if !(1..=WORKERS_MAX).contains(&self.workers) {
            return invalid(
                "workers",
                self.workers.to_string(),
                format!("1 to {WORKERS_MAX}"),
            );
        }
        let (least, most) = (
            crate::constants::PEER_TIMEOUT_MIN,
            crate::constants::PEER_TIMEOUT_MAX,
        );
        if !(least..=most).contains(&self.peer_timeout) {
            return invalid(
                "peer_timeout",
                format!("{:?}", self.peer_timeout),
                format!("{least:?} to {most:?}"),
            );
        }
        if !(1..=SLOTS_MAX).contains(&self.slots) {
            return invalid("slots", self.slots.to_string(), format!("1 to {SLOTS_MAX}"));
        }
        Ok(())
    }

    /// The segments of the managed budget.
    pub fn memory_segments(&self) -> usize {
        usize::try_from(self.memory).unwrap_or(usize::MAX) / self.segment_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().parallelism(), 1);
    }

    #[test]
    fn each_invalid_field_is_named_with_its_range() {
        let cases: Vec<(Config, &str)> = vec![
            (
                Config {
                    memory: 1 << 20,
                    ..Config::default()
                },
                "memory = 1MiB, allowed 4MiB to 1TiB",
            ),
            (
                Config {
                    network_memory: 1000,
                    ..Config::default()
                },
                "network_memory",
            ),
            (
                Config {
                    segment_size: 3000,
                    ..Config::default()
                },
                "segment_size",
            ),
            (
                Config {
                    segment_size: 2 << 20,
                    ..Config::default()
                },
                "segment_size = 2MiB",
            ),
            (
                Config {
                    buffers_per_channel: 0,
                    ..Config::default()
                },
                "buffers_per_channel = 0, allowed 1 to 64",
            ),
            (
                Config {
                    floating_per_gate: 5000,
                    ..Config::default()
                },
                "floating_per_gate",
            ),
            (
                Config {
                    debloat_target: Duration::ZERO,
                    ..Config::default()
                },
                "debloat_target = 0ms",
            ),
            (
                Config {
                    spill_dir: "/no/such/dir".into(),
                    ..Config::default()
                },
                "spill_dir = /no/such/dir",
            ),
            (
                Config {
                    workers: 0,
                    ..Config::default()
                },
                "workers = 0, allowed 1 to 64",
            ),
            (
                Config {
                    slots: 65,
                    ..Config::default()
                },
                "slots = 65",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message} lacks {expected}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
}
