//! The server: a builder for its options, and a handle that drives its shutdown.
//!
//! [`ServerBuilder::start`] binds the listener and starts three kinds of named thread:
//! `lameduck-acceptor` (polls the listener, see `acceptor`), `lameduck-worker-N` (the
//! fixed pool, see `pool`) and `lameduck-refuser` (turns clients away when everything
//! is full, see `busy`). [`ServerHandle::join`] waits for the shutdown token, then for
//! every thread against the drain deadline, and returns the [`Report`].

mod accept;
mod acceptor;
mod backlog;
mod busy;
mod connection;
mod handler;
mod listener;
mod pool;
mod registry;
mod report;
mod state;

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

pub use connection::{Connection, Received};
pub use handler::Handler;
pub(crate) use listener::bind;
pub(crate) use report::BacklogLeft;
pub use report::Report;

use crate::shutdown::{Outcome, Reason, Shutdown};
use crate::threads::{deadline_after, Crew, JoinEnd, TaskOutcome};
use pool::Job;
use report::Stats;
use state::ServerState;

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
    /// application already has, such as one inherited through socket activation or
    /// from the process it upgrades (see [`deploy`](crate::deploy)). It is made
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
    /// is not reading, may see a reset) and counted in [`Report::write_timeouts`].
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
            config: self,
        })
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

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the documented defaults (each setter states its own).
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// A running server. Call [`ServerHandle::join`] to wait for its shutdown; dropping
/// the handle without joining leaves the server running until its token fires.
#[derive(Debug)]
#[must_use = "a server is only drained and reported on by `join`"]
pub struct ServerHandle {
    local_addr: SocketAddr,
    /// The acceptor owns the listener; this lets a successor be handed a copy
    /// while it accepts, without keeping it open once the acceptor closes it.
    listening: Weak<TcpListener>,
    shutdown: Shutdown,
    draining: Shutdown,
    crew: Crew,
    /// A receiver of the queue, to close whatever is still queued after a force.
    leftover: Receiver<Job>,
    state: Arc<ServerState>,
    stats: Arc<Stats>,
    config: ServerBuilder,
}

impl ServerHandle {
    /// The address actually bound (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Prints the contract's first stdout line, `listening on <ip:port>`, and flushes
    /// it, so whoever waits for it (a test, a supervisor) can connect at once. Call it
    /// after installing the signal handlers: a signal sent right after the line must
    /// be handled gracefully.
    ///
    /// Never blocks for long ([`crate::output`]): if stdout is not being read (a full
    /// pipe), a warning is logged after [`crate::output::STDOUT_BOUND`], the line
    /// stays queued and is delivered when the reader catches up, and this returns
    /// `Ok` — the server is serving either way.
    ///
    /// # Errors
    /// Writing to stdout failed: most often `BrokenPipe`, whoever was to read the
    /// line has gone away. The line is lost; the server serves on, and whether that
    /// is acceptable is the caller's decision (the `lameduck` binary logs it and
    /// serves until a signal).
    pub fn announce(&self) -> io::Result<()> {
        let line = format!("listening on {}", self.local_addr);
        match crate::output::write_line(&line, crate::output::STDOUT_BOUND) {
            Ok(()) => Ok(()),
            // The server is up whether or not the reader is: startup goes on, and the
            // line follows when (if) the reader catches up.
            Err(err @ crate::output::OutputError::Stalled(_)) => {
                log::warn!(
                    "{err}: `{line}` stays queued and follows when it is read; serving meanwhile"
                );
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The listening socket, for as long as the server accepts on it: a weak handle,
    /// so holding it never keeps the socket open past the server's close (which
    /// would leave clients connecting during the drain in a backlog nobody takes).
    /// An upgrade upgrades it for a moment to hand a copy to the new process.
    pub fn listening_socket(&self) -> Weak<TcpListener> {
        Weak::clone(&self.listening)
    }

    /// The token this server stops on.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Starts the shutdown programmatically (`reason=trigger`).
    pub fn trigger(&self) {
        self.shutdown.trigger();
    }

    /// Blocks until the token is triggered, drains (finishes requests in flight,
    /// says goodbye, closes every connection gracefully) against the drain
    /// deadline, and reports. Past the deadline, or on a force (second signal),
    /// connections are force-closed, threads get a short grace, and the ones still
    /// running are detached and named in the log.
    pub fn join(self) -> Report {
        self.shutdown.wait();
        let started = self.shutdown.triggered_at().unwrap_or_else(Instant::now);
        log::info!("draining: finishing requests in flight, then saying goodbye");
        // The readiness delay is part of the drain's time, not added to it: the
        // drain timeout is what the operator's budget allows.
        let deadline = deadline_after(started, self.config.drain_timeout);
        let ServerHandle {
            shutdown,
            draining,
            mut crew,
            leftover,
            state,
            stats,
            config,
            ..
        } = self;

        let end = drain(
            &mut crew,
            &state,
            config.linger,
            deadline,
            &shutdown.forced(),
        );
        let outcome = match end {
            JoinEnd::AllExited => Outcome::Clean,
            JoinEnd::DeadlinePassed => {
                log::warn!(
                    "drain deadline of {:?} passed: force-closing",
                    config.drain_timeout
                );
                Outcome::Deadline
            }
            JoinEnd::Aborted => {
                log::warn!("shutdown forced: force-closing connections");
                Outcome::Forced
            }
        };
        if outcome != Outcome::Clean {
            draining.force();
            state.registry.force_close();
            // Every registered socket was just shut down, so blocked reads and writes
            // return now; the grace covers a worker caught between two calls (up to
            // a tick) plus scheduling noise.
            let grace = config.tick.max(Duration::from_millis(100)) * 2;
            let never = crossbeam_channel::never();
            crew.join_until(Instant::now() + grace, &never);
            for _never_served in leftover.try_iter() {
                Stats::bump(&stats.forced);
            }
        }
        let drain = crew
            .last_exit()
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(started);
        // Threads can all end just as a second signal lands (a handler that watches
        // the force itself): the outcome still says the drain was cut short.
        let outcome = if shutdown.is_forced() {
            outcome.worst(Outcome::Forced)
        } else {
            outcome
        };
        let backlog_left = if stats.backlog_uncounted.load(Ordering::Relaxed) {
            None
        } else {
            Some(stats.backlog_left.load(Ordering::Relaxed))
        };
        // Clients left in the backlog were reset, not drained, even if the acceptor
        // gave up for a reason of its own (a broken listener) before any deadline.
        let outcome = if backlog_left == Some(0) {
            outcome
        } else {
            outcome.worst(Outcome::Deadline)
        };
        let detached = crew.detach();
        for name in &detached {
            log::warn!("thread {name} did not stop in time; detached");
        }
        let report = Report {
            reason: shutdown.reason().unwrap_or(Reason::Trigger),
            outcome,
            accepted: stats.accepted.load(Ordering::Relaxed),
            drained: stats.drained.load(Ordering::Relaxed),
            forced: stats.forced.load(Ordering::Relaxed),
            refused_busy: stats.refused_busy.load(Ordering::Relaxed),
            panics: stats.panics.load(Ordering::Relaxed),
            write_timeouts: stats.write_timeouts.load(Ordering::Relaxed),
            backlog_left,
            detached,
            drain,
        };
        log::info!("server stopped: {report}");
        report
    }
}

/// Waits for the crew while carrying out the drain's timed steps, against
/// `deadline`: idle connections left alone for their keep-alive grace are dismissed
/// the moment it ends, and the linger of each dismissed connection is released
/// `linger` after its own dismissal. Between passes it waits on the crew (which
/// returns once every thread has exited) or the force, with the next step's instant
/// as its deadline, never a sleep; a pass that finds nothing more to schedule waits
/// for `deadline`.
///
/// The acceptor dismisses idle connections as it sets the draining flag; the first
/// pass here repeats that (harmlessly: a dismissed slot is skipped), so that when it
/// looks for lingers to time, every connection due a dismissal has one, whichever
/// thread got to it first.
fn drain(
    crew: &mut Crew,
    state: &ServerState,
    linger: Duration,
    deadline: Instant,
    forced: &Receiver<()>,
) -> JoinEnd {
    // Draining begins in the acceptor, after the readiness delay, with the flag that
    // idle workers check under their slot lock: dismissing before it is set could
    // miss a worker about to go idle. A force makes the acceptor set it at once.
    let draining = state.draining.triggered();
    crossbeam_channel::select! {
        recv(draining) -> _ => {}
        recv(forced) -> _ => {}
        default(deadline.saturating_duration_since(Instant::now())) => {
            return crew.join_until(deadline, forced);
        }
    }
    let goodbye = state.handler.goodbye();
    loop {
        let now = Instant::now();
        let mut wake = deadline;
        if state.draining.is_triggered() {
            let pass = state.registry.dismiss_idle(goodbye, now);
            if pass.dismissed > 0 {
                log::debug!("{} idle connection(s) told goodbye", pass.dismissed);
            }
            if let Some(next) = pass.next {
                wake = wake.min(next);
            }
        }
        if let Some(next) = state.registry.release_dismissed(now, linger) {
            wake = wake.min(next);
        }
        let end = crew.join_until(wake, forced);
        if end != JoinEnd::DeadlinePassed || Instant::now() >= deadline {
            return end;
        }
    }
}
