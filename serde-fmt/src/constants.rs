//! Every limit of the formats, named in one place.
//!
//! The decoders read untrusted bytes (spill files, network buffers), so each limit here
//! bounds either the stack (nesting depth), the work per record (zero-sized elements), or
//! the bytes one primitive may take (varints).

/// Most bytes a LEB128 varint of a `u64` takes: `ceil(64 / 7)`.
pub const VARINT_BYTES_MAX: usize = 10;

/// Deepest nesting of compound values (options, sequences, maps, tuples, structs, enums,
/// newtypes) that the decoders accept.
///
/// Decoding recurses once per level, so without a bound a few kilobytes of
/// `Some(Some(Some(...)))` would overflow the stack. 128 levels are far more than any
/// record or key schema uses and keep the worst-case stack use well under 1 MiB.
pub const DEPTH_MAX: usize = 128;

/// Most elements encoded in zero bytes (such as the `()` in a `Vec<()>`) that one record
/// decode accepts, summed over all its sequences and maps.
///
/// Every other element takes at least one byte, so the input length already bounds the
/// work of decoding it. Zero-byte elements are the exception: a 10-byte length prefix
/// could otherwise demand 2^64 iterations. This budget bounds that work and still lets
/// sequences of unit values round-trip.
pub const ZERO_SIZED_ELEMENTS_MAX: usize = 1 << 20;

/// The newtype name that marks [`crate::Descending`] for the key serializer.
///
/// The `$` cannot appear in a Rust identifier, so no user type can collide with it.
pub const DESCENDING_NEWTYPE_NAME: &str = "$weir::Descending";

/// Key format: marker before each element of a sequence.
pub const KEY_SEQ_ELEMENT: u8 = 0x01;
/// Key format: marker after the last element of a sequence. Lower than
/// [`KEY_SEQ_ELEMENT`] so a sequence orders before every longer sequence it prefixes.
pub const KEY_SEQ_END: u8 = 0x00;
/// Key format: the byte that starts an escape or a terminator inside strings and bytes.
pub const KEY_ESCAPE: u8 = 0x00;
/// Key format: follows [`KEY_ESCAPE`] to stand for a literal `0x00` byte.
pub const KEY_ESCAPED_ZERO: u8 = 0xFF;
/// Key format: follows [`KEY_ESCAPE`] to end a string or byte string. Lower than every
/// content byte and than [`KEY_ESCAPED_ZERO`], so a string orders before its extensions.
pub const KEY_TERMINATOR: u8 = 0x00;

const _: () = assert!(KEY_SEQ_END < KEY_SEQ_ELEMENT);
const _: () = assert!(KEY_TERMINATOR < KEY_ESCAPED_ZERO);
const _: () = assert!(
    KEY_ESCAPE == 0x00,
    "escaping must start at the smallest byte"
);
const _: () = assert!(VARINT_BYTES_MAX * 7 >= 64);
const _: () = assert!(DEPTH_MAX >= 16);
