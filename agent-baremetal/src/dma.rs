//! Pages of DMA memory from a [`Hal`], split into fixed-size slots that
//! are lent to the device one at a time.

use core::marker::PhantomData;
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::tx::SlotMemory;

/// One page from [`Hal::dma_alloc`], returned on drop, seen as `SLOTS`
/// slots of `PAGE_SIZE / SLOTS` bytes.
pub(crate) struct DmaPage<H: Hal, const SLOTS: usize> {
    paddr: PhysAddr,
    vaddr: NonNull<u8>,
    _hal: PhantomData<H>,
}

impl<H: Hal, const SLOTS: usize> DmaPage<H, SLOTS> {
    /// Bytes per slot.
    pub(crate) const SLOT_LEN: usize = PAGE_SIZE / SLOTS;

    /// Allocate a page (zeroed by the HAL's contract). Its address stays
    /// the same however the owner moves.
    pub(crate) fn new(direction: BufferDirection) -> Result<Self, virtio_drivers::Error> {
        let (paddr, vaddr) = H::dma_alloc(1, direction);
        if paddr == 0 {
            return Err(virtio_drivers::Error::DmaError);
        }
        Ok(DmaPage {
            paddr,
            vaddr,
            _hal: PhantomData,
        })
    }

    /// Slot `index` (which must be below `SLOTS`).
    ///
    /// # Safety
    ///
    /// The slot must not be lent to the device: either never added to a
    /// queue, or popped from it since.
    pub(crate) unsafe fn slot(&mut self, index: usize) -> &mut [u8] {
        assert!(index < SLOTS, "DMA slot out of range");
        // SAFETY: `vaddr` is a page of `PAGE_SIZE` bytes that `Hal::dma_alloc`
        // gave this struct alone and that lives until drop; slot `index` lies
        // within it. The caller promises the device is not using this slot,
        // and `&mut self` excludes any other reference to it from the driver.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.vaddr.as_ptr().add(index * Self::SLOT_LEN),
                Self::SLOT_LEN,
            )
        }
    }
}

// SAFETY: `slot` returns slot `index`'s own `SLOT_LEN` bytes of the page,
// the same bytes every time, disjoint from the other slots'.
unsafe impl<H: Hal, const SLOTS: usize> SlotMemory for DmaPage<H, SLOTS> {
    const SLOT_LEN: usize = PAGE_SIZE / SLOTS;

    unsafe fn slot(&mut self, index: usize) -> &mut [u8] {
        // SAFETY: the caller promises the slot is not lent.
        unsafe { DmaPage::slot(self, index) }
    }
}

impl<H: Hal, const SLOTS: usize> Drop for DmaPage<H, SLOTS> {
    fn drop(&mut self) {
        // SAFETY: the page came from `H::dma_alloc(1, ..)` with these
        // addresses, and the owner (the console) unsets its queues before
        // dropping its pages, so the device no longer uses it.
        let _ = unsafe { H::dma_dealloc(self.paddr, self.vaddr, 1) };
    }
}
