//! The programs' logging: `env_logger` filters and formats (`RUST_LOG`, default
//! `info`), and a bounded queue decouples every thread from stderr.
//!
//! A log call must never stall the thread that makes it — the signal path, the
//! acceptor, a worker — so records are not written where they are made: each
//! formatted record is offered to a bounded channel, and one thread,
//! `lameduck-log`, writes them to stderr. When stderr is not being read and the
//! channel is full, a record is dropped and counted instead of waited for. At exit,
//! [`finish`] gives the queue a bounded time to reach stderr and says, once, how many
//! records were dropped. Panic messages take the same path (the default panic hook
//! writes to stderr directly, and would block a panicking worker on a full pipe).
//!
//! This is the setup of the `lameduck` binary and of the examples; a library user
//! keeps their own logger. Behind the `cli` feature, with `env_logger`.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// How long [`finish`] waits by default for queued records to reach stderr.
pub const STDERR_BOUND: Duration = Duration::from_secs(1);

/// Records that may wait for stderr before new ones are dropped: a burst of
/// warnings fits, an unread pipe cannot hold memory hostage.
const QUEUE: usize = 4096;

enum Message {
    Line(Vec<u8>),
    /// Answered once every message queued before it has been written.
    Flush(Sender<()>),
}

struct Sink {
    queue: Sender<Message>,
    dropped: AtomicU64,
}

impl Sink {
    fn offer(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Line(line))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The sink, started on first use; `None` if its thread cannot start, and then
/// lines are dropped (counted nowhere: there is nobody to tell).
fn sink() -> Option<&'static Sink> {
    static SINK: OnceLock<Option<Sink>> = OnceLock::new();
    SINK.get_or_init(|| {
        let (queue, lines) = crossbeam_channel::bounded(QUEUE);
        thread::Builder::new()
            .name("lameduck-log".into())
            .spawn(move || write_all(&lines))
            .ok()
            .map(|_| Sink {
                queue,
                dropped: AtomicU64::new(0),
            })
    })
    .as_ref()
}

fn write_all(lines: &Receiver<Message>) {
    let stderr = io::stderr();
    for message in lines {
        match message {
            // An error writing a log record has nowhere to be reported; the next
            // record tries again.
            Message::Line(line) => {
                let _ = stderr.lock().write_all(&line);
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// `env_logger`'s target: collects one formatted record (env_logger writes it, then
/// flushes) and hands it to the sink without waiting.
struct QueueWriter {
    record: Vec<u8>,
}

impl Write for QueueWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.record.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.record.is_empty() {
            let record = std::mem::take(&mut self.record);
            if let Some(sink) = sink() {
                sink.offer(record);
            }
        }
        Ok(())
    }
}

/// Installs the logger: `RUST_LOG` filters (default `info`), records carry a
/// millisecond timestamp, and reach stderr through the non-blocking queue. Also
/// routes panic messages through the queue, as the default hook words them (with a
/// backtrace when `RUST_BACKTRACE` asks for one).
///
/// # Errors
/// Another logger is already installed; nothing has changed then.
pub fn init() -> Result<(), log::SetLoggerError> {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder
        .format_timestamp_millis()
        .target(env_logger::Target::Pipe(Box::new(QueueWriter {
            record: Vec::new(),
        })));
    // env_logger colours only the terminals it writes to itself; it writes to a
    // pipe here, so it is told what stderr is (RUST_LOG_STYLE still decides).
    if std::env::var_os("RUST_LOG_STYLE").is_none() && io::stderr().is_terminal() {
        builder.write_style(env_logger::WriteStyle::Always);
    }
    builder.try_init()?;
    std::panic::set_hook(Box::new(|info| {
        let thread = thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        // The default hook's text, unfiltered by `RUST_LOG`: a panic is always shown.
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                stderr_line(&format!("thread '{name}' {info}\n{backtrace}"));
            }
            _ => stderr_line(&format!("thread '{name}' {info}")),
        }
        // The main thread's panic ends the process: give its message a chance.
        if name == "main" {
            flush(STDERR_BOUND);
        }
    }));
    Ok(())
}

/// Queues `line` (a newline is added) for stderr as it is, without the log format:
/// for the one-line error a user reads when the program cannot run.
pub fn stderr_line(line: &str) {
    if let Some(sink) = sink() {
        sink.offer(format!("{line}\n").into_bytes());
    }
}

/// How many records were dropped so far because stderr was not keeping up.
pub fn dropped() -> u64 {
    sink().map_or(0, |sink| sink.dropped.load(Ordering::Relaxed))
}

/// Waits up to `bound` for every record queued so far to reach stderr; true if they
/// did.
pub fn flush(bound: Duration) -> bool {
    let Some(sink) = sink() else { return true };
    let deadline = Instant::now() + bound;
    let (done_tx, done) = crossbeam_channel::bounded(1);
    sink.queue
        .send_deadline(Message::Flush(done_tx), deadline)
        .is_ok()
        && done.recv_deadline(deadline).is_ok()
}

/// Call at the end of `main`: says once how many records were dropped, if any (best
/// effort: that line is queued like the others), then [`flush`]es with `bound`.
/// True if everything queued reached stderr.
pub fn finish(bound: Duration) -> bool {
    let dropped = dropped();
    if dropped > 0 {
        log::warn!("{dropped} log record(s) dropped: stderr was not being read fast enough");
    }
    flush(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_handed_over_at_flush_in_one_piece() {
        let mut writer = QueueWriter { record: Vec::new() };
        writer.write_all(b"[INFO] half ").unwrap();
        writer.write_all(b"and half\n").unwrap();
        assert_eq!(writer.record, b"[INFO] half and half\n");
        writer.flush().unwrap();
        assert!(writer.record.is_empty(), "the record went to the sink");
        assert!(flush(Duration::from_secs(10)), "the sink writes it");
    }
}
