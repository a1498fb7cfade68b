//! `JoinRow`: one output row of a hash join, as its caller sees it.
//!
//! A leaf: the join, its stream and its sort-merge fallback all hand rows out in this
//! shape, so it stands below all three.

/// One output row of a join. `key` is the join key; `build` and `probe` are the records of
/// each side, `None` for the side an outer, semi or anti join leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRow<'a> {
    /// The key both records share.
    pub key: &'a [u8],
    /// The build (right) record.
    pub build: Option<&'a [u8]>,
    /// The probe (left) record.
    pub probe: Option<&'a [u8]>,
}
