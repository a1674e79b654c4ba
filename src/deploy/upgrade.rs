//! Upgrades on SIGUSR2: start the binary on disk with the same arguments,
//! hand it the listening socket, wait for it to say it is ready, and only then drain.
//!
//! The new process gets the listener at fd 3 and one end of a Unix stream socket pair
//! at fd 4, through the socket-activation variables (see `activation`); `command-fds`
//! maps them into the child between fork and exec, so this crate needs no `unsafe`.
//! The new process writes `READY=1` on its end once it listens (after its startup
//! hooks); the old one reads it. The pair also reports failure without polling: a
//! child that exits or crashes closes its end, and the read returns EOF at once.
//!
//! Lessons from the tools that do this (nginx, gunicorn, tableflip): the old process
//! keeps serving until the new one is ready, and keeps serving if it never is; one
//! upgrade at a time; the old process hands systemd the new main PID before it exits,
//! or the unit dies with it (gunicorn #2856).

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::Weak;
use std::thread;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

use super::activation::HANDSHAKE_NAME;
use crate::shutdown::Shutdown;

/// What the new process writes on the readiness channel.
pub(crate) const READY: &[u8] = b"READY=1\n";

/// How to start a successor.
#[derive(Debug)]
pub(crate) struct Upgrader {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// The server's socket while it accepts; gone once it has closed it.
    pub(crate) listener: Weak<TcpListener>,
    pub(crate) timeout: Duration,
}

/// Why an upgrade did not happen; the old process keeps serving.
#[derive(Debug)]
pub(crate) enum UpgradeError {
    Spawn(io::Error),
    Exited(ExitStatus),
    ClosedWithoutReady,
    TimedOut(Duration),
    ShuttingDown,
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Spawn(err) => write!(f, "cannot start the new process: {err}"),
            UpgradeError::Exited(status) => match (status.code(), status.signal()) {
                (Some(code), _) => {
                    write!(
                        f,
                        "the new process exited with code {code} before it was ready"
                    )
                }
                (None, Some(signal)) => {
                    write!(
                        f,
                        "the new process died of signal {signal} before it was ready"
                    )
                }
                _ => write!(f, "the new process ended ({status}) before it was ready"),
            },
            UpgradeError::ClosedWithoutReady => {
                f.write_str("the new process closed its readiness channel without saying ready")
            }
            UpgradeError::TimedOut(after) => {
                write!(
                    f,
                    "the new process was not ready within {after:?}; killed it"
                )
            }
            UpgradeError::ShuttingDown => {
                f.write_str("shutdown began before the new process was ready; killed it")
            }
        }
    }
}

/// How the readiness read ended.
enum Heard {
    Ready,
    Closed,
    Failed(io::Error),
}

impl Upgrader {
    /// Starts the successor and waits for its readiness, the upgrade timeout, or the
    /// start of a shutdown, whichever comes first. Returns the successor's PID.
    pub(crate) fn attempt(&self, shutdown: &Shutdown) -> Result<u32, UpgradeError> {
        let (ours, theirs) = UnixStream::pair().map_err(UpgradeError::Spawn)?;
        let mut child = self.spawn(theirs)?;
        let pid = child.id();
        log::info!(
            "upgrade: started {} as pid {pid}; serving until it is ready",
            self.program.display()
        );
        let deadline = Instant::now() + self.timeout;
        let heard = listen_for_ready(ours, self.timeout);
        let outcome = crossbeam_channel::select! {
            recv(heard) -> heard => match heard {
                Ok(Heard::Ready) => Ok(pid),
                Ok(Heard::Closed) | Err(_) => Err(exit_status(&mut child, deadline)),
                Ok(Heard::Failed(err)) => Err(UpgradeError::Spawn(err)),
            },
            recv(shutdown.when_triggered()) -> _ => Err(UpgradeError::ShuttingDown),
            default(self.timeout) => Err(UpgradeError::TimedOut(self.timeout)),
        };
        if outcome.is_err() {
            // Not ready: it must not go on serving beside us, nor be left a zombie.
            let _ = child.kill();
            let _ = child.wait();
        }
        // A ready child is left to run; it outlives this process.
        outcome
    }

    fn spawn(&self, handshake: UnixStream) -> Result<Child, UpgradeError> {
        // A copy for the child only: ours must not outlive the server's close.
        let listener = self
            .listener
            .upgrade()
            .ok_or(UpgradeError::ShuttingDown)?
            .try_clone()
            .map_err(UpgradeError::Spawn)?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env("LISTEN_FDS", "2")
            .env("LISTEN_FDNAMES", format!("listener:{HANDSHAKE_NAME}"))
            .env_remove("LISTEN_PID")
            .fd_mappings(vec![
                FdMapping {
                    parent_fd: listener.into(),
                    child_fd: 3,
                },
                FdMapping {
                    parent_fd: handshake.into(),
                    child_fd: 4,
                },
            ])
            .map_err(|err| UpgradeError::Spawn(io::Error::other(err)))?;
        let child = command.spawn().map_err(UpgradeError::Spawn)?;
        // The command holds our copies of the child's descriptors: close them, or the
        // readiness channel would never report the child's exit.
        drop(command);
        Ok(child)
    }
}

/// Reads the readiness channel on a thread of its own, so the caller can wait on it
/// beside the shutdown token. The read is bounded by `timeout` in case the child
/// hands its end to a grandchild that never closes it.
fn listen_for_ready(
    mut channel: UnixStream,
    timeout: Duration,
) -> crossbeam_channel::Receiver<Heard> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = thread::Builder::new()
        .name("lameduck-upgrade-wait".into())
        .spawn(move || {
            let heard = match channel.set_read_timeout(Some(timeout)) {
                Ok(()) => read_ready(&mut channel),
                Err(err) => Heard::Failed(err),
            };
            let _ = tx.send(heard);
        });
    if let Err(err) = spawned {
        log::warn!("cannot start the upgrade's readiness thread: {err}");
    }
    rx
}

fn read_ready(channel: &mut UnixStream) -> Heard {
    let mut said = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match channel.read(&mut buf) {
            Ok(0) => return Heard::Closed,
            Ok(n) => {
                said.extend_from_slice(&buf[..n]);
                if said.starts_with(READY) {
                    return Heard::Ready;
                }
                if said.len() >= READY.len() {
                    return Heard::Closed;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Heard::Failed(err),
        }
    }
}

/// Why a child that closed its channel did: its exit status, waited for until the
/// upgrade's deadline (it closed the channel, so it is exiting or has exited).
fn exit_status(child: &mut Child, deadline: Instant) -> UpgradeError {
    // A child that closed the channel but lives on is not exiting: give up on it soon.
    let deadline = deadline.min(Instant::now() + Duration::from_secs(1));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return UpgradeError::Exited(status),
            Ok(None) if Instant::now() < deadline => {
                // Between closing its descriptors and becoming a zombie: a few
                // microseconds, so a short yield, bounded by the deadline.
                thread::sleep(Duration::from_millis(1));
            }
            Ok(None) => return UpgradeError::ClosedWithoutReady,
            Err(err) => return UpgradeError::Spawn(err),
        }
    }
}
