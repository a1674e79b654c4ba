//! The application's side of HTTP: a [`Service`] turns a complete request into a
//! response, and a [`Context`] tells it about the connection and the shutdown.
//!
//! The handler owns everything about the wire (framing, limits, keep-alive, the
//! goodbye); a service only sees whole requests. That split is what lets an
//! application bring its own routes and still get the drain behaviour for free.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::request::Request;
use super::response::Response;
use crate::server::Connection;
use crate::shutdown::Shutdown;

/// Answers requests. Called on a worker thread, once per request, with the body
/// already read; the built-in routes of `lameduck http` are one implementation
/// ([`Hello`](super::Hello)), and any `Fn(&Request, &Context) -> Response` is another.
pub trait Service: Send + Sync + 'static {
    /// Answers `request`.
    fn call(&self, request: &Request, ctx: &Context<'_>) -> Response;
}

impl<F> Service for F
where
    F: Fn(&Request, &Context<'_>) -> Response + Send + Sync + 'static,
{
    fn call(&self, request: &Request, ctx: &Context<'_>) -> Response {
        self(request, ctx)
    }
}

/// What a service may know about the connection it answers on.
#[derive(Debug)]
pub struct Context<'a> {
    conn: &'a Connection<'a>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(conn: &'a Connection<'a>) -> Context<'a> {
        Context { conn }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    /// False from the first shutdown signal on — before the server stops accepting
    /// when it has a drain delay — so a health check can report "not ready" while
    /// requests are still served.
    pub fn is_ready(&self) -> bool {
        !self.conn.app_shutdown().is_triggered()
    }

    /// True once the server has stopped accepting; this response will be the last
    /// one on the connection unless more requests were already received.
    pub fn is_draining(&self) -> bool {
        self.conn.is_draining()
    }

    /// True once the shutdown is forced: whatever is sent now may never arrive.
    pub fn is_forced(&self) -> bool {
        self.conn.is_forced()
    }

    /// The application's shutdown token.
    pub fn app_shutdown(&self) -> &Shutdown {
        self.conn.app_shutdown()
    }

    /// Stands for `duration` of work that a drain lets finish but a force cuts
    /// short. Returns false if it was cut short.
    pub fn work_for(&self, duration: Duration) -> bool {
        // A duration too large to add to an instant lasts until a force.
        const FAR: Duration = Duration::from_secs(24 * 3600);
        let until = Instant::now().checked_add(duration);
        loop {
            let step_end = until.unwrap_or_else(|| Instant::now() + FAR);
            if self.conn.wait_forced_until(step_end) {
                return false;
            }
            if until.is_some() {
                return true;
            }
        }
    }
}
