//! `guest-file-open`, `-close`, `-read`, `-write`, `-seek`, `-flush`.
//!
//! Handles are qemu-ga's: integers from 1000 up, the next one persisted in
//! `<statedir>/qga.state` (`[global]\nfd_counter=<n>\n`) before a handle is
//! returned, so ids never repeat across restarts. At most
//! [`MAX_OPEN_HANDLES`] files are open at once; beyond that guest-file-open
//! fails as it would at the process's descriptor limit (EMFILE).
//!
//! Files are plain descriptors, opened non-blocking (so FIFOs cannot hang
//! the agent), without stdio buffering: a write reaches the kernel at
//! once, guest-file-flush has nothing to push, and the read/write
//! switching qemu-ga flushes for needs nothing either.
//!
//! ## Reads: whole up to 4 MiB, streamed beyond
//!
//! A read may ask for 48 MiB ([`MAX_READ_COUNT`]), which qemu-ga holds
//! three times over (data, base64, JSON text). qemu-ga writes `count`
//! before `buf-b64`, so the count must be known before the data is sent.
//! We read up to [`FULL_READ`] bytes (4 MiB) into memory before anything
//! is written: a read that ends within them (every default-size read,
//! anything up to 4 MiB) is answered from that buffer, and a read error
//! there is qemu-ga's error reply, `failed to read file: <strerror>`, with
//! none of the data. A longer read of a regular file takes the count from
//! `fstat` (`min(asked, size - position)`) and then streams the rest in
//! [`CHUNK`]-byte pieces, base64-encoded as they go, so memory stays at a
//! few MiB for a 48 MiB read. Files whose size says nothing (pipes,
//! character devices, procfs) are read into memory up to the asked count,
//! raw (not base64), as qemu-ga does.
//!
//! A streamed read can fail after its count and part of its data are
//! sent: an I/O error (EIO from a failing disk), or the file shrinking
//! under us. A JSON reply cannot be taken back once begun, and sending
//! success with bytes that were never read would be silent corruption.
//! So the reply is broken off instead ([`ReturnWriter::abort`]): the line
//! ends inside the `buf-b64` string, no JSON parser accepts it, and the
//! client reports an error and resynchronises (the next reply is
//! well-formed). The failure is logged.
//!
//! [`ReturnWriter::abort`]: agent_core::response::ReturnWriter::abort

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use agent_core::json::ValueKind;
use agent_core::{ArgError, Args, JsonWriter, LargeStr, Outcome, Reply, SinkError};
use rustix::fs::{Mode, OFlags};

use super::error::CmdResult;
use super::out::member_order;
use super::params::{os_string, text};
use super::stage::{Base64Decoder, Stage, StageError};
use super::{Error, LinuxCommands, Obj, Out};

/// The first handle id (`QGA_PSTATE_DEFAULT_FD_COUNTER`).
pub const FIRST_HANDLE: i64 = 1000;
/// Largest guest-file-read count (`GUEST_FILE_READ_COUNT_MAX`, 48 MiB).
pub const MAX_READ_COUNT: i64 = 48 << 20;
/// guest-file-read's default count (`QGA_READ_COUNT_DEFAULT`).
pub const DEFAULT_READ_COUNT: i64 = 4096;
/// Files open at once.
pub const MAX_OPEN_HANDLES: usize = 256;
/// Staged write data is copied to the file in pieces of this size.
const COPY_CHUNK: usize = 256 << 10;
/// Reads of up to this many bytes (4 MiB) are read whole before the reply
/// begins; longer ones read this much first, then stream.
pub const FULL_READ: usize = 4 << 20;
/// Bytes read and encoded per step of a streamed read (a multiple of 3,
/// so chunks encode without padding).
pub const CHUNK: usize = 48 << 10;

/// A guest-file-open mode, as `fopen` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// `r`, `rb`
    Read,
    /// `w`, `wb`
    Write,
    /// `a`, `ab`
    Append,
    /// `r+`, `rb+`, `r+b`
    ReadUpdate,
    /// `w+`, `wb+`, `w+b`
    WriteUpdate,
    /// `a+`, `ab+`, `a+b`
    AppendUpdate,
}

impl OpenMode {
    /// Parse qemu-ga's mode strings.
    pub fn parse(mode: &str) -> Option<Self> {
        Some(match mode {
            "r" | "rb" => OpenMode::Read,
            "w" | "wb" => OpenMode::Write,
            "a" | "ab" => OpenMode::Append,
            "r+" | "rb+" | "r+b" => OpenMode::ReadUpdate,
            "w+" | "wb+" | "w+b" => OpenMode::WriteUpdate,
            "a+" | "ab+" | "a+b" => OpenMode::AppendUpdate,
            _ => return None,
        })
    }

    fn flags(self) -> OFlags {
        match self {
            OpenMode::Read => OFlags::RDONLY,
            OpenMode::Write => OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            OpenMode::Append => OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
            OpenMode::ReadUpdate => OFlags::RDWR,
            OpenMode::WriteUpdate => OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC,
            OpenMode::AppendUpdate => OFlags::RDWR | OFlags::CREATE | OFlags::APPEND,
        }
    }
}

/// guest-file-seek's `whence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    /// `set` / 0
    Set,
    /// `cur` / 1
    Cur,
    /// `end` / 2
    End,
}

/// `whence` as given: a name (checked by QAPI) or a number (checked by
/// the command, after the handle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WhenceArg {
    Name(Whence),
    Code(i64),
}

fn whence_arg<'a>(args: &Args<'a>) -> Result<WhenceArg, ArgError<'a>> {
    const NAME: &str = "whence";
    let Some(v) = args.value(NAME) else {
        return Err(ArgError::Missing(args.path(NAME)));
    };
    if let Some(s) = v.as_str() {
        return match text(&s).as_str() {
            "set" => Ok(WhenceArg::Name(Whence::Set)),
            "cur" => Ok(WhenceArg::Name(Whence::Cur)),
            "end" => Ok(WhenceArg::Name(Whence::End)),
            _ => Err(args.invalid_value(NAME, s)),
        };
    }
    match v.kind() {
        ValueKind::Integer | ValueKind::Float => v
            .as_i64()
            .map(WhenceArg::Code)
            .ok_or_else(|| args.invalid_type(NAME, "integer")),
        _ => Err(args.invalid_type(NAME, "GuestFileWhence")),
    }
}

/// The open files and the handle counter.
pub struct Files {
    state_file: PathBuf,
    next: i64,
    open: HashMap<i64, File>,
}

/// Write `data` to `file`, qemu-ga's way but without blocking: returns the
/// bytes that went in (`already` counts earlier pieces of the same write)
/// and the error that stopped it, if any. A full pipe ends the write
/// short once something went in (qemu-ga would fail).
fn write_some(file: &mut File, data: &[u8], already: usize) -> (usize, Option<Error>) {
    let mut written = 0usize;
    while let Some(rest) = data.get(written..).filter(|r| !r.is_empty()) {
        match file.write(rest) {
            Ok(0) => break,
            Ok(n) => written = written.saturating_add(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock && written + already > 0 => break,
            Err(e) => return (written, Some(Error::os("failed to write to file", &e))),
        }
    }
    (written, None)
}

/// Copy the first `count` staged bytes into `file`, in pieces.
fn copy_staged(mut staged: File, file: &mut File, count: usize) -> Result<usize, Error> {
    let mut buf = vec![0u8; COPY_CHUNK.min(count)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(buf.len());
        let n = match staged.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::os("failed to read the staged data", &e)),
        };
        let (written, error) = write_some(file, &buf[..n], done);
        done += written;
        if let Some(e) = error {
            return Err(e);
        }
        if written < n {
            break;
        }
    }
    Ok(done)
}

fn handle_not_found(handle: i64) -> Error {
    Error::msg(format!("handle '{handle}' has not been found"))
}

/// Read the counter from a `qga.state` keyfile.
pub fn parse_state(text: &str) -> Option<i64> {
    let mut in_global = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_global = line == "[global]";
        } else if in_global {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "fd_counter" {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    None
}

/// The outcome of filling a buffer from a non-blocking descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadEnd {
    /// The buffer is full.
    Full,
    /// End of file.
    Eof,
    /// No more data for now (EAGAIN).
    WouldBlock,
    /// An error (errno).
    Failed(i32),
}

fn fill(file: &mut File, buf: &mut [u8]) -> (usize, ReadEnd) {
    let mut n = 0usize;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match file.read(rest) {
            Ok(0) => return (n, ReadEnd::Eof),
            Ok(k) => n = n.saturating_add(k),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (n, ReadEnd::WouldBlock),
            Err(e) => return (n, ReadEnd::Failed(e.raw_os_error().unwrap_or(0))),
        }
    }
    (n, ReadEnd::Full)
}

/// Streams base64 through a [`JsonWriter`](agent_core::writer::JsonWriter)
/// string, carrying up to two bytes between pieces.
struct Base64Stream {
    carry: [u8; 2],
    carried: usize,
    text: Vec<u8>,
}

impl Base64Stream {
    fn new() -> Self {
        Base64Stream {
            carry: [0; 2],
            carried: 0,
            text: Vec::new(),
        }
    }

    fn encode_into(&mut self, bytes: &[u8], w: &mut JsonWriter<'_>) -> Result<(), SinkError> {
        self.text
            .resize(base64_simd::STANDARD.encoded_length(bytes.len()), 0);
        let text =
            base64_simd::STANDARD.encode(bytes, base64_simd::Out::from_slice(&mut self.text));
        w.string_chunk(text)
    }

    fn push(&mut self, mut bytes: &[u8], w: &mut JsonWriter<'_>) -> Result<(), SinkError> {
        if self.carried > 0 {
            let need = 3usize.saturating_sub(self.carried).min(bytes.len());
            let mut group = [0u8; 3];
            group[..self.carried].copy_from_slice(&self.carry[..self.carried]);
            group[self.carried..self.carried + need].copy_from_slice(&bytes[..need]);
            bytes = &bytes[need..];
            if self.carried + need < 3 {
                self.carry[..self.carried + need].copy_from_slice(&group[..self.carried + need]);
                self.carried += need;
                return Ok(());
            }
            self.carried = 0;
            self.encode_into(&group, w)?;
        }
        let whole = bytes.len() / 3 * 3;
        let (body, tail) = bytes.split_at(whole);
        if !body.is_empty() {
            self.encode_into(body, w)?;
        }
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carried = tail.len();
        Ok(())
    }

    fn finish(mut self, w: &mut JsonWriter<'_>) -> Result<(), SinkError> {
        if self.carried > 0 {
            let tail = self.carry;
            let n = self.carried;
            self.encode_into(&tail[..n], w)?;
        }
        Ok(())
    }
}

/// Decode base64 the way qemu-ga does (`qbase64_decode`; the rules are
/// [`Base64Decoder`]'s).
pub fn decode_base64(input: &str) -> Result<Vec<u8>, Error> {
    let mut decoder = Base64Decoder::new();
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    decoder.push(input.as_bytes(), &mut out);
    if !decoder.is_valid() {
        return Err(invalid_base64());
    }
    Ok(out)
}

fn invalid_base64() -> Error {
    Error::msg("Base64 data contains invalid characters")
}

impl Files {
    /// The table, with the counter read from `<statedir>/qga.state`.
    pub fn new(statedir: &Path) -> Self {
        let state_file = statedir.join("qga.state");
        let next = std::fs::read_to_string(&state_file)
            .ok()
            .and_then(|t| parse_state(&t))
            .unwrap_or(FIRST_HANDLE);
        Files {
            state_file,
            next,
            open: HashMap::new(),
        }
    }

    fn persist(&self) -> std::io::Result<()> {
        let tmp = self.state_file.with_extension("state.tmp");
        {
            let mut f = File::create(&tmp)?;
            write!(f, "[global]\nfd_counter={}\n", self.next)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.state_file)
    }

    fn get(&mut self, handle: i64) -> Result<&mut File, Error> {
        self.open
            .get_mut(&handle)
            .ok_or_else(|| handle_not_found(handle))
    }

    /// `guest-file-open {path, mode?}` → handle.
    pub fn open<'a>(&mut self, args: &Args<'a>) -> CmdResult<'a> {
        let path = args.str("path")?;
        let mode = args.opt_str("mode")?;
        args.finish()?;
        let mode_text = mode.map_or_else(|| "r".to_owned(), |m| text(&m));
        let path_text = text(&path);
        let Some(open_mode) = OpenMode::parse(&mode_text) else {
            return Err(Error::msg(format!("invalid file open mode '{mode_text}'")).into());
        };
        let failed = || format!("failed to open file '{path_text}' (mode: '{mode_text}')");
        if self.open.len() >= MAX_OPEN_HANDLES {
            return Err(Error::Os(failed(), libc::EMFILE).into());
        }
        let path = os_string(&path);
        let flags = open_mode.flags() | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd: OwnedFd = if flags.contains(OFlags::CREATE) {
            // Create exclusively so a new file gets 0666 whatever the
            // umask; an existing one keeps its permissions.
            match rustix::fs::open(&path, flags | OFlags::EXCL, Mode::empty()) {
                Ok(fd) => {
                    if let Err(e) = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o666)) {
                        let _ = std::fs::remove_file(&path);
                        return Err(Error::errno(
                            format!(
                                "failed to set permission 0666 on new file '{path_text}' (mode: '{mode_text}')"
                            ),
                            e,
                        ).into());
                    }
                    fd
                }
                Err(rustix::io::Errno::EXIST) => {
                    rustix::fs::open(&path, flags - OFlags::CREATE, Mode::empty())
                        .map_err(|e| Error::errno(failed(), e))?
                }
                Err(e) => return Err(Error::errno(failed(), e).into()),
            }
        } else {
            rustix::fs::open(&path, flags, Mode::empty()).map_err(|e| Error::errno(failed(), e))?
        };
        let handle = self.next;
        self.next = self.next.saturating_add(1);
        if self.persist().is_err() {
            return Err(Error::msg("failed to commit persistent state to disk").into());
        }
        self.open.insert(handle, File::from(fd));
        Ok(Out::Int(handle))
    }

    /// `guest-file-close {handle}`.
    pub fn close<'a>(&mut self, args: &Args<'a>) -> CmdResult<'a> {
        let handle = args.int("handle")?;
        args.finish()?;
        match self.open.remove(&handle) {
            Some(_) => Ok(Out::Unit),
            None => Err(handle_not_found(handle).into()),
        }
    }

    /// `guest-file-flush {handle}`: writes are not buffered, so only the
    /// handle is checked.
    pub fn flush<'a>(&mut self, args: &Args<'a>) -> CmdResult<'a> {
        let handle = args.int("handle")?;
        args.finish()?;
        self.get(handle)?;
        Ok(Out::Unit)
    }

    /// `guest-file-write {handle, buf-b64, count?}` → `{count, eof}`.
    /// A large `buf-b64` comes decoded from `stage` (see [`super::stage`]).
    pub fn write<'a>(&mut self, args: &Args<'a>, stage: &mut Stage) -> CmdResult<'a> {
        let handle = args.int("handle")?;
        let data = args.large_str("buf-b64")?;
        let count = args.opt_int("count")?;
        args.finish()?;
        let file = self.get(handle)?;
        let check_count = |len: usize| match count {
            None => Ok(len),
            Some(c) => usize::try_from(c)
                .ok()
                .filter(|&c| c <= len)
                .ok_or_else(|| Error::msg(format!("value '{c}' is invalid for argument count"))),
        };
        let written = match data {
            LargeStr::Inline(data) => {
                let data = decode_base64(&text(&data))?;
                let count = check_count(data.len())?;
                let (written, error) = write_some(file, &data[..count], 0);
                error.map_or(Ok(written), Err)?
            }
            LargeStr::Spilled => {
                let staged = stage.take().map_err(|e| match e {
                    StageError::InvalidBase64 => invalid_base64(),
                    StageError::Io(e) => Error::os("failed to stage the data to write", &e),
                    StageError::Empty => Error::msg("the data to write was lost"),
                    StageError::Frozen => Error::msg(
                        "the data to write arrived while filesystems were frozen and was dropped",
                    ),
                })?;
                let len = usize::try_from(staged.len).unwrap_or(usize::MAX);
                let count = check_count(len)?;
                copy_staged(staged.file, file, count)?
            }
        };
        Ok(Obj::new()
            .int("count", i64::try_from(written).unwrap_or(i64::MAX))
            .bool("eof", false)
            .into())
    }

    /// `guest-file-seek {handle, offset, whence}` → `{position, eof}`.
    pub fn seek<'a>(&mut self, args: &Args<'a>) -> CmdResult<'a> {
        let handle = args.int("handle")?;
        let offset = args.int("offset")?;
        let whence = whence_arg(args)?;
        args.finish()?;
        let file = self.get(handle)?;
        let whence = match whence {
            WhenceArg::Name(w) => w,
            WhenceArg::Code(0) => Whence::Set,
            WhenceArg::Code(1) => Whence::Cur,
            WhenceArg::Code(2) => Whence::End,
            WhenceArg::Code(n) => return Err(Error::msg(format!("invalid whence code {n}")).into()),
        };
        let pos = match whence {
            Whence::Set => match u64::try_from(offset) {
                Ok(o) => rustix::fs::seek(&*file, rustix::fs::SeekFrom::Start(o)),
                Err(_) => Err(rustix::io::Errno::INVAL),
            },
            Whence::Cur => rustix::fs::seek(&*file, rustix::fs::SeekFrom::Current(offset)),
            Whence::End => rustix::fs::seek(&*file, rustix::fs::SeekFrom::End(offset)),
        }
        .map_err(|e| Error::errno("failed to seek file", e))?;
        Ok(Obj::new()
            .int("position", i64::try_from(pos).unwrap_or(i64::MAX))
            .bool("eof", false)
            .into())
    }

    /// `guest-file-read {handle, count?}` → `{count, buf-b64, eof}`,
    /// streamed (see the module docs).
    pub fn read<'a>(&mut self, args: &Args<'a>, reply: Reply<'_>) -> Outcome<'a, LinuxCommands> {
        let handle = args.int("handle")?;
        let count = args.opt_int("count")?;
        args.finish()?;
        let file = self.get(handle)?;
        let count = count.unwrap_or(DEFAULT_READ_COUNT);
        if !(0..=MAX_READ_COUNT).contains(&count) {
            Err(Error::msg(format!(
                "value '{count}' is invalid for argument count"
            )))?;
        }
        let mut plan = plan_read(file, usize::try_from(count).unwrap_or(0))?;
        let mut w = reply.ok()?;
        w.begin_object()?;
        for name in member_order(["count", "buf-b64", "eof"]) {
            w.key(name)?;
            match name {
                "count" => w.u64(plan.total as u64)?,
                "eof" => w.bool(plan.eof)?,
                _ => {
                    w.begin_string()?;
                    let mut stream = Base64Stream::new();
                    stream.push(&plan.head, &mut w)?;
                    if let Some(file) = plan.stream_from.take() {
                        let mut left = plan.total.saturating_sub(plan.head.len());
                        let mut buf = vec![0u8; CHUNK.min(left)];
                        let mut file = file;
                        while left > 0 {
                            let want = left.min(buf.len());
                            let piece = &mut buf[..want];
                            let (n, end) = fill(&mut file, piece);
                            if n < want && end != ReadEnd::Full {
                                // The count is sent and cannot be met:
                                // no success with bytes never read.
                                let sent = plan.total - left + n;
                                log::warn!(
                                    "guest-file-read broken off after {sent} of {} bytes: {}",
                                    plan.total,
                                    match end {
                                        ReadEnd::Failed(errno) => super::error::strerror(errno),
                                        _ => "the file is shorter than its size said".into(),
                                    }
                                );
                                if n > 0 {
                                    stream.push(&piece[..n], &mut w)?;
                                }
                                return Ok(w.abort()?);
                            }
                            stream.push(piece, &mut w)?;
                            left -= want;
                        }
                    }
                    stream.finish(&mut w)?;
                    w.end_string()?;
                }
            }
        }
        w.end_object()?;
        Ok(w.finish()?)
    }
}

/// What a read answers: the bytes already in memory, and for a streamed
/// read the descriptor to continue from.
struct ReadPlan {
    head: Vec<u8>,
    total: usize,
    eof: bool,
    stream_from: Option<File>,
}

fn plan_read(file: &mut File, count: usize) -> Result<ReadPlan, Error> {
    let mut head = vec![0u8; count.min(FULL_READ)];
    let (n, end) = fill(file, &mut head);
    head.truncate(n);
    match end {
        ReadEnd::Failed(errno) => return Err(Error::Os("failed to read file".into(), errno)),
        ReadEnd::WouldBlock if n == 0 => {
            return Err(Error::Os("failed to read file".into(), libc::EAGAIN))
        }
        ReadEnd::Eof | ReadEnd::WouldBlock => {
            return Ok(ReadPlan {
                head,
                total: n,
                eof: end == ReadEnd::Eof,
                stream_from: None,
            })
        }
        ReadEnd::Full => {}
    }
    if n >= count {
        return Ok(ReadPlan {
            head,
            total: n,
            eof: false,
            stream_from: None,
        });
    }
    let remaining = count - n;
    let regular_size = rustix::fs::fstat(&*file)
        .ok()
        .filter(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
        })
        .and_then(|st| u64::try_from(st.st_size).ok());
    let position = rustix::fs::seek(&*file, rustix::fs::SeekFrom::Current(0)).ok();
    if let (Some(size), Some(pos)) = (regular_size, position) {
        if size >= pos {
            let avail = usize::try_from(size - pos).unwrap_or(usize::MAX);
            let more = remaining.min(avail);
            let stream = file
                .try_clone()
                .map_err(|e| Error::os("failed to read file", &e))?;
            return Ok(ReadPlan {
                total: n + more,
                eof: avail < remaining,
                stream_from: Some(stream),
                head,
            });
        }
    }
    // No trustworthy size: read the rest into memory, raw.
    head.resize(count, 0);
    let (more, end) = fill(file, &mut head[n..]);
    head.truncate(n + more);
    if let ReadEnd::Failed(errno) = end {
        return Err(Error::Os("failed to read file".into(), errno));
    }
    Ok(ReadPlan {
        total: head.len(),
        eof: end == ReadEnd::Eof,
        head,
        stream_from: None,
    })
}

#[cfg(test)]
mod tests;
