//! The one thing the guests read from a flattened device tree: the boot
//! arguments (`/chosen/bootargs`, QEMU's `-append`). A bounds-checked
//! walk of the structure block (devicetree spec §5); a malformed tree
//! yields `None`.

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

/// The C string at the start of `bytes`, without its NUL.
fn c_str(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == 0)?;
    bytes.get(..end)
}

/// Round up to the structure block's 4-byte alignment.
fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// The total size the header of the tree at `header` declares (read the
/// first 8 bytes, then view that many).
pub fn total_size(header: &[u8]) -> Option<usize> {
    if be32(header, 0)? != MAGIC {
        return None;
    }
    usize::try_from(be32(header, 4)?).ok()
}

/// `/chosen/bootargs` of the tree `dtb` (its whole `total_size` bytes).
pub fn chosen_bootargs(dtb: &[u8]) -> Option<&str> {
    let size = total_size(dtb)?;
    let dtb = dtb.get(..size)?;
    let structs = usize::try_from(be32(dtb, 8)?).ok()?;
    let strings = usize::try_from(be32(dtb, 12)?).ok()?;
    let mut at = structs;
    let mut depth = 0usize;
    let mut in_chosen = false;
    loop {
        let token = be32(dtb, at)?;
        at = at.checked_add(4)?;
        match token {
            BEGIN_NODE => {
                let name = c_str(dtb.get(at..)?)?;
                at = align4(at.checked_add(name.len())?.checked_add(1)?)?;
                depth = depth.checked_add(1)?;
                // The root is depth 1, its children depth 2.
                if depth == 2 {
                    in_chosen = name == b"chosen";
                }
            }
            END_NODE => {
                depth = depth.checked_sub(1)?;
                if depth < 2 {
                    in_chosen = false;
                }
            }
            PROP => {
                let len = usize::try_from(be32(dtb, at)?).ok()?;
                let name_at = usize::try_from(be32(dtb, at.checked_add(4)?)?).ok()?;
                let value_at = at.checked_add(8)?;
                let value = dtb.get(value_at..value_at.checked_add(len)?)?;
                at = align4(value_at.checked_add(len)?)?;
                let name = c_str(dtb.get(strings.checked_add(name_at)?..)?)?;
                if in_chosen && depth == 2 && name == b"bootargs" {
                    let text = c_str(value).unwrap_or(value);
                    return core::str::from_utf8(text).ok();
                }
            }
            NOP => {}
            END => return None,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree: / { model; chosen { stdout-path; bootargs = `args`; }; cpus { bootargs = "no"; }; }.
    fn tree(args: Option<&str>) -> Vec<u8> {
        let strings = b"model\0bootargs\0stdout-path\0";
        let mut s = Vec::new();
        let word = |s: &mut Vec<u8>, w: u32| s.extend_from_slice(&w.to_be_bytes());
        let node = |s: &mut Vec<u8>, name: &str| {
            s.extend_from_slice(&BEGIN_NODE.to_be_bytes());
            s.extend_from_slice(name.as_bytes());
            s.push(0);
            while !s.len().is_multiple_of(4) {
                s.push(0);
            }
        };
        let prop = |s: &mut Vec<u8>, name_off: u32, value: &[u8]| {
            s.extend_from_slice(&PROP.to_be_bytes());
            s.extend_from_slice(&(value.len() as u32).to_be_bytes());
            s.extend_from_slice(&name_off.to_be_bytes());
            s.extend_from_slice(value);
            while !s.len().is_multiple_of(4) {
                s.push(0);
            }
        };
        node(&mut s, "");
        prop(&mut s, 0, b"riscv-virtio,qemu\0");
        word(&mut s, NOP);
        node(&mut s, "chosen");
        prop(&mut s, 15, b"/soc/serial@10000000\0");
        if let Some(args) = args {
            prop(&mut s, 6, &[args.as_bytes(), b"\0"].concat());
        }
        word(&mut s, END_NODE);
        node(&mut s, "cpus");
        prop(&mut s, 6, b"no\0");
        word(&mut s, END_NODE);
        word(&mut s, END_NODE);
        word(&mut s, END);
        let header_len = 40u32;
        let structs = header_len;
        let strings_at = structs + s.len() as u32;
        let total = strings_at + strings.len() as u32;
        let mut dtb = Vec::new();
        for w in [
            MAGIC,
            total,
            structs,
            strings_at,
            0,
            17,
            16,
            0,
            strings.len() as u32,
            s.len() as u32,
        ] {
            dtb.extend_from_slice(&w.to_be_bytes());
        }
        dtb.extend_from_slice(&s);
        dtb.extend_from_slice(strings);
        dtb
    }

    #[test]
    fn finds_bootargs_in_chosen_only() {
        let dtb = tree(Some("qga.wait=poll console=x"));
        assert_eq!(total_size(&dtb), Some(dtb.len()));
        assert_eq!(chosen_bootargs(&dtb), Some("qga.wait=poll console=x"));
        assert_eq!(chosen_bootargs(&tree(None)), None, "not the one in /cpus");
        assert_eq!(chosen_bootargs(&tree(Some(""))), Some(""));
    }

    #[test]
    fn malformed_trees_give_none() {
        let dtb = tree(Some("a"));
        for cut in [0, 7, 40, 60, dtb.len() - 1] {
            assert_eq!(chosen_bootargs(&dtb[..cut]), None, "cut at {cut}");
        }
        let mut bad = dtb.clone();
        bad[0] = 0;
        assert_eq!(chosen_bootargs(&bad), None);
        // A property length pointing past the end.
        let mut long = dtb.clone();
        let at = long
            .windows(4)
            .position(|w| w == PROP.to_be_bytes())
            .unwrap();
        long[at + 4..at + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(chosen_bootargs(&long), None);
        // Every single-byte corruption is handled without a panic.
        for i in 0..dtb.len() {
            let mut c = dtb.clone();
            c[i] ^= 0xff;
            let _ = chosen_bootargs(&c);
        }
    }
}
