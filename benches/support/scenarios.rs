//! The scenarios, identical for both contenders: a throughput run at C connections
//! (server CPU and memory read from `/proc` at the edges of the measured window), and
//! the shutdown trials (SIGTERM to an idle server, to one with idle clients parked on
//! it, and mid-load with 64 busy connections). Each phase is bounded by a deadline; a
//! server that hangs is reported as a failure and killed when its handle drops.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use crate::loadgen::{self, Mode, Plan, Stats, Until};
use crate::support::procfs;
use crate::support::server::{ServerProc, ServerSpec};

/// How long the server gets to print `listening on`.
const STARTUP: Duration = Duration::from_secs(10);
/// How long a server gets from SIGTERM to exit once its clients are gone.
const STOP: Duration = Duration::from_secs(15);

/// Durations of one throughput run.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Connects and warm-up before the window (C = 1000 needs its connects done).
    pub warmup: Duration,
    pub measure: Duration,
}

/// One throughput run of one contender at one C.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Server CPU over the window, in % of one core.
    pub server_cpu: f64,
    /// Load generator (this process) CPU over the window, in % of one core.
    pub loadgen_cpu: f64,
    /// Everything else the machine ran over the window (other builds on a shared
    /// machine), in % of one core: a run with much of it is a noisy run.
    pub other_cpu: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub unserved: u64,
    pub first_reply_p99_ms: f64,
    pub stats: Stats,
    pub server_cpus: BTreeSet<u32>,
    pub loadgen_cpus: BTreeSet<u32>,
    /// The server's `stopped ...` line and the last lines of its stderr, for the
    /// progress log when a run went wrong (unserved clients, errors).
    pub report: String,
    pub stderr_tail: String,
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        thread::sleep(d);
    }
}

/// Runs C closed-loop clients against a fresh server for `timing`, then stops it.
pub fn throughput(
    spec: &ServerSpec,
    conns: usize,
    timing: Timing,
    loadgen_threads: usize,
    tck: u64,
) -> Result<Throughput, String> {
    let mut server = ServerProc::start(spec, STARTUP)?;
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + timing.warmup;
    let measure_to = measure_from + timing.measure;
    let plan = Plan {
        conns,
        threads: loadgen_threads,
        mode: Mode::ClosedLoop,
        until: Until::WindowEnd,
        start,
        measure_from,
        measure_to,
        deadline: measure_to + Duration::from_secs(2),
        stall: Duration::from_secs(1),
        served_tx: None,
    };
    let load = loadgen::spawn(server.addr, plan).map_err(|e| format!("loadgen: {e}"))?;

    sleep_until(measure_from);
    let s0 = procfs::cpu_ticks(Some(server.pid));
    let l0 = procfs::cpu_ticks(None);
    let m0 = procfs::machine_busy_ticks();
    let t0 = Instant::now();
    sleep_until(measure_from + timing.measure / 2);
    let server_cpus = procfs::thread_cpus(Some(server.pid));
    let loadgen_cpus = procfs::thread_cpus(None);
    sleep_until(measure_to);
    let s1 = procfs::cpu_ticks(Some(server.pid));
    let l1 = procfs::cpu_ticks(None);
    let m1 = procfs::machine_busy_ticks();
    let window = t0.elapsed().as_secs_f64();
    let rss_kib = procfs::status_kib(server.pid, "VmRSS:").unwrap_or(0);
    let hwm_kib = procfs::status_kib(server.pid, "VmHWM:").unwrap_or(0);

    let stats = load.join().map_err(|e| format!("loadgen: {e}"))?;
    // The drain after a throughput run is not measured, only required to work.
    let (_exit, report) = server.stop(STOP)?;
    let stderr_tail = server.stderr_tail();

    let pct = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if window > 0.0 => (b - a) as f64 / tck as f64 / window * 100.0,
        _ => 0.0,
    };
    Ok(Throughput {
        rps: stats.replies_in_window as f64 / timing.measure.as_secs_f64(),
        p50_us: stats.latency_us(0.50),
        p99_us: stats.latency_us(0.99),
        p999_us: stats.latency_us(0.999),
        server_cpu: pct(s0, s1),
        loadgen_cpu: pct(l0, l1),
        other_cpu: (pct(m0, m1) - pct(s0, s1) - pct(l0, l1)).max(0.0),
        rss_kib,
        hwm_kib,
        unserved: stats.unserved,
        first_reply_p99_ms: stats.first_reply_ms(0.99),
        stats,
        server_cpus,
        loadgen_cpus,
        report,
        stderr_tail,
    })
}

/// What kind of shutdown trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownKind {
    /// No clients at all.
    Idle,
    /// N clients that sent one ping, got the reply, and sit idle.
    IdleClients(usize),
    /// N closed-loop clients, SIGTERM mid-load.
    UnderLoad(usize),
}

impl ShutdownKind {
    pub fn name(self) -> String {
        match self {
            ShutdownKind::Idle => "idle, no clients".to_string(),
            ShutdownKind::IdleClients(n) => format!("{n} idle clients"),
            ShutdownKind::UnderLoad(n) => format!("drain under {n}-conn load"),
        }
    }

    pub fn conns(self) -> usize {
        match self {
            ShutdownKind::Idle => 0,
            ShutdownKind::IdleClients(n) | ShutdownKind::UnderLoad(n) => n,
        }
    }
}

/// One shutdown trial.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// SIGTERM (just before `kill(1)` starts) → the server process has exited.
    pub exit_ms: f64,
    pub exit_code: Option<i32>,
    pub stats: Stats,
    pub report: String,
}

/// Starts a server, puts `kind`'s clients on it, sends SIGTERM after `load_for` (under
/// load) and follows every connection to its end.
pub fn shutdown(
    spec: &ServerSpec,
    kind: ShutdownKind,
    load_for: Duration,
) -> Result<Shutdown, String> {
    let mut server = ServerProc::start(spec, STARTUP)?;
    let conns = kind.conns();
    let (served_tx, served_rx) = crossbeam_channel::unbounded();
    let load = if conns > 0 {
        let start = Instant::now();
        let plan = Plan {
            conns,
            threads: 1,
            mode: match kind {
                ShutdownKind::UnderLoad(_) => Mode::ClosedLoop,
                _ => Mode::PingOnce,
            },
            until: Until::AllClosed,
            start,
            // Latency is not the point here; count every reply.
            measure_from: start,
            measure_to: start + Duration::from_secs(3600),
            deadline: start + STARTUP + load_for + STOP,
            stall: Duration::from_secs(1),
            served_tx: Some(served_tx),
        };
        Some(loadgen::spawn(server.addr, plan).map_err(|e| format!("loadgen: {e}"))?)
    } else {
        drop(served_tx);
        None
    };
    // Every client must be served (accepted and answered) before the signal, or the
    // trial would measure the accept queue instead of the drain.
    let ready_by = Instant::now() + STARTUP;
    for i in 0..conns {
        if served_rx.recv_deadline(ready_by).is_err() {
            return Err(format!(
                "{}: only {i} of {conns} clients served within {STARTUP:?}",
                spec.label
            ));
        }
    }
    if matches!(kind, ShutdownKind::UnderLoad(_)) {
        thread::sleep(load_for);
    }
    let signalled = server
        .signal("TERM")
        .map_err(|e| format!("{}: SIGTERM: {e}", spec.label))?;
    let deadline = signalled + STOP;
    let exit = server.wait_exit(deadline);
    let stats = match load {
        Some(load) => load.join().map_err(|e| format!("loadgen: {e}"))?,
        None => Stats::new(),
    };
    let Some(exit) = exit else {
        return Err(format!(
            "{}: did not exit within {STOP:?} of SIGTERM; stderr:\n{}",
            spec.label,
            server.stderr_tail()
        ));
    };
    let report = server.report(deadline).unwrap_or_default();
    Ok(Shutdown {
        exit_ms: exit.at.duration_since(signalled).as_secs_f64() * 1000.0,
        exit_code: exit.code,
        stats,
        report,
    })
}
