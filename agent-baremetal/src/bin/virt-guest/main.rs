//! A bootable guest for `qemu-system-riscv64 -machine virt` that serves
//! the agent on the virtio console port named `org.qemu.guest_agent.0`.
//!
//! ```text
//! cargo build -p agent-baremetal --features defmt --bin virt-guest \
//!     --target riscv64gc-unknown-none-elf --release
//! qemu-system-riscv64 -machine virt -accel tcg -m 128M -smp 1 -nographic \
//!   -monitor none -serial file:serial.log -no-reboot -bios default \
//!   -kernel target/riscv64gc-unknown-none-elf/release/virt-guest \
//!   -device virtio-serial-device \
//!   -chardev socket,path=qga.sock,server=on,wait=off,id=qga0 \
//!   -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
//! defmt-print -e target/riscv64gc-unknown-none-elf/release/virt-guest < serial.log
//! ```
//!
//! Everything but the machine is `agent_baremetal::guest`: it probes the
//! eight virtio-mmio slots for console devices (from the last, where QEMU
//! puts the first device), runs the multiport control protocol on each
//! until a port with that name shows up (falling back to port 0 of a
//! console without MULTIPORT), serves agent-core's commands and the
//! guest's own, resets the console when QEMU keeps its transmit buffers,
//! and sleeps in `wfi` whenever there is nothing to do (`-append
//! qga.wait=poll` busy-waits instead). This file
//! and `platform.rs` are the machine: the PLIC and the SBI timer for
//! waking, the goldfish RTC for the time, the sifive_test device for
//! `guest-shutdown` (powerdown: QEMU exits 0; reboot: reset; halt: the
//! hart parks with interrupts off and QEMU keeps running), and the UART
//! for the log, which is defmt frames after one plain-text line.
//!
//! Linked at 0x80200000 (`virt.ld`, applied by `build.rs` to this binary
//! only, with defmt's `defmt.x`); OpenSBI (`-bios default`) starts it in
//! S-mode.
//!
//! On the host it builds as a program that says how to build it.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod platform;

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod guest {
    use agent_baremetal::guest::{self, Platform};

    use crate::platform::{self, Dma, Virt};

    agent_baremetal::defmt_logger!(write: platform::uart_write, uptime_us: platform::uptime_us());
    agent_baremetal::defmt_panic_handler!(fail: platform::fail);

    /// Entry from `_start` (a0 = hart id, a1 = device tree).
    #[no_mangle]
    extern "C" fn guest_main(hart: usize, dtb: usize) -> ! {
        guest::log::begin(platform::uart_write);
        let virt = Virt::new(dtb);
        defmt::info!(
            "virt-guest {=str}: hart {=usize}, dtb {=usize:#x}, boot args {=str:?}",
            env!("CARGO_PKG_VERSION"),
            hart,
            dtb,
            virt.boot_args()
        );
        // QEMU's `virt` fills the virtio-mmio slots from the last one:
        // probing from there meets the devices in command-line order.
        let transports = (0..platform::VIRTIO_SLOTS)
            .rev()
            .filter_map(platform::virtio_slot);
        guest::run::<_, Dma, _, _, { guest::PORTS }>(&virt, transports)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "virt-guest is a bare-metal image for qemu-system-riscv64 -machine virt; build it with\n  \
         cargo build -p agent-baremetal --features defmt --bin virt-guest \
         --target riscv64gc-unknown-none-elf --release\n\
         and boot it as described in agent-baremetal/src/bin/virt-guest/main.rs."
    );
}
