//! What a server's shutdown did, as counted while it happened.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::shutdown::{exit_code, Outcome, Reason};

/// The counters a running server updates; read once into a [`ServerReport`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) accepted: AtomicU64,
    pub(crate) drained: AtomicU64,
    pub(crate) forced: AtomicU64,
    pub(crate) refused_busy: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) write_timeouts: AtomicU64,
    /// Connections still in the kernel's backlog when the listener was closed.
    pub(crate) backlog_left: AtomicU64,
    /// `backlog_left` could not be counted (not Linux) and may not be zero.
    pub(crate) backlog_uncounted: AtomicBool,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A server's account of its run and shutdown, returned by
/// [`ServerHandle::join`](super::ServerHandle::join).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerReport {
    /// What started the shutdown.
    pub reason: Reason,
    /// How it ended.
    pub outcome: Outcome,
    /// Connections accepted over the whole run.
    pub accepted: u64,
    /// Connections open or queued when draining began that closed gracefully.
    pub drained: u64,
    /// Connections force-closed after the deadline or a second signal.
    pub forced: u64,
    /// Connections turned away as busy over the whole run.
    pub refused_busy: u64,
    /// Connections whose handler panicked.
    pub panics: u64,
    /// Connections given up on over the whole run because the client read nothing
    /// for the write timeout.
    pub write_timeouts: u64,
    /// Connections still waiting in the kernel's backlog when the drain gave up on
    /// them (its deadline or a force came while the process had no descriptor to
    /// accept them with): closing the listener reset them. `None` where they
    /// cannot be counted (only Linux exposes it) and the drain gave up before the
    /// backlog was empty. When it is not `Some(0)`, the outcome is not clean.
    pub backlog_left: Option<u64>,
    /// Names of threads still running when the server gave up on them.
    pub detached: Vec<String>,
    /// From the start of draining to the last connection closed.
    pub drain: Duration,
}

impl ServerReport {
    /// The exit code for this report (see [`exit_code`]).
    pub fn exit_code(&self) -> u8 {
        exit_code(self.reason, self.outcome)
    }
}

impl fmt::Display for ServerReport {
    /// The key=value fields of the report line, without `stopped` or `total_ms`
    /// (those belong to whoever prints the whole process's report).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reason={} outcome={} drained={} forced={} refused_busy={} panics={} \
             detached_threads={} drain_ms={} write_timeouts={} backlog_left={}",
            self.reason,
            self.outcome,
            self.drained,
            self.forced,
            self.refused_busy,
            self.panics,
            self.detached.len(),
            self.drain.as_millis(),
            self.write_timeouts,
            BacklogLeft(self.backlog_left),
        )
    }
}

/// Formats [`ServerReport::backlog_left`] as a report value: the count, or `unknown`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BacklogLeft(pub(crate) Option<u64>);

impl fmt::Display for BacklogLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(count) => write!(f, "{count}"),
            None => f.write_str("unknown"),
        }
    }
}
