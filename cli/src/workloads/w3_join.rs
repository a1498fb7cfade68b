//! The W3 job behind `weir bench w3`: orders ⋈ lineitem on the order key as a dataflow
//! program within a memory budget, `COUNT(*)` and `SUM(l_extendedprice)` over the joined
//! rows, and its validation.
//!
//! ```text
//!   orders ─o_orderkey─▶ key_by ══broadcast══▶ join (build, in every task) ─┐
//!   lineitem ─(l_orderkey, l_extendedprice)─▶ key_by ─▶ join (probe, where scanned)
//!     ─fold: count, sum per task─▶ collect ─▶ CSV (--output)
//!   validation (after the timing): every lineitem row has its order (TPC-H's foreign
//!   key), so the count and sum must be the manifest's lineitem rows and l_extendedprice
//!   total, which the generator computed from its rows: `valid`. Beside it, both files
//!   scanned again at once and decoded in full with serde-fmt, merged on the order key
//!   (tpchgen writes both in key order; the merge checks it), count and sum compared
//!   exactly: `agrees_with_second_scan`
//! ```
//!
//! Build side: `orders` (1.5 M rows at SF 1), the smaller input and the one whose key is
//! unique; it is broadcast to every task (one worker: a copy per slot), so the 6 M
//! lineitem rows are probed where they are scanned, never exchanged. `--build lineitem`
//! swaps the sides (a table four times larger with about four
//! records a key), for measurements and for tests that must spill on small inputs. The
//! program uses only the public dataflow API and runs in this process on `--threads`
//! task slots; `--memory` is split as for W2 ([`W2_NETWORK_MEMORY`] of network buffers,
//! the rest managed). Joined rows are counted and summed as they come, never
//! materialized. The hand-driven kernel join (batched, prefetching probes) stays a
//! micro-benchmark (`benches/hash_join.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use weir::dataflow::Dataflow;
use weir_kernel::memory::{MemoryManager, Owner};

use crate::constants::{W3_VERIFY_BATCH_KEYS, W3_VERIFY_BATCHES_IN_FLIGHT};
use crate::report::{KernelRun, Report};
use crate::tpch::q1::decimal;
use crate::tpch::{Order, Table, TableScan, lineitem, orders};
use crate::workloads::w2_aggregate::{
    W2_NETWORK_MEMORY, create_output, decode, execute, job_config,
};
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
    /// Task slots of the job's one worker.
    pub threads: usize,
    /// Where the result goes as CSV (none: it is only checked).
    pub output: Option<PathBuf>,
    /// Where spill files go (default: the system's temp directory).
    pub spill_dir: Option<PathBuf>,
    /// The table the join builds on.
    pub build: BuildSide,
}

/// The answer: joined rows and the sum of their `l_extendedprice`, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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

    /// The answer over both answers' rows.
    fn merged(self, other: &W3Answer) -> W3Answer {
        W3Answer {
            count: self.count + other.count,
            sum_cents: self.sum_cents + other.sum_cents,
        }
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
    /// Rows the job's scans read (both tables).
    pub rows_read: u64,
    /// Bytes the job's kernel operators spilled.
    pub spilled_bytes: u64,
    /// Records the job's exchanges carried.
    pub records_exchanged: u64,
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
            build: &'a str,
            rows_read: u64,
            records_exchanged: u64,
            network_bytes: u64,
            records: u64,
            sum_extendedprice: String,
            agrees_with_second_scan: bool,
            valid: bool,
        }
        let line = Line {
            run: KernelRun::new(
                (job.threads, job.memory_bytes),
                (self.wall_s, self.verify_s),
                (self.peak_rss_bytes, self.spilled_bytes),
            ),
            build: job.build.name(),
            rows_read: self.rows_read,
            records_exchanged: self.records_exchanged,
            network_bytes: W2_NETWORK_MEMORY,
            records: self.answer.count,
            sum_extendedprice: decimal(self.answer.sum_cents, 2),
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
/// [`WeirError::Usage`] for a budget or slot count the runtime refuses, or an input that
/// is not a weir TPC-H directory; [`WeirError::Data`] for a truncated or corrupt one;
/// [`WeirError::File`] for files that cannot be read or written; [`WeirError::Kernel`]
/// for spill failures.
pub fn run_w3(job: &W3Job) -> Result<W3Report> {
    let config = job_config(job.memory_bytes, job.threads, job.spill_dir.as_deref())?;
    // Last of the checks: the output is touched only once every argument passed.
    let output = create_output(job.output.as_deref(), &job.input)?;
    let started = Instant::now();
    let flow = Dataflow::new();
    let orders = orders::scan(&flow, &job.input, |order| Ok(Some(order.o_orderkey())))
        .key_by(|orderkey| *orderkey);
    let lines = lineitem::scan(&flow, &job.input, |line| {
        Ok(Some((line.l_orderkey(), line.l_extendedprice())))
    })
    .key_by(|(orderkey, _)| *orderkey);
    let fold = |answer: &mut W3Answer, price: i64| answer.add(price);
    let answers = match job.build {
        BuildSide::Orders => lines
            .broadcast_join(orders)
            .fold(
                |_| W3Answer::default(),
                move |answer, ((_, price), _)| fold(answer, price),
                |answer| answer,
            )
            .collect(),
        BuildSide::Lineitem => orders
            .broadcast_join(lines)
            .fold(
                |_| W3Answer::default(),
                move |answer, (_, (_, price))| fold(answer, price),
                |answer| answer,
            )
            .collect(),
    };
    let run = execute(&flow, &config)?;
    let answer = answers
        .take()
        .iter()
        .fold(W3Answer::default(), W3Answer::merged);
    if let Some(output) = &output {
        let mut file = output.try_clone()?;
        file.write_all(format!("{W3_CSV_HEADER}\n{}\n", answer.csv_row()).as_bytes())
            .map_err(|e| WeirError::file("write", output.temp_path(), e))?;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_bytes = weir_kernel::sys::resident_memory().map_or(0, |rss| rss.peak_bytes);
    let verify_started = Instant::now();
    let manager = MemoryManager::with_budget(usize::try_from(config.memory).unwrap_or(usize::MAX))?;
    let (agrees_with_second_scan, problems) = validate(job, answer, &manager.owner("w3/validate"))?;
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
        rows_read: run.rows,
        spilled_bytes: run.report.spilled_bytes,
        records_exchanged: run.report.records_exchanged,
        valid: problems.is_empty(),
        agrees_with_second_scan,
        problems,
    })
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
