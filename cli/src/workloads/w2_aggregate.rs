//! The W2 jobs behind `weir bench w2a|w2b`: hash aggregation of TPC-H `lineitem` as
//! dataflow programs within a memory budget, and their validation.
//!
//! ```text
//!   W2a  lineitem ─(l_orderkey, l_extendedprice)─▶ key_by(orderkey)
//!          ─aggregate (sum, count)─▶ fold: checksum per task ─▶ collect
//!        with --output: ─aggregate─▶ gather ─sort_by(orderkey)─▶ CSV sink (+ checksum)
//!   W2b  lineitem ─Q1 filter, Q1 sums─▶ key_by(flag, status) ─aggregate─▶ collect ─▶ CSV
//!   validation (after the timing): the answer's totals against the manifest's, which
//!   the generator computed from its rows (W2a: rows, l_extendedprice, l_orderkey per
//!   row; W2b: rows, l_quantity, l_extendedprice of the rows Q1 reads), and for W2b at
//!   SF 1 the TPC-H answer: `valid`. Beside it, a second scan that decodes every row in
//!   full with serde-fmt and computes the answer another way (W2a: runs of equal
//!   l_orderkey, which tpchgen writes in order; W2b: a BTreeMap):
//!   `agrees_with_second_scan`, which alone cannot vouch for the bytes both read
//! ```
//!
//! W2a: `SELECT l_orderkey, SUM(l_extendedprice), COUNT(*) FROM lineitem GROUP BY
//! l_orderkey`. W2b: TPC-H Q1. Both are written with the public dataflow API, as a user
//! would, and run in this process on `--threads` task slots (one worker): the figures are
//! the operator layer's. `--memory` is the whole budget: [`W2_NETWORK_MEMORY`] of it for
//! the buffers of the job's local exchanges, the rest managed memory (scan buffers,
//! aggregations, the output sort). The hand-driven kernel aggregation stays a
//! micro-benchmark (`benches/hash_aggregate.rs`).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use weir::config::Config;
use weir::dataflow::{Dataflow, Push, WorkerReport, execute_observed};
use weir_kernel::memory::{MemoryManager, Owner};

use crate::report::{KernelRun, Report};
use crate::tpch::lineitem;
use crate::tpch::manifest::Manifest;
use crate::tpch::q1::{
    Q1_CSV_HEADER, Q1_SHIPDATE_MAX, Q1Sums, check_sf1_reference, decimal, q1_csv_row,
};
use crate::tpch::{Lineitem, Table, TableScan};
use weir::error::{Result, WeirError};
use weir::output::OutputFile;

/// Bytes of `--memory` that a W2 or W3 job gives its local exchanges' network buffers;
/// the rest is managed memory.
pub const W2_NETWORK_MEMORY: u64 = 4 << 20;

/// Bytes of the CSV writer's buffer (outside the segments: a small constant).
const CSV_BUFFER_BYTES: usize = 64 << 10;

/// Which W2 workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `lineitem GROUP BY l_orderkey: SUM(l_extendedprice), COUNT(*)`.
    W2a,
    /// TPC-H Q1.
    W2b,
}

impl Workload {
    /// The name in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W2a => "W2a",
            Workload::W2b => "W2b",
        }
    }
}

/// What `weir bench w2a|w2b` was asked to do.
#[derive(Debug, Clone)]
pub struct W2Job {
    /// Which query.
    pub workload: Workload,
    /// The directory `weir gen tpch` wrote.
    pub input: PathBuf,
    /// The memory budget in bytes: scan buffers, aggregation and output sorting.
    pub memory_bytes: u64,
    /// Task slots of the job's one worker.
    pub threads: usize,
    /// Where the result goes as CSV (none: the groups are only counted and checked).
    pub output: Option<PathBuf>,
    /// Where spill files go (default: the system's temp directory).
    pub spill_dir: Option<PathBuf>,
}

/// What a W2 job did: the fields of the docs/WORKLOADS.md JSON line.
#[derive(Debug, Clone)]
pub struct W2Report {
    /// Rows of `lineitem` read.
    pub rows: u64,
    /// Groups out.
    pub groups: u64,
    /// Scan, aggregation and output.
    pub wall_s: f64,
    /// The validation pass, not part of `wall_s`.
    pub verify_s: f64,
    /// The process's peak resident set, in bytes.
    pub peak_rss_bytes: u64,
    /// Bytes the job's kernel operators spilled.
    pub spilled_bytes: u64,
    /// Records the job's exchanges carried.
    pub records_exchanged: u64,
    /// Whether the answer's totals equal the manifest's generation-time totals (and, for
    /// W2b at SF 1, the answer equals the TPC-H reference answer), and the second scan
    /// agrees.
    pub valid: bool,
    /// Whether a second scan of the same bytes, decoded in full, computes the same answer.
    pub agrees_with_second_scan: bool,
    /// Why not, one line each.
    pub problems: Vec<String>,
}

impl W2Report {
    /// The one-line JSON summary of docs/WORKLOADS.md.
    pub fn to_json(&self, job: &W2Job) -> String {
        #[derive(serde::Serialize)]
        struct Line {
            #[serde(flatten)]
            run: KernelRun,
            records: u64,
            groups: u64,
            records_exchanged: u64,
            network_bytes: u64,
            agrees_with_second_scan: bool,
            valid: bool,
        }
        let line = Line {
            run: KernelRun::new(
                (job.threads, job.memory_bytes),
                (self.wall_s, self.verify_s),
                (self.peak_rss_bytes, self.spilled_bytes),
            ),
            records: self.rows,
            groups: self.groups,
            records_exchanged: self.records_exchanged,
            network_bytes: W2_NETWORK_MEMORY,
            agrees_with_second_scan: self.agrees_with_second_scan,
            valid: self.valid,
        };
        Report::new(job.workload.name(), line).to_json()
    }
}

/// Runs a W2 job and validates its answer.
///
/// # Errors
///
/// [`WeirError::Usage`] for a budget or slot count the runtime refuses, or an input that
/// is not a weir TPC-H directory; [`WeirError::Data`] for a truncated or corrupt one;
/// [`WeirError::File`] for files that cannot be read or written; [`WeirError::Kernel`]
/// for spill failures.
pub fn run_w2(job: &W2Job) -> Result<W2Report> {
    let config = job_config(job.memory_bytes, job.threads, job.spill_dir.as_deref())?;
    // Last of the checks: the output is touched only once every argument passed.
    let output = create_output(job.output.as_deref(), &job.input)?;
    let started = Instant::now();
    let (answer, run) = match job.workload {
        Workload::W2a => w2a(job, &config, output.as_ref())?,
        Workload::W2b => w2b(job, &config, output.as_ref())?,
    };
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_bytes = weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes);
    let verify_started = Instant::now();
    let manager = MemoryManager::with_budget(usize::try_from(config.memory).unwrap_or(usize::MAX))?;
    let (agrees_with_second_scan, problems) =
        validate(job, &answer, &manager.owner("w2/validate"))?;
    manager.leak_check()?;
    // Only an answer that passed validation replaces an existing output.
    if let Some(output) = output.filter(|_| problems.is_empty()) {
        output.commit()?;
    }
    Ok(W2Report {
        rows: run.rows,
        groups: answer.groups(),
        wall_s,
        verify_s: verify_started.elapsed().as_secs_f64(),
        peak_rss_bytes,
        spilled_bytes: run.report.spilled_bytes,
        records_exchanged: run.report.records_exchanged,
        valid: problems.is_empty(),
        agrees_with_second_scan,
        problems,
    })
}

/// The configuration of a W2 or W3 job: one worker with `slots` task slots, `memory`
/// split into [`W2_NETWORK_MEMORY`] of network buffers and managed memory.
///
/// # Errors
///
/// [`WeirError::Usage`] for a budget too small to leave the runtime's minimum of managed
/// memory beside the network buffers, or a bad slot count or spill directory.
pub(crate) fn job_config(memory: u64, slots: usize, spill_dir: Option<&Path>) -> Result<Config> {
    let managed = memory.saturating_sub(W2_NETWORK_MEMORY);
    if managed < weir::config::MEMORY_MIN {
        return Err(WeirError::Usage {
            message: format!(
                "--memory {memory} bytes is below the minimum of {} bytes ({} of network \
                 buffers and {} of managed memory)",
                W2_NETWORK_MEMORY + weir::config::MEMORY_MIN,
                W2_NETWORK_MEMORY,
                weir::config::MEMORY_MIN
            ),
        });
    }
    let config = Config {
        memory: managed,
        network_memory: W2_NETWORK_MEMORY,
        slots,
        spill_dir: spill_dir.map_or_else(std::env::temp_dir, Path::to_path_buf),
        ..Config::default()
    };
    config.validate()?;
    Ok(config)
}

/// What the dataflow run of a job did.
pub(crate) struct Run {
    /// Rows its sources read.
    pub(crate) rows: u64,
    /// The worker's report.
    pub(crate) report: WorkerReport,
}

/// Runs `flow` in this process under `config`.
pub(crate) fn execute(flow: &Dataflow, config: &Config) -> Result<Run> {
    let rows = Arc::new(AtomicU64::new(0));
    let report = execute_observed(flow, config, None, &rows).map_err(|error| match error {
        WeirError::Usage { message } => WeirError::Usage {
            message: format!(
                "{message} (managed memory: --memory less {} MiB of network buffers)",
                W2_NETWORK_MEMORY >> 20
            ),
        },
        other => other,
    })?;
    if !report.leak_free {
        return Err(WeirError::Data {
            message: "the job did not return all of its segments".to_owned(),
        });
    }
    Ok(Run {
        rows: rows.load(Ordering::Relaxed),
        report,
    })
}

/// W2a as a dataflow program: the groups' checksum, and with `--output` the groups sorted
/// by key as CSV.
fn w2a(job: &W2Job, config: &Config, output: Option<&OutputFile>) -> Result<(Answer, Run)> {
    let flow = Dataflow::new();
    let groups = lineitem::scan(&flow, &job.input, |line| {
        Ok(Some((line.l_orderkey(), line.l_extendedprice())))
    })
    .key_by(|(orderkey, _)| *orderkey)
    .aggregate(
        |(_, price)| (*price, 1i64),
        |acc, (price, count)| {
            acc.0 = acc.0.wrapping_add(price);
            acc.1 += count;
        },
    );
    let Some(output) = output else {
        let checksums = groups
            .fold(
                |_| GroupChecksum::default(),
                |checksum, (orderkey, (sum, count))| checksum.add(orderkey, sum, count),
                |checksum| checksum,
            )
            .collect();
        let run = execute(&flow, config)?;
        let checksum = checksums
            .take()
            .iter()
            .fold(GroupChecksum::default(), GroupChecksum::merged);
        return Ok((Answer::W2a(checksum), run));
    };
    let file = output.try_clone()?;
    let path = output.temp_path().to_path_buf();
    let checksum = Arc::new(Mutex::new(GroupChecksum::default()));
    let written = Arc::clone(&checksum);
    groups
        .gather()
        .sort_by(|(orderkey, _)| *orderkey, None)
        .sink(move |_| {
            let file = file
                .try_clone()
                .map_err(|e| WeirError::file("write", &path, e))?;
            let mut csv = W2aCsv {
                out: BufWriter::with_capacity(CSV_BUFFER_BYTES, file),
                path: path.clone(),
                checksum: GroupChecksum::default(),
                done: Arc::clone(&written),
            };
            let header = writeln!(csv.out, "l_orderkey,sum_extendedprice,count_order");
            csv.written(header)?;
            Ok(Box::new(csv))
        });
    let run = execute(&flow, config)?;
    let checksum = *checksum.lock().expect("the checksum");
    Ok((Answer::W2a(checksum), run))
}

/// W2a's `--output`: the sorted groups as CSV lines, and their checksum (handed to `done`
/// at the end).
struct W2aCsv {
    out: BufWriter<std::fs::File>,
    path: PathBuf,
    checksum: GroupChecksum,
    done: Arc<Mutex<GroupChecksum>>,
}

impl W2aCsv {
    fn written(&self, result: std::io::Result<()>) -> Result<()> {
        result.map_err(|e| WeirError::file("write", &self.path, e))
    }
}

impl Push<(i64, (i64, i64))> for W2aCsv {
    fn push(&mut self, (orderkey, (sum, count)): (i64, (i64, i64))) -> Result<()> {
        self.checksum.add(orderkey, sum, count);
        let sum = decimal(i128::from(sum), 2);
        let line = writeln!(self.out, "{orderkey},{sum},{count}");
        self.written(line)
    }

    fn finish(&mut self) -> Result<()> {
        *self.done.lock().expect("the checksum") = self.checksum;
        let flushed = self.out.flush();
        self.written(flushed)
    }
}

/// W2b (TPC-H Q1) as a dataflow program: every group, ordered by key, and with
/// `--output` as CSV.
fn w2b(job: &W2Job, config: &Config, output: Option<&OutputFile>) -> Result<(Answer, Run)> {
    let flow = Dataflow::new();
    let groups = crate::tpch::queries::q1_groups(&flow, &job.input).collect();
    let run = execute(&flow, config)?;
    let mut groups: Vec<(u8, u8, Q1Sums)> = groups
        .take()
        .into_iter()
        .map(|((flag, status), sums)| (flag, status, sums))
        .collect();
    groups.sort_by_key(|&(flag, status, _)| (flag, status));
    if let Some(output) = output {
        let mut csv = String::from(Q1_CSV_HEADER);
        csv.push('\n');
        for (flag, status, sums) in &groups {
            csv.push_str(&q1_csv_row(*flag, *status, sums));
            csv.push('\n');
        }
        let mut file = output.try_clone()?;
        file.write_all(csv.as_bytes())
            .map_err(|e| WeirError::file("write", output.temp_path(), e))?;
    }
    Ok((Answer::W2b(groups), run))
}

/// The answer a job computed, in the form its validation compares.
enum Answer {
    /// W2a: an order-independent checksum of the groups.
    W2a(GroupChecksum),
    /// W2b: every group, ordered by key.
    W2b(Vec<(u8, u8, Q1Sums)>),
}

impl Answer {
    fn groups(&self) -> u64 {
        match self {
            Answer::W2a(checksum) => checksum.groups,
            Answer::W2b(groups) => groups.len() as u64,
        }
    }
}

/// The wrapping sum over groups of a 64-bit hash of `(orderkey, sum, count)`, with the
/// number of groups and rows and the wrapping totals of the sums and of orderkey × count:
/// equal for equal sets of groups, whatever their order. The hash is splitmix64's
/// finalizer over the three words chained (cheap: it runs once per group inside the
/// timing). The totals are what the manifest's totals check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
struct GroupChecksum {
    groups: u64,
    rows: i64,
    sum: u64,
    extendedprice: i64,
    orderkeys: i64,
}

impl GroupChecksum {
    #[inline]
    fn add(&mut self, orderkey: i64, sum: i64, count: i64) {
        let mut hash = 0x9E37_79B9_7F4A_7C15u64;
        for word in [orderkey, sum, count] {
            hash = mix(hash ^ word as u64);
        }
        self.groups += 1;
        self.rows = self.rows.wrapping_add(count);
        self.sum = self.sum.wrapping_add(hash);
        self.extendedprice = self.extendedprice.wrapping_add(sum);
        self.orderkeys = self.orderkeys.wrapping_add(orderkey.wrapping_mul(count));
    }

    /// The checksum of both checksums' groups (of disjoint sets of groups).
    fn merged(self, other: &GroupChecksum) -> GroupChecksum {
        GroupChecksum {
            groups: self.groups + other.groups,
            rows: self.rows.wrapping_add(other.rows),
            sum: self.sum.wrapping_add(other.sum),
            extendedprice: self.extendedprice.wrapping_add(other.extendedprice),
            orderkeys: self.orderkeys.wrapping_add(other.orderkeys),
        }
    }
}

/// splitmix64's finalizer: every input bit affects every output bit.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The validation pass: the answer's totals against the manifest's (and, for W2b at SF
/// 1, the TPC-H reference answer); then a second scan decoding every row in full,
/// computing the answer without a hash table. Returns whether the second scan agrees,
/// and every problem found.
#[allow(
    clippy::too_many_lines,
    reason = "one validation per workload, side by side"
)]
fn validate(job: &W2Job, answer: &Answer, owner: &Owner) -> Result<(bool, Vec<String>)> {
    let mut scan = TableScan::open(&job.input, Table::Lineitem, owner)?;
    let manifest = scan.manifest().clone();
    let mut problems = against_manifest(answer, &manifest);
    let path = job.input.join(Table::Lineitem.name());
    let second = match answer {
        Answer::W2a(ours) => {
            let (mut check, mut current, mut unordered) = (GroupChecksum::default(), None, 0u64);
            scan.for_each_row_at(|offset, row| {
                let row = decode(row, &path, offset)?;
                match &mut current {
                    Some((key, sum, count)) if *key == row.l_orderkey => {
                        *sum = i64::wrapping_add(*sum, row.l_extendedprice);
                        *count += 1;
                    }
                    _ => {
                        if let Some((key, sum, count)) = current {
                            unordered += u64::from(row.l_orderkey < key);
                            check.add(key, sum, count);
                        }
                        current = Some((row.l_orderkey, row.l_extendedprice, 1));
                    }
                }
                Ok(())
            })?;
            if let Some((key, sum, count)) = current {
                check.add(key, sum, count);
            }
            let mut second = Vec::new();
            if unordered > 0 {
                second.push(format!(
                    "the input is not ordered by l_orderkey ({unordered} descents): the \
                     streaming check cannot vouch for the answer"
                ));
            }
            if check != *ours {
                second.push(format!(
                    "the groups differ from the second scan's streaming computation: {} \
                     groups of {} rows (checksum {:#x}) against {} groups of {} rows \
                     (checksum {:#x})",
                    ours.groups, ours.rows, ours.sum, check.groups, check.rows, check.sum
                ));
            }
            second
        }
        Answer::W2b(ours) => {
            let mut check: BTreeMap<(u8, u8), Q1Sums> = BTreeMap::new();
            scan.for_each_row_at(|offset, row| {
                let row = decode(row, &path, offset)?;
                if row.l_shipdate <= Q1_SHIPDATE_MAX {
                    let sums = Q1Sums::of_row(
                        row.l_quantity,
                        row.l_extendedprice,
                        row.l_discount,
                        row.l_tax,
                    );
                    check
                        .entry((row.l_returnflag, row.l_linestatus))
                        .or_default()
                        .add(&sums);
                }
                Ok(())
            })?;
            let check: Vec<(u8, u8, Q1Sums)> =
                check.into_iter().map(|((f, s), v)| (f, s, v)).collect();
            if manifest.scale_factor == 1.0 {
                problems.extend(check_sf1_reference(ours));
            }
            if check == *ours {
                Vec::new()
            } else {
                vec!["the groups differ from the second scan's BTreeMap computation".to_owned()]
            }
        }
    };
    let agrees = second.is_empty();
    problems.extend(second);
    Ok((agrees, problems))
}

/// The answer's totals against the manifest's, which the generator computed from its
/// rows: the check that does not depend on the bytes the answer was computed from.
fn against_manifest(answer: &Answer, manifest: &Manifest) -> Vec<String> {
    let (ours, theirs) = match answer {
        Answer::W2a(ours) => {
            let totals = manifest.entry(Table::Lineitem).totals;
            (
                [ours.rows, ours.orderkeys, ours.extendedprice],
                [totals.rows as i64, totals.sums[0], totals.sums[2]],
            )
        }
        Answer::W2b(groups) => {
            let mut ours = [0i64; 3];
            for (_, _, sums) in groups {
                ours[0] = ours[0].wrapping_add(sums.count);
                ours[1] = ours[1].wrapping_add(sums.qty);
                ours[2] = ours[2].wrapping_add(sums.base_price);
            }
            let q1 = manifest.q1;
            (ours, [q1.rows as i64, q1.quantity, q1.extendedprice])
        }
    };
    let names = match answer {
        Answer::W2a(_) => ["rows", "orderkey x count", "sum_extendedprice"],
        Answer::W2b(_) => ["count_order", "sum_qty", "sum_base_price"],
    };
    names
        .iter()
        .zip(ours.iter().zip(theirs))
        .filter(|(_, (ours, theirs))| **ours != *theirs)
        .map(|(name, (ours, theirs))| {
            format!("the answer's total {name} is {ours}, the generator's (manifest) is {theirs}")
        })
        .collect()
}

/// The `--output` file of a job over the tables in `input`, refused when it is one of the
/// tables (through a link too).
pub(crate) fn create_output(output: Option<&Path>, input: &Path) -> Result<Option<OutputFile>> {
    let tables: Vec<PathBuf> = Table::ALL.iter().map(|t| input.join(t.name())).collect();
    let tables: Vec<&Path> = tables.iter().map(PathBuf::as_path).collect();
    output
        .map(|path| OutputFile::create("--output", path, &tables))
        .transpose()
}

/// Decodes a whole `lineitem` row of `path` at byte `offset` with serde-fmt (strings
/// validated too).
pub(crate) fn decode<'a>(row: &'a [u8], path: &Path, offset: u64) -> Result<Lineitem<'a>> {
    weir_serde_fmt::from_slice::<Lineitem<'_>>(row).map_err(|e| WeirError::Data {
        message: format!(
            "{}: the lineitem row at byte {offset} does not decode: {e}",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_checksum_ignores_order() {
        let (mut a, mut b) = (GroupChecksum::default(), GroupChecksum::default());
        a.add(1, 10, 2);
        a.add(2, 20, 1);
        b.add(2, 20, 1);
        b.add(1, 10, 2);
        assert_eq!(a, b);
        b.add(3, 0, 1);
        assert_ne!(a, b);
        let (mut c, mut d) = (GroupChecksum::default(), GroupChecksum::default());
        c.add(1, 2, 3);
        d.add(1, 3, 2);
        assert_ne!(c, d, "the fields are not interchangeable");
        // Tasks' checksums of disjoint groups merge into the checksum of all of them.
        let (mut e, mut f) = (GroupChecksum::default(), GroupChecksum::default());
        e.add(1, 10, 2);
        f.add(2, 20, 1);
        assert_eq!(e.merged(&f), a);
    }
}
