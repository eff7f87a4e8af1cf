//! The ACPI tables this guest reads, parsed from byte slices (sans-IO,
//! tested on the host): the RSDP, the RSDT or XSDT, the FADT (power
//! management ports, reset register, RTC century), the MCFG (where PCIe
//! configuration space is) and, in the DSDT, the `\_S5` package (the
//! sleep type of soft-off).
//!
//! ACPI is how x86_64 firmware (and aarch64 server firmware) describes
//! the machine: QEMU builds these tables and the firmware (SeaBIOS on
//! q35) places them in RAM; the boot protocol says where the RSDP is.
//! Reading the memory is the platform's; these functions take the
//! bytes.

/// A table's signature.
pub type Signature = [u8; 4];

/// Length of every system description table's header.
pub const HEADER_LEN: usize = 36;
/// Length of the RSDP of ACPI 2.0 and later (1.0: 20 bytes).
pub const RSDP_LEN: usize = 36;

/// What is wrong with a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcpiError {
    /// The RSDP's signature or checksum is wrong.
    BadRsdp,
    /// A table's bytes do not add up to zero.
    BadChecksum(Signature),
    /// A table is shorter than its fields.
    Truncated(Signature),
    /// A table this guest needs is not listed.
    Missing(Signature),
}

#[cfg(feature = "defmt")]
impl defmt::Format for AcpiError {
    fn format(&self, f: defmt::Formatter<'_>) {
        fn name(s: &Signature) -> &str {
            core::str::from_utf8(s).unwrap_or("????")
        }
        match self {
            AcpiError::BadRsdp => defmt::write!(f, "bad RSDP"),
            AcpiError::BadChecksum(s) => defmt::write!(f, "{=str}: bad checksum", name(s)),
            AcpiError::Truncated(s) => defmt::write!(f, "{=str}: truncated", name(s)),
            AcpiError::Missing(s) => defmt::write!(f, "{=str}: missing", name(s)),
        }
    }
}

/// The root table the RSDP points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Root {
    /// ACPI 1.0: 32-bit entries.
    Rsdt(u64),
    /// ACPI 2.0+: 64-bit entries.
    Xsdt(u64),
}

impl Root {
    /// The root table's physical address.
    pub fn address(self) -> u64 {
        match self {
            Root::Rsdt(a) | Root::Xsdt(a) => a,
        }
    }

    /// Bytes per entry.
    pub fn entry_len(self) -> usize {
        match self {
            Root::Rsdt(_) => 4,
            Root::Xsdt(_) => 8,
        }
    }
}

fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..)?.first_chunk()?))
}

/// Whether `bytes` add up to zero (mod 256), as every ACPI checksum
/// requires.
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

/// Read an RSDP (`bytes` from its first byte, at least 20 long): the root
/// table, preferring the XSDT when the revision has one.
pub fn parse_rsdp(bytes: &[u8]) -> Result<Root, AcpiError> {
    let v1 = bytes.get(..20).ok_or(AcpiError::BadRsdp)?;
    if !v1.starts_with(b"RSD PTR ") || !checksum_ok(v1) {
        return Err(AcpiError::BadRsdp);
    }
    let revision = u8_at(bytes, 15).unwrap_or(0);
    if revision >= 2 {
        let v2 = bytes.get(..RSDP_LEN).ok_or(AcpiError::BadRsdp)?;
        let xsdt = u64_at(v2, 24).unwrap_or(0);
        if checksum_ok(v2) && xsdt != 0 {
            return Ok(Root::Xsdt(xsdt));
        }
    }
    Ok(Root::Rsdt(u64::from(u32_at(bytes, 16).unwrap_or(0))))
}

/// A table header's signature and total length.
pub fn header(bytes: &[u8]) -> Option<(Signature, usize)> {
    let signature = *bytes.first_chunk::<4>()?;
    let len = usize::try_from(u32_at(bytes, 4)?).ok()?;
    Some((signature, len))
}

/// Check a whole table (`bytes` exactly its length): signature and
/// checksum.
pub fn validate(bytes: &[u8], signature: Signature) -> Result<(), AcpiError> {
    match header(bytes) {
        Some((sig, len)) if sig == signature && len == bytes.len() && len >= HEADER_LEN => {
            if checksum_ok(bytes) {
                Ok(())
            } else {
                Err(AcpiError::BadChecksum(signature))
            }
        }
        _ => Err(AcpiError::Truncated(signature)),
    }
}

/// The table addresses an RSDT or XSDT lists.
pub fn root_entries(table: &[u8], root: Root) -> impl Iterator<Item = u64> + '_ {
    let len = root.entry_len();
    table
        .get(HEADER_LEN..)
        .unwrap_or(&[])
        .chunks_exact(len)
        .map(move |entry| match len {
            4 => u64::from(u32_at(entry, 0).unwrap_or(0)),
            _ => u64_at(entry, 0).unwrap_or(0),
        })
}

/// The address space of a generic address structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Space {
    /// Memory-mapped.
    Memory,
    /// x86 I/O ports.
    Io,
}

/// The FADT's reset register: write `value` to `address` to reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ResetRegister {
    /// Where the register is.
    pub space: Space,
    /// Its address (a port number for [`Space::Io`]).
    pub address: u64,
    /// The value that resets the machine.
    pub value: u8,
}

/// What this guest takes from the FADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fadt {
    /// The DSDT's physical address.
    pub dsdt: u64,
    /// I/O port of the PM1a control block (sleep type and enable).
    pub pm1a_control: u16,
    /// I/O port of the PM timer (3.579545 MHz), 0 if none.
    pub pm_timer: u16,
    /// Whether the PM timer counts 32 bits (else 24).
    pub pm_timer_32bit: bool,
    /// CMOS index of the RTC's century register, 0 if none.
    pub century: u8,
    /// The reset register, if the FADT says it is supported.
    pub reset: Option<ResetRegister>,
}

/// FADT flags: the PM timer is 32 bits wide.
const TMR_VAL_EXT: u32 = 1 << 8;
/// FADT flags: the reset register is supported.
const RESET_REG_SUP: u32 = 1 << 10;

fn io_port(address: u64) -> Option<u16> {
    u16::try_from(address).ok().filter(|&p| p != 0)
}

/// Read a FADT (validated by [`validate`]).
pub fn parse_fadt(table: &[u8]) -> Result<Fadt, AcpiError> {
    const SIG: Signature = *b"FACP";
    let short = AcpiError::Truncated(SIG);
    let dsdt32 = u32_at(table, 40).ok_or(short)?;
    let pm1a32 = u32_at(table, 64).ok_or(short)?;
    let pm_timer32 = u32_at(table, 76).ok_or(short)?;
    let century = u8_at(table, 108).ok_or(short)?;
    // Fields of ACPI 2.0 and later, present when the table is long enough.
    let flags = u32_at(table, 112).unwrap_or(0);
    let reset = if flags & RESET_REG_SUP != 0 {
        let space = match u8_at(table, 116) {
            Some(0) => Some(Space::Memory),
            Some(1) => Some(Space::Io),
            _ => None,
        };
        match (space, u64_at(table, 120), u8_at(table, 128)) {
            (Some(space), Some(address), Some(value)) if address != 0 => Some(ResetRegister {
                space,
                address,
                value,
            }),
            _ => None,
        }
    } else {
        None
    };
    let x_dsdt = u64_at(table, 140).unwrap_or(0);
    // X_PM1a_CNT_BLK and X_PM_TMR_BLK, used when the 32-bit fields are 0.
    let x_io = |at: usize| match (u8_at(table, at), u64_at(table, at + 4)) {
        (Some(1), Some(address)) => address,
        _ => 0,
    };
    let pm1a_control = io_port(u64::from(pm1a32))
        .or_else(|| io_port(x_io(172)))
        .ok_or(short)?;
    let pm_timer = io_port(u64::from(pm_timer32))
        .or_else(|| io_port(x_io(208)))
        .unwrap_or(0);
    Ok(Fadt {
        dsdt: if x_dsdt != 0 {
            x_dsdt
        } else {
            u64::from(dsdt32)
        },
        pm1a_control,
        pm_timer,
        pm_timer_32bit: flags & TMR_VAL_EXT != 0,
        century,
        reset,
    })
}

/// PCIe enhanced configuration space (ECAM) of PCI segment 0, from the
/// MCFG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ecam {
    /// Physical address of bus 0's configuration space.
    pub base: u64,
    /// First bus decoded.
    pub first_bus: u8,
    /// Last bus decoded.
    pub last_bus: u8,
}

/// Read an MCFG (validated by [`validate`]): segment 0's window.
pub fn parse_mcfg(table: &[u8]) -> Option<Ecam> {
    // Header, 8 reserved bytes, then 16-byte entries.
    table
        .get(HEADER_LEN + 8..)?
        .chunks_exact(16)
        .filter(|e| u16_at(e, 8) == Some(0))
        .find_map(|e| {
            Some(Ecam {
                base: u64_at(e, 0)?,
                first_bus: u8_at(e, 10)?,
                last_bus: u8_at(e, 11)?,
            })
        })
}

/// The PM1a sleep type of soft-off (S5): the first element of the DSDT's
/// `\_S5` package, found without an AML interpreter (the package is a
/// named constant in every DSDT this guest has met, QEMU's included).
pub fn find_s5_sleep_type(dsdt: &[u8]) -> Option<u8> {
    const NAME_OP: u8 = 0x08;
    const PACKAGE_OP: u8 = 0x12;
    let body = dsdt.get(HEADER_LEN..)?;
    let at = body.windows(4).position(|w| w == b"_S5_")?;
    let before = body.get(..at)?;
    // `Name (_S5, ...)` or `Name (\_S5, ...)`.
    let named = before.last() == Some(&NAME_OP)
        || (before.last() == Some(&b'\\') && before.get(at.checked_sub(2)?) == Some(&NAME_OP));
    if !named {
        return None;
    }
    let rest = body.get(at + 4..)?;
    if rest.first() != Some(&PACKAGE_OP) {
        return None;
    }
    // PkgLength: bits 7-6 of the lead byte count the bytes that follow.
    let lead = *rest.get(1)?;
    let elements_at = 2 + usize::from(lead >> 6);
    // NumElements, then the first element.
    let first = elements_at + 1;
    let value = match *rest.get(first)? {
        0x00 => 0,                     // ZeroOp
        0x01 => 1,                     // OneOp
        0x0a => *rest.get(first + 1)?, // BytePrefix
        _ => return None,
    };
    Some(value & 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with `signature`, `body` after the header, and a correct
    /// checksum.
    fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(signature);
        t.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t.push(revision);
        t.push(0); // checksum, fixed below
        t.extend_from_slice(b"BOCHS BXPC    \x01\x00\x00\x00BXPC\x01\x00\x00\x00");
        assert_eq!(t.len(), HEADER_LEN);
        t.extend_from_slice(body);
        let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        t[9] = 0u8.wrapping_sub(sum);
        t
    }

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = b"RSD PTR \0BOCHS ".to_vec();
        r.push(revision);
        r.extend_from_slice(&rsdt.to_le_bytes());
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&xsdt.to_le_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        let sum = r[..20].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        r[8] = 0u8.wrapping_sub(sum);
        let sum = r.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        r[32] = 0u8.wrapping_sub(sum);
        r
    }

    #[test]
    fn rsdp_versions_and_damage() {
        assert_eq!(
            parse_rsdp(&rsdp(0, 0x7fe_1234, 0)),
            Ok(Root::Rsdt(0x7fe_1234))
        );
        assert_eq!(
            parse_rsdp(&rsdp(2, 0x7fe_1234, 0x1_0000_0000)),
            Ok(Root::Xsdt(0x1_0000_0000))
        );
        // A revision-2 RSDP without an XSDT falls back to the RSDT.
        assert_eq!(parse_rsdp(&rsdp(2, 0x1000, 0)), Ok(Root::Rsdt(0x1000)));
        let mut bad = rsdp(0, 0x1000, 0);
        bad[16] ^= 1;
        assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadRsdp));
        assert_eq!(parse_rsdp(b"RSD PTR "), Err(AcpiError::BadRsdp));
        assert_eq!(parse_rsdp(&[0; 36]), Err(AcpiError::BadRsdp));
    }

    #[test]
    fn root_tables_list_addresses() {
        let rsdt = table(b"RSDT", 1, &[0x00, 0x10, 0, 0, 0x00, 0x20, 0, 0]);
        assert_eq!(validate(&rsdt, *b"RSDT"), Ok(()));
        let listed: Vec<u64> = root_entries(&rsdt, Root::Rsdt(0)).collect();
        assert_eq!(listed, [0x1000, 0x2000]);
        let xsdt = table(b"XSDT", 1, &0x1_2345_6000u64.to_le_bytes());
        let listed: Vec<u64> = root_entries(&xsdt, Root::Xsdt(0)).collect();
        assert_eq!(listed, [0x1_2345_6000]);
        let mut broken = rsdt.clone();
        broken[40] ^= 0xff;
        assert_eq!(
            validate(&broken, *b"RSDT"),
            Err(AcpiError::BadChecksum(*b"RSDT"))
        );
        assert_eq!(
            validate(&rsdt, *b"XSDT"),
            Err(AcpiError::Truncated(*b"XSDT"))
        );
        assert_eq!(
            validate(&rsdt[..40], *b"RSDT"),
            Err(AcpiError::Truncated(*b"RSDT"))
        );
    }

    /// QEMU 7.2's q35 FADT (revision 3, 244 bytes), the fields this guest
    /// reads set as QEMU sets them.
    fn q35_fadt() -> Vec<u8> {
        let mut body = vec![0u8; 244 - HEADER_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            body[at - HEADER_LEN..at - HEADER_LEN + bytes.len()].copy_from_slice(bytes)
        };
        put(40, &0x07fe_0040u32.to_le_bytes()); // DSDT
        put(56, &0x600u32.to_le_bytes()); // PM1a_EVT_BLK
        put(64, &0x604u32.to_le_bytes()); // PM1a_CNT_BLK
        put(76, &0x608u32.to_le_bytes()); // PM_TMR_BLK
        put(108, &[0x32]); // CENTURY
        put(112, &(RESET_REG_SUP | (1 << 4) | (1 << 5)).to_le_bytes());
        put(116, &[1, 8, 0, 0]); // RESET_REG: system I/O, 8 bits
        put(120, &0xcf9u64.to_le_bytes());
        put(128, &[0x0f]); // RESET_VALUE
        put(140, &0x07fe_0040u64.to_le_bytes()); // X_DSDT
        put(172, &[1, 16, 0, 2]); // X_PM1a_CNT_BLK
        put(176, &0x604u64.to_le_bytes());
        table(b"FACP", 3, &body)
    }

    #[test]
    fn fadt_of_q35() {
        let fadt = q35_fadt();
        assert_eq!(validate(&fadt, *b"FACP"), Ok(()));
        assert_eq!(
            parse_fadt(&fadt),
            Ok(Fadt {
                dsdt: 0x07fe_0040,
                pm1a_control: 0x604,
                pm_timer: 0x608,
                pm_timer_32bit: false,
                century: 0x32,
                reset: Some(ResetRegister {
                    space: Space::Io,
                    address: 0xcf9,
                    value: 0x0f
                }),
            })
        );
    }

    #[test]
    fn fadt_fallbacks() {
        // ACPI 1.0 (116 bytes): no reset register, no X_ fields.
        let mut fadt = q35_fadt();
        fadt.truncate(116);
        fadt[4..8].copy_from_slice(&116u32.to_le_bytes());
        let parsed = parse_fadt(&fadt).unwrap();
        assert_eq!(parsed.reset, None);
        assert_eq!(parsed.pm1a_control, 0x604);
        // A zero 32-bit PM1a field: the X_ field's port is used.
        let mut fadt = q35_fadt();
        fadt[64..68].fill(0);
        assert_eq!(parse_fadt(&fadt).unwrap().pm1a_control, 0x604);
        // No PM1a block at all: useless for power-off.
        fadt[176..184].fill(0);
        assert_eq!(parse_fadt(&fadt), Err(AcpiError::Truncated(*b"FACP")));
        assert_eq!(parse_fadt(&[0; 50]), Err(AcpiError::Truncated(*b"FACP")));
    }

    #[test]
    fn mcfg_segment_zero() {
        let mut body = vec![0u8; 8];
        // Segment 1 first, then segment 0 (QEMU's q35 lists only the latter).
        body.extend_from_slice(&0xe000_0000u64.to_le_bytes());
        body.extend_from_slice(&[1, 0, 0, 0xff, 0, 0, 0, 0]);
        body.extend_from_slice(&0xb000_0000u64.to_le_bytes());
        body.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0]);
        let mcfg = table(b"MCFG", 1, &body);
        assert_eq!(
            parse_mcfg(&mcfg),
            Some(Ecam {
                base: 0xb000_0000,
                first_bus: 0,
                last_bus: 0xff
            })
        );
        assert_eq!(parse_mcfg(&table(b"MCFG", 1, &[0; 8])), None);
    }

    #[test]
    fn s5_package_forms() {
        // QEMU: Name (_S5, Package (0x04) { Zero, Zero, Zero, Zero })
        let qemu = table(
            b"DSDT",
            1,
            b"\x10\x05_SB_\x08_S5_\x12\x06\x04\x00\x00\x00\x00",
        );
        assert_eq!(find_s5_sleep_type(&qemu), Some(0));
        // Name (\_S5, Package () { 0x07, 0x07 }) with a two-byte PkgLength.
        let other = table(b"DSDT", 1, b"\x08\\_S5_\x12\x40\x01\x02\x0a\x07\x0a\x07");
        assert_eq!(find_s5_sleep_type(&other), Some(7));
        let one = table(b"DSDT", 1, b"\x08_S5_\x12\x05\x02\x01\x01");
        assert_eq!(find_s5_sleep_type(&one), Some(1));
        // A method, a reference, or no _S5 at all: not understood.
        assert_eq!(
            find_s5_sleep_type(&table(b"DSDT", 1, b"\x14\x08_S5_\x00")),
            None
        );
        assert_eq!(
            find_s5_sleep_type(&table(b"DSDT", 1, b"\x08_S5_\x12")),
            None
        );
        assert_eq!(
            find_s5_sleep_type(&table(b"DSDT", 1, b"\x08_S4_\x12\x05\x02\x00\x00")),
            None
        );
    }
}
