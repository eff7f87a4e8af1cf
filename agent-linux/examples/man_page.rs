//! Print the guest-agent(8) man page (roff) to stdout. The Debian package
//! (`scripts/package-deb.sh`) installs it; it is rendered from the same
//! option table as `guest-agent --help` (`agent_linux::options`).

fn main() {
    print!(
        "{}",
        agent_linux::options::man_page(env!("CARGO_PKG_VERSION"))
    );
}
