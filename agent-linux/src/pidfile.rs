//! The pid file: created, locked for the agent's lifetime (so a second
//! instance fails to start), and removed at exit.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// A held pid file.
pub struct PidFile {
    /// The locked file; unlocked explicitly when dropped, so the lock is
    /// not held on by a copy of the descriptor in a child between its
    /// fork and exec.
    file: File,
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
        flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
            io::Error::other(format!("Cannot lock pid file, {}", io::Error::from(e)))
        })?;
        let write = |mut file: &File| {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        if let Err(e) = write(&file) {
            let _ = flock(&file, FlockOperation::Unlock);
            return Err(e);
        }
        Ok(PidFile {
            file,
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
        let _ = flock(&self.file, FlockOperation::Unlock);
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
