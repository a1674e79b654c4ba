//! Issue 2's figures: SIGTERM → exit (idle, and with 100 idle clients), connect →
//! first reply at one client at a time, and the CPU an idle server burns holding 100
//! idle clients — for `lameduck echo` and, in the same run, for the asyncio tutorial's
//! server it grew from (`benches/tutorial_server.py`, skipped if `python3` is absent).
//!
//! `cargo bench --bench echo_shutdown` (add `-- --quick` for a smoke run).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(20);

struct Contender {
    name: &'static str,
    program: String,
    args: Vec<String>,
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(contender: &Contender) -> Server {
        let mut child = Command::new(&contender.program)
            .args(&contender.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", contender.name));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{}: first line {line:?}", contender.name))
            .parse()
            .expect("address");
        // Keep draining stdout so the report line never blocks the server.
        thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        Server { child, addr }
    }

    fn sigterm(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
    }

    /// Sends SIGTERM and times it to the process's exit.
    fn time_shutdown(mut self) -> Duration {
        let started = Instant::now();
        self.sigterm();
        self.child.wait().expect("wait");
        started.elapsed()
    }

    /// utime + stime of the process, in clock ticks (1/100 s on Linux).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read /proc/<pid>/stat");
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that has been answered once (so a worker holds it), then idles; when
/// the server says goodbye it reads to EOF and closes, as a real client would.
fn idle_client(addr: SocketAddr) -> thread::JoinHandle<()> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(b"hello\n").expect("write");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("first reply");
    assert_eq!(line, "Echo: hello\r\n");
    thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn shutdown_idle(contender: &Contender, trials: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..trials)
        .map(|_| Server::start(contender).time_shutdown())
        .collect();
    times.sort();
    times
}

fn shutdown_with_idle_clients(
    contender: &Contender,
    clients: usize,
    trials: usize,
) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..trials)
        .map(|_| {
            let server = Server::start(contender);
            let readers: Vec<_> = (0..clients).map(|_| idle_client(server.addr)).collect();
            let took = server.time_shutdown();
            for reader in readers {
                let _ = reader.join();
            }
            took
        })
        .collect();
    times.sort();
    times
}

/// One client at a time, each after `gap` (zero: back to back).
fn connect_to_first_reply(
    contender: &Contender,
    connections: usize,
    gap: Duration,
) -> Vec<Duration> {
    let server = Server::start(contender);
    let mut times: Vec<Duration> = (0..connections)
        .map(|i| {
            if !gap.is_zero() {
                thread::sleep(gap); // the arrival pattern under test, not synchronisation
            }
            let started = Instant::now();
            let mut stream = TcpStream::connect(server.addr).expect("connect");
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
            started.elapsed()
        })
        .collect();
    drop(server);
    times.sort();
    times
}

fn idle_cpu_percent(contender: &Contender, clients: usize, window: Duration) -> f64 {
    let server = Server::start(contender);
    let readers: Vec<_> = (0..clients).map(|_| idle_client(server.addr)).collect();
    let before = server.cpu_ticks();
    let started = Instant::now();
    thread::sleep(window); // the measurement window itself, not synchronisation
    let ticks = server.cpu_ticks() - before;
    let elapsed = started.elapsed();
    let _ = server.time_shutdown();
    for reader in readers {
        let _ = reader.join();
    }
    ticks as f64 / 100.0 / elapsed.as_secs_f64() * 100.0
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (trials, connections, window) = if quick {
        (3, 200, Duration::from_secs(2))
    } else {
        (20, 2000, Duration::from_secs(10))
    };
    let mut contenders = vec![Contender {
        name: "lameduck",
        program: env!("CARGO_BIN_EXE_lameduck").to_string(),
        args: ["echo", "--addr", "127.0.0.1:0", "--workers", "128"]
            .map(String::from)
            .to_vec(),
    }];
    if !quick {
        // The acceptor's poll ceiling trades first-connection latency after a quiet
        // spell against idle wake-ups: show the other side of the trade.
        contenders.push(Contender {
            name: "lameduck --accept-poll 1ms",
            program: env!("CARGO_BIN_EXE_lameduck").to_string(),
            args: [
                "echo",
                "--addr",
                "127.0.0.1:0",
                "--workers",
                "128",
                "--accept-poll",
                "1ms",
            ]
            .map(String::from)
            .to_vec(),
        });
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tutorial_server.py");
    let python = Command::new("python3").arg("--version").output().is_ok();
    if python {
        contenders.push(Contender {
            name: "asyncio tutorial",
            program: "python3".into(),
            args: vec![script.display().to_string(), "0".into()],
        });
    } else {
        println!("python3 not found: the tutorial's server is not measured");
    }

    println!(
        "# echo shutdown and latency ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!(
        "| measure | {} |",
        contenders
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(contenders.len()));
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let idle: Vec<_> = contenders
        .iter()
        .map(|c| shutdown_idle(c, trials))
        .collect();
    rows.push((
        format!("SIGTERM → exit, idle (median of {trials})"),
        idle.iter().map(|t| ms(percentile(t, 0.5))).collect(),
    ));
    let busy_trials = (trials / 2).max(2);
    let loaded: Vec<_> = contenders
        .iter()
        .map(|c| shutdown_with_idle_clients(c, 100, busy_trials))
        .collect();
    rows.push((
        format!("SIGTERM → exit, 100 idle clients (median of {busy_trials})"),
        loaded.iter().map(|t| ms(percentile(t, 0.5))).collect(),
    ));
    rows.push((
        "  same, worst".into(),
        loaded
            .iter()
            .map(|t| ms(*t.last().expect("trials")))
            .collect(),
    ));
    let latency: Vec<_> = contenders
        .iter()
        .map(|c| connect_to_first_reply(c, connections, Duration::ZERO))
        .collect();
    rows.push((
        format!("connect → first reply p50 ({connections} clients, back to back)"),
        latency.iter().map(|t| ms(percentile(t, 0.5))).collect(),
    ));
    rows.push((
        "connect → first reply p99".into(),
        latency.iter().map(|t| ms(percentile(t, 0.99))).collect(),
    ));
    let sparse_count = connections / 20;
    let sparse: Vec<_> = contenders
        .iter()
        .map(|c| connect_to_first_reply(c, sparse_count, Duration::from_millis(50)))
        .collect();
    rows.push((
        format!("connect → first reply p50 ({sparse_count} clients, one every 50 ms)"),
        sparse.iter().map(|t| ms(percentile(t, 0.5))).collect(),
    ));
    rows.push((
        "connect → first reply p99, one every 50 ms".into(),
        sparse.iter().map(|t| ms(percentile(t, 0.99))).collect(),
    ));
    let cpu: Vec<_> = contenders
        .iter()
        .map(|c| idle_cpu_percent(c, 100, window))
        .collect();
    rows.push((
        format!(
            "CPU, idle with 100 idle clients over {}s (% of a core)",
            window.as_secs()
        ),
        cpu.iter().map(|p| format!("{p:.2}%")).collect(),
    ));
    for (label, cells) in rows {
        println!("| {label} | {} |", cells.join(" | "));
    }
    if contenders
        .last()
        .is_some_and(|c| c.name == "asyncio tutorial")
    {
        let tutorial = contenders.len() - 1;
        let ratio = |a: &[Duration], b: &[Duration]| {
            percentile(a, 0.5).as_secs_f64() / percentile(b, 0.5).as_secs_f64()
        };
        println!();
        println!(
            "ratios lameduck/tutorial (medians, lower is better): shutdown idle {:.3}, with 100 idle clients {:.3}, connect→reply {:.3}",
            ratio(&idle[0], &idle[tutorial]),
            ratio(&loaded[0], &loaded[tutorial]),
            ratio(&latency[0], &latency[tutorial]),
        );
    }
}
