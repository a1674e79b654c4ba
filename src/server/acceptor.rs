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

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::pool::{Job, PoolContext};
use super::report::Stats;
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
    pub(crate) jobs: Sender<Job>,
    pub(crate) refused: Sender<TcpStream>,
    pub(crate) context: Arc<PoolContext>,
    /// Workers plus queue: how many connections the pool may hold at once.
    pub(crate) capacity: usize,
    pub(crate) drain_delay: Duration,
    /// The longest wait between two polls of an idle listener.
    pub(crate) max_poll: Duration,
}

/// Tells the workers to drain when the acceptor ends, however it ends: if it panicked
/// they would otherwise serve their clients until the deadline.
struct StartDrainOnExit(Shutdown);

impl Drop for StartDrainOnExit {
    fn drop(&mut self) {
        self.0.trigger_with(crate::Reason::Trigger);
    }
}

enum Accepted {
    One(TcpStream, SocketAddr),
    Nothing,
}

fn accept_one(listener: &TcpListener) -> Accepted {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => return Accepted::One(stream, peer),
            Err(err) => match err.kind() {
                io::ErrorKind::WouldBlock => return Accepted::Nothing,
                // A signal landed mid-call: nothing happened, ask again.
                io::ErrorKind::Interrupted => continue,
                // The client gave up while in the backlog: its problem, not ours.
                io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => continue,
                // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS): the
                // connection stays in the backlog; back off to the slow poll and
                // retry rather than spin.
                _ => {
                    log::warn!("accept failed: {err}; retrying");
                    return Accepted::Nothing;
                }
            },
        }
    }
}

impl Acceptor {
    pub(crate) fn run(self) {
        let _drain_on_exit = StartDrainOnExit(self.context.draining.clone());
        let app = self.context.app.clone();
        self.accept_until(&app, None);
        // After an upgrade the address keeps serving through the new process: there
        // is no load balancer to wait for, and the backlog is the new process's.
        let upgrade = app.reason() == Some(Reason::Upgrade);
        if !self.drain_delay.is_zero() && !app.is_forced() && !upgrade {
            log::info!(
                "not ready: still accepting for the drain delay of {:?}",
                self.drain_delay
            );
            let started = app.triggered_at().unwrap_or_else(Instant::now);
            self.accept_until(&app, Some(started + self.drain_delay));
        }
        self.stop_accepting(!upgrade);
    }

    /// Accepts and dispatches until the token fires, or, with `until`, until that
    /// instant (the readiness delay, cut short only by a force).
    fn accept_until(&self, app: &Shutdown, until: Option<Instant>) {
        let mut poll = MIN_POLL.min(self.max_poll);
        let mut last_accept: Option<Instant> = None;
        loop {
            match accept_one(&self.listener) {
                Accepted::One(stream, peer) => {
                    self.dispatch(stream, peer);
                    poll = MIN_POLL;
                    last_accept = Some(Instant::now());
                    continue;
                }
                Accepted::Nothing => {}
            }
            let wake = Instant::now() + poll;
            let stop = match until {
                None => app.wait_deadline(wake),
                Some(until) => app.wait_forced_deadline(wake.min(until)) || Instant::now() >= until,
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

    fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        Stats::bump(&self.context.stats.accepted);
        // The pool's limit is a count, not a preallocated channel: a worker that has
        // just finished frees its place at once, so a client is never refused while a
        // worker is free, and a huge `--queue` costs nothing until it fills.
        let job = if self.context.admit(self.capacity) {
            match self.jobs.send((stream, peer)) {
                Ok(()) => return,
                // Every worker has exited (a force): nobody will serve it.
                Err(err) => {
                    self.context.release();
                    err.into_inner()
                }
            }
        } else {
            (stream, peer)
        };
        Stats::bump(&self.context.stats.refused_busy);
        log::warn!("{}: every worker busy and the queue full; refusing", job.1);
        // If even the refuser is backed up, dropping the socket is the last resort.
        let _ = self.refused.try_send(job.0);
    }

    /// SPEC §2.3.2: take what waits in the kernel's backlog (closing the listener
    /// would reset it), close the listener, then hand every taken connection to the
    /// pool — blocking now is fine, as nothing new is accepted.
    ///
    /// After an upgrade (`take_backlog` false) the listening socket lives on in the
    /// new process: closing our descriptor resets nothing, and what waits in the
    /// shared backlog is the new process's to serve (SPEC §7.4).
    fn stop_accepting(self, take_backlog: bool) {
        let Acceptor {
            listener,
            jobs,
            refused,
            context,
            ..
        } = self;
        context.draining.trigger();
        // At once, even before a join runs; the join loop passes again, to dismiss
        // connections left alone for their keep-alive grace when it ends and to time
        // every linger.
        let pass = context
            .registry
            .dismiss_idle(context.handler.goodbye(), Instant::now());
        log::debug!("{} idle connection(s) told goodbye", pass.dismissed);
        let mut backlog = Vec::new();
        if take_backlog {
            while let Accepted::One(stream, peer) = accept_one(&listener) {
                Stats::bump(&context.stats.accepted);
                backlog.push((stream, peer));
            }
        }
        drop(listener);
        drop(refused);
        if take_backlog {
            log::info!(
                "stopped accepting: listener closed, {} connection(s) taken from the backlog",
                backlog.len()
            );
        } else {
            log::info!("stopped accepting: the new process serves the shared backlog");
        }
        let forced = context.draining.forced();
        let mut backlog = backlog.into_iter();
        for job in backlog.by_ref() {
            // Past the limit: nothing new is accepted, and these were waiting already.
            context.admitted.fetch_add(1, Ordering::SeqCst);
            crossbeam_channel::select! {
                send(jobs, job) -> sent => if sent.is_err() {
                    Stats::bump(&context.stats.forced);
                },
                recv(forced) -> _ => {
                    Stats::bump(&context.stats.forced);
                    break;
                }
            }
        }
        for _never_served in backlog {
            Stats::bump(&context.stats.forced);
        }
    }
}
