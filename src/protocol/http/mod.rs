//! HTTP/1.1 over the server's pool: the connection loop that reads
//! requests, hands them to a [`Service`], writes responses and says goodbye.
//!
//! One worker serves one connection, so the loop is plain blocking code: read a head
//! (within the header limits and the header timeout), read its body (within
//! `max_body` and the body timeout), call the service, write the response, and keep
//! any bytes after the request for the next one — pipelined requests are answered in
//! order. Between requests the worker waits with [`Connection::read_request`], which
//! a drain interrupts at once; inside a request every read waits at most one tick,
//! and each wait also ends at the deadline of the timeout that applies (header, body
//! or idle), so timeouts fire on time whatever the tick.
//!
//! Draining: a request whose head has arrived is finished; before the
//! last response goes out, one non-blocking read collects what the client already
//! sent, every complete request in hand is answered, and the last response carries
//! `Connection: close`. An idle keep-alive connection is dismissed by the server as
//! soon as draining begins (an HTTP goodbye is just the close) — unless it is within
//! its keep-alive grace. A request cut off by the goodbye (its head incomplete, or
//! sent as the idle connection was dismissed) is left unanswered (it crossed the goodbye on the
//! wire; no server can answer it); the graceful close keeps it from becoming a reset, and a client retries it
//! elsewhere.
//!
//! **Keep-alive grace** ([`Http::keepalive_grace`]). A closed-loop client
//! sends its next request the moment it has read a response, so when draining
//! begins, the connections that look idle are mostly ones whose next request is
//! already on the wire; closing them turns that request into a bare EOF, which a
//! client cannot tell from a crash (Python's `RemoteDisconnected`). The same holds for
//! a client that has just connected (accepted from the backlog as the drain began):
//! its first request is on the way. So a connection stays open until the grace has
//! passed since its last response, or since its start, and a request whose head
//! arrives meanwhile is answered, with `Connection: close`. The wait happens on either side of the race: a worker
//! blocked between requests is left alone by the server's dismissal until its grace
//! ends ([`Handler::keepalive_grace`] tells the server how long); a worker that comes
//! back to wait after draining has begun waits itself, with a read bounded by the end
//! of the grace. Connections idle for longer close at once, so the grace lengthens a
//! drain by at most its own length, and never for long-idle clients.
//!
//! Memory is bounded per connection by the head limit plus one read, the body limit,
//! and the response the service returns.

mod body;
#[cfg(test)]
mod fuzz;
mod request;
mod response;
mod routes;
mod service;

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use body::{BodyDecoder, Fed, MAX_SIZE_LINE};
pub use request::{parse_head, Framing, Head, Limits, Parsed, Request, RequestError, Version};
pub use response::{Response, Status, BUSY_REPLY};
pub use routes::{Hello, ALLOWED, HELLO};
pub use service::{Context, Service};

use crate::server::Handler;
use crate::server::{Connection, Received};
use response::{write_response, Persist};

/// How much one read asks for.
const READ_CHUNK: usize = 16 * 1024;

/// The default of [`Http::keepalive_grace`], chosen from `benches/keepalive_grace.rs`
/// (see the README's "Keep-alive grace").
pub const DEFAULT_KEEPALIVE_GRACE: Duration = Duration::from_millis(100);

/// The HTTP handler: the wire protocol around a [`Service`].
#[derive(Debug, Clone)]
pub struct Http<S> {
    service: S,
    limits: Limits,
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    keepalive_grace: Duration,
}

impl Http<Hello> {
    /// The handler of `lameduck http`: the built-in routes with no work delay.
    pub fn hello() -> Http<Hello> {
        Http::new(Hello::new())
    }
}

impl<S: Service> Http<S> {
    /// Serves `service` with the default limits and timeouts.
    pub fn new(service: S) -> Http<S> {
        Http {
            service,
            limits: Limits::default(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            keepalive_grace: DEFAULT_KEEPALIVE_GRACE,
        }
    }

    /// Largest request body in bytes, decoded; beyond it the client gets 413.
    /// Default 1 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// Most header fields in a request; beyond it the client gets 431. Default 64.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.limits.max_headers = count.max(1);
        self
    }

    /// Most bytes in a request head; beyond it the client gets 431. Default 16 KiB.
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_head_bytes = bytes;
        self
    }

    /// How long a client may take to send a request head, counted from its first
    /// byte — or, for a connection's first request, from the connection's start, so
    /// a client that connects and sends nothing cannot hold a worker. A partial head
    /// gets 408; a connection that sent nothing is closed silently. Default 10 s.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// How long a client may take to send a request body, counted from the end of
    /// its head; then 408. Default 30 s.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may sit idle between requests before it is
    /// closed silently. Default 5 min.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Once draining begins, how long after its last response (or its start, for a
    /// connection that has not sent a request yet) a connection is kept open for a
    /// request already on its way; such a request is answered with
    /// `Connection: close`. Connections idle for longer are closed at once. It lengthens a drain by at most
    /// this much. Zero closes every idle connection at once. Default
    /// [`DEFAULT_KEEPALIVE_GRACE`] (100 ms).
    pub fn keepalive_grace(mut self, grace: Duration) -> Self {
        self.keepalive_grace = grace;
        self
    }
}

impl<S: Service> Handler for Http<S> {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        Session {
            http: self,
            buf: Vec::new(),
            chunk: vec![0; READ_CHUNK],
            out: Vec::new(),
            read_pending_done: false,
            served: 0,
        }
        .run(conn)
    }

    fn busy_reply(&self) -> &[u8] {
        BUSY_REPLY
    }

    fn keepalive_grace(&self) -> Duration {
        self.keepalive_grace
    }
}

/// One connection's state between requests.
struct Session<'a, S> {
    http: &'a Http<S>,
    /// Bytes received and not yet consumed: a partial head, or requests pipelined
    /// after the current one.
    buf: Vec<u8>,
    chunk: Vec<u8>,
    out: Vec<u8>,
    /// The one non-blocking read of the goodbye has been done.
    read_pending_done: bool,
    /// Responses written so far.
    served: u64,
}

/// How reading a head ended.
enum HeadRead {
    Head(Box<Head>),
    /// Nothing more to serve: the client left, idled out, or the drain came first.
    Done,
}

impl<S: Service> Session<'_, S> {
    fn run(mut self, conn: &mut Connection) -> io::Result<()> {
        let mut idle_since = Instant::now();
        loop {
            let head = match self.read_head(conn, idle_since)? {
                HeadRead::Head(head) => head,
                HeadRead::Done => return Ok(()),
            };
            let Head {
                mut request,
                framing,
                keep_alive,
                expects_continue,
            } = *head;
            if expects_continue && self.buf.is_empty() {
                conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            if let Err(err) = self.read_body(conn, framing, &mut request)? {
                return self.refuse(conn, &err, request.is_head());
            }
            // AssertUnwindSafe: the request and the connection are only lent to the
            // service by shared reference and dropped unused after a panic; the
            // service's own state is its concern, as for any `Sync` handler.
            let called = panic::catch_unwind(AssertUnwindSafe(|| {
                self.http.service.call(&request, &Context::new(conn))
            }));
            let response = match called {
                Ok(response) => response,
                Err(payload) => {
                    // The client gets a 500 instead of a dropped connection; the
                    // panic then goes on to the server, which counts and logs it.
                    let err = RequestError::new(Status::INTERNAL_ERROR, "the service failed");
                    let _ = self.refuse(conn, &err, request.is_head());
                    panic::resume_unwind(payload);
                }
            };
            let mut persist = keep_alive && !response.close;
            if persist && conn.is_draining() {
                // The goodbye: this is the last response unless the client already
                // sent another complete request.
                self.read_pending(conn)?;
                persist = self.holds_complete_request();
            }
            let persist = match (persist, request.version) {
                (false, _) => Persist::Close,
                (true, Version::Http10) => Persist::KeepAlive,
                (true, Version::Http11) => Persist::Default,
            };
            self.out.clear();
            write_response(&response, request.is_head(), persist, &mut self.out);
            conn.write_all(&self.out)?;
            self.served += 1;
            if persist == Persist::Close {
                return Ok(());
            }
            idle_since = Instant::now();
        }
    }

    /// Reads until `buf` starts with a complete head, or the connection is done.
    fn read_head(&mut self, conn: &mut Connection, idle_since: Instant) -> io::Result<HeadRead> {
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
            if let Some(started) = head_started {
                if started.elapsed() >= self.http.header_timeout {
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(HeadRead::Done);
                    }
                    let err = RequestError::new(Status::REQUEST_TIMEOUT, "request head too slow");
                    self.refuse(conn, &err, false)?;
                    return Ok(HeadRead::Done);
                }
            }
            if conn.is_draining() {
                if !self.read_pending_done {
                    let before = self.buf.len();
                    self.read_pending(conn)?;
                    parse = self.buf[before..].contains(&b'\n');
                    continue;
                }
                // Nothing complete in hand: the goodbye is the close itself, unless
                // the next request may still be on its way (the keep-alive grace).
                let Some(grace_end) = self.grace_end(idle_since) else {
                    return Ok(HeadRead::Done);
                };
                let head_deadline =
                    head_started.and_then(|started| started.checked_add(self.http.header_timeout));
                conn.set_deadline(Some(head_deadline.map_or(grace_end, |d| d.min(grace_end))));
                match conn.read(&mut self.chunk)? {
                    Received::Data(n) => {
                        parse = self.chunk[..n].contains(&b'\n');
                        self.buf.extend_from_slice(&self.chunk[..n]);
                    }
                    Received::Eof | Received::Dismissed => return Ok(HeadRead::Done),
                    Received::Quiet | Received::Deadline | Received::Draining => parse = false,
                }
                continue;
            }
            // Reads wake by the deadline that applies, whatever the tick.
            // (A timeout too large to add to an instant is no deadline at all.)
            let deadline = match head_started {
                Some(started) => started.checked_add(self.http.header_timeout),
                None => idle_since.checked_add(self.http.idle_timeout),
            };
            conn.set_deadline(deadline);
            // Between requests the wait is idle, so a drain can dismiss it at once;
            // once a head has begun, it is a request in progress.
            let received = if self.buf.is_empty() {
                conn.read_request(&mut self.chunk)?
            } else {
                conn.read(&mut self.chunk)?
            };
            match received {
                Received::Data(n) => {
                    parse = self.chunk[..n].contains(&b'\n');
                    self.buf.extend_from_slice(&self.chunk[..n]);
                }
                // A client that leaves mid-head has given up on its request; a
                // dismissed one was closed by the server on our behalf.
                Received::Eof | Received::Dismissed => return Ok(HeadRead::Done),
                // Draining: the next pass takes the drain's branch above.
                Received::Quiet | Received::Deadline | Received::Draining => {
                    parse = false;
                    if self.buf.is_empty()
                        && self.served > 0
                        && idle_since.elapsed() >= self.http.idle_timeout
                    {
                        return Ok(HeadRead::Done);
                    }
                }
            }
        }
    }

    /// Reads the body into `request`; the outer error is the connection's, the
    /// inner one the client's.
    fn read_body(
        &mut self,
        conn: &mut Connection,
        framing: Framing,
        request: &mut Request,
    ) -> io::Result<Result<(), RequestError>> {
        let mut decoder = BodyDecoder::new(framing, self.http.limits);
        let deadline = Instant::now().checked_add(self.http.body_timeout);
        loop {
            let fed = match decoder.feed(&self.buf, &mut request.body, &mut request.trailers) {
                Ok(fed) => fed,
                Err(err) => return Ok(Err(err)),
            };
            self.buf.drain(..fed.consumed);
            if fed.done {
                return Ok(Ok(()));
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(Err(RequestError::new(
                    Status::REQUEST_TIMEOUT,
                    "request body too slow",
                )));
            }
            // The request is in flight: it is finished even while draining.
            conn.set_deadline(deadline);
            match conn.read(&mut self.chunk)? {
                Received::Data(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Received::Eof | Received::Dismissed => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "client closed mid-body",
                    ))
                }
                Received::Quiet | Received::Deadline | Received::Draining => {}
            }
        }
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
    fn read_pending(&mut self, conn: &mut Connection) -> io::Result<()> {
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
    fn holds_complete_request(&self) -> bool {
        let limits = &self.http.limits;
        match parse_head(&self.buf, limits) {
            Ok(Parsed::Partial) => false,
            Err(_) => true,
            Ok(Parsed::Complete(head, len)) => {
                let mut decoder = BodyDecoder::new(head.framing, *limits);
                let (mut body, mut trailers) = (Vec::new(), Vec::new());
                decoder
                    .feed(&self.buf[len..], &mut body, &mut trailers)
                    .map_or(true, |fed| fed.done)
            }
        }
    }

    /// Answers a request that cannot be served with its error status, and closes.
    /// `head_only` when the request is known to be a HEAD (its head was parsed).
    fn refuse(
        &mut self,
        conn: &mut Connection,
        err: &RequestError,
        head_only: bool,
    ) -> io::Result<()> {
        log::debug!("{}: {err}", conn.peer_addr());
        let response = Response::text(err.status, format!("{}\n", err.detail));
        self.out.clear();
        write_response(&response, head_only, Persist::Close, &mut self.out);
        conn.write_all(&self.out)
    }
}
