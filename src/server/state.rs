//! The state every thread of one server shares.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::handler::Handler;
use super::registry::Registry;
use super::report::Stats;
use crate::shutdown::Shutdown;

/// What the whole server shares: the handler, the counters, the registry of
/// connections, the timeouts and both shutdown tokens. The acceptor, every worker
/// and the drain in `ServerHandle::join` hold it.
pub(crate) struct ServerState {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) stats: Arc<Stats>,
    /// Workers currently holding a connection, for the decision to poll between
    /// requests.
    pub(crate) serving: AtomicUsize,
    /// Connections handed to the pool and not yet finished: queued plus served. The
    /// acceptor admits while it is below workers + queue.
    pub(crate) admitted: AtomicUsize,
    /// Cores available, for the decision to poll between requests; 0 disables it.
    pub(crate) spin_cores: usize,
    /// Each worker's current connection, for dismissal and force-close.
    pub(crate) registry: Registry,
    pub(crate) tick: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) draining: Shutdown,
    pub(crate) app: Shutdown,
    /// Rung after each connection is closed: an acceptor out of descriptors waits
    /// for it to take the next one from the backlog.
    pub(crate) freed: Sender<()>,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("serving", &self.serving)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// Takes a place in the pool if one of `capacity` is free.
    pub(crate) fn admit(&self, capacity: usize) -> bool {
        self.admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a place back once its connection is finished.
    pub(crate) fn release(&self) {
        // Saturating: a job sent without `admit` (a test's) must not wrap the count.
        let _ = self
            .admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub(crate) fn is_forced(&self) -> bool {
        self.draining.is_forced() || self.app.is_forced()
    }
}
