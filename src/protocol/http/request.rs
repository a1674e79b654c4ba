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
    check_host(fields, version).map_err(RequestError::bad)?;
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
mod tests;
