//! The one report format of every workload and worker: serde types written by one JSON
//! writer.
//!
//! ```text
//!   worker process ──worker_line(&report)──▶ stdout (its last line) ──parse_worker_line──▶ launcher
//!   launcher       ──Report { workload, system, details }.to_json()──▶ the workload's last line
//! ```
//!
//! The fields of each workload's `details` are in docs/WORKLOADS.md; every report has
//! `workload`, `system` and `valid` (checked against something independent of the bytes
//! the figure was computed from).

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir::error::{Result, WeirError};

/// A workload's JSON line: its name, the system measured, and the workload's own fields.
#[derive(Debug, Clone, Serialize)]
pub struct Report<D> {
    /// The workload's name in docs/WORKLOADS.md (`W1` … `W6`, `soak`).
    pub workload: &'static str,
    /// Always `weir` (peers' scripts write the same line for their systems).
    pub system: &'static str,
    /// The workload's fields, flattened into the line.
    #[serde(flatten)]
    pub details: D,
}

impl<D: Serialize> Report<D> {
    /// The report of `workload`.
    pub fn new(workload: &'static str, details: D) -> Report<D> {
        Report {
            workload,
            system: "weir",
            details,
        }
    }

    /// The one-line JSON.
    ///
    /// # Panics
    ///
    /// Never for the workloads' report types (plain numbers, strings and lists).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }
}

/// The figures every single-process kernel workload (W1, W2a/b, W3) reports first.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRun {
    /// Threads the job ran.
    pub threads: usize,
    /// The memory budget, in MiB.
    pub budget_mib: f64,
    /// The job's wall time.
    pub wall_s: f64,
    /// The verification's wall time (not part of `wall_s`).
    pub verify_s: f64,
    /// The process's peak resident set, in MiB.
    pub peak_rss_mib: f64,
    /// Bytes spilled to disk.
    pub spilled_bytes: u64,
}

impl KernelRun {
    /// The figures, rounded as reported (MiB to 0.1, seconds to 1 ms).
    pub fn new(
        (threads, budget_bytes): (usize, u64),
        (wall_s, verify_s): (f64, f64),
        (peak_rss_bytes, spilled_bytes): (u64, u64),
    ) -> KernelRun {
        let mib = |bytes: u64| round(bytes as f64 / f64::from(1 << 20), 1);
        KernelRun {
            threads,
            budget_mib: mib(budget_bytes),
            wall_s: round(wall_s, 3),
            verify_s: round(verify_s, 3),
            peak_rss_mib: mib(peak_rss_bytes),
            spilled_bytes,
        }
    }
}

/// A worker's report as the one line it prints last for its launcher.
///
/// # Panics
///
/// Never for the report types of the workers (plain numbers, strings and lists).
pub fn worker_line<T: Serialize>(report: &T) -> String {
    serde_json::to_string(report).expect("a worker report serializes")
}

/// Prints `report` as this worker's last line (see [`worker_line`]).
///
/// # Errors
///
/// Stdout is closed (the launcher is gone).
pub fn print_worker_line<T: Serialize>(report: &T) -> Result<()> {
    weir::lifecycle::print_line(&worker_line(report))
}

/// Parses a worker's last line.
///
/// # Errors
///
/// [`WeirError::Worker`] naming what is wrong with the line.
pub fn parse_worker_line<T: DeserializeOwned>(line: &str) -> Result<T> {
    serde_json::from_str(line).map_err(|e| WeirError::Worker {
        message: format!("a worker's report line is malformed ({e}): {line:?}"),
    })
}

/// `x` rounded to `digits` decimals, for figures whose further digits are noise.
pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::dataflow::WorkerReport;

    #[test]
    fn worker_lines_round_trip_and_garbage_is_a_worker_error() {
        let report = WorkerReport {
            process: 1,
            tasks: 3,
            wall_us: 1234,
            leak_free: true,
            ..WorkerReport::default()
        };
        let parsed: WorkerReport = parse_worker_line(&worker_line(&report)).unwrap();
        assert_eq!(parsed, report);
        let error = parse_worker_line::<WorkerReport>("weir-worker process=1").unwrap_err();
        assert!(matches!(error, WeirError::Worker { .. }), "{error}");
    }

    #[test]
    fn reports_flatten_their_details() {
        #[derive(Serialize)]
        struct Details {
            records: u64,
            valid: bool,
        }
        let json = Report::new(
            "W4",
            Details {
                records: 7,
                valid: true,
            },
        )
        .to_json();
        assert_eq!(
            json,
            r#"{"workload":"W4","system":"weir","records":7,"valid":true}"#
        );
        assert!((round(0.123_456, 3) - 0.123).abs() < 1e-12);
    }
}
