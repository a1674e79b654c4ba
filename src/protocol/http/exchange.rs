//! One request through the service: the `http` crate's request around a body read
//! from the wire, the call (a panic and an error each become a 500), and what is
//! left of the body afterwards.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use ::http::{Method, StatusCode, Version};

use super::request::{Framing, Head, RequestError};
use super::request_body::{RequestBody, Source};
use super::response::{text, Response};
use super::service::{Error, Service};
use super::session::Session;
use super::wire::{BodyState, Wire};
use crate::Connection;

/// Bytes of a body the service left unread that the handler reads and discards to
/// keep the connection open; a longer rest closes it after the response instead.
const UNREAD_LIMIT: usize = 64 * 1024;

/// A response to send, and how.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) response: Response,
    /// The request was a HEAD: the head goes out without the body.
    pub(super) head_only: bool,
    pub(super) version: Version,
    /// The client may reuse the connection and its request was read to the end.
    pub(super) keep_alive: bool,
}

/// Where a request body stands once the service is done with it.
enum BodyEnd {
    Complete,
    /// Left on the wire: the connection closes after the response.
    Unread,
    /// Malformed, over the limit or too slow: answered with its status.
    Refused(RequestError),
}

impl<S: Service> Session<'_, S> {
    /// Has the service answer the request of `head`. `None` when the request was
    /// answered here already (its body was refused) and the connection is done.
    pub(super) fn exchange(
        &mut self,
        conn: &mut Connection<'_>,
        head: Head,
    ) -> io::Result<Option<Answer>> {
        let head_only = head.method == Method::HEAD;
        let (method, uri) = (head.method.clone(), head.uri.clone());
        // A client that sent body bytes with its head is not waiting for 100.
        let owes_continue = head.expects_continue && self.buf.is_empty();
        let limits = self.http.limits;
        let mut state = BodyState::new(head.framing, limits, self.http.body_timeout, owes_continue);
        let (version, keep_alive) = (head.version, head.keep_alive);
        let result = match self.call(conn, &mut state, head) {
            Ok(result) => result,
            Err(payload) => {
                // The client gets a 500 instead of a dropped connection; the
                // panic then goes on to the server, which counts and logs it.
                let err =
                    RequestError::new(StatusCode::INTERNAL_SERVER_ERROR, "the service failed");
                let _ = self.refuse(conn, &err, head_only);
                panic::resume_unwind(payload);
            }
        };
        // A service that failed because the request did (a body over the limit or
        // too slow, a client gone) is not at fault: the request's failure is
        // answered below (or the connection dropped), and the error is only noted.
        let request_failed = state.refused.is_some() || state.broken.is_some();
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                let peer = conn.peer_addr();
                if request_failed {
                    log::debug!("{peer}: {method} {uri}: {err}");
                } else {
                    log::error!("{peer}: {method} {uri}: {err}");
                }
                text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
            }
        };
        let complete = match self.finish_body(conn, &mut state)? {
            BodyEnd::Complete => true,
            BodyEnd::Unread => false,
            BodyEnd::Refused(err) => {
                self.refuse(conn, &err, head_only)?;
                return Ok(None);
            }
        };
        Ok(Some(Answer {
            response,
            head_only,
            version,
            keep_alive: keep_alive && complete,
        }))
    }

    /// Calls the service with the request of `head`, its body read through `state`.
    /// A HEAD is asked as a GET.
    fn call(
        &mut self,
        conn: &mut Connection<'_>,
        state: &mut BodyState,
        head: Head,
    ) -> std::thread::Result<Result<Response, Error>> {
        let Head {
            method,
            uri,
            version,
            headers,
            framing,
            ..
        } = head;
        let len = match framing {
            Framing::Empty => Some(0),
            Framing::Length(len) => Some(len),
            Framing::Chunked => None,
        };
        let mut wire = Wire {
            conn,
            buf: &mut self.buf,
            chunk: &mut self.chunk,
            state,
        };
        let mut request = ::http::Request::new(RequestBody::wire(&mut wire, len));
        *request.method_mut() = if method == Method::HEAD {
            Method::GET
        } else {
            method
        };
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        let (service, ctx) = (&self.http.service, &self.ctx);
        // AssertUnwindSafe: the request and its body are dropped unused after a
        // panic, the connection is answered 500 and closed; the service's own state
        // is its concern, as for any `Sync` handler.
        panic::catch_unwind(AssertUnwindSafe(move || service.call(request, ctx)))
    }

    /// Settles what the service left of the body: read to its end if little is left
    /// (the connection stays open), left on the wire otherwise.
    fn finish_body(
        &mut self,
        conn: &mut Connection<'_>,
        state: &mut BodyState,
    ) -> io::Result<BodyEnd> {
        if let Some(err) = state.refused.take() {
            return Ok(BodyEnd::Refused(err));
        }
        if let Some(kind) = state.broken {
            return Err(io::Error::new(kind, "the connection broke mid-body"));
        }
        if state.is_done() {
            return Ok(BodyEnd::Complete);
        }
        // The client waits for 100 Continue before it sends the body: it never will.
        if state.continue_owed {
            return Ok(BodyEnd::Unread);
        }
        // A client dripping the rest of a body nobody wants gets the body timeout in
        // all, not per read.
        state.until = Instant::now().checked_add(self.http.body_timeout);
        let mut wire = Wire {
            conn,
            buf: &mut self.buf,
            chunk: &mut self.chunk,
            state,
        };
        let mut discard = [0u8; 8 * 1024];
        let mut left = UNREAD_LIMIT;
        while left > 0 {
            let want = left.min(discard.len());
            match wire.read(&mut discard[..want]) {
                Ok(0) => break,
                Ok(n) => left -= n,
                Err(_) => break,
            }
        }
        if let Some(err) = state.refused.take() {
            return Ok(BodyEnd::Refused(err));
        }
        if let Some(kind) = state.broken {
            return Err(io::Error::new(kind, "the connection broke mid-body"));
        }
        Ok(if state.is_done() {
            BodyEnd::Complete
        } else {
            BodyEnd::Unread
        })
    }
}
