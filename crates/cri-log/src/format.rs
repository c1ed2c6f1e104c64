//! Encoding raw container output into CRI log entries.
//!
//! One entry per line: `<timestamp> <stdout|stderr> <P|F> <content>\n`. The rules
//! follow containerd's CRI logger (`pkg/cri/io/logger.go`) so logs look the same
//! as under containerd's own CRI plugin:
//! - a line ending in `\n` becomes an `F` entry; a `\r` right before the `\n` is
//!   dropped as well (containerd strips `\r\n`); a lone `\r` is content;
//! - a line longer than the max line size is cut into `P` entries of exactly
//!   that many bytes, by bytes (a UTF-8 character may be split), and the last
//!   piece is the `F` entry; a line of exactly the max size is one `F` entry;
//! - output that ends mid-line ends with a `P` entry; nothing is written for an
//!   empty remainder;
//! - an empty line is an `F` entry with empty content (`... F \n`).
//!
//! [`LineEncoder`] is pure: the caller hands it chunks as they were read and the
//! time to stamp, and gets whole entries back, so chunk boundaries never show in
//! the output.

use std::fmt;

use crate::timestamp::Timestamp;

/// containerd's default `max_container_log_line_size`: 16 KiB.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Which output of the container an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The word used in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an entry ends its line (`F`) or the line continues (`P`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    Partial,
    Full,
}

impl Tag {
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Partial => "P",
            Tag::Full => "F",
        }
    }
}

/// Appends one CRI log entry (with its trailing `\n`) to `out`. `content` must
/// not contain `\n`; [`LineEncoder`] guarantees that.
pub fn write_entry(out: &mut Vec<u8>, ts: Timestamp, stream: Stream, tag: Tag, content: &[u8]) {
    ts.write_rfc3339_nano(out);
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Turns one stream's raw output into CRI entries, keeping an unfinished line
/// between calls. Memory is bounded by the max line size (unless it is 0).
#[derive(Debug)]
pub struct LineEncoder {
    stream: Stream,
    /// 0 means no limit, like containerd's non-positive `max_container_log_line_size`.
    max_line: usize,
    /// Content of the current line not yet written; never longer than `max_line`.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: content, unless the next byte is `\n`.
    pending_cr: bool,
}

impl LineEncoder {
    /// `max_line` of 0 disables splitting.
    pub fn new(stream: Stream, max_line: usize) -> Self {
        Self {
            stream,
            max_line,
            line: Vec::new(),
            pending_cr: false,
        }
    }

    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Bytes of an unfinished line held back (not counting a held `\r`).
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// Encodes `chunk`, appending every entry it completes to `out`, all stamped
    /// with `ts`.
    pub fn push(&mut self, mut chunk: &[u8], ts: Timestamp, out: &mut Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                self.emit(Tag::Full, ts, out);
                chunk = &chunk[1..];
            } else {
                self.append(b"\r", ts, out);
            }
        }
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            let content = &chunk[..nl];
            self.append(content.strip_suffix(b"\r").unwrap_or(content), ts, out);
            self.emit(Tag::Full, ts, out);
            chunk = &chunk[nl + 1..];
        }
        if let Some(rest) = chunk.strip_suffix(b"\r") {
            self.pending_cr = true;
            chunk = rest;
        }
        self.append(chunk, ts, out);
    }

    /// The stream ended: writes what is left of an unfinished line as `P`.
    pub fn finish(&mut self, ts: Timestamp, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            self.append(b"\r", ts, out);
        }
        if !self.line.is_empty() {
            self.emit(Tag::Partial, ts, out);
        }
    }

    /// Adds line content, writing a `P` entry of exactly `max_line` bytes each
    /// time the line grows past the limit.
    fn append(&mut self, mut data: &[u8], ts: Timestamp, out: &mut Vec<u8>) {
        if self.max_line == 0 {
            self.line.extend_from_slice(data);
            return;
        }
        loop {
            let room = self.max_line - self.line.len();
            if data.len() <= room {
                self.line.extend_from_slice(data);
                return;
            }
            self.line.extend_from_slice(&data[..room]);
            data = &data[room..];
            self.emit(Tag::Partial, ts, out);
        }
    }

    fn emit(&mut self, tag: Tag, ts: Timestamp, out: &mut Vec<u8>) {
        write_entry(out, ts, self.stream, tag, &self.line);
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-28T10:00:00.123456789Z";

    fn ts() -> Timestamp {
        Timestamp::from_unix(1_795_860_000, 123_456_789).unwrap()
    }

    /// Encodes `chunks` then finishes; returns the exact bytes.
    fn encode_raw(max: usize, chunks: &[&[u8]]) -> Vec<u8> {
        let mut enc = LineEncoder::new(Stream::Stdout, max);
        let mut out = Vec::new();
        for c in chunks {
            enc.push(c, ts(), &mut out);
        }
        enc.finish(ts(), &mut out);
        out
    }

    /// Like [`encode_raw`], as entries without the timestamp.
    fn encode(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let text = String::from_utf8(encode_raw(max, chunks)).unwrap();
        let prefix = format!("{TS} ");
        text.split_inclusive('\n')
            .map(|l| l.strip_prefix(&prefix).unwrap().to_string())
            .collect()
    }

    /// (name, max line, chunks, entries without timestamp)
    type Case<'a> = (&'a str, usize, Vec<&'a [u8]>, Vec<String>);

    #[test]
    fn table() {
        let long = "a".repeat(10);
        let cases: Vec<Case> = vec![
            ("short", 8, vec![b"hi\n"], vec!["stdout F hi\n".into()]),
            (
                "two lines",
                8,
                vec![b"a\nb\n"],
                vec!["stdout F a\n".into(), "stdout F b\n".into()],
            ),
            ("empty line", 8, vec![b"\n"], vec!["stdout F \n".into()]),
            (
                "empty lines",
                8,
                vec![b"\n\n"],
                vec!["stdout F \n".into(), "stdout F \n".into()],
            ),
            (
                "spaces kept",
                16,
                vec![b"  a b  \n"],
                vec!["stdout F   a b  \n".into()],
            ),
            ("nothing", 8, vec![], vec![]),
            ("empty chunk", 8, vec![b""], vec![]),
            (
                "trailing partial",
                8,
                vec![b"abc"],
                vec!["stdout P abc\n".into()],
            ),
            (
                "line then partial",
                8,
                vec![b"x\nabc"],
                vec!["stdout F x\n".into(), "stdout P abc\n".into()],
            ),
            (
                "exact limit",
                4,
                vec![b"abcd\n"],
                vec!["stdout F abcd\n".into()],
            ),
            (
                "limit plus one",
                4,
                vec![b"abcde\n"],
                vec!["stdout P abcd\n".into(), "stdout F e\n".into()],
            ),
            (
                "twice limit",
                4,
                vec![b"abcdefgh\n"],
                vec!["stdout P abcd\n".into(), "stdout F efgh\n".into()],
            ),
            (
                "long split",
                4,
                vec![long.as_bytes(), b"\n"],
                vec![
                    "stdout P aaaa\n".into(),
                    "stdout P aaaa\n".into(),
                    "stdout F aa\n".into(),
                ],
            ),
            (
                "exact limit at eof",
                4,
                vec![b"abcd"],
                vec!["stdout P abcd\n".into()],
            ),
            (
                "over limit at eof",
                4,
                vec![b"abcdef"],
                vec!["stdout P abcd\n".into(), "stdout P ef\n".into()],
            ),
            (
                "crlf stripped",
                8,
                vec![b"hi\r\n"],
                vec!["stdout F hi\n".into()],
            ),
            ("crlf only", 8, vec![b"\r\n"], vec!["stdout F \n".into()]),
            (
                "lone cr kept",
                8,
                vec![b"a\rb\n"],
                vec!["stdout F a\rb\n".into()],
            ),
            (
                "cr cr lf",
                8,
                vec![b"a\r\r\n"],
                vec!["stdout F a\r\n".into()],
            ),
            ("cr at eof", 8, vec![b"a\r"], vec!["stdout P a\r\n".into()]),
            (
                "crlf at limit",
                4,
                vec![b"abcd\r\n"],
                vec!["stdout F abcd\n".into()],
            ),
            (
                "cr over limit",
                4,
                vec![b"abcd\rx\n"],
                vec!["stdout P abcd\n".into(), "stdout F \rx\n".into()],
            ),
            (
                "no limit",
                0,
                vec![long.as_bytes(), b"\n"],
                vec![format!("stdout F {long}\n")],
            ),
            (
                "utf8 split by bytes",
                2,
                vec!["é!\n".as_bytes()],
                vec!["stdout P é\n".into(), "stdout F !\n".into()],
            ),
        ];
        for (name, max, chunks, want) in cases {
            assert_eq!(encode(max, &chunks), want, "case {name}");
        }
    }

    #[test]
    fn utf8_split_bytes_are_exact() {
        let mut enc = LineEncoder::new(Stream::Stderr, 1);
        let mut out = Vec::new();
        enc.push("é\n".as_bytes(), ts(), &mut out);
        let mut want = Vec::new();
        write_entry(&mut want, ts(), Stream::Stderr, Tag::Partial, &[0xc3]);
        write_entry(&mut want, ts(), Stream::Stderr, Tag::Full, &[0xa9]);
        assert_eq!(out, want);
    }

    #[test]
    fn exact_bytes_of_one_entry() {
        let mut out = Vec::new();
        write_entry(&mut out, ts(), Stream::Stderr, Tag::Full, b"hello");
        assert_eq!(out, format!("{TS} stderr F hello\n").into_bytes());
    }

    #[test]
    fn partial_line_is_held_between_chunks() {
        let mut enc = LineEncoder::new(Stream::Stdout, 8);
        let mut out = Vec::new();
        enc.push(b"hel", ts(), &mut out);
        assert!(out.is_empty());
        assert_eq!(enc.buffered(), 3);
        enc.push(b"lo\r", ts(), &mut out);
        assert!(out.is_empty());
        enc.push(b"\nx", ts(), &mut out);
        assert_eq!(out, format!("{TS} stdout F hello\n").into_bytes());
        assert_eq!(enc.buffered(), 1);
    }

    #[test]
    fn interleaved_streams_stay_whole() {
        let mut out = Vec::new();
        let mut o = LineEncoder::new(Stream::Stdout, 16);
        let mut e = LineEncoder::new(Stream::Stderr, 16);
        o.push(b"out1\nou", ts(), &mut out);
        e.push(b"err1\ner", ts(), &mut out);
        o.push(b"t2\n", ts(), &mut out);
        e.push(b"r2\n", ts(), &mut out);
        let want = format!(
            "{TS} stdout F out1\n{TS} stderr F err1\n{TS} stdout F out2\n{TS} stderr F err2\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    /// A small deterministic generator (xorshift) so the chunkings are the same
    /// on every run.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn any_chunking_gives_the_same_output_as_one_chunk() {
        let mut input = Vec::new();
        input.extend_from_slice(b"short\n\n\r\nabc\rdef\r\n");
        input.extend(std::iter::repeat_n(b'x', 37));
        input.extend_from_slice(b"\r\n");
        input.extend(std::iter::repeat_n(b'y', 16));
        input.extend_from_slice(b"\r\r\n\xc3\xa9\xe2\x82\xac tail\r");
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for max in [0, 1, 3, 8, 16, 17, 64] {
            let whole = encode_raw(max, &[&input]);
            for round in 0..200 {
                let mut chunks: Vec<&[u8]> = Vec::new();
                let mut rest = &input[..];
                while !rest.is_empty() {
                    let n = 1 + (rng.next() % 9) as usize;
                    let (a, b) = rest.split_at(n.min(rest.len()));
                    chunks.push(a);
                    rest = b;
                }
                assert_eq!(encode_raw(max, &chunks), whole, "max={max} round={round}");
            }
        }
    }
}
