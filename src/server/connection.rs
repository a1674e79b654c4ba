//! One client connection as a handler sees it, and its graceful close.
//!
//! Every read waits at most one tick (a socket read timeout), so a worker blocked on a
//! quiet client notices draining within a tick; every write is bounded the same way, so
//! a client that never reads cannot hold a worker past a forced shutdown. The close is
//! the one of SPEC §2.3: shut down our write side (the client reads EOF after every
//! reply), discard what it still sends for a bounded linger, then close. Closing a
//! socket with unread input makes Linux send a reset, which can destroy replies the
//! client has not read yet; the linger is what prevents it.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

/// What one [`Connection::read`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Received {
    /// This many bytes were placed at the start of the buffer.
    Data(usize),
    /// The client closed its side: nothing more will come.
    Eof,
    /// A tick passed without data: check [`Connection::is_draining`] and timeouts.
    Quiet,
}

/// A client connection lent to a [`Handler`](crate::Handler) for the length of one
/// `handle` call. The server closes it gracefully when the handler returns `Ok`.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    tick: Duration,
    /// Set when this server stops accepting: handlers say goodbye.
    draining: Shutdown,
    /// The application's token, for handlers that report readiness.
    app: Shutdown,
}

fn is_timeout(err: &io::Error) -> bool {
    // SO_RCVTIMEO/SO_SNDTIMEO expiry is EAGAIN on Unix and WSAETIMEDOUT on Windows.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Connection {
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        tick: Duration,
        draining: Shutdown,
        app: Shutdown,
    ) -> io::Result<Connection> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(tick))?;
        stream.set_write_timeout(Some(tick))?;
        Ok(Connection {
            stream,
            peer,
            tick,
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

    /// The application's shutdown token. It is triggered before draining starts when
    /// the server has a readiness delay, so a health check can report "not ready"
    /// while requests are still served.
    pub fn app_shutdown(&self) -> &Shutdown {
        &self.app
    }

    fn forced_error() -> io::Error {
        io::Error::new(io::ErrorKind::Interrupted, "shutdown forced")
    }

    /// Reads what is available, waiting at most one tick.
    ///
    /// # Errors
    /// I/O errors of the socket (a reset, say), or `Interrupted` once forced.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<Received> {
        if self.is_forced() {
            return Err(Self::forced_error());
        }
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

    /// Writes all of `bytes`, however long the client takes to read them, until the
    /// shutdown is forced.
    ///
    /// # Errors
    /// I/O errors of the socket, or `Interrupted` once forced.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.is_forced() {
                return Err(Self::forced_error());
            }
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The underlying stream, for handlers that need a socket option of their own.
    /// Keep its timeouts: they are what lets the worker notice shutdown.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The graceful close of SPEC §2.3. Returns true if the client closed its side
    /// (or the linger ran out) without an error, i.e. it has read every reply.
    pub(crate) fn close_gracefully(mut self, linger: Duration) -> bool {
        if self.stream.shutdown(Direction::Write).is_err() {
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
}
