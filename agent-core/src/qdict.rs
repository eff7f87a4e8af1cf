//! The member order of QEMU's `QDict`, which decides the order in which
//! qemu-ga checks request members and writes objects back.
//!
//! A `QDict` is a hash table of 512 buckets keyed by `tdb_hash`; new
//! entries go to the head of their bucket's list, and iteration walks the
//! buckets in order. So an object's members come out sorted by bucket, and
//! within a bucket in reverse order of insertion.

use crate::json::{JsonStr, Value};

/// Buckets in a `QDict` (`QDICT_BUCKET_MAX`).
pub const BUCKETS: u32 = 512;

/// QEMU's `tdb_hash` over a key's stored (modified UTF-8) bytes, in one
/// pass: its length term is added at the end.
pub fn tdb_hash(key: impl Iterator<Item = u8>) -> u32 {
    let mut len = 0u32;
    let mut value = 0u32;
    for byte in key {
        let shift = len.wrapping_mul(5) % 24;
        value = value.wrapping_add(u32::from(byte) << shift);
        len = len.wrapping_add(1);
    }
    let value = value.wrapping_add(0x238F_13AFu32.wrapping_mul(len));
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345)
}

/// The bucket of a key.
pub fn bucket(key: impl Iterator<Item = u8>) -> u32 {
    tdb_hash(key) % BUCKETS
}

#[inline(never)]
pub(crate) fn bucket_of(key: &JsonStr<'_>) -> u32 {
    bucket(key.bytes())
}

/// How many same-bucket members are reordered on the stack; more collide
/// only in crafted input and are found by re-walking.
const STACKED: usize = 4;

/// Objects of up to this many members are ordered in one walk, on the
/// stack; larger ones are walked once per occupied bucket.
const SMALL: usize = 8;

/// A member's place: its bucket, its position in the object, and the byte
/// offset of its key in the object's text (8 bytes, so that ordering an
/// object costs little stack at each level of a nested id).
#[derive(Clone, Copy)]
struct Slot {
    bucket: u16,
    index: u8,
    offset: u32,
}

impl Slot {
    /// QDict order: by bucket, and within one, the last inserted first.
    fn comes_before(self, other: Slot) -> bool {
        (self.bucket, core::cmp::Reverse(self.index))
            < (other.bucket, core::cmp::Reverse(other.index))
    }
}

/// The members of a small object (at most [`SMALL`] members, under 64
/// KiB), as offsets in its text (for [`Value::member_at`]) in `QDict`
/// order: 17 bytes, so that a level of a nested id being written back
/// holds little stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmallOrder {
    offsets: [u16; SMALL],
    count: u8,
}

impl SmallOrder {
    /// The offsets, in order.
    pub(crate) fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.offsets
            .iter()
            .take(usize::from(self.count))
            .map(|&o| o as usize)
    }
}

/// The order of `object`'s members, if it has at most [`SMALL`] of them
/// (`None` for larger objects, see [`for_each_member_large`]), and its first
/// member (so that a lone member needs no second look).
#[inline(never)]
#[allow(clippy::type_complexity)]
pub(crate) fn small_order<'a>(
    object: &Value<'a>,
) -> Option<(SmallOrder, Option<(JsonStr<'a>, Value<'a>)>)> {
    // One walk noting where each member starts, then a selection in
    // (bucket, reverse insertion) order.
    let mut slots = [Slot {
        bucket: 0,
        index: 0,
        offset: 0,
    }; SMALL];
    let mut count = 0u8;
    let mut first = None;
    let mut members = object.members();
    loop {
        let offset = members.offset();
        let Some((key, value)) = members.next() else {
            break;
        };
        first.get_or_insert((key, value));
        let slot = slots.get_mut(usize::from(count))?;
        *slot = Slot {
            bucket: bucket_of(&key) as u16,
            index: count,
            offset: u32::try_from(offset).ok()?,
        };
        count = count.saturating_add(1);
    }
    let slots = slots.get(..usize::from(count)).unwrap_or_default();
    let mut order = SmallOrder {
        offsets: [0; SMALL],
        count,
    };
    let mut done = 0u8;
    for place in order.offsets.iter_mut().take(usize::from(count)) {
        let next = slots
            .iter()
            .filter(|s| done & 1u8.wrapping_shl(u32::from(s.index)) == 0)
            .fold(None, |best: Option<Slot>, &s| match best {
                Some(b) if !s.comes_before(b) => Some(b),
                _ => Some(s),
            });
        let Some(slot) = next else { break };
        done |= 1u8.wrapping_shl(u32::from(slot.index));
        *place = u16::try_from(slot.offset).ok()?;
    }
    Some((order, first))
}

#[cfg(test)]
/// Call `f` on each member of `object` in `QDict` iteration order. Stops at
/// the first error `f` returns.
pub fn for_each_member<'a, E>(
    object: &Value<'a>,
    mut f: impl FnMut(JsonStr<'a>, Value<'a>) -> Result<(), E>,
) -> Result<(), E> {
    let Some((order, first)) = small_order(object) else {
        // One copy of the large-object walk serves every caller: it takes
        // a `dyn` callback that says whether to go on.
        let mut result = Ok(());
        for_each_member_large(object, &mut |key, value| match f(key, value) {
            Ok(()) => true,
            Err(e) => {
                result = Err(e);
                false
            }
        });
        return result;
    };
    if order.count == 1 {
        if let Some((key, value)) = first {
            return f(key, value);
        }
    }
    for offset in order.offsets() {
        if let Some((key, value)) = object.member_at(offset) {
            f(key, value)?;
        }
    }
    Ok(())
}

// Not inlined: its scratch would otherwise sit in every level of a nested
// id's reordering, not only in the (rare) large objects.
#[inline(never)]
pub(crate) fn for_each_member_large<'a>(
    object: &Value<'a>,
    f: &mut dyn FnMut(JsonStr<'a>, Value<'a>) -> bool,
) {
    let mut present = [0u64; (BUCKETS / 64) as usize];
    for (key, _) in object.members() {
        let b = bucket_of(&key);
        if let Some(word) = present.get_mut((b / 64) as usize) {
            *word |= 1 << (b % 64);
        }
    }
    for (w, &word) in present.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let b = (w as u32)
                .wrapping_mul(64)
                .wrapping_add(bits.trailing_zeros());
            bits &= bits.wrapping_sub(1);
            // Offsets of this bucket's members, in insertion order.
            let mut stacked = [0u32; STACKED];
            let mut count = 0usize;
            for (offset, key) in object.keys_with_offsets() {
                if bucket_of(&key) != b {
                    continue;
                }
                if let (Some(slot), Ok(offset)) = (stacked.get_mut(count), u32::try_from(offset)) {
                    *slot = offset;
                }
                count = count.saturating_add(1);
            }
            if count <= STACKED {
                for &offset in stacked.iter().take(count).rev() {
                    if let Some((key, value)) = object.member_at(offset as usize) {
                        if !f(key, value) {
                            return;
                        }
                    }
                }
            } else {
                // Crafted collisions: emit the n-th from last by walking again.
                for n in (0..count).rev() {
                    if let Some((key, value)) =
                        object.members().filter(|(k, _)| bucket_of(k) == b).nth(n)
                    {
                        if !f(key, value) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used
    )]
    use super::*;

    /// The module's example.
    #[test]
    fn doc_example() {
        use crate::qdict::bucket;

        // Why qemu-ga writes {"return": ..., "id": ...} and {"id": ..., "error": ...}:
        assert!(bucket("return".bytes()) < bucket("id".bytes()));
        assert!(bucket("id".bytes()) < bucket("error".bytes()));
    }
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    fn order(text: &str) -> Vec<String> {
        let value = Value::parse(text.as_bytes()).unwrap();
        let mut keys = Vec::new();
        for_each_member(&value, |k, _| {
            keys.push(k.chars().collect::<String>());
            Ok::<(), ()>(())
        })
        .unwrap();
        keys
    }

    #[test]
    fn buckets_of_known_keys() {
        // Figures computed from QEMU's tdb_hash.
        for (key, b) in [
            ("return", 401),
            ("id", 486),
            ("error", 489),
            ("class", 211),
            ("desc", 377),
            ("execute", 299),
            ("arguments", 447),
            ("exec-oob", 162),
        ] {
            assert_eq!(bucket(key.bytes()), b, "{key}");
        }
    }

    #[test]
    fn observed_orders() {
        assert_eq!(order(r#"{"id": 1, "return": 2}"#), ["return", "id"]);
        assert_eq!(order(r#"{"error": 1, "id": 2}"#), ["id", "error"]);
        assert_eq!(order(r#"{"desc": 1, "class": 2}"#), ["class", "desc"]);
        assert_eq!(
            order(r#"{"supported_commands": 1, "version": 2}"#),
            ["version", "supported_commands"]
        );
        assert_eq!(
            order(r#"{"success-response": 1, "name": 2, "enabled": 3}"#),
            ["enabled", "name", "success-response"]
        );
    }

    #[test]
    fn small_and_large_objects_agree() {
        for n in [1usize, 2, 7, 8, 9, 40] {
            let keys: Vec<String> = (0..n).map(|i| std::format!("key{}", i * 37)).collect();
            let text = std::format!(
                "{{{}}}",
                keys.iter()
                    .map(|k| std::format!("\"{k}\": 0"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut expect: Vec<(u32, std::cmp::Reverse<usize>, String)> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (bucket(k.bytes()), std::cmp::Reverse(i), k.clone()))
                .collect();
            expect.sort();
            let expect: Vec<String> = expect.into_iter().map(|(_, _, k)| k).collect();
            assert_eq!(order(&text), expect, "{n} members");
        }
    }

    #[test]
    fn same_bucket_members_come_out_reversed() {
        // Find keys that share a bucket.
        let mut by_bucket: std::collections::HashMap<u32, Vec<String>> = Default::default();
        for i in 0..5000 {
            let key = std::format!("k{i}");
            by_bucket.entry(bucket(key.bytes())).or_default().push(key);
        }
        let crowded = by_bucket
            .values()
            .find(|v| v.len() > STACKED + 2)
            .unwrap()
            .clone();
        let text = std::format!(
            "{{{}}}",
            crowded
                .iter()
                .map(|k| std::format!("\"{k}\": 0"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut expect = crowded.clone();
        expect.reverse();
        assert_eq!(order(&text), expect);
        let few = &crowded[..3];
        let text = std::format!(
            "{{\"{}\": 0, \"{}\": 0, \"{}\": 0}}",
            few[0],
            few[1],
            few[2]
        );
        assert_eq!(
            order(&text),
            [few[2].clone(), few[1].clone(), few[0].clone()]
        );
    }
}
