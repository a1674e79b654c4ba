//! Graceful shutdown for an existing synchronous program, in a few added lines.
//!
//! The program before lameduck was a loop: record a batch in the ledger, sleep, repeat —
//! stopped by a signal's default action, in the middle of whatever it was doing, with
//! the ledger never closed. The lines marked `// lameduck` are all it takes to make it
//! stop between batches, let its background task finish, close the ledger last (after
//! nothing can use it any more), and print a report:
//!
//! ```text
//! cargo run --example embed
//! ```
//!
//! Prints `ready`, works until SIGINT/SIGTERM/SIGHUP, then prints the report line
//! (`outcome=clean`) and exits 0.

use std::error::Error;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::{logging, output, Lifecycle, Shutdown};

// ---- the existing program, unchanged ------------------------------------------------

/// Stands in for a database or a journal file: usable until closed, never after.
#[derive(Debug, Default)]
struct Ledger {
    state: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    batches: Vec<u64>,
    closed: bool,
}

impl Ledger {
    fn record(&self, batch: u64) -> Result<(), &'static str> {
        let mut state = self.state.lock().map_err(|_| "ledger lock poisoned")?;
        if state.closed {
            // The tutorial's "pool closed" error: what a too-early close causes.
            return Err("ledger is closed");
        }
        state.batches.push(batch);
        Ok(())
    }

    fn len(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.batches.len())
            .unwrap_or(0)
    }

    fn close(&self) -> Result<usize, &'static str> {
        let mut state = self.state.lock().map_err(|_| "ledger lock poisoned")?;
        state.closed = true;
        Ok(state.batches.len())
    }
}

fn process_batch(ledger: &Ledger, batch: u64) {
    match ledger.record(batch) {
        Ok(()) => log::info!("batch {batch} recorded"),
        Err(err) => log::error!("batch {batch} lost: {err}"),
    }
}

// ---- main, with the added lines marked ----------------------------------------------

fn main() -> ExitCode {
    // lameduck: logs that never block, whoever reads stderr (installing cannot fail:
    // this is the first logger).
    let _ = logging::init();
    let code = match run() {
        Ok(code) => code,
        Err(err) => {
            log::error!("embed: {err}");
            ExitCode::from(1)
        }
    };
    logging::finish(logging::STDERR_BOUND); // lameduck
    code
}

fn run() -> Result<ExitCode, Box<dyn Error>> {
    let period = Duration::from_millis(200);
    let ledger = Arc::new(Ledger::default());

    let shutdown = Shutdown::new(); // lameduck
    let mut life = Lifecycle::new(&shutdown).with_budget(Duration::from_secs(10)); // lameduck
    let closing = Arc::clone(&ledger); // lameduck: the ledger is closed last
    life.resource("ledger", Duration::from_secs(2), move || {
        let batches = closing.close()?;
        log::info!("ledger closed with {batches} batch(es)");
        Ok(())
    });
    let watched = Arc::clone(&ledger); // lameduck: a background task using the ledger
    life.spawn("progress", move |shutdown| {
        while !shutdown.wait_timeout(Duration::from_millis(500)) {
            log::info!("progress: {} batch(es) so far", watched.len());
        }
        log::info!("progress: stopping at {} batch(es)", watched.len());
        Ok(())
    })?;
    lameduck::signals::install(&shutdown)?; // lameduck

    output::print_line("ready"); // lameduck: never blocks on an unread stdout

    let mut batch = 0;
    // Was `loop { ...; thread::sleep(period) }`: the wait now ends early on shutdown.
    while !shutdown.wait_timeout(period) {
        batch += 1;
        process_batch(&ledger, batch);
    }

    let report = life.run(); // lameduck: tasks, then the ledger, then the report
    output::print_line(&report.to_string());
    Ok(ExitCode::from(report.exit_code()))
}
