//! A request head: parsing it with `httparse` within the header limits, and deciding
//! from its headers how the body is framed and whether the connection stays open.
//!
//! `httparse` does the tokenising; what it leaves to us — and what request smuggling
//! lives on — is decided here: a `Content-Length` that is not one plain number, two
//! that disagree, `Transfer-Encoding` beside `Content-Length`, a coding other than a
//! final `chunked`, an HTTP/1.1 request without `Host`. Each is refused with a status
//! and the connection is closed, since where the next request starts is then unknown.

use super::response::Status;

/// The version of a request; only HTTP/1.0 and HTTP/1.1 are spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless asked otherwise.
    Http10,
    /// HTTP/1.1: the connection stays open unless asked otherwise.
    Http11,
}

/// How a request's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (neither `Content-Length` nor `Transfer-Encoding`).
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`, ended by a zero-size chunk and trailers.
    Chunked,
}

/// The limits that keep a hostile or broken client from costing unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most header fields in a head (and in a chunked body's trailers). Default 64.
    pub max_headers: usize,
    /// Most bytes of a head, request line included (also of a trailer section).
    /// Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most bytes of a decoded body. Default 1 MiB.
    pub max_body: usize,
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
pub struct RequestError {
    /// The status the client is sent.
    pub status: Status,
    /// What was wrong, for the log and the response body.
    pub detail: &'static str,
}

impl RequestError {
    pub(crate) fn new(status: Status, detail: &'static str) -> RequestError {
        RequestError { status, detail }
    }

    pub(crate) fn bad(detail: &'static str) -> RequestError {
        RequestError::new(Status::BAD_REQUEST, detail)
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.code(),
            self.status.reason(),
            self.detail
        )
    }
}

impl std::error::Error for RequestError {}

/// A parsed request. Its body is complete: the handler reads it (within the limit)
/// before the service is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (methods are case-sensitive).
    pub method: String,
    /// The request target as sent: a path with its query, or an absolute URI.
    pub target: String,
    /// The protocol version.
    pub version: Version,
    /// Header fields in the order received; names as sent, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The decoded body (empty if none was sent).
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The path of the target without its query: `/a/b` for `/a/b?x=1` and for
    /// `http://host/a/b?x=1`.
    pub fn path(&self) -> &str {
        let target = self.target.as_str();
        let after_authority = match target.find("://") {
            Some(scheme_end) => {
                let rest = &target[scheme_end + 3..];
                rest.find('/').map_or("/", |slash| &rest[slash..])
            }
            None => target,
        };
        after_authority
            .split_once('?')
            .map_or(after_authority, |(path, _)| path)
    }

    /// The first header named `name` (compared without case), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.headers, name)
    }

    /// True if the method is `HEAD`: the response is sent without its body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

fn header_value<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(have, _)| have.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and a request whose
/// `Host` is repeated or is not a valid `uri-host [ ":" port ]` gets 400 — two hosts
/// are how requests get routed to one backend and interpreted as another.
fn check_host(headers: &[(String, Vec<u8>)], version: Version) -> Result<(), RequestError> {
    let mut hosts = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.as_slice());
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::Http11 => {
            Err(RequestError::bad("HTTP/1.1 request without Host"))
        }
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(RequestError::bad("more than one Host")),
        (Some(host), None) if is_valid_host(host) => Ok(()),
        (Some(_), None) => Err(RequestError::bad("invalid Host")),
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2): an IP literal in brackets, or a
/// reg-name / IPv4 address of unreserved, percent-encoded and sub-delimiter
/// characters, then optional digits after a colon. Empty is valid (a target without
/// an authority). No spaces, no `@` (userinfo), no `/`, `?` or `#`.
fn is_valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            let valid_literal = !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'));
            if !valid_literal {
                return false;
            }
            (&[][..], &rest[end + 1..])
        }
        None => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &[][..]),
        },
    };
    let valid_port = match port.strip_prefix(b":") {
        Some(digits) => digits.iter().all(u8::is_ascii_digit),
        None => port.is_empty(),
    };
    let valid_name = name.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%')
            || matches!(
                b,
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            )
    });
    valid_port && valid_name
}

/// Whether a comma-separated header (such as `Connection`) lists `token`.
pub(crate) fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(have, _)| have.eq_ignore_ascii_case(name))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A head as parsed, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The request, with an empty body for now.
    pub request: Request,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the client may reuse the connection after this response.
    pub keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending its body.
    pub expects_continue: bool,
}

/// Outcome of trying to parse a head from the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
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
pub fn parse_head(input: &[u8], limits: &Limits) -> Result<Parsed, RequestError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let status = req.parse(input);
    let head_len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if input.len() > limits.max_head_bytes {
                Err(RequestError::new(
                    Status::HEADERS_TOO_LARGE,
                    "request head too large",
                ))
            } else {
                Ok(Parsed::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(RequestError::new(
                Status::HEADERS_TOO_LARGE,
                "too many header fields",
            ))
        }
        Err(httparse::Error::Version) if names_another_version(input) => {
            return Err(RequestError::new(
                Status::VERSION_NOT_SUPPORTED,
                "only HTTP/1.0 and HTTP/1.1 are spoken",
            ))
        }
        Err(_) => return Err(RequestError::bad("malformed request head")),
    };
    if head_len > limits.max_head_bytes {
        return Err(RequestError::new(
            Status::HEADERS_TOO_LARGE,
            "request head too large",
        ));
    }
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::bad("incomplete request line"));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => {
            return Err(RequestError::new(
                Status::VERSION_NOT_SUPPORTED,
                "only HTTP/1.0 and HTTP/1.1 are spoken",
            ))
        }
    };
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.trim_ascii().to_vec()))
        .collect();
    let framing = framing(&headers, version, limits)?;
    check_host(&headers, version)?;
    let expects_continue = match header_value(&headers, "expect") {
        None => false,
        Some(value) if value.eq_ignore_ascii_case(b"100-continue") => {
            version == Version::Http11 && framing != Framing::Empty
        }
        Some(_) => {
            return Err(RequestError::new(
                Status::EXPECTATION_FAILED,
                "only 100-continue is understood",
            ))
        }
    };
    let keep_alive = match version {
        Version::Http11 => !has_token(&headers, "connection", "close"),
        Version::Http10 => {
            has_token(&headers, "connection", "keep-alive")
                && !has_token(&headers, "connection", "close")
        }
    };
    let request = Request {
        method: method.to_string(),
        target: path.to_string(),
        version,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    Ok(Parsed::Complete(
        Box::new(Head {
            request,
            framing,
            keep_alive,
            expects_continue,
        }),
        head_len,
    ))
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
    headers: &[(String, Vec<u8>)],
    version: Version,
    limits: &Limits,
) -> Result<Framing, RequestError> {
    let mut codings = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
        .peekable();
    let mut lengths = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .peekable();
    if codings.peek().is_some() {
        if lengths.peek().is_some() {
            return Err(RequestError::bad(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            return Err(RequestError::bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        let items: Vec<&[u8]> = codings
            .flat_map(|(_, value)| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .collect();
        let chunked = |item: &&[u8]| item.eq_ignore_ascii_case(b"chunked");
        return match items.split_last() {
            Some((last, rest)) if chunked(last) => {
                if rest.iter().any(chunked) {
                    Err(RequestError::bad("chunked applied twice"))
                } else if rest.is_empty() {
                    Ok(Framing::Chunked)
                } else {
                    Err(RequestError::new(
                        Status::NOT_IMPLEMENTED,
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
        };
    }
    let mut length: Option<u64> = None;
    for (_, value) in lengths {
        let parsed = parse_length(value)?;
        if length.is_some_and(|seen| seen != parsed) {
            return Err(RequestError::bad("conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    match length {
        None | Some(0) => Ok(Framing::Empty),
        Some(n) if n > limits.max_body as u64 => Err(RequestError::new(
            Status::PAYLOAD_TOO_LARGE,
            "request body over the limit",
        )),
        Some(n) => Ok(Framing::Length(n)),
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
            Err(err) => err.status.code(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_simple_get() {
        let input = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let (head, len) = head(input);
        assert_eq!(len, input.len() - 4);
        assert_eq!(head.request.method, "GET");
        assert_eq!(head.request.path(), "/a");
        assert_eq!(head.request.header("HOST"), Some(&b"x"[..]));
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
        assert_eq!(absolute.request.path(), "/x/y");
        let (asterisk, _) = head(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(asterisk.request.path(), "*");
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
