//! Which worker holds which connection, and whether it is waiting between requests —
//! so draining can reach idle connections at once instead of a tick later.
//!
//! Each worker takes a [`Seat`] here for its life and gives it back when its thread
//! ends, so the registry holds the workers alive, not `--workers` of them.
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
//!
//! **Keep-alive grace**. A client whose last response has just gone out
//! is, more often than not, already sending its next request: closing its connection
//! the instant draining begins turns that request into a bare EOF. So an idle slot
//! remembers when its connection last wrote, and a dismissal leaves it alone until
//! the handler's grace has passed since then; [`Dismissal::next`] says when the
//! first one left alone runs out, and the server's join loop dismisses again at that
//! instant (the acceptor's pass, as draining begins, needs no join running; the
//! graces and lingers do). A request that arrives meanwhile wakes the worker, which answers it as
//! the last one (`Connection: close`). The set of slots in grace only shrinks once
//! draining has begun — a worker never marks itself idle after that — so the
//! re-dismissals end within one grace. Each dismissal is stamped, so the linger of a
//! connection dismissed late is counted from its own dismissal
//! ([`Registry::release_dismissed`]).
//!
//! (Over 400 lines: half of it is the tests, one per timing the drain relies on.)

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a dismissal may wait to write a goodbye into a socket whose send buffer
/// is full (a client that does not read); past it the worker says goodbye itself.
const DISMISS_WRITE_TIMEOUT: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum State {
    /// No connection, or the worker is in the middle of a request.
    #[default]
    Busy,
    /// The worker is blocked waiting for the next request.
    Idle,
    /// The goodbye was sent on the worker's behalf while it waited.
    Dismissed,
}

#[derive(Debug, Default)]
struct Slot {
    stream: Option<TcpStream>,
    state: State,
    /// When the connection last wrote (its last reply), while idle; `None` for one
    /// that has not answered anything yet, which gets no grace.
    replied_at: Option<Instant>,
    /// When it was dismissed, until its linger is released.
    dismissed_at: Option<Instant>,
    /// The worker holds a connection whose end it has not counted yet
    /// ([`Seat::hold`] to [`Seat::finish`]); it outlives the stream's registration.
    holding: bool,
    /// The server gave up on that connection and counted it as forced
    /// ([`Registry::claim_held`]): the worker must not count it again.
    claimed: bool,
}

impl Slot {
    /// Forgets the connection's stream and idle state, keeping who counts its end.
    fn clear(&mut self) {
        *self = Slot {
            holding: self.holding,
            claimed: self.claimed,
            ..Slot::default()
        };
    }
}

/// The seats of the workers alive.
#[derive(Debug)]
pub(crate) struct Registry {
    /// Only locked to take or give back a seat and to list them: each pass works on
    /// a copy of the list, so a pass that writes goodbyes never holds up a worker
    /// starting or ending.
    seats: Mutex<Seats>,
    /// The handler's keep-alive grace.
    grace: Duration,
}

/// The seats taken, by number: given back one by one in constant time, since a
/// pool closing with a thousand idle workers gives back a thousand at once.
#[derive(Debug, Default)]
struct Seats {
    next: u64,
    taken: HashMap<u64, Arc<Mutex<Slot>>>,
}

/// A worker's place in the registry, from its start to its end.
#[derive(Debug)]
pub(crate) struct Seat<'a> {
    registry: &'a Registry,
    number: u64,
    slot: Arc<Mutex<Slot>>,
}

/// What one pass of [`Registry::dismiss_idle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dismissal {
    /// Connections told goodbye by this pass.
    pub(crate) dismissed: usize,
    /// The earliest instant an idle connection left alone for its grace runs out of
    /// it: pass again then. `None` when none is left in grace.
    pub(crate) next: Option<Instant>,
}

/// A worker's hold on its slot while it serves one connection.
#[derive(Debug)]
pub(crate) struct SlotGuard<'a> {
    slot: &'a Mutex<Slot>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the fields valid: carry on.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Registry {
    /// An empty registry; idle connections that replied less than `grace` ago are
    /// left alone by dismissals until the grace has passed.
    pub(crate) fn new(grace: Duration) -> Registry {
        Registry {
            seats: Mutex::new(Seats::default()),
            grace,
        }
    }

    /// A seat for a worker starting, given back when the seat is dropped.
    pub(crate) fn seat(&self) -> Seat<'_> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let mut seats = lock(&self.seats);
        let number = seats.next;
        seats.next += 1;
        seats.taken.insert(number, Arc::clone(&slot));
        Seat {
            registry: self,
            number,
            slot,
        }
    }

    /// The seats taken now.
    fn slots(&self) -> Vec<Arc<Mutex<Slot>>> {
        lock(&self.seats).taken.values().cloned().collect()
    }

    /// Counts as forced every connection a worker still holds and has not counted,
    /// and keeps the worker from counting it when (if) it ends: the server is giving
    /// up on those workers (a handler stuck past the drain deadline), and its report
    /// must say what became of their clients, who were force-closed.
    pub(crate) fn claim_held(&self) -> u64 {
        let mut claimed = 0;
        for slot in self.slots() {
            let mut guard = lock(&slot);
            if guard.holding && !guard.claimed {
                guard.claimed = true;
                claimed += 1;
            }
        }
        claimed
    }

    /// Says goodbye to every connection whose worker waits between requests, except
    /// those still within their grace at `now`. Call after the draining flag is set:
    /// workers check it under the slot lock, so each connection is dismissed here or
    /// notices draining itself, never neither. Calling it again is harmless.
    pub(crate) fn dismiss_idle(&self, goodbye: &[u8], now: Instant) -> Dismissal {
        let mut pass = Dismissal::default();
        for slot in self.slots() {
            let mut guard = lock(&slot);
            if guard.state != State::Idle {
                continue;
            }
            let grace_end = guard
                .replied_at
                .and_then(|at| at.checked_add(self.grace))
                .filter(|end| *end > now);
            if let Some(end) = grace_end {
                pass.next = earliest(pass.next, end);
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
                guard.dismissed_at = Some(now);
                pass.dismissed += 1;
            }
        }
        pass
    }

    /// Ends the linger of connections dismissed `linger` or more before `now` whose
    /// client has not closed: their workers sleep in a read without a tick, so the
    /// linger bound must come from here. Shutting down the read side wakes that read
    /// with EOF. Returns when the next linger still running ends, to pass again then.
    pub(crate) fn release_dismissed(&self, now: Instant, linger: Duration) -> Option<Instant> {
        let mut next = None;
        for slot in self.slots() {
            let mut guard = lock(&slot);
            if guard.state != State::Dismissed {
                continue;
            }
            let Some(due) = guard.dismissed_at.and_then(|at| at.checked_add(linger)) else {
                continue;
            };
            if due > now {
                next = earliest(next, due);
            } else if let Some(stream) = guard.stream.as_ref() {
                let _ = stream.shutdown(Direction::Read);
                guard.dismissed_at = None;
            }
        }
        next
    }

    /// Shuts down every registered socket both ways: blocked reads return EOF,
    /// blocked writes fail, and every worker sees the force at once.
    pub(crate) fn force_close(&self) {
        for slot in self.slots() {
            if let Some(stream) = lock(&slot).stream.as_ref() {
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

impl Seat<'_> {
    /// The worker has taken a connection: its end is the worker's to count, unless
    /// the server claims it first.
    pub(crate) fn hold(&self) {
        let mut guard = lock(&self.slot);
        guard.holding = true;
        guard.claimed = false;
    }

    /// Publishes `stream` (a clone of the worker's connection) for dismissal and
    /// force-close, until the guard is dropped.
    pub(crate) fn attach(&self, stream: TcpStream) -> SlotGuard<'_> {
        let mut guard = lock(&self.slot);
        guard.clear();
        guard.stream = Some(stream);
        SlotGuard { slot: &self.slot }
    }

    /// The connection taken with [`Seat::hold`] has ended: `count` its end, under the
    /// seat's lock so that it is counted exactly once, by the worker here or by
    /// [`Registry::claim_held`] before it.
    pub(crate) fn finish(&self, count: impl FnOnce()) {
        let mut guard = lock(&self.slot);
        if guard.holding && !guard.claimed {
            count();
        }
        guard.holding = false;
        guard.claimed = false;
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        lock(&self.registry.seats).taken.remove(&self.number);
    }
}

impl SlotGuard<'_> {
    /// Marks the worker idle before it blocks waiting for a request, unless draining
    /// has begun (then it must say goodbye itself) or it was dismissed already.
    /// `replied_at` is when the connection last wrote, if it has: its grace counts
    /// from there. Returns the state the worker must act on.
    pub(crate) fn enter_idle(&self, draining: bool, replied_at: Option<Instant>) -> State {
        let mut guard = lock(self.slot);
        match guard.state {
            State::Dismissed => State::Dismissed,
            _ if draining => State::Busy,
            _ => {
                guard.state = State::Idle;
                guard.replied_at = replied_at;
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
        lock(self.slot).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use crate::server::close::tests::pair;

    #[test]
    fn an_idle_connection_is_told_goodbye_then_eof() {
        let registry = Registry::new(Duration::ZERO);
        let (server, mut client) = pair();
        let seat = registry.seat();
        let slot = seat.attach(server.try_clone().unwrap());
        // Without a grace, even a reply that has just gone out does not delay it.
        assert_eq!(slot.enter_idle(false, Some(Instant::now())), State::Idle);
        assert_eq!(
            registry.dismiss_idle(b"bye\r\n", Instant::now()).dismissed,
            1
        );
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, b"bye\r\n");
        assert_eq!(slot.leave_idle(), State::Dismissed);
        assert_eq!(slot.enter_idle(false, None), State::Dismissed);
    }

    #[test]
    fn a_busy_connection_is_left_to_its_worker() {
        let registry = Registry::new(Duration::ZERO);
        let (server, _client) = pair();
        let seat = registry.seat();
        let slot = seat.attach(server.try_clone().unwrap());
        assert_eq!(
            registry.dismiss_idle(b"bye\r\n", Instant::now()).dismissed,
            0
        );
        // Draining has begun: the worker must say goodbye itself.
        assert_eq!(slot.enter_idle(true, None), State::Busy);
    }

    #[test]
    fn a_request_already_in_the_buffer_is_not_talked_over() {
        let registry = Registry::new(Duration::ZERO);
        let (server, mut client) = pair();
        let seat = registry.seat();
        let slot = seat.attach(server.try_clone().unwrap());
        assert_eq!(slot.enter_idle(false, None), State::Idle);
        client.write_all(b"request\n").unwrap();
        // Wait until the bytes are in the server's receive buffer.
        let mut peeked = [0u8; 8];
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(server.peek(&mut peeked).unwrap(), 8);
        assert_eq!(
            registry.dismiss_idle(b"bye\r\n", Instant::now()).dismissed,
            0
        );
        assert_eq!(slot.leave_idle(), State::Busy);
        // The peek left the socket blocking for the worker: after the request, a read
        // waits out its timeout instead of failing at once.
        let mut reader = &server;
        let mut buf = [0u8; 64];
        assert_eq!(reader.read(&mut buf).unwrap(), 8);
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let started = Instant::now();
        assert!(reader.read(&mut buf).is_err());
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn force_close_wakes_a_blocked_read() {
        let registry = Registry::new(Duration::ZERO);
        let (server, _client) = pair();
        let seat = registry.seat();
        let _slot = seat.attach(server.try_clone().unwrap());
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

    /// True if the socket has nothing to read and is not at EOF: no goodbye yet.
    fn quiet(stream: &TcpStream) -> bool {
        stream.set_nonblocking(true).unwrap();
        let result = (&*stream).read(&mut [0u8; 16]);
        stream.set_nonblocking(false).unwrap();
        matches!(result, Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    #[test]
    fn a_connection_within_its_grace_is_dismissed_when_the_grace_ends() {
        let grace = Duration::from_millis(200);
        let registry = Registry::new(grace);
        let (server, mut client) = pair();
        let seat = registry.seat();
        let slot = seat.attach(server.try_clone().unwrap());
        let replied = Instant::now();
        assert_eq!(slot.enter_idle(false, Some(replied)), State::Idle);

        let early = registry.dismiss_idle(b"bye\r\n", replied + grace / 4);
        assert_eq!(early.dismissed, 0, "still within its grace");
        assert_eq!(early.next, Some(replied + grace), "pass again when it ends");
        assert!(quiet(&client), "nothing sent to it yet");

        let on_time = registry.dismiss_idle(b"bye\r\n", replied + grace);
        assert_eq!(
            on_time,
            Dismissal {
                dismissed: 1,
                next: None
            }
        );
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).unwrap();
        assert_eq!(seen, b"bye\r\n");
        assert_eq!(slot.leave_idle(), State::Dismissed);
    }

    #[test]
    fn a_request_within_the_grace_leaves_the_connection_to_its_worker() {
        let grace = Duration::from_millis(200);
        let registry = Registry::new(grace);
        let (server, client) = pair();
        let seat = registry.seat();
        let slot = seat.attach(server.try_clone().unwrap());
        let replied = Instant::now();
        assert_eq!(slot.enter_idle(false, Some(replied)), State::Idle);
        assert_eq!(registry.dismiss_idle(b"", replied).dismissed, 0);
        // The request wakes the worker, which answers it instead of being dismissed.
        assert_eq!(slot.leave_idle(), State::Busy);
        let pass = registry.dismiss_idle(b"", replied + grace);
        assert_eq!(pass, Dismissal::default(), "a busy worker is not dismissed");
        // Draining has begun: it does not go idle again, it says goodbye itself.
        assert_eq!(slot.enter_idle(true, Some(Instant::now())), State::Busy);
        assert!(quiet(&client));
    }

    #[test]
    fn a_connection_that_never_replied_gets_no_grace() {
        let registry = Registry::new(Duration::from_secs(3600));
        let (server, mut client) = pair();
        let seat = registry.seat();
        let slot = seat.attach(server.try_clone().unwrap());
        assert_eq!(slot.enter_idle(false, None), State::Idle);
        let pass = registry.dismiss_idle(b"", Instant::now());
        assert_eq!(pass.dismissed, 1);
        assert_eq!(pass.next, None);
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).unwrap();
        assert!(seen.is_empty(), "an empty goodbye is just the close");
    }

    #[test]
    fn the_next_pass_is_due_at_the_earliest_grace_end() {
        let grace = Duration::from_millis(100);
        let registry = Registry::new(grace);
        let ((first, _c1), (second, _c2)) = (pair(), pair());
        let first_seat = registry.seat();
        let first = first_seat.attach(first);
        let second_seat = registry.seat();
        let second = second_seat.attach(second);
        let now = Instant::now();
        let later = now + Duration::from_millis(30);
        assert_eq!(first.enter_idle(false, Some(later)), State::Idle);
        assert_eq!(second.enter_idle(false, Some(now)), State::Idle);
        assert_eq!(registry.dismiss_idle(b"", now).next, Some(now + grace));
        let pass = registry.dismiss_idle(b"", now + grace);
        assert_eq!(pass.dismissed, 1);
        assert_eq!(pass.next, Some(later + grace));
        assert_eq!(registry.dismiss_idle(b"", later + grace).dismissed, 1);
        assert_eq!(first.leave_idle(), State::Dismissed);
        assert_eq!(second.leave_idle(), State::Dismissed);
    }

    #[test]
    fn each_linger_counts_from_its_own_dismissal() {
        let (grace, linger) = (Duration::from_millis(100), Duration::from_millis(300));
        let registry = Registry::new(grace);
        let ((early, _c1), (late, _c2)) = (pair(), pair());
        let early_seat = registry.seat();
        let early_slot = early_seat.attach(early.try_clone().unwrap());
        let late_seat = registry.seat();
        let late_slot = late_seat.attach(late.try_clone().unwrap());
        let start = Instant::now();
        assert_eq!(early_slot.enter_idle(false, None), State::Idle);
        assert_eq!(late_slot.enter_idle(false, Some(start)), State::Idle);
        assert_eq!(registry.dismiss_idle(b"", start).dismissed, 1);
        assert_eq!(registry.dismiss_idle(b"", start + grace).dismissed, 1);

        assert_eq!(
            registry.release_dismissed(start + linger / 2, linger),
            Some(start + linger),
            "nothing due yet: the first release is at the early one's linger end"
        );
        assert!(quiet(&early) && quiet(&late));
        let next = registry.release_dismissed(start + linger, linger);
        assert_eq!(
            next,
            Some(start + grace + linger),
            "the late one's linger runs on"
        );
        assert_eq!((&early).read(&mut [0u8; 16]).unwrap(), 0, "released: EOF");
        assert!(quiet(&late), "not released yet");
        assert_eq!(
            registry.release_dismissed(start + grace + linger, linger),
            None
        );
        assert_eq!((&late).read(&mut [0u8; 16]).unwrap(), 0, "released: EOF");
    }

    #[test]
    fn a_released_slot_is_empty_and_a_seat_given_back_is_gone() {
        let registry = Registry::new(Duration::ZERO);
        let seat = registry.seat();
        let (server, _client) = pair();
        let slot = seat.attach(server.try_clone().unwrap());
        assert_eq!(slot.enter_idle(false, None), State::Idle);
        drop(slot);
        assert_eq!(
            registry.dismiss_idle(b"bye\r\n", Instant::now()).dismissed,
            0
        );
        assert_eq!(registry.slots().len(), 1);
        drop(seat);
        assert!(
            registry.slots().is_empty(),
            "the registry holds the workers alive"
        );
    }

    #[test]
    fn a_held_connection_is_counted_once_by_its_worker_or_by_the_claim() {
        let registry = Registry::new(Duration::ZERO);
        let seat = registry.seat();
        let mut counted = 0;
        seat.hold();
        seat.finish(|| counted += 1);
        assert_eq!(registry.claim_held(), 0, "ended and counted by its worker");
        seat.hold();
        // Claimed while the stream is registered or after: the hold is what counts.
        drop(seat.attach(pair().0));
        assert_eq!(registry.claim_held(), 1);
        assert_eq!(registry.claim_held(), 0, "claimed once");
        seat.finish(|| counted += 1);
        assert_eq!(
            counted, 1,
            "the worker does not count what the claim counted"
        );
    }
}
