//! Sockets inherited at start: systemd's socket activation, and the
//! listener plus readiness channel an upgrading process hands to its successor.
//!
//! The protocol is systemd's: `LISTEN_FDS=n` descriptors from fd 3 on, addressed to
//! the process named by `LISTEN_PID` (or to whoever reads them when it is absent,
//! which is how an upgrade passes them: the parent cannot know its child's PID
//! before the fork). `listenfd` reads the variables, checks each descriptor's socket
//! type, marks it close-on-exec and wraps it, so this crate needs no `unsafe`. An
//! upgrade names its second descriptor [`HANDSHAKE_NAME`] in `LISTEN_FDNAMES`: a
//! Unix stream socket on which the new process says it is ready.

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;

use listenfd::ListenFd;
use socket2::{Domain, SockRef, Type};

/// The `LISTEN_FDNAMES` name of the upgrade's readiness channel.
pub(crate) const HANDSHAKE_NAME: &str = "lameduck-upgrade";

/// What this process inherited.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    pub(crate) listener: Option<TcpListener>,
    /// Set when this process was started by an upgrade.
    pub(crate) handshake: Option<UnixStream>,
}

/// Takes the inherited descriptors and clears the variables, so nothing this
/// process starts later mistakes them for its own.
///
/// # Errors
/// The first descriptor is not a listening TCP socket, or an upgrade's readiness
/// channel is not a Unix stream socket.
pub(crate) fn take_from_env() -> io::Result<Inherited> {
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    std::env::remove_var("LISTEN_FDNAMES");
    // Reads LISTEN_FDS and LISTEN_PID and removes both.
    let mut fds = ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(Inherited::default());
    }
    let listener = fds
        .take_tcp_listener(0)
        .map_err(|err| not_a_listener(&err.to_string()))?
        .ok_or_else(|| not_a_listener("it was taken already"))?;
    check_listening(&listener)?;
    let handshake = if names.split(':').nth(1) == Some(HANDSHAKE_NAME) {
        fds.take_custom::<UnixStream>(
            1,
            Domain::UNIX.into(),
            Type::STREAM.into(),
            "unix stream socket",
        )?
    } else {
        None
    };
    let unused = fds.len() - 1 - usize::from(handshake.is_some());
    if unused > 0 {
        log::warn!("{unused} more inherited socket(s) ignored: lameduck serves the first");
    }
    Ok(Inherited {
        listener: Some(listener),
        handshake,
    })
}

fn not_a_listener(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("inherited fd 3 (LISTEN_FDS) is not a listening TCP socket: {why}"),
    )
}

/// A bound but unlistened socket would accept nothing and never say so.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn check_listening(listener: &TcpListener) -> io::Result<()> {
    match SockRef::from(listener).is_listener() {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_a_listener("it is not listening")),
        Err(err) => Err(not_a_listener(&err.to_string())),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn check_listening(listener: &TcpListener) -> io::Result<()> {
    let _ = SockRef::from(listener);
    Ok(())
}
