//! Supervised background tasks: named threads that receive the shutdown token, are told
//! to stop by its trigger, and are joined against one deadline.
//!
//! This is the thread version of the tutorial's `asyncio.TaskGroup` and its "graceful
//! cancel with timeout" (`asyncio.wait(tasks, timeout=...)`). Threads cannot be
//! cancelled, so stopping is cooperative: every task gets a clone of the [`Shutdown`]
//! token and is expected to return soon after it fires. What the group guarantees is the
//! other half: [`TaskGroup::join`] never waits past its deadline. Each thread holds a
//! "done" guard that reports on a channel when the thread ends — normally, with an
//! error, or by panic — and the joiner waits on that channel with `recv_deadline`. Tasks
//! still running at the deadline are detached, named in the log and in the
//! [`TaskReport`].
//!
//! A task that fails (returns an error or panics) can take the whole application down
//! with it ([`OnFailure::ShutdownAll`], the default: the token is triggered with
//! [`Reason::Error`]) or only be reported ([`OnFailure::Report`]).

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::shutdown::{Reason, Shutdown};

mod report;
#[cfg(test)]
mod tests;

pub use report::{TaskOutcome, TaskRecord, TaskReport};

/// The error type of tasks and hooks: any error that can cross threads.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What a task or hook returns. `?` converts most errors into it.
pub type TaskResult = Result<(), BoxError>;

/// What a task's failure (an error returned, or a panic) does to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Trigger the shutdown of the whole application with [`Reason::Error`] (the
    /// default, as in tokio-graceful-shutdown: a background task that dies unnoticed
    /// is worse than a restart).
    #[default]
    ShutdownAll,
    /// Only log the failure and report it when the group is joined.
    Report,
}

/// A task thread could not be started.
#[derive(Debug)]
pub struct SpawnError {
    task: String,
    source: io::Error,
}

impl SpawnError {
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

/// Sent by a task thread as it ends; `index` is its position in the group.
pub(crate) struct Done {
    pub(crate) index: usize,
    pub(crate) outcome: TaskOutcome,
}

/// Reports the end of a thread when dropped, so the joiner hears about every end —
/// including a panic that escapes `catch_unwind` (a panic payload whose own `Drop`
/// panics), which leaves `outcome` unset.
struct DoneGuard {
    index: usize,
    outcome: Option<TaskOutcome>,
    done: Sender<Done>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| TaskOutcome::Panicked("panicked outside the task body".to_owned()));
        // The joiner may have given up and dropped the receiver; nobody to tell then.
        let _ = self.done.send(Done {
            index: self.index,
            outcome,
        });
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

/// Starts `body` on a thread called `thread_name` (with `stack_size`, or the platform's
/// default) that reports its end on `done`. `on_failure` runs on that thread before
/// the end is reported, so whatever it does (trigger the shutdown) has happened by the
/// time the joiner hears of the failure. The server's threads are started through it
/// too (see `server::crew`).
pub(crate) fn spawn_reporting<B, F>(
    thread_name: String,
    stack_size: Option<usize>,
    index: usize,
    done: Sender<Done>,
    body: B,
    on_failure: F,
) -> io::Result<JoinHandle<()>>
where
    B: FnOnce() -> TaskResult + Send + 'static,
    F: FnOnce(&TaskOutcome) + Send + 'static,
{
    let mut builder = thread::Builder::new().name(thread_name);
    if let Some(size) = stack_size {
        builder = builder.stack_size(size);
    }
    builder.spawn(move || {
        let mut guard = DoneGuard {
            index,
            outcome: None,
            done,
        };
        // AssertUnwindSafe is sound here: the closure is moved into this call and
        // consumed by it, so nothing of it can be observed in a broken state after a
        // panic. We only read the payload. State the task shares with other threads
        // (Arc<Mutex<..>>) is protected by std's lock poisoning, as for any thread
        // that panics; the group itself shares nothing with the task.
        let outcome = match panic::catch_unwind(AssertUnwindSafe(body)) {
            Ok(Ok(())) => TaskOutcome::Finished,
            Ok(Err(err)) => TaskOutcome::Failed(err),
            Err(payload) => TaskOutcome::Panicked(panic_message(payload.as_ref()).to_owned()),
        };
        if outcome.is_failure() {
            on_failure(&outcome);
        }
        guard.outcome = Some(outcome);
    })
}

/// Runs `body` on a thread named `thread_name` and waits for it until `deadline`.
/// A body still running then is detached ([`TaskOutcome::Detached`]); a thread that
/// cannot be started is reported as [`TaskOutcome::Failed`]. The lifecycle bounds its
/// hooks and resource closes with this.
pub(crate) fn run_bounded<B>(thread_name: String, deadline: Instant, body: B) -> TaskOutcome
where
    B: FnOnce() -> TaskResult + Send + 'static,
{
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let handle = match spawn_reporting(thread_name.clone(), None, 0, done_tx, body, |_| {}) {
        Ok(handle) => handle,
        Err(source) => {
            return TaskOutcome::Failed(Box::new(SpawnError {
                task: thread_name,
                source,
            }))
        }
    };
    match done_rx.recv_deadline(deadline) {
        Ok(done) => {
            reap(handle);
            done.outcome
        }
        // Disconnected cannot happen (the guard always sends before dropping the
        // sender); treat it like a timeout rather than trust a thread we did not see end.
        Err(_) => {
            log::warn!("thread `{thread_name}` still running at its deadline: detached");
            TaskOutcome::Detached
        }
    }
}

/// Joins a thread that has reported its end. Its done guard has already sent, so only
/// the return of the closure is left; `is_finished` keeps this from ever blocking, and a
/// thread caught in those last instructions is simply left to end on its own.
pub(crate) fn reap(handle: JoinHandle<()>) {
    if handle.is_finished() {
        // Err would mean a panic in the done guard's own drop; already reported.
        let _ = handle.join();
    }
}

struct Entry {
    name: String,
    handle: JoinHandle<()>,
}

/// A group of named background threads stopped by one shutdown token and joined
/// against one deadline.
///
/// ```
/// use lameduck::{Shutdown, TaskGroup};
/// use std::time::{Duration, Instant};
///
/// let shutdown = Shutdown::new();
/// let mut tasks = TaskGroup::new(&shutdown);
/// tasks.spawn("ticker", |shutdown| {
///     // Periodic work, interruptible by the token: no fixed sleeps.
///     while !shutdown.wait_timeout(Duration::from_millis(10)) {}
///     Ok(())
/// })?;
/// let report = tasks.stop(Instant::now() + Duration::from_secs(5));
/// assert!(report.is_clean());
/// assert_eq!(report.finished(), 1);
/// # Ok::<(), lameduck::supervisor::SpawnError>(())
/// ```
///
/// Dropping a group without joining it triggers the shutdown (so its threads are told
/// to stop) and detaches them without waiting.
#[must_use = "a task group must be joined, or its threads are detached unreported"]
pub struct TaskGroup {
    shutdown: Shutdown,
    entries: Vec<Entry>,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("tasks", &self.names())
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl TaskGroup {
    /// An empty group whose tasks will receive clones of `shutdown`.
    pub fn new(shutdown: &Shutdown) -> TaskGroup {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        TaskGroup {
            shutdown: shutdown.clone(),
            entries: Vec::new(),
            done_tx,
            done_rx,
        }
    }

    /// The token the group's tasks receive.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Number of tasks spawned and not yet joined.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no task has been spawned (or all have been joined).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names of the tasks spawned and not yet joined, in spawn order.
    pub fn names(&self) -> Vec<&str> {
        self.entries
            .iter()
            .map(|entry| entry.name.as_str())
            .collect()
    }

    /// Starts `task` on a thread named `task:<name>` with a clone of the token. A
    /// failure (error or panic) shuts the whole application down
    /// ([`OnFailure::ShutdownAll`]); use [`TaskGroup::spawn_with`] to only report it.
    ///
    /// The task should return soon after the token is triggered: wait on it with
    /// [`Shutdown::wait_timeout`] between units of work, or select on
    /// [`Shutdown::triggered`] beside its own channels.
    ///
    /// # Errors
    /// [`SpawnError`] if the operating system cannot start the thread.
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F) -> Result<(), SpawnError>
    where
        F: FnOnce(Shutdown) -> TaskResult + Send + 'static,
    {
        self.spawn_with(name, OnFailure::ShutdownAll, task)
    }

    /// Like [`TaskGroup::spawn`], choosing what a failure of this task does.
    ///
    /// # Errors
    /// [`SpawnError`] if the operating system cannot start the thread.
    pub fn spawn_with<F>(
        &mut self,
        name: impl Into<String>,
        on_failure: OnFailure,
        task: F,
    ) -> Result<(), SpawnError>
    where
        F: FnOnce(Shutdown) -> TaskResult + Send + 'static,
    {
        let name = name.into();
        let index = self.entries.len();
        let token = self.shutdown.clone();
        let for_failure = self.shutdown.clone();
        let task_name = name.clone();
        let react = move |outcome: &TaskOutcome| match on_failure {
            OnFailure::ShutdownAll => {
                if for_failure.trigger_with(Reason::Error) {
                    log::error!("task `{task_name}` {outcome}: shutting down");
                } else {
                    // Already shutting down for another reason, which stays the reason.
                    log::error!("task `{task_name}` {outcome}");
                }
            }
            OnFailure::Report => log::error!("task `{task_name}` {outcome}"),
        };
        let body = move || task(token);
        match spawn_reporting(
            format!("task:{name}"),
            None,
            index,
            self.done_tx.clone(),
            body,
            react,
        ) {
            Ok(handle) => {
                log::debug!("task `{name}` started");
                self.entries.push(Entry { name, handle });
                Ok(())
            }
            Err(source) => Err(SpawnError { task: name, source }),
        }
    }

    /// Triggers the shutdown (with [`Reason::Trigger`] unless it has already started),
    /// then [joins](TaskGroup::join) the tasks against `deadline`.
    pub fn stop(mut self, deadline: Instant) -> TaskReport {
        self.shutdown.trigger();
        self.join_until(deadline, true)
    }

    /// Waits until every task has ended, the `deadline` passes, or the shutdown is
    /// forced — whichever comes first — and reports each task's outcome. It does not
    /// trigger the shutdown itself (see [`TaskGroup::stop`]). Tasks still running are
    /// detached and named in the log.
    pub fn join(mut self, deadline: Instant) -> TaskReport {
        self.join_until(deadline, true)
    }

    /// The join behind [`TaskGroup::join`]; `abort_on_force` lets a forced shutdown
    /// end the wait early.
    pub(crate) fn join_until(&mut self, deadline: Instant, abort_on_force: bool) -> TaskReport {
        let started = Instant::now();
        let entries = std::mem::take(&mut self.entries);
        let mut outcomes: Vec<Option<TaskOutcome>> = entries.iter().map(|_| None).collect();
        let mut pending = entries.len();
        let forced = if abort_on_force {
            self.shutdown.forced()
        } else {
            crossbeam_channel::never()
        };
        let timeout = crossbeam_channel::at(deadline);
        let mut aborted_by_force = false;
        while pending > 0 {
            crossbeam_channel::select! {
                recv(self.done_rx) -> done => match done {
                    Ok(done) => {
                        if let Some(slot) = outcomes.get_mut(done.index) {
                            if slot.is_none() {
                                pending -= 1;
                            }
                            *slot = Some(done.outcome);
                        }
                    }
                    // We hold a sender ourselves, so this cannot disconnect.
                    Err(_) => break,
                },
                recv(forced) -> _ => {
                    log::warn!("shutdown forced: no longer waiting for {pending} task(s)");
                    aborted_by_force = true;
                    break;
                }
                recv(timeout) -> _ => break,
            }
        }
        // Ends reported just as the wait stopped still count: collect what is queued.
        while let Ok(done) = self.done_rx.try_recv() {
            if let Some(slot) = outcomes.get_mut(done.index) {
                *slot = Some(done.outcome);
            }
        }
        let tasks = entries
            .into_iter()
            .zip(outcomes)
            .map(|(entry, outcome)| {
                let outcome = match outcome {
                    Some(outcome) => {
                        reap(entry.handle);
                        outcome
                    }
                    None => {
                        log::warn!(
                            "task `{}` (thread task:{}) still running at the deadline: detached",
                            entry.name,
                            entry.name
                        );
                        // Dropping the handle detaches the thread.
                        drop(entry.handle);
                        TaskOutcome::Detached
                    }
                };
                TaskRecord {
                    name: entry.name,
                    outcome,
                }
            })
            .collect();
        TaskReport {
            tasks,
            elapsed: started.elapsed(),
            aborted_by_force,
        }
    }
}

impl Drop for TaskGroup {
    fn drop(&mut self) {
        if !self.entries.is_empty() {
            log::warn!(
                "task group dropped without a join: triggering shutdown and detaching {:?}",
                self.names()
            );
            self.shutdown.trigger();
        }
    }
}
