//! The virtio console driver with MULTIPORT: control queues, port
//! discovery by name, one open port as `embedded-io`.
//!
//! Built on `virtio-drivers`: its [`Transport`] (MMIO or PCI) negotiates
//! features and sets up queues, its [`VirtQueue`] moves buffers, its
//! [`Hal`] provides DMA memory. What it lacks, and this module adds, is
//! the console's multiport protocol (virtio 1.2 §5.3.6): port 0 on queues
//! 0/1, control messages on queues 2 (device → driver) and 3 (driver →
//! device), port N ≥ 1 on queues 2N+2 and 2N+3.
//!
//! Sequence: [`VirtioConsole::new`] negotiates MULTIPORT, sets up the
//! queues of ports `0..PORTS` and the control queues, and sends
//! DEVICE_READY; the device answers with PORT_ADD per port, the driver
//! with PORT_READY, the device then with the port's name (PORT_NAME),
//! whether it is a console (CONSOLE_PORT) and whether a host client is
//! connected (PORT_OPEN). [`VirtioConsole::poll`] runs that exchange;
//! [`VirtioConsole::find`] looks a port up by name once it has been named;
//! [`VirtioConsole::open`] tells the device the guest uses the port
//! (PORT_OPEN) and gives a [`Port`].
//!
//! Without MULTIPORT (an old device or `max_nr_ports` = 1) there is only
//! port 0, nameless, always connected, no events.
//!
//! Only one port is open at a time.
//!
//! ## Waiting
//!
//! The driver never needs a timer and takes no interrupt itself: the
//! caller routes the device's interrupt (a PLIC line on riscv64 `virt`,
//! an IOAPIC pin or MSI-X vector on x86) to wherever it sleeps, and uses
//! three calls to sleep without losing a wake-up:
//!
//! 1. [`Port::ack_interrupt`] (or [`VirtioConsole::ack_interrupt`])
//!    acknowledges the device's interrupt status, so anything the device
//!    does afterwards raises the line again;
//! 2. then the caller does its work (events, reads);
//! 3. [`Port::has_work`] says whether anything arrived meanwhile; if not,
//!    the caller sleeps until the next interrupt (`wfi`, `hlt`).
//!
//! Where the driver itself must block — a transmit slot the device has
//! not returned (QEMU holds output back while a connected client does
//! not read), or [`Read::read`](embedded_io::Read::read) with nothing to
//! read — it acknowledges, checks, and calls the port's [`Wait`]
//! (given to [`VirtioConsole::open_with`]; [`Spin`] by default). The
//! transmit queues ask the device for no completion interrupts except
//! while the driver waits for one.
//!
//! ## Memory
//!
//! Every buffer the device sees lives in pages from [`Hal::dma_alloc`]:
//! the queues, the control receive slots, and per open port a receive
//! page and a transmit page of [`TX_SLOTS`] slots of [`TX_BUFFER_LEN`]
//! bytes (see [`tx`](crate::tx) for which slots the driver may write).
//! The console value itself holds no buffer the device uses, so it can
//! be moved freely.

use core::fmt;
use core::hint::spin_loop;

use bitflags::bitflags;
use heapless::Deque;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

use crate::control::{ControlEvent, ControlMessage, HEADER_LEN};
use crate::dma::DmaPage;
use crate::ports::{Effect, PortState, PortTable};
use crate::tx::TxSlots;

/// Queue index of the control receive queue (device → driver).
const CONTROL_RX: u16 = 2;
/// Queue index of the control transmit queue (driver → device).
const CONTROL_TX: u16 = 3;
/// Control receive buffers (QEMU's control queues have 32 entries and
/// drop control messages when no buffer is posted, so post many).
const CONTROL_SLOTS: usize = 32;
/// Descriptors per receive queue.
const DATA_QUEUE_SIZE: usize = 4;
/// Transmit slots per open port, in one DMA page.
pub const TX_SLOTS: usize = 4;
/// Descriptors per transmit queue: one per slot (each slot is lent as one
/// buffer).
const TX_QUEUE_SIZE: usize = TX_SLOTS;
/// Receive buffers per open port (each `PAGE_SIZE / RX_SLOTS` bytes).
const RX_SLOTS: usize = 2;
/// Bytes per transmit slot: what [`Port`]'s `write` buffers before it
/// sends a slot.
pub const TX_BUFFER_LEN: usize = PAGE_SIZE / TX_SLOTS;
/// The most input the open port buffers (its receive slots): what
/// [`VirtioConsole::reset`] may hand back.
pub const RECEIVE_BUFFER_LEN: usize = PAGE_SIZE;
/// Host events kept for [`Port::poll_event`] before older ones are
/// folded.
const EVENT_CAPACITY: usize = 8;

bitflags! {
    /// Feature bits this driver offers to negotiate.
    #[derive(Copy, Clone, Debug, Default, Eq, PartialEq)]
    struct Features: u64 {
        /// Several ports, control queues.
        const MULTIPORT = 1 << 1;
        /// Virtio 1.0 (must be accepted when offered).
        const VERSION_1 = 1 << 32;
    }
}

/// The receive queue index of port `id`.
pub const fn rx_queue(id: u32) -> u16 {
    if id == 0 {
        0
    } else {
        // Port ids are below 2^15 here: they index the queue space (u16).
        (id as u16).wrapping_mul(2).wrapping_add(2)
    }
}

/// The transmit queue index of port `id`.
pub const fn tx_queue(id: u32) -> u16 {
    rx_queue(id).wrapping_add(1)
}

/// A driver error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The transport is not a console device.
    NotAConsole,
    /// The port does not exist (not added by the device, or beyond the
    /// driver's `PORTS`).
    NoSuchPort(u32),
    /// Another port is already open (only one can be).
    AlreadyOpen(u32),
    /// `virtio-drivers` failed (queue setup, DMA, a misbehaving device).
    Virtio(virtio_drivers::Error),
    /// Every transmit slot is held by the device for good: host clients
    /// left while the device held output back, and the device never
    /// returned it (QEMU 7.2 returns such output to the next client,
    /// newer QEMU never does). Only a device reset (dropping the console
    /// and creating it anew) frees them.
    TransmitSlotsLost,
}

impl From<virtio_drivers::Error> for ConsoleError {
    fn from(e: virtio_drivers::Error) -> Self {
        ConsoleError::Virtio(e)
    }
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleError::NotAConsole => f.write_str("not a virtio console device"),
            ConsoleError::NoSuchPort(id) => write!(f, "no virtio console port {id}"),
            ConsoleError::AlreadyOpen(id) => write!(f, "virtio console port {id} is open"),
            ConsoleError::Virtio(e) => write!(f, "virtio: {e}"),
            ConsoleError::TransmitSlotsLost => {
                f.write_str("every transmit slot is held by the device for good")
            }
        }
    }
}

impl core::error::Error for ConsoleError {}

impl embedded_io::Error for ConsoleError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            ConsoleError::NotAConsole | ConsoleError::NoSuchPort(_) => {
                embedded_io::ErrorKind::NotFound
            }
            ConsoleError::AlreadyOpen(_) => embedded_io::ErrorKind::AddrInUse,
            ConsoleError::Virtio(_) => embedded_io::ErrorKind::Other,
            ConsoleError::TransmitSlotsLost => embedded_io::ErrorKind::OutOfMemory,
        }
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ConsoleError {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{}", defmt::Display2Format(self));
    }
}

/// How the driver waits where it must block (see the module docs): it has
/// acknowledged the device's interrupt and found nothing to do, so
/// sleeping until the next interrupt loses nothing. Returning early is
/// harmless; the driver checks again and calls `wait` again.
pub trait Wait {
    /// Sleep until an interrupt (or return at once to busy-wait).
    fn wait(&mut self);
}

/// Busy waiting: [`Wait`] for a caller without interrupts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin;

impl Wait for Spin {
    fn wait(&mut self) {
        spin_loop();
    }
}

impl<F: FnMut()> Wait for F {
    fn wait(&mut self) {
        self();
    }
}

/// A change on the open port's host side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PortEvent {
    /// A host client opened the port.
    HostConnected,
    /// The host client went away: drop partial input (`agent.reset()`).
    HostDisconnected,
    /// The device removed the port; it is closed.
    Removed,
}

/// The control queues and their receive buffers.
struct Control<H: Hal> {
    rx: VirtQueue<H, CONTROL_SLOTS>,
    tx: VirtQueue<H, 2>,
    rx_page: DmaPage<H, CONTROL_SLOTS>,
    /// The token of each posted receive slot.
    rx_tokens: [Option<u16>; CONTROL_SLOTS],
    /// Answers waiting to be sent (PORT_READY per added port).
    outbox: Deque<ControlMessage, CONTROL_SLOTS>,
}

/// A port's queue pair.
struct Queues<H: Hal> {
    rx: VirtQueue<H, DATA_QUEUE_SIZE>,
    tx: VirtQueue<H, TX_QUEUE_SIZE>,
}

/// The receive side of the open port: `RX_SLOTS` buffers, posted in
/// order, consumed in order.
struct Rx<H: Hal> {
    page: DmaPage<H, RX_SLOTS>,
    tokens: [Option<u16>; RX_SLOTS],
    /// Bytes received in each slot (0 = none yet).
    filled: [usize; RX_SLOTS],
    /// The oldest slot: the next to read from.
    head: usize,
    /// Bytes received from the device so far (popped slots).
    received_total: u64,
    /// Bytes read out by the caller so far.
    read_total: u64,
    /// Read position in the head slot.
    cursor: usize,
}

/// The open port.
struct Open<H: Hal> {
    id: u32,
    rx: Rx<H>,
    /// The transmit slots' memory: it never moves and is never freed
    /// while the device may hold a slot.
    tx_page: DmaPage<H, TX_SLOTS>,
    tx: TxSlots<TX_SLOTS>,
    /// Host events, each with the receive position it follows: the
    /// bytes received from the device before the event was seen.
    events: Deque<(PortEvent, u64), EVENT_CAPACITY>,
}

/// A virtio console with up to `PORTS` ports (ids `0..PORTS`; a device
/// port with a higher id is ignored), over transport `T` with DMA from
/// `H`.
///
/// Memory: queues for every port are set up before the device is started,
/// as the virtio spec requires, two pages per queue from `H`; choose
/// `PORTS` as small as the configuration allows (QEMU numbers
/// `virtserialport`s from 1, `virtconsole`s from 0).
pub struct VirtioConsole<H: Hal, T: Transport, const PORTS: usize = 4> {
    transport: T,
    control: Option<Control<H>>,
    queues: [Option<Queues<H>>; PORTS],
    table: PortTable<PORTS>,
    open: Option<Open<H>>,
}

impl<H: Hal, T: Transport, const PORTS: usize> VirtioConsole<H, T, PORTS> {
    /// Initialise the device: negotiate MULTIPORT, set up the queues, start
    /// the device and send DEVICE_READY (then [`poll`](Self::poll) until
    /// the ports you need are named).
    pub fn new(transport: T) -> Result<Self, ConsoleError> {
        if transport.device_type() != DeviceType::Console {
            return Err(ConsoleError::NotAConsole);
        }
        let mut console = VirtioConsole {
            transport,
            control: None,
            queues: [const { None }; PORTS],
            table: PortTable::new(),
            open: None,
        };
        // On failure, dropping the console unsets what was set up.
        console.start()?;
        Ok(console)
    }

    /// Reset the device and set it up again, as [`new`](Self::new) does:
    /// the device forgets every buffer it held, so transmit slots it kept
    /// for good ([`ConsoleError::TransmitSlotsLost`]) are the driver's
    /// again. Every port is closed and the port table starts afresh: run
    /// [`poll`](Self::poll) until the ports are named again, then open
    /// one. A host client stays connected through the reset (QEMU tells
    /// the driver again).
    ///
    /// Input the device had delivered to the open port and the caller
    /// had not read yet is copied into `unread` (as much as fits; at most
    /// [`RECEIVE_BUFFER_LEN`] bytes are ever buffered): the count is
    /// returned, and those bytes come before anything read after the
    /// reset. Output not yet taken by the device is lost.
    pub fn reset(&mut self, unread: &mut [u8]) -> Result<usize, ConsoleError> {
        self.stop();
        // The device is stopped: what it delivered is in the used ring.
        let mut kept = 0;
        if self.open.is_some() {
            self.receive_data()?;
            if let Some(open) = self.open.as_mut() {
                kept = open.rx.drain_into(unread);
            }
        }
        // The device no longer uses any queue: their pages can go.
        self.open = None;
        self.control = None;
        self.queues = [const { None }; PORTS];
        self.table = PortTable::new();
        self.start()?;
        Ok(kept)
    }

    /// Negotiate MULTIPORT, set up the queues, start the device and send
    /// DEVICE_READY (on a device that `begin_init` resets first).
    fn start(&mut self) -> Result<(), ConsoleError> {
        let transport = &mut self.transport;
        let features = transport.begin_init(Features::all());
        let multiport = features.contains(Features::MULTIPORT);
        let device_ports = if multiport {
            transport.read_config_space::<u32>(4)?
        } else {
            1
        };
        let ports = usize::try_from(device_ports)
            .unwrap_or(usize::MAX)
            .min(PORTS);
        for (id, slot) in (0u32..).zip(self.queues.iter_mut().take(ports)) {
            let mut tx = VirtQueue::new(transport, tx_queue(id), false, false)?;
            // Completions are reaped when the driver next writes; it asks
            // for their interrupts only while it waits for one.
            tx.set_dev_notify(false);
            *slot = Some(Queues {
                rx: VirtQueue::new(transport, rx_queue(id), false, false)?,
                tx,
            });
        }
        if multiport {
            let mut tx = VirtQueue::new(transport, CONTROL_TX, false, false)?;
            // Control messages are sent and awaited at once.
            tx.set_dev_notify(false);
            let control = self.control.insert(Control {
                rx: VirtQueue::new(transport, CONTROL_RX, false, false)?,
                tx,
                rx_page: DmaPage::new(BufferDirection::DeviceToDriver)?,
                rx_tokens: [None; CONTROL_SLOTS],
                outbox: Deque::new(),
            });
            for slot in 0..CONTROL_SLOTS {
                control.post(slot)?;
            }
        } else {
            self.table = PortTable::single_port();
        }
        self.transport.finish_init();
        if self.control.is_some() {
            self.transport.notify(CONTROL_RX);
            self.send_control(ControlMessage::new(0, ControlEvent::DeviceReady, 1))?;
            self.poll()?;
        }
        Ok(())
    }

    /// Reset the device and make it forget every queue (before the DMA
    /// pages go).
    fn stop(&mut self) {
        self.transport.set_status(Default::default());
        for id in (0u32..).take(PORTS) {
            self.transport.queue_unset(rx_queue(id));
            self.transport.queue_unset(tx_queue(id));
        }
        self.transport.queue_unset(CONTROL_RX);
        self.transport.queue_unset(CONTROL_TX);
    }

    /// Read and acknowledge the device's interrupt status: call it before
    /// looking for work, so that whatever the device does afterwards
    /// raises its interrupt again (see the module docs).
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.transport.ack_interrupt()
    }

    /// Whether the device has given the driver something to process: a
    /// control message, an answer still to send, or (with a port open)
    /// received data or a host event. Cheap: reads the rings in memory,
    /// no device register.
    pub fn has_work(&self) -> bool {
        let control = self
            .control
            .as_ref()
            .is_some_and(|c| c.rx.can_pop() || !c.outbox.is_empty());
        let port = self.open.as_ref().is_some_and(|open| {
            !open.events.is_empty()
                || open.rx.has_data()
                || self
                    .queues
                    .get(open.id as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|q| q.rx.can_pop())
        });
        control || port
    }

    /// Whether MULTIPORT was negotiated (else only port 0 exists).
    pub fn is_multiport(&self) -> bool {
        self.control.is_some()
    }

    /// Run the control protocol: read what the device sent, answer it,
    /// update the port table and queue host events for the open port.
    pub fn poll(&mut self) -> Result<(), ConsoleError> {
        loop {
            // Take in received data first, so that host events seen below
            // come after it (see `Open::push_event`).
            self.receive_data()?;
            let Some(control) = self.control.as_mut() else {
                return Ok(());
            };
            while let Some((msg, payload_len, slot)) = control.receive()? {
                // SAFETY: `receive` popped `slot` from the queue; it is ours
                // until `post` lends it again below.
                let buf = unsafe { control.rx_page.slot(slot) };
                let payload = buf
                    .get(HEADER_LEN..HEADER_LEN.saturating_add(payload_len))
                    .unwrap_or(&[]);
                let effect = self.table.apply(msg, payload);
                control.post(slot)?;
                match effect {
                    Effect::Send(reply) => {
                        if control.outbox.push_back(reply).is_err() {
                            // Cannot happen: one answer per received slot.
                        }
                    }
                    Effect::Host { id, connected } => {
                        if let Some(open) = self.open.as_mut().filter(|o| o.id == id) {
                            if !connected {
                                // The client left: QEMU has returned the
                                // output it discarded (before this
                                // message), and may keep a buffer it held
                                // back for good. Give up on whatever is
                                // still out, even if the next client's
                                // PORT_OPEN 1 follows in this same poll.
                                if let Some(queues) =
                                    self.queues.get_mut(id as usize).and_then(Option::as_mut)
                                {
                                    open.reap_tx(queues)?;
                                }
                                open.tx.host_gone();
                            }
                            open.push_event(if connected {
                                PortEvent::HostConnected
                            } else {
                                PortEvent::HostDisconnected
                            });
                        }
                    }
                    Effect::Removed(id) => {
                        if let Some(open) = self.open.as_mut().filter(|o| o.id == id) {
                            open.push_event(PortEvent::Removed);
                        }
                    }
                    Effect::None | Effect::Ignored(_) => {}
                }
            }
            // Send one answer, then look again: the device may answer it
            // at once, and must find receive buffers posted.
            let Some(reply) = control.outbox.pop_front() else {
                return Ok(());
            };
            self.send_control(reply)?;
        }
    }

    /// The ports the device has added: `(id, state)`.
    pub fn ports(&self) -> impl Iterator<Item = (u32, &PortState)> + '_ {
        self.table.iter()
    }

    /// The id of the port named `name`, if the device has named one so.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.table.find(name)
    }

    /// Open port `id` for the guest (PORT_OPEN to the device) and return
    /// it, busy-waiting where it must block ([`Spin`]). Only one port can
    /// be opened: its receive buffers stay with the device from then on.
    /// Opening it again returns the same port.
    pub fn open(&mut self, id: u32) -> Result<Port<'_, H, T, PORTS>, ConsoleError> {
        self.open_with(id, Spin)
    }

    /// [`open`](Self::open) port `id`, waiting with `wait` where the port
    /// must block (see the module docs).
    pub fn open_with<W: Wait>(
        &mut self,
        id: u32,
        wait: W,
    ) -> Result<Port<'_, H, T, PORTS, W>, ConsoleError> {
        let usable =
            self.table.get(id).is_some_and(PortState::is_present) && self.queue_pair(id).is_some();
        if !usable {
            return Err(ConsoleError::NoSuchPort(id));
        }
        if let Some(other) = self.open.as_ref().map(|o| o.id).filter(|&o| o != id) {
            return Err(ConsoleError::AlreadyOpen(other));
        }
        if self.open.is_none() {
            let mut open = Open {
                id,
                rx: Rx {
                    page: DmaPage::new(BufferDirection::DeviceToDriver)?,
                    tokens: [None; RX_SLOTS],
                    filled: [0; RX_SLOTS],
                    head: 0,
                    cursor: 0,
                    received_total: 0,
                    read_total: 0,
                },
                tx_page: DmaPage::new(BufferDirection::DriverToDevice)?,
                tx: TxSlots::new(),
                events: Deque::new(),
            };
            if let Some(queues) = self.queues.get_mut(id as usize).and_then(Option::as_mut) {
                for slot in 0..RX_SLOTS {
                    open.rx.post(&mut queues.rx, slot)?;
                }
                if queues.rx.should_notify() {
                    self.transport.notify(rx_queue(id));
                }
            }
            if self.table.get(id).is_some_and(PortState::is_host_connected) {
                open.push_event(PortEvent::HostConnected);
            }
            self.open = Some(open);
            if self.control.is_some() {
                self.send_control(ControlMessage::new(id, ControlEvent::PortOpen, 1))?;
                // Kick the receive queue again: QEMU ignores kicks while the
                // guest side is closed, and only a kick makes it look at a
                // host client that was already connected (and may have
                // sent data) before the port was opened.
                self.transport.notify(rx_queue(id));
                self.poll()?;
            }
        }
        Ok(Port {
            console: self,
            wait,
        })
    }

    /// The open port, if any (busy-waiting where it must block).
    pub fn port(&mut self) -> Option<Port<'_, H, T, PORTS>> {
        self.open.as_ref()?;
        Some(Port {
            console: self,
            wait: Spin,
        })
    }

    fn queue_pair(&mut self, id: u32) -> Option<&mut Queues<H>> {
        self.queues
            .get_mut(usize::try_from(id).ok()?)
            .and_then(Option::as_mut)
    }

    fn send_control(&mut self, msg: ControlMessage) -> Result<(), ConsoleError> {
        let Some(control) = self.control.as_mut() else {
            return Ok(());
        };
        let bytes = msg.emit();
        control
            .tx
            .add_notify_wait_pop(&[&bytes], &mut [], &mut self.transport)?;
        Ok(())
    }

    /// Whether the open port's host side is connected (the latest state,
    /// ahead of undelivered events).
    fn host_connected(&self, id: u32) -> bool {
        self.table.get(id).is_some_and(PortState::is_host_connected)
    }

    /// Move received buffers of the open port from the used ring.
    fn receive_data(&mut self) -> Result<(), ConsoleError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let Some(queues) = self
            .queues
            .get_mut(open.id as usize)
            .and_then(Option::as_mut)
        else {
            return Ok(());
        };
        open.rx.receive(&mut queues.rx)
    }

    /// Repost the head receive slot once it has been read out.
    fn recycle(&mut self) -> Result<(), ConsoleError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let id = open.id;
        let Some(queues) = self.queues.get_mut(id as usize).and_then(Option::as_mut) else {
            return Ok(());
        };
        if open.rx.head_consumed() {
            let slot = open.rx.head;
            open.rx.head = (slot + 1) % RX_SLOTS;
            open.rx.cursor = 0;
            open.rx.filled[slot] = 0;
            open.rx.post(&mut queues.rx, slot)?;
            if queues.rx.should_notify() {
                self.transport.notify(rx_queue(id));
            }
        }
        Ok(())
    }

    /// Lend the filling transmit slot to the device; its token, or `None`
    /// if nothing was buffered.
    ///
    /// Output is sent whatever the port table says: the device knows the
    /// host side's state first (QEMU can deliver a new client's data
    /// before its PORT_OPEN) and discards output while no client is there.
    fn send_filling(&mut self) -> Result<Option<u16>, ConsoleError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        let id = open.id;
        let Some((slot, len)) = open.tx.take_full() else {
            return Ok(None);
        };
        let Some(queues) = self.queues.get_mut(id as usize).and_then(Option::as_mut) else {
            open.tx.unsent(slot);
            return Ok(None);
        };
        // SAFETY: `take_full` names the filling slot, which is not lent.
        let buf = unsafe { open.tx_page.slot(slot) };
        let data = buf.get(..len).unwrap_or(&[]);
        // SAFETY: the slot lies in `tx_page`, a DMA page that stays in
        // place until the console is dropped, and the queue is unset
        // before that. `lent` below marks it as the device's: `TxSlots`
        // hands out no write access to it until its token is popped.
        match unsafe { queues.tx.add(&[data], &mut []) } {
            Ok(token) => {
                open.tx.lent(slot, token);
                if queues.tx.should_notify() {
                    self.transport.notify(tx_queue(id));
                }
                Ok(Some(token))
            }
            Err(e) => {
                open.tx.unsent(slot);
                Err(e.into())
            }
        }
    }

    /// Send the open port's buffered output and wait until the device has
    /// taken it — or until the host side is gone and the device kept it
    /// (the slot is then abandoned: never written again unless the device
    /// returns it).
    fn flush_tx<W: Wait>(&mut self, wait: &mut W) -> Result<(), ConsoleError> {
        let Some(token) = self.send_filling()? else {
            return Ok(());
        };
        self.await_tx(wait, |tx| !tx.is_outstanding(token))
    }

    /// Wait until `done` holds for the transmit slots (checked after each
    /// reap), or until the host side is gone: then every outstanding slot
    /// is abandoned. [`poll`](Self::poll) abandons them as soon as it sees
    /// a client leave, whatever comes after in the same poll (the next
    /// client's arrival included), so a wait for a slot the device
    /// detached at that close ends there; here, a slot still out after a
    /// poll while no client is connected is abandoned too (no close
    /// comes for a port that was closed when the slot was lent).
    fn await_tx<W: Wait>(
        &mut self,
        wait: &mut W,
        done: impl Fn(&TxSlots<TX_SLOTS>) -> bool,
    ) -> Result<(), ConsoleError> {
        let Some(id) = self.open.as_ref().map(|o| o.id) else {
            return Ok(());
        };
        let mut polled = false;
        loop {
            self.reap_tx()?;
            if self.open.as_ref().is_none_or(|o| done(&o.tx)) {
                return Ok(());
            }
            if polled && !self.host_connected(id) {
                // QEMU returns output at once while no client is connected
                // and returns held-back output when the client leaves (its
                // PORT_OPEN 0 comes after); a slot still out now was kept.
                if let Some(open) = self.open.as_mut() {
                    open.tx.host_gone();
                }
                return Ok(());
            }
            if polled {
                self.sleep_for_tx(id, wait)?;
            }
            self.poll()?;
            polled = true;
        }
    }

    /// Sleep until the device returns a transmit slot or sends a control
    /// message: ask for transmit interrupts, acknowledge, check, wait.
    fn sleep_for_tx<W: Wait>(&mut self, id: u32, wait: &mut W) -> Result<(), ConsoleError> {
        let Some(queues) = self.queues.get_mut(id as usize).and_then(Option::as_mut) else {
            return Ok(());
        };
        queues.tx.set_dev_notify(true);
        self.transport.ack_interrupt();
        let returned = self
            .queues
            .get(id as usize)
            .and_then(Option::as_ref)
            .is_some_and(|q| q.tx.can_pop());
        let control = self
            .control
            .as_ref()
            .is_some_and(|c| c.rx.can_pop() || !c.outbox.is_empty());
        if !returned && !control {
            wait.wait();
        }
        if let Some(queues) = self.queues.get_mut(id as usize).and_then(Option::as_mut) {
            queues.tx.set_dev_notify(false);
        }
        Ok(())
    }

    /// Pop every transmit slot the device has returned.
    fn reap_tx(&mut self) -> Result<(), ConsoleError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        match self
            .queues
            .get_mut(open.id as usize)
            .and_then(Option::as_mut)
        {
            Some(queues) => open.reap_tx(queues),
            None => Ok(()),
        }
    }

    /// Copy `buf` into the transmit slots, sending full slots and waiting
    /// for one to come back if none is free. The bytes taken (at least
    /// one unless `buf` is empty).
    fn write_tx<W: Wait>(&mut self, buf: &[u8], wait: &mut W) -> Result<usize, ConsoleError> {
        loop {
            self.reap_tx()?;
            let Some(open) = self.open.as_mut() else {
                return Ok(0);
            };
            let n = open.tx.write(&mut open.tx_page, buf);
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if open.tx.is_filling() {
                // The filling slot is full: send it, write on in the next.
                self.send_filling()?;
                continue;
            }
            if !open.tx.any_outstanding() {
                // No slot free, none filling, none coming back.
                return Err(ConsoleError::TransmitSlotsLost);
            }
            self.await_tx(wait, |tx| tx.has_free() || !tx.any_outstanding())?;
        }
    }
}

impl<H: Hal, T: Transport, const PORTS: usize> Drop for VirtioConsole<H, T, PORTS> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl<H: Hal> Control<H> {
    /// Lend receive slot `slot` to the device.
    fn post(&mut self, slot: usize) -> Result<(), ConsoleError> {
        // SAFETY: `slot` is not lent: it is either fresh or was just popped.
        let buf = unsafe { self.rx_page.slot(slot) };
        // SAFETY: the slot lives in `rx_page`, which outlives the queue's
        // use of it (the queue is unset before the page is freed), and the
        // driver does not touch it until `receive` pops this token.
        let token = unsafe { self.rx.add(&[], &mut [buf]) }?;
        if let Some(t) = self.rx_tokens.get_mut(slot) {
            *t = Some(token);
        }
        Ok(())
    }

    /// Pop one received control message: its header, payload length and
    /// slot (still to be re-posted).
    fn receive(&mut self) -> Result<Option<(ControlMessage, usize, usize)>, ConsoleError> {
        loop {
            let Some(token) = self.rx.peek_used() else {
                return Ok(None);
            };
            let Some(slot) = self.rx_tokens.iter().position(|t| *t == Some(token)) else {
                return Err(ConsoleError::Virtio(virtio_drivers::Error::WrongToken));
            };
            // SAFETY: the device has returned this slot (its token is next
            // in the used ring), so the driver may access it again.
            let buf = unsafe { self.rx_page.slot(slot) };
            // SAFETY: `buf` is the buffer added with `token`.
            let len = unsafe { self.rx.pop_used(token, &[], &mut [buf]) }?;
            if let Some(t) = self.rx_tokens.get_mut(slot) {
                *t = None;
            }
            // SAFETY: popped above; not lent again yet.
            let buf = unsafe { self.rx_page.slot(slot) };
            let len = usize::try_from(len).unwrap_or(0).min(buf.len());
            match buf.get(..len).and_then(ControlMessage::parse) {
                Some((msg, payload)) => return Ok(Some((msg, payload.len(), slot))),
                // A runt message: drop it, lend the slot again.
                None => self.post(slot)?,
            }
        }
    }
}

impl<H: Hal> Rx<H> {
    fn post(
        &mut self,
        queue: &mut VirtQueue<H, DATA_QUEUE_SIZE>,
        slot: usize,
    ) -> Result<(), ConsoleError> {
        // SAFETY: `slot` is not lent: fresh, or read out and recycled.
        let buf = unsafe { self.page.slot(slot) };
        // SAFETY: the page outlives the device's use of the slot (the queue
        // is unset before the page is freed); the driver leaves it alone
        // until `receive` pops the token.
        let token = unsafe { queue.add(&[], &mut [buf]) }?;
        if let Some(t) = self.tokens.get_mut(slot) {
            *t = Some(token);
        }
        Ok(())
    }

    fn receive(&mut self, queue: &mut VirtQueue<H, DATA_QUEUE_SIZE>) -> Result<(), ConsoleError> {
        while let Some(token) = queue.peek_used() {
            let Some(slot) = self.tokens.iter().position(|t| *t == Some(token)) else {
                return Err(ConsoleError::Virtio(virtio_drivers::Error::WrongToken));
            };
            // SAFETY: the device returned the slot; it is ours again.
            let buf = unsafe { self.page.slot(slot) };
            // SAFETY: `buf` is the buffer added with `token`.
            let len = unsafe { queue.pop_used(token, &[], &mut [buf]) }?;
            self.tokens[slot] = None;
            self.filled[slot] = usize::try_from(len)
                .unwrap_or(0)
                .min(DmaPage::<H, RX_SLOTS>::SLOT_LEN);
            self.received_total = self.received_total.saturating_add(self.filled[slot] as u64);
            if self.filled[slot] == 0 {
                // An empty completion: lend it again.
                self.post(queue, slot)?;
            }
        }
        Ok(())
    }

    /// Whether the head slot holds unread bytes.
    fn has_data(&self) -> bool {
        self.tokens[self.head].is_none() && self.cursor < self.filled[self.head]
    }

    /// Whether the head slot was received and fully read.
    fn head_consumed(&self) -> bool {
        self.tokens[self.head].is_none()
            && self.filled[self.head] > 0
            && self.cursor >= self.filled[self.head]
    }

    /// Copy every unread byte, slot after slot, into `buf` (as much as
    /// fits) without lending any slot again: for a device that is being
    /// reset.
    fn drain_into(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        for _ in 0..RX_SLOTS {
            n += self.copy_out(buf.get_mut(n..).unwrap_or(&mut []));
            if !self.head_consumed() {
                break;
            }
            self.filled[self.head] = 0;
            self.head = (self.head + 1) % RX_SLOTS;
            self.cursor = 0;
        }
        n
    }

    /// Copy unread bytes of the head slot into `buf`.
    fn copy_out(&mut self, buf: &mut [u8]) -> usize {
        if !self.has_data() {
            return 0;
        }
        let (head, from, to) = (self.head, self.cursor, self.filled[self.head]);
        // SAFETY: the head slot has been popped (its token is `None`).
        let data = unsafe { self.page.slot(head) };
        let src = data.get(from..to).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.cursor += n;
        self.read_total = self.read_total.saturating_add(n as u64);
        n
    }
}

impl<H: Hal> Open<H> {
    /// Pop every transmit slot the device has returned on `queues` (this
    /// port's).
    fn reap_tx(&mut self, queues: &mut Queues<H>) -> Result<(), ConsoleError> {
        while let Some(used) = queues.tx.peek_used() {
            let Some((slot, len)) = self.tx.lent_with(used) else {
                return Err(ConsoleError::Virtio(virtio_drivers::Error::WrongToken));
            };
            // SAFETY: the device has returned this slot (its token is next
            // in the used ring); the driver only reads it to unshare it.
            let buf = unsafe { self.tx_page.slot(slot) };
            let data = buf.get(..len).unwrap_or(&[]);
            // SAFETY: `data` is the buffer lent with `used`.
            unsafe { queues.tx.pop_used(used, &[data], &mut []) }?;
            if self.tx.complete(used).is_err() {
                return Err(ConsoleError::Virtio(virtio_drivers::Error::WrongToken));
            }
        }
        Ok(())
    }

    /// Queue `event` behind the data received so far: the device sends
    /// a host client's data before the event of its leaving (QEMU reads
    /// the socket to its end before it sees the close), so what has been
    /// received when the event is seen is the old client's, and what
    /// arrives later the next client's.
    fn push_event(&mut self, event: PortEvent) {
        let mark = self.rx.received_total;
        if self.events.is_full() {
            // Fold the backlog: the caller must still reset once and then
            // learn the current state.
            self.events.clear();
            let _ = self.events.push_back((PortEvent::HostDisconnected, mark));
        }
        let _ = self.events.push_back((event, mark));
    }
}

/// The open port: `embedded-io` [`Read`](embedded_io::Read),
/// [`Write`](embedded_io::Write) and [`ReadReady`](embedded_io::ReadReady),
/// plus host events; `W` is how it waits where it must block.
///
/// - `read` blocks (waiting with `W`) until data arrives, and returns 0
///   while no host client is connected and nothing is buffered — so
///   [`Agent::serve`](agent_core::Agent::serve) returns when the host goes
///   away. Data the host sent before leaving is still read first.
/// - `write` fills transmit slots of [`TX_BUFFER_LEN`] bytes and sends
///   each when it is full; `flush` (the agent flushes after every
///   response) sends the last and waits until the device has taken it.
///   The device decides what becomes of output while no host client is
///   connected (QEMU drops it); `flush` waits while the device holds the
///   data back (QEMU does so while a connected client does not read) and
///   gives up on it when the client leaves.
pub struct Port<'c, H: Hal, T: Transport, const PORTS: usize, W: Wait = Spin> {
    console: &'c mut VirtioConsole<H, T, PORTS>,
    wait: W,
}

impl<H: Hal, T: Transport, const PORTS: usize, W: Wait> Port<'_, H, T, PORTS, W> {
    fn open(&self) -> &Open<H> {
        match self.console.open.as_ref() {
            Some(open) => open,
            None => unreachable!("a Port exists only while its port is open"),
        }
    }

    fn open_mut(&mut self) -> &mut Open<H> {
        match self.console.open.as_mut() {
            Some(open) => open,
            None => unreachable!("a Port exists only while its port is open"),
        }
    }

    /// The port's id.
    pub fn id(&self) -> u32 {
        self.open().id
    }

    /// Whether a host client is connected now.
    pub fn is_host_connected(&self) -> bool {
        self.console.host_connected(self.id())
    }

    /// Read and acknowledge the device's interrupt status (see the module
    /// docs): call it before looking for work.
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.console.ack_interrupt()
    }

    /// Whether there is something to process: received data, a host
    /// event, a control message. When it says no after
    /// [`ack_interrupt`](Self::ack_interrupt) and the caller's work, the
    /// caller may sleep until the device's next interrupt.
    pub fn has_work(&self) -> bool {
        self.console.has_work()
    }

    /// The console the port belongs to.
    pub fn console(&self) -> &VirtioConsole<H, T, PORTS> {
        self.console
    }

    /// The next change on the host side, if any. An event comes after
    /// the data received before the driver saw it has been read, and
    /// before anything received later: resetting the parser on
    /// [`PortEvent::HostDisconnected`] drops neither the last request of
    /// the client that left nor a request of the next client.
    pub fn poll_event(&mut self) -> Result<Option<PortEvent>, ConsoleError> {
        self.console.poll()?;
        self.console.receive_data()?;
        let open = self.open_mut();
        match open.events.front() {
            Some(&(_, mark)) if open.rx.read_total < mark => Ok(None),
            Some(_) => Ok(open.events.pop_front().map(|(event, _)| event)),
            None => Ok(None),
        }
    }

    /// Transmit slots the device holds now although their host client
    /// left (QEMU keeps output it held back when the client leaves); each
    /// is unusable until the device returns it. At [`TX_SLOTS`], writes
    /// fail with [`ConsoleError::TransmitSlotsLost`].
    pub fn lost_tx_buffers(&self) -> usize {
        self.open().tx.abandoned_now()
    }

    /// Transmit slots given up on when host clients left, in total
    /// (including those the device returned later).
    pub fn abandoned_tx_buffers(&self) -> usize {
        self.open().tx.abandoned_total()
    }

    /// Read without blocking: what is buffered now (possibly nothing).
    pub fn read_available(&mut self, buf: &mut [u8]) -> Result<usize, ConsoleError> {
        self.console.poll()?;
        self.console.receive_data()?;
        let n = self.open_mut().rx.copy_out(buf);
        self.console.recycle()?;
        Ok(n)
    }
}

impl<H: Hal, T: Transport, const PORTS: usize, W: Wait> embedded_io::ErrorType
    for Port<'_, H, T, PORTS, W>
{
    type Error = ConsoleError;
}

impl<H: Hal, T: Transport, const PORTS: usize, W: Wait> embedded_io::ReadReady
    for Port<'_, H, T, PORTS, W>
{
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        self.console.poll()?;
        self.console.receive_data()?;
        Ok(self.open().rx.has_data() || !self.is_host_connected())
    }
}

impl<H: Hal, T: Transport, const PORTS: usize, W: Wait> embedded_io::Read
    for Port<'_, H, T, PORTS, W>
{
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            self.ack_interrupt();
            let n = self.read_available(buf)?;
            if n > 0 || !self.is_host_connected() {
                return Ok(n);
            }
            if !self.has_work() {
                self.wait.wait();
            }
        }
    }
}

impl<H: Hal, T: Transport, const PORTS: usize, W: Wait> embedded_io::Write
    for Port<'_, H, T, PORTS, W>
{
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.console.write_tx(buf, &mut self.wait)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.console.flush_tx(&mut self.wait)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use embedded_io::Write;

    use super::*;
    use crate::fake_device::{Device, FakeTransport, HeapHal, Shared};

    const AGENT: &str = "org.qemu.guest_agent.0";

    type Console = VirtioConsole<HeapHal, FakeTransport, 4>;

    /// A console with QEMU's usual layout: a virtconsole at port 0, the
    /// agent's port (host client connected) at 2 among others, set up
    /// and named.
    fn console() -> (Shared, Console, u32) {
        let device = Device::new(&[
            ("", true, false),
            ("org.example.other", false, false),
            (AGENT, false, true),
        ]);
        let mut console = Console::new(FakeTransport(device.clone())).unwrap();
        console.poll().unwrap();
        let id = console.find(AGENT).expect("the agent's port is named");
        assert_eq!(id, 2);
        (device, console, id)
    }

    /// [`console`], its agent's client not reading (the device holds
    /// output back), and a wait counter.
    fn console_not_reading() -> (Shared, Console, u32, Cell<u32>) {
        let (device, console, id) = console();
        device.borrow_mut().ports[id as usize].reading = false;
        (device, console, id, Cell::new(0))
    }

    /// A `Wait` that runs `act` on the `n`th call (from 1) and fails the
    /// test after `limit` calls: the driver waiting for ever.
    fn waiter<'a>(
        calls: &'a Cell<u32>,
        limit: u32,
        mut act: impl FnMut(u32) + 'a,
    ) -> impl FnMut() + 'a {
        move || {
            let n = calls.get() + 1;
            calls.set(n);
            assert!(
                n <= limit,
                "the driver is still waiting after {limit} wake-ups"
            );
            act(n);
        }
    }

    fn events<W: Wait>(port: &mut Port<'_, HeapHal, FakeTransport, 4, W>) -> Vec<PortEvent> {
        std::iter::from_fn(|| port.poll_event().unwrap()).collect()
    }

    /// One poll brings a client's PORT_OPEN 0 and the next client's
    /// PORT_OPEN 1 while the device keeps, for good, the reply it held
    /// back from the client that left: flush gives up on that reply
    /// (the port reads as connected again, so the current state says
    /// nothing) instead of waiting for ever, and the slot the device
    /// kept is never written again.
    #[test]
    fn flush_gives_up_when_a_close_and_reopen_arrive_in_one_poll() {
        let (device, mut console, id, calls) = console_not_reading();
        let wait = waiter(&calls, 50, |n| {
            if n == 1 {
                let mut device = device.borrow_mut();
                assert_eq!(device.ports[id as usize].held.len(), 1, "output held back");
                device.host_disconnect(id);
                device.host_connect(id);
            }
        });
        let mut port = console.open_with(id, wait).unwrap();
        assert_eq!(events(&mut port), [PortEvent::HostConnected]);

        port.write_all(b"{\"return\": {}}\n").unwrap();
        port.flush().unwrap();
        assert_eq!(port.lost_tx_buffers(), 1);
        assert_eq!(
            events(&mut port),
            [PortEvent::HostDisconnected, PortEvent::HostConnected]
        );

        // The next client reads: the next reply reaches it, written into
        // other slots; the kept one holds what it held when lent.
        device.borrow_mut().set_reading(id, true);
        for _ in 0..3 * TX_SLOTS {
            port.write_all(&[b'x'; TX_BUFFER_LEN]).unwrap();
        }
        port.write_all(b"{\"return\": 7}\n").unwrap();
        port.flush().unwrap();
        let device = device.borrow();
        let state = &device.ports[id as usize];
        assert_eq!(state.received.len(), 3 * TX_SLOTS * TX_BUFFER_LEN + 14);
        assert!(state.received.ends_with(b"{\"return\": 7}\n"));
        assert_eq!(state.detached.len(), 1);
        assert!(state.detached[0].untouched(), "a kept slot was written");
    }

    /// A client that does not read: flush waits (sleeping) until it reads,
    /// and gives nothing up.
    #[test]
    fn flush_waits_for_a_connected_client_that_reads_late() {
        let (device, mut console, id, calls) = console_not_reading();
        let wait = waiter(&calls, 50, |n| {
            if n == 5 {
                device.borrow_mut().set_reading(id, true);
            }
        });
        let mut port = console.open_with(id, wait).unwrap();
        port.write_all(b"{\"return\": {}}\n").unwrap();
        port.flush().unwrap();
        assert_eq!(calls.get(), 5, "flush slept until the client read");
        assert_eq!(
            (port.lost_tx_buffers(), port.abandoned_tx_buffers()),
            (0, 0)
        );
        assert_eq!(
            device.borrow().ports[id as usize].received,
            b"{\"return\": {}}\n"
        );
    }

    /// The client leaves for good while its reply is held back: flush
    /// gives it up. If the device returns it before saying PORT_OPEN 0
    /// (QEMU discards queued output that way), nothing is lost.
    #[test]
    fn flush_after_a_close_with_and_without_the_output_returned() {
        for returned in [false, true] {
            let (device, mut console, id, calls) = console_not_reading();
            let wait = waiter(&calls, 50, |n| {
                if n == 1 {
                    let mut device = device.borrow_mut();
                    if returned {
                        device.host_disconnect_returning(id);
                    } else {
                        device.host_disconnect(id);
                    }
                }
            });
            let mut port = console.open_with(id, wait).unwrap();
            port.write_all(b"{\"return\": {}}\n").unwrap();
            port.flush().unwrap();
            let lost = usize::from(!returned);
            assert_eq!(port.lost_tx_buffers(), lost, "returned: {returned}");
            assert_eq!(port.abandoned_tx_buffers(), lost, "returned: {returned}");
            assert!(!port.is_host_connected());
        }
    }

    /// Clients that leave while the device holds a reply back cost a
    /// transmit slot each for good (QEMU 7.2 detaches the buffer it was
    /// writing): once all are gone, writes fail with TransmitSlotsLost;
    /// a reset gives them back and the port serves again.
    #[test]
    fn reset_recovers_slots_the_device_kept() {
        let (device, mut console, id, calls) = console_not_reading();
        let wait = waiter(&calls, 100, |_| {
            let mut device = device.borrow_mut();
            if !device.ports[id as usize].held.is_empty() {
                device.host_disconnect(id);
                device.host_connect(id);
            }
        });
        let mut port = console.open_with(id, wait).unwrap();
        for lost in 1..=TX_SLOTS {
            port.write_all(b"{\"return\": {}}\n").unwrap();
            port.flush().unwrap();
            assert_eq!(port.lost_tx_buffers(), lost);
        }
        assert_eq!(
            port.write_all(b"{\"return\": {}}\n"),
            Err(ConsoleError::TransmitSlotsLost)
        );
        drop(port);

        // Input delivered before the reset and not read yet is handed back.
        device.borrow_mut().host_send(id, b"{\"execute\":");
        let mut unread = [0u8; RECEIVE_BUFFER_LEN];
        let kept = console.reset(&mut unread).unwrap();
        assert_eq!(&unread[..kept], b"{\"execute\":");
        assert!(console.port().is_none(), "the reset closed the port");
        console.poll().unwrap();
        assert_eq!(console.find(AGENT), Some(id));
        device.borrow_mut().ports[id as usize].reading = true;
        let mut port = console.open(id).unwrap();
        assert_eq!(events(&mut port), [PortEvent::HostConnected]);
        assert_eq!(port.lost_tx_buffers(), 0);
        port.write_all(b"{\"return\": 1}\n").unwrap();
        port.flush().unwrap();
        assert!(device.borrow().ports[id as usize]
            .received
            .ends_with(b"{\"return\": 1}\n"));
    }

    /// Data a client sent before leaving is read before the event of its
    /// leaving is reported, and nothing received after the event comes
    /// before it.
    #[test]
    fn events_follow_the_data_before_them() {
        let (device, mut console, id) = console();
        let mut port = console.open(id).unwrap();
        assert_eq!(events(&mut port), [PortEvent::HostConnected]);
        {
            let mut device = device.borrow_mut();
            device.host_send(id, b"old");
            device.host_disconnect(id);
        }
        assert_eq!(events(&mut port), [], "data comes first");
        let mut buf = [0u8; 16];
        let n = port.read_available(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"old");
        assert_eq!(events(&mut port), [PortEvent::HostDisconnected]);
        {
            let mut device = device.borrow_mut();
            device.host_connect(id);
            device.host_send(id, b"new");
        }
        // Data received before the driver sees the arrival counts as
        // before it (the serve loop resets only when a client leaves).
        assert_eq!(events(&mut port), []);
        let n = port.read_available(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
        assert_eq!(events(&mut port), [PortEvent::HostConnected]);
    }
}
