//! A request head: parsing it with `httparse` within the header limits, and deciding
//! from its headers how the body is framed and whether the connection stays open.
//!
//! `httparse` does the tokenising; what it leaves to us — and what request smuggling
//! lives on — is decided here: a `Content-Length` that is not one plain number, two
//! that disagree, `Transfer-Encoding` beside `Content-Length`, a coding other than a
//! final `chunked`, an HTTP/1.1 request without `Host` (see `host`). Each is refused
//! with a status and the connection is closed, since where the next request starts is
//! then unknown. What is left becomes the `http` crate's method, URI, version and
//! header map, which is what a service sees.

use ::http::header::{HeaderName, HeaderValue};
use ::http::{HeaderMap, Method, StatusCode, Uri, Version};

use super::host::check_host;

/// The header fields of a head as `httparse` tokenised them.
pub(crate) type Fields<'h> = [httparse::Header<'h>];

/// How a request's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (neither `Content-Length` nor `Transfer-Encoding`).
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`, ended by a zero-size chunk and trailers.
    Chunked,
}

/// The limits that keep a hostile or broken client from costing unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most header fields in a head (and in a chunked body's trailers). Default 64.
    pub(crate) max_headers: usize,
    /// Most bytes of a head, request line included (also of a trailer section).
    /// Default 16 KiB.
    pub(crate) max_head_bytes: usize,
    /// Most bytes of a decoded body. Default 1 MiB.
    pub(crate) max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: 64,
            max_head_bytes: 16 * 1024,
            max_body: 1024 * 1024,
        }
    }
}

/// Why a request cannot be served; each maps to a status and a close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestError {
    /// The status the client is sent.
    pub(crate) status: StatusCode,
    /// What was wrong, for the log and the response body.
    pub(crate) detail: &'static str,
}

impl RequestError {
    pub(crate) fn new(status: StatusCode, detail: &'static str) -> RequestError {
        RequestError { status, detail }
    }

    pub(crate) fn bad(detail: &'static str) -> RequestError {
        RequestError::new(StatusCode::BAD_REQUEST, detail)
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.detail
        )
    }
}

impl std::error::Error for RequestError {}

/// A head as parsed, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) method: Method,
    /// The request target: a path with its query, an absolute URI, `*` or an
    /// authority.
    pub(crate) uri: Uri,
    /// HTTP/1.0 or HTTP/1.1; other versions are refused.
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// Whether the client may reuse the connection after this response.
    pub(crate) keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending its body.
    pub(crate) expects_continue: bool,
}

/// Outcome of trying to parse a head from the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A complete head, and how many bytes of the input it took.
    Complete(Box<Head>, usize),
    /// More bytes are needed; the input is within the limits.
    Partial,
}

/// Parses the head at the start of `input`.
///
/// Empty lines before a request line are skipped, as RFC 9112 §2.2 asks of a robust
/// server (some clients send a stray CRLF after a body).
///
/// # Errors
/// 431 beyond [`Limits::max_headers`] or [`Limits::max_head_bytes`], 400 for a
/// malformed head or ambiguous framing, 413 for a `Content-Length` over
/// [`Limits::max_body`], 501 for a transfer coding other than chunked, 505 for an
/// HTTP version other than 1.x, 417 for an expectation other than `100-continue`.
pub(crate) fn parse_head(input: &[u8], limits: &Limits) -> Result<Parsed, RequestError> {
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut fields);
    let Some(head_len) = tokenize(&mut req, input, limits)? else {
        return Ok(Parsed::Partial);
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::bad("incomplete request line"));
    };
    let version = match minor {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return Err(another_version()),
    };
    let fields: &Fields<'_> = req.headers;
    let framing = framing(fields, version, limits)?;
    check_host(fields, version)?;
    let head = Head {
        method: Method::from_bytes(method.as_bytes())
            .map_err(|_| RequestError::bad("invalid method"))?,
        uri: target
            .parse()
            .map_err(|_| RequestError::bad("invalid request target"))?,
        version,
        headers: header_map(fields)?,
        framing,
        keep_alive: keep_alive(fields, version),
        expects_continue: expects_continue(fields, version, framing)?,
    };
    Ok(Parsed::Complete(Box::new(head), head_len))
}

/// Runs `httparse` over `input`: the head's length once it is complete, `None` while
/// it is partial and within the limits.
fn tokenize<'b>(
    req: &mut httparse::Request<'_, 'b>,
    input: &'b [u8],
    limits: &Limits,
) -> Result<Option<usize>, RequestError> {
    let too_large = || {
        RequestError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        )
    };
    match req.parse(input) {
        Ok(httparse::Status::Complete(len)) if len > limits.max_head_bytes => Err(too_large()),
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if input.len() > limits.max_head_bytes => Err(too_large()),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(RequestError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        )),
        Err(httparse::Error::Version) if names_another_version(input) => Err(another_version()),
        Err(_) => Err(RequestError::bad("malformed request head")),
    }
}

fn another_version() -> RequestError {
    RequestError::new(
        StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        "only HTTP/1.0 and HTTP/1.1 are spoken",
    )
}

/// The header fields as the `http` crate's map, in the order received.
fn header_map(fields: &Fields<'_>) -> Result<HeaderMap, RequestError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| RequestError::bad("invalid header name"))?;
        let value = HeaderValue::from_bytes(field.value.trim_ascii())
            .map_err(|_| RequestError::bad("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// The first value of the field `name` (compared without case), if any.
fn field<'h>(fields: &'h Fields<'_>, name: &str) -> Option<&'h [u8]> {
    fields
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim_ascii())
}

/// Whether a comma-separated field (such as `Connection`) lists `token`.
fn has_token(fields: &Fields<'_>, name: &str, token: &str) -> bool {
    fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn keep_alive(fields: &Fields<'_>, version: Version) -> bool {
    if version == Version::HTTP_11 {
        !has_token(fields, "connection", "close")
    } else {
        has_token(fields, "connection", "keep-alive") && !has_token(fields, "connection", "close")
    }
}

/// `Expect: 100-continue` is honoured for an HTTP/1.1 request with a body; any other
/// expectation is refused with 417.
fn expects_continue(
    fields: &Fields<'_>,
    version: Version,
    framing: Framing,
) -> Result<bool, RequestError> {
    match field(fields, "expect") {
        None => Ok(false),
        Some(value) if value.eq_ignore_ascii_case(b"100-continue") => {
            Ok(version == Version::HTTP_11 && framing != Framing::Empty)
        }
        Some(_) => Err(RequestError::new(
            StatusCode::EXPECTATION_FAILED,
            "only 100-continue is understood",
        )),
    }
}

/// Whether the request line's version names HTTP with a digit for its major version
/// (`HTTP/2.0`, `HTTP/1.2`): 505 is for a client speaking another version, not for
/// bytes that are not HTTP at all. httparse reports the version error at the first
/// byte it rejects, so this looks no further than that byte can be: the answer is
/// the same however the head was split across reads.
fn names_another_version(input: &[u8]) -> bool {
    let line = input.split(|&b| b == b'\n').next().unwrap_or_default();
    let version = line.split(|&b| b == b' ').nth(2).unwrap_or_default();
    version.len() >= 6 && version.starts_with(b"HTTP/") && version[5].is_ascii_digit()
}

/// RFC 9112 §6.3: how the body is delimited, refusing every ambiguous case.
fn framing(
    fields: &Fields<'_>,
    version: Version,
    limits: &Limits,
) -> Result<Framing, RequestError> {
    let mut codings = fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .peekable();
    let mut lengths = fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .peekable();
    if codings.peek().is_some() {
        if lengths.peek().is_some() {
            return Err(RequestError::bad(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(RequestError::bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        let items: Vec<&[u8]> = codings
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .collect();
        return transfer_coding(&items);
    }
    let mut length: Option<u64> = None;
    for h in lengths {
        let parsed = parse_length(h.value.trim_ascii())?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err(RequestError::bad("conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    match length {
        None | Some(0) => Ok(Framing::Empty),
        Some(n) if n > limits.max_body as u64 => Err(RequestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over the limit",
        )),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// The framing of a request with `Transfer-Encoding`: a single final `chunked`.
fn transfer_coding(items: &[&[u8]]) -> Result<Framing, RequestError> {
    let chunked = |item: &&[u8]| item.eq_ignore_ascii_case(b"chunked");
    match items.split_last() {
        Some((last, rest)) if chunked(last) => {
            if rest.iter().any(chunked) {
                Err(RequestError::bad("chunked applied twice"))
            } else if rest.is_empty() {
                Ok(Framing::Chunked)
            } else {
                Err(RequestError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "only the chunked transfer coding is understood",
                ))
            }
        }
        Some(_) if items.iter().any(chunked) => Err(RequestError::bad(
            "chunked is not the final transfer coding",
        )),
        // Without a final chunked the body runs to the close, which a request
        // cannot do (RFC 9112 §6.3, point 4).
        _ => Err(RequestError::bad("transfer coding without a final chunked")),
    }
}

/// A Content-Length is one run of decimal digits: no sign, no list, no spaces inside.
fn parse_length(value: &[u8]) -> Result<u64, RequestError> {
    let bad = || RequestError::bad("invalid Content-Length");
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    value.iter().try_fold(0u64, |n, &digit| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(digit - b'0')))
            .ok_or_else(bad)
    })
}

// Over 400 lines with these tests, which pin the head parser down case by case and
// belong beside it; the parser itself is about 300.
#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn head(input: &[u8]) -> (Head, usize) {
        match parse_head(input, &limits()) {
            Ok(Parsed::Complete(head, len)) => (*head, len),
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    fn status(input: &[u8]) -> u16 {
        match parse_head(input, &limits()) {
            Err(err) => err.status.as_u16(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let input = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let (head, len) = head(input);
        assert_eq!(len, input.len() - 4);
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri.path(), "/a");
        assert_eq!(head.uri.query(), Some("b=c"));
        assert_eq!(
            head.headers.get("HOST").map(HeaderValue::as_bytes),
            Some(&b"x"[..])
        );
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_head(&full[..cut], &limits()), Ok(Parsed::Partial));
        }
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn absolute_targets_route_by_their_path() {
        let (absolute, _) = head(b"GET http://h:1/x/y?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(absolute.uri.path(), "/x/y");
        let (asterisk, _) = head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(asterisk.uri.path(), "*");
    }

    #[test]
    fn framing_is_unambiguous_or_refused() {
        let (h, _) = head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        let (h, _) = head(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let (h, _) =
            head(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"),
            413
        );
    }

    #[test]
    fn valid_hosts_are_accepted() {
        for good in [
            &b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: xn--d1acufc.xn--p1ai\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_head(good, &Limits::default()),
                    Ok(Parsed::Complete(..))
                ),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
    }

    #[test]
    fn malformed_heads_are_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..], // no Host
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\nHost: x\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET\r\n\r\n",
            b"this is not http\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
            // RFC 9112 §3.2: exactly one valid Host.
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(
            status(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n"),
            417
        );
    }

    #[test]
    fn header_limits_are_431() {
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..64 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);

        let mut long = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
        long.extend(std::iter::repeat(b'a').take(16 * 1024));
        assert_eq!(status(&long), 431, "a partial head over the limit");
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&long), 431, "a complete head over the limit");
    }

    #[test]
    fn expect_continue_only_with_a_body() {
        let (h, _) =
            head(b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.expects_continue);
        let (h, _) = head(b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n");
        assert!(!h.expects_continue);
    }
}
