//! A virtio PCI transport whose queues signal through MSI-X.
//!
//! virtio-drivers' `PciTransport` leaves every queue's MSI-X vector at
//! "none", so with MSI-X enabled the device would never interrupt. This
//! wrapper writes the vector into the common configuration structure's
//! `queue_msix_vector` while each queue is set up, before the transport
//! enables it (virtio 1.2 §4.1.4.3.2: the driver configures a queue's
//! fields before `queue_enable`), leaves the INTx-only ISR status alone,
//! and delegates everything else.

use core::ptr::NonNull;

use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// `virtio_pci_common_cfg.msix_config`.
const MSIX_CONFIG: usize = 16;
/// `virtio_pci_common_cfg.queue_select`.
const QUEUE_SELECT: usize = 22;
/// `virtio_pci_common_cfg.queue_msix_vector`.
const QUEUE_MSIX_VECTOR: usize = 26;
/// "No vector", what the device reads back when it refuses one.
const NO_VECTOR: u16 = 0xffff;

/// `PciTransport` plus MSI-X vector assignment.
pub struct MsixTransport {
    inner: PciTransport,
    common: NonNull<u8>,
    /// The MSI-X table entry every queue uses.
    entry: u16,
}

/// The device refused the MSI-X table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorRefused;

impl MsixTransport {
    /// Wrap `inner`, whose common configuration structure is at
    /// `common_cfg` (identity-mapped), signalling every queue through
    /// MSI-X table entry `entry`. Checks that the device accepts the
    /// entry (as the configuration-change vector, which the device reset
    /// at the start of initialisation clears again).
    ///
    /// # Safety
    ///
    /// `common_cfg` must be the address of `inner`'s common configuration
    /// structure, mapped for the transport's lifetime.
    pub unsafe fn new(
        inner: PciTransport,
        common_cfg: u64,
        entry: u16,
    ) -> Result<Self, VectorRefused> {
        let common = NonNull::new(common_cfg as usize as *mut u8).ok_or(VectorRefused)?;
        let transport = MsixTransport {
            inner,
            common,
            entry,
        };
        transport.write16(MSIX_CONFIG, entry);
        if transport.read16(MSIX_CONFIG) != entry {
            return Err(VectorRefused);
        }
        transport.write16(MSIX_CONFIG, NO_VECTOR);
        Ok(transport)
    }

    fn write16(&self, offset: usize, value: u16) {
        // SAFETY: a 16-bit register of the common configuration structure
        // (the constructor's contract); the transport only touches it
        // from this single thread, never concurrently with this access.
        unsafe {
            self.common
                .as_ptr()
                .add(offset)
                .cast::<u16>()
                .write_volatile(value)
        }
    }

    fn read16(&self, offset: usize) -> u16 {
        // SAFETY: as for `write16`.
        unsafe {
            self.common
                .as_ptr()
                .add(offset)
                .cast::<u16>()
                .read_volatile()
        }
    }
}

impl Transport for MsixTransport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        self.inner.notify(queue)
    }

    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.write16(QUEUE_SELECT, queue);
        self.write16(QUEUE_MSIX_VECTOR, self.entry);
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }

    /// Nothing to read or acknowledge: the ISR status byte is for INTx
    /// (virtio 1.2 §4.1.4.5), and every queue's message here goes
    /// straight to the local APIC (Linux's MSI-X queue handler does not
    /// read it either). Reading it anyway would cost a trap to the device
    /// model on each look for work (under QEMU, a wait for its global
    /// lock, which its I/O thread holds while it delivers data). Says
    /// "look at the queues", which is what the driver does anyway.
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::QUEUE_INTERRUPT
    }

    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        self.inner.read_config_space(offset)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        self.inner.write_config_space(offset, value)
    }
}
