//! The global, append-only list of arenas, readable from a signal handler.
//!
//! The overflow handler must decide whether a faulting address lies in the guard of some
//! stack slot. It cannot take a lock (the fault may have interrupted a thread holding it)
//! nor allocate, so the registry is a fixed array of atomics that only ever grows:
//!
//! - a writer claims an index with a `fetch_update` on [`CLAIMED`], fills the entry's
//!   fields, then publishes it by storing its non-zero `len` with `Release`;
//! - a reader loads [`CLAIMED`] with `Acquire` and skips entries whose `len` is still
//!   zero; a published `len` (loaded with `Acquire`) makes the other fields visible.
//!
//! Arenas are never unmapped, so an entry stays true for the life of the process.

use crate::stack::StackError;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many arenas a process can have. With 1 GiB arenas that is 8 TiB of stacks on
/// 64-bit targets; 32-bit targets have 64 MiB arenas and at most 4 GiB of address space.
#[cfg(target_pointer_width = "64")]
pub(super) const CAPACITY: usize = 8192;
#[cfg(not(target_pointer_width = "64"))]
pub(super) const CAPACITY: usize = 1024;

/// Where an arena lies and how it is carved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arena {
    /// Lowest address; the first slot starts here.
    pub(super) base: usize,
    /// Bytes reserved, a multiple of `slot_size`.
    pub(super) len: usize,
    /// Bytes per slot: guard plus usable stack.
    pub(super) slot_size: usize,
    /// Bytes of guard at the low end of each slot.
    pub(super) guard_len: usize,
}

struct Entry {
    base: AtomicUsize,
    /// Zero until the entry is published.
    len: AtomicUsize,
    slot_size: AtomicUsize,
    guard_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise ENTRIES
const EMPTY: Entry = Entry {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    slot_size: AtomicUsize::new(0),
    guard_len: AtomicUsize::new(0),
};

static ENTRIES: [Entry; CAPACITY] = [EMPTY; CAPACITY];

/// How many entries have been claimed (some may not be published yet).
static CLAIMED: AtomicUsize = AtomicUsize::new(0);

/// Adds an arena; from then on [`guard_hit`] knows its guards.
///
/// Fails with [`StackError::ArenaLimit`] when all [`CAPACITY`] entries are taken.
pub(super) fn register(arena: Arena) -> Result<(), StackError> {
    debug_assert!(arena.len != 0 && arena.len.is_multiple_of(arena.slot_size));
    let index = CLAIMED
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < CAPACITY).then_some(n + 1)
        })
        .map_err(|_| StackError::ArenaLimit(CAPACITY))?;
    let entry = &ENTRIES[index];
    entry.base.store(arena.base, Ordering::Relaxed);
    entry.slot_size.store(arena.slot_size, Ordering::Relaxed);
    entry.guard_len.store(arena.guard_len, Ordering::Relaxed);
    entry.len.store(arena.len, Ordering::Release);
    Ok(())
}

/// The published arenas, oldest first. Lock-free and allocation-free.
fn arenas() -> impl Iterator<Item = Arena> {
    let claimed = CLAIMED.load(Ordering::Acquire).min(CAPACITY);
    ENTRIES[..claimed].iter().filter_map(|entry| {
        let len = entry.len.load(Ordering::Acquire);
        (len != 0).then(|| Arena {
            base: entry.base.load(Ordering::Relaxed),
            len,
            slot_size: entry.slot_size.load(Ordering::Relaxed),
            guard_len: entry.guard_len.load(Ordering::Relaxed),
        })
    })
}

/// Whether `addr` lies in the guard region of a slot of some arena.
///
/// Async-signal-safe: it only loads atomics and does arithmetic.
pub(super) fn guard_hit(addr: usize) -> bool {
    arenas().any(|arena| {
        // `wrapping_sub` turns "below base" into a huge offset that fails the length test.
        let offset = addr.wrapping_sub(arena.base);
        offset < arena.len && offset % arena.slot_size < arena.guard_len
    })
}

/// How many arenas are registered.
#[cfg(test)]
pub(super) fn count() -> usize {
    arenas().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::GuardedStack;

    #[test]
    fn guard_hits_are_exactly_the_bytes_below_bottom() {
        let stack = GuardedStack::new(64 * 1024).unwrap();
        let bottom = stack.bottom() as usize;
        let top = stack.top() as usize;
        let guard = super::super::class::guard_len();
        assert!(count() >= 1);
        assert!(guard_hit(bottom - 1));
        assert!(guard_hit(bottom - guard));
        assert!(!guard_hit(bottom));
        assert!(!guard_hit(top - 1));
        assert!(!guard_hit(0));
        assert!(!guard_hit(usize::MAX));
        let on_thread_stack = 0u8;
        assert!(!guard_hit(&on_thread_stack as *const u8 as usize));
    }
}
