//! A small HTTP service over SQLite: the tutorial's web-server template with its
//! database section done properly.
//!
//! ```text
//! cargo run --example notes -- --db notes.sqlite
//! curl -d 'buy milk' http://127.0.0.1:8080/notes      # 201, body: the new id
//! curl http://127.0.0.1:8080/notes/1                  # the note
//! curl http://127.0.0.1:8080/notes                    # how many notes
//! ```
//!
//! The database opens in a startup hook (a failure exits 1 with the cause), a
//! supervised task checkpoints the write-ahead log every `--checkpoint-every`, and the
//! database is a resource: it is closed — after a final checkpoint — only once every
//! connection has drained and the task has stopped, so no request ever meets a closed
//! database (the tutorial closes its pool after a fixed sleep, requests or not). The
//! HTTP side is lameduck's own handler with this service's routes.
//!
//! Stdout: `listening on <addr>`, then the report line at exit.
//!
//! Deploys: `--pid-file` and SIGUSR2 upgrade it like `lameduck http` (the new process
//! opens the same database and serves beside the old one until the old one has
//! drained), and a socket passed by systemd is served instead of `--addr`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Parser;
use lameduck::deploy::Deploy;
use lameduck::protocol::http::http::{self, header, HeaderValue, Method, StatusCode};
use lameduck::protocol::http::{text, Body, Context, Error, Http, Request, Response};
use lameduck::{logging, output, signals, Lifecycle, Server, Shutdown};
use rusqlite::{params, OptionalExtension};

/// Notes over HTTP, stored in SQLite, shut down gracefully.
#[derive(Debug, Parser)]
struct Args {
    /// The SQLite database file (created if missing).
    #[arg(long)]
    db: PathBuf,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,

    /// Worker threads, each serving one connection at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    workers: u16,

    /// Accepted connections that may wait for a free worker.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    queue: u32,

    /// The whole shutdown budget, from the signal to the report.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,

    /// Keep accepting for this long after the signal while /healthz says 503.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    drain_delay: Duration,

    /// Longest a worker blocks in one read or write mid-request.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    tick: Duration,

    /// Close keep-alive connections idle for this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,

    /// How often the background task checkpoints the write-ahead log.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    checkpoint_every: Duration,

    /// Largest note accepted (413 beyond).
    #[arg(long, default_value_t = 64 * 1024)]
    max_note: usize,

    /// Write the serving process's PID here; an upgrade's new process rewrites it.
    #[arg(long)]
    pid_file: Option<PathBuf>,

    /// SIGUSR2 starts this program again with the same arguments and hands it the
    /// listener; one not ready within this long is killed and this process serves on.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    upgrade_timeout: Duration,
}

/// The database, shared by every worker; `None` once closed. A mutex is all SQLite
/// needs here: it allows one writer at a time anyway, and a statement takes
/// microseconds.
#[derive(Debug)]
struct Db {
    conn: Mutex<Option<rusqlite::Connection>>,
}

impl Db {
    fn open(path: &PathBuf) -> Result<Db, Error> {
        let conn = rusqlite::Connection::open(path)?;
        // SQLite falls back to read-only when it cannot write (file mode, a read-only
        // mount, `mode=ro`): a service that stores notes must refuse to start, not say
        // ready and answer every POST 500.
        if conn.is_readonly(rusqlite::DatabaseName::Main)? {
            return Err(format!("database {} is read-only", path.display()).into());
        }
        // WAL lets readers run beside the writer; NORMAL syncs at checkpoints, which
        // keeps every committed note across a crash of this process.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body BLOB NOT NULL)",
            [],
        )?;
        Ok(Db {
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Runs `f` on the open connection.
    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = guard.as_ref().ok_or("database is closed")?;
        Ok(f(conn)?)
    }

    fn checkpoint(&self, mode: &str) -> Result<(), Error> {
        self.with(|conn| conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())))
    }

    fn close(&self) -> Result<(), Error> {
        self.checkpoint("TRUNCATE")?;
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or("database closed twice")?;
        conn.close().map_err(|(_, err)| err)?;
        Ok(())
    }
}

/// The routes.
#[derive(Debug)]
struct Notes {
    db: Arc<Db>,
}

/// A `405` naming the methods `allow`ed.
fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

impl Notes {
    /// Answers a request; a database error is returned, which the handler logs and
    /// answers `500`. A HEAD arrives as a GET.
    fn route(&self, mut req: Request<'_>, ctx: &Context) -> Result<Response, Error> {
        let path = req.uri().path().to_owned();
        Ok(match (req.method().clone(), path.as_str()) {
            (Method::GET, "/healthz") if ctx.is_ready() => text(StatusCode::OK, "ok\n"),
            (Method::GET, "/healthz") => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            // Within `--max-note`: a longer body is refused with 413 by the handler.
            (Method::POST, "/notes") => self.create(&req.body_mut().to_vec()?)?,
            (Method::GET, "/notes") => self.count()?,
            (Method::GET, _) if path.starts_with("/notes/") => self.fetch(&path[7..])?,
            (_, "/notes") => method_not_allowed("GET, HEAD, POST"),
            (_, "/healthz") => method_not_allowed("GET, HEAD"),
            _ if path.starts_with("/notes/") => method_not_allowed("GET, HEAD"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        })
    }

    fn create(&self, body: &[u8]) -> Result<Response, Error> {
        let id = self.db.with(|conn| {
            conn.execute("INSERT INTO notes (body) VALUES (?1)", params![body])?;
            Ok(conn.last_insert_rowid())
        })?;
        let mut response = text(StatusCode::CREATED, format!("{id}\n"));
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::try_from(format!("/notes/{id}"))?,
        );
        Ok(response)
    }

    fn count(&self) -> Result<Response, Error> {
        let count: i64 = self
            .db
            .with(|conn| conn.query_row("SELECT COUNT(*) FROM notes", [], |row| row.get(0)))?;
        Ok(text(StatusCode::OK, format!("{count}\n")))
    }

    fn fetch(&self, id: &str) -> Result<Response, Error> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
        };
        let body: Option<Vec<u8>> = self.db.with(|conn| {
            conn.query_row("SELECT body FROM notes WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
        })?;
        Ok(match body {
            Some(body) => http::Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from(body))?,
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The first logger of this process: installing it cannot fail.
    let _ = logging::init();
    let code = match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            logging::stderr_line(&format!("notes: {err}"));
            ExitCode::from(1)
        }
    };
    logging::finish(logging::STDERR_BOUND);
    code
}

fn run(args: Args) -> Result<u8, Box<dyn std::error::Error>> {
    // Sockets handed over by systemd or by the process this one upgrades.
    let mut deploy = Deploy::from_env()?.upgrade_on_sigusr2(args.upgrade_timeout);
    if let Some(path) = &args.pid_file {
        deploy = deploy.pid_file(path);
    }
    let shutdown = Shutdown::new();
    signals::install(&shutdown)?;
    let mut life = Lifecycle::new(&shutdown).with_budget(args.shutdown_timeout);

    // starting: open the database; its close is registered as soon as it exists.
    let db = Arc::new(life.run_startup_hook("open database", || Db::open(&args.db))?);
    let closing = Arc::clone(&db);
    life.resource("database", Duration::from_secs(5), move || closing.close());
    let checkpointing = Arc::clone(&db);
    let every = args.checkpoint_every;
    life.spawn("wal-checkpoint", move |shutdown| {
        while !shutdown.wait_timeout(every) {
            checkpointing.checkpoint("PASSIVE")?;
        }
        Ok(())
    })?;

    let notes = Notes { db };
    let http = Http::new(move |req: Request<'_>, ctx: &Context| notes.route(req, ctx))
        .max_body(args.max_note)
        .idle_timeout(args.idle_timeout);
    // During an upgrade two processes share the database: WAL and the busy timeout
    // let the new one write while the old one finishes its last requests.
    let server = Server::builder()
        .listener(deploy.listen(args.addr, 1024)?)
        .workers(usize::from(args.workers))
        .queue(args.queue as usize)
        .tick(args.tick)
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

    // serving → draining → cleanup (checkpoint task stops, then the database closes).
    let report = life.serve(server);
    deployed.finish(&report);
    output::print_line(&report.to_string());
    Ok(report.exit_code())
}
