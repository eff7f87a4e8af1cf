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
    agent_linux::options::client_usage()
}

/// The help text (rendered from `agent_linux::options`, as the man page is).
pub fn usage() -> String {
    agent_linux::options::usage(env!("CARGO_PKG_VERSION"))
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

    /// Every option that `--help` and the man page list is one the parser
    /// takes, in both its short and long forms and with its argument.
    #[test]
    fn parser_takes_every_documented_option() {
        use agent_linux::options::{OptionDoc, Value, AGENT_OPTIONS, CLIENT_OPTIONS};
        fn forms(option: &OptionDoc) -> Vec<Vec<String>> {
            let value = match option.value {
                Value::None => None,
                Value::Required("SECONDS") => Some("7"),
                Value::Required("CID:PORT") => Some("3:1234"),
                Value::Required(_) | Value::Attached(_) => Some("x"),
            };
            let mut forms = Vec::new();
            let mut long = vec![format!("--{}", option.long)];
            let mut short = option.short.map(|c| vec![format!("-{c}")]);
            if let Some(v) = value {
                long = vec![format!("--{}={v}", option.long)];
                short = option.short.map(|c| match option.value {
                    Value::Attached(_) => vec![format!("-{c}{v}")],
                    _ => vec![format!("-{c}"), v.to_string()],
                });
            }
            forms.push(long);
            forms.extend(short);
            forms
        }
        for option in AGENT_OPTIONS {
            for args in forms(option) {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert!(parse_strs(&args).is_ok(), "{args:?}");
            }
        }
        for option in CLIENT_OPTIONS {
            for args in forms(option) {
                let mut all = vec!["client"];
                if option.long != "socket" && option.long != "vsock" {
                    all.extend(["--socket", "/s"]);
                }
                all.extend(args.iter().map(String::as_str));
                all.push("guest-ping");
                let result = parse_strs(&all);
                if option.long == "help" {
                    // `client --help` prints its usage as a usage "error".
                    assert!(result.unwrap_err().0.contains("--no-reset"));
                } else {
                    assert!(result.is_ok(), "{all:?}");
                }
            }
        }
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
