//! One client connection as a handler sees it, and its graceful close.
//!
//! Every read waits at most one tick (a socket read timeout), so a worker blocked on a
//! quiet client notices draining within a tick. Every write is bounded the same way,
//! and a write that makes no progress for the write timeout gives the connection up:
//! a client that stops reading holds its worker for that long, not until a forced
//! shutdown (see [`Connection::write_all`]). The close is
//! the one a client needs to read every reply: shut down our write side (the client reads EOF after every
//! reply), discard what it still sends for a bounded linger, then close. Closing a
//! socket with unread input makes Linux send a reset, which can destroy replies the
//! client has not read yet; the linger is what prevents it.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::registry::{SlotGuard, State};
use crate::shutdown::Shutdown;

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

/// What one [`Connection::read`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// This many bytes were placed at the start of the buffer.
    Data(usize),
    /// The client closed its side: nothing more will come.
    Eof,
    /// A tick passed without data (or draining has begun): check
    /// [`Connection::is_draining`] and timeouts.
    Quiet,
    /// Only from [`Connection::read_request`]: while the handler waited between
    /// requests, draining began and the server sent the handler's goodbye on its
    /// behalf. Anything the client sent after it crossed the goodbye and is dropped.
    /// Return `Ok(())`.
    Dismissed,
}

/// A client connection lent to a [`Handler`](crate::Handler) for the length of one
/// `handle` call. The server closes it gracefully when the handler returns `Ok`.
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
    /// Our side already sent FIN (a dismissal did).
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

fn is_timeout(err: &io::Error) -> bool {
    // SO_RCVTIMEO/SO_SNDTIMEO expiry is EAGAIN on Unix and WSAETIMEDOUT on Windows.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

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
        })
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
    /// stop at once. Reads and writes then fail with `ErrorKind::Interrupted`.
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
        let (server_forced, app_forced) = (self.draining.forced(), self.app.forced());
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
        io::Error::new(io::ErrorKind::Interrupted, "shutdown forced")
    }

    /// Sets (or clears) the instant the handler's own wait ends — an idle or a
    /// header timeout. Reads then return [`Received::Quiet`] by that instant even
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
    /// I/O errors of the socket (a reset, say), or `Interrupted` once forced.
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
                Ok(0) => Ok(Received::Eof),
                Ok(n) => Ok(Received::Data(n)),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if is_timeout(&err) => Ok(Received::Quiet),
                Err(err) => Err(err),
            };
        }
    }

    /// Reads the start of the next request, like [`Connection::read`], while letting
    /// the server say goodbye on the handler's behalf if draining begins during the
    /// wait (see [`Received::Dismissed`]); that is what lets a drain reach idle
    /// connections at once instead of a tick later. The wait is not cut into ticks:
    /// it returns with data, at EOF, at the deadline of [`Connection::set_deadline`]
    /// (with [`Received::Quiet`]), or on a dismissal or force. Once draining has begun it returns
    /// [`Received::Quiet`] without reading: check [`Connection::is_draining`] first.
    ///
    /// # Errors
    /// As [`Connection::read`].
    pub fn read_request(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        if let Some(received) = self.poll_briefly(buf) {
            return received;
        }
        let Some(slot) = self.slot.as_ref() else {
            return self.read(buf);
        };
        match slot.enter_idle(self.is_draining(), self.last_write) {
            State::Dismissed => {
                self.write_closed = true;
                return Ok(Received::Dismissed);
            }
            State::Busy => return Ok(Received::Quiet),
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
    /// without letting a chatty client hold the drain open.
    ///
    /// # Errors
    /// As [`Connection::read`].
    pub fn read_pending(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        self.stream.set_nonblocking(true)?;
        let result = self.read(buf);
        self.stream.set_nonblocking(false)?;
        result
    }

    /// Writes all of `bytes`, however long a client that keeps reading takes to read
    /// them, until the shutdown is forced — or until the socket has taken no byte at
    /// all for the server's write timeout: a client that stopped reading is then
    /// given up on, and the server drops the connection without a graceful close
    /// (see [`ServerBuilder::write_timeout`](crate::ServerBuilder::write_timeout)).
    /// Any progress, however small, restarts that clock.
    ///
    /// # Errors
    /// I/O errors of the socket; `Interrupted` once forced; `TimedOut` when the
    /// client read nothing for the write timeout.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
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
                Err(err) => return Err(err),
            }
        }
        self.last_write = Some(Instant::now());
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

    /// The graceful close: FIN, a bounded linger reading what the client still
    /// sends, then close. Returns true if the client closed its side
    /// (or the linger ran out) without an error, i.e. it has read every reply.
    pub(crate) fn close_gracefully(mut self, linger: Duration) -> bool {
        if !self.write_closed && self.stream.shutdown(Direction::Write).is_err() {
            return false;
        }
        let deadline = Instant::now() + linger;
        let mut discard = [0u8; 4096];
        loop {
            if self.is_forced() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The client keeps the connection open: give up waiting. What it
                // sends from now on may draw a reset, but everything we sent is
                // already acknowledged or in flight ahead of our FIN.
                return true;
            }
            if self
                .stream
                .set_read_timeout(Some(left.min(self.tick)))
                .is_err()
            {
                return false;
            }
            match self.stream.read(&mut discard) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => {}
                Err(_) => return false,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn a_stall_counts_from_the_start_of_the_first_write_that_took_nothing() {
        let limit = Duration::from_millis(1000);
        let tick = Duration::from_millis(250);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut stall = Stall::default();
        assert!(!stall.timed_out(at(250), tick, limit));
        assert!(!stall.timed_out(at(500), tick, limit));
        assert!(!stall.timed_out(at(750), tick, limit));
        assert!(stall.timed_out(at(1000), tick, limit), "1 s without a byte");
    }

    #[test]
    fn progress_restarts_the_stall_clock() {
        let limit = Duration::from_millis(1000);
        let tick = Duration::from_millis(250);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut stall = Stall::default();
        for round in 0..10 {
            let base = round * 1000;
            assert!(!stall.timed_out(at(base + 250), tick, limit));
            assert!(!stall.timed_out(at(base + 500), tick, limit));
            assert!(!stall.timed_out(at(base + 750), tick, limit));
            stall.progressed();
        }
        assert!(!stall.timed_out(at(10_250), tick, limit));
        assert!(stall.timed_out(at(11_000), tick, limit));
    }

    #[test]
    fn the_write_tick_is_at_most_a_quarter_of_the_write_timeout() {
        let timeouts = |tick, write| Timeouts {
            tick: Duration::from_millis(tick),
            write: Duration::from_millis(write),
        };
        assert_eq!(
            timeouts(1000, 60_000).write_tick(),
            Duration::from_secs(1),
            "the default tick is kept"
        );
        assert_eq!(
            timeouts(1000, 1000).write_tick(),
            Duration::from_millis(250)
        );
        assert_eq!(timeouts(1000, 1).write_tick(), Duration::from_millis(1));
    }

    /// A server-side connection with `timeouts`, and its client.
    fn pair(timeouts: Timeouts) -> (Connection<'static>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let conn = Connection::new(
            stream,
            peer,
            timeouts,
            Shutdown::new(),
            Shutdown::new(),
            None,
            None,
        )
        .unwrap();
        (conn, client)
    }

    #[test]
    fn a_client_that_reads_nothing_is_given_up_after_the_write_timeout() {
        let write = Duration::from_millis(300);
        let (mut conn, _client) = pair(Timeouts {
            tick: Duration::from_secs(1),
            write,
        });
        // Far more than both sockets' buffers hold: the write must stall.
        let reply = vec![b'x'; 64 << 20];
        let started = Instant::now();
        let err = conn
            .write_all(&reply)
            .expect_err("the client reads nothing");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(conn.gave_up());
        assert!(
            started.elapsed() >= write,
            "given up after {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_client_that_reads_slowly_is_not_given_up() {
        let write = Duration::from_millis(500);
        let (mut conn, mut client) = pair(Timeouts {
            tick: Duration::from_secs(1),
            write,
        });
        let total = 8 << 20;
        let reader = thread::spawn(move || {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            // On loopback the receiver opens its window in steps of one MSS (64 KiB)
            // once its buffer is full, so a client must read that much per write
            // timeout for the server to see any room: 32 KiB every 100 ms is
            // 160 KiB per timeout, still thousands of times slower than loopback.
            let mut buf = vec![0u8; 32 * 1024];
            let mut read = 0;
            let started = Instant::now();
            // Slow on purpose for two seconds (four write timeouts), then the rest
            // at full speed.
            while read < total {
                if started.elapsed() < Duration::from_secs(2) {
                    thread::sleep(Duration::from_millis(100));
                }
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            read
        });
        let started = Instant::now();
        conn.write_all(&vec![b'x'; total])
            .expect("a client that keeps reading is served");
        assert!(!conn.gave_up());
        assert!(
            started.elapsed() >= write * 2,
            "the write never stalled: the test proves nothing ({:?})",
            started.elapsed()
        );
        assert_eq!(reader.join().unwrap(), total);
    }
}
