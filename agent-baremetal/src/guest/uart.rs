//! The 16550 UART that both example machines have (riscv64 `virt` at
//! MMIO 0x1000_0000, q35's COM1 at I/O port 0x3F8), as the log's output:
//! bytes out as they are (defmt frames are binary), waiting while the
//! transmitter is busy. How its registers are reached is the platform's
//! ([`Registers`]).

/// Register index of the transmit holding register.
const THR: u8 = 0;
/// Register index of the interrupt enable register.
const IER: u8 = 1;
/// Register index of the FIFO control register.
const FCR: u8 = 2;
/// Register index of the line control register.
const LCR: u8 = 3;
/// Register index of the modem control register.
const MCR: u8 = 4;
/// Register index of the line status register.
const LSR: u8 = 5;
/// Line status: the transmit holding register is empty.
const LSR_THRE: u8 = 0x20;
/// Line control: the divisor latch is selected (registers 0 and 1).
const LCR_DLAB: u8 = 0x80;

/// Access to the UART's byte registers by index (0 = THR, 5 = LSR, ...):
/// an MMIO window or an I/O port range.
pub trait Registers {
    /// Read register `index`.
    fn read(&self, index: u8) -> u8;
    /// Write `value` to register `index`.
    fn write(&self, index: u8, value: u8);
}

/// A 16550 UART behind `R`.
#[derive(Clone, Copy, Debug)]
pub struct Ns16550<R>(pub R);

impl<R: Registers> Ns16550<R> {
    /// Program 115200 baud (divisor 1 of 1.8432 MHz), 8N1, FIFOs on, no
    /// interrupts: for firmware that leaves the UART in any state.
    pub fn init(&self) {
        let r = &self.0;
        r.write(IER, 0x00);
        r.write(LCR, LCR_DLAB);
        r.write(THR, 0x01); // divisor, low byte
        r.write(IER, 0x00); // divisor, high byte
        r.write(LCR, 0x03); // 8N1
        r.write(FCR, 0xc7); // FIFOs on and cleared
        r.write(MCR, 0x03); // DTR, RTS; OUT2 off: no interrupt line
    }

    /// Send `bytes` as they are, waiting while the transmitter is full.
    pub fn write(&self, bytes: &[u8]) {
        for &byte in bytes {
            while self.0.read(LSR) & LSR_THRE == 0 {
                core::hint::spin_loop();
            }
            self.0.write(THR, byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A UART whose transmitter is busy every other look.
    #[derive(Default)]
    struct Fake {
        writes: RefCell<Vec<(u8, u8)>>,
        looks: RefCell<u32>,
    }

    impl Registers for &Fake {
        fn read(&self, index: u8) -> u8 {
            assert_eq!(index, LSR);
            let mut looks = self.looks.borrow_mut();
            *looks += 1;
            if looks.is_multiple_of(2) {
                LSR_THRE
            } else {
                0
            }
        }
        fn write(&self, index: u8, value: u8) {
            self.writes.borrow_mut().push((index, value));
        }
    }

    #[test]
    fn writes_each_byte_when_the_transmitter_is_free() {
        let fake = Fake::default();
        Ns16550(&fake).write(b"a\n\0");
        assert_eq!(*fake.writes.borrow(), [(THR, b'a'), (THR, b'\n'), (THR, 0)]);
        assert_eq!(*fake.looks.borrow(), 6, "waited while busy");
    }
}
