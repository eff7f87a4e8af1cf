//! `guest-agent`: a QEMU Guest Agent for Linux built on agent-core, with
//! qemu-ga's command line, config file and commands, and a host-side
//! `client` subcommand.

mod cli;
mod client;
mod config;
mod device;
mod listen;
mod logger;
mod pidfile;
mod port;
mod signals;
mod vsock;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_core::{Agent, Commands, Policy};
use agent_linux::commands::freeze::{Freezer, Transition};
use agent_linux::commands::{CommandsConfig, LinuxCommands};

use crate::cli::{AgentArgs, Invocation};
use crate::config::{Config, Method};

/// Largest request accepted, in bytes. The buffer is allocated once; pages
/// a request never reaches are never touched.
const MAX_REQUEST_BYTES: usize = 4 << 20;
/// qemu-ga's `QGA_RETRY_INTERVAL`.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(Invocation::Print(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Invocation::Client(args)) => client::run(&args),
        Ok(Invocation::Agent(args)) => match agent(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("guest-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn agent(args: &AgentArgs) -> Result<(), String> {
    let config = Config::load(args, std::env::var_os("QGA_CONF").map(PathBuf::from))
        .map_err(|e| e.to_string())?;
    if args.list_commands {
        let commands = CommandsConfig::new(config.statedir.clone(), None);
        for command in LinuxCommands::new(commands).commands() {
            println!("{}", command.info().name());
        }
        return Ok(());
    }
    if args.dump_conf {
        print!("{}", config.dump());
        return Ok(());
    }
    let method = config.method().map_err(|e| e.to_string())?;
    let path = config
        .channel_path()
        .map_err(|e| e.to_string())?
        .to_string();
    // Children are waited for (guest-exec, helpers): a SIGCHLD ignored by
    // whoever started us would make every wait fail with ECHILD.
    signals::default_sigchld();

    let mut commands = CommandsConfig::new(config.statedir.clone(), config.fsfreeze_hook.clone());
    if let Some(secs) = config.fsfreeze_hook_timeout {
        commands.fsfreeze_hook_timeout = Duration::from_secs(secs);
    }
    let linux = LinuxCommands::new(commands);
    let freezer = linux.freezer();
    // A marker left by an earlier run: start frozen, and write nothing to
    // a filesystem before the thaw (qemu-ga's deferred log and pid files).
    let frozen = freezer.is_frozen();
    if frozen {
        eprintln!("guest-agent: previous session indicates guest may have been frozen");
    }
    logger::init(config.logfile.as_deref(), config.verbose, frozen).map_err(|e| e.to_string())?;
    if config.daemon {
        signals::daemonize().map_err(|e| format!("failed to daemonize: {e}"))?;
        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    }
    let pidfile = Arc::new(Mutex::new(PidFileState::None));
    if config.daemon {
        let state = if frozen {
            log::debug!(
                "deferring pid file {} until thawed",
                config.pidfile.display()
            );
            PidFileState::Deferred(config.pidfile.clone())
        } else {
            let held = pidfile::PidFile::create(&config.pidfile).map_err(|e| e.to_string())?;
            log::debug!("pid file {}", held.path().display());
            PidFileState::Held(held)
        };
        *lock(&pidfile) = state;
    }
    let deferred = Arc::clone(&pidfile);
    freezer.set_observer(Box::new(move |transition| match transition {
        Transition::Freezing => logger::suspend(),
        Transition::Thawed => {
            logger::resume();
            let mut state = lock(&deferred);
            if let PidFileState::Deferred(path) = &*state {
                *state = match pidfile::PidFile::create(path) {
                    Ok(held) => PidFileState::Held(held),
                    Err(e) => {
                        log::warn!("{e}");
                        PidFileState::None
                    }
                };
            }
        }
    }));
    thaw_on_panic(Arc::clone(&freezer));
    exit_on_signals(Arc::clone(&pidfile), Arc::clone(&freezer));
    if let Some(secs) = config.fsfreeze_auto_thaw.filter(|&s| s > 0) {
        log::debug!("fsfreeze auto-thaw after {secs} s");
        freezer.watch(Duration::from_secs(secs));
    }

    let block = Config::names(&config.block);
    let allow = Config::names(&config.allow);
    let policy = Policy::new().block(&block).allow(&allow);
    let mut agent = Agent::new(vec![0u8; MAX_REQUEST_BYTES], linux, policy)
        .with_version(&config.guest_info_version);
    log::debug!(
        "guest-agent {} serving {} on {path}",
        env!("CARGO_PKG_VERSION"),
        method.name()
    );
    loop {
        let result = match method {
            Method::UnixListen => listen::serve_unix(&mut agent, &path),
            Method::VsockListen => listen::serve_vsock(&mut agent, &path),
            Method::VirtioSerial => device::serve(&mut agent, &path, device::Kind::Virtio),
            Method::IsaSerial => device::serve(&mut agent, &path, device::Kind::Serial),
        };
        let error = result
            .err()
            .unwrap_or_else(|| io::Error::other("channel closed"));
        // The host that froze can no longer thaw through this channel:
        // thaw now, whether the agent ends or waits for the path.
        freezer.thaw_for_exit(&format!("channel error ({error})"));
        if !config.retry_path {
            return Err(error.to_string());
        }
        log::warn!("{error}; waiting for channel path...");
        std::thread::sleep(RETRY_INTERVAL);
    }
}

/// The daemon's pid file: none (not a daemon), held, or to be created once
/// filesystems thaw.
enum PidFileState {
    None,
    Held(#[expect(dead_code, reason = "kept for its lock; removed when dropped")] pidfile::PidFile),
    Deferred(PathBuf),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A panic anywhere thaws first (the release build aborts after the hook),
/// so a bug cannot leave the guest frozen.
fn thaw_on_panic(freezer: Arc<Freezer>) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        freezer.emergency_thaw();
        default(info);
    }));
}

/// Exit with status 0 on SIGTERM, SIGINT or SIGHUP, like qemu-ga: thaw
/// frozen filesystems first (qemu-ga's `guest_fsfreeze_cleanup`), then
/// remove the pid file. The signals are blocked here and taken by a
/// thread.
fn exit_on_signals(pidfile: Arc<Mutex<PidFileState>>, freezer: Arc<Freezer>) {
    let Some(signals) = signals::ExitSignals::block() else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.wait() {
            freezer.thaw_for_exit(&format!("received {signal}"));
            log::debug!("received {signal}, exiting");
            *lock(&pidfile) = PidFileState::None;
            std::process::exit(0);
        }
    });
}
