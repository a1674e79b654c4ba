//! Serving one connection: the handler's call with its panics isolated, the close,
//! and the count of how the connection ended.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::connection::{Connection, Spin, Timeouts};
use super::registry::Seat;
use super::report::Stats;
use super::state::ServerState;
use crate::threads::panic_message;

/// An accepted connection waiting for a worker.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// A second handle on the socket, for the registry (dismissal, force-close).
    /// The acceptor takes it, waiting for a descriptor if need be, so that running
    /// out of them never leaves a connection out of the registry (see `acceptor`);
    /// `None` only if it could not be had at all.
    pub(crate) handle: Option<TcpStream>,
}

impl Job {
    /// A job without a registry handle yet.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr) -> Job {
        Job {
            stream,
            peer,
            handle: None,
        }
    }
}

/// Counts the workers holding a connection, for the decision to poll between
/// requests.
struct Serving<'a>(&'a AtomicUsize);

impl<'a> Serving<'a> {
    fn start(counter: &'a AtomicUsize) -> Serving<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Serving(counter)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What became of one connection, for the report's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Closed gracefully after draining began.
    Drained,
    /// Force-closed, or never served because of the force.
    Forced,
    /// Given up: the client read nothing for the write timeout.
    WriteTimeout,
    /// The handler panicked.
    Panicked,
    /// Closed before any drain, or on an error: nothing to count.
    Closed,
}

impl End {
    fn count(self, stats: &Stats) {
        let counter = match self {
            End::Drained => &stats.drained,
            End::Forced => &stats.forced,
            End::WriteTimeout => &stats.write_timeouts,
            End::Panicked => &stats.panics,
            End::Closed => return,
        };
        Stats::bump(counter);
    }
}

/// Serves one connection and counts how it ended — through the worker's seat, so
/// that a connection the server has already counted as forced (its handler stuck
/// past the deadline) is not counted twice.
pub(super) fn serve(job: Job, state: &ServerState, seat: &Seat<'_>) {
    seat.hold();
    let end = serve_held(job, state, seat);
    seat.finish(|| end.count(&state.stats));
}

fn serve_held(job: Job, state: &ServerState, seat: &Seat<'_>) -> End {
    let Job {
        stream,
        peer,
        handle,
    } = job;
    let _serving = Serving::start(&state.serving);
    if state.is_forced() {
        // Queued but never started before the force: closing it is all that is left.
        return End::Forced;
    }
    // Without a registered handle the connection is still served, only not dismissed
    // early: it notices draining at its next tick instead.
    let slot = handle.map(|handle| seat.attach(handle));
    let timeouts = Timeouts {
        tick: state.tick,
        write: state.write_timeout,
    };
    let spin = Spin {
        serving: &state.serving,
        cores: state.spin_cores,
    };
    let draining = state.draining.clone();
    let mut conn = match Connection::new(
        stream,
        peer,
        timeouts,
        draining,
        state.app.clone(),
        slot,
        Some(spin),
    ) {
        Ok(conn) => conn,
        // Setting socket options takes no descriptor, so running out of them (which
        // only costs the registered clone above) cannot land here.
        Err(err) => {
            log::debug!("{peer}: cannot set up the connection: {err}");
            return End::Closed;
        }
    };
    conn.set_goodbye(state.handler.goodbye());
    // AssertUnwindSafe is sound here: after a panic the connection is dropped
    // unused, and the handler's shared state is only reachable through `&self`,
    // which a `Handler` must keep consistent across panics like any `Sync` type
    // shared between threads (a poisoned lock is the usual signal).
    let result = panic::catch_unwind(AssertUnwindSafe(|| state.handler.handle(&mut conn)));
    match result {
        Ok(result) => close(conn, result, state),
        Err(payload) => {
            log::error!(
                "handler panicked serving {peer}: {}; connection closed, worker continues",
                panic_message(payload.as_ref())
            );
            End::Panicked
        }
    }
}

/// Closes a connection whose handler has returned `result`, and says how it ended.
// Never inlined: the graceful close keeps a 4 KiB buffer on the stack, and inlined
// into `serve_held` it would sit under every handler call, pushing each worker's
// stack into one more page (4 KiB more per connection held, measured).
#[inline(never)]
fn close(conn: Connection<'_>, result: io::Result<()>, state: &ServerState) -> End {
    let peer = conn.peer_addr();
    if conn.gave_up() {
        // The client stopped reading: no graceful close, which would only wait for a
        // client that does not listen. Dropping the socket with the client's unread
        // lines still in our receive buffer sends a reset, which also discards what
        // the client has not read — it was not reading.
        log::debug!(
            "{peer}: given up: it read nothing for {:?}",
            state.write_timeout
        );
        return End::WriteTimeout;
    }
    match result {
        Ok(()) => {
            let graceful = conn.close_gracefully(state.linger).is_ok();
            if state.is_forced() {
                End::Forced
            } else if graceful && state.draining.is_triggered() {
                End::Drained
            } else {
                End::Closed
            }
        }
        Err(_) if state.is_forced() => End::Forced,
        Err(err) => {
            log::debug!("{peer}: connection ended with an error: {err}");
            End::Closed
        }
    }
}
