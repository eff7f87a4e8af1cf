//! The CMOS RTC's registers (MC146818, I/O ports 0x70/0x71), read
//! consistently; decoding them is `agent_baremetal::guest::rtc`'s.

use agent_baremetal::guest::rtc::Registers;

use super::io::{inb, outb};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
/// Index bit 7 keeps NMIs disabled while the index is set.
const NMI_OFF: u8 = 0x80;
/// Status A: an update is in progress (values about to change).
const UIP: u8 = 0x80;

fn read(index: u8) -> u8 {
    // SAFETY: the CMOS index and data ports; reading a CMOS register
    // touches no memory.
    unsafe {
        outb(INDEX, NMI_OFF | index);
        inb(DATA)
    }
}

fn snapshot(century: u8) -> Registers {
    while read(0x0a) & UIP != 0 {
        core::hint::spin_loop();
    }
    Registers {
        seconds: read(0x00),
        minutes: read(0x02),
        hours: read(0x04),
        day: read(0x07),
        month: read(0x08),
        year: read(0x09),
        century: (century != 0).then(|| read(century)),
        status_b: read(0x0b),
    }
}

/// Read the date and time: two equal snapshots in a row, so no update
/// happened half-way (bounded: the RTC updates once a second).
pub fn read_registers(century: u8) -> Registers {
    let mut last = snapshot(century);
    for _ in 0..8 {
        let next = snapshot(century);
        if next == last {
            break;
        }
        last = next;
    }
    last
}
