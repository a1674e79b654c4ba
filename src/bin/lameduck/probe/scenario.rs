//! What every scenario of either zoo is made of: a thread per client connection that
//! says `ready` once it is going, so the scenarios reach the server one after another
//! in a fixed order; an arm for the clients that act at the last moment before the
//! signal; and the row their records are gathered into.

use std::io;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::clients::{Ctx, Exchange};
use super::report::{Conn, Row};

/// A scenario's threads: their records come back on join.
pub struct Running {
    pub name: &'static str,
    pub what: &'static str,
    pub goodbye_expected: bool,
    pub threads: Vec<JoinHandle<(Conn, Vec<String>)>>,
}

/// Told just before the signal, for scenarios that act at the last moment; they answer
/// on `armed` once they have.
pub struct Arm {
    pub go: Sender<()>,
    pub armed: Receiver<()>,
}

/// Starts a scenario's connection thread and waits until it says `ready`.
pub fn spawn_conn(
    ctx: &Arc<Ctx>,
    name: &str,
    body: impl FnOnce(&Ctx, Sender<()>) -> (Conn, Vec<String>) + Send + 'static,
) -> io::Result<JoinHandle<(Conn, Vec<String>)>> {
    let ctx = Arc::clone(ctx);
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let handle = thread::Builder::new()
        .name(format!("probe-{name}"))
        .spawn(move || body(&ctx, ready_tx))?;
    // Dropped sender (the body gave up) or ready: either way, on to the next.
    let _ = ready_rx.recv_deadline(Instant::now() + Duration::from_secs(10));
    Ok(handle)
}

/// Opens a connection of either protocol for [`armed`].
pub type Open = for<'a> fn(&'a Ctx) -> Result<Box<dyn Exchange + 'a>, Conn>;

/// A connection that has been answered once, then, when the probe arms it just
/// before the signal, sends one more request and does `then` (the scenarios differ
/// only there); the signal follows as soon as that request is out.
pub fn armed(
    ctx: &Arc<Ctx>,
    name: &'static str,
    what: &'static str,
    goodbye_expected: bool,
    open: Open,
    then: fn(&mut dyn Exchange),
) -> io::Result<(Running, Arm)> {
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let (armed_tx, armed_rx) = crossbeam_channel::bounded::<()>(1);
    let thread = spawn_conn(ctx, name, move |ctx, ready| {
        let mut conn = match open(ctx) {
            Ok(conn) => conn,
            Err(rec) => return (rec, Vec::new()),
        };
        conn.send(1);
        conn.until_answered();
        let _ = ready.send(());
        let _ = go_rx.recv_deadline(ctx.stop);
        conn.send(1);
        then(conn.as_mut());
        drop(armed_tx);
        (conn.finish(), Vec::new())
    })?;
    Ok((
        Running {
            name,
            what,
            goodbye_expected,
            threads: vec![thread],
        },
        Arm {
            go: go_tx,
            armed: armed_rx,
        },
    ))
}

/// Gathers a scenario's records into its row.
pub fn collect(running: Running) -> Row {
    let mut row = Row::new(running.name, running.what, running.goodbye_expected);
    for handle in running.threads {
        match handle.join() {
            Ok((conn, notes)) => {
                row.conns.push(conn);
                for note in notes {
                    if !row.notes.contains(&note) {
                        row.notes.push(note);
                    }
                }
            }
            Err(_) => row.problems.push("a probe client thread panicked".into()),
        }
    }
    row
}
