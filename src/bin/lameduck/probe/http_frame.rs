//! Framing the probe's HTTP responses: where the response at the front of a buffer
//! ends (`Content-Length`, chunked, or the end of the connection), its status, and
//! whether it closes the connection; interim `1xx` heads told apart.

/// What the buffer holds at its front.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// Not a whole response yet.
    Partial,
    /// A `1xx` head of this many bytes: skipped.
    Interim(usize),
    /// A final response of this many bytes.
    Whole {
        len: usize,
        status: u16,
        close: bool,
    },
    /// A final response whose body runs to the end of the connection.
    ToEof { status: u16 },
    /// Not HTTP: the text of its first line.
    Bad(String),
}

/// Frames the response at the front of `buf`.
pub fn frame(buf: &[u8]) -> Framed {
    let Some(head_end) = find(buf, b"\r\n\r\n", 0) else {
        return if buf.len() > 64 << 10 || (buf.len() >= 5 && !buf.starts_with(b"HTTP/")) {
            Framed::Bad(first_line(buf))
        } else {
            Framed::Partial
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let status = words.next().and_then(|code| code.parse::<u16>().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Framed::Bad(first_line(buf));
    };
    let body_at = head_end + 4;
    if (100..200).contains(&status) {
        return Framed::Interim(body_at);
    }
    let (mut length, chunked, close) = framing(lines, version == "HTTP/1.0");
    if status == 204 || status == 304 {
        length = Some(0);
    }
    if chunked {
        return match chunked_end(buf, body_at) {
            Some(Ok(len)) => Framed::Whole { len, status, close },
            Some(Err(())) => Framed::Bad("malformed chunked body".into()),
            None => Framed::Partial,
        };
    }
    match length {
        Some(n) if buf.len() >= body_at + n => Framed::Whole {
            len: body_at + n,
            status,
            close,
        },
        Some(_) => Framed::Partial,
        None => Framed::ToEof { status },
    }
}

/// What a response head's fields say of its framing: its `Content-Length`, whether
/// its body is chunked, and whether the connection closes after it (`close` is the
/// version's default, which a `Connection` field overrides).
fn framing<'a>(
    lines: impl Iterator<Item = &'a str>,
    mut close: bool,
) -> (Option<usize>, bool, bool) {
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.split(',').any(|t| t.trim() == "chunked"),
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    match token {
                        "close" => close = true,
                        "keep-alive" => close = false,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (length, chunked, close)
}

/// Where a chunked body starting at `at` ends: `None` if not yet in `buf`.
fn chunked_end(buf: &[u8], mut at: usize) -> Option<Result<usize, ()>> {
    loop {
        let line_end = find(buf, b"\r\n", at)?;
        let text = String::from_utf8_lossy(&buf[at..line_end]);
        let size_text = text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Some(Err(()));
        };
        at = line_end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            if buf.len() >= at + 2 && buf[at..].starts_with(b"\r\n") {
                return Some(Ok(at + 2));
            }
            return find(buf, b"\r\n\r\n", at.saturating_sub(2)).map(|end| Ok(end + 4));
        }
        at = at.checked_add(size)?.checked_add(2)?;
        if buf.len() < at {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

fn first_line(buf: &[u8]) -> String {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line).chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed_by_length_chunks_or_eof() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            frame(ok),
            Framed::Whole {
                len: ok.len(),
                status: 200,
                close: false
            }
        );
        assert_eq!(frame(&ok[..ok.len() - 1]), Framed::Partial);
        let chunked =
            b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\nConnection: Close\r\n\r\n2\r\nhi\r\n0\r\n\r\nHTTP";
        assert_eq!(
            frame(chunked),
            Framed::Whole {
                len: chunked.len() - 4,
                status: 503,
                close: true
            }
        );
        assert_eq!(frame(b"HTTP/1.1 100 Continue\r\n\r\n"), Framed::Interim(25));
        assert_eq!(
            frame(b"HTTP/1.0 200 OK\r\n\r\nbody"),
            Framed::ToEof { status: 200 }
        );
        assert!(matches!(frame(b"Echo: hi\r\n"), Framed::Bad(_)));
    }
}
