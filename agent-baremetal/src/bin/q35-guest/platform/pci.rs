//! PCI on q35: configuration space through ECAM (the window the ACPI MCFG
//! table describes), enumeration through PCI-PCI bridges (libvirt puts
//! virtio devices behind PCIe root ports), memory BARs the firmware left
//! unassigned, and MSI-X.
//!
//! With `-kernel`, QEMU still runs its firmware (SeaBIOS by default,
//! `-bios` picks another such as qboot) before the PVH option ROM jumps
//! here; SeaBIOS programs q35's PCIEXBAR to 0xB000_0000, numbers the
//! buses and assigns every BAR, and QEMU's MCFG table describes the
//! window the firmware programmed. qboot (`-bios qboot.rom`) numbers the
//! buses but assigns no BARs and opens no bridge windows: those BARs are
//! assigned here, from the 32-bit PCI hole above the addresses in use,
//! and the bridges above them get a window around them.

use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, HeaderType, MemoryBarType, PciRoot,
};
use virtio_drivers::transport::pci::virtio_device_type;
use virtio_drivers::transport::DeviceType;

use agent_baremetal::guest::acpi::Ecam;
use virtio_drivers::transport::pci::PciTransport;

use super::msix::MsixTransport;
use super::{interrupts, paging, PlatformError};

/// PCI capability id of MSI-X.
const CAP_MSIX: u8 = 0x11;
/// PCI capability id of vendor-specific capabilities (virtio's).
const CAP_VENDOR: u8 = 0x09;
/// Virtio PCI capability type of the common configuration structure.
const VIRTIO_COMMON_CFG: u8 = 1;
/// Where q35's 32-bit PCI hole starts (SeaBIOS's choice too): above the
/// ECAM window and below-4G RAM.
const HOLE_START: u64 = 0xc000_0000;
/// Where it ends: the IOAPIC, HPET and local APIC live above.
const HOLE_END: u64 = 0xfec0_0000;
/// MSI address of the local APIC whose id is in bits 19:12.
const MSI_ADDRESS: u32 = 0xfee0_0000;
/// Virtio console functions kept by [`Pci::consoles`].
pub const MAX_CONSOLES: usize = 8;

/// The MSI-X table entry the consoles use.
const MSIX_ENTRY: u16 = 0;

/// Why a device could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum PciSetupError {
    /// Sizing a BAR failed (an invalid BAR type).
    Bar(u8),
    /// A BAR of a device behind a bridge is unassigned, and a bridge on
    /// the way already has a memory window (which ours would have to fit).
    UnassignedBehindBridge(u8),
    /// The 32-bit PCI hole has no room left for a BAR.
    NoSpace(u8),
    /// The device has no MSI-X capability, or its table is not in a
    /// memory BAR.
    NoMsix,
    /// The device has no virtio common configuration structure.
    NoCommonConfig,
    /// Device memory could not be mapped.
    Unmapped,
}

/// A PCI function, as the log names it (`pci 00:02.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciFunction(pub DeviceFunction);

impl defmt::Format for PciFunction {
    fn format(&self, f: defmt::Formatter<'_>) {
        let DeviceFunction {
            bus,
            device,
            function,
        } = self.0;
        defmt::write!(f, "pci {=u8:02x}:{=u8:02x}.{=u8}", bus, device, function);
    }
}

/// ECAM configuration access: 4 KiB of configuration space per function
/// at `base + (bus << 20 | device << 15 | function << 12)`; buses outside
/// the window read as all ones (no device).
#[derive(Clone, Copy, Debug)]
pub struct EcamAccess {
    ecam: Ecam,
}

impl EcamAccess {
    /// Access through `ecam`, mapping it first if it lies above 4 GiB.
    pub fn new(ecam: Ecam) -> Result<Self, PciSetupError> {
        let buses = u64::from(ecam.last_bus.saturating_sub(ecam.first_bus)) + 1;
        let start = ecam.base + (u64::from(ecam.first_bus) << 20);
        paging::map_device(start, buses << 20).map_err(|_| PciSetupError::Unmapped)?;
        Ok(EcamAccess { ecam })
    }

    fn address(&self, df: DeviceFunction, offset: u8) -> Option<*mut u32> {
        let in_window = (self.ecam.first_bus..=self.ecam.last_bus).contains(&df.bus);
        (in_window && df.valid()).then(|| {
            let at = self.ecam.base
                + (u64::from(df.bus) << 20)
                + (u64::from(df.device) << 15)
                + (u64::from(df.function) << 12)
                + u64::from(offset & !3);
            at as usize as *mut u32
        })
    }
}

impl ConfigurationAccess for EcamAccess {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        match self.address(df, offset) {
            // SAFETY: an aligned register inside the ECAM window, which
            // `new` made sure is mapped (uncached); configuration reads
            // have no side effects on memory.
            Some(reg) => unsafe { reg.read_volatile() },
            None => u32::MAX,
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        if let Some(reg) = self.address(df, offset) {
            // SAFETY: as for `read_word`; the callers (this module and
            // virtio-drivers) only write BARs, the command register and
            // the MSI-X capability of devices this guest drives.
            unsafe { reg.write_volatile(data) }
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

/// The PCI domain of segment 0.
pub struct Pci {
    /// The root complex, as virtio-drivers' transports take it.
    root: PciRoot<EcamAccess>,
    access: EcamAccess,
    /// The local APIC the devices' MSI-X messages go to.
    apic_id: u8,
}

/// Where a device's MSI-X table is and how big.
#[derive(Clone, Copy, Debug)]
struct MsixCap {
    offset: u8,
    table: u64,
}

impl Pci {
    /// The PCI domain behind `ecam`, its MSI-X messages to the local
    /// APIC `apic_id`.
    pub fn new(ecam: Ecam, apic_id: u8) -> Result<Self, PciSetupError> {
        let access = EcamAccess::new(ecam)?;
        Ok(Pci {
            root: PciRoot::new(access),
            access,
            apic_id,
        })
    }

    /// A transport for the console at `df`: BARs checked (assigned if
    /// the firmware left them out), memory and bus mastering on, MSI-X
    /// routed to this CPU.
    pub fn console_transport(&mut self, df: PciFunction) -> Result<MsixTransport, PlatformError> {
        let assigned = self.enable(df.0)?;
        if assigned > 0 {
            defmt::info!(
                "{}: assigned {=usize} BARs the firmware left out",
                df,
                assigned
            );
        }
        self.enable_msix(df.0, interrupts::DEVICE_VECTOR, self.apic_id)?;
        let common = self.virtio_common_config(df.0)?;
        defmt::info!("{}: virtio common config at {=u64:#x}", df, common);
        let transport = PciTransport::new::<super::Dma, _>(&mut self.root, df.0)
            .map_err(PlatformError::Virtio)?;
        // SAFETY: `common` is this device's common configuration
        // structure, mapped for good by `virtio_common_config`.
        unsafe { MsixTransport::new(transport, common, MSIX_ENTRY) }
            .map_err(|_| PlatformError::VectorRefused)
    }

    /// Every function reachable from the first bus, depth-first through
    /// PCI-PCI bridges: `f(function, vendor id, device id)`.
    fn for_each_function(
        &self,
        mut f: impl FnMut(DeviceFunction, &HeaderType, Option<DeviceType>),
    ) {
        let mut pending: heapless::Vec<u8, 32> = heapless::Vec::new();
        let mut seen = [0u64; 4];
        let _ = pending.push(self.access.ecam.first_bus);
        while let Some(bus) = pending.pop() {
            let bit = 1u64 << (bus % 64);
            if seen[usize::from(bus / 64)] & bit != 0 {
                continue;
            }
            seen[usize::from(bus / 64)] |= bit;
            for (df, info) in self.root.enumerate_bus(bus) {
                f(df, &info.header_type, virtio_device_type(&info));
                if info.header_type == HeaderType::PciPciBridge {
                    let secondary = (self.access.read_word(df, 0x18) >> 8) as u8;
                    if secondary > bus {
                        let _ = pending.push(secondary);
                    }
                }
            }
        }
    }

    /// The virtio console functions (`virtio-serial-pci`), in bus order.
    pub fn consoles(&self) -> heapless::Vec<PciFunction, MAX_CONSOLES> {
        let mut found = heapless::Vec::new();
        self.for_each_function(|df, _, device_type| {
            if device_type == Some(DeviceType::Console) {
                let _ = found.push(PciFunction(df));
            }
        });
        found.sort_unstable();
        found
    }

    /// The highest end of any memory BAR or bridge memory window inside
    /// the 32-bit PCI hole (sizing BARs briefly turns decoding off, which
    /// is harmless before any driver runs).
    fn hole_in_use_until(&mut self) -> u64 {
        let mut functions: heapless::Vec<(DeviceFunction, bool), 64> = heapless::Vec::new();
        self.for_each_function(|df, header, _| {
            let _ = functions.push((df, *header == HeaderType::PciPciBridge));
        });
        let mut top = HOLE_START;
        for (df, bridge) in functions {
            if bridge {
                // Memory and prefetchable windows: limit registers at 0x20
                // and 0x24 (bits 31:20 of the last 1 MiB-aligned address).
                for reg in [0x20, 0x24] {
                    let window = self.access.read_word(df, reg);
                    let (base, limit) = (
                        u64::from(window & 0xfff0) << 16,
                        u64::from(window >> 20) << 20,
                    );
                    if limit >= base && (HOLE_START..HOLE_END).contains(&base) {
                        top = top.max(limit + (1 << 20));
                    }
                }
                continue;
            }
            let Ok(bars) = self.root.bars(df) else {
                continue;
            };
            for bar in bars.iter().flatten() {
                if let Some((address, size)) = bar.memory_address_size() {
                    if (HOLE_START..HOLE_END).contains(&address) {
                        top = top.max(address + size);
                    }
                }
            }
        }
        top
    }

    /// The bridge whose secondary bus is `bus`.
    fn bridge_to(&self, bus: u8) -> Option<DeviceFunction> {
        let mut found = None;
        self.for_each_function(|df, header, _| {
            if *header == HeaderType::PciPciBridge
                && (self.access.read_word(df, 0x18) >> 8) as u8 == bus
            {
                found = Some(df);
            }
        });
        found
    }

    /// Make `df` usable by a driver: assign memory BARs the firmware left
    /// at 0, enable memory decoding and bus mastering (DMA, MSI), disable
    /// INTx. Behind bridges without a memory window (qboot programs none),
    /// the BARs get a 1 MiB-aligned range of their own, which becomes
    /// every such bridge's window. Returns how many BARs were assigned.
    fn enable(&mut self, df: DeviceFunction) -> Result<usize, PciSetupError> {
        let bars = self.root.bars(df).map_err(|_| PciSetupError::Bar(0))?;
        let unassigned = || {
            (0u8..)
                .zip(bars.iter())
                .filter_map(|(index, bar)| match bar {
                    Some(BarInfo::Memory {
                        address_type,
                        address: 0,
                        size,
                        ..
                    }) if *size > 0 => Some((index, *address_type, *size)),
                    _ => None,
                })
        };
        let Some((first, ..)) = unassigned().next() else {
            self.enable_decoding(df);
            return Ok(0);
        };
        // The bridges between the root bus and `df`, nearest first.
        let mut bridges: heapless::Vec<DeviceFunction, 8> = heapless::Vec::new();
        let mut bus = df.bus;
        while bus != self.access.ecam.first_bus {
            let bridge = self
                .bridge_to(bus)
                .filter(|b| b.bus < bus && bridges.push(*b).is_ok())
                .ok_or(PciSetupError::UnassignedBehindBridge(first))?;
            // A window the firmware set up would have to hold ours too. At
            // reset, base and limit read 0 (a 1 MiB window at 0: unused).
            let window = self.access.read_word(bridge, 0x20);
            let (base, limit) = ((window & 0xfff0) << 16, window & 0xfff0_0000);
            if window != 0 && limit >= base {
                return Err(PciSetupError::UnassignedBehindBridge(first));
            }
            bus = bridge.bus;
        }
        let start = self.hole_in_use_until().next_multiple_of(1 << 20);
        let mut next = start;
        let mut assigned = 0;
        for (index, address_type, size) in unassigned() {
            let address = next.next_multiple_of(size);
            if address + size > HOLE_END {
                return Err(PciSetupError::NoSpace(index));
            }
            match address_type {
                MemoryBarType::Width64 => self.root.set_bar_64(df, index, address),
                _ => self.root.set_bar_32(df, index, address as u32),
            }
            next = address + size;
            assigned += 1;
        }
        // Memory base and limit: bits 31:20 of the first and the last MiB.
        let end = next.next_multiple_of(1 << 20);
        let window = ((start >> 16) & 0xfff0) as u32 | ((((end - 1) >> 16) & 0xfff0) as u32) << 16;
        for &bridge in &bridges {
            self.access.write_word(bridge, 0x20, window);
            self.enable_decoding(bridge);
        }
        self.enable_decoding(df);
        Ok(assigned)
    }

    /// Memory decoding and bus mastering on, INTx off.
    fn enable_decoding(&mut self, df: DeviceFunction) {
        let (_, command) = self.root.get_status_command(df);
        self.root.set_command(
            df,
            command | Command::MEMORY_SPACE | Command::BUS_MASTER | Command::INTERRUPT_DISABLE,
        );
    }

    fn msix_cap(&mut self, df: DeviceFunction) -> Result<MsixCap, PciSetupError> {
        let cap = self
            .root
            .capabilities(df)
            .find(|c| c.id == CAP_MSIX)
            .ok_or(PciSetupError::NoMsix)?;
        let table = self.access.read_word(df, cap.offset + 4);
        let bar = (table & 7) as u8;
        let (base, size) = self
            .root
            .bar_info(df, bar)
            .map_err(|_| PciSetupError::Bar(bar))?
            .and_then(|info| info.memory_address_size())
            .ok_or(PciSetupError::NoMsix)?;
        let offset = u64::from(table & !7);
        if base == 0 || offset + 16 > size {
            return Err(PciSetupError::NoMsix);
        }
        paging::map_device(base + offset, 16).map_err(|_| PciSetupError::Unmapped)?;
        Ok(MsixCap {
            offset: cap.offset,
            table: base + offset,
        })
    }

    /// Route MSI-X table entry 0 of `df` to `vector` on the local APIC
    /// `apic_id` and enable MSI-X (which turns INTx off).
    fn enable_msix(
        &mut self,
        df: DeviceFunction,
        vector: u8,
        apic_id: u8,
    ) -> Result<(), PciSetupError> {
        let cap = self.msix_cap(df)?;
        let entry = cap.table as usize as *mut u32;
        // SAFETY: entry 0 of the device's MSI-X table: four 32-bit
        // registers in a memory BAR that `msix_cap` checked and mapped;
        // they only say where the device's interrupt messages go.
        unsafe {
            entry.add(3).write_volatile(1); // masked while it changes
            entry.write_volatile(MSI_ADDRESS | (u32::from(apic_id) << 12));
            entry.add(1).write_volatile(0);
            entry.add(2).write_volatile(u32::from(vector)); // fixed, edge
        }
        // Message control (bits 31:16 of the capability's first word):
        // enable, function unmasked.
        let header = self.access.read_word(df, cap.offset);
        let control = ((header >> 16) | 0x8000) & !0x4000;
        self.access
            .write_word(df, cap.offset, (control << 16) | (header & 0xffff));
        // SAFETY: as above: the entry's vector control register.
        unsafe { entry.add(3).write_volatile(0) };
        Ok(())
    }

    /// Physical address of `df`'s virtio common configuration structure.
    fn virtio_common_config(&mut self, df: DeviceFunction) -> Result<u64, PciSetupError> {
        let caps: heapless::Vec<u8, 16> = self
            .root
            .capabilities(df)
            .filter(|c| c.id == CAP_VENDOR && (c.private_header >> 8) as u8 == VIRTIO_COMMON_CFG)
            .map(|c| c.offset)
            .collect();
        let cap = *caps.first().ok_or(PciSetupError::NoCommonConfig)?;
        let bar = self.access.read_word(df, cap + 4) as u8;
        let offset = u64::from(self.access.read_word(df, cap + 8));
        let (base, size) = self
            .root
            .bar_info(df, bar)
            .map_err(|_| PciSetupError::Bar(bar))?
            .and_then(|info| info.memory_address_size())
            .ok_or(PciSetupError::NoCommonConfig)?;
        if base == 0 || offset + 64 > size {
            return Err(PciSetupError::NoCommonConfig);
        }
        paging::map_device(base + offset, 64).map_err(|_| PciSetupError::Unmapped)?;
        Ok(base + offset)
    }
}
