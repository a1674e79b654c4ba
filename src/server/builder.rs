//! The server's options, and `start`, which binds and starts its threads.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::handle::{DrainConfig, ServerHandle};
use super::handler::Handler;
use super::pool::{self, Job};
use super::report::Stats;
use super::state::ServerState;
use super::{accept, acceptor, backlog, busy, listener, registry};
use crate::shutdown::Shutdown;
use crate::threads::{Crew, TaskOutcome};

/// The default of [`ServerBuilder::write_timeout`]: nginx's `send_timeout`, long
/// enough for a client on a link that drops out for tens of seconds (TCP's own
/// retransmission backs off that long) and for a reader that stops to think.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

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
    drain_timeout: Duration,
    drain_delay: Duration,
    linger: Duration,
    stack_size: Option<usize>,
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
            drain_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            linger: Duration::from_secs(1),
            stack_size: Some(256 * 1024),
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

    /// Worker threads, each serving one connection at a time. Default 128.
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
    /// delay) before what is left is force-closed. Default 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
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
        let busy_reply = handler.busy_reply().to_vec();
        let grace = handler.keepalive_grace();
        let stats = Arc::new(Stats::default());
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
        let state = Arc::new(ServerState {
            handler: Arc::new(handler),
            stats: Arc::clone(&stats),
            serving: AtomicUsize::new(0),
            admitted: AtomicUsize::new(0),
            spin_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            registry: registry::Registry::new(self.workers, grace),
            tick: self.tick,
            write_timeout: self.write_timeout,
            linger: self.linger,
            draining: draining.clone(),
            app: shutdown.clone(),
            freed: freed_tx.clone(),
        });
        // Unbounded: the limit is `ServerState::admitted`, so nothing is allocated in
        // proportion to `queue`.
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (refused_tx, refused_rx) = crossbeam_channel::bounded(4096);

        let mut crew = Crew::new();
        let spawn_error = |name: &str, source| StartError::Spawn {
            thread: name.to_string(),
            source,
        };
        // If anything below fails, the token is triggered so already started threads
        // wind down instead of serving a half-built server.
        let fail = |err: StartError| {
            draining.force();
            err
        };
        for id in 0..self.workers {
            let name = format!("lameduck-worker-{id}");
            let jobs = jobs_rx.clone();
            let state = Arc::clone(&state);
            spawn_thread(&mut crew, name.clone(), self.stack_size, move || {
                pool::work(id, jobs, state)
            })
            .map_err(|err| fail(spawn_error(&name, err)))?;
        }
        let linger = self.linger;
        spawn_thread(
            &mut crew,
            "lameduck-refuser".into(),
            self.stack_size,
            move || busy::refuse(refused_rx, busy_reply, linger, freed_tx),
        )
        .map_err(|err| fail(spawn_error("lameduck-refuser", err)))?;
        let probe = backlog::BacklogProbe::new(&listener);
        let listener = Arc::new(listener);
        let listening = Arc::downgrade(&listener);
        let acceptor = acceptor::Acceptor {
            listener,
            jobs: jobs_tx,
            refused: refused_tx,
            state: Arc::clone(&state),
            capacity: self.workers.saturating_add(self.queue),
            drain_delay: self.drain_delay,
            max_poll: self.accept_poll,
            freed: freed_rx,
            probe,
            failures: accept::FailureLog::default(),
            held: None,
        };
        spawn_thread(&mut crew, "lameduck-acceptor".into(), None, move || {
            acceptor.run()
        })
        .map_err(|err| fail(spawn_error("lameduck-acceptor", err)))?;
        log::info!(
            "serving on {local_addr} with {} workers, queue {}, tick {:?}",
            self.workers,
            self.queue,
            self.tick
        );
        Ok(ServerHandle {
            local_addr,
            listening,
            shutdown: shutdown.clone(),
            draining,
            crew,
            leftover: jobs_rx,
            state,
            stats,
            config: DrainConfig {
                drain_timeout: self.drain_timeout,
                linger: self.linger,
                tick: self.tick,
            },
        })
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
