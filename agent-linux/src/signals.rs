//! Signal dispositions and masks. rustix has no stable calls for these
//! (its `runtime` module is for C-library implementations), so they are
//! libc's, each in a small `unsafe` block.

/// The signals that end the agent, with their names for the log.
const EXIT_SIGNALS: [(libc::c_int, &str); 3] = [
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGHUP, "SIGHUP"),
];

/// Give SIGCHLD its default disposition.
pub fn default_sigchld() {
    // SAFETY: installing SIG_DFL runs no handler code of ours.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
}

/// SIGTERM, SIGINT and SIGHUP, blocked in the thread that made this (and
/// in threads it starts later), to be taken with [`ExitSignals::wait`].
pub struct ExitSignals {
    set: libc::sigset_t,
}

impl ExitSignals {
    /// Block the exit signals in the calling thread; `None` if that fails.
    pub fn block() -> Option<ExitSignals> {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigemptyset` initialises the set before `sigaddset`
        // and `pthread_sigmask` use it; the signal numbers are valid.
        let set = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for (signal, _) in EXIT_SIGNALS {
                libc::sigaddset(set.as_mut_ptr(), signal);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut()) != 0 {
                return None;
            }
            set.assume_init()
        };
        Some(ExitSignals { set })
    }

    /// Wait for one of them; its name, or `None` if the wait fails.
    pub fn wait(&self) -> Option<&'static str> {
        let mut signal: libc::c_int = 0;
        // SAFETY: `sigwait` reads an initialised set and writes one signal
        // number to a live `c_int`.
        if unsafe { libc::sigwait(&self.set, &mut signal) } != 0 {
            return None;
        }
        EXIT_SIGNALS
            .iter()
            .find(|&&(s, _)| s == signal)
            .map(|&(_, name)| name)
    }
}

/// Detach from the terminal and the parent, as qemu-ga's `-d` does:
/// `daemon(3)` with the working directory changed to `/` and the
/// standard streams sent to `/dev/null`.
pub fn daemonize() -> std::io::Result<()> {
    // SAFETY: `daemon` takes two integers; the process has a single
    // thread here, which the child continues.
    if unsafe { libc::daemon(0, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
