//! One connection's conversation: read a head, have the service answer it (see
//! `exchange`), send the response (see `send`), and again, until the client is done
//! or the drain says goodbye.

use std::io;
use std::time::Instant;

use super::body::BodyDecoder;
use super::head::{write_head, Delimit, Persist};
use super::request::{parse_head, Head, Parsed, RequestError};
use super::service::{Context, Service};
use super::Http;
use crate::{Connection, Received};
use ::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use ::http::StatusCode;

/// How much one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// One connection's state between requests.
pub(super) struct Session<'a, S> {
    pub(super) http: &'a Http<S>,
    /// Bytes received and not yet consumed: a partial head, the start of a body, or
    /// requests pipelined after the current one.
    pub(super) buf: Vec<u8>,
    pub(super) chunk: Vec<u8>,
    /// The response being written: its head, and a piece of its body.
    pub(super) out: Vec<u8>,
    /// The one non-blocking read of the goodbye has been done.
    read_pending_done: bool,
    /// Responses written so far.
    served: u64,
    pub(super) ctx: Context,
}

/// How reading a head ended.
enum HeadRead {
    Head(Box<Head>),
    /// Nothing more to serve: the client left, idled out, or the drain came first.
    Done,
}

/// What one wait for more of a head produced.
enum More {
    /// Bytes arrived; `newline` if they hold a LF, the only byte a head ends at.
    Bytes { newline: bool },
    /// A quiet wait: check the clocks and wait again.
    Nothing,
    /// Nothing more to serve.
    Done,
}

impl<'a, S: Service> Session<'a, S> {
    pub(super) fn new(http: &'a Http<S>, conn: &Connection<'_>) -> Session<'a, S> {
        Session {
            http,
            buf: Vec::new(),
            chunk: vec![0; READ_CHUNK],
            out: Vec::new(),
            read_pending_done: false,
            served: 0,
            ctx: Context::new(conn),
        }
    }

    pub(super) fn run(mut self, conn: &mut Connection<'_>) -> io::Result<()> {
        let mut idle_since = Instant::now();
        loop {
            let head = match self.read_head(conn, idle_since)? {
                HeadRead::Head(head) => head,
                HeadRead::Done => return Ok(()),
            };
            let Some(answer) = self.exchange(conn, *head)? else {
                return Ok(());
            };
            let persist = self.respond(conn, answer)?;
            self.served += 1;
            if persist == Persist::Close {
                return Ok(());
            }
            idle_since = Instant::now();
        }
    }

    /// Reads until `buf` starts with a complete head, or the connection is done.
    fn read_head(
        &mut self,
        conn: &mut Connection<'_>,
        idle_since: Instant,
    ) -> io::Result<HeadRead> {
        // The header clock: from the connection's start for its first request, from
        // the first byte for later ones (bytes already buffered count as now).
        let mut head_started = (self.served == 0).then_some(idle_since);
        let mut parse = !self.buf.is_empty();
        loop {
            if !self.buf.is_empty() && head_started.is_none() {
                head_started = Some(Instant::now());
            }
            // A head can only end at a LF, so there is nothing new to learn from
            // parsing again until one arrives (or the buffer passes the limit):
            // a client sending a byte at a time costs one parse per line, not per byte.
            if parse || self.buf.len() > self.http.limits.max_head_bytes {
                match parse_head(&self.buf, &self.http.limits) {
                    Ok(Parsed::Complete(head, len)) => {
                        self.buf.drain(..len);
                        return Ok(HeadRead::Head(head));
                    }
                    Ok(Parsed::Partial) => {}
                    Err(err) => {
                        self.refuse(conn, &err, false)?;
                        return Ok(HeadRead::Done);
                    }
                }
            }
            if self.head_too_slow(conn, head_started)? {
                return Ok(HeadRead::Done);
            }
            parse = match self.more_head(conn, idle_since, head_started)? {
                More::Bytes { newline } => newline,
                More::Nothing => false,
                More::Done => return Ok(HeadRead::Done),
            };
        }
    }

    /// True once the header timeout has passed: a partial head gets 408, a
    /// connection that sent nothing (or only blank lines) is closed silently.
    fn head_too_slow(
        &mut self,
        conn: &mut Connection<'_>,
        head_started: Option<Instant>,
    ) -> io::Result<bool> {
        let Some(started) = head_started else {
            return Ok(false);
        };
        if started.elapsed() < self.http.header_timeout {
            return Ok(false);
        }
        if !self.buf.iter().all(u8::is_ascii_whitespace) {
            let err = RequestError::new(StatusCode::REQUEST_TIMEOUT, "request head too slow");
            self.refuse(conn, &err, false)?;
        }
        Ok(true)
    }

    /// Waits once for more of a head, by the deadline that applies.
    fn more_head(
        &mut self,
        conn: &mut Connection<'_>,
        idle_since: Instant,
        head_started: Option<Instant>,
    ) -> io::Result<More> {
        // (A timeout too large to add to an instant is no deadline at all.)
        let head_deadline =
            head_started.and_then(|started| started.checked_add(self.http.header_timeout));
        if conn.is_draining() {
            if !self.read_pending_done {
                let before = self.buf.len();
                self.read_pending(conn)?;
                let newline = self.buf[before..].contains(&b'\n');
                return Ok(More::Bytes { newline });
            }
            // Nothing complete in hand: the goodbye is the close itself, unless
            // the next request may still be on its way (the keep-alive grace).
            let Some(grace_end) = self.grace_end(idle_since) else {
                return Ok(More::Done);
            };
            conn.set_deadline(Some(head_deadline.map_or(grace_end, |d| d.min(grace_end))));
            let received = conn.read(&mut self.chunk)?;
            return self.received(received);
        }
        // Reads wake by the deadline that applies, whatever the tick.
        let deadline = head_deadline.or_else(|| idle_since.checked_add(self.http.idle_timeout));
        conn.set_deadline(deadline);
        // Between requests the wait is idle, so a drain can dismiss it at once;
        // once a head has begun, it is a request in progress.
        let received = if self.buf.is_empty() {
            conn.read_request(&mut self.chunk)?
        } else {
            conn.read(&mut self.chunk)?
        };
        let idle_out = self.buf.is_empty()
            && self.served > 0
            && idle_since.elapsed() >= self.http.idle_timeout;
        match self.received(received)? {
            More::Nothing if idle_out => Ok(More::Done),
            more => Ok(more),
        }
    }

    /// Keeps what a read brought. A client that leaves mid-head has given up on its
    /// request; a dismissed one was closed by the server on our behalf.
    fn received(&mut self, received: Received) -> io::Result<More> {
        Ok(match received {
            Received::Data(n) => {
                self.buf.extend_from_slice(&self.chunk[..n]);
                More::Bytes {
                    newline: self.chunk[..n].contains(&b'\n'),
                }
            }
            Received::Eof | Received::Dismissed => More::Done,
            Received::Quiet => More::Nothing,
        })
    }

    /// While draining: when the keep-alive grace of a connection whose last
    /// response went out at `last_response` (its start, before the first) ends, if
    /// it has not ended yet.
    fn grace_end(&self, last_response: Instant) -> Option<Instant> {
        last_response
            .checked_add(self.http.keepalive_grace)
            .filter(|end| Instant::now() < *end)
    }

    /// The one non-blocking read before the goodbye, at most once: it answers what
    /// the client already sent without letting a chatty client hold the drain open.
    pub(super) fn read_pending(&mut self, conn: &mut Connection<'_>) -> io::Result<()> {
        if self.read_pending_done {
            return Ok(());
        }
        self.read_pending_done = true;
        if let Received::Data(n) = conn.read_pending(&mut self.chunk)? {
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
        Ok(())
    }

    /// Whether `buf` holds a whole request (or one that is already known to be
    /// bad, which is owed its error status).
    pub(super) fn holds_complete_request(&self) -> bool {
        let limits = &self.http.limits;
        match parse_head(&self.buf, limits) {
            Ok(Parsed::Partial) => false,
            Err(_) => true,
            Ok(Parsed::Complete(head, len)) => {
                let mut decoder = BodyDecoder::new(head.framing, *limits);
                let mut trailers = Vec::new();
                let mut rest = &self.buf[len..];
                loop {
                    match decoder.feed(rest, usize::MAX, &mut trailers) {
                        Err(_) => return true,
                        Ok(fed) if fed.done => return true,
                        Ok(fed) if fed.consumed == 0 => return false,
                        Ok(fed) => rest = &rest[fed.consumed..],
                    }
                }
            }
        }
    }

    /// Answers a request that cannot be served with its error status, and closes.
    /// `head_only` when the request is known to be a HEAD (its head was parsed).
    pub(super) fn refuse(
        &mut self,
        conn: &mut Connection<'_>,
        err: &RequestError,
        head_only: bool,
    ) -> io::Result<()> {
        log::debug!("{}: {err}", conn.peer_addr());
        let body = format!("{}\n", err.detail);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        self.out.clear();
        let delimit = Delimit::Length(body.len() as u64);
        write_head(err.status, &headers, delimit, Persist::Close, &mut self.out);
        if !head_only {
            self.out.extend_from_slice(body.as_bytes());
        }
        conn.write_all(&self.out)
    }
}
