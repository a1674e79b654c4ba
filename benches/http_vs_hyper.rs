//! Threads against tasks on one workload: `GET /` with keep-alive, served by
//! `lameduck http` (a fixed pool of blocking threads) and by tokio + hyper (an
//! async runtime), loaded by `wrk` in the same run, then one shutdown scenario:
//! SIGTERM with 100 idle keep-alive connections open, timed to the process's exit.
//!
//! Run: `cargo bench --bench http_vs_hyper` (about a minute), or
//! `cargo bench --bench http_vs_hyper -- --quick` for a few seconds' smoke run.
//! Without `wrk` the throughput part is skipped with a message. With
//! `-- --baseline PATH`, another build of `lameduck` (the previous commit's, built
//! into a target directory of its own) is measured beside this one at 16
//! connections, in alternating runs, so a change's cost is read against the same
//! machine's noise.
//!
//! Each contender runs as its own process: lameduck is the real binary, hyper is this
//! bench re-executed with `--serve-hyper`, so neither shares a runtime, an allocator
//! arena or a scheduler with the load generator's bookkeeping. On a small machine the
//! load generator competes with the server for cores; it does so equally for both.

use figures::commit;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

// Each bench uses some of these.
#[allow(dead_code)]
#[path = "support/figures.rs"]
mod figures;

/// What every contender answers on `GET /`.
// The process part of thread_vs_task's harness; its other helpers are unused here.
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;

use server::{ServerProc, ServerSpec};

// The process figures of the support code; only CPU time is used here.
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;

const HELLO: &str = "Hello, World!";
const WAIT: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-hyper") {
        hyper_server::serve();
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing we
    // know, and gets the quick run.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let duration = if quick { "1s" } else { "10s" };

    println!("# http_vs_hyper: GET / with keep-alive, wrk -d{duration}");
    println!(
        "# machine: {} cores; lameduck {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        commit()
    );
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|at| args.get(at + 1))
        .map(PathBuf::from);
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => {
            throughput(duration);
            if let Some(baseline) = baseline {
                against_baseline(baseline, quick);
            }
        }
        Err(_) => println!("wrk not installed (apt-get install -y wrk): throughput skipped"),
    }
    for contender in [Contender::Lameduck, Contender::Hyper] {
        idle_shutdown(contender, 100);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Lameduck,
    Hyper,
}

impl Contender {
    fn spec(self) -> ServerSpec {
        let (label, program, args): (&str, PathBuf, &[&str]) = match self {
            Contender::Lameduck => (
                "lameduck",
                env!("CARGO_BIN_EXE_lameduck").into(),
                &["http", "--addr", "127.0.0.1:0", "--workers", "128"],
            ),
            Contender::Hyper => (
                "hyper",
                std::env::current_exe().expect("own path"),
                &["--serve-hyper"],
            ),
        };
        ServerSpec {
            label: label.to_string(),
            program,
            args: args.iter().map(|arg| arg.to_string()).collect(),
            workers: None,
        }
    }

    fn start(self) -> ServerProc {
        ServerProc::start(&self.spec(), WAIT).unwrap_or_else(|err| panic!("{err}"))
    }
}

fn get_once(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        .expect("send");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 512];
    while !seen.ends_with(HELLO.as_bytes()) {
        let n = stream.read(&mut chunk).expect("read a response");
        assert!(n > 0, "closed before the response ended");
        seen.extend_from_slice(&chunk[..n]);
    }
    stream
}

/// Requests per second from one wrk run.
fn wrk(addr: SocketAddr, connections: usize, duration: &str) -> f64 {
    let threads = connections.min(2).to_string();
    let output = Command::new("wrk")
        .args([
            "-t",
            &threads,
            "-c",
            &connections.to_string(),
            "-d",
            duration,
            &format!("http://{addr}/"),
        ])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        println!("  wrk reported errors:\n{text}");
    }
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"))
}

fn throughput(duration: &str) {
    println!("connections  lameduck req/s  hyper req/s  lameduck/hyper");
    for connections in [16, 64] {
        let mut rates = Vec::new();
        for contender in [Contender::Lameduck, Contender::Hyper] {
            let server = contender.start();
            drop(get_once(server.addr)); // warm: the server answers before the clock runs
            rates.push(wrk(server.addr, connections, duration));
        }
        println!(
            "{connections:>11}  {:>14.0}  {:>11.0}  {:>14.2}",
            rates[0],
            rates[1],
            rates[0] / rates[1]
        );
    }
}

/// This build of `lameduck` against `baseline` at 16 connections: alternating runs,
/// each contender's median requests per second and server CPU time per request, and
/// the median of the pairwise ratios. The machine's noise moves both alike within a
/// pair; CPU time per request is the steadier of the two figures.
fn against_baseline(baseline: PathBuf, quick: bool) {
    let (rounds, duration, seconds) = if quick {
        (3, "1s", 1.0)
    } else {
        (9, "5s", 5.0)
    };
    let specs = [
        lameduck_spec("lameduck", env!("CARGO_BIN_EXE_lameduck").into()),
        lameduck_spec("baseline", baseline.clone()),
    ];
    // Requests per second, and server CPU microseconds per request.
    let mut runs = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (spec, runs) in specs.iter().zip(runs.iter_mut()) {
            let server = ServerProc::start(spec, WAIT).unwrap_or_else(|err| panic!("{err}"));
            drop(get_once(server.addr));
            let before = procfs::cpu_ticks(Some(server.pid)).unwrap_or(0);
            let rate = wrk(server.addr, 16, duration);
            let ticks = procfs::cpu_ticks(Some(server.pid)).unwrap_or(0) - before;
            let cpu_us = ticks as f64 / procfs::clk_tck() as f64 * 1e6 / (rate * seconds);
            runs.push((rate, cpu_us));
        }
    }
    let figure =
        |runs: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| median(runs.iter().map(pick).collect());
    let ratio = |pick: fn(&(f64, f64)) -> f64| {
        median(
            runs[0]
                .iter()
                .zip(&runs[1])
                .map(|(a, b)| pick(a) / pick(b))
                .collect(),
        )
    };
    println!("16 connections, {rounds} alternating runs of wrk -d{duration}, medians:");
    println!("  contender  req/s  server CPU us/req");
    for (spec, runs) in specs.iter().zip(&runs) {
        println!(
            "  {:<9} {:>6.0}  {:>17.2}",
            spec.label,
            figure(runs, |run| run.0),
            figure(runs, |run| run.1)
        );
    }
    println!(
        "  this/baseline ({}): req/s {:.3}, CPU per request {:.3} (medians of pairwise ratios)",
        baseline.display(),
        ratio(|run| run.0),
        ratio(|run| run.1)
    );
}

/// `program` as `lameduck http` is run in the throughput table.
fn lameduck_spec(label: &str, program: PathBuf) -> ServerSpec {
    ServerSpec {
        label: label.to_string(),
        program,
        args: ["http", "--addr", "127.0.0.1:0", "--workers", "128"]
            .iter()
            .map(|arg| arg.to_string())
            .collect(),
        workers: None,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// SIGTERM with `count` idle keep-alive connections: time to exit, and whether every
/// client saw a clean EOF (no reset). Each client closes as soon as it reads EOF, as
/// a browser does; a client that ignores the EOF keeps lameduck's graceful close
/// waiting for the linger (default 1 s) before the socket is let go.
fn idle_shutdown(contender: Contender, count: usize) {
    let mut server = contender.start();
    let readers: Vec<_> = (0..count)
        .map(|_| {
            let mut client = get_once(server.addr);
            std::thread::spawn(move || {
                let mut rest = Vec::new();
                client.read_to_end(&mut rest).is_ok() && rest.is_empty()
            })
        })
        .collect();
    let signalled = server.signal("TERM").expect("kill -TERM");
    let exit = server.wait_exit(signalled + WAIT);
    let clean = readers
        .into_iter()
        .map(|reader| reader.join())
        .filter(|joined| matches!(joined, Ok(true)))
        .count();
    match exit {
        Some(exit) => println!(
            "{contender:?}: SIGTERM with {count} idle keep-alive connections -> exit {} in {:.1} ms; {clean}/{count} clients saw a clean EOF",
            exit.code.map_or("by signal".into(), |c| c.to_string()),
            (exit.at - signalled).as_secs_f64() * 1000.0,
        ),
        None => println!("{contender:?}: did not exit within {WAIT:?} of SIGTERM"),
    }
}

/// The async contender: hyper 1 on a multi-threaded tokio runtime, with hyper-util's
/// graceful shutdown on SIGTERM (stop accepting, close idle connections, let
/// requests in flight finish).
mod hyper_server {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use hyper_util::server::graceful::GracefulShutdown;
    use tokio::net::TcpListener;
    use tokio::signal::unix::{signal, SignalKind};

    async fn route(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let response = if req.uri().path() == "/" {
            Response::builder()
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from_static(super::HELLO.as_bytes())))
        } else {
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::from_static(b"not found\n")))
        };
        Ok(response.unwrap_or_default())
    }

    pub fn serve() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            println!("listening on {}", listener.local_addr().expect("address"));
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let graceful = GracefulShutdown::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let conn = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(route));
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    _ = term.recv() => break,
                }
            }
            drop(listener);
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await;
        });
    }
}
