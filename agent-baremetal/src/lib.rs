//! # agent-baremetal
//!
//! Running agent-core in a guest without an operating system: a virtio
//! console driver with named ports (MULTIPORT) exposing one port as
//! `embedded-io`, a whole guest agent on top of it for any machine that
//! implements a small [`guest::Platform`], and two bootable example
//! guests built on it: `qemu-system-riscv64 -machine virt` over
//! virtio-mmio (`src/bin/virt-guest`) and `qemu-system-x86_64 -machine
//! q35` over virtio-pci with MSI-X (`src/bin/q35-guest`, the machine
//! libvirt, Proxmox and KubeVirt give their guests).
//!
//! | module | what it does |
//! |---|---|
//! | [`control`] | the console's control messages, encoded and decoded |
//! | [`ports`] | the port table the control messages build (sans-IO) |
//! | [`tx`] | which transmit slots the driver may write (sans-IO) |
//! | [`console`] | the driver on `virtio-drivers`' transports and queues |
//! | [`guest`] | the guest: platform trait, port discovery, serve loop, commands, log; a DMA arena, a 16550 writer, ACPI and CMOS RTC decoding for platforms to use |
//!
//! The driver is generic over `virtio_drivers::Hal` and
//! `virtio_drivers::transport::Transport`, so it runs on MMIO and PCI
//! alike; everything in [`guest`] is architecture-neutral. What each
//! example guest adds is its machine: boot code, interrupt controller,
//! timer, clock, power, and how it finds its virtio devices.
//!
//! # Embedding guide
//!
//! ## What you provide
//!
//! 1. **DMA memory**: a [`virtio_drivers::Hal`]. `dma_alloc` hands out
//!    zeroed, page-aligned pages the device can reach, with their
//!    physical address; `share` gives a buffer's physical address. On an
//!    identity-mapped machine, [`guest::dma::IdentityHal`] over a
//!    [`guest::dma::DmaArena`] of spare RAM is all it takes (both example
//!    guests use it); the driver allocates while it sets up a console and
//!    opens a port, and frees everything when the console is reset.
//! 2. **Transports**: one `virtio_drivers` transport per candidate device,
//!    each with a label for the log ([`guest::Label`]): `MmioTransport`
//!    for each virtio-mmio slot of your memory map or device tree (the
//!    riscv64 guest), `PciTransport` for each virtio device found by
//!    enumerating PCI (the q35 guest: ECAM from ACPI's MCFG, wrapped to
//!    give each queue an MSI-X vector, which virtio-drivers leaves
//!    unset). The driver ignores devices that are not consoles.
//! 3. **A clock**: time since boot for time-outs, and a wall clock (an
//!    RTC) for `guest-get-time`; `guest-set-time` keeps its own offset.
//! 4. **Interrupt wiring**: route the console's interrupt (a PLIC source,
//!    an IOAPIC pin, an MSI-X vector) so that it ends your CPU's sleep
//!    (`wfi`, `hlt`). No handler has to touch the device: the serve loop
//!    acknowledges it ([`console::Port::ack_interrupt`]) and checks for
//!    work ([`console::Port::has_work`]) before it sleeps, so an
//!    interrupt raised after the check must still end the sleep: an
//!    MSI pending in the local APIC does, a PLIC source that was already
//!    claimed does not (see [`guest`] for both). Without interrupts
//!    everything still works, busy-waiting.
//! 5. **Ending**: power off, reset, halt, and a way to report a failure.
//! 6. **Your commands**, if you want more than [`guest::GuestCommands`]:
//!    an [`agent_core::Commands`] table of your own and your own loop
//!    (below).
//!
//! ## The smallest complete program
//!
//! With a [`guest::Platform`], [`guest::run`] is the whole agent: it finds
//! the port named `org.qemu.guest_agent.0`, serves agent-core's commands
//! and [`guest::GuestCommands`] (time, host name, osinfo, shutdown),
//! sleeps in [`guest::Platform::wait_for_interrupt`], resets the console
//! when QEMU keeps its transmit buffers, and ends the machine as
//! `guest-shutdown` asks. Boot code, the panic handler and the log (see
//! [`guest::log`]) are the program's; everything else is here:
//!
//! ```no_run
//! use core::ptr::NonNull;
//!
//! use agent_baremetal::guest::dma::{DmaArena, IdentityHal, IdentityMapped};
//! use agent_baremetal::guest::{self, OsInfo, Platform, ShutdownMode};
//! use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
//!
//! /// The machine: an identity-mapped RAM, a timer, an RTC, a power switch.
//! struct Machine;
//!
//! impl Platform for Machine {
//!     fn uptime_us(&self) -> u64 {
//!         0 // read the timer
//!     }
//!     fn hardware_clock_ns(&self) -> i64 {
//!         0 // read the RTC
//!     }
//!     fn wait_for_interrupt(&self, deadline_us: Option<u64>) {
//!         // Complete the interrupt controller's pending interrupt (and
//!         // return if there was one), arm the timer for `deadline_us`,
//!         // then `wfi`/`hlt`.
//!     }
//!     fn shutdown(&self, mode: ShutdownMode) -> ! {
//!         loop {} // power off, park the CPU, or reset
//!     }
//!     fn fail(&self, code: u16) -> ! {
//!         loop {} // report `code` and stop
//!     }
//!     fn os_info(&self) -> OsInfo<'_> {
//!         OsInfo {
//!             name: Some("my-unikernel"),
//!             version_id: Some("1.0"),
//!             machine: Some("riscv64"),
//!             ..OsInfo::default()
//!         }
//!     }
//! }
//!
//! /// DMA pages: RAM the program set aside (`init` it at boot).
//! static ARENA: DmaArena = DmaArena::new();
//!
//! // SAFETY: (on a real machine) memory is identity-mapped, and ARENA is
//! // initialised with RAM nothing else uses before the first console.
//! unsafe impl IdentityMapped for Machine {
//!     fn arena() -> &'static DmaArena {
//!         &ARENA
//!     }
//! }
//!
//! fn main_after_boot() -> ! {
//!     let machine = Machine;
//!     // The virtio-mmio slots of riscv64 `virt`, labelled for the log.
//!     let transports = (0..8u32).filter_map(|slot| {
//!         let header = 0x1000_1000 + slot as usize * 0x1000;
//!         let header = NonNull::new(header as *mut VirtIOHeader)?;
//!         // SAFETY: (on `virt`) a virtio-mmio register block lives there.
//!         let transport = unsafe { MmioTransport::new(header, 0x1000) }.ok()?;
//!         Some((slot, transport))
//!     });
//!     // Up to 4 ports per console (QEMU numbers named ports from 1).
//!     guest::run::<_, IdentityHal<Machine>, _, _, 4>(&machine, transports)
//! }
//! # fn main() {}
//! ```
//!
//! ## Your own loop and your own commands
//!
//! Below [`guest::run`], the driver and agent-core compose directly; a
//! command table of your own goes into the tuple:
//!
//! ```no_run
//! # fn guest<H: virtio_drivers::Hal, T: virtio_drivers::transport::Transport>(transport: T)
//! # -> Result<(), agent_baremetal::console::ConsoleError> {
//! use agent_baremetal::console::{PortEvent, VirtioConsole};
//! use agent_core::prelude::*;
//!
//! /// agent-core's commands and `guest-get-answer`: 42.
//! struct Answer;
//!
//! impl Answer {
//!     const COMMANDS: [Command<Self>; 5] = [
//!         Command::guest_sync_delimited(),
//!         Command::guest_sync(),
//!         Command::guest_ping(),
//!         Command::guest_info(),
//!         Command::new("guest-get-answer", |_, args, reply| {
//!             args.finish()?;
//!             let mut value = reply.ok()?;
//!             value.i64(42)?;
//!             Ok(value.finish()?)
//!         }),
//!     ];
//! }
//!
//! impl Commands for Answer {
//!     type Error = core::convert::Infallible;
//!     fn commands(&self) -> &[Command<Self>] {
//!         &Self::COMMANDS
//!     }
//! }
//!
//! let mut console = VirtioConsole::<H, T>::new(transport)?;
//! let id = loop {
//!     console.ack_interrupt();
//!     console.poll()?;
//!     if let Some(id) = console.find("org.qemu.guest_agent.0") {
//!         break id;
//!     }
//!     // (sleep until an interrupt, with a time-out)
//! };
//! // Where the port must block (the device holds output back), it calls
//! // this; here: sleep until an interrupt.
//! let wait = || { /* wfi */ };
//! let mut port = console.open_with(id, wait)?;
//! let mut agent = Agent::new([0u8; 4096], Answer, Policy::new());
//! let mut chunk = [0u8; 512];
//! loop {
//!     port.ack_interrupt();
//!     while let Some(event) = port.poll_event()? {
//!         if event != PortEvent::HostConnected {
//!             agent.reset();
//!         }
//!     }
//!     let n = port.read_available(&mut chunk)?;
//!     if n > 0 {
//!         agent.feed(&chunk[..n], &mut port)?;
//!     } else if !port.has_work() {
//!         // sleep until an interrupt
//!     }
//! }
//! # }
//! ```
//!
//! ## Memory
//!
//! Figures for 64-bit targets with this crate's constants.
//!
//! | what | where | size |
//! |---|---|---|
//! | virtqueues: 2 control + 2 per port of `0..PORTS` the device has | DMA | 2 pages each |
//! | control receive buffers (32 × 128 bytes) | DMA | 1 page |
//! | the open port's receive buffers (2 × 2 KiB) | DMA | 1 page |
//! | the open port's transmit slots ([`console::TX_SLOTS`] × [`console::TX_BUFFER_LEN`]) | DMA | 1 page |
//! | `VirtioConsole<_, _, 4>` / `<_, _, 2>` (queue bookkeeping, port table) | yours (static or stack) | 3 600 / 2 656 bytes |
//! | `Agent` with a 4 KiB request buffer ([`guest::REQUEST_BUFFER_LEN`]) | stack in [`guest::run`] | 4 336 bytes |
//! | input a console reset hands back ([`console::RECEIVE_BUFFER_LEN`]) | stack in [`guest::run`] | 4 KiB |
//! | the read chunk | stack in [`guest::serve`] | 512 bytes |
//! | the deepest `Agent::feed` (`stack_depth` example, x86_64 frames) | stack | about 4 KiB |
//!
//! So a console with `PORTS = 4` (the example guests) takes 23 pages
//! (92 KiB) of DMA memory, one with `PORTS = 2` (QEMU's usual single
//! `org.qemu.guest_agent.0` at port 1) 15 pages (60 KiB); pages are
//! allocated when the console is created and when the port is opened,
//! and again after a reset (which frees them first). The stack holds
//! about 13 KiB at its deepest; the example guests reserve 128 KiB, with
//! room to spare. Code: agent-core alone is about 24 KiB of `.text` on
//! `thumbv7em-none-eabihf` (the `footprint` example); in the example
//! guests (release, defmt), agent-core and this crate are 68 148 of the
//! riscv64 image's 80 504 bytes of `.text` and 100 022 of the x86_64
//! image's 124 878; `scripts/test.sh` prints both.
//!
//! ## Logging
//!
//! With feature `defmt`, the guest code and agent-core log through
//! [defmt](https://defmt.ferrous-systems.com): the program defines the
//! global logger with `agent_baremetal::defmt_logger!` (frames through any
//! `fn(&[u8])`, e.g. a UART), links with `-Tdefmt.x`, and builds with
//! `DEFMT_LOG=info` (this workspace's `.cargo/config.toml` sets it). On
//! riscv64 with code above 2 GiB (QEMU `virt` runs from 0x8020_0000)
//! defmt's string symbols are out of PC-relative reach: build with `-C
//! relocation-model=pic` (also in `.cargo/config.toml`); the x86_64
//! guest runs from 1 MiB and needs nothing. Without the feature, the log
//! calls compile to nothing.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod console;
pub mod control;
mod dma;
#[cfg(test)]
mod fake_device;
pub mod guest;
pub mod ports;
pub mod tx;
