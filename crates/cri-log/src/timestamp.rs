//! RFC 3339 timestamps as the CRI log format uses them.
//!
//! kubelet parses the first field of every log line with Go's
//! `time.Parse(RFC3339NanoLenient, ..)`, so we write exactly what Go's
//! `time.RFC3339Nano` layout produces for a UTC time: `2026-11-28T10:00:00.1234Z`,
//! with trailing zeros trimmed from the fraction and no `.` at all when the
//! fraction is zero. Formatting is done by hand from the Unix time so the crate
//! needs no date library.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::ParseError;

const NANOS_PER_SEC: u32 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of four-digit years.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

/// A point in time, stored as UTC seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

impl Timestamp {
    /// The current wall-clock time. A clock set before 1970 still works; a clock
    /// outside years 0000..=9999 is clamped to the nearest end.
    pub fn now() -> Self {
        let (secs, nanos) = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(MAX_SECS),
                d.subsec_nanos(),
            ),
            Err(before) => {
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => (-secs, 0),
                    n => (-secs - 1, NANOS_PER_SEC - n),
                }
            }
        };
        Self {
            secs: secs.clamp(MIN_SECS, MAX_SECS),
            nanos,
        }
    }

    /// A timestamp from Unix seconds and nanoseconds; `None` when `nanos` is not
    /// below one second or the year falls outside 0000..=9999.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        (nanos < NANOS_PER_SEC && (MIN_SECS..=MAX_SECS).contains(&secs))
            .then_some(Self { secs, nanos })
    }

    /// Seconds since the Unix epoch (negative before 1970).
    pub fn unix_secs(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Appends the RFC3339Nano form (UTC, `Z`, trimmed fraction) to `out`.
    pub fn write_rfc3339_nano(&self, out: &mut Vec<u8>) {
        let days = self.secs.div_euclid(SECS_PER_DAY);
        let sod = self.secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        push_digits(out, year, 4);
        out.push(b'-');
        push_digits(out, i64::from(month), 2);
        out.push(b'-');
        push_digits(out, i64::from(day), 2);
        out.push(b'T');
        push_digits(out, sod / 3600, 2);
        out.push(b':');
        push_digits(out, sod / 60 % 60, 2);
        out.push(b':');
        push_digits(out, sod % 60, 2);
        if self.nanos != 0 {
            let mut frac = self.nanos;
            let mut width = 9;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            out.push(b'.');
            push_digits(out, i64::from(frac), width);
        }
        out.push(b'Z');
    }

    /// Parses an RFC 3339 timestamp the way kubelet does: a fraction of 1 to 9
    /// digits is optional, and the zone is `Z` or a `+hh:mm`/`-hh:mm` offset.
    pub fn parse_rfc3339(text: &[u8]) -> Result<Self, ParseError> {
        let bad = || ParseError::Timestamp(String::from_utf8_lossy(text).into_owned());
        let mut p = Cursor { text, pos: 0 };
        let year = p.digits(4).ok_or_else(bad)?;
        p.expect(b'-').ok_or_else(bad)?;
        let month = p.digits(2).ok_or_else(bad)?;
        p.expect(b'-').ok_or_else(bad)?;
        let day = p.digits(2).ok_or_else(bad)?;
        p.expect(b'T').ok_or_else(bad)?;
        let hour = p.digits(2).ok_or_else(bad)?;
        p.expect(b':').ok_or_else(bad)?;
        let minute = p.digits(2).ok_or_else(bad)?;
        p.expect(b':').ok_or_else(bad)?;
        let second = p.digits(2).ok_or_else(bad)?;
        let mut nanos = 0i64;
        if p.peek() == Some(b'.') {
            p.pos += 1;
            let start = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) && p.pos - start < 9 {
                nanos = nanos * 10 + i64::from(text[p.pos] - b'0');
                p.pos += 1;
            }
            let width = p.pos - start;
            if width == 0 {
                return Err(bad());
            }
            nanos *= 10i64.pow(9 - width as u32);
        }
        let offset = match p.peek() {
            Some(b'Z') => {
                p.pos += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                p.pos += 1;
                let oh = p.digits(2).ok_or_else(bad)?;
                p.expect(b':').ok_or_else(bad)?;
                let om = p.digits(2).ok_or_else(bad)?;
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let off = oh * 3600 + om * 60;
                if sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return Err(bad()),
        };
        let valid = p.pos == text.len()
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset;
        // nanos < 1e9 by construction (at most nine digits).
        Self::from_unix(secs, nanos as u32).ok_or_else(bad)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::with_capacity(30);
        self.write_rfc3339_nano(&mut buf);
        f.write_str(&String::from_utf8_lossy(&buf))
    }
}

struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let field = self.text.get(self.pos..self.pos + n)?;
        let mut v = 0i64;
        for &c in field {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        self.pos += n;
        Some(v)
    }
}

fn push_digits(out: &mut Vec<u8>, value: i64, width: usize) {
    let s = format!("{value:0width$}");
    out.extend_from_slice(s.as_bytes());
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (eras of 400 years,
/// counted from March so the leap day ends the year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: i64, nanos: u32) -> String {
        Timestamp::from_unix(secs, nanos).unwrap().to_string()
    }

    #[test]
    fn formats_like_go_rfc3339nano() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00Z"),
            (0, 1, "1970-01-01T00:00:00.000000001Z"),
            (0, 100_000_000, "1970-01-01T00:00:00.1Z"),
            (0, 123_456_789, "1970-01-01T00:00:00.123456789Z"),
            (0, 123_450_000, "1970-01-01T00:00:00.12345Z"),
            (1_795_860_000, 123_456_789, "2026-11-28T10:00:00.123456789Z"),
            (951_782_400, 0, "2000-02-29T00:00:00Z"),
            (-1, 500_000_000, "1969-12-31T23:59:59.5Z"),
            (MAX_SECS, 999_999_999, "9999-12-31T23:59:59.999999999Z"),
            (MIN_SECS, 0, "0000-01-01T00:00:00Z"),
        ];
        for (secs, nanos, want) in cases {
            assert_eq!(fmt(secs, nanos), want, "secs={secs} nanos={nanos}");
        }
    }

    #[test]
    fn parse_round_trips_and_accepts_offsets() {
        let cases: [(&str, i64, u32); 6] = [
            ("2026-11-28T10:00:00.123456789Z", 1_795_860_000, 123_456_789),
            ("2026-11-28T10:00:00Z", 1_795_860_000, 0),
            ("2026-11-28T10:00:00.5Z", 1_795_860_000, 500_000_000),
            ("2026-11-28T11:00:00.5+01:00", 1_795_860_000, 500_000_000),
            ("2026-11-28T05:30:00-04:30", 1_795_860_000, 0),
            ("1969-12-31T23:59:59.5Z", -1, 500_000_000),
        ];
        for (text, secs, nanos) in cases {
            let ts = Timestamp::parse_rfc3339(text.as_bytes()).unwrap();
            assert_eq!((ts.unix_secs(), ts.subsec_nanos()), (secs, nanos), "{text}");
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        for text in [
            "",
            "2026-11-28",
            "2026-11-28T10:00:00",
            "2026-11-28T10:00:00.Z",
            "2026-11-28T10:00:00.1234567891Z",
            "2026-13-28T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T10:60:00Z",
            "2026-11-28T10:00:60Z",
            "2026-11-28 10:00:00Z",
            "2026-11-28T10:00:00z",
            "2026-11-28T10:00:00+0100",
            "2026-11-28T10:00:00Zx",
            "+026-11-28T10:00:00Z",
        ] {
            assert!(
                Timestamp::parse_rfc3339(text.as_bytes()).is_err(),
                "{text:?} parsed"
            );
        }
    }

    #[test]
    fn civil_conversion_round_trips_over_many_days() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }

    #[test]
    fn now_formats_and_parses_back() {
        let now = Timestamp::now();
        let text = now.to_string();
        assert_eq!(Timestamp::parse_rfc3339(text.as_bytes()).unwrap(), now);
    }
}
