//! Arguments that cannot work are refused before anything runs, each in one line naming
//! the flag, with exit code 2.

mod support;

use support::{Dir, assert_fails, path, weir};

#[test]
fn a_warm_up_as_long_as_the_run_is_refused() {
    let out = weir(&["bench", "barrier", "--seconds", "1", "--warmup", "10"]);
    assert_fails(&out, 2, "--warmup 10: must be shorter than --seconds 1");
}

#[test]
fn a_query_list_is_checked_against_the_budget_before_any_query_runs() {
    // Q6 fits 6 MiB, Q3 does not: the run must fail before Q6 runs or tables are made.
    let dir = Dir::new("query-budget");
    let data = dir.file("tables");
    let out = weir(&[
        "run",
        "tpch",
        "--scale",
        "0.01",
        "--query",
        "6",
        "--query",
        "3",
        "--workers",
        "1",
        "--memory",
        "6MiB",
        "--data",
        path(&data),
    ]);
    assert_fails(&out, 2, "Q3: --memory 6MiB");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "nothing ran"
    );
    assert!(!data.exists(), "no tables generated");
}
