//! The interrupt descriptor table and its entry stubs.
//!
//! The guest runs with interrupts disabled except inside
//! `Q35::wait_for_interrupt` (`sti; hlt; cli`), so a handler only
//! ever interrupts `hlt`: the device and timer handlers just acknowledge
//! the local APIC; the work is done by the loop
//! that called `wait`. CPU exceptions are fatal: the handler logs the
//! vector, error code and addresses, and ends the run.

use core::sync::atomic::{AtomicU64, Ordering};

use super::apic;

/// Vector of the local APIC timer (time-outs).
pub const TIMER_VECTOR: u8 = 0x30;
/// Vector of the virtio devices' MSI-X messages.
pub const DEVICE_VECTOR: u8 = 0x31;
/// The local APIC's spurious-interrupt vector (no EOI for it).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// The vectors with stubs, in `isr_table` order: the 32 exceptions, then
/// these three.
const STUB_VECTORS: [u8; 35] = {
    let mut v = [0u8; 35];
    let mut i = 0;
    while i < 32 {
        v[i] = i as u8;
        i += 1;
    }
    v[32] = TIMER_VECTOR;
    v[33] = DEVICE_VECTOR;
    v[34] = SPURIOUS_VECTOR;
    v
};

core::arch::global_asm!(
    r#"
    .section .text.isr, "ax"
    .code64
    /* Exceptions without an error code, and the interrupt vectors: push
     * a zero in its place, so every frame looks the same. */
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,48,49,255
isr_\n:
    push $0
    push $\n
    jmp isr_common
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
isr_\n:
    push $\n
    jmp isr_common
    .endr

isr_common:
    /* The caller-saved registers; the CPU aligned the stack to 16 before
     * its 5-word frame, so after 2 + 9 more words it is aligned again. */
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rdi
    cld
    call isr_dispatch
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $16, %rsp
    iretq

    .section .rodata.isr_table, "a"
    .balign 8
    .globl isr_table
isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,48,49,255
    .quad isr_\n
    .endr
"#,
    options(att_syntax)
);

extern "C" {
    /// The stubs' addresses, for the vectors of `STUB_VECTORS` in order.
    static isr_table: [u64; 35];
}

/// What the stubs saved, lowest address first.
#[repr(C)]
pub struct Frame {
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// 256 16-byte gates; written once by [`init`], then only read by the CPU.
#[repr(C, align(16))]
struct Idt([AtomicU64; 512]);

static IDT: Idt = Idt([const { AtomicU64::new(0) }; 512]);

/// Fill the IDT and load it. Interrupts stay disabled.
pub fn init() {
    // SAFETY: `isr_table` is 35 addresses in .rodata, written by the
    // assembler and never changed.
    let stubs = unsafe { &isr_table };
    for (&vector, &stub) in STUB_VECTORS.iter().zip(stubs.iter()) {
        // A 64-bit interrupt gate: present, DPL 0, code selector 0x08, no IST.
        let low = (stub & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((stub >> 16) & 0xffff) << 48;
        let high = stub >> 32;
        let at = usize::from(vector) * 2;
        IDT.0[at].store(low, Ordering::Relaxed);
        IDT.0[at + 1].store(high, Ordering::Relaxed);
    }
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let idtr = Idtr {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: `idtr` describes `IDT`, a static of 256 gates whose stubs
    // exist for every present gate; the other gates are not present (a
    // stray vector raises #NP, which has a stub).
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags));
    }
}

/// Called by `isr_common` with the saved frame.
#[no_mangle]
extern "C" fn isr_dispatch(frame: &Frame) {
    match frame.vector {
        v if v < 32 => fault(frame),
        v if v == u64::from(SPURIOUS_VECTOR) => {}
        // The timer and the devices' MSI-X: the wake-up was the point.
        _ => apic::eoi(),
    }
}

fn fault(frame: &Frame) -> ! {
    let cr2: u64;
    // SAFETY: reading CR2 (the last page-fault address) has no effects.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags))
    };
    defmt::error!(
        "CPU exception {=u64} (error {=u64:#x}) at rip {=u64:#x}, rsp {=u64:#x}, cr2 {=u64:#x}; rax {=u64:#x} rcx {=u64:#x} rdx {=u64:#x} rsi {=u64:#x} rdi {=u64:#x} r8 {=u64:#x} r9 {=u64:#x} r10 {=u64:#x} r11 {=u64:#x}, cs {=u64:#x} rflags {=u64:#x} ss {=u64:#x}",
        frame.vector, frame.error, frame.rip, frame.rsp, cr2, frame.rax, frame.rcx, frame.rdx,
        frame.rsi, frame.rdi, frame.r8, frame.r9, frame.r10, frame.r11, frame.cs, frame.rflags,
        frame.ss
    );
    super::power::fail(super::EXIT_CPU_EXCEPTION)
}
