//! The command-line arguments several commands share: the job configuration as flags
//! (each maps to a field of [`Config`], whose documentation gives its meaning and range).

use std::path::PathBuf;
use std::time::Duration;

use weir::checkpoint::CheckpointConfig;
use weir::config::Config;
use weir::error::{Result, WeirError};
use weir::size::{format_size, parse_size};

/// The job knobs as command-line flags (see [`Config`] for each one's meaning and range).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Managed memory per worker, like 64MiB.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub memory: u64,
    /// Network memory per worker, beside --memory.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub network_memory: u64,
    /// Segment size of both budgets (a power of two, 4KiB to 1MiB).
    #[arg(long, default_value = "32KiB", value_parser = parse_size)]
    pub segment_size: u64,
    /// Exclusive buffers per remote input channel.
    #[arg(long, default_value_t = 2)]
    pub buffers_per_channel: usize,
    /// Floating buffers per input gate.
    #[arg(long, default_value_t = 8)]
    pub floating_buffers: usize,
    /// Output flushing: every, full, idle, or a timeout like 100ms.
    #[arg(long, default_value = "100ms", value_parser = parse_flush)]
    pub flush: weir_netstack::FlushMode,
    /// Buffer debloating of input gates: on or off (default off; on for the streaming
    /// jobs, `weir run nexmark`).
    #[arg(long, value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub debloat: Option<bool>,
    /// The debloating target in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub debloat_target_ms: u64,
    /// Directory for spill files (default: the system temp directory).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// Spill I/O backend: auto, io_uring or sync.
    #[arg(long, default_value = "auto", value_parser = parse_io)]
    pub io: IoChoice,
    /// Worker processes (started locally on loopback).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Task slots per worker.
    #[arg(long, default_value_t = 1)]
    pub slots: usize,
    /// Fail the job when a peer worker sends nothing (not even a heartbeat) for this long:
    /// seconds or a duration like 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_peer_timeout)]
    pub peer_timeout: Duration,
    /// Every how many milliseconds each source injects a barrier, aligned at every gate
    /// (the job report gives each one's delay); off by default.
    #[arg(long)]
    pub barrier_interval_ms: Option<u64>,
    /// Take checkpoints into DIR (exactly-once: sources rewound, state restored and
    /// output committed per checkpoint; a failed job restarts from the latest one).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Every how many milliseconds a checkpoint is taken (with --checkpoint-dir).
    #[arg(long, default_value_t = 2000)]
    pub checkpoint_interval_ms: u64,
    /// Start from a retained checkpoint of --checkpoint-dir: its id, or `latest` (the
    /// latest complete one whose files check out).
    #[arg(long)]
    pub restore_from: Option<String>,
    /// Times a failed job restarts from its latest checkpoint (with --checkpoint-dir).
    #[arg(long, default_value_t = 3)]
    pub restarts: u32,
    /// Release a barrier unaligned once it waited this many milliseconds at a gate for
    /// the other channels (0: unaligned at once): the records still in flight on those
    /// channels become part of the checkpoint. Off (always aligned) by default.
    #[arg(long)]
    pub alignment_timeout_ms: Option<u64>,
}

impl Default for ConfigArgs {
    fn default() -> ConfigArgs {
        ConfigArgs::from_config(&Config {
            workers: 2,
            ..Config::default()
        })
    }
}

/// The flush mode as the CLI spells it.
pub fn flush_name(flush: weir_netstack::FlushMode) -> String {
    use weir_netstack::FlushMode;
    match flush {
        FlushMode::EveryRecord => "every".to_owned(),
        FlushMode::WhenFull => "full".to_owned(),
        FlushMode::WhenIdle => "idle".to_owned(),
        FlushMode::Timeout(t) => format!("{}ms", t.as_millis()),
    }
}

/// Parses a flush mode: `every` (or `0`), `full` (or `none`), `idle`, or a timeout like
/// `100ms`.
///
/// # Errors
///
/// A message naming the accepted forms.
pub fn parse_flush(text: &str) -> std::result::Result<weir_netstack::FlushMode, String> {
    use weir_netstack::FlushMode;
    match text {
        "every" | "0" | "0ms" => Ok(FlushMode::EveryRecord),
        "full" | "none" => Ok(FlushMode::WhenFull),
        "idle" => Ok(FlushMode::WhenIdle),
        _ => text
            .strip_suffix("ms")
            .and_then(|n| n.parse::<u64>().ok())
            .map(|ms| FlushMode::Timeout(Duration::from_millis(ms)))
            .ok_or_else(|| format!("flush mode {text:?}: expected every, full, idle, or <N>ms")),
    }
}

pub(crate) fn parse_on_off(text: &str) -> std::result::Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?}: expected on or off")),
    }
}

/// The spill backend a job asks for: `None` lets the kernel probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoChoice(pub Option<weir_kernel::spill::IoBackend>);

fn parse_io(text: &str) -> std::result::Result<IoChoice, String> {
    use weir_kernel::spill::IoBackend;
    match text {
        "auto" => Ok(IoChoice(None)),
        "io_uring" => Ok(IoChoice(Some(IoBackend::IoUring))),
        "sync" => Ok(IoChoice(Some(IoBackend::Sync))),
        _ => Err(format!("{text:?}: expected auto, io_uring or sync")),
    }
}

impl ConfigArgs {
    /// The flags of `config`.
    pub fn from_config(config: &Config) -> ConfigArgs {
        ConfigArgs {
            memory: config.memory,
            network_memory: config.network_memory,
            segment_size: config.segment_size as u64,
            buffers_per_channel: config.buffers_per_channel,
            floating_buffers: config.floating_per_gate,
            flush: config.flush,
            debloat: Some(config.debloat),
            debloat_target_ms: u64::try_from(config.debloat_target.as_millis()).unwrap_or(u64::MAX),
            spill_dir: Some(config.spill_dir.clone()),
            io: IoChoice(config.io_backend),
            workers: config.workers,
            slots: config.slots,
            peer_timeout: config.peer_timeout,
            barrier_interval_ms: config
                .barrier_interval
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            checkpoint_dir: config.checkpoint.as_ref().map(|c| c.dir.clone()),
            checkpoint_interval_ms: 2000,
            restore_from: None,
            restarts: config.checkpoint.as_ref().map_or(3, |c| c.restarts),
            alignment_timeout_ms: config
                .alignment_timeout
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The checkpoints of `--checkpoint-dir`, and the checkpoint interval.
    fn checkpoint(&self) -> Result<Option<(CheckpointConfig, Duration)>> {
        let Some(dir) = &self.checkpoint_dir else {
            if self.restore_from.is_some() {
                return Err(WeirError::Usage {
                    message: "--restore-from needs --checkpoint-dir".to_owned(),
                });
            }
            return Ok(None);
        };
        let restore = match self.restore_from.as_deref() {
            None => None,
            Some("latest") => {
                let (latest, skipped) = weir::checkpoint::latest_valid(dir)?;
                for why in skipped {
                    eprintln!("weir: skipping {why}");
                }
                Some(latest.ok_or_else(|| WeirError::Usage {
                    message: format!(
                        "--restore-from latest: {} holds no complete checkpoint",
                        dir.display()
                    ),
                })?)
            }
            Some(id) => Some(id.parse().map_err(|_| WeirError::Usage {
                message: format!("--restore-from {id}: expected a checkpoint id or `latest`"),
            })?),
        };
        if self.checkpoint_interval_ms == 0 {
            return Err(WeirError::Usage {
                message: "--checkpoint-interval-ms must be at least 1".to_owned(),
            });
        }
        Ok(Some((
            CheckpointConfig {
                restore,
                restarts: self.restarts,
                ..CheckpointConfig::new(dir)
            },
            Duration::from_millis(self.checkpoint_interval_ms),
        )))
    }

    /// The configuration, validated.
    ///
    /// # Errors
    ///
    /// As [`Config::validate`].
    pub fn to_config(&self) -> Result<Config> {
        let checkpoint = self.checkpoint()?;
        let config = Config {
            memory: self.memory,
            network_memory: self.network_memory,
            segment_size: usize::try_from(self.segment_size).unwrap_or(usize::MAX),
            buffers_per_channel: self.buffers_per_channel,
            floating_per_gate: self.floating_buffers,
            flush: self.flush,
            debloat: self.debloat.unwrap_or(false),
            debloat_target: Duration::from_millis(self.debloat_target_ms),
            spill_dir: self.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            io_backend: self.io.0,
            workers: self.workers,
            slots: self.slots,
            peer_timeout: self.peer_timeout,
            barrier_interval: checkpoint
                .as_ref()
                .map(|(_, interval)| *interval)
                .or(self.barrier_interval_ms.map(Duration::from_millis)),
            checkpoint: checkpoint.map(|(checkpoint, _)| checkpoint),
            alignment_timeout: self.alignment_timeout_ms.map(Duration::from_millis),
        };
        config.validate()?;
        Ok(config)
    }

    /// The flags again, for a worker process.
    pub fn to_args(&self) -> Vec<String> {
        let config = self.to_config().unwrap_or_default();
        let mut args = vec![
            format!("--memory={}", format_size(self.memory)),
            format!("--network-memory={}", format_size(self.network_memory)),
            format!("--segment-size={}", format_size(self.segment_size)),
            format!("--buffers-per-channel={}", self.buffers_per_channel),
            format!("--floating-buffers={}", self.floating_buffers),
            format!("--flush={}", flush_name(self.flush)),
            format!(
                "--debloat={}",
                if self.debloat == Some(true) {
                    "on"
                } else {
                    "off"
                }
            ),
            format!("--debloat-target-ms={}", self.debloat_target_ms),
            format!("--spill-dir={}", config.spill_dir.display()),
            format!("--workers={}", self.workers),
            format!("--slots={}", self.slots),
            format!("--peer-timeout={}ms", self.peer_timeout.as_millis()),
        ];
        if let Some(ms) = self.barrier_interval_ms {
            args.push(format!("--barrier-interval-ms={ms}"));
        }
        if let Some(dir) = &self.checkpoint_dir {
            args.push(format!("--checkpoint-dir={}", dir.display()));
            args.push(format!(
                "--checkpoint-interval-ms={}",
                self.checkpoint_interval_ms
            ));
            args.push(format!("--restarts={}", self.restarts));
        }
        if let Some(ms) = self.alignment_timeout_ms {
            args.push(format!("--alignment-timeout-ms={ms}"));
        }
        args.push(format!(
            "--io={}",
            self.io
                .0
                .map_or_else(|| "auto".to_string(), |b| b.to_string())
        ));
        args
    }
}

/// Parses `--peer-timeout`: seconds (`10`, `2.5`) or a duration with a unit (`10s`,
/// `500ms`), from 100 ms to an hour. A worker whose peer sends nothing for this long fails
/// the job naming the peer (stopped, hung or partitioned).
///
/// # Errors
///
/// A message naming the flag, the value and the allowed range.
pub fn parse_peer_timeout(text: &str) -> std::result::Result<Duration, String> {
    use weir::constants::{
        PEER_TIMEOUT_MAX as PEER_TIMEOUT_FLAG_MAX, PEER_TIMEOUT_MIN as PEER_TIMEOUT_FLAG_MIN,
    };
    let invalid = || {
        format!(
            "--peer-timeout {text}: expected seconds or a duration like 10s or 500ms, \
             {PEER_TIMEOUT_FLAG_MIN:?} to {PEER_TIMEOUT_FLAG_MAX:?}"
        )
    };
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let seconds = number.trim().parse::<f64>().map_err(|_| invalid())? * scale;
    let range = PEER_TIMEOUT_FLAG_MIN.as_secs_f64()..=PEER_TIMEOUT_FLAG_MAX.as_secs_f64();
    if !range.contains(&seconds) {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The command-line flag of a [`Config`] field (or a job setting named the same way):
/// `network_memory` is `--network-memory`; the few whose flag differs are listed.
pub fn flag(field: &str) -> String {
    match field {
        "floating_per_gate" => "--floating-buffers".to_owned(),
        "debloat_target" => "--debloat-target-ms".to_owned(),
        "io_backend" => "--io".to_owned(),
        _ => format!("--{}", field.replace('_', "-")),
    }
}

/// An error as the command line says it: a configuration error names the flag, not the
/// field (`--memory 1MiB: allowed 4MiB to 1TiB`); everything else as it displays.
pub fn describe(error: &WeirError) -> String {
    match error {
        WeirError::Config {
            field,
            value,
            allowed,
        } => format!("{} {value}: allowed {allowed}", flag(field)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_timeout_is_seconds_or_a_duration_in_range() {
        assert_eq!(parse_peer_timeout("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_peer_timeout("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_peer_timeout("500ms"), Ok(Duration::from_millis(500)));
        for bad in ["0", "50ms", "3601", "soon", "-1s", "NaN"] {
            let error = parse_peer_timeout(bad).unwrap_err();
            assert!(
                error.starts_with(&format!("--peer-timeout {bad}:")),
                "{error}"
            );
        }
    }

    #[test]
    fn flush_modes_parse_and_print() {
        use weir_netstack::FlushMode;
        assert_eq!(parse_flush("every"), Ok(FlushMode::EveryRecord));
        assert_eq!(parse_flush("none"), Ok(FlushMode::WhenFull));
        assert_eq!(
            parse_flush("5ms"),
            Ok(FlushMode::Timeout(Duration::from_millis(5)))
        );
        assert!(
            parse_flush("fast")
                .unwrap_err()
                .contains("expected every, full, idle")
        );
        assert_eq!(flush_name(FlushMode::default()), "100ms");
    }

    #[test]
    fn configuration_errors_name_the_flag() {
        let error = Config {
            memory: 1 << 20,
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(describe(&error), "--memory 1MiB: allowed 4MiB to 1TiB");
        assert_eq!(flag("floating_per_gate"), "--floating-buffers");
        assert_eq!(flag("peer_timeout"), "--peer-timeout");
    }
}
