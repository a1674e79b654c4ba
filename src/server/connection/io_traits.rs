//! `io::Read` and `io::Write` for a connection, so a handler can use `BufReader`,
//! `read_line` and `write!` — with the drain and force rules of its own methods.

use std::io::{self, Read, Write};

use super::{Connection, Received};

/// The error of an `io::Read` read whose connection's deadline passed.
fn deadline_passed() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the connection's deadline passed with nothing read",
    )
}

/// Reads block until data, EOF or the end of the conversation, across ticks; the drain
/// is handled as the connection's own methods handle it:
///
/// - **Between requests** (nothing read since the last write) a read waits as
///   [`Connection::read_request`] does: if the server dismisses the connection
///   meanwhile, it has said the handler's goodbye, and the read returns `Ok(0)`.
///   If the drain has already begun, the read first takes what already waits in the
///   socket (once per connection: a chatty client cannot hold the drain open), and
///   when nothing does, says the goodbye itself, shuts the write side and returns
///   `Ok(0)`. Either way `Ok(0)` means the conversation is over: return `Ok(())`.
///   Writes after the goodbye are discarded, so a handler that answers a last
///   partial line meets no error.
/// - **In a request** (data was read and nothing written since) a read waits for
///   the rest whatever the drain, as a request in progress is finished; set a
///   [deadline](Connection::set_deadline) to bound the wait.
///
/// A passed deadline is an error of kind `TimedOut`; once the shutdown is forced,
/// reads fail with [`Forced`](crate::Forced). What `BufRead::read_line` had read of a
/// line before either error stays in its buffer.
impl Read for Connection<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.write_closed {
                // Goodbye said (or dismissed): the conversation is over.
                return if self.is_forced() {
                    Err(Self::forced_error())
                } else {
                    Ok(0)
                };
            }
            let received = if self.in_request {
                Connection::read(self, buf)?
            } else {
                self.read_request(buf)?
            };
            match received {
                Received::Data(n) => {
                    self.in_request = true;
                    return Ok(n);
                }
                Received::Eof | Received::Dismissed => return Ok(0),
                Received::Deadline => return Err(deadline_passed()),
                Received::Quiet => {}
                Received::Draining => return self.last_read(buf),
            }
        }
    }
}

impl Connection<'_> {
    /// Between requests while draining: the one non-blocking read of what is
    /// already there, then the goodbye.
    fn last_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending_read_done {
            self.pending_read_done = true;
            match self.read_pending(buf)? {
                Received::Data(n) => {
                    self.in_request = true;
                    return Ok(n);
                }
                Received::Eof => return Ok(0),
                Received::Quiet | Received::Deadline | Received::Draining | Received::Dismissed => {
                }
            }
        }
        self.say_goodbye()?;
        Ok(0)
    }
}

/// Each `write` sends all of its bytes under the rules of
/// [`Connection::write_all`]: it waits for a client that reads slowly, gives up on
/// one that reads nothing for the write timeout, fails with
/// [`Forced`](crate::Forced) once forced, and discards what is written after the
/// goodbye. Nothing is buffered, and the socket has `TCP_NODELAY`: format a reply
/// into one buffer (or wrap the connection in a `BufWriter`) to send it as one
/// segment rather than one per `write!` argument.
impl Write for Connection<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Connection::write_all(self, buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Connection::write_all(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
