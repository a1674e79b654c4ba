//! Deploys that drop nothing: socket activation, systemd notifications, a
//! pid file, and upgrades on SIGUSR2 that hand the listening socket to a new process.
//!
//! A restart that closes the listener and binds it again refuses every client that
//! connects in between. Here the socket outlives the process instead: systemd can
//! hold it and pass it in (socket activation), and a running server can pass it to
//! its successor (an upgrade), whose backlog is then the same kernel queue — nothing
//! is refused, nothing is reset. The old process drains only once the new one says
//! it is ready, and keeps serving if it never does.
//!
//! ```no_run
//! use std::time::Duration;
//! use lameduck::{deploy::Deploy, protocol::echo::Echo, signals, Lifecycle, Server, Shutdown};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // First thing: take inherited sockets before anything else starts.
//! let mut deploy = Deploy::from_env()?
//!     .pid_file("/run/echo.pid")
//!     .upgrade_on_sigusr2(Duration::from_secs(10));
//! let shutdown = Shutdown::new();
//! signals::install(&shutdown)?;
//! let mut life = Lifecycle::new(&shutdown);
//! // The socket systemd or the previous process handed over, or a new one.
//! let listener = deploy.listen("127.0.0.1:8080".parse()?, 1024)?;
//! let server = Server::builder()
//!     .listener(listener)
//!     .start(Echo::new(), &shutdown)?;
//! server.announce()?;
//! // READY=1, the pid file, and the predecessor (if any) told to drain.
//! let deployed = deploy.ready(&server, &mut life)?;
//! let report = life.serve(server);
//! deployed.finish(&report);
//! lameduck::output::print_line(&report.to_string());
//! # Ok(()) }
//! ```
//!
//! Unix only: elsewhere [`Deploy::listen`] binds, the pid file works, and asking for
//! upgrades logs that they are unsupported.

#[cfg(unix)]
mod activation;
mod error;
#[cfg(unix)]
mod notify;
mod pid_file;
#[cfg(unix)]
mod upgrade;
#[cfg(unix)]
mod watch;

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::thread;
use std::time::Duration;

use crate::lifecycle::{Lifecycle, LifecycleReport};
use crate::server::ServerHandle;
use crate::shutdown::{Reason, Shutdown};
pub use error::DeployError;
use pid_file::PidFile;

/// The upgrade timeout `lameduck` and the examples use (`--upgrade-timeout`).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Extra time asked of the service manager beyond the shutdown budget, for the
/// report and the exit itself.
const EXIT_MARGIN: Duration = Duration::from_secs(1);

/// The deploy side of a server, from the environment it was started in to the
/// moment it is ready. See the [module docs](self).
#[derive(Debug)]
#[must_use = "a deploy does nothing until `listen` and `ready` are called"]
pub struct Deploy {
    pid_file: Option<PathBuf>,
    upgrade_timeout: Option<Duration>,
    /// How the successor is started: the program as this one was started, and
    /// the same arguments.
    program: Option<PathBuf>,
    args: Vec<OsString>,
    #[cfg(unix)]
    inherited: activation::Inherited,
    #[cfg(unix)]
    notifier: notify::Notifier,
    #[cfg(unix)]
    usr2: Option<signal_hook::iterator::Signals>,
}

impl Deploy {
    /// Reads what the process was started with: sockets passed by systemd or by the
    /// process this one upgrades (then clears those variables), and `NOTIFY_SOCKET`.
    /// Call it first in `main`, before other threads start.
    ///
    /// # Errors
    /// [`DeployError::Inherited`] if `LISTEN_FDS` is addressed to this process but fd 3
    /// is not a listening TCP socket.
    pub fn from_env() -> Result<Deploy, DeployError> {
        let mut args = std::env::args_os();
        let program = args.next().and_then(|argv0| program_path(&argv0));
        #[cfg(unix)]
        let inherited = activation::take_from_env().map_err(DeployError::Inherited)?;
        let deploy = Deploy {
            pid_file: None,
            upgrade_timeout: None,
            program,
            args: args.collect(),
            #[cfg(unix)]
            inherited,
            #[cfg(unix)]
            notifier: notify::Notifier::from_env(),
            #[cfg(unix)]
            usr2: None,
        };
        deploy.notify("STATUS=starting");
        Ok(deploy)
    }

    /// Writes the serving process's PID to `path` once it is ready; a successor
    /// rewrites it, and it is removed at exit by the process it names. Default: none.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// Upgrades on SIGUSR2: start the program again, hand it the listener, drain once
    /// it is ready, or kill it and keep serving if it is not ready within `timeout`.
    /// Default: off (SIGUSR2 keeps its default action, which ends the process).
    pub fn upgrade_on_sigusr2(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = Some(timeout);
        self
    }

    /// Whether this process was started by an upgrade and will tell its predecessor
    /// when it is ready.
    pub fn is_upgrade(&self) -> bool {
        #[cfg(unix)]
        return self.inherited.handshake.is_some();
        #[cfg(not(unix))]
        false
    }

    /// The listening socket: the inherited one if there is one (then `addr` and
    /// `backlog` are not used), else `addr` bound with `backlog`. Give it to
    /// [`ServerBuilder::listener`](crate::ServerBuilder::listener).
    ///
    /// # Errors
    /// [`DeployError::Bind`] if `addr` cannot be bound; [`DeployError::Setup`] if
    /// upgrades were asked for and SIGUSR2 cannot be caught.
    pub fn listen(&mut self, addr: SocketAddr, backlog: u32) -> Result<TcpListener, DeployError> {
        let bind_error = |source| DeployError::Bind { addr, source };
        #[cfg(unix)]
        let inherited = self.inherited.listener.take();
        #[cfg(not(unix))]
        let inherited: Option<TcpListener> = None;
        let listener = match inherited {
            Some(listener) => {
                log::info!(
                    "serving the inherited socket {}",
                    listener
                        .local_addr()
                        .map_or_else(|err| err.to_string(), |a| a.to_string())
                );
                listener
            }
            None => crate::server::bind(addr, backlog).map_err(bind_error)?,
        };
        if self.upgrade_timeout.is_some() {
            self.catch_sigusr2()?;
        }
        Ok(listener)
    }

    /// Catches SIGUSR2 now, before the server says it is ready: its default action
    /// would end the process.
    #[cfg(unix)]
    fn catch_sigusr2(&mut self) -> Result<(), DeployError> {
        if self.usr2.is_none() {
            let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR2])
                .map_err(DeployError::Setup)?;
            self.usr2 = Some(signals);
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn catch_sigusr2(&mut self) -> Result<(), DeployError> {
        log::warn!("upgrades on SIGUSR2 are not supported on this platform");
        Ok(())
    }

    /// `server` is listening and announced: write the pid file, tell the service
    /// manager (`READY=1`) and the process this one upgrades (which then drains), and
    /// start watching for SIGUSR2, which hands `server`'s listening socket on. When `life`'s shutdown begins, the service manager
    /// is told `STOPPING=1` and given the rest of the budget (`EXTEND_TIMEOUT_USEC`),
    /// so a unit's stop timeout never kills a drain that is within it.
    ///
    /// # Errors
    /// [`DeployError::PidFile`] if the pid file cannot be written;
    /// [`DeployError::Setup`] if the watching thread cannot start.
    pub fn ready(
        mut self,
        server: &ServerHandle,
        life: &mut Lifecycle,
    ) -> Result<Deployed, DeployError> {
        let pid_file = match &self.pid_file {
            Some(path) => Some(PidFile::write(path).map_err(|source| DeployError::PidFile {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let serving = format!("serving on {}", server.local_addr());
        self.notify(&format!("READY=1\nSTATUS={serving}"));
        self.tell_predecessor();
        let shutdown = life.shutdown().clone();
        let budget = life.budget();
        #[cfg(unix)]
        {
            let notifier = self.notifier.clone();
            let stopping = shutdown.clone();
            life.on_cleanup("notify", Duration::from_secs(1), move || {
                // After a handover the successor's status is the service's.
                if stopping.reason() != Some(Reason::Upgrade) {
                    notifier.send("STATUS=cleanup: closing resources");
                }
                Ok(())
            });
        }
        let watcher = self.watch(server.listening_socket(), shutdown.clone(), budget, serving)?;
        Ok(Deployed {
            pid_file,
            watcher,
            #[cfg(unix)]
            notifier: self.notifier.clone(),
        })
    }

    #[cfg(unix)]
    fn tell_predecessor(&mut self) {
        use std::io::Write;
        if let Some(mut channel) = self.inherited.handshake.take() {
            match channel.write_all(upgrade::READY) {
                Ok(()) => log::info!("upgrade: told the previous process we are ready"),
                Err(err) => log::warn!("upgrade: cannot tell the previous process: {err}"),
            }
        }
    }

    #[cfg(not(unix))]
    fn tell_predecessor(&mut self) {}

    fn notify(&self, lines: &str) {
        #[cfg(unix)]
        self.notifier.send(lines);
        #[cfg(not(unix))]
        let _ = lines;
    }

    /// Starts the thread that turns SIGUSR2 into upgrades and the start of the
    /// shutdown into `STOPPING=1`.
    #[cfg(unix)]
    fn watch(
        &mut self,
        listener: Weak<TcpListener>,
        shutdown: Shutdown,
        budget: Duration,
        serving: String,
    ) -> Result<Option<Watcher>, DeployError> {
        let requests = match self.usr2.take() {
            Some(signals) => Some(watch::forward_signals(signals, &shutdown)?),
            None => None,
        };
        let upgrader = match (&self.program, self.upgrade_timeout) {
            (Some(program), Some(timeout)) => Some(upgrade::Upgrader {
                program: program.clone(),
                args: self.args.clone(),
                listener,
                timeout,
            }),
            _ => None,
        };
        let notifier = self.notifier.clone();
        let (upgrades, handle) = match requests {
            Some((upgrades, handle)) => (upgrades, Some(handle)),
            None => (crossbeam_channel::never(), None),
        };
        let watching = shutdown.clone();
        thread::Builder::new()
            .name("lameduck-deploy".into())
            .spawn(move || {
                let stage = watch::Stage {
                    shutdown: watching,
                    notifier,
                    upgrader,
                    serving,
                };
                stage.run(&upgrades, budget);
            })
            .map_err(DeployError::Setup)?;
        Ok(handle.map(|handle| Watcher { signals: handle }))
    }

    #[cfg(not(unix))]
    fn watch(
        &mut self,
        _listener: Weak<TcpListener>,
        _shutdown: Shutdown,
        _budget: Duration,
        _serving: String,
    ) -> Result<Option<Watcher>, DeployError> {
        Ok(None)
    }
}

/// The program to start on an upgrade: `argv[0]` as the process was started (made
/// absolute), so a deploy that replaced the file or moved a symlink runs the new
/// version; the running executable's path only when `argv[0]` was found on `PATH`.
fn program_path(argv0: &OsString) -> Option<PathBuf> {
    let given = Path::new(argv0);
    if given.components().count() > 1 {
        return std::env::current_dir().ok().map(|dir| dir.join(given));
    }
    std::env::current_exe().ok()
}

/// What keeps watching after [`Deploy::ready`].
#[derive(Debug)]
struct Watcher {
    #[cfg(unix)]
    signals: signal_hook::iterator::Handle,
}

/// A process that is serving and known to the service manager; [`Deployed::finish`]
/// closes the books at exit.
#[derive(Debug)]
#[must_use = "call `finish` at exit to remove the pid file and report the stop"]
pub struct Deployed {
    pid_file: Option<PidFile>,
    watcher: Option<Watcher>,
    #[cfg(unix)]
    notifier: notify::Notifier,
}

impl Deployed {
    /// Tells the service manager the process has stopped (unless it handed over to a
    /// successor, which is the service now), removes the pid file if it still names
    /// this process, and stops watching for SIGUSR2.
    pub fn finish(mut self, report: &LifecycleReport) {
        if report.reason != Reason::Upgrade {
            #[cfg(unix)]
            self.notifier.send(&format!(
                "STATUS=stopped: {}",
                report.to_string().replace('\n', " ")
            ));
        }
        self.close();
    }

    fn close(&mut self) {
        if let Some(pid_file) = self.pid_file.take() {
            pid_file.remove();
        }
        if let Some(watcher) = self.watcher.take() {
            #[cfg(unix)]
            watcher.signals.close();
            #[cfg(not(unix))]
            drop(watcher);
        }
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        self.close();
    }
}
