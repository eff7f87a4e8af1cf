//! A whole guest agent for a machine without an operating system, minus
//! what depends on the machine: find the console port named
//! `org.qemu.guest_agent.0`, serve [`GuestCommands`] on it, sleep until
//! an interrupt whenever there is nothing to do, reset the console when
//! the device keeps its transmit buffers, and end the machine as
//! `guest-shutdown` asks. The machine comes in as a [`Platform`]; the
//! example guests (`virt-guest` for riscv64 `virt`, `q35-guest` for
//! x86_64 `q35`) are a `Platform`, a `virtio_drivers::Hal`, their
//! transports, and a call to [`run`].
//!
//! Besides, for platforms to use, all architecture-neutral: a DMA arena
//! and `Hal` for identity-mapped machines ([`dma`]), the 16550 UART both
//! example machines log through ([`uart`]), and sans-IO decoders of what
//! firmware leaves in memory ([`fdt`]: a device tree's boot arguments;
//! [`acpi`]: the tables x86_64 reads; [`rtc`]: the PC CMOS clock's
//! registers).
//!
//! ```no_run
//! # use agent_baremetal::guest::{self, OsInfo, Platform, ShutdownMode};
//! # struct Machine;
//! # impl Platform for Machine {
//! #     fn uptime_us(&self) -> u64 { 0 }
//! #     fn hardware_clock_ns(&self) -> i64 { 0 }
//! #     fn wait_for_interrupt(&self, _deadline_us: Option<u64>) {}
//! #     fn shutdown(&self, _mode: ShutdownMode) -> ! { loop {} }
//! #     fn fail(&self, _code: u16) -> ! { loop {} }
//! #     fn os_info(&self) -> OsInfo<'_> { OsInfo::default() }
//! # }
//! # fn guest<H: virtio_drivers::Hal, T: virtio_drivers::transport::Transport>(
//! #     transports: impl Iterator<Item = (u32, T)>) -> ! {
//! let machine = Machine; // set up: interrupt controller, timer, UART
//! // `transports`: (a label for the log, a virtio transport) per device.
//! guest::run::<_, H, _, _, 4>(&machine, transports)
//! # }
//! ```
//!
//! ## What a platform must do
//!
//! - **Clocks.** [`Platform::uptime_us`] is monotonic (time-outs, log
//!   time stamps); [`Platform::hardware_clock_ns`] is the wall clock the
//!   machine keeps (an RTC), UTC. `guest-set-time` never writes it: the
//!   guest keeps its own offset from it (in [`GuestCommands`]).
//! - **Sleeping.** [`Platform::wait_for_interrupt`] returns when an
//!   interrupt of a virtio device is pending or the deadline has passed.
//!   The serve loop acknowledges the device, works, and checks for more
//!   work before it calls it, so the platform must not lose an interrupt
//!   raised in between. On riscv64 `wfi` with the
//!   interrupt enabled in `sie` wakes even with `sstatus.SIE` off (no
//!   trap handler needed); the platform claims and completes the PLIC's
//!   interrupt, and returns at once if there was one (it may have come
//!   after the serve loop looked for work; QEMU's PLIC does not raise a
//!   source again at completion while its line is still high), and
//!   only sleeps when there was none. On x86_64 `sti; hlt` (the `sti`
//!   shadow makes the pair atomic, so an interrupt raised before it is
//!   taken after it and ends the `hlt`), then `cli`, with a handler
//!   that stops the interrupt from recurring: with MSI-X (edge) an EOI
//!   is enough; a level-triggered INTx line stays asserted until the
//!   device is acknowledged, so its handler masks the IOAPIC pin (and
//!   the platform unmasks it before its next sleep) or reads the
//!   device's ISR itself (harmless: the serve loop finds work from the
//!   rings, not from the ISR). Early returns are harmless.
//! - **Ending.** [`Platform::shutdown`] powers off, halts (processor
//!   stopped, power on: QEMU keeps running) or resets, as
//!   [`ShutdownMode`] says; [`Platform::fail`] ends the run as an error
//!   (the example guests make QEMU exit with that status).
//! - **Identity.** [`Platform::os_info`] names the image and its version
//!   for `guest-get-osinfo`; [`Platform::host_name`] defaults to
//!   [`HOST_NAME`], set at build time.
//! - **Boot arguments.** [`Platform::boot_args`] (QEMU's `-append`) may
//!   say `qga.wait=poll`: busy-wait instead of sleeping, for comparing
//!   the two.

pub mod acpi;
pub mod commands;
pub mod dma;
pub mod fdt;
pub mod log;
pub mod rtc;
pub mod uart;

use agent_core::{Agent, Policy};
use virtio_drivers::transport::Transport;
use virtio_drivers::Hal;

use crate::console::{ConsoleError, PortEvent, VirtioConsole, RECEIVE_BUFFER_LEN};
use log::{log_error, log_info, log_warn};

pub use commands::{GuestCommands, OsInfo, ShutdownMode};

/// The port the agent serves.
pub const AGENT_PORT: &str = "org.qemu.guest_agent.0";

/// The host name `guest-get-host-name` reports unless the platform says
/// otherwise: the `QGA_GUEST_HOST_NAME` environment variable when this
/// crate was built, else "localhost" (qemu-ga's fallback).
pub const HOST_NAME: &str = match option_env!("QGA_GUEST_HOST_NAME") {
    Some(name) => name,
    None => "localhost",
};

/// Ports the example guests set up per console (ids `0..PORTS`): a
/// console at 0 and QEMU's first three named ports; the const generic
/// of [`run`] for a configuration like theirs.
pub const PORTS: usize = 4;

/// Bytes of the agent's request buffer: the largest request served
/// (larger ones are answered with an error; the stream stays in sync).
pub const REQUEST_BUFFER_LEN: usize = 4096;

/// How long [`find_port`] waits for a console's ports to be named, in µs.
pub const DISCOVERY_TIMEOUT_US: u64 = 200_000;

/// The machine under the guest. Every method takes `&self`: the serve
/// loop shares the platform between the commands and the port's waiting.
pub trait Platform {
    /// Time since boot in µs, monotonic.
    fn uptime_us(&self) -> u64;

    /// The machine's wall clock (an RTC): ns since the epoch, UTC.
    fn hardware_clock_ns(&self) -> i64;

    /// Sleep until a device interrupt is pending or `deadline_us`
    /// ([`uptime_us`](Self::uptime_us)) has passed; `None` means no
    /// deadline. See the module docs for what must not be lost.
    fn wait_for_interrupt(&self, deadline_us: Option<u64>);

    /// End the machine as `mode` says.
    fn shutdown(&self, mode: ShutdownMode) -> !;

    /// End the run as a failure with `code` (the example guests: QEMU
    /// exits with that status).
    fn fail(&self, code: u16) -> !;

    /// The image's identity, for `guest-get-osinfo`.
    fn os_info(&self) -> OsInfo<'_>;

    /// The host name, for `guest-get-host-name`.
    fn host_name(&self) -> &str {
        HOST_NAME
    }

    /// The boot arguments (QEMU's `-append`), if the boot protocol
    /// passes any.
    fn boot_args(&self) -> &str {
        ""
    }
}

/// How the guest waits for work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WaitMode {
    /// Sleep in [`Platform::wait_for_interrupt`] (the default).
    Interrupt,
    /// Busy-wait (boot argument `qga.wait=poll`): the way the first
    /// guest worked, kept to measure against.
    Poll,
}

impl WaitMode {
    /// The mode the boot arguments ask for.
    pub fn from_boot_args(args: &str) -> Self {
        if args.split_ascii_whitespace().any(|a| a == "qga.wait=poll") {
            WaitMode::Poll
        } else {
            WaitMode::Interrupt
        }
    }
}

/// What names a device in the log: a virtio-mmio slot, a PCI function.
/// Any `Copy` value (with feature `defmt`, one that is
/// `defmt::Format`).
#[cfg(feature = "defmt")]
pub trait Label: Copy + defmt::Format {}
#[cfg(feature = "defmt")]
impl<L: Copy + defmt::Format> Label for L {}

/// What names a device in the log: a virtio-mmio slot, a PCI function.
/// Any `Copy` value (with feature `defmt`, one that is
/// `defmt::Format`).
#[cfg(not(feature = "defmt"))]
pub trait Label: Copy {}
#[cfg(not(feature = "defmt"))]
impl<L: Copy> Label for L {}

/// Exit codes of [`run`]'s failures (through [`Platform::fail`]), and
/// the example guests' own.
pub mod exit {
    /// The machine could not be brought up (the example guests' platform
    /// code: firmware tables missing, a device it needs absent).
    pub const PLATFORM_FAILED: u16 = 1;
    /// No console has a port named [`AGENT_PORT`](super::AGENT_PORT), and
    /// no console without MULTIPORT was found either.
    pub const NO_PORT: u16 = 2;
    /// The console failed while serving, and could not be reset.
    pub const CONSOLE_FAILED: u16 = 3;
    /// The guest panicked (used by the example guests' panic handlers).
    pub const PANIC: u16 = 4;
    /// A CPU exception (used by the example guests' trap handlers).
    pub const CPU_EXCEPTION: u16 = 5;
}

/// Wait as `mode` says: for an interrupt until `deadline_us`, or not.
fn idle<P: Platform>(platform: &P, mode: WaitMode, deadline_us: Option<u64>) {
    match mode {
        WaitMode::Interrupt => platform.wait_for_interrupt(deadline_us),
        WaitMode::Poll => core::hint::spin_loop(),
    }
}

/// Run `console`'s control protocol until a port named [`AGENT_PORT`]
/// shows up, for at most [`DISCOVERY_TIMEOUT_US`], and log its ports;
/// the port's id. A console without MULTIPORT has only port 0: that one.
pub fn discover<P, H, T, L, const PORTS: usize>(
    platform: &P,
    mode: WaitMode,
    label: L,
    console: &mut VirtioConsole<H, T, PORTS>,
) -> Option<u32>
where
    P: Platform,
    H: Hal,
    T: Transport,
    L: Label,
{
    if !console.is_multiport() {
        log_info!("{}: console without MULTIPORT", label);
        return Some(0);
    }
    let deadline = platform.uptime_us().saturating_add(DISCOVERY_TIMEOUT_US);
    while console.find(AGENT_PORT).is_none() && platform.uptime_us() < deadline {
        console.ack_interrupt();
        if let Err(e) = console.poll() {
            log_warn!("{}: control queue failed: {}", label, e);
            break;
        }
        if console.find(AGENT_PORT).is_none() && !console.has_work() {
            idle(platform, mode, Some(deadline));
        }
    }
    for (id, port) in console.ports() {
        log_info!(
            "{}: port {=u32} {=str}{=str}{=str}",
            label,
            id,
            core::str::from_utf8(port.name()).unwrap_or("?"),
            if port.is_console() { " console" } else { "" },
            if port.is_host_connected() {
                " host-connected"
            } else {
                ""
            },
        );
    }
    console.find(AGENT_PORT)
}

/// Set up a console on each transport (labelled for the log) and
/// [`discover`] its ports until one has a port named [`AGENT_PORT`]; its
/// label, the console and the port to serve. A console without
/// MULTIPORT (port 0 only) is the fallback.
#[allow(clippy::type_complexity)]
pub fn find_port<P, H, T, L, const PORTS: usize>(
    platform: &P,
    mode: WaitMode,
    transports: impl IntoIterator<Item = (L, T)>,
) -> Option<(L, VirtioConsole<H, T, PORTS>, u32)>
where
    P: Platform,
    H: Hal,
    T: Transport,
    L: Label,
{
    let mut fallback = None;
    for (label, transport) in transports {
        let mut console = match VirtioConsole::<H, T, PORTS>::new(transport) {
            Ok(console) => console,
            Err(ConsoleError::NotAConsole) => continue,
            Err(e) => {
                log_warn!("{}: console set-up failed: {}", label, e);
                continue;
            }
        };
        let found = discover(platform, mode, label, &mut console);
        match found {
            Some(id) if console.is_multiport() => {
                log_info!("{}: serving port {=u32}", label, id);
                return Some((label, console, id));
            }
            Some(_) if fallback.is_none() => fallback = Some((label, console)),
            _ => {}
        }
    }
    let (label, console) = fallback?;
    log_info!("{}: serving port 0 (no MULTIPORT)", label);
    Some((label, console, 0))
}

/// The agent a guest serves: [`GuestCommands`] with a request buffer of
/// [`REQUEST_BUFFER_LEN`] bytes.
pub type GuestAgent<'p, P> = Agent<'static, [u8; REQUEST_BUFFER_LEN], GuestCommands<'p, P>>;

/// A new [`GuestAgent`] on `platform`.
pub fn agent<P: Platform>(platform: &P) -> GuestAgent<'_, P> {
    Agent::new(
        [0u8; REQUEST_BUFFER_LEN],
        GuestCommands::new(platform),
        Policy::new(),
    )
}

/// Why [`serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Served {
    /// A `guest-shutdown` succeeded: end the machine this way.
    Shutdown(ShutdownMode),
    /// The device keeps transmit slots for good and no host client is
    /// connected: a good moment to reset the console
    /// ([`VirtioConsole::reset`]), which loses nobody's data.
    ResetWanted,
}

/// Serve `agent` on port `id` of `console` until a `guest-shutdown`
/// succeeds, or until the console had better be reset (see [`Served`]).
/// `pending` is input received before (what a reset handed back): the
/// agent reads it first.
pub fn serve<P, H, T, const PORTS: usize>(
    platform: &P,
    mode: WaitMode,
    console: &mut VirtioConsole<H, T, PORTS>,
    id: u32,
    agent: &mut GuestAgent<'_, P>,
    pending: &[u8],
) -> Result<Served, ConsoleError>
where
    P: Platform,
    H: Hal,
    T: Transport,
{
    let mut port = console.open_with(id, || idle(platform, mode, None))?;
    agent.reset();
    let mut chunk = [0u8; agent_core::agent::SERVE_CHUNK];
    log_info!("agent ready on port {=u32} ({})", id, mode);
    if !pending.is_empty() {
        log_info!("{=usize} bytes received before the reset", pending.len());
        if let Err(e) = agent.feed(pending, &mut port) {
            log_warn!("write failed: {}; resetting the parser", e);
            agent.reset();
        }
    }
    loop {
        // Acknowledge first: whatever the device does from here on raises
        // its interrupt again, so the sleep below cannot miss it.
        port.ack_interrupt();
        while let Some(event) = port.poll_event()? {
            log_info!(
                "host event: {} (transmit slots held by the device: {=usize})",
                event,
                port.lost_tx_buffers()
            );
            if event != PortEvent::HostConnected {
                agent.reset();
            }
        }
        let n = port.read_available(&mut chunk)?;
        if let Some(input) = chunk.get(..n).filter(|i| !i.is_empty()) {
            match agent.feed(input, &mut port) {
                Ok(_) => {}
                Err(ConsoleError::TransmitSlotsLost) => {
                    return Err(ConsoleError::TransmitSlotsLost);
                }
                Err(e) => {
                    log_warn!("write failed: {}; resetting the parser", e);
                    agent.reset();
                }
            }
            if let Some(mode) = agent.commands().shutdown_requested() {
                return Ok(Served::Shutdown(mode));
            }
            continue;
        }
        if !port.has_work() {
            if port.lost_tx_buffers() > 0 && !port.is_host_connected() {
                // QEMU detaches the buffer it was writing when a client
                // leaves in the middle; only a reset returns it. Nobody is
                // connected and nothing is buffered: reset now rather than
                // in the middle of the next client's request.
                return Ok(Served::ResetWanted);
            }
            idle(platform, mode, None);
        }
    }
}

/// The whole guest: find the port ([`find_port`]), [`serve`] it, and end
/// the machine as `guest-shutdown` asked ([`Platform::shutdown`]), or
/// fail with an [`exit`] code.
///
/// QEMU 7.2 keeps, for good, the transmit buffer it was writing when a
/// host client leaves in the middle of a reply: one transmit slot per
/// such client. The console is reset (which gives them back, and keeps
/// the agent's state, `guest-set-time`'s offset included) as soon as no
/// client is connected, and, if every slot is gone before that
/// ([`ConsoleError::TransmitSlotsLost`]), at once.
pub fn run<P, H, T, L, const PORTS: usize>(
    platform: &P,
    transports: impl IntoIterator<Item = (L, T)>,
) -> !
where
    P: Platform,
    H: Hal,
    T: Transport,
    L: Label,
{
    let mode = WaitMode::from_boot_args(platform.boot_args());
    let Some((label, mut console, mut id)) =
        find_port::<P, H, T, L, PORTS>(platform, mode, transports)
    else {
        log_error!("no virtio console port named {=str}", AGENT_PORT);
        platform.fail(exit::NO_PORT);
    };
    let mut agent = agent(platform);
    // Input a reset handed back, and how much of it.
    let mut unread = [0u8; RECEIVE_BUFFER_LEN];
    let mut kept = 0;
    loop {
        let pending = unread.get(..kept).unwrap_or(&[]);
        match serve(platform, mode, &mut console, id, &mut agent, pending) {
            Ok(Served::Shutdown(shutdown)) => {
                log_info!("guest-shutdown: {}", shutdown);
                platform.shutdown(shutdown)
            }
            Ok(Served::ResetWanted) => {
                log_info!("{}: resetting the console for its transmit slots", label);
            }
            Err(ConsoleError::TransmitSlotsLost) => {
                log_warn!(
                    "{}: the device kept every transmit slot; resetting it",
                    label
                );
            }
            Err(e) => {
                log_error!("console failed: {}", e);
                platform.fail(exit::CONSOLE_FAILED)
            }
        }
        let found = match console.reset(&mut unread) {
            Ok(n) => {
                kept = n;
                discover(platform, mode, label, &mut console)
            }
            Err(e) => {
                log_error!("{}: reset failed: {}", label, e);
                None
            }
        };
        match found {
            Some(again) => id = again,
            None => {
                log_error!("{}: no port {=str} after the reset", label, AGENT_PORT);
                platform.fail(exit::CONSOLE_FAILED)
            }
        }
    }
}
