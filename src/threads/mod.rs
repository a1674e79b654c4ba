//! The crate's thread machinery, below everything that starts threads: named
//! threads whose end is always reported (a done guard), the one deadline join
//! ([`Crew`]), panic messages, and bounded steps ([`run_bounded`]).
//!
//! The server, the supervisor and the lifecycle all start their threads here, so
//! "joined against a deadline, named and detached if still running" means the same
//! thing everywhere.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

mod crew;
mod outcome;

pub(crate) use crew::{Crew, JoinEnd};
pub use outcome::TaskOutcome;

/// The error type of tasks and hooks: any error that can cross threads.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What a task or hook returns. `?` converts most errors into it.
pub type TaskResult = Result<(), BoxError>;

/// A task thread could not be started.
#[derive(Debug)]
pub struct SpawnError {
    task: String,
    source: io::Error,
}

impl SpawnError {
    pub(crate) fn new(task: String, source: io::Error) -> SpawnError {
        SpawnError { task, source }
    }

    /// The name of the task that could not be started.
    pub fn task(&self) -> &str {
        &self.task
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot start a thread for task `{}`", self.task)
    }
}

impl Error for SpawnError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// The text of a panic, as `std` prints it, for the payloads `panic!` produces.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "non-string panic payload"
    }
}

/// `from + after`, saturating instead of panicking when a huge budget or timeout (user
/// input) would overflow `Instant`: a deadline a century away is as good as none.
pub(crate) fn deadline_after(from: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    from.checked_add(after)
        .or_else(|| from.checked_add(CENTURY))
        .unwrap_or(from)
}

/// Runs `body` on a thread named `thread_name` and waits for it until `deadline`.
/// A body still running then is detached ([`TaskOutcome::Detached`]); a thread that
/// cannot be started is reported as [`TaskOutcome::Failed`]. The lifecycle bounds its
/// hooks and resource closes with this.
pub(crate) fn run_bounded<B>(thread_name: String, deadline: Instant, body: B) -> TaskOutcome
where
    B: FnOnce() -> TaskResult + Send + 'static,
{
    let mut crew = Crew::new();
    if let Err(source) = crew.spawn(thread_name.clone(), None, body, |_| {}) {
        return TaskOutcome::Failed(Box::new(SpawnError::new(thread_name, source)));
    }
    if crew.join_until(deadline, &crossbeam_channel::never()) != JoinEnd::AllExited {
        log::warn!("thread `{thread_name}` still running at its deadline: detached");
    }
    crew.finish()
        .pop()
        .map_or(TaskOutcome::Detached, |(_, outcome)| outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_run_reports_a_hang_as_detached() {
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        let outcome = run_bounded(
            "close:hangs".to_owned(),
            Instant::now() + Duration::from_millis(50),
            move || {
                let _ = release_rx.recv();
                Ok(())
            },
        );
        assert!(matches!(outcome, TaskOutcome::Detached));
        drop(release_tx);
        let soon = Instant::now() + Duration::from_secs(5);
        let outcome = run_bounded("close:quick".to_owned(), soon, || Ok(()));
        assert!(matches!(outcome, TaskOutcome::Finished));
    }

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now);
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
