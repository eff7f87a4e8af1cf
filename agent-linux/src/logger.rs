//! Logging through the `log` facade with qemu-ga's verbosity: errors and
//! warnings always, everything with `-v`; to the log file (appended) or
//! stderr.
//!
//! While filesystems are frozen nothing is logged at all, as qemu-ga's
//! `ga_disable_logging` does: a write to a log file on a frozen filesystem
//! would block the agent's only thread. [`suspend`] logs qemu-ga's
//! "disabling logging due to filesystem freeze" and then stops;
//! [`resume`] opens a log file whose opening was deferred (the agent
//! started frozen), starts again and logs "logging re-enabled due to
//! filesystem unfreeze".

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

enum Target {
    Stderr,
    File(File),
    /// A log file not to be opened before filesystems thaw.
    Deferred(PathBuf),
}

struct Sink {
    target: Target,
    enabled: bool,
}

struct Logger {
    sink: Mutex<Sink>,
    level: log::LevelFilter,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

fn line(sink: &mut Sink, level: log::Level, args: &std::fmt::Arguments<'_>) {
    if !sink.enabled {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let text = format!(
        "{}.{:06}: {}: {}\n",
        now.as_secs(),
        now.subsec_micros(),
        level.as_str().to_ascii_lowercase(),
        args
    );
    match &mut sink.target {
        Target::Stderr => {
            let _ = io::stderr().write_all(text.as_bytes());
        }
        Target::File(f) => {
            let _ = f.write_all(text.as_bytes());
            let _ = f.flush();
        }
        Target::Deferred(_) => {}
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Ok(mut sink) = self.sink.lock() {
            line(&mut sink, record.level(), record.args());
        }
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            if let Target::File(f) = &mut sink.target {
                let _ = f.flush();
            }
        }
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "unable to open specified log file '{}': {e}",
                    path.display()
                ),
            )
        })
}

/// Install the logger (once per process). With `frozen` (the agent starts
/// with filesystems frozen by an earlier run), the log file is neither
/// opened nor written before [`resume`], as qemu-ga defers it.
pub fn init(logfile: Option<&Path>, verbose: bool, frozen: bool) -> io::Result<()> {
    let target = match logfile {
        Some(path) if frozen => Target::Deferred(path.to_path_buf()),
        Some(path) => Target::File(open(path)?),
        None => Target::Stderr,
    };
    let level = if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(Sink {
            target,
            enabled: !frozen,
        }),
        level,
    });
    log::set_logger(logger).map_err(|e| io::Error::other(e.to_string()))?;
    log::set_max_level(level);
    Ok(())
}

/// Filesystems are about to freeze: say so, then log nothing.
pub fn suspend() {
    let Some(logger) = LOGGER.get() else { return };
    if let Ok(mut sink) = logger.sink.lock() {
        line(
            &mut sink,
            log::Level::Warn,
            &format_args!("disabling logging due to filesystem freeze"),
        );
        sink.enabled = false;
    }
}

/// Filesystems are writable again: open a deferred log file (stderr if it
/// cannot be opened, as qemu-ga falls back), log again, and say so.
pub fn resume() {
    let Some(logger) = LOGGER.get() else { return };
    if let Ok(mut sink) = logger.sink.lock() {
        if let Target::Deferred(path) = &sink.target {
            sink.target = open(path).map_or(Target::Stderr, Target::File);
        }
        sink.enabled = true;
        line(
            &mut sink,
            log::Level::Warn,
            &format_args!("logging re-enabled due to filesystem unfreeze"),
        );
    }
}
