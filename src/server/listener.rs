//! Binding the listening socket through `socket2`, tuned before `listen`.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `addr` with `SO_REUSEADDR` (a restarted server can bind while old
/// connections sit in TIME_WAIT) and listens with `backlog`, nonblocking.
pub(crate) fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Windows' SO_REUSEADDR lets a second process steal a bound port; only Unix
    // gets the TIME_WAIT meaning we want.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
