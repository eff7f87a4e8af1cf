//! The `virt` machine's devices this guest touches, and the only `unsafe`
//! of the binary: boot code, CSRs and SBI calls, MMIO registers at the
//! addresses of QEMU's `virt` memory map, and the DMA HAL.
//!
//! | device | address | use |
//! |---|---|---|
//! | sifive_test | 0x0010_0000 | power off (0x5555), fail (code<<16 \| 0x3333), reset (0x7777) |
//! | goldfish RTC | 0x0010_1000 | wall-clock time, ns since the epoch |
//! | PLIC | 0x0c00_0000 | the virtio-mmio interrupts (sources 1–8) to hart 0's S-mode context |
//! | ns16550 UART | 0x1000_0000 | the log (defmt frames) |
//! | virtio-mmio | 0x1000_1000 + i·0x1000, i = 0..7 | the console |
//!
//! RAM is identity-mapped (S-mode, paging off), so physical and virtual
//! addresses are the same and DMA needs no translation.
//!
//! Interrupts are never taken: `sstatus.SIE` stays off, and `wfi` wakes
//! on any interrupt enabled in `sie` (the external one, for the PLIC, and
//! the timer, for deadlines) whether or not it is taken. So there is no
//! trap vector; before it sleeps, the guest claims and completes the
//! PLIC's interrupt itself, and if there was one it does not sleep: the
//! caller looks for work first.

use core::cell::Cell;
use core::ptr::NonNull;

use agent_baremetal::guest::dma::{DmaArena, IdentityHal, IdentityMapped};
use agent_baremetal::guest::uart::{Ns16550, Registers};
use agent_baremetal::guest::{OsInfo, Platform, ShutdownMode};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

const TEST_DEVICE: usize = 0x10_0000;
const RTC: usize = 0x10_1000;
const PLIC: usize = 0x0c00_0000;
const UART: usize = 0x1000_0000;
const VIRTIO_MMIO: usize = 0x1000_1000;
/// virtio-mmio slots on `virt`.
pub const VIRTIO_SLOTS: usize = 8;
const VIRTIO_SLOT_LEN: usize = 0x1000;
/// PLIC source of virtio-mmio slot 0 (slot i is source 1 + i).
const VIRTIO_IRQ_BASE: usize = 1;
/// The PLIC context of hart 0 in S-mode (context 0 is its M-mode).
const PLIC_CONTEXT: usize = 1;
/// Bytes the DMA arena may grow to (it starts after the stack).
const DMA_ARENA_LEN: usize = 4 << 20;
/// `time` CSR ticks per second on `virt`.
pub const TIMER_HZ: u64 = 10_000_000;
/// `sie` bits: supervisor timer and external interrupts.
const SIE_STIE: usize = 1 << 5;
const SIE_SEIE: usize = 1 << 9;
/// SBI Timer extension ("TIME").
const SBI_EXT_TIME: usize = 0x5449_4D45;

core::arch::global_asm!(
    r#"
    .section .text.entry, "ax"
    .globl _start
_start:
    la sp, __stack_top
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  call guest_main
3:  wfi
    j 3b
"#
);

/// Write a 32-bit device register.
fn mmio_write32(addr: usize, value: u32) {
    // SAFETY: callers pass register addresses of `virt`'s devices listed
    // above; they are identity-mapped MMIO, 4-byte aligned, with no Rust
    // object behind them.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

/// Read a 32-bit device register.
fn mmio_read32(addr: usize) -> u32 {
    // SAFETY: as for `mmio_write32`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// The `time` CSR: ticks of [`TIMER_HZ`] since reset.
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reading the `time` CSR has no side effects; OpenSBI enables
    // it for S-mode (mcounteren.TM).
    unsafe { core::arch::asm!("rdtime {}", out(reg) t, options(nomem, nostack)) };
    t
}

/// Microseconds since reset.
pub fn uptime_us() -> u64 {
    ticks() / (TIMER_HZ / 1_000_000)
}

/// Program the supervisor timer through SBI (`sbi_set_timer`): the timer
/// interrupt becomes pending at `ticks`, and any pending one is cleared.
fn set_timer(ticks: u64) {
    // SAFETY: an SBI call (ecall to OpenSBI, which `-bios default` runs in
    // M-mode) with the Timer extension's function 0; it changes no memory
    // of ours and clobbers only a0/a1.
    unsafe {
        core::arch::asm!(
            "ecall",
            inlateout("a0") ticks as usize => _,
            lateout("a1") _,
            in("a6") 0usize,
            in("a7") SBI_EXT_TIME,
            options(nostack),
        );
    }
}

/// Enable the interrupts `wfi` waits for (never taken: `sstatus.SIE` is
/// left off).
fn enable_wakeups(mask: usize) {
    // SAFETY: setting bits of `sie` only decides which pending interrupts
    // end a `wfi`; with `sstatus.SIE` clear none is taken as a trap.
    unsafe { core::arch::asm!("csrs sie, {}", in(reg) mask, options(nomem, nostack)) };
}

/// Disable every interrupt wake-up.
fn disable_wakeups() {
    // SAFETY: clearing `sie` only stops interrupts from ending `wfi`.
    unsafe { core::arch::asm!("csrw sie, zero", options(nomem, nostack)) };
}

/// Wait for an enabled interrupt.
fn wfi() {
    // SAFETY: `wfi` only stalls the hart until an interrupt is pending
    // (OpenSBI leaves `mstatus.TW` clear, so S-mode may use it).
    unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
}

/// The UART's registers: bytes at consecutive MMIO addresses.
struct UartMmio;

impl Registers for UartMmio {
    fn read(&self, index: u8) -> u8 {
        // SAFETY: a byte register of the UART (identity-mapped MMIO at
        // `UART`, eight registers); reading the line status has no side
        // effects on memory.
        unsafe { core::ptr::read_volatile((UART + usize::from(index)) as *const u8) }
    }

    fn write(&self, index: u8, value: u8) {
        // SAFETY: as for `read`; writing the transmit register sends a
        // byte.
        unsafe { core::ptr::write_volatile((UART + usize::from(index)) as *mut u8, value) }
    }
}

/// Write the log's bytes to the UART OpenSBI left initialised.
pub fn uart_write(bytes: &[u8]) {
    Ns16550(UartMmio).write(bytes);
}

/// The boot arguments in the device tree OpenSBI passes at `dtb` (QEMU's
/// `-append`), or "".
fn boot_args(dtb: usize) -> &'static str {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return "";
    }
    // SAFETY: OpenSBI hands the next stage the address of the flattened
    // device tree QEMU put in RAM (8-byte aligned, at least its 40-byte
    // header long, never written afterwards); only its header is read
    // here.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let Some(size) = agent_baremetal::guest::fdt::total_size(header) else {
        return "";
    };
    // SAFETY: as above; the header says the tree is `size` bytes long.
    let tree = unsafe { core::slice::from_raw_parts(dtb as *const u8, size) };
    agent_baremetal::guest::fdt::chosen_bootargs(tree).unwrap_or("")
}

/// End the run as a failure: QEMU exits with status `code`.
pub fn fail(code: u16) -> ! {
    mmio_write32(TEST_DEVICE, (u32::from(code) << 16) | 0x3333);
    disable_wakeups();
    loop {
        wfi();
    }
}

/// The `virt` machine as the guest's [`Platform`].
pub struct Virt {
    boot_args: &'static str,
    /// Whether a timer deadline is programmed (to be cleared).
    timer_armed: Cell<bool>,
}

impl Virt {
    /// Take over the machine: hand the RAM after the stack to the DMA
    /// arena, route the virtio-mmio interrupts to this hart's S-mode
    /// context and let them (and the timer) end `wfi`.
    pub fn new(dtb: usize) -> Virt {
        // SAFETY: `__dma_start` (virt.ld) is the page-aligned end of the
        // image and its stack; the `DMA_ARENA_LEN` bytes after it are RAM
        // (128 MiB from 0x8000_0000, the image takes well under 1 MiB)
        // that nothing else uses, identity-mapped (paging is off).
        unsafe { DMA.init(core::ptr::addr_of!(__dma_start) as usize, DMA_ARENA_LEN) };
        for slot in 0..VIRTIO_SLOTS {
            let source = VIRTIO_IRQ_BASE + slot;
            mmio_write32(PLIC + 4 * source, 1);
        }
        let enable = PLIC + 0x2000 + 0x80 * PLIC_CONTEXT;
        let mask = ((1u32 << VIRTIO_SLOTS) - 1) << VIRTIO_IRQ_BASE;
        mmio_write32(enable, mmio_read32(enable) | mask);
        mmio_write32(PLIC + 0x20_0000 + 0x1000 * PLIC_CONTEXT, 0);
        set_timer(u64::MAX);
        enable_wakeups(SIE_SEIE | SIE_STIE);
        Virt {
            boot_args: boot_args(dtb),
            timer_armed: Cell::new(false),
        }
    }

    /// The PLIC's claim/complete register for this hart's S-mode.
    const CLAIM: usize = PLIC + 0x20_0004 + 0x1000 * PLIC_CONTEXT;
}

impl Platform for Virt {
    fn uptime_us(&self) -> u64 {
        uptime_us()
    }

    /// The goldfish RTC (QEMU seeds it from the host's clock, `-rtc
    /// base=utc` by default).
    fn hardware_clock_ns(&self) -> i64 {
        // Reading TIME_LOW latches TIME_HIGH.
        let low = mmio_read32(RTC);
        let high = mmio_read32(RTC + 4);
        i64::try_from((u64::from(high) << 32) | u64::from(low)).unwrap_or(i64::MAX)
    }

    fn wait_for_interrupt(&self, deadline_us: Option<u64>) {
        // An interrupt pending now was raised after the caller last
        // acknowledged the device, maybe after it last looked for work:
        // claim it, complete it (the PLIC forwards a source's next
        // interrupt only after completion) and return at once, so the
        // caller looks again. Sleeping after the claim would lose it:
        // QEMU 7.2's PLIC sets a source pending only when the device
        // raises its line, not again at completion while the line is
        // still high, and the device raises it no more until the guest
        // acts (seen as a guest asleep in `wfi` with input waiting).
        let irq = mmio_read32(Self::CLAIM);
        if irq != 0 {
            mmio_write32(Self::CLAIM, irq);
            return;
        }
        match deadline_us {
            Some(deadline) => {
                if uptime_us() >= deadline {
                    return;
                }
                set_timer(deadline.saturating_mul(TIMER_HZ / 1_000_000));
                self.timer_armed.set(true);
            }
            None if self.timer_armed.get() => {
                set_timer(u64::MAX);
                self.timer_armed.set(false);
            }
            None => {}
        }
        wfi();
    }

    fn shutdown(&self, mode: ShutdownMode) -> ! {
        match mode {
            // QEMU exits with status 0.
            ShutdownMode::Powerdown => mmio_write32(TEST_DEVICE, 0x5555),
            // QEMU resets the machine (or exits under -no-reboot).
            ShutdownMode::Reboot => mmio_write32(TEST_DEVICE, 0x7777),
            ShutdownMode::Halt => {}
        }
        // Halt (and the moment before a power-off takes effect): the hart
        // stops with nothing to wake it.
        disable_wakeups();
        loop {
            wfi();
        }
    }

    fn fail(&self, code: u16) -> ! {
        fail(code)
    }

    fn os_info(&self) -> OsInfo<'_> {
        agent_baremetal::image_os_info!(bin: "virt-guest", machine: "riscv64", board: "virt")
    }

    fn boot_args(&self) -> &str {
        self.boot_args
    }
}

/// A virtio-mmio slot, as the log names it.
#[derive(Clone, Copy, Debug)]
pub struct Slot(pub usize);

impl defmt::Format for Slot {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "virtio-mmio {=usize}", self.0);
    }
}

/// The transport of virtio-mmio slot `index`, if a device sits there.
pub fn virtio_slot(index: usize) -> Option<(Slot, MmioTransport<'static>)> {
    if index >= VIRTIO_SLOTS {
        return None;
    }
    let header = NonNull::new((VIRTIO_MMIO + index * VIRTIO_SLOT_LEN) as *mut VirtIOHeader)?;
    // SAFETY: `virt` maps a virtio-mmio register block of 0x1000 bytes at
    // each slot address for the whole run; this guest creates at most one
    // transport per slot at a time (the probe drops failed ones).
    let transport = unsafe { MmioTransport::new(header, VIRTIO_SLOT_LEN) }.ok()?;
    Some((Slot(index), transport))
}

extern "C" {
    /// First byte after the stack (page-aligned), from `virt.ld`.
    static __dma_start: u8;
}

/// The DMA arena: the RAM after the stack.
static DMA: DmaArena = DmaArena::new();

// SAFETY: paging is off (S-mode, `satp` = 0): every address is physical;
// `DMA` is initialised in `Virt::new` with RAM nothing else uses, before
// any console is set up; virtio-mmio registers are at their physical
// addresses (the default `map_mmio`).
unsafe impl IdentityMapped for Virt {
    fn arena() -> &'static DmaArena {
        &DMA
    }
}

/// DMA for the virtio queues and buffers.
pub type Dma = IdentityHal<Virt>;
