//! `guest-get-time` and `guest-set-time`, plus the local-time lookup that
//! guest-get-timezone shares.

use std::ffi::CStr;
use std::time::{SystemTime, UNIX_EPOCH};

use agent_core::args::Args;

use super::error::CmdResult;
use super::run::run_command;
use super::{Error, Out, SystemPaths};

extern "C" {
    /// POSIX `tzset`: re-read `TZ` / `/etc/localtime`.
    fn tzset();
}

/// The local time of `t` (seconds since the epoch), as the C library sees
/// it after `tzset()` (the `TZ` variable, else `/etc/localtime`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalTime {
    /// The full year, e.g. 2024.
    pub year: i64,
    /// Seconds east of UTC.
    pub utc_offset_s: i64,
    /// The zone abbreviation, e.g. `UTC`, `CET`.
    pub zone: Option<String>,
}

/// Look up the local time of `t`.
// `libc::time_t` is deprecated on musl only to announce its change to
// i64, which musl itself made in 1.2; the conversions below are checked.
#[allow(deprecated)]
pub fn local_time(t: i64) -> Option<LocalTime> {
    let t = libc::time_t::try_from(t).ok()?;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: tzset has no preconditions; localtime_r writes the whole
    // `tm` it is given and returns null on failure, in which case `tm` is
    // not read. `tm_zone` points to static storage of the C library (or
    // is null), valid for the duration of the read.
    unsafe {
        tzset();
        if libc::localtime_r(&t, tm.as_mut_ptr()).is_null() {
            return None;
        }
        let tm = tm.assume_init();
        let zone = (!tm.tm_zone.is_null())
            .then(|| CStr::from_ptr(tm.tm_zone).to_string_lossy().into_owned());
        Some(LocalTime {
            year: i64::from(tm.tm_year).saturating_add(1900),
            utc_offset_s: tm.tm_gmtoff,
            zone,
        })
    }
}

/// Nanoseconds since the epoch with microsecond resolution, as qemu-ga's
/// `g_get_real_time() * 1000`.
pub fn now_ns() -> i64 {
    let micros: i128 = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_micros()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_micros()).unwrap_or(i128::MAX),
    };
    i64::try_from(micros.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `guest-get-time` → int (ns since the epoch).
pub fn get_time<'a>(args: &Args<'a>) -> CmdResult<'a> {
    args.finish()?;
    Ok(Out::Int(now_ns()))
}

/// `guest-set-time {time?}`: set the clock (when given) and then the RTC
/// from it (`hwclock -w`), or the clock from the RTC (`hwclock -s`).
#[allow(deprecated)] // `libc::time_t` on musl: see `local_time`.
pub fn set_time<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    let time_ns = args.opt_int("time")?;
    args.finish()?;
    if let Some(ns) = time_ns {
        let secs = ns / 1_000_000_000;
        #[allow(clippy::useless_conversion, irrefutable_let_patterns)]
        let Ok(tv_sec) = libc::time_t::try_from(secs) else {
            return Err(Error::msg(format!("Time {ns} is too large")).into());
        };
        let year = local_time(secs).map(|t| t.year);
        if !matches!(year, Some(1970..=2069)) {
            return Err(Error::msg("Invalid time").into());
        }
        let nsec = (ns % 1_000_000_000) / 1000 * 1000;
        let spec = rustix::time::Timespec {
            #[allow(clippy::useless_conversion)]
            tv_sec: tv_sec.into(),
            tv_nsec: nsec,
        };
        rustix::time::clock_settime(rustix::time::ClockId::Realtime, spec)
            .map_err(|e| Error::errno("Failed to set time to guest", e))?;
    }
    let flag = if time_ns.is_some() { "-w" } else { "-s" };
    run_command(
        sys.hwclock.as_os_str(),
        &[flag],
        None,
        "set hardware clock to system time",
    )?;
    Ok(Out::Unit)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;

    #[test]
    fn get_time() {
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-get-time"}"#);
        let ns = v["return"].as_i64().unwrap();
        assert!(ns > 1_600_000_000_000_000_000);
        assert_eq!(ns % 1000, 0);
        assert_eq!(
            t.error(r#"{"execute": "guest-get-time", "arguments": {"x": 1}}"#),
            "Parameter 'x' is unexpected"
        );
    }

    #[test]
    fn set_time_validation() {
        let mut t = Harness::new();
        assert_eq!(
            t.error(r#"{"execute": "guest-set-time", "arguments": {"time": "x"}}"#),
            "Invalid parameter type for 'time', expected: integer"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-time", "arguments": {"time": 1, "y": 2}}"#),
            "Parameter 'y' is unexpected"
        );
        // Year 2100 and a negative time are rejected before any clock is set.
        assert_eq!(
            t.error(r#"{"execute": "guest-set-time", "arguments": {"time": 4102444800000000000}}"#),
            "Invalid time"
        );
        assert_eq!(
            t.error(r#"{"execute": "guest-set-time", "arguments": {"time": -86400000000000}}"#),
            "Invalid time"
        );
        // Without a time only hwclock -s runs: here a missing stand-in.
        assert_eq!(
            t.error(r#"{"execute": "guest-set-time"}"#),
            "child process has failed to set hardware clock to system time"
        );
    }
}
