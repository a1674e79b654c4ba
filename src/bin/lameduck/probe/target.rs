//! The server under test: started by the probe as `sh -c 'exec CMD'`, its address found
//! (the `listening on` line, or a `{port}` the probe chose), its exit and CPU time
//! watched through `/proc`, and killed by PID whatever happens.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// Why a server could not be probed; the text is the one line the user reads.
pub type TargetError = String;

/// How often the watcher looks at the server's `/proc` entry for its exit: the
/// resolution of the signal → exit time.
const WATCH: Duration = Duration::from_millis(5);

/// A running server, killed by PID when dropped unless it was seen to exit.
pub struct Target {
    pub pid: u32,
    pub addr: SocketAddr,
    exit: Receiver<Exit>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    exited: Option<Exit>,
}

/// How the server ended.
#[derive(Clone, Debug)]
pub struct Exit {
    /// When the watcher first saw it gone.
    pub at: Instant,
    pub status: Option<ExitStatus>,
    /// utime + stime of the whole process, in seconds, read just before it was
    /// reaped (a zombie keeps them).
    pub cpu_s: Option<f64>,
}

/// utime + stime of `pid` (`None`: this process) in clock ticks, and its state letter.
pub fn cpu_ticks(pid: Option<u32>) -> Option<(u64, char)> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = fs::read_to_string(path).ok()?;
    // The command name in parentheses may hold spaces: count fields after it.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime, state))
}

/// Clock ticks per second for `/proc/<pid>/stat` (100 where `getconf` is missing).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|tck| *tck > 0.0)
        .unwrap_or(100.0)
}

/// Sends `kill -<signal> <pid>`.
pub fn kill(signal: &str, pid: u32) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A free loopback port, for `{port}`: bound and released at once.
fn free_port() -> Result<u16, TargetError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

/// Reads lines from `stream` into a channel (stdout) or a short tail (stderr), to the
/// end, so the server never blocks on a full pipe.
fn pump(
    stream: impl Read + Send + 'static,
    lines: Option<crossbeam_channel::Sender<String>>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let _ = thread::Builder::new()
        .name("probe-pump".into())
        .spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(tx) = &lines {
                    let _ = tx.send(line);
                } else if let Ok(mut tail) = tail.lock() {
                    if tail.len() == 5 {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        });
}

/// Watches the child's `/proc` entry until it is a zombie (or gone), keeps its CPU
/// time from then, reaps it, and reports the exit once.
fn watch(mut child: Child, tck: f64) -> Receiver<Exit> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let pid = child.id();
    let spawned = thread::Builder::new()
        .name("probe-watch".into())
        .spawn(move || {
            let mut last = None;
            while let Some((ticks, state)) = cpu_ticks(Some(pid)) {
                last = Some(ticks);
                if state == 'Z' || state == 'X' {
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(WATCH);
            }
            let at = Instant::now();
            let status = child.wait().ok();
            let _ = tx.send(Exit {
                at,
                status,
                cpu_s: last.map(|ticks| ticks as f64 / tck),
            });
        });
    if spawned.is_err() {
        // No watcher: the caller sees no exit and kills by PID at its deadline.
        let _ = kill("KILL", pid);
    }
    rx
}

impl Target {
    /// Starts `cmd` and finds its address within `startup`.
    pub fn start(cmd: &str, startup: Duration) -> Result<Target, TargetError> {
        let port = if cmd.contains("{port}") {
            Some(free_port()?)
        } else {
            None
        };
        let line = match port {
            Some(port) => cmd.replace("{port}", &port.to_string()),
            None => cmd.to_string(),
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {line}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run sh -c {line:?}: {err}"))?;
        let pid = child.id();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (stdout_tx, stdout) = crossbeam_channel::unbounded();
        if let Some(out) = child.stdout.take() {
            pump(out, Some(stdout_tx), Arc::clone(&tail));
        }
        if let Some(err) = child.stderr.take() {
            pump(err, None, Arc::clone(&tail));
        }
        let exit = watch(child, clk_tck());
        let mut target = Target {
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0))),
            exit,
            stderr_tail: tail,
            exited: None,
        };
        let deadline = Instant::now() + startup;
        match port {
            Some(_) => target.wait_connectable(deadline)?,
            None => {
                target.addr = target.listening_line(&stdout, deadline)?;
                // The rest of stdout is read and dropped by a thread of its own.
                let _ = thread::Builder::new()
                    .name("probe-stdout".into())
                    .spawn(move || for _ in stdout.iter() {});
            }
        }
        if !target.addr.ip().is_loopback() {
            return Err(format!(
                "{} is not a loopback address: the probe only connects to 127.0.0.0/8 or ::1",
                target.addr
            ));
        }
        Ok(target)
    }

    fn listening_line(
        &mut self,
        stdout: &Receiver<String>,
        deadline: Instant,
    ) -> Result<SocketAddr, TargetError> {
        let line = match stdout.recv_deadline(deadline) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(self.failure(
                    "printed no `listening on` line in time (use {port} if it prints none)",
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(self.failure("closed stdout before a `listening on` line"))
            }
        };
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            return Err(self.failure(&format!(
                "first stdout line is {line:?}, not `listening on <ip:port>` (use {{port}} instead)"
            )));
        };
        addr.trim()
            .parse()
            .map_err(|_| self.failure(&format!("cannot parse the address in {line:?}")))
    }

    /// With `{port}`: the server is ready once a connect succeeds (tried every 20 ms).
    fn wait_connectable(&mut self, deadline: Instant) -> Result<(), TargetError> {
        loop {
            if self.poll_exit().is_some() {
                return Err(self.failure("exited before it accepted a connection"));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(
                    self.failure(&format!("accepted no connection on {} in time", self.addr))
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The error line for a server that could not be probed, with its last words.
    fn failure(&mut self, what: &str) -> TargetError {
        let exit = match self.poll_exit() {
            Some(exit) => format!(" (exit status {})", status_text(exit.status.as_ref())),
            None => String::new(),
        };
        let last = self
            .stderr_tail
            .lock()
            .ok()
            .and_then(|tail| tail.back().cloned())
            .map(|line| format!("; its last stderr line: {line}"))
            .unwrap_or_default();
        format!("the server {what}{exit}{last}")
    }

    /// The exit, if it has happened.
    pub fn poll_exit(&mut self) -> Option<&Exit> {
        if self.exited.is_none() {
            self.exited = self.exit.try_recv().ok();
        }
        self.exited.as_ref()
    }

    /// Waits for the exit until `deadline`.
    pub fn wait_exit(&mut self, deadline: Instant) -> Option<Exit> {
        if self.exited.is_none() {
            self.exited = self.exit.recv_deadline(deadline).ok();
        }
        self.exited.clone()
    }

    /// Kills the server by PID (SIGKILL) and waits for the watcher to reap it.
    pub fn kill_now(&mut self) -> Option<Exit> {
        if self.poll_exit().is_none() {
            kill("KILL", self.pid);
        }
        self.wait_exit(Instant::now() + Duration::from_secs(10))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.poll_exit().is_none() {
            kill("KILL", self.pid);
        }
    }
}

/// `0`, `1`, `killed by signal 9`.
pub fn status_text(status: Option<&ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "unknown".to_string(),
        },
        None => "unknown".to_string(),
    }
}
