//! DMA memory for a machine whose memory is identity-mapped (virtual
//! address = physical address): a bump allocator over RAM the program
//! sets aside ([`DmaArena`]), and `virtio_drivers`' [`Hal`] on top of it
//! ([`IdentityHal`]).
//!
//! The driver allocates only while it sets up a console and opens a
//! port, and frees everything when the console is reset or dropped; the
//! arena then starts again from its beginning, so resets do not use it
//! up.
//!
//! ```
//! use agent_baremetal::guest::dma::{DmaArena, IdentityHal, IdentityMapped};
//!
//! static ARENA: DmaArena = DmaArena::new();
//!
//! struct Machine;
//! // SAFETY: (on a real machine) memory is identity-mapped and the arena
//! // holds RAM nothing else uses.
//! unsafe impl IdentityMapped for Machine {
//!     fn arena() -> &'static DmaArena {
//!         &ARENA
//!     }
//! }
//! type Hal = IdentityHal<Machine>;
//! # let _ = core::marker::PhantomData::<Hal>;
//! ```

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// A bump allocator of whole pages over one region of RAM, for one CPU.
/// Allocations are zeroed; when every page handed out has been freed,
/// the next allocation starts at the beginning again.
#[derive(Debug, Default)]
pub struct DmaArena {
    base: AtomicUsize,
    len: AtomicUsize,
    /// Bytes handed out since the arena was last empty.
    used: AtomicUsize,
    /// Pages handed out and not freed.
    live_pages: AtomicUsize,
    /// The most bytes ever in use at once.
    peak: AtomicUsize,
}

impl DmaArena {
    /// An arena without memory (every allocation fails until
    /// [`init`](Self::init)).
    pub const fn new() -> Self {
        DmaArena {
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            live_pages: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Hand out `[base, base + len)`.
    ///
    /// # Safety
    ///
    /// The range is RAM that nothing else uses for the rest of the run,
    /// page-aligned, and identity-mapped (a device reaches it at the same
    /// addresses). Call it once, before the first allocation.
    pub unsafe fn init(&self, base: usize, len: usize) {
        self.base.store(base, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
    }

    /// `pages` zeroed pages, or `None` if the arena has no room.
    pub fn alloc(&self, pages: usize) -> Option<NonNull<u8>> {
        let len = pages.checked_mul(PAGE_SIZE)?;
        let offset = self.used.load(Ordering::Relaxed);
        let end = offset.checked_add(len)?;
        if end > self.len.load(Ordering::Relaxed) {
            return None;
        }
        let ptr = NonNull::new(self.base.load(Ordering::Relaxed).checked_add(offset)? as *mut u8)?;
        self.used.store(end, Ordering::Relaxed);
        self.live_pages.fetch_add(pages, Ordering::Relaxed);
        self.peak.fetch_max(end, Ordering::Relaxed);
        // SAFETY: [ptr, ptr + len) lies inside the arena (checked above),
        // which `init`'s caller gave to this allocator alone, and no live
        // allocation covers it (allocations only grow `used`, which goes
        // back to 0 only when none is live).
        unsafe { ptr.as_ptr().write_bytes(0, len) };
        Some(ptr)
    }

    /// `pages` pages of an allocation are free again.
    pub fn free(&self, pages: usize) {
        let live = self
            .live_pages
            .load(Ordering::Relaxed)
            .saturating_sub(pages);
        self.live_pages.store(live, Ordering::Relaxed);
        if live == 0 {
            self.used.store(0, Ordering::Relaxed);
        }
    }

    /// Bytes handed out now.
    pub fn used(&self) -> usize {
        self.live_pages
            .load(Ordering::Relaxed)
            .saturating_mul(PAGE_SIZE)
    }

    /// The most bytes handed out at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// A machine with identity-mapped memory and a [`DmaArena`]: what
/// [`IdentityHal`] needs.
///
/// # Safety
///
/// Virtual addresses equal physical ones for the arena's memory and for
/// every buffer the driver shares with a device; [`arena`](Self::arena)
/// returns an arena [`init`](DmaArena::init)ialised with such memory;
/// [`map_mmio`](Self::map_mmio) returns a pointer through which the
/// device memory it names can be read and written for the rest of the
/// run.
pub unsafe trait IdentityMapped {
    /// The arena DMA memory comes from.
    fn arena() -> &'static DmaArena;

    /// Device memory (a PCI BAR region) at `paddr`, `size` bytes: make it
    /// reachable and return its address. The default: it already is, at
    /// the same address.
    fn map_mmio(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }
}

/// `virtio_drivers::Hal` for a machine `M` with identity-mapped memory:
/// DMA pages from `M`'s arena, buffers shared at their own addresses.
#[derive(Debug)]
pub struct IdentityHal<M>(PhantomData<M>);

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory from the arena,
// owned by the caller until `dma_dealloc`, which the device reaches at the
// same address (`IdentityMapped`'s contract); `share` returns a buffer's
// own address, which the device reaches too, valid for as long as the
// caller keeps the buffer alive; `mmio_phys_to_virt` is `M`'s mapping.
unsafe impl<M: IdentityMapped> Hal for IdentityHal<M> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match M::arena().alloc(pages) {
            Some(ptr) => (ptr.as_ptr() as PhysAddr, ptr),
            // virtio-drivers checks for 0 and fails with a DMA error.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        M::arena().free(pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        M::map_mmio(paddr, size)
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Pages([u8; 4 * PAGE_SIZE]);

    #[test]
    fn allocates_zeroed_pages_and_starts_over_when_all_are_free() {
        let mut memory = Box::new(Pages([0xa5; 4 * PAGE_SIZE]));
        let base = memory.0.as_mut_ptr() as usize;
        let arena = DmaArena::new();
        assert_eq!(arena.alloc(1), None, "no memory before init");
        // SAFETY: the box is page-aligned and outlives the arena's use.
        unsafe { arena.init(base, 4 * PAGE_SIZE) };
        let a = arena.alloc(1).unwrap();
        let b = arena.alloc(2).unwrap();
        assert_eq!(a.as_ptr() as usize, base);
        assert_eq!(b.as_ptr() as usize, base + PAGE_SIZE);
        assert_eq!(arena.alloc(2), None, "one page left");
        assert_eq!(arena.used(), 3 * PAGE_SIZE);
        assert!(memory.0[..3 * PAGE_SIZE].iter().all(|&x| x == 0));
        assert_eq!(memory.0[3 * PAGE_SIZE], 0xa5, "only what was handed out");
        arena.free(1);
        assert_eq!(arena.alloc(2), None, "a page still live: no reuse");
        arena.free(2);
        assert_eq!(arena.used(), 0);
        let c = arena.alloc(4).unwrap();
        assert_eq!(c.as_ptr() as usize, base, "empty again: from the start");
        assert_eq!(arena.peak(), 4 * PAGE_SIZE);
    }
}
