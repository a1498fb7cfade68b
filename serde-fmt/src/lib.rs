//! weir's serde binary record format and order-preserving key format.
//!
//! Every record weir moves (network buffers, sort buffers, spill files) is bytes in the
//! **record format**; every sort or hash key is bytes in the **key format**, compared with
//! `memcmp` and never deserialized on the hot path.
//!
//! ```text
//!              to_vec / append_to_vec / to_writer           from_slice / RecordReader
//!   T: Serialize ---------------------------> record bytes ------------------------> T
//!        |                                   (LE, varint lengths,                   (borrows
//!        |                                    nothing the type knows)                &str, &[u8])
//!        |     key::to_vec / key::to_writer                  key::from_slice
//!        +------------------------------> key bytes -------------------------------> T
//!                                        (BE, escaped strings,
//!                                         memcmp order == T's order)
//! ```
//!
//! - [`record`](crate::to_vec): little-endian fixed-width numbers, LEB128 lengths and
//!   variant indexes, option tags. Not self-describing: the type drives decoding, so
//!   `deserialize_any` (untagged enums, `#[serde(flatten)]`) is unsupported.
//! - [`key`]: big-endian, sign-flipped, escaped and terminated so that byte order equals
//!   value order; [`Descending`] reverses a field.
//!
//! Decoding is safe on untrusted input: no panics, an [`Error`] with the byte offset for
//! every malformed input, no allocation beyond what the input length justifies, nesting
//! bounded by [`constants::DEPTH_MAX`]. Byte-exact layouts are in `docs/FORMAT.md`.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Order<'a> {
//!     id: u32,
//!     name: &'a str,
//!     gift: Option<bool>,
//! }
//!
//! let order = Order { id: 300, name: "ab", gift: Some(true) };
//! let bytes = weir_serde_fmt::to_vec(&order)?;
//! assert_eq!(bytes, [0x2c, 0x01, 0x00, 0x00, 0x02, b'a', b'b', 0x01, 0x01]);
//! let decoded: Order<'_> = weir_serde_fmt::from_slice(&bytes)?; // borrows "ab"
//! assert_eq!(decoded, order);
//!
//! let a = weir_serde_fmt::key::to_vec(&("ab", -1i32))?;
//! let b = weir_serde_fmt::key::to_vec(&("ab", 2i32))?;
//! assert!(a < b);
//! # Ok::<(), weir_serde_fmt::Error>(())
//! ```
#![cfg_attr(
    test,
    allow(
        clippy::too_many_lines,
        reason = "a test is a scenario read top to bottom"
    )
)]
#![forbid(unsafe_code)]
// A library reports through its caller (errors, metrics), never on the process's streams.
#![deny(clippy::print_stderr, clippy::print_stdout)]
#![doc(test(attr(deny(warnings))))]

pub mod constants;
mod descending;
mod error;
pub mod fuzz;
pub mod key;
mod output;
mod record;
mod varint;

pub use descending::Descending;
pub use error::{Error, Result};
pub use record::{
    RecordReader, append_to_vec, fixed_size, from_slice, from_slice_prefix, serialized_size,
    to_slice, to_vec, to_writer,
};
