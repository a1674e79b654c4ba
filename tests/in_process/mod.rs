//! Clients for the tests that run the server in-process (the library as a program
//! embeds it): a line client and a raw HTTP reply reader, every read with a deadline.
//! They need no binary, so these tests build without the `cli` feature; the CLI
//! tests' support module includes this file too, so there is one copy.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lameduck::protocol::http::{Http, Service};
use lameduck::{Server, ServerHandle, ServerReport, Shutdown};

/// Generous bound for anything that should take milliseconds: CI machines are slow
/// and shared, and a deadline only costs time when a test is failing anyway.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A line-oriented client with deadlines on every read.
pub struct Client {
    reader: BufReader<TcpStream>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
}

impl Client {
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_write_timeout(Some(PATIENCE)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// The next line with its `\r\n`, as bytes; `Ok(None)` at EOF.
    pub fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line)? {
            0 => Ok(None),
            _ => Ok(Some(line)),
        }
    }

    /// The next line as text, panicking on EOF, error or timeout.
    #[track_caller]
    pub fn expect_line(&mut self) -> String {
        match self.line() {
            Ok(Some(line)) => String::from_utf8_lossy(&line).into_owned(),
            Ok(None) => panic!("EOF where a line was expected"),
            Err(err) => panic!("error where a line was expected: {err}"),
        }
    }

    /// Reads until the server closes; everything read, and how it ended.
    pub fn rest(&mut self) -> (Vec<u8>, End) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => (rest, End::Eof),
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => (rest, End::Reset),
            Err(err) => panic!("reading to the end: {err} (after {rest:?})"),
        }
    }
}

pub const GOODBYE: &str = "Server is shutting down. Goodbye!\r\n";

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

/// An HTTP server on a free port, in this process, with a short tick and linger so
/// tests end quickly; dropping it forces the shutdown and joins.
pub struct Running {
    pub shutdown: Shutdown,
    server: Option<ServerHandle>,
}

impl Running {
    pub fn start<S: Service>(http: Http<S>) -> Running {
        let shutdown = Shutdown::new();
        let server = Server::builder()
            .addr("127.0.0.1:0".parse().unwrap())
            .workers(4)
            .tick(Duration::from_millis(20))
            .linger(Duration::from_millis(200))
            .start(http, &shutdown)
            .expect("server starts");
        Running {
            shutdown,
            server: Some(server),
        }
    }

    pub fn connect(&self) -> BufReader<TcpStream> {
        let addr = self.server.as_ref().unwrap().local_addr();
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        BufReader::new(stream)
    }

    /// Drains the server and returns its report.
    pub fn stop(mut self) -> ServerReport {
        self.shutdown.trigger();
        self.server.take().expect("the server is running").join()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.force();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}
