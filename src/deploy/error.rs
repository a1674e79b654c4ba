//! Why a deploy step failed, in words a user reads.

use std::error::Error;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a deploy step failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeployError {
    /// An inherited descriptor (`LISTEN_FDS`) is not what the protocol promises.
    Inherited(io::Error),
    /// No socket was inherited and `addr` could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        source: io::Error,
    },
    /// The pid file could not be written.
    PidFile {
        /// Its path.
        path: PathBuf,
        /// The operating system's answer.
        source: io::Error,
    },
    /// The upgrade signal could not be caught, or a thread not started.
    Setup(io::Error),
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Inherited(err) => write!(f, "{err}"),
            DeployError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            DeployError::PidFile { path, source } => {
                write!(f, "cannot write pid file {}: {source}", path.display())
            }
            DeployError::Setup(err) => write!(f, "cannot set up upgrades: {err}"),
        }
    }
}

impl Error for DeployError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            DeployError::Inherited(err) | DeployError::Setup(err) => Some(err),
            DeployError::Bind { source, .. } | DeployError::PidFile { source, .. } => Some(source),
        }
    }
}
