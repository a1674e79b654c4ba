//! The async twin: lameduck's echo server rebuilt on tokio, as a tokio user would write
//! it (multi-thread runtime, one task per connection, `tokio::signal`, a `watch`
//! channel as the shutdown broadcast, a `JoinSet` that owns every connection task).
//! It keeps the same contract (the `listening on` line, echo protocol, drain
//! with goodbye and graceful close, deadline, second-signal escalation, report line,
//! exit codes) so the benchmark compares two implementations of one behaviour, not a
//! server against a strawman. The bench binary runs it in a child process of its own
//! (`--serve-twin`) so its CPU time and memory can be read from `/proc/<pid>`.

mod conn;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What every connection task is told through the `watch` channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    Draining,
}

/// Options of the twin, with lameduck's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub drain_timeout: Duration,
    pub max_line: usize,
    pub linger: Duration,
    pub goodbye: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            drain_timeout: Duration::from_secs(30),
            max_line: 64 * 1024,
            linger: Duration::from_secs(1),
            goodbye: "Server is shutting down. Goodbye!".to_string(),
        }
    }
}

impl Config {
    /// Parses the twin's options (everything after `--serve-twin`). Unknown options are
    /// an error so a typo in the bench does not silently run with defaults.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let mut cfg = Config::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--addr" => {
                    let v = value()?;
                    cfg.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
                }
                "--drain-timeout" => cfg.drain_timeout = parse_duration(&value()?)?,
                "--linger" => cfg.linger = parse_duration(&value()?)?,
                "--max-line" => {
                    let v = value()?;
                    cfg.max_line = v.parse().map_err(|e| format!("--max-line {v}: {e}"))?;
                }
                "--goodbye" => cfg.goodbye = value()?,
                // cargo passes `--bench` to every harness-less bench binary.
                "--bench" => {}
                other => return Err(format!("unknown twin option {other}")),
            }
        }
        Ok(cfg)
    }
}

/// Parses `250ms`, `30s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |e: std::num::ParseIntError| format!("bad duration {s}: {e}");
    if let Some(ms) = s.strip_suffix("ms") {
        Ok(Duration::from_millis(ms.parse().map_err(bad)?))
    } else {
        let secs = s.strip_suffix('s').unwrap_or(s);
        Ok(Duration::from_secs(secs.parse().map_err(bad)?))
    }
}

/// How the drain ended; decides the `outcome=` field and the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Clean,
    Deadline,
    Forced,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Deadline => "deadline",
            Outcome::Forced => "forced",
        }
    }

    fn exit_code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Deadline => 124,
            Outcome::Forced => 130,
        }
    }
}

/// Entry point of `--serve-twin`: builds the runtime, serves, prints the report.
pub fn main(args: &[String]) -> ExitCode {
    let cfg = match Config::from_args(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("twin: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("twin-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twin: cannot build the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match rt.block_on(serve(cfg)) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            eprintln!("twin: {e}");
            1
        }
    };
    // Aborted tasks are already gone; do not let a stuck one hold the exit.
    rt.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

/// The three signals the contract drains on, merged into one stream.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Same backlog as a stock lameduck listener: a burst of 1000 connects must queue,
    // not be dropped, while the acceptor catches up.
    socket.listen(1024)
}

async fn serve(cfg: Config) -> io::Result<Outcome> {
    let listener = bind(cfg.addr)?;
    // Handlers first, then the line: a signal sent right after `listening on` drains.
    let mut signals = Signals::install()?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
    }

    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let spawn = |tasks: &mut JoinSet<()>, stream: tokio::net::TcpStream| {
        tasks.spawn(conn::serve(stream, phase_rx.clone(), cfg.clone()));
    };

    loop {
        tokio::select! {
            biased;
            _ = signals.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => spawn(&mut tasks, stream),
                // Out of descriptors or a connection reset while queued: the listener
                // is fine; back off a moment so EMFILE does not spin a core.
                Err(e) => {
                    eprintln!("twin: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap finished connections so the set does not keep their results forever.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }

    let drain_start = Instant::now();
    // Closing a listener resets whatever waits in its backlog, so take those first.
    // The reactor's readiness may lag the kernel's accept queue; ask the kernel
    // directly on the std listener until it says WouldBlock.
    let std_listener = listener.into_std()?;
    std_listener.set_nonblocking(true)?;
    loop {
        match std_listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                spawn(&mut tasks, tokio::net::TcpStream::from_std(stream)?);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A connection that died in the queue; the rest of the backlog still counts.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                eprintln!("twin: accept while draining: {e}");
                break;
            }
        }
    }
    drop(std_listener);

    // Every task sees the change at its next await point.
    let _ = phase_tx.send(Phase::Draining);
    let deadline = tokio::time::Instant::from_std(drain_start + cfg.drain_timeout);
    let mut drained = 0u64;
    let mut last_close = drain_start;
    let outcome = loop {
        tokio::select! {
            biased;
            _ = signals.recv() => break Outcome::Forced,
            _ = tokio::time::sleep_until(deadline) => break Outcome::Deadline,
            joined = tasks.join_next() => match joined {
                None => break Outcome::Clean,
                Some(result) => {
                    if let Err(e) = result {
                        eprintln!("twin: connection task failed: {e}");
                    }
                    drained += 1;
                    last_close = Instant::now();
                }
            },
        }
    };
    let forced = tasks.len() as u64;
    if forced > 0 {
        // Dropping the sockets is the force-close; aborted tasks end at their next
        // await, so this wait is short and bounded anyway.
        tasks.abort_all();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        last_close = Instant::now();
    }
    let outcome = if outcome == Outcome::Deadline && forced == 0 {
        Outcome::Clean
    } else {
        outcome
    };
    let drain_ms = last_close.duration_since(drain_start).as_millis();
    let total_ms = drain_start.elapsed().as_millis();
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "stopped reason=signal outcome={} drained={drained} forced={forced} refused_busy=0 \
         detached_threads=0 drain_ms={drain_ms} total_ms={total_ms}",
        outcome.name()
    )?;
    out.flush()?;
    Ok(outcome)
}
