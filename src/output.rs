//! Protocol lines on stdout — `listening on <addr>` and the report — written with a
//! bound, so a supervisor that stopped reading (a full pipe) or went away (a broken
//! pipe) can neither hang nor crash a server.
//!
//! Std offers no timeout on a write to stdout, and making the descriptor
//! non-blocking would change it for every process sharing it. So one thread,
//! `lameduck-stdout`, does the blocking writes, in order, and the caller waits for
//! each line's result up to a bound. A line not written in time stays queued: it is
//! delivered if the reader catches up before the process exits, and lost otherwise
//! (a thread stuck in a write does not keep a process from exiting). Std ignores
//! SIGPIPE, so a reader that has gone away is an error (`EPIPE`), never a signal,
//! and `println!`'s panic on that error is avoided by not using it.

use std::error::Error;
use std::fmt;
use std::io::{self, Write};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

/// How long [`write_line`]'s callers in this crate wait for stdout: long enough for
/// any reader that is reading at all, short next to a shutdown budget.
pub const STDOUT_BOUND: Duration = Duration::from_secs(1);

/// Lines that may wait for the writer; far more than a program ever queues (two).
const QUEUE: usize = 64;

/// Why a line did not reach stdout.
#[derive(Debug)]
pub enum OutputError {
    /// Writing failed — most often `EPIPE`, the reader has gone away. The line is lost.
    Failed(io::Error),
    /// No progress within the bound: nobody is reading. The line stays queued and is
    /// delivered if the reader catches up before the process exits.
    Stalled(Duration),
    /// The writer thread could not be started; nothing is written.
    NoWriter(String),
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::Failed(err) => write!(f, "cannot write to stdout: {err}"),
            OutputError::Stalled(bound) => {
                write!(f, "stdout is not being read (no progress in {bound:?})")
            }
            OutputError::NoWriter(err) => write!(f, "cannot start the stdout writer: {err}"),
        }
    }
}

impl Error for OutputError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OutputError::Failed(err) => Some(err),
            OutputError::Stalled(_) | OutputError::NoWriter(_) => None,
        }
    }
}

impl From<OutputError> for io::Error {
    fn from(err: OutputError) -> io::Error {
        match err {
            OutputError::Failed(err) => err,
            OutputError::Stalled(_) => io::Error::new(io::ErrorKind::TimedOut, err),
            OutputError::NoWriter(_) => io::Error::other(err),
        }
    }
}

/// A line for the writer and where to say how its write went.
type Job = (String, Sender<io::Result<()>>);

/// Writes `line` and a newline to stdout, waiting at most `bound` for the write.
///
/// Lines are written in the order of the calls, each in full or not at all as far as
/// this process can tell; a line still queued when the process exits is lost.
///
/// # Errors
/// [`OutputError::Failed`] if the write failed (the reader is gone: the line is
/// lost); [`OutputError::Stalled`] if it did not complete within `bound` (the line
/// is still queued); [`OutputError::NoWriter`] if the writer thread cannot start.
pub fn write_line(line: &str, bound: Duration) -> Result<(), OutputError> {
    let deadline = Instant::now() + bound;
    let jobs = writer()?;
    let (done_tx, done) = crossbeam_channel::bounded(1);
    match jobs.send_deadline((format!("{line}\n"), done_tx), deadline) {
        Ok(()) => {}
        Err(SendTimeoutError::Timeout(_)) => return Err(OutputError::Stalled(bound)),
        Err(SendTimeoutError::Disconnected(_)) => {
            return Err(OutputError::NoWriter("the writer thread has ended".into()))
        }
    }
    match done.recv_deadline(deadline) {
        Ok(result) => result.map_err(OutputError::Failed),
        Err(RecvTimeoutError::Timeout) => Err(OutputError::Stalled(bound)),
        Err(RecvTimeoutError::Disconnected) => {
            Err(OutputError::NoWriter("the writer thread has ended".into()))
        }
    }
}

fn writer() -> Result<&'static Sender<Job>, OutputError> {
    static WRITER: OnceLock<Result<Sender<Job>, String>> = OnceLock::new();
    WRITER
        .get_or_init(|| {
            let (jobs_tx, jobs) = crossbeam_channel::bounded(QUEUE);
            thread::Builder::new()
                .name("lameduck-stdout".into())
                .spawn(move || write_all(&jobs))
                .map(|_| jobs_tx)
                .map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| OutputError::NoWriter(err.clone()))
}

fn write_all(jobs: &Receiver<Job>) {
    for (line, done) in jobs {
        // Std's own handle, so these lines keep their order with anything else the
        // program prints; flushed at once, so nothing waits in its buffer for an exit
        // that would flush it without a bound.
        let mut stdout = io::stdout().lock();
        let result = stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush());
        drop(stdout);
        // The caller may have stopped waiting: then the result is nobody's business.
        let _ = done.send(result);
    }
}

/// [`write_line`] with [`STDOUT_BOUND`], for lines whose loss must not change what
/// the program does (the report: the exit code still says how the shutdown ended).
/// A line not delivered is named in a warning on the log. True if it was written.
pub fn print_line(line: &str) -> bool {
    match write_line(line, STDOUT_BOUND) {
        Ok(()) => true,
        Err(err @ OutputError::Stalled(_)) => {
            log::warn!(
                "{err}: `{line}` stays queued, delivered only if it is read before the exit"
            );
            false
        }
        Err(err) => {
            log::warn!("{err}: `{line}` is lost");
            false
        }
    }
}
