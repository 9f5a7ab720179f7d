//! The global slot allocator: arenas carved into guarded slots, one free list per class.
//!
//! An arena is one large `mmap` reservation (`MAP_NORESERVE`: no memory or swap is
//! committed until touched) holding equal slots of one size class. Slots are carved from
//! the current arena of their class in address order; carving installs the slot's guard.
//! A slot given back is released (`MADV_DONTNEED`, so it stops counting towards resident
//! memory) and pushed on its class's free list, which `take` pops first.
//!
//! Arenas are never unmapped: a slot's memory stays valid for the life of the process,
//! and the [registry](super::registry) the overflow handler reads never goes stale.
//!
//! Nothing here allocates on the path that reports exhaustion: the free list's capacity is
//! reserved (fallibly) whenever an arena is added, so giving a slot back never grows it.

use super::class::{self, SizeClass};
use super::registry::{self, Arena};
use super::{guard, os, valgrind};
use crate::stack::StackError;
use std::io;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

/// Bytes reserved per arena (less if that much address space cannot be had).
#[cfg(target_pointer_width = "64")]
const ARENA_BYTES: usize = 1 << 30;
#[cfg(not(target_pointer_width = "64"))]
const ARENA_BYTES: usize = 64 << 20;

/// The allocator state of one size class.
struct ClassState {
    /// Ends (stack tops) of carved slots not in use; LIFO so recent (warm) slots go first.
    ///
    /// Invariant: `free.capacity() >= total`, so pushing never reallocates.
    free: Vec<usize>,
    /// Slots in all arenas of this class.
    total: usize,
    /// Base of the next slot to carve from the current arena.
    next: usize,
    /// Slots of the current arena not carved yet.
    uncarved: usize,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise CLASSES
const EMPTY: Mutex<ClassState> = Mutex::new(ClassState {
    free: Vec::new(),
    total: 0,
    next: 0,
    uncarved: 0,
});

static CLASSES: [Mutex<ClassState>; class::COUNT] = [EMPTY; class::COUNT];

fn lock(class: SizeClass) -> MutexGuard<'static, ClassState> {
    // Nothing panics while holding the lock, but a poisoned state would still be
    // consistent: every update below is completed before the guard drops.
    CLASSES[class.index()]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands out a guarded slot of `class`, not in use by anyone, as its end: the top of the
/// stack it holds (slots are handled by their tops, which is what running a stack needs).
pub(super) fn take(class: SizeClass) -> Result<NonNull<u8>, StackError> {
    let mut state = lock(class);
    let top = match state.free.pop() {
        Some(top) => top,
        None => {
            if state.uncarved == 0 {
                add_arena(class, &mut state)?;
            }
            let base = state.next;
            // SAFETY: `base` starts an uncarved slot of an arena of ours: page-aligned,
            // read-write and unused; its first `guard_len` bytes are the slot's guard.
            unsafe { guard::install(base as *mut u8, class::guard_len()) }
                .map_err(StackError::Exhausted)?;
            state.next += class.slot_size();
            state.uncarved -= 1;
            // Once per slot: slots are never unmapped, whatever runs on them later.
            valgrind::register_stack(base + class::guard_len(), state.next);
            state.next
        }
    };
    // SAFETY: slot ends lie in (or just past) mappings, which `os::map_reserve` never
    // returns at address 0.
    Ok(unsafe { NonNull::new_unchecked(top as *mut u8) })
}

/// Takes back a slot handed out by [`take`], releasing its memory.
///
/// # Safety
///
/// `top` came from `take(class)`, and nothing uses the slot any more.
pub(super) unsafe fn give(class: SizeClass, top: NonNull<u8>) {
    let usable = class.usable();
    // SAFETY: the usable part of the slot, its last `usable` bytes, is read-write memory of
    // ours whose contents are dead (the caller's contract); the guard is left alone.
    unsafe { os::release(top.as_ptr().sub(usable), usable) };
    let mut state = lock(class);
    debug_assert!(state.free.len() < state.free.capacity());
    state.free.push(top.as_ptr() as usize);
}

/// Reserves a new arena for `class` and makes it the one slots are carved from.
fn add_arena(class: SizeClass, state: &mut ClassState) -> Result<(), StackError> {
    let slot_size = class.slot_size();
    let (base, slots) = reserve(slot_size)?;
    let base = base.as_ptr();
    let len = slots * slot_size;
    // Keep the free list able to hold every slot of the class without growing later.
    let needed = state.total + slots - state.free.len();
    if state.free.try_reserve(needed).is_err() {
        // SAFETY: the arena was mapped just above and nothing knows about it.
        unsafe { os::unmap(base, len) };
        return Err(StackError::Exhausted(io::Error::from_raw_os_error(
            libc::ENOMEM,
        )));
    }
    let arena = Arena {
        base: base as usize,
        len,
        slot_size,
        guard_len: class::guard_len(),
    };
    if let Err(e) = registry::register(arena) {
        // SAFETY: as above; the arena is unknown to anyone.
        unsafe { os::unmap(base, len) };
        return Err(e);
    }
    // Stacks are touched from the top down, a little at a time: huge pages would only
    // inflate resident memory. Advice only, so a failure changes nothing.
    // SAFETY: the arena is ours and holds nothing yet.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = unsafe { os::advise(base, len, libc::MADV_NOHUGEPAGE) };
    state.total += slots;
    state.next = base as usize;
    state.uncarved = slots;
    Ok(())
}

/// Maps an arena of as many slots as fit in [`ARENA_BYTES`] (at least one), halving the
/// count while the address space refuses, down to a single slot.
fn reserve(slot_size: usize) -> Result<(NonNull<u8>, usize), StackError> {
    let mut slots = (ARENA_BYTES / slot_size).max(1);
    loop {
        match os::map_reserve(slots * slot_size) {
            Ok(base) => return Ok((base, slots)),
            Err(_) if slots > 1 => slots /= 2,
            Err(e) => return Err(StackError::Exhausted(e)),
        }
    }
}
