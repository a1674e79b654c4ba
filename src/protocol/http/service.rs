//! The application's side of HTTP: a [`Service`] turns a request into a response,
//! and a [`Context`] tells it about the connection and the shutdown.
//!
//! The handler owns everything about the wire (framing, limits, keep-alive, the
//! goodbye); a service sees the `http` crate's request, reads its body as a stream if
//! it wants it, and answers with the `http` crate's response. That split is what
//! lets an application bring its own routes and still get the drain behaviour for
//! free.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::request_body::Request;
use super::response::{Body, Response};
use crate::{Connection, Shutdown};

/// The error a service may return: logged at error level and answered `500`; the
/// connection stays usable (keep-alive) when the request was read completely.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Answers requests. Called on a worker thread, once per request, with the head
/// parsed and the body still on the wire (read it through the request's body, or
/// leave it: the handler then discards it within limits, or closes the
/// connection). The built-in routes of `lameduck http` are one implementation
/// ([`Hello`](super::Hello)); any `Fn(Request<'_>, &Context) -> R` where `R` is a
/// [`Response`] (or an `http::Response` of anything that converts into a [`Body`],
/// or a `Result` of one) is another.
pub trait Service: Send + Sync + 'static {
    /// Answers `request`.
    ///
    /// # Errors
    /// Any error: it is logged and the client gets `500 Internal Server Error`.
    fn call(&self, request: Request<'_>, ctx: &Context) -> Result<Response, Error>;
}

impl<F, R> Service for F
where
    F: Fn(Request<'_>, &Context) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    fn call(&self, request: Request<'_>, ctx: &Context) -> Result<Response, Error> {
        self(request, ctx).into_response()
    }
}

/// What a service function may return: an `http::Response` whose body converts into
/// a [`Body`] (`&'static str`, `String`, `Vec<u8>`, [`Body`] itself...), or a
/// `Result` of one whose error converts into [`Error`] — which is what
/// `http::Response::builder().body(..)` gives.
pub trait IntoResponse {
    /// The response, or the error to answer with `500`.
    ///
    /// # Errors
    /// The service's own error.
    fn into_response(self) -> Result<Response, Error>;
}

impl<B: Into<Body>> IntoResponse for ::http::Response<B> {
    fn into_response(self) -> Result<Response, Error> {
        Ok(self.map(Into::into))
    }
}

impl<B: Into<Body>, E: Into<Error>> IntoResponse for Result<::http::Response<B>, E> {
    fn into_response(self) -> Result<Response, Error> {
        self.map(|response| response.map(Into::into))
            .map_err(Into::into)
    }
}

/// What a service may know about the connection it answers on and about the
/// shutdown. It does not borrow the connection, so a service can hold it while it
/// reads the request body.
#[derive(Debug, Clone)]
pub struct Context {
    peer: SocketAddr,
    draining: Shutdown,
    app: Shutdown,
}

impl Context {
    pub(crate) fn new(conn: &Connection<'_>) -> Context {
        Context {
            peer: conn.peer_addr(),
            draining: conn.draining().clone(),
            app: conn.app_shutdown().clone(),
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// False from the first shutdown signal on — before the server stops accepting
    /// when it has a drain delay — so a health check can report "not ready" while
    /// requests are still served.
    pub fn is_ready(&self) -> bool {
        !self.app.is_triggered()
    }

    /// True once the server has stopped accepting; this response will be the last
    /// one on the connection unless more requests were already received. A response
    /// being streamed goes on to its end (or to the drain deadline).
    pub fn is_draining(&self) -> bool {
        self.draining.is_triggered()
    }

    /// True once the shutdown is forced: whatever is sent now may never arrive.
    pub fn is_forced(&self) -> bool {
        self.draining.is_forced() || self.app.is_forced()
    }

    /// The application's shutdown token.
    pub fn app_shutdown(&self) -> &Shutdown {
        &self.app
    }

    /// Stands for `duration` of work that a drain lets finish but a force cuts
    /// short. Returns false if it was cut short.
    pub fn work_for(&self, duration: Duration) -> bool {
        // A duration too large to add to an instant lasts until a force.
        const FAR: Duration = Duration::from_secs(24 * 3600);
        let until = Instant::now().checked_add(duration);
        loop {
            let step_end = until.unwrap_or_else(|| Instant::now() + FAR);
            if self.wait_forced_until(step_end) {
                return false;
            }
            if until.is_some() {
                return true;
            }
        }
    }

    /// Blocks until the shutdown is forced or `deadline` passes; true if forced.
    fn wait_forced_until(&self, deadline: Instant) -> bool {
        if self.is_forced() {
            return true;
        }
        let (server_forced, app_forced) = (self.draining.forced(), self.app.forced());
        crossbeam_channel::select! {
            recv(server_forced) -> _ => true,
            recv(app_forced) -> _ => true,
            default(deadline.saturating_duration_since(Instant::now())) => self.is_forced(),
        }
    }
}
