//! Deploys that drop nothing, end to end: socket activation with the
//! descriptors systemd would pass, notifications to a test-owned `NOTIFY_SOCKET`, the
//! pid file, and upgrades on SIGUSR2 under load — the real binary, copied to a temporary
//! path so a test can replace it the way a deploy does.
#![cfg(unix)]

use crate::support;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use command_fds::{CommandFdExt, FdMapping};
use support::{field, kill, KillOnDrop, Process, GOODBYE, PATIENCE};

/// A directory of the test's own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lameduck-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Puts `content` at `path` the way a deploy replaces a binary: written beside it,
/// then renamed over it (a running executable cannot be written in place).
fn install(path: &Path, content: &[u8]) {
    let staging = path.with_extension("new");
    fs::write(&staging, content).unwrap();
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o755)).unwrap();
    fs::rename(&staging, path).unwrap();
}

fn install_binary(path: &Path) {
    install(path, &fs::read(support::binary()).unwrap());
}

/// A `NOTIFY_SOCKET` the test owns.
struct Notifications {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(dir: &TempDir) -> Notifications {
        let path = dir.path("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        Notifications {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    fn env(&self) -> (&'static str, String) {
        ("NOTIFY_SOCKET", self.path.to_string_lossy().into_owned())
    }

    /// Everything already queued, without waiting.
    fn take_queued(&mut self) {
        self.socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
    }

    /// The next datagram holding a line that starts with `key`, within `PATIENCE`;
    /// returns that line's value.
    #[track_caller]
    fn expect(&mut self, key: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(err) => panic!("no {key} notification: {err}; seen {:?}", self.seen),
            };
            let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(datagram.clone());
            if let Some(value) = datagram.lines().find_map(|line| line.strip_prefix(key)) {
                return value.to_owned();
            }
        }
        panic!(
            "no {key} notification within {PATIENCE:?}; seen {:?}",
            self.seen
        )
    }
}

fn read_pid(path: &Path) -> u32 {
    fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("pid file {}: {err}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Runs `binary` with `fd` mapped to descriptor 3 and the socket-activation variables.
fn activated(
    binary: &Path,
    fd: std::os::fd::OwnedFd,
    args: &[&str],
    env: &[(&str, &str)],
) -> Process {
    let mut command = Process::command(binary, args);
    command.env("LISTEN_FDS", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: fd,
            child_fd: 3,
        }])
        .unwrap();
    Process::start(command)
}

#[test]
fn socket_activation_serves_a_client_that_connected_before_the_server_started() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Connected (in the backlog) and already talking before the server exists.
    let mut early = TcpStream::connect(addr).unwrap();
    early.set_read_timeout(Some(PATIENCE)).unwrap();
    early.write_all(b"early bird\n").unwrap();
    // `sh` sets LISTEN_PID to its own PID and execs the server, which keeps it: the
    // variables are addressed to the server, as systemd addresses them.
    let program = support::binary();
    let mut command = Process::command(
        Path::new("/bin/sh"),
        &[
            "-c",
            "LISTEN_PID=$$ exec \"$0\" \"$@\"",
            program.to_str().unwrap(),
            "echo",
            "--addr",
            "127.0.0.1:1",
        ],
    );
    command.env("LISTEN_FDS", "1");
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: listener.into(),
            child_fd: 3,
        }])
        .unwrap();
    let mut server = Process::start(command);
    assert_eq!(server.listening_addr(), addr, "--addr is ignored");
    let mut reader = BufReader::new(early.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "Echo: early bird\r\n");
    server.signal("TERM");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, GOODBYE);
    let (status, report) = server.finish();
    assert_eq!(status.code(), Some(0), "{}", server.dump());
    assert_eq!(field(&report, "reason"), "signal");
}

#[test]
fn socket_activation_for_another_pid_is_ignored() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = listener.local_addr().unwrap();
    let mut server = activated(
        &support::binary(),
        listener.into(),
        &["echo", "--addr", "127.0.0.1:0"],
        &[("LISTEN_PID", "1")],
    );
    let addr = server.listening_addr();
    assert_ne!(addr, inherited, "the descriptor was addressed to PID 1");
    server.signal("TERM");
    assert_eq!(server.finish().0.code(), Some(0));
}

#[test]
fn an_inherited_descriptor_that_is_not_a_listening_tcp_socket_exits_1_with_one_line() {
    let unlistened =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    unlistened
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let cases: Vec<(&str, std::os::fd::OwnedFd)> = vec![
        ("a file", fs::File::open("/dev/null").unwrap().into()),
        ("a bound TCP socket that does not listen", unlistened.into()),
        (
            "a Unix socket",
            std::os::unix::net::UnixStream::pair().unwrap().0.into(),
        ),
    ];
    for (what, fd) in cases {
        let mut server = activated(
            &support::binary(),
            fd,
            &["echo", "--addr", "127.0.0.1:0"],
            &[("RUST_LOG", "error")],
        );
        let (status, last) = server.finish();
        assert_eq!(status.code(), Some(1), "{what}: {}", server.dump());
        assert!(last.is_empty(), "{what}: nothing on stdout, got {last:?}");
        let stderr = server.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert!(
            stderr.contains("not a listening TCP socket"),
            "{what}: {stderr}"
        );
    }
}

#[test]
fn notify_socket_hears_ready_stopping_and_the_new_main_pid_and_the_pid_file_follows() {
    let dir = TempDir::new("notify");
    let binary = dir.path("lameduck");
    install_binary(&binary);
    let mut notes = Notifications::bind(&dir);
    let pid_file = dir.path("server.pid");
    let mut successors = Vec::new();
    let notify = notes.env();
    let mut server = Process::spawn_with_env(
        &binary,
        &[
            "echo",
            "--addr",
            "127.0.0.1:0",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        &[(notify.0, notify.1.as_str())],
    );
    let addr = server.listening_addr();
    notes.expect("READY=1");
    assert_eq!(read_pid(&pid_file), server.pid(), "written once ready");

    server.signal("USR2");
    let successor: u32 = notes.expect("MAINPID=").parse().unwrap();
    successors.push(KillOnDrop(successor));
    assert_ne!(successor, server.pid());
    assert_eq!(
        read_pid(&pid_file),
        successor,
        "rewritten by the new process"
    );
    assert_eq!(
        server.stdout_line_starting("listening on "),
        format!("listening on {addr}"),
        "the same address"
    );
    let report = server.stdout_line_starting("stopped ");
    assert_eq!(field(&report, "reason"), "upgrade");
    assert_eq!(field(&report, "outcome"), "clean");
    assert_eq!(server.exit_status().code(), Some(0), "{}", server.dump());
    assert_eq!(
        read_pid(&pid_file),
        successor,
        "the old process leaves its successor's pid file alone"
    );
    // The old process has exited: everything it sent is queued by now.
    notes.take_queued();
    assert!(
        !notes
            .seen
            .iter()
            .any(|d| d.contains("STOPPING=1") || d.contains("cleanup")),
        "after the handover the old process says nothing for the service: {:?}",
        notes.seen
    );

    kill("TERM", successor);
    let extend: u64 = notes.expect("EXTEND_TIMEOUT_USEC=").parse().unwrap();
    assert!(
        notes.seen.last().unwrap().contains("STOPPING=1"),
        "{:?}",
        notes.seen
    );
    // The default budget is 30 s + 5 s: the extension covers what is left of it.
    assert!(
        (30_000_000..=37_000_000).contains(&extend),
        "EXTEND_TIMEOUT_USEC={extend}"
    );
    notes.expect("STATUS=stopped");
    let (_, last) = server.finish();
    assert_eq!(field(&last, "reason"), "signal");
    assert!(
        !pid_file.exists(),
        "removed at exit by the process it names"
    );
}

#[test]
fn failed_upgrades_keep_the_old_process_serving_and_a_later_one_succeeds() {
    let dir = TempDir::new("rollback");
    let binary = dir.path("lameduck");
    install_binary(&binary);
    let pid_file = dir.path("server.pid");
    let mut successors = Vec::new();
    let mut server = Process::spawn(
        &binary,
        &[
            "echo",
            "--addr",
            "127.0.0.1:0",
            "--upgrade-timeout",
            "1s",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    );
    let addr = server.listening_addr();
    let mut client = support::Client::connect(addr);
    let round_trip = |client: &mut support::Client, text: &str| {
        client.send(format!("{text}\n").as_bytes()).unwrap();
        assert_eq!(client.expect_line(), format!("Echo: {text}\r\n"));
    };
    round_trip(&mut client, "before");

    install(&binary, b"#!/bin/sh\nexit 3\n");
    server.signal("USR2");
    let failed = server.wait_stderr("upgrade failed");
    assert!(failed.contains("exited with code 3"), "{failed}");
    assert!(failed.contains("ERROR"), "{failed}");
    round_trip(&mut client, "after a binary that exits");

    install(&binary, b"#!/bin/sh\nexec sleep 600\n");
    server.signal("USR2");
    let started = server.wait_stderr("upgrade: started");
    let hung: u32 = started
        .split("as pid ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {started:?}"));
    successors.push(KillOnDrop(hung));
    // One upgrade at a time: this one waits out the hanging one, then is dropped.
    server.signal("USR2");
    let failed = server.wait_stderr("upgrade failed");
    assert!(failed.contains("not ready within 1s"), "{failed}");
    let ignored = server.wait_stderr("SIGUSR2 ignored");
    assert!(ignored.contains("during an upgrade"), "{ignored}");
    assert!(!alive(hung), "the hanging process was killed and reaped");
    round_trip(&mut client, "after a binary that hangs");
    assert_eq!(read_pid(&pid_file), server.pid());
    let errors = server
        .stderr_text()
        .lines()
        .filter(|line| line.contains("ERROR"))
        .count();
    assert_eq!(errors, 2, "one error line per failed upgrade");

    install_binary(&binary);
    server.signal("USR2");
    let report = server.stdout_line_starting("stopped ");
    assert_eq!(field(&report, "reason"), "upgrade");
    assert_eq!(server.exit_status().code(), Some(0));
    let successor = read_pid(&pid_file);
    successors.push(KillOnDrop(successor));
    assert_ne!(successor, server.pid());
    // The old process said goodbye to its client; the address serves on.
    assert_eq!(client.expect_line(), GOODBYE);
    let mut fresh = support::Client::connect(addr);
    round_trip(&mut fresh, "served by the successor");
    kill("TERM", successor);
    drop(fresh);
    let (_, last) = server.finish();
    assert_eq!(field(&last, "reason"), "signal");
}

/// What one load client saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    answered: u64,
    /// Requests that crossed the goodbye (echo) and were sent again elsewhere.
    crossed: u64,
    reconnects: u64,
    refused: u64,
    resets: u64,
    /// A request that got neither its answer nor a goodbye: lost.
    lost: u64,
    corrupt: Vec<String>,
}

impl Seen {
    fn add(&mut self, other: &Seen) {
        self.answered += other.answered;
        self.crossed += other.crossed;
        self.reconnects += other.reconnects;
        self.refused += other.refused;
        self.resets += other.resets;
        self.lost += other.lost;
        self.corrupt.extend(other.corrupt.iter().cloned());
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Echo,
    Http,
}

/// How one request on a connection ended.
enum Exchange {
    Answered,
    /// Echo's goodbye instead of the answer, or HTTP's `Connection: close` after it.
    Goodbye {
        answered: bool,
    },
}

fn connect_counting(addr: SocketAddr, seen: &mut Seen) -> Option<BufReader<TcpStream>> {
    match TcpStream::connect(addr) {
        Ok(stream) => {
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            Some(BufReader::new(stream))
        }
        Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
            seen.refused += 1;
            None
        }
        Err(err) => panic!("connect: {err}"),
    }
}

fn exchange(
    protocol: Protocol,
    conn: &mut BufReader<TcpStream>,
    tag: &str,
) -> std::io::Result<Exchange> {
    match protocol {
        Protocol::Echo => {
            conn.get_mut().write_all(format!("{tag}\n").as_bytes())?;
            let mut line = String::new();
            conn.read_line(&mut line)?;
            if line == format!("Echo: {tag}\r\n") {
                Ok(Exchange::Answered)
            } else if line == GOODBYE {
                Ok(Exchange::Goodbye { answered: false })
            } else if line.is_empty() {
                Err(ErrorKind::UnexpectedEof.into())
            } else {
                Err(std::io::Error::new(ErrorKind::InvalidData, line))
            }
        }
        Protocol::Http => {
            conn.get_mut()
                .write_all(format!("GET / HTTP/1.1\r\nHost: {tag}\r\n\r\n").as_bytes())?;
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if conn.read_line(&mut line)? == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            if !head.starts_with("HTTP/1.1 200 ") {
                return Err(std::io::Error::new(ErrorKind::InvalidData, head));
            }
            let mut body = [0u8; 13];
            conn.read_exact(&mut body)?;
            if &body != b"Hello, World!" {
                return Err(std::io::Error::new(ErrorKind::InvalidData, head));
            }
            if head.to_ascii_lowercase().contains("connection: close") {
                Ok(Exchange::Goodbye { answered: true })
            } else {
                Ok(Exchange::Answered)
            }
        }
    }
}

/// A closed-loop client: request after request on one connection; after a goodbye
/// it reads EOF and reconnects, sending again what was not answered. With `one_shot`
/// it reconnects for every request (a stream of new connections).
fn load_client(
    protocol: Protocol,
    addr: SocketAddr,
    id: usize,
    one_shot: bool,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut sequence = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(current) = conn.as_mut() else {
            conn = connect_counting(addr, &mut seen);
            continue;
        };
        let tag = format!("c{id}-{sequence}");
        match exchange(protocol, current, &tag) {
            Ok(Exchange::Answered) => {
                seen.answered += 1;
                sequence += 1;
                if one_shot {
                    conn = None;
                }
            }
            Ok(Exchange::Goodbye { answered }) => {
                if answered {
                    seen.answered += 1;
                    sequence += 1;
                } else {
                    seen.crossed += 1;
                }
                let mut rest = Vec::new();
                match current.read_to_end(&mut rest) {
                    Ok(_) if rest.is_empty() => {}
                    Ok(_) => seen
                        .corrupt
                        .push(String::from_utf8_lossy(&rest).into_owned()),
                    Err(err) if err.kind() == ErrorKind::ConnectionReset => seen.resets += 1,
                    Err(err) => panic!("after the goodbye: {err}"),
                }
                seen.reconnects += 1;
                conn = None;
            }
            Err(err) => {
                match err.kind() {
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => seen.resets += 1,
                    ErrorKind::UnexpectedEof => seen.lost += 1,
                    ErrorKind::InvalidData => seen.corrupt.push(err.to_string()),
                    _ => panic!("client {id}: {err}"),
                }
                conn = None;
            }
        }
    }
    seen
}

/// Runs `upgrades` upgrades of a server of `protocol` under closed-loop load plus a
/// stream of new connections, then stops it with SIGTERM; asserts that no client saw
/// a refusal, a reset, a lost or corrupted request, and that each old process
/// reported `reason=upgrade outcome=clean` on the one address.
fn upgrade_under_load(protocol: Protocol, name: &str, upgrades: usize) {
    let dir = TempDir::new(name);
    let binary = dir.path("lameduck");
    install_binary(&binary);
    let mut notes = Notifications::bind(&dir);
    let mut successors = Vec::new();
    let subcommand = match protocol {
        Protocol::Echo => "echo",
        Protocol::Http => "http",
    };
    let notify = notes.env();
    let mut server = Process::spawn_with_env(
        &binary,
        &[subcommand, "--addr", "127.0.0.1:0", "--linger", "300ms"],
        &[(notify.0, notify.1.as_str())],
    );
    let addr = server.listening_addr();
    notes.expect("READY=1");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..9)
        .map(|id| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || load_client(protocol, addr, id, id == 8, stop))
        })
        .collect();

    let mut current = server.pid();
    for round in 0..upgrades {
        kill("USR2", current);
        let next: u32 = notes.expect("MAINPID=").parse().unwrap();
        successors.push(KillOnDrop(next));
        assert_eq!(
            server.stdout_line_starting("listening on "),
            format!("listening on {addr}"),
            "round {round}: one address throughout"
        );
        let report = server.stdout_line_starting("stopped ");
        assert_eq!(
            field(&report, "reason"),
            "upgrade",
            "round {round}: {report}"
        );
        assert_eq!(
            field(&report, "outcome"),
            "clean",
            "round {round}: {report}"
        );
        assert_eq!(field(&report, "forced"), "0", "round {round}: {report}");
        current = next;
    }
    assert_eq!(server.exit_status().code(), Some(0), "{}", server.dump());

    stop.store(true, Ordering::Relaxed);
    let mut total = Seen::default();
    for client in clients {
        total.add(&client.join().expect("client thread"));
    }
    kill("TERM", current);
    let (_, last) = server.finish();
    assert_eq!(field(&last, "reason"), "signal", "{}", server.dump());
    assert_eq!(field(&last, "outcome"), "clean", "{}", server.dump());

    assert!(total.answered > 100, "the load ran: {total:?}");
    assert_eq!(total.refused, 0, "no refused connect: {total:?}");
    assert_eq!(total.resets, 0, "no reset: {total:?}");
    assert_eq!(
        total.lost, 0,
        "no request without an answer or a goodbye: {total:?}"
    );
    assert!(total.corrupt.is_empty(), "no corrupted reply: {total:?}");
    if let Protocol::Http = protocol {
        assert_eq!(total.crossed, 0, "HTTP: every request answered: {total:?}");
    }
    assert!(
        total.reconnects >= upgrades as u64,
        "clients were handed over: {total:?}"
    );
}

#[test]
fn five_echo_upgrades_under_load_drop_nothing() {
    upgrade_under_load(Protocol::Echo, "upgrade-echo", 5);
}

#[test]
fn five_http_upgrades_under_keep_alive_load_answer_every_request() {
    upgrade_under_load(Protocol::Http, "upgrade-http", 5);
}
