//! From a request path to a file or directory under the root, refusing anything that
//! could lead out of it.
//!
//! Two independent walls:
//! 1. The path is decoded once, strictly, segment by segment: a malformed escape, an
//!    encoded or literal backslash, an encoded slash, NUL or another control byte, a
//!    `.`/`..` segment, a dotfile, an empty segment (`//host`, `a//b`) or bytes that are
//!    not UTF-8 refuse the request before the file system is touched.
//! 2. What is left is joined to the canonical root and canonicalised (symlinks
//!    resolved); the result must still lie under the canonical root, compared component
//!    by component. On Linux the opened file's own path (`/proc/self/fd`) is checked
//!    again, so a symlink swapped in between the check and the open is caught too.
//!
//! Either wall alone keeps `..` out; the second one is what stops symlinks.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

/// Why a path is not served. Nothing tells the client which wall it hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing servable by that name: malformed, hostile, missing, hidden or not a
    /// regular file or directory.
    NotFound,
    /// It exists but leads out of the root (a symlink) or may not be read.
    Forbidden,
}

/// The root directory, canonical once at startup: every served path is checked
/// against it.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

/// A request path taken apart: its decoded segments and whether it ended in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath {
    pub segments: Vec<String>,
    pub trailing_slash: bool,
}

impl RequestPath {
    /// The decoded path as a reader sees it, `/` first (for a listing's title).
    pub fn display(&self) -> String {
        let mut shown = String::from("/");
        for segment in &self.segments {
            shown.push_str(segment);
            shown.push('/');
        }
        if !self.trailing_slash && !self.segments.is_empty() {
            shown.pop();
        }
        shown
    }
}

/// What a request path names.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file, open, with the metadata of what was opened.
    File(File, Metadata),
    /// A directory (its canonical path).
    Dir(PathBuf),
}

impl Root {
    /// The root directory `dir`; an error if it cannot be resolved or is not a
    /// directory.
    pub fn new(dir: &Path) -> io::Result<Root> {
        let canonical = dir.canonicalize()?;
        if !canonical.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(Root { canonical })
    }

    /// True if the canonical path `path` lies under the root (or is the root).
    pub fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.canonical)
    }

    /// Resolves a parsed request path to what it names under the root.
    pub fn resolve(&self, request: &RequestPath) -> Result<Resolved, Refusal> {
        let mut joined = self.canonical.clone();
        joined.extend(&request.segments);
        let canonical = joined.canonicalize().map_err(refusal)?;
        if !self.contains(&canonical) {
            return Err(Refusal::Forbidden);
        }
        // The canonical path has no symlink left in it: this is what it names.
        let meta = fs::metadata(&canonical).map_err(refusal)?;
        if meta.is_dir() {
            return Ok(Resolved::Dir(canonical));
        }
        if !meta.is_file() || request.trailing_slash {
            // FIFOs, sockets and devices are never served (opening a FIFO would
            // block a worker), nor is a file named like a directory.
            return Err(Refusal::NotFound);
        }
        let file = open_regular(&canonical).map_err(refusal)?;
        let meta = file.metadata().map_err(refusal)?;
        if !meta.is_file() {
            return Err(Refusal::NotFound);
        }
        if !self.opened_inside(&file) {
            return Err(Refusal::Forbidden);
        }
        Ok(Resolved::File(file, meta))
    }

    /// Where the kernel says the open file is: what was opened, whatever the path
    /// named a moment before.
    #[cfg(target_os = "linux")]
    fn opened_inside(&self, file: &File) -> bool {
        use std::os::fd::AsRawFd;
        fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .is_ok_and(|path| self.contains(&path))
    }

    #[cfg(not(target_os = "linux"))]
    fn opened_inside(&self, _file: &File) -> bool {
        true
    }
}

/// Opens a file for reading without blocking on a FIFO swapped in since the check
/// (non-blocking mode does not change how a regular file reads or is sent).
fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

fn refusal(err: io::Error) -> Refusal {
    match err.kind() {
        io::ErrorKind::PermissionDenied => Refusal::Forbidden,
        _ => Refusal::NotFound,
    }
}

/// Parses the path of a request target (no query), decoding each segment once.
pub fn parse(raw: &str) -> Result<RequestPath, Refusal> {
    let rest = raw.strip_prefix('/').ok_or(Refusal::NotFound)?;
    if rest.is_empty() {
        return Ok(RequestPath {
            segments: Vec::new(),
            trailing_slash: true,
        });
    }
    let trailing_slash = rest.ends_with('/');
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments = rest
        .split('/')
        .map(decode_segment)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RequestPath {
        segments,
        trailing_slash,
    })
}

/// One segment, percent-decoded strictly and checked for everything that could
/// change which file a name means: the result is a plain file name or an error.
fn decode_segment(raw: &str) -> Result<String, Refusal> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut input = raw.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = input.next().and_then(hex).ok_or(Refusal::NotFound)?;
            let low = input.next().and_then(hex).ok_or(Refusal::NotFound)?;
            bytes.push(high << 4 | low);
        } else {
            bytes.push(byte);
        }
    }
    let name = String::from_utf8(bytes).map_err(|_| Refusal::NotFound)?;
    let hostile = name.is_empty()
        // `.` and `..`, and dotfiles (`.git`, `.env`): hidden on purpose.
        || name.starts_with('.')
        // A separator inside a name, on any platform, and a Windows drive or stream.
        || name.contains(['/', '\\', ':'])
        || name.chars().any(char::is_control);
    if hostile {
        return Err(Refusal::NotFound);
    }
    Ok(name)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(raw: &str) -> Result<Vec<String>, Refusal> {
        parse(raw).map(|path| path.segments)
    }

    #[test]
    fn plain_paths_decode_once() {
        assert_eq!(segments("/"), Ok(vec![]));
        assert_eq!(segments("/a/b.txt"), Ok(vec!["a".into(), "b.txt".into()]));
        assert_eq!(segments("/a%20b"), Ok(vec!["a b".into()]));
        // Decoded once: `%2541` is `%41`, a literal name, not `A`.
        assert_eq!(segments("/%2541"), Ok(vec!["%41".into()]));
        assert_eq!(segments("/caf%C3%A9"), Ok(vec!["café".into()]));
        let dir = parse("/a/b/").unwrap();
        assert!(dir.trailing_slash);
        assert_eq!(dir.display(), "/a/b/");
        assert_eq!(parse("/a/b").unwrap().display(), "/a/b");
    }

    /// A fresh directory holding `root/` (a file, a subdirectory, symlinks in and
    /// out) beside `secret.txt`; removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("lameduck-files-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("root/sub")).unwrap();
            fs::write(dir.join("secret.txt"), "secret").unwrap();
            fs::write(dir.join("root/a.txt"), "a").unwrap();
            fs::write(dir.join("root/sub/b.txt"), "b").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::symlink;
                symlink(dir.join("secret.txt"), dir.join("root/out")).unwrap();
                symlink(&dir, dir.join("root/up")).unwrap();
                symlink("sub/b.txt", dir.join("root/in")).unwrap();
                let fifo = std::process::Command::new("mkfifo")
                    .arg(dir.join("root/fifo"))
                    .status();
                assert!(fifo.is_ok_and(|status| status.success()), "mkfifo");
            }
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[cfg(unix)]
    #[test]
    fn resolution_stays_under_the_root() {
        let scratch = Scratch::new("resolve");
        let root = Root::new(&scratch.0.join("root")).unwrap();
        let resolve = |raw: &str| root.resolve(&parse(raw)?);
        let read = |raw: &str| match resolve(raw) {
            Ok(Resolved::File(file, meta)) => {
                let mut text = String::new();
                io::Read::read_to_string(&mut &file, &mut text).unwrap();
                assert_eq!(meta.len(), text.len() as u64);
                text
            }
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(read("/a.txt"), "a");
        assert_eq!(read("/sub/b.txt"), "b");
        assert_eq!(read("/in"), "b");
        assert!(matches!(resolve("/"), Ok(Resolved::Dir(_))));
        assert!(matches!(resolve("/sub"), Ok(Resolved::Dir(_))));
        assert_eq!(resolve("/out").unwrap_err(), Refusal::Forbidden);
        assert_eq!(resolve("/up/secret.txt").unwrap_err(), Refusal::Forbidden);
        assert_eq!(resolve("/up/").unwrap_err(), Refusal::Forbidden);
        assert_eq!(resolve("/fifo").unwrap_err(), Refusal::NotFound);
        assert_eq!(resolve("/a.txt/").unwrap_err(), Refusal::NotFound);
        assert_eq!(resolve("/missing").unwrap_err(), Refusal::NotFound);
        assert_eq!(resolve("/../secret.txt").unwrap_err(), Refusal::NotFound);
    }

    #[test]
    fn hostile_paths_are_refused_before_the_file_system() {
        for raw in [
            "",
            "a",
            "//host/etc/passwd",
            "/a//b",
            "/..",
            "/../x",
            "/a/../../x",
            "/.",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2f..%2f..%2fx",
            "/a%2F..",
            "/..%5cx",
            "/a\\..\\x",
            "/x%00.txt",
            "/x%0a",
            "/%",
            "/%2",
            "/%zz",
            "/%c0%ae%c0%ae/x",
            "/%ff",
            "/.env",
            "/a/.git/config",
            "/C:%5cwindows",
        ] {
            assert!(parse(raw).is_err(), "{raw:?} was accepted");
        }
    }
}
