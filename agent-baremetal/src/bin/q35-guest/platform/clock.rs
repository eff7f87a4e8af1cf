//! Time: a monotonic clock from the TSC, the local APIC timer's rate for
//! time-outs (both measured against the ACPI PM timer, whose rate is
//! fixed at 3.579545 MHz), and the hardware clock: the CMOS RTC's time at
//! boot plus the monotonic time since (`guest-set-time` keeps its own
//! offset from it, in the shared commands).
//!
//! The RTC counts whole seconds, so the wall clock starts up to a second
//! behind the host's (as Linux's does when it reads the RTC at boot).

use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::apic;
use super::io::inl;

/// The PM timer's rate.
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// How long to measure the TSC and the APIC timer for, in PM timer ticks
/// (20 ms).
const CALIBRATION_TICKS: u32 = 71_591;

/// 0 until calibrated: the clock reads 0 until then.
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static APIC_TIMER_HZ: AtomicU64 = AtomicU64::new(1);
/// The RTC's reading at boot minus the uptime then: ns since the epoch.
static RTC_AT_BOOT_NS: AtomicI64 = AtomicI64::new(0);

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the time-stamp counter.
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// A PM timer reading with the TSC and APIC timer counts taken around it:
/// of a few tries, the one whose two TSC readings lie closest together
/// (the vCPU may be descheduled between any two reads).
fn sample(pm: &impl Fn() -> u32) -> (u32, u64, u32) {
    let mut best = (u64::MAX, 0, 0, 0);
    for _ in 0..8 {
        let before = rdtsc();
        let apic_count = apic::timer_count();
        let pm_ticks = pm();
        let after = rdtsc();
        let width = after.wrapping_sub(before);
        if width < best.0 {
            best = (width, pm_ticks, before + width / 2, apic_count);
        }
    }
    (best.1, best.2, best.3)
}

/// Measure the TSC's and the APIC timer's rates against the PM timer at
/// I/O port `pm_timer` (24 or 32 bits wide), and start the clocks.
pub fn calibrate(pm_timer: u16, pm_timer_32bit: bool) {
    let mask: u32 = if pm_timer_32bit {
        u32::MAX
    } else {
        0x00ff_ffff
    };
    // SAFETY: the PM timer register the FADT names; reading it has no
    // side effects.
    let pm = || unsafe { inl(pm_timer) } & mask;
    apic::start_free_running();
    let (pm_start, tsc_start, apic_start) = sample(&pm);
    while pm().wrapping_sub(pm_start) & mask < CALIBRATION_TICKS {
        core::hint::spin_loop();
    }
    let (pm_end, tsc_end, apic_end) = sample(&pm);
    apic::end_free_running();
    let elapsed = u64::from(pm_end.wrapping_sub(pm_start) & mask).max(1);
    let per_second = |count: u64| {
        let hz = u128::from(count) * u128::from(PM_TIMER_HZ) / u128::from(elapsed);
        u64::try_from(hz).unwrap_or(u64::MAX).max(1)
    };
    TSC_HZ.store(
        per_second(tsc_end.wrapping_sub(tsc_start)),
        Ordering::Relaxed,
    );
    APIC_TIMER_HZ.store(
        per_second(u64::from(apic_start.wrapping_sub(apic_end))),
        Ordering::Relaxed,
    );
    TSC_AT_BOOT.store(tsc_start, Ordering::Relaxed);
}

/// The measured rates: (TSC, APIC timer), in Hz.
pub fn rates() -> (u64, u64) {
    (
        TSC_HZ.load(Ordering::Relaxed),
        APIC_TIMER_HZ.load(Ordering::Relaxed),
    )
}

/// Nanoseconds since calibration (0 before).
pub fn monotonic_ns() -> u64 {
    let hz = TSC_HZ.load(Ordering::Relaxed);
    if hz == 0 {
        return 0;
    }
    let ticks = rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(hz);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// APIC timer ticks for `ns` nanoseconds, clamped to the timer's range.
pub fn apic_ticks(ns: u64) -> u32 {
    let ticks = u128::from(ns) * u128::from(APIC_TIMER_HZ.load(Ordering::Relaxed)) / 1_000_000_000;
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}

/// Start the wall clock at the RTC's reading, `rtc_seconds` since the
/// epoch, taken now.
pub fn set_rtc_at_boot(rtc_seconds: i64) {
    let uptime = i64::try_from(monotonic_ns()).unwrap_or(i64::MAX);
    RTC_AT_BOOT_NS.store(
        rtc_seconds
            .saturating_mul(1_000_000_000)
            .saturating_sub(uptime),
        Ordering::Relaxed,
    );
}

/// The hardware clock: the RTC's time at boot plus the uptime, ns since
/// the epoch.
pub fn hardware_ns() -> i64 {
    let uptime = i64::try_from(monotonic_ns()).unwrap_or(i64::MAX);
    RTC_AT_BOOT_NS
        .load(Ordering::Relaxed)
        .saturating_add(uptime)
}
