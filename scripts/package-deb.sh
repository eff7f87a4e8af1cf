#!/usr/bin/env bash
# Builds the Debian package of guest-agent with dpkg-deb (no cargo-deb, no
# debhelper: nothing to install first):
#
#   bash scripts/package-deb.sh          # -> target/debian/guest-agent_<version>_amd64.deb
#
# and prints the package's path. It contains:
#   /usr/sbin/guest-agent                     the static musl build (release)
#   /usr/sbin/qemu-ga -> guest-agent          for scripts that run qemu-ga
#   /lib/systemd/system/guest-agent.service   packaging/guest-agent.service
#   /lib/systemd/system/qemu-guest-agent.service -> guest-agent.service (an alias)
#   /lib/udev/rules.d/60-guest-agent.rules    packaging/60-guest-agent.rules
#   /usr/share/man/man8/guest-agent.8.gz      from agent_linux::options, as --help
#   /usr/share/man/man8/qemu-ga.8.gz -> guest-agent.8.gz
#   /usr/share/doc/guest-agent/copyright
# with the control file and maintainer scripts of packaging/debian/
# (Provides, Conflicts and Replaces qemu-guest-agent). Units and rules go
# under /lib, where Debian 12's qemu-guest-agent has them: dpkg then knows
# that ours replace its files (with merged /usr, a different spelling of
# the same path would let the removal of qemu-guest-agent delete ours).
#
# DEB_MAINTAINER sets the Maintainer field.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "package-deb: no version in Cargo.toml" >&2; exit 1; }
out=${CARGO_TARGET_DIR:-target}/debian
root=$out/root
deb=$out/guest-agent_${version}_amd64.deb

rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
cargo build -q --release -p agent-linux --bin guest-agent --target "$target"
bin=${CARGO_TARGET_DIR:-target}/$target/release/guest-agent

rm -rf "$root"
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/lib/systemd/system" "$root/lib/udev/rules.d" \
  "$root/usr/share/man/man8" "$root/usr/share/doc/guest-agent"
install -m 0755 "$bin" "$root/usr/sbin/guest-agent"
ln -s guest-agent "$root/usr/sbin/qemu-ga"
install -m 0644 packaging/guest-agent.service "$root/lib/systemd/system/guest-agent.service"
ln -s guest-agent.service "$root/lib/systemd/system/qemu-guest-agent.service"
install -m 0644 packaging/60-guest-agent.rules "$root/lib/udev/rules.d/60-guest-agent.rules"
cargo run -q -p agent-linux --example man_page | gzip -9n >"$root/usr/share/man/man8/guest-agent.8.gz"
chmod 0644 "$root/usr/share/man/man8/guest-agent.8.gz"
ln -s guest-agent.8.gz "$root/usr/share/man/man8/qemu-ga.8.gz"
install -m 0644 packaging/debian/copyright "$root/usr/share/doc/guest-agent/copyright"

for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
maintainer=${DEB_MAINTAINER:-qga-rs developers <qga-rs@users.noreply.github.com>}
sed -e "s|@VERSION@|$version|" -e "s|@INSTALLED_SIZE@|$size|" -e "s|@MAINTAINER@|$maintainer|" \
  packaging/debian/control >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
  | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

rm -f "$out"/guest-agent_*.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$root"
echo "$deb"
