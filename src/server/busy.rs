//! Turning clients away when the pool and its queue are full, without blocking the
//! acceptor and without resets.
//!
//! A refused client gets the handler's busy reply and the same graceful close as any
//! other (FIN, then discard what it sends until it closes or the linger ends). The
//! linger cannot run on the acceptor, which must keep accepting, nor on a thread per
//! client, which is what overload must not cost; one `lameduck-refuser` thread keeps
//! the refused sockets nonblocking and sweeps them until each is done.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// How often lingering sockets are swept while some are waiting.
const SWEEP: Duration = Duration::from_millis(5);

struct Lingering {
    stream: TcpStream,
    until: Instant,
}

impl Lingering {
    /// True when this socket is finished with: the client closed, errored, or the
    /// linger ran out.
    fn sweep(&mut self, now: Instant) -> bool {
        let mut discard = [0u8; 1024];
        loop {
            match self.stream.read(&mut discard) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return now >= self.until,
                Err(_) => return true,
            }
        }
    }
}

fn start(stream: TcpStream, reply: &[u8], linger: Duration) -> Option<Lingering> {
    stream.set_nonblocking(true).ok()?;
    // A fresh socket's send buffer is empty, so a short reply goes out whole; if it
    // does not, the client gets a truncated refusal, which is all it was owed.
    let _ = (&stream).write(reply);
    stream.shutdown(Direction::Write).ok()?;
    Some(Lingering {
        stream,
        until: Instant::now() + linger,
    })
}

/// The refuser thread: runs until the acceptor drops its sender and every refused
/// socket has been closed. Each close rings `freed`, as a worker's does: an
/// acceptor out of descriptors waits for it.
pub(crate) fn refuse(
    refused: Receiver<TcpStream>,
    reply: Vec<u8>,
    linger: Duration,
    freed: Sender<()>,
) {
    let mut lingering: Vec<Lingering> = Vec::new();
    let mut open = true;
    while open || !lingering.is_empty() {
        let next = if lingering.is_empty() {
            refused.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else if open {
            refused.recv_timeout(SWEEP)
        } else {
            // No new arrivals can come; only the linger of those left is waited out.
            std::thread::park_timeout(SWEEP);
            Err(RecvTimeoutError::Timeout)
        };
        match next {
            Ok(stream) => {
                lingering.extend(start(stream, &reply, linger));
                // Under a flood, take every waiting refusal before the next sweep, so
                // the channel never fills while the sweep walks the list.
                for stream in refused.try_iter() {
                    lingering.extend(start(stream, &reply, linger));
                }
            }
            Err(RecvTimeoutError::Disconnected) => open = false,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let before = lingering.len();
        lingering.retain_mut(|socket| !socket.sweep(now));
        if lingering.len() < before {
            let _ = freed.try_send(());
        }
    }
}
