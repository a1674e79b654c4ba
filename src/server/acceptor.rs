//! The acceptor thread: polls the nonblocking listener, hands connections to the
//! pool, and carries out "stop accepting" when the shutdown comes.
//!
//! Between polls it waits on the shutdown channel, so a trigger wakes it at once. The
//! wait starts at 50 µs after each accept and doubles while nothing arrives: up to
//! 1 ms for half a second after the last accept (clients that keep coming, even a few
//! a second, wait at most that), then up to the configured maximum
//! (`ServerBuilder::accept_poll`, 10 ms by default), so an idle server wakes at most a
//! hundred times a second (each wake-up of a sleeping thread costs tens of
//! microseconds of CPU on a virtual machine). The first client after a quiet spell
//! waits up to that maximum: the price of polling, chosen by the design.
//!
//! An accept that fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
//! ENOMEM) leaves the connection in the backlog. The acceptor then waits, never
//! spinning, for a worker to close a connection (the pool rings a bell) or for a
//! doubling backoff, and logs the failures once a second with their count. Draining
//! goes on the same way: the listener stays open until the backlog is empty, since
//! closing it would reset whoever still waits there; only a force (the drain
//! deadline, a second signal) cuts that short, and what it leaves is counted.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::accept::{accept_one, out_of_resources, Accepted, Backoff, FailureLog};
use super::backlog::BacklogProbe;
use super::pool::Pool;
use super::report::Stats;
use super::serve::Job;
use super::state::ServerState;
use crate::shutdown::{Reason, Shutdown};

const MIN_POLL: Duration = Duration::from_micros(50);
/// The poll ceiling while connections keep arriving (one within [`HOT_WINDOW`]).
const HOT_POLL: Duration = Duration::from_millis(1);
/// How long after an accept the acceptor keeps polling at [`HOT_POLL`].
const HOT_WINDOW: Duration = Duration::from_millis(500);

pub(crate) struct Acceptor {
    /// The only strong reference: dropping it closes the socket (see
    /// `ServerHandle::listening_socket`).
    pub(crate) listener: Arc<TcpListener>,
    /// Dropped as the acceptor ends, which closes the pool's queue.
    pub(crate) pool: Pool,
    pub(crate) refused: Sender<TcpStream>,
    pub(crate) state: Arc<ServerState>,
    /// Workers plus queue: how many connections the pool may hold at once.
    pub(crate) capacity: usize,
    pub(crate) drain_delay: Duration,
    /// The longest wait between two polls of an idle listener.
    pub(crate) max_poll: Duration,
    /// Rung by workers (and the refuser) as they close a connection: a descriptor
    /// is free for the next accept.
    pub(crate) freed: Receiver<()>,
    /// Counts what a drain that gives up leaves in the backlog.
    pub(crate) probe: BacklogProbe,
    pub(crate) failures: FailureLog,
    /// A connection accepted as the serving ended, still without its registry
    /// handle: the drain takes it first.
    pub(crate) held: Option<Job>,
}

/// Tells the workers to drain when the acceptor ends, however it ends: if it panicked
/// they would otherwise serve their clients until the deadline.
struct StartDrainOnExit(Shutdown);

impl Drop for StartDrainOnExit {
    fn drop(&mut self) {
        self.0.trigger_with(Reason::Trigger);
    }
}

/// What ends a wait of the acceptor for a free descriptor.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// While serving: the shutdown's trigger.
    Trigger,
    /// During the readiness delay: its end, or a force.
    Delay(Instant),
    /// While draining: a force (the drain deadline, a second signal).
    Forced,
}

impl Acceptor {
    pub(crate) fn run(mut self) {
        let _drain_on_exit = StartDrainOnExit(self.state.draining.clone());
        let app = self.state.app.clone();
        self.accept_until(&app, Until::Trigger);
        // After an upgrade the address keeps serving through the new process: there
        // is no load balancer to wait for, and the backlog is the new process's.
        let upgrade = app.reason() == Some(Reason::Upgrade);
        if !self.drain_delay.is_zero() && !app.is_forced() && !upgrade {
            log::info!(
                "not ready: still accepting for the drain delay of {:?}",
                self.drain_delay
            );
            let started = app.triggered_at().unwrap_or_else(Instant::now);
            self.accept_until(&app, Until::Delay(started + self.drain_delay));
        }
        self.stop_accepting(!upgrade);
    }

    fn stopped(&self, until: Until) -> bool {
        match until {
            Until::Trigger => self.state.app.is_triggered(),
            Until::Delay(end) => self.state.app.is_forced() || Instant::now() >= end,
            Until::Forced => self.state.draining.is_forced(),
        }
    }

    /// Waits up to `wait` for a connection to close somewhere (a descriptor is
    /// free) or for `until`, never past the end of a readiness delay.
    fn pause(&self, until: Until, wait: Duration) {
        let (fires, wait) = match until {
            Until::Trigger => (self.state.app.when_triggered(), wait),
            Until::Delay(end) => (
                self.state.app.when_forced(),
                wait.min(end.saturating_duration_since(Instant::now())),
            ),
            Until::Forced => (self.state.draining.when_forced(), wait),
        };
        crossbeam_channel::select! {
            recv(self.freed) -> _ => {}
            recv(fires) -> _ => {}
            default(wait) => {}
        }
    }

    /// The registry's handle on a connection just accepted, taken here rather than
    /// by its worker: out of descriptors, this waits for one (see [`Acceptor::pause`])
    /// instead of handing on a connection no dismissal or force can reach, which
    /// would notice a drain only a tick late and hold its descriptors meanwhile.
    /// So every connection costs two descriptors, and it is the next accept that
    /// waits. `Err` gives the job back when `until` comes first.
    fn with_handle(&mut self, mut job: Job, until: Until) -> Result<Job, Job> {
        if job.handle.is_some() {
            return Ok(job);
        }
        let mut backoff = Backoff::new();
        loop {
            match job.stream.try_clone() {
                Ok(handle) => {
                    job.handle = Some(handle);
                    return Ok(job);
                }
                Err(err) if out_of_resources(&err) => {
                    // Counted with the accepts that fail: taking a connection needs
                    // two descriptors, and this is the second one failing.
                    let err = io::Error::new(err.kind(), format!("{err} (second descriptor)"));
                    self.failures.note(&err, Instant::now());
                    if self.stopped(until) {
                        return Err(job);
                    }
                    self.pause(until, backoff.next());
                }
                Err(err) => {
                    log::debug!("{}: no handle for the registry: {err}", job.peer);
                    return Ok(job);
                }
            }
        }
    }

    /// Accepts and dispatches until the token fires, or, with [`Until::Delay`],
    /// until that instant (the readiness delay, cut short only by a force). A
    /// connection still waiting for its registry handle then is kept in `held`.
    fn accept_until(&mut self, app: &Shutdown, until: Until) {
        let mut poll = MIN_POLL.min(self.max_poll);
        let mut last_accept: Option<Instant> = None;
        let mut backoff = Backoff::new();
        loop {
            let accepted = match self.held.take() {
                Some(job) => Accepted::One(job),
                None => accept_one(&self.listener),
            };
            match accepted {
                Accepted::One(job) => {
                    match self.with_handle(job, until) {
                        Ok(job) => self.dispatch(job),
                        Err(job) => {
                            self.held = Some(job);
                            return;
                        }
                    }
                    poll = MIN_POLL;
                    last_accept = Some(Instant::now());
                    backoff.reset();
                    continue;
                }
                Accepted::Nothing => self.pool.tidy(),
                Accepted::Failed(err) => {
                    // Connections wait in the backlog and retrying at once would
                    // spin: wait for a connection to close (or the backoff), then
                    // accept again.
                    self.failures.note(&err, Instant::now());
                    self.pause(until, backoff.next());
                    if self.stopped(until) {
                        return;
                    }
                    continue;
                }
            }
            self.failures.flush_due(Instant::now());
            let wake = Instant::now() + poll;
            let stop = match until {
                Until::Delay(end) => {
                    app.wait_forced_deadline(wake.min(end)) || Instant::now() >= end
                }
                Until::Trigger | Until::Forced => app.wait_deadline(wake),
            };
            if stop {
                return;
            }
            // While clients keep coming, the next one is likely soon: stay within
            // HOT_POLL of it. After a quiet HOT_WINDOW, back off to the ceiling.
            let hot = last_accept.is_some_and(|at| at.elapsed() < HOT_WINDOW);
            let ceiling = if hot {
                HOT_POLL.min(self.max_poll)
            } else {
                self.max_poll
            };
            poll = (poll * 2).min(ceiling);
        }
    }

    fn dispatch(&mut self, job: Job) {
        Stats::bump(&self.state.stats.accepted);
        // The pool's limit is a count, not a preallocated channel: a worker that has
        // just finished frees its place at once, so a client is never refused while a
        // worker is free, and a huge `--queue` costs nothing until it fills.
        let job = if self.state.admit(self.capacity) {
            match self.pool.submit(job) {
                Ok(()) => return,
                // No worker is alive and none can be started: nobody will serve it.
                Err(job) => {
                    self.state.release();
                    job
                }
            }
        } else {
            job
        };
        Stats::bump(&self.state.stats.refused_busy);
        log::warn!(
            "{}: every worker busy and the queue full; refusing",
            job.peer
        );
        // If even the refuser is backed up, dropping the socket is the last resort.
        let _ = self.refused.try_send(job.stream);
    }

    /// Stop accepting: take what waits in the kernel's backlog (closing the listener
    /// would reset it) and hand it to the pool, close the listener, then close the
    /// pool's queue.
    ///
    /// After an upgrade (`take_backlog` false) the listening socket lives on in the
    /// new process: closing our descriptor resets nothing, and what waits in the
    /// shared backlog is the new process's to serve.
    fn stop_accepting(mut self, take_backlog: bool) {
        self.state.draining.trigger();
        // At once, even before a join runs; the join loop passes again, to dismiss
        // connections left alone for their keep-alive grace when it ends and to time
        // every linger.
        let pass = self
            .state
            .registry
            .dismiss_idle(self.state.handler.goodbye(), Instant::now());
        log::debug!("{} idle connection(s) told goodbye", pass.dismissed);
        let (accepted, left) = if take_backlog {
            self.take_backlog()
        } else {
            (0, Some(0))
        };
        self.failures.flush(Instant::now());
        let Acceptor {
            listener,
            pool,
            refused,
            state,
            ..
        } = self;
        drop(listener);
        drop(refused);
        // Closes the queue: each worker ends once it is empty.
        drop(pool);
        let stats = &state.stats;
        match left {
            Some(left) => stats.backlog_left.store(left, Ordering::Relaxed),
            None => stats.backlog_uncounted.store(true, Ordering::Relaxed),
        }
        match left {
            _ if !take_backlog => {
                log::info!("stopped accepting: the new process serves the shared backlog");
            }
            Some(0) => log::info!(
                "stopped accepting: listener closed, {accepted} connection(s) taken from the backlog"
            ),
            Some(left) => log::warn!(
                "stopped accepting: listener closed, {accepted} connection(s) taken from the \
                 backlog, {left} left in it (reset by the close)"
            ),
            None => log::warn!(
                "stopped accepting: listener closed, {accepted} connection(s) taken from the \
                 backlog, the rest (uncounted on this platform) reset by the close"
            ),
        }
    }

    /// Hands a connection taken from the backlog to the pool, past the limit: nothing
    /// new is accepted, and it was waiting already.
    fn hand_over_taken(&mut self, job: Job) {
        // Counted before the submission, so the worker's release follows it.
        self.state.admitted.fetch_add(1, Ordering::SeqCst);
        if self.pool.submit(job).is_err() {
            // No worker is alive and none can be started to serve it.
            self.state.release();
            Stats::bump(&self.state.stats.forced);
        }
    }

    /// Takes every connection waiting in the backlog, until `accept` says it is
    /// empty, handing each to the pool at once (a connection held here holds a
    /// descriptor the next accept may need). When descriptors run out, what waits in
    /// the backlog is taken as workers close connections: the listener stays open
    /// meanwhile, since closing it would reset everything still in it. Only a force
    /// (the drain deadline, a second signal) or a broken listener ends the wait
    /// early. Returns how many connections were taken and how many were left in the
    /// backlog (`None`: uncounted).
    fn take_backlog(&mut self) -> (u64, Option<u64>) {
        let stats = Arc::clone(&self.state.stats);
        let mut backoff = Backoff::new();
        let mut starved = false;
        let mut accepted = 0;
        loop {
            if self.state.draining.is_forced() {
                return (accepted, self.probe.waiting());
            }
            let next = match self.held.take() {
                Some(job) => Accepted::One(job),
                None => accept_one(&self.listener),
            };
            match next {
                Accepted::One(job) => {
                    Stats::bump(&stats.accepted);
                    accepted += 1;
                    // Given back without its handle only on a force: the worker that
                    // takes it sees the force and counts it.
                    let job = self
                        .with_handle(job, Until::Forced)
                        .unwrap_or_else(|job| job);
                    self.hand_over_taken(job);
                    backoff.reset();
                }
                Accepted::Nothing => return (accepted, Some(0)),
                Accepted::Failed(err) if out_of_resources(&err) => {
                    if !starved {
                        starved = true;
                        log::info!(
                            "draining: {err}; keeping the listener open to take the rest \
                             of the backlog as connections close"
                        );
                    }
                    self.failures.note(&err, Instant::now());
                    self.pause(Until::Forced, backoff.next());
                }
                Accepted::Failed(err) => {
                    log::error!("cannot take the rest of the backlog: accept failed: {err}");
                    return (accepted, self.probe.waiting());
                }
            }
        }
    }
}
