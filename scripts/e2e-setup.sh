#!/usr/bin/env bash
# Installs what the end-to-end tests need, when missing (the test command
# runs this first; it is also safe to run by hand):
#   - QEMU (x86_64 and riscv64 system emulators, firmware), Debian's
#     qemu-guest-agent (the reference peer), busybox-static and cpio for
#     the test initramfs; iproute2 (`ip netns`, for many_interfaces.rs);
#   - libvirt's daemon, QEMU driver and virsh (libvirt_e2e.rs starts a
#     private libvirtd of its own in a mount namespace: no system service,
#     no user or configuration changes here);
#   - debootstrap and e2fsprogs (the Debian guest images of deploy_e2e.rs,
#     made with mkfs.ext4 -d; debugfs for fsfreeze_e2e.rs), groff-base
#     (deploy_e2e.rs checks the package's man page);
#   - Debian's kernel, unpacked (not installed) into target/e2e/kernel:
#     the linux-image package's files, ~70 MB, no update-initramfs;
#   - the rustup targets for the static agent and the bare-metal guests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86 seabios)
command -v qemu-system-riscv64 >/dev/null || need+=(qemu-system-misc)
[ -e /usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin ] || [ -e /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin ] || need+=(qemu-system-data opensbi)
command -v qemu-ga >/dev/null || [ -x /usr/sbin/qemu-ga ] || need+=(qemu-guest-agent)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
[ -x /usr/sbin/libvirtd ] || need+=(libvirt-daemon)
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] || need+=(libvirt-daemon-driver-qemu)
command -v virsh >/dev/null || need+=(libvirt-clients)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || need+=(e2fsprogs)
command -v groff >/dev/null || need+=(groff-base)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e-setup: installing ${need[*]}"
  log=$(mktemp)
  # --no-install-recommends: the recommends conflict with the machine's qemu-utils.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1 \
    || { cat "$log"; rm -f "$log"; exit 1; }
  rm -f "$log"
fi

kernel_dir=target/e2e/kernel
if ! ls "$kernel_dir"/boot/vmlinuz-* >/dev/null 2>&1; then
  mkdir -p target/e2e
  [ -n "$(apt-cache depends linux-image-amd64 2>/dev/null)" ] || apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  echo "e2e-setup: unpacking $pkg into $kernel_dir"
  (cd target/e2e && rm -f linux-image-*.deb && apt-get download -qq "$pkg")
  rm -rf "$kernel_dir" && mkdir -p "$kernel_dir"
  dpkg-deb -x target/e2e/linux-image-*.deb "$kernel_dir"
  rm -f target/e2e/linux-image-*.deb
fi

installed=$(rustup target list --installed)
for t in x86_64-unknown-linux-musl riscv64gc-unknown-none-elf x86_64-unknown-none; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
