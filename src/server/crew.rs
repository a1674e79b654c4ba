//! The server's named threads, joined against a deadline.
//!
//! Threads are started with the task group's `spawn_reporting`, whose guard reports
//! each thread's end on a channel when dropped — on return and on panic alike — so the
//! joiner waits on that channel with a deadline instead of calling `JoinHandle::join`,
//! which cannot time out. Threads still running at the deadline are named and
//! detached, never waited for forever.

use std::io;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::supervisor::{reap, spawn_reporting, Done, TaskOutcome};

/// How a wait for the crew ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinEnd {
    AllExited,
    DeadlinePassed,
    Aborted,
}

#[derive(Debug)]
pub(crate) struct Crew {
    exited_tx: Sender<Done>,
    exited_rx: Receiver<Done>,
    running: Vec<Option<(String, JoinHandle<()>)>>,
    alive: usize,
    last_exit: Option<Instant>,
}

impl Crew {
    pub(crate) fn new() -> Crew {
        let (exited_tx, exited_rx) = crossbeam_channel::unbounded();
        Crew {
            exited_tx,
            exited_rx,
            running: Vec::new(),
            alive: 0,
            last_exit: None,
        }
    }

    pub(crate) fn spawn<F>(
        &mut self,
        name: String,
        stack_size: Option<usize>,
        body: F,
    ) -> io::Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        let body = move || {
            body();
            Ok(())
        };
        let handle = spawn_reporting(
            name.clone(),
            stack_size,
            self.running.len(),
            self.exited_tx.clone(),
            body,
            |_| {},
        )?;
        self.running.push(Some((name, handle)));
        self.alive += 1;
        Ok(())
    }

    fn reap(&mut self, done: Done) {
        if let Some((name, handle)) = self.running.get_mut(done.index).and_then(Option::take) {
            if let TaskOutcome::Panicked(message) = &done.outcome {
                log::error!("thread {name} panicked: {message}");
            }
            reap(handle);
            self.alive -= 1;
            self.last_exit = Some(Instant::now());
        }
    }

    /// Waits until every thread has exited, `deadline` passes, or `abort` fires
    /// (disconnects or yields), whichever is first.
    pub(crate) fn join_until(&mut self, deadline: Instant, abort: &Receiver<()>) -> JoinEnd {
        while self.alive > 0 {
            crossbeam_channel::select! {
                recv(self.exited_rx) -> done => {
                    if let Ok(done) = done {
                        self.reap(done);
                    }
                }
                recv(abort) -> _ => return JoinEnd::Aborted,
                default(deadline.saturating_duration_since(Instant::now())) => {
                    return JoinEnd::DeadlinePassed;
                }
            }
        }
        JoinEnd::AllExited
    }

    /// When the most recent thread exited.
    pub(crate) fn last_exit(&self) -> Option<Instant> {
        self.last_exit
    }

    /// Gives up on the threads still running and returns their names.
    pub(crate) fn detach(self) -> Vec<String> {
        self.running
            .into_iter()
            .flatten()
            .map(|(name, _handle)| name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn joins_threads_that_exit_and_names_those_that_do_not() {
        let never = crossbeam_channel::never();
        let mut crew = Crew::new();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        crew.spawn("quick".into(), None, || {}).unwrap();
        crew.spawn("stuck".into(), None, move || {
            let _ = release_rx.recv();
        })
        .unwrap();
        let end = crew.join_until(Instant::now() + Duration::from_millis(200), &never);
        assert_eq!(end, JoinEnd::DeadlinePassed);
        assert!(crew.last_exit().is_some());
        assert_eq!(crew.detach(), vec!["stuck".to_string()]);
        drop(release_tx);
    }

    #[test]
    fn a_panicking_thread_still_reports_its_exit() {
        let never = crossbeam_channel::never();
        let mut crew = Crew::new();
        crew.spawn("panics".into(), None, || panic!("on purpose"))
            .unwrap();
        let end = crew.join_until(Instant::now() + Duration::from_secs(5), &never);
        assert_eq!(end, JoinEnd::AllExited);
        assert!(crew.detach().is_empty());
    }

    #[test]
    fn abort_cuts_the_wait_short() {
        let mut crew = Crew::new();
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        crew.spawn("stuck".into(), None, move || {
            let _ = release_rx.recv();
        })
        .unwrap();
        let (abort_tx, abort_rx) = crossbeam_channel::bounded::<()>(0);
        drop(abort_tx);
        let end = crew.join_until(Instant::now() + Duration::from_secs(30), &abort_rx);
        assert_eq!(end, JoinEnd::Aborted);
        drop(release_tx);
    }
}
