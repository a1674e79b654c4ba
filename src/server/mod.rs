//! The server: a builder for its options, and a handle that drives its shutdown.
//!
//! [`ServerBuilder::start`] (in `builder`) binds the listener, or takes the
//! application's, and starts two named threads: `lameduck-acceptor` (polls the
//! listener, see `acceptor`) and `lameduck-refuser` (turns clients away when
//! everything is full, see `busy`). The acceptor owns the pool (see `pool`), whose
//! `lameduck-worker-N` threads start as connections need them, up to
//! [`ServerBuilder::workers`], and end when they have been idle for a while. They all
//! share one `ServerState` (see `state`). A protocol plugs in as a [`Handler`], which
//! a worker calls with one [`Connection`] at a time (see `serve`).
//! [`ServerHandle::join`] (in `handle`) carries out the drain.
//! The parts a program with its own accept loop can use on plain streams are
//! public: [`take_backlog`] (in `accept`), [`close_gracefully`] (in `close`),
//! [`Connection::from_stream`].
//!
//! # The drain, from signal to report
//!
//! 1. **Signal.** A signal,
//!    [`Shutdown::trigger`](crate::shutdown::Shutdown::trigger) or a failing task
//!    triggers the application's token. [`ServerHandle::join`], blocked on it until
//!    now, starts the clock: the drain deadline is the trigger plus
//!    [`ServerBuilder::drain_timeout`], or the earlier deadline of whoever joins
//!    ([`ServerHandle::join_by`]; a [`Lifecycle`](crate::Lifecycle) gives its own).
//! 2. **Readiness off.** For the [drain delay](ServerBuilder::drain_delay) the
//!    acceptor goes on accepting and the workers serve as usual, while health checks
//!    say "not ready" and load balancers stop sending (skipped on a force, and after
//!    an upgrade, whose successor already serves the address).
//! 3. **Stop accepting.** The acceptor triggers the server's `draining` token —
//!    from here on every connection is draining (the two tokens are explained in
//!    `builder`, where they are made) — takes what waits in the kernel's
//!    backlog (closing the listener would reset those clients), closes the listener
//!    and hands what it took to the pool, then ends, which drops the pool: its queue
//!    is closed and its workers are handed to the join.
//! 4. **Idle connections dismissed.** Connections waiting between requests are sent
//!    the handler's [goodbye](Handler::goodbye) and their write side is shut — at
//!    once, or when their [keep-alive grace](Handler::keepalive_grace) since their
//!    last reply ends, so that a request already on its way is answered as the last.
//!    The loop in `ServerHandle::join` times those graces and each dismissed
//!    connection's linger.
//! 5. **In-flight connections finish.** A worker in the middle of a request answers
//!    it, sees [`Connection::is_draining`], writes its goodbye and returns; the server
//!    then closes gracefully (FIN, then up to the [linger](ServerBuilder::linger) for
//!    the client to close its side) and counts the connection as drained. Workers
//!    serve what is still queued the same way and end when the queue is empty;
//!    idle ones end at once.
//! 6. **Deadline: force.** If the deadline passes, or a second signal forces the
//!    application's token, the server forces `draining`: every registered socket is
//!    shut down both ways, waking any worker blocked on it. Connections in flight or
//!    still queued are counted as forced — so is one whose handler is stuck where the
//!    force cannot reach (its client is closed all the same); clients the acceptor
//!    had no time to take from the backlog are reset when it closes, and counted as
//!    `backlog_left`.
//! 7. **Joins.** Every thread is joined against the deadline (plus a short grace
//!    after a force); a thread still running is named in the log and detached, never
//!    waited for forever.
//! 8. **Report.** [`ServerHandle::join`] returns the [`ServerReport`]: what started the
//!    shutdown, how it ended (which decides the exit code), and the counts.

mod accept;
mod acceptor;
mod backlog;
mod builder;
mod busy;
mod close;
mod connection;
mod defaults;
mod forced;
mod handle;
mod handler;
mod listener;
mod pool;
mod registry;
mod report;
mod serve;
mod state;

pub use accept::take_backlog;
pub use builder::{ServerBuilder, StartError};
pub use close::close_gracefully;
pub use connection::{Connection, Received};
pub use defaults::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_WORKER_IDLE_TIMEOUT, DEFAULT_WRITE_TIMEOUT};
pub use forced::Forced;
pub use handle::ServerHandle;
pub use handler::Handler;
pub(crate) use listener::bind;
pub(crate) use report::BacklogLeft;
pub use report::ServerReport;

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the documented defaults (each setter states its own).
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}
