use std::io::Write as _;

use base64::Engine as _;

use super::super::testing::Harness;
use super::*;

fn open(t: &mut Harness, path: &Path, mode: &str) -> i64 {
    let v = t.json(&format!(
        r#"{{"execute": "guest-file-open", "arguments": {{"path": "{}", "mode": "{mode}"}}}}"#,
        path.display()
    ));
    v["return"].as_i64().unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn qemu_file_ops() {
    let mut t = Harness::new();
    let path = t.dir.path().join("foo");
    let h = open(&mut t, &path, "w+");
    assert_eq!(h, 1000);
    assert_eq!(
        std::fs::read_to_string(t.dir.path().join("qga.state")).unwrap(),
        "[global]\nfd_counter=1001\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666
    );
    // "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09hello" is qemu's 14-byte sample.
    let b64 = "aGVsbG8gd29ybGQKAA==";
    assert_eq!(
        t.call(&format!(r#"{{"execute": "guest-file-write", "arguments": {{"handle": {h}, "buf-b64": "{b64}"}}}}"#)),
        r#"{"return": {"count": 13, "eof": false}}"#
    );
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-flush", "arguments": {{"handle": {h}}}}}"#
        )),
        r#"{"return": {}}"#
    );
    // Read without seek: at the end.
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}}}}}"#
        )),
        r#"{"return": {"count": 0, "buf-b64": "", "eof": true}}"#
    );
    assert_eq!(
        t.call(&format!(r#"{{"execute": "guest-file-seek", "arguments": {{"handle": {h}, "offset": 0, "whence": "set"}}}}"#)),
        r#"{"return": {"eof": false, "position": 0}}"#
    );
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}}}}}"#
        )),
        format!(r#"{{"return": {{"count": 13, "buf-b64": "{b64}", "eof": true}}}}"#)
    );
    assert_eq!(
        t.call(&format!(r#"{{"execute": "guest-file-seek", "arguments": {{"handle": {h}, "offset": 6, "whence": 0}}}}"#)),
        r#"{"return": {"eof": false, "position": 6}}"#
    );
    // Exactly the remaining bytes: no EOF yet (as stdio reports it).
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": 7}}}}"#
        )),
        r#"{"return": {"count": 7, "buf-b64": "d29ybGQKAA==", "eof": false}}"#
    );
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": 0}}}}"#
        )),
        r#"{"return": {"count": 0, "buf-b64": "", "eof": false}}"#
    );
    assert_eq!(
        t.call(&format!(r#"{{"execute": "guest-file-seek", "arguments": {{"handle": {h}, "offset": -3, "whence": "end"}}}}"#)),
        r#"{"return": {"eof": false, "position": 10}}"#
    );
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-close", "arguments": {{"handle": {h}}}}}"#
        )),
        r#"{"return": {}}"#
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world\n\0");
    for cmd in ["guest-file-close", "guest-file-flush", "guest-file-read"] {
        assert_eq!(
            t.error(&format!(
                r#"{{"execute": "{cmd}", "arguments": {{"handle": {h}}}}}"#
            )),
            "handle '1000' has not been found"
        );
    }
    // Handles keep counting, also across restarts.
    let h2 = open(&mut t, &path, "r");
    assert_eq!(h2, 1001);
    let mut again = Harness::with_config(
        super::super::testing::TempDir::new(),
        super::super::testing::config(t.dir.path()),
    );
    assert_eq!(open(&mut again, &path, "a"), 1002);
}

#[test]
fn open_errors() {
    let mut t = Harness::new();
    assert_eq!(
        t.error(r#"{"execute": "guest-file-open", "arguments": {"path": "/x", "mode": "rw"}}"#),
        "invalid file open mode 'rw'"
    );
    assert_eq!(
        t.error(r#"{"execute": "guest-file-open", "arguments": {"path": "/nonexistent/f1"}}"#),
        "failed to open file '/nonexistent/f1' (mode: 'r'): No such file or directory"
    );
    assert_eq!(
        t.error(r#"{"execute": "guest-file-open", "arguments": {"mode": "r"}}"#),
        "Parameter 'path' is missing"
    );
    assert_eq!(
        t.error(r#"{"execute": "guest-file-open", "arguments": {"path": "/x", "mode": 1}}"#),
        "Invalid parameter type for 'mode', expected: string"
    );
    assert_eq!(
        t.error(r#"{"execute": "guest-file-open", "arguments": {"path": "/x", "z": 1}}"#),
        "Parameter 'z' is unexpected"
    );
    for mode in [
        "r", "rb", "w", "wb", "a", "ab", "r+", "rb+", "r+b", "w+", "wb+", "w+b", "a+", "ab+", "a+b",
    ] {
        assert!(OpenMode::parse(mode).is_some(), "{mode}");
    }
}

#[test]
fn handle_limit() {
    let mut t = Harness::new();
    let path = t.dir.path().join("f");
    std::fs::write(&path, b"x").unwrap();
    for _ in 0..MAX_OPEN_HANDLES {
        open(&mut t, &path, "r");
    }
    assert_eq!(
        t.error(&format!(
            r#"{{"execute": "guest-file-open", "arguments": {{"path": "{}"}}}}"#,
            path.display()
        )),
        format!(
            "failed to open file '{}' (mode: 'r'): Too many open files",
            path.display()
        )
    );
}

#[test]
fn write_and_read_validation() {
    let mut t = Harness::new();
    let path = t.dir.path().join("f");
    let h = open(&mut t, &path, "w+");
    let call = |t: &mut Harness, args: &str| {
        t.error(&format!(
            r#"{{"execute": "guest-file-write", "arguments": {args}}}"#
        ))
    };
    assert_eq!(
        call(&mut t, &format!(r#"{{"handle": {h}, "buf-b64": "Q!"}}"#)),
        "Base64 data contains invalid characters"
    );
    assert_eq!(
        call(
            &mut t,
            &format!(r#"{{"handle": {h}, "buf-b64": "QUJDRA", "count": 5}}"#)
        ),
        "value '5' is invalid for argument count"
    );
    assert_eq!(
        call(
            &mut t,
            &format!(r#"{{"handle": {h}, "buf-b64": "QUJD", "count": -1}}"#)
        ),
        "value '-1' is invalid for argument count"
    );
    assert_eq!(
        call(&mut t, r#"{"handle": 5, "buf-b64": "!"}"#),
        "handle '5' has not been found"
    );
    assert_eq!(
        call(&mut t, &format!(r#"{{"handle": {h}}}"#)),
        "Parameter 'buf-b64' is missing"
    );
    let read = |t: &mut Harness, args: &str| {
        t.error(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {args}}}"#
        ))
    };
    assert_eq!(
        read(&mut t, r#"{"handle": 5, "count": -1}"#),
        "handle '5' has not been found"
    );
    assert_eq!(
        read(&mut t, &format!(r#"{{"handle": {h}, "count": -1}}"#)),
        "value '-1' is invalid for argument count"
    );
    assert_eq!(
        read(&mut t, &format!(r#"{{"handle": {h}, "count": 50331649}}"#)),
        "value '50331649' is invalid for argument count"
    );
    assert_eq!(
        read(&mut t, &format!(r#"{{"handle": {h}, "count": 1.5}}"#)),
        "Invalid parameter type for 'count', expected: integer"
    );
    // A write with count writes a prefix.
    assert_eq!(
        t.call(&format!(r#"{{"execute": "guest-file-write", "arguments": {{"handle": {h}, "buf-b64": "QUJDRA==", "count": 2}}}}"#)),
        r#"{"return": {"count": 2, "eof": false}}"#
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"AB");
    let seek = |t: &mut Harness, args: &str| {
        t.error(&format!(
            r#"{{"execute": "guest-file-seek", "arguments": {args}}}"#
        ))
    };
    assert_eq!(
        seek(
            &mut t,
            &format!(r#"{{"handle": {h}, "offset": 0, "whence": 5}}"#)
        ),
        "invalid whence code 5"
    );
    assert_eq!(
        seek(
            &mut t,
            &format!(r#"{{"handle": {h}, "offset": 0, "whence": "foo"}}"#)
        ),
        "Parameter 'whence' does not accept value 'foo'"
    );
    assert_eq!(
        seek(
            &mut t,
            &format!(r#"{{"handle": {h}, "offset": 0, "whence": true}}"#)
        ),
        "Invalid parameter type for 'whence', expected: GuestFileWhence"
    );
    assert_eq!(
        seek(&mut t, &format!(r#"{{"handle": {h}, "offset": 0}}"#)),
        "Parameter 'whence' is missing"
    );
    assert_eq!(
        seek(&mut t, r#"{"whence": 3, "foo": 1}"#),
        "Parameter 'handle' is missing"
    );
    assert_eq!(
        seek(
            &mut t,
            &format!(r#"{{"handle": {h}, "offset": -10, "whence": 0}}"#)
        ),
        "failed to seek file: Invalid argument"
    );
}

#[test]
fn glib_base64() {
    let d = |s: &str| decode_base64(s).unwrap();
    assert_eq!(d("QQ"), b"");
    assert_eq!(d("QQ="), b"");
    assert_eq!(d("QQ==QQ=="), b"AA");
    assert_eq!(d("QUJD\nRA=="), b"ABCD");
    assert_eq!(d("QUJ=D").len(), 2);
    assert_eq!(d("QR==").len(), 1);
    assert_eq!(d("==QQ").len(), 3);
    assert_eq!(d(""), b"");
}

#[test]
fn base64_stream_matches_one_shot() {
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 3) as u8).collect();
    for split in [
        [1usize, 1, 5],
        [2, 2, 2],
        [0, 3, 7],
        [999, 1, 0],
        [4, 0, 11],
    ] {
        let mut out = Vec::new();
        let mut w = agent_core::writer::JsonWriter::new(&mut out);
        let mut s = Base64Stream::new();
        let mut rest = &data[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = split[i % 3].min(rest.len()).max(1);
            s.push(&rest[..n], &mut w).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        s.finish(&mut w).unwrap();
        assert_eq!(
            out,
            base64::engine::general_purpose::STANDARD
                .encode(&data)
                .as_bytes()
        );
    }
}

/// A sink that checks the reply to a big read without keeping it.
struct CheckingSink {
    base: usize,
    total: usize,
    prefix: Vec<u8>,
    decoded: usize,
    quad: Vec<u8>,
    in_string: bool,
}

impl embedded_io::ErrorType for CheckingSink {
    type Error = std::convert::Infallible;
}

impl embedded_io::Write for CheckingSink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.total += buf.len();
        for &b in buf {
            if self.prefix.len() < 64 {
                self.prefix.push(b);
            }
            if self.in_string {
                if b == b'"' {
                    self.in_string = false;
                    continue;
                }
                self.quad.push(b);
                if self.quad.len() == 4 {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(&self.quad)
                        .unwrap();
                    for (k, byte) in bytes.iter().enumerate() {
                        assert_eq!(*byte, pattern(self.base + self.decoded + k));
                    }
                    self.decoded += bytes.len();
                    self.quad.clear();
                }
            } else if self.prefix.ends_with(b"\"buf-b64\": \"")
                && self.decoded == 0
                && self.quad.is_empty()
            {
                self.in_string = true;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

fn write_pattern(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    let block: Vec<u8> = (0..251 * 256).map(pattern).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

fn big_read(t: &mut Harness, h: i64, count: i64, base: usize) -> CheckingSink {
    let mut sink = CheckingSink {
        base,
        total: 0,
        prefix: Vec::new(),
        decoded: 0,
        quad: Vec::new(),
        in_string: false,
    };
    let req = format!(
        r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": {count}}}}}"#
    );
    t.agent.feed(req.as_bytes(), &mut sink).unwrap();
    t.agent.feed(b"\n", &mut sink).unwrap();
    sink
}

#[test]
fn read_48_mib_streams() {
    let mut t = Harness::new();
    let path = t.dir.path().join("big");
    let len = (MAX_READ_COUNT as usize) + 1000;
    write_pattern(&path, len);
    let h = open(&mut t, &path, "r");
    let sink = big_read(&mut t, h, MAX_READ_COUNT, 0);
    assert_eq!(
        &sink.prefix[..38],
        b"{\"return\": {\"count\": 50331648, \"buf-b6"
    );
    assert_eq!(sink.decoded, MAX_READ_COUNT as usize);
    // 48 MiB × 4/3 plus the envelope.
    let envelope = "{\"return\": {\"count\": 50331648, \"buf-b64\": \"\", \"eof\": false}}\n".len();
    assert_eq!(sink.total, (MAX_READ_COUNT as usize) / 3 * 4 + envelope);
    // The rest: 1000 bytes and EOF.
    let out = t.json(&format!(
        r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": 5000}}}}"#
    ));
    assert_eq!(out["return"]["count"], 1000);
    assert_eq!(out["return"]["eof"], true);
    // A streamed read that reaches the end reports EOF.
    t.call(&format!(r#"{{"execute": "guest-file-seek", "arguments": {{"handle": {h}, "offset": -200000, "whence": "end"}}}}"#));
    let sink = big_read(&mut t, h, 300000, len - 200000);
    assert!(
        sink.prefix
            .starts_with(b"{\"return\": {\"count\": 200000, "),
        "{}",
        String::from_utf8_lossy(&sink.prefix)
    );
    assert_eq!(sink.decoded, 200000);
}

#[test]
fn read_from_procfs_is_buffered() {
    // /proc files report size 0; a large count must still read them.
    let mut t = Harness::new();
    let h = open(&mut t, Path::new("/proc/self/maps"), "r");
    let v = t.json(&format!(
        r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": 1000000}}}}"#
    ));
    assert!(v["return"]["count"].as_i64().unwrap() > 0);
    assert_eq!(v["return"]["eof"], true);
}

#[test]
fn fifo_does_not_hang() {
    let mut t = Harness::new();
    let path = t.dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let h = open(&mut t, &path, "r");
    // No writer: end of file.
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}}}}}"#
        )),
        r#"{"return": {"count": 0, "buf-b64": "", "eof": true}}"#
    );
    let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // A writer but no data: qemu-ga's EAGAIN error.
    assert_eq!(
        t.error(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}}}}}"#
        )),
        "failed to read file: Resource temporarily unavailable"
    );
    writer.write_all(b"hi").unwrap();
    assert_eq!(
        t.call(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}}}}}"#
        )),
        r#"{"return": {"count": 2, "buf-b64": "aGk=", "eof": false}}"#
    );
}

/// Peak memory of a 48 MiB read: run alone with
/// `cargo test -p agent-linux --lib peak_rss -- --ignored --nocapture`.
#[test]
#[ignore]
fn peak_rss_of_a_48_mib_read() {
    let hwm = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap()
            .to_owned()
    };
    let mut t = Harness::new();
    let path = t.dir.path().join("big");
    write_pattern(&path, MAX_READ_COUNT as usize);
    eprintln!("before: {}", hwm());
    let h = open(&mut t, &path, "r");
    let sink = big_read(&mut t, h, MAX_READ_COUNT, 0);
    assert_eq!(sink.decoded, MAX_READ_COUNT as usize);
    eprintln!("after 48 MiB read: {}", hwm());
}

/// A reply sink that shrinks the file being read once the reply has begun:
/// the streamed part of the read then comes up short.
struct ShrinkOnFirstWrite {
    out: Vec<u8>,
    path: PathBuf,
    to: u64,
    done: bool,
}

impl embedded_io::ErrorType for ShrinkOnFirstWrite {
    type Error = std::convert::Infallible;
}

impl embedded_io::Write for ShrinkOnFirstWrite {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if !self.done {
            self.done = true;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .unwrap();
            f.set_len(self.to).unwrap();
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[test]
fn a_streamed_read_that_comes_up_short_is_broken_off_not_padded() {
    let mut t = Harness::new();
    let path = t.dir.path().join("shrinks");
    let size = FULL_READ + 4 * CHUNK + 7;
    std::fs::write(&path, vec![b'x'; size]).unwrap();
    let h = open(&mut t, &path, "r");
    let mut sink = ShrinkOnFirstWrite {
        out: Vec::new(),
        path: path.clone(),
        to: (FULL_READ + CHUNK + 5) as u64,
        done: false,
    };
    let req = format!(
        r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": {size}}}}}"#
    );
    t.agent.feed(req.as_bytes(), &mut sink).unwrap();
    let out = sink.out;
    // The count was sent before the data; the line ends inside buf-b64.
    let head = format!("{{\"return\": {{\"count\": {size}, \"buf-b64\": \"");
    assert!(out.starts_with(head.as_bytes()));
    assert_eq!(out.last(), Some(&b'\n'));
    assert!(serde_json::from_slice::<serde_json::Value>(&out).is_err());
    let body = &out[head.len()..out.len() - 1];
    assert!(!body.contains(&b'"'), "the string was closed");
    // Only bytes that were read were sent: all of them 'x', no zeros.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&body[..body.len() / 4 * 4])
        .unwrap();
    assert!(decoded.len() <= FULL_READ + CHUNK + 5);
    assert!(decoded.iter().all(|&b| b == b'x'));
    // The agent answers the next request normally.
    assert_eq!(t.call(r#"{"execute": "guest-ping"}"#), r#"{"return": {}}"#);
}

#[test]
fn reads_up_to_four_mib_are_whole_before_the_reply() {
    // A read error inside the first FULL_READ bytes is an error reply with
    // no data: a directory's descriptor reads EISDIR.
    let mut t = Harness::new();
    let dir = t.dir.path().to_path_buf();
    let h = open(&mut t, &dir, "r");
    assert_eq!(
        t.error(&format!(
            r#"{{"execute": "guest-file-read", "arguments": {{"handle": {h}, "count": {FULL_READ}}}}}"#
        )),
        "failed to read file: Is a directory"
    );
}
