//! A static file server: what `python3 -m http.server` is, with downloads that
//! survive a deploy.
//!
//! ```text
//! cargo run --example files -- --root ./public --addr 127.0.0.1:8080
//! curl -O http://127.0.0.1:8080/big.iso             # 200, sent with sendfile
//! curl -C - -O http://127.0.0.1:8080/big.iso        # resumes: Range → 206
//! curl -I http://127.0.0.1:8080/big.iso             # HEAD: the headers of the GET
//! ```
//!
//! What it answers, for `GET` and `HEAD` (any other method is 405 with `Allow`):
//! - a regular file under `--root`: 200 with `Content-Type` from its extension,
//!   `Content-Length`, `Last-Modified` and `Accept-Ranges: bytes`; the body goes out
//!   with the kernel's zero-copy path (sendfile on Linux);
//! - `If-Modified-Since` not older than the file: 304;
//! - one `Range` (`bytes=a-b`, `a-`, `-n`): 206 with `Content-Range`, or 416 with
//!   `Content-Range: bytes */len` when no byte of it exists; several ranges get the
//!   whole file, 200 (`files/conditional.rs` says why); `If-Range` with another date
//!   gets the whole file too;
//! - a directory: its `index.html` if it has one, else an HTML listing (names escaped,
//!   dotfiles and symlinks leading out left out); a directory asked for without its
//!   trailing slash is redirected (301) to it, so relative links work;
//! - anything else is 404, and 403 for what exists but leads out of the root or may
//!   not be read. Nothing outside the root is ever served: `files/resolve.rs` has the
//!   rules (strict decoding once, no dot segments or dotfiles, no encoded separators,
//!   and a canonical path that must stay under the canonical root).
//!
//! Stdout: `listening on <addr>`, then the report line at exit. A download in flight
//! when SIGTERM lands goes on until it ends or `--drain-timeout` passes; past it, it
//! is cut (the client sees fewer bytes than `Content-Length`), the report counts it
//! `forced` and the exit code is 124 — and the client resumes with `Range` against the
//! next process. Deploys: `--pid-file` and SIGUSR2 upgrade it like `lameduck http`
//! (the new process serves beside the old one until the old one has drained), and a
//! socket passed by systemd is served instead of `--addr`.

// The parts, each with its own tests: which file a path names, which bytes of it to
// send, and a directory's page.
#[path = "files/conditional.rs"]
mod conditional;
#[path = "files/listing.rs"]
mod listing;
#[path = "files/resolve.rs"]
mod resolve;

use std::error::Error;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;
use lameduck::deploy::Deploy;
use lameduck::protocol::http::http::{self, header, HeaderValue, Method, StatusCode};
use lameduck::protocol::http::{
    text, Body, Context, Error as ServiceError, Http, Request, Response,
};
use lameduck::{logging, output, signals, Lifecycle, Server, Shutdown};

use conditional::{Conditions, Plan};
use resolve::{Refusal, RequestPath, Resolved, Root};

/// Serves the files under a directory over HTTP, shut down gracefully.
#[derive(Debug, Parser)]
struct Args {
    /// The directory served; nothing outside it ever is.
    #[arg(long)]
    root: PathBuf,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// Worker threads, each serving one connection (one download) at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    workers: u16,

    /// Accepted connections that may wait for a free worker.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    queue: u32,

    /// How long downloads in flight may go on after the signal before they are cut
    /// (exit 124).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// The whole shutdown budget, from the signal to the report; at least
    /// --drain-timeout. [default: --drain-timeout + 1s]
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_timeout: Option<Duration>,

    /// Keep accepting for this long after the signal (the drain's first part).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    drain_delay: Duration,

    /// Longest a worker blocks in one read or write mid-request.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    tick: Duration,

    /// Close keep-alive connections idle for this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,

    /// Give up a client that takes no byte of a download for this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,

    /// Write the serving process's PID here; an upgrade's new process rewrites it.
    #[arg(long)]
    pid_file: Option<PathBuf>,

    /// SIGUSR2 starts this program again with the same arguments and hands it the
    /// listener; one not ready within this long is killed and this process serves on.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    upgrade_timeout: Duration,
}

/// Exit code of a usage error (as clap's own).
const EXIT_USAGE: u8 = 2;

/// The service: every request is answered from the root.
#[derive(Debug)]
struct Files {
    root: Root,
}

impl Files {
    fn answer(&self, request: &Request<'_>) -> Result<Response, ServiceError> {
        // HEAD reaches the service as GET: lameduck sends the same headers without
        // the body.
        if request.method() != Method::GET {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = HeaderValue::from_static("GET, HEAD");
            response.headers_mut().insert(header::ALLOW, allow);
            return Ok(response);
        }
        let raw = request.uri().path();
        let resolved = resolve::parse(raw).and_then(|path| {
            let found = self.root.resolve(&path)?;
            Ok((path, found))
        });
        match resolved {
            Ok((path, Resolved::File(file, meta))) => {
                let name = path.segments.last().map_or("", String::as_str);
                file_response(request, file, &meta, name)
            }
            Ok((path, Resolved::Dir(dir))) => self.directory(request, raw, path, dir),
            Err(refusal) => refused(refusal),
        }
    }

    /// A directory: redirected to its slashed path, its `index.html`, or its
    /// listing.
    fn directory(
        &self,
        request: &Request<'_>,
        raw: &str,
        mut path: RequestPath,
        dir: PathBuf,
    ) -> Result<Response, ServiceError> {
        if !path.trailing_slash {
            // `raw` came in a valid request target, so it is a valid header value.
            let mut response = text(
                StatusCode::MOVED_PERMANENTLY,
                "moved to the path with a slash\n",
            );
            let location = HeaderValue::from_str(&format!("{raw}/"))?;
            response.headers_mut().insert(header::LOCATION, location);
            return Ok(response);
        }
        let title = path.display();
        path.segments.push("index.html".into());
        path.trailing_slash = false;
        match self.root.resolve(&path) {
            Ok(Resolved::File(file, meta)) => {
                return file_response(request, file, &meta, "index.html")
            }
            Err(Refusal::Forbidden) => return refused(Refusal::Forbidden),
            Ok(Resolved::Dir(_)) | Err(Refusal::NotFound) => {}
        }
        let (entries, more) = match listing::read(&dir, &self.root) {
            Ok(listed) => listed,
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                return refused(Refusal::Forbidden)
            }
            Err(err) => return Err(err.into()),
        };
        Ok(http::Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::from(listing::render(&title, &entries, more)))?)
    }
}

/// The answer for a regular file: 200, 206, 304 or 416.
fn file_response(
    request: &Request<'_>,
    file: File,
    meta: &Metadata,
    name: &str,
) -> Result<Response, ServiceError> {
    let sent = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let when = Conditions {
        if_modified_since: sent(header::IF_MODIFIED_SINCE),
        range: sent(header::RANGE),
        if_range: sent(header::IF_RANGE),
    };
    let len = meta.len();
    let modified = meta.modified().ok();
    let mut response = http::Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if let Some(modified) = modified {
        response = response.header(header::LAST_MODIFIED, conditional::http_date(modified));
    }
    let content_type = mime_guess::from_path(name).first_or_octet_stream();
    let content_type = HeaderValue::from_str(content_type.essence_str())?;
    let response = match conditional::plan(len, modified, SystemTime::now(), &when) {
        Plan::NotModified => response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())?,
        Plan::Full => response
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::file(file, 0, len))?,
        Plan::Partial { start, len: part } => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", start + part - 1),
            )
            .body(Body::file(file, start, part))?,
        Plan::Unsatisfiable => response
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("range not satisfiable\n"))?,
    };
    Ok(response)
}

/// 404 or 403, the same body whatever the reason.
fn refused(refusal: Refusal) -> Result<Response, ServiceError> {
    Ok(match refusal {
        Refusal::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
        Refusal::Forbidden => text(StatusCode::FORBIDDEN, "forbidden\n"),
    })
}

fn main() -> ExitCode {
    serve(std::env::args_os())
}

/// The whole program for these command-line arguments (the program's name first):
/// the files bench runs the server from its own binary through this.
pub fn serve<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::parse_from(args);
    // The first logger of this process: installing it cannot fail.
    let _ = logging::init();
    let code = match check(&args).and_then(|root| run(args, root).map_err(Failure::Run)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(err)) => {
            logging::stderr_line(&format!("files: {err}"));
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Run(err)) => {
            logging::stderr_line(&format!("files: {err}"));
            ExitCode::from(1)
        }
    };
    logging::finish(logging::STDERR_BOUND);
    code
}

/// How the program failed: a usage error (exit 2) or one while running (exit 1).
enum Failure {
    Usage(String),
    Run(Box<dyn Error>),
}

/// The arguments clap cannot check: the root and the shutdown's durations.
fn check(args: &Args) -> Result<Root, Failure> {
    if args
        .shutdown_timeout
        .is_some_and(|budget| budget < args.drain_timeout)
    {
        return Err(Failure::Usage(
            "--shutdown-timeout must be at least --drain-timeout".into(),
        ));
    }
    if !args.drain_delay.is_zero() && args.drain_delay >= args.drain_timeout {
        return Err(Failure::Usage(
            "--drain-delay must be shorter than --drain-timeout, which it is part of".into(),
        ));
    }
    if args.tick.is_zero() {
        return Err(Failure::Usage("--tick must be more than zero".into()));
    }
    Root::new(&args.root)
        .map_err(|err| Failure::Usage(format!("--root {}: {err}", args.root.display())))
}

fn run(args: Args, root: Root) -> Result<u8, Box<dyn Error>> {
    // Sockets handed over by systemd or by the process this one upgrades.
    let mut deploy = Deploy::from_env()?.upgrade_on_sigusr2(args.upgrade_timeout);
    if let Some(path) = &args.pid_file {
        deploy = deploy.pid_file(path);
    }
    let shutdown = Shutdown::new();
    signals::install(&shutdown)?;
    let budget = args
        .shutdown_timeout
        .unwrap_or(args.drain_timeout.saturating_add(Duration::from_secs(1)));
    // Nothing to clean up but the report: whatever the budget leaves after the
    // drain is the reserve.
    let mut life = Lifecycle::new(&shutdown)
        .with_budget(budget)
        .with_cleanup_reserve(budget.saturating_sub(args.drain_timeout));

    let files = Files { root };
    let service = move |request: Request<'_>, _ctx: &Context| files.answer(&request);
    let http = Http::new(service).idle_timeout(args.idle_timeout);
    let server = Server::builder()
        .listener(deploy.listen(args.addr, 1024)?)
        .workers(usize::from(args.workers))
        .queue(args.queue as usize)
        .tick(args.tick)
        .write_timeout(args.write_timeout)
        .drain_delay(args.drain_delay)
        .start(http, &shutdown)?;
    if let Err(err) = server.announce() {
        // Whoever was to read stdout has gone; the clients have not (as `lameduck`).
        log::warn!(
            "cannot write `listening on {}` to stdout: {err}; serving anyway",
            server.local_addr()
        );
    }
    let deployed = deploy.ready(&server, &mut life)?;
    let report = life.serve(server);
    deployed.finish(&report);
    output::print_line(&report.to_string());
    Ok(report.exit_code())
}
