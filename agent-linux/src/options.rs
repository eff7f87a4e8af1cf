//! The command-line options of `guest-agent`, described once: `--help`
//! ([`usage`], [`client_usage`]) and the guest-agent(8) man page
//! ([`man_page`], printed by `cargo run -p agent-linux --example man_page`
//! for the Debian package) are both rendered from [`AGENT_OPTIONS`] and
//! [`CLIENT_OPTIONS`]. The parser (`src/cli.rs`) is separate; its tests
//! check that it accepts every option listed here.

use std::fmt::Write as _;

/// The version literal behind [`GUEST_INFO_VERSION`], for `concat!`.
macro_rules! guest_info_version {
    () => {
        "10.2.0"
    };
}

/// The version `guest-info` reports unless configured: the QEMU release
/// whose guest agent this one matches, command for command. Hosts read the
/// field as a QEMU version and gate commands on it (KubeVirt on
/// guest-get-load, "≥ 10.0.0"); our own version would read as 0.x, older
/// than every QEMU. `-V` prints our own version.
pub const GUEST_INFO_VERSION: &str = guest_info_version!();

/// How an option takes its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A flag: no argument.
    None,
    /// A required argument, named as shown (`-m METHOD`, `--method=METHOD`).
    Required(&'static str),
    /// An optional argument, only attached (`-F/path`, `--fsfreeze-hook=/path`).
    Attached(&'static str),
}

/// One command-line option as `--help` and the man page show it.
#[derive(Clone, Copy, Debug)]
pub struct OptionDoc {
    /// The short form's letter (`'m'` for `-m`), if there is one.
    pub short: Option<char>,
    /// The long form without its dashes (`"method"`).
    pub long: &'static str,
    /// Its argument.
    pub value: Value,
    /// What it does: one paragraph of plain text, wrapped when rendered.
    pub help: &'static str,
}

impl OptionDoc {
    const fn new(
        short: Option<char>,
        long: &'static str,
        value: Value,
        help: &'static str,
    ) -> Self {
        OptionDoc {
            short,
            long,
            value,
            help,
        }
    }

    /// How `--help` writes the option: `-m, --method=METHOD`,
    /// `-F, --fsfreeze-hook[=PATH]`, `--no-reset`.
    pub fn synopsis(&self) -> String {
        let mut text = String::new();
        if let Some(c) = self.short {
            let _ = write!(text, "-{c}, ");
        }
        let _ = write!(text, "--{}", self.long);
        match self.value {
            Value::None => {}
            Value::Required(name) => {
                let _ = write!(text, "={name}");
            }
            Value::Attached(name) => {
                let _ = write!(text, "[={name}]");
            }
        }
        text
    }
}

use Value::{Attached, None as Flag, Required};

/// The agent's options, in `--help` order: qemu-ga's (same letters,
/// names and meaning) and then ours.
pub const AGENT_OPTIONS: &[OptionDoc] = &[
    OptionDoc::new(
        Some('c'),
        "config",
        Required("PATH"),
        "configuration file (default /etc/qemu/qemu-ga.conf, or $QGA_CONF): a GLib key file \
         whose [general] group takes the long option names as keys; command-line options \
         override its values, and lists accumulate",
    ),
    OptionDoc::new(
        Some('m'),
        "method",
        Required("METHOD"),
        "transport method: one of unix-listen, virtio-serial, isa-serial, or vsock-listen \
         (virtio-serial is the default)",
    ),
    OptionDoc::new(
        Some('p'),
        "path",
        Required("PATH"),
        "device/socket path (the default for virtio-serial is \
         /dev/virtio-ports/org.qemu.guest_agent.0, the default for isa-serial is /dev/ttyS0); \
         socket addresses for vsock-listen are written as <cid>:<port>",
    ),
    OptionDoc::new(
        Some('l'),
        "logfile",
        Required("PATH"),
        "set logfile path, logs to stderr by default",
    ),
    OptionDoc::new(
        Some('f'),
        "pidfile",
        Required("PATH"),
        "specify pidfile (default is /var/run/qemu-ga.pid); written only with --daemonize",
    ),
    OptionDoc::new(
        Some('F'),
        "fsfreeze-hook",
        Attached("PATH"),
        "enable fsfreeze hook; an optional attached argument names the script (default is \
         /etc/qemu/fsfreeze-hook), e.g. -F/path/hook",
    ),
    OptionDoc::new(
        Some('t'),
        "statedir",
        Required("DIR"),
        "specify dir to store state information (default is /var/run)",
    ),
    OptionDoc::new(
        Some('v'),
        "verbose",
        Flag,
        "log extra debugging information",
    ),
    OptionDoc::new(
        Some('V'),
        "version",
        Flag,
        "print version information and exit",
    ),
    OptionDoc::new(Some('d'), "daemonize", Flag, "become a daemon"),
    OptionDoc::new(
        Some('b'),
        "block-rpcs",
        Required("LIST"),
        "comma-separated list of RPCs to disable (\"help\" lists RPCs); --blacklist is an \
         older name",
    ),
    OptionDoc::new(
        Some('a'),
        "allow-rpcs",
        Required("LIST"),
        "comma-separated list of RPCs to enable, all others being disabled (\"help\" lists RPCs)",
    ),
    OptionDoc::new(
        Some('D'),
        "dump-conf",
        Flag,
        "dump a config file of the current options to stdout",
    ),
    OptionDoc::new(
        Some('r'),
        "retry-path",
        Flag,
        "re-open the path if it is unavailable or closed by an error",
    ),
    OptionDoc::new(
        None,
        "fsfreeze-hook-timeout",
        Required("SECONDS"),
        "kill the fsfreeze hook after SECONDS and fail the freeze or thaw (default 60)",
    ),
    OptionDoc::new(
        None,
        "fsfreeze-auto-thaw",
        Required("SECONDS"),
        "thaw by ourselves when no guest-fsfreeze-thaw comes within SECONDS of a freeze \
         (default 0: never, as qemu-ga)",
    ),
    OptionDoc::new(
        None,
        "guest-info-version",
        Required("VERSION"),
        concat!(
            "the version guest-info reports (default ",
            guest_info_version!(),
            ": the QEMU release whose guest agent this one matches)"
        ),
    ),
    OptionDoc::new(Some('h'), "help", Flag, "display this help and exit"),
];

/// The options of `guest-agent client`, in `--help` order.
pub const CLIENT_OPTIONS: &[OptionDoc] = &[
    OptionDoc::new(
        Some('s'),
        "socket",
        Required("PATH"),
        "the host end of the channel: the unix socket of QEMU's chardev for the \
         org.qemu.guest_agent.0 port",
    ),
    OptionDoc::new(
        None,
        "vsock",
        Required("CID:PORT"),
        "the host end of the channel: a vsock address",
    ),
    OptionDoc::new(
        Some('t'),
        "timeout",
        Required("SECONDS"),
        "how long to wait for each answer (default 5; fractions allowed)",
    ),
    OptionDoc::new(
        None,
        "no-reset",
        Flag,
        "skip the reset byte and use plain guest-sync, for agents that mishandle either",
    ),
    OptionDoc::new(Some('h'), "help", Flag, "display this help and exit"),
];

/// Where `--help` starts an option's description.
const HELP_COLUMN: usize = 28;
/// The width `--help` wraps at.
const HELP_WIDTH: usize = 79;

/// `text` wrapped at [`HELP_WIDTH`], every line indented to `indent`;
/// `at` is the column the output is at: the text starts on that line if
/// that leaves two spaces before `indent`, else on the next.
fn wrap_into(out: &mut String, text: &str, indent: usize, mut at: usize) {
    if at + 2 > indent {
        out.push('\n');
        at = 0;
    }
    out.extend(std::iter::repeat_n(' ', indent - at));
    let mut column = indent;
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            if column + 1 + word.len() > HELP_WIDTH {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', indent));
                column = indent;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(word);
        column += word.len();
    }
    out.push('\n');
}

/// The option list of `--help`: one option per entry, descriptions
/// aligned at [`HELP_COLUMN`].
fn option_list(out: &mut String, options: &[OptionDoc]) {
    for option in options {
        let synopsis = option.synopsis();
        out.push_str("  ");
        out.push_str(&synopsis);
        wrap_into(out, option.help, HELP_COLUMN, 2 + synopsis.len());
    }
}

/// `guest-agent --help`: the agent's options, then the client's usage.
/// `version` is the agent's own version (`-V`).
pub fn usage(version: &str) -> String {
    let mut out = format!(
        "Usage: guest-agent [-m <method> -p <path>] [<options>]\n\
         guest-agent {version}: a QEMU Guest Agent (qemu-ga compatible)\n\n"
    );
    option_list(&mut out, AGENT_OPTIONS);
    out.push('\n');
    out.push_str(&client_usage());
    out
}

/// `guest-agent client --help`.
pub fn client_usage() -> String {
    let mut out = String::from(
        "Usage: guest-agent client (--socket PATH | --vsock CID:PORT)\n\
         \x20          [--timeout SECONDS] [--no-reset] COMMAND [ARGUMENTS-JSON]\n\
         Performs the QGA sync handshake (reset byte, guest-sync-delimited with a random\n\
         id), sends COMMAND (e.g. guest-info, or raw JSON starting with '{') and prints\n\
         the result.\n\n",
    );
    option_list(&mut out, CLIENT_OPTIONS);
    out
}

/// Text escaped for roff: backslashes, hyphens (`\-`, so that options
/// and paths copy as ASCII), and a control character at a line's start.
fn roff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    if text.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    out
}

/// The man page's entry for one option: a `.TP` paragraph with the
/// option in bold and its argument in italics.
fn man_option(out: &mut String, option: &OptionDoc) {
    out.push_str(".TP\n");
    if let Some(c) = option.short {
        let _ = write!(out, "\\fB\\-{}\\fR, ", roff(&c.to_string()));
    }
    let _ = write!(out, "\\fB\\-\\-{}\\fR", roff(option.long));
    match option.value {
        Value::None => {}
        Value::Required(name) => {
            let _ = write!(out, "=\\fI{}\\fR", roff(name));
        }
        Value::Attached(name) => {
            let _ = write!(out, "[=\\fI{}\\fR]", roff(name));
        }
    }
    out.push('\n');
    out.push_str(&roff(option.help));
    out.push('\n');
}

/// A section heading and paragraphs of plain text.
fn man_section(out: &mut String, heading: &str, paragraphs: &[&str]) {
    let _ = writeln!(out, ".SH {heading}");
    for (i, paragraph) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        out.push_str(&roff(paragraph));
        out.push('\n');
    }
}

/// The guest-agent(8) man page (roff, `man` macros) for version
/// `version`: the option entries come from [`AGENT_OPTIONS`] and
/// [`CLIENT_OPTIONS`], as `--help`'s do.
pub fn man_page(version: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".TH GUEST\\-AGENT 8 \"\" \"guest\\-agent {}\" \"System Administration\"",
        roff(version)
    );
    man_section(
        &mut out,
        "NAME",
        &["guest-agent - QEMU Guest Agent, a drop-in replacement for qemu-ga"],
    );
    out.push_str(
        ".SH SYNOPSIS\n\
         .B guest\\-agent\n\
         [\\fIOPTIONS\\fR]\n\
         .br\n\
         .B guest\\-agent client\n\
         (\\fB\\-\\-socket\\fR \\fIPATH\\fR | \\fB\\-\\-vsock\\fR \\fICID:PORT\\fR) \
         [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\-JSON\\fR]\n",
    );
    man_section(
        &mut out,
        "DESCRIPTION",
        &[
            "guest-agent runs inside a virtual machine and answers the QEMU Guest Agent \
             protocol that hosts (QEMU, libvirt, Proxmox, KubeVirt) speak over a \
             virtio-serial port: the same commands, arguments, results and error texts as \
             qemu-ga. It takes qemu-ga's options and reads qemu-ga's configuration file, \
             so an existing /etc/qemu/qemu-ga.conf keeps working unchanged.",
            "With no options it serves /dev/virtio-ports/org.qemu.guest_agent.0. On systemd \
             systems the guest-agent.service unit runs it: udev starts the unit when the \
             port appears and systemd stops it when the port goes. The Debian package also \
             installs qemu-ga as a link to guest-agent and qemu-guest-agent.service as an \
             alias of guest-agent.service.",
        ],
    );
    out.push_str(".SH OPTIONS\n");
    for option in AGENT_OPTIONS {
        man_option(&mut out, option);
    }
    man_section(
        &mut out,
        "CLIENT",
        &[
            "guest-agent client is the host side: it connects to the host end of the \
             channel, sends the reset byte and guest-sync-delimited with a random id, skips \
             everything up to the matching reply, then sends COMMAND (a command name such \
             as guest-info, or a whole request as raw JSON starting with '{') with \
             ARGUMENTS-JSON, the text of a JSON object, and prints the result as JSON.",
        ],
    );
    for option in CLIENT_OPTIONS {
        man_option(&mut out, option);
    }
    man_section(
        &mut out,
        "EXIT STATUS",
        &[
            "The agent exits 0 on SIGTERM, SIGINT or SIGHUP (after thawing frozen \
             filesystems) and 1 when it cannot start or its channel fails. The client \
             exits 0 with the command's result, 1 with the agent's error, and 2 when the \
             channel fails or an answer does not come in time.",
        ],
    );
    man_section(
        &mut out,
        "ENVIRONMENT",
        &["QGA_CONF names the configuration file when -c is not given."],
    );
    out.push_str(
        ".SH FILES\n\
         .TP\n/etc/qemu/qemu\\-ga.conf\nThe configuration file.\n\
         .TP\n/dev/virtio\\-ports/org.qemu.guest_agent.0\nThe default channel.\n\
         .TP\n/etc/qemu/fsfreeze\\-hook\nThe default fsfreeze hook.\n\
         .TP\n/lib/systemd/system/guest\\-agent.service\nThe systemd unit.\n\
         .TP\n/lib/udev/rules.d/60\\-guest\\-agent.rules\n\
         The udev rule that starts the unit when the port appears.\n",
    );
    man_section(
        &mut out,
        "SEE ALSO",
        &["qemu-ga(8) (QEMU's agent), systemd.service(5), udev(7)"],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option_once_and_within_width() {
        let text = usage("9.9.9");
        for option in AGENT_OPTIONS.iter().chain(CLIENT_OPTIONS) {
            assert!(text.contains(&option.synopsis()), "{}", option.long);
        }
        assert!(text.contains("guest-agent 9.9.9:"));
        assert!(text.contains(&format!("(default {GUEST_INFO_VERSION}:")));
        for line in text.lines() {
            assert!(line.len() <= HELP_WIDTH, "{line:?}");
        }
    }

    #[test]
    fn wraps_and_aligns() {
        let mut out = String::new();
        let long = OptionDoc::new(
            None,
            "fsfreeze-hook-timeout",
            Required("SECONDS"),
            "one two",
        );
        let short = OptionDoc::new(Some('v'), "verbose", Flag, "word ".repeat(20).leak());
        option_list(&mut out, &[long, short]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "  --fsfreeze-hook-timeout=SECONDS");
        assert_eq!(lines[1], format!("{}one two", " ".repeat(HELP_COLUMN)));
        assert!(lines[2].starts_with("  -v, --verbose"));
        assert_eq!(lines[2].find("word"), Some(HELP_COLUMN));
        assert!(lines[3].starts_with(&" ".repeat(HELP_COLUMN)));
    }

    #[test]
    fn man_page_has_every_option_escaped() {
        let page = man_page("0.1.0");
        assert!(page.starts_with(".TH GUEST\\-AGENT 8 "));
        for option in AGENT_OPTIONS.iter().chain(CLIENT_OPTIONS) {
            let entry = format!("\\fB\\-\\-{}\\fR", roff(option.long));
            assert!(page.contains(&entry), "{entry}");
            assert!(page.contains(&roff(option.help)), "{}", option.long);
        }
        assert!(page.contains("\\fB\\-F\\fR, \\fB\\-\\-fsfreeze\\-hook\\fR[=\\fIPATH\\fR]"));
        // No line starts with a character roff would take as a request.
        for line in page.lines().filter(|l| !l.starts_with(['.'])) {
            assert!(!line.starts_with('\''), "{line:?}");
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff("a-b\\c"), "a\\-b\\ec");
        assert_eq!(roff(".x"), "\\&.x");
    }
}
