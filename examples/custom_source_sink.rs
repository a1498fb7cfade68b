//! A custom source and a custom sink: each task of the source emits its share of a
//! sequence of sensor readings, the readings are averaged per sensor, and a sink of our
//! own writes each task's results to a file and counts them.
//!
//! ```sh
//! cargo run --release --example custom_source_sink
//! ```

use std::error::Error;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weir::config::Config;
use weir::dataflow::{Dataflow, Push, runtime};
use weir::error::{Result, WeirError};

/// A sink that writes `sensor mean` lines to one file per task.
struct MeanFile {
    out: std::io::BufWriter<std::fs::File>,
    written: Arc<AtomicU64>,
}

impl Push<(u32, (i64, u64))> for MeanFile {
    fn push(&mut self, (sensor, (sum, count)): (u32, (i64, u64))) -> Result<()> {
        self.written.fetch_add(1, Ordering::Relaxed);
        writeln!(self.out, "{sensor} {:.2}", sum as f64 / count as f64)
            .map_err(|e| WeirError::file("write", "means", e))
    }

    fn finish(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| WeirError::file("write", "means", e))
    }
}

fn main() -> std::result::Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("weir-means.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let written = Arc::new(AtomicU64::new(0));

    let flow = Dataflow::new();
    // The source: task t of P reads readings t, t + P, t + 2P, … (here: computes them).
    let readings = flow.source_fn("sensors", |ctx| {
        let (task, tasks) = (ctx.task() as u64, ctx.parallelism() as u64);
        Ok((task..100_000).step_by(tasks as usize).map(|i| {
            let sensor = (i % 64) as u32;
            let value = (i * 37 % 1000) as i64 - 500;
            Ok((sensor, value))
        }))
    });
    let sink_dir = dir.clone();
    let sink_count = Arc::clone(&written);
    readings
        .key_by(|(sensor, _)| *sensor)
        .aggregate(
            |(_, value)| (*value, 1u64),
            |a, b| {
                a.0 += b.0;
                a.1 += b.1;
            },
        )
        .sink(move |ctx| {
            let path = sink_dir.join(format!("means-{}", ctx.task()));
            let file =
                std::fs::File::create(&path).map_err(|e| WeirError::file("create", &path, e))?;
            Ok(Box::new(MeanFile {
                out: std::io::BufWriter::new(file),
                written: Arc::clone(&sink_count),
            }))
        });

    let config = Config {
        slots: 2,
        ..Config::default()
    };
    runtime::execute(&flow, &config, None)?;
    println!(
        "{} sensor means written to {}",
        written.load(Ordering::Relaxed),
        dir.display()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
