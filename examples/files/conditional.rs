//! Which part of a file a GET answers with: `If-Modified-Since` (304), then a single
//! `Range` (206 or 416), guarded by `If-Range`, else the whole file.
//!
//! The order is the one HTTP gives (RFC 9110 §13.2.2): a fresh cached copy wins over a
//! range. Ranges are decided as RFC 9110 §14 allows a simple server to:
//! - `bytes=a-b`, `bytes=a-` and `bytes=-n` are served as 206 with `Content-Range`;
//!   an end past the file is clamped, a suffix longer than the file is the whole file;
//! - a range starting at or past the end (or `-0`, or any range of an empty file) is
//!   416 with `Content-Range: bytes */len`;
//! - a multi-range request (`bytes=0-1,5-6`) is answered with the whole file, 200:
//!   the protocol lets a server ignore `Range`, and a multipart body would give up
//!   sending the file with the kernel's zero-copy path for little gain (download
//!   tools ask for one range at a time);
//! - a header that is not a valid byte range (another unit, `b` < `a`, junk) is
//!   ignored, as the protocol asks: the whole file, 200.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// 304: the client's copy is current.
    NotModified,
    /// 200 with the whole file.
    Full,
    /// 206 with `len` bytes from `start`.
    Partial { start: u64, len: u64 },
    /// 416: no byte of the range exists.
    Unsatisfiable,
}

/// The request headers that decide the plan, as sent (absent ones `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    pub if_modified_since: Option<&'a str>,
    pub range: Option<&'a str>,
    pub if_range: Option<&'a str>,
}

/// The plan for a file of `len` bytes last modified at `modified`, at time `now`.
pub fn plan(len: u64, modified: Option<SystemTime>, now: SystemTime, when: &Conditions) -> Plan {
    let modified = modified.map(whole_seconds);
    if let (Some(modified), Some(since)) = (modified, when.if_modified_since) {
        // A date in the future is no date at all (RFC 9110 §13.1.3).
        if let Ok(since) = httpdate::parse_http_date(since) {
            if since <= now && modified <= since {
                return Plan::NotModified;
            }
        }
    }
    let Some(range) = when.range else {
        return Plan::Full;
    };
    if let Some(validator) = when.if_range {
        // Only a date can match: this server sends no entity tags. The file must be
        // the one the client has part of, to the second.
        let same = modified.is_some_and(|modified| {
            httpdate::parse_http_date(validator).is_ok_and(|date| date == modified)
        });
        if !same {
            return Plan::Full;
        }
    }
    match parse_range(range) {
        Some(spec) => spec.against(len),
        None => Plan::Full,
    }
}

/// `Last-Modified` for `modified`.
pub fn http_date(modified: SystemTime) -> String {
    httpdate::fmt_http_date(modified)
}

/// HTTP dates have whole seconds: a file modified at 12:00:00.7 was not modified
/// after a copy dated 12:00:00.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

/// One byte range as asked for, before the file's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` (`b` inclusive) or `a-` (`None`).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
    /// More than one range: answered with the whole file.
    Several,
}

impl Spec {
    fn against(self, len: u64) -> Plan {
        match self {
            Spec::Several => Plan::Full,
            Spec::Suffix(0) => Plan::Unsatisfiable,
            Spec::Suffix(_) | Spec::From { .. } if len == 0 => Plan::Unsatisfiable,
            Spec::Suffix(n) => {
                let start = len.saturating_sub(n);
                Plan::Partial {
                    start,
                    len: len - start,
                }
            }
            Spec::From { first, .. } if first >= len => Plan::Unsatisfiable,
            Spec::From { first, last } => {
                let last = last.map_or(len - 1, |last| last.min(len - 1));
                Plan::Partial {
                    start: first,
                    len: last - first + 1,
                }
            }
        }
    }
}

/// Parses a `Range` header; `None` if it is not a valid byte-range set, which the
/// server then ignores.
fn parse_range(header: &str) -> Option<Spec> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = set
        .split(',')
        .map(str::trim)
        .filter(|spec| !spec.is_empty());
    let first = parse_spec(specs.next()?)?;
    let mut several = false;
    for spec in specs {
        parse_spec(spec)?;
        several = true;
    }
    Some(if several { Spec::Several } else { first })
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(Spec::From { first, last: None });
    }
    let last = number(last)?;
    (last >= first).then_some(Spec::From {
        first,
        last: Some(last),
    })
}

/// Decimal digits only (no sign, no space); a value past `u64` is as good as
/// infinite for a file offset.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: u64 = 1000;

    fn range(header: &str) -> Plan {
        let when = Conditions {
            range: Some(header),
            ..Conditions::default()
        };
        plan(LEN, Some(UNIX_EPOCH), SystemTime::now(), &when)
    }

    fn partial(start: u64, len: u64) -> Plan {
        Plan::Partial { start, len }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(range("bytes=0-0"), partial(0, 1));
        assert_eq!(range("bytes=0-499"), partial(0, 500));
        assert_eq!(range("bytes=500-"), partial(500, 500));
        assert_eq!(range("bytes=-100"), partial(900, 100));
        assert_eq!(range("bytes=999-999"), partial(999, 1));
        // Clamped to the file.
        assert_eq!(range("bytes=900-5000"), partial(900, 100));
        assert_eq!(range("bytes=-5000"), partial(0, LEN));
        assert_eq!(range("bytes=0-99999999999999999999999"), partial(0, LEN));
        assert_eq!(range(" Bytes = 10 - 19 "), partial(10, 10));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(range("bytes=1000-"), Plan::Unsatisfiable);
        assert_eq!(range("bytes=1000-2000"), Plan::Unsatisfiable);
        assert_eq!(range("bytes=-0"), Plan::Unsatisfiable);
        assert_eq!(range("bytes=99999999999999999999999-"), Plan::Unsatisfiable);
        let when = Conditions {
            range: Some("bytes=0-"),
            ..Conditions::default()
        };
        assert_eq!(plan(0, None, SystemTime::now(), &when), Plan::Unsatisfiable);
    }

    #[test]
    fn invalid_and_multiple_ranges_get_the_whole_file() {
        for header in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=",
            "bytes=1",
            "bytes=+1-2",
            "items=0-1",
            "0-1",
            "bytes=0-1,5-6",
            "bytes=0-1, -5",
            "bytes=0-1,junk",
        ] {
            assert_eq!(range(header), Plan::Full, "{header:?}");
        }
    }

    #[test]
    fn if_modified_since() {
        let modified = UNIX_EPOCH + Duration::from_millis(1_700_000_000_700);
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        let ask = |since: &str, range: Option<&str>| {
            let when = Conditions {
                if_modified_since: Some(since),
                range,
                if_range: None,
            };
            plan(LEN, Some(modified), now, &when)
        };
        // Same second (the sub-second part does not count), and later: 304.
        assert_eq!(ask(&at(1_700_000_000), None), Plan::NotModified);
        assert_eq!(
            ask(&at(1_700_000_100), Some("bytes=0-1")),
            Plan::NotModified
        );
        // Older copy, junk date, a date in the future: the file.
        assert_eq!(ask(&at(1_699_999_999), None), Plan::Full);
        assert_eq!(ask("yesterday", None), Plan::Full);
        assert_eq!(ask(&at(1_900_000_000), None), Plan::Full);
    }

    #[test]
    fn if_range_honours_the_range_only_for_the_same_file() {
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ask = |validator: &str| {
            let when = Conditions {
                if_modified_since: None,
                range: Some("bytes=10-"),
                if_range: Some(validator),
            };
            plan(LEN, Some(modified), SystemTime::now(), &when)
        };
        assert_eq!(ask(&http_date(modified)), partial(10, 990));
        assert_eq!(
            ask(&http_date(modified + Duration::from_secs(1))),
            Plan::Full
        );
        assert_eq!(ask("\"some-etag\""), Plan::Full);
    }
}
