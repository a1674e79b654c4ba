//! lameduck: graceful shutdown without an async runtime.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod lifecycle;
pub mod shutdown;
pub mod signals;
pub mod supervisor;

pub use lifecycle::{DrainSummary, Lifecycle, StartupError};
pub use shutdown::{Reason, Shutdown};
pub use signals::SignalError;
pub use supervisor::{BoxError, OnFailure, SpawnError, TaskGroup, TaskReport, TaskResult};
