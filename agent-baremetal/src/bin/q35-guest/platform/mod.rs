//! The q35 machine as this guest sees it: [`Q35::init`] brings it up
//! and returns the [`Platform`] and the PCI domain ([`Pci`], which hands
//! out virtio console transports); the free functions are what the log
//! and the panic handler need. Everything x86-specific (boot, paging,
//! COM1, IDT, local APIC, TSC, CMOS, PCI/ECAM, MSI-X, power) and all of
//! this binary's `unsafe` live below this module; the ACPI tables and
//! the RTC's registers are decoded by `agent_baremetal::guest`.
//!
//! | what | where | use |
//! |---|---|---|
//! | PVH start info | `%ebx` at entry | RSDP, command line |
//! | COM1 (16550) | I/O 0x3F8 | the log (defmt frames) |
//! | CMOS RTC | I/O 0x70/0x71 | the time at boot |
//! | ACPI PM timer | FADT (I/O 0x608) | calibrating the TSC and APIC timer |
//! | PM1a control | FADT (I/O 0x604) | soft-off (S5) |
//! | reset register | FADT (I/O 0xCF9) | reboot |
//! | ECAM | MCFG (0xB000_0000) | PCI configuration space |
//! | local APIC | MSR (0xFEE0_0000) | timer, MSI-X target, EOI |
//! | isa-debug-exit | I/O 0xF4 (if added) | failing runs end QEMU |

mod apic;
mod boot;
mod clock;
mod cmos;
mod interrupts;
mod io;
mod msix;
mod paging;
mod pci;
mod power;

use core::ptr::NonNull;

use agent_baremetal::guest::acpi::{self, AcpiError, Ecam, Fadt, Root};
use agent_baremetal::guest::dma::{DmaArena, IdentityHal, IdentityMapped};
use agent_baremetal::guest::uart::{Ns16550, Registers};
use agent_baremetal::guest::{OsInfo, Platform, ShutdownMode};
use virtio_drivers::transport::pci::VirtioPciError;
use virtio_drivers::PhysAddr;

use boot::{StartInfo, START_INFO_LEN};
pub use pci::Pci;
use pci::PciSetupError;

/// Exit code: a CPU exception (this guest's own; the shared ones are in
/// `agent_baremetal::guest::exit`).
pub const EXIT_CPU_EXCEPTION: u16 = 5;
/// Exit code: device memory that cannot be mapped (no page tables left).
pub const EXIT_UNMAPPED: u16 = 6;

/// COM1's I/O ports.
const COM1: u16 = 0x3f8;

/// COM1's registers: consecutive I/O ports.
struct Com1;

impl Registers for Com1 {
    fn read(&self, index: u8) -> u8 {
        // SAFETY: a COM1 register; reading it touches no memory.
        unsafe { io::inb(COM1 + u16::from(index)) }
    }

    fn write(&self, index: u8, value: u8) {
        // SAFETY: a COM1 register; writing it touches no memory.
        unsafe { io::outb(COM1 + u16::from(index), value) }
    }
}

/// Program COM1 (the firmware may have left it in any state).
pub fn uart_init() {
    Ns16550(Com1).init();
}

/// Write the log's bytes to COM1.
pub fn uart_write(bytes: &[u8]) {
    Ns16550(Com1).write(bytes);
}

/// Microseconds since the clocks were calibrated (0 before).
pub fn uptime_us() -> u64 {
    clock::monotonic_ns() / 1000
}

/// End a failed run (see `power::fail`).
pub fn fail(code: u16) -> ! {
    power::fail(code)
}

/// Why the machine could not be brought up, or a device not set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// The PVH start info is missing or has the wrong magic.
    NoStartInfo,
    /// No RSDP (the loader passed none, and none is in the BIOS area).
    NoRsdp,
    /// An ACPI table is damaged or missing.
    Acpi(AcpiError),
    /// The FADT names no PM timer (needed to measure the clocks).
    NoPmTimer,
    /// A PCI device could not be set up.
    Pci(PciSetupError),
    /// virtio-drivers refused the device.
    Virtio(VirtioPciError),
    /// The device refused its MSI-X vector.
    VectorRefused,
}

impl defmt::Format for PlatformError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            PlatformError::NoStartInfo => defmt::write!(f, "no PVH start info"),
            PlatformError::NoRsdp => defmt::write!(f, "no ACPI RSDP"),
            PlatformError::Acpi(e) => defmt::write!(f, "ACPI: {}", e),
            PlatformError::NoPmTimer => defmt::write!(f, "no ACPI PM timer"),
            PlatformError::Pci(e) => defmt::write!(f, "PCI: {}", e),
            PlatformError::Virtio(e) => {
                defmt::write!(f, "virtio-pci: {}", defmt::Display2Format(e))
            }
            PlatformError::VectorRefused => {
                defmt::write!(f, "the device refused its MSI-X vector")
            }
        }
    }
}

impl From<AcpiError> for PlatformError {
    fn from(e: AcpiError) -> Self {
        PlatformError::Acpi(e)
    }
}

impl From<PciSetupError> for PlatformError {
    fn from(e: PciSetupError) -> Self {
        PlatformError::Pci(e)
    }
}

/// Physical memory below 4 GiB (identity-mapped by the boot tables) as
/// bytes: only for firmware data (start info, command line, ACPI
/// tables), which nothing writes after boot.
fn phys(address: u64, len: usize) -> Option<&'static [u8]> {
    let end = address.checked_add(len as u64)?;
    if address == 0 || end > 4 << 30 {
        return None;
    }
    // SAFETY: the range is mapped (the boot tables cover 4 GiB) and
    // holds firmware data that stays put and unwritten for the whole
    // run; it does not overlap this image or its DMA arena, which the
    // firmware's memory map reserves for the kernel it loaded.
    Some(unsafe { core::slice::from_raw_parts(address as usize as *const u8, len) })
}

/// A whole ACPI table with `signature` at `address`, checked.
fn table(address: u64, signature: acpi::Signature) -> Result<&'static [u8], AcpiError> {
    let head = phys(address, acpi::HEADER_LEN).ok_or(AcpiError::Missing(signature))?;
    let (_, len) = acpi::header(head).ok_or(AcpiError::Truncated(signature))?;
    let bytes = phys(address, len).ok_or(AcpiError::Truncated(signature))?;
    acpi::validate(bytes, signature)?;
    Ok(bytes)
}

/// Find the RSDP in the BIOS area, as the PVH loader does.
fn scan_for_rsdp() -> Option<u64> {
    (0xe_0000u64..0x10_0000)
        .step_by(16)
        .find(|&a| phys(a, 20).is_some_and(|b| acpi::parse_rsdp(b).is_ok()))
}

/// The kernel command line (QEMU's `-append`) at `address`: up to its
/// NUL, at most 4 KiB, empty if it is not UTF-8.
fn command_line(address: u64) -> &'static str {
    let bytes = phys(address, 4096)
        .and_then(|b| b.iter().position(|&c| c == 0))
        .and_then(|len| phys(address, len))
        .unwrap_or(&[]);
    core::str::from_utf8(bytes).unwrap_or("")
}

/// What this guest takes from the ACPI tables and the start info.
struct Firmware {
    fadt: Fadt,
    ecam: Ecam,
    s5_sleep_type: Option<u8>,
    boot_args: &'static str,
}

fn read_firmware(start_info: u32) -> Result<Firmware, PlatformError> {
    let info = phys(u64::from(start_info), START_INFO_LEN)
        .and_then(StartInfo::parse)
        .ok_or(PlatformError::NoStartInfo)?;
    let rsdp = match info.rsdp {
        0 => scan_for_rsdp().ok_or(PlatformError::NoRsdp)?,
        a => a,
    };
    let root = acpi::parse_rsdp(phys(rsdp, acpi::RSDP_LEN).ok_or(PlatformError::NoRsdp)?)?;
    let root_table = table(
        root.address(),
        match root {
            Root::Rsdt(_) => *b"RSDT",
            Root::Xsdt(_) => *b"XSDT",
        },
    )?;
    let mut fadt = Err(AcpiError::Missing(*b"FACP"));
    let mut ecam = None;
    for address in acpi::root_entries(root_table, root) {
        let Some((signature, _)) = phys(address, acpi::HEADER_LEN).and_then(acpi::header) else {
            continue;
        };
        match &signature {
            b"FACP" => fadt = acpi::parse_fadt(table(address, signature)?),
            b"MCFG" => ecam = acpi::parse_mcfg(table(address, signature)?),
            _ => {}
        }
    }
    let fadt = fadt?;
    let ecam = ecam.ok_or(AcpiError::Missing(*b"MCFG"))?;
    let s5_sleep_type = table(fadt.dsdt, *b"DSDT")
        .ok()
        .and_then(acpi::find_s5_sleep_type);
    let boot_args = match info.cmdline {
        0 => "",
        address => command_line(address),
    };
    Ok(Firmware {
        fadt,
        ecam,
        s5_sleep_type,
        boot_args,
    })
}

extern "C" {
    /// The DMA arena's first byte (page-aligned), from `q35.ld`.
    static __dma_start: u8;
    /// The first byte after it.
    static __dma_end: u8;
}

/// The DMA arena: the `.dma` section of `q35.ld`.
static DMA: DmaArena = DmaArena::new();

/// The q35 machine, brought up: the guest's [`Platform`].
pub struct Q35 {
    boot_args: &'static str,
}

impl Q35 {
    /// Bring the machine up from the PVH entry (`start_info`: the
    /// physical address of `hvm_start_info`): IDT, ACPI tables, power,
    /// interrupt controllers, clocks, the RTC, the DMA arena, PCI.
    /// Interrupts stay disabled except while waiting.
    pub fn init(start_info: u32) -> Result<(Q35, Pci), PlatformError> {
        interrupts::init();
        let firmware = read_firmware(start_info)?;
        let fadt = firmware.fadt;
        // QEMU's \_S5 is 0; use that if the DSDT's cannot be read.
        power::init(
            fadt.pm1a_control,
            firmware.s5_sleep_type.unwrap_or(0),
            fadt.reset,
        );
        apic::init();
        if fadt.pm_timer == 0 {
            return Err(PlatformError::NoPmTimer);
        }
        clock::calibrate(fadt.pm_timer, fadt.pm_timer_32bit);
        match cmos::read_registers(fadt.century).unix_seconds() {
            Some(seconds) => clock::set_rtc_at_boot(seconds),
            None => defmt::warn!("the RTC holds no valid date; the clock starts at 0"),
        }
        let (tsc_hz, apic_hz) = clock::rates();
        defmt::info!(
            "ACPI: PM1a control {=u16:#x}, S5 type {=?}, PM timer {=u16:#x}, reset {}, ECAM {=u64:#x} buses {=u8}-{=u8}",
            fadt.pm1a_control,
            firmware.s5_sleep_type,
            fadt.pm_timer,
            fadt.reset,
            firmware.ecam.base,
            firmware.ecam.first_bus,
            firmware.ecam.last_bus
        );
        defmt::info!(
            "clocks: TSC {=u64} kHz, APIC timer {=u64} kHz; RTC {=i64} s since the epoch",
            tsc_hz / 1000,
            apic_hz / 1000,
            clock::hardware_ns() / 1_000_000_000
        );
        let start = core::ptr::addr_of!(__dma_start) as usize;
        let end = core::ptr::addr_of!(__dma_end) as usize;
        // SAFETY: `.dma` (q35.ld) is a page-aligned NOLOAD section of the
        // image, so RAM the loader reserved for it, that no Rust object
        // uses; the boot page tables map it one to one.
        unsafe { DMA.init(start, end.saturating_sub(start)) };
        let pci = Pci::new(firmware.ecam, apic::id())?;
        Ok((
            Q35 {
                boot_args: firmware.boot_args,
            },
            pci,
        ))
    }
}

impl Platform for Q35 {
    fn uptime_us(&self) -> u64 {
        uptime_us()
    }

    /// The CMOS RTC's time at boot plus the uptime (QEMU seeds the RTC
    /// from the host's clock, `-rtc base=utc` by default, to the second).
    fn hardware_clock_ns(&self) -> i64 {
        clock::hardware_ns()
    }

    /// `sti; hlt; cli`, with the local APIC timer armed for the deadline:
    /// MSI-X messages are edge-triggered and wait in the local APIC while
    /// interrupts are off, so one raised since the serve loop looked for
    /// work ends the `hlt` at once (the `sti` shadow covers the `hlt`);
    /// the handlers only count and acknowledge.
    fn wait_for_interrupt(&self, deadline_us: Option<u64>) {
        if let Some(deadline) = deadline_us {
            let now = uptime_us();
            if deadline <= now {
                return;
            }
            let ns = (deadline - now).saturating_mul(1000);
            apic::arm_timer(clock::apic_ticks(ns));
        }
        // SAFETY: `sti; hlt; cli`: the one window in which interrupts are
        // enabled. `sti` takes effect after the next instruction, so an
        // interrupt pending now wakes `hlt` instead of being taken before
        // it; the handlers touch nothing but their counters and the
        // local APIC's EOI.
        unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
        if deadline_us.is_some() {
            apic::stop_timer();
        }
    }

    fn shutdown(&self, mode: ShutdownMode) -> ! {
        match mode {
            // ACPI soft-off: QEMU exits with status 0.
            ShutdownMode::Powerdown => power::power_off(),
            // The FADT's reset register (QEMU exits under -no-reboot).
            ShutdownMode::Reboot => power::reset(),
            // The CPU stops with interrupts off; the machine stays on.
            ShutdownMode::Halt => power::halt(),
        }
    }

    fn fail(&self, code: u16) -> ! {
        fail(code)
    }

    fn os_info(&self) -> OsInfo<'_> {
        agent_baremetal::image_os_info!(bin: "q35-guest", machine: "x86_64", board: "q35")
    }

    fn boot_args(&self) -> &str {
        self.boot_args
    }
}

// SAFETY: the boot page tables map the first 4 GiB one to one and
// `map_mmio` maps device memory above them one to one (paging.rs); `DMA`
// is initialised in `Q35::init` with the `.dma` section, before any
// console is set up, and every buffer the driver shares lives in it.
unsafe impl IdentityMapped for Q35 {
    fn arena() -> &'static DmaArena {
        &DMA
    }

    /// Device memory above 4 GiB (64-bit BARs) is mapped on demand; the
    /// driver would write through the pointer returned, so a mapping
    /// that cannot be made ends the run.
    fn map_mmio(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        if paging::map_device(paddr, size as u64).is_err() {
            defmt::error!(
                "no page tables left to map device memory at {=u64:#x}",
                paddr
            );
            fail(EXIT_UNMAPPED);
        }
        match NonNull::new(paddr as usize as *mut u8) {
            Some(ptr) => ptr,
            None => fail(EXIT_UNMAPPED),
        }
    }
}

/// DMA for the virtio queues and buffers.
pub type Dma = IdentityHal<Q35>;
