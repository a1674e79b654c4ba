//! A protocol of your own served by lameduck's `Server`: implement `Handler`, read the
//! connection through a `BufReader`, answer with `write!`, and the server does the rest
//! — the pool, the busy reply, the drain, the goodbye, the graceful close, the report.
//!
//! ```text
//! cargo run --example custom_handler -- 127.0.0.1:7000
//! ```
//!
//! Protocol: every line is answered with its number on the connection and the line in
//! capitals (`hello` → `1: HELLO`). Prints `listening on <addr>`; on
//! SIGINT/SIGTERM/SIGHUP every client reads `BYE shutting down` after its last reply,
//! stdout ends with the report line and the exit code is 0 (124 past the drain
//! deadline, 130 on a second signal).

use std::error::Error;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lameduck::{output, signals, Connection, Handler, Lifecycle, Server, Shutdown};

/// Lines longer than this end the connection, so a client cannot make us buffer
/// without bound.
const MAX_LINE: u64 = 4096;
/// How long a client may stay quiet between lines.
const IDLE: Duration = Duration::from_secs(60);

struct Shout;

impl Handler for Shout {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        let mut reader = BufReader::new(conn);
        let mut line = Vec::new();
        for count in 1.. {
            // A client quiet for a minute is let go: the deadline ends the read.
            reader.get_mut().set_deadline(Some(Instant::now() + IDLE));
            // `Ok(0)`: the client closed, or the server drained while this connection
            // waited between lines and said the goodbye for us. A line in progress is
            // finished first; once the shutdown is forced, reads fail with `Forced`.
            match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) if !line.ends_with(b"\n") && line.len() as u64 == MAX_LINE => {
                    return write!(reader.get_mut(), "ERROR line too long\r\n");
                }
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    return write!(reader.get_mut(), "ERROR idle for {IDLE:?}\r\n");
                }
                Err(err) => return Err(err),
            }
            let text = String::from_utf8_lossy(&line).trim().to_uppercase();
            write!(reader.get_mut(), "{count}: {text}\r\n")?;
            line.clear();
        }
        Ok(())
    }

    fn busy_reply(&self) -> &[u8] {
        b"BUSY try again later\r\n"
    }

    fn goodbye(&self) -> &[u8] {
        b"BYE shutting down\r\n"
    }
}

fn run() -> Result<u8, Box<dyn Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into())
        .parse()?;
    let shutdown = Shutdown::new();
    let life = Lifecycle::new(&shutdown).with_budget(Duration::from_secs(12));
    let server = Server::builder()
        .addr(addr)
        .workers(16)
        .start(Shout, &shutdown)?;
    signals::install(&shutdown)?;
    output::print_line(&format!("listening on {}", server.local_addr()));
    let report = life.serve(server);
    output::print_line(&report.to_string());
    Ok(report.exit_code())
}

fn main() -> ExitCode {
    // The library logs through `log`: without a logger nothing of it is seen.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            log::error!("custom_handler: {err}");
            ExitCode::from(1)
        }
    }
}
