//! A virtio console device in host memory, for testing the driver on the
//! host: a [`Transport`] whose device side runs inside the test, reading
//! and writing the driver's split virtqueues the way QEMU's
//! virtio-serial does (multiport control protocol, named ports, host
//! clients that connect, stop reading and leave), and a [`Hal`] over the
//! heap (physical address = pointer).
//!
//! The device acts when the driver notifies a queue, and when the test
//! calls its host-side methods (typically from the port's
//! [`Wait`](crate::console::Wait), where the driver sleeps).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{fence, Ordering};

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::control::{ControlEvent, ControlMessage};

/// Queue index of the control receive queue (device → driver).
const CONTROL_RX: u16 = 2;
/// Queue index of the control transmit queue (driver → device).
const CONTROL_TX: u16 = 3;
/// Feature bits offered: MULTIPORT and VERSION_1.
const FEATURES: u64 = (1 << 1) | (1 << 32);

/// DMA from the heap: page-aligned, zeroed, physical address = pointer.
pub struct HeapHal;

fn pages_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE).expect("a page layout")
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory owned by
// the caller until `dma_dealloc`; the fake device reaches it through the
// same addresses (`share` returns a buffer's own address).
unsafe impl Hal for HeapHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(pages_layout(pages)) };
        let ptr = NonNull::new(ptr).expect("out of memory");
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: `vaddr` came from `dma_alloc` with this many pages.
        unsafe { dealloc(vaddr.as_ptr(), pages_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("no MMIO here")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Read a `T` the driver keeps at `addr`.
fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: the callers pass addresses inside rings or buffers the
    // driver handed to the device (heap memory from `HeapHal`, alive while
    // the queue is set up or the buffer is lent).
    unsafe { core::ptr::read_volatile(addr as usize as *const T) }
}

/// Write a `T` where the device may write (the used rings, buffers the
/// driver lent for writing).
fn write<T: Copy>(addr: u64, value: T) {
    // SAFETY: as for `read`; the driver does not touch these bytes
    // while they are the device's.
    unsafe { core::ptr::write_volatile(addr as usize as *mut T, value) }
}

/// One buffer of a descriptor chain: address, length, device-writable.
#[derive(Clone, Copy, Debug)]
struct Buffer {
    addr: u64,
    len: u32,
    writable: bool,
}

/// A split virtqueue as the device sees it.
#[derive(Clone, Copy, Debug)]
struct Queue {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_avail: u16,
    next_used: u16,
}

impl Queue {
    /// The next chain the driver made available: its head and buffers.
    fn pop(&mut self) -> Option<(u16, Vec<Buffer>)> {
        fence(Ordering::SeqCst);
        if read::<u16>(self.avail + 2) == self.next_avail {
            return None;
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = read::<u16>(self.avail + 4 + 2 * slot);
        self.next_avail = self.next_avail.wrapping_add(1);
        let mut chain = Vec::new();
        let mut index = head;
        loop {
            let d = self.desc + 16 * u64::from(index);
            let flags = read::<u16>(d + 12);
            chain.push(Buffer {
                addr: read::<u64>(d),
                len: read::<u32>(d + 8),
                writable: flags & 2 != 0,
            });
            if flags & 1 == 0 {
                return Some((head, chain));
            }
            index = read::<u16>(d + 14);
        }
    }

    /// Return chain `head` to the driver, `len` bytes written.
    fn push_used(&mut self, head: u16, len: u32) {
        let slot = u64::from(self.next_used % self.size);
        write(self.used + 4 + 8 * slot, u32::from(head));
        write(self.used + 8 + 8 * slot, len);
        self.next_used = self.next_used.wrapping_add(1);
        fence(Ordering::SeqCst);
        write(self.used + 2, self.next_used);
    }
}

/// An output buffer the device holds: its chain, where its bytes are,
/// and the bytes as they were when the driver lent it.
#[derive(Clone, Debug)]
pub struct Held {
    head: u16,
    /// Where the bytes are.
    pub addr: u64,
    /// The bytes when lent.
    pub bytes: Vec<u8>,
}

impl Held {
    /// Whether the buffer's memory still holds what was lent.
    pub fn untouched(&self) -> bool {
        (0..self.bytes.len() as u64)
            .map(|i| read::<u8>(self.addr + i))
            .eq(self.bytes.iter().copied())
    }
}

/// One port of the device and its host side.
#[derive(Debug, Default)]
pub struct Port {
    name: String,
    console: bool,
    /// Whether a host client is connected.
    pub host_connected: bool,
    /// Whether the host client reads; while it does not, the device holds
    /// the guest's output back (as QEMU does when the socket is full).
    pub reading: bool,
    /// What host clients received.
    pub received: Vec<u8>,
    /// Output the device holds back now.
    pub held: Vec<Held>,
    /// Output the device kept when a client left and never returns.
    pub detached: Vec<Held>,
    /// Host input not yet in a receive buffer.
    input: VecDeque<u8>,
}

/// The device's state, shared between the transport and the test.
#[derive(Debug, Default)]
pub struct Device {
    status: DeviceStatus,
    queues: BTreeMap<u16, Queue>,
    /// The ports, by id.
    pub ports: Vec<Port>,
    /// Control messages for the driver, waiting for receive buffers.
    control_out: VecDeque<Vec<u8>>,
    interrupt: bool,
}

/// The device, shared.
pub type Shared = Rc<RefCell<Device>>;

impl Device {
    /// A device with these ports (`name`, console?, host connected?),
    /// ids from 0.
    pub fn new(ports: &[(&str, bool, bool)]) -> Shared {
        let ports = ports
            .iter()
            .map(|&(name, console, connected)| Port {
                name: name.into(),
                console,
                host_connected: connected,
                reading: true,
                ..Port::default()
            })
            .collect();
        Rc::new(RefCell::new(Device {
            ports,
            ..Device::default()
        }))
    }

    fn port(&mut self, id: u32) -> &mut Port {
        &mut self.ports[id as usize]
    }

    /// Queue a control message for the driver and deliver what fits.
    fn send_control(&mut self, id: u32, event: ControlEvent, value: u16, payload: &[u8]) {
        let mut msg = ControlMessage::new(id, event, value).emit().to_vec();
        msg.extend_from_slice(payload);
        self.control_out.push_back(msg);
        self.deliver_control();
    }

    /// Put waiting control messages into the driver's receive buffers.
    fn deliver_control(&mut self) {
        while let Some(msg) = self.control_out.front() {
            let Some(queue) = self.queues.get_mut(&CONTROL_RX) else {
                return;
            };
            let Some((head, chain)) = queue.pop() else {
                return;
            };
            let buffer = chain[0];
            assert!(buffer.writable && buffer.len as usize >= msg.len());
            for (i, &b) in msg.iter().enumerate() {
                write(buffer.addr + i as u64, b);
            }
            queue.push_used(head, msg.len() as u32);
            self.control_out.pop_front();
            self.interrupt = true;
        }
    }

    /// Take the driver's control messages and answer them as QEMU does.
    fn receive_control(&mut self) {
        let Some(queue) = self.queues.get_mut(&CONTROL_TX) else {
            return;
        };
        let mut received = Vec::new();
        while let Some((head, chain)) = queue.pop() {
            let bytes: Vec<u8> = (0..u64::from(chain[0].len))
                .map(|i| read::<u8>(chain[0].addr + i))
                .collect();
            queue.push_used(head, 0);
            received.push(bytes);
        }
        for bytes in received {
            let (msg, _) = ControlMessage::parse(&bytes).expect("a control message");
            match msg.event {
                ControlEvent::DeviceReady => {
                    for id in 0..self.ports.len() as u32 {
                        self.send_control(id, ControlEvent::DeviceAdd, 1, b"");
                    }
                }
                ControlEvent::PortReady => {
                    let port = self.port(msg.id);
                    let (console, connected) = (port.console, port.host_connected);
                    let name = format!("{}\0", port.name);
                    if console {
                        self.send_control(msg.id, ControlEvent::ConsolePort, 1, b"");
                    }
                    if name.len() > 1 {
                        self.send_control(msg.id, ControlEvent::PortName, 1, name.as_bytes());
                    }
                    if connected {
                        self.send_control(msg.id, ControlEvent::PortOpen, 1, b"");
                    }
                }
                _ => {}
            }
        }
        self.interrupt = true;
    }

    /// Take port `id`'s output: delivered to a reading client, dropped
    /// without one, held back from a client that does not read.
    fn receive_output(&mut self, id: u32) {
        let queue_index = crate::console::tx_queue(id);
        let Some(mut queue) = self.queues.get(&queue_index).copied() else {
            return;
        };
        while let Some((head, chain)) = queue.pop() {
            let buffer = chain[0];
            let bytes: Vec<u8> = (0..u64::from(buffer.len))
                .map(|i| read::<u8>(buffer.addr + i))
                .collect();
            let port = self.port(id);
            match (port.host_connected, port.reading) {
                (true, false) => port.held.push(Held {
                    head,
                    addr: buffer.addr,
                    bytes,
                }),
                (connected, _) => {
                    if connected {
                        port.received.extend_from_slice(&bytes);
                    }
                    queue.push_used(head, 0);
                    self.interrupt = true;
                }
            }
        }
        self.queues.insert(queue_index, queue);
    }

    /// Move host input of port `id` into the driver's receive buffers.
    fn deliver_input(&mut self, id: u32) {
        let queue_index = crate::console::rx_queue(id);
        let Some(mut queue) = self.queues.get(&queue_index).copied() else {
            return;
        };
        while !self.port(id).input.is_empty() {
            let Some((head, chain)) = queue.pop() else {
                break;
            };
            let buffer = chain[0];
            let port = self.port(id);
            let n = (buffer.len as usize).min(port.input.len());
            for (i, b) in port.input.drain(..n).enumerate() {
                write(buffer.addr + i as u64, b);
            }
            queue.push_used(head, n as u32);
            self.interrupt = true;
        }
        self.queues.insert(queue_index, queue);
    }

    /// A host client connects to port `id`.
    pub fn host_connect(&mut self, id: u32) {
        self.port(id).host_connected = true;
        self.send_control(id, ControlEvent::PortOpen, 1, b"");
    }

    /// The host client of port `id` leaves while the device holds its
    /// output back: the device keeps those buffers and never returns
    /// them (newer QEMU frees them, QEMU 7.2 can stay throttled), then
    /// says PORT_OPEN 0.
    pub fn host_disconnect(&mut self, id: u32) {
        let port = self.port(id);
        port.host_connected = false;
        let held = std::mem::take(&mut port.held);
        port.detached.extend(held);
        self.send_control(id, ControlEvent::PortOpen, 0, b"");
    }

    /// The host client of port `id` leaves and the device returns its
    /// held-back output first (as QEMU 7.2 does with queued output),
    /// then says PORT_OPEN 0.
    pub fn host_disconnect_returning(&mut self, id: u32) {
        let port = self.port(id);
        port.host_connected = false;
        let held = std::mem::take(&mut port.held);
        let queue_index = crate::console::tx_queue(id);
        if let Some(queue) = self.queues.get_mut(&queue_index) {
            for buffer in held {
                queue.push_used(buffer.head, 0);
            }
        }
        self.send_control(id, ControlEvent::PortOpen, 0, b"");
    }

    /// The host client of port `id` starts (or stops) reading: held
    /// output is delivered and returned.
    pub fn set_reading(&mut self, id: u32, reading: bool) {
        let port = self.port(id);
        port.reading = reading;
        if !reading {
            return;
        }
        let held = std::mem::take(&mut port.held);
        for buffer in &held {
            port.received.extend_from_slice(&buffer.bytes);
        }
        let queue_index = crate::console::tx_queue(id);
        if let Some(queue) = self.queues.get_mut(&queue_index) {
            for buffer in held {
                queue.push_used(buffer.head, 0);
                self.interrupt = true;
            }
        }
    }

    /// The host client of port `id` sends `bytes`.
    pub fn host_send(&mut self, id: u32, bytes: &[u8]) {
        self.port(id).input.extend(bytes);
        self.deliver_input(id);
    }
}

/// The driver's side of the device.
pub struct FakeTransport(pub Shared);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Console
    }

    fn read_device_features(&mut self) -> u64 {
        FEATURES
    }

    fn write_driver_features(&mut self, _driver_features: u64) {}

    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        64
    }

    fn notify(&mut self, queue: u16) {
        let mut device = self.0.borrow_mut();
        match queue {
            CONTROL_RX => device.deliver_control(),
            CONTROL_TX => device.receive_control(),
            0 => device.deliver_input(0),
            1 => device.receive_output(0),
            q if q % 2 == 0 => device.deliver_input(u32::from(q / 2 - 1)),
            q => device.receive_output(u32::from((q - 1) / 2 - 1)),
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.0.borrow().status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        let mut device = self.0.borrow_mut();
        if status.is_empty() {
            // A reset: the device forgets its queues and every buffer it
            // held (their memory is the driver's again).
            device.queues.clear();
            device.control_out.clear();
            for port in &mut device.ports {
                port.held.clear();
                port.detached.clear();
            }
        }
        device.status = status;
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0.borrow_mut().queues.insert(
            queue,
            Queue {
                size: size as u16,
                desc: descriptors,
                avail: driver_area,
                used: device_area,
                next_avail: 0,
                next_used: 0,
            },
        );
    }

    fn queue_unset(&mut self, queue: u16) {
        self.0.borrow_mut().queues.remove(&queue);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.borrow().queues.contains_key(&queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        if std::mem::take(&mut self.0.borrow_mut().interrupt) {
            InterruptStatus::QUEUE_INTERRUPT
        } else {
            InterruptStatus::empty()
        }
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> Result<T, virtio_drivers::Error> {
        // cols, rows (u16 each), max_nr_ports, emerg_wr (u32 each).
        let mut config = [0u8; 12];
        let ports = self.0.borrow().ports.len() as u32;
        config[4..8].copy_from_slice(&ports.to_le_bytes());
        let bytes = config
            .get(offset..offset + size_of::<T>())
            .ok_or(virtio_drivers::Error::ConfigSpaceTooSmall)?;
        T::read_from_bytes(bytes).map_err(|_| virtio_drivers::Error::InvalidParam)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> Result<(), virtio_drivers::Error> {
        Ok(())
    }
}
