//! The pool: worker threads started as connections need them, each serving one
//! connection at a time and isolating handler panics, up to a limit.
//!
//! [`Pool`] has the Rust Book's shape: it holds its workers and the sender of their
//! queue, and dropping it closes the queue, which ends each worker once what is
//! queued has been served. A connection submitted when no worker is idle starts one,
//! if fewer than the limit are alive; a worker that has waited
//! [`ServerBuilder::worker_idle_timeout`](super::ServerBuilder::worker_idle_timeout)
//! without a connection ends. So a fresh server holds no worker, whatever its limit,
//! and a shutdown pays only for the workers recent traffic needed.
//!
//! The acceptor owns the pool; the drain, on another thread, joins its workers
//! against the deadline with the crate's one deadline join. That is why dropping the
//! pool also hands its [`Crew`] over to the joiner ([`Workers`]). The workers share
//! the [`ServerState`] with the acceptor, giving back each admitted place and ringing
//! its `freed` bell as a connection closes.
//!
//! (Over 400 lines with its tests, which drive a real pool over loopback sockets.)

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::serve::{serve, Job};
use super::state::ServerState;
use crate::threads::{Crew, JoinEnd, TaskOutcome};

/// How the pool is sized and how its threads are made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    /// Most workers alive at once.
    pub(crate) limit: usize,
    pub(crate) stack_size: Option<usize>,
    /// How long a worker waits for a connection before it ends.
    pub(crate) idle_timeout: Duration,
}

/// Who is alive, who waits for work, and how much work waits: one lock, so that
/// "start a worker?" and "may this idle worker end?" are decided on the same counts
/// and a queued connection is never left without a worker to take it.
#[derive(Debug, Default)]
struct Counts {
    /// Workers started and not ended (or ending).
    live: usize,
    /// Workers waiting for a connection, counting those just started.
    idle: usize,
    /// Connections submitted that no worker has taken yet.
    waiting: usize,
}

#[derive(Debug)]
struct Shared {
    counts: Mutex<Counts>,
    queue: Receiver<Job>,
    idle_timeout: Duration,
    state: Arc<ServerState>,
}

impl Shared {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Every update leaves the counts consistent before it can panic: carry on.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The worker threads and the sender of their queue. Owned by the acceptor, the
/// only thread that submits connections and so the only one that starts workers.
#[derive(Debug)]
pub(crate) struct Pool {
    /// `Option` only so that `Drop` can close the queue before handing the crew over.
    jobs: Option<Sender<Job>>,
    workers: Crew,
    shared: Arc<Shared>,
    config: PoolConfig,
    /// Numbers the workers' threads; it keeps counting as workers come and go.
    next_id: usize,
    handover: Sender<Crew>,
}

/// The drain's side of a pool: it waits for the pool to be closed (its owner, the
/// acceptor, drops it as it stops), then joins the workers.
#[derive(Debug)]
pub(crate) struct Workers {
    handover: Receiver<Crew>,
    crew: Option<Crew>,
    /// A receiver of the queue, to count what is still queued after a force.
    leftover: Receiver<Job>,
}

impl Pool {
    /// An empty pool serving with `state`, and the handle its joiner keeps.
    pub(crate) fn new(state: Arc<ServerState>, config: PoolConfig) -> (Pool, Workers) {
        // Unbounded: the limit is `ServerState::admitted`, so nothing is allocated in
        // proportion to the queue's size.
        let (jobs, queue) = crossbeam_channel::unbounded();
        let (handover, handed) = crossbeam_channel::bounded(1);
        let workers = Workers {
            handover: handed,
            crew: None,
            leftover: queue.clone(),
        };
        let pool = Pool {
            jobs: Some(jobs),
            workers: Crew::new(),
            shared: Arc::new(Shared {
                counts: Mutex::new(Counts::default()),
                queue,
                idle_timeout: config.idle_timeout,
                state,
            }),
            config,
            next_id: 0,
            handover,
        };
        (pool, workers)
    }

    /// Queues `job` for a worker, starting one if none is idle and fewer than the
    /// limit are alive. `Err` gives the job back if no worker is alive and none can be
    /// started (the system refuses threads): nobody would ever serve it.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Job> {
        if self.jobs.is_none() {
            return Err(job);
        }
        let start = {
            let mut counts = self.shared.counts();
            counts.waiting += 1;
            let start = counts.waiting > counts.idle && counts.live < self.config.limit;
            if start {
                // Counted before it runs, so the next submission does not start a
                // second worker for the same connection.
                counts.live += 1;
                counts.idle += 1;
            }
            start
        };
        if start {
            if let Err(err) = self.start_worker() {
                let mut counts = self.shared.counts();
                counts.live -= 1;
                counts.idle -= 1;
                if counts.live == 0 {
                    counts.waiting -= 1;
                    log::error!("cannot start a worker thread: {err}; refusing {}", job.peer);
                    return Err(job);
                }
                log::error!("cannot start another worker thread: {err}; the connection waits");
            }
        }
        match self.jobs.as_ref() {
            // Cannot fail: the pool itself holds a receiver.
            Some(jobs) => jobs.send(job).map_err(|err| err.into_inner()),
            None => Err(job),
        }
    }

    /// Forgets the workers that have ended. The acceptor calls it between polls, so
    /// the threads of retired workers are reaped while the server idles.
    pub(crate) fn tidy(&mut self) {
        self.workers.forget_ended();
    }

    fn start_worker(&mut self) -> io::Result<()> {
        self.workers.forget_ended();
        let id = self.next_id;
        self.next_id += 1;
        let name = format!("lameduck-worker-{id}");
        let shared = Arc::clone(&self.shared);
        let thread = name.clone();
        self.workers.spawn(
            name,
            self.config.stack_size,
            move || {
                work(&shared);
                Ok(())
            },
            move |outcome: &TaskOutcome| log::error!("thread {thread} {outcome}"),
        )
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The Book's order: close the queue first, so every worker ends once it is
        // empty; then, instead of joining here without a deadline, hand the workers
        // to the drain, which joins them against its own.
        drop(self.jobs.take());
        let _ = self
            .handover
            .try_send(std::mem::replace(&mut self.workers, Crew::new()));
    }
}

impl Workers {
    /// Waits until the pool is closed and every worker has ended, `deadline` passes,
    /// or `abort` fires.
    pub(crate) fn join_until(&mut self, deadline: Instant, abort: &Receiver<()>) -> JoinEnd {
        if self.crew.is_none() {
            crossbeam_channel::select! {
                recv(self.handover) -> crew => match crew {
                    Ok(crew) => self.crew = Some(crew),
                    // The pool was dropped before it could hand anything over: it
                    // never existed for long enough to start a worker.
                    Err(_) => return JoinEnd::AllExited,
                },
                recv(abort) -> _ => return JoinEnd::Aborted,
                recv(crossbeam_channel::at(deadline)) -> _ => return JoinEnd::DeadlinePassed,
            }
        }
        match self.crew.as_mut() {
            Some(crew) => crew.join_until(deadline, abort),
            None => JoinEnd::AllExited,
        }
    }

    /// When the last worker ended, if any has.
    pub(crate) fn last_exit(&self) -> Option<Instant> {
        self.crew.as_ref().and_then(Crew::last_exit)
    }

    /// Takes whatever is still queued (after a force: nobody will serve it) and
    /// returns how many connections that closed.
    pub(crate) fn close_queued(&self) -> u64 {
        self.leftover.try_iter().map(drop).count() as u64
    }

    /// Gives up on the workers still running and returns their names. If the pool
    /// was never handed over (its owner, the acceptor, still runs) its workers cannot
    /// be named: it says so in the log.
    pub(crate) fn detach(mut self) -> Vec<String> {
        if self.crew.is_none() {
            self.crew = self.handover.try_recv().ok();
        }
        match self.crew {
            Some(crew) => crew.detach(),
            None => {
                log::warn!("the pool was never closed: its workers are left running unnamed");
                Vec::new()
            }
        }
    }
}

/// A worker's place in the [`Counts`], kept right whichever way its thread ends.
struct Duty<'a> {
    shared: &'a Shared,
    /// Counted as idle (waiting for a connection) rather than serving one.
    idle: bool,
    /// Already taken out of the counts (it retired).
    gone: bool,
}

impl<'a> Duty<'a> {
    /// A worker is counted idle from its start (see [`Pool::submit`]).
    fn begin(shared: &'a Shared) -> Duty<'a> {
        Duty {
            shared,
            idle: true,
            gone: false,
        }
    }

    fn took_job(&mut self) {
        let mut counts = self.shared.counts();
        counts.idle -= 1;
        counts.waiting -= 1;
        self.idle = false;
    }

    fn back_to_idle(&mut self) {
        self.shared.counts().idle += 1;
        self.idle = true;
    }

    /// After a wait with no connection: ends the worker's duty unless the other idle
    /// workers are too few for the connections waiting (one may have come just as
    /// the wait ended).
    fn retire(&mut self) -> bool {
        let mut counts = self.shared.counts();
        if counts.waiting >= counts.idle {
            return false;
        }
        counts.idle -= 1;
        counts.live -= 1;
        self.gone = true;
        true
    }
}

impl Drop for Duty<'_> {
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        let mut counts = self.shared.counts();
        counts.live -= 1;
        if self.idle {
            counts.idle -= 1;
        }
    }
}

/// A worker's whole life: serve until the queue is closed and empty, or until no
/// connection has come for the idle timeout.
fn work(shared: &Shared) {
    let state = &*shared.state;
    let seat = state.registry.seat();
    let mut duty = Duty::begin(shared);
    loop {
        match shared.queue.recv_timeout(shared.idle_timeout) {
            Ok(job) => {
                duty.took_job();
                serve(job, state, &seat);
                // Idle again before the place is given back: a connection admitted
                // into that place finds this worker instead of starting another.
                duty.back_to_idle();
                state.release();
                // Full means a ring is already pending: the acceptor will look anyway.
                let _ = state.freed.try_send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                if duty.retire() {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::server::registry::Registry;
    use crate::server::report::Stats;
    use crate::server::{Connection, Handler, Received};
    use crate::shutdown::Shutdown;

    /// Answers one line with `ok`, or panics when the line is `boom`.
    struct OneShot;

    impl Handler for OneShot {
        fn handle(&self, conn: &mut Connection) -> std::io::Result<()> {
            let mut buf = [0u8; 64];
            match conn.read_request(&mut buf)? {
                Received::Data(n) if buf[..n].starts_with(b"boom") => panic!("on request"),
                Received::Data(_) => conn.write_all(b"ok\n"),
                _ => Ok(()),
            }
        }

        fn busy_reply(&self) -> &[u8] {
            b"busy\n"
        }
    }

    /// The state, and the bell a worker rings each time it has finished a connection.
    fn shared_state() -> (Arc<ServerState>, Receiver<()>) {
        let (freed, rung) = crossbeam_channel::bounded(1);
        let state = Arc::new(ServerState {
            handler: Arc::new(OneShot),
            stats: Arc::new(Stats::default()),
            serving: AtomicUsize::new(0),
            admitted: AtomicUsize::new(0),
            spin_cores: 0,
            registry: Registry::new(Duration::ZERO),
            tick: Duration::from_millis(50),
            write_timeout: Duration::from_secs(60),
            linger: Duration::from_millis(200),
            draining: Shutdown::new(),
            app: Shutdown::new(),
            freed,
        });
        (state, rung)
    }

    fn config(limit: usize, idle_timeout: Duration) -> PoolConfig {
        PoolConfig {
            limit,
            stack_size: None,
            idle_timeout,
        }
    }

    /// A client connected to a job the pool can serve.
    fn job(listener: &TcpListener) -> (TcpStream, Job) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let handle = stream.try_clone().ok();
        (
            client,
            Job {
                stream,
                peer,
                handle,
            },
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    fn live(pool: &Pool) -> usize {
        pool.shared.counts().live
    }

    #[test]
    fn a_fresh_pool_has_no_thread_and_starts_one_per_connection_up_to_its_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (state, _freed) = shared_state();
        let (mut pool, mut workers) =
            Pool::new(Arc::clone(&state), config(2, Duration::from_secs(60)));
        assert_eq!((live(&pool), pool.workers.len()), (0, 0));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, job) = job(&listener);
            pool.submit(job).unwrap();
            clients.push(client);
        }
        // Nobody has sent a line: the first two hold a worker each, the third waits.
        assert_eq!(live(&pool), 2, "no more than the limit");
        assert_eq!(pool.workers.len(), 2);
        for client in &mut clients {
            client.write_all(b"hello\n").unwrap();
        }
        for client in &mut clients {
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).unwrap();
            assert_eq!(reply, b"ok\n");
        }
        drop(pool);
        let never = crossbeam_channel::never();
        assert_eq!(workers.join_until(soon(), &never), JoinEnd::AllExited);
        assert!(workers.detach().is_empty());
    }

    #[test]
    fn an_idle_worker_serves_the_next_connection_instead_of_a_new_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (state, freed) = shared_state();
        let (mut pool, _workers) =
            Pool::new(Arc::clone(&state), config(8, Duration::from_secs(60)));
        for _ in 0..3 {
            let (mut client, job) = job(&listener);
            pool.submit(job).unwrap();
            client.write_all(b"hello\n").unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).unwrap();
            assert_eq!(reply, b"ok\n");
            drop(client);
            // The worker is back at the queue before it rings.
            freed
                .recv_deadline(soon())
                .expect("the worker finished the connection");
            assert_eq!(pool.shared.counts().idle, 1);
        }
        assert_eq!(live(&pool), 1);
        assert_eq!(pool.workers.len(), 1);
    }

    #[test]
    fn a_worker_idle_for_its_timeout_ends_and_the_next_connection_starts_another() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (state, _freed) = shared_state();
        let (mut pool, _workers) =
            Pool::new(Arc::clone(&state), config(4, Duration::from_millis(20)));
        let (mut client, first) = job(&listener);
        pool.submit(first).unwrap();
        client.write_all(b"hello\n").unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        // The pool is still open: its only worker ends on its own.
        let never = crossbeam_channel::never();
        assert_eq!(pool.workers.join_until(soon(), &never), JoinEnd::AllExited);
        assert_eq!(live(&pool), 0);
        // Its thread is forgotten, so the pool stays as small as the workers alive.
        pool.tidy();
        assert_eq!(pool.workers.len(), 0);
        let (mut client, second) = job(&listener);
        pool.submit(second).unwrap();
        assert_eq!(live(&pool), 1);
        client.write_all(b"again\n").unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"ok\n");
    }

    #[test]
    fn a_worker_outlives_a_panic_and_ends_when_the_pool_is_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (state, _freed) = shared_state();
        let (mut pool, mut workers) =
            Pool::new(Arc::clone(&state), config(1, Duration::from_secs(60)));
        let (mut first, first_job) = job(&listener);
        let (mut second, second_job) = job(&listener);
        first.write_all(b"boom\n").unwrap();
        second.write_all(b"hello\n").unwrap();
        pool.submit(first_job).unwrap();
        pool.submit(second_job).unwrap();
        drop(pool);
        let never = crossbeam_channel::never();
        assert_eq!(workers.join_until(soon(), &never), JoinEnd::AllExited);
        let mut reply = Vec::new();
        second.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"ok\n", "the worker outlived the panic");
        assert_eq!(state.stats.panics.load(Ordering::Relaxed), 1);
        assert_eq!(state.serving.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn after_a_force_queued_connections_are_closed_and_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (state, _freed) = shared_state();
        state.draining.force();
        let (mut pool, mut workers) =
            Pool::new(Arc::clone(&state), config(1, Duration::from_secs(60)));
        let (mut client, queued) = job(&listener);
        pool.submit(queued).unwrap();
        drop(pool);
        let never = crossbeam_channel::never();
        assert_eq!(workers.join_until(soon(), &never), JoinEnd::AllExited);
        let mut reply = Vec::new();
        let _ = client.read_to_end(&mut reply);
        assert!(reply.is_empty(), "a forced connection is not served");
        assert_eq!(state.stats.forced.load(Ordering::Relaxed), 1);
    }
}
