//! The fixed pool of workers: each takes accepted connections from the queue and
//! serves one at a time, isolating handler panics.
//!
//! A worker's life is the queue's: when the acceptor drops the queue's sender, each
//! worker finishes what is queued and its `for` loop ends — the Rust Book's pool
//! shape, with the crate's deadline-bounded join around it. The workers are not on
//! their own, though: they share the [`ServerState`] with the acceptor, giving back
//! each admitted place and ringing its `freed` bell as a connection closes.

use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::connection::{Connection, Spin, Timeouts};
use super::report::Stats;
use super::state::ServerState;
use crate::threads::panic_message;

/// An accepted connection waiting for a worker.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// A second handle on the socket, for the registry (dismissal, force-close).
    /// The acceptor takes it, waiting for a descriptor if need be, so that running
    /// out of them never leaves a connection out of the registry (see `acceptor`);
    /// `None` only if it could not be had at all.
    pub(crate) handle: Option<TcpStream>,
}

impl Job {
    /// A job without a registry handle yet.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr) -> Job {
        Job {
            stream,
            peer,
            handle: None,
        }
    }
}

struct Serving<'a>(&'a AtomicUsize);

impl<'a> Serving<'a> {
    fn start(counter: &'a AtomicUsize) -> Serving<'a> {
        counter.fetch_add(1, Ordering::SeqCst);
        Serving(counter)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A worker's whole life: serve until the queue is closed and empty.
pub(crate) fn work(index: usize, jobs: Receiver<Job>, state: Arc<ServerState>) {
    for job in jobs.iter() {
        serve(index, job, &state);
        state.release();
        // Full means a ring is already pending: the acceptor will look anyway.
        let _ = state.freed.try_send(());
    }
}

fn serve(index: usize, job: Job, state: &ServerState) {
    let Job {
        stream,
        peer,
        handle,
    } = job;
    let _serving = Serving::start(&state.serving);
    if state.is_forced() {
        // Queued but never started before the force: closing it is all that is left.
        Stats::bump(&state.stats.forced);
        return;
    }
    // Without a registered handle the connection is still served, only not dismissed
    // early: it notices draining at its next tick instead.
    let slot = handle.and_then(|handle| state.registry.attach(index, handle));
    let mut conn = match Connection::new(
        stream,
        peer,
        Timeouts {
            tick: state.tick,
            write: state.write_timeout,
        },
        state.draining.clone(),
        state.app.clone(),
        slot,
        Some(Spin {
            serving: &state.serving,
            cores: state.spin_cores,
        }),
    ) {
        Ok(conn) => conn,
        // Setting socket options takes no descriptor, so running out of them (which
        // only costs the registered clone above) cannot land here.
        Err(err) => {
            log::debug!("{peer}: cannot set up the connection: {err}");
            return;
        }
    };
    conn.set_goodbye(state.handler.goodbye());
    // AssertUnwindSafe is sound here: after a panic the connection is dropped
    // unused, and the handler's shared state is only reachable through `&self`,
    // which a `Handler` must keep consistent across panics like any `Sync` type
    // shared between threads (a poisoned lock is the usual signal).
    let result = panic::catch_unwind(AssertUnwindSafe(|| state.handler.handle(&mut conn)));
    if conn.gave_up() && result.is_ok() {
        // The client stopped reading: no graceful close, which would only wait for a
        // client that does not listen. Dropping the socket with the client's unread
        // lines still in our receive buffer sends a reset, which also discards what
        // the client has not read — it was not reading.
        Stats::bump(&state.stats.write_timeouts);
        log::debug!(
            "{peer}: given up: it read nothing for {:?}",
            state.write_timeout
        );
        return;
    }
    match result {
        Ok(Ok(())) => {
            let graceful = conn.close_gracefully(state.linger).is_ok();
            if state.is_forced() {
                Stats::bump(&state.stats.forced);
            } else if graceful && state.draining.is_triggered() {
                Stats::bump(&state.stats.drained);
            }
        }
        Ok(Err(err)) => {
            if state.is_forced() {
                Stats::bump(&state.stats.forced);
            } else {
                log::debug!("{peer}: connection ended with an error: {err}");
            }
        }
        Err(payload) => {
            Stats::bump(&state.stats.panics);
            log::error!(
                "handler panicked serving {peer}: {}; connection closed, worker continues",
                panic_message(payload.as_ref())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::server::registry::Registry;
    use crate::server::{Handler, Received};
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

    fn shared_state() -> Arc<ServerState> {
        Arc::new(ServerState {
            handler: Arc::new(OneShot),
            stats: Arc::new(Stats::default()),
            serving: AtomicUsize::new(0),
            admitted: AtomicUsize::new(0),
            spin_cores: 0,
            registry: Registry::new(1, Duration::ZERO),
            tick: Duration::from_millis(50),
            write_timeout: Duration::from_secs(60),
            linger: Duration::from_millis(200),
            draining: Shutdown::new(),
            app: Shutdown::new(),
            freed: crossbeam_channel::bounded(1).0,
        })
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

    #[test]
    fn a_worker_serves_the_queue_then_ends_when_it_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let state = shared_state();
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(4);
        let (mut first, first_job) = job(&listener);
        let (mut second, second_job) = job(&listener);
        jobs_tx.send(first_job).unwrap();
        jobs_tx.send(second_job).unwrap();
        drop(jobs_tx);
        first.write_all(b"boom\n").unwrap();
        second.write_all(b"hello\n").unwrap();
        // Runs on this thread: it returns only once the queue is closed and empty.
        work(0, jobs_rx, Arc::clone(&state));
        let mut reply = Vec::new();
        second.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"ok\n", "the worker outlived the panic");
        assert_eq!(state.stats.panics.load(Ordering::Relaxed), 1);
        assert_eq!(state.serving.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn after_a_force_queued_connections_are_closed_and_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let state = shared_state();
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(4);
        let (mut client, queued) = job(&listener);
        jobs_tx.send(queued).unwrap();
        drop(jobs_tx);
        state.draining.force();
        work(0, jobs_rx, Arc::clone(&state));
        let mut reply = Vec::new();
        let _ = client.read_to_end(&mut reply);
        assert!(reply.is_empty(), "a forced connection is not served");
        assert_eq!(state.stats.forced.load(Ordering::Relaxed), 1);
    }
}
