//! The graceful close, on any TCP stream: the one a client needs to read every reply.
//!
//! Shut down our write side (the client reads EOF after the last reply), read and
//! discard what the client still sends for a bounded linger, then close. Closing a
//! socket with unread input makes Linux send a reset instead of a FIN, and a reset
//! can destroy replies the client has not read yet; draining the input first is what
//! prevents it. The server closes every connection this way; a program with its own
//! accept loop calls [`close_gracefully`] on its streams.

use std::io::{self, Read};
use std::net::{Shutdown as Direction, TcpStream};
use std::time::{Duration, Instant};

use super::forced::Forced;
use crate::threads::deadline_after;

/// Closes `stream` gracefully: shuts down its write side, discards what the peer
/// still sends until it closes its side or `linger` passes, then closes it — no
/// reset, so the peer reads every byte written before. This is what the server does
/// with each connection; use it on the streams of a program with its own accept
/// loop. Blocks for at most `linger` (a second is plenty on most networks).
///
/// ```no_run
/// use std::io::Write;
/// use std::net::TcpListener;
/// use std::time::Duration;
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let (mut stream, _) = listener.accept()?;
/// stream.write_all(b"bye\r\n")?;
/// lameduck::close_gracefully(stream, Duration::from_secs(1))?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// The socket's: the peer reset the connection (it may not have read everything),
/// or the stream was not connected. `Ok` means the peer closed its side, or kept it
/// open past the linger (what it sends from then on may draw a reset, but what was
/// written is already acknowledged or in flight ahead of our FIN).
pub fn close_gracefully(stream: TcpStream, linger: Duration) -> io::Result<()> {
    linger_close(&stream, false, linger, linger, &|| false)
}

/// The close behind [`close_gracefully`] and the server's: `write_closed` when our
/// FIN has already gone (a dismissal sent it); each read waits at most `slice`, so
/// `forced` is checked that often and cuts the linger short with [`Forced`].
pub(crate) fn linger_close(
    stream: &TcpStream,
    write_closed: bool,
    linger: Duration,
    slice: Duration,
    forced: &dyn Fn() -> bool,
) -> io::Result<()> {
    if !write_closed {
        stream.shutdown(Direction::Write)?;
    }
    let deadline = deadline_after(Instant::now(), linger);
    let mut discard = [0u8; 4096];
    let mut reader = stream;
    loop {
        if forced() {
            return Err(Forced::error());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left.min(slice).max(Duration::from_millis(1))))?;
        match reader.read(&mut discard) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if is_timeout(&err) => {}
            Err(err) => return Err(err),
        }
    }
}

/// Whether a read or write error is the expiry of the socket's own timeout.
pub(crate) fn is_timeout(err: &io::Error) -> bool {
    // SO_RCVTIMEO/SO_SNDTIMEO expiry is EAGAIN on Unix and WSAETIMEDOUT on Windows.
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// A connected pair on loopback: (server side, client side), the client's reads
    /// bounded. The server's other unit tests use it too.
    pub(crate) fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn unread_input_does_not_turn_the_close_into_a_reset() {
        let (mut server, mut client) = pair();
        // The client has sent something the server never read: a plain close would
        // reset the connection and could destroy the reply below.
        client.write_all(b"unread\n").unwrap();
        server.write_all(b"reply\n").unwrap();
        let closer = std::thread::spawn(move || close_gracefully(server, Duration::from_secs(5)));
        let mut seen = Vec::new();
        client
            .read_to_end(&mut seen)
            .expect("EOF after the reply, not a reset");
        assert_eq!(seen, b"reply\n");
        drop(client);
        closer.join().unwrap().expect("the client closed its side");
    }

    #[test]
    fn a_peer_that_keeps_its_side_open_is_waited_for_only_the_linger() {
        let (server, _client) = pair();
        let linger = Duration::from_millis(100);
        let started = Instant::now();
        close_gracefully(server, linger).expect("the linger ran out");
        let took = started.elapsed();
        assert!(took >= linger, "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_force_cuts_the_linger_short() {
        let (server, _client) = pair();
        let err = linger_close(
            &server,
            false,
            Duration::from_secs(30),
            Duration::from_millis(1),
            &|| true,
        )
        .unwrap_err();
        assert!(Forced::is(&err), "{err}");
    }
}
