//! One accept and what it can fail with: which errors belong to a single
//! connection (retried at once), which mean the process is out of descriptors or
//! memory (the connection stays in the backlog: wait and retry), how long to wait
//! between retries, and how the failures are logged without burying the log.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::serve::Job;

/// The first wait after a failed accept (see [`Backoff`]).
const MIN_BACKOFF: Duration = Duration::from_millis(1);
/// The longest wait between two accepts that fail.
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this long about failing accepts.
const WARN_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum Accepted {
    One(Job),
    /// The backlog is empty.
    Nothing,
    /// Connections may be waiting, but none could be taken: out of descriptors or
    /// memory (see [`out_of_resources`]), or the listener itself is broken.
    Failed(io::Error),
}

pub(crate) fn accept_one(listener: &TcpListener) -> Accepted {
    match accept_stream(listener) {
        Ok(Some((stream, peer))) => Accepted::One(Job::new(stream, peer)),
        Ok(None) => Accepted::Nothing,
        Err(err) => Accepted::Failed(err),
    }
}

/// One connection from a nonblocking listener; `None` when the backlog is empty.
/// The errors of a single connection are skipped, the rest returned.
fn accept_stream(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    loop {
        match listener.accept() {
            Ok(accepted) => return Ok(Some(accepted)),
            Err(err) => match err.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                // A signal landed mid-call: nothing happened, ask again.
                io::ErrorKind::Interrupted => continue,
                // The client gave up while in the backlog: its problem, not ours.
                io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => continue,
                // Linux hands a connection's pending network error to accept; the
                // next connection is unaffected (accept(2), "Error handling").
                _ if connection_failed(&err) => continue,
                _ => return Err(err),
            },
        }
    }
}

/// Takes every connection waiting in `listener`'s backlog, for a program with its
/// own accept loop to serve before it closes the listener: a listener closed with
/// clients still in its backlog resets them, on Linux, although their connect
/// succeeded. The server does the same as it stops accepting.
///
/// The listener is made nonblocking (the call returns when the backlog is empty);
/// the streams returned are blocking, as `accept` returns them on Linux. Errors of a
/// single connection (a client that gave up while it waited) are skipped. Running
/// out of descriptors (or any other failure of the listener) ends the taking early,
/// with a warning in the log: what is left in the backlog is reset by the close.
///
/// ```no_run
/// use std::net::TcpListener;
///
/// let listener = TcpListener::bind("127.0.0.1:7000")?;
/// // ... accept and serve until the shutdown is triggered, then:
/// let waiting = lameduck::take_backlog(&listener)?;
/// drop(listener); // nobody is reset: they are all in `waiting`
/// for (stream, peer) in waiting {
///     // serve `stream` like any other connection, with the goodbye
/// #   let _ = (stream, peer);
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// Only if the listener cannot be made nonblocking.
pub fn take_backlog(listener: &TcpListener) -> io::Result<Vec<(TcpStream, SocketAddr)>> {
    listener.set_nonblocking(true)?;
    let mut taken = Vec::new();
    loop {
        match accept_stream(listener) {
            Ok(Some((stream, peer))) => {
                // BSDs hand out the listener's nonblocking flag with the connection.
                if let Err(err) = stream.set_nonblocking(false) {
                    log::debug!("{peer}: cannot make the connection blocking: {err}");
                    continue;
                }
                taken.push((stream, peer));
            }
            Ok(None) => return Ok(taken),
            Err(err) => {
                log::warn!(
                    "took {} connection(s) from the backlog, then accept failed: {err}; \
                     the rest is reset when the listener closes",
                    taken.len()
                );
                return Ok(taken);
            }
        }
    }
}

/// Errors of one connection that `accept` reports in its place.
fn connection_failed(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            err.raw_os_error(),
            Some(
                libc::EPROTO
                    | libc::ENETDOWN
                    | libc::ENETUNREACH
                    | libc::EHOSTDOWN
                    | libc::EHOSTUNREACH
                    | libc::ENOPROTOOPT
                    | libc::EOPNOTSUPP
            )
        )
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

/// Out of descriptors (per process or system-wide), socket buffers or memory:
/// the connection stays in the backlog and can be taken once something is freed.
pub(crate) fn out_of_resources(err: &io::Error) -> bool {
    if err.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(
            err.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(windows)]
    {
        // WSAEMFILE, WSAENOBUFS.
        matches!(err.raw_os_error(), Some(10024 | 10055))
    }
    #[cfg(not(any(unix, windows)))]
    {
        false
    }
}

/// How long to wait before accepting again after a failure: doubling from
/// [`MIN_BACKOFF`] to [`MAX_BACKOFF`], back to the start after each accept. A worker
/// that closes a connection rings the `freed` bell, which cuts the wait short, so
/// the backoff only paces retries when something else frees resources (another
/// process's descriptors under ENFILE, memory).
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(MIN_BACKOFF)
    }

    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }

    pub(crate) fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }
}

/// Accept failures, logged at most once per [`WARN_EVERY`]: the first as it
/// happens, its repeats as one line with their count. A server out of descriptors
/// fails an accept at every retry, and a line for each buries the log.
#[derive(Default)]
pub(crate) struct FailureLog {
    /// When the current window began (the last line logged).
    window: Option<Instant>,
    repeats: u64,
    last: String,
}

impl FailureLog {
    pub(crate) fn note(&mut self, err: &io::Error, now: Instant) {
        match self.window {
            Some(start) if self.repeats > 0 || now.duration_since(start) < WARN_EVERY => {
                self.repeats += 1;
                self.last = err.to_string();
                self.flush_due(now);
            }
            _ => {
                log::warn!(
                    "accept failed: {err}; retrying as connections close \
                     (repeats are counted, one line a second)"
                );
                self.window = Some(now);
            }
        }
    }

    /// Logs the repeats once their window has lasted [`WARN_EVERY`].
    pub(crate) fn flush_due(&mut self, now: Instant) {
        if self
            .window
            .is_some_and(|start| now.duration_since(start) >= WARN_EVERY)
        {
            self.flush(now);
        }
    }

    /// Logs the repeats counted so far, if any.
    pub(crate) fn flush(&mut self, now: Instant) {
        let Some(start) = self.window else { return };
        if self.repeats == 0 {
            return;
        }
        log::warn!(
            "accept failed {} times in the last {:.1}s: {}",
            self.repeats,
            now.duration_since(start).as_secs_f64(),
            self.last
        );
        self.repeats = 0;
        self.window = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn the_backlog_is_taken_whole_and_nobody_in_it_is_reset() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // The kernel may queue a connection a moment after its connect returns:
        // take until all three are in hand, within a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut taken = Vec::new();
        while taken.len() < 3 && Instant::now() < deadline {
            taken.extend(take_backlog(&listener).unwrap());
        }
        assert_eq!(taken.len(), 3);
        drop(listener);
        for (mut stream, _) in taken {
            stream.write_all(b"served\n").unwrap();
            drop(stream);
        }
        for client in &mut clients {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut seen = Vec::new();
            client.read_to_end(&mut seen).expect("EOF, not a reset");
            assert_eq!(seen, b"served\n");
        }
        assert!(
            TcpStream::connect(addr).is_err(),
            "the listener is closed: later clients are refused"
        );
    }
}
