//! qemu-ga's command line (`getopt` string `hVvdc:m:p:l:f:F::b:a:s:t:Dr`
//! and its long options), plus our `client` subcommand.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use lexopt::prelude::*;

/// The options given on the command line, before the config file is read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AgentArgs {
    /// `-c`: config file.
    pub config: Option<PathBuf>,
    /// `-m`
    pub method: Option<String>,
    /// `-p`
    pub path: Option<String>,
    /// `-l`
    pub logfile: Option<PathBuf>,
    /// `-f`
    pub pidfile: Option<PathBuf>,
    /// `-F[PATH]`: `Some(None)` is the default hook.
    pub fsfreeze_hook: Option<Option<PathBuf>>,
    /// `-t`
    pub statedir: Option<PathBuf>,
    /// `-v`
    pub verbose: bool,
    /// `-d`
    pub daemonize: bool,
    /// `-r`
    pub retry_path: bool,
    /// `-D`
    pub dump_conf: bool,
    /// `-b`, items in qemu-ga's order (each option's items reversed).
    pub block: Vec<String>,
    /// `-a`, likewise.
    pub allow: Vec<String>,
    /// `-b help` / `-a help`: list the commands and exit.
    pub list_commands: bool,
    /// `--fsfreeze-hook-timeout SECONDS` (ours).
    pub fsfreeze_hook_timeout: Option<u64>,
    /// `--fsfreeze-auto-thaw SECONDS` (ours; 0: off).
    pub fsfreeze_auto_thaw: Option<u64>,
    /// `--guest-info-version VERSION` (ours).
    pub guest_info_version: Option<String>,
}

/// `guest-agent client ...`: the host side (see `client.rs`).
#[derive(Debug, PartialEq, Eq)]
pub struct ClientArgs {
    /// Where the agent is.
    pub target: ClientTarget,
    /// The command to send.
    pub command: String,
    /// Its arguments, raw JSON text of an object.
    pub arguments: Option<String>,
    /// How long to wait for each answer, in milliseconds.
    pub timeout_ms: u64,
    /// Skip the reset byte and use plain `guest-sync`.
    pub no_reset: bool,
}

/// The host end of the channel.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientTarget {
    /// A unix socket (QEMU's chardev).
    Socket(PathBuf),
    /// A vsock address.
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
}

/// What to do.
#[derive(Debug)]
pub enum Invocation {
    /// Run the agent.
    Agent(AgentArgs),
    /// Run the host-side client.
    Client(ClientArgs),
    /// Print this and exit 0.
    Print(String),
}

/// A usage error: printed, exit status 1.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const UNKNOWN: &str = "Unknown option, try 'guest-agent --help' for more information.";

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        match e {
            lexopt::Error::UnexpectedOption(_) | lexopt::Error::UnexpectedArgument(_) => {
                UsageError(UNKNOWN.into())
            }
            other => UsageError(other.to_string()),
        }
    }
}

/// qemu-ga's `split_list`: items of one option come out reversed.
fn split_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',').rev().map(str::to_string)
}

fn string(value: OsString) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|v| UsageError(format!("invalid argument {v:?}")))
}

fn seconds(value: OsString, option: &str) -> Result<u64, UsageError> {
    string(value)?
        .parse()
        .map_err(|_| UsageError(format!("--{option} takes a number of seconds")))
}

/// Parse the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, UsageError> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.first().is_some_and(|a| a == "client") {
        args.remove(0);
        return parse_client(args).map(Invocation::Client);
    }
    let mut parser = lexopt::Parser::from_args(args);
    let mut out = AgentArgs::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Invocation::Print(usage())),
            Short('V') | Long("version") => return Ok(Invocation::Print(version())),
            Short('v') | Long("verbose") => out.verbose = true,
            Short('d') | Long("daemonize") => out.daemonize = true,
            Short('D') | Long("dump-conf") => out.dump_conf = true,
            Short('r') | Long("retry-path") => out.retry_path = true,
            Short('c') | Long("config") => out.config = Some(parser.value()?.into()),
            Short('m') | Long("method") => out.method = Some(string(parser.value()?)?),
            Short('p') | Long("path") => out.path = Some(string(parser.value()?)?),
            Short('l') | Long("logfile") => out.logfile = Some(parser.value()?.into()),
            Short('f') | Long("pidfile") => out.pidfile = Some(parser.value()?.into()),
            Short('t') | Long("statedir") => out.statedir = Some(parser.value()?.into()),
            // Optional argument: only attached (`-F/path`, `--fsfreeze-hook=/path`).
            Short('F') | Long("fsfreeze-hook") => {
                out.fsfreeze_hook = Some(parser.optional_value().map(PathBuf::from))
            }
            Short('b') | Long("block-rpcs") | Long("blacklist") | Short('a')
            | Long("allow-rpcs") => {
                let allow = matches!(arg, Short('a') | Long("allow-rpcs"));
                let list = string(parser.value()?)?;
                if list == "help" || list == "?" {
                    out.list_commands = true;
                    continue;
                }
                let target = if allow {
                    &mut out.allow
                } else {
                    &mut out.block
                };
                target.extend(split_list(&list));
            }
            Long("fsfreeze-hook-timeout") => {
                out.fsfreeze_hook_timeout = Some(seconds(parser.value()?, "fsfreeze-hook-timeout")?)
            }
            Long("fsfreeze-auto-thaw") => {
                out.fsfreeze_auto_thaw = Some(seconds(parser.value()?, "fsfreeze-auto-thaw")?)
            }
            Long("guest-info-version") => out.guest_info_version = Some(string(parser.value()?)?),
            Short('s') | Long("service") => {
                return Err(UsageError(
                    "-s/--service is only available on Windows".into(),
                ));
            }
            _ => return Err(UsageError(UNKNOWN.into())),
        }
    }
    Ok(Invocation::Agent(out))
}

fn parse_client(args: Vec<OsString>) -> Result<ClientArgs, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut target = None;
    let mut timeout_ms = 5000;
    let mut no_reset = false;
    let mut positional = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("socket") | Short('s') => {
                target = Some(ClientTarget::Socket(parser.value()?.into()))
            }
            Long("vsock") => {
                let text = string(parser.value()?)?;
                let (cid, port) = parse_vsock(&text).ok_or_else(|| {
                    UsageError(format!("invalid vsock address '{text}' (want CID:PORT)"))
                })?;
                target = Some(ClientTarget::Vsock { cid, port });
            }
            Long("timeout") | Short('t') => {
                let text = string(parser.value()?)?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| UsageError(format!("invalid timeout '{text}' (seconds)")))?;
                timeout_ms = (seconds * 1000.0).ceil() as u64;
            }
            Long("no-reset") => no_reset = true,
            Long("help") | Short('h') => return Err(UsageError(client_usage())),
            Value(v) => positional.push(string(v)?),
            _ => return Err(UsageError(UNKNOWN.into())),
        }
    }
    let target = target.ok_or_else(|| {
        UsageError(format!(
            "client: give --socket PATH or --vsock CID:PORT\n{}",
            client_usage()
        ))
    })?;
    let mut positional = positional.into_iter();
    let command = positional
        .next()
        .ok_or_else(|| UsageError(format!("client: no command given\n{}", client_usage())))?;
    let arguments = positional.next();
    if positional.next().is_some() {
        return Err(UsageError(format!(
            "client: too many arguments\n{}",
            client_usage()
        )));
    }
    Ok(ClientArgs {
        target,
        command,
        arguments,
        timeout_ms,
        no_reset,
    })
}

/// `CID:PORT`
pub fn parse_vsock(text: &str) -> Option<(u32, u32)> {
    let (cid, port) = text.split_once(':')?;
    Some((cid.parse().ok()?, port.parse().ok()?))
}

fn version() -> String {
    format!(
        "guest-agent {} (QEMU Guest Agent protocol)\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn client_usage() -> String {
    "Usage: guest-agent client (--socket PATH | --vsock CID:PORT) [--timeout SECONDS] [--no-reset]\n\
     \x20                         COMMAND [ARGUMENTS-JSON]\n\
     Performs the QGA sync handshake (reset byte, guest-sync-delimited with a random id),\n\
     sends COMMAND (e.g. guest-info, or raw JSON starting with '{') and prints the result.\n"
        .into()
}

/// The help text.
pub fn usage() -> String {
    format!(
        "Usage: guest-agent [-m <method> -p <path>] [<options>]\n\
         guest-agent {}: a QEMU Guest Agent (qemu-ga compatible)\n\n\
         \x20 -c, --config      configuration file (default /etc/qemu/qemu-ga.conf, or $QGA_CONF)\n\
         \x20 -m, --method      transport method: one of unix-listen, virtio-serial,\n\
         \x20                   isa-serial, or vsock-listen (virtio-serial is the default)\n\
         \x20 -p, --path        device/socket path (the default for virtio-serial is:\n\
         \x20                   /dev/virtio-ports/org.qemu.guest_agent.0,\n\
         \x20                   the default for isa-serial is: /dev/ttyS0).\n\
         \x20                   Socket addresses for vsock-listen are written as <cid>:<port>.\n\
         \x20 -l, --logfile     set logfile path, logs to stderr by default\n\
         \x20 -f, --pidfile     specify pidfile (default is /var/run/qemu-ga.pid)\n\
         \x20 -F, --fsfreeze-hook\n\
         \x20                   enable fsfreeze hook; an optional attached argument names the\n\
         \x20                   script (default is /etc/qemu/fsfreeze-hook), e.g. -F/path/hook\n\
         \x20 -t, --statedir    specify dir to store state information (default is /var/run)\n\
         \x20 -v, --verbose     log extra debugging information\n\
         \x20 -V, --version     print version information and exit\n\
         \x20 -d, --daemonize   become a daemon\n\
         \x20 -b, --block-rpcs  comma-separated list of RPCs to disable (\"help\" lists RPCs)\n\
         \x20 -a, --allow-rpcs  comma-separated list of RPCs to enable (\"help\" lists RPCs)\n\
         \x20 -D, --dump-conf   dump a config file of the current options to stdout\n\
         \x20 -r, --retry-path  re-open the path if it is unavailable or closed by an error\n\
         \x20 --fsfreeze-hook-timeout SECONDS\n\
         \x20                   kill the fsfreeze hook after SECONDS and fail the freeze or\n\
         \x20                   thaw (default 60)\n\
         \x20 --fsfreeze-auto-thaw SECONDS\n\
         \x20                   thaw by ourselves when no guest-fsfreeze-thaw comes within\n\
         \x20                   SECONDS of a freeze (default 0: never, as qemu-ga)\n\
         \x20 --guest-info-version VERSION\n\
         \x20                   the version guest-info reports (default {}: the QEMU\n\
         \x20                   release whose guest agent this one matches)\n\
         \x20 -h, --help        display this help and exit\n\n\
         {}",
        env!("CARGO_PKG_VERSION"),
        crate::config::GUEST_INFO_VERSION,
        client_usage()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Invocation, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn agent(args: &[&str]) -> AgentArgs {
        match parse_strs(args) {
            Ok(Invocation::Agent(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn qemu_ga_options() {
        let a = agent(&[
            "-m",
            "unix-listen",
            "--path=/tmp/s",
            "-b",
            "a,b",
            "--block-rpcs",
            "c",
            "-aguest-ping",
            "-v",
            "-d",
            "-D",
            "-r",
            "-t/st",
            "-l",
            "/log",
            "-f",
            "/pid",
        ]);
        assert_eq!(a.method.as_deref(), Some("unix-listen"));
        assert_eq!(a.path.as_deref(), Some("/tmp/s"));
        assert_eq!(a.block, ["b", "a", "c"]); // qemu-ga's order
        assert_eq!(a.allow, ["guest-ping"]);
        assert!(a.verbose && a.daemonize && a.dump_conf && a.retry_path);
        assert_eq!(a.statedir, Some("/st".into()));
        assert_eq!(
            (a.logfile, a.pidfile),
            (Some("/log".into()), Some("/pid".into()))
        );
    }

    #[test]
    fn fsfreeze_hook_takes_only_an_attached_argument() {
        assert_eq!(agent(&["-F"]).fsfreeze_hook, Some(None));
        assert_eq!(
            agent(&["-F/x/hook"]).fsfreeze_hook,
            Some(Some("/x/hook".into()))
        );
        assert_eq!(
            agent(&["--fsfreeze-hook=/y"]).fsfreeze_hook,
            Some(Some("/y".into()))
        );
        // A separate word is not the hook's argument (and qemu-ga rejects it).
        assert!(parse_strs(&["-F", "/x"]).is_err());
    }

    #[test]
    fn errors_and_prints() {
        assert_eq!(parse_strs(&["--frobnicate"]).unwrap_err().0, UNKNOWN);
        assert_eq!(parse_strs(&["-q"]).unwrap_err().0, UNKNOWN);
        assert!(parse_strs(&["-m"]).is_err());
        assert!(agent(&["-b", "help"]).list_commands);
        assert!(
            matches!(parse_strs(&["-V"]), Ok(Invocation::Print(s)) if s.starts_with("guest-agent "))
        );
        assert!(
            matches!(parse_strs(&["--help"]), Ok(Invocation::Print(s)) if s.contains("--retry-path"))
        );
    }

    #[test]
    fn client_subcommand() {
        let Ok(Invocation::Client(c)) = parse_strs(&[
            "client",
            "--socket",
            "/s",
            "--timeout",
            "2.5",
            "guest-exec",
            r#"{"path":"/bin/true"}"#,
        ]) else {
            panic!("not a client invocation")
        };
        assert_eq!(c.target, ClientTarget::Socket("/s".into()));
        assert_eq!(
            (c.command.as_str(), c.arguments.as_deref(), c.timeout_ms),
            ("guest-exec", Some(r#"{"path":"/bin/true"}"#), 2500)
        );
        let Ok(Invocation::Client(c)) =
            parse_strs(&["client", "--vsock", "3:1234", "--no-reset", "guest-info"])
        else {
            panic!("not a client invocation")
        };
        assert_eq!(
            (c.target, c.no_reset),
            (ClientTarget::Vsock { cid: 3, port: 1234 }, true)
        );
        assert!(parse_strs(&["client", "guest-info"]).is_err());
        assert!(parse_strs(&["client", "--socket", "/s"]).is_err());
        assert!(parse_strs(&["client", "--vsock", "x", "guest-info"]).is_err());
    }
}
