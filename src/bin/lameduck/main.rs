//! The `lameduck` binary: a thin layer over the library. Protocol lines (`listening
//! on`, the report) go to stdout, written with a bound ([`lameduck::output`]); logs
//! go to stderr through `env_logger` and a queue that never blocks
//! ([`lameduck::logging`]); failures a user can cause are one line on stderr and a
//! documented exit code. A stdout or stderr nobody reads changes what is printed,
//! never how the server stops.

mod cli;
mod probe;

use std::error::Error;
use std::net::TcpListener;
use std::process::ExitCode;

use lameduck::deploy::Deploy;
use lameduck::protocol::echo::Echo;
use lameduck::protocol::http::{Hello, Http};
use lameduck::{
    logging, output, signals, Lifecycle, Reason, ServerBuilder, ServerHandle, Shutdown,
};

use cli::{Cli, Command, ServerArgs};

/// Exit code for a failure before or while serving (a bind error, a failed hook).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    // The probe is a client of other servers, not a server: none of what follows.
    if let Command::Probe(args) = &cli.command {
        return ExitCode::from(probe::run(args));
    }
    // The first logger of this process: installing it cannot fail. It also routes
    // panics through the log queue, as one record each.
    let _ = logging::init();
    let code = match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            logging::stderr_line(&format!("lameduck: {}", one_line(err.as_ref())));
            ExitCode::from(EXIT_FAILURE)
        }
    };
    logging::finish(logging::STDERR_BOUND);
    code
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

/// The server's options from the command line. Its drain deadline is the
/// lifecycle's: `Lifecycle::serve` holds the server to it.
fn builder(args: &ServerArgs, listener: TcpListener) -> ServerBuilder {
    lameduck::Server::builder()
        .listener(listener)
        .workers(args.workers as usize)
        .queue(args.queue as usize)
        .backlog(args.backlog)
        .tick(args.tick)
        .write_timeout(args.write_timeout)
        .drain_delay(args.drain_delay)
        .linger(args.linger)
        .accept_poll(args.accept_poll)
}

/// The whole run: signals, the lifecycle, the server, and the report. Every
/// shutdown takes one path: signal → drain → tasks → hooks → resources → report.
fn run(cli: Cli) -> Result<u8, Box<dyn Error>> {
    let server_args = match &cli.command {
        Command::Echo(args) => &args.server,
        Command::Http(args) => &args.server,
        Command::Probe(_) => return Err("the probe is not a server".into()),
    };
    let mut deploy = Deploy::from_env()?.upgrade_on_sigusr2(server_args.upgrade_timeout);
    if let Some(path) = &server_args.pid_file {
        deploy = deploy.pid_file(path);
    }
    let shutdown = Shutdown::new();
    // Before `listening on`: a signal sent right after that line must be graceful.
    signals::install(&shutdown)?;
    let (budget, cleanup) = server_args.budget();
    let mut life = Lifecycle::new(&shutdown)
        .with_budget(budget)
        .with_cleanup_reserve(cleanup);
    let listener = deploy.listen(server_args.addr, server_args.backlog)?;
    let server = start(&cli.command, listener, &shutdown)?;
    if let Err(err) = server.announce() {
        // Whoever was to read stdout has gone (a closed pipe); the clients have not.
        // Serving on is the useful answer: a signal still stops the server.
        log::warn!(
            "cannot write `listening on {}` to stdout: {err}; serving anyway",
            server.local_addr()
        );
    }
    // Serving already: a failure here is a shutdown with reason=error, drained.
    let deployed = match deploy.ready(&server, &mut life) {
        Ok(deployed) => Some(deployed),
        Err(err) => {
            log::error!("{}", one_line(&err));
            shutdown.trigger_with(Reason::Error);
            None
        }
    };

    let report = life.serve(server);
    if let Some(deployed) = deployed {
        deployed.finish(&report);
    }
    output::print_line(&report.to_string());
    Ok(report.exit_code())
}

/// Starts the server the subcommand names, configured from its options, on `listener`.
fn start(
    command: &Command,
    listener: TcpListener,
    shutdown: &Shutdown,
) -> Result<ServerHandle, Box<dyn Error>> {
    let server = match command {
        Command::Echo(args) => {
            let echo = Echo::new()
                .max_line(args.max_line)
                .idle_timeout(args.server.idle_timeout)
                .line_timeout(args.line_timeout)
                .goodbye_line(&args.goodbye);
            builder(&args.server, listener).start(echo, shutdown)?
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
            builder(&args.server, listener).start(http, shutdown)?
        }
        Command::Probe(_) => return Err("the probe is not a server".into()),
    };
    Ok(server)
}
