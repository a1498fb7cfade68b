//! The W2 jobs behind `weir bench w2a|w2b`: hash aggregation of TPC-H `lineitem` within
//! a memory budget, and their validation.
//!
//! ```text
//!   DIR/lineitem ──TableScan (16 segments)──▶ row ──fixed offsets──▶ (key, value)
//!       ──push──▶ HashAggregate (the rest of the budget; spills to --spill-dir)
//!   finish ──▶ AggregateStream ──▶ W2a: checksum of (orderkey, sum, count);
//!                                       with --output, ExternalSorter by key ──▶ CSV
//!                                  W2b: ≤ 65536 groups (2-byte keys) ──▶ sorted ──▶ CSV
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
//! l_orderkey`. W2b: TPC-H Q1. Keys are big-endian (the key format of `i64`: sign bit
//! flipped), so sorting keys as bytes orders groups by key. Every buffer of the query
//! path is a segment of one memory manager whose budget is `--memory`: the scan's
//! buffers, the aggregation's table and spill I/O, the output sorter and writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use weir_kernel::hash::{AggregateConfig, AggregateStats, AggregateStream, HashAggregate};
use weir_kernel::memory::{MemoryManager, Owner};
use weir_kernel::sort::{ExternalSorter, SortConfig};
use weir_kernel::spill::{SpillConfig, SpillStore, open_store};

use crate::constants::{W2_OUTPUT_SORT_SHARE_INVERSE, W2_PUSH_BATCH_ROWS};
use crate::report::{KernelRun, Report};
use crate::tpch::lineitem::{
    DISCOUNT, EXTENDEDPRICE, LINESTATUS, ORDERKEY, QUANTITY, RETURNFLAG, SHIPDATE, TAX, i32_at,
    i64_at,
};
use crate::tpch::manifest::Manifest;
use crate::tpch::q1::{
    Q1_CSV_HEADER, Q1_SHIPDATE_MAX, Q1Aggregator, Q1Sums, SumCount, check_sf1_reference, decimal,
    q1_csv_row,
};
use crate::tpch::{Lineitem, Table, TableScan};
use crate::workloads::w1_sort::SegmentWriter;
use weir::error::{Result, WeirError};
use weir::output::OutputFile;

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
    /// Threads (only 1 so far).
    pub threads: usize,
    /// Where the result goes as CSV (none: the groups are only counted and checked).
    pub output: Option<PathBuf>,
    /// Where spill files go (default: the input directory).
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
    /// The aggregation's counters.
    pub stats: AggregateStats,
    /// Bytes the output sorter spilled.
    pub output_spilled_bytes: u64,
    /// The spill backend that ran.
    pub io_backend: String,
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
        struct Line<'a> {
            #[serde(flatten)]
            run: KernelRun,
            partitions_spilled: u64,
            recursion_depth_max: u64,
            sort_fallbacks: u64,
            records: u64,
            groups: u64,
            io_backend: &'a str,
            agrees_with_second_scan: bool,
            valid: bool,
        }
        let line = Line {
            run: KernelRun::new(
                (job.threads, job.memory_bytes),
                (self.wall_s, self.verify_s),
                (
                    self.peak_rss_bytes,
                    self.stats.spilled_bytes + self.output_spilled_bytes,
                ),
            ),
            partitions_spilled: self.stats.partitions_spilled,
            recursion_depth_max: self.stats.recursion_depth_max,
            sort_fallbacks: self.stats.sort_fallbacks,
            records: self.rows,
            groups: self.groups,
            io_backend: &self.io_backend,
            agrees_with_second_scan: self.agrees_with_second_scan,
            valid: self.valid,
        };
        Report::new(job.workload.name(), line).to_json()
    }
}

/// The budget, split once.
struct Memory {
    manager: MemoryManager,
    aggregate: usize,
    output_sort: usize,
}

/// Runs a W2 job and validates its answer.
///
/// # Errors
///
/// [`WeirError::Usage`] for more than one thread, a budget below the minimum, or an input
/// that is not a weir TPC-H directory (or is truncated or corrupt); [`WeirError::File`]
/// for files that cannot be read or written; [`WeirError::Kernel`] for spill failures.
#[allow(
    clippy::too_many_lines,
    reason = "the W2 job's phases in order; to split when W2 becomes a dataflow program"
)]
pub fn run_w2(job: &W2Job) -> Result<W2Report> {
    if job.threads != 1 {
        return Err(WeirError::Usage {
            message: format!(
                "--threads {}: only 1 so far; parallel aggregation (a table per thread over \
                 hash partitions of the key) is not built yet",
                job.threads
            ),
        });
    }
    let memory = split_memory(job)?;
    let manager = &memory.manager;
    let store = open_spill_store(job.spill_dir.as_deref(), &job.input)?;
    // Last of the checks: the output is touched only once every argument passed.
    let output = create_output(job.output.as_deref(), &job.input)?;
    let scan_owner = manager.owner("w2/scan");
    let started = Instant::now();
    let mut scan = TableScan::open(&job.input, Table::Lineitem, &scan_owner)?;
    let aggregate_owner = manager.owner("w2/aggregate");
    let (answer, rows, stats, output_spilled_bytes) = match job.workload {
        Workload::W2a => {
            let mut aggregate = new_aggregate(&aggregate_owner, &memory, &store, job.workload)?;
            // Rows go to the table in batches, whose lookups overlap their cache misses.
            let mut batch: Vec<([u8; 8], [u8; 8])> = Vec::with_capacity(W2_PUSH_BATCH_ROWS);
            let rows = scan.for_each_row(|row| {
                let key = order_key(i64_at(row, ORDERKEY));
                batch.push((key, i64_at(row, EXTENDEDPRICE).to_le_bytes()));
                if batch.len() == W2_PUSH_BATCH_ROWS {
                    aggregate.push_batch(&batch)?;
                    batch.clear();
                }
                Ok(())
            })?;
            aggregate.push_batch(&batch)?;
            drop(scan);
            let mut stream = aggregate.finish()?;
            let sort_owner = manager.owner("w2/output");
            let (answer, sort_spilled) =
                w2a_output(output.as_ref(), &mut stream, &sort_owner, &memory, &store)?;
            (answer, rows, stream.stats(), sort_spilled)
        }
        Workload::W2b => {
            let mut aggregate = new_aggregate(&aggregate_owner, &memory, &store, job.workload)?;
            let rows = scan.for_each_row(|row| {
                if i32_at(row, SHIPDATE) > Q1_SHIPDATE_MAX {
                    return Ok(());
                }
                let key = [row[RETURNFLAG], row[LINESTATUS]];
                let value = Q1Sums::value_of_row(
                    i64_at(row, QUANTITY),
                    i64_at(row, EXTENDEDPRICE),
                    i64_at(row, DISCOUNT),
                    i64_at(row, TAX),
                );
                Ok(aggregate.push(&key, &value)?)
            })?;
            drop(scan);
            let mut stream = aggregate.finish()?;
            let answer = w2b_output(output.as_ref(), &mut stream, manager)?;
            (answer, rows, stream.stats(), 0)
        }
    };
    manager.leak_check()?;
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_bytes = weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes);
    let verify_started = Instant::now();
    let (agrees_with_second_scan, problems) = validate(job, &answer, &scan_owner)?;
    manager.leak_check()?;
    // Only an answer that passed validation replaces an existing output.
    if let Some(output) = output.filter(|_| problems.is_empty()) {
        output.commit()?;
    }
    Ok(W2Report {
        rows,
        groups: answer.groups(),
        wall_s,
        verify_s: verify_started.elapsed().as_secs_f64(),
        peak_rss_bytes,
        stats,
        output_spilled_bytes,
        io_backend: store.backend().to_string(),
        valid: problems.is_empty(),
        agrees_with_second_scan,
        problems,
    })
}

/// The key of an `l_orderkey`: the key format of `i64` (big-endian, sign bit flipped), so
/// that byte order is numeric order.
#[inline]
pub(crate) fn order_key(orderkey: i64) -> [u8; 8] {
    ((orderkey as u64) ^ (1 << 63)).to_be_bytes()
}

fn key_order(key: &[u8]) -> i64 {
    let bytes: [u8; 8] = key.try_into().expect("an 8-byte order key");
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

fn split_memory(job: &W2Job) -> Result<Memory> {
    let manager =
        MemoryManager::with_budget(usize::try_from(job.memory_bytes).unwrap_or(usize::MAX))?;
    let segments = manager.budget_bytes() / manager.segment_size();
    let aggregate_min = AggregateConfig::default().memory_segments_min();
    let sorting = job.workload == Workload::W2a && job.output.is_some();
    let output_sort = if sorting {
        (segments / W2_OUTPUT_SORT_SHARE_INVERSE).max(SortConfig::default().memory_segments_min())
    } else {
        0
    };
    // The scan's buffers, and one segment for the output writer.
    let io = TableScan::segments() + 1;
    let minimum = aggregate_min + output_sort + io;
    if segments < minimum {
        return Err(WeirError::Usage {
            message: format!(
                "--memory {} bytes is below the minimum of {} bytes for {}",
                manager.budget_bytes(),
                minimum * manager.segment_size(),
                job.workload.name()
            ),
        });
    }
    Ok(Memory {
        aggregate: segments - output_sort - io,
        output_sort,
        manager,
    })
}

fn new_aggregate(
    owner: &Owner,
    memory: &Memory,
    store: &Arc<dyn SpillStore>,
    workload: Workload,
) -> Result<HashAggregate> {
    let aggregator: Box<dyn weir_kernel::hash::Aggregator> = match workload {
        Workload::W2a => Box::new(SumCount),
        Workload::W2b => Box::new(Q1Aggregator),
    };
    Ok(HashAggregate::new(
        owner,
        memory.aggregate,
        Arc::clone(store),
        aggregator,
        AggregateConfig::default(),
    )?)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
}

/// splitmix64's finalizer: every input bit affects every output bit.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Streams W2a's groups into the checksum and, with `--output`, sorts them by key and
/// writes them as CSV. Returns the checksum and the output sorter's spilled bytes.
fn w2a_output(
    output: Option<&OutputFile>,
    stream: &mut AggregateStream,
    owner: &Owner,
    memory: &Memory,
    store: &Arc<dyn SpillStore>,
) -> Result<(Answer, u64)> {
    let mut checksum = GroupChecksum::default();
    let Some(output) = output else {
        while let Some((key, acc)) = stream.next()? {
            checksum.add(key_order(key), i64_at(acc, 0), i64_at(acc, 8));
        }
        return Ok((Answer::W2a(checksum), 0));
    };
    let config = SortConfig::default();
    let mut sorter = ExternalSorter::new(owner, memory.output_sort, Arc::clone(store), config)?;
    while let Some((key, acc)) = stream.next()? {
        checksum.add(key_order(key), i64_at(acc, 0), i64_at(acc, 8));
        sorter.push(key, acc)?;
    }
    let mut sorted = sorter.finish()?;
    let mut writer = SegmentWriter::new(
        output.try_clone()?,
        output.temp_path(),
        owner.allocate_one()?,
    );
    writer.write(b"l_orderkey,sum_extendedprice,count_order\n")?;
    let mut line = String::new();
    while let Some((key, acc)) = sorted.next()? {
        line.clear();
        line.push_str(&key_order(key).to_string());
        line.push(',');
        line.push_str(&decimal(i128::from(i64_at(acc, 0)), 2));
        line.push(',');
        line.push_str(&i64_at(acc, 8).to_string());
        line.push('\n');
        writer.write(line.as_bytes())?;
    }
    writer.finish()?;
    Ok((Answer::W2a(checksum), sorted.stats().spilled_bytes))
}

/// Collects Q1's groups (at most 65536: the keys are two bytes), ordered by key, and
/// writes them as CSV with `--output`.
fn w2b_output(
    output: Option<&OutputFile>,
    stream: &mut AggregateStream,
    manager: &MemoryManager,
) -> Result<Answer> {
    let mut groups = Vec::new();
    while let Some((key, acc)) = stream.next()? {
        assert_eq!(key.len(), 2, "a Q1 key is two flag bytes");
        groups.push((key[0], key[1], Q1Sums::from_acc(acc)));
    }
    groups.sort_by_key(|&(flag, status, _)| (flag, status));
    if let Some(output) = output {
        let owner = manager.owner("w2/output");
        let mut writer = SegmentWriter::new(
            output.try_clone()?,
            output.temp_path(),
            owner.allocate_one()?,
        );
        writer.write(Q1_CSV_HEADER.as_bytes())?;
        writer.write(b"\n")?;
        for (flag, status, sums) in &groups {
            writer.write(q1_csv_row(*flag, *status, sums).as_bytes())?;
            writer.write(b"\n")?;
        }
        writer.finish()?;
    }
    Ok(Answer::W2b(groups))
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

/// The spill store in `spill_dir`, or else in the input directory.
pub(crate) fn open_spill_store(
    spill_dir: Option<&Path>,
    input: &Path,
) -> Result<Arc<dyn SpillStore>> {
    let dir = spill_dir.unwrap_or(input);
    if !dir.is_dir() {
        return Err(WeirError::Usage {
            message: format!("spill directory {} is not a directory", dir.display()),
        });
    }
    if spill_dir.is_some() && weir_kernel::sys::is_memory_filesystem(dir) {
        return Err(WeirError::Usage {
            message: format!(
                "--spill-dir {}: a filesystem in memory (tmpfs or ramfs); spilling there \
                 takes memory outside the budget: choose a directory on a disk",
                dir.display()
            ),
        });
    }
    Ok(open_store(&SpillConfig {
        // The input's directory, when no spill directory was named, is accepted wherever
        // the user keeps the tables.
        allow_memory_filesystem: true,
        ..SpillConfig::new(dir.to_path_buf())
    })?)
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
    fn order_keys_sort_as_numbers() {
        let mut keys: Vec<i64> = vec![5, -1, 0, i64::MAX, i64::MIN, 300];
        let mut encoded: Vec<[u8; 8]> = keys.iter().map(|&k| order_key(k)).collect();
        encoded.sort();
        keys.sort();
        let decoded: Vec<i64> = encoded.iter().map(|k| key_order(k)).collect();
        assert_eq!(decoded, keys);
        assert_eq!(
            order_key(7).to_vec(),
            weir_serde_fmt::key::to_vec(&7i64).unwrap()
        );
    }

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
    }
}
