//! The frozen state: `guest-fsfreeze-freeze` and `-thaw`, and everything
//! that must happen around them so a freeze can never wedge the guest.
//!
//! A frozen filesystem blocks every write to it in the kernel. An agent
//! that writes to one (a log line, a temporary file, its pid file) blocks
//! its only service thread, never reads `guest-fsfreeze-thaw`, and the
//! guest stays frozen until a person intervenes. So [`Freezer`] is the one
//! owner of the frozen state, shared by the command table, the daemon's
//! logger and pid file, its signal thread, its panic hook and the
//! optional auto-thaw watchdog:
//!
//! - as qemu-ga's `ga_set_frozen` / `ga_unset_frozen` do, a freeze first
//!   tells its [`Observer`] (the daemon logs "disabling logging due to
//!   filesystem freeze" and stops logging), creates
//!   `<statedir>/qga.state.isfrozen`, then freezes; a thaw thaws, removes
//!   the marker and tells the observer (logging comes back, a deferred log
//!   or pid file is opened);
//! - a marker left by an earlier run means the agent starts frozen;
//! - [`Freezer::thaw_for_exit`] thaws from any thread (signals, a fatal
//!   channel error), [`Freezer::emergency_thaw`] from a panic hook;
//! - [`Freezer::watch`] runs the auto-thaw watchdog;
//! - the fsfreeze hook is bounded by its own time limit.
//!
//! Every transition holds one lock, so a freeze and a thaw from two
//! threads (a signal during a freeze, the watchdog during a command)
//! follow each other whole.

use std::ffi::c_int;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::fs::mounts;
use super::run::{seconds, wait_bounded, Waited};
use super::{Error, SystemPaths};

const FIFREEZE: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<c_int>(b'X', 119);
const FITHAW: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<c_int>(b'X', 120);

/// The fsfreeze hook's default time limit.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

fn fifreeze(file: &File, thaw: bool) -> rustix::io::Result<()> {
    let mut arg: c_int = 0;
    // SAFETY: FIFREEZE and FITHAW are `_IOWR('X', 119/120, int)`; the
    // kernel ignores the argument, which points to a live `c_int`.
    unsafe {
        if thaw {
            rustix::ioctl::ioctl(file, rustix::ioctl::Updater::<FITHAW, c_int>::new(&mut arg))
        } else {
            rustix::ioctl::ioctl(
                file,
                rustix::ioctl::Updater::<FIFREEZE, c_int>::new(&mut arg),
            )
        }
    }
}

/// A change of the frozen state, as the [`Observer`] hears of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Filesystems are about to be frozen: stop writing to them now.
    Freezing,
    /// Filesystems are writable again.
    Thawed,
}

/// Told of every [`Transition`], while the freezer's lock is held (so it
/// must not call back into the freezer).
pub type Observer = Box<dyn Fn(Transition) + Send + Sync>;

/// The fsfreeze hook and its limit.
#[derive(Clone, Debug)]
pub struct Hook {
    /// The script, run with `freeze` or `thaw`.
    pub path: PathBuf,
    /// How long it may run.
    pub timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    /// When the current freeze began (the start of the process if it
    /// started frozen).
    frozen_at: Option<Instant>,
    /// Counts transitions, so the watchdog knows a freeze it waited on
    /// is the one still in force.
    generation: u64,
}

/// The one owner of the frozen state.
pub struct Freezer {
    inner: Mutex<Inner>,
    changed: Condvar,
    frozen: AtomicBool,
    marker: PathBuf,
    hook: Option<Hook>,
    procfs: PathBuf,
    observer: OnceLock<Observer>,
}

impl std::fmt::Debug for Freezer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Freezer")
            .field("frozen", &self.is_frozen())
            .field("marker", &self.marker)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl Freezer {
    /// The state a previous run left in `statedir` (frozen if
    /// `qga.state.isfrozen` exists), with the hook and the system paths
    /// (mounts are read from `<procfs>/self/mountinfo`).
    pub fn new(statedir: &Path, hook: Option<Hook>, sys: &SystemPaths) -> Arc<Self> {
        let marker = statedir.join("qga.state.isfrozen");
        let frozen = marker.exists();
        Arc::new(Freezer {
            inner: Mutex::new(Inner {
                frozen_at: frozen.then(Instant::now),
                generation: 0,
            }),
            changed: Condvar::new(),
            frozen: AtomicBool::new(frozen),
            marker,
            hook,
            procfs: sys.procfs.clone(),
            observer: OnceLock::new(),
        })
    }

    /// Whether filesystems are frozen (by us, or by a run that left the
    /// marker).
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    /// Install the observer (once; later calls are ignored).
    pub fn set_observer(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, t: Transition) {
        if let Some(observer) = self.observer.get() {
            observer(t);
        }
    }

    fn set_frozen(&self, inner: &mut Inner) {
        if self.is_frozen() {
            return;
        }
        self.notify(Transition::Freezing);
        self.frozen.store(true, Ordering::SeqCst);
        inner.frozen_at = Some(Instant::now());
        inner.generation = inner.generation.wrapping_add(1);
        if File::create(&self.marker).is_err() {
            // Not logged: logging is off from here on. The state still
            // holds in memory; only a restart would miss it.
        }
        self.changed.notify_all();
    }

    fn unset_frozen(&self, inner: &mut Inner) {
        if !self.is_frozen() {
            return;
        }
        self.frozen.store(false, Ordering::SeqCst);
        inner.frozen_at = None;
        inner.generation = inner.generation.wrapping_add(1);
        let removed = std::fs::remove_file(&self.marker);
        self.notify(Transition::Thawed);
        if let Err(e) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!(
                    "unable to delete {}, fsfreeze may not function properly",
                    self.marker.display()
                );
            }
        }
        self.changed.notify_all();
    }

    /// Run the hook with `arg`, if one is configured, within its limit.
    fn run_hook(&self, arg: &str) -> Result<(), Error> {
        let Some(hook) = &self.hook else {
            return Ok(());
        };
        if let Err(e) = rustix::fs::access(&hook.path, rustix::fs::Access::EXEC_OK) {
            return Err(Error::errno(
                format!("can't access fsfreeze hook '{}'", hook.path.display()),
                e,
            ));
        }
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(&hook.path)
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::os("cannot spawn fsfreeze hook", &e))?;
        let waited = wait_bounded(&mut child, hook.timeout)
            .map_err(|e| Error::os("cannot wait for fsfreeze hook", &e))?;
        match waited {
            Waited::TimedOut => Err(Error::msg(format!(
                "fsfreeze hook has timed out after {} seconds",
                seconds(hook.timeout)
            ))),
            Waited::Exited(status) => match status.code() {
                Some(0) => Ok(()),
                Some(c) => Err(Error::msg(format!(
                    "fsfreeze hook has failed with status {c}"
                ))),
                None => Err(Error::msg("fsfreeze hook has terminated abnormally")),
            },
        }
    }

    /// FITHAW every mounted filesystem until it refuses; the number that
    /// thawed at least once.
    fn thaw_mounts(&self) -> Result<i64, Error> {
        let mut thawed = 0i64;
        for mount in mounts(&self.procfs)? {
            let Ok(f) = File::open(&mount.dir) else {
                continue;
            };
            let mut counted = false;
            while fifreeze(&f, true).is_ok() {
                if !counted {
                    thawed += 1;
                    counted = true;
                }
            }
        }
        Ok(thawed)
    }

    /// `guest-fsfreeze-freeze(-list)`: the hook, the frozen state, then
    /// FIFREEZE on each block-device mount (last mounted first), or only
    /// on those in `wanted`. The number frozen; on a failure everything is
    /// thawed again, as qemu-ga does.
    pub fn freeze(&self, wanted: Option<&[String]>) -> Result<i64, Error> {
        let mut inner = self.lock();
        self.run_hook("freeze")?;
        let mounts = mounts(&self.procfs)?;
        self.set_frozen(&mut inner);
        let mut frozen = 0i64;
        for mount in mounts.iter().rev() {
            if wanted.is_some_and(|list| !list.contains(&mount.dir)) {
                continue;
            }
            let result = File::open(&mount.dir)
                .map_err(|e| Error::os(format!("failed to open {}", mount.dir), &e))
                .and_then(|f| match fifreeze(&f, false) {
                    Ok(()) => Ok(true),
                    Err(rustix::io::Errno::OPNOTSUPP) => Ok(false),
                    Err(e) => Err(Error::errno(format!("failed to freeze {}", mount.dir), e)),
                });
            match result {
                Ok(true) => frozen += 1,
                Ok(false) => {}
                Err(e) => {
                    let _ = self.thaw_locked(&mut inner);
                    return Err(e);
                }
            }
        }
        if frozen == 0 {
            self.unset_frozen(&mut inner);
        }
        Ok(frozen)
    }

    fn thaw_locked(&self, inner: &mut Inner) -> Result<i64, Error> {
        let thawed = self.thaw_mounts()?;
        self.unset_frozen(inner);
        self.run_hook("thaw")?;
        Ok(thawed)
    }

    /// `guest-fsfreeze-thaw`: thaw every filesystem, leave the frozen
    /// state, then run the hook. The number thawed.
    pub fn thaw(&self) -> Result<i64, Error> {
        let mut inner = self.lock();
        self.thaw_locked(&mut inner)
    }

    /// Thaw before the agent ends (a signal, a fatal channel error): what
    /// qemu-ga's `guest_fsfreeze_cleanup` does at exit. Nothing happens
    /// unless frozen; `why` goes into the log line.
    pub fn thaw_for_exit(&self, why: &str) {
        let mut inner = self.lock();
        if !self.is_frozen() {
            return;
        }
        match self.thaw_locked(&mut inner) {
            Ok(n) => log::warn!("{why}: thawed {n} frozen filesystems"),
            Err(e) => log::warn!("{why}: failed to clean up frozen filesystems: {e}"),
        }
    }

    /// Thaw from a panic hook: without waiting for the lock (the panicking
    /// thread may hold it), without the hook and without logging. FITHAW
    /// of a thawed filesystem only fails, so racing a thaw is harmless.
    pub fn emergency_thaw(&self) {
        if !self.is_frozen() {
            return;
        }
        let _ = self.thaw_mounts();
        let _ = std::fs::remove_file(&self.marker);
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Start the auto-thaw watchdog: a thread that sleeps until a freeze,
    /// then until `after` has passed since it began, and thaws if it is
    /// still the same freeze (no guest-fsfreeze-thaw came: the host died
    /// mid-backup, or lost its channel). It logs once logging is back.
    /// While nothing is frozen it sleeps on a condition variable, with no
    /// timer.
    pub fn watch(self: &Arc<Self>, after: Duration) -> std::thread::JoinHandle<()> {
        let freezer = Arc::clone(self);
        std::thread::Builder::new()
            .name("fsfreeze-watchdog".into())
            .spawn(move || freezer.watchdog(after))
            .expect("spawn the fsfreeze watchdog thread")
    }

    fn watchdog(&self, after: Duration) {
        let mut inner = self.lock();
        loop {
            let (Some(began), true) = (inner.frozen_at, self.is_frozen()) else {
                inner = self.changed.wait(inner).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let generation = inner.generation;
            let deadline = began + after;
            let now = Instant::now();
            if now < deadline {
                inner = self
                    .changed
                    .wait_timeout(inner, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
                continue;
            }
            if inner.generation != generation || !self.is_frozen() {
                continue;
            }
            let result = self.thaw_locked(&mut inner);
            match result {
                Ok(n) => log::warn!(
                    "fsfreeze auto-thaw: no guest-fsfreeze-thaw within {} seconds of the freeze; thawed {n} filesystems",
                    seconds(after)
                ),
                Err(e) => log::warn!("fsfreeze auto-thaw: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A freezer over a procfs with no block-device mounts, its marker
    /// already there (as a previous run would leave it).
    fn frozen_freezer(dir: &Path) -> Arc<Freezer> {
        let proc = dir.join("proc");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        std::fs::write(
            proc.join("self/mountinfo"),
            "23 22 0:21 / /proc rw - proc proc rw\n",
        )
        .unwrap();
        std::fs::write(dir.join("qga.state.isfrozen"), "").unwrap();
        let sys = SystemPaths {
            procfs: proc,
            ..SystemPaths::default()
        };
        Freezer::new(dir, None, &sys)
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qga-freezer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_watchdog_thaws_a_freeze_nobody_ends() {
        let dir = temp("watchdog");
        let f = frozen_freezer(&dir);
        let thawed = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&thawed);
        f.set_observer(Box::new(move |t| {
            if t == Transition::Thawed {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }));
        assert!(f.is_frozen());
        let _watchdog = f.watch(Duration::from_millis(200));
        let deadline = Instant::now() + Duration::from_secs(10);
        while f.is_frozen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!f.is_frozen());
        assert_eq!(thawed.load(Ordering::SeqCst), 1);
        assert!(!dir.join("qga.state.isfrozen").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exit_and_emergency_thaws_leave_the_frozen_state() {
        let dir = temp("exit");
        let f = frozen_freezer(&dir);
        f.thaw_for_exit("test");
        assert!(!f.is_frozen() && !dir.join("qga.state.isfrozen").exists());
        let f = frozen_freezer(&dir);
        // The panicking thread may hold the lock: no waiting for it.
        let _held = f.lock();
        f.emergency_thaw();
        assert!(!f.is_frozen() && !dir.join("qga.state.isfrozen").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_hook_that_never_returns_is_bounded() {
        let dir = temp("hook");
        let hook = dir.join("hook");
        std::fs::write(
            &hook,
            "#!/bin/sh\n[ \"$1\" = freeze ] && exec sleep 1000\nexit 0\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = frozen_freezer(&dir);
        f.thaw().unwrap();
        let f = Freezer {
            hook: Some(Hook {
                path: hook,
                timeout: Duration::from_millis(300),
            }),
            ..Arc::into_inner(f).unwrap()
        };
        let e = f.freeze(None).unwrap_err();
        assert_eq!(e.to_string(), "fsfreeze hook has timed out after 1 seconds");
        assert!(!f.is_frozen());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
