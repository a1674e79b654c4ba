//! Raw-socket HTTP for what a well-behaved client library will not send: malformed,
//! slow and pipelined requests, read back with deadlines.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};

pub use super::in_process::{assert_eof, read_reply, Reply};
use super::{Process, PATIENCE};

/// `http://addr/path`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// A raw client connection with a read deadline.
pub fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    BufReader::new(stream)
}

/// Writes raw bytes.
pub fn send(client: &mut BufReader<TcpStream>, bytes: &[u8]) {
    client.get_mut().write_all(bytes).expect("write");
}

/// Sends `request` on a fresh connection and expects `status`, `Connection: close`
/// and a clean close.
#[track_caller]
pub fn expect_refusal(addr: SocketAddr, request: &[u8], status: u16) -> Reply {
    let mut client = connect(addr);
    send(&mut client, request);
    let reply = read_reply(&mut client, false);
    assert_eq!(
        reply.status,
        status,
        "for {:?}: {reply:?}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut client);
    reply
}

/// Waits for a graceful exit 0 with a clean report as the last stdout line, and
/// returns that line.
#[track_caller]
pub fn assert_clean_exit(server: &mut Process) -> String {
    let (code, last) = super::finish_with_report(server);
    assert_eq!(code, Some(0), "exit code\n{}", server.dump());
    assert!(
        last.starts_with("stopped reason=signal outcome=clean "),
        "report line: {last:?}"
    );
    assert_eq!(super::field_num(&last, "forced"), 0, "{last}");
    assert_eq!(super::field_num(&last, "detached_threads"), 0, "{last}");
    last
}
