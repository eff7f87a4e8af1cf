//! A bootable guest for `qemu-system-riscv64 -machine virt` that serves
//! the agent on the virtio console port named `org.qemu.guest_agent.0`.
//!
//! ```text
//! cargo build -p agent-baremetal --bin virt-guest \
//!     --target riscv64gc-unknown-none-elf --release
//! qemu-system-riscv64 -machine virt -accel tcg -m 128M -smp 1 -nographic \
//!   -monitor none -serial stdio -no-reboot -bios default \
//!   -kernel target/riscv64gc-unknown-none-elf/release/virt-guest \
//!   -device virtio-serial-device \
//!   -chardev socket,path=qga.sock,server=on,wait=off,id=qga0 \
//!   -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
//! ```
//!
//! It probes the eight virtio-mmio slots for console devices, runs the
//! multiport control protocol on each until a port with that name shows up
//! (falling back to port 0 of a console without MULTIPORT), and serves
//! agent-core's core commands plus `guest-get-time` (the goldfish RTC) and
//! `guest-shutdown` (the sifive_test device). Diagnostics go to the UART.
//! Linked at 0x80200000 (`virt.ld`, applied by `build.rs` to this binary
//! only); OpenSBI (`-bios default`) starts it in S-mode.
//!
//! On the host it builds as a program that says how to build it.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
mod commands;

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod platform;

#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod guest {
    use core::fmt::Write as _;

    use agent_baremetal::console::{ConsoleError, PortEvent, VirtioConsole};
    use agent_core::{Agent, CoreCommands, Policy};
    use virtio_drivers::transport::mmio::MmioTransport;

    use crate::commands::{ShutdownMode, VirtCommands};
    use crate::platform::{self, BumpHal, Uart};

    /// The port the agent serves.
    const PORT_NAME: &str = "org.qemu.guest_agent.0";
    /// Ports per console device (ids 0..PORTS).
    const PORTS: usize = 4;
    /// How long to wait for a console's ports to be named, in ms.
    const DISCOVERY_MS: u64 = 200;

    type Console = VirtioConsole<BumpHal, MmioTransport<'static>, PORTS>;

    macro_rules! log {
        ($($arg:tt)*) => {{
            let ms = platform::ticks() / (platform::TIMER_HZ / 1000);
            let _ = write!(Uart, "[{:>6} ms] ", ms);
            let _ = writeln!(Uart, $($arg)*);
        }};
    }

    /// Probe the virtio-mmio slots; the console and port to serve.
    fn find_port() -> Option<(Console, u32)> {
        let mut fallback = None;
        for slot in 0..platform::VIRTIO_SLOTS {
            let Some(transport) = platform::virtio_slot(slot) else {
                continue;
            };
            let mut console = match Console::new(transport) {
                Ok(console) => console,
                Err(ConsoleError::NotAConsole) => continue,
                Err(e) => {
                    log!("virtio slot {slot}: console init failed: {e}");
                    continue;
                }
            };
            if !console.is_multiport() {
                log!("virtio slot {slot}: console without MULTIPORT");
                fallback.get_or_insert(slot);
                continue;
            }
            let deadline = platform::ticks() + DISCOVERY_MS * (platform::TIMER_HZ / 1000);
            while console.find(PORT_NAME).is_none() && platform::ticks() < deadline {
                if let Err(e) = console.poll() {
                    log!("virtio slot {slot}: {e}");
                    break;
                }
            }
            for (id, port) in console.ports() {
                log!(
                    "virtio slot {slot}: port {id} {:?}{}{}",
                    core::str::from_utf8(port.name()).unwrap_or("?"),
                    if port.is_console() { " console" } else { "" },
                    if port.is_host_connected() {
                        " host-connected"
                    } else {
                        ""
                    },
                );
            }
            if let Some(id) = console.find(PORT_NAME) {
                log!("virtio slot {slot}: serving port {id}");
                return Some((console, id));
            }
        }
        let slot = fallback?;
        let console = Console::new(platform::virtio_slot(slot)?).ok()?;
        log!("virtio slot {slot}: serving port 0 (no MULTIPORT)");
        Some((console, 0))
    }

    fn serve(console: &mut Console, id: u32) -> Result<ShutdownMode, ConsoleError> {
        let mut port = console.open(id)?;
        let commands = (CoreCommands::new(), VirtCommands::new(platform::rtc_now_ns));
        let mut agent = Agent::new([0u8; 4096], commands, Policy::new());
        let mut chunk = [0u8; 512];
        log!("agent ready (DMA in use: {} KiB)", BumpHal::used() / 1024);
        loop {
            while let Some(event) = port.poll_event()? {
                log!(
                    "host event: {event:?} (transmit buffers lost: {})",
                    port.lost_tx_buffers()
                );
                if event != PortEvent::HostConnected {
                    agent.reset();
                }
            }
            let n = port.read_available(&mut chunk)?;
            let Some(input) = chunk.get(..n).filter(|i| !i.is_empty()) else {
                core::hint::spin_loop();
                continue;
            };
            if let Err(e) = agent.feed(input, &mut port) {
                log!("write failed: {e}; resetting the parser");
                agent.reset();
            }
            if let Some(mode) = agent.commands().1.shutdown_requested() {
                return Ok(mode);
            }
        }
    }

    /// Entry from `_start` (a0 = hart id, a1 = device tree).
    #[no_mangle]
    extern "C" fn guest_main(hart: usize, dtb: usize) -> ! {
        log!(
            "virt-guest {}: hart {hart}, dtb {dtb:#x}",
            agent_core::VERSION
        );
        let Some((mut console, id)) = find_port() else {
            log!("no virtio console port named {PORT_NAME}");
            platform::fail(2);
        };
        match serve(&mut console, id) {
            Ok(ShutdownMode::Reboot) => {
                log!("guest-shutdown: reboot");
                platform::reset();
            }
            Ok(mode) => {
                log!("guest-shutdown: {mode:?}");
                platform::power_off();
            }
            Err(e) => {
                log!("console failed: {e}");
                platform::fail(3);
            }
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        log!("panic: {info}");
        platform::fail(4);
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "virt-guest is a bare-metal image for qemu-system-riscv64 -machine virt; build it with\n  \
         cargo build -p agent-baremetal --bin virt-guest --target riscv64gc-unknown-none-elf --release\n\
         and boot it as described in agent-baremetal/src/bin/virt-guest/main.rs."
    );
}
