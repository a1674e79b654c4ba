//! What a service answers with: the `http` crate's response around a [`Body`].

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::Read;

use ::http::header::HeaderValue;
use ::http::StatusCode;

/// What a service answers with: the `http` crate's response with a [`Body`].
pub type Response = ::http::Response<Body>;

/// A response body: bytes in memory, a file sent by the kernel, or a stream read
/// as it is sent.
///
/// Whatever the kind, memory stays bounded by what the body itself holds: a reader
/// or a file is sent through one buffer (or none, for a file on Linux), and a
/// client that reads slowly holds the worker in its writes, not more memory.
pub struct Body {
    pub(crate) kind: Kind,
}

pub(crate) enum Kind {
    Bytes(Cow<'static, [u8]>),
    Reader {
        reader: Box<dyn Read + Send>,
        len: Option<u64>,
    },
    File {
        file: File,
        offset: u64,
        len: u64,
    },
}

impl Body {
    /// No body (`Content-Length: 0`).
    pub fn empty() -> Body {
        Body::bytes(Vec::new())
    }

    /// A body held in memory, sent with `Content-Length`.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Body {
        Body {
            kind: Kind::Bytes(Cow::Owned(bytes.into())),
        }
    }

    /// A body of unknown length, read from `reader` as it is sent: chunked to an
    /// HTTP/1.1 client, delimited by the close of the connection for HTTP/1.0. An
    /// error from `reader` cuts the body (no final chunk) and closes the connection,
    /// so the client can tell it from a complete one.
    pub fn reader(reader: impl Read + Send + 'static) -> Body {
        Body {
            kind: Kind::Reader {
                reader: Box::new(reader),
                len: None,
            },
        }
    }

    /// A body of `len` bytes read from `reader` as it is sent, with
    /// `Content-Length: len`. Bytes past `len` are not read; a reader that ends
    /// (or fails) before `len` cuts the body short and closes the connection, so the
    /// client sees fewer bytes than announced.
    pub fn sized_reader(reader: impl Read + Send + 'static, len: u64) -> Body {
        Body {
            kind: Kind::Reader {
                reader: Box::new(reader),
                len: Some(len),
            },
        }
    }

    /// `len` bytes of `file` from `offset`, with `Content-Length: len`, sent with
    /// the kernel's zero-copy path where there is one (`sendfile(2)` on Linux; a
    /// buffered copy elsewhere). A file shorter than `offset + len` cuts the body.
    /// The bytes sent are the file's as the kernel reads them during the transfer: a
    /// file rewritten meanwhile may arrive mixed, as from any sendfile server, so
    /// replace files by renaming a new one into place. A client that leaves
    /// mid-file makes `sendfile` raise SIGPIPE, which a Rust program ignores from its
    /// start (a host that restores the default action would die of it).
    pub fn file(file: File, offset: u64, len: u64) -> Body {
        Body {
            kind: Kind::File { file, offset, len },
        }
    }

    /// The body's length if it is known before it is sent: `None` only for
    /// [`Body::reader`].
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(bytes.len() as u64),
            Kind::Reader { len, .. } => *len,
            Kind::File { len, .. } => Some(*len),
        }
    }

    /// True for a body known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes of a body held in memory (`None` for a reader or a file).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Bytes(bytes) => f.debug_struct("Body").field("bytes", &bytes.len()).finish(),
            Kind::Reader { len, .. } => f.debug_struct("Body").field("reader", len).finish(),
            Kind::File { offset, len, .. } => f
                .debug_struct("Body")
                .field("file_offset", offset)
                .field("file_len", len)
                .finish(),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::bytes(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::bytes(text)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body {
            kind: Kind::Bytes(Cow::Borrowed(text.as_bytes())),
        }
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Body {
        Body {
            kind: Kind::Bytes(Cow::Borrowed(bytes)),
        }
    }
}

impl From<()> for Body {
    fn from((): ()) -> Body {
        Body::empty()
    }
}

/// A `text/plain; charset=utf-8` response.
pub fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        ::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
