//! qemu-ga's command line, as far as this build implements it.

use std::fmt;

/// How the agent talks to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A unix socket the agent listens on (one client at a time).
    UnixListen,
}

/// The effective options.
#[derive(Debug)]
pub struct Options {
    /// The transport.
    pub method: Method,
    /// Socket path.
    pub path: String,
    /// `-b` lists, accumulated.
    pub block: Vec<String>,
    /// `-a` lists, accumulated.
    pub allow: Vec<String>,
    /// `-v`: log connections and protocol errors to stderr.
    pub verbose: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Serve.
    Run(Options),
    /// Print this text and exit successfully (`-h`, `-V`, `-b help`).
    Print(String),
}

/// A command-line error; printed, then the process exits with status 1.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Usage text.
pub fn usage() -> String {
    format!(
        "Usage: guest-agent [-m <method> -p <path>] [<options>]\n\
         QEMU Guest Agent protocol, version {}\n\n\
         \x20 -m, --method      transport method: unix-listen (virtio-serial, isa-serial\n\
         \x20                   and vsock-listen are not in this build yet)\n\
         \x20 -p, --path        socket path to listen on\n\
         \x20 -b, --block-rpcs  comma-separated list of RPCs to disable (\"-b help\" lists RPCs)\n\
         \x20 -a, --allow-rpcs  comma-separated list of RPCs to enable (\"-a help\" lists RPCs)\n\
         \x20 -v, --verbose     log connections and protocol errors\n\
         \x20 -V, --version     print version information and exit\n\
         \x20 -h, --help        display this help and exit\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Parse `args` (without the program name). `commands` are the names
/// `-b help` prints.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    commands: &[&str],
) -> Result<Command, UsageError> {
    let mut method = None;
    let mut path = None;
    let mut block = Vec::new();
    let mut allow = Vec::new();
    let mut verbose = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // Accept "--opt=value", "--opt value", "-o value" and "-ovalue".
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ if arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") => {
                (arg[..2].to_string(), Some(arg[2..].to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| UsageError(format!("option '{name}' requires an argument")))
        };
        match flag.as_str() {
            "-m" | "--method" => method = Some(value("--method")?),
            "-p" | "--path" => path = Some(value("--path")?),
            "-b" | "--block-rpcs" | "-a" | "--allow-rpcs" => {
                let list = value(&flag)?;
                if list == "help" || list == "?" {
                    return Ok(Command::Print(
                        commands.iter().map(|c| format!("{c}\n")).collect(),
                    ));
                }
                let target = if flag == "-b" || flag == "--block-rpcs" {
                    &mut block
                } else {
                    &mut allow
                };
                target.extend(
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
            }
            "-v" | "--verbose" => verbose = true,
            "-V" | "--version" => {
                return Ok(Command::Print(format!(
                    "guest-agent {} (QEMU Guest Agent protocol)\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            "-h" | "--help" => return Ok(Command::Print(usage())),
            _ => {
                return Err(UsageError(format!(
                    "Unknown option '{arg}', try 'guest-agent --help' for more information"
                )))
            }
        }
    }
    let method = match method.as_deref().unwrap_or("virtio-serial") {
        "unix-listen" => Method::UnixListen,
        m @ ("virtio-serial" | "isa-serial" | "vsock-listen") => {
            return Err(UsageError(format!(
                "method '{m}' is not implemented in this build yet; use '-m unix-listen -p PATH'"
            )))
        }
        m => return Err(UsageError(format!("invalid method '{m}'"))),
    };
    let path = path.ok_or_else(|| UsageError("must specify a path for this channel".into()))?;
    Ok(Command::Run(Options {
        method,
        path,
        block,
        allow,
        verbose,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, UsageError> {
        parse(
            args.iter().map(|s| s.to_string()),
            &["guest-ping", "guest-info"],
        )
    }

    #[test]
    fn options() {
        let Ok(Command::Run(o)) = run(&[
            "-m",
            "unix-listen",
            "--path=/tmp/s",
            "-b",
            "a,b",
            "--block-rpcs",
            "c",
            "-aguest-ping",
            "-v",
        ]) else {
            panic!("not parsed")
        };
        assert_eq!(
            (o.method, o.path.as_str(), o.verbose),
            (Method::UnixListen, "/tmp/s", true)
        );
        assert_eq!(o.block, ["a", "b", "c"]);
        assert_eq!(o.allow, ["guest-ping"]);
    }

    #[test]
    fn errors_and_prints() {
        assert_eq!(
            run(&["-m", "unix-listen"]).unwrap_err().0,
            "must specify a path for this channel"
        );
        assert!(run(&["-p", "x"]).unwrap_err().0.contains("not implemented"));
        assert!(run(&["--frobnicate"])
            .unwrap_err()
            .0
            .starts_with("Unknown option"));
        assert!(
            matches!(run(&["-b", "help"]), Ok(Command::Print(s)) if s == "guest-ping\nguest-info\n")
        );
        assert!(matches!(run(&["-V"]), Ok(Command::Print(s)) if s.starts_with("guest-agent ")));
    }
}
