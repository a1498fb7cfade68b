//! Progress on stderr while a long step runs (only when stderr is a terminal).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A progress bar on stderr while a job runs (only when stderr is a terminal), redrawn
/// every 200 ms until dropped: the rows read so far against `total` when known, else a
/// spinner, and the elapsed time.
#[derive(Debug)]
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing `label` with the rows counted in `rows` out of `total`.
    pub fn start(label: String, rows: Arc<AtomicU64>, total: Option<u64>) -> Progress {
        Progress::draw(label, Some(rows), total)
    }

    /// Starts drawing `label` with a spinner and the elapsed time only (for work whose
    /// progress this process cannot count, such as worker processes' exchange).
    pub fn elapsed(label: String) -> Progress {
        Progress::draw(label, None, None)
    }

    fn draw(label: String, rows: Option<Arc<AtomicU64>>, total: Option<u64>) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut frame = 0usize;
                let mut width = 0;
                while !done.load(Ordering::Acquire) {
                    let line = progress_line(
                        &label,
                        rows.as_ref().map(|r| r.load(Ordering::Relaxed)),
                        total,
                        frame,
                        started.elapsed(),
                    );
                    width = width.max(line.len());
                    eprint!("\r{line}");
                    frame += 1;
                    std::thread::park_timeout(Duration::from_millis(200));
                }
                eprint!("\r{}\r", " ".repeat(width));
            })
        });
        Progress { done, thread }
    }
}

/// One frame of a progress display: a bar when the total is known, else a spinner; the
/// rows when counted; the elapsed time.
fn progress_line(
    label: &str,
    rows: Option<u64>,
    total: Option<u64>,
    frame: usize,
    elapsed: Duration,
) -> String {
    let read = rows.unwrap_or(0);
    let bar = match total {
        Some(total) if total > 0 => {
            let filled = (read.min(total) * 30 / total) as usize;
            format!(
                "[{}{}] {:3}%",
                "#".repeat(filled),
                "-".repeat(30 - filled),
                read.min(total) * 100 / total
            )
        }
        _ => ["|", "/", "-", "\\"][frame % 4].to_string(),
    };
    let rows = rows.map_or(String::new(), |r| format!(" {:.1} M rows", r as f64 / 1e6));
    format!("{label} {bar}{rows} {:5.1} s", elapsed.as_secs_f64())
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shows_rows_only_when_counted() {
        let line = progress_line("gen", Some(500_000), Some(1_000_000), 0, Duration::ZERO);
        assert!(
            line.contains(" 50%") && line.contains("0.5 M rows"),
            "{line}"
        );
        let line = progress_line("shuffle", None, None, 1, Duration::from_secs(2));
        assert!(!line.contains("rows") && line.contains("2.0 s"), "{line}");
    }
}
