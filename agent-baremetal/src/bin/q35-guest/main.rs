//! A bootable guest for `qemu-system-x86_64 -machine q35` that serves the
//! agent on the virtio console port named `org.qemu.guest_agent.0`, on a
//! `virtio-serial-pci` device: the machine libvirt, Proxmox and KubeVirt
//! give their guests.
//!
//! ```text
//! cargo build -p agent-baremetal --features defmt --bin q35-guest \
//!     --target x86_64-unknown-none --release
//! qemu-system-x86_64 -machine q35 -accel tcg -m 128M -nographic \
//!   -nodefaults -monitor none -serial file:serial.log -no-reboot \
//!   -kernel target/x86_64-unknown-none/release/q35-guest \
//!   -device virtio-serial-pci,id=vser0 \
//!   -chardev socket,path=qga.sock,server=on,wait=off,id=qga0 \
//!   -device virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0
//! defmt-print -e target/x86_64-unknown-none/release/q35-guest < serial.log
//! ```
//!
//! Everything but the machine is `agent_baremetal::guest`, as for the
//! riscv64 guest: port discovery by name, the serve loop, the commands,
//! the log. This file and `platform/` are the machine: QEMU boots the
//! ELF through its PVH entry (its firmware, SeaBIOS by default, runs
//! first); the guest sets up long mode, reads the ACPI tables (MCFG for
//! PCI's ECAM window, FADT and DSDT for power), enumerates PCI through
//! bridges (assigning BARs a firmware such as qboot leaves unassigned),
//! drives each `virtio-serial-pci` with MSI-X, sleeps in `hlt` between
//! requests (the local APIC timer for its own time-outs), reads the CMOS
//! RTC for the time, ends with ACPI soft-off, a reset through the FADT's
//! reset register, or a halted CPU, and logs defmt frames on COM1 after
//! one plain-text line. `-append qga.wait=poll` busy-waits instead of
//! sleeping. A fatal error writes QEMU's `isa-debug-exit` port if a test
//! added the device (QEMU exits with `(code << 1) | 1`), then halts.
//!
//! Linked at 1 MiB (`q35.ld`, applied by `build.rs` to this binary only,
//! with defmt's `defmt.x`).
//!
//! On the host it builds as a program that says how to build it.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod platform;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod guest {
    use agent_baremetal::guest::{self, exit};

    use crate::platform::{self, Dma, Q35};

    agent_baremetal::defmt_logger!(write: platform::uart_write, uptime_us: platform::uptime_us());
    agent_baremetal::defmt_panic_handler!(fail: platform::fail);

    /// Entry from `pvh_start` (boot.rs): the physical address of the PVH
    /// start info.
    #[no_mangle]
    extern "C" fn q35_entry(start_info: u32) -> ! {
        platform::uart_init();
        guest::log::begin(platform::uart_write);
        let (q35, mut pci) = match Q35::init(start_info) {
            Ok(machine) => machine,
            Err(e) => {
                defmt::error!("platform: {}", e);
                platform::fail(exit::PLATFORM_FAILED);
            }
        };
        defmt::info!(
            "q35-guest {=str}: start info {=u32:#x}, boot args {=str:?}",
            env!("CARGO_PKG_VERSION"),
            start_info,
            guest::Platform::boot_args(&q35)
        );
        let transports =
            pci.consoles()
                .into_iter()
                .filter_map(|df| match pci.console_transport(df) {
                    Ok(transport) => Some((df, transport)),
                    Err(e) => {
                        defmt::warn!("{}: {}", df, e);
                        None
                    }
                });
        guest::run::<_, Dma, _, _, { guest::PORTS }>(&q35, transports)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "q35-guest is a bare-metal image for qemu-system-x86_64 -machine q35; build it with\n  \
         cargo build -p agent-baremetal --features defmt --bin q35-guest \
         --target x86_64-unknown-none --release\n\
         and boot it as described in agent-baremetal/src/bin/q35-guest/main.rs."
    );
}
