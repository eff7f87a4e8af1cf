//! Ending the run: ACPI soft-off through the PM1a control block, reset
//! through the FADT's reset register (q35: 0xCF9), halt, and failure.

use core::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};

use super::io::{outb, outw};
use agent_baremetal::guest::acpi::{ResetRegister, Space};

/// ICH9's reset control register, the fallback when the FADT names none.
const RESET_CONTROL: u16 = 0xcf9;
/// Its "full reset" value (system reset, CPU reset).
const FULL_RESET: u8 = 0x06;
/// PM1 control: sleep enable.
const SLP_EN: u16 = 1 << 13;
/// QEMU's `isa-debug-exit` device, when a test adds it with
/// `iobase=0xf4`: a write makes QEMU exit with `(value << 1) | 1`.
const DEBUG_EXIT: u16 = 0xf4;

static PM1A_CONTROL: AtomicU16 = AtomicU16::new(0);
static SLP_TYP: AtomicU8 = AtomicU8::new(0);
/// The reset register: space (0 none, 1 I/O, 2 memory), address, value.
static RESET_SPACE: AtomicU8 = AtomicU8::new(0);
static RESET_ADDRESS: AtomicU64 = AtomicU64::new(0);
static RESET_VALUE: AtomicU8 = AtomicU8::new(0);

/// Remember how to power off (the PM1a control port and the sleep type
/// of S5) and reset.
pub fn init(pm1a_control: u16, s5_sleep_type: u8, reset: Option<ResetRegister>) {
    PM1A_CONTROL.store(pm1a_control, Ordering::Relaxed);
    SLP_TYP.store(s5_sleep_type & 7, Ordering::Relaxed);
    if let Some(r) = reset {
        RESET_SPACE.store(if r.space == Space::Io { 1 } else { 2 }, Ordering::Relaxed);
        RESET_ADDRESS.store(r.address, Ordering::Relaxed);
        RESET_VALUE.store(r.value, Ordering::Relaxed);
    }
}

/// Stop this CPU for good: interrupts off, `hlt`.
pub fn halt() -> ! {
    loop {
        // SAFETY: `cli; hlt` only stops the CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// ACPI soft-off (S5): QEMU exits with status 0.
pub fn power_off() -> ! {
    let port = PM1A_CONTROL.load(Ordering::Relaxed);
    if port != 0 {
        let value = (u16::from(SLP_TYP.load(Ordering::Relaxed)) << 10) | SLP_EN;
        // SAFETY: the PM1a control block the FADT names; entering S5 turns
        // the machine off and touches no memory.
        unsafe { outw(port, value) };
    }
    halt()
}

/// Reset the machine (QEMU with `-no-reboot` exits with status 0).
pub fn reset() -> ! {
    let address = RESET_ADDRESS.load(Ordering::Relaxed);
    let value = RESET_VALUE.load(Ordering::Relaxed);
    match RESET_SPACE.load(Ordering::Relaxed) {
        // SAFETY: the FADT's reset register, an I/O port; writing its reset
        // value resets the machine.
        1 => unsafe { outb(address as u16, value) },
        // SAFETY: the FADT's reset register in memory (below 4 GiB it is
        // identity-mapped); writing its reset value resets the machine.
        2 if address < (4 << 30) => unsafe { (address as usize as *mut u8).write_volatile(value) },
        _ => {}
    }
    // SAFETY: ICH9's reset control register; a full reset touches no memory.
    unsafe { outb(RESET_CONTROL, FULL_RESET) };
    halt()
}

/// End a failed run: QEMU's `isa-debug-exit` device (if a test added it)
/// exits with status `(code << 1) | 1` (codes up to 127); without it,
/// the CPU halts.
pub fn fail(code: u16) -> ! {
    // SAFETY: port 0xF4 is free on q35; a write there is either QEMU's
    // debug-exit device or ignored.
    unsafe { outb(DEBUG_EXIT, u8::try_from(code).unwrap_or(u8::MAX)) };
    halt()
}
