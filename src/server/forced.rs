//! The error a connection's reads and writes fail with once the shutdown is forced.

use std::error::Error;
use std::fmt;
use std::io;

/// The cause inside the [`io::Error`] that reads, writes and closes of a
/// [`Connection`](super::Connection) (and [`close_gracefully`](super::close_gracefully)'s
/// callers) fail with once the shutdown is forced: the drain deadline passed or a
/// second signal came. Stop at once and return the error.
///
/// Its kind is [`io::ErrorKind::ConnectionAborted`]: the connection was aborted on
/// this side. It is deliberately not `Interrupted`, which `std`'s `read_to_end`,
/// `BufRead::read_line`, `write_all` and the usual retry loops treat as "try again" —
/// a handler written the usual way would spin on it. Test for it with
/// [`Forced::is`]:
///
/// ```
/// use std::io::{BufRead, BufReader};
/// use std::net::{TcpListener, TcpStream};
/// use std::time::Duration;
/// use lameduck::{Connection, Forced, Shutdown};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let _client = TcpStream::connect(listener.local_addr()?)?;
/// let shutdown = Shutdown::new();
/// let mut conn = Connection::from_stream(listener.accept()?.0, &shutdown, Duration::from_millis(50))?;
/// shutdown.force();
/// let mut line = String::new();
/// // `read_line` would retry an `Interrupted` error for ever; this one ends it.
/// let err = BufReader::new(&mut conn).read_line(&mut line).unwrap_err();
/// assert!(Forced::is(&err));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Forced;

impl Forced {
    /// True if `err` is the error of a forced shutdown (its cause is [`Forced`]),
    /// not just any error of the same kind.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref().is_some_and(|cause| cause.is::<Forced>())
    }

    /// The `io::Error` carrying it.
    pub(crate) fn error() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionAborted, Forced)
    }
}

impl fmt::Display for Forced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shutdown forced")
    }
}

impl Error for Forced {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_told_apart_from_other_errors_of_its_kind() {
        let forced = Forced::error();
        assert!(Forced::is(&forced));
        assert_eq!(forced.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(forced.to_string(), "shutdown forced");
        assert!(!Forced::is(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!Forced::is(&io::Error::other("shutdown forced")));
    }
}
