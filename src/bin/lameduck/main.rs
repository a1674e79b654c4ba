//! The `lameduck` binary: a thin layer over the library. Protocol lines (`listening
//! on`, the report) go to stdout; logs go to stderr through `env_logger`; failures a
//! user can cause are one line on stderr and a documented exit code.

mod cli;

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use lameduck::protocol::echo::Echo;
use lameduck::protocol::http::{Hello, Http};
use lameduck::{signals, Lifecycle, ServerBuilder, Shutdown};

use cli::{Cli, Command, ServerArgs};

/// Exit code for a failure before or while serving (SPEC §3).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    // clap prints usage errors (and a missing subcommand) itself and exits 2.
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("lameduck: {}", one_line(err.as_ref()));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// An error and its causes on one line, the way a user reads them.
fn one_line(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn builder(args: &ServerArgs, life: &Lifecycle) -> ServerBuilder {
    lameduck::Server::builder()
        .addr(args.addr)
        .workers(args.workers as usize)
        .queue(args.queue)
        .backlog(args.backlog)
        .tick(args.tick)
        .drain_timeout(life.drain_timeout())
        .drain_delay(args.drain_delay)
        .linger(args.linger)
        .accept_poll(args.accept_poll)
}

/// The whole run: signals, the lifecycle, the server, and the report. Every
/// shutdown takes one path: signal → drain → tasks → hooks → resources → report.
fn run(cli: Cli) -> Result<u8, Box<dyn Error>> {
    let shutdown = Shutdown::new();
    // Before `listening on`: a signal sent right after that line must be graceful.
    signals::install(&shutdown)?;
    let server_args = match &cli.command {
        Command::Echo(args) => &args.server,
        Command::Http(args) => &args.server,
    };
    let (budget, cleanup) = server_args.budget();
    let life = Lifecycle::new(&shutdown)
        .with_budget(budget)
        .with_cleanup_reserve(cleanup);
    let server = match &cli.command {
        Command::Echo(args) => {
            let echo = Echo::new()
                .max_line(args.max_line)
                .idle_timeout(args.server.idle_timeout)
                .goodbye(&args.goodbye);
            builder(&args.server, &life).start(echo, &shutdown)?
        }
        Command::Http(args) => {
            let http = Http::new(Hello::new().work_delay(args.work_delay))
                .max_body(args.max_body)
                .max_headers(args.max_headers as usize)
                .max_head_bytes(args.max_head_bytes)
                .header_timeout(args.header_timeout)
                .body_timeout(args.body_timeout)
                .idle_timeout(args.server.idle_timeout)
                .keepalive_grace(args.keepalive_grace);
            builder(&args.server, &life).start(http, &shutdown)?
        }
    };
    server.announce()?;

    let report = life.serve(server);
    println!("{report}");
    Ok(report.exit_code())
}
