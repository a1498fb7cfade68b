//! `weir gen tpch` and `weir bench w2a|w2b` end to end at SF 0.01: generation is
//! deterministic and decodes with the row types; the answers equal a BTreeMap over the
//! decoded rows at a generous budget and at one that forces spilling; bad arguments and
//! truncated or corrupt input are one-line errors (exit code 2 for arguments, 1 for damaged
//! data); no spill file is left.
#![allow(
    clippy::too_many_lines,
    reason = "a test is a scenario read top to bottom"
)]
use std::collections::BTreeMap;
use std::path::Path;

use weir_cli::tpch::{Customer, Lineitem, Order, days_from_civil};

mod support;

use support::{Dir, path, weir};

const SCALE: &str = "0.01";

fn generate(dir: &Path) {
    let result = weir(&["gen", "tpch", "--scale", SCALE, "--out", path(dir)]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The rows of a table file, decoded in full, every block checked.
fn rows<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], table: &str) -> Vec<T> {
    let table = weir_cli::tpch::Table::from_name(table).unwrap();
    let (header, rows) = weir_cli::tpch::table_rows(bytes, table).unwrap();
    assert_eq!(header.scale_factor, 0.01);
    assert_eq!(rows.len() as u64, header.rows);
    rows.into_iter()
        .map(|row| weir::serde_fmt::from_slice(row).unwrap())
        .collect()
}

/// The value of a numeric field of the JSON line.
fn json_number(line: &str, field: &str) -> f64 {
    let start = line.find(&format!("\"{field}\":")).unwrap() + field.len() + 3;
    let end = line[start..].find([',', '}']).unwrap() + start;
    line[start..end].parse().unwrap()
}

/// Runs a W2 benchmark that must succeed; returns its JSON line and its CSV output.
fn bench(workload: &str, input: &Path, memory: &str, spill: &Path) -> (String, String) {
    bench_threads(workload, input, memory, spill, 1)
}

/// [`bench`] with `--threads`.
fn bench_threads(
    workload: &str,
    input: &Path,
    memory: &str,
    spill: &Path,
    threads: usize,
) -> (String, String) {
    let output = spill
        .parent()
        .unwrap()
        .join(format!("{workload}-{memory}-{threads}.csv"));
    let threads = threads.to_string();
    let result = weir(&[
        "bench",
        workload,
        "--input",
        path(input),
        "--memory",
        memory,
        "--threads",
        &threads,
        "--output",
        path(&output),
        "--spill-dir",
        path(spill),
    ]);
    let stdout = String::from_utf8(result.stdout).unwrap();
    assert!(
        result.status.success(),
        "{workload} at {memory}: {stdout}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let json = stdout.lines().last().unwrap().to_owned();
    assert!(json.contains("\"valid\":true"), "{json}");
    assert!(
        json.contains(&format!("\"workload\":\"W{}\"", &workload[1..])),
        "{json}"
    );
    assert_eq!(
        std::fs::read_dir(spill).unwrap().count(),
        0,
        "spill files left behind"
    );
    (json, std::fs::read_to_string(output).unwrap())
}

fn cents(value: i128, scale: u32) -> String {
    let unit = 10i128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let (whole, fraction) = (value.abs() / unit, value.abs() % unit);
    format!("{sign}{whole}.{fraction:0width$}", width = scale as usize)
}

#[test]
fn generation_is_deterministic_and_decodes() {
    let dir = Dir::new("gen");
    let (a, b) = (dir.file("a"), dir.file("b"));
    generate(&a);
    generate(&b);
    for table in weir_cli::tpch::Table::ALL.map(weir_cli::tpch::Table::name) {
        let bytes = std::fs::read(a.join(table)).unwrap();
        assert!(
            bytes == std::fs::read(b.join(table)).unwrap(),
            "{table} differs"
        );
    }
    let bytes = std::fs::read(a.join("lineitem")).unwrap();
    let lineitem: Vec<Lineitem<'_>> = rows(&bytes, "lineitem");
    assert_eq!(lineitem.len(), 60_175);
    // The first row of TPC-H's lineitem: 1|155190|7706|1|17|21168.23|0.04|0.02|N|O|
    // 1996-03-13|1996-02-12|1996-03-22|DELIVER IN PERSON|TRUCK|egular courts above the|
    // Every row against tpchgen's own, dates through their text form.
    let generated = tpchgen::generators::LineItemGenerator::new(0.01, 1, 1);
    let mut count = 0;
    for (ours, theirs) in lineitem.iter().zip(generated.iter()) {
        count += 1;
        assert_eq!(
            (
                ours.l_orderkey,
                ours.l_partkey,
                ours.l_suppkey,
                ours.l_linenumber
            ),
            (
                theirs.l_orderkey,
                theirs.l_partkey,
                theirs.l_suppkey,
                theirs.l_linenumber
            )
        );
        assert_eq!(ours.l_quantity, theirs.l_quantity * 100);
        assert_eq!(
            [ours.l_extendedprice, ours.l_discount, ours.l_tax].map(|cents| format!(
                "{}.{:02}",
                cents / 100,
                cents % 100
            )),
            [theirs.l_extendedprice, theirs.l_discount, theirs.l_tax].map(|d| d.to_string())
        );
        assert_eq!(
            char::from(ours.l_returnflag).to_string(),
            theirs.l_returnflag
        );
        assert_eq!(
            char::from(ours.l_linestatus).to_string(),
            theirs.l_linestatus
        );
        for (days, date) in [
            (ours.l_shipdate, theirs.l_shipdate),
            (ours.l_commitdate, theirs.l_commitdate),
            (ours.l_receiptdate, theirs.l_receiptdate),
        ] {
            let text = date.to_string();
            let ymd: Vec<u32> = text.split('-').map(|p| p.parse().unwrap()).collect();
            assert_eq!(
                days,
                days_from_civil(ymd[0] as i32, ymd[1], ymd[2]),
                "{text}"
            );
        }
        assert_eq!(
            (ours.l_shipinstruct, ours.l_shipmode, ours.l_comment),
            (theirs.l_shipinstruct, theirs.l_shipmode, theirs.l_comment)
        );
    }
    assert_eq!(count, lineitem.len());
    let bytes = std::fs::read(a.join("orders")).unwrap();
    let orders: Vec<Order<'_>> = rows(&bytes, "orders");
    assert_eq!(orders.len(), 15_000);
    let first = tpchgen::generators::OrderGenerator::new(0.01, 1, 1)
        .iter()
        .next()
        .unwrap();
    let o = &orders[0];
    assert_eq!(
        format!(
            "{}|{}|{}|{}.{:02}|{}|{}|{}|",
            o.o_orderkey,
            o.o_custkey,
            char::from(o.o_orderstatus),
            o.o_totalprice / 100,
            o.o_totalprice % 100,
            o.o_orderpriority,
            o.o_clerk,
            o.o_shippriority
        ),
        format!(
            "{}|{}|{}|{}|{}|{}|{}|",
            first.o_orderkey,
            first.o_custkey,
            first.o_orderstatus,
            first.o_totalprice,
            first.o_orderpriority,
            first.o_clerk,
            first.o_shippriority
        )
    );
    let bytes = std::fs::read(a.join("customer")).unwrap();
    let customer: Vec<Customer<'_>> = rows(&bytes, "customer");
    assert_eq!(customer.len(), 1500);
    // 1|Customer#000000001|IVhzIApeRb ot,c,E|15|25-989-741-2988|711.56|BUILDING|...
    let c = &customer[0];
    assert_eq!(
        (
            c.c_name,
            c.c_address,
            c.c_phone,
            c.c_acctbal,
            c.c_mktsegment
        ),
        (
            "Customer#000000001",
            "IVhzIApeRb ot,c,E",
            "25-989-741-2988",
            71_156,
            "BUILDING"
        )
    );
}

/// Every row of the five smaller tables, printed as tpchgen prints its own rows (`|` after
/// each column), equals tpchgen's: the row types, the conversions and the views agree
/// with the generator, column by column.
#[test]
fn the_other_five_tables_equal_tpchgens_rows() {
    use tpchgen::generators::{
        NationGenerator, PartGenerator, PartSuppGenerator, RegionGenerator, SupplierGenerator,
    };
    use weir_cli::tpch::{
        Nation, NationRow, Part, PartRow, PartSupp, PartSuppRow, Region, RegionRow, Supplier,
        SupplierRow,
    };
    let dir = Dir::new("five");
    let tables = dir.file("tables");
    generate(&tables);
    let read = |table: &str| std::fs::read(tables.join(table)).unwrap();
    let money = |c: i64| cents(i128::from(c), 2);

    let bytes = read("part");
    let ours: Vec<Part<'_>> = rows(&bytes, "part");
    let theirs: Vec<String> = PartGenerator::new(0.01, 1, 1)
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(ours.len(), 2000);
    for (p, theirs) in ours.iter().zip(&theirs) {
        let line = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|",
            p.p_partkey,
            p.p_name,
            p.p_mfgr,
            p.p_brand,
            p.p_type,
            p.p_size,
            p.p_container,
            money(p.p_retailprice),
            p.p_comment
        );
        assert_eq!(&line, theirs);
    }
    let first = weir_cli::tpch::table_rows(&bytes, weir_cli::tpch::Table::Part)
        .unwrap()
        .1[0];
    let view = PartRow::new(first).unwrap();
    assert_eq!(
        (view.p_partkey(), view.p_brand().unwrap()),
        (ours[0].p_partkey, ours[0].p_brand)
    );

    let bytes = read("supplier");
    let ours: Vec<Supplier<'_>> = rows(&bytes, "supplier");
    let theirs: Vec<String> = SupplierGenerator::new(0.01, 1, 1)
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(ours.len(), 100);
    for (s, theirs) in ours.iter().zip(&theirs) {
        let line = format!(
            "{}|{}|{}|{}|{}|{}|{}|",
            s.s_suppkey,
            s.s_name,
            s.s_address,
            s.s_nationkey,
            s.s_phone,
            money(s.s_acctbal),
            s.s_comment
        );
        assert_eq!(&line, theirs);
    }
    let first = weir_cli::tpch::table_rows(&bytes, weir_cli::tpch::Table::Supplier)
        .unwrap()
        .1[0];
    assert_eq!(
        SupplierRow::new(first).unwrap().s_acctbal(),
        ours[0].s_acctbal
    );

    let bytes = read("partsupp");
    let ours: Vec<PartSupp<'_>> = rows(&bytes, "partsupp");
    let theirs: Vec<String> = PartSuppGenerator::new(0.01, 1, 1)
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(ours.len(), 8000);
    for (ps, theirs) in ours.iter().zip(&theirs) {
        let line = format!(
            "{}|{}|{}|{}|{}|",
            ps.ps_partkey,
            ps.ps_suppkey,
            ps.ps_availqty,
            money(ps.ps_supplycost),
            ps.ps_comment
        );
        assert_eq!(&line, theirs);
    }
    let first = weir_cli::tpch::table_rows(&bytes, weir_cli::tpch::Table::PartSupp)
        .unwrap()
        .1[0];
    assert_eq!(
        PartSuppRow::new(first).unwrap().ps_supplycost(),
        ours[0].ps_supplycost
    );

    let bytes = read("nation");
    let ours: Vec<Nation<'_>> = rows(&bytes, "nation");
    let theirs: Vec<String> = NationGenerator::new(0.01, 1, 1)
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(ours.len(), 25);
    for (n, theirs) in ours.iter().zip(&theirs) {
        let line = format!(
            "{}|{}|{}|{}|",
            n.n_nationkey, n.n_name, n.n_regionkey, n.n_comment
        );
        assert_eq!(&line, theirs);
    }
    let first = weir_cli::tpch::table_rows(&bytes, weir_cli::tpch::Table::Nation)
        .unwrap()
        .1[0];
    assert_eq!(NationRow::new(first).unwrap().n_name().unwrap(), "ALGERIA");

    let bytes = read("region");
    let ours: Vec<Region<'_>> = rows(&bytes, "region");
    let theirs: Vec<String> = RegionGenerator::new(0.01, 1, 1)
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(ours.len(), 5);
    for (r, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(
            &format!("{}|{}|{}|", r.r_regionkey, r.r_name, r.r_comment),
            theirs
        );
    }
    let first = weir_cli::tpch::table_rows(&bytes, weir_cli::tpch::Table::Region)
        .unwrap()
        .1[0];
    assert_eq!(RegionRow::new(first).unwrap().r_name().unwrap(), "AFRICA");
}

#[test]
fn w2a_equals_a_btreemap_in_memory_and_spilling() {
    let dir = Dir::new("w2a");
    let input = dir.file("tpch");
    generate(&input);
    let bytes = std::fs::read(input.join("lineitem")).unwrap();
    let mut groups: BTreeMap<i64, (i64, u64)> = BTreeMap::new();
    for row in rows::<Lineitem<'_>>(&bytes, "lineitem") {
        let group = groups.entry(row.l_orderkey).or_default();
        group.0 += row.l_extendedprice;
        group.1 += 1;
    }
    let mut expected = String::from("l_orderkey,sum_extendedprice,count_order\n");
    for (key, (sum, count)) in &groups {
        expected.push_str(&format!("{key},{},{count}\n", cents(i128::from(*sum), 2)));
    }
    let spill = dir.spill();
    let (json, csv) = bench("w2a", &input, "64MiB", &spill);
    assert_eq!(csv, expected);
    assert_eq!(json_number(&json, "spilled_bytes"), 0.0, "{json}");
    assert_eq!(json_number(&json, "groups"), groups.len() as f64);
    // A small budget (4 MiB of network buffers, the rest managed) on three task slots:
    // the same answer, whatever the tasks' shares spill.
    let (json, csv) = bench_threads("w2a", &input, "24MiB", &spill, 3);
    assert_eq!(csv, expected);
    assert_eq!(json_number(&json, "groups"), groups.len() as f64);
}

#[test]
fn w2b_equals_a_btreemap_in_memory_and_at_the_smallest_budget() {
    let dir = Dir::new("w2b");
    let input = dir.file("tpch");
    generate(&input);
    let bytes = std::fs::read(input.join("lineitem")).unwrap();
    let cutoff = days_from_civil(1998, 9, 2);
    // (sum_qty, sum_base_price, sum_disc_price, sum_charge, sum_disc, count)
    let mut groups: BTreeMap<(u8, u8), [i128; 6]> = BTreeMap::new();
    for row in rows::<Lineitem<'_>>(&bytes, "lineitem") {
        if row.l_shipdate > cutoff {
            continue;
        }
        let g = groups
            .entry((row.l_returnflag, row.l_linestatus))
            .or_default();
        let (price, disc, tax) = (
            i128::from(row.l_extendedprice),
            i128::from(row.l_discount),
            i128::from(row.l_tax),
        );
        g[0] += i128::from(row.l_quantity);
        g[1] += price;
        g[2] += price * (100 - disc);
        g[3] += price * (100 - disc) * (100 + tax);
        g[4] += disc;
        g[5] += 1;
    }
    let avg = |sum: i128, count: i128| {
        // Scale 2 to scale 8, half away from zero (every sum here is positive).
        cents((sum * 1_000_000 * 2 + count) / (2 * count), 8)
    };
    let mut expected = String::from(
        "l_returnflag,l_linestatus,sum_qty,sum_base_price,sum_disc_price,sum_charge,\
         avg_qty,avg_price,avg_disc,count_order\n",
    );
    for ((flag, status), g) in &groups {
        expected.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            char::from(*flag),
            char::from(*status),
            cents(g[0], 2),
            cents(g[1], 2),
            cents(g[2], 4),
            cents(g[3], 6),
            avg(g[0], g[5]),
            avg(g[1], g[5]),
            avg(g[4], g[5]),
            g[5]
        ));
    }
    assert_eq!(groups.len(), 4);
    let spill = dir.spill();
    for (memory, threads) in [("64MiB", 1), ("14MiB", 2)] {
        let (json, csv) = bench_threads("w2b", &input, memory, &spill, threads);
        assert_eq!(csv, expected, "at {memory}");
        assert_eq!(json_number(&json, "groups"), 4.0);
        assert_eq!(json_number(&json, "records"), 60_175.0);
    }
}

/// Runs weir, which must fail with `code` and a one-line message containing `needle`.
fn fails(args: &[&str], code: i32, needle: &str) {
    let result = weir(args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn bad_arguments_and_bad_input_are_clear_errors() {
    let dir = Dir::new("errors");
    let input = dir.file("tpch");
    generate(&input);
    let spill = dir.spill();
    let run = |input: &Path, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "bench",
            "w2a",
            "--input",
            path(input),
            "--spill-dir",
            path(&spill),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let check = |args: Vec<String>, code, needle| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&args, code, needle);
    };
    check(
        run(&input, &["--memory", "64MiB", "--threads", "0"]),
        2,
        "slots",
    );
    check(run(&input, &["--memory", "7MiB"]), 2, "below the minimum");
    check(run(&input, &["--memory", "lots"]), 2, "invalid size");
    check(
        run(&dir.file("nowhere"), &["--memory", "64MiB"]),
        2,
        "cannot open input",
    );
    fails(
        &["gen", "tpch", "--scale", "0", "--out", path(&dir.file("x"))],
        2,
        "--scale 0",
    );
    fails(
        &[
            "gen",
            "tpch",
            "--scale",
            "-1",
            "--out",
            path(&dir.file("x")),
        ],
        2,
        "",
    );

    // Not a table file at all (beside the real manifest).
    let other = dir.file("other");
    std::fs::create_dir_all(&other).unwrap();
    let manifest = "weir-tables.manifest";
    std::fs::copy(input.join(manifest), other.join(manifest)).unwrap();
    std::fs::write(other.join("lineitem"), b"l_orderkey|l_partkey\n1|2\n").unwrap();
    check(
        run(&other, &["--memory", "64MiB"]),
        2,
        "is not a weir TPC-H lineitem file",
    );

    let lineitem = std::fs::read(input.join("lineitem")).unwrap();
    // Truncated inside a block, and by a whole block: the manifest's size catches both.
    for cut in [7, 4096] {
        std::fs::write(other.join("lineitem"), &lineitem[..lineitem.len() - cut]).unwrap();
        // Damaged data is a failure while running (1), not a usage error (2).
        check(
            run(&other, &["--memory", "64MiB"]),
            1,
            "differs from its manifest",
        );
    }
    // A string length overwritten in the middle of the file: the block's checksum.
    let mut corrupt = lineitem.clone();
    corrupt[100_000..100_006].fill(0xff);
    std::fs::write(other.join("lineitem"), &corrupt).unwrap();
    check(
        run(&other, &["--memory", "64MiB"]),
        1,
        "is corrupt at byte 98304: block 23's checksum does not match",
    );
    // No manifest: not a directory weir gen tpch wrote.
    std::fs::remove_file(other.join(manifest)).unwrap();
    check(
        run(&other, &["--memory", "64MiB"]),
        2,
        "cannot read manifest",
    );
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "spill files left behind"
    );
}
