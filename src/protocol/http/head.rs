//! A response head on the wire: the status line with its reason phrase, the
//! service's header fields, and the framing headers, which are the handler's.
//!
//! `Content-Length` comes from the body (also for `HEAD`, which gets the length of
//! the body it does not carry), `Transfer-Encoding: chunked` is used for a body of
//! unknown length, and `Connection` says what the handler will actually do with the
//! connection. A service's own `Content-Length`, `Transfer-Encoding` or `Connection`
//! could lie about the framing, so the handler's replace them (a service's
//! `Connection: close` is honoured: the connection closes after this response).

use std::io::Write;

use ::http::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use ::http::StatusCode;

use super::response::Body;

/// How a response's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delimit {
    /// No body and no length: 1xx, 204 and 304.
    Bodiless,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs to the close (HTTP/1.0, unknown length).
    Close,
}

impl Delimit {
    /// How `body` goes out with `status` to a client speaking HTTP/1.1 or not.
    pub(crate) fn of(status: StatusCode, body: &Body, http11: bool) -> Delimit {
        if forbids_body(status) {
            return Delimit::Bodiless;
        }
        match body.len() {
            Some(len) => Delimit::Length(len),
            None if http11 => Delimit::Chunked,
            None => Delimit::Close,
        }
    }
}

/// Whether a response with this status never has a body (1xx, 204, 304).
pub(crate) fn forbids_body(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
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

/// The reason phrase of `status`: its canonical one, or its class's for a code
/// without one, so that a status line always carries a reason.
pub(crate) fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or(match status.as_u16() {
        100..=199 => "Informational",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Unknown",
    })
}

/// Whether the service set a framing header; the common answer, no, costs one pass
/// over the header names.
pub(crate) fn has_framing_headers(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|name| name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION)
}

/// Removes the service's framing headers; returns whether it asked for the
/// connection to close (`Connection: close`).
pub(crate) fn take_framing_headers(headers: &mut HeaderMap) -> Taken {
    let wants_close = headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    Taken {
        wants_close,
        length: headers.remove(CONTENT_LENGTH),
        coding: headers.remove(TRANSFER_ENCODING),
        connection: headers.remove(CONNECTION),
    }
}

/// The framing headers a service set, taken out of its response.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) wants_close: bool,
    length: Option<HeaderValue>,
    coding: Option<HeaderValue>,
    connection: Option<HeaderValue>,
}

impl Taken {
    /// The service's framing headers that differ from what goes out, as
    /// `name: theirs` pairs, for the debug log.
    pub(crate) fn replaced(&self, delimit: Delimit, persist: Persist) -> Vec<String> {
        let ours_length = match delimit {
            Delimit::Length(len) => Some(len.to_string()),
            _ => None,
        };
        let ours_coding = (delimit == Delimit::Chunked).then_some("chunked");
        let ours_connection = match persist {
            Persist::Default => None,
            Persist::KeepAlive => Some("keep-alive"),
            Persist::Close => Some("close"),
        };
        fn differs<'t>(
            theirs: &'t Option<HeaderValue>,
            ours: Option<&str>,
        ) -> Option<&'t HeaderValue> {
            theirs.as_ref().filter(|value| {
                ours.map_or(true, |ours| {
                    !value.as_bytes().eq_ignore_ascii_case(ours.as_bytes())
                })
            })
        }
        [
            (
                "Content-Length",
                differs(&self.length, ours_length.as_deref()),
            ),
            ("Transfer-Encoding", differs(&self.coding, ours_coding)),
            ("Connection", differs(&self.connection, ours_connection)),
        ]
        .into_iter()
        .filter_map(|(name, theirs)| {
            theirs.map(|value| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
        })
        .collect()
    }
}

/// Appends the wire form of a response head to `out`: the status line with its
/// reason, the service's header fields, then the framing ones.
pub(crate) fn write_head(
    status: StatusCode,
    headers: &HeaderMap,
    delimit: Delimit,
    persist: Persist,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    // The `http` crate's names and values cannot hold a CR or LF: a service's data
    // cannot split the response.
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match delimit {
        Delimit::Length(len) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "Content-Length: {len}\r\n");
        }
        Delimit::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Delimit::Bodiless | Delimit::Close => {}
    }
    match persist {
        Persist::Default => {}
        Persist::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
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
    use crate::protocol::http::response::{text, Response};
    fn head(response: &Response, delimit: Delimit, persist: Persist) -> String {
        let mut out = Vec::new();
        write_head(
            response.status(),
            response.headers(),
            delimit,
            persist,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn status_lines_always_carry_a_reason() {
        let teapot = text(StatusCode::UNSUPPORTED_MEDIA_TYPE, "no");
        assert!(head(&teapot, Delimit::Length(2), Persist::Default)
            .starts_with("HTTP/1.1 415 Unsupported Media Type\r\n"));
        let odd = StatusCode::from_u16(599).unwrap();
        assert_eq!(reason(odd), "Server Error");
        assert_eq!(reason(StatusCode::from_u16(299).unwrap()), "Success");
    }

    #[test]
    fn framing_headers_follow_the_body() {
        let response = text(StatusCode::OK, "Hello");
        let delimit = Delimit::of(response.status(), response.body(), true);
        assert_eq!(delimit, Delimit::Length(5));
        assert_eq!(
            head(&response, delimit, Persist::Close),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let stream = Body::reader(std::io::empty());
        assert_eq!(Delimit::of(StatusCode::OK, &stream, true), Delimit::Chunked);
        assert_eq!(Delimit::of(StatusCode::OK, &stream, false), Delimit::Close);
        let sized = Body::sized_reader(std::io::empty(), 9);
        assert_eq!(
            Delimit::of(StatusCode::OK, &sized, false),
            Delimit::Length(9)
        );
        let none = Body::from("ignored");
        assert_eq!(
            Delimit::of(StatusCode::NO_CONTENT, &none, true),
            Delimit::Bodiless
        );
        assert_eq!(
            Delimit::of(StatusCode::NOT_MODIFIED, &none, true),
            Delimit::Bodiless
        );
    }

    #[test]
    fn service_framing_headers_are_taken_out_and_reported_when_wrong() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        headers.insert(CONNECTION, HeaderValue::from_static("Close"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        assert!(has_framing_headers(&headers));
        let taken = take_framing_headers(&mut headers);
        assert!(taken.wants_close);
        assert!(!has_framing_headers(&headers));
        assert_eq!(headers.len(), 1);
        assert_eq!(
            taken.replaced(Delimit::Length(2), Persist::Close),
            vec!["Content-Length: 99".to_string()]
        );
        let mut right = HeaderMap::new();
        right.insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
        let taken = take_framing_headers(&mut right);
        assert!(!taken.wants_close);
        assert!(taken
            .replaced(Delimit::Length(2), Persist::Default)
            .is_empty());
        let mut chunked = HeaderMap::new();
        chunked.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let taken = take_framing_headers(&mut chunked);
        assert!(taken
            .replaced(Delimit::Chunked, Persist::Default)
            .is_empty());
        assert_eq!(
            taken.replaced(Delimit::Length(3), Persist::Default).len(),
            1
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
