//! From QEMU's PVH entry to Rust: the ELF note that makes QEMU boot this
//! image through its PVH option ROM, and the 32-bit entry code that sets
//! up a GDT, identity-mapped page tables, long mode and a stack, then
//! calls `q35_entry(start_info)`; and the start info's fields this guest
//! reads.
//!
//! QEMU (`-kernel` with an ELF that carries a `XEN_ELFNOTE_PHYS32_ENTRY`
//! note) loads the PT_LOAD segments at their physical addresses and lets
//! its firmware (SeaBIOS, which first initialises PCI and the ACPI
//! tables) run the `pvh.bin` option ROM; that fills an `hvm_start_info`
//! (memory map, RSDP address) and jumps to the note's address in 32-bit
//! protected mode, paging off, interrupts off, flat segments, `%ebx`
//! pointing to the start info.
//!
//! The page tables map the first 4 GiB with 2 MiB pages, write-back below
//! 0xB000_0000 (where q35's RAM below 4 GiB always ends) and uncached
//! above it (ECAM, PCI BARs, IOAPIC, LAPIC); [`map_mmio`](super::paging)
//! adds mappings for device memory above 4 GiB.

core::arch::global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz: QEMU reads 8 bytes from ELF64 notes */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start
    .balign 4

    .section .bss.boot_tables, "aw", @nobits
    .balign 4096
    .globl boot_pml4
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, ring 0 */
    .quad 0x00cf92000000ffff    /* 0x10: data, ring 0 */
boot_gdt_end:
    .balign 4
boot_gdtr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .text.boot, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    mov %ebx, %esi              /* hvm_start_info, kept in %esi */

    /* Zero .bss (the page tables are in it). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* Four page directories: 2048 entries of 2 MiB, present, writable,
     * large; PWT|PCD from 0xB000_0000 up. */
    mov $boot_pd, %edi
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    cmp $0x580, %ecx
    jb 2f
    or $0x18, %eax
2:  mov %eax, (%edi,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 1b

    /* The PDPT's first four entries point at them, PML4[0] at the PDPT. */
    mov $boot_pdpt, %edi
    mov $boot_pd, %eax
    or $3, %eax
    mov %eax, 0(%edi)
    add $4096, %eax
    mov %eax, 8(%edi)
    add $4096, %eax
    mov %eax, 16(%edi)
    add $4096, %eax
    mov %eax, 24(%edi)
    mov $boot_pml4, %edi
    mov $boot_pdpt, %eax
    or $3, %eax
    mov %eax, (%edi)

    /* Long mode: CR3, CR4.PAE, EFER.LME, then CR0.PG|WP. */
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    lgdt boot_gdtr
    ljmp $0x08, $3f

    .code64
3:  mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $__stack_top, %rsp
    xor %ebp, %ebp
    mov %esi, %edi              /* q35_entry(start_info) */
    call q35_entry
4:  cli
    hlt
    jmp 4b
"#,
    options(att_syntax)
);

/// The PVH boot protocol's `hvm_start_info` (version 1), as far as this
/// guest reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// Physical address of the RSDP, 0 if the loader found none.
    pub rsdp: u64,
    /// Physical address of the kernel command line (NUL-terminated), 0 if
    /// none.
    pub cmdline: u64,
}

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Bytes of `hvm_start_info` this guest reads.
pub const START_INFO_LEN: usize = 40;

impl StartInfo {
    /// Read an `hvm_start_info` (`bytes` from its first byte).
    pub fn parse(bytes: &[u8]) -> Option<StartInfo> {
        let u32_at = |at: usize| Some(u32::from_le_bytes(*bytes.get(at..)?.first_chunk()?));
        let u64_at = |at: usize| Some(u64::from_le_bytes(*bytes.get(at..)?.first_chunk()?));
        if u32_at(0)? != START_INFO_MAGIC {
            return None;
        }
        Some(StartInfo {
            cmdline: u64_at(24)?,
            rsdp: u64_at(32)?,
        })
    }
}
