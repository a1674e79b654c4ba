//! Responses: the status codes we send, what a service returns, and its bytes on the
//! wire.
//!
//! The framing headers are the handler's, not the service's: `Content-Length` is
//! always computed from the body (also for `HEAD`, which gets the length of the body
//! it does not carry), and `Connection` says what the handler will actually do with
//! the connection. A service's own `Content-Length`, `Transfer-Encoding` or
//! `Connection` would lie about the framing, so they are dropped.

use std::fmt;
use std::io::Write;

/// An HTTP status code with its reason phrase.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(u16);

impl Status {
    /// 100 Continue.
    pub const CONTINUE: Status = Status(100);
    /// 200 OK.
    pub const OK: Status = Status(200);
    /// 201 Created.
    pub const CREATED: Status = Status(201);
    /// 204 No Content.
    pub const NO_CONTENT: Status = Status(204);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Status = Status(400);
    /// 404 Not Found.
    pub const NOT_FOUND: Status = Status(404);
    /// 405 Method Not Allowed (send `Allow` with it).
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Status = Status(408);
    /// 413 Content Too Large.
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    /// 417 Expectation Failed.
    pub const EXPECTATION_FAILED: Status = Status(417);
    /// 431 Request Header Fields Too Large.
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_ERROR: Status = Status(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Status = Status(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    /// 505 HTTP Version Not Supported.
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);

    /// A status from its code; codes outside 100–999 become 500, since the status
    /// line has room for exactly three digits.
    pub fn from_code(code: u16) -> Status {
        if (100..1000).contains(&code) {
            Status(code)
        } else {
            Status::INTERNAL_ERROR
        }
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase (empty for codes we do not name, which RFC 9112 allows).
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            301 => "Moved Permanently",
            302 => "Found",
            304 => "Not Modified",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            413 => "Content Too Large",
            417 => "Expectation Failed",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// Whether a response with this status never has a body (1xx, 204, 304).
    pub fn forbids_body(self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// What a service answers: a status, header fields, a body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Response {
    /// The status.
    pub status: Status,
    /// Header fields other than the framing ones, in the order given.
    pub headers: Vec<(String, String)>,
    /// The body; for `HEAD` only its length is sent.
    pub body: Vec<u8>,
    /// Close the connection after this response, whatever the client asked for.
    pub close: bool,
}

impl Response {
    /// A response with `status`, no header fields and an empty body.
    pub fn new(status: Status) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// A `text/plain` response.
    pub fn text(status: Status, body: impl Into<String>) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// Adds a header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// Asks for the connection to be closed after this response.
    pub fn close(mut self) -> Response {
        self.close = true;
        self
    }
}

/// What the `Connection` header of a response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Persist {
    /// HTTP/1.1 default: nothing to say.
    Default,
    /// `Connection: keep-alive`, for an HTTP/1.0 client that asked for it.
    KeepAlive,
    /// `Connection: close`: this is the last response on the connection.
    Close,
}

/// Appends the wire form of `response` to `out`.
pub(crate) fn write_response(
    response: &Response,
    head_only: bool,
    persist: Persist,
    out: &mut Vec<u8>,
) {
    let status = response.status;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.code(), status.reason());
    for (name, value) in &response.headers {
        let framing = ["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f));
        // A CR or LF in a field would let a service's data split the response.
        let unsafe_bytes = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
        if framing || unsafe_bytes(name) || unsafe_bytes(value) {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if !status.forbids_body() {
        let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    }
    match persist {
        Persist::Default => {}
        Persist::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !status.forbids_body() {
        out.extend_from_slice(&response.body);
    }
}

/// The reply to a client refused because every worker is busy and the queue is full.
pub const BUSY_REPLY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Retry-After: 1\r\n\
Content-Length: 12\r\n\
Connection: close\r\n\
\r\n\
server busy\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(response: &Response, head_only: bool, persist: Persist) -> String {
        let mut out = Vec::new();
        write_response(response, head_only, persist, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn content_length_is_computed_and_head_has_no_body() {
        let response = Response::text(Status::OK, "Hello");
        assert_eq!(
            wire(&response, false, Persist::Default),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 5\r\n\r\nHello"
        );
        assert_eq!(
            wire(&response, true, Persist::Close),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn services_cannot_forge_framing_or_split_headers() {
        let response = Response::new(Status::OK)
            .header("Content-Length", "99")
            .header("X-Evil", "a\r\nSet-Cookie: x")
            .header("Connection", "keep-alive")
            .body("ok");
        assert_eq!(
            wire(&response, false, Persist::Default),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        );
    }

    #[test]
    fn no_content_has_no_length() {
        let response = Response::new(Status::NO_CONTENT).body("ignored");
        assert_eq!(
            wire(&response, false, Persist::KeepAlive),
            "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn busy_reply_length_matches_its_body() {
        let text = std::str::from_utf8(BUSY_REPLY).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(text.contains("Retry-After: "));
    }
}
