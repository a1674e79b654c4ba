//! How a thread's body ended: finished, failed, panicked or still running.

use std::fmt;

use super::BoxError;

/// How one task (or one bounded lifecycle step) ended.
#[derive(Debug)]
pub enum TaskOutcome {
    /// Returned `Ok(())`.
    Finished,
    /// Returned this error.
    Failed(BoxError),
    /// Panicked with this message.
    Panicked(String),
    /// Still running at the deadline: its thread was detached and may still run.
    Detached,
}

impl TaskOutcome {
    /// True unless the task finished successfully.
    pub fn is_failure(&self) -> bool {
        !matches!(self, TaskOutcome::Finished)
    }
}

impl fmt::Display for TaskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskOutcome::Finished => f.write_str("finished"),
            TaskOutcome::Failed(err) => write!(f, "failed: {err}"),
            TaskOutcome::Panicked(message) => write!(f, "panicked: {message}"),
            TaskOutcome::Detached => f.write_str("still running at the deadline, detached"),
        }
    }
}
