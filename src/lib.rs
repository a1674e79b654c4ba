//! lameduck: graceful shutdown without an async runtime.
//!
//! Plain threads and blocking sockets: an acceptor thread polls a nonblocking
//! listener and hands connections over a channel to a pool of workers, which start
//! as connections need them, up to a fixed limit, and end when idle.
//! When a signal (or your code) triggers the [`Shutdown`] token, the server stops
//! accepting — after taking what waits in the kernel's backlog — lets every
//! connection finish what it was doing, says goodbye, closes each socket without a
//! reset, joins every thread against a deadline and hands back a [`ServerReport`].
//!
//! # A tour
//!
//! Serve the echo protocol on a free port, talk to it, then shut it down from code
//! (a program would call [`signals::install`] instead, so SIGTERM does the same):
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::TcpStream;
//! use lameduck::{protocol::echo::Echo, Outcome, Server, Shutdown};
//!
//! let shutdown = Shutdown::new();
//! let server = Server::builder()
//!     .addr("127.0.0.1:0".parse().unwrap())
//!     .workers(4)
//!     .start(Echo::new(), &shutdown)?;
//!
//! let mut client = TcpStream::connect(server.local_addr())?;
//! client.write_all(b"hello\n")?;
//! let mut reader = BufReader::new(client);
//! let mut line = String::new();
//! reader.read_line(&mut line)?;
//! assert_eq!(line, "Echo: hello\r\n");
//!
//! shutdown.trigger();
//! line.clear();
//! reader.read_line(&mut line)?;
//! assert_eq!(line, "Server is shutting down. Goodbye!\r\n");
//!
//! let report = server.join();
//! assert_eq!(report.outcome, Outcome::Clean);
//! assert_eq!(report.drained, 1);
//! assert_eq!(report.exit_code(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Logging
//!
//! lameduck reports what it does — the drain, connections forced, threads detached,
//! failed tasks and hooks — through the [`log`](https://docs.rs/log) crate, and a
//! library does not pick the logger: until the program installs one, none of it is
//! seen. With `env_logger` it is one line at the start of `main` (`RUST_LOG` then
//! overrides the level):
//!
//! ```no_run
//! env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
//! ```
//!
//! # A program with its own accept loop
//!
//! The server's parts work on plain `std::net` streams for a program that keeps its
//! own loop (see `examples/own_loop.rs`): [`take_backlog`] takes whoever already
//! connected before the listener is closed, [`Connection::from_stream`] gives a
//! stream the reads that notice the drain (`io::Read`, so `BufReader` keeps a partial
//! line) and the goodbye, [`close_gracefully`] closes without a reset, and a
//! [`TaskGroup`] runs a thread per connection without growing.
//! [`ServerBuilder::listener`] hands a listener the program already has to a
//! [`Server`].
//!
//! # Layout
//! Lowest layer first: each module is built only on the ones listed before it, so
//! the list is also the order in which to read the crate.
//! - [`shutdown`]: the token (flag + broadcast channel, two stages: drain and
//!   force), and how a shutdown ended: [`Outcome`] and its [`exit_code`];
//! - `threads` (private): named threads whose end is always reported, the one join
//!   against a deadline, panic messages and bounded steps — the server's threads,
//!   the supervised tasks and the lifecycle's steps all run there;
//! - [`output`]: `listening on` and the report on stdout, written with a bound so a
//!   stdout nobody reads never hangs or crashes the server; `logging` (feature
//!   `cli`): the programs' logger, whose records never wait for stderr;
//! - [`signals`]: SIGINT/SIGTERM/SIGHUP → drain, second → force, third → exit;
//! - [`server`]: builder, acceptor, pool, connections, the drain and its report; it
//!   owns the [`Handler`] interface and the [`Connection`] a handler is lent;
//! - [`supervisor`], beside the server: background threads that receive the token,
//!   joined against a deadline, with a report of which finished, failed, panicked or
//!   were detached;
//! - [`lifecycle`], on both: startup, shutdown and cleanup hooks, resources closed
//!   last-in first-out, one shutdown budget, and the report of the whole shutdown
//!   ([`Lifecycle::serve`] runs a server through it);
//! - [`protocol`]: the echo protocol and HTTP/1.1, each a [`Handler`] written
//!   against the server's public interface only;
//! - [`deploy`]: restarts and upgrades that refuse nothing — socket activation,
//!   systemd notifications, a pid file, and upgrades on SIGUSR2 that hand the
//!   listening socket to a new process and drain only once it is ready;
//! - the `lameduck` binary (feature `cli`), on top of all of them.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod deploy;
pub mod lifecycle;
#[cfg(feature = "cli")]
pub mod logging;
pub mod output;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod signals;
pub mod supervisor;
mod threads;

/// The README's code compiles: its library example is checked as a doc test.
/// Its HTTP example uses the `json` feature, so the README is checked when that is on
/// (as in the default build).
#[cfg(all(doctest, feature = "json"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use lifecycle::{DrainSummary, Lifecycle, LifecycleReport, StartupError};
pub use server::{
    close_gracefully, take_backlog, Connection, Forced, Handler, Received, Server, ServerBuilder,
    ServerHandle, ServerReport, StartError, DEFAULT_DRAIN_TIMEOUT, DEFAULT_WORKER_IDLE_TIMEOUT,
    DEFAULT_WRITE_TIMEOUT,
};
pub use shutdown::{exit_code, Outcome, Reason, Shutdown};
pub use signals::SignalError;
pub use supervisor::{
    BoxError, OnFailure, SpawnError, TaskGroup, TaskOutcome, TaskReport, TaskResult,
};
