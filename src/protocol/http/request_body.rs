//! What a service receives: the `http` crate's request, whose body is read from the
//! connection as the service reads it.

use std::fmt;
use std::io::{self, Read};

use ::http::HeaderMap;

/// What a service receives: the `http` crate's request with a [`RequestBody`] that
/// is read from the connection as the service reads it. A `HEAD` request arrives as
/// `GET` (the handler sends the response's head without its body).
pub type Request<'c> = ::http::Request<RequestBody<'c>>;

/// Where a [`RequestBody`] comes from: the connection, through the handler.
pub(crate) trait Source {
    /// Reads decoded body bytes; 0 at the end of the body.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize>;

    /// The trailer fields of a chunked body, once it has been read to its end.
    fn trailers(&self) -> Option<&HeaderMap>;
}

/// A request body as a stream ([`io::Read`]).
///
/// Reads decode the framing (`Content-Length` or chunked) and wait for the client
/// at most the body timeout ([`Http::body_timeout`](super::Http::body_timeout)) each;
/// a body that would pass the body limit ([`Http::max_body`](super::Http::max_body))
/// fails with `InvalidData` before its bytes are read, and the handler then answers
/// `413` whatever the service returns (a malformed body gets `400`, a client too slow
/// `408`, the same way). Reading costs the caller's buffer: an upload of any size
/// within the limit streams through it. `100 Continue` is sent to a client that
/// waits for it when the body is first read, so a service that answers without
/// reading (a 404, a 401) spares the client the upload. Whatever the service leaves
/// unread is discarded by the handler before the next request if it is small, or
/// the connection is closed after the response.
pub struct RequestBody<'c> {
    inner: Inner<'c>,
    len: Option<u64>,
}

enum Inner<'c> {
    Wire(&'c mut (dyn Source + 'c)),
    Slice(&'c [u8]),
}

impl<'c> RequestBody<'c> {
    pub(crate) fn wire(source: &'c mut (dyn Source + 'c), len: Option<u64>) -> RequestBody<'c> {
        RequestBody {
            inner: Inner::Wire(source),
            len,
        }
    }

    /// An empty body, for requests built by hand (tests of a service).
    pub fn empty() -> RequestBody<'static> {
        RequestBody::from_slice(&[])
    }

    /// A body of `bytes`, for requests built by hand (tests of a service).
    pub fn from_slice(bytes: &'c [u8]) -> RequestBody<'c> {
        RequestBody {
            inner: Inner::Slice(bytes),
            len: Some(bytes.len() as u64),
        }
    }

    /// The body's `Content-Length`, if the client sent one (a chunked body has
    /// none until it has been read).
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// True if the client announced an empty body (or none at all).
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// Reads the whole body into memory — within the body limit, so its size is
    /// bounded by [`Http::max_body`](super::Http::max_body).
    ///
    /// # Errors
    /// As [`Read::read`]: a body over the limit, malformed, too slow, or a
    /// connection that broke.
    pub fn to_vec(&mut self) -> io::Result<Vec<u8>> {
        // A hint only: a Content-Length over the limit was refused before the
        // service was called.
        let hint = self.len.map_or(0, |len| usize::try_from(len).unwrap_or(0));
        let mut bytes = Vec::with_capacity(hint.min(1 << 20));
        self.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Reads the whole body and parses it as JSON.
    ///
    /// # Errors
    /// As [`RequestBody::to_vec`], and `InvalidData` for a body that is not JSON of
    /// the type asked for (answer it `400` or `422`).
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<T> {
        let bytes = self.to_vec()?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// The trailer fields of a chunked body, once the body has been read to its end
    /// (`None` before, and for a body framed by `Content-Length`).
    pub fn trailers(&self) -> Option<&HeaderMap> {
        match &self.inner {
            Inner::Wire(source) => source.trailers(),
            Inner::Slice(_) => None,
        }
    }
}

impl Read for RequestBody<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Wire(source) => source.read(out),
            Inner::Slice(bytes) => bytes.read(out),
        }
    }
}

impl fmt::Debug for RequestBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
