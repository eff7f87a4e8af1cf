//! The `virt` machine's devices this guest touches, and the only `unsafe`
//! of the binary: boot code, MMIO registers at the addresses of QEMU's
//! `virt` memory map, and the DMA HAL.
//!
//! | device | address | use |
//! |---|---|---|
//! | sifive_test | 0x0010_0000 | power off (0x5555), fail (code<<16 \| 0x3333), reset (0x7777) |
//! | goldfish RTC | 0x0010_1000 | wall-clock time, ns since the epoch |
//! | ns16550 UART | 0x1000_0000 | diagnostics log |
//! | virtio-mmio | 0x1000_1000 + i·0x1000, i = 0..7 | the console |
//!
//! RAM is identity-mapped (S-mode, paging off), so physical and virtual
//! addresses are the same and DMA needs no translation.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

const TEST_DEVICE: usize = 0x10_0000;
const RTC: usize = 0x10_1000;
const UART: usize = 0x1000_0000;
const VIRTIO_MMIO: usize = 0x1000_1000;
/// virtio-mmio slots on `virt`.
pub const VIRTIO_SLOTS: usize = 8;
const VIRTIO_SLOT_LEN: usize = 0x1000;
/// Bytes the DMA arena may grow to (it starts after the stack).
const DMA_ARENA_LEN: usize = 4 << 20;
/// `time` CSR ticks per second on `virt`.
pub const TIMER_HZ: u64 = 10_000_000;

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

/// Power the machine off: QEMU exits with status 0.
pub fn power_off() -> ! {
    mmio_write32(TEST_DEVICE, 0x5555);
    loop {
        core::hint::spin_loop();
    }
}

/// End the run as a failure: QEMU exits with status `code`.
pub fn fail(code: u16) -> ! {
    mmio_write32(TEST_DEVICE, (u32::from(code) << 16) | 0x3333);
    loop {
        core::hint::spin_loop();
    }
}

/// Reset the machine (QEMU with `-no-reboot` exits with status 0).
pub fn reset() -> ! {
    mmio_write32(TEST_DEVICE, 0x7777);
    loop {
        core::hint::spin_loop();
    }
}

/// Wall-clock time from the goldfish RTC, ns since the epoch (QEMU seeds
/// it from the host's clock, `-rtc base=utc` by default).
pub fn rtc_now_ns() -> i64 {
    // Reading TIME_LOW latches TIME_HIGH.
    let low = mmio_read32(RTC);
    let high = mmio_read32(RTC + 4);
    i64::try_from((u64::from(high) << 32) | u64::from(low)).unwrap_or(i64::MAX)
}

/// The `time` CSR: ticks of [`TIMER_HZ`] since reset.
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reading the `time` CSR has no side effects; OpenSBI enables
    // it for S-mode (mcounteren.TM).
    unsafe { core::arch::asm!("rdtime {}", out(reg) t, options(nomem, nostack)) };
    t
}

/// The ns16550 UART OpenSBI left initialised: a `fmt::Write` log.
pub struct Uart;

impl Uart {
    fn put(&mut self, byte: u8) {
        // SAFETY: the UART's line status (offset 5) and transmit (offset 0)
        // registers are byte-wide MMIO at these identity-mapped addresses.
        unsafe {
            while core::ptr::read_volatile((UART + 5) as *const u8) & 0x20 == 0 {
                core::hint::spin_loop();
            }
            core::ptr::write_volatile(UART as *mut u8, byte);
        }
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put(b'\r');
            }
            self.put(byte);
        }
        Ok(())
    }
}

/// The transport of virtio-mmio slot `index`, if a device sits there.
pub fn virtio_slot(index: usize) -> Option<MmioTransport<'static>> {
    if index >= VIRTIO_SLOTS {
        return None;
    }
    let header = NonNull::new((VIRTIO_MMIO + index * VIRTIO_SLOT_LEN) as *mut VirtIOHeader)?;
    // SAFETY: `virt` maps a virtio-mmio register block of 0x1000 bytes at
    // each slot address for the whole run; this guest creates at most one
    // transport per slot at a time (the probe drops failed ones).
    unsafe { MmioTransport::new(header, VIRTIO_SLOT_LEN) }.ok()
}

extern "C" {
    /// First byte after the stack (page-aligned), from `virt.ld`.
    static __dma_start: u8;
}

/// Bytes handed out by [`BumpHal`] so far.
static DMA_USED: AtomicUsize = AtomicUsize::new(0);

/// DMA from a bump allocator over the RAM after the image; never freed
/// (the guest allocates once, at start-up). Identity-mapped: physical
/// address = pointer.
pub struct BumpHal;

impl BumpHal {
    /// Bytes of DMA memory in use.
    pub fn used() -> usize {
        DMA_USED.load(Ordering::Relaxed)
    }
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned RAM
// (a region no Rust object uses, identity-mapped so the device sees the
// same address); `share` returns a buffer's own address, valid for the
// device for as long as the caller keeps the buffer alive.
unsafe impl Hal for BumpHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let len = pages.saturating_mul(PAGE_SIZE);
        let offset = DMA_USED.fetch_add(len, Ordering::Relaxed);
        if offset.saturating_add(len) > DMA_ARENA_LEN {
            return (0, NonNull::dangling());
        }
        let base = core::ptr::addr_of!(__dma_start) as usize;
        let ptr = (base + offset) as *mut u8;
        // SAFETY: [ptr, ptr + len) lies in the arena after the image, inside
        // the guest's RAM (128 MiB from 0x80000000, the arena needs a few
        // MiB), page-aligned because `__dma_start` is and offsets are whole
        // pages; nothing else refers to it.
        unsafe { ptr.write_bytes(0, len) };
        match NonNull::new(ptr) {
            Some(vaddr) => (ptr as PhysAddr, vaddr),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
