//! # agent-baremetal
//!
//! Running agent-core in a guest without an operating system. This crate
//! will hold the virtio console driver with named ports (MULTIPORT) and a
//! bootable example guest; today it carries the `footprint` example, the
//! smallest program that links the whole agent, used to measure agent-core's
//! code size on `thumbv7em-none-eabihf` and `riscv64gc-unknown-none-elf`.
#![no_std]
