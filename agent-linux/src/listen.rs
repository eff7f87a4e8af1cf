//! `unix-listen` and `vsock-listen`: accept one client at a time, like
//! qemu-ga; each new connection starts with a clean parser.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;

use agent_core::{Agent, Commands};
use rustix::net::{accept_with, bind, listen, socket_with};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::port::{batch_buffer, Batched};
use crate::vsock::VsockAddr;

/// Serve a unix socket at `path` until an accept error.
pub fn serve_unix<C: Commands>(agent: &mut Agent<'_, Vec<u8>, C>, path: &str) -> io::Result<()> {
    // Like QEMU, replace a stale socket left by an earlier run.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("error opening path '{path}': {e}")))?;
    loop {
        let (stream, _) = listener.accept()?;
        serve_client(agent, stream);
    }
}

/// Serve a vsock `CID:PORT` until an accept error.
pub fn serve_vsock<C: Commands>(agent: &mut Agent<'_, Vec<u8>, C>, path: &str) -> io::Result<()> {
    let (cid, port) = crate::cli::parse_vsock(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid vsock address '{path}' (want <cid>:<port>)"),
        )
    })?;
    let opening = |e: rustix::io::Errno| {
        let e = io::Error::from(e);
        io::Error::new(e.kind(), format!("error opening path '{path}': {e}"))
    };
    let listener = socket_with(
        AddressFamily::VSOCK,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(opening)?;
    bind(&listener, &VsockAddr::new(cid, port)).map_err(opening)?;
    listen(&listener, 1)?;
    loop {
        let stream = File::from(accept_with(&listener, SocketFlags::CLOEXEC)?);
        serve_client(agent, stream);
    }
}

/// Bytes read from a client at a time.
const READ_BYTES: usize = 16 << 10;

fn serve_client<C: Commands, S: io::Read + io::Write>(
    agent: &mut Agent<'_, Vec<u8>, C>,
    mut stream: S,
) {
    log::debug!("client connected");
    agent.reset();
    let mut input = vec![0u8; READ_BYTES];
    let mut batch = batch_buffer();
    let result: io::Result<()> = (|| loop {
        let n = match stream.read(&mut input) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut out = Batched::new(&mut stream, &mut batch);
        agent.feed(&input[..n], &mut out)?;
        out.send()?;
    })();
    if let Err(e) = result {
        log::warn!("error on client channel: {e}");
    }
    log::debug!("client disconnected");
}
