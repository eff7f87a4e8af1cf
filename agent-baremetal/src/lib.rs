//! # agent-baremetal
//!
//! Running agent-core in a guest without an operating system: a virtio
//! console driver with named ports (MULTIPORT) exposing one port as
//! `embedded-io`, and a bootable example guest for
//! `qemu-system-riscv64 -machine virt` (`src/bin/virt-guest.rs`).
//!
//! | module | what it does |
//! |---|---|
//! | [`control`] | the console's control messages, encoded and decoded |
//! | [`ports`] | the port table the control messages build (sans-IO) |
//! | [`console`] | the driver on `virtio-drivers`' transports and queues |
//!
//! The driver is polled (no interrupts) and generic over
//! `virtio_drivers::Hal` and `virtio_drivers::transport::Transport`, so it
//! runs on MMIO and PCI alike:
//!
//! ```no_run
//! # fn guest<H: virtio_drivers::Hal, T: virtio_drivers::transport::Transport>(transport: T)
//! # -> Result<(), agent_baremetal::console::ConsoleError> {
//! use agent_baremetal::console::{PortEvent, VirtioConsole};
//! use agent_core::{Agent, CoreCommands, Policy};
//! use embedded_io::{Read, ReadReady};
//!
//! let mut console = VirtioConsole::<H, T>::new(transport)?;
//! let id = loop {
//!     console.poll()?;
//!     if let Some(id) = console.find("org.qemu.guest_agent.0") {
//!         break id;
//!     }
//! };
//! let mut port = console.open(id)?;
//! let mut agent = Agent::new([0u8; 4096], CoreCommands::new(), Policy::new());
//! let mut chunk = [0u8; 512];
//! loop {
//!     while let Some(event) = port.poll_event()? {
//!         if event == PortEvent::HostDisconnected {
//!             agent.reset();
//!         }
//!     }
//!     if port.read_ready()? {
//!         let n = port.read(&mut chunk)?;
//!         agent.feed(&chunk[..n], &mut port)?;
//!     }
//! }
//! # }
//! ```
//!
//! The `footprint` example is the smallest program that links the whole
//! agent, used to measure agent-core's code size on bare-metal targets.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod console;
pub mod control;
mod dma;
pub mod guest;
pub mod ports;
pub mod tx;
