//! The PC's CMOS real-time clock (MC146818; on q35 behind I/O ports
//! 0x70/0x71): its date and time registers, which QEMU seeds from the
//! host (`-rtc base=utc` by default), decoded to seconds since the
//! epoch, and the calendar arithmetic. Reading the registers is the
//! platform's.

/// The RTC's date and time registers, as read (BCD or binary, 12 or 24
/// hour, per [`Registers::status_b`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    /// Index 0x00.
    pub seconds: u8,
    /// Index 0x02.
    pub minutes: u8,
    /// Index 0x04 (bit 7: PM in 12-hour mode).
    pub hours: u8,
    /// Index 0x07.
    pub day: u8,
    /// Index 0x08.
    pub month: u8,
    /// Index 0x09: year within the century.
    pub year: u8,
    /// The century register (the FADT names its index), if any.
    pub century: Option<u8>,
    /// Status register B (bit 2: binary, bit 1: 24-hour).
    pub status_b: u8,
}

/// Status B: values are binary, not BCD.
const BINARY: u8 = 1 << 2;
/// Status B: 24-hour mode.
const HOURS_24: u8 = 1 << 1;

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

impl Registers {
    /// Seconds since the Unix epoch, or `None` for a date the RTC cannot
    /// hold or registers that make no sense.
    pub fn unix_seconds(&self) -> Option<i64> {
        let binary = self.status_b & BINARY != 0;
        let conv = |v: u8| if binary { v } else { from_bcd(v) };
        let pm = self.hours & 0x80 != 0;
        let mut hours = conv(self.hours & 0x7f);
        if self.status_b & HOURS_24 == 0 {
            // 12-hour mode: 12 AM is 0, 12 PM is 12.
            hours %= 12;
            if pm {
                hours += 12;
            }
        }
        // Without a century register, this century (QEMU has one).
        let century = self.century.map_or(20, conv);
        let year = i64::from(century) * 100 + i64::from(conv(self.year));
        let (month, day) = (conv(self.month), conv(self.day));
        let (minutes, seconds) = (conv(self.minutes), conv(self.seconds));
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        if hours > 23 || minutes > 59 || seconds > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(days * 86_400 + i64::from(hours) * 3600 + i64::from(minutes) * 60 + i64::from(seconds))
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(bcd: [u8; 6], century: Option<u8>, status_b: u8) -> Registers {
        let [year, month, day, hours, minutes, seconds] = bcd;
        Registers {
            seconds,
            minutes,
            hours,
            day,
            month,
            year,
            century,
            status_b,
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn bcd_24_hour_as_qemu_sets_it() {
        // 2026-12-02 14:05:09 UTC, BCD, 24-hour, century register 0x20.
        let r = regs([0x26, 0x12, 0x02, 0x14, 0x05, 0x09], Some(0x20), HOURS_24);
        assert_eq!(r.unix_seconds(), Some(1_796_220_309));
    }

    #[test]
    fn binary_12_hour_and_no_century() {
        // 2026-12-02 02:05:09 PM, binary, 12-hour, no century register.
        let r = regs([26, 12, 2, 0x80 | 2, 5, 9], None, BINARY);
        assert_eq!(r.unix_seconds(), Some(1_796_220_309));
        // 12 AM is midnight, 12 PM is noon.
        let midnight = regs([26, 12, 2, 12, 0, 0], None, BINARY);
        let noon = regs([26, 12, 2, 0x80 | 12, 0, 0], None, BINARY);
        assert_eq!(
            noon.unix_seconds().unwrap() - midnight.unix_seconds().unwrap(),
            43_200
        );
    }

    #[test]
    fn nonsense_is_rejected() {
        assert_eq!(
            regs([0x26, 0x13, 0x02, 0, 0, 0], None, 2).unix_seconds(),
            None
        );
        assert_eq!(
            regs([0x26, 0x12, 0x00, 0, 0, 0], None, 2).unix_seconds(),
            None
        );
        assert_eq!(
            regs([0x26, 0x12, 0x02, 0x24, 0, 0], None, 2).unix_seconds(),
            None
        );
        assert_eq!(
            regs([0x26, 0x12, 0x02, 0x23, 0x60, 0], None, 2).unix_seconds(),
            None
        );
    }
}
