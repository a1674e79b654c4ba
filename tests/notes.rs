//! The notes example (HTTP over SQLite) stopped by SIGTERM in the middle of a write
//! load: every note the server acknowledged with 201 is in the database exactly once,
//! no client saw a reset or a truncated response, and the database is intact.
#![cfg(all(unix, feature = "cli"))]

mod support;

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

fn client(
    url: String,
    id: usize,
    stop: Arc<AtomicBool>,
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
                    break; // the listener is closed: the server has stopped accepting
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

#[test]
fn every_acknowledged_note_survives_sigterm_under_load() {
    let dir = std::env::temp_dir().join(format!("lameduck-notes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let db = dir.join("notes.sqlite");
    for stale in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{stale}", db.display()));
    }
    let db_arg = db.to_string_lossy().into_owned();
    let mut server = Process::spawn_with_env(
        &example("notes"),
        &[
            "--db",
            &db_arg,
            "--addr",
            "127.0.0.1:0",
            "--checkpoint-every",
            "20ms",
        ],
        &[("RUST_LOG", "debug")],
    );
    let url = url(server.listening_addr(), "/notes");
    let stop = Arc::new(AtomicBool::new(false));
    let (progress_tx, progress) = crossbeam_channel::unbounded();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (url, stop, progress) = (url.clone(), Arc::clone(&stop), progress_tx.clone());
            std::thread::spawn(move || client(url, id, stop, progress))
        })
        .collect();
    drop(progress_tx);
    let deadline = Instant::now() + PATIENCE;
    for _ in 0..BEFORE_SIGNAL {
        progress
            .recv_deadline(deadline)
            .expect("the clients make progress before the signal");
    }
    server.signal("TERM");
    let report = assert_clean_exit(&mut server);
    stop.store(true, Ordering::SeqCst);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .collect();

    let acked: Vec<&(i64, String)> = tallies.iter().flat_map(|t| &t.acked).collect();
    let resets: Vec<&String> = tallies.iter().flat_map(|t| &t.resets).collect();
    let truncated: Vec<&String> = tallies.iter().flat_map(|t| &t.truncated).collect();
    let statuses: Vec<u16> = tallies.iter().flat_map(|t| t.statuses.clone()).collect();
    let crossed: usize = tallies.iter().map(|t| t.crossed).sum();
    assert!(resets.is_empty(), "resets: {resets:?}");
    assert!(truncated.is_empty(), "truncated responses: {truncated:?}");
    assert!(statuses.is_empty(), "unexpected statuses: {statuses:?}");
    assert!(acked.len() >= BEFORE_SIGNAL);
    eprintln!(
        "{} notes acknowledged, {crossed} request(s) crossed the goodbye; {report}",
        acked.len()
    );

    let conn = rusqlite::Connection::open(&db).expect("open the database");
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
    for (id, body) in &acked {
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
    let _ = std::fs::remove_dir_all(&dir);
}

/// SPEC §2.1: a failing startup hook exits 1 with its cause as the one line on stderr.
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
