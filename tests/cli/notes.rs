//! The notes example (HTTP over SQLite) stopped by SIGTERM in the middle of a write
//! load: every note the server acknowledged with 201 is in the database exactly once,
//! no client saw a reset or a truncated response, and the database is intact.
#![cfg(unix)]

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use support::http::{assert_clean_exit, url};
use support::{example, Process, PATIENCE};

/// Load clients, each with its own keep-alive connection.
const CLIENTS: usize = 32;
/// Acknowledged notes before the signal, so that it lands mid-load.
const BEFORE_SIGNAL: usize = 300;

#[derive(Debug, Default)]
struct Tally {
    /// (id, body) of every 201.
    acked: Vec<(i64, String)>,
    resets: Vec<String>,
    truncated: Vec<String>,
    statuses: Vec<u16>,
    /// Requests that went unanswered because they crossed the goodbye.
    crossed: usize,
    /// Connects refused while the clients were meant to be running.
    refused: usize,
}

/// A reset from the operating system. ureq reports a connection closed before the
/// response as its own `ConnectionAborted` "Unexpected EOF", which is a clean EOF
/// (a request that crossed the goodbye), so only errors with an OS code count.
fn is_reset(err: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.raw_os_error().is_some()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                )
            {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

/// Posts notes until `stop`; a refused connect ends it once `closing` is set (the
/// server was told to stop), and is counted before.
fn client(
    url: String,
    id: usize,
    stop: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    progress: crossbeam_channel::Sender<()>,
) -> Tally {
    let agent = ureq::AgentBuilder::new().timeout(PATIENCE).build();
    let mut tally = Tally::default();
    let deadline = Instant::now() + PATIENCE * 2;
    for n in 0.. {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        let body = format!("client {id} note {n}");
        match agent.post(&url).send_string(&body) {
            Ok(response) if response.status() == 201 => match response.into_string() {
                Ok(text) => match text.trim().parse() {
                    Ok(note) => {
                        tally.acked.push((note, body));
                        let _ = progress.send(());
                    }
                    Err(_) => tally.truncated.push(text),
                },
                Err(err) => tally.truncated.push(err.to_string()),
            },
            Ok(response) => tally.statuses.push(response.status()),
            Err(ureq::Error::Status(code, _)) => tally.statuses.push(code),
            Err(ureq::Error::Transport(err)) => {
                if err.kind() == ureq::ErrorKind::ConnectionFailed {
                    if closing.load(Ordering::SeqCst) {
                        break; // the listener is closed: the server has stopped accepting
                    }
                    tally.refused += 1;
                    continue;
                }
                if is_reset(&err) {
                    tally
                        .resets
                        .push(format!("{err} ({:?})", std::error::Error::source(&err)));
                } else {
                    tally.crossed += 1;
                }
            }
        }
    }
    tally
}

/// A fresh database path in a directory of the test's own.
fn fresh_db(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("lameduck-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let db = dir.join("notes.sqlite");
    (dir, db)
}

/// Starts the notes example on `db`, checkpointing often so the checkpoint task runs
/// during the load, with `extra` arguments.
fn notes_server(db: &std::path::Path, extra: &[&str]) -> Process {
    let db_arg = db.to_string_lossy().into_owned();
    let mut args = vec![
        "--db",
        &db_arg,
        "--addr",
        "127.0.0.1:0",
        "--checkpoint-every",
        "20ms",
    ];
    args.extend_from_slice(extra);
    Process::spawn_with_env(&example("notes"), &args, &[("RUST_LOG", "debug")])
}

/// Load clients posting notes to `url`, and a channel that ticks once per 201.
struct Load {
    stop: Arc<AtomicBool>,
    closing: Arc<AtomicBool>,
    progress: crossbeam_channel::Receiver<()>,
    clients: Vec<std::thread::JoinHandle<Tally>>,
}

impl Load {
    fn start(url: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let (progress_tx, progress) = crossbeam_channel::unbounded();
        let clients = (0..CLIENTS)
            .map(|id| {
                let (url, stop, closing, progress) = (
                    url.to_owned(),
                    Arc::clone(&stop),
                    Arc::clone(&closing),
                    progress_tx.clone(),
                );
                std::thread::spawn(move || client(url, id, stop, closing, progress))
            })
            .collect();
        Load {
            stop,
            closing,
            progress,
            clients,
        }
    }

    /// Waits for `count` more acknowledged notes.
    #[track_caller]
    fn progress(&self, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        for _ in 0..count {
            self.progress
                .recv_deadline(deadline)
                .expect("the clients make progress");
        }
    }

    /// From now on the server may refuse: the listener is about to close.
    fn closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for client in self.clients {
            let tally = client.join().expect("a client thread");
            total.acked.extend(tally.acked);
            total.resets.extend(tally.resets);
            total.truncated.extend(tally.truncated);
            total.statuses.extend(tally.statuses);
            total.crossed += tally.crossed;
            total.refused += tally.refused;
        }
        total
    }
}

#[test]
fn every_acknowledged_note_survives_sigterm_under_load() {
    let (dir, db) = fresh_db("notes");
    let mut server = notes_server(&db, &[]);
    let load = Load::start(&url(server.listening_addr(), "/notes"));
    load.progress(BEFORE_SIGNAL);
    load.closing();
    server.signal("TERM");
    let report = assert_clean_exit(&mut server);
    let tally = load.stop();
    check_stored(&db, &tally, &report);
    assert_eq!(
        tally.crossed, 0,
        "with the keep-alive grace no request goes unanswered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Upgrades with a database: two processes share it during each overlap.
#[test]
fn every_acknowledged_note_survives_five_upgrades_then_sigterm_under_load() {
    let (dir, db) = fresh_db("notes-upgrade");
    let pid_file = dir.join("notes.pid");
    let mut server = notes_server(&db, &["--pid-file", pid_file.to_str().unwrap()]);
    let addr = server.listening_addr();
    let mut successors = Vec::new();
    let read_pid = || -> u32 {
        std::fs::read_to_string(&pid_file)
            .expect("the pid file")
            .trim()
            .parse()
            .expect("a pid")
    };
    let load = Load::start(&url(addr, "/notes"));
    load.progress(BEFORE_SIGNAL / 3);
    let mut current = server.pid();
    for round in 0..5 {
        support::kill("USR2", current);
        let report = server.stdout_line_starting("stopped ");
        assert_eq!(support::field(&report, "reason"), "upgrade", "{report}");
        assert_eq!(support::field(&report, "outcome"), "clean", "{report}");
        let next = read_pid();
        assert_ne!(next, current, "round {round}: a new process serves");
        successors.push(support::KillOnDrop(next));
        current = next;
        load.progress(BEFORE_SIGNAL / 3);
    }
    assert_eq!(server.exit_status().code(), Some(0), "{}", server.dump());
    load.closing();
    support::kill("TERM", current);
    let (_, report) = server.finish();
    assert_eq!(support::field(&report, "reason"), "signal", "{report}");
    assert_eq!(support::field(&report, "outcome"), "clean", "{report}");
    let tally = load.stop();
    check_stored(&db, &tally, &report);
    assert_eq!(
        tally.refused, 0,
        "no connect refused across the upgrades: {tally:?}"
    );
    assert_eq!(tally.crossed, 0, "no request without a response");
    assert!(!pid_file.exists(), "the last process removed its pid file");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every acknowledged note is stored exactly once, the database is intact, and no
/// client saw a reset, a truncated response or an unexpected status.
#[track_caller]
fn check_stored(db: &std::path::Path, tally: &Tally, report: &str) {
    let Tally {
        acked,
        resets,
        truncated,
        statuses,
        crossed,
        ..
    } = tally;
    let crossed = *crossed;
    assert!(resets.is_empty(), "resets: {resets:?}");
    assert!(truncated.is_empty(), "truncated responses: {truncated:?}");
    assert!(statuses.is_empty(), "unexpected statuses: {statuses:?}");
    assert!(acked.len() >= BEFORE_SIGNAL);
    eprintln!(
        "{} notes acknowledged, {crossed} request(s) crossed the goodbye; {report}",
        acked.len()
    );

    let conn = rusqlite::Connection::open(db).expect("open the database");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    let mut stored: HashMap<i64, String> = HashMap::new();
    let mut bodies: HashMap<String, usize> = HashMap::new();
    let mut select = conn.prepare("SELECT id, body FROM notes").expect("a query");
    let rows = select
        .query_map([], |row| {
            let body: Vec<u8> = row.get(1)?;
            Ok((
                row.get::<_, i64>(0)?,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        })
        .expect("rows");
    for row in rows {
        let (id, body) = row.expect("a row");
        *bodies.entry(body.clone()).or_default() += 1;
        stored.insert(id, body);
    }
    for (id, body) in acked {
        assert_eq!(
            stored.get(id),
            Some(body),
            "acknowledged note {id} is stored"
        );
        assert_eq!(bodies.get(body), Some(&1), "note {body:?} is stored once");
    }
    // Unacknowledged notes (whose request crossed the goodbye) may or may not be
    // stored, but never twice.
    assert!(bodies.values().all(|&n| n == 1), "a note stored twice");
    assert!(stored.len() <= acked.len() + crossed);
}

/// A failing startup hook exits 1 with its cause as the one line on stderr.
#[test]
fn a_database_that_cannot_open_exits_1_with_one_line() {
    let dir = std::env::temp_dir().join(format!("lameduck-no-such-dir-{}", std::process::id()));
    let db = dir.join("notes.db");
    let db = db.to_str().expect("a UTF-8 temp path");
    let mut notes = Process::spawn_with_env(
        &example("notes"),
        &["--db", db, "--addr", "127.0.0.1:0"],
        &[("RUST_LOG", "error")],
    );
    let (status, last) = notes.finish();
    assert_eq!(status.code(), Some(1), "{}", notes.dump());
    assert!(last.is_empty(), "nothing on stdout: it never listened");
    let stderr = notes.stderr_text();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("startup hook"), "stderr: {stderr}");
    assert!(
        stderr.contains("unable to open"),
        "the cause is named: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

/// A read-only database (here `mode=ro`; a read-only mount or file mode alike) is
/// refused at start: exit 1 with the cause, rather than saying ready and answering
/// every POST 500.
#[test]
fn a_read_only_database_is_refused_at_start() {
    let (dir, db) = fresh_db("notes-readonly");
    {
        let conn = rusqlite::Connection::open(&db).expect("create the database");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
        )
        .expect("set it up as the example would");
    }
    let read_only = format!("file:{}?mode=ro", db.display());
    let mut notes = Process::spawn_with_env(
        &example("notes"),
        &["--db", &read_only, "--addr", "127.0.0.1:0"],
        &[("RUST_LOG", "error")],
    );
    let (status, last) = notes.finish();
    assert_eq!(status.code(), Some(1), "{}", notes.dump());
    assert!(last.is_empty(), "it never said listening");
    let stderr = notes.stderr_text();
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(stderr.contains("read-only"), "the cause is named: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
