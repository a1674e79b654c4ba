//! The server's defaults, beneath every part that falls back on one.

use std::time::Duration;

/// The default of [`ServerBuilder::write_timeout`](super::ServerBuilder::write_timeout): nginx's `send_timeout`, long
/// enough for a client on a link that drops out for tens of seconds (TCP's own
/// retransmission backs off that long) and for a reader that stops to think.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of [`ServerBuilder::worker_idle_timeout`](super::ServerBuilder::worker_idle_timeout), as long as tokio keeps an
/// idle thread of its blocking pool: a burst of connections a few seconds apart
/// reuses its threads, and a server that has gone quiet holds none.
pub const DEFAULT_WORKER_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The drain timeout of [`ServerHandle::join`](super::ServerHandle::join) when the builder sets none.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
