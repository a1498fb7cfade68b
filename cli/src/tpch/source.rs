//! A table file as a dataflow source, through the library's push-source API: each task
//! scans its share of the file's chunks through its own I/O buffers (set aside in the
//! worker's budget), so P tasks read the file once between them.

use std::path::PathBuf;
use std::sync::Arc;

use weir::dataflow::{Data, Dataflow, Push, Stream, TaskContext};
use weir::error::Result;

use super::{Table, TableScan, chunk_share};

/// Rows between two looks at the job's cancel flag (and two progress updates).
const CANCEL_CHECK_ROWS: u64 = 1 << 16;

/// The rows of a table file written by `weir gen tpch`, each passed as its encoded bytes
/// to `project` (read the needed fields at their fixed offsets, or decode the row with
/// serde-fmt), which returns the record or `None` to drop the row. Task `t` of P reads the
/// `t`-th of P contiguous ranges of the file's chunks ([`chunk_share`]) sequentially
/// through its own I/O buffers, which count in the worker's budget, checking every
/// block's checksum and each chunk's totals against the manifest.
pub fn table<T: Data>(
    flow: &Dataflow,
    dir: impl Into<PathBuf>,
    table: Table,
    project: impl Fn(&[u8]) -> Result<Option<T>> + Send + Sync + 'static,
) -> Stream<T> {
    let dir = Arc::new(dir.into());
    flow.source_push(
        table.name(),
        TableScan::segments() + 1,
        move |ctx: &TaskContext, down: &mut dyn Push<T>| {
            let (task, tasks) = (ctx.task() as u64, ctx.parallelism() as u64);
            let mut scan = TableScan::open(&dir, table, &ctx.io_owner())?;
            let share = chunk_share(scan.chunks(), task, tasks);
            let mut index = 0u64;
            scan.for_each_row_in(share, |_, row| {
                index += 1;
                if index.is_multiple_of(CANCEL_CHECK_ROWS) {
                    ctx.check_cancelled()?;
                    ctx.inject_barriers(down)?;
                    ctx.count_rows_read(CANCEL_CHECK_ROWS);
                }
                if let Some(record) = project(row)? {
                    down.push(record)?;
                }
                Ok(())
            })?;
            ctx.count_rows_read(index % CANCEL_CHECK_ROWS);
            Ok(())
        },
    )
}
