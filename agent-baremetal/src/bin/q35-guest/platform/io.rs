//! x86 port I/O.

use core::arch::asm;

/// Read a byte from I/O port `port`.
///
/// # Safety
///
/// `port` must be a register of a device this guest drives, and reading
/// it must not make the device touch memory that Rust code uses.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    };
    value
}

/// Write a byte to I/O port `port`.
///
/// # Safety
///
/// As for [`inb`], for a write.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Write a 16-bit word to I/O port `port`.
///
/// # Safety
///
/// As for [`inb`], for a write.
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    };
}

/// Read a 32-bit word from I/O port `port`.
///
/// # Safety
///
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    };
    value
}
