//! Issue 15, "never lose a user's data", for the TPC-H tables, end to end with the `weir`
//! binary at SF 0.01: a directory weir did not write is never deleted or written into;
//! `gen tpch` then `run tpch` reuses the tables; damage to any table (flipped bytes, a
//! changed value, rows duplicated by someone who also fixes the header and the
//! checksums) is an error naming the file, never a valid answer; version 1 files are
//! refused with the hint to regenerate; a scale that cannot fit is refused up front.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use weir::kernel::memory::MemoryManager;
use weir_cli::tpch::block::TableWriter;
use weir_cli::tpch::{Customer, Lineitem, Order, Table, TableScan, chunk_share, table_rows};

mod support;

use support::{Dir, path, stderr, weir};

const SCALE: &str = "0.01";
const MANIFEST: &str = "weir-tables.manifest";

/// Tables generated once per run of this file's tests, into cargo's directory for test
/// files (replaced by the next run: `gen tpch --out` replaces weir's own tables).
fn generated() -> &'static Path {
    static TABLES: OnceLock<PathBuf> = OnceLock::new();
    TABLES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weir-tables-sf0.01");
        let result = weir(&["gen", "tpch", "--scale", SCALE, "--out", path(&dir)]);
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        dir
    })
}

/// A copy of the generated tables in `dir`.
fn copy_tables(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for name in Table::ALL.map(Table::name).into_iter().chain([MANIFEST]) {
        std::fs::copy(generated().join(name), dir.join(name)).unwrap();
    }
}

/// The names and contents of a directory's entries, sorted.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    entries.sort();
    entries
}

fn run_tpch(data: &Path, query: &str) -> Output {
    weir(&[
        "run",
        "tpch",
        "--data",
        path(data),
        "--scale",
        SCALE,
        "--query",
        query,
        "--workers",
        "1",
    ])
}

#[test]
fn run_refuses_a_directory_weir_did_not_write_and_touches_nothing() {
    let dir = Dir::new("precious");
    let data = dir.file("d");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("precious.txt"), b"x\n").unwrap();
    let before = contents(&dir.0);
    let result = run_tpch(&data, "6");
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("precious.txt"), "{message}");
    assert!(message.contains("nothing was touched"), "{message}");
    assert!(message.contains("another --data"), "{message}");
    assert_eq!(
        contents(&data),
        vec![("precious.txt".to_owned(), b"x\n".to_vec())]
    );
    assert_eq!(
        contents(&dir.0).len(),
        before.len(),
        "nothing created beside it"
    );
    // gen tpch --out the same directory: refused alike.
    let result = weir(&["gen", "tpch", "--scale", SCALE, "--out", path(&data)]);
    assert_eq!(result.status.code(), Some(2), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("precious.txt"),
        "{}",
        stderr(&result)
    );
    assert_eq!(
        contents(&data),
        vec![("precious.txt".to_owned(), b"x\n".to_vec())]
    );
    assert_eq!(
        contents(&dir.0).len(),
        before.len(),
        "nothing created beside it"
    );
}

#[test]
fn gen_then_run_reuses_and_other_scales_are_refused() {
    let dir = Dir::new("reuse");
    let data = dir.file("x");
    copy_tables(&data);
    let before = contents(&data);
    let result = run_tpch(&data, "6");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}{}", stderr(&result));
    assert!(stdout.contains("(reused)"), "{stdout}");
    assert!(contents(&data) == before, "the tables were rewritten");
    // Another scale: refused, naming the scale found and what to do.
    let result = weir(&[
        "run",
        "tpch",
        "--data",
        path(&data),
        "--scale",
        "0.02",
        "--query",
        "6",
        "--workers",
        "1",
    ]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("SF 0.01"), "{message}");
    assert!(message.contains("--scale 0.01"), "{message}");
    assert!(contents(&data) == before, "touched");
    // gen tpch --out over weir's tables replaces only the files its manifest lists.
    std::fs::write(data.join("notes.txt"), b"mine").unwrap();
    let result = weir(&["gen", "tpch", "--scale", SCALE, "--out", path(&data)]);
    assert!(result.status.success(), "{}", stderr(&result));
    let after = contents(&data);
    assert!(after.contains(&("notes.txt".to_owned(), b"mine".to_vec())));
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(contents(&dir.0).len(), 1, "no staging directory left");
}

/// Rewrites `table` in `dir` through `change` of its decoded rows, as someone who also
/// fixes the header's counts and every checksum would: a self-consistent file.
fn rewrite(dir: &Path, table: Table, change: impl FnOnce(Vec<Vec<u8>>) -> Vec<Vec<u8>>) {
    let bytes = std::fs::read(dir.join(table.name())).unwrap();
    let rows: Vec<Vec<u8>> = table_rows(&bytes, table)
        .unwrap()
        .1
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let mut writer = TableWriter::new(Cursor::new(Vec::new()), table, 0.01).unwrap();
    for row in change(rows) {
        writer.row(&row).unwrap();
    }
    std::fs::write(
        dir.join(table.name()),
        writer.finish().unwrap().0.into_inner(),
    )
    .unwrap();
}

/// Row 100 with its last summed column (a money column where the table has one) one
/// more, through the table's row type.
fn one_cent_more(table: Table, mut rows: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let row = &rows[100];
    let bumped = match table {
        Table::Lineitem => {
            let mut r: Lineitem<'_> = weir::serde_fmt::from_slice(row).unwrap();
            r.l_extendedprice += 1;
            weir::serde_fmt::to_vec(&r)
        }
        Table::Orders => {
            let mut r: Order<'_> = weir::serde_fmt::from_slice(row).unwrap();
            r.o_totalprice += 1;
            weir::serde_fmt::to_vec(&r)
        }
        Table::Customer => {
            let mut r: Customer<'_> = weir::serde_fmt::from_slice(row).unwrap();
            r.c_acctbal += 1;
            weir::serde_fmt::to_vec(&r)
        }
        other => panic!("no damage case for {other:?}"),
    };
    rows[100] = bumped.unwrap();
    rows
}

/// The commands that read `table`; each must fail with `needles` in its message.
fn every_reader_fails(data: &Path, table: Table, needles: &[&str], case: &str) {
    let query = if table == Table::Lineitem { "1" } else { "3" };
    let mut runs = vec![("run tpch", run_tpch(data, query))];
    let bench = |workload: &str| {
        weir(&[
            "bench",
            workload,
            "--input",
            path(data),
            "--memory",
            "64MiB",
        ])
    };
    if table == Table::Lineitem {
        runs.push(("bench w2a", bench("w2a")));
        runs.push(("bench w2b", bench("w2b")));
    }
    if table != Table::Customer {
        runs.push(("bench w3", bench("w3")));
    }
    for (what, result) in runs {
        let (out, err) = (String::from_utf8_lossy(&result.stdout), stderr(&result));
        // Damage found while reading is a failure while running (exit 1), not a usage
        // error (exit 2).
        assert_eq!(
            result.status.code(),
            Some(1),
            "{case}, {what}: exit code\n{out}{err}"
        );
        assert!(!out.contains("\"valid\":true"), "{case}, {what}: {out}");
        assert!(
            err.contains(&path(&data.join(table.name())).to_owned()),
            "{case}, {what}: {err}"
        );
        for needle in needles {
            assert!(
                err.contains(needle),
                "{case}, {what}: no {needle:?} in {err}"
            );
        }
        assert!(!err.contains("panicked"), "{case}, {what}: {err}");
    }
}

#[test]
fn damaged_tables_are_errors_naming_the_file_and_offset_never_answers() {
    let dir = Dir::new("damage");
    // The tables the damage cases know a reader of (Q1, Q3, W2 and W3); the others share
    // the block and manifest code these exercise.
    for table in [Table::Lineitem, Table::Orders, Table::Customer] {
        let data = dir.file(table.name());
        // Five flipped bytes in the middle of the file: its block's checksum.
        copy_tables(&data);
        let file = data.join(table.name());
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2 / 4096 * 4096 + 1000;
        for byte in &mut bytes[middle..middle + 5] {
            *byte ^= 0x5a;
        }
        std::fs::write(&file, &bytes).unwrap();
        let block_at = format!("is corrupt at byte {}: block", middle / 4096 * 4096);
        every_reader_fails(&data, table, &[&block_at, "checksum"], "flipped bytes");
        // One cent more, in place: the same.
        copy_tables(&data);
        let original = std::fs::read(&file).unwrap();
        let (_, rows) = table_rows(&original, table).unwrap();
        let changed_row =
            one_cent_more(table, rows.iter().map(|r| r.to_vec()).collect())[100].clone();
        let at = rows[100].as_ptr() as usize - original.as_ptr() as usize;
        let mut bytes = original.clone();
        bytes[at..at + changed_row.len()].copy_from_slice(&changed_row);
        std::fs::write(&file, &bytes).unwrap();
        let block_at = format!("is corrupt at byte {}: block", at / 4096 * 4096);
        every_reader_fails(&data, table, &[&block_at, "checksum"], "one cent, in place");
        // One cent more, every checksum fixed: the manifest's totals.
        copy_tables(&data);
        rewrite(&data, table, |rows| one_cent_more(table, rows));
        every_reader_fails(&data, table, &["the manifest says"], "one cent, re-sealed");
        // Rows duplicated, the header's row count and every checksum fixed to match.
        copy_tables(&data);
        rewrite(&data, table, |mut rows| {
            let copies: Vec<Vec<u8>> = rows[..200].to_vec();
            rows.extend(copies);
            rows
        });
        every_reader_fails(
            &data,
            table,
            &["differs from its manifest at byte 0"],
            "duplicated rows",
        );
    }
}

/// The rows of `table` in `dir` that P tasks read, each its [`chunk_share`], in task order.
fn split_scan(dir: &Path, table: Table, tasks: u64) -> weir::error::Result<Vec<Vec<u8>>> {
    let manager = MemoryManager::with_budget(8 << 20).unwrap();
    let mut rows = Vec::new();
    for task in 0..tasks {
        let owner = manager.owner(format!("scan[{task}]"));
        let mut scan = TableScan::open(dir, table, &owner)?;
        let share = chunk_share(scan.chunks(), task, tasks);
        let count = scan.for_each_row_in(share, |_, row| {
            rows.push(row.to_vec());
            Ok(())
        })?;
        assert!(count <= rows.len() as u64);
    }
    manager.leak_check().unwrap();
    Ok(rows)
}

#[test]
fn tasks_splitting_a_table_by_chunks_read_every_row_once_and_check_their_chunks() {
    for table in Table::ALL {
        let bytes = std::fs::read(generated().join(table.name())).unwrap();
        let (_, all) = table_rows(&bytes, table).unwrap();
        // One task, a few, and more tasks than the table has chunks.
        for tasks in [1, 2, 3, 5, 64] {
            let rows = split_scan(generated(), table, tasks).unwrap();
            assert!(
                rows.iter().map(Vec::as_slice).eq(all.iter().copied()),
                "{tasks} tasks"
            );
        }
    }
    // The first and last rows of lineitem swapped, checksums and header re-sealed: the
    // table's totals still hold, the first and last chunks' do not, and the task that
    // reads either fails naming the chunk.
    let dir = Dir::new("chunks");
    let data = dir.file("tables");
    copy_tables(&data);
    rewrite(&data, Table::Lineitem, |mut rows| {
        let last = rows.len() - 1;
        rows.swap(0, last);
        rows
    });
    let error = split_scan(&data, Table::Lineitem, 1)
        .unwrap_err()
        .to_string();
    assert!(error.contains("(chunk 0, bytes 4096 to"), "{error}");
    assert!(error.contains("the manifest says"), "{error}");
    let error = split_scan(&data, Table::Lineitem, 3)
        .unwrap_err()
        .to_string();
    assert!(error.contains("chunk 0"), "{error}");
}

#[test]
fn version_1_tables_are_refused_with_the_hint_to_regenerate() {
    let dir = Dir::new("v1");
    let data = dir.file("tables");
    copy_tables(&data);
    // A version 1 file: the old header, then rows back to back.
    let v1 = weir::serde_fmt::to_vec(&(*b"WEIRTPCH", 1u32, "lineitem", 0.01f64, 0u64)).unwrap();
    std::fs::write(data.join("lineitem"), &v1).unwrap();
    let result = weir(&["bench", "w2b", "--input", path(&data), "--memory", "64MiB"]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("version 1"), "{message}");
    assert!(
        message.contains("regenerate the tables with weir gen tpch"),
        "{message}"
    );
    // A directory as weir before manifests left it: refused by run, untouched.
    let old = dir.file("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("lineitem"), &v1).unwrap();
    std::fs::write(old.join("complete"), b"0.01\n").unwrap();
    let before = contents(&old);
    let result = run_tpch(&old, "1");
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(message.contains("table format version 1"), "{message}");
    assert!(
        message.contains("weir gen tpch --scale 0.01 --out"),
        "{message}"
    );
    assert!(contents(&old) == before);
    // ... and replaced by gen tpch, as weir's own files.
    let result = weir(&["gen", "tpch", "--scale", SCALE, "--out", path(&old)]);
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(!old.join("complete").exists());
    assert!(run_tpch(&old, "6").status.success());
}

#[test]
fn a_scale_that_cannot_fit_is_refused_before_anything_is_written() {
    let dir = Dir::new("space");
    let out = dir.file("huge");
    let result = weir(&["gen", "tpch", "--scale", "1000", "--out", path(&out)]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(
        message.contains("need about 1100001048576 bytes"),
        "{message}"
    );
    assert!(message.contains("free"), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert!(contents(&dir.0).is_empty(), "{:?}", contents(&dir.0).len());
    // run tpch checks the scale before starting a generator, and says why.
    let result = weir(&[
        "run",
        "tpch",
        "--data",
        path(&out),
        "--scale",
        "0",
        "--workers",
        "1",
    ]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(2), "{message}");
    assert!(
        message.contains("--scale 0: expected a number above 0"),
        "{message}"
    );
    assert!(contents(&dir.0).is_empty());
}
