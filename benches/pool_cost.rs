//! What the pool's limit costs: `lameduck echo --workers 1000` against `--workers 4`,
//! in the same run, several runs each, medians. Workers start as connections need
//! them, so the limit itself should cost neither memory nor shutdown time:
//!
//! - SIGTERM → exit of a fresh, idle server, and its RSS at start;
//! - after a peak of 1000 concurrent connections that have all closed: SIGTERM →
//!   exit at once (the peak's workers are still idle), and once those workers have
//!   ended on their own (the idle timeout, 10 s by default), with the RSS then;
//! - connect → first reply: back to back (a worker is idle each time), and with every
//!   earlier client held open, so that each connection starts a thread of its own.
//!
//! `--before PATH` measures another `lameduck` binary the same way in the same run,
//! interleaved (the previous commit's, say: `git worktree add`, `cargo build
//! --release`), so old and new are compared on the same machine at the same time.
//! Every SIGTERM is sent with kill(1), whose own start (~1 ms) is in every exit time:
//! its median is printed so it can be subtracted.
//!
//! ```text
//! cargo bench --bench pool_cost                  # 5 runs, a few minutes
//! cargo bench --bench pool_cost -- --quick       # 2 runs, no wait for the idle timeout
//! cargo bench --bench pool_cost -- --before /path/to/old/lameduck
//! ```
#![forbid(unsafe_code)]

// The process and /proc parts of thread_vs_task's harness; the rest of it is unused here.
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use server::{ServerProc, ServerSpec};

const PATIENCE: Duration = Duration::from_secs(30);
/// The peak: this many clients connected at once.
const PEAK: usize = 1000;
/// Clients held open one after another, each starting a worker.
const HELD: usize = 200;
/// Clients served back to back.
const BACK_TO_BACK: usize = 500;

const USAGE: &str = "\
pool_cost: lameduck --workers 1000 vs --workers 4, same run

usage: cargo bench --bench pool_cost -- [--quick] [--runs N] [--before PATH]

  --quick        2 runs, and no wait for idle workers to end
  --runs N       runs of every scenario for every server [5]
  --before PATH  also measure this lameduck binary (e.g. the previous commit's)
";

struct Options {
    runs: usize,
    retire: bool,
    before: Option<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        runs: 5,
        retire: true,
        before: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                options.runs = 2;
                options.retire = false;
            }
            "--runs" => {
                let value = args.next().ok_or("--runs needs a value")?;
                options.runs = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--runs {value}: not a positive number"))?;
            }
            "--before" => {
                options.before = Some(args.next().ok_or("--before needs a path")?.clone())
            }
            // What cargo passes to every bench target.
            "--bench" => {}
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

/// One server to measure: a binary and its worker limit.
struct Contender {
    spec: ServerSpec,
    workers: usize,
    /// Whether its idle workers end on their own (not the previous commit's).
    retires: bool,
}

impl Contender {
    fn new(label: &str, program: &str, workers: usize, retires: bool) -> Contender {
        let workers_arg = workers.to_string();
        let args = [
            "echo",
            "--addr",
            "127.0.0.1:0",
            "--workers",
            &workers_arg,
            // Room for the whole peak, whatever the limit: nobody is refused.
            "--queue",
            "1000",
        ];
        Contender {
            spec: ServerSpec {
                label: format!("{label} --workers {workers}"),
                program: program.into(),
                args: args.iter().map(|arg| arg.to_string()).collect(),
                workers: Some(workers),
            },
            workers,
            retires,
        }
    }

    fn start(&self) -> ServerProc {
        ServerProc::start(&self.spec, PATIENCE).unwrap_or_else(|err| panic!("{err}"))
    }
}

/// Every figure of one run of one contender.
#[derive(Default)]
struct Figures {
    fresh_exit: Vec<Duration>,
    fresh_rss_kib: Vec<u64>,
    fresh_workers: Vec<usize>,
    peak_exit: Vec<Duration>,
    retired_exit: Vec<Duration>,
    retired_rss_kib: Vec<u64>,
    retire_wait: Vec<Duration>,
    back_to_back_p50: Vec<Duration>,
    held_p50: Vec<Duration>,
    peak_p50: Vec<Duration>,
    kill_overhead: Vec<Duration>,
}

fn status(server: &ServerProc, key: &str) -> u64 {
    procfs::status_kib(server.pid, key).unwrap_or_else(|| panic!("{key} of {}", server.pid))
}

/// Sends SIGTERM and times it to the process's exit.
fn time_shutdown(mut server: ServerProc) -> Duration {
    let signalled = server.signal("TERM").unwrap_or_else(|err| panic!("{err}"));
    let exit = server
        .wait_exit(signalled + PATIENCE)
        .unwrap_or_else(|| panic!("{} did not exit within {PATIENCE:?}", server.label));
    exit.at - signalled
}

/// What kill(1) alone takes to start and signal (`kill -0` checks, sends nothing).
fn kill_overhead(server: &ServerProc) -> Duration {
    let started = Instant::now();
    let status = Command::new("kill")
        .arg("-0")
        .arg(server.pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -0 {}", server.pid);
    started.elapsed()
}

/// One client: connect, send a line, wait for its echo; returns the time it took and
/// the open connection.
fn first_reply(addr: SocketAddr, i: usize) -> (Duration, TcpStream) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
        .write_all(format!("n{i}\n").as_bytes())
        .expect("write");
    let mut reply = [0u8; 64];
    let mut got = 0;
    while !reply[..got].ends_with(b"\r\n") {
        let n = stream.read(&mut reply[got..]).expect("reply");
        assert!(n > 0, "EOF before the first reply");
        got += n;
    }
    (started.elapsed(), stream)
}

fn median<T: Copy + Ord>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// A connection of the peak, driven by one poll loop.
struct PeakClient {
    stream: mio::net::TcpStream,
    started: Instant,
    sent: bool,
    reply: Vec<u8>,
}

impl PeakClient {
    /// Acts on a readiness event: sends the line once connected, reads the echo.
    /// Returns the connect → reply time once the whole echo is in.
    fn on_event(&mut self, event: &mio::event::Event) -> io::Result<Option<Duration>> {
        if !self.sent && event.is_writable() {
            match self.stream.write(b"hello\n") {
                Ok(6) => self.sent = true,
                Ok(_) => return Err(io::Error::other("a 6-byte line written in part")),
                // Not connected yet: the next writable event says when.
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == ErrorKind::NotConnected => {}
                Err(err) => return Err(err),
            }
        }
        if event.is_readable() {
            let mut buf = [0u8; 64];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return Err(io::Error::other("EOF before the echo")),
                    Ok(got) => self.reply.extend_from_slice(&buf[..got]),
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(self
            .reply
            .ends_with(b"\r\n")
            .then(|| self.started.elapsed()))
    }
}

/// `n` clients connected at once: each sends a line as soon as it is connected and
/// closes once it has the echo. Returns each client's connect → reply time.
fn peak(addr: SocketAddr, n: usize) -> io::Result<Vec<Duration>> {
    let mut poll = Poll::new()?;
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = mio::net::TcpStream::connect(addr)?;
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry().register(&mut stream, Token(i), both)?;
        clients.push(Some(PeakClient {
            stream,
            started: Instant::now(),
            sent: false,
            reply: Vec::new(),
        }));
    }
    let mut times = Vec::with_capacity(n);
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + PATIENCE;
    while times.len() < n {
        if Instant::now() >= deadline {
            let answered = times.len();
            let err = format!("{answered} of {n} clients answered within {PATIENCE:?}");
            return Err(io::Error::other(err));
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in &events {
            let slot = &mut clients[event.token().0];
            let Some(client) = slot.as_mut() else {
                continue;
            };
            if let Some(took) = client.on_event(event)? {
                times.push(took);
                // Closing it frees its worker, which stays idle.
                *slot = None;
            }
        }
    }
    Ok(times)
}

/// The server's worker threads alive: those named `lameduck-worker-N` (the kernel
/// keeps the first 15 bytes of a name, which is all of `lameduck-worker`).
fn workers_alive(server: &ServerProc) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", server.pid)) else {
        panic!("{}: no /proc/{}/task", server.label, server.pid);
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("lameduck-worker"))
        .count()
}

/// Polls /proc until none of the server's workers is left: there is no event to wait
/// on from outside the process. Returns how long that took.
fn wait_workers_ended(server: &ServerProc) -> Duration {
    let started = Instant::now();
    while workers_alive(server) > 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "{}: idle workers still alive after {PATIENCE:?}",
            server.label
        );
        // The polling interval of the observation above, not synchronisation.
        thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// One run of every scenario for one contender.
fn run(contender: &Contender, retire: bool, figures: &mut Figures) {
    // A fresh server: nothing served.
    let server = contender.start();
    figures.fresh_workers.push(workers_alive(&server));
    figures.fresh_rss_kib.push(status(&server, "VmRSS:"));
    figures.kill_overhead.push(kill_overhead(&server));
    figures.fresh_exit.push(time_shutdown(server));

    // The peak, then SIGTERM at once: its workers are all still there, idle.
    let server = contender.start();
    let times = peak(server.addr, PEAK).unwrap_or_else(|err| panic!("{}: {err}", server.label));
    figures.peak_p50.push(median(&times));
    figures.peak_exit.push(time_shutdown(server));

    // The peak, then SIGTERM once the idle workers have ended on their own.
    if retire && contender.retires {
        let server = contender.start();
        peak(server.addr, PEAK).unwrap_or_else(|err| panic!("{}: {err}", server.label));
        figures.retire_wait.push(wait_workers_ended(&server));
        figures.retired_rss_kib.push(status(&server, "VmRSS:"));
        figures.retired_exit.push(time_shutdown(server));
    }

    // Latency: back to back, then each client held open so each starts a worker.
    let server = contender.start();
    let times: Vec<_> = (0..BACK_TO_BACK)
        .map(|i| first_reply(server.addr, i).0)
        .collect();
    figures.back_to_back_p50.push(median(&times));
    drop(server);
    if contender.workers >= HELD {
        let server = contender.start();
        let (times, held): (Vec<_>, Vec<_>) =
            (0..HELD).map(|i| first_reply(server.addr, i)).unzip();
        figures.held_p50.push(median(&times));
        drop(held);
        drop(server);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// A cell: the median of the runs, or a dash when the scenario did not run.
fn cell<T: Copy + Ord>(values: &[T], show: impl Fn(T) -> String) -> String {
    if values.is_empty() {
        "—".into()
    } else {
        show(median(values))
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn print_table(contenders: &[Contender], figures: &[Figures], runs: usize) {
    println!(
        "| median of {runs} | {} |",
        contenders
            .iter()
            .map(|c| c.spec.label.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(contenders.len()));
    type Row = (&'static str, fn(&Figures) -> String);
    let rows: [Row; 11] = [
        ("SIGTERM → exit, fresh and idle", |f| {
            cell(&f.fresh_exit, ms)
        }),
        ("RSS at start", |f| cell(&f.fresh_rss_kib, mib)),
        ("worker threads at start", |f| {
            cell(&f.fresh_workers, |n| n.to_string())
        }),
        ("SIGTERM → exit, at once after a peak of 1000", |f| {
            cell(&f.peak_exit, ms)
        }),
        ("idle workers ended, after the peak, in", |f| {
            cell(&f.retire_wait, |d| format!("{:.1} s", d.as_secs_f64()))
        }),
        ("RSS then", |f| cell(&f.retired_rss_kib, mib)),
        ("SIGTERM → exit then", |f| cell(&f.retired_exit, ms)),
        ("connect → first reply p50, back to back", |f| {
            cell(&f.back_to_back_p50, ms)
        }),
        ("connect → first reply p50, each starting a worker", |f| {
            cell(&f.held_p50, ms)
        }),
        (
            "connect → first reply p50, the peak's 1000 at once",
            |f| cell(&f.peak_p50, ms),
        ),
        ("kill(1) alone (in every exit time above)", |f| {
            cell(&f.kill_overhead, ms)
        }),
    ];
    for (label, show) in rows {
        println!(
            "| {label} | {} |",
            figures.iter().map(show).collect::<Vec<_>>().join(" | ")
        );
    }
}

/// The targets, as ratios of medians measured in this run: `big` is `--workers
/// 1000`, `small` `--workers 4`, of the same binary.
fn print_ratios(label: &str, big: &Figures, small: &Figures) {
    let fresh = median(&big.fresh_exit);
    println!("\n{label}, `--workers 1000` against `--workers 4` and against itself fresh:");
    println!(
        "- SIGTERM → exit, fresh: {:.2}× (target ≤ 1.5×)",
        ratio(fresh, median(&small.fresh_exit))
    );
    println!(
        "- RSS at start: {:.2}× (target ≤ 1.5×)",
        median(&big.fresh_rss_kib) as f64 / median(&small.fresh_rss_kib) as f64
    );
    println!(
        "- SIGTERM → exit at once after the peak: {:.2}× fresh",
        ratio(median(&big.peak_exit), fresh)
    );
    if !big.retired_exit.is_empty() {
        println!(
            "- SIGTERM → exit after the peak, its workers ended: {:.2}× fresh (target ≤ 3×)",
            ratio(median(&big.retired_exit), fresh)
        );
    }
    if !big.held_p50.is_empty() {
        println!(
            "- connect → first reply p50, each connection starting a worker: {} (target < 1 ms)",
            ms(median(&big.held_p50))
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(err) => {
            if !err.is_empty() {
                eprintln!("pool_cost: {err}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let this = env!("CARGO_BIN_EXE_lameduck");
    let mut contenders = vec![
        Contender::new("lameduck", this, 4, true),
        Contender::new("lameduck", this, 1000, true),
    ];
    if let Some(before) = &options.before {
        contenders.push(Contender::new("before", before, 4, false));
        contenders.push(Contender::new("before", before, 1000, false));
    }
    println!("{}", procfs::Machine::detect().line());
    let mut figures: Vec<Figures> = contenders.iter().map(|_| Figures::default()).collect();
    for round in 0..options.runs {
        // Interleaved, so a machine that slows down slows every contender alike.
        for (contender, figures) in contenders.iter().zip(&mut figures) {
            eprintln!(
                "run {}/{}: {}",
                round + 1,
                options.runs,
                contender.spec.label
            );
            run(contender, options.retire, figures);
        }
    }
    println!();
    print_table(&contenders, &figures, options.runs);
    print_ratios("lameduck", &figures[1], &figures[0]);
    if options.before.is_some() {
        print_ratios("before", &figures[3], &figures[2]);
    }
    ExitCode::SUCCESS
}
