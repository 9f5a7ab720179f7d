//! [`OwnerAndState`]: a greenlet's owner thread and stored state, in one word.
//!
//! Every switch checks both: that the target belongs to the calling thread, and that it
//! is suspended. Kept as `serial << 2 | state`, the usual case is one load and one
//! comparison with a word the thread state keeps ready ([`OwnerAndState::key`]), instead
//! of two loads and two comparisons.
//!
//! The word is atomic because other threads read the owner (to tell a caller "wrong
//! thread" rather than touch anything else, and from the C ABI); only the owner thread
//! ever writes it. Relaxed loads and stores are plain moves on every target.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::greenlet::State;

/// Bits of the word that hold the state.
const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// A greenlet's owner thread's serial and its stored state (`Unstarted`, `Suspended` or
/// `Dead`; see `Inner::state`).
pub(crate) struct OwnerAndState(AtomicU64);

impl OwnerAndState {
    /// The word of a greenlet of the thread with `serial`, in `state`.
    pub(crate) fn new(serial: u64, state: State) -> Self {
        OwnerAndState(AtomicU64::new(Self::key(serial, state)))
    }

    /// A word holding `key`, one of [`OwnerAndState::key`]'s (a thread keeps the ones its
    /// greenlets use most: see `crate::thread::SwitchKeys`, whose word for an unstarted
    /// greenlet a new one takes with one load).
    #[inline]
    pub(crate) fn with_key(key: u64) -> Self {
        OwnerAndState(AtomicU64::new(key))
    }

    /// What the word holds for a greenlet of the thread with `serial` in `state`: compare
    /// it with [`OwnerAndState::word`] to test both at once.
    #[inline]
    pub(crate) const fn key(serial: u64, state: State) -> u64 {
        // Serials count threads from 1 and never come near 2^62.
        serial << STATE_BITS | bits(state)
    }

    /// The whole word (see [`OwnerAndState::key`]).
    #[inline(always)]
    pub(crate) fn word(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The serial number of the owner thread. Any thread may ask.
    #[inline]
    pub(crate) fn owner(&self) -> u64 {
        self.word() >> STATE_BITS
    }

    /// The stored state.
    #[inline]
    pub(crate) fn state(&self) -> State {
        match self.word() & STATE_MASK {
            0 => State::Unstarted,
            2 => State::Suspended,
            3 => State::Dead,
            _ => State::Running,
        }
    }

    /// Stores `key`, the [`OwnerAndState::key`] of the owner thread and a new state: one
    /// store, for callers that have the key at hand.
    #[inline]
    pub(crate) fn set(&self, key: u64) {
        debug_assert_eq!(
            key >> STATE_BITS,
            self.owner(),
            "greenlet: another thread's key"
        );
        debug_assert_ne!(
            key & STATE_MASK,
            bits(State::Running),
            "greenlet: `Running` stored"
        );
        self.0.store(key, Ordering::Relaxed);
    }

    /// Stores `state`. Only the owner thread writes the word, so reading it first and
    /// storing it back loses no other thread's write.
    #[inline]
    pub(crate) fn set_state(&self, state: State) {
        debug_assert_ne!(state, State::Running, "greenlet: `Running` is never stored");
        let owner_bits = self.word() & !STATE_MASK;
        self.0.store(owner_bits | bits(state), Ordering::Relaxed);
    }
}

/// The bits of `state` in the word.
const fn bits(state: State) -> u64 {
    match state {
        State::Unstarted => 0,
        State::Running => 1,
        State::Suspended => 2,
        State::Dead => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_state_read_back_and_keys_tell_both_apart() {
        let word = OwnerAndState::new(7, State::Unstarted);
        assert_eq!((word.owner(), word.state()), (7, State::Unstarted));
        assert_eq!(word.word(), OwnerAndState::key(7, State::Unstarted));
        word.set_state(State::Suspended);
        assert_eq!((word.owner(), word.state()), (7, State::Suspended));
        assert_eq!(word.word(), OwnerAndState::key(7, State::Suspended));
        assert_ne!(word.word(), OwnerAndState::key(8, State::Suspended));
        assert_ne!(word.word(), OwnerAndState::key(7, State::Dead));
        word.set_state(State::Dead);
        assert_eq!((word.owner(), word.state()), (7, State::Dead));
        let big = OwnerAndState::new(u64::MAX >> STATE_BITS, State::Suspended);
        assert_eq!(big.owner(), u64::MAX >> STATE_BITS);
        assert_eq!(big.state(), State::Suspended);
    }
}
