//! Raw-socket HTTP for what a well-behaved client library will not send: malformed,
//! slow and pipelined requests, read back with deadlines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

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

/// One response as read off a raw connection.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name`, without case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response; `head_only` for the answer to a HEAD.
#[track_caller]
pub fn read_reply(reader: &mut BufReader<TcpStream>, head_only: bool) -> Reply {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header line");
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(':').expect("a header field");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let length: usize = reply
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .expect("a length");
        reply.body = vec![0; length];
        reader.read_exact(&mut reply.body).expect("body");
    }
    reply
}

/// Asserts the server closed the connection cleanly: EOF, no extra bytes, no reset.
#[track_caller]
pub fn assert_eof(reader: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("a clean EOF, not a reset");
    assert!(
        rest.is_empty(),
        "unexpected bytes {:?}",
        String::from_utf8_lossy(&rest)
    );
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
