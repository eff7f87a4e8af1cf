//! Staging the base64 data of a large `guest-file-write` outside memory.
//!
//! A write may carry up to 48 MiB of data, 64 MiB of base64 text. Holding
//! the request would cost the request buffer that much, and decoding it
//! as much again. Instead agent-core hands the `buf-b64` string to
//! [`Stage`] (its [`Spill`]) as the request arrives, once the string is
//! longer than [`THRESHOLD`]; the stage decodes it on the fly with
//! qemu-ga's rules ([`Base64Decoder`]) into an unnamed temporary file, and
//! guest-file-write copies from that file once the whole request has
//! parsed. The target file is not touched before then, so a request that
//! fails later (bad JSON after the data, a bad handle or count, the client
//! going away) has no effect, exactly as with qemu-ga.
//!
//! The temporary file is `O_TMPFILE` in `$TMPDIR` (or `/tmp`), else in the
//! state directory; it is dropped after each request. If none can be
//! made, the string stays in the request buffer as any other.
//!
//! While filesystems are frozen nothing is written: `$TMPDIR` may be on a
//! frozen filesystem, and a write there would block the agent until a thaw
//! it could then never read. The stage still takes the string (so the
//! request is read to its end and answered, by dispatch, with qemu-ga's
//! "has been disabled" error, not "too large") but drops its bytes.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use agent_core::json::JsonStr;
use agent_core::spill::Spill;
use rustix::fs::{Mode, OFlags};

use super::freeze::Freezer;

/// `buf-b64` strings longer than this (1 MiB) are staged; shorter ones
/// stay in the request buffer.
pub const THRESHOLD: usize = 1 << 20;
/// Decoded bytes gathered before each write to the temporary file.
const OUT_BYTES: usize = 256 << 10;
/// Base64 decoded in one block on the fast path.
const BLOCK: usize = 64 << 10;

/// The SIMD decoder for runs of whole groups without padding or newlines
/// (there it agrees with qemu-ga's rules); anything it refuses goes
/// through those rules byte by byte.
const FAST: base64_simd::Base64 = base64_simd::STANDARD_NO_PAD;

/// qemu-ga's base64 decoding (`qbase64_decode`), a piece at a time: only
/// `A-Z a-z 0-9 + / =` and newlines are allowed, then GLib's lenient
/// decoder runs: newlines are skipped, `=` counts as a zero digit, every
/// complete group of four gives three bytes less one for each `=` in its
/// last two places, and an incomplete final group is dropped.
#[derive(Clone, Debug, Default)]
pub struct Base64Decoder {
    group: u32,
    digits: u8,
    last: [u8; 2],
    invalid: bool,
}

impl Base64Decoder {
    /// A decoder at the start of its input.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether every byte so far was allowed. Once one was not, nothing
    /// more is decoded.
    pub fn is_valid(&self) -> bool {
        !self.invalid
    }

    /// Decode `input`, appending to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut rest = input;
        while !rest.is_empty() && !self.invalid {
            if self.digits == 0 && rest.len() >= 4 {
                let block = &rest[..rest.len().min(BLOCK) / 4 * 4];
                let start = out.len();
                out.resize(start + block.len() / 4 * 3, 0);
                let decoded = FAST
                    .decode(block, base64_simd::Out::from_slice(&mut out[start..]))
                    .map(|d| d.len());
                if let Ok(n) = decoded {
                    out.truncate(start + n);
                    rest = &rest[block.len()..];
                    continue;
                }
                out.truncate(start);
                let (slow, tail) = rest.split_at(block.len());
                self.push_slowly(slow, out);
                rest = tail;
                continue;
            }
            // Finish a group begun earlier, a byte at a time.
            let (&b, tail) = rest.split_first().unwrap_or((&0, &[]));
            self.push_slowly(&[b], out);
            rest = tail;
        }
    }

    fn push_slowly(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            let rank = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => 0,
                b'\n' => continue,
                _ => {
                    self.invalid = true;
                    return;
                }
            };
            self.last = [self.last[1], b];
            self.group = (self.group << 6) | u32::from(rank);
            self.digits += 1;
            if self.digits == 4 {
                out.push((self.group >> 16) as u8);
                if self.last[0] != b'=' {
                    out.push((self.group >> 8) as u8);
                }
                if self.last[1] != b'=' {
                    out.push(self.group as u8);
                }
                self.digits = 0;
                self.group = 0;
            }
        }
    }
}

/// Staged data ready for guest-file-write.
#[derive(Debug)]
pub struct Staged {
    /// The decoded bytes, from offset 0.
    pub file: File,
    /// How many there are.
    pub len: u64,
}

/// Why staged data cannot be used.
#[derive(Debug)]
pub enum StageError {
    /// The string held a byte base64 does not allow.
    InvalidBase64,
    /// Writing the temporary file failed (a full disk, say).
    Io(io::Error),
    /// Nothing is staged (a bug: the request said otherwise).
    Empty,
    /// The data arrived while filesystems were frozen and was dropped.
    Frozen,
}

/// The agent's [`Spill`]: stages `buf-b64` strings in a temporary file.
#[derive(Debug)]
pub struct Stage {
    /// Where temporary files may go, in order of preference.
    dirs: Vec<PathBuf>,
    freezer: Arc<Freezer>,
    current: Option<Current>,
}

#[derive(Debug)]
struct Current {
    /// `None`: dropping the data (it arrived while frozen).
    file: Option<File>,
    decoder: Base64Decoder,
    out: Vec<u8>,
    written: u64,
    error: Option<io::Error>,
}

impl Current {
    fn flush(&mut self) {
        if let (None, Some(file)) = (&self.error, self.file.as_mut()) {
            if !self.out.is_empty() {
                match file.write_all(&self.out) {
                    Ok(()) => self.written += self.out.len() as u64,
                    Err(e) => self.error = Some(e),
                }
            }
        }
        self.out.clear();
    }
}

impl Stage {
    /// A stage that makes its files in the first of `dirs` that allows it,
    /// and none while `freezer` says filesystems are frozen.
    pub fn new(dirs: Vec<PathBuf>, freezer: Arc<Freezer>) -> Self {
        Stage {
            dirs,
            freezer,
            current: None,
        }
    }

    /// The staged data of the request being answered.
    pub fn take(&mut self) -> Result<Staged, StageError> {
        let mut current = self.current.take().ok_or(StageError::Empty)?;
        if current.file.is_none() {
            return Err(StageError::Frozen);
        }
        if !current.decoder.is_valid() {
            return Err(StageError::InvalidBase64);
        }
        current.flush();
        if let Some(e) = current.error.take() {
            return Err(StageError::Io(e));
        }
        let mut file = current.file.take().ok_or(StageError::Empty)?;
        file.seek(SeekFrom::Start(0)).map_err(StageError::Io)?;
        Ok(Staged {
            file,
            len: current.written,
        })
    }

    fn temporary_file(&self) -> Option<File> {
        self.dirs.iter().find_map(|dir| {
            let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
            rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600))
                .ok()
                .map(File::from)
        })
    }
}

impl Spill for Stage {
    fn threshold(&self) -> usize {
        THRESHOLD
    }

    fn begin(&mut self, key: JsonStr<'_>) -> bool {
        if !key.eq_str("buf-b64") {
            return false;
        }
        if self.freezer.is_frozen() {
            self.current = Some(Current {
                file: None,
                decoder: Base64Decoder::new(),
                out: Vec::new(),
                written: 0,
                error: None,
            });
            return true;
        }
        let Some(file) = self.temporary_file() else {
            log::warn!("cannot stage a large guest-file-write: no temporary file");
            return false;
        };
        self.current = Some(Current {
            file: Some(file),
            decoder: Base64Decoder::new(),
            out: Vec::with_capacity(OUT_BYTES + BLOCK),
            written: 0,
            error: None,
        });
        true
    }

    fn data(&mut self, bytes: &[u8]) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.file.is_none() {
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() && current.decoder.is_valid() {
            let (piece, tail) = rest.split_at(rest.len().min(BLOCK));
            current.decoder.push(piece, &mut current.out);
            if current.out.len() >= OUT_BYTES {
                current.flush();
            }
            rest = tail;
        }
    }

    fn discard(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::file::decode_base64;
    use agent_core::json::Value;
    use base64::Engine as _;

    fn decode_in_pieces(input: &[u8], step: usize) -> Option<Vec<u8>> {
        let mut d = Base64Decoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            d.push(piece, &mut out);
        }
        d.is_valid().then_some(out)
    }

    #[test]
    fn pieces_decode_like_the_whole() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut data = vec![0u8; 300_000];
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let clean = base64::engine::general_purpose::STANDARD.encode(&data);
        let mut wrapped = String::new();
        for (i, c) in clean.chars().enumerate() {
            if i % 76 == 75 {
                wrapped.push('\n');
            }
            wrapped.push(c);
        }
        let odd = format!("{}QQ==QUJ=D{}=", &clean[..4000], &clean[..1000]);
        for text in [
            &clean,
            &wrapped,
            &odd,
            &"QR==".to_string(),
            &"QQ".to_string(),
        ] {
            let whole = decode_base64(text).unwrap();
            for step in [1, 3, 4, 5, 4096, 65_537, 1 << 20] {
                assert_eq!(
                    decode_in_pieces(text.as_bytes(), step).as_deref(),
                    Some(&whole[..]),
                    "step {step}"
                );
            }
        }
        assert_eq!(decode_base64(&clean).unwrap(), data);
        for bad in [&b"QUJD!"[..], b"QUJD QUJD", "QUJDé".as_bytes()] {
            assert!(decode_base64(std::str::from_utf8(bad).unwrap()).is_err());
            assert_eq!(decode_in_pieces(bad, 2), None);
            assert_eq!(decode_in_pieces(bad, 100), None);
        }
    }

    #[test]
    fn stages_in_a_temporary_file() {
        let dir = std::env::temp_dir();
        let freezer = Freezer::new(&dir.join("no-such-statedir"), None, &Default::default());
        let mut stage = Stage::new(vec![PathBuf::from("/nonexistent"), dir], freezer);
        assert!(!stage.begin(Value::parse(b"\"path\"").unwrap().as_str().unwrap()));
        assert!(matches!(stage.take(), Err(StageError::Empty)));
        assert!(stage.begin(Value::parse(b"\"buf-b64\"").unwrap().as_str().unwrap()));
        let text = "QUJD".repeat(200_000);
        for piece in text.as_bytes().chunks(70_001) {
            stage.data(piece);
        }
        let mut staged = stage.take().unwrap();
        assert_eq!(staged.len, 600_000);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut staged.file, &mut back).unwrap();
        assert_eq!(back, "ABC".repeat(200_000).as_bytes());
        // Invalid base64 is reported; discard forgets.
        assert!(stage.begin(Value::parse(b"'buf-b64'").unwrap().as_str().unwrap()));
        stage.data(b"QUJD*");
        assert!(matches!(stage.take(), Err(StageError::InvalidBase64)));
        assert!(stage.begin(Value::parse(b"\"buf-b64\"").unwrap().as_str().unwrap()));
        stage.discard();
        assert!(matches!(stage.take(), Err(StageError::Empty)));
    }

    #[test]
    fn stages_nothing_while_frozen() {
        let state = crate::commands::testing::TempDir::new();
        std::fs::write(state.path().join("qga.state.isfrozen"), "").unwrap();
        let freezer = Freezer::new(state.path(), None, &Default::default());
        assert!(freezer.is_frozen());
        // The only place it could write is a directory we watch.
        let tmp = crate::commands::testing::TempDir::new();
        let mut stage = Stage::new(vec![tmp.path().to_path_buf()], freezer);
        assert!(stage.begin(Value::parse(b"\"buf-b64\"").unwrap().as_str().unwrap()));
        for _ in 0..100 {
            stage.data(&b"QUJD".repeat(100_000));
        }
        assert!(matches!(stage.take(), Err(StageError::Frozen)));
        assert!(stage.current.is_none());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
