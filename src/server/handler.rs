//! The connection handler interface: what a protocol implements to be served. The
//! server owns it: a handler is called by the pool and sees the server only through
//! the [`Connection`] it is lent.

use std::io;
use std::time::Duration;

use super::connection::Connection;

/// Serves one connection from its first byte to its goodbye.
///
/// The server calls [`Handler::handle`] on a worker thread with the connection's
/// socket already tuned (a read timeout of one tick, a write timeout of at most one
/// tick, `TCP_NODELAY`). A
/// handler returns `Ok(())` when the conversation is over — the client closed, an
/// error reply was sent, or [`Connection::is_draining`] turned true and the goodbye
/// was written — and the server then closes the connection gracefully. Returning
/// `Err` (or panicking) makes the server drop the socket without ceremony.
///
/// A handler must check [`Connection::is_draining`] at least once per
/// [`Received::Quiet`](crate::server::Received::Quiet) read and between requests, so
/// shutdown reaches it within a tick; waiting for a request with
/// [`Connection::read_request`] lets the drain reach it at once. A handler that reads
/// through `io::Read` (a `BufReader`, say) needs no check of its own: such a read
/// between requests ends the conversation with the goodbye when the server drains,
/// and returns `Ok(0)` (see [`Connection`]'s `io::Read` implementation).
pub trait Handler: Send + Sync + 'static {
    /// Serves `conn` until the client is done or the server drains.
    ///
    /// # Errors
    /// Any I/O error of the connection; the server logs it at debug level and closes
    /// the socket.
    fn handle(&self, conn: &mut Connection) -> io::Result<()>;

    /// The bytes sent to a client turned away because every worker is serving and
    /// the queue is full (echo: `Error: server busy\r\n`; HTTP: a 503).
    fn busy_reply(&self) -> &[u8];

    /// The bytes the server may send on the handler's behalf to a connection idle
    /// between requests when draining begins (see
    /// [`Connection::read_request`]); echo: the
    /// goodbye line; HTTP: nothing, an idle keep-alive connection is just closed.
    fn goodbye(&self) -> &[u8] {
        &[]
    }

    /// How long after its last reply a connection idle between requests is left
    /// open once draining begins, so that a request already on its way
    /// is answered (as the last one) instead of meeting a closed connection. The
    /// grace counts from the connection's last [`Connection::write_all`] (from its
    /// start, before the first); one whose grace has passed is dismissed at once. A
    /// drain lasts at most this much longer. Default zero: dismiss at once (echo);
    /// HTTP uses a short grace, see
    /// [`Http::keepalive_grace`](crate::protocol::http::Http::keepalive_grace).
    fn keepalive_grace(&self) -> Duration {
        Duration::ZERO
    }
}
