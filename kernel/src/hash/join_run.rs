//! The record format of a hash join's runs: `[varint key_len][varint record_len][key]
//! [record]` (docs/FORMAT.md, section 8).
//!
//! ```text
//!   build records, probe records, an oversized merge group
//!       ──▶ write_record ──▶ RunOutput ──▶ SpillRun ──▶ RunInput ──▶ read_record
//! ```
//!
//! A leaf: the join, its levels, its stream and its sort-merge fallback all write and read
//! runs in this one format. Invariant: a read never trusts a length past the run's end.

use crate::error::{KernelError, Result};
use crate::spill::{RunInput, RunOutput};

/// Writes one record of a join run: `[varint key_len][varint record_len][key][record]`.
pub(super) fn write_record(output: &mut RunOutput, key: &[u8], record: &[u8]) -> Result<()> {
    output.write_varint(key.len() as u64)?;
    output.write_varint(record.len() as u64)?;
    output.write_bytes(key)?;
    output.write_bytes(record)
}

/// Reads the next record of a join run of `payload` bytes into `key` and `record`;
/// `false` at its end.
///
/// # Errors
///
/// A failed or corrupt read; [`KernelError::Malformed`] for lengths past the run's end.
pub(super) fn read_record(
    input: &mut RunInput,
    payload: u64,
    key: &mut Vec<u8>,
    record: &mut Vec<u8>,
) -> Result<bool> {
    if input.is_at_end()? {
        return Ok(false);
    }
    let key_len = input.read_varint()?;
    let record_len = input.read_varint()?;
    let left = payload - input.bytes_read().min(payload);
    if key_len.saturating_add(record_len) > left {
        return Err(KernelError::Malformed {
            position: input.bytes_read(),
            what: "join record whose lengths run past the end of its run",
        });
    }
    key.resize(key_len as usize, 0);
    input.read_exact(key)?;
    record.resize(record_len as usize, 0);
    input.read_exact(record)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::join_table::JoinTable;
    use crate::memory::test_manager;
    use crate::spill::{RunOptions, SpillConfig, open_store};

    /// The worked example of docs/FORMAT.md, section 8.
    #[test]
    fn format_doc_example() {
        let manager = test_manager(8);
        let owner = manager.owner("join");
        let dir = std::env::temp_dir().join(format!("weir-join-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = open_store(&SpillConfig::new(dir.clone())).unwrap();
        let options = RunOptions {
            compress: false,
            write_behind: 1,
        };
        let mut output = RunOutput::new(
            store.create_run(options).unwrap(),
            owner.allocate(2).unwrap(),
        );
        let (key, record) = (7u64.to_be_bytes(), 1234i64.to_le_bytes());
        write_record(&mut output, &key, &record).unwrap();
        let (run, segments) = output.finish().unwrap();
        drop(segments);
        let expected = [
            0x08, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xd2, 0x04, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(run.payload_bytes(), 18);
        let mut input = RunInput::new(store.open_run(&run, owner.allocate(2).unwrap()).unwrap());
        let mut bytes = vec![0; 18];
        input.read_exact(&mut bytes).unwrap();
        assert_eq!(bytes, expected);
        drop((input, run));
        let mut table = JoinTable::new(owner.reserve(2).unwrap(), 0, 10);
        assert!(table.append(3, &key, &record).unwrap());
        assert_eq!(table.bytes(3), 19);
        let doc = include_str!("../../../docs/FORMAT.md");
        assert!(doc.contains("08                          varint 8: key_len"));
        assert!(doc.contains("d2 04 00 00 00 00 00 00     record: 1234 cents"));
        drop(table.into_memory());
        manager.leak_check().unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
