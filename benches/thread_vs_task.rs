//! Thread per connection (lameduck) against task per connection (a tokio twin of the
//! same server), on identical workloads: closed-loop echo throughput and latency at
//! C = 1 … 1000 connections, server CPU and memory, connections left unserved, and the
//! shutdown contract under load (replies lost, resets, goodbyes, SIGTERM → exit).
//!
//! Both servers run as child processes so `/proc/<pid>` measures each alone; the twin
//! is this same binary re-executed with `--serve-twin`. Results go to stdout, to
//! `target/thread_vs_task.md` and to the chart `target/thread_vs_task.svg`.
//!
//! ```text
//! cargo bench --bench thread_vs_task -- --quick     # smoke run, a few seconds
//! cargo bench --bench thread_vs_task                # full run, a few minutes
//! cargo bench --bench thread_vs_task -- --help
//! ```
#![forbid(unsafe_code)]

mod loadgen;
mod support;
mod twin;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::procfs::{self, Machine};
use support::report::{Results, Run, ShutdownTrial, Slot};
use support::scenarios::{self, ShutdownKind, Timing};
use support::server::{ServerProc, ServerSpec};

const USAGE: &str = "\
thread_vs_task: lameduck (threads) vs a tokio twin (tasks), same echo workload

usage: cargo bench --bench thread_vs_task -- [options]

  --quick              smoke run: C = 1,16,64, short windows, 1 round, 1 trial
  --conns LIST         connection counts, comma separated [1,2,16,64,256,1000]
  --rounds N           rounds per C, order alternating [3]
  --warmup-ms N        connect + warm-up before each window [1000]
  --measure-ms N       measured window [4000]
  --trials N           trials per shutdown scenario [5]
  --ld-workers N       lameduck --workers (default max(C, 64))
  --ld-queue N         lameduck --queue (default: lameduck's own)
  --loadgen-threads N  event-loop threads of the load generator [min(nproc, 2)]
  --ld-exe PATH        the lameduck binary to run (default: this build's), e.g. one
                       built from another commit, or any server taking the same args
  --twin-only          run the tokio twin in both slots (as when lameduck is absent)
  --serve-twin ...     (internal) run the tokio twin server in this process
";

/// One event-loop thread saturated its core at C = 16 on the two-core machine (98 %
/// CPU while the server idled at the same rate): the client side was the bottleneck.
/// Two threads let the scheduler give the client what it needs; both servers face the
/// same load generator either way.
fn default_loadgen_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

#[derive(Clone, Debug)]
struct Options {
    quick: bool,
    conns: Vec<usize>,
    rounds: usize,
    timing: Timing,
    trials: usize,
    load_for: Duration,
    ld_workers: Option<usize>,
    ld_queue: Option<usize>,
    ld_exe: Option<PathBuf>,
    loadgen_threads: usize,
    twin_only: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = if quick {
            Options {
                quick,
                conns: vec![1, 16, 64],
                rounds: 1,
                timing: Timing {
                    warmup: Duration::from_millis(200),
                    measure: Duration::from_millis(500),
                },
                trials: 1,
                load_for: Duration::from_millis(200),
                ld_workers: None,
                ld_queue: None,
                ld_exe: None,
                loadgen_threads: default_loadgen_threads(),
                twin_only: false,
            }
        } else {
            Options {
                quick,
                conns: vec![1, 2, 16, 64, 256, 1000],
                rounds: 3,
                timing: Timing {
                    warmup: Duration::from_millis(1000),
                    measure: Duration::from_millis(4000),
                },
                trials: 5,
                load_for: Duration::from_millis(500),
                ld_workers: None,
                ld_queue: None,
                ld_exe: None,
                loadgen_threads: default_loadgen_threads(),
                twin_only: false,
            }
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            let num = |v: &String| -> Result<usize, String> {
                v.parse().map_err(|e| format!("{flag} {v}: {e}"))
            };
            match flag.as_str() {
                "--quick" | "--bench" => {}
                "--twin-only" => o.twin_only = true,
                "--conns" => {
                    o.conns = value()?
                        .split(',')
                        .map(|s| s.trim().parse().map_err(|e| format!("--conns {s}: {e}")))
                        .collect::<Result<_, _>>()?
                }
                "--rounds" => o.rounds = num(value()?)?.max(1),
                "--warmup-ms" => o.timing.warmup = Duration::from_millis(num(value()?)? as u64),
                "--measure-ms" => {
                    o.timing.measure = Duration::from_millis(num(value()?)?.max(1) as u64)
                }
                "--trials" => o.trials = num(value()?)?,
                "--ld-workers" => o.ld_workers = Some(num(value()?)?),
                "--ld-queue" => o.ld_queue = Some(num(value()?)?),
                "--ld-exe" => o.ld_exe = Some(PathBuf::from(value()?)),
                "--loadgen-threads" => o.loadgen_threads = num(value()?)?.max(1),
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }
}

/// How to start each contender for a given number of connections.
struct Contenders {
    /// `None`: the lameduck slot runs the twin (binary absent, or `--twin-only`).
    lameduck: Option<PathBuf>,
    twin: PathBuf,
    ld_workers: Option<usize>,
    ld_queue: Option<usize>,
}

impl Contenders {
    fn spec(&self, slot: Slot, conns: usize) -> ServerSpec {
        // A thread per connection: with fewer workers than clients the rest wait in
        // the queue, which is a different experiment (the pool-limit table).
        self.spec_with_workers(slot, self.ld_workers.unwrap_or(conns.max(64)))
    }

    fn spec_with_workers(&self, slot: Slot, workers: usize) -> ServerSpec {
        match (slot, &self.lameduck) {
            (Slot::Lameduck, Some(exe)) => {
                let mut args = vec![
                    "echo".to_string(),
                    "--addr".to_string(),
                    "127.0.0.1:0".to_string(),
                    "--workers".to_string(),
                    workers.to_string(),
                ];
                if let Some(q) = self.ld_queue {
                    args.extend(["--queue".to_string(), q.to_string()]);
                }
                ServerSpec {
                    label: "lameduck".to_string(),
                    program: exe.clone(),
                    args,
                    workers: Some(workers),
                }
            }
            (slot, _) => ServerSpec {
                label: match slot {
                    Slot::Lameduck => "twin-in-ld-slot".to_string(),
                    Slot::Tokio => "tokio".to_string(),
                },
                program: self.twin.clone(),
                args: vec![
                    "--serve-twin".to_string(),
                    "--addr".to_string(),
                    "127.0.0.1:0".to_string(),
                ],
                workers: None,
            },
        }
    }
}

/// Starts lameduck once to see that it speaks the contract; a skeleton binary that
/// prints nothing must not fail the whole bench.
fn probe_lameduck(c: &Contenders) -> Result<(), String> {
    let mut server = ServerProc::start(&c.spec(Slot::Lameduck, 1), Duration::from_secs(5))?;
    server.stop(Duration::from_secs(10)).map(drop)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-twin") {
        return twin::main(&args[1..]);
    }
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("thread_vs_task: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(results) if results.failures.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("thread_vs_task: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(opts: &Options) -> Result<Results, String> {
    let started = Instant::now();
    let twin = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut contenders = Contenders {
        lameduck: Some(
            opts.ld_exe
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lameduck"))),
        ),
        twin,
        ld_workers: opts.ld_workers,
        ld_queue: opts.ld_queue,
    };
    let mut notes = Vec::new();
    if opts.twin_only {
        contenders.lameduck = None;
        notes.push("--twin-only: the tokio twin runs in BOTH slots.".to_string());
    } else if let Err(e) = probe_lameduck(&contenders) {
        eprintln!("warning: lameduck is not usable, running the twin in its slot: {e}");
        contenders.lameduck = None;
        notes.push(
            "lameduck binary unusable (no `listening on`): the tokio twin runs in BOTH slots."
                .to_string(),
        );
    }
    let names = [
        contenders.spec(Slot::Lameduck, 1).label,
        contenders.spec(Slot::Tokio, 1).label,
    ];
    let machine = Machine::detect();
    let load_before = procfs::loadavg();
    eprintln!("{}", machine.line());
    notes.push(format!(
        "mode: {}; windows: {} ms warm-up + {} ms measured; {} round(s) per C; {} trial(s) per shutdown scenario; load generator: {} mio thread(s), closed loop `ping <n>\\n`.",
        if opts.quick { "--quick" } else { "full" },
        opts.timing.warmup.as_millis(),
        opts.timing.measure.as_millis(),
        opts.rounds,
        opts.trials,
        opts.loadgen_threads,
    ));
    notes.push(match (contenders.lameduck.is_some(), opts.ld_workers) {
        (true, Some(w)) => format!("lameduck: --workers {w}."),
        (true, None) => "lameduck: --workers max(C, 64) (a thread per connection).".to_string(),
        (false, _) => "lameduck slot: twin stand-in.".to_string(),
    });

    if let Some(path) = &opts.ld_exe {
        notes.push(format!("lameduck binary: {}.", path.display()));
    }
    // The load generator holds one descriptor per client and the server one per
    // connection: past the limit, connects fail with EMFILE (counted as `other`).
    let max_conns = opts.conns.iter().copied().max().unwrap_or(0).max(100) as u64;
    if let Some(limit) = procfs::open_files_limit() {
        if limit < max_conns + 64 {
            eprintln!(
                "warning: open files limit {limit} is below {} needed for C={max_conns}; raise it with `ulimit -n`",
                max_conns + 64
            );
        }
    }

    let tck = procfs::clk_tck();
    let mut results = Results {
        machine,
        notes,
        names,
        runs: Vec::new(),
        pool_limited: Vec::new(),
        shutdowns: Vec::new(),
        failures: Vec::new(),
    };
    let mut placement: [std::collections::BTreeSet<u32>; 3] = Default::default();

    for &c in &opts.conns {
        for round in 0..opts.rounds {
            // Alternate who goes first so warm caches and thermal drift favour no one.
            let order = if round % 2 == 0 {
                [Slot::Lameduck, Slot::Tokio]
            } else {
                [Slot::Tokio, Slot::Lameduck]
            };
            for slot in order {
                let spec = contenders.spec(slot, c);
                match scenarios::throughput(&spec, c, opts.timing, opts.loadgen_threads, tck) {
                    Ok(t) => {
                        eprintln!(
                            "C={c:<5} round {round} {:<16} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>7.0} µs  server CPU {:>4.0}%  loadgen CPU {:>4.0}%  other CPU {:>4.0}%  RSS {:>6.1} MiB  unserved {}  errors {}",
                            spec.label,
                            t.rps,
                            t.p50_us,
                            t.p99_us,
                            t.server_cpu,
                            t.loadgen_cpu,
                            t.other_cpu,
                            t.rss_kib as f64 / 1024.0,
                            t.unserved,
                            t.stats.errors.summary()
                        );
                        if t.unserved > 0 || t.stats.errors.summary() != "none" {
                            log_anomaly(&t);
                        }
                        let i = usize::from(slot == Slot::Tokio);
                        placement[i].extend(&t.server_cpus);
                        placement[2].extend(&t.loadgen_cpus);
                        results.runs.push(Run {
                            conns: c,
                            round,
                            slot,
                            workers: spec.workers,
                            result: t,
                        });
                    }
                    Err(e) => {
                        eprintln!("C={c} round {round} {}: FAILED: {e}", spec.label);
                        results
                            .failures
                            .push(format!("throughput C={c} {}: {e}", spec.label));
                    }
                }
            }
        }
    }

    // A fixed pool smaller than the crowd: the clients beyond workers + queue are
    // refused as busy, those in the queue wait unserved. Only lameduck has a pool.
    if contenders.lameduck.is_some() {
        let limits: &[(usize, usize)] = if opts.quick {
            &[(64, 16)]
        } else {
            &[(256, 64), (1000, 64)]
        };
        for &(c, workers) in limits {
            let spec = contenders.spec_with_workers(Slot::Lameduck, workers);
            match scenarios::throughput(&spec, c, opts.timing, opts.loadgen_threads, tck) {
                Ok(t) => {
                    eprintln!(
                        "pool limit C={c} --workers {workers}: {:.0} req/s, unserved {}, errors {}",
                        t.rps,
                        t.unserved,
                        t.stats.errors.summary()
                    );
                    results.pool_limited.push(Run {
                        conns: c,
                        round: 0,
                        slot: Slot::Lameduck,
                        workers: Some(workers),
                        result: t,
                    });
                }
                Err(e) => results
                    .failures
                    .push(format!("pool limit C={c} --workers {workers}: {e}")),
            }
        }
    }

    let kinds = [
        ShutdownKind::Idle,
        ShutdownKind::IdleClients(100),
        ShutdownKind::UnderLoad(64),
    ];
    for kind in kinds {
        for trial in 0..opts.trials {
            let order = if trial % 2 == 0 {
                [Slot::Lameduck, Slot::Tokio]
            } else {
                [Slot::Tokio, Slot::Lameduck]
            };
            for slot in order {
                let spec = contenders.spec(slot, kind.conns());
                match scenarios::shutdown(&spec, kind, opts.load_for) {
                    Ok(s) => {
                        eprintln!(
                            "shutdown {:<24} {:<16} exit {:>6.1} ms code {:?}  goodbyes {}/{}  lost {}  resets {}  ok {}  | {}",
                            kind.name(),
                            spec.label,
                            s.exit_ms,
                            s.exit_code,
                            s.stats.goodbyes,
                            kind.conns(),
                            s.stats.replies_lost,
                            s.stats.errors.reset,
                            s.stats.conns_ok,
                            s.report
                        );
                        results.shutdowns.push(ShutdownTrial {
                            kind,
                            slot,
                            result: s,
                        });
                    }
                    Err(e) => {
                        eprintln!("shutdown {} {}: FAILED: {e}", kind.name(), spec.label);
                        results.failures.push(format!(
                            "shutdown {} {}: {e}",
                            kind.name(),
                            spec.label
                        ));
                    }
                }
            }
        }
    }

    let fmt_set = |s: &std::collections::BTreeSet<u32>| {
        let v: Vec<String> = s.iter().map(u32::to_string).collect();
        format!("{{{}}}", v.join(","))
    };
    results.notes.push(format!(
        "placement (nothing pinned; CPUs the threads last ran on, sampled mid-window): {} {}, {} {}, load generator {}.",
        results.names[0],
        fmt_set(&placement[0]),
        results.names[1],
        fmt_set(&placement[1]),
        fmt_set(&placement[2]),
    ));
    results.notes.push(format!(
        "bench wall time: {:.0} s; load average (1/5/15 min) before {load_before}, after {} (other work on the machine skews absolute numbers; the same-round ratios less so).",
        started.elapsed().as_secs_f64(),
        procfs::loadavg()
    ));

    println!("{}", results.console());
    write_outputs(&results);
    Ok(results)
}

/// A run with unserved clients or errors: show what the server said about it.
fn log_anomaly(t: &scenarios::Throughput) {
    eprintln!("    server report: {}", t.report);
    let tail: Vec<&str> = t.stderr_tail.lines().collect();
    for line in &tail[tail.len().saturating_sub(3)..] {
        eprintln!("    server stderr: {line}");
    }
}

/// `target/thread_vs_task.{md,svg}`; a failure to write is reported, not fatal: the
/// numbers are already on stdout.
fn write_outputs(results: &Results) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    for (name, text) in [
        ("thread_vs_task.md", results.markdown()),
        ("thread_vs_task.svg", support::svg::chart(results)),
    ] {
        let path = dir.join(name);
        match std::fs::write(&path, text) {
            Ok(()) => println!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
