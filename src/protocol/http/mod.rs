//! HTTP/1.1 over the server's pool: services written against the [`http`] crate's
//! types, a connection loop that reads requests, streams bodies both ways, and says
//! goodbye.
//!
//! # Services
//!
//! A [`Service`] takes a [`Request`] — the `http` crate's `Request` whose body, a
//! [`RequestBody`], is read from the connection as the service reads it — and answers
//! with a [`Response`], the `http` crate's `Response` around a [`Body`]: bytes, a
//! [`Read`](std::io::Read)er streamed as it is sent (chunked when its length is
//! unknown), or a file sent by the kernel. A service that returns an [`Error`] is
//! logged and answered `500`, and the connection lives on when the request was read
//! to its end. Any `Fn(Request<'_>, &Context) -> R` is a service, where `R` is an
//! `http::Response` of anything that converts into a [`Body`], or a `Result` of one.
//! The [`Context`] says whether the server is draining or forced.
//!
//! Status codes, methods and headers are the `http` crate's, re-exported as
//! [`http`](mod@http) so that nothing else needs to be a dependency. The handler owns
//! the framing: `HEAD` is answered by calling the service as `GET` and sending the
//! head alone; `Content-Length`, `Transfer-Encoding` and `Connection` are the
//! handler's (a service's own are replaced, logged at debug level; its
//! `Connection: close` is honoured); status lines always carry a reason phrase.
//!
//! ```
//! # #[cfg(feature = "json")] {
//! use std::io::{BufRead, BufReader, Read, Write};
//! use std::net::TcpStream;
//! use lameduck::protocol::http::http::{Method, StatusCode};
//! use lameduck::protocol::http::{json, query_pairs, text, Body, Context, Error, Http, Request, Response};
//! use lameduck::{Server, Shutdown};
//!
//! fn app(mut request: Request<'_>, _ctx: &Context) -> Result<Response, Error> {
//!     match (request.method().clone(), request.uri().path()) {
//!         // A JSON route: query pairs in, JSON out (feature `json`).
//!         (Method::GET, "/hello") => {
//!             let name = query_pairs(request.uri())
//!                 .into_iter()
//!                 .find(|(key, _)| key == "name")
//!                 .map_or_else(|| "world".to_string(), |(_, value)| value);
//!             Ok(json(StatusCode::OK, &serde_json::json!({ "hello": name })))
//!         }
//!         // A streamed response: a GiB of zeros, never in memory at once.
//!         (Method::GET, "/zeros") => {
//!             let zeros = std::io::repeat(0).take(1 << 30);
//!             Ok(Response::new(Body::sized_reader(zeros, 1 << 30)))
//!         }
//!         // An upload, read as it arrives: its size costs a buffer, not memory.
//!         (Method::PUT, "/upload") => {
//!             let received = std::io::copy(request.body_mut(), &mut std::io::sink())?;
//!             Ok(text(StatusCode::OK, format!("{received} bytes\n")))
//!         }
//!         _ => Ok(text(StatusCode::NOT_FOUND, "not found\n")),
//!     }
//! }
//!
//! let shutdown = Shutdown::new();
//! let server = Server::builder()
//!     .addr("127.0.0.1:0".parse()?)
//!     .start(Http::new(app).max_body(64 << 20), &shutdown)?;
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.write_all(b"GET /hello?name=caf%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(reply.ends_with(r#"{"hello":"café"}"#));
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.write_all(b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")?;
//! let mut status = String::new();
//! BufReader::new(client).read_line(&mut status)?;
//! assert_eq!(status, "HTTP/1.1 200 OK\r\n");
//!
//! shutdown.trigger();
//! assert_eq!(server.join().exit_code(), 0);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The connection loop
//!
//! One worker serves one connection, so the loop is plain blocking code: read a head
//! (within the header limits and the header timeout), call the service, whose reads
//! of the body wait at most the body timeout each, write the response, and keep any
//! bytes after the request for the next one — pipelined requests are answered in
//! order. A body the service left unread is read and discarded if little is left,
//! otherwise the connection closes after the response. Between requests the worker
//! waits with [`Connection::read_request`], which a drain interrupts at once; inside a
//! request every read waits at most one tick, and each wait also ends at the deadline
//! of the timeout that applies (header, body or idle), so timeouts fire on time
//! whatever the tick.
//!
//! Streaming: a response body from a reader goes out through one buffer of 64 KiB,
//! each piece written before the next is read, so a client that reads slowly holds
//! the worker (until the write timeout, if it stops reading), not memory; a file goes
//! from the page cache to the socket with `sendfile(2)` on Linux. A request body is
//! decoded into the service's own buffer, straight from the socket when no framing is
//! in the way.
//!
//! Draining: a request whose head has arrived is finished — a response being streamed
//! goes on to its end, or to the server's drain deadline, past which the force cuts
//! it (it counts as `forced`, and the client sees no final chunk, or fewer bytes than
//! `Content-Length`). Before the last response goes out, one non-blocking read
//! collects what the client already sent, every complete request in hand is answered,
//! and the last response carries `Connection: close`. An idle keep-alive connection
//! is dismissed by the server as soon as draining begins (an HTTP goodbye is just the
//! close) — unless it is within its keep-alive grace. A request cut off by the goodbye
//! (its head incomplete, or sent as the idle connection was dismissed) is left
//! unanswered (it crossed the goodbye on the wire; no server can answer it); the
//! graceful close keeps it from becoming a reset, and a client retries it elsewhere.
//!
//! **Keep-alive grace** ([`Http::keepalive_grace`]). A closed-loop client
//! sends its next request the moment it has read a response, so when draining
//! begins, the connections that look idle are mostly ones whose next request is
//! already on the wire; closing them turns that request into a bare EOF, which a
//! client cannot tell from a crash (Python's `RemoteDisconnected`). The same holds for
//! a client that has just connected (accepted from the backlog as the drain began):
//! its first request is on the way. So a connection stays open until the grace has
//! passed since its last response, or since its start, and a request whose head
//! arrives meanwhile is answered, with `Connection: close`. The wait happens on either
//! side of the race: a worker blocked between requests is left alone by the server's
//! dismissal until its grace ends ([`Handler::keepalive_grace`] tells the server how
//! long); a worker that comes back to wait after draining has begun waits itself, with
//! a read bounded by the end of the grace. Connections idle for longer close at once,
//! so the grace lengthens a drain by at most its own length, and never for long-idle
//! clients.
//!
//! Memory is bounded per connection by the head limit plus one read, the response
//! buffer, and what the service itself holds (a body it reads whole with
//! [`RequestBody::to_vec`] is bounded by the body limit).

mod body;
mod exchange;
#[cfg(test)]
mod fuzz;
mod head;
mod helpers;
mod host;
mod request;
mod request_body;
mod response;
mod routes;
mod send;
mod service;
mod session;
mod wire;

use std::io;
use std::time::Duration;

/// The `http` crate, whose types services speak: `use
/// lameduck::protocol::http::http::{Method, StatusCode, header}` needs no dependency
/// of your own, and is the same crate as a direct `http = "1"`.
pub use ::http;

pub use head::BUSY_REPLY;
#[cfg(feature = "json")]
pub use helpers::json;
pub use helpers::query_pairs;
pub use request_body::{Request, RequestBody};
pub use response::{text, Body, Response};
pub use routes::{Hello, ALLOWED, HELLO};
pub use service::{Context, Error, IntoResponse, Service};

use crate::server::{Connection, Handler};
use request::Limits;
use session::Session;

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

    /// How long a request body may keep the service waiting for the client's next
    /// bytes: each read of the body waits at most this long, counted from when it
    /// began waiting (the service's own time between reads does not count, and an
    /// upload of any size goes through as long as the client keeps sending); then
    /// 408. Default 30 s.
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
        Session::new(self, conn).run(conn)
    }

    fn busy_reply(&self) -> &[u8] {
        BUSY_REPLY
    }

    fn keepalive_grace(&self) -> Duration {
        self.keepalive_grace
    }
}
