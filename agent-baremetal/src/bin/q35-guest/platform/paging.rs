//! Identity mappings beyond the boot page tables' first 4 GiB, for device
//! memory the firmware placed higher (64-bit PCI BARs): 2 MiB pages,
//! uncached, page-table pages from a small static pool.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The boot tables map this much.
const BOOT_MAPPED: u64 = 4 << 30;
const PAGE_2M: u64 = 2 << 20;
/// Present, writable.
const TABLE: u64 = 0x3;
/// Present, writable, write-through, cache-disabled, 2 MiB page.
const DEVICE_2M: u64 = 0x9b;
/// Physical address bits of an entry.
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// Page-table pages for new mappings.
const POOL_PAGES: usize = 8;

/// A page table: 512 entries, written with atomics (the CPU reads them).
#[repr(C, align(4096))]
struct Table([AtomicU64; 512]);

static POOL: [Table; POOL_PAGES] =
    [const { Table([const { AtomicU64::new(0) }; 512]) }; POOL_PAGES];
static POOL_USED: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    /// The boot PML4 (boot.rs), in .bss.
    static boot_pml4: Table;
}

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfTables;

fn table_at(entry: u64) -> &'static Table {
    let address = (entry & ADDRESS) as usize;
    // SAFETY: every present non-leaf entry this module follows points at
    // a pool table or a boot table: statics that live forever, accessed
    // only through atomics.
    unsafe { &*(address as *const Table) }
}

/// The table `parent.0[index]` points to, made from the pool if absent.
fn child(parent: &Table, index: usize) -> Result<&'static Table, OutOfTables> {
    let entry = parent.0[index].load(Ordering::Relaxed);
    if entry & 1 != 0 {
        return Ok(table_at(entry));
    }
    let n = POOL_USED.fetch_add(1, Ordering::Relaxed);
    let table = POOL.get(n).ok_or(OutOfTables)?;
    parent.0[index].store(
        core::ptr::addr_of!(*table) as u64 | TABLE,
        Ordering::Relaxed,
    );
    Ok(table)
}

/// Identity-map `[paddr, paddr + len)` as device memory, if the boot
/// tables do not already cover it.
pub fn map_device(paddr: u64, len: u64) -> Result<(), OutOfTables> {
    let end = paddr.saturating_add(len.max(1));
    if end <= BOOT_MAPPED {
        return Ok(());
    }
    // SAFETY: `boot_pml4` is the live PML4 (boot.rs loaded it into CR3);
    // it lives in .bss for the whole run and is only accessed atomically.
    let pml4 = unsafe { &boot_pml4 };
    let mut page = paddr.max(BOOT_MAPPED) & !(PAGE_2M - 1);
    while page < end {
        let pdpt = child(pml4, ((page >> 39) & 511) as usize)?;
        let pd = child(pdpt, ((page >> 30) & 511) as usize)?;
        pd.0[((page >> 21) & 511) as usize].store(page | DEVICE_2M, Ordering::Relaxed);
        page += PAGE_2M;
    }
    // Reload CR3: drop any cached paging-structure entries.
    // SAFETY: writing CR3 with its own value only flushes the TLB.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, cr3",
            "mov cr3, {tmp}",
            tmp = out(reg) _,
            options(nostack, preserves_flags)
        );
    }
    Ok(())
}
