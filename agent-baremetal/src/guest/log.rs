//! Logging: the guest code logs through `defmt` when the crate's `defmt`
//! feature is on and compiles its log calls away otherwise; with the
//! feature, `agent_baremetal::defmt_logger!` gives a guest its
//! global logger: defmt frames (rzcobs-encoded, each ended by a zero
//! byte) written through one function, e.g. to a UART.
//!
//! A serial line carrying frames is binary: read it with `defmt-print -e
//! IMAGE` (or `defmt-decoder`, as the end-to-end tests do). The example
//! guests first print one plain-text line, [`LOG_BANNER`], and a zero
//! byte, so a reader can tell where the frames start (after firmware
//! text such as OpenSBI's banner).

/// The text line a guest writes before its first defmt frame (followed
/// by a zero byte that ends any partial frame).
pub const LOG_BANNER: &str =
    "qga-rs guest: the log below is defmt frames; decode it with `defmt-print -e IMAGE`\n";

/// Start a guest's log on `write` (e.g. a UART's): [`LOG_BANNER`], then
/// a zero byte that ends whatever came before (firmware text) as a
/// malformed frame, so the frames that follow decode.
pub fn begin(write: fn(&[u8])) {
    write(LOG_BANNER.as_bytes());
    write(&[0]);
}

/// Log at `info` level (defmt syntax); nothing without the `defmt`
/// feature.
macro_rules! log_info {
    ($($arg:tt)+) => {{
        #[cfg(feature = "defmt")]
        defmt::info!($($arg)+);
        #[cfg(not(feature = "defmt"))]
        $crate::guest::log::log_ignore!($($arg)+);
    }};
}

/// Log at `warn` level; see [`log_info`].
macro_rules! log_warn {
    ($($arg:tt)+) => {{
        #[cfg(feature = "defmt")]
        defmt::warn!($($arg)+);
        #[cfg(not(feature = "defmt"))]
        $crate::guest::log::log_ignore!($($arg)+);
    }};
}

/// Log at `error` level; see [`log_info`].
macro_rules! log_error {
    ($($arg:tt)+) => {{
        #[cfg(feature = "defmt")]
        defmt::error!($($arg)+);
        #[cfg(not(feature = "defmt"))]
        $crate::guest::log::log_ignore!($($arg)+);
    }};
}

/// Evaluate a log call's arguments by reference and drop them.
#[cfg_attr(feature = "defmt", allow(unused_macros))]
macro_rules! log_ignore {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $( let _ = &$arg; )*
    }};
}

#[allow(unused_imports)]
pub(crate) use {log_error, log_ignore, log_info, log_warn};

#[cfg(feature = "defmt")]
pub use frame::FrameLogger;

#[cfg(feature = "defmt")]
mod frame {
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// The state of a defmt global logger that writes frames through a
    /// function: the frame encoder and a guard against re-entry. Used by
    /// [`defmt_logger!`](crate::defmt_logger); a logger acquired again
    /// before its release (a panic while logging, an interrupt handler
    /// that logs) drops the inner frame instead of corrupting the outer.
    pub struct FrameLogger {
        taken: AtomicBool,
        /// Set while a re-entrant acquire is being ignored.
        nested: AtomicBool,
        encoder: UnsafeCell<defmt::Encoder>,
    }

    // SAFETY: `encoder` is touched only between `acquire` and `release`,
    // and `taken` lets one acquirer at a time through; a nested acquirer
    // only sets `nested`, and `write`/`release` do not touch the encoder
    // while it is set.
    unsafe impl Sync for FrameLogger {}

    impl Default for FrameLogger {
        fn default() -> Self {
            Self::new()
        }
    }

    impl FrameLogger {
        /// A logger with no frame open.
        pub const fn new() -> Self {
            FrameLogger {
                taken: AtomicBool::new(false),
                nested: AtomicBool::new(false),
                encoder: UnsafeCell::new(defmt::Encoder::new()),
            }
        }

        /// `defmt::Logger::acquire`: open a frame.
        pub fn acquire(&self, write: fn(&[u8])) {
            if self.taken.swap(true, Ordering::Acquire) {
                self.nested.store(true, Ordering::Relaxed);
                return;
            }
            // SAFETY: `taken` was false: this caller alone uses the
            // encoder until `release`.
            unsafe { (*self.encoder.get()).start_frame(write) }
        }

        /// `defmt::Logger::write`: add bytes to the open frame.
        ///
        /// # Safety
        ///
        /// Only between [`acquire`](Self::acquire) and
        /// [`release`](Self::release), as defmt calls it.
        pub unsafe fn write(&self, bytes: &[u8], write: fn(&[u8])) {
            if self.nested.load(Ordering::Relaxed) {
                return;
            }
            // SAFETY: the caller holds the logger (see `acquire`).
            unsafe { (*self.encoder.get()).write(bytes, write) }
        }

        /// `defmt::Logger::release`: close the frame.
        ///
        /// # Safety
        ///
        /// Only after [`acquire`](Self::acquire), as defmt calls it.
        pub unsafe fn release(&self, write: fn(&[u8])) {
            if self.nested.swap(false, Ordering::Relaxed) {
                return;
            }
            // SAFETY: the caller holds the logger (see `acquire`).
            unsafe { (*self.encoder.get()).end_frame(write) }
            self.taken.store(false, Ordering::Release);
        }
    }
}

/// Define the program's defmt global logger and timestamp: frames go to
/// `write` (a `fn(&[u8])`, e.g. a UART's blocking write), timestamps are
/// `uptime_us` (an expression of type `u64`, microseconds). Needs the
/// crate's `defmt` feature and `defmt` as a dependency of the program,
/// and `-Tdefmt.x` among its link arguments.
///
/// ```text
/// fn uart_write(bytes: &[u8]) { /* ... */ }
/// agent_baremetal::defmt_logger!(write: uart_write, uptime_us: platform::uptime_us());
/// ```
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! defmt_logger {
    (write: $write:path, uptime_us: $uptime:expr $(,)?) => {
        #[defmt::global_logger]
        struct GuestLogger;

        static GUEST_LOGGER: $crate::guest::log::FrameLogger =
            $crate::guest::log::FrameLogger::new();

        // SAFETY: `FrameLogger` keeps frames whole against re-entry (see
        // its docs); defmt calls `write` and `release` only after
        // `acquire`.
        unsafe impl defmt::Logger for GuestLogger {
            fn acquire() {
                GUEST_LOGGER.acquire($write);
            }
            unsafe fn flush() {}
            unsafe fn release() {
                // SAFETY: defmt releases only what it acquired.
                unsafe { GUEST_LOGGER.release($write) }
            }
            unsafe fn write(bytes: &[u8]) {
                // SAFETY: defmt writes only between acquire and release.
                unsafe { GUEST_LOGGER.write(bytes, $write) }
            }
        }

        defmt::timestamp!("{=u64:us}", $uptime);
    };
}

/// Define the program's panic handler: log the panic through defmt at
/// `error` level, then end the run with
/// [`exit::PANIC`](crate::guest::exit::PANIC) through `fail` (a
/// `fn(u16) -> !`, e.g. the platform's). Needs the crate's `defmt`
/// feature and `defmt` as a dependency of the program.
///
/// ```text
/// agent_baremetal::defmt_panic_handler!(fail: platform::fail);
/// ```
#[cfg(feature = "defmt")]
#[macro_export]
macro_rules! defmt_panic_handler {
    (fail: $fail:path $(,)?) => {
        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            defmt::error!("panic: {}", defmt::Display2Format(info));
            $fail($crate::guest::exit::PANIC)
        }
    };
}
