//! systemd's readiness protocol (`sd_notify`): one datagram of `KEY=value` lines per
//! state change, sent to the socket named by `NOTIFY_SOCKET`.
//!
//! Written here rather than taken from the `sd-notify` crate because that crate
//! connects to the variable's value as a path, and systemd may hand out an abstract
//! socket (`@name`), which needs std's Linux-only abstract address. Without
//! `NOTIFY_SOCKET` every call is a no-op, so code can notify unconditionally.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;

/// Where notifications go, read once from the environment.
///
/// The variable is left in place: a process started by an upgrade inherits it and
/// talks to the same service manager once it is the unit's main process.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    target: Option<OsString>,
}

impl Notifier {
    pub(crate) fn from_env() -> Notifier {
        Notifier {
            target: std::env::var_os("NOTIFY_SOCKET").filter(|value| !value.is_empty()),
        }
    }

    /// Sends `lines` (already `KEY=value`, newline-separated) as one datagram. A
    /// failure is logged and otherwise ignored: the service manager's bookkeeping
    /// must never stop the server.
    pub(crate) fn send(&self, lines: &str) {
        let Some(target) = &self.target else {
            return;
        };
        if let Err(err) = send_to(target, lines.as_bytes()) {
            log::warn!(
                "cannot notify the service manager at {}: {err}",
                target.to_string_lossy()
            );
        } else {
            log::debug!("notified: {}", lines.replace('\n', " "));
        }
    }
}

fn send_to(target: &OsString, message: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        return send_abstract(&socket, name, message);
    }
    socket.send_to(message, target).map(drop)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr).map(drop)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_socket: &UnixDatagram, _name: &[u8], _message: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn received(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification arrives");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_path_socket_receives_one_datagram_per_notification() {
        let dir = std::env::temp_dir().join(format!("lameduck-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            target: Some(path.clone().into_os_string()),
        };
        notifier.send("READY=1\nSTATUS=serving");
        assert_eq!(received(&socket), "READY=1\nSTATUS=serving");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_is_reached_by_its_at_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lameduck-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier {
            target: Some(format!("@{name}").into()),
        };
        notifier.send("STOPPING=1");
        assert_eq!(received(&socket), "STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        Notifier::default().send("READY=1");
    }
}
