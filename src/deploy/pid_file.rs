//! The pid file: written by the process that serves, once it is ready;
//! rewritten by its successor after an upgrade; removed at exit only by the process
//! it names, so an old process on its way out never deletes its successor's file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A pid file this process wrote.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's PID to `path`, replacing the file in one rename so a
    /// reader never sees it empty or half written.
    pub(crate) fn write(path: &Path) -> io::Result<PidFile> {
        let pid = std::process::id();
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".{pid}.tmp"));
        let staging = PathBuf::from(staging);
        let written = fs::File::create(&staging)
            .and_then(|mut file| writeln!(file, "{pid}").and_then(|()| file.sync_all()))
            .and_then(|()| fs::rename(&staging, path));
        if written.is_err() {
            let _ = fs::remove_file(&staging);
        }
        written?;
        Ok(PidFile {
            path: path.to_owned(),
            pid,
        })
    }

    /// Removes the file if it still names this process.
    pub(crate) fn remove(&self) {
        let names_us = fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse::<u32>() == Ok(self.pid));
        if !names_us {
            log::debug!(
                "pid file {} names another process now; left in place",
                self.path.display()
            );
            return;
        }
        if let Err(err) = fs::remove_file(&self.path) {
            log::warn!("cannot remove pid file {}: {err}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lameduck-pid-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir.join("server.pid")
    }

    #[test]
    fn holds_our_pid_and_is_removed_by_us() {
        let path = temp_path("ours");
        let file = PidFile::write(&path).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        file.remove();
        assert!(!path.exists());
    }

    #[test]
    fn a_successors_file_is_left_alone() {
        let path = temp_path("successor");
        let file = PidFile::write(&path).unwrap();
        fs::write(&path, "4242424\n").unwrap();
        file.remove();
        assert_eq!(fs::read_to_string(&path).unwrap(), "4242424\n");
        let _ = fs::remove_file(&path);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        assert!(PidFile::write(Path::new("/no/such/dir/lameduck.pid")).is_err());
    }
}
