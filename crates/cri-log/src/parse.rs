//! Reading CRI log lines back, with the same rules as kubelet's `parseCRILog`
//! (`pkg/kubelet/kuberuntime/logs`): space-separated timestamp, stream and tag,
//! then the content (which may hold spaces). The tag field may carry more
//! `:`-separated tags for forward compatibility; only the first (`P`/`F`) counts.
//! Unlike kubelet, an unknown first tag is an error here: we only read files we
//! wrote.

use crate::error::ParseError;
use crate::format::{Stream, Tag};
use crate::timestamp::Timestamp;

/// One parsed log entry; `content` borrows from the line and excludes the `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub timestamp: Timestamp,
    pub stream: Stream,
    pub tag: Tag,
    pub content: &'a [u8],
}

/// Parses one line, with or without its trailing `\n`.
pub fn parse_line(line: &[u8]) -> Result<Entry<'_>, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.contains(&b'\n') {
        return Err(ParseError::EmbeddedNewline);
    }
    let (ts, rest) = split_field(line).ok_or(ParseError::MissingTimestamp)?;
    let timestamp = Timestamp::parse_rfc3339(ts)?;
    let (stream, rest) = split_field(rest).ok_or(ParseError::MissingStream)?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        other => return Err(ParseError::Stream(lossy(other))),
    };
    let (tags, content) = split_field(rest).ok_or(ParseError::MissingTag)?;
    let first = tags.split(|&b| b == b':').next().unwrap_or_default();
    let tag = match first {
        b"P" => Tag::Partial,
        b"F" => Tag::Full,
        _ => return Err(ParseError::Tag(lossy(tags))),
    };
    Ok(Entry {
        timestamp,
        stream,
        tag,
        content,
    })
}

/// Parses a whole log file's bytes. Every line must end in `\n` (a torn last
/// line is reported as an error, since the writer never leaves one).
pub fn parse_log(data: &[u8]) -> Result<Vec<Entry<'_>>, ParseError> {
    let mut entries = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(ParseError::Unterminated);
        };
        entries.push(parse_line(&rest[..nl])?);
        rest = &rest[nl + 1..];
    }
    Ok(entries)
}

/// A logical line rebuilt from its `P`...`F` entries, per stream, as `kubectl
/// logs` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub content: Vec<u8>,
    /// False when the stream ended with `P` entries and no `F`.
    pub complete: bool,
}

/// Joins partial entries into whole lines. Lines are ordered by where they were
/// completed; each stream's partials are kept apart.
pub fn assemble_lines(entries: &[Entry<'_>]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut pending: [Option<Vec<u8>>; 2] = [None, None];
    for e in entries {
        let slot = &mut pending[usize::from(e.stream == Stream::Stderr)];
        let buf = slot.get_or_insert_with(Vec::new);
        buf.extend_from_slice(e.content);
        if e.tag == Tag::Full {
            lines.push(Line {
                stream: e.stream,
                content: slot.take().unwrap_or_default(),
                complete: true,
            });
        }
    }
    for (stream, slot) in [Stream::Stdout, Stream::Stderr].into_iter().zip(pending) {
        if let Some(content) = slot {
            lines.push(Line {
                stream,
                content,
                complete: false,
            });
        }
    }
    lines
}

fn split_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{write_entry, LineEncoder};

    fn ts(nanos: u32) -> Timestamp {
        Timestamp::from_unix(1_795_860_000, nanos).unwrap()
    }

    #[test]
    fn parses_valid_lines() {
        let cases: [(&str, Stream, Tag, &str); 7] = [
            (
                "2026-11-28T10:00:00.123456789Z stdout F hello",
                Stream::Stdout,
                Tag::Full,
                "hello",
            ),
            (
                "2026-11-28T10:00:00Z stderr P part\n",
                Stream::Stderr,
                Tag::Partial,
                "part",
            ),
            (
                "2026-11-28T10:00:00Z stdout F \n",
                Stream::Stdout,
                Tag::Full,
                "",
            ),
            (
                "2026-11-28T10:00:00Z stdout F  two  spaces ",
                Stream::Stdout,
                Tag::Full,
                " two  spaces ",
            ),
            (
                "2026-11-28T10:00:00Z stdout F:x:y tagged",
                Stream::Stdout,
                Tag::Full,
                "tagged",
            ),
            (
                "2026-11-28T11:00:00+01:00 stdout F tz",
                Stream::Stdout,
                Tag::Full,
                "tz",
            ),
            (
                "2026-11-28T10:00:00Z stdout F a\rb",
                Stream::Stdout,
                Tag::Full,
                "a\rb",
            ),
        ];
        for (line, stream, tag, content) in cases {
            let e = parse_line(line.as_bytes()).unwrap_or_else(|err| panic!("{line:?}: {err}"));
            assert_eq!(e.stream, stream, "{line:?}");
            assert_eq!(e.tag, tag, "{line:?}");
            assert_eq!(e.content, content.as_bytes(), "{line:?}");
            assert_eq!(e.timestamp.unix_secs(), 1_795_860_000, "{line:?}");
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        use ParseError::*;
        let cases: [(&str, ParseError); 10] = [
            ("", MissingTimestamp),
            ("2026-11-28T10:00:00Z", MissingTimestamp),
            ("yesterday stdout F x", Timestamp("yesterday".into())),
            ("2026-11-28T10:00:00Z stdout", MissingStream),
            ("2026-11-28T10:00:00Z stdin F x", Stream("stdin".into())),
            ("2026-11-28T10:00:00Z  stdout F x", Stream("".into())),
            ("2026-11-28T10:00:00Z stdout F", MissingTag),
            ("2026-11-28T10:00:00Z stdout X x", Tag("X".into())),
            ("2026-11-28T10:00:00Z stdout  x", Tag("".into())),
            ("2026-11-28T10:00:00Z stdout F a\nb", EmbeddedNewline),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line.as_bytes()), Err(want), "{line:?}");
        }
    }

    #[test]
    fn encoder_output_parses_back_and_reassembles() {
        let mut out = Vec::new();
        let mut o = LineEncoder::new(Stream::Stdout, 4);
        let mut e = LineEncoder::new(Stream::Stderr, 4);
        o.push(b"hello world\nsh", ts(1), &mut out);
        e.push(b"oops\r\n\nerr-tail", ts(2), &mut out);
        o.push(b"ort\n", ts(3), &mut out);
        o.finish(ts(4), &mut out);
        e.finish(ts(4), &mut out);
        let entries = parse_log(&out).unwrap();
        assert_eq!(entries.len(), 9);
        let lines = assemble_lines(&entries);
        let got: Vec<(Stream, &[u8], bool)> = lines
            .iter()
            .map(|l| (l.stream, l.content.as_slice(), l.complete))
            .collect();
        let want: Vec<(Stream, &[u8], bool)> = vec![
            (Stream::Stdout, b"hello world", true),
            (Stream::Stderr, b"oops", true),
            (Stream::Stderr, b"", true),
            (Stream::Stdout, b"short", true),
            (Stream::Stderr, b"err-tail", false),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn parse_log_rejects_torn_last_line() {
        let mut out = Vec::new();
        write_entry(&mut out, ts(0), Stream::Stdout, Tag::Full, b"ok");
        out.extend_from_slice(b"2026-11-28T10:00:00Z stdout F torn");
        assert_eq!(parse_log(&out), Err(ParseError::Unterminated));
        let torn = b"2026-11-28T10:00:00Z stdout F torn".len();
        assert_eq!(parse_log(&out[..out.len() - torn]).unwrap().len(), 1);
    }
}
