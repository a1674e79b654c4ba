//! One client connection as a handler sees it, and its graceful close.
//!
//! Every read waits at most one tick (a socket read timeout), so a worker blocked on a
//! quiet client notices draining within a tick. Every write is bounded the same way,
//! and a write that makes no progress for the write timeout gives the connection up:
//! a client that stops reading holds its worker for that long, not until a forced
//! shutdown (see [`Connection::write_all`]). The close is the graceful one of
//! `close`: FIN, a bounded linger, then close, never a reset.
//!
//! A connection also implements `io::Read` and `io::Write` (in `connection/io`), for
//! handlers written with `BufReader` and `write!`, and can be made from a plain
//! `TcpStream` by a program with its own accept loop ([`Connection::from_stream`]).
//!
//! This file is over 400 lines because the connection's reads (tick, deadline,
//! dismissal, polling) and writes (the stall clock) share its fields and invariants;
//! the `io` traits and the tests live in `connection/`.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::close::is_timeout;
use super::close::linger_close;
use super::defaults::DEFAULT_WRITE_TIMEOUT;
use super::forced::Forced;
use super::registry::{SlotGuard, State};
use crate::shutdown::Shutdown;

mod io_traits;
#[cfg(test)]
mod tests;

/// How long a worker keeps polling for the next request before it sleeps in `read`,
/// when a core is free: about two loopback round trips.
const SPIN: Duration = Duration::from_micros(50);

/// When to poll for the next request instead of sleeping: only while fewer workers
/// are serving than there are cores, so polling never takes a core from another
/// worker. A sleeping thread costs a context switch on each side of every request;
/// with a core to spare, polling briefly saves both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spin<'a> {
    pub(crate) serving: &'a AtomicUsize,
    pub(crate) cores: usize,
}

/// What one read of a [`Connection`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// This many bytes were placed at the start of the buffer.
    Data(usize),
    /// The client closed its side: nothing more will come.
    Eof,
    /// A tick passed without data: check [`Connection::is_draining`] and any clock of
    /// your own, then read again.
    Quiet,
    /// The deadline of [`Connection::set_deadline`] passed without data: the
    /// handler's own wait (an idle or a header timeout) is over.
    Deadline,
    /// Only from [`Connection::read_request`]: draining had already begun when the
    /// handler came back for its next request, so nothing was read. Answer what the
    /// client already sent ([`Connection::read_pending`]), say goodbye and return.
    Draining,
    /// Only from [`Connection::read_request`]: while the handler waited between
    /// requests, draining began and the server sent the handler's goodbye on its
    /// behalf. Anything the client sent after it crossed the goodbye and is dropped.
    /// Return `Ok(())`.
    Dismissed,
}

/// A client connection lent to a [`Handler`](crate::Handler) for the length of one
/// `handle` call. The server closes it gracefully when the handler returns `Ok`.
///
/// Besides its own reads (which say what happened as a [`Received`]), it implements
/// [`io::Read`] and [`io::Write`], so a handler can wrap it in a `BufReader` and
/// answer with `write!`. Once the shutdown is forced every read and write fails with
/// [`Forced`]. A program with its own accept loop makes one from a plain stream with
/// [`Connection::from_stream`].
#[derive(Debug)]
pub struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    tick: Duration,
    write_timeout: Duration,
    /// The socket's write timeout: how long one `write` call waits for room.
    write_tick: Duration,
    /// A write made no progress for `write_timeout` and the connection was given up.
    gave_up: bool,
    /// The read timeout currently set on the socket, to skip redundant syscalls.
    read_timeout: Option<Duration>,
    /// When the handler's own wait ends (an idle timeout, a header timeout).
    deadline: Option<Instant>,
    /// This connection's entry in the registry, for dismissal while idle.
    slot: Option<SlotGuard<'a>>,
    /// Our side already sent FIN (a dismissal did, or a goodbye said by a read).
    write_closed: bool,
    /// When the last [`Connection::write_all`] finished, or the connection started:
    /// a keep-alive grace counts from the last reply, and a client that has just
    /// connected is as likely to have its first request on the way.
    last_write: Option<Instant>,
    spin: Option<Spin<'a>>,
    /// Set when this server stops accepting: handlers say goodbye.
    draining: Shutdown,
    /// The application's token, for handlers that report readiness.
    app: Shutdown,
    /// The handler's goodbye, said by an `io::Read` read that finds the server
    /// draining between requests.
    goodbye: Cow<'a, [u8]>,
    /// For `io::Read`: data was read since the last write, so the next read is in
    /// the middle of a request, which a drain lets finish.
    in_request: bool,
    /// For `io::Read`: the one non-blocking read owed to a draining connection
    /// before its goodbye has been made.
    pending_read_done: bool,
}

/// The deadlines of a connection's blocking calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// The longest one read or write call blocks.
    pub(crate) tick: Duration,
    /// How long a write may go without the client taking a single byte.
    pub(crate) write: Duration,
}

impl Timeouts {
    /// The socket's write timeout: the tick, but at most a quarter of the write
    /// timeout. A write blocked on a full socket is only woken once a good share of
    /// the buffer has drained, so a client that reads a little at a time may free
    /// room without waking it; retrying a few times per write timeout finds that room
    /// and counts it as progress, while a client that reads nothing is still given up
    /// within a quarter past the timeout.
    fn write_tick(self) -> Duration {
        self.tick.min(self.write / 4).max(Duration::from_millis(1))
    }
}

/// How long a write has gone without the socket taking a byte. The clock is read
/// only when a write times out: a write into a socket with room costs nothing more.
#[derive(Debug, Default)]
struct Stall {
    since: Option<Instant>,
}

impl Stall {
    /// A `write` call returned at `now` after waiting `waited` for room and took
    /// nothing: true once nothing has been taken for `limit`.
    fn timed_out(&mut self, now: Instant, waited: Duration, limit: Duration) -> bool {
        let since = *self
            .since
            .get_or_insert_with(|| now.checked_sub(waited).unwrap_or(now));
        now.saturating_duration_since(since) >= limit
    }

    /// The socket took some bytes: the client is reading, however slowly.
    fn progressed(&mut self) {
        self.since = None;
    }
}

/// The error of a write given up on (see [`Connection::write_all`]).
#[derive(Debug)]
struct WriteStalled(Duration);

impl std::fmt::Display for WriteStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client read nothing for {:?}: given up", self.0)
    }
}

impl std::error::Error for WriteStalled {}

impl<'a> Connection<'a> {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        timeouts: Timeouts,
        draining: Shutdown,
        app: Shutdown,
        slot: Option<SlotGuard<'a>>,
        spin: Option<Spin<'a>>,
    ) -> io::Result<Connection<'a>> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        let Timeouts { tick, write } = timeouts;
        let write_tick = timeouts.write_tick();
        stream.set_read_timeout(Some(tick))?;
        stream.set_write_timeout(Some(write_tick))?;
        Ok(Connection {
            stream,
            peer,
            tick,
            write_timeout: write,
            write_tick,
            gave_up: false,
            read_timeout: Some(tick),
            deadline: None,
            slot,
            write_closed: false,
            last_write: Some(Instant::now()),
            spin,
            draining,
            app,
            goodbye: Cow::Borrowed(&[]),
            in_request: false,
            pending_read_done: false,
        })
    }

    /// A connection on a stream a program accepted itself, outside any server: the
    /// reads, writes, goodbye and graceful close of a handler's connection, for a
    /// program with its own accept loop. `shutdown` is the program's token: its
    /// trigger is the drain, its force the force.
    ///
    /// Without a server to dismiss it, a connection waiting between requests notices
    /// the drain at its next read timeout, so `tick` is how late that may be (100 ms
    /// costs an idle connection ten wake-ups a second). Writes give up on a client
    /// that reads nothing for [`DEFAULT_WRITE_TIMEOUT`]. Set the goodbye with
    /// [`Connection::with_goodbye`] and finish with [`Connection::close_gracefully`].
    ///
    /// # Errors
    /// The socket's, when it cannot be tuned (blocking, `TCP_NODELAY`, timeouts) or
    /// has no peer address.
    pub fn from_stream(
        stream: TcpStream,
        shutdown: &Shutdown,
        tick: Duration,
    ) -> io::Result<Connection<'static>> {
        let peer = stream.peer_addr()?;
        let timeouts = Timeouts {
            tick: tick.max(Duration::from_millis(1)),
            write: DEFAULT_WRITE_TIMEOUT,
        };
        Connection::new(
            stream,
            peer,
            timeouts,
            shutdown.clone(),
            shutdown.clone(),
            None,
            None,
        )
    }

    /// Sets the goodbye an `io::Read` read says on the handler's behalf when it finds
    /// the drain between requests (see the `io::Read` implementation). A server's
    /// connections already have the handler's [`goodbye`](crate::Handler::goodbye);
    /// one made with [`Connection::from_stream`] has none until this is called.
    pub fn with_goodbye(mut self, goodbye: &[u8]) -> Self {
        self.goodbye = Cow::Owned(goodbye.to_vec());
        self
    }

    /// The server's handler's goodbye, borrowed for the connection's life.
    pub(crate) fn set_goodbye(&mut self, goodbye: &'a [u8]) {
        self.goodbye = Cow::Borrowed(goodbye);
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The longest a read or write call waits before returning control.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// True once the server has stopped accepting: finish the request in progress,
    /// answer what was already received, say goodbye and return.
    pub fn is_draining(&self) -> bool {
        self.draining.is_triggered()
    }

    /// True once the shutdown is forced (drain deadline passed or a second signal):
    /// stop at once. Reads and writes then fail with [`Forced`].
    pub fn is_forced(&self) -> bool {
        self.draining.is_forced() || self.app.is_forced()
    }

    /// Blocks until the shutdown is forced (the server's drain deadline or a second
    /// signal) or `deadline` passes; true if forced. For simulated or interruptible
    /// work inside a request: a drain lets it finish, a force cuts it short.
    pub fn wait_forced_until(&self, deadline: Instant) -> bool {
        if self.is_forced() {
            return true;
        }
        let (server_forced, app_forced) = (self.draining.when_forced(), self.app.when_forced());
        crossbeam_channel::select! {
            recv(server_forced) -> _ => true,
            recv(app_forced) -> _ => true,
            default(deadline.saturating_duration_since(Instant::now())) => self.is_forced(),
        }
    }

    /// The application's shutdown token. It is triggered before draining starts when
    /// the server has a readiness delay, so a health check can report "not ready"
    /// while requests are still served.
    pub fn app_shutdown(&self) -> &Shutdown {
        &self.app
    }

    fn forced_error() -> io::Error {
        Forced::error()
    }

    /// Sets (or clears) the instant the handler's own wait ends — an idle or a
    /// header timeout. Reads then return [`Received::Deadline`] by that instant even
    /// when the tick is longer, so the handler can act on time.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Sets the socket's read timeout to end by the handler's deadline and, with a
    /// `cap`, within it.
    fn fit_read_timeout(&mut self, cap: Option<Duration>) -> io::Result<()> {
        let until_deadline = self.deadline.map(|deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let wanted = match (until_deadline, cap) {
            (Some(left), Some(cap)) => Some(left.min(cap)),
            (left, cap) => left.or(cap),
        };
        // A syscall only when the timeout set would overshoot the deadline or is far
        // shorter than needed: a deadline pushed forward by every request (an idle
        // timeout) then costs nothing per read, and the wait ends at most 1/64 late.
        let good_enough = match (self.read_timeout, wanted) {
            (Some(set), Some(wanted)) => set <= wanted + wanted / 64 && set >= wanted / 2,
            (set, wanted) => set == wanted,
        };
        if !good_enough {
            self.stream.set_read_timeout(wanted)?;
            self.read_timeout = wanted;
        }
        Ok(())
    }

    /// Reads what is available, waiting at most one tick (or until the deadline of
    /// [`Connection::set_deadline`]). Use it inside a request; between requests use
    /// [`Connection::read_request`].
    ///
    /// # Errors
    /// I/O errors of the socket (a reset, say), or [`Forced`] once forced.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        self.read_within(buf, Some(self.tick))
    }

    fn read_within(&mut self, buf: &mut [u8], cap: Option<Duration>) -> io::Result<Received> {
        if self.is_forced() {
            return Err(Self::forced_error());
        }
        self.fit_read_timeout(cap)?;
        loop {
            return match self.stream.read(buf) {
                Ok(n) if n > 0 => Ok(Received::Data(n)),
                // A force shuts the socket down, which a blocked read sees as EOF or
                // an error: the force is what happened.
                _ if self.is_forced() => Err(Self::forced_error()),
                Ok(_) => Ok(Received::Eof),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if is_timeout(&err) => Ok(self.nothing_came()),
                Err(err) => Err(err),
            };
        }
    }

    /// What a read that timed out means: the handler's deadline, or just a tick.
    fn nothing_came(&self) -> Received {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Received::Deadline,
            _ => Received::Quiet,
        }
    }

    /// Reads the start of the next request, like [`Connection::read`], while letting
    /// the server say goodbye on the handler's behalf if draining begins during the
    /// wait (see [`Received::Dismissed`]); that is what lets a drain reach idle
    /// connections at once instead of a tick later. The wait is not cut into ticks:
    /// it returns with data, at EOF, at the deadline of [`Connection::set_deadline`]
    /// ([`Received::Deadline`]), or on a dismissal or force. Once draining has begun
    /// it returns [`Received::Draining`] without reading. A connection made with
    /// [`Connection::from_stream`] has no server to dismiss it: it waits a tick at a
    /// time ([`Received::Quiet`]) and notices the drain at the next one.
    ///
    /// # Errors
    /// As [`Connection::read`].
    pub fn read_request(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        if let Some(received) = self.poll_briefly(buf) {
            return received;
        }
        let Some(slot) = self.slot.as_ref() else {
            if self.is_draining() {
                return Ok(Received::Draining);
            }
            return self.read(buf);
        };
        match slot.enter_idle(self.is_draining(), self.last_write) {
            State::Dismissed => {
                self.write_closed = true;
                return Ok(Received::Dismissed);
            }
            State::Busy => return Ok(Received::Draining),
            State::Idle => {}
        }
        // No tick while idle: draining reaches this read through a dismissal and a
        // force through `Registry::force_close`, so an idle worker sleeps until the
        // client speaks or its own deadline (the idle timeout) without waking.
        let received = self.read_within(buf, None);
        let dismissed = self
            .slot
            .as_ref()
            .is_some_and(|slot| slot.leave_idle() == State::Dismissed);
        if dismissed {
            self.write_closed = true;
            return match received {
                Err(err) if self.is_forced() => Err(err),
                _ => Ok(Received::Dismissed),
            };
        }
        received
    }

    /// Polls for the next request for up to [`SPIN`] while a core is free; `None`
    /// when nothing came (or polling is not worth it), to sleep in `read` instead.
    fn poll_briefly(&mut self, buf: &mut [u8]) -> Option<io::Result<Received>> {
        let spin = self.spin?;
        if spin.serving.load(Ordering::Relaxed) >= spin.cores || self.is_draining() {
            return None;
        }
        self.stream.set_nonblocking(true).ok()?;
        let until = Instant::now() + SPIN;
        let received = loop {
            match self.stream.read(buf) {
                Ok(0) => break Some(Ok(Received::Eof)),
                Ok(n) => break Some(Ok(Received::Data(n))),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= until || self.is_draining() {
                        break None;
                    }
                    std::hint::spin_loop();
                }
                Err(err) => break Some(Err(err)),
            }
        };
        if let Err(err) = self.stream.set_nonblocking(false) {
            return Some(Err(err));
        }
        received
    }

    /// One non-blocking read of whatever already waits in the socket's receive
    /// buffer: used when draining, to answer what was received before the goodbye
    /// without letting a chatty client hold the drain open. [`Received::Quiet`] when
    /// nothing waits.
    ///
    /// # Errors
    /// As [`Connection::read`].
    pub fn read_pending(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        self.stream.set_nonblocking(true)?;
        let result = self.read(buf);
        self.stream.set_nonblocking(false)?;
        // Nonblocking, the read cannot have waited for the deadline: nothing was there.
        result.map(|received| match received {
            Received::Deadline => Received::Quiet,
            other => other,
        })
    }

    /// Writes all of `bytes`, however long a client that keeps reading takes to read
    /// them, until the shutdown is forced — or until the socket has taken no byte at
    /// all for the server's write timeout: a client that stopped reading is then
    /// given up on, and the server drops the connection without a graceful close
    /// (see [`ServerBuilder::write_timeout`](crate::ServerBuilder::write_timeout)).
    /// Any progress, however small, restarts that clock.
    ///
    /// After the goodbye has been said for the handler (a dismissal, or an
    /// `io::Read` read that found the drain), the conversation is over and what is
    /// written is discarded: our side of the connection is already shut.
    ///
    /// # Errors
    /// I/O errors of the socket; [`Forced`] once forced; `TimedOut` when the client
    /// read nothing for the write timeout.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.in_request = false;
        if self.write_closed {
            return if self.is_forced() {
                Err(Self::forced_error())
            } else {
                Ok(())
            };
        }
        let mut stall = Stall::default();
        while !bytes.is_empty() {
            if self.is_forced() {
                return Err(Self::forced_error());
            }
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    bytes = &bytes[n..];
                    stall.progressed();
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => {
                    // SO_SNDTIMEO expired with nothing taken: one whole write tick
                    // without progress.
                    if stall.timed_out(Instant::now(), self.write_tick, self.write_timeout) {
                        self.gave_up = true;
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            WriteStalled(self.write_timeout),
                        ));
                    }
                }
                Err(_) if self.is_forced() => return Err(Self::forced_error()),
                Err(err) => return Err(err),
            }
        }
        self.last_write = Some(Instant::now());
        Ok(())
    }

    /// Writes the goodbye and shuts our write side, as a dismissal does; later
    /// writes are discarded.
    fn say_goodbye(&mut self) -> io::Result<()> {
        if self.write_closed {
            return Ok(());
        }
        let goodbye = std::mem::take(&mut self.goodbye);
        let written = self.write_all(&goodbye);
        self.goodbye = goodbye;
        written?;
        self.stream.shutdown(Direction::Write)?;
        self.write_closed = true;
        Ok(())
    }

    /// True once a write was given up on because the client read nothing for the
    /// write timeout: the server then drops the connection and counts it.
    pub(crate) fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// The underlying stream, for handlers that need a socket option of their own.
    /// Keep its timeouts: they are what lets the worker notice shutdown.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The graceful close: FIN (unless the goodbye already sent it), a bounded
    /// linger reading what the client still sends, then close — the one the server
    /// gives every connection whose handler returns `Ok`, and the way to end one made
    /// with [`Connection::from_stream`]. `Ok` if the client closed its side (or the
    /// linger ran out): it has read every reply.
    ///
    /// # Errors
    /// The socket's (a reset: the client may not have read everything); [`Forced`]
    /// if the shutdown is forced during the linger.
    pub fn close_gracefully(self, linger: Duration) -> io::Result<()> {
        linger_close(&self.stream, self.write_closed, linger, self.tick, &|| {
            self.is_forced()
        })
    }

    /// The server's draining token: triggered when it stops accepting, forced at its
    /// drain deadline. A clone lets code watch the drain without borrowing the
    /// connection (an HTTP service's context, while the service reads the body).
    pub fn draining(&self) -> &Shutdown {
        &self.draining
    }

    /// Sends `len` bytes of `file` from `offset`, with `sendfile(2)` on Linux (the
    /// bytes go from the page cache to the socket without passing through this
    /// process) and a buffered copy elsewhere; the file's own position is untouched.
    /// Under the rules of [`Connection::write_all`]: it goes on however slowly the
    /// client reads, until the shutdown is forced or the client reads nothing for the
    /// write timeout. It is sent in pieces, so a force is noticed between them even on
    /// a connection the server could not register for a force-close.
    ///
    /// # Errors
    /// As [`Connection::write_all`]; `UnexpectedEof` if the file ends first, and the
    /// file's own read errors.
    pub fn send_file(&mut self, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
        // Big enough that the syscalls cost nothing next to the bytes, small enough
        // that a force is seen within a piece at loopback speed.
        const PIECE: u64 = 4 << 20;
        let mut stall = Stall::default();
        let mut sent = 0;
        while sent < len {
            if self.is_forced() {
                return Err(Self::forced_error());
            }
            let piece = usize::try_from((len - sent).min(PIECE)).unwrap_or(1 << 20);
            let at = offset
                .checked_add(sent)
                .ok_or(io::ErrorKind::InvalidInput)?;
            match send_file_at(&self.stream, file, at, piece) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ended early",
                    ))
                }
                Ok(n) => {
                    sent += n as u64;
                    stall.progressed();
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => {
                    if stall.timed_out(Instant::now(), self.write_tick, self.write_timeout) {
                        self.gave_up = true;
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            WriteStalled(self.write_timeout),
                        ));
                    }
                }
                Err(err) => return Err(err),
            }
        }
        self.last_write = Some(Instant::now());
        Ok(())
    }
}

/// Sends up to `count` bytes of `file` from `at` to `to`; how many the socket took.
#[cfg(target_os = "linux")]
fn send_file_at(to: &TcpStream, file: &std::fs::File, at: u64, count: usize) -> io::Result<usize> {
    let mut offset = i64::try_from(at).map_err(|_| io::ErrorKind::InvalidInput)?;
    Ok(nix::sys::sendfile::sendfile64(
        to,
        file,
        Some(&mut offset),
        count,
    )?)
}
#[cfg(not(target_os = "linux"))]
fn send_file_at(to: &TcpStream, file: &std::fs::File, at: u64, count: usize) -> io::Result<usize> {
    #[cfg(unix)]
    use std::os::unix::fs::FileExt;
    #[cfg(windows)]
    use std::os::windows::fs::FileExt;
    let mut buf = vec![0u8; count.min(64 * 1024)];
    #[cfg(unix)]
    let n = file.read_at(&mut buf, at)?;
    #[cfg(windows)]
    let n = file.seek_read(&mut buf, at)?;
    if n == 0 {
        return Ok(0);
    }
    (&*to).write(&buf[..n])
}
