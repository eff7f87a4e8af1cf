//! The smallest program that links the whole agent (core commands, all
//! error paths), for measuring agent-core's code size on bare-metal
//! targets:
//!
//! ```text
//! cargo build -p agent-baremetal --example footprint \
//!     --target thumbv7em-none-eabihf --profile min-size
//! size target/thumbv7em-none-eabihf/min-size/examples/footprint
//! ```
//!
//! On the host it builds as an ordinary program that runs the same code.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

use agent_core::{Agent, CoreCommands, Policy};
use core::hint::black_box;

/// A sink that keeps every byte alive without storing it.
struct Sink;

impl embedded_io::ErrorType for Sink {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        black_box(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A request; the agent frames it in a 1 KiB buffer, the caller's choice.
static INPUT: [u8; 62] = *b"{\"execute\": \"guest-sync-delimited\", \"arguments\": {\"id\": 1}}   ";

fn run() {
    let mut agent = Agent::new([0u8; 1024], CoreCommands::new(), Policy::new());
    // The input is opaque to the optimiser, so every path stays linked.
    let input = black_box(&INPUT);
    let _ = agent.feed(input, &mut Sink);
}

#[cfg(target_os = "none")]
#[panic_handler]
#[allow(clippy::empty_loop)] // nothing to do but stop: no OS to sleep with
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// Entry point for the linker.
#[cfg(target_os = "none")]
#[no_mangle]
#[allow(clippy::empty_loop)] // nothing to do but stop: no OS to sleep with
pub extern "C" fn _start() -> ! {
    run();
    loop {}
}

#[cfg(not(target_os = "none"))]
fn main() {
    run();
}
