//! Links each example guest with its link script and defmt's `defmt.x` —
//! only that binary, and only when building for its bare-metal target;
//! host builds are untouched: `virt-guest` with `virt.ld` on riscv64,
//! `q35-guest` with `q35.ld` on x86_64.

fn main() {
    println!("cargo:rerun-if-changed=virt.ld");
    println!("cargo:rerun-if-changed=q35.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    // A link map per guest, from which scripts/guest_image_size.py tells
    // the agent's code from the rest by crate.
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    if arch == "riscv64" && os == "none" {
        println!("cargo:rustc-link-arg-bin=virt-guest=-T{dir}/virt.ld");
        println!("cargo:rustc-link-arg-bin=virt-guest=-Tdefmt.x");
        println!("cargo:rustc-link-arg-bin=virt-guest=-Map={out}/virt-guest.map");
    }
    if arch == "x86_64" && os == "none" {
        println!("cargo:rustc-link-arg-bin=q35-guest=-T{dir}/q35.ld");
        println!("cargo:rustc-link-arg-bin=q35-guest=-Tdefmt.x");
        // A fixed-address executable: QEMU's PVH loader places segments at
        // their link addresses and the 32-bit entry uses absolute ones.
        println!("cargo:rustc-link-arg-bin=q35-guest=--no-pie");
        println!("cargo:rustc-link-arg-bin=q35-guest=-Map={out}/q35-guest.map");
    }
}
