//! The server's options, and `start`, which binds and starts its threads.
//!
//! (Over 400 lines: a dozen options, each with the documentation of its default.)

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::defaults::{DEFAULT_WORKER_IDLE_TIMEOUT, DEFAULT_WRITE_TIMEOUT};
use super::handle::{DrainConfig, ServerHandle, Threads};
use super::handler::Handler;
use super::pool::{Pool, PoolConfig, Workers};
use super::report::Stats;
use super::state::ServerState;
use super::{accept, acceptor, backlog, busy, listener, registry};
use crate::shutdown::Shutdown;
use crate::threads::{Crew, TaskOutcome};

/// Options of a server; every setter documents its default.
// Not `Clone`: it may own a listening socket, and a second copy of that descriptor
// would keep the socket listening after the server closed its own, and clients
// connecting then would wait in a backlog nobody takes from.
#[derive(Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct ServerBuilder {
    addr: SocketAddr,
    workers: usize,
    queue: usize,
    backlog: u32,
    tick: Duration,
    write_timeout: Duration,
    /// `None`: the caller's deadline ([`ServerHandle::join_by`]) or the default.
    drain_timeout: Option<Duration>,
    drain_delay: Duration,
    linger: Duration,
    stack_size: Option<usize>,
    worker_idle_timeout: Duration,
    accept_poll: Duration,
    /// A listener handed in by the application (socket activation, an upgrade).
    listener: Option<TcpListener>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 128,
            queue: 128,
            backlog: 1024,
            tick: Duration::from_secs(1),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            drain_timeout: None,
            drain_delay: Duration::ZERO,
            linger: Duration::from_secs(1),
            stack_size: Some(256 * 1024),
            worker_idle_timeout: DEFAULT_WORKER_IDLE_TIMEOUT,
            accept_poll: Duration::from_millis(10),
            listener: None,
        }
    }
}

impl ServerBuilder {
    /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Serves `listener` instead of binding [`ServerBuilder::addr`]: a socket the
    /// application already has — the one a program with its own accept loop bound
    /// (tuned as it likes, its address already printed), or one inherited through
    /// socket activation or from the process it upgrades (see
    /// [`deploy`](crate::deploy)). It is made
    /// nonblocking; its backlog and options stay as they are. Keep no other copy of
    /// its descriptor: the socket must close when the server closes it, or clients
    /// connecting during the drain wait in a backlog nobody accepts from.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Most worker threads, each serving one connection at a time. They are started
    /// as connections need them — a connection that finds no worker idle starts one,
    /// up to this many — and end after [`ServerBuilder::worker_idle_timeout`] without
    /// a connection, so the limit itself costs nothing: a fresh server holds no
    /// worker. Default 128.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Accepted connections that may wait for a free worker; beyond them clients are
    /// refused as busy. Default 128.
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// The kernel's listen backlog. Default 1024.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// How long a worker blocks in one read or write before it checks for shutdown
    /// and its deadlines. It bounds how late a worker in the middle of a request (a
    /// partial line, a slow body) notices draining; connections idle between requests
    /// are told goodbye at once, and a force reaches every socket at once. Longer
    /// ticks mean fewer wake-ups of idle threads. Default 1 s.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick.max(Duration::from_millis(1));
        self
    }

    /// How long a write may go without the client taking a single byte before the
    /// connection is given up: dropped without a graceful close (the client, which
    /// is not reading, may see a reset) and counted in
    /// [`ServerReport::write_timeouts`](super::ServerReport::write_timeouts).
    /// Measured between two successive bytes taken, not over a whole reply, so a
    /// slow client that keeps reading is never cut; like nginx's `send_timeout`.
    /// Without it, every client that stops reading holds a worker until a forced
    /// shutdown. A blocked write checks at least four times per timeout, so it
    /// fires within a quarter past it. Default [`DEFAULT_WRITE_TIMEOUT`] (60 s).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long draining may take, counted from the trigger (and including the drain
    /// delay) before what is left is force-closed. Default: the deadline of whoever
    /// joins the server — [`Lifecycle::serve`](crate::Lifecycle::serve) gives it the
    /// lifecycle's drain deadline, [`ServerHandle::join_by`] the one it is given —
    /// or [`DEFAULT_DRAIN_TIMEOUT`](super::DEFAULT_DRAIN_TIMEOUT) (30 s) for [`ServerHandle::join`]. When both
    /// are set, the earlier deadline wins.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// Readiness delay: after the trigger keep accepting and serving this long (while
    /// health checks say "not ready"), then stop accepting. It counts within the
    /// drain timeout, so keep it well below. Default 0.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// How long a graceful close waits for the client to close its side after ours.
    /// Default 1 s.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Stack size of worker threads; `None` keeps the platform default (2 MiB of
    /// address space on Linux). Default 256 KiB: handlers that recurse deeply or keep
    /// large buffers on the stack need more.
    pub fn stack_size(mut self, bytes: Option<usize>) -> Self {
        self.stack_size = bytes;
        self
    }

    /// How long a worker thread with no connection to serve waits for one before it
    /// ends; the next connection that finds no worker idle starts a new one (a
    /// fraction of a millisecond). Shorter gives memory back sooner after a peak and
    /// makes the shutdown of a server that has gone quiet cheaper; longer keeps
    /// threads for bursts further apart. Default [`DEFAULT_WORKER_IDLE_TIMEOUT`] (10 s).
    pub fn worker_idle_timeout(mut self, timeout: Duration) -> Self {
        self.worker_idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The longest the acceptor waits between two polls of a listener that has been
    /// idle for over half a second; it is also the longest the first client after
    /// such a quiet spell waits to be accepted. After each accept the acceptor polls
    /// again within 50 µs and backs off by doubling, to at most 1 ms while clients
    /// keep coming. Shorter means snappier first connections and more wake-ups of an
    /// idle server. Default 10 ms.
    pub fn accept_poll(mut self, max: Duration) -> Self {
        self.accept_poll = max.max(Duration::from_micros(10));
        self
    }

    /// The application's listener, made nonblocking, or a new one bound to `addr`.
    fn take_listener(&mut self) -> Result<TcpListener, StartError> {
        let bind_error = |addr, source| StartError::Bind { addr, source };
        let Some(listener) = self.listener.take() else {
            return listener::bind(self.addr, self.backlog)
                .map_err(|source| bind_error(self.addr, source));
        };
        let addr = listener.local_addr().unwrap_or(self.addr);
        listener
            .set_nonblocking(true)
            .map_err(|source| bind_error(addr, source))?;
        Ok(listener)
    }

    /// Binds the listener and starts the server's threads. The server runs until
    /// `shutdown` is triggered; then [`ServerHandle::join`] drains it.
    ///
    /// # Errors
    /// [`StartError::Bind`] if the address cannot be bound (in use, not local, no
    /// permission); [`StartError::Spawn`] if a thread cannot be started.
    pub fn start<H: Handler>(
        mut self,
        handler: H,
        shutdown: &Shutdown,
    ) -> Result<ServerHandle, StartError> {
        let listener = self.take_listener()?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.addr,
            source,
        })?;
        // Two tokens, because "the application is shutting down" and "this server's
        // connections are draining" are different moments with different forces:
        // - `app` (the caller's `shutdown`) is the application's: signals, a failing
        //   task or the program trigger it, and a second signal forces it. The
        //   server only reads it: the acceptor waits on it to begin, and a force of
        //   it makes the report say `forced`.
        // - `draining` is the server's own. The acceptor triggers it when it really
        //   stops accepting, after the readiness delay, during which `app` is already
        //   triggered yet connections must be served as usual. The server forces it
        //   at its drain deadline; forcing `app` instead would read as a second
        //   signal (exit 130) to everyone else holding that token.
        // Connections check both: `is_draining` is `draining`'s trigger, `is_forced`
        // is either token's force.
        let draining = Shutdown::new();
        // One pending ring is enough: the acceptor only needs to know that
        // something closed since it last looked.
        let (freed_tx, freed_rx) = crossbeam_channel::bounded(1);
        let state = self.state(handler, shutdown, &draining, freed_tx);
        let listener = Arc::new(listener);
        let listening = Arc::downgrade(&listener);
        let (crew, workers) = self
            .start_threads(listener, &state, freed_rx)
            // Already started threads wind down instead of serving a half-built server.
            .inspect_err(|_| {
                draining.force();
            })?;
        log::info!(
            "serving on {local_addr} with up to {} workers, queue {}, tick {:?}",
            self.workers,
            self.queue,
            self.tick
        );
        Ok(ServerHandle {
            local_addr,
            listening,
            shutdown: shutdown.clone(),
            threads: Threads {
                server: crew,
                workers,
            },
            stats: Arc::clone(&state.stats),
            state,
            config: DrainConfig {
                drain_timeout: self.drain_timeout,
                linger: self.linger,
                tick: self.tick,
            },
        })
    }

    /// What every thread of the server shares.
    fn state<H: Handler>(
        &self,
        handler: H,
        app: &Shutdown,
        draining: &Shutdown,
        freed: Sender<()>,
    ) -> Arc<ServerState> {
        let grace = handler.keepalive_grace();
        Arc::new(ServerState {
            handler: Arc::new(handler),
            stats: Arc::new(Stats::default()),
            serving: AtomicUsize::new(0),
            admitted: AtomicUsize::new(0),
            spin_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            registry: registry::Registry::new(grace),
            tick: self.tick,
            write_timeout: self.write_timeout,
            linger: self.linger,
            draining: draining.clone(),
            app: app.clone(),
            freed,
        })
    }

    /// Starts the refuser and the acceptor, which owns the pool (its workers start
    /// as connections come). Returns the server's own threads and the pool's.
    fn start_threads(
        &self,
        listener: Arc<TcpListener>,
        state: &Arc<ServerState>,
        freed: Receiver<()>,
    ) -> Result<(Crew, Workers), StartError> {
        let mut crew = Crew::new();
        let spawn_error = |name: &str, source| StartError::Spawn {
            thread: name.to_string(),
            source,
        };
        let (refused_tx, refused_rx) = crossbeam_channel::bounded(4096);
        let busy_reply = state.handler.busy_reply().to_vec();
        let (linger, bell) = (self.linger, state.freed.clone());
        spawn_thread(
            &mut crew,
            "lameduck-refuser".into(),
            self.stack_size,
            move || busy::refuse(refused_rx, busy_reply, linger, bell),
        )
        .map_err(|err| spawn_error("lameduck-refuser", err))?;
        let (pool, workers) = Pool::new(
            Arc::clone(state),
            PoolConfig {
                limit: self.workers,
                stack_size: self.stack_size,
                idle_timeout: self.worker_idle_timeout,
            },
        );
        let acceptor = acceptor::Acceptor {
            probe: backlog::BacklogProbe::new(&listener),
            listener,
            pool,
            refused: refused_tx,
            state: Arc::clone(state),
            capacity: self.workers.saturating_add(self.queue),
            drain_delay: self.drain_delay,
            max_poll: self.accept_poll,
            freed,
            failures: accept::FailureLog::default(),
            held: None,
        };
        spawn_thread(&mut crew, "lameduck-acceptor".into(), None, move || {
            acceptor.run()
        })
        .map_err(|err| spawn_error("lameduck-acceptor", err))?;
        Ok((crew, workers))
    }
}

/// Why a server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The listening socket could not be set up.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        source: io::Error,
    },
    /// A server thread could not be spawned.
    Spawn {
        /// The thread's name.
        thread: String,
        /// The operating system's answer.
        source: io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Spawn { thread, source } => {
                write!(f, "cannot start thread {thread}: {source}")
            }
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Spawn { source, .. } => Some(source),
        }
    }
}

/// Starts one of the server's threads in `crew`. Its body returns nothing: a
/// server thread's only failure is a panic, logged as it happens.
fn spawn_thread<F>(
    crew: &mut Crew,
    name: String,
    stack_size: Option<usize>,
    body: F,
) -> io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let thread = name.clone();
    let body = move || {
        body();
        Ok(())
    };
    crew.spawn(name, stack_size, body, move |outcome: &TaskOutcome| {
        log::error!("thread {thread} {outcome}");
    })
}
