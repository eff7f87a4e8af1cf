//! `embedded-io` over any `std::io` stream, so agent-core can drive it.

use std::io;

/// A `std::io::Read + Write` stream seen through `embedded_io`.
pub struct Port<T>(pub T);

impl<T> embedded_io::ErrorType for Port<T> {
    type Error = io::Error;
}

impl<T: io::Read> embedded_io::Read for Port<T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, io::Error> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl<T: io::Write> embedded_io::Write for Port<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, io::Error> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> Result<(), io::Error> {
        self.0.flush()
    }
}
