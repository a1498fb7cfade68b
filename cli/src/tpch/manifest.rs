//! `DIR/weir-tables.manifest`: what `weir gen tpch` generated, and what weir may do with
//! a directory it is pointed at.
//!
//! ```text
//!   weir-tables format 4
//!   scale 0.01
//!   table lineitem bytes 8372224 blocks 2043 rows 60175 l_orderkey … l_quantity … l_extendedprice …
//!   chunk lineitem 0 rows 7532 l_orderkey … l_quantity … l_extendedprice …
//!   …                                       (one line per chunk of TABLE_CHUNK_BLOCKS blocks)
//!   table orders bytes … blocks … rows 15000 o_orderkey … o_totalprice …
//!   table customer bytes … blocks … rows 1500 c_custkey … c_acctbal …
//!   q1 rows … l_quantity … l_extendedprice …
//! ```
//!
//! The totals are wrapping `i64` sums computed from the generator's rows as they were
//! generated, not from the files: they are what a scan (and an answer) is checked against,
//! independently of the bytes. A chunk's totals cover the rows of its blocks (chunk `c`
//! holds data blocks `c × TABLE_CHUNK_BLOCKS` up to the next chunk's first), so a task that
//! scans a range of chunks checks what it read on its own; the chunks add up to the
//! table's totals. `q1` sums the rows TPC-H Q1 reads (`l_shipdate` up to
//! 1998-09-02). The manifest is written last, through a temporary file and a rename, so a
//! directory with a manifest holds complete tables.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{FORMAT_VERSION, MAGIC, Table};
use crate::constants::{TABLE_CHUNK_BLOCKS, TABLES_MANIFEST};
use weir::error::{Result, WeirError};

/// The most summed columns of a table ([`Table::summed_columns`]).
pub const SUMS_MAX: usize = 3;

/// A table's row count and column totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Rows.
    pub rows: u64,
    /// Wrapping sums of the table's [`Table::summed_columns`], in order; zeros after them.
    pub sums: [i64; SUMS_MAX],
}

impl Totals {
    /// Counts a row whose summed columns hold `values` (in order).
    #[inline]
    pub fn add(&mut self, values: &[i64]) {
        self.rows += 1;
        for (sum, value) in self.sums.iter_mut().zip(values) {
            *sum = sum.wrapping_add(*value);
        }
    }
}

/// One table file as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Which table (its file is `DIR/<name>`).
    pub table: Table,
    /// Bytes of the file.
    pub bytes: u64,
    /// Data blocks of the file.
    pub blocks: u64,
    /// Rows and column totals of the generated rows.
    pub totals: Totals,
    /// Rows and column totals of each chunk ([`TABLE_CHUNK_BLOCKS`] data blocks; the last
    /// may have fewer), in file order.
    pub chunks: Vec<Totals>,
}

/// The chunks of a file of `blocks` data blocks.
pub fn chunks_of(blocks: u64) -> u64 {
    blocks.div_ceil(TABLE_CHUNK_BLOCKS)
}

/// The totals of the `lineitem` rows TPC-H Q1 reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Q1Totals {
    /// Rows with `l_shipdate` up to 1998-09-02.
    pub rows: u64,
    /// Their `l_quantity`, in hundredths.
    pub quantity: i64,
    /// Their `l_extendedprice`, in cents.
    pub extendedprice: i64,
}

/// The contents of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The scale factor.
    pub scale_factor: f64,
    /// The tables, in [`Table::ALL`] order.
    pub tables: Vec<TableEntry>,
    /// Q1's totals.
    pub q1: Q1Totals,
}

impl Manifest {
    /// The entry of `table`.
    ///
    /// # Panics
    ///
    /// Never for a manifest that [`Manifest::parse`] returned or the generator made (both
    /// list every table).
    pub fn entry(&self, table: Table) -> &TableEntry {
        self.tables
            .iter()
            .find(|entry| entry.table == table)
            .expect("a manifest lists every table")
    }

    /// The manifest's text.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "weir-tables format {FORMAT_VERSION}\nscale {}\n",
            self.scale_factor
        );
        for entry in &self.tables {
            let _ = write!(
                text,
                "table {} bytes {} blocks {} rows {}",
                entry.table.name(),
                entry.bytes,
                entry.blocks,
                entry.totals.rows
            );
            write_sums(&mut text, entry.table, &entry.totals);
            for (index, chunk) in entry.chunks.iter().enumerate() {
                let _ = write!(
                    text,
                    "chunk {} {index} rows {}",
                    entry.table.name(),
                    chunk.rows
                );
                write_sums(&mut text, entry.table, chunk);
            }
        }
        let q1 = &self.q1;
        let _ = writeln!(
            text,
            "q1 rows {} l_quantity {} l_extendedprice {}",
            q1.rows, q1.quantity, q1.extendedprice
        );
        text
    }

    /// Parses a manifest of this format version and checks that it adds up: each table
    /// lists its chunks once each, in order, as many as its blocks make, and their totals
    /// sum to the table's.
    ///
    /// # Errors
    ///
    /// What does not parse, or a missing table.
    pub fn parse(text: &str) -> std::result::Result<Manifest, String> {
        let version = manifest_version(text).ok_or("its first line is not weir-tables format N")?;
        if version != FORMAT_VERSION {
            return Err(format!("it is of table format version {version}"));
        }
        let mut scale_factor = None;
        let (mut tables, mut q1) = (Vec::<TableEntry>::new(), None);
        for line in text.lines().skip(1) {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["scale", value] => scale_factor = value.parse::<f64>().ok(),
                ["table", name, fields @ ..] => tables.push(parse_table(name, fields)?),
                ["chunk", name, index, fields @ ..] => {
                    let entry = tables
                        .last_mut()
                        .filter(|entry| entry.table.name() == *name)
                        .ok_or_else(|| format!("chunk line {line:?} does not follow its table"))?;
                    if index.parse::<usize>().ok() != Some(entry.chunks.len()) {
                        return Err(format!("chunk line {line:?} is out of order"));
                    }
                    entry.chunks.push(parse_totals(entry.table, fields)?);
                }
                ["q1", fields @ ..] => {
                    let value = |key: &str| field(fields, key);
                    q1 = Some(Q1Totals {
                        rows: value("rows")? as u64,
                        quantity: value("l_quantity")?,
                        extendedprice: value("l_extendedprice")?,
                    });
                }
                [] => {}
                _ => return Err(format!("line {line:?} is not a manifest line")),
            }
        }
        tables.sort_by_key(|entry: &TableEntry| Table::ALL.iter().position(|t| *t == entry.table));
        if tables.iter().map(|e| e.table).collect::<Vec<_>>() != Table::ALL {
            return Err("it does not list each of the eight tables once".into());
        }
        for entry in &tables {
            check_chunks(entry)?;
        }
        Ok(Manifest {
            scale_factor: scale_factor.ok_or("it names no scale")?,
            tables,
            q1: q1.ok_or("it has no q1 line")?,
        })
    }

    /// Reads `dir`'s manifest.
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] when it cannot be read; [`WeirError::Usage`] when it does not
    /// parse (with the hint to regenerate).
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(TABLES_MANIFEST);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| WeirError::file("read manifest", &path, e))?;
        Manifest::parse(&text).map_err(|why| WeirError::Usage {
            message: format!(
                "{} is not a weir table manifest: {why} (regenerate the tables with weir gen tpch)",
                path.display()
            ),
        })
    }

    /// Writes the manifest into `dir` through a temporary file and a rename.
    ///
    /// # Errors
    ///
    /// [`WeirError::File`] when a write or the rename fails.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(TABLES_MANIFEST);
        let temporary = dir.join(format!("{TABLES_MANIFEST}.tmp"));
        write_synced(&temporary, self.to_text().as_bytes())?;
        std::fs::rename(&temporary, &path).map_err(|e| WeirError::file("rename manifest", &path, e))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).map_err(|e| WeirError::file("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| WeirError::file("write", path, e))
}

fn field(fields: &[&str], key: &str) -> std::result::Result<i64, String> {
    fields
        .chunks_exact(2)
        .find(|pair| pair[0] == key)
        .and_then(|pair| pair[1].parse::<i64>().ok())
        .ok_or_else(|| format!("no number for {key}"))
}

/// Appends ` column sum` for each summed column of `table`, and the line's end.
fn write_sums(text: &mut String, table: Table, totals: &Totals) {
    for ((name, _), sum) in table.summed_columns().iter().zip(totals.sums) {
        let _ = write!(text, " {name} {sum}");
    }
    text.push('\n');
}

fn parse_totals(table: Table, fields: &[&str]) -> std::result::Result<Totals, String> {
    let mut totals = Totals {
        rows: field(fields, "rows")? as u64,
        sums: [0; SUMS_MAX],
    };
    for (sum, (column, _)) in totals.sums.iter_mut().zip(table.summed_columns()) {
        *sum = field(fields, column)?;
    }
    Ok(totals)
}

fn parse_table(name: &str, fields: &[&str]) -> std::result::Result<TableEntry, String> {
    let table = *Table::ALL
        .iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| format!("it lists an unknown table {name:?}"))?;
    Ok(TableEntry {
        table,
        bytes: field(fields, "bytes")? as u64,
        blocks: field(fields, "blocks")? as u64,
        totals: parse_totals(table, fields)?,
        chunks: Vec::new(),
    })
}

/// Checks that `entry` lists as many chunks as its blocks make and that they add up to
/// its totals.
fn check_chunks(entry: &TableEntry) -> std::result::Result<(), String> {
    let name = entry.table.name();
    if entry.chunks.len() as u64 != chunks_of(entry.blocks) {
        return Err(format!(
            "{name} has {} blocks, which make {} chunks, and {} chunk lines",
            entry.blocks,
            chunks_of(entry.blocks),
            entry.chunks.len()
        ));
    }
    let mut sum = Totals::default();
    for chunk in &entry.chunks {
        sum.rows += chunk.rows;
        for (total, value) in sum.sums.iter_mut().zip(chunk.sums) {
            *total = total.wrapping_add(value);
        }
    }
    if sum != entry.totals {
        return Err(format!(
            "{name}'s chunk lines do not add up to its table line"
        ));
    }
    Ok(())
}

/// The format version a manifest's first line names.
fn manifest_version(text: &str) -> Option<u32> {
    text.lines()
        .next()?
        .strip_prefix("weir-tables format ")?
        .trim()
        .parse()
        .ok()
}

/// What a directory holds, as far as weir's rules for it go.
#[derive(Debug, Clone, PartialEq)]
pub enum DirState {
    /// Nothing there.
    Absent,
    /// An empty directory.
    Empty,
    /// weir's tables in this format version.
    Tables(Manifest),
    /// weir's tables of another format version: the files weir wrote there.
    OtherVersion {
        /// The format version.
        version: u32,
        /// The files of those tables (manifest or marker included).
        files: Vec<String>,
    },
    /// Something weir did not write (or cannot tell it wrote).
    Foreign {
        /// What it is, for the message: a few of its entries, or why a manifest there
        /// does not count.
        found: String,
    },
}

/// How many entries of a foreign directory a message names.
const ENTRIES_NAMED: usize = 3;

/// Looks at `dir` without changing anything.
///
/// # Errors
///
/// [`WeirError::File`] when `dir` exists but cannot be listed.
pub fn inspect(dir: &Path) -> Result<DirState> {
    let metadata = match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Absent),
        other => other.map_err(|e| WeirError::file("inspect", dir, e))?,
    };
    if !metadata.is_dir() {
        return Ok(DirState::Foreign {
            found: "a file, not a directory".into(),
        });
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .map_err(|e| WeirError::file("list", dir, e))?;
    names.sort();
    if names.is_empty() {
        return Ok(DirState::Empty);
    }
    if names.iter().any(|name| name == TABLES_MANIFEST) {
        return Ok(manifest_state(dir));
    }
    if let Some(files) = version_1_files(dir, &names) {
        return Ok(DirState::OtherVersion { version: 1, files });
    }
    let shown: Vec<&str> = names
        .iter()
        .take(ENTRIES_NAMED)
        .map(String::as_str)
        .collect();
    let more = names.len().saturating_sub(ENTRIES_NAMED);
    Ok(DirState::Foreign {
        found: format!(
            "{} entr{} weir did not write ({}{}) and no {TABLES_MANIFEST}",
            names.len(),
            if names.len() == 1 { "y" } else { "ies" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    })
}

fn manifest_state(dir: &Path) -> DirState {
    let path = dir.join(TABLES_MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            return DirState::Foreign {
                found: format!("a {TABLES_MANIFEST} that cannot be read ({error})"),
            };
        }
    };
    match manifest_version(&text) {
        Some(version) if version != FORMAT_VERSION => {
            let mut files = vec![TABLES_MANIFEST.to_owned()];
            files.extend(text.lines().filter_map(|line| {
                let name = line.strip_prefix("table ")?.split_whitespace().next()?;
                // Only plain names: a manifest never lists a path.
                Table::ALL
                    .iter()
                    .any(|t| t.name() == name)
                    .then(|| name.to_owned())
            }));
            DirState::OtherVersion { version, files }
        }
        _ => match Manifest::parse(&text) {
            Ok(manifest) => DirState::Tables(manifest),
            Err(why) => DirState::Foreign {
                found: format!("a {TABLES_MANIFEST} that does not parse ({why})"),
            },
        },
    }
}

/// The files of a table directory of weir before manifests (format version 1): only
/// `complete` and table files, each table file beginning with weir's magic and version 1.
fn version_1_files(dir: &Path, names: &[String]) -> Option<Vec<String>> {
    let mut tables = 0;
    for name in names {
        if name == "complete" {
            continue;
        }
        Table::ALL.iter().find(|t| t.name() == name)?;
        let mut head = [0u8; 12];
        let read = std::fs::File::open(dir.join(name))
            .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut head));
        if read.is_err() || head[..8] != MAGIC || head[8..] != 1u32.to_le_bytes() {
            return None;
        }
        tables += 1;
    }
    (tables > 0).then(|| names.to_vec())
}

/// The staging directory beside `dir` that generation for it writes into.
pub fn staging_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "tables".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.weir-staging-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_text_round_trips() {
        let manifest = Manifest {
            scale_factor: 0.01,
            tables: Table::ALL
                .iter()
                .enumerate()
                .map(|(i, &table)| {
                    let n = table.summed_columns().len();
                    let blocks = TABLE_CHUNK_BLOCKS * i as u64 + 1;
                    let mut chunks: Vec<Totals> = (0..chunks_of(blocks))
                        .map(|c| {
                            let mut sums = [-1, i64::MAX, 3 + c as i64];
                            sums[n..].fill(0);
                            Totals { rows: 10 + c, sums }
                        })
                        .collect();
                    chunks[0].rows += i as u64;
                    let mut totals = Totals::default();
                    for chunk in &chunks {
                        totals.rows += chunk.rows;
                        for (t, v) in totals.sums.iter_mut().zip(chunk.sums) {
                            *t = t.wrapping_add(v);
                        }
                    }
                    TableEntry {
                        table,
                        bytes: 4096 * (blocks + 1),
                        blocks,
                        totals,
                        chunks,
                    }
                })
                .collect(),
            q1: Q1Totals {
                rows: 5,
                quantity: 6,
                extendedprice: -7,
            },
        };
        assert_eq!(Manifest::parse(&manifest.to_text()), Ok(manifest.clone()));
        let other = manifest.to_text().replace("format 4", "format 3");
        assert!(Manifest::parse(&other).unwrap_err().contains("version 3"));
        // A chunk's rows changed, a chunk dropped, chunks swapped: refused.
        let text = manifest.to_text();
        let changed = text.replacen("chunk orders 0 rows 11", "chunk orders 0 rows 12", 1);
        assert!(Manifest::parse(&changed).unwrap_err().contains("add up"));
        let dropped: String = text
            .lines()
            .filter(|l| !l.starts_with("chunk orders 1 "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(Manifest::parse(&dropped).unwrap_err().contains("chunk"));
        let swapped = text.replacen("chunk orders 0 ", "chunk orders 1 ", 1);
        assert!(
            Manifest::parse(&swapped)
                .unwrap_err()
                .contains("out of order")
        );
    }
}
