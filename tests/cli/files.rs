//! The files example (a static file server) against real clients: hostile paths over a
//! raw socket, curl (download, resume, HEAD, 304, 206/416, slow downloads across a
//! drain) and Python's urllib. Run `cargo build --examples` first when running this
//! file alone: `cargo test --test files` does not rebuild the example.
//!
//! Downloads are compared with the original byte for byte (a stronger check than a
//! digest, and it names the first offset that differs).
//!
//! One file over 400 lines: every test here shares the same fixtures (the scratch
//! tree, the raw client, the streaming curl), and splitting them would only move
//! those into a module of their own.
#![cfg(unix)]

use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::support;
use crate::support::http::{connect, read_reply, send, Reply};
use crate::support::{example, field, field_num, finish_with_report, Process, PATIENCE};
use crossbeam_channel::Receiver;

/// Beside the root, never to be served: its content must not appear in any answer.
const SECRET: &str = "TOP-SECRET-7f3a9c-never-served";

/// The large file: bigger than what loopback socket buffers hold for one connection
/// (about 10 MB once autotuned, and curl 7.88's `--limit-rate` reads all of that in
/// one burst at the start), so a rate-limited download is still being written by the
/// server seconds after it started.
const BIG: usize = 40 << 20;
/// Each slow download's rate: the 40 MiB take about 2.5 s.
const RATE: &str = "16M";

/// A scratch directory: `root/` served, `secret.txt` beside it; removed on drop.
struct Tree {
    dir: PathBuf,
    big: Arc<Vec<u8>>,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let dir =
            std::env::temp_dir().join(format!("lameduck-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let root = dir.join("root");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join("site")).unwrap();
        fs::create_dir_all(root.join(".hidden")).unwrap();
        fs::write(dir.join("secret.txt"), SECRET).unwrap();
        fs::write(root.join(".env"), SECRET).unwrap();
        fs::write(root.join(".hidden/key"), SECRET).unwrap();
        fs::write(root.join("hello.txt"), "hello, world\n").unwrap();
        fs::write(root.join("sub/page.html"), "<p>page</p>\n").unwrap();
        fs::write(root.join("site/index.html"), "<p>index</p>\n").unwrap();
        fs::write(root.join("<b>&'.txt"), "odd name\n").unwrap();
        let big = Arc::new(pseudo_random(BIG));
        fs::write(root.join("big.bin"), big.as_slice()).unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("out")).unwrap();
        std::os::unix::fs::symlink(&dir, root.join("up")).unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("in")).unwrap();
        Tree { dir, big }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Bytes that compress badly and differ at every offset (xorshift64).
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Fails, naming the tool, when a client the test needs is not installed (`.ci/run`
/// installs them): a missing tool must not pass as a skipped test.
#[track_caller]
fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "this test needs `{tool}`, which is not installed (apt-get install -y {tool}; .ci/run does it)"
    );
}

/// Starts the example on `root` with `args`, and waits for `listening on`.
fn serve(root: &Path, args: &[&str]) -> (Process, SocketAddr) {
    let root = root.to_str().expect("a UTF-8 temp path");
    let mut all = vec!["--root", root, "--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut server = Process::spawn(&example("files"), &all);
    let addr = server.listening_addr();
    (server, addr)
}

/// A raw `GET`/`HEAD` with `Connection: close`, read back with a deadline.
fn raw(addr: SocketAddr, method: &str, target: &str, headers: &str) -> Reply {
    let mut client = connect(addr);
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    );
    send(&mut client, request.as_bytes());
    read_reply(&mut client, method == "HEAD")
}

/// Runs a client to its exit, within `patience`; its exit code and stdout.
fn run(program: &str, args: &[&str], patience: Duration) -> (Option<i32>, String) {
    let mut child = Process::spawn(Path::new(program), args);
    let (status, _) = child.finish_within(patience);
    (status.code(), child.stdout_lines().join("\n"))
}

fn curl(args: &[&str]) -> (Option<i32>, String) {
    require("curl");
    run("curl", args, PATIENCE)
}

/// The first byte where `got` and `want` differ, or where the shorter one ends.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes, {} expected, first difference at byte {at}",
            got.len(),
            want.len()
        );
    }
}

/// Request targets that try to reach `secret.txt` beside the root (or hidden files
/// inside it): dot segments plain, encoded, double-encoded and overlong, encoded
/// slashes and backslashes, NUL, malformed escapes, empty segments, absolute paths,
/// absolute-form targets, and symlinks leading out.
fn hostile_targets(tree: &Tree) -> Vec<String> {
    let absolute = tree.path("secret.txt");
    let absolute = absolute.to_str().unwrap();
    let encoded_absolute = absolute.replace('/', "%2F");
    [
        "/../secret.txt",
        "/../../../../../../etc/passwd",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/sub/..%2F..%2Fsecret.txt",
        "/%252e%252e/secret.txt",
        "/..%5csecret.txt",
        "/%5c..%5csecret.txt",
        "/sub%5c..%5c..%5csecret.txt",
        "/..%00/secret.txt",
        "/hello.txt%00.html",
        "/%c0%ae%c0%ae/secret.txt",
        "/%",
        "/%zz",
        "//secret.txt",
        "/up/secret.txt",
        "/up/",
        "/sub/../up/secret.txt",
        "/out",
        "/.env",
        "/.hidden/key",
        "/%2eenv",
        "/..\\secret.txt",
        "/sub\\..\\..\\secret.txt",
        "http://localhost/../secret.txt",
        "http://localhost/up/secret.txt",
        "*",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        format!("/{encoded_absolute}"),
        format!("/{}", absolute.trim_start_matches('/')).replacen('/', "//", 1),
        format!("/..{absolute}"),
    ])
    .collect()
}

#[test]
fn hostile_paths_are_refused_and_nothing_outside_the_root_is_read() {
    let tree = Tree::new("hostile");
    let (mut server, addr) = serve(&tree.root(), &[]);
    let hostile = hostile_targets(&tree);
    assert!(hostile.len() >= 20);
    for target in &hostile {
        for method in ["GET", "HEAD"] {
            let reply = raw(addr, method, target, "");
            assert!(
                matches!(reply.status, 403 | 404),
                "{method} {target} got {}: {}",
                reply.status,
                reply.text()
            );
            assert!(
                !reply.text().contains(SECRET),
                "{method} {target} served the secret"
            );
        }
    }
    // The same server serves what is inside, through a symlink inside too.
    let reply = raw(addr, "GET", "/in", "");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "hello, world\n")
    );
    server.signal("TERM");
    let (code, report) = finish_with_report(&mut server);
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn listing_redirect_index_and_methods() {
    let tree = Tree::new("listing");
    let (mut server, addr) = serve(&tree.root(), &[]);

    let listing = raw(addr, "GET", "/", "");
    assert_eq!(listing.status, 200);
    assert_eq!(
        listing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = listing.text();
    for shown in [
        "href=\"./hello.txt\"",
        "href=\"./sub/\"",
        "href=\"./in\"",
        "href=\"./%3Cb%3E%26%27.txt\">&lt;b&gt;&amp;&#39;.txt</a>",
    ] {
        assert!(page.contains(shown), "{shown} not in {page}");
    }
    for hidden in [".env", ".hidden", "\"./out\"", "\"./up/\"", "<b>"] {
        assert!(!page.contains(hidden), "{hidden} in {page}");
    }
    // The escaped link leads to the file.
    let odd = raw(addr, "GET", "/%3Cb%3E%26%27.txt", "");
    assert_eq!((odd.status, odd.text().as_str()), (200, "odd name\n"));

    let moved = raw(addr, "GET", "/sub", "");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/sub/"));
    let sub = raw(addr, "GET", "/sub/", "");
    assert!(
        sub.text().contains("href=\"./page.html\""),
        "{}",
        sub.text()
    );
    assert!(sub.text().contains("href=\"../\""));
    let index = raw(addr, "GET", "/site/", "");
    assert_eq!(
        (index.status, index.text().as_str()),
        (200, "<p>index</p>\n")
    );
    assert_eq!(index.header("content-type"), Some("text/html"));

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let reply = raw(addr, method, "/hello.txt", "Content-Length: 0\r\n");
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
    }
    server.signal("TERM");
    let (code, _) = finish_with_report(&mut server);
    assert_eq!(code, Some(0));
}

#[test]
fn curl_downloads_resumes_and_asks_for_ranges() {
    let tree = Tree::new("curl");
    let (mut server, addr) = serve(&tree.root(), &[]);
    let url = format!("http://{addr}/big.bin");
    let out = tree.path("download.bin");
    let out_str = out.to_str().unwrap();

    // A whole download.
    let (code, status) = curl(&["-sS", "-o", out_str, "-w", "%{http_code}\\n", &url]);
    assert_eq!((code, status.as_str()), (Some(0), "200"));
    assert_same(&fs::read(&out).unwrap(), &tree.big, "download");

    // Resumed from a partial file: curl asks for the rest with Range.
    fs::write(&out, &tree.big[..(3 << 20) + 123]).unwrap();
    let (code, status) = curl(&[
        "-sS",
        "-C",
        "-",
        "-o",
        out_str,
        "-w",
        "%{http_code}\\n",
        &url,
    ]);
    assert_eq!((code, status.as_str()), (Some(0), "206"));
    assert_same(&fs::read(&out).unwrap(), &tree.big, "resumed download");

    // HEAD: the GET's headers, no body.
    let (code, head) = curl(&["-sS", "-I", &url]);
    assert_eq!(code, Some(0));
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    for expected in [
        format!("content-length: {BIG}"),
        "accept-ranges: bytes".into(),
        "content-type: application/octet-stream".into(),
        "last-modified: ".into(),
    ] {
        assert!(head.contains(&expected), "{expected} not in {head}");
    }
    let text = raw(addr, "HEAD", "/hello.txt", "");
    assert_eq!(text.header("content-type"), Some("text/plain"));
    assert_eq!(text.header("content-length"), Some("13"));

    // 304 for a copy as new as the file, 200 for an older one.
    let last_modified = raw(addr, "HEAD", "/big.bin", "")
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    let since = format!("If-Modified-Since: {last_modified}");
    let (_, status) = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
        "-H",
        &since,
        &url,
    ]);
    assert_eq!(status, "304");
    let old = "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT";
    let (_, status) = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
        "-H",
        old,
        &url,
    ]);
    assert_eq!(status, "200");

    // One range: 206 and exactly those bytes.
    let (code, status) = curl(&[
        "-sS",
        "-r",
        "1000-1999",
        "-o",
        out_str,
        "-w",
        "%{http_code}\\n",
        &url,
    ]);
    assert_eq!((code, status.as_str()), (Some(0), "206"));
    assert_same(&fs::read(&out).unwrap(), &tree.big[1000..2000], "range");
    let suffix = raw(addr, "GET", "/big.bin", "Range: bytes=-10\r\n");
    assert_eq!(suffix.status, 206);
    assert_eq!(
        suffix.header("content-range").map(String::from),
        Some(format!("bytes {}-{}/{BIG}", BIG - 10, BIG - 1))
    );
    assert_same(&suffix.body, &tree.big[BIG - 10..], "suffix range");

    // Past the end: 416 with the length.
    let past = format!("{BIG}-");
    let (_, status) = curl(&[
        "-sS",
        "-r",
        &past,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}\\n",
        &url,
    ]);
    assert_eq!(status, "416");
    let refused = raw(addr, "GET", "/big.bin", &format!("Range: bytes={past}\r\n"));
    assert_eq!(refused.status, 416);
    assert_eq!(
        refused.header("content-range").map(String::from),
        Some(format!("bytes */{BIG}"))
    );

    // Several ranges: the whole file, 200.
    let several = raw(addr, "GET", "/hello.txt", "Range: bytes=0-1,4-5\r\n");
    assert_eq!(
        (several.status, several.text().as_str()),
        (200, "hello, world\n")
    );

    server.signal("TERM");
    let (code, _) = finish_with_report(&mut server);
    assert_eq!(code, Some(0));
}

#[test]
fn python_urllib_downloads_the_file() {
    require("python3");
    let tree = Tree::new("python");
    let (mut server, addr) = serve(&tree.root(), &[]);
    let out = tree.path("python.bin");
    let script = "import sys, urllib.request\n\
                  with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n    \
                      data = r.read()\n    \
                      print(r.status, r.headers['Content-Type'], r.headers['Content-Length'])\n\
                  open(sys.argv[2], 'wb').write(data)\n\
                  req = urllib.request.Request(sys.argv[1], headers={'Range': 'bytes=10-19'})\n\
                  with urllib.request.urlopen(req, timeout=10) as r:\n    \
                      print(r.status, r.headers['Content-Range'], r.read().hex())\n";
    let url = format!("http://{addr}/big.bin");
    let (code, stdout) = run(
        "python3",
        &["-c", script, &url, out.to_str().unwrap()],
        PATIENCE,
    );
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let hex: String = tree.big[10..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        lines,
        [
            format!("200 application/octet-stream {BIG}"),
            format!("206 bytes 10-19/{BIG} {hex}"),
        ]
    );
    assert_same(&fs::read(&out).unwrap(), &tree.big, "urllib download");
    server.signal("TERM");
    let (code, _) = finish_with_report(&mut server);
    assert_eq!(code, Some(0));
}

/// What a streaming download saw.
#[derive(Debug)]
enum Seen {
    /// Its first bytes arrived.
    Started(usize),
    /// curl exited: its code, how many bytes it wrote, and whether they matched the
    /// original (the first differing offset if not).
    Done {
        id: usize,
        code: Option<i32>,
        received: usize,
        mismatch: Option<usize>,
    },
}

/// A running curl, killed through its handle when dropped unless its reader has
/// already taken it to reap it (so no PID is ever signalled after it was reaped).
struct Curl(Arc<Mutex<Option<Child>>>);

impl Drop for Curl {
    fn drop(&mut self) {
        let child = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A rate-limited curl writing the file to its stdout, which a thread compares with
/// the original as it arrives.
fn slow_download(
    id: usize,
    url: &str,
    original: Arc<Vec<u8>>,
    seen: crossbeam_channel::Sender<Seen>,
) -> Curl {
    let mut child = Command::new("curl")
        .args(["-sS", "--limit-rate", RATE, "-o", "-", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start curl");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let shared = Arc::new(Mutex::new(Some(child)));
    let reaper = Arc::clone(&shared);
    thread::spawn(move || {
        let mut buf = vec![0; 256 << 10];
        let mut received = 0;
        let mut mismatch = None;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if received == 0 {
                let _ = seen.send(Seen::Started(id));
            }
            let want = original.get(received..received + n);
            if mismatch.is_none() && want != Some(&buf[..n]) {
                mismatch = Some(received);
            }
            received += n;
        }
        // Its stdout is closed: curl is exiting, the wait is short.
        let child = reaper.lock().unwrap_or_else(PoisonError::into_inner).take();
        let code = child
            .and_then(|mut child| child.wait().ok())
            .and_then(|status| status.code());
        let _ = seen.send(Seen::Done {
            id,
            code,
            received,
            mismatch,
        });
    });
    Curl(shared)
}

/// Four slow downloads, each in flight (bytes received) when SIGTERM is sent.
/// Returns the curls' guards and what they report; every download has started and
/// none has ended when this returns.
fn four_in_flight(tree: &Tree, server: &Process, addr: SocketAddr) -> (Vec<Curl>, Receiver<Seen>) {
    require("curl");
    let (tx, seen) = crossbeam_channel::unbounded();
    let url = format!("http://{addr}/big.bin");
    let curls: Vec<_> = (0..4)
        .map(|id| slow_download(id, &url, Arc::clone(&tree.big), tx.clone()))
        .collect();
    let deadline = Instant::now() + PATIENCE;
    let mut started = [false; 4];
    while started.contains(&false) {
        match seen.recv_deadline(deadline) {
            Ok(Seen::Started(id)) => started[id] = true,
            other => panic!("before all four started: {other:?}\n{}", server.dump()),
        }
    }
    server.signal("TERM");
    (curls, seen)
}

/// Waits for the four downloads to end; their reports by id.
fn four_done(
    seen: &Receiver<Seen>,
    patience: Duration,
) -> Vec<(Option<i32>, usize, Option<usize>)> {
    let deadline = Instant::now() + patience;
    let mut done = vec![None; 4];
    while done.iter().any(Option::is_none) {
        match seen.recv_deadline(deadline) {
            Ok(Seen::Done {
                id,
                code,
                received,
                mismatch,
            }) => done[id] = Some((code, received, mismatch)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("downloads still running after {patience:?}: {done:?}"),
        }
    }
    done.into_iter().flatten().collect()
}

#[test]
fn slow_downloads_in_flight_complete_within_the_drain_timeout() {
    let tree = Tree::new("drain");
    let (mut server, addr) = serve(&tree.root(), &["--drain-timeout", "30s"]);
    let signalled = Instant::now();
    let (_curls, seen) = four_in_flight(&tree, &server, addr);
    for (code, received, mismatch) in four_done(&seen, Duration::from_secs(30)) {
        assert_eq!(
            (code, received, mismatch),
            (Some(0), BIG, None),
            "{}",
            server.dump()
        );
    }
    let (code, report) = finish_with_report(&mut server);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
    // The drain waited for them: the downloads were not over when the signal landed.
    assert!(
        field_num(&report, "drain_ms") > 500,
        "{report}, {:?}",
        signalled.elapsed()
    );
}

#[test]
fn downloads_cut_by_the_drain_timeout_resume_against_a_fresh_server() {
    let tree = Tree::new("cut");
    let (mut server, addr) = serve(&tree.root(), &["--drain-timeout", "300ms"]);
    let (_curls, seen) = four_in_flight(&tree, &server, addr);
    let (code, report) = finish_with_report(&mut server);
    assert_eq!(code, Some(124), "{report}");
    assert_eq!(field_num(&report, "forced"), 4, "{report}");
    let cut = four_done(&seen, PATIENCE);

    // curl knows each body is short (exit 18: partial file), and what it got is the
    // file's beginning; the rest comes from the next server with `-C -`.
    let (_next, next_addr) = serve(&tree.root(), &[]);
    let url = format!("http://{next_addr}/big.bin");
    for (id, (code, received, mismatch)) in cut.into_iter().enumerate() {
        assert_eq!(code, Some(18), "download {id}: {received} bytes");
        assert!(received < BIG, "download {id} was not cut");
        assert_eq!(mismatch, None, "download {id}");
        let partial = tree.path(&format!("partial-{id}.bin"));
        fs::write(&partial, &tree.big[..received]).unwrap();
        let (code, status) = curl(&[
            "-sS",
            "-C",
            "-",
            "-o",
            partial.to_str().unwrap(),
            "-w",
            "%{http_code}\\n",
            &url,
        ]);
        assert_eq!(
            (code, status.as_str()),
            (Some(0), if received == 0 { "200" } else { "206" })
        );
        assert_same(&fs::read(&partial).unwrap(), &tree.big, "resumed download");
    }
}

#[test]
fn a_download_in_flight_completes_across_a_sigusr2_upgrade() {
    require("curl");
    let tree = Tree::new("upgrade");
    let pid_file = tree.path("files.pid");
    let (mut server, addr) = serve(&tree.root(), &["--pid-file", pid_file.to_str().unwrap()]);
    let (tx, seen) = crossbeam_channel::unbounded();
    let url = format!("http://{addr}/big.bin");
    let _curl = slow_download(0, &url, Arc::clone(&tree.big), tx);
    match seen.recv_timeout(PATIENCE) {
        Ok(Seen::Started(0)) => {}
        other => panic!("the download did not start: {other:?}"),
    }

    support::kill("USR2", server.pid());
    // The successor has written the pid file when it tells this process it is
    // ready, and this one starts draining.
    server.wait_stderr("is ready; draining");
    let successor: u32 = fs::read_to_string(&pid_file)
        .expect("the pid file")
        .trim()
        .parse()
        .expect("a pid");
    // Guarded before any assertion can fail, so a failing test leaves no server.
    let _successor = support::KillOnDrop(successor);
    assert_ne!(successor, server.pid(), "a new process serves");
    let reply = raw(addr, "GET", "/hello.txt", "");
    assert_eq!(reply.status, 200);

    // The old process finishes the download, then stops.
    match seen.recv_timeout(Duration::from_secs(30)) {
        Ok(Seen::Done {
            code,
            received,
            mismatch,
            ..
        }) => assert_eq!((code, received, mismatch), (Some(0), BIG, None)),
        other => panic!("the download did not end: {other:?}"),
    }
    let report = server.stdout_line_starting("stopped ");
    assert_eq!(field(&report, "reason"), "upgrade", "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
    assert_eq!(field_num(&report, "forced"), 0, "{report}");
    assert!(
        field_num(&report, "drained") >= 1,
        "the download was drained: {report}"
    );
    assert_eq!(server.exit_status().code(), Some(0), "{}", server.dump());

    // The successor writes its own report on the same stdout when it stops.
    support::kill("TERM", successor);
    let (_, report) = server.finish();
    assert_eq!(field(&report, "reason"), "signal", "{report}");
    assert_eq!(field(&report, "outcome"), "clean", "{report}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let tree = Tree::new("usage");
    let file = tree.root().join("hello.txt");
    let missing = tree.path("missing");
    for (args, says) in [
        (vec!["--root", missing.to_str().unwrap()], "--root "),
        (vec!["--root", file.to_str().unwrap()], "not a directory"),
        (
            vec![
                "--root",
                tree.root().to_str().unwrap(),
                "--drain-timeout",
                "10s",
                "--shutdown-timeout",
                "5s",
            ],
            "--shutdown-timeout",
        ),
    ] {
        let mut files = Process::spawn(&example("files"), &args);
        let (status, _) = files.finish();
        assert_eq!(status.code(), Some(2), "{args:?}\n{}", files.dump());
        let stderr = files.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("files: ") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(files.stdout_lines().is_empty(), "{args:?}");
    }
}
