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
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::shutdown::{Reason, Shutdown};

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

/// One task in a [`TaskReport`].
#[derive(Debug)]
pub struct TaskRecord {
    /// The name given to [`TaskGroup::spawn`]; the thread is named `task:<name>`.
    pub name: String,
    /// How it ended.
    pub outcome: TaskOutcome,
}

/// What [`TaskGroup::join`] found: every task with its outcome, in spawn order.
#[derive(Debug, Default)]
#[must_use = "the report says which tasks failed or were left running"]
pub struct TaskReport {
    /// Every task of the group, in the order they were spawned.
    pub tasks: Vec<TaskRecord>,
    /// How long the join waited.
    pub elapsed: Duration,
    /// True if the join stopped waiting because the shutdown was forced.
    pub aborted_by_force: bool,
}

impl TaskReport {
    fn count(&self, wanted: fn(&TaskOutcome) -> bool) -> usize {
        self.tasks
            .iter()
            .filter(|task| wanted(&task.outcome))
            .count()
    }

    /// Tasks that returned `Ok(())`.
    pub fn finished(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Finished))
    }

    /// Tasks that returned an error.
    pub fn failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Failed(_)))
    }

    /// Tasks that panicked.
    pub fn panicked(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Panicked(_)))
    }

    /// Tasks still running at the deadline (their threads were detached).
    pub fn detached(&self) -> usize {
        self.count(|outcome| matches!(outcome, TaskOutcome::Detached))
    }

    /// Names of the tasks that were detached.
    pub fn detached_names(&self) -> Vec<&str> {
        self.tasks
            .iter()
            .filter(|task| matches!(task.outcome, TaskOutcome::Detached))
            .map(|task| task.name.as_str())
            .collect()
    }

    /// The outcome of the task called `name`, if the group had one.
    pub fn outcome(&self, name: &str) -> Option<&TaskOutcome> {
        self.tasks
            .iter()
            .find(|task| task.name == name)
            .map(|task| &task.outcome)
    }

    /// True if every task finished successfully before the deadline.
    pub fn is_clean(&self) -> bool {
        self.tasks.iter().all(|task| !task.outcome.is_failure())
    }
}

impl fmt::Display for TaskReport {
    /// `tasks=<n> finished=<n> failed=<n> panicked=<n> detached=<n> tasks_ms=<n>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tasks={} finished={} failed={} panicked={} detached={} tasks_ms={}",
            self.tasks.len(),
            self.finished(),
            self.failed(),
            self.panicked(),
            self.detached(),
            self.elapsed.as_millis()
        )
    }
}

/// Sent by a task thread as it ends; `index` is its position in the group.
struct Done {
    index: usize,
    outcome: TaskOutcome,
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
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Starts `body` on a thread called `thread_name` that reports its end on `done`.
/// `on_failure` runs on that thread before the end is reported, so whatever it does
/// (trigger the shutdown) has happened by the time the joiner hears of the failure.
fn spawn_reporting<B, F>(
    thread_name: String,
    index: usize,
    done: Sender<Done>,
    body: B,
    on_failure: F,
) -> io::Result<JoinHandle<()>>
where
    B: FnOnce() -> TaskResult + Send + 'static,
    F: FnOnce(&TaskOutcome) + Send + 'static,
{
    thread::Builder::new().name(thread_name).spawn(move || {
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
            Err(payload) => TaskOutcome::Panicked(panic_message(payload.as_ref())),
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
    let handle = match spawn_reporting(thread_name.clone(), 0, done_tx, body, |_| {}) {
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
fn reap(handle: JoinHandle<()>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn tasks_that_stop_on_trigger_finish() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        for name in ["a", "b", "c"] {
            group
                .spawn(name, |shutdown| {
                    while !shutdown.wait_timeout(Duration::from_millis(5)) {}
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(group.names(), ["a", "b", "c"]);
        let report = group.stop(soon());
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.finished(), 3);
        assert_eq!(shutdown.reason(), Some(Reason::Trigger));
        assert_eq!(report.to_string().split(' ').count(), 6);
    }

    #[test]
    fn threads_are_named_after_tasks() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        let (name_tx, name_rx) = crossbeam_channel::bounded(1);
        group
            .spawn("namer", move |_| {
                let _ = name_tx.send(thread::current().name().map(str::to_owned));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            name_rx.recv_deadline(soon()).unwrap().as_deref(),
            Some("task:namer")
        );
        assert!(group.join(soon()).is_clean());
    }

    #[test]
    fn an_error_is_reported_with_its_cause() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        group
            .spawn_with("loader", OnFailure::Report, |_| {
                Err(io::Error::new(io::ErrorKind::NotFound, "no such table").into())
            })
            .unwrap();
        let report = group.join(soon());
        assert_eq!(report.failed(), 1);
        match report.outcome("loader") {
            Some(TaskOutcome::Failed(err)) => assert_eq!(err.to_string(), "no such table"),
            other => panic!("expected a failure, got {other:?}"),
        }
        // Report-only: the application keeps running.
        assert!(!shutdown.is_triggered());
    }

    #[test]
    fn an_error_can_shut_the_application_down() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        group
            .spawn("waits", |shutdown| {
                shutdown.wait();
                Ok(())
            })
            .unwrap();
        group.spawn("fails", |_| Err("disk full".into())).unwrap();
        // Nobody triggers: the failing task must, which lets "waits" finish.
        let report = group.join(soon());
        assert_eq!(shutdown.reason(), Some(Reason::Error));
        assert_eq!(report.finished(), 1);
        assert_eq!(report.failed(), 1);
        assert!(matches!(
            report.outcome("waits"),
            Some(TaskOutcome::Finished)
        ));
    }

    #[test]
    fn a_panic_is_caught_and_reported_with_its_message() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        group
            .spawn_with("crasher", OnFailure::Report, |_| {
                panic!("index {} out of range", 7)
            })
            .unwrap();
        group
            .spawn_with("static", OnFailure::Report, |_| panic!("plain"))
            .unwrap();
        let report = group.join(soon());
        assert_eq!(report.panicked(), 2);
        match report.outcome("crasher") {
            Some(TaskOutcome::Panicked(message)) => assert_eq!(message, "index 7 out of range"),
            other => panic!("expected a panic, got {other:?}"),
        }
        match report.outcome("static") {
            Some(TaskOutcome::Panicked(message)) => assert_eq!(message, "plain"),
            other => panic!("expected a panic, got {other:?}"),
        }
        assert!(!shutdown.is_triggered());
    }

    #[test]
    fn a_panic_shuts_down_by_default() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        group.spawn("crasher", |_| panic!("boom")).unwrap();
        let report = group.join(soon());
        assert_eq!(report.panicked(), 1);
        assert_eq!(shutdown.reason(), Some(Reason::Error));
    }

    #[test]
    fn a_task_that_ignores_the_token_is_detached_at_the_deadline() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        // The stubborn task blocks on a channel the test holds, so the test can let
        // it go afterwards instead of leaking a thread.
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        group
            .spawn("stubborn", move |_| {
                let _ = release_rx.recv();
                Ok(())
            })
            .unwrap();
        group
            .spawn("polite", |shutdown| {
                shutdown.wait();
                Ok(())
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        let report = group.stop(deadline);
        let waited_past_deadline = Instant::now().saturating_duration_since(deadline);
        assert!(
            waited_past_deadline < Duration::from_millis(500),
            "join overran its deadline by {waited_past_deadline:?}"
        );
        assert_eq!(report.detached_names(), ["stubborn"]);
        assert!(matches!(
            report.outcome("polite"),
            Some(TaskOutcome::Finished)
        ));
        assert!(!report.is_clean());
        drop(release_tx);
    }

    #[test]
    fn forcing_ends_the_join_early() {
        let shutdown = Shutdown::new();
        let mut group = TaskGroup::new(&shutdown);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        group
            .spawn("stubborn", move |_| {
                let _ = release_rx.recv();
                Ok(())
            })
            .unwrap();
        shutdown.force();
        let started = Instant::now();
        let report = group.join(Instant::now() + Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(report.aborted_by_force);
        assert_eq!(report.detached(), 1);
        drop(release_tx);
    }

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
        let outcome = run_bounded("close:quick".to_owned(), soon(), || Ok(()));
        assert!(matches!(outcome, TaskOutcome::Finished));
    }
}
