//! Links the `virt-guest` binary with `virt.ld` and defmt's `defmt.x` — only
//! that binary, and only when building for bare-metal riscv64; host builds
//! are untouched.

fn main() {
    println!("cargo:rerun-if-changed=virt.ld");
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "riscv64" && os == "none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bin=virt-guest=-T{dir}/virt.ld");
        println!("cargo:rustc-link-arg-bin=virt-guest=-Tdefmt.x");
    }
}
