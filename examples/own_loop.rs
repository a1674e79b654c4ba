//! A key-value store with its own `std::net` accept loop, made to shut down gracefully
//! with lameduck's kit rather than its server: the clients already in the backlog are
//! served, each connection finishes the request it is in, says goodbye and closes
//! without a reset, and the connection threads are joined against a deadline.
//!
//! ```text
//! cargo run --example own_loop -- 127.0.0.1:7000
//! ```
//!
//! Protocol, one command a line: `SET key value` → `OK`, `GET key` → the value or
//! `NOT FOUND`, `DEL key` → `OK`, anything else → `ERROR ...`. Prints `listening on
//! <addr>`; on SIGINT/SIGTERM/SIGHUP every client reads `BYE shutting down` after its
//! last reply, stdout ends with the report line and the exit code is 0 (124 if a
//! client held its connection past the 10 s drain, 130 on a second signal).

use std::collections::HashMap;
use std::error::Error;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lameduck::{output, signals, take_backlog, Connection, DrainSummary, Lifecycle};
use lameduck::{OnFailure, Outcome, Shutdown, TaskGroup};

const GOODBYE: &[u8] = b"BYE shutting down\r\n";
/// How late a connection idle between commands notices the drain.
const TICK: Duration = Duration::from_millis(100);
const LINGER: Duration = Duration::from_secs(1);

type Store = Arc<Mutex<HashMap<String, String>>>;

fn answer(command: &str, store: &Store) -> String {
    let mut store = store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut words = command.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("SET"), Some(key), Some(value)) => {
            store.insert(key.to_owned(), value.to_owned());
            "OK".to_owned()
        }
        (Some("GET"), Some(key), None) => store.get(key).cloned().unwrap_or("NOT FOUND".into()),
        (Some("DEL"), Some(key), None) => {
            store.remove(key);
            "OK".to_owned()
        }
        _ => format!("ERROR unknown command {command:?}"),
    }
}

/// One client, on its own thread: `Ok(0)` from a read means the client closed, or
/// the drain found it between commands and said the goodbye.
fn serve(
    stream: TcpStream,
    shutdown: &Shutdown,
    store: &Store,
    drained: &AtomicU64,
) -> io::Result<()> {
    let mut conn = Connection::from_stream(stream, shutdown, TICK)?.with_goodbye(GOODBYE);
    let mut reader = BufReader::new(&mut conn);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line)? > 0 {
        let reply = answer(String::from_utf8_lossy(&line).trim(), store);
        write!(reader.get_mut(), "{reply}\r\n")?;
        line.clear();
    }
    drop(reader);
    conn.close_gracefully(LINGER)?;
    if shutdown.is_triggered() {
        drained.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn spawn(
    conns: &mut TaskGroup,
    stream: TcpStream,
    store: &Store,
    drained: &Arc<AtomicU64>,
) -> Result<(), Box<dyn Error>> {
    let (store, drained) = (Arc::clone(store), Arc::clone(drained));
    // A client's failure (a reset, say) is its own: report it, do not shut down.
    conns.spawn_with("conn", OnFailure::Report, move |shutdown| {
        Ok(serve(stream, &shutdown, &store, &drained)?)
    })?;
    Ok(())
}

fn run() -> Result<u8, Box<dyn Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let listener = TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    let shutdown = Shutdown::new();
    let life = Lifecycle::new(&shutdown).with_budget(Duration::from_secs(12));
    signals::install(&shutdown)?;
    output::print_line(&format!("listening on {}", listener.local_addr()?));

    let (store, drained) = (Store::default(), Arc::new(AtomicU64::new(0)));
    let mut conns = TaskGroup::new(&shutdown);
    while !shutdown.is_triggered() {
        match listener.accept() {
            Ok((stream, _peer)) => spawn(&mut conns, stream, &store, &drained)?,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                shutdown.wait_timeout(Duration::from_millis(10));
            }
            Err(err) => {
                log::warn!("accept failed: {err}");
                shutdown.wait_timeout(Duration::from_millis(10));
            }
        }
    }
    let report = life.run_with(|deadline| {
        let began = Instant::now();
        // Those already in the backlog connected before the drain: serve them, then
        // close the listener, which resets nobody.
        for (stream, _peer) in take_backlog(&listener).unwrap_or_default() {
            if let Err(err) = spawn(&mut conns, stream, &store, &drained) {
                log::error!("{err}");
            }
        }
        drop(listener);
        let tasks = conns.join(deadline);
        let detached = tasks.detached() as u64;
        DrainSummary {
            drained: drained.load(Ordering::Relaxed),
            forced: detached,
            detached_threads: detached,
            duration: Some(began.elapsed()),
            outcome: if detached > 0 {
                Outcome::Deadline
            } else {
                Outcome::Clean
            },
            ..DrainSummary::default()
        }
    });
    output::print_line(&report.to_string());
    Ok(report.exit_code())
}

fn main() -> ExitCode {
    // The library logs through `log`: without a logger nothing of it is seen.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log::error!("own_loop: {err}");
            ExitCode::from(1)
        }
    }
}
