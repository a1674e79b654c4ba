//! `lameduck probe`: a graceful-shutdown report card for any server. It starts the
//! server, brings a zoo of clients (loaded, idle, pipelined, in flight, never reading,
//! slowloris, half-closed, queued), sends the signal, keeps connecting every 20 ms, and
//! grades what each client saw: replies, the goodbye, FIN or RST, replies lost, lines
//! after the goodbye, requests that crossed it (reported, not failed), plus the exit
//! code, the signal → exit time and the CPU both sides used.
//!
//! `--protocol http` brings an HTTP/1.1 zoo instead: keep-alive load and idle
//! connections, a request in flight, a slow download and a slow upload; a response
//! with `Connection: close` is the goodbye.
//!
//! Clients are plain threads with blocking sockets, one per connection (the load
//! generator of `benches/` runs on `mio`, a dev-dependency the binary does not carry).

#[cfg(unix)]
mod clients;
#[cfg(unix)]
mod echo;
#[cfg(unix)]
mod http;
#[cfg(unix)]
mod http_conn;
#[cfg(unix)]
mod http_frame;
#[cfg(unix)]
mod json;
#[cfg(unix)]
mod new_connects;
#[cfg(unix)]
mod report;
#[cfg(unix)]
mod scenario;
#[cfg(unix)]
mod target;

use crate::cli::ProbeArgs;

/// Exit codes: every scenario clean, a problem, bad usage (or a server that cannot be
/// probed at all).
const CLEAN: u8 = 0;
const PROBLEM: u8 = 1;
const USAGE: u8 = 2;

#[cfg(not(unix))]
pub fn run(_args: &ProbeArgs) -> u8 {
    eprintln!("lameduck: the probe needs Linux (/proc, signals)");
    USAGE
}

#[cfg(unix)]
pub fn run(args: &ProbeArgs) -> u8 {
    let mut trials = Vec::new();
    for index in 0..args.trials {
        let trial = match run_trial(args) {
            Ok(trial) => trial,
            Err(err) => {
                eprintln!("lameduck: probe: {err}");
                return USAGE;
            }
        };
        if !args.json {
            print(&report::table(&trial, index, args.trials));
        }
        trials.push(trial);
    }
    let clean = trials.iter().filter(|t| t.clean()).count();
    if args.json {
        let items: Vec<String> = trials.iter().map(json::json_trial).collect();
        print(&format!(
            "{{\"trials\":[{}],\"clean_trials\":{clean},\"trials_run\":{}}}\n",
            items.join(","),
            trials.len()
        ));
    } else if trials.len() > 1 {
        print(&format!("clean in {clean} of {} trials\n", trials.len()));
    }
    if clean == trials.len() {
        CLEAN
    } else {
        PROBLEM
    }
}

/// Writes `text` to stdout; a reader that went away is not the probe's problem.
#[cfg(unix)]
fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// One trial: a fresh server, its zoo, the signal, the server's exit, and the grades.
#[cfg(unix)]
fn run_trial(args: &ProbeArgs) -> Result<report::Trial, String> {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::cli::ProbeProtocol;
    use report::Trial;

    let started = Instant::now();
    let probe_cpu_start = target::cpu_ticks(None).map_or(0, |(ticks, _)| ticks);
    let mut server = target::Target::start(&args.spawn, args.startup)?;
    let (signal_tx, signalled) = crossbeam_channel::bounded::<()>(0);
    let (gone_tx, server_gone) = crossbeam_channel::bounded::<()>(0);
    let ctx = Arc::new(context(args, server.addr, signalled, server_gone));
    let (running, arms, new_connects) = match args.protocol {
        ProbeProtocol::Echo => start_echo(&ctx, args.load),
        ProbeProtocol::Http => start_http(&ctx, args.load),
    }
    .map_err(|err| format!("cannot start a client thread: {err}"))?;

    let signal_at = signal_after_load(args, &ctx, &arms, signal_tx);
    let signal = args.signal.name();
    let sent = target::kill(signal, server.pid);
    let (exit, killed, mut exit_problem) = await_exit(&mut server, args, signal_at);
    drop(gone_tx);
    if !sent {
        exit_problem.get_or_insert_with(|| format!("could not send SIG{signal}"));
    }

    let mut rows: Vec<report::Row> = running.into_iter().map(scenario::collect).collect();
    match new_connects.join() {
        Ok(row) => rows.push(row),
        Err(_) => return Err("the new-connects client panicked".into()),
    }

    let status = exit.as_ref().and_then(|exit| exit.status);
    let exit_code = status.and_then(|status| status.code());
    let exit_text = target::status_text(status.as_ref());
    let exit_problem = exit_problem.or_else(|| graded_exit(exit_code, &exit_text, &rows));
    let tck = target::clk_tck();
    let probe_cpu_end = target::cpu_ticks(None).map_or(probe_cpu_start, |(ticks, _)| ticks);
    Ok(Trial {
        command: args.spawn.clone(),
        addr: server.addr.to_string(),
        protocol: args.protocol.name(),
        signal,
        rows,
        exit: exit_text,
        exit_code,
        exit_after: exit
            .as_ref()
            .filter(|_| !killed)
            .map(|exit| exit.at.saturating_duration_since(signal_at)),
        exit_problem,
        probe_cpu_s: probe_cpu_end.saturating_sub(probe_cpu_start) as f64 / tck,
        server_cpu_s: exit.as_ref().and_then(|exit| exit.cpu_s),
        wall: started.elapsed(),
    })
}

/// What every client of a trial shares: the server's address, what to expect of it,
/// the signal and exit to wait for, and the run's hard stop.
#[cfg(unix)]
fn context(
    args: &ProbeArgs,
    addr: std::net::SocketAddr,
    signalled: crossbeam_channel::Receiver<()>,
    server_gone: crossbeam_channel::Receiver<()>,
) -> clients::Ctx {
    use std::time::{Duration, Instant};

    clients::Ctx {
        addr,
        template: args.expect_reply.clone(),
        path: args.path.clone(),
        goodbye: (!args.goodbye.is_empty()).then(|| args.goodbye.clone().into_bytes()),
        signal_at: std::sync::OnceLock::new(),
        signalled,
        server_gone,
        stop: Instant::now() + args.after + args.deadline + Duration::from_secs(60),
    }
}

/// Lets the load run for --after, then has the last-moment clients act, then marks
/// the signal's instant and wakes every client waiting for it: the caller sends the
/// signal right after.
#[cfg(unix)]
fn signal_after_load(
    args: &ProbeArgs,
    ctx: &clients::Ctx,
    arms: &[scenario::Arm],
    signal_tx: crossbeam_channel::Sender<()>,
) -> std::time::Instant {
    use std::time::{Duration, Instant};

    std::thread::sleep(args.after);
    for arm in arms {
        let _ = arm.go.send(());
    }
    for arm in arms {
        let _ = arm
            .armed
            .recv_deadline(Instant::now() + Duration::from_secs(10));
    }
    let signal_at = Instant::now();
    let _ = ctx.signal_at.set(signal_at);
    drop(signal_tx);
    signal_at
}

/// Waits for the server to exit within --deadline of the signal, or kills it: its
/// exit, whether it was killed, and that as a problem.
#[cfg(unix)]
fn await_exit(
    server: &mut target::Target,
    args: &ProbeArgs,
    signal_at: std::time::Instant,
) -> (Option<target::Exit>, bool, Option<String>) {
    match server.wait_exit(signal_at + args.deadline) {
        Some(exit) => (Some(exit), false, None),
        None => {
            let problem = format!(
                "still running {:?} after SIG{}: killed",
                args.deadline,
                args.signal.name()
            );
            (server.kill_now(), true, Some(problem))
        }
    }
}

/// The problem with a server's own exit: any code but 0, or 0 although connections
/// were cut (a clean exit code must mean a clean shutdown).
#[cfg(unix)]
fn graded_exit(exit_code: Option<i32>, exit_text: &str, rows: &[report::Row]) -> Option<String> {
    let cut: u64 = rows.iter().map(report::Row::cut).sum();
    match exit_code {
        Some(0) if cut > 0 => Some(format!("exit 0 although {cut} connections were cut")),
        Some(0) => None,
        Some(code) => Some(format!("exit code {code}")),
        None => Some(format!("exit: {exit_text}")),
    }
}

/// The scenarios of a trial, running; the last-moment ones' arms; new-connects.
#[cfg(unix)]
type Zoo = (
    Vec<scenario::Running>,
    Vec<scenario::Arm>,
    std::thread::JoinHandle<report::Row>,
);

/// The echo zoo, in a fixed order, each ready before the next; the flood first (it
/// fills buffers fastest alone), the queued client last.
#[cfg(unix)]
fn start_echo(ctx: &std::sync::Arc<clients::Ctx>, load: u32) -> std::io::Result<Zoo> {
    let mut running = vec![echo::never_reads(ctx)?];
    running.push(echo::load(ctx, load)?);
    running.push(echo::idle(ctx)?);
    running.push(echo::pipelined(ctx)?);
    let (flight, flight_arm) = echo::in_flight(ctx)?;
    running.push(flight);
    running.push(echo::slowloris(ctx)?);
    let (half, half_arm) = echo::half_closed(ctx)?;
    running.push(half);
    running.push(echo::queued(ctx)?);
    let new_connects = new_connects::new_connects(ctx, echo::exchange)?;
    Ok((running, vec![flight_arm, half_arm], new_connects))
}

/// The HTTP zoo, in a fixed order: the slow download first (its buffers fill), the
/// keep-alive load, the idle ones, then the two that act just before the signal.
#[cfg(unix)]
fn start_http(ctx: &std::sync::Arc<clients::Ctx>, load: u32) -> std::io::Result<Zoo> {
    let mut running = vec![http::slow_download(ctx)?];
    running.push(http::load(ctx, load)?);
    running.push(http::idle(ctx)?);
    let (flight, flight_arm) = http::in_flight(ctx)?;
    running.push(flight);
    let (upload, upload_arm) = http::slow_upload(ctx)?;
    running.push(upload);
    let new_connects = new_connects::new_connects(ctx, http::exchange)?;
    Ok((running, vec![flight_arm, upload_arm], new_connects))
}
