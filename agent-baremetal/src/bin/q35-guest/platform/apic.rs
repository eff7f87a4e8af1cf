//! The interrupt controllers: the legacy 8259 pair (remapped and masked:
//! nothing here uses it) and the local APIC (its timer for time-outs, EOI
//! for the devices' MSI-X messages). The IOAPIC is left alone: the console
//! signals through MSI-X, straight to the local APIC.

use core::sync::atomic::{AtomicU64, Ordering};

use super::interrupts::{SPURIOUS_VECTOR, TIMER_VECTOR};
use super::io::outb;

/// `IA32_APIC_BASE`.
const APIC_BASE_MSR: u32 = 0x1b;
/// `IA32_APIC_BASE`: the APIC is enabled.
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

const ID: usize = 0x20;
const TPR: usize = 0x80;
const EOI: usize = 0xb0;
const SVR: usize = 0xf0;
const LVT_TIMER: usize = 0x320;
const LVT_LINT0: usize = 0x350;
const LVT_LINT1: usize = 0x360;
const LVT_ERROR: usize = 0x370;
const TIMER_INITIAL: usize = 0x380;
const TIMER_CURRENT: usize = 0x390;
const TIMER_DIVIDE: usize = 0x3e0;
/// LVT: masked.
const MASKED: u32 = 1 << 16;
/// SVR: APIC software-enabled.
const SVR_ENABLE: u32 = 1 << 8;

/// The local APIC's physical (= virtual) base address, set by [`init`].
static BASE: AtomicU64 = AtomicU64::new(0);

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an architectural MSR that every x86_64 CPU has.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: only used for IA32_APIC_BASE, to set its enable bit at the
    // address it already has.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags));
    }
}

fn reg(offset: usize) -> *mut u32 {
    (BASE.load(Ordering::Relaxed) as usize + offset) as *mut u32
}

fn read(offset: usize) -> u32 {
    // SAFETY: a local APIC register (`init` has set BASE; the APIC page is
    // identity-mapped uncached below 4 GiB); reads have no side effects.
    unsafe { reg(offset).read_volatile() }
}

fn write(offset: usize, value: u32) {
    // SAFETY: a local APIC register, as for `read`; the writes here only
    // configure interrupt delivery to this CPU.
    unsafe { reg(offset).write_volatile(value) }
}

/// Remap the 8259s to vectors 0x20-0x2F (away from the exceptions) and
/// mask them; stop the PIT's periodic tick (SeaBIOS runs it at 18.2 Hz);
/// enable the local APIC with every local interrupt masked except its
/// timer (stopped).
pub fn init() {
    // SAFETY: the 8259 command/data ports and the PIT's; programming them
    // touches no memory.
    unsafe {
        outb(0x20, 0x11); // ICW1: edge, cascade, ICW4 follows
        outb(0xa0, 0x11);
        outb(0x21, 0x20); // ICW2: vector bases
        outb(0xa1, 0x28);
        outb(0x21, 0x04); // ICW3: slave on IRQ2
        outb(0xa1, 0x02);
        outb(0x21, 0x01); // ICW4: 8086 mode
        outb(0xa1, 0x01);
        outb(0x21, 0xff); // OCW1: all masked
        outb(0xa1, 0xff);
        // PIT channel 0, mode 0 (one shot), count 1: one last edge, then
        // no more timer events in QEMU.
        outb(0x43, 0x30);
        outb(0x40, 0x01);
        outb(0x40, 0x00);
    }
    let msr = rdmsr(APIC_BASE_MSR);
    if msr & APIC_GLOBAL_ENABLE == 0 {
        wrmsr(APIC_BASE_MSR, msr | APIC_GLOBAL_ENABLE);
    }
    BASE.store(msr & 0x000f_ffff_ffff_f000, Ordering::Relaxed);
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(TPR, 0);
    write(LVT_LINT0, MASKED);
    write(LVT_LINT1, MASKED);
    write(LVT_ERROR, MASKED);
    write(TIMER_DIVIDE, 0b1011); // divide by 1
    write(TIMER_INITIAL, 0);
    write(LVT_TIMER, u32::from(TIMER_VECTOR)); // one-shot
    eoi();
}

/// This CPU's APIC id (the destination of MSI messages).
pub fn id() -> u8 {
    (read(ID) >> 24) as u8
}

/// Signal the end of the interrupt being handled.
pub fn eoi() {
    write(EOI, 0);
}

/// Start the one-shot timer: an interrupt after `ticks` timer ticks.
pub fn arm_timer(ticks: u32) {
    write(TIMER_INITIAL, ticks.max(1));
}

/// Stop the timer.
pub fn stop_timer() {
    write(TIMER_INITIAL, 0);
}

/// Start the timer counting down from `u32::MAX` with its interrupt
/// masked (for calibration).
pub fn start_free_running() {
    write(LVT_TIMER, MASKED | u32::from(TIMER_VECTOR));
    write(TIMER_INITIAL, u32::MAX);
}

/// Stop a free-running count and unmask the timer's interrupt again.
pub fn end_free_running() {
    write(TIMER_INITIAL, 0);
    write(LVT_TIMER, u32::from(TIMER_VECTOR));
}

/// The timer's current count.
pub fn timer_count() -> u32 {
    read(TIMER_CURRENT)
}
