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

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agent_core::{Agent, Commands, Policy};
use agent_linux::commands::{CommandsConfig, LinuxCommands};
use agent_linux::table::AgentCommands;
use nix::sys::signal::{SigSet, Signal};

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
        for command in AgentCommands::new(LinuxCommands::new(commands)).list() {
            println!("{}", command.name);
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
    logger::init(config.logfile.as_deref(), config.verbose).map_err(|e| e.to_string())?;
    if config.daemon {
        nix::unistd::daemon(false, false).map_err(|e| format!("failed to daemonize: {e}"))?;
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    }
    let _pidfile = if config.daemon {
        let held = pidfile::PidFile::create(&config.pidfile).map_err(|e| e.to_string())?;
        log::debug!("pid file {}", held.path().display());
        Some(held)
    } else {
        None
    };
    exit_on_signals(config.daemon.then(|| config.pidfile.clone()));

    let block = Config::names(&config.block);
    let allow = Config::names(&config.allow);
    let policy = Policy::new().block(&block).allow(&allow);
    let table = AgentCommands::new(LinuxCommands::new(CommandsConfig::new(
        config.statedir.clone(),
        config.fsfreeze_hook.clone(),
    )));
    let mut agent = Agent::new(vec![0u8; MAX_REQUEST_BYTES], table, policy);
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
        if !config.retry_path {
            return Err(error.to_string());
        }
        log::warn!("{error}; waiting for channel path...");
        std::thread::sleep(RETRY_INTERVAL);
    }
}

/// Exit with status 0 on SIGTERM, SIGINT or SIGHUP (removing the pid file),
/// like qemu-ga. The signals are blocked here and taken by a thread.
fn exit_on_signals(pidfile: Option<PathBuf>) {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            log::debug!("received {signal}, exiting");
            if let Some(path) = pidfile {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(0);
        }
    });
}
