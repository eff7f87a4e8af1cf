#!/usr/bin/env bash
# Builds the two Debian guest disk images of the deploy end-to-end tests
# (tests/src/debian_guest.rs runs this and caches OUT under
# target/e2e/debian/<key>, the key being a hash of this script's text and
# of its arguments):
#
#   bash scripts/debian-image.sh OUT KERNEL_DIR SUITE MIRROR PACKAGES QGA_CONF
#
#   OUT/base.ext4     debootstrap --variant=minbase --include=PACKAGES SUITE
#                     from MIRROR (systemd, udev, kmod: a real init and
#                     device manager), plus the kernel's modules
#   OUT/qemu-ga.ext4  the same plus Debian's qemu-guest-agent (installed
#                     with apt from MIRROR) and QGA_CONF (a file) as
#                     /etc/qemu/qemu-ga.conf
#
# ext4 images made by `mkfs.ext4 -d` from a directory: nothing is
# mounted. KERNEL_DIR is the unpacked linux-image package
# (target/e2e/kernel, from scripts/e2e-setup.sh); its modules for the
# virtio, block, character-device, ext4 and autofs drivers and the
# libraries they need are copied in and indexed with depmod, so that the
# guest's own udev loads virtio_console when the virtio-serial device
# appears. The test boots these images with that kernel and a small
# initramfs that mounts /dev/vda (tests/src/debian_guest.rs).
#
# Both images also hold the tests' control channel: e2e-control.service,
# which udev starts when the virtio-serial port org.e2e.control appears,
# runs each line "TAG COMMAND" it reads there with sh and answers with
# "TAG: <output line>" lines and "TAG-end <exit status>"; and
# e2e-slow-sysinit.service, which delays sysinit.target when the kernel
# command line asks for it.
#
# Runs as root (debootstrap, chroot). If OUT exists, there is nothing to
# do: images are built in OUT.tmp and renamed, so OUT is always complete.
set -euo pipefail

[ $# -eq 6 ] || { echo "usage: $0 OUT KERNEL_DIR SUITE MIRROR PACKAGES QGA_CONF" >&2; exit 2; }
out=$1 kernel_dir=$2 suite=$3 mirror=$4 packages=$5 qga_conf=$6
[ -e "$out/qemu-ga.ext4" ] && exit 0

version=$(basename "$(ls -d "$kernel_dir"/lib/modules/*/ | tail -n1)")
[ -d "$kernel_dir/lib/modules/$version/kernel" ] || { echo "no modules in $kernel_dir" >&2; exit 1; }

tmp=$out.tmp
rm -rf "$tmp"
mkdir -p "$tmp"
root=$tmp/root
log=$tmp/build.log
trap 'status=$?; if [ $status -ne 0 ]; then tail -n 40 "$log" >&2; fi; exit $status' EXIT
step() { echo "debian-image: $*" | tee -a "$log" >&2; }

step "debootstrap $suite ($packages) from $mirror"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >>"$log" 2>&1
# The downloaded packages are not needed in the image.
rm -f "$root"/var/cache/apt/archives/*.deb

step "kernel modules $version"
src=$kernel_dir/lib/modules/$version
dst=$root/usr/lib/modules/$version
mkdir -p "$dst"
cp "$src"/modules.order "$src"/modules.builtin* "$dst"/
for part in arch crypto lib drivers/virtio drivers/char drivers/block fs/ext4 fs/jbd2 \
  fs/mbcache.ko fs/autofs; do
  mkdir -p "$dst/kernel/$(dirname "$part")"
  cp -a "$src/kernel/$part" "$dst/kernel/$part"
done
chroot "$root" depmod "$version" >>"$log" 2>&1

step "system configuration and the control channel"
# The initramfs mounts the root read-only; systemd checks it and remounts
# it read-write from this line, as on an installed Debian system.
echo '/dev/vda / ext4 errors=remount-ro 0 1' >"$root/etc/fstab"
echo e2e >"$root/etc/hostname"
install -d "$root/usr/local/sbin"
cat >"$root/usr/local/sbin/e2e-control" <<'EOF'
#!/bin/sh
# The deploy tests' control channel (scripts/debian-image.sh): runs each
# line "TAG COMMAND" from the port with sh, answers "TAG: LINE" for each
# line of its output and "TAG-end STATUS". A virtio port can be opened
# once, so one read-write descriptor serves as input and output.
# While no host is connected, reads return end-of-file at once: wait.
exec 0<>/dev/virtio-ports/org.e2e.control 1>&0 2>&0
while :; do
  while IFS= read -r line; do
    tag=${line%% *}
    command=${line#* }
    output=$(sh -c "$command" </dev/null 2>&1) && status=0 || status=$?
    [ -z "$output" ] || printf '%s\n' "$output" | sed "s/^/$tag: /"
    echo "$tag-end $status"
  done
  sleep 0.2
done
EOF
chmod 0755 "$root/usr/local/sbin/e2e-control"
cat >"$root/etc/systemd/system/e2e-control.service" <<'EOF'
[Unit]
Description=deploy tests' control channel
BindsTo=dev-virtio\x2dports-org.e2e.control.device
After=dev-virtio\x2dports-org.e2e.control.device

[Service]
ExecStart=/usr/local/sbin/e2e-control
Restart=always
RestartSec=0
EOF
cat >"$root/etc/udev/rules.d/70-e2e-control.rules" <<'EOF'
SUBSYSTEM=="virtio-ports", ATTR{name}=="org.e2e.control", TAG+="systemd", ENV{SYSTEMD_WANTS}="e2e-control.service"
EOF
# A slow early-boot unit, as cloud-init waiting for a DHCP lease or a slow
# file system check would be: with e2e.slow_sysinit=SECONDS on the kernel
# command line it holds sysinit.target (and so basic.target, which units
# with default dependencies wait for) for that long.
cat >"$root/etc/systemd/system/e2e-slow-sysinit.service" <<'EOF'
[Unit]
Description=deploy tests' slow early-boot unit
DefaultDependencies=no
ConditionKernelCommandLine=e2e.slow_sysinit
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for a in $$(cat /proc/cmdline); do case $$a in e2e.slow_sysinit=*) exec sleep "$${a#*=}";; esac; done'
EOF
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
ln -s ../e2e-slow-sysinit.service "$root/etc/systemd/system/sysinit.target.wants/"
# First-boot work (ldconfig, the hwdb, the journal catalogue) is done:
# without these stamps the first boot would redo it (ConditionNeedsUpdate),
# and the first boot is the one that measures qemu-guest-agent.
touch -r "$root/usr" "$root/etc/.updated" "$root/var/.updated"

step "mkfs.ext4 base.ext4"
mkfs.ext4 -F -q -L e2e-root -d "$root" "$tmp/base.ext4" 1G >>"$log" 2>&1

step "qemu-guest-agent and /etc/qemu/qemu-ga.conf"
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get update -qq >>"$log" 2>&1
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
  qemu-guest-agent >>"$log" 2>&1
chroot "$root" apt-get clean >>"$log" 2>&1
rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"
install -d "$root/etc/qemu"
install -m 0644 "$qga_conf" "$root/etc/qemu/qemu-ga.conf"
touch -r "$root/usr" "$root/etc/.updated" "$root/var/.updated"
mkfs.ext4 -F -q -L e2e-root -d "$root" "$tmp/qemu-ga.ext4" 1G >>"$log" 2>&1

rm -rf "$root"
step "done: $out"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
