//! A running server, and its join: the drain carried out against its deadline.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::defaults::DEFAULT_DRAIN_TIMEOUT;
use super::pool::Workers;
use super::report::{ServerReport, Stats};
use super::state::ServerState;
use crate::shutdown::{Outcome, Reason, Shutdown};
use crate::threads::{deadline_after, Crew, JoinEnd};

/// The options the drain reads, copied from the builder when the server starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct DrainConfig {
    /// The builder's own limit, if it set one.
    pub(super) drain_timeout: Option<Duration>,
    pub(super) linger: Duration,
    pub(super) tick: Duration,
}

impl DrainConfig {
    /// The drain deadline of a drain that began at `started`: the builder's timeout
    /// or the caller's deadline, whichever comes first, or the default timeout.
    fn deadline(&self, started: Instant, caller: Option<Instant>) -> Instant {
        let own = self
            .drain_timeout
            .map(|timeout| deadline_after(started, timeout));
        match (own, caller) {
            (Some(own), Some(caller)) => own.min(caller),
            (own, caller) => own
                .or(caller)
                .unwrap_or_else(|| deadline_after(started, DEFAULT_DRAIN_TIMEOUT)),
        }
    }
}

/// Every thread of a server: its own (the acceptor, the refuser), and the pool's
/// workers, which the pool hands over as the acceptor ends.
#[derive(Debug)]
pub(super) struct Threads {
    pub(super) server: Crew,
    pub(super) workers: Workers,
}

impl Threads {
    /// Waits for every thread until `deadline` or `abort`.
    fn join_until(&mut self, deadline: Instant, abort: &Receiver<()>) -> JoinEnd {
        match self.server.join_until(deadline, abort) {
            JoinEnd::AllExited => self.workers.join_until(deadline, abort),
            end => end,
        }
    }

    fn last_exit(&self) -> Option<Instant> {
        self.server.last_exit().max(self.workers.last_exit())
    }

    fn detach(self) -> Vec<String> {
        let mut detached = self.server.detach();
        detached.extend(self.workers.detach());
        detached
    }
}

/// A running server. Call [`ServerHandle::join`] to wait for its shutdown; dropping
/// the handle without joining leaves the server running until its token fires.
#[derive(Debug)]
#[must_use = "a server is only drained and reported on by `join`"]
pub struct ServerHandle {
    pub(super) local_addr: SocketAddr,
    /// The acceptor owns the listener; this lets a successor be handed a copy
    /// while it accepts, without keeping it open once the acceptor closes it.
    pub(super) listening: Weak<TcpListener>,
    pub(super) shutdown: Shutdown,
    pub(super) threads: Threads,
    pub(super) state: Arc<ServerState>,
    pub(super) stats: Arc<Stats>,
    pub(super) config: DrainConfig,
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
    ///
    /// The deadline is the trigger plus [`ServerBuilder::drain_timeout`], or
    /// [`DEFAULT_DRAIN_TIMEOUT`](super::DEFAULT_DRAIN_TIMEOUT) if the builder set none.
    ///
    /// [`ServerBuilder::drain_timeout`]: super::ServerBuilder::drain_timeout
    pub fn join(self) -> ServerReport {
        self.join_inner(None)
    }

    /// [`ServerHandle::join`] against `deadline`, or against the builder's own
    /// [drain timeout](super::ServerBuilder::drain_timeout) if that ends first.
    /// [`Lifecycle::serve`](crate::Lifecycle::serve) joins the server this way with
    /// the lifecycle's drain deadline, so the cleanup reserve stays the cleanup's.
    pub fn join_by(self, deadline: Instant) -> ServerReport {
        self.join_inner(Some(deadline))
    }

    fn join_inner(self, caller: Option<Instant>) -> ServerReport {
        self.shutdown.wait();
        let started = self.shutdown.triggered_at().unwrap_or_else(Instant::now);
        log::info!("draining: finishing requests in flight, then saying goodbye");
        // The readiness delay is part of the drain's time, not added to it: the
        // drain timeout is what the operator's budget allows.
        let deadline = self.config.deadline(started, caller);
        let ServerHandle {
            shutdown,
            mut threads,
            state,
            stats,
            config,
            ..
        } = self;
        let end = drain(
            &mut threads,
            &state,
            config.linger,
            deadline,
            &shutdown.when_forced(),
        );
        let outcome = match end {
            JoinEnd::AllExited => Outcome::Clean,
            JoinEnd::DeadlinePassed => {
                log::warn!(
                    "drain deadline of {:?} passed: force-closing",
                    deadline.saturating_duration_since(started)
                );
                Outcome::Deadline
            }
            JoinEnd::Aborted => {
                log::warn!("shutdown forced: force-closing connections");
                Outcome::Forced
            }
        };
        let forced_at = (outcome != Outcome::Clean).then(|| force(&mut threads, &state, config));
        // The last connection closed when the last thread ended or, if some were
        // forced, no earlier than the force that closed them.
        let closed = match (threads.last_exit(), forced_at) {
            (Some(exit), Some(forced)) => exit.max(forced),
            (exit, forced) => exit.or(forced).unwrap_or_else(Instant::now),
        };
        let drain = closed.saturating_duration_since(started);
        // Threads can all end just as a second signal lands (a handler that watches
        // the force itself): the outcome still says the drain was cut short.
        let outcome = if shutdown.is_forced() {
            outcome.worst(Outcome::Forced)
        } else {
            outcome
        };
        let report = report(&shutdown, outcome, &stats, threads.detach(), drain);
        log::info!("server stopped: {report}");
        report
    }
}

/// The force, once the deadline has passed or a second signal came: every connection
/// is shut down, the threads get a short grace to notice, and what the server gives
/// up on — connections still queued, and those still held by a worker that did not
/// end, its handler stuck somewhere the force cannot reach — is counted as forced.
/// Returns when the connections were force-closed.
fn force(threads: &mut Threads, state: &ServerState, config: DrainConfig) -> Instant {
    state.draining.force();
    state.registry.force_close();
    let forced_at = Instant::now();
    // Every registered socket was just shut down, so blocked reads and writes
    // return now; the grace covers a worker caught between two calls (up to a tick)
    // plus scheduling noise.
    let grace = config.tick.max(Duration::from_millis(100)) * 2;
    threads.join_until(Instant::now() + grace, &crossbeam_channel::never());
    let given_up = threads.workers.close_queued() + state.registry.claim_held();
    state.stats.forced.fetch_add(given_up, Ordering::Relaxed);
    forced_at
}

/// The report, from the counts and what the drain found.
fn report(
    shutdown: &Shutdown,
    outcome: Outcome,
    stats: &Stats,
    detached: Vec<String>,
    drain: Duration,
) -> ServerReport {
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
    for name in &detached {
        log::warn!("thread {name} did not stop in time; detached");
    }
    ServerReport {
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
    }
}

/// Waits for the threads while carrying out the drain's timed steps, against
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
    threads: &mut Threads,
    state: &ServerState,
    linger: Duration,
    deadline: Instant,
    forced: &Receiver<()>,
) -> JoinEnd {
    // Draining begins in the acceptor, after the readiness delay, with the flag that
    // idle workers check under their slot lock: dismissing before it is set could
    // miss a worker about to go idle. A force makes the acceptor set it at once.
    let draining = state.draining.when_triggered();
    crossbeam_channel::select! {
        recv(draining) -> _ => {}
        recv(forced) -> _ => {}
        default(deadline.saturating_duration_since(Instant::now())) => {
            return threads.join_until(deadline, forced);
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
        let end = threads.join_until(wake, forced);
        if end != JoinEnd::DeadlinePassed || Instant::now() >= deadline {
            return end;
        }
    }
}
