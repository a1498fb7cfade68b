//! The W3 job behind `weir bench w3`: orders ⋈ lineitem on the order key within a memory
//! budget, `COUNT(*)` and `SUM(l_extendedprice)` over the joined rows, and its validation.
//!
//! ```text
//!   DIR/orders ──TableScan──▶ o_orderkey ──push_build(key, no record)──▶ HashJoin
//!   DIR/lineitem ──TableScan──▶ (l_orderkey, l_extendedprice) ──▶ a batch of
//!       W3_PROBE_BATCH_ROWS rows ──full: hashed, buckets prefetched──▶ probed when the
//!       next batch is full, each run of one key at once ──▶ count, sum
//!                                   (partitions in memory: at once; spilled ones: bloom
//!                                    filter, then a probe run on disk)
//!   finish ──▶ JoinStream: the spilled pairs joined ──▶ count, sum ──▶ CSV (--output)
//!   validation (after the timing): every lineitem row has its order (TPC-H's foreign
//!   key), so the count and sum must be the manifest's lineitem rows and l_extendedprice
//!   total, which the generator computed from its rows: `valid`. Beside it, both files
//!   scanned again at once and decoded in full with serde-fmt, merged on the order key
//!   (tpchgen writes both in key order; the merge checks it), count and sum compared
//!   exactly: `agrees_with_second_scan`
//! ```
//!
//! Build side: `orders` (1.5 M rows at SF 1), the smaller input and the one whose key is
//! unique, so a probe finds at most one match and the table holds only the keys (11 bytes
//! a row: a record header, the 8-byte key, the matched byte; no record bytes: the
//! aggregate needs nothing of an order but its key). Probe side: `lineitem` (6 M rows),
//! whose probe record is its 8-byte `l_extendedprice`. `--build lineitem` swaps the sides
//! (a table four times larger with about four records a key), for measurements and for
//! tests that must spill on small inputs. Keys are `order_key` of
//! [`w2_job`](crate::workloads::w2_aggregate) (big-endian, sign bit flipped). Only the aggregate is made:
//! joined rows are counted and summed as they are emitted, never materialized.
//!
//! Every buffer of the query path is a segment of one memory manager whose budget is
//! `--memory`: one scan's buffers at a time (build side, then probe side), the join's
//! table, bloom filters and spill I/O, and the output writer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use weir_kernel::hash::{HashJoin, JoinConfig, JoinRow, JoinStats, JoinType, ProbeHash};
use weir_kernel::memory::{MemoryManager, Owner};
use weir_kernel::spill::SpillStore;

use crate::constants::{W3_PROBE_BATCH_ROWS, W3_VERIFY_BATCH_KEYS, W3_VERIFY_BATCHES_IN_FLIGHT};
use crate::report::{KernelRun, Report};
use crate::tpch::lineitem::{EXTENDEDPRICE, ORDERKEY, i64_at};
use crate::tpch::q1::decimal;
use crate::tpch::{Order, ROW_BYTES_MAX, Table, TableScan, orders};
use crate::workloads::w1_sort::SegmentWriter;
use crate::workloads::w2_aggregate::{create_output, decode, open_spill_store, order_key};
use weir::error::{Result, WeirError};

/// The header of W3's CSV output.
pub const W3_CSV_HEADER: &str = "count,sum_extendedprice";

/// Which table a W3 join builds its hash table on (the other one probes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildSide {
    /// `orders` (the default): the smaller table, with a unique key.
    Orders,
    /// `lineitem`: four times the rows, about four per key (duplicate chains); spills at
    /// budgets where `orders` would not, which is what small test inputs need.
    Lineitem,
}

impl BuildSide {
    /// The table's name, as `--build` takes it.
    pub fn name(self) -> &'static str {
        match self {
            BuildSide::Orders => "orders",
            BuildSide::Lineitem => "lineitem",
        }
    }
}

/// What `weir bench w3` was asked to do.
#[derive(Debug, Clone)]
pub struct W3Job {
    /// The directory `weir gen tpch` wrote.
    pub input: PathBuf,
    /// The memory budget in bytes: scan buffers, the join, the output writer.
    pub memory_bytes: u64,
    /// Threads (only 1 so far).
    pub threads: usize,
    /// Where the result goes as CSV (none: it is only checked).
    pub output: Option<PathBuf>,
    /// Where spill files go (default: the input directory).
    pub spill_dir: Option<PathBuf>,
    /// The table the join builds on.
    pub build: BuildSide,
}

/// The answer: joined rows and the sum of their `l_extendedprice`, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct W3Answer {
    /// `COUNT(*)` of the joined rows.
    pub count: u64,
    /// `SUM(l_extendedprice)` in cents (exact: an `i128` cannot overflow here).
    pub sum_cents: i128,
}

impl W3Answer {
    #[inline]
    fn add(&mut self, extendedprice: i64) {
        self.count += 1;
        self.sum_cents += i128::from(extendedprice);
    }

    /// The CSV row: the count, then the sum with 2 decimals.
    pub fn csv_row(&self) -> String {
        format!("{},{}", self.count, decimal(self.sum_cents, 2))
    }
}

/// What a W3 job did: the fields of the docs/WORKLOADS.md JSON line.
#[derive(Debug, Clone)]
pub struct W3Report {
    /// The answer of the timed part.
    pub answer: W3Answer,
    /// Scans, join and output.
    pub wall_s: f64,
    /// The validation pass, not part of `wall_s`.
    pub verify_s: f64,
    /// The process's peak resident set, in bytes.
    pub peak_rss_bytes: u64,
    /// The join's counters.
    pub stats: JoinStats,
    /// Partitions of the join's build side.
    pub partitions: usize,
    /// The spill backend that ran.
    pub io_backend: String,
    /// Whether the answer equals the manifest's lineitem totals and the merge join of the
    /// validation agrees.
    pub valid: bool,
    /// Whether the merge join of a second scan of the same bytes computes the same answer.
    pub agrees_with_second_scan: bool,
    /// Why not, one line each.
    pub problems: Vec<String>,
}

impl W3Report {
    /// The one-line JSON summary of docs/WORKLOADS.md, with the join's counters.
    pub fn to_json(&self, job: &W3Job) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            run: KernelRun,
            partitions: u64,
            partitions_spilled: u64,
            recursion_depth_max: u64,
            sort_merge_fallbacks: u64,
            bloom_filtered: u64,
            build: &'a str,
            build_records: u64,
            probe_records: u64,
            records: u64,
            sum_extendedprice: String,
            io_backend: &'a str,
            agrees_with_second_scan: bool,
            valid: bool,
        }
        let stats = &self.stats;
        let line = Line {
            run: KernelRun::new(
                (job.threads, job.memory_bytes),
                (self.wall_s, self.verify_s),
                (self.peak_rss_bytes, stats.spilled_bytes),
            ),
            partitions: self.partitions as u64,
            partitions_spilled: stats.partitions_spilled,
            recursion_depth_max: stats.recursion_depth_max,
            sort_merge_fallbacks: stats.sort_merge_fallbacks,
            bloom_filtered: stats.bloom_filtered,
            build: job.build.name(),
            build_records: stats.build_records,
            probe_records: stats.probe_records,
            records: self.answer.count,
            sum_extendedprice: decimal(self.answer.sum_cents, 2),
            io_backend: &self.io_backend,
            agrees_with_second_scan: self.agrees_with_second_scan,
            valid: self.valid,
        };
        Report::new("W3", line).to_json()
    }
}

/// Runs a W3 job and validates its answer.
///
/// # Errors
///
/// [`WeirError::Usage`] for more than one thread, a budget below the minimum, or an input
/// that is not a weir TPC-H directory (or is truncated or corrupt); [`WeirError::File`]
/// for files that cannot be read or written; [`WeirError::Kernel`] for spill failures.
pub fn run_w3(job: &W3Job) -> Result<W3Report> {
    if job.threads != 1 {
        return Err(WeirError::Usage {
            message: format!(
                "--threads {}: only 1 so far; a parallel join (a table per thread over \
                 hash partitions of the key) is not built yet",
                job.threads
            ),
        });
    }
    let manager =
        MemoryManager::with_budget(usize::try_from(job.memory_bytes).unwrap_or(usize::MAX))?;
    let join_segments = join_segments(&manager)?;
    let store = open_spill_store(job.spill_dir.as_deref(), &job.input)?;
    // Last of the checks: the output is touched only once every argument passed.
    let output = create_output(job.output.as_deref(), &job.input)?;
    let scan_owner = manager.owner("w3/scan");
    let join_owner = manager.owner("w3/join");
    let started = Instant::now();
    let (answer, stats, partitions) = join(job, &scan_owner, &join_owner, join_segments, &store)?;
    if let Some(output) = &output {
        let mut writer = SegmentWriter::new(
            output.try_clone()?,
            output.temp_path(),
            scan_owner.allocate_one()?,
        );
        writer.write(format!("{W3_CSV_HEADER}\n{}\n", answer.csv_row()).as_bytes())?;
        writer.finish()?;
    }
    manager.leak_check()?;
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_bytes = weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes);
    let verify_started = Instant::now();
    let (agrees_with_second_scan, problems) = validate(job, answer, &scan_owner)?;
    manager.leak_check()?;
    // Only an answer that passed validation replaces an existing output.
    if let Some(output) = output.filter(|_| problems.is_empty()) {
        output.commit()?;
    }
    Ok(W3Report {
        answer,
        wall_s,
        verify_s: verify_started.elapsed().as_secs_f64(),
        peak_rss_bytes,
        stats,
        partitions,
        io_backend: store.backend().to_string(),
        valid: problems.is_empty(),
        agrees_with_second_scan,
        problems,
    })
}

/// The join's share of the budget: all of it but one scan's buffers and the output
/// writer's segment (the two scans run one after the other).
fn join_segments(manager: &MemoryManager) -> Result<usize> {
    let segments = manager.budget_bytes() / manager.segment_size();
    let io = TableScan::segments() + 1;
    let minimum = JoinConfig::default().memory_segments_min() + io;
    if segments < minimum {
        return Err(WeirError::Usage {
            message: format!(
                "--memory {} bytes is below the minimum of {} bytes for W3",
                manager.budget_bytes(),
                minimum * manager.segment_size(),
            ),
        });
    }
    Ok(segments - io)
}

/// The timed part: build on one table, probe with the other, drain the spilled pairs.
fn join(
    job: &W3Job,
    scan_owner: &Owner,
    join_owner: &Owner,
    join_segments: usize,
    store: &Arc<dyn SpillStore>,
) -> Result<(W3Answer, JoinStats, usize)> {
    let mut join = HashJoin::new(
        join_owner,
        join_segments,
        Arc::clone(store),
        JoinType::Inner,
        JoinConfig::default(),
    )?;
    let partitions = join.partitions();
    let (build, probe) = match job.build {
        BuildSide::Orders => (Table::Orders, Table::Lineitem),
        BuildSide::Lineitem => (Table::Lineitem, Table::Orders),
    };
    let mut scan = TableScan::open(&job.input, build, scan_owner)?;
    scan.for_each_row(|row| {
        let (key, record) = join_input(build, row);
        Ok(join.push_build(&key, record)?)
    })?;
    drop(scan);
    join.finish_build()?;
    let mut answer = W3Answer::default();
    let mut probes = ProbeBatches::new(probe);
    let mut scan = TableScan::open(&job.input, probe, scan_owner)?;
    scan.for_each_row(|row| {
        let (key, record) = join_input(probe, row);
        probes.push(&mut join, key, record, &mut answer)
    })?;
    drop(scan);
    probes.finish(&mut join, &mut answer)?;
    let mut stream = join.finish()?;
    while let Some(joined) = stream.next()? {
        answer.add(extendedprice_of(joined));
    }
    Ok((answer, stream.stats(), partitions))
}

/// The probe side's rows in two batches of [`W3_PROBE_BATCH_ROWS`]: while one fills, the
/// buckets of the other's keys are being loaded into the cache; a full batch is hashed
/// and prefetched, then the one before it is probed. Consecutive rows of one key (about
/// four line items an order, in a row) share the hash and the prefetch of the first.
struct ProbeBatches {
    /// Bytes of each row's probe record: the same for every row of a table.
    record_len: usize,
    filling: ProbeBatch,
    /// Hashed and prefetched, not probed yet.
    waiting: ProbeBatch,
    last: Option<([u8; 8], ProbeHash)>,
}

/// Up to [`W3_PROBE_BATCH_ROWS`] probe rows: keys, records (at most 8 bytes) and, once
/// hashed, the keys' hashes.
struct ProbeBatch {
    len: usize,
    keys: [[u8; 8]; W3_PROBE_BATCH_ROWS],
    records: [[u8; 8]; W3_PROBE_BATCH_ROWS],
    hashes: [Option<ProbeHash>; W3_PROBE_BATCH_ROWS],
}

impl ProbeBatch {
    fn new() -> ProbeBatch {
        ProbeBatch {
            len: 0,
            keys: [[0; 8]; W3_PROBE_BATCH_ROWS],
            records: [[0; 8]; W3_PROBE_BATCH_ROWS],
            hashes: [None; W3_PROBE_BATCH_ROWS],
        }
    }
}

impl ProbeBatches {
    fn new(table: Table) -> ProbeBatches {
        ProbeBatches {
            // The record of any row, here of one of zeros.
            record_len: join_input(table, &[0; ROW_BYTES_MAX]).1.len(),
            filling: ProbeBatch::new(),
            waiting: ProbeBatch::new(),
            last: None,
        }
    }

    #[inline]
    fn push(
        &mut self,
        join: &mut HashJoin,
        key: [u8; 8],
        record: &[u8],
        answer: &mut W3Answer,
    ) -> Result<()> {
        debug_assert_eq!(record.len(), self.record_len);
        let batch = &mut self.filling;
        batch.keys[batch.len] = key;
        batch.records[batch.len][..record.len()].copy_from_slice(record);
        batch.len += 1;
        if batch.len == W3_PROBE_BATCH_ROWS {
            self.prefetch(join);
            self.probe_waiting(join, answer)?;
            std::mem::swap(&mut self.filling, &mut self.waiting);
        }
        Ok(())
    }

    /// Hashes the filling batch's keys and prefetches their buckets.
    fn prefetch(&mut self, join: &HashJoin) {
        let batch = &mut self.filling;
        for (key, hash) in batch.keys[..batch.len].iter().zip(&mut batch.hashes) {
            let known = match self.last {
                Some((last_key, last_hash)) if last_key == *key => last_hash,
                _ => join.prefetch(key),
            };
            self.last = Some((*key, known));
            *hash = Some(known);
        }
    }

    /// Probes the waiting batch, each run of rows with one key at once, and empties it.
    fn probe_waiting(&mut self, join: &mut HashJoin, answer: &mut W3Answer) -> Result<()> {
        let batch = &mut self.waiting;
        let mut records: [&[u8]; W3_PROBE_BATCH_ROWS] = [&[]; W3_PROBE_BATCH_ROWS];
        for (record, bytes) in records.iter_mut().zip(&batch.records[..batch.len]) {
            *record = &bytes[..self.record_len];
        }
        let mut start = 0;
        while start < batch.len {
            let key = &batch.keys[start];
            let run = batch.keys[start..batch.len]
                .iter()
                .take_while(|k| *k == key);
            let end = start + run.count();
            let hash = batch.hashes[start].expect("a waiting batch is hashed");
            join.probe_hashed_group(hash, key, &records[start..end], |joined| {
                answer.add(extendedprice_of(joined));
                Ok(())
            })?;
            start = end;
        }
        batch.len = 0;
        Ok(())
    }

    /// Probes the rows left.
    fn finish(mut self, join: &mut HashJoin, answer: &mut W3Answer) -> Result<()> {
        self.probe_waiting(join, answer)?;
        self.prefetch(join);
        std::mem::swap(&mut self.filling, &mut self.waiting);
        self.probe_waiting(join, answer)
    }
}

/// A row's join key and record: an order gives only its key (no record bytes), a line
/// item its key and its 8-byte `l_extendedprice`.
#[inline]
fn join_input(table: Table, row: &[u8]) -> ([u8; 8], &[u8]) {
    match table {
        Table::Lineitem => (
            order_key(i64_at(row, ORDERKEY)),
            &row[EXTENDEDPRICE..EXTENDEDPRICE + 8],
        ),
        _ => (order_key(i64_at(row, orders::ORDERKEY)), &[]),
    }
}

/// The `l_extendedprice` of a joined row: the record of the lineitem side, the one of
/// eight bytes (the orders side's is empty).
#[inline]
fn extendedprice_of(joined: JoinRow<'_>) -> i64 {
    let both = "an inner join row has both records";
    let (build, probe) = (joined.build.expect(both), joined.probe.expect(both));
    i64_at(if build.is_empty() { probe } else { build }, 0)
}

/// The validation pass: the answer against the manifest's lineitem totals, then a merge
/// join of the two files, each decoded in full with serde-fmt. A thread scans `orders`
/// and sends its keys in batches over a bounded channel; this thread scans `lineitem` and
/// walks them. Returns whether the merge join agrees, and every problem found.
fn validate(job: &W3Job, ours: W3Answer, owner: &Owner) -> Result<(bool, Vec<String>)> {
    let orders_scan = TableScan::open(&job.input, Table::Orders, owner)?;
    let mut lineitem_scan = TableScan::open(&job.input, Table::Lineitem, owner)?;
    let totals = lineitem_scan.manifest().entry(Table::Lineitem).totals;
    let mut first = Vec::new();
    // Wrapping, as the manifest's sums (exact at any scale weir generates).
    if ours.count != totals.rows || ours.sum_cents as i64 != totals.sums[2] {
        first.push(format!(
            "the answer is {} rows summing to {} cents; the generator's lineitem (manifest) \
             is {} rows summing to {} cents, and each joins its order",
            ours.count, ours.sum_cents, totals.rows, totals.sums[2]
        ));
    }
    let path = job.input.join(Table::Lineitem.name());
    let (sender, receiver) = sync_channel(W3_VERIFY_BATCHES_IN_FLIGHT);
    let (orders_result, merge) = std::thread::scope(|scope| {
        let orders = scope.spawn(move || send_order_keys(orders_scan, &sender));
        let mut merge = Merge::new(receiver);
        let scanned = lineitem_scan.for_each_row_at(|offset, row| {
            let row = decode(row, &path, offset)?;
            merge.lineitem(row.l_orderkey, row.l_extendedprice);
            Ok(())
        });
        // Dropping the receiver (with `merge`) ends the orders thread's sends if this
        // scan failed.
        let merge = scanned.map(|_| merge.finish());
        (
            orders.join().expect("the orders scan does not panic"),
            merge,
        )
    });
    let (check, mut problems) = merge?;
    let orders_unordered = orders_result?;
    if orders_unordered > 0 {
        problems.push(format!(
            "orders is not strictly ordered by o_orderkey ({orders_unordered} descents or \
             repeats): the merge join cannot vouch for the answer"
        ));
    }
    if check != ours {
        problems.push(format!(
            "the answer differs from the second scan's merge join: {} rows summing to {} \
             against {} rows summing to {}",
            ours.count,
            decimal(ours.sum_cents, 2),
            check.count,
            decimal(check.sum_cents, 2)
        ));
    }
    let agrees = problems.is_empty();
    first.extend(problems);
    Ok((agrees, first))
}

/// Scans `orders` in full, sending its keys in batches; returns how often a key was not
/// above the one before. Stops early when the receiver is gone.
fn send_order_keys(mut scan: TableScan, sender: &SyncSender<Vec<i64>>) -> Result<u64> {
    let mut batch = Vec::with_capacity(W3_VERIFY_BATCH_KEYS);
    let (mut previous, mut unordered) = (None, 0u64);
    let gone = || WeirError::Usage {
        message: "the merge join stopped".to_owned(),
    };
    let path = scan.path().to_path_buf();
    scan.for_each_row_at(|offset, row| {
        let order = weir_serde_fmt::from_slice::<Order<'_>>(row).map_err(|e| WeirError::Data {
            message: format!(
                "{}: the orders row at byte {offset} does not decode: {e}",
                path.display()
            ),
        })?;
        unordered += u64::from(previous.is_some_and(|p| order.o_orderkey <= p));
        previous = Some(order.o_orderkey);
        batch.push(order.o_orderkey);
        if batch.len() == W3_VERIFY_BATCH_KEYS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(W3_VERIFY_BATCH_KEYS));
            sender.send(full).map_err(|_| gone())?;
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        sender.send(batch).map_err(|_| gone())?;
    }
    Ok(unordered)
}

/// The lineitem side of the validation's merge join: each row meets the order keys in
/// turn; a row whose key equals the current order key joins.
struct Merge {
    receiver: Receiver<Vec<i64>>,
    batch: Vec<i64>,
    at: usize,
    previous: Option<i64>,
    unordered: u64,
    answer: W3Answer,
}

impl Merge {
    fn new(receiver: Receiver<Vec<i64>>) -> Merge {
        Merge {
            receiver,
            batch: Vec::new(),
            at: 0,
            previous: None,
            unordered: 0,
            answer: W3Answer::default(),
        }
    }

    /// The current order key, receiving the next batch when one is used up; `None` after
    /// the last.
    fn current(&mut self) -> Option<i64> {
        while self.at == self.batch.len() {
            self.batch = self.receiver.recv().ok()?;
            self.at = 0;
        }
        Some(self.batch[self.at])
    }

    fn lineitem(&mut self, orderkey: i64, extendedprice: i64) {
        self.unordered += u64::from(self.previous.is_some_and(|p| orderkey < p));
        self.previous = Some(orderkey);
        while let Some(key) = self.current() {
            if key >= orderkey {
                if key == orderkey {
                    self.answer.add(extendedprice);
                }
                return;
            }
            self.at += 1;
        }
    }

    fn finish(self) -> (W3Answer, Vec<String>) {
        let mut problems = Vec::new();
        if self.unordered > 0 {
            problems.push(format!(
                "lineitem is not ordered by l_orderkey ({} descents): the merge join cannot \
                 vouch for the answer",
                self.unordered
            ));
        }
        (self.answer, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge_of(orders: Vec<Vec<i64>>, lineitem: &[(i64, i64)]) -> (W3Answer, Vec<String>) {
        let (sender, receiver) = sync_channel(orders.len() + 1);
        for batch in orders {
            sender.send(batch).unwrap();
        }
        drop(sender);
        let mut merge = Merge::new(receiver);
        for &(key, price) in lineitem {
            merge.lineitem(key, price);
        }
        merge.finish()
    }

    #[test]
    fn the_merge_joins_equal_keys_across_batches() {
        let (answer, problems) = merge_of(
            vec![vec![1, 3], vec![], vec![4, 7]],
            &[
                (0, 1),
                (1, 10),
                (1, 20),
                (2, 5),
                (4, 100),
                (7, 1000),
                (9, 1),
            ],
        );
        assert!(problems.is_empty());
        assert_eq!(
            answer,
            W3Answer {
                count: 4,
                sum_cents: 1130
            }
        );
    }

    #[test]
    fn the_merge_reports_unordered_lineitems() {
        let (_, problems) = merge_of(vec![vec![1, 2]], &[(2, 1), (1, 1)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn the_csv_row_has_the_sum_in_cents() {
        let answer = W3Answer {
            count: 3,
            sum_cents: 2_116_805,
        };
        assert_eq!(answer.csv_row(), "3,21168.05");
    }
}
