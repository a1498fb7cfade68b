//! Where encoders put their bytes.
//!
//! Both serializers are generic over [`Output`] so that each destination gets its own
//! monomorphised, inlined copy: counting the size touches no memory at all, and filling a
//! slice sized by that count keeps the bounds in registers with no growth path, which is
//! how `to_vec` writes; `append_to_vec`, `to_writer` and the key encoder use `io::Write`.

use std::io;

use crate::error::{Error, Result};

/// A sink for encoded bytes.
pub(crate) trait Output {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]) -> Result<()>;

    /// Bytes put so far; the offset reported in encoding errors.
    fn position(&self) -> usize;

    /// Appends one byte.
    #[inline(always)]
    fn put_u8(&mut self, byte: u8) -> Result<()> {
        self.put(&[byte])
    }
}

/// Owns its vector: the scratch space of unknown-length sequences.
impl Output for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    #[inline(always)]
    fn put_u8(&mut self, byte: u8) -> Result<()> {
        self.push(byte);
        Ok(())
    }

    fn position(&self) -> usize {
        self.len()
    }
}

/// Fills a slice sized in advance by a [`SizeOutput`] pass.
///
/// This is the fast path for vectors: the slice's pointer, length and the position stay
/// in registers for the whole record, whereas every `Vec::push` must reload the vector's
/// length and capacity after each byte store (a `u8` store may alias them).
#[derive(Debug)]
pub(crate) struct SliceOutput<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceOutput<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Whether the slice was filled exactly.
    pub(crate) fn is_full(&self) -> bool {
        self.pos == self.buf.len()
    }
}

impl Output for SliceOutput<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len();
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.pos = end;
                Ok(())
            }
            None => Err(buffer_full(self.pos, self.buf.len())),
        }
    }

    #[inline(always)]
    fn put_u8(&mut self, byte: u8) -> Result<()> {
        match self.buf.get_mut(self.pos) {
            Some(dst) => {
                *dst = byte;
                self.pos += 1;
                Ok(())
            }
            None => Err(buffer_full(self.pos, self.buf.len())),
        }
    }

    fn position(&self) -> usize {
        self.pos
    }
}

/// A slice output ran out of room.
#[cold]
fn buffer_full(offset: usize, capacity: usize) -> Error {
    Error::BufferFull { offset, capacity }
}

/// A `Serialize` impl wrote a different number of bytes than in its sizing pass.
#[cold]
pub(crate) fn size_changed(offset: usize) -> Error {
    Error::Custom {
        offset: Some(offset),
        message: "serialize wrote a different number of bytes than its sizing pass".into(),
    }
}

/// Writes to any `io::Write`, counting bytes for error offsets.
#[derive(Debug)]
pub(crate) struct IoOutput<W> {
    writer: W,
    written: usize,
}

impl<W: io::Write> IoOutput<W> {
    pub(crate) fn new(writer: W) -> Self {
        Self { writer, written: 0 }
    }
}

impl<W: io::Write> Output for IoOutput<W> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        match self.writer.write_all(bytes) {
            Ok(()) => {
                self.written += bytes.len();
                Ok(())
            }
            Err(source) => Err(Error::Io {
                offset: self.written,
                source,
            }),
        }
    }

    fn position(&self) -> usize {
        self.written
    }
}

/// Counts bytes without storing them.
#[derive(Debug, Default)]
pub(crate) struct SizeOutput {
    size: usize,
}

impl SizeOutput {
    pub(crate) fn size(&self) -> usize {
        self.size
    }
}

impl Output for SizeOutput {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.size += bytes.len();
        Ok(())
    }

    fn position(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FailingWriter;

    impl io::Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn slice_output_fails_past_its_end() {
        let mut buf = [0u8; 3];
        let mut out = SliceOutput::new(&mut buf);
        out.put(&[1, 2]).unwrap();
        assert!(!out.is_full());
        out.put_u8(3).unwrap();
        assert!(out.is_full());
        let error = out.put_u8(4).unwrap_err();
        assert!(
            matches!(
                error,
                Error::BufferFull {
                    offset: 3,
                    capacity: 3
                }
            ),
            "{error}"
        );
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn io_errors_carry_the_bytes_written() {
        let mut out = IoOutput::new(FailingWriter);
        let error = out.put(&[1]).unwrap_err();
        assert!(matches!(error, Error::Io { offset: 0, .. }), "{error}");
        assert_eq!(error.to_string(), "write failed after 0 bytes: disk full");
    }
}
