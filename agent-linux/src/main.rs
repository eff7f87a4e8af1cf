//! `guest-agent`: a QEMU Guest Agent for Linux built on agent-core.
//!
//! This first cut serves the core commands (`guest-sync`,
//! `guest-sync-delimited`, `guest-ping`, `guest-info`) on a unix socket,
//! one client at a time, with qemu-ga's `-m`, `-p`, `-b`, `-a`, `-v`,
//! `-V` and `-h` options.

mod cli;
mod port;

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::process::ExitCode;

use agent_core::{Agent, Commands, CoreCommands, Policy};

use crate::cli::{Command, Method, Options};
use crate::port::Port;

/// Largest request accepted, in bytes. The buffer is allocated once;
/// pages a request never reaches are never touched.
const MAX_REQUEST_BYTES: usize = 4 << 20;

fn main() -> ExitCode {
    let table = CoreCommands::new();
    let names: Vec<&str> = table.list().map(|c| c.name).collect();
    match cli::parse(std::env::args().skip(1), &names) {
        Ok(Command::Print(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Command::Run(options)) => match run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("guest-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("guest-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> io::Result<()> {
    let block: Vec<&str> = options.block.iter().map(String::as_str).collect();
    let allow: Vec<&str> = options.allow.iter().map(String::as_str).collect();
    let policy = Policy::new().block(&block).allow(&allow);
    let mut agent = Agent::new(vec![0u8; MAX_REQUEST_BYTES], CoreCommands::new(), policy);
    match options.method {
        Method::UnixListen => serve_unix(&mut agent, options),
    }
}

/// Listen on the socket and serve one client at a time, like qemu-ga.
fn serve_unix<C: Commands>(agent: &mut Agent<'_, Vec<u8>, C>, options: &Options) -> io::Result<()> {
    // Like QEMU, replace a stale socket left by an earlier run.
    if std::fs::symlink_metadata(&options.path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(&options.path)?;
    }
    let listener = UnixListener::bind(&options.path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("error opening path '{}': {e}", options.path),
        )
    })?;
    loop {
        let (stream, _) = listener.accept()?;
        if options.verbose {
            eprintln!("guest-agent: client connected");
        }
        // A new connection starts with a clean parser (qemu-ga keeps the
        // old client's half-sent request; see PROTOCOL.md §10).
        agent.reset();
        let mut port = Port(stream);
        if let Err(e) = agent.serve(&mut port) {
            if options.verbose {
                eprintln!("guest-agent: client error: {e}");
            }
        }
        if options.verbose {
            eprintln!("guest-agent: client disconnected");
        }
    }
}
