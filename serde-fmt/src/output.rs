//! Where encoders put their bytes.
//!
//! Both serializers are generic over [`Output`] so that each destination gets its own
//! monomorphised, fully inlined copy: appending to a `Vec<u8>` costs one capacity check and
//! a copy, with no `io::Write` error plumbing; counting the size touches no memory at all.

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

/// Appends to a borrowed vector.
#[derive(Debug)]
pub(crate) struct VecOutput<'a> {
    vec: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> VecOutput<'a> {
    pub(crate) fn new(vec: &'a mut Vec<u8>) -> Self {
        let start = vec.len();
        Self { vec, start }
    }
}

impl Output for VecOutput<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.vec.extend_from_slice(bytes);
        Ok(())
    }

    #[inline(always)]
    fn put_u8(&mut self, byte: u8) -> Result<()> {
        self.vec.push(byte);
        Ok(())
    }

    fn position(&self) -> usize {
        self.vec.len() - self.start
    }
}

/// Owns its vector: the scratch space of unknown-length sequences, and `to_vec`.
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
    fn vec_output_counts_from_its_start() {
        let mut vec = vec![9, 9];
        let mut out = VecOutput::new(&mut vec);
        out.put(&[1, 2]).unwrap();
        out.put_u8(3).unwrap();
        assert_eq!(out.position(), 3);
        assert_eq!(vec, [9, 9, 1, 2, 3]);
    }

    #[test]
    fn io_errors_carry_the_bytes_written() {
        let mut out = IoOutput::new(FailingWriter);
        let error = out.put(&[1]).unwrap_err();
        assert!(matches!(error, Error::Io { offset: 0, .. }), "{error}");
        assert_eq!(error.to_string(), "write failed after 0 bytes: disk full");
    }
}
