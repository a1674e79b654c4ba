//! Static file downloads over loopback: the `files` example (a pool of blocking
//! threads, file bodies sent with sendfile) beside nginx and `python3 -m http.server`,
//! all three serving the same directory, measured in the same run.
//!
//! Two loads, each run in rounds that alternate the servers: one 1 GiB file, and 16
//! concurrent downloads of 64 MiB files. The client is this bench: a thread per
//! download reading into a discarded 1 MiB buffer, the same for every server.
//! Memory is the servers' peak resident set (VmHWM) summed over the server process
//! and its children (nginx's workers), read from `/proc` at the end.
//!
//! Run: `cargo bench --bench files` (about two minutes; writes 2 GiB of temporary
//! files, removed at the end), or `cargo bench --bench files -- --quick` for a smoke
//! run with small files. nginx is installed with apt-get when missing; without it,
//! the other two are measured and the ratios are left out.
//!
//! `cargo bench` does not build examples, so the files server runs from this bench's
//! own binary (re-executed with `--serve-files`): the example's code, compiled with
//! the bench profile, in a process of its own.
//!
//! Over 400 lines as one file, like the other benches: the contenders' setup (three
//! servers, nginx's install and configuration), the client and the report are each
//! small and only used here.

#[allow(dead_code)]
#[path = "support/figures.rs"]
mod figures;
// The example's server, whole; its `main` is not this binary's, and its unit tests
// (whose imports are left unused here) run with the example.
#[allow(dead_code, unused_imports)]
#[path = "../examples/files.rs"]
mod files_example;
#[allow(dead_code)]
#[path = "support/procfs.rs"]
mod procfs;
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use server::{ServerProc, ServerSpec};

const MIB: u64 = 1 << 20;
/// How long a server may take to start listening.
const STARTUP: Duration = Duration::from_secs(10);
/// How long one download may take before the bench gives up on it.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Concurrent downloads in the second load.
const PARALLEL: usize = 16;

/// File sizes and rounds of one run.
struct Plan {
    big: u64,
    each: u64,
    rounds: usize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-files") {
        let server_args = args.iter().filter(|a| *a != "--serve-files");
        return files_example::serve(server_args);
    }
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) gets the
    // quick run.
    let quick = args.iter().any(|a| a == "--quick") || !args.iter().any(|a| a == "--bench");
    let plan = if quick {
        Plan {
            big: 64 * MIB,
            each: 4 * MIB,
            rounds: 1,
        }
    } else {
        Plan {
            big: 1024 * MIB,
            each: 64 * MIB,
            rounds: 5,
        }
    };
    match run(&plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("files bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(plan: &Plan) -> Result<(), String> {
    println!(
        "# files: download throughput over loopback, one {} MiB file and {PARALLEL} × {} MiB \
         concurrently, median of {} rounds",
        plan.big / MIB,
        plan.each / MIB,
        plan.rounds
    );
    println!("# {}", procfs::Machine::detect().line());
    let dir = Scratch::new()?;
    dir.fill(plan)?;

    let mut servers = vec![Contender::lameduck(&dir)?];
    match nginx_available() {
        Ok(()) => {
            servers.push(Contender::nginx(&dir, "nginx", "")?);
            servers.push(Contender::nginx(
                &dir,
                "nginx-max",
                "sendfile_max_chunk 0;",
            )?);
        }
        Err(why) => println!("nginx not measured: {why}"),
    }
    servers.push(Contender::python(&dir)?);

    let figures = measure(&servers, plan)?;
    report(&servers, &figures);
    for server in servers {
        server.stop()?;
    }
    Ok(())
}

/// One server's samples, in GiB/s, and its memory at the end.
struct Figures {
    single: Vec<f64>,
    parallel: Vec<f64>,
    memory: Memory,
}

impl Figures {
    fn single(&self) -> f64 {
        figures::median(self.single.clone())
    }

    fn parallel(&self) -> f64 {
        figures::median(self.parallel.clone())
    }
}

/// Runs the rounds, each server in turn within a round, so that a noisy spell on the
/// shared machine touches every server alike.
fn measure(servers: &[Contender], plan: &Plan) -> Result<Vec<Figures>, String> {
    let mut single = vec![Vec::new(); servers.len()];
    let mut parallel = vec![Vec::new(); servers.len()];
    let paths: Vec<String> = (0..PARALLEL).map(|n| format!("/m{n:02}.bin")).collect();
    for _ in 0..plan.rounds {
        for (i, server) in servers.iter().enumerate() {
            single[i].push(throughput(server.addr, &["/big.bin".into()], plan.big)?);
            parallel[i].push(throughput(server.addr, &paths, plan.each)?);
        }
    }
    Ok(single
        .into_iter()
        .zip(parallel)
        .zip(servers)
        .map(|((single, parallel), server)| Figures {
            single,
            parallel,
            memory: Memory::of(server.pid),
        })
        .collect())
}

/// The table, then the ratios against nginx: its faster configuration for each
/// load, and its smaller peak memory.
fn report(servers: &[Contender], figures: &[Figures]) {
    let spread = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{:.2} ({min:.2}–{max:.2})", figures::median(v.to_vec()))
    };
    println!(
        "{:<10} {:>20} {:>20} {:>13} {:>12}",
        "server",
        "1 file GiB/s",
        format!("{PARALLEL} files GiB/s"),
        "peak RSS MiB",
        "RSS now MiB"
    );
    for (server, f) in servers.iter().zip(figures) {
        println!(
            "{:<10} {:>20} {:>20} {:>13.1} {:>12.1}",
            server.label,
            spread(&f.single),
            spread(&f.parallel),
            f.memory.peak_kib as f64 / 1024.0,
            f.memory.now_kib as f64 / 1024.0,
        );
    }
    println!("# GiB/s: median (min–max) over the rounds; RSS summed over the server's processes");
    let nginx: Vec<&Figures> = servers
        .iter()
        .zip(figures)
        .filter(|(s, _)| s.label.starts_with("nginx"))
        .map(|(_, f)| f)
        .collect();
    if nginx.is_empty() {
        return;
    }
    let best = |of: fn(&Figures) -> f64| nginx.iter().map(|f| of(f)).fold(0.0, f64::max);
    let (single, parallel) = (best(Figures::single), best(Figures::parallel));
    let peak = nginx
        .iter()
        .map(|f| f.memory.peak_kib)
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let lameduck = &figures[0];
    let (one, many) = (lameduck.single() / single, lameduck.parallel() / parallel);
    let rss = lameduck.memory.peak_kib as f64 / peak;
    println!(
        "lameduck / nginx: 1 file {one:.2}×, {PARALLEL} files {many:.2}× (target ≥ 0.9×: {}); \
         peak RSS {rss:.2}× (target ≤ 2×: {})",
        met(one >= 0.9 && many >= 0.9),
        met(rss <= 2.0)
    );
    let python = &figures[figures.len() - 1];
    println!(
        "python3 -m http.server / nginx: 1 file {:.2}×, {PARALLEL} files {:.2}×",
        python.single() / single,
        python.parallel() / parallel
    );
}

/// The bench's directory: `root/` (served) and nginx's files beside it.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("lameduck-files-bench-{}", std::process::id()));
        fs::create_dir_all(dir.join("root")).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    fn fill(&self, plan: &Plan) -> Result<(), String> {
        let started = Instant::now();
        write_file(&self.root().join("big.bin"), plan.big, 1)?;
        for n in 0..PARALLEL {
            write_file(
                &self.root().join(format!("m{n:02}.bin")),
                plan.each,
                n as u64 + 2,
            )?;
        }
        println!(
            "# {} MiB of files written in {:.1} s (they stay in the page cache)",
            (plan.big + plan.each * PARALLEL as u64) / MIB,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes that do not compress (xorshift64 from `seed`).
fn write_file(path: &Path, len: u64, seed: u64) -> Result<(), String> {
    let fail = |e: io::Error| format!("{}: {e}", path.display());
    let mut file = io::BufWriter::new(fs::File::create(path).map_err(fail)?);
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ seed;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(MIB);
        file.write_all(&chunk[..n as usize]).map_err(fail)?;
        left -= n;
    }
    file.flush().map_err(fail)
}

/// A server being measured.
struct Contender {
    label: &'static str,
    pid: u32,
    addr: SocketAddr,
    process: Process,
}

enum Process {
    Lameduck(ServerProc),
    /// Started in a process group of its own, so that stopping it stops its workers.
    Foreign(Child),
}

impl Contender {
    fn lameduck(dir: &Scratch) -> Result<Contender, String> {
        let root = dir.root().to_string_lossy().into_owned();
        let spec = ServerSpec {
            label: "lameduck".into(),
            program: std::env::current_exe().map_err(|e| format!("own path: {e}"))?,
            args: [
                "--serve-files",
                "--root",
                &root,
                "--addr",
                "127.0.0.1:0",
                "--workers",
                "64",
            ]
            .map(String::from)
            .to_vec(),
            workers: Some(64),
        };
        let server = ServerProc::start(&spec, STARTUP)?;
        Ok(Contender {
            label: "lameduck",
            pid: server.pid,
            addr: server.addr,
            process: Process::Lameduck(server),
        })
    }

    /// nginx as a static-file server is usually set up (Debian's packaged
    /// configuration): one worker per core, sendfile, `tcp_nopush`; no access log,
    /// as lameduck writes none. `extra` goes into its `http` block: `nginx-max` lifts
    /// `sendfile_max_chunk` (2 MiB by default, so that one fast client cannot hold a
    /// worker), which is faster for one stream.
    fn nginx(dir: &Scratch, label: &'static str, extra: &str) -> Result<Contender, String> {
        let port = free_port()?;
        let conf = dir.0.join(format!("{label}.conf"));
        let d = dir.0.display();
        let text = format!(
            "worker_processes auto;\ndaemon off;\npid {d}/{label}.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  {extra}\n\
             default_type application/octet-stream;\n\
             client_body_temp_path {d}/{label}-body;\n  proxy_temp_path {d}/{label}-proxy;\n\
             fastcgi_temp_path {d}/{label}-fastcgi;\n  uwsgi_temp_path {d}/{label}-uwsgi;\n\
             scgi_temp_path {d}/{label}-scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {d}/root; }}\n}}\n"
        );
        fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start nginx: {e}"))?;
        Contender::foreign(label, child, port)
    }

    fn python(dir: &Scratch) -> Result<Contender, String> {
        let port = free_port()?;
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.root())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start python3 -m http.server: {e}"))?;
        Contender::foreign("python", child, port)
    }

    /// Waits for a server that prints no address to accept on `port`.
    fn foreign(label: &'static str, mut child: Child, port: u16) -> Result<Contender, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{label} exited at startup: {status}"));
            }
            if Instant::now() > deadline {
                stop_group(child.id(), &mut child);
                return Err(format!(
                    "{label} not listening on {addr} within {STARTUP:?}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Contender {
            label,
            pid: child.id(),
            addr,
            process: Process::Foreign(child),
        })
    }

    /// Stops the server; lameduck must exit 0 with a clean report.
    fn stop(mut self) -> Result<(), String> {
        match &mut self.process {
            Process::Lameduck(server) => {
                let (exit, report) = server.stop(Duration::from_secs(30))?;
                if exit.code != Some(0) {
                    return Err(format!("lameduck exited {:?}: {report}", exit.code));
                }
                println!("# lameduck: {report}");
            }
            Process::Foreign(child) => stop_group(self.pid, child),
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Process::Foreign(child) = self {
            let pid = child.id();
            stop_group(pid, child);
        }
    }
}

/// SIGTERM to the process group led by `pid` (a server and its workers, all started
/// by this bench), then SIGKILL if it is still there after a few seconds.
fn stop_group(pid: u32, child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let group = format!("-{pid}");
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    let _ = child.wait();
}

/// A port free a moment ago, for servers that cannot report the one they picked.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// nginx on PATH, installed with apt-get if it is missing and can be.
fn nginx_available() -> Result<(), String> {
    let present = || {
        Command::new("nginx")
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return Ok(());
    }
    println!("# nginx missing: apt-get install -y nginx");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-qq", "nginx"]) {
        apt(&["update", "-qq"]);
        apt(&["install", "-y", "-qq", "nginx"]);
    }
    if present() {
        Ok(())
    } else {
        Err("not installed, and apt-get could not install it".into())
    }
}

/// Downloads every path at once (a thread each) and returns GiB/s over the wall time
/// of the whole batch.
fn throughput(addr: SocketAddr, paths: &[String], len: u64) -> Result<f64, String> {
    let started = Instant::now();
    let downloads: Vec<_> = paths
        .iter()
        .map(|path| {
            let path = path.clone();
            thread::spawn(move || download(addr, &path, len))
        })
        .collect();
    let mut total = 0;
    for download in downloads {
        total += download
            .join()
            .map_err(|_| "a download thread panicked".to_string())??;
    }
    Ok(total as f64 / (1u64 << 30) as f64 / started.elapsed().as_secs_f64())
}

/// One `GET`, its body read into a discarded buffer; the bytes received, which must
/// be `len`.
fn download(addr: SocketAddr, path: &str, len: u64) -> Result<u64, String> {
    let fail = |e: io::Error| format!("GET {path} from {addr}: {e}");
    let mut stream = TcpStream::connect(addr).map_err(fail)?;
    stream
        .set_read_timeout(Some(DOWNLOAD_TIMEOUT))
        .map_err(fail)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut filled = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[filled..]).map_err(fail)?;
        if n == 0 {
            return Err(format!("GET {path}: closed before the head's end"));
        }
        filled += n;
        if let Some(at) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if filled == buf.len() {
            return Err(format!("GET {path}: head too long"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    let mut got = (filled - head_end) as u64;
    while got < len {
        match stream.read(&mut buf).map_err(fail)? {
            0 => break,
            n => got += n as u64,
        }
    }
    if got != len {
        return Err(format!("GET {path}: {got} bytes of {len}"));
    }
    Ok(got)
}

/// Resident memory of a server and all its descendants, in KiB.
struct Memory {
    peak_kib: u64,
    now_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let mut pids = vec![pid];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        let sum = |key| {
            pids.iter()
                .filter_map(|&p| procfs::status_kib(p, key))
                .sum()
        };
        Memory {
            peak_kib: sum("VmHWM:"),
            now_kib: sum("VmRSS:"),
        }
    }
}

/// The processes whose parent is `pid`, from every `/proc/<n>/stat`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    // Field 4 (ppid) comes after `(comm)`, which may hold spaces.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}
