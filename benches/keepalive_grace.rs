//! What the HTTP keep-alive grace (`--keepalive-grace`) buys and what it
//! costs, measured on the release `lameduck http` binary with real SIGTERMs.
//!
//! Buys: 32 keep-alive clients, each on one connection, each sending its next
//! request as soon as it has read a response (and, in a second workload, after a
//! think time drawn uniformly from 0–50 ms or 0–200 ms, as a real client does some
//! work between requests). SIGTERM lands mid-load; a request that crossed the close
//! (sent, then EOF instead of a response) or a reset is a request lost. Costs:
//! SIGTERM → exit for those runs; for 100 keep-alive connections idle for a second
//! before the signal, which the grace must not hold up; and for 100 answered just
//! before the signal that send nothing more, which it holds up by at most itself.
//!
//! Run: `cargo bench --bench keepalive_grace` (about three minutes on two cores), or
//! `cargo bench --bench keepalive_grace -- --quick` for a smoke run; `-- --idle`
//! runs only the second part (the idle connections).

use figures::commit;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

// Each bench uses some of these.
#[allow(dead_code)]
#[path = "support/figures.rs"]
mod figures;

// The process part of thread_vs_task's harness; its other helpers are unused here.
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;

use server::{ServerProc, ServerSpec};

const CLIENTS: usize = 32;
const IDLE_CLIENTS: usize = 100;
/// How long the idle clients stay quiet before the signal: longer than any grace.
const IDLE_FOR: Duration = Duration::from_secs(1);
const GRACES_MS: [u64; 6] = [0, 10, 50, 100, 250, 500];
/// The longest think time of each load: 0 is a zero-think loop, otherwise each
/// client waits a uniform 0..=max between reading a response and sending the next.
const THINK_MS: [u64; 3] = [0, 50, 200];
/// Responses read (over all clients) before the signal, so it lands mid-load.
const WARM_RESPONSES: usize = CLIENTS * 10;
const WAIT: Duration = Duration::from_secs(10);
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and gets the
    // quick run.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let trials = if quick { 2 } else { 10 };
    let chosen = lameduck::protocol::http::DEFAULT_KEEPALIVE_GRACE;

    println!("# keepalive_grace: {CLIENTS} closed-loop keep-alive clients, SIGTERM mid-load, {trials} trials per row");
    println!(
        "# machine: {} cores; lameduck {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        commit()
    );
    println!(
        "# lost = requests sent that got EOF (crossed the close) or a reset instead of a response"
    );
    println!();
    // `--idle` skips the loads, for a look at the drain's cost alone.
    let loads = if args.iter().any(|a| a == "--idle") {
        &[][..]
    } else {
        &THINK_MS[..]
    };
    println!("| think time | grace | responses/trial | crossed (total) | resets | trials losing any | SIGTERM→exit p50 | max |");
    println!("|---|---|---|---|---|---|---|---|");
    for think in loads.iter().copied().map(Duration::from_millis) {
        for grace_ms in GRACES_MS {
            let grace = Duration::from_millis(grace_ms);
            let runs: Vec<LoadRun> = (0..trials).map(|_| load_trial(grace, think)).collect();
            print_load_row(think, grace, &runs);
        }
    }
    println!();
    println!("| {IDLE_CLIENTS} keep-alive connections, quiet since | grace | SIGTERM→last EOF p50 | SIGTERM→exit p50 | max | clean EOFs |");
    println!("|---|---|---|---|---|---|");
    for grace in [Duration::ZERO, chosen] {
        idle_row(IDLE_FOR, grace, trials);
    }
    // The cost: connections answered just before the signal that send nothing more
    // hold the drain until their grace ends.
    for grace_ms in GRACES_MS {
        idle_row(Duration::ZERO, Duration::from_millis(grace_ms), trials);
    }
}

fn idle_row(idle_for: Duration, grace: Duration, trials: usize) {
    let runs: Vec<IdleRun> = (0..trials).map(|_| idle_trial(grace, idle_for)).collect();
    let mut exits: Vec<f64> = runs.iter().map(|r| r.exit_ms).collect();
    let mut eofs: Vec<f64> = runs.iter().map(|r| r.last_eof_ms).collect();
    let clean: usize = runs.iter().map(|r| r.clean).sum();
    let since = if idle_for.is_zero() {
        "just before the signal".to_string()
    } else {
        format!("{idle_for:?} before the signal")
    };
    println!(
        "| {since} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {clean}/{} |",
        fmt_grace(grace),
        median(&mut eofs),
        median(&mut exits),
        max(&exits),
        IDLE_CLIENTS * runs.len()
    );
}

fn start(grace: Duration) -> ServerProc {
    let spec = ServerSpec {
        label: "lameduck".into(),
        program: env!("CARGO_BIN_EXE_lameduck").into(),
        args: [
            "http",
            "--addr",
            "127.0.0.1:0",
            "--keepalive-grace",
            &format!("{}ms", grace.as_millis()),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect(),
        workers: None,
    };
    ServerProc::start(&spec, WAIT).unwrap_or_else(|err| panic!("{err}"))
}

/// How one closed-loop client's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The last response said `Connection: close`, then a clean EOF.
    Closed,
    /// A request was sent and EOF came instead of its response.
    Crossed,
    Reset,
    Other(String),
}

#[derive(Debug)]
struct ClientRun {
    responses: usize,
    end: End,
}

struct LoadRun {
    responses: usize,
    crossed: usize,
    resets: usize,
    others: Vec<String>,
    exit_ms: f64,
}

/// One run: start the server, load it, SIGTERM once warm, count what was lost.
fn load_trial(grace: Duration, think: Duration) -> LoadRun {
    let mut server = start(grace);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (progress_tx, progress) = crossbeam_channel::unbounded();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (stop, progress) = (Arc::clone(&stop), progress_tx.clone());
            thread::spawn(move || closed_loop(addr, id, think, &stop, &progress))
        })
        .collect();
    drop(progress_tx);
    // Every client answered at least once (a fast few must not signal before the
    // last has connected), and the load under way.
    let deadline = Instant::now() + WAIT;
    let (mut started, mut answered) = (0, 0);
    while started < CLIENTS || answered < WARM_RESPONSES {
        match progress.recv_deadline(deadline) {
            Ok(first) => {
                started += usize::from(first);
                answered += 1;
            }
            Err(_) => panic!("the clients made no progress: {}", server.stderr_tail()),
        }
    }
    let signalled = server.signal("TERM").expect("kill -TERM");
    let exit = server
        .wait_exit(signalled + WAIT)
        .unwrap_or_else(|| panic!("no exit within {WAIT:?}: {}", server.stderr_tail()));
    // Clients end on their own at the close; the flag only bounds a broken run.
    stop.store(true, Ordering::SeqCst);
    let runs: Vec<ClientRun> = clients
        .into_iter()
        .map(|client| client.join().expect("a client thread"))
        .collect();
    let count = |end: &End| runs.iter().filter(|run| run.end == *end).count();
    LoadRun {
        responses: runs.iter().map(|run| run.responses).sum(),
        crossed: count(&End::Crossed),
        resets: count(&End::Reset),
        others: runs
            .iter()
            .filter_map(|run| match &run.end {
                End::Other(what) => Some(what.clone()),
                _ => None,
            })
            .collect(),
        exit_ms: ms(exit.at - signalled),
    }
}

/// A tiny xorshift, so think times need no extra crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

fn closed_loop(
    addr: SocketAddr,
    id: usize,
    think: Duration,
    stop: &AtomicBool,
    progress: &crossbeam_channel::Sender<bool>,
) -> ClientRun {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = u64::from(nanos) ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = Rng(seed | 1);
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reader = BufReader::new(stream);
    let mut responses = 0;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break End::Other("still open after the server exited".into());
        }
        if !think.is_zero() {
            // The client's own work between requests: the load under test.
            let micros = rng.below(think.as_micros() as u64 + 1);
            thread::sleep(Duration::from_micros(micros));
        }
        if let Err(err) = reader.get_mut().write_all(REQUEST) {
            break classify(&err);
        }
        match read_response(&mut reader) {
            Ok(Some(close)) => {
                responses += 1;
                let _ = progress.send(responses == 1);
                if close {
                    let mut rest = Vec::new();
                    break match reader.read_to_end(&mut rest) {
                        Ok(_) if rest.is_empty() => End::Closed,
                        Ok(_) => End::Other("bytes after the last response".into()),
                        Err(err) => classify(&err),
                    };
                }
            }
            Ok(None) => break End::Crossed,
            Err(err) => break classify(&err),
        }
    };
    ClientRun { responses, end }
}

fn classify(err: &io::Error) -> End {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => End::Reset,
        // Writing after the server's close was acknowledged: the request crossed it.
        io::ErrorKind::BrokenPipe => End::Crossed,
        _ => End::Other(err.to_string()),
    }
}

/// Reads one response; `Some(true)` if it carried `Connection: close`, `None` on an
/// EOF before its first byte.
fn read_response(reader: &mut BufReader<TcpStream>) -> io::Result<Option<bool>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if !line.starts_with("HTTP/1.1 200 ") {
        return Err(io::Error::other(format!("status line {line:?}")));
    }
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(':').unwrap_or((field, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.trim().eq_ignore_ascii_case("close");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some(close))
}

struct IdleRun {
    /// SIGTERM → the last client's EOF.
    last_eof_ms: f64,
    exit_ms: f64,
    clean: usize,
}

/// SIGTERM with `IDLE_CLIENTS` connections that answered a request `idle_for` ago;
/// each client closes as soon as it reads EOF.
fn idle_trial(grace: Duration, idle_for: Duration) -> IdleRun {
    let mut server = start(grace);
    let (ready_tx, ready) = crossbeam_channel::unbounded();
    let readers: Vec<_> = (0..IDLE_CLIENTS)
        .map(|_| {
            let addr = server.addr;
            let ready = ready_tx.clone();
            thread::spawn(move || {
                let stream = TcpStream::connect(addr).expect("connect");
                stream.set_read_timeout(Some(WAIT)).expect("timeout");
                let mut reader = BufReader::new(stream);
                reader.get_mut().write_all(REQUEST).expect("send");
                let answered = matches!(read_response(&mut reader), Ok(Some(false)));
                let _ = ready.send(());
                let mut rest = Vec::new();
                let clean = answered && reader.read_to_end(&mut rest).is_ok() && rest.is_empty();
                (clean, Instant::now())
            })
        })
        .collect();
    drop(ready_tx);
    let deadline = Instant::now() + WAIT;
    for _ in 0..IDLE_CLIENTS {
        ready
            .recv_deadline(deadline)
            .expect("every client answered");
    }
    // The clients stay idle on purpose: the age of their last response is the
    // condition under test.
    thread::sleep(idle_for);
    let signalled = server.signal("TERM").expect("kill -TERM");
    let exit = server
        .wait_exit(signalled + WAIT)
        .unwrap_or_else(|| panic!("no exit within {WAIT:?}: {}", server.stderr_tail()));
    let ends: Vec<(bool, Instant)> = readers
        .into_iter()
        .map(|reader| reader.join().expect("a reader thread"))
        .collect();
    let clean = ends.iter().filter(|(clean, _)| *clean).count();
    let last_eof = ends.iter().map(|(_, at)| *at).max().unwrap_or(signalled);
    IdleRun {
        last_eof_ms: ms(last_eof.saturating_duration_since(signalled)),
        exit_ms: ms(exit.at - signalled),
        clean,
    }
}

fn print_load_row(think: Duration, grace: Duration, runs: &[LoadRun]) {
    let mut exits: Vec<f64> = runs.iter().map(|run| run.exit_ms).collect();
    let crossed: usize = runs.iter().map(|run| run.crossed).sum();
    let resets: usize = runs.iter().map(|run| run.resets).sum();
    let losing = runs
        .iter()
        .filter(|run| run.crossed + run.resets > 0)
        .count();
    let responses = runs.iter().map(|run| run.responses).sum::<usize>() / runs.len().max(1);
    let think = if think.is_zero() {
        "none".to_string()
    } else {
        format!("0–{}ms", think.as_millis())
    };
    println!(
        "| {think} | {} | {responses} | {crossed} | {resets} | {losing}/{} | {:.1} ms | {:.1} ms |",
        fmt_grace(grace),
        runs.len(),
        median(&mut exits),
        max(&exits),
    );
    for what in runs.iter().flat_map(|run| &run.others) {
        println!("  unexpected client end: {what}");
    }
}

fn fmt_grace(grace: Duration) -> String {
    format!("{}ms", grace.as_millis())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}
