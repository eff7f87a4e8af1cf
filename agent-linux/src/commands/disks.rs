//! `guest-get-disks` (from `/sys/block`) and `guest-get-diskstats` (from
//! `/proc/diskstats`).
//!
//! Bus addresses are filled in for virtio-blk disks (the PCI function of
//! the virtio device, bus/target/unit 0, `dev` and `serial`); other
//! controllers (SCSI, IDE, SATA, NVMe, CCW) get no `address`, where
//! qemu-ga walks their sysfs topology.

use std::path::Path;

use agent_core::args::Args;

use super::error::CmdResult;
use super::{Error, Obj, Out, SystemPaths};

/// The `/dev` name of a sysfs block device: `DEVNAME` from its uevent,
/// else its directory name.
fn dev_name(dir: &Path) -> Option<String> {
    let uevent = std::fs::read_to_string(dir.join("uevent")).unwrap_or_default();
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_owned)
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))?;
    Some(format!("/dev/{name}"))
}

/// The `ID_SERIAL` udev recorded for a sysfs block device, as qemu-ga
/// reads it through libudev.
pub fn udev_serial(sys: &SystemPaths, dir: &Path) -> Option<String> {
    let devno = std::fs::read_to_string(dir.join("dev")).ok()?;
    let data = std::fs::read_to_string(sys.udev_data.join(format!("b{}", devno.trim()))).ok()?;
    data.lines()
        .find_map(|l| l.strip_prefix("E:ID_SERIAL="))
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

/// The bus address of the disk behind a sysfs block device (a disk or a
/// partition), if it is a virtio-blk disk.
pub fn block_address(sys: &SystemPaths, dir: &Path) -> Option<Out> {
    let real = std::fs::canonicalize(dir).ok()?;
    if real.to_string_lossy().contains("/devices/virtual/") {
        return None;
    }
    let dev = dev_name(&real)?;
    virtio_address(&real, &dev, udev_serial(sys, &real))
}

/// `domain:bus:slot.function` of a PCI sysfs path component.
fn pci_address(component: &str) -> Option<Out> {
    let (domain, rest) = component.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, function) = rest.split_once('.')?;
    let hex = |s: &str| i64::from_str_radix(s, 16).ok();
    Some(
        Obj::new()
            .int("domain", hex(domain)?)
            .int("bus", hex(bus)?)
            .int("slot", hex(slot)?)
            .int("function", hex(function)?)
            .into(),
    )
}

/// The address of a virtio-blk disk from its sysfs path.
pub fn virtio_address(real: &Path, dev: &str, serial: Option<String>) -> Option<Out> {
    let text = real.to_string_lossy();
    let parts: Vec<&str> = text.split('/').collect();
    let virtio = parts.iter().position(|p| p.starts_with("virtio"))?;
    let pci = parts.get(virtio.checked_sub(1)?)?;
    Some(
        Obj::new()
            .put("pci-controller", pci_address(pci)?)
            .str("bus-type", "virtio")
            .int("bus", 0)
            .int("target", 0)
            .int("unit", 0)
            .opt("serial", serial.map(Out::Str))
            .str("dev", dev)
            .into(),
    )
}

fn dependencies(dir: &Path) -> Vec<Out> {
    let mut deps = Vec::new();
    for entry in std::fs::read_dir(dir.join("slaves"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(name) = dev_name(&entry.path()) {
            deps.insert(0, Out::Str(name));
        }
    }
    deps
}

/// `guest-get-disks` → `[{name, partition, dependencies?, address?,
/// alias?}]`, last disk first as qemu-ga lists them.
pub fn get_disks<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let block = sys.sysfs.join("block");
    let entries = std::fs::read_dir(&block)
        .map_err(|e| Error::os(format!("Can't open directory \"{}\"", block.display()), &e))?;
    let mut list: Vec<Out> = Vec::new();
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        let dir = entry.path();
        match std::fs::read_to_string(dir.join("size")) {
            Ok(size) if size != "0\n" => {}
            _ => continue,
        }
        let Some(dev) = dev_name(&dir) else { continue };
        let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let virtual_disk = real.to_string_lossy().contains("/devices/virtual/");
        let alias = std::fs::read_to_string(dir.join("dm/name"))
            .ok()
            .map(|s| s.trim_end().to_owned())
            .filter(|s| !s.is_empty());
        let serial = udev_serial(sys, &dir);
        let address = if virtual_disk {
            None
        } else {
            virtio_address(&real, &dev, serial)
        };
        let disk = Obj::new()
            .str("name", dev.clone())
            .bool("partition", false)
            .put("dependencies", Out::List(dependencies(&dir)))
            .opt("address", address)
            .opt("alias", alias.map(Out::Str));
        list.insert(0, disk.into());
        let disk_name = entry.file_name().to_string_lossy().into_owned();
        for part in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let pname = part.file_name().to_string_lossy().into_owned();
            if !pname.starts_with(&disk_name) || !part.path().join("partition").exists() {
                continue;
            }
            let Some(pdev) = dev_name(&part.path()) else {
                continue;
            };
            list.insert(
                0,
                Obj::new()
                    .str("name", pdev)
                    .bool("partition", true)
                    .put("dependencies", Out::List(vec![Out::Str(dev.clone())]))
                    .into(),
            );
        }
    }
    Ok(Out::List(list))
}

/// `/proc/diskstats` lines as guest-get-diskstats reports them.
pub fn parse_diskstats(text: &str) -> Vec<Out> {
    let mut list = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(major), Some(minor), Some(name)) = (
            f.first().and_then(|s| s.parse::<i64>().ok()),
            f.get(1).and_then(|s| s.parse::<i64>().ok()),
            f.get(2),
        ) else {
            continue;
        };
        let n: Vec<i64> = f[3..]
            .iter()
            .map_while(|s| s.parse::<u64>().ok())
            .map(|v| v as i64)
            .collect();
        let fields = n.len() + 3;
        if fields < 7 {
            continue;
        }
        let v = |i: usize| Out::Int(n.get(i).copied().unwrap_or(0));
        let mut stats = Obj::new();
        if fields == 7 {
            stats = stats
                .put("read-sectors", v(1))
                .put("read-ios", v(0))
                .put("write-sectors", v(3))
                .put("write-ios", v(2));
        }
        if fields >= 14 {
            stats = stats
                .put("read-sectors", v(2))
                .put("read-ios", v(0))
                .put("read-merges", v(1))
                .put("write-sectors", v(6))
                .put("write-ios", v(4))
                .put("write-merges", v(5));
        }
        if fields >= 18 {
            stats = stats
                .put("discard-sectors", v(13))
                .put("discard-ios", v(11))
                .put("discard-merges", v(12));
        }
        if fields >= 20 {
            stats = stats.put("flush-ios", v(15));
        }
        if fields >= 14 {
            stats = stats.put("read-ticks", v(3)).put("write-ticks", v(7));
        }
        if fields >= 18 {
            stats = stats.put("discard-ticks", v(14));
        }
        if fields >= 20 {
            stats = stats.put("flush-ticks", v(16));
        }
        if fields >= 14 {
            stats = stats
                .put("ios-pgr", v(8))
                .put("total-ticks", v(9))
                .put("weight-ticks", v(10));
        }
        list.push(
            Obj::new()
                .str("name", *name)
                .int("major", major)
                .int("minor", minor)
                .put("stats", stats.into())
                .into(),
        );
    }
    list
}

/// `guest-get-diskstats` → `[{name, major, minor, stats}]`.
pub fn get_diskstats<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let path = sys.procfs.join("diskstats");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::os(format!("open(\"{}\")", path.display()), &e))?;
    Ok(Out::List(parse_diskstats(&text)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::*;

    #[test]
    fn disks_and_stats() {
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-get-disks"}"#);
        for d in v["return"].as_array().unwrap() {
            assert!(d["name"].as_str().unwrap().starts_with("/dev/"));
            assert!(d["partition"].is_boolean());
        }
        let v = t.json(r#"{"execute": "guest-get-diskstats"}"#);
        assert!(v["return"].is_array());
        let s = parse_diskstats("   7       0 loop0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n");
        let mut text = Vec::new();
        Out::List(s)
            .write(&mut agent_core::writer::JsonWriter::new(&mut text))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v[0]["stats"]["read-ios"], 1);
        assert_eq!(v[0]["stats"]["flush-ticks"], 17);
        assert_eq!(v[0]["major"], 7);
        assert_eq!(
            virtio_address(
                Path::new("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"),
                "/dev/vda",
                None
            ),
            Some(
                Obj::new()
                    .put(
                        "pci-controller",
                        Obj::new()
                            .int("domain", 0)
                            .int("bus", 0)
                            .int("slot", 2)
                            .int("function", 0)
                            .into()
                    )
                    .str("bus-type", "virtio")
                    .int("bus", 0)
                    .int("target", 0)
                    .int("unit", 0)
                    .str("dev", "/dev/vda")
                    .into()
            )
        );
    }
}
