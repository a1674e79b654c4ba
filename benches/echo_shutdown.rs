//! Issue 2's figures: SIGTERM → exit (idle, and with 100 idle clients), connect →
//! first reply at one client at a time, and the CPU an idle server burns holding 100
//! idle clients — for `lameduck echo` and, in the same run, for the asyncio tutorial's
//! server it grew from (`benches/tutorial_server.py`, skipped if `python3` is absent).
//!
//! `cargo bench --bench echo_shutdown` (add `-- --quick` for a smoke run).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

// The process and /proc parts of thread_vs_task's harness; the rest of it is unused here.
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;

use server::{ServerProc, ServerSpec};

const PATIENCE: Duration = Duration::from_secs(20);

fn contender(label: &str, program: &str, args: &[&str]) -> ServerSpec {
    ServerSpec {
        label: label.to_string(),
        program: program.into(),
        args: args.iter().map(|arg| arg.to_string()).collect(),
        workers: None,
    }
}

fn start(contender: &ServerSpec) -> ServerProc {
    ServerProc::start(contender, PATIENCE).unwrap_or_else(|err| panic!("{err}"))
}

/// Sends SIGTERM and times it to the process's exit.
fn time_shutdown(mut server: ServerProc) -> Duration {
    let signalled = server.signal("TERM").unwrap_or_else(|err| panic!("{err}"));
    let exit = server
        .wait_exit(signalled + PATIENCE)
        .unwrap_or_else(|| panic!("{} did not exit within {PATIENCE:?}", server.label));
    exit.at - signalled
}

/// utime + stime of the server, in clock ticks.
fn cpu_ticks(server: &ServerProc) -> u64 {
    procfs::cpu_ticks(Some(server.pid)).expect("read /proc/<pid>/stat")
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

fn shutdown_idle(contender: &ServerSpec, trials: usize) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..trials)
        .map(|_| time_shutdown(start(contender)))
        .collect();
    times.sort();
    times
}

fn shutdown_with_idle_clients(
    contender: &ServerSpec,
    clients: usize,
    trials: usize,
) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..trials)
        .map(|_| {
            let server = start(contender);
            let readers: Vec<_> = (0..clients).map(|_| idle_client(server.addr)).collect();
            let took = time_shutdown(server);
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
    contender: &ServerSpec,
    connections: usize,
    gap: Duration,
) -> Vec<Duration> {
    let server = start(contender);
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

fn idle_cpu_percent(contender: &ServerSpec, clients: usize, window: Duration) -> f64 {
    let server = start(contender);
    let readers: Vec<_> = (0..clients).map(|_| idle_client(server.addr)).collect();
    let before = cpu_ticks(&server);
    let started = Instant::now();
    thread::sleep(window); // the measurement window itself, not synchronisation
    let ticks = cpu_ticks(&server) - before;
    let elapsed = started.elapsed();
    let _ = time_shutdown(server);
    for reader in readers {
        let _ = reader.join();
    }
    ticks as f64 / procfs::clk_tck() as f64 / elapsed.as_secs_f64() * 100.0
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let (trials, connections, window) = if quick {
        (3, 200, Duration::from_secs(2))
    } else {
        (20, 2000, Duration::from_secs(10))
    };
    let lameduck = env!("CARGO_BIN_EXE_lameduck");
    let mut contenders = vec![contender(
        "lameduck",
        lameduck,
        &["echo", "--addr", "127.0.0.1:0", "--workers", "128"],
    )];
    if !quick {
        // The acceptor's poll ceiling trades first-connection latency after a quiet
        // spell against idle wake-ups: show the other side of the trade.
        contenders.push(contender(
            "lameduck --accept-poll 1ms",
            lameduck,
            &[
                "echo",
                "--addr",
                "127.0.0.1:0",
                "--workers",
                "128",
                "--accept-poll",
                "1ms",
            ],
        ));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/tutorial_server.py");
    let python = Command::new("python3").arg("--version").output().is_ok();
    if python {
        let script = script.display().to_string();
        contenders.push(contender("asyncio tutorial", "python3", &[&script, "0"]));
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
            .map(|c| c.label.as_str())
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
        .is_some_and(|c| c.label == "asyncio tutorial")
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
