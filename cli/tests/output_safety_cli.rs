//! Outputs never destroy what they replace (issue: "never lose a user's data"): an output
//! that is the input — by path, symlink or hard link — is refused before anything is
//! opened for writing; a run refused for any other argument leaves an existing output as
//! it was; an interrupted run leaves the previous output and no temporary file.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{Dir, assert_fails, eventually, path, signal, weir, weir_command};

fn generate(dir: &Dir, name: &str, count: u32) -> std::path::PathBuf {
    let file = dir.file(name);
    let out = weir(&[
        "gen",
        "sort-records",
        "--count",
        &count.to_string(),
        "--out",
        path(&file),
    ]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    file
}

#[test]
fn an_output_that_is_the_input_is_refused_and_the_input_kept() {
    let dir = Dir::new("same-file");
    let input = generate(&dir, "in.w1", 2000);
    let before = std::fs::read(&input).unwrap();
    std::os::unix::fs::symlink(&input, dir.file("link.w1")).unwrap();
    std::fs::hard_link(&input, dir.file("hard.w1")).unwrap();
    for output in ["in.w1", "link.w1", "hard.w1"] {
        let out = weir(&[
            "sort",
            "--input",
            path(&input),
            "--output",
            path(&dir.file(output)),
            "--memory",
            "1MiB",
            "--verify",
        ]);
        assert_fails(&out, 2, "is the input");
        assert_eq!(std::fs::read(&input).unwrap(), before, "output {output}");
    }
    assert_eq!(dir.names(), ["hard.w1", "in.w1", "link.w1"]);
}

#[test]
fn a_refused_run_leaves_the_previous_output_as_it_was() {
    let dir = Dir::new("refused");
    let input = generate(&dir, "in.w1", 2000);
    let output = dir.file("out.w1");
    std::fs::write(&output, b"previous output").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--memory", "64KiB"], "below the minimum"),
        (&["--memory", "0"], "--memory 0 bytes is below the minimum"),
        (&["--memory", "491519"], "--memory 491519 bytes"),
        (
            &["--memory", "1MiB", "--spill-dir", "/nonexistent/spill"],
            "spill dir",
        ),
        (&["--memory", "1MiB", "--threads", "0"], "--threads 0"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["sort", "--input", path(&input), "--output", path(&output)];
        args.extend_from_slice(extra);
        assert_fails(&weir(&args), 2, needle);
        assert_eq!(
            std::fs::read(&output).unwrap(),
            b"previous output",
            "{extra:?}"
        );
    }
    if std::path::Path::new("/dev/shm").is_dir() {
        let out = weir(&[
            "sort",
            "--input",
            path(&input),
            "--output",
            path(&output),
            "--memory",
            "1MiB",
            "--spill-dir",
            "/dev/shm",
        ]);
        assert_fails(&out, 2, "a filesystem in memory");
    }
    assert_eq!(dir.names(), ["in.w1", "out.w1"], "no temporary file left");
}

#[test]
fn inputs_that_are_not_record_files_are_refused_at_once() {
    let dir = Dir::new("not-records");
    let output = dir.file("out.w1");
    // /dev/zero never ends: it must be refused, not read forever.
    for (input, needle) in [
        ("/dev/zero", "not a regular file"),
        (path(&dir.0), "is a directory"),
    ] {
        let out = weir(&[
            "sort",
            "--input",
            input,
            "--output",
            path(&output),
            "--memory",
            "1MiB",
            "--verify",
        ]);
        assert_fails(&out, 2, needle);
    }
    assert!(dir.names().is_empty());
}

#[test]
fn a_successful_sort_replaces_the_output_and_leaves_no_temporary_file() {
    let dir = Dir::new("replace");
    let input = generate(&dir, "in.w1", 3000);
    let output = dir.file("out.w1");
    std::fs::write(&output, b"previous output").unwrap();
    let out = weir(&[
        "sort",
        "--input",
        path(&input),
        "--output",
        path(&output),
        "--memory",
        "1MiB",
        "--verify",
    ]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert_eq!(std::fs::metadata(&output).unwrap().len(), 3000 * 100);
    assert_eq!(dir.names(), ["in.w1", "out.w1"]);
}

#[test]
fn an_interrupted_run_exits_130_keeps_the_previous_output_and_removes_its_temporary_file() {
    let dir = Dir::new("interrupted");
    let output = dir.file("big.w1");
    std::fs::write(&output, b"previous output").unwrap();
    // Far more records than can be written before the signal comes (100 GB).
    let child = weir_command()
        .args([
            "gen",
            "sort-records",
            "--count",
            "1000000000",
            "--out",
            path(&output),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = eventually(Duration::from_secs(20), || dir.names().len() == 2);
    signal(child.id(), "INT");
    let result = child.wait_with_output().unwrap();
    assert!(started, "the temporary output never appeared");
    assert_fails(&result, 130, "interrupted by SIGINT");
    assert_eq!(std::fs::read(&output).unwrap(), b"previous output");
    assert_eq!(dir.names(), ["big.w1"], "the temporary file is removed");
}

#[test]
fn a_benchmark_output_that_is_one_of_its_tables_is_refused() {
    let dir = Dir::new("table-output");
    let tables = dir.file("tables");
    let out = weir(&["gen", "tpch", "--scale", "0.01", "--out", path(&tables)]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let lineitem = std::fs::read(tables.join("lineitem")).unwrap();
    std::os::unix::fs::symlink(tables.join("orders"), dir.file("orders-link")).unwrap();
    for (workload, output) in [
        ("w2a", tables.join("lineitem")),
        ("w2b", tables.join("lineitem")),
        ("w3", dir.file("orders-link")),
    ] {
        let out = weir(&[
            "bench",
            workload,
            "--input",
            path(&tables),
            "--memory",
            "16MiB",
            "--output",
            path(&output),
        ]);
        assert_fails(&out, 2, "is the input");
    }
    assert_eq!(std::fs::read(tables.join("lineitem")).unwrap(), lineitem);
}
