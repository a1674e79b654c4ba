//! Named threads joined against a deadline: the one join loop of the crate.
//!
//! `JoinHandle::join` cannot time out, so each thread holds a guard that reports its
//! end on a channel when dropped — on return and on panic alike — and the joiner
//! waits on that channel with a deadline. Threads still running when the waiting
//! stops are detached, never waited for forever. The server's threads, a task
//! group's tasks and each bounded lifecycle step all run in a crew.

use std::collections::BTreeMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::{panic_message, TaskOutcome, TaskResult};

/// Sent by a thread as it ends; `index` is its number in the crew (its spawn order).
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

/// How a wait for the crew ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinEnd {
    AllExited,
    DeadlinePassed,
    Aborted,
}

#[derive(Debug)]
struct Member {
    name: String,
    /// Taken once the thread has reported its end and been reaped.
    handle: Option<JoinHandle<()>>,
    outcome: Option<TaskOutcome>,
}

/// Threads started together and waited for together.
#[derive(Debug)]
pub(crate) struct Crew {
    /// Put before each name to make its thread's name (`task:` for a task group).
    prefix: &'static str,
    done_tx: Sender<Done>,
    done_rx: Receiver<Done>,
    /// By spawn number, so iteration is in spawn order and a member forgotten by
    /// [`Crew::take_ended`] leaves no hole behind.
    members: BTreeMap<usize, Member>,
    /// The number of the next thread spawned.
    next: usize,
    /// Members that have reported their end since the last [`Crew::take_ended`].
    ended: Vec<usize>,
    alive: usize,
    last_exit: Option<Instant>,
}

impl Crew {
    /// A crew whose threads are named as they are spawned.
    pub(crate) fn new() -> Crew {
        Crew::with_prefix("")
    }

    /// A crew whose threads are named `<prefix><name>`; the crew itself (names,
    /// outcomes) goes by `<name>`.
    pub(crate) fn with_prefix(prefix: &'static str) -> Crew {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        Crew {
            prefix,
            done_tx,
            done_rx,
            members: BTreeMap::new(),
            next: 0,
            ended: Vec::new(),
            alive: 0,
            last_exit: None,
        }
    }

    /// Starts `body` on a thread called `<prefix><name>` (with `stack_size`, or the platform's
    /// default). `on_failure` runs on that thread before its end is reported, so
    /// whatever it does (log, trigger the shutdown) has happened by the time the
    /// joiner hears of the failure.
    pub(crate) fn spawn<B, F>(
        &mut self,
        name: String,
        stack_size: Option<usize>,
        body: B,
        on_failure: F,
    ) -> io::Result<()>
    where
        B: FnOnce() -> TaskResult + Send + 'static,
        F: FnOnce(&TaskOutcome) + Send + 'static,
    {
        let mut builder = thread::Builder::new().name(format!("{}{name}", self.prefix));
        if let Some(size) = stack_size {
            builder = builder.stack_size(size);
        }
        let index = self.next;
        let done = self.done_tx.clone();
        let handle = builder.spawn(move || {
            let mut guard = DoneGuard {
                index,
                outcome: None,
                done,
            };
            // AssertUnwindSafe is sound here: the closure is moved into this call and
            // consumed by it, so nothing of it can be observed in a broken state after
            // a panic. We only read the payload. State the body shares with other
            // threads (Arc<Mutex<..>>) is protected by std's lock poisoning, as for
            // any thread that panics; the crew itself shares nothing with the body.
            let outcome = match panic::catch_unwind(AssertUnwindSafe(body)) {
                Ok(Ok(())) => TaskOutcome::Finished,
                Ok(Err(err)) => TaskOutcome::Failed(err),
                Err(payload) => TaskOutcome::Panicked(panic_message(payload.as_ref()).to_owned()),
            };
            if outcome.is_failure() {
                on_failure(&outcome);
            }
            guard.outcome = Some(outcome);
        })?;
        self.members.insert(
            index,
            Member {
                name,
                handle: Some(handle),
                outcome: None,
            },
        );
        self.next += 1;
        self.alive += 1;
        Ok(())
    }

    /// Threads started, ended or not, and not forgotten by [`Crew::take_ended`].
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// The names of the threads started (except those forgotten), in start order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.members
            .values()
            .map(|member| member.name.as_str())
            .collect()
    }

    /// Threads started that have not reported their end.
    pub(crate) fn alive(&self) -> usize {
        self.alive
    }

    fn record(&mut self, done: Done) {
        let Some(member) = self.members.get_mut(&done.index) else {
            return;
        };
        if member.outcome.is_some() {
            return;
        }
        member.outcome = Some(done.outcome);
        if let Some(handle) = member.handle.take() {
            reap(handle);
        }
        self.ended.push(done.index);
        self.alive -= 1;
        self.last_exit = Some(Instant::now());
    }

    /// Waits until every thread has exited, `deadline` passes, or `abort` fires
    /// (disconnects or yields), whichever is first. Ends reported just as the wait
    /// stopped are still recorded.
    pub(crate) fn join_until(&mut self, deadline: Instant, abort: &Receiver<()>) -> JoinEnd {
        let timeout = crossbeam_channel::at(deadline);
        let mut end = JoinEnd::AllExited;
        while self.alive > 0 {
            crossbeam_channel::select! {
                recv(self.done_rx) -> done => {
                    // We hold a sender ourselves, so this cannot disconnect.
                    if let Ok(done) = done {
                        self.record(done);
                    }
                }
                recv(abort) -> _ => {
                    end = JoinEnd::Aborted;
                    break;
                }
                recv(timeout) -> _ => {
                    end = JoinEnd::DeadlinePassed;
                    break;
                }
            }
        }
        // The end says what stopped the wait, even if every thread ended just then.
        while let Ok(done) = self.done_rx.try_recv() {
            self.record(done);
        }
        end
    }

    /// Takes the threads that have reported their end out of the crew, with how
    /// they ended, in spawn order: a crew that lives as long as the process (a task
    /// group spawning a task per connection) then holds only the threads still
    /// running, not one entry per thread it ever started.
    pub(crate) fn take_ended(&mut self) -> Vec<(String, TaskOutcome)> {
        while let Ok(done) = self.done_rx.try_recv() {
            self.record(done);
        }
        let mut ended = std::mem::take(&mut self.ended);
        ended.sort_unstable();
        ended
            .into_iter()
            .filter_map(|index| self.members.remove(&index))
            .filter_map(|member| Some((member.name, member.outcome?)))
            .collect()
    }

    /// When the most recent thread exited.
    pub(crate) fn last_exit(&self) -> Option<Instant> {
        self.last_exit
    }

    /// Records, without waiting, the threads that have ended, and forgets them with
    /// their outcomes: a crew whose threads come and go for the life of a server
    /// (the pool's workers, which end when idle) stays as small as the threads
    /// alive. What a forgotten thread's failure did was logged by its `on_failure`.
    pub(crate) fn forget_ended(&mut self) {
        // Cheap between the acceptor's polls: it touches only the members that ended.
        self.take_ended();
    }

    /// Every thread with how it ended, in start order; the ones still running are
    /// given up on (their handles dropped: detached) as [`TaskOutcome::Detached`].
    pub(crate) fn finish(self) -> Vec<(String, TaskOutcome)> {
        self.members
            .into_values()
            .map(|member| {
                let outcome = member.outcome.unwrap_or(TaskOutcome::Detached);
                (member.name, outcome)
            })
            .collect()
    }

    /// Gives up on the threads still running and returns their names.
    pub(crate) fn detach(self) -> Vec<String> {
        self.finish()
            .into_iter()
            .filter(|(_, outcome)| matches!(outcome, TaskOutcome::Detached))
            .map(|(name, _)| name)
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn quiet(_: &TaskOutcome) {}

    /// A crew of two: "quick" ends at once, "stuck" when the sender is dropped.
    fn quick_and_stuck() -> (Crew, crossbeam_channel::Sender<()>) {
        let mut crew = Crew::new();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        crew.spawn("quick".into(), None, || Ok(()), quiet).unwrap();
        crew.spawn(
            "stuck".into(),
            None,
            move || {
                let _ = release_rx.recv();
                Ok(())
            },
            quiet,
        )
        .unwrap();
        (crew, release_tx)
    }

    #[test]
    fn joins_threads_that_exit_and_names_those_that_do_not() {
        let never = crossbeam_channel::never();
        let (mut crew, release_tx) = quick_and_stuck();
        let end = crew.join_until(Instant::now() + Duration::from_millis(200), &never);
        assert_eq!(end, JoinEnd::DeadlinePassed);
        assert!(crew.last_exit().is_some());
        assert_eq!(crew.alive(), 1);
        assert_eq!(crew.detach(), vec!["stuck".to_string()]);
        drop(release_tx);
    }

    #[test]
    fn a_panicking_thread_still_reports_its_exit() {
        let never = crossbeam_channel::never();
        let mut crew = Crew::new();
        let (seen_tx, seen_rx) = crossbeam_channel::bounded(1);
        crew.spawn(
            "panics".into(),
            None,
            || panic!("on purpose"),
            move |outcome| {
                let _ = seen_tx.send(outcome.to_string());
            },
        )
        .unwrap();
        let end = crew.join_until(Instant::now() + Duration::from_secs(5), &never);
        assert_eq!(end, JoinEnd::AllExited);
        assert_eq!(seen_rx.try_recv().as_deref(), Ok("panicked: on purpose"));
        let outcomes = crew.finish();
        assert!(matches!(&outcomes[0].1, TaskOutcome::Panicked(m) if m == "on purpose"));
    }

    #[test]
    fn abort_cuts_the_wait_short() {
        let mut crew = Crew::new();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        crew.spawn(
            "stuck".into(),
            None,
            move || {
                let _ = release_rx.recv();
                Ok(())
            },
            quiet,
        )
        .unwrap();
        let (abort_tx, abort_rx) = crossbeam_channel::bounded::<()>(0);
        drop(abort_tx);
        let end = crew.join_until(Instant::now() + Duration::from_secs(30), &abort_rx);
        assert_eq!(end, JoinEnd::Aborted);
        drop(release_tx);
    }

    #[test]
    fn forgetting_the_ended_keeps_only_the_threads_alive() {
        let never = crossbeam_channel::never();
        let (mut crew, release_tx) = quick_and_stuck();
        let soon = Instant::now() + Duration::from_millis(200);
        assert_eq!(crew.join_until(soon, &never), JoinEnd::DeadlinePassed);
        crew.forget_ended();
        assert_eq!(crew.names(), ["stuck"]);
        drop(release_tx);
        let soon = Instant::now() + Duration::from_secs(5);
        assert_eq!(crew.join_until(soon, &never), JoinEnd::AllExited);
        crew.forget_ended();
        assert_eq!(crew.len(), 0);
        crew.spawn("next".into(), None, || Ok(()), quiet).unwrap();
        assert_eq!(crew.join_until(soon, &never), JoinEnd::AllExited);
        assert!(matches!(crew.finish()[..], [(ref name, TaskOutcome::Finished)] if name == "next"));
    }
}
