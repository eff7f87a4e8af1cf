//! `embedded-io` sinks over `std::io` streams that batch replies: the agent
//! writes a reply in many small pieces, and one system call per piece
//! would dominate its cost. [`Batched`] collects them and writes them out
//! when [`Batched::send`] is called after each input chunk (or when
//! [`BATCH_BYTES`] have piled up, so a large reply streams in pieces).

use std::io::{self, Write};

/// Replies are written out once this many bytes are pending.
pub const BATCH_BYTES: usize = 16 << 10;

/// A buffer for [`Batched`]: allocate it once per connection, not per
/// chunk (an allocation of this size is an mmap/munmap pair with musl's
/// malloc, which showed as a third of the static build's time per request).
pub fn batch_buffer() -> Vec<u8> {
    Vec::with_capacity(BATCH_BYTES)
}

/// A batching sink over `T`, collecting into a buffer the caller keeps.
pub struct Batched<'b, T> {
    inner: T,
    pending: &'b mut Vec<u8>,
}

impl<'b, T: Write> Batched<'b, T> {
    /// Batch writes to `inner` in `pending` (emptied first).
    pub fn new(inner: T, pending: &'b mut Vec<u8>) -> Self {
        pending.clear();
        Batched { inner, pending }
    }

    /// The underlying stream.
    #[cfg(test)]
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Write out everything pending.
    pub fn send(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let result = self.inner.write_all(self.pending);
            self.pending.clear();
            result?;
        }
        self.inner.flush()
    }
}

impl<T> embedded_io::ErrorType for Batched<'_, T> {
    type Error = io::Error;
}

impl<T: Write> embedded_io::Write for Batched<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= BATCH_BYTES {
            // A large piece (a file read's base64) goes out as it is,
            // after what is pending, without a copy.
            self.send()?;
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= BATCH_BYTES {
            self.send()?;
        }
        Ok(buf.len())
    }

    /// Called by the agent after each reply; the batch goes out at
    /// [`send`](Batched::send), after the whole input chunk.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_io::Write as _;

    #[test]
    fn batches_until_send_or_full() {
        let mut buffer = batch_buffer();
        let mut port = Batched::new(Vec::new(), &mut buffer);
        port.write_all(b"{\"return\": ").unwrap();
        port.write_all(b"{}}\n").unwrap();
        embedded_io::Write::flush(&mut port).unwrap();
        assert!(port.get_mut().is_empty());
        port.send().unwrap();
        assert_eq!(port.get_mut().as_slice(), b"{\"return\": {}}\n");
        port.write_all(b"{").unwrap();
        port.write_all(&vec![b'x'; BATCH_BYTES + 1]).unwrap();
        assert_eq!(port.get_mut().len(), 15 + 1 + BATCH_BYTES + 1);
        assert_eq!(port.get_mut()[15], b'{');
    }
}
