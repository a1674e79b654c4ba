//! Reading a request body off the connection as the service reads it.
//!
//! Bytes already received (after the head, in the session's buffer) are decoded
//! first; after that, body bytes that follow with no framing between them go from
//! the socket straight into the service's buffer, and only framing (chunk-size
//! lines, trailers) passes through the session's read chunk. What reading meets —
//! a body over the limit, malformed framing, a client too slow, a broken
//! connection — is kept here for the handler, which answers it once the service
//! returns.

use std::io;
use std::time::{Duration, Instant};

use ::http::header::{HeaderName, HeaderValue};
use ::http::{HeaderMap, StatusCode};

use super::body::BodyDecoder;
use super::request::{Framing, Limits, RequestError};
use super::request_body::Source;
use crate::{Connection, Received};

/// One request's body as it is read, and what reading it met.
#[derive(Debug)]
pub(crate) struct BodyState {
    decoder: BodyDecoder,
    body_timeout: Duration,
    /// The end of the handler's own discarding of a body the service left unread:
    /// that wait is bounded as a whole, not per read.
    pub(crate) until: Option<Instant>,
    /// The client waits for `100 Continue` and has not been sent it.
    pub(crate) continue_owed: bool,
    raw_trailers: Vec<(String, Vec<u8>)>,
    trailers: Option<HeaderMap>,
    /// The client's fault: answered with its status instead of the service's
    /// response.
    pub(crate) refused: Option<RequestError>,
    /// The connection broke mid-body (the client left, a reset, a force).
    pub(crate) broken: Option<io::ErrorKind>,
}

impl BodyState {
    pub(crate) fn new(
        framing: Framing,
        limits: Limits,
        body_timeout: Duration,
        expects_continue: bool,
    ) -> BodyState {
        BodyState {
            decoder: BodyDecoder::new(framing, limits),
            body_timeout,
            until: None,
            continue_owed: expects_continue,
            raw_trailers: Vec::new(),
            trailers: None,
            refused: None,
            broken: None,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    fn refuse(&mut self, err: RequestError) -> io::Error {
        let kind = if err.status == StatusCode::REQUEST_TIMEOUT {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::InvalidData
        };
        self.refused = Some(err.clone());
        io::Error::new(kind, err)
    }

    fn finished(&mut self) {
        if self.trailers.is_none() {
            let mut map = HeaderMap::new();
            for (name, value) in self.raw_trailers.drain(..) {
                // The decoder took them through httparse: only a value with bytes
                // the `http` crate refuses could fail, and it is left out.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(&value),
                ) {
                    map.append(name, value);
                }
            }
            self.trailers = Some(map);
        }
    }
}

/// The connection and the session's buffers, lent to a request body.
pub(crate) struct Wire<'s, 'c> {
    pub(crate) conn: &'s mut Connection<'c>,
    /// Bytes received and not consumed: the start of the body, maybe more requests.
    pub(crate) buf: &'s mut Vec<u8>,
    /// Scratch for reads that may hold framing.
    pub(crate) chunk: &'s mut [u8],
    pub(crate) state: &'s mut BodyState,
}

impl Wire<'_, '_> {
    /// Decodes what `buf` holds into `out`: `Some(n)` when that produced body bytes
    /// or ended the body, `None` when `buf` is used up and more must be read.
    fn decode_buffered(&mut self, out: &mut [u8]) -> io::Result<Option<usize>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let state = &mut *self.state;
        let fed = match state
            .decoder
            .feed(&self.buf[..], out.len(), &mut state.raw_trailers)
        {
            Ok(fed) => fed,
            Err(err) => return Err(state.refuse(err)),
        };
        let n = fed.data.len();
        out[..n].copy_from_slice(&self.buf[fed.data]);
        self.buf.drain(..fed.consumed);
        if fed.done {
            state.finished();
        }
        Ok((n > 0 || fed.done).then_some(n))
    }

    /// Waits for the client's next bytes, at most the body timeout: body bytes that
    /// need no decoding go straight into `out` (`Some(n)`), anything else into
    /// `buf` (`None`).
    fn read_socket(
        &mut self,
        out: &mut [u8],
        deadline: Option<Instant>,
    ) -> io::Result<Option<usize>> {
        if self.state.continue_owed {
            self.state.continue_owed = false;
            self.conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let direct = usize::try_from(self.state.decoder.direct()).unwrap_or(usize::MAX);
        let into_out = direct > 0;
        let target = if into_out {
            let len = out.len().min(direct);
            &mut out[..len]
        } else {
            &mut *self.chunk
        };
        // The request is in flight: it is finished even while draining.
        self.conn.set_deadline(deadline);
        match self.conn.read(target) {
            Ok(Received::Data(n)) if into_out => {
                self.state.decoder.took(n);
                if self.state.decoder.is_done() {
                    self.state.finished();
                }
                Ok(Some(n))
            }
            Ok(Received::Data(n)) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                Ok(None)
            }
            Ok(Received::Eof | Received::Dismissed) => {
                self.state.broken = Some(io::ErrorKind::UnexpectedEof);
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed mid-body",
                ))
            }
            Ok(Received::Quiet) => {
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    let err =
                        RequestError::new(StatusCode::REQUEST_TIMEOUT, "request body too slow");
                    return Err(self.state.refuse(err));
                }
                Ok(None)
            }
            Err(err) => {
                self.state.broken = Some(err.kind());
                Err(err)
            }
        }
    }
}

impl Source for Wire<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(err) = &self.state.refused {
            let err = err.clone();
            return Err(self.state.refuse(err));
        }
        if let Some(kind) = self.state.broken {
            return Err(io::Error::new(kind, "the connection broke mid-body"));
        }
        if out.is_empty() || self.state.decoder.is_done() {
            return Ok(0);
        }
        // The body timeout bounds each wait for the client, counted from when this
        // read began waiting: time the service spends between reads is its own, and
        // a client that keeps sending may take as long as its upload needs.
        let deadline = match (
            Instant::now().checked_add(self.state.body_timeout),
            self.state.until,
        ) {
            (Some(wait), Some(until)) => Some(wait.min(until)),
            (wait, until) => wait.or(until),
        };
        loop {
            if let Some(n) = self.decode_buffered(out)? {
                return Ok(n);
            }
            if let Some(n) = self.read_socket(out, deadline)? {
                return Ok(n);
            }
        }
    }

    fn trailers(&self) -> Option<&HeaderMap> {
        self.state.trailers.as_ref()
    }
}
