//! Word count over a text file with the dataflow API: lines are split into words, the
//! words are hash-partitioned by value and counted with the kernel's hash aggregation.
//!
//! ```sh
//! cargo run --release --example word_count -- FILE [SLOTS]
//! ```
//!
//! With no FILE it counts the words of a small generated text.

use std::error::Error;
use std::path::PathBuf;

use weir::config::Config;
use weir::dataflow::{Dataflow, runtime};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let (path, sample) = match args.next() {
        Some(path) => (PathBuf::from(path), false),
        None => (sample_text()?, true),
    };
    let slots = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);

    // The program: every task runs the same code over its share of the lines.
    let flow = Dataflow::new();
    let counts = flow
        .text_lines(&path)
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .key_by(|word: &String| word.clone())
        .aggregate(|_| 1u64, |count, more| *count += more)
        .collect();

    let config = Config {
        slots,
        ..Config::default()
    };
    let report = runtime::execute(&flow, &config, None)?;

    let mut counts = counts.take();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, count) in counts.iter().take(10) {
        println!("{count:>8}  {word}");
    }
    println!(
        "{} distinct words in {:.3} s with {slots} tasks per stage",
        counts.len(),
        report.wall_us as f64 / 1e6
    );
    if sample {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// A few thousand lines of text in the temp directory.
fn sample_text() -> std::io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("weir-words.{}.txt", std::process::id()));
    let words = [
        "the", "segment", "spills", "to", "disk", "when", "memory", "is", "full",
    ];
    let text: String = (0..5_000)
        .map(|i| {
            let line: Vec<&str> = (0..8)
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect();
            line.join(" ") + "\n"
        })
        .collect();
    std::fs::write(&path, text)?;
    Ok(path)
}
