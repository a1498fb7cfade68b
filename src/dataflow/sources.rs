//! Sources: each task reads its share of the input and pushes it into its chain.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use super::{Data, Driver, Open, Push, TaskContext};
use crate::error::{Result, WeirError};

/// Records between two looks at the job's cancel flag.
const CANCEL_CHECK_RECORDS: u64 = 4096;

/// A source's work: push the task's records into its chain.
type RunSource<T> = Box<dyn FnOnce(&mut TaskContext, &mut dyn Push<T>) -> Result<()> + Send>;

/// A driver from a closure run once with the task's context and its chain.
struct FnDriver<T> {
    run: Option<RunSource<T>>,
    down: Box<dyn Push<T>>,
}

impl<T: Data> Driver for FnDriver<T> {
    fn run(&mut self, ctx: &mut TaskContext) -> Result<()> {
        let run = self.run.take().expect("a source runs once");
        run(ctx, &mut *self.down)?;
        self.down.finish()
    }
}

pub(crate) fn driver<T: Data>(
    down: Box<dyn Push<T>>,
    run: impl FnOnce(&mut TaskContext, &mut dyn Push<T>) -> Result<()> + Send + 'static,
) -> Box<dyn Driver> {
    Box::new(FnDriver {
        run: Some(Box::new(run)),
        down,
    })
}

pub(crate) fn generate<T: Data>(
    count: u64,
    f: impl Fn(u64) -> T + Send + Sync + 'static,
) -> Open<T> {
    let f: Arc<dyn Fn(u64) -> T + Send + Sync> = Arc::new(f);
    super::replay::replayable(move |ctx| {
        Ok(super::replay::Generate {
            f: Arc::clone(&f),
            next: ctx.task() as u64,
            step: ctx.parallelism() as u64,
            count,
        })
    })
}

pub(crate) fn push_fn<T: Data>(
    run: impl Fn(&TaskContext, &mut dyn Push<T>) -> Result<()> + Send + Sync + 'static,
) -> Open<T> {
    let run = Arc::new(run);
    Arc::new(move |_, down| {
        let run = Arc::clone(&run);
        Ok(driver(down, move |ctx, down| run(ctx, down)))
    })
}

/// The byte range task `task` of `tasks` reads of a file of `bytes` bytes.
fn byte_share(bytes: u64, task: u64, tasks: u64) -> (u64, u64) {
    let at = |t: u64| (u128::from(bytes) * u128::from(t) / u128::from(tasks)) as u64;
    (at(task), at(task + 1))
}

pub(crate) fn text_lines(path: PathBuf) -> Open<String> {
    let path = Arc::new(path);
    Arc::new(move |_, down| {
        let path = Arc::clone(&path);
        Ok(driver(down, move |ctx, down| {
            let (task, tasks) = (ctx.task() as u64, ctx.parallelism() as u64);
            let read_error = |e| WeirError::file("read input", &*path, e);
            let file = std::fs::File::open(&*path)
                .map_err(|e| WeirError::file("open input", &*path, e))?;
            let bytes = file.metadata().map_err(read_error)?.len();
            // The task's lines are those that start in its byte range: it skips the line
            // its range starts inside of (the task before reads it to its end) and reads
            // on past its range's end to the end of the last line starting in it.
            let (start, end) = byte_share(bytes, task, tasks);
            let mut reader = BufReader::new(file);
            let mut at = start;
            if start > 0 {
                reader
                    .seek(SeekFrom::Start(start - 1))
                    .map_err(read_error)?;
                let mut skipped = Vec::new();
                at = start - 1 + reader.read_until(b'\n', &mut skipped).map_err(read_error)? as u64;
            }
            let mut line = String::new();
            let mut count = 0u64;
            while at < end {
                line.clear();
                let read = reader.read_line(&mut line).map_err(read_error)?;
                if read == 0 {
                    break;
                }
                at += read as u64;
                down.push(line.trim_end_matches(['\n', '\r']).to_string())?;
                count += 1;
                if count.is_multiple_of(CANCEL_CHECK_RECORDS) {
                    ctx.check_cancelled()?;
                    ctx.inject_barriers(down)?;
                    if down.is_done() {
                        break;
                    }
                }
            }
            Ok(())
        }))
    })
}

pub(crate) fn fixed_width(path: PathBuf, width: usize) -> Open<Vec<u8>> {
    let path = Arc::new(path);
    Arc::new(move |_, down| {
        let path = Arc::clone(&path);
        Ok(driver(down, move |ctx, down| {
            if width == 0 {
                return Err(WeirError::Usage {
                    message: "fixed-width records of 0 bytes".into(),
                });
            }
            let (task, tasks) = (ctx.task() as u64, ctx.parallelism() as u64);
            let file = std::fs::File::open(&*path)
                .map_err(|e| WeirError::file("open input", &*path, e))?;
            let bytes = file
                .metadata()
                .map_err(|e| WeirError::file("read input", &*path, e))?
                .len();
            let width_u64 = width as u64;
            if bytes % width_u64 != 0 {
                return Err(WeirError::Usage {
                    message: format!(
                        "{}: {bytes} bytes is not a whole number of {width}-byte records",
                        path.display()
                    ),
                });
            }
            let records = bytes / width_u64;
            let (first, end) = (records * task / tasks, records * (task + 1) / tasks);
            let mut reader = BufReader::new(file);
            reader
                .seek(SeekFrom::Start(first * width_u64))
                .map_err(|e| WeirError::file("read input", &*path, e))?;
            for index in first..end {
                let mut record = vec![0; width];
                reader
                    .read_exact(&mut record)
                    .map_err(|e| WeirError::file("read input", &*path, e))?;
                down.push(record)?;
                if index.is_multiple_of(CANCEL_CHECK_RECORDS) {
                    ctx.check_cancelled()?;
                    ctx.inject_barriers(down)?;
                    if down.is_done() {
                        break;
                    }
                }
            }
            Ok(())
        }))
    })
}

pub(crate) fn from_fn<T: Data, I>(
    open: impl Fn(&TaskContext) -> Result<I> + Send + Sync + 'static,
) -> Open<T>
where
    I: Iterator<Item = Result<T>> + Send + 'static,
{
    let open = Arc::new(open);
    Arc::new(move |_, down| {
        let open = Arc::clone(&open);
        Ok(driver(down, move |ctx, down| {
            for (index, record) in open(ctx)?.enumerate() {
                down.push(record?)?;
                if (index as u64).is_multiple_of(CANCEL_CHECK_RECORDS) {
                    ctx.check_cancelled()?;
                    ctx.inject_barriers(down)?;
                    if down.is_done() {
                        break;
                    }
                }
            }
            Ok(())
        }))
    })
}
