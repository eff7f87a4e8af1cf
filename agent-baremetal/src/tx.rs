//! Transmit slots: which parts of the transmit memory the driver may
//! write, and which the device owns. Sans-IO: the memory comes in as a
//! [`SlotMemory`], the device's tokens come in as numbers, so the rules
//! can be checked on the host without a device.
//!
//! A slot is in one of four states:
//!
//! | state | who owns the bytes | may the driver write them? |
//! |---|---|---|
//! | free | the driver | yes |
//! | filling (`len` bytes so far) | the driver | yes, after `len` |
//! | outstanding (lent with a token) | the device | no |
//! | abandoned (lent, given up on) | the device | no |
//!
//! A slot leaves the device only through [`TxSlots::complete`] with its
//! token: an abandoned slot (the host left while the device held it)
//! becomes free again only if the device returns it after all, which
//! QEMU 7.2 does when the next host client takes the data and newer QEMU
//! never does. Every write goes through [`TxSlots::write`], which touches
//! only the filling slot, so the device's bytes are never modified.
//!
//! ```
//! use agent_baremetal::tx::{SlotMemory, TxSlots};
//!
//! /// Two slots of 4 bytes in ordinary memory.
//! struct Mem([[u8; 4]; 2]);
//! // SAFETY: each slot is its own array.
//! unsafe impl SlotMemory for Mem {
//!     const SLOT_LEN: usize = 4;
//!     unsafe fn slot(&mut self, index: usize) -> &mut [u8] {
//!         &mut self.0[index]
//!     }
//! }
//!
//! let mut mem = Mem([[0; 4]; 2]);
//! let mut tx = TxSlots::<2>::new();
//! assert_eq!(tx.write(&mut mem, b"hello"), 4, "one slot at a time");
//! let (slot, len) = tx.take_full().unwrap();
//! assert_eq!((slot, len), (0, 4));
//! tx.lent(slot, 7); // the queue's token for it
//! assert_eq!(tx.write(&mut mem, b"o"), 1, "into the next slot");
//! tx.host_gone(); // the device may keep slot 0 for good
//! assert_eq!(tx.complete(7), Ok(0), "it came back after all");
//! ```

/// Memory divided into slots that a device may read.
///
/// # Safety
///
/// Implementations return, for each index below the slot count, the same
/// `SLOT_LEN` bytes every time, disjoint from every other slot's.
pub unsafe trait SlotMemory {
    /// Bytes per slot.
    const SLOT_LEN: usize;

    /// Slot `index`'s bytes.
    ///
    /// # Safety
    ///
    /// The slot must not be lent to the device (never added to a queue, or
    /// popped from it since).
    unsafe fn slot(&mut self, index: usize) -> &mut [u8];
}

/// One slot's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SlotState {
    /// The driver's, empty.
    Free,
    /// The driver's, holding `len` bytes not yet sent.
    Filling {
        /// Bytes written so far.
        len: usize,
    },
    /// Lent to the device with `token`.
    Outstanding {
        /// The queue's token.
        token: u16,
        /// Bytes lent.
        len: usize,
    },
    /// Lent with `token` while a host client left; the device may never
    /// return it.
    Abandoned {
        /// The queue's token.
        token: u16,
        /// Bytes lent.
        len: usize,
    },
}

/// The device returned a token that no lent slot has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnknownToken(pub u16);

/// The states of `N` transmit slots, and the order in which filled slots
/// are sent.
#[derive(Clone, Debug)]
pub struct TxSlots<const N: usize> {
    states: [SlotState; N],
    /// The slot being filled, if any.
    filling: Option<usize>,
    /// Slots given up on, in total.
    abandoned_total: usize,
}

impl<const N: usize> Default for TxSlots<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TxSlots<N> {
    /// All slots free.
    pub const fn new() -> Self {
        TxSlots {
            states: [SlotState::Free; N],
            filling: None,
            abandoned_total: 0,
        }
    }

    /// Slot `index`'s state.
    pub fn state(&self, index: usize) -> Option<SlotState> {
        self.states.get(index).copied()
    }

    /// Copy as much of `data` as fits into the filling slot (taking a free
    /// slot if none is being filled); the bytes copied. 0 means the
    /// filling slot is full or no slot is free: send with
    /// [`take_full`](Self::take_full) or wait for the device.
    pub fn write<M: SlotMemory>(&mut self, mem: &mut M, data: &[u8]) -> usize {
        let Some(index) = self.filling.or_else(|| self.first_free()) else {
            return 0;
        };
        let len = match self.states.get(index) {
            Some(SlotState::Filling { len }) => *len,
            Some(SlotState::Free) => 0,
            // `filling` only ever names a free or filling slot.
            _ => return 0,
        };
        // SAFETY: the slot is free or filling: the driver's, not lent.
        let buf = unsafe { mem.slot(index) };
        let Some(room) = buf.get_mut(len..M::SLOT_LEN.min(buf.len())) else {
            return 0;
        };
        let n = room.len().min(data.len());
        if let (Some(dst), Some(src)) = (room.get_mut(..n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        if n > 0 || len > 0 {
            self.filling = Some(index);
            if let Some(state) = self.states.get_mut(index) {
                *state = SlotState::Filling {
                    len: len.saturating_add(n),
                };
            }
        }
        n
    }

    /// The filling slot and its length, to be lent to the device (then
    /// call [`lent`](Self::lent) with its token, or
    /// [`unsent`](Self::unsent) if lending failed); `None` if nothing is
    /// being filled.
    pub fn take_full(&mut self) -> Option<(usize, usize)> {
        let index = self.filling?;
        match self.states.get(index) {
            Some(&SlotState::Filling { len }) if len > 0 => Some((index, len)),
            _ => None,
        }
    }

    /// Slot `index` (from [`take_full`](Self::take_full)) was lent to the
    /// device with `token`: the driver must not write it any more.
    pub fn lent(&mut self, index: usize, token: u16) {
        if let Some(state) = self.states.get_mut(index) {
            if let SlotState::Filling { len } = *state {
                *state = SlotState::Outstanding { token, len };
                if self.filling == Some(index) {
                    self.filling = None;
                }
            }
        }
    }

    /// Lending slot `index` failed: its bytes are dropped, it is free.
    pub fn unsent(&mut self, index: usize) {
        if let Some(state) = self.states.get_mut(index) {
            if matches!(state, SlotState::Filling { .. }) {
                *state = SlotState::Free;
                if self.filling == Some(index) {
                    self.filling = None;
                }
            }
        }
    }

    /// The device returned `token`: its slot is free again. Returns the
    /// slot.
    pub fn complete(&mut self, token: u16) -> Result<usize, UnknownToken> {
        let found = self.states.iter().position(|s| {
            matches!(s, SlotState::Outstanding { token: t, .. } | SlotState::Abandoned { token: t, .. } if *t == token)
        });
        let index = found.ok_or(UnknownToken(token))?;
        if let Some(state) = self.states.get_mut(index) {
            *state = SlotState::Free;
        }
        Ok(index)
    }

    /// The slot and length lent with `token`, for popping it from the
    /// queue.
    pub fn lent_with(&self, token: u16) -> Option<(usize, usize)> {
        self.states.iter().enumerate().find_map(|(i, s)| match *s {
            SlotState::Outstanding { token: t, len } | SlotState::Abandoned { token: t, len }
                if t == token =>
            {
                Some((i, len))
            }
            _ => None,
        })
    }

    /// Whether a slot is lent with `token` and not abandoned.
    pub fn is_outstanding(&self, token: u16) -> bool {
        self.states
            .iter()
            .any(|s| matches!(s, SlotState::Outstanding { token: t, .. } if *t == token))
    }

    /// Whether any slot is outstanding (lent, not abandoned).
    pub fn any_outstanding(&self) -> bool {
        self.states
            .iter()
            .any(|s| matches!(s, SlotState::Outstanding { .. }))
    }

    /// The host client left: every outstanding slot is abandoned (the
    /// device may keep it). Returns how many.
    pub fn host_gone(&mut self) -> usize {
        let mut count = 0usize;
        for state in &mut self.states {
            if let SlotState::Outstanding { token, len } = *state {
                *state = SlotState::Abandoned { token, len };
                count = count.saturating_add(1);
            }
        }
        self.abandoned_total = self.abandoned_total.saturating_add(count);
        count
    }

    /// Slots abandoned so far, in total (some may have come back).
    pub fn abandoned_total(&self) -> usize {
        self.abandoned_total
    }

    /// Slots abandoned now and not returned.
    pub fn abandoned_now(&self) -> usize {
        self.states
            .iter()
            .filter(|s| matches!(s, SlotState::Abandoned { .. }))
            .count()
    }

    /// Whether a slot is being filled.
    pub fn is_filling(&self) -> bool {
        self.filling.is_some()
    }

    /// Whether a slot is free.
    pub fn has_free(&self) -> bool {
        self.first_free().is_some()
    }

    fn first_free(&self) -> Option<usize> {
        self.states.iter().position(|s| *s == SlotState::Free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOTS: usize = 4;
    const LEN: usize = 16;

    struct Mem([[u8; LEN]; SLOTS]);

    // SAFETY: each slot is its own array.
    unsafe impl SlotMemory for Mem {
        const SLOT_LEN: usize = LEN;
        unsafe fn slot(&mut self, index: usize) -> &mut [u8] {
            &mut self.0[index]
        }
    }

    /// A device that holds lent slots, remembering what they held when
    /// lent.
    struct Device {
        next_token: u16,
        /// token, slot, bytes at lending, whether it will ever come back.
        held: Vec<(u16, usize, Vec<u8>, bool)>,
    }

    impl Device {
        fn lend(&mut self, tx: &mut TxSlots<SLOTS>, mem: &Mem) {
            let Some((slot, len)) = tx.take_full() else {
                return;
            };
            let token = self.next_token;
            self.next_token = self.next_token.wrapping_add(1);
            self.held
                .push((token, slot, mem.0[slot][..len].to_vec(), true));
            tx.lent(slot, token);
        }

        /// Every held slot still holds what it held when lent.
        fn check(&self, mem: &Mem, step: usize) {
            for (token, slot, bytes, _) in &self.held {
                assert_eq!(
                    &mem.0[*slot][..bytes.len()],
                    &bytes[..],
                    "step {step}: slot {slot} (token {token}) was written while lent"
                );
            }
        }
    }

    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Writes, sends, returns, and host disconnects with transmits
    /// outstanding, in random order: no lent or abandoned slot is ever
    /// modified, an abandoned slot the device returns is used again, and
    /// one it keeps is never used again.
    #[test]
    fn lent_slots_are_never_written_across_host_disconnects() {
        for mut seed in [1u64, 0x9e37_79b9_7f4a_7c15, 42, 7777] {
            let mut mem = Mem([[0; LEN]; SLOTS]);
            let mut tx = TxSlots::<SLOTS>::new();
            let mut dev = Device {
                next_token: 100,
                held: Vec::new(),
            };
            let mut kept_forever = Vec::new();
            let mut disconnects_with_outstanding = 0;
            for step in 0..20_000 {
                match rng(&mut seed) % 8 {
                    0..=2 => {
                        let fill = (step % 251) as u8;
                        let data = vec![fill; (rng(&mut seed) % 24) as usize + 1];
                        let n = tx.write(&mut mem, &data);
                        if n < data.len() {
                            dev.lend(&mut tx, &mem);
                        }
                    }
                    3 => dev.lend(&mut tx, &mem),
                    4 | 5 => {
                        // The device returns the oldest outstanding slot.
                        if let Some(at) = dev.held.iter().position(|(t, ..)| tx.is_outstanding(*t))
                        {
                            let (token, slot, ..) = dev.held.remove(at);
                            assert_eq!(tx.complete(token), Ok(slot));
                        }
                    }
                    6 => {
                        // The host leaves: the device keeps some slots for
                        // good (newer QEMU) and returns others later (7.2).
                        if tx.any_outstanding() {
                            disconnects_with_outstanding += 1;
                        }
                        tx.host_gone();
                        for held in &mut dev.held {
                            if rng(&mut seed).is_multiple_of(128) && held.3 {
                                held.3 = false;
                                kept_forever.push(held.1);
                            }
                        }
                    }
                    _ => {
                        // A returning abandoned slot.
                        if let Some(at) = dev
                            .held
                            .iter()
                            .position(|(t, _, _, back)| *back && !tx.is_outstanding(*t))
                        {
                            let (token, slot, ..) = dev.held.remove(at);
                            assert_eq!(tx.complete(token), Ok(slot));
                        }
                    }
                }
                dev.check(&mem, step);
                for &slot in &kept_forever {
                    assert!(
                        matches!(tx.state(slot), Some(SlotState::Abandoned { .. })),
                        "step {step}: a slot the device kept was reused"
                    );
                }
                if kept_forever.len() == SLOTS {
                    break;
                }
            }
            assert!(
                disconnects_with_outstanding > 10,
                "the scenario is weak: {disconnects_with_outstanding}"
            );
            assert!(tx.abandoned_total() > 0);
        }
    }

    #[test]
    fn write_fills_one_slot_then_the_next() {
        let mut mem = Mem([[0; LEN]; SLOTS]);
        let mut tx = TxSlots::<SLOTS>::new();
        assert_eq!(tx.take_full(), None);
        assert_eq!(tx.write(&mut mem, &[1; 10]), 10);
        assert_eq!(tx.write(&mut mem, &[2; 10]), 6);
        assert_eq!(tx.write(&mut mem, &[3; 1]), 0, "full until sent");
        let (slot, len) = tx.take_full().unwrap();
        assert_eq!((slot, len), (0, 16));
        tx.lent(slot, 9);
        assert_eq!(
            tx.state(0),
            Some(SlotState::Outstanding { token: 9, len: 16 })
        );
        assert_eq!(tx.write(&mut mem, &[3; 1]), 1);
        assert_eq!(tx.take_full(), Some((1, 1)));
        tx.unsent(1);
        assert_eq!(tx.state(1), Some(SlotState::Free));
        assert_eq!(tx.complete(5), Err(UnknownToken(5)));
        assert_eq!(tx.lent_with(9), Some((0, 16)));
        assert_eq!(tx.host_gone(), 1);
        assert_eq!(tx.abandoned_now(), 1);
        assert!(!tx.is_outstanding(9));
        assert_eq!(tx.complete(9), Ok(0));
        assert_eq!(tx.abandoned_now(), 0);
        assert_eq!(tx.abandoned_total(), 1);
        assert_eq!(mem.0[0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn no_free_slot_means_no_write() {
        let mut mem = Mem([[0; LEN]; SLOTS]);
        let mut tx = TxSlots::<SLOTS>::new();
        for token in 0..SLOTS as u16 {
            assert_eq!(tx.write(&mut mem, b"x"), 1);
            let (slot, _) = tx.take_full().unwrap();
            tx.lent(slot, token);
        }
        assert!(!tx.has_free() && !tx.is_filling());
        assert_eq!(tx.write(&mut mem, b"y"), 0);
        tx.host_gone();
        assert_eq!(tx.write(&mut mem, b"y"), 0, "abandoned slots stay lent");
        tx.complete(2).unwrap();
        assert_eq!(tx.write(&mut mem, b"y"), 1);
        assert_eq!(mem.0[2][0], b'y');
    }
}
