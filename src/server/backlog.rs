//! Counting the connections still waiting in a listener's kernel backlog: the ones a
//! drain could not take before it gave up (it had no descriptor to accept them with,
//! and the deadline came), which closing the listener resets.
//!
//! Neither std nor `socket2` exposes the length of a listener's accept queue. On
//! Linux, `/proc/net/tcp` (`tcp6` for an IPv6 socket) lists every socket of the
//! network namespace with its inode, and for a listening one (state `0A`) its
//! `rx_queue` column is the accept queue's current length — what `ss -ltn` shows as
//! Recv-Q. The file is opened when the server starts: the count is wanted exactly
//! when descriptors have run out, and a `/proc` file read again from offset 0 is
//! generated afresh. Elsewhere the count is unknown.

use std::net::TcpListener;

/// Counts the connections waiting in one listener's backlog.
#[derive(Debug)]
pub(crate) struct BacklogProbe {
    #[cfg(target_os = "linux")]
    linux: Option<linux::Probe>,
}

impl BacklogProbe {
    /// Prepares to count `listener`'s backlog; holds one descriptor on Linux.
    pub(crate) fn new(listener: &TcpListener) -> BacklogProbe {
        #[cfg(target_os = "linux")]
        {
            let linux = linux::Probe::new(listener);
            if let Err(err) = &linux {
                log::debug!("cannot prepare to count the backlog: {err}");
            }
            BacklogProbe { linux: linux.ok() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = listener;
            BacklogProbe {}
        }
    }

    /// Connections waiting to be accepted right now; `None` when that cannot be
    /// known (not Linux, or `/proc` unavailable).
    pub(crate) fn waiting(&mut self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let probe = self.linux.as_mut()?;
            match probe.waiting() {
                Ok(count) => count,
                Err(err) => {
                    log::debug!("cannot count the backlog: {err}");
                    None
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io::{self, Read, Seek, SeekFrom};
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    /// The `st` column of a listening socket (`TCP_LISTEN`).
    const LISTEN: &str = "0A";

    #[derive(Debug)]
    pub(super) struct Probe {
        table: File,
        inode: u64,
    }

    impl Probe {
        pub(super) fn new(listener: &TcpListener) -> io::Result<Probe> {
            // The socket's inode identifies its row whatever its address; the link
            // reads `socket:[<inode>]`.
            let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd()))?;
            let inode = link
                .to_str()
                .and_then(|link| link.strip_prefix("socket:["))
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse().ok())
                .ok_or_else(|| io::Error::other(format!("not a socket: {}", link.display())))?;
            let table = if listener.local_addr()?.is_ipv4() {
                "/proc/net/tcp"
            } else {
                "/proc/net/tcp6"
            };
            Ok(Probe {
                table: File::open(table)?,
                inode,
            })
        }

        /// `Ok(None)` if the socket is not in the table as a listener.
        pub(super) fn waiting(&mut self) -> io::Result<Option<u64>> {
            self.table.seek(SeekFrom::Start(0))?;
            let mut text = String::new();
            self.table.read_to_string(&mut text)?;
            Ok(accept_queue(&text, self.inode))
        }
    }

    /// The `rx_queue` of the listening socket with `inode` in a `/proc/net/tcp`
    /// table: `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode`.
    pub(super) fn accept_queue(table: &str, inode: u64) -> Option<u64> {
        table.lines().skip(1).find_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (state, queues, row_inode) = (fields.get(3)?, fields.get(4)?, fields.get(9)?);
            if *state != LISTEN || row_inode.parse::<u64>().ok()? != inode {
                return None;
            }
            let (_tx, rx) = queues.split_once(':')?;
            u64::from_str_radix(rx, 16).ok()
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn parses_the_listener_row_by_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            \x20  0: 0100007F:A959 00000000:0000 0A 00000000:0000002A 00:00000000 00000000     0        0 719119 1 0 100 0 0 10 0\n\
            \x20  1: 0100007F:A959 0100007F:B83C 01 00000000:00000005 00:00000000 00000000     0        0 719120 1 0\n";
        assert_eq!(linux::accept_queue(table, 719119), Some(42));
        assert_eq!(linux::accept_queue(table, 719120), None, "not listening");
        assert_eq!(linux::accept_queue(table, 1), None);
    }

    #[test]
    fn counts_connections_nobody_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut probe = BacklogProbe::new(&listener);
        assert_eq!(probe.waiting(), Some(0));
        let addr = listener.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // The handshake completes in the kernel before connect returns on loopback,
        // but the server side's queueing may trail it by a moment: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe.waiting() != Some(3) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(probe.waiting(), Some(3));
        let _accepted = listener.accept().unwrap();
        assert_eq!(probe.waiting(), Some(2));
        drop(clients);
    }
}
