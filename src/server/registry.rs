//! Which worker holds which connection, and whether it is waiting between requests —
//! so draining can reach idle connections at once instead of a tick later.
//!
//! A worker blocked in `read` on a quiet client cannot be woken without touching the
//! socket, and waking every idle worker once per tick to look at the shutdown flag is
//! what makes an idle thread pool burn CPU. Instead, each worker publishes its
//! connection here, and marks it *idle* while it waits for the next request. When
//! draining starts, [`Registry::dismiss_idle`] writes the protocol's goodbye to every
//! idle connection and shuts down its write side, under the same lock the worker
//! takes before it answers anything: a goodbye can never land inside a reply. The
//! worker stays blocked in its read and wakes when the client, having read the
//! goodbye and EOF, closes — or when a line that crossed the goodbye arrives, which it
//! then discards. [`Registry::force_close`] shuts every registered socket down both
//! ways, which wakes a worker blocked in any read or write immediately.

use std::io::{self, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a dismissal may wait to write a goodbye into a socket whose send buffer
/// is full (a client that does not read); past it the worker says goodbye itself.
const DISMISS_WRITE_TIMEOUT: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// No connection, or the worker is in the middle of a request.
    Busy,
    /// The worker is blocked waiting for the next request.
    Idle,
    /// The goodbye was sent on the worker's behalf while it waited.
    Dismissed,
}

#[derive(Debug)]
struct Slot {
    stream: Option<TcpStream>,
    state: State,
}

/// One slot per worker.
#[derive(Debug)]
pub(crate) struct Registry {
    slots: Vec<Mutex<Slot>>,
}

/// A worker's hold on its slot while it serves one connection.
#[derive(Debug)]
pub(crate) struct SlotGuard<'a> {
    slot: &'a Mutex<Slot>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A panic while holding the lock leaves the slot's fields valid: carry on.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    pub(crate) fn new(workers: usize) -> Registry {
        Registry {
            slots: (0..workers)
                .map(|_| {
                    Mutex::new(Slot {
                        stream: None,
                        state: State::Busy,
                    })
                })
                .collect(),
        }
    }

    /// Publishes `stream` (a clone of the worker's) in worker `index`'s slot.
    pub(crate) fn attach(&self, index: usize, stream: TcpStream) -> Option<SlotGuard<'_>> {
        let slot = self.slots.get(index)?;
        let mut guard = lock(slot);
        guard.stream = Some(stream);
        guard.state = State::Busy;
        Some(SlotGuard { slot })
    }

    /// Says goodbye to every connection whose worker waits between requests. Call
    /// after the draining flag is set: workers check it under the slot lock, so each
    /// connection is dismissed here or notices draining itself, never neither.
    pub(crate) fn dismiss_idle(&self, goodbye: &[u8]) -> usize {
        let mut dismissed = 0;
        for slot in &self.slots {
            let mut guard = lock(slot);
            if guard.state != State::Idle {
                continue;
            }
            let Some(stream) = guard.stream.as_ref() else {
                continue;
            };
            if !nothing_pending(stream) {
                // A request (or the client's EOF) already sits in the receive buffer:
                // the worker is about to wake for it, and it is owed an answer before
                // any goodbye. The worker sees the drain flag once it has answered.
                continue;
            }
            if say_goodbye(stream, goodbye).is_ok() {
                guard.state = State::Dismissed;
                dismissed += 1;
            }
        }
        dismissed
    }

    /// Ends the linger of dismissed connections whose client has not closed: their
    /// workers sleep in a read without a tick, so the linger bound must come from
    /// here. Shutting down the read side wakes that read with EOF.
    pub(crate) fn release_dismissed(&self) {
        for slot in &self.slots {
            let guard = lock(slot);
            if guard.state == State::Dismissed {
                if let Some(stream) = guard.stream.as_ref() {
                    let _ = stream.shutdown(Direction::Read);
                }
            }
        }
    }

    /// Shuts down every registered socket both ways: blocked reads return EOF,
    /// blocked writes fail, and every worker sees the force at once.
    pub(crate) fn force_close(&self) {
        for slot in &self.slots {
            if let Some(stream) = lock(slot).stream.as_ref() {
                let _ = stream.shutdown(Direction::Both);
            }
        }
    }
}

/// True if the receive buffer is empty right now. The peek must not block, and std
/// offers no per-call flag, so the socket is nonblocking for the duration; the
/// worker's read, if it starts meanwhile, returns `WouldBlock`, which it treats as a
/// quiet tick.
fn nothing_pending(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let empty = matches!(
        stream.peek(&mut [0u8; 1]),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock
    );
    // If this fails the worker's reads return `WouldBlock` as quiet ticks until the
    // drain reaches it another way: degraded, not broken.
    let _ = stream.set_nonblocking(false);
    empty
}

/// Writes `goodbye` only if the socket takes it at once, then sends FIN. The write
/// timeout is the socket's own (shared with the worker's handle), so it is restored
/// before returning; the worker is blocked in a read meanwhile and never writes.
fn say_goodbye(stream: &TcpStream, goodbye: &[u8]) -> io::Result<()> {
    let usual = stream.write_timeout()?;
    stream.set_write_timeout(Some(DISMISS_WRITE_TIMEOUT))?;
    let mut written = 0;
    let mut result = Ok(());
    while written < goodbye.len() {
        match (&*stream).write(&goodbye[written..]) {
            Ok(0) => {
                result = Err(io::ErrorKind::WriteZero.into());
                break;
            }
            Ok(n) => {
                written += n;
                // Part of it is out: the rest must follow, even at the usual pace.
                stream.set_write_timeout(usual)?;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if written > 0 && err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                result = Err(err);
                break;
            }
        }
    }
    stream.set_write_timeout(usual)?;
    result?;
    stream.shutdown(Direction::Write)
}

impl SlotGuard<'_> {
    /// Marks the worker idle before it blocks waiting for a request, unless draining
    /// has begun (then it must say goodbye itself) or it was dismissed already.
    /// Returns the state the worker must act on.
    pub(crate) fn enter_idle(&self, draining: bool) -> State {
        let mut guard = lock(self.slot);
        match guard.state {
            State::Dismissed => State::Dismissed,
            _ if draining => State::Busy,
            _ => {
                guard.state = State::Idle;
                State::Idle
            }
        }
    }

    /// Marks the worker busy after its wait; tells whether it was dismissed meanwhile.
    pub(crate) fn leave_idle(&self) -> State {
        let mut guard = lock(self.slot);
        if guard.state == State::Idle {
            guard.state = State::Busy;
        }
        guard.state
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut guard = lock(self.slot);
        guard.stream = None;
        guard.state = State::Busy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair on loopback: (server side, client side).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn an_idle_connection_is_told_goodbye_then_eof() {
        let registry = Registry::new(1);
        let (server, mut client) = pair();
        let slot = registry.attach(0, server.try_clone().unwrap()).unwrap();
        assert_eq!(slot.enter_idle(false), State::Idle);
        assert_eq!(registry.dismiss_idle(b"bye\r\n"), 1);
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, b"bye\r\n");
        assert_eq!(slot.leave_idle(), State::Dismissed);
        assert_eq!(slot.enter_idle(false), State::Dismissed);
    }

    #[test]
    fn a_busy_connection_is_left_to_its_worker() {
        let registry = Registry::new(1);
        let (server, _client) = pair();
        let slot = registry.attach(0, server.try_clone().unwrap()).unwrap();
        assert_eq!(registry.dismiss_idle(b"bye\r\n"), 0);
        // Draining has begun: the worker must say goodbye itself.
        assert_eq!(slot.enter_idle(true), State::Busy);
    }

    #[test]
    fn a_request_already_in_the_buffer_is_not_talked_over() {
        let registry = Registry::new(1);
        let (server, mut client) = pair();
        let slot = registry.attach(0, server.try_clone().unwrap()).unwrap();
        assert_eq!(slot.enter_idle(false), State::Idle);
        client.write_all(b"request\n").unwrap();
        // Wait until the bytes are in the server's receive buffer.
        let mut peeked = [0u8; 8];
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(server.peek(&mut peeked).unwrap(), 8);
        assert_eq!(registry.dismiss_idle(b"bye\r\n"), 0);
        assert_eq!(slot.leave_idle(), State::Busy);
        // The peek left the socket blocking for the worker: after the request, a read
        // waits out its timeout instead of failing at once.
        let mut reader = &server;
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), 8);
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let started = std::time::Instant::now();
        assert!(reader.read(&mut buf).is_err());
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn force_close_wakes_a_blocked_read() {
        let registry = Registry::new(1);
        let (server, _client) = pair();
        let _slot = registry.attach(0, server.try_clone().unwrap()).unwrap();
        let (woke_tx, woke_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            server.set_read_timeout(None).unwrap();
            let mut buf = [0u8; 16];
            let _ = woke_tx.send((&server).read(&mut buf).ok());
        });
        registry.force_close();
        let read = woke_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocked read returns once the socket is shut down");
        assert_eq!(read, Some(0), "EOF after the force");
    }

    #[test]
    fn a_released_slot_is_empty() {
        let registry = Registry::new(1);
        let (server, _client) = pair();
        drop(registry.attach(0, server).unwrap());
        assert_eq!(registry.dismiss_idle(b"bye\r\n"), 0);
        assert!(
            registry.attach(1, pair().0).is_none(),
            "no slot 1 in a pool of 1"
        );
    }
}
