//! TPC-H Q1, Q3, Q6 and Q10 as dataflow jobs at SF 0.01, in one process (several slots)
//! and across two worker processes (`weir run tpch`),
//! each checked against a straightforward computation over the same rows decoded in full.
//! A job whose source fails mid-way fails cleanly on every worker, and bad configuration
//! is a one-line error naming the flag.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use weir::config::Config;
use weir::error::WeirError;
use weir_cli::run_tpch::{Generator, ensure_tables, run_query};
use weir_cli::tpch::q1::{Q1_SHIPDATE_MAX, Q1Sums};
use weir_cli::tpch::queries::{
    Answer, NATIONS, Q3_DATE, Q3_SEGMENT, Q10_DATES, Q10Row, Query, q1_answer, q3_answer,
    q6_answer, q6_selects, q10_answer,
};
use weir_cli::tpch::{Customer, Lineitem, Order};

mod support;

use support::{Dir, weir};

const SCALE: f64 = 0.01;

/// The queries this file computes the plain way as well.
const PLAIN: [Query; 4] = [Query::Q1, Query::Q3, Query::Q6, Query::Q10];

fn rows<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Vec<T> {
    let header = weir_cli::tpch::block::read_header(&bytes[..4096]).unwrap();
    let table = weir_cli::tpch::Table::from_name(header.table).unwrap();
    let (_, rows) = weir_cli::tpch::table_rows(bytes, table).unwrap();
    rows.into_iter()
        .map(|row| weir::serde_fmt::from_slice(row).unwrap())
        .collect()
}

/// The four answers computed the plain way: every row decoded, hash maps, sorts.
fn expected(dir: &Path) -> HashMap<u32, Answer> {
    let (l, o, c) = (
        std::fs::read(dir.join("lineitem")).unwrap(),
        std::fs::read(dir.join("orders")).unwrap(),
        std::fs::read(dir.join("customer")).unwrap(),
    );
    let lineitems: Vec<Lineitem<'_>> = rows(&l);
    let orders: Vec<Order<'_>> = rows(&o);
    let customers: Vec<Customer<'_>> = rows(&c);
    let revenue = |l: &Lineitem<'_>| l.l_extendedprice * (100 - l.l_discount);
    let mut answers = HashMap::new();

    let mut q1: BTreeMap<(u8, u8), Q1Sums> = BTreeMap::new();
    for l in lineitems.iter().filter(|l| l.l_shipdate <= Q1_SHIPDATE_MAX) {
        let sums = Q1Sums::of_row(l.l_quantity, l.l_extendedprice, l.l_discount, l.l_tax);
        q1.entry((l.l_returnflag, l.l_linestatus))
            .or_default()
            .add(&sums);
    }
    answers.insert(1, q1_answer(&q1.into_iter().collect::<Vec<_>>()));

    let building: HashSet<i64> = customers
        .iter()
        .filter(|c| c.c_mktsegment == Q3_SEGMENT)
        .map(|c| c.c_custkey)
        .collect();
    let q3_orders: HashMap<i64, (i32, i32)> = orders
        .iter()
        .filter(|o| o.o_orderdate < Q3_DATE && building.contains(&o.o_custkey))
        .map(|o| (o.o_orderkey, (o.o_orderdate, o.o_shippriority)))
        .collect();
    let mut q3: HashMap<(i64, i32, i32), i64> = HashMap::new();
    for l in lineitems.iter().filter(|l| l.l_shipdate > Q3_DATE) {
        if let Some((date, priority)) = q3_orders.get(&l.l_orderkey) {
            *q3.entry((l.l_orderkey, *date, *priority)).or_default() += revenue(l);
        }
    }
    let mut q3: Vec<_> = q3.into_iter().collect();
    q3.sort_by_key(|((_, date, _), revenue)| (-revenue, *date));
    q3.truncate(10);
    answers.insert(3, q3_answer(&q3));

    let q6: i64 = lineitems
        .iter()
        .filter(|l| q6_selects(l.l_shipdate, l.l_discount, l.l_quantity))
        .map(|l| l.l_extendedprice * l.l_discount)
        .sum();
    answers.insert(6, q6_answer(q6));

    let q10_orders: HashMap<i64, i64> = orders
        .iter()
        .filter(|o| (Q10_DATES.0..Q10_DATES.1).contains(&o.o_orderdate))
        .map(|o| (o.o_orderkey, o.o_custkey))
        .collect();
    let mut per_customer: HashMap<i64, i64> = HashMap::new();
    for l in lineitems.iter().filter(|l| l.l_returnflag == b'R') {
        if let Some(custkey) = q10_orders.get(&l.l_orderkey) {
            *per_customer.entry(*custkey).or_default() += revenue(l);
        }
    }
    let mut q10: Vec<Q10Row> = customers
        .iter()
        .filter_map(|c| {
            per_customer.get(&c.c_custkey).map(|revenue| Q10Row {
                c_custkey: c.c_custkey,
                c_name: c.c_name.into(),
                revenue: *revenue,
                c_acctbal: c.c_acctbal,
                n_name: NATIONS[c.c_nationkey as usize].into(),
                c_address: c.c_address.into(),
                c_phone: c.c_phone.into(),
                c_comment: c.c_comment.into(),
            })
        })
        .collect();
    q10.sort_by_key(|r| (-r.revenue, r.c_custkey));
    q10.truncate(20);
    answers.insert(10, q10_answer(&q10));
    answers
}

#[test]
fn the_nations_are_tpchgens() {
    let generated: Vec<String> = tpchgen::generators::NationGenerator::default()
        .iter()
        .map(|n| n.n_name.to_string())
        .collect();
    assert_eq!(generated, NATIONS);
}

#[test]
fn queries_in_one_process_equal_a_plain_computation() {
    let dir = Dir::new("one");
    let tables = dir.file("tables");
    assert!(ensure_tables(&tables, SCALE, Generator::InProcess).unwrap());
    assert!(
        !ensure_tables(&tables, SCALE, Generator::InProcess).unwrap(),
        "reused"
    );
    let expected = expected(&tables);
    // Two slots with ample memory; three with little (each operator near its minimum).
    for (slots, memory) in [(2, 64 << 20), (3, 48 << 20)] {
        let config = Config {
            slots,
            memory,
            spill_dir: dir.spill(),
            ..Config::default()
        };
        for query in PLAIN {
            let (report, answer) = run_query(query, &tables, &config, None).unwrap();
            assert!(report.leak_free);
            assert_eq!(
                answer,
                expected[&query.number()],
                "Q{} slots {slots}",
                query.number()
            );
            assert_eq!(
                std::fs::read_dir(dir.spill()).unwrap().count(),
                0,
                "no spill file left"
            );
        }
    }
}

#[test]
fn queries_across_two_worker_processes_equal_a_plain_computation() {
    let dir = Dir::new("two");
    let tables = dir.file("tables");
    let spill = dir.spill();
    let output = weir(&[
        "run",
        "tpch",
        "--scale",
        "0.01",
        "--data",
        tables.to_str().unwrap(),
        "--workers",
        "2",
        "--slots",
        "2",
        "--memory",
        "48MiB",
        "--spill-dir",
        spill.to_str().unwrap(),
        "--query",
        "1",
        "--query",
        "3",
        "--query",
        "6",
        "--query",
        "10",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = expected(&tables);
    for query in PLAIN {
        let table = expected[&query.number()].to_table();
        assert!(
            stdout.contains(&table),
            "Q{}: expected\n{table}\nin\n{stdout}",
            query.number()
        );
    }
    assert_eq!(stdout.matches("worker 1: ").count(), 4, "{stdout}");
    assert!(!stdout.contains("LEAKED"), "{stdout}");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "no spill file left"
    );
}

#[test]
fn a_source_failing_mid_way_fails_the_job_on_every_worker() {
    let dir = Dir::new("fail");
    let tables = dir.file("tables");
    ensure_tables(&tables, SCALE, Generator::InProcess).unwrap();
    // Cut lineitem in the middle of a row: both workers' scans fail part-way.
    let lineitem = tables.join("lineitem");
    let bytes = std::fs::read(&lineitem).unwrap();
    std::fs::write(&lineitem, &bytes[..bytes.len() / 2 + 3]).unwrap();
    let spill = dir.spill();
    let started = std::time::Instant::now();
    let output = weir(&[
        "run",
        "tpch",
        "--scale",
        "0.01",
        "--data",
        tables.to_str().unwrap(),
        "--workers",
        "2",
        "--spill-dir",
        spill.to_str().unwrap(),
        "--query",
        "3",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("lineitem"), "{stderr}");
    assert!(!stderr.contains("leak"), "{stderr}");
    assert!(started.elapsed().as_secs() < 60, "no hang");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "no spill file left"
    );
}

#[test]
fn invalid_configuration_is_one_line_naming_the_flag() {
    for (flag, value, expected) in [
        ("--memory", "1MiB", "--memory 1MiB: allowed 4MiB to 1TiB"),
        ("--workers", "0", "--workers 0: allowed 1 to 64"),
        (
            "--segment-size",
            "3000",
            "--segment-size 3000B: allowed a power of two",
        ),
        ("--query", "23", "--query 23: weir runs TPC-H queries 1, "),
        ("--query", "x", "--query x: expected a query number or all"),
    ] {
        let output = weir(&["run", "tpch", "--scale", "0.01", flag, value]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains(expected), "{flag}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

/// Budgets swept across the edge of what Q3 needs: each either runs and answers right, or
/// fails at start with a one-line error naming the flag (a job takes all its memory up
/// front: its operators' shares, its sources' buffers and its network pools; once running,
/// an operator that fills its share spills instead of allocating more).
#[test]
fn every_budget_either_answers_right_or_fails_at_start_naming_the_flag() {
    let dir = Dir::new("sweep");
    let tables = dir.file("tables");
    ensure_tables(&tables, SCALE, Generator::InProcess).unwrap();
    let expected = &expected(&tables)[&3];
    let (mut ran, mut refused) = (0, 0);
    for memory_mib in (8..=64).step_by(4) {
        for network_kib in [1024, 4096, 6144] {
            let config = Config {
                slots: 2,
                memory: memory_mib << 20,
                network_memory: network_kib << 10,
                spill_dir: dir.spill(),
                ..Config::default()
            };
            match run_query(Query::Q3, &tables, &config, None) {
                Ok((report, answer)) => {
                    assert!(report.leak_free);
                    assert_eq!(&answer, expected, "{memory_mib} MiB, {network_kib} KiB");
                    ran += 1;
                }
                Err(error) => {
                    assert!(
                        matches!(
                            error,
                            WeirError::Config {
                                field: "memory" | "network_memory",
                                ..
                            }
                        ),
                        "{memory_mib} MiB, {network_kib} KiB: {error}"
                    );
                    refused += 1;
                }
            }
            assert_eq!(
                std::fs::read_dir(dir.spill()).unwrap().count(),
                0,
                "no spill file left"
            );
        }
    }
    assert!(
        ran > 0 && refused > 0,
        "the sweep crosses the edge: {ran} ran, {refused} refused"
    );
}
