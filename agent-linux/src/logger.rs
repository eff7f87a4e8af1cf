//! Logging through the `log` facade with qemu-ga's verbosity: errors and
//! warnings always, everything with `-v`; to the log file (appended) or
//! stderr.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

struct Logger {
    sink: Mutex<Box<dyn Write + Send>>,
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if let Ok(mut sink) = self.sink.lock() {
            let _ = writeln!(
                sink,
                "{}.{:06}: {}: {}",
                now.as_secs(),
                now.subsec_micros(),
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            );
            let _ = sink.flush();
        }
    }

    fn flush(&self) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.flush();
        }
    }
}

/// Install the logger (once per process).
pub fn init(logfile: Option<&Path>, verbose: bool) -> io::Result<()> {
    let sink: Box<dyn Write + Send> = match logfile {
        Some(path) => Box::new(
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
                })?,
        ) as Box<File>,
        None => Box::new(io::stderr()),
    };
    let level = if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    let logger = Box::leak(Box::new(Logger {
        sink: Mutex::new(sink),
        level,
    }));
    log::set_logger(logger).map_err(|e| io::Error::other(e.to_string()))?;
    log::set_max_level(level);
    Ok(())
}
