//! The pid file: created, locked for the agent's lifetime (so a second
//! instance fails to start), and removed at exit.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A held pid file.
pub struct PidFile {
    _lock: Flock<File>,
    path: PathBuf,
}

impl PidFile {
    /// Create (or take over) `path`, lock it and write our pid.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // Not truncated before the lock is ours: it may be another agent's.
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("Cannot open pid file, {e}")))?;
        let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| io::Error::other(format!("Cannot lock pid file, {e}")))?;
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        lock.flush()?;
        Ok(PidFile {
            _lock: lock,
            path: path.to_path_buf(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_instance_cannot_take_the_lock() {
        let path = std::env::temp_dir().join(format!("qga-pid-{}", std::process::id()));
        let held = PidFile::create(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        let second = PidFile::create(&path).err().map(|e| e.to_string());
        assert!(second.is_some_and(|e| e.contains("Cannot lock pid file")));
        drop(held);
        assert!(!path.exists());
    }
}
