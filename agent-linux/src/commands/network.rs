//! `guest-network-get-interfaces` (netlink address dump, sysfs hardware
//! addresses, `/proc/net/dev` statistics) and `guest-network-get-route`
//! (`/proc/net/route`, `/proc/net/ipv6_route`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use agent_core::args::Args;
use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::error::CmdResult;
use super::{Error, Obj, Out, SystemPaths};

/// One address of an interface.
#[derive(Clone, Debug, PartialEq)]
pub struct IfAddr {
    /// Interface name (an IPv4 label such as `eth0:1` when set).
    pub name: String,
    /// The address.
    pub addr: std::net::IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

const RTM_GETADDR: u16 = 22;
const RTM_NEWADDR: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse the RTM_NEWADDR messages of a dump reply; `Some(true)` once
/// NLMSG_DONE was seen.
fn parse_addr_messages(
    mut buf: &[u8],
    names: &HashMap<u32, String>,
    out: &mut Vec<IfAddr>,
) -> Result<bool, i32> {
    while buf.len() >= 16 {
        let len = u32_at(buf, 0).unwrap_or(0) as usize;
        let kind = u16_at(buf, 4).unwrap_or(0);
        if len < 16 || len > buf.len() {
            break;
        }
        let msg = &buf[16..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = u32_at(msg, 0).map_or(0, |c| c as i32);
                if code != 0 {
                    return Err(-code);
                }
            }
            RTM_NEWADDR if msg.len() >= 8 => {
                let family = msg[0];
                let prefix = msg[1];
                let index = u32_at(msg, 4).unwrap_or(0);
                let mut attrs = &msg[8..];
                let (mut address, mut local, mut label) = (None, None, None);
                while attrs.len() >= 4 {
                    let alen = u16_at(attrs, 0).unwrap_or(0) as usize;
                    let atype = u16_at(attrs, 2).unwrap_or(0);
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    let data = &attrs[4..alen];
                    match atype {
                        IFA_ADDRESS => address = Some(data),
                        IFA_LOCAL => local = Some(data),
                        IFA_LABEL => {
                            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                            label = Some(String::from_utf8_lossy(&data[..end]).into_owned());
                        }
                        _ => {}
                    }
                    attrs = attrs.get((alen + 3) & !3..).unwrap_or_default();
                }
                let addr = match family {
                    2 => local
                        .or(address)
                        .and_then(|d| <[u8; 4]>::try_from(d).ok())
                        .map(|a| Ipv4Addr::from(a).into()),
                    10 => address
                        .and_then(|d| <[u8; 16]>::try_from(d).ok())
                        .map(|a| Ipv6Addr::from(a).into()),
                    _ => None,
                };
                if let Some(addr) = addr {
                    let name = match (family, label) {
                        (2, Some(l)) => l,
                        _ => names.get(&index).cloned().unwrap_or_default(),
                    };
                    out.push(IfAddr { name, addr, prefix });
                }
            }
            _ => {}
        }
        buf = buf.get((len + 3) & !3..).unwrap_or_default();
    }
    Ok(false)
}

/// Every address of every interface, IPv4 first, as the kernel dumps them.
fn addresses(names: &HashMap<u32, String>) -> Result<Vec<IfAddr>, Error> {
    let fail = |e: rustix::io::Errno| Error::errno("getifaddrs failed", e);
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(fail)?;
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&24u32.to_ne_bytes());
    req.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]);
    let kernel = netlink::SocketAddrNetlink::new(0, 0);
    rustix::net::sendto(&fd, &req, SendFlags::empty(), &kernel).map_err(fail)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (n, _) = rustix::net::recv(&fd, &mut buf, RecvFlags::empty()).map_err(fail)?;
        if n == 0 {
            break;
        }
        match parse_addr_messages(buf.get(..n).unwrap_or_default(), names, &mut out) {
            Ok(true) => break,
            Ok(false) => {}
            Err(errno) => return Err(Error::Os("getifaddrs failed".into(), errno)),
        }
    }
    Ok(out)
}

/// The interfaces of `/sys/class/net` by ifindex.
fn links(sys: &SystemPaths) -> Vec<(u32, String)> {
    let mut links: Vec<(u32, String)> = std::fs::read_dir(sys.sysfs.join("class/net"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let index = std::fs::read_to_string(e.path().join("ifindex")).ok()?;
            Some((index.trim().parse().ok()?, name))
        })
        .collect();
    links.sort();
    links
}

/// The first six bytes of an interface's hardware address, as qemu-ga's
/// SIOCGIFHWADDR prints them.
fn hardware_address(sys: &SystemPaths, name: &str) -> Option<String> {
    let base = name.split(':').next().unwrap_or(name);
    let text =
        std::fs::read_to_string(sys.sysfs.join("class/net").join(base).join("address")).ok()?;
    let mut bytes: Vec<u8> = text
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    bytes.resize(6, 0);
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// `/proc/net/dev` statistics of `name`.
fn statistics(dev: &str, name: &str) -> Option<Out> {
    for line in dev.lines().skip(2) {
        let (ifname, rest) = line.split_once(':')?;
        if ifname.trim() != name {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let get = |i: usize| Out::UInt(v.get(i).copied().unwrap_or(0));
        if v.len() < 12 {
            return None;
        }
        return Some(
            Obj::new()
                .put("rx-bytes", get(0))
                .put("rx-packets", get(1))
                .put("rx-errs", get(2))
                .put("rx-dropped", get(3))
                .put("tx-bytes", get(8))
                .put("tx-packets", get(9))
                .put("tx-errs", get(10))
                .put("tx-dropped", get(11))
                .into(),
        );
    }
    None
}

struct Interface {
    name: String,
    hardware: Option<String>,
    addresses: Vec<Out>,
    statistics: Option<Out>,
}

/// `guest-network-get-interfaces` → `[{name, hardware-address?,
/// ip-addresses?, statistics?}]`.
pub fn get_interfaces<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let links = links(sys);
    let names: HashMap<u32, String> = links.iter().cloned().collect();
    let addrs = addresses(&names)?;
    let dev = std::fs::read_to_string(sys.procfs.join("net/dev")).unwrap_or_default();
    let mut list: Vec<Interface> = Vec::new();
    let find = |list: &mut Vec<Interface>, name: &str| -> usize {
        if let Some(i) = list.iter().position(|i| i.name == name) {
            return i;
        }
        list.push(Interface {
            name: name.to_owned(),
            hardware: hardware_address(sys, name),
            addresses: Vec::new(),
            statistics: None,
        });
        list.len() - 1
    };
    for (_, name) in &links {
        find(&mut list, name);
    }
    for a in addrs {
        let i = find(&mut list, &a.name);
        let (text, kind) = match a.addr {
            std::net::IpAddr::V4(v4) => (v4.to_string(), "ipv4"),
            std::net::IpAddr::V6(v6) => (v6.to_string(), "ipv6"),
        };
        if let Some(iface) = list.get_mut(i) {
            iface.addresses.push(
                Obj::new()
                    .str("ip-address", text)
                    .str("ip-address-type", kind)
                    .int("prefix", a.prefix.into())
                    .into(),
            );
            if iface.statistics.is_none() {
                iface.statistics = statistics(&dev, &iface.name);
            }
        }
    }
    Ok(Out::List(
        list.into_iter()
            .map(|i| {
                Obj::new()
                    .str("name", i.name)
                    .opt("hardware-address", i.hardware.map(Out::Str))
                    .opt(
                        "ip-addresses",
                        (!i.addresses.is_empty()).then_some(Out::List(i.addresses)),
                    )
                    .opt("statistics", i.statistics)
                    .into()
            })
            .collect(),
    ))
}

fn hex_v4(field: &str) -> Option<String> {
    let v = u32::from_str_radix(field, 16).ok()?;
    Some(Ipv4Addr::from(v.to_le_bytes()).to_string())
}

fn hex_v6(field: &str) -> Option<String> {
    if field.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(field.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(Ipv6Addr::from(bytes).to_string())
}

/// The routes of `/proc/net/route` and `/proc/net/ipv6_route` texts.
pub fn parse_routes(v4: &str, v6: &str) -> Vec<Out> {
    let mut routes = Vec::new();
    for line in v4.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 11 {
            continue;
        }
        let int = |i: usize| f.get(i).and_then(|s| s.parse::<i32>().ok());
        let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
        let (Some(dest), Some(gw), Some(mask), Some(flags)) =
            (hex_v4(f[1]), hex_v4(f[2]), hex_v4(f[7]), hex(3))
        else {
            continue;
        };
        let (Some(refcnt), Some(use_), Some(metric), Some(mtu), Some(window), Some(irtt)) =
            (int(4), int(5), int(6), int(8), int(9), int(10))
        else {
            continue;
        };
        routes.push(
            Obj::new()
                .str("iface", f[0])
                .str("destination", dest)
                .int("metric", metric.into())
                .str("gateway", gw)
                .str("mask", mask)
                .int("irtt", irtt.into())
                .int("flags", flags.into())
                .int("refcnt", refcnt.into())
                .int("use", use_.into())
                .int("window", window.into())
                .int("mtu", mtu.into())
                .int("version", 4)
                .into(),
        );
    }
    for line in v6.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let hex = |i: usize| f.get(i).and_then(|s| u32::from_str_radix(s, 16).ok());
        let (Some(dest), Some(dlen), Some(src), Some(slen), Some(next)) =
            (hex_v6(f[0]), hex(1), hex_v6(f[2]), hex(3), hex_v6(f[4]))
        else {
            continue;
        };
        let (Some(metric), Some(refcnt), Some(use_), Some(flags)) =
            (hex(5), hex(6), hex(7), hex(8))
        else {
            continue;
        };
        routes.push(
            Obj::new()
                .str("iface", f[9])
                .str("destination", dest)
                .int("metric", i64::from(metric as i32))
                .int("flags", flags.into())
                .int("refcnt", refcnt.into())
                .int("use", use_.into())
                .str("desprefixlen", dlen.to_string())
                .str("source", src)
                .str("srcprefixlen", slen.to_string())
                .str("nexthop", next)
                .int("version", 6)
                .into(),
        );
    }
    routes
}

/// `guest-network-get-route` → `[GuestNetworkRoute]`.
pub fn get_route<'a>(args: &Args<'a>, sys: &SystemPaths) -> CmdResult<'a> {
    args.finish()?;
    let v4 = std::fs::read_to_string(sys.procfs.join("net/route")).unwrap_or_default();
    let v6 = std::fs::read_to_string(sys.procfs.join("net/ipv6_route")).unwrap_or_default();
    Ok(Out::List(parse_routes(&v4, &v6)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::Harness;
    use super::*;

    #[test]
    fn interfaces_have_lo() {
        let mut t = Harness::new();
        let v = t.json(r#"{"execute": "guest-network-get-interfaces"}"#);
        let list = v["return"].as_array().unwrap_or_else(|| panic!("{v}"));
        let lo = list.iter().find(|i| i["name"] == "lo").unwrap();
        assert_eq!(lo["hardware-address"], "00:00:00:00:00:00");
        let addrs = lo["ip-addresses"].as_array().unwrap();
        assert!(addrs.iter().any(|a| a["ip-address"] == "127.0.0.1"
            && a["prefix"] == 8
            && a["ip-address-type"] == "ipv4"));
        assert!(lo["statistics"]["rx-bytes"].is_u64());
        let out = t.call(r#"{"execute": "guest-network-get-interfaces"}"#);
        assert!(out.starts_with(r#"{"return": [{"name": "lo", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}"#), "{out}");
    }

    #[test]
    fn routes() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        let v6 = "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 00200001       lo\n";
        let r = parse_routes(v4, v6);
        let mut text = Vec::new();
        Out::List(r)
            .write(&mut agent_core::writer::JsonWriter::new(&mut text))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v[0]["gateway"], "192.0.2.1");
        assert_eq!(v[0]["destination"], "0.0.0.0");
        assert_eq!(v[1]["destination"], "::1");
        assert_eq!(v[1]["desprefixlen"], "128");
        assert_eq!(v[1]["iface"], "lo");
        let mut t = Harness::new();
        assert!(t.json(r#"{"execute": "guest-network-get-route"}"#)["return"].is_array());
    }
}
