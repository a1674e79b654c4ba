//! The command line: subcommands, options and their defaults, parsed by clap.

mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Graceful shutdown without an async runtime: a thread-pool server that drains.
///
/// On SIGINT, SIGTERM or SIGHUP the server stops accepting, finishes what is in
/// flight, says goodbye, closes every connection cleanly and prints a report. A second
/// signal forces the exit (code 130); a third exits at once. SIGUSR2 upgrades: the
/// binary on disk is started with the same arguments and the listening socket, and
/// this process drains once the new one is ready. A socket passed by systemd
/// (LISTEN_FDS) is served instead of --addr; NOTIFY_SOCKET gets READY/STOPPING.
#[derive(Debug, Parser)]
#[command(name = "lameduck", version, propagate_version = true)]
#[command(subcommand_required = true, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The echo server: each line comes back as `Echo: <line>`.
    Echo(EchoArgs),
    /// The web-server template: `GET /` says hello, `GET /healthz` reports readiness.
    Http(HttpArgs),
    /// Start any server, load it with a zoo of clients, send it a signal, and grade
    /// its shutdown: one verdict per scenario. Exit 0 all clean, 1 a problem, 2 usage.
    Probe(ProbeArgs),
}

/// Which wire protocol the probe's clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeProtocol {
    /// Lines: `ping <id>` answered by `--expect-reply`, `--goodbye` on shutdown.
    Echo,
    /// HTTP/1.1 `GET /` with keep-alive; `Connection: close` is the goodbye.
    Http,
}

impl ProbeProtocol {
    /// The name `--protocol` takes.
    pub fn name(self) -> &'static str {
        match self {
            ProbeProtocol::Echo => "echo",
            ProbeProtocol::Http => "http",
        }
    }
}

/// The signal the probe sends to ask for a graceful shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum ProbeSignal {
    Term,
    Int,
    Hup,
}

impl ProbeSignal {
    /// The name `kill -<name>` takes.
    pub fn name(self) -> &'static str {
        match self {
            ProbeSignal::Term => "TERM",
            ProbeSignal::Int => "INT",
            ProbeSignal::Hup => "HUP",
        }
    }
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The server to start, run as `sh -c 'exec CMD'` and killed by PID whatever
    /// happens. Its address is the `listening on <ip:port>` first stdout line, or,
    /// when CMD holds `{port}`, a free port the probe picks and substitutes.
    /// Only loopback addresses are probed.
    #[arg(long, value_name = "CMD")]
    pub spawn: String,

    /// The protocol the clients speak.
    #[arg(long, value_enum, default_value = "echo")]
    pub protocol: ProbeProtocol,

    /// The signal that asks the server to shut down.
    #[arg(long, value_enum, ignore_case = true, default_value = "TERM")]
    pub signal: ProbeSignal,

    /// Closed-loop load: connections that send the next request as soon as the
    /// previous reply arrives. [range: 0..=1000]
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub load: u32,

    /// How long the load runs before the signal.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub after: Duration,

    /// How long the server may take from the signal to its exit; then it is killed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub deadline: Duration,

    /// How long the server may take to start listening.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub startup: Duration,

    /// Print the report as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Run the whole probe this many times, a fresh server each time; a problem in
    /// any trial fails the run. [range: 1..=1000]
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub trials: u32,

    /// Echo: the reply expected to a request line, `{}` standing for the request
    /// (surrounding \r\n are not part of either).
    #[arg(long, default_value = "Echo: {}")]
    pub expect_reply: String,

    /// Echo: the goodbye line expected on shutdown; empty if the protocol has none.
    #[arg(long, default_value = lameduck::protocol::echo::DEFAULT_GOODBYE)]
    pub goodbye: String,

    /// HTTP: the path every `GET` (and the slow upload's `POST`) asks for.
    #[arg(long, default_value = "/")]
    pub path: String,
}

/// Options every server shares.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Most worker threads, each serving one connection at a time. Threads start as
    /// connections need them and end after 10 s without one, so the limit itself
    /// costs nothing. [range: 1..=10000; each busy worker is a thread]
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=MAX_WORKERS))]
    pub workers: u32,

    /// Accepted connections that may wait for a free worker; beyond them new clients
    /// are refused as busy. A limit, not an allocation. [range: 0..=1000000]
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub queue: u32,

    /// The kernel's listen backlog (the kernel may cap it). [range: 1..=65535]
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub backlog: u32,

    /// How long draining may take before what is left is force-closed (exit 124).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Time kept for cleanup after the drain: hooks and resource closes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub cleanup_timeout: Duration,

    /// The whole shutdown budget, from the signal to the report; when set, the
    /// drain gets this minus --cleanup-timeout. [default: drain + cleanup timeouts]
    #[arg(long, value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Keep accepting for this long after the signal while reporting "not ready".
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// Longest a worker blocks in one read or write in the middle of a request
    /// before it checks for shutdown (idle clients are told goodbye at once).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub tick: Duration,

    /// Close connections quiet for this long.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Give up a connection whose client takes no byte of a reply for this long
    /// (it stopped reading): it is dropped, maybe with a reset, and counted as
    /// write_timeouts in the report. Any progress restarts the clock.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// Longest wait between two polls of a listener idle for over half a second (the
    /// first client after a quiet spell waits up to this; while clients keep coming
    /// the acceptor polls at least every millisecond).
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub accept_poll: Duration,

    /// How long a graceful close waits for the client to close its side.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub linger: Duration,

    /// Write the serving process's PID here once it is ready; an upgrade's new
    /// process rewrites it; removed at exit by the process it names.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,

    /// On SIGUSR2 the binary is started again with the same arguments and handed the
    /// listener; if it is not ready within this long it is killed and this process
    /// keeps serving.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub upgrade_timeout: Duration,
}

/// Most worker threads: each costs a thread and its stack, and operating systems cap
/// threads and memory maps well before 20,000 (Linux's default map limit allows about
/// 16,000 threads).
const MAX_WORKERS: i64 = 10_000;

/// Longest accepted duration for any option: a day is already absurd for a shutdown.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Longest line accepted, in bytes (suffixes: KiB, MiB, KB, MB).
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    pub max_line: usize,

    /// How long a line may take to arrive whole, from its first byte; then the
    /// client gets `Error: line timeout` and the connection is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub line_timeout: Duration,

    /// The line sent to each client on shutdown (the server adds \r\n).
    #[arg(long, default_value = lameduck::protocol::echo::DEFAULT_GOODBYE)]
    pub goodbye: String,
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    /// Simulated work before `GET /` answers (a drain lets it finish).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub work_delay: Duration,

    /// Largest request body accepted, decoded (suffixes: KiB, MiB, KB, MB); 413 beyond.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// How long a client may take to send a request head (first request: from the
    /// connection's start; later ones: from their first byte); 408 after.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a request body may keep the server waiting for the client's next
    /// bytes (each wait: an upload goes through as long as it keeps coming); 408 after.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Most header fields in a request; 431 beyond.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_headers: u32,

    /// Most bytes in a request head (suffixes as for --max-body); 431 beyond.
    #[arg(long, default_value = "16KiB", value_parser = parse_size)]
    pub max_head_bytes: usize,

    /// On shutdown, keep a connection whose last response went out (or that
    /// connected) less than this long ago open until this long after it, so a request
    /// already on its way is answered (with `Connection: close`) instead of meeting a closed socket;
    /// connections idle for longer close at once. Lengthens a drain by at most this;
    /// 0s turns it off.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub keepalive_grace: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{err} (write durations like 30s, 250ms)"))?;
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is longer than a day"));
    }
    Ok(duration)
}

/// Parses the command line. On a usage error, prints one line (clap's first) and
/// returns exit code 2; help and version print as clap prints them.
pub fn parse() -> Result<Cli, u8> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = err.print();
                return Err(u8::try_from(err.exit_code()).unwrap_or(2));
            }
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            eprintln!(
                "lameduck: {}",
                first.strip_prefix("error: ").unwrap_or(first)
            );
            return Err(2);
        }
    };
    if let Err(problem) = cli.validate() {
        eprintln!("lameduck: {problem}");
        return Err(2);
    }
    Ok(cli)
}

/// Parses `65536`, `64KiB`, `64K`, `1MiB`, `64KB` (decimal) and friends.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (write sizes like 65536, 64KiB, 1MiB)"))?;
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests;
