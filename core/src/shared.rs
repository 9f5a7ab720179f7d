//! [`Shared`]: the counted pointer from greenlet handles to a greenlet's state.
//!
//! Like `Rc<Inner>` (non-atomic count, freed with its last handle), with two differences:
//!
//! - freed allocations go to a small per-thread cache, kept in the thread state, and the
//!   next greenlet created in that thread reuses one instead of calling the allocator. A
//!   cached allocation keeps the context its finished greenlet left (and so its stack):
//!   the greenlet that reuses the allocation starts on that stack if it asks for the same
//!   size (see `crate::switch::prepare_usual`), so that the stack goes from one greenlet
//!   to the next without being moved;
//! - the state of the thread's *running* greenlet is never freed: the thread state points
//!   at it without counting it (counting it cost a count up and down on every switch),
//!   and when the last handle of the running greenlet goes, its state stays until the
//!   switch away from it, which takes the full path (see
//!   `ThreadState::switches_in_full`): its receiving side finds the count at zero and
//!   kills or frees it (see `crate::switch`).
//!
//! The state comes first in the allocation, so a handle is the state's address, and the
//! state's first field is its context: see [`Inner`].

use std::alloc::{self, Layout};
use std::cell::{Cell, UnsafeCell};
use std::mem::{ManuallyDrop, offset_of};
use std::ops::Deref;
use std::ptr::{self, NonNull};

use greenlet_backends::DefaultContext;
use greenlet_backends::stack::running_on_valgrind;

use crate::greenlet::{Fields, Greenlet, Inner, no_context};
use crate::thread::{self, ThreadState, UsualKeys};

/// At most this many freed allocations are kept per thread.
const CACHE_LIMIT: usize = 64;

/// Set, this keeps the cache on under Valgrind (see [`BlockCache::new`]).
const KEEP_CACHE_VAR: &str = "GREENLET_VALGRIND_KEEP_STATE_CACHE";

/// One allocation: the state, then the count of handles. The state comes first, so that
/// a handle points at the state itself (and at its context, the state's first field: see
/// [`Inner`]).
#[repr(C)]
struct Counted {
    inner: Inner,
    count: Cell<usize>,
}

const _: () = assert!(offset_of!(Counted, inner) == 0);

/// The link from a cached allocation to the next, kept where its count was (a cached
/// allocation has no handles): the state's context stays where it is (see the module docs).
type NextBlock = Option<NonNull<Counted>>;

const _: () = assert!(size_of::<NextBlock>() == size_of::<Cell<usize>>());
const _: () = assert!(align_of::<NextBlock>() <= align_of::<Cell<usize>>());

/// Where a cached allocation keeps its [`NextBlock`] link.
fn next_link(block: NonNull<Counted>) -> *mut NextBlock {
    // SAFETY: in bounds of the allocation: only the field's address is taken.
    unsafe { (&raw mut (*block.as_ptr()).count).cast::<NextBlock>() }
}

/// The context slot of an allocation, which holds none or a context that has exited
/// while the allocation is cached.
fn context_slot(block: NonNull<Counted>) -> *mut DefaultContext {
    // SAFETY: in bounds of the allocation: only the field's address is taken.
    UnsafeCell::raw_get(unsafe { &raw const (*block.as_ptr()).inner.context })
}

/// Frees a cached allocation: drops the context it kept (giving its stack back to the
/// process-wide pool), then the memory.
///
/// # Safety
///
/// `block` is an allocation of this layout owned by the caller, whose context slot holds
/// none or an exited context, and nothing else alive.
#[cold]
#[inline(never)]
unsafe fn free_block(block: NonNull<Counted>) {
    // SAFETY: the caller's contract.
    unsafe {
        context_slot(block).drop_in_place();
        alloc::dealloc(block.as_ptr().cast(), Layout::new::<Counted>());
    }
}

/// A thread's cache of freed allocations (a field of its thread state).
///
/// The allocation freed last waits in a slot of its own, `spare`, where the next greenlet
/// made takes it: one load and one store each way, in the usual create, run and drop (a
/// list's link, head and length cost seven instructions to take and eight to give). Those
/// freed while the slot is full go to a list of at most `limit`.
pub(crate) struct BlockCache {
    /// The spare allocation; null when there is none, [`CLOSED`] when the cache keeps
    /// nothing (under Valgrind, which then sees every freed state freed, and reports a
    /// use after free): then no block goes in, and none comes out, with no test more.
    spare: Cell<*mut Counted>,
    head: Cell<NextBlock>,
    len: Cell<usize>,
    /// How many blocks the list keeps at most: [`CACHE_LIMIT`] - 1, the spare being one;
    /// none when the cache keeps nothing.
    limit: usize,
}

/// The spare slot of a cache that keeps nothing: an address no allocation has, above
/// null, so that `take` tests for a block with one comparison, and `give` sees the slot
/// full.
const CLOSED: *mut Counted = ptr::without_provenance_mut(1);

impl BlockCache {
    /// An empty cache: of [`CACHE_LIMIT`] blocks; none under Valgrind, unless the
    /// environment variable [`KEEP_CACHE_VAR`] is set (to profile with callgrind the code
    /// that runs natively).
    pub(crate) fn new() -> Self {
        let off = running_on_valgrind() && std::env::var_os(KEEP_CACHE_VAR).is_none();
        BlockCache::with_limit(if off { 0 } else { CACHE_LIMIT })
    }

    /// An empty cache that keeps at most `limit` blocks.
    fn with_limit(limit: usize) -> Self {
        BlockCache {
            spare: Cell::new(if limit > 0 { ptr::null_mut() } else { CLOSED }),
            head: Cell::new(None),
            len: Cell::new(0),
            limit: limit.saturating_sub(1),
        }
    }

    /// A cached allocation: nothing alive in it but its context slot, which holds none
    /// or an exited context (see the module docs), and its count, which says 1, ready for
    /// the handle of the state made in it (the spare one kept the count its last handle
    /// left, so taking it writes nothing there).
    #[inline(always)]
    fn take(&self) -> Option<NonNull<Counted>> {
        let spare = self.spare.get();
        if spare.addr() > CLOSED.addr() {
            self.spare.set(ptr::null_mut());
            // SAFETY: above `CLOSED`, so neither null nor the marker: a block `give` put.
            return Some(unsafe { NonNull::new_unchecked(spare) });
        }
        self.take_from_list()
    }

    /// Whether the cache keeps anything (see [`BlockCache::spare`]).
    #[cfg(test)]
    fn keeps(&self) -> bool {
        self.spare.get() != CLOSED
    }

    /// [`BlockCache::take`] when the spare slot is empty. (Out of line, its call made the
    /// caller keep the new state's fields in memory across it.)
    #[inline(always)]
    fn take_from_list(&self) -> Option<NonNull<Counted>> {
        let block = self.head.get()?;
        // SAFETY: blocks in the list are allocations of a `Counted` whose link
        // `give_to_list` wrote, owned by the cache alone; the count goes where the link
        // was.
        unsafe {
            self.head.set(next_link(block).read());
            (&raw mut (*block.as_ptr()).count).write(Cell::new(1));
        }
        self.len.set(self.len.get() - 1);
        Some(block)
    }

    /// Keeps `block` for reuse, or frees it if the cache is full.
    ///
    /// # Safety
    ///
    /// `block` is an allocation of a `Counted` owned by the caller, with nothing alive in
    /// it but its context slot, which holds none or an exited context, and its count,
    /// which says 1 (see [`BlockCache::take`]).
    #[inline(always)]
    unsafe fn give(&self, block: NonNull<Counted>) {
        if self.spare.get().is_null() {
            self.spare.set(block.as_ptr());
        } else {
            // SAFETY: the caller's contract.
            unsafe { self.give_to_list(block) }
        }
    }

    /// [`BlockCache::give`] when the spare slot is taken (or the cache keeps nothing).
    ///
    /// # Safety
    ///
    /// As for [`BlockCache::give`].
    #[inline(never)]
    unsafe fn give_to_list(&self, block: NonNull<Counted>) {
        if self.len.get() >= self.limit {
            // SAFETY: the caller's contract.
            unsafe { free_block(block) };
            return;
        }
        // SAFETY: the block is ours; its count is not alive.
        unsafe { next_link(block).write(self.head.get()) };
        self.head.set(Some(block));
        self.len.set(self.len.get() + 1);
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        while let Some(block) = self.take() {
            // SAFETY: cached blocks are allocations of this layout that nothing uses, with
            // none or an exited context in their context slot.
            unsafe { free_block(block) };
        }
    }
}

/// A counted pointer to a greenlet's [`Inner`] state.
pub(crate) struct Shared {
    ptr: NonNull<Counted>,
}

impl Shared {
    /// Moves the state `make` returns into an allocation (one from `cache` if it has one,
    /// whose count says 1 already) with a count of one. The context is what the
    /// allocation holds: none in a new one, none or the exited context a finished
    /// greenlet left in a cached one, for the new greenlet to reuse its stack (see the
    /// module docs). Writing the rest alone leaves it
    /// where it is (moved out and back, it was copied through the stack).
    ///
    /// The allocation is found first and the state made straight into it: a state made
    /// first and then moved was copied with a call to `memcpy`.
    #[inline(always)]
    pub(crate) fn new(cache: Option<&BlockCache>, make: impl FnOnce() -> Fields) -> Shared {
        let ptr = match cache.and_then(BlockCache::take) {
            Some(block) => block,
            None => {
                let block = allocate();
                // SAFETY: a new allocation of a `Counted`, ours alone.
                unsafe {
                    context_slot(block).write(no_context());
                    (&raw mut (*block.as_ptr()).count).write(Cell::new(1));
                }
                block
            }
        };
        debug_assert_eq!(
            // SAFETY: written above, or by the cache (see `BlockCache::take`).
            unsafe { (*ptr.as_ptr()).count.get() },
            1,
            "greenlet: a block without its count of 1"
        );
        // SAFETY: `ptr` is an allocation of a `Counted` with nothing alive in it but its
        // count and its context slot, which holds none or an exited context. If `make`
        // panics, the block is leaked, which is safe.
        unsafe { (&raw mut (*ptr.as_ptr()).inner.fields).write(make()) };
        Shared { ptr }
    }

    fn counted(&self) -> &Counted {
        // SAFETY: a `Shared` holds one count, so the allocation is alive.
        unsafe { self.ptr.as_ref() }
    }

    /// How many handles (counts) there are.
    #[inline]
    pub(crate) fn count(this: &Self) -> usize {
        this.counted().count.get()
    }

    /// Whether both point at the same state.
    #[inline]
    pub(crate) fn ptr_eq(a: &Self, b: &Self) -> bool {
        a.ptr == b.ptr
    }

    /// The address of the state.
    #[inline]
    pub(crate) fn as_ptr(this: &Self) -> *const Inner {
        &raw const this.counted().inner
    }

    /// A new handle to the state at `inner`, adding a count.
    ///
    /// # Safety
    ///
    /// `inner` is the address of a state that has not been freed.
    #[inline]
    pub(crate) unsafe fn new_handle(inner: *const Inner) -> Self {
        // SAFETY: the caller's contract. The borrowed handle is not dropped; the count
        // added by `clone` is the returned handle's.
        let borrowed = ManuallyDrop::new(unsafe { Shared::from_address(inner) });
        Shared::clone(&borrowed)
    }

    /// How many handles the state at `inner` has.
    ///
    /// # Safety
    ///
    /// As for [`Shared::new_handle`].
    #[inline]
    pub(crate) unsafe fn count_at(inner: *const Inner) -> usize {
        // SAFETY: the caller's contract; the handle is not dropped, so no count changes.
        Shared::count(&ManuallyDrop::new(unsafe { Shared::from_address(inner) }))
    }

    /// Gives up a count that is not the last one: what dropping the handle does then,
    /// without the test for zero.
    ///
    /// # Safety
    ///
    /// `this` is not the last handle: the count is above one.
    #[inline(always)]
    pub(crate) unsafe fn drop_not_last(this: Shared) {
        let count = &this.counted().count;
        debug_assert!(
            count.get() > 1,
            "greenlet: the last count given up as not last"
        );
        count.set(count.get() - 1);
        std::mem::forget(this);
    }

    /// A handle to the state at `inner` that does not add a count: it must not be dropped.
    ///
    /// # Safety
    ///
    /// As for [`Shared::new_handle`].
    #[inline]
    unsafe fn from_address(inner: *const Inner) -> Self {
        // SAFETY: `inner` points into a `Counted`, at this offset (the caller's contract).
        let counted = unsafe { inner.byte_sub(offset_of!(Counted, inner)) }.cast::<Counted>();
        Shared {
            // SAFETY: derived from a non-null pointer into an allocation.
            ptr: unsafe { NonNull::new_unchecked(counted.cast_mut()) },
        }
    }
}

/// A fresh allocation for a `Counted`.
///
/// `extern "C"`, which cannot unwind (a panic in it would abort; running out of memory
/// aborts anyway): so the compiler knows that making a greenlet unwinds nowhere before its
/// state is written, and keeps no copy of the new state's parts on the stack for a landing
/// pad.
#[cold]
extern "C" fn allocate() -> NonNull<Counted> {
    let layout = Layout::new::<Counted>();
    // SAFETY: `Counted` is not zero-sized.
    let raw = unsafe { alloc::alloc(layout) };
    match NonNull::new(raw) {
        Some(ptr) => ptr.cast(),
        None => alloc::handle_alloc_error(layout),
    }
}

impl Clone for Shared {
    #[inline]
    fn clone(&self) -> Self {
        let count = &self.counted().count;
        // More handles than bytes of memory can only come from leaked handles
        // (`mem::forget` in a loop); stop rather than wrap around, as `Rc` does.
        // Tested once stored, as `Rc` does: the increment's own flags give the test.
        let more = count.get().wrapping_add(1);
        count.set(more);
        if more == 0 {
            std::process::abort()
        }
        Shared { ptr: self.ptr }
    }
}

impl Drop for Shared {
    /// Gives up a count. The last one of a finished greenlet of this thread, the usual
    /// case, goes to [`free_finished`], found with one comparison of the greenlet's word
    /// with the thread's key for it (see `crate::thread::UsualKeys`), which also tells
    /// that the thread's state is alive and that the greenlet is not running; any other
    /// last one (whose greenlet is killed first if it is suspended) to [`drop_last`].
    #[inline]
    fn drop(&mut self) {
        let count = &self.counted().count;
        let held = count.get();
        if held != 1 {
            count.set(held - 1);
            return;
        }
        let keys = thread::usual_keys();
        // SAFETY: `usual_keys` always points at live keys.
        if self.owner_and_state.word() == unsafe { (*keys).dead() } {
            // SAFETY: the key matched: `keys` are those of this thread's live state, and
            // the greenlet, of this thread, has finished. This is its last handle.
            unsafe { free_finished(UsualKeys::thread_state(keys), self.ptr) }
        } else {
            // SAFETY: the last handle, not used again.
            unsafe { drop_last(self.ptr) }
        }
    }
}

/// The last handle's drop but for a finished greenlet of a thread whose state is alive:
/// kills the greenlet if it is suspended, then frees it, unless the kill left it other
/// handles (a greenlet may make some while it dies).
///
/// # Safety
///
/// `ptr` is the allocation of the handle being dropped, which is the last one and is not
/// used again.
#[cold]
#[inline(never)]
unsafe fn drop_last(ptr: NonNull<Counted>) {
    // The handle being dropped, borrowed by the kill, which does not drop it.
    let handle = ManuallyDrop::new(Greenlet {
        inner: Shared { ptr },
    });
    crate::kill::kill_if_suspended(&handle);
    let count = &handle.inner.counted().count;
    let held = count.get();
    if held == 1 {
        // SAFETY: the caller's contract: no other handle can reach the state.
        unsafe { free(ptr) }
    } else {
        count.set(held - 1);
    }
}

/// [`free`] for a finished greenlet of this thread, whose last handle is being dropped
/// while the thread's state (`ts`) is alive: the usual free, without the tests that `free`
/// makes first. A finished greenlet is not running, and its closure is gone (its entry
/// took it first), so that it is bare (see [`Inner::is_bare`]) unless it has extras.
///
/// # Safety
///
/// As for [`free`]; and the state's word is `ts`'s key for a dead greenlet.
#[inline(never)]
unsafe fn free_finished(ts: &ThreadState, ptr: NonNull<Counted>) {
    // SAFETY: the allocation is alive (the caller's contract); only its address is taken.
    let inner = unsafe { &raw const (*ptr.as_ptr()).inner };
    debug_assert!(!ptr::eq(ts.current_address(), inner));
    // SAFETY: as above.
    debug_assert!(unsafe { (*inner).fields.run.is_empty() });
    ts.forget_finished(inner);
    // SAFETY: as above.
    if unsafe { (*inner).fields.extras().is_some() } {
        // SAFETY: as above; the thread state does not point at the state any more.
        return unsafe { free_in_full(ts, ptr) };
    }
    // SAFETY: as above; the state is bare.
    let parent = unsafe { Inner::take_parent_of_bare(inner) };
    debug_assert!(
        parent.is_some(),
        "greenlet: a finished greenlet without a parent"
    );
    // SAFETY: only a main greenlet has no parent, and a main greenlet's word never matches
    // the key for a finished one of a live thread state (the caller's contract): it is
    // stored as dead only at its thread's teardown, once that key is out of reach.
    let parent = unsafe { parent.unwrap_unchecked() };
    // SAFETY: as above; the parent is moved out.
    unsafe { give_bare(ts, ptr, Some(parent)) }
}

/// Drops the state of an allocation whose last handle is being dropped (its count still
/// says 1), then caches or frees it; unless it is the state of the running greenlet,
/// which the thread state still points at: that one is left, with a count of zero, for
/// the switch away from it (see the module docs).
///
/// # Safety
///
/// The handle being dropped is the only one that refers to the allocation, and it is not
/// used again.
#[inline(never)]
unsafe fn free(ptr: NonNull<Counted>) {
    // Every call out of here is its last act (a tail call), so that the usual path needs
    // no frame (it saves one register; it saved three when it called out and came back).
    // SAFETY: the allocation is alive (the caller's contract); only its address is taken.
    let inner = unsafe { &raw const (*ptr.as_ptr()).inner };
    // Not `thread::state`, which makes the state on first use: a greenlet's state exists
    // only once its thread's does, so none here means the thread's is gone.
    let Some(ts) = thread::existing_state() else {
        // SAFETY: the caller's contract.
        return unsafe { free_late(ptr) };
    };
    if ptr::eq(ts.current_address(), inner) {
        // SAFETY: the allocation is alive (the caller's contract).
        unsafe { (*ptr.as_ptr()).count.set(0) };
        return ts.orphan_current();
    }
    ts.forget_finished(inner);
    // From here on, the state is dropped exactly once, all but its context, which is
    // none or has exited: no greenlet that has not finished loses its last handle in a
    // thread that runs (a suspended one is killed first, or leaked if that fails; a main
    // greenlet's state lives as long as its thread's state), and the thread state does not
    // point at it any more.
    // SAFETY: the caller's contract: the state is alive.
    if !unsafe { Inner::is_bare(inner) } {
        // SAFETY: as above.
        return unsafe { free_in_full(ts, ptr) };
    }
    // SAFETY: as above; the state is bare.
    unsafe { give_bare(ts, ptr, Inner::take_parent_of_bare(inner)) }
}

/// The end of [`free`] and [`free_finished`] for a bare state (see [`Inner::is_bare`]):
/// drops its `parent` handle, moved out of it, and gives the allocation to the cache.
///
/// # Safety
///
/// As for [`free`]; the state in `ptr` is bare, its parent moved out, and the thread
/// state (`ts`) does not point at it any more.
#[inline(always)]
unsafe fn give_bare(ts: &ThreadState, ptr: NonNull<Counted>, parent: Option<Greenlet>) {
    match parent {
        Some(parent) if Shared::count(&parent.inner) > 1 => {
            let parent = ManuallyDrop::new(parent);
            // SAFETY: the count is above one; the pointer is moved out of a handle that is
            // never used or dropped again.
            unsafe { Shared::drop_not_last(ptr::read(&parent.inner)) }
        }
        None => {}
        // SAFETY: as above.
        Some(parent) => return unsafe { free_then_drop_last(ts, ptr, parent) },
    }
    // SAFETY: the allocation is ours, and its state dropped but for its context.
    unsafe { ts.blocks.give(ptr) };
}

/// [`free`] for a state that is not bare: dropped in full, all but its context.
///
/// # Safety
///
/// As for [`free`], and the thread state (`ts`) no longer points at the state.
#[cold]
#[inline(never)]
unsafe fn free_in_full(ts: &ThreadState, ptr: NonNull<Counted>) {
    // SAFETY: the caller's contract: the state is dropped once, here.
    unsafe {
        Inner::drop_in_place_but_context(&raw mut (*ptr.as_ptr()).inner);
        ts.blocks.give(ptr);
    }
}

/// [`free`] for a bare state whose parent loses its last handle with it: the allocation
/// goes to the cache first, then the parent's handle, whose drop kills or frees the parent
/// and may run any code.
///
/// # Safety
///
/// As for [`free`], and the state has been dropped but for its context (`parent` moved
/// out of it).
#[cold]
#[inline(never)]
unsafe fn free_then_drop_last(ts: &ThreadState, ptr: NonNull<Counted>, parent: Greenlet) {
    // SAFETY: the caller's contract.
    unsafe { ts.blocks.give(ptr) };
    drop(parent);
}

/// [`free`] when the thread state is gone (thread teardown): with no cache to keep the
/// allocation in, it is freed, its context dropped with the rest of the state.
///
/// # Safety
///
/// As for [`free`].
#[cold]
#[inline(never)]
unsafe fn free_late(ptr: NonNull<Counted>) {
    // SAFETY: the caller's contract; the state is dropped exactly once, here, and the
    // block is ours to free, allocated with this layout.
    unsafe {
        ptr::drop_in_place(&raw mut (*ptr.as_ptr()).inner);
        alloc::dealloc(ptr.as_ptr().cast(), Layout::new::<Counted>());
    }
}

impl Deref for Shared {
    type Target = Inner;

    #[inline]
    fn deref(&self) -> &Inner {
        &self.counted().inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Greenlet;

    /// A fresh allocation as `free` gives them to the cache: an empty context slot and a
    /// count of 1.
    fn freed_block() -> NonNull<Counted> {
        let block = allocate();
        // SAFETY: a fresh allocation, ours.
        unsafe {
            context_slot(block).write(no_context());
            (&raw mut (*block.as_ptr()).count).write(Cell::new(1));
        }
        block
    }

    /// Pure allocation bookkeeping, no greenlet: this one runs under Miri too.
    #[test]
    fn the_cache_gives_blocks_back_last_in_first_out_and_frees_the_rest() {
        let cache = BlockCache::with_limit(CACHE_LIMIT);
        assert!(cache.take().is_none());
        let blocks: Vec<_> = (0..CACHE_LIMIT + 3).map(|_| freed_block()).collect();
        for &block in &blocks {
            // SAFETY: ours, with nothing alive in it but an empty context slot.
            unsafe { cache.give(block) };
        }
        // The first CACHE_LIMIT were kept (the first in the spare slot, the next in the
        // list); the 3 after them were freed at once.
        assert_eq!(cache.spare.get(), blocks[0].as_ptr());
        assert_eq!(cache.len.get(), CACHE_LIMIT - 1);
        assert_eq!(cache.take(), Some(blocks[0]));
        assert_eq!(cache.take(), Some(blocks[CACHE_LIMIT - 1]));
        assert_eq!(cache.take(), Some(blocks[CACHE_LIMIT - 2]));
        // Taken from the spare slot or from the list, a block's count says 1 (in the list,
        // its link was there).
        for block in [blocks[0], blocks[CACHE_LIMIT - 1], blocks[CACHE_LIMIT - 2]] {
            // SAFETY: a block taken back, ours; its count was written.
            assert_eq!(unsafe { (*block.as_ptr()).count.get() }, 1);
        }
        // Given back, a block goes to the empty spare slot, and comes back first.
        // SAFETY: ours, as above.
        unsafe { cache.give(blocks[0]) };
        assert_eq!(cache.take(), Some(blocks[0]));
        // Dropping the cache frees what it still holds (Miri reports a leak otherwise).
        drop(cache);
        // SAFETY: the blocks taken back are ours, allocated with this layout.
        unsafe {
            for block in [blocks[0], blocks[CACHE_LIMIT - 1], blocks[CACHE_LIMIT - 2]] {
                alloc::dealloc(block.as_ptr().cast(), Layout::new::<Counted>());
            }
        }
    }

    #[test]
    fn a_cache_that_keeps_nothing_frees_every_block_at_once() {
        let cache = BlockCache::with_limit(0);
        for _ in 0..3 {
            // SAFETY: a block as `free` gives them, ours; given away.
            unsafe { cache.give(freed_block()) };
            // Freed at once (Miri would see a leak otherwise): nothing to take back.
            assert!(cache.take().is_none());
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn clones_and_new_handles_keep_the_count() {
        let g = Greenlet::new(|_| Ok(()));
        assert_eq!(Shared::count(&g.inner), 1);
        let h = g.clone();
        assert_eq!(Shared::count(&g.inner), 2);
        let address = Shared::as_ptr(&g.inner);
        // SAFETY: `g` keeps the state alive.
        let made = unsafe { Shared::new_handle(address) };
        // SAFETY: as above.
        assert_eq!(unsafe { Shared::count_at(address) }, 3);
        assert!(Shared::ptr_eq(&made, &g.inner));
        drop(made);
        drop(h);
        assert_eq!(Shared::count(&g.inner), 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn a_handle_to_the_current_greenlet_adds_one_count() {
        let main = Greenlet::main();
        let before = Shared::count(&main.inner);
        let current = Greenlet::current();
        assert_eq!(Shared::count(&main.inner), before + 1);
        drop(current);
        assert_eq!(Shared::count(&main.inner), before);
    }

    #[test]
    fn the_cache_is_off_exactly_under_valgrind() {
        // Set by the valgrind row of test-all-targets, which runs these tests under it.
        let under_valgrind = std::env::var_os("GREENLET_UNDER_VALGRIND").is_some()
            && std::env::var_os(KEEP_CACHE_VAR).is_none();
        let cache = BlockCache::new();
        assert_eq!(cache.keeps(), !under_valgrind);
        // The list holds all but the spare.
        let expected = if under_valgrind { 0 } else { CACHE_LIMIT - 1 };
        assert_eq!(cache.limit, expected);
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn a_freed_state_is_reused_by_the_next_greenlet() {
        if running_on_valgrind() {
            // No cache there (see `BlockCache::new`): the allocator decides.
            return;
        }
        let first = Greenlet::new(|_| Ok(()));
        let address = Shared::as_ptr(&first.inner);
        drop(first);
        let second = Greenlet::new(|_| Ok(1));
        assert_eq!(Shared::as_ptr(&second.inner), address);
        assert_eq!(second.switch(()).unwrap().downcast::<i32>().unwrap(), 1);
    }

    /// The last handle of a finished greenlet is freed on the usual path whether switches
    /// are full or not (here, with a trace hook), and with its parent's count given back;
    /// a finished greenlet with extras (a name) is dropped in full, then reused too.
    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn finished_greenlets_are_freed_and_reused_with_or_without_full_switches() {
        if running_on_valgrind() {
            // No cache there (see `BlockCache::new`): the allocator decides.
            return;
        }
        let main = Greenlet::main();
        let parent_count = Shared::count(&main.inner);
        for traced in [false, true] {
            let previous = crate::trace::settrace(
                traced.then(|| -> crate::trace::Tracer { Box::new(|_, _, _| Ok(())) }),
            );
            let ts = thread::state().unwrap();
            assert_eq!(ts.switches_in_full(), traced);
            for named in [false, true] {
                let builder = crate::Builder::new();
                let builder = if named {
                    builder.name("named")
                } else {
                    builder
                };
                let first = builder.build(|_| Ok(7));
                assert_eq!(Shared::count(&main.inner), parent_count + 1);
                assert_eq!(first.switch(()).unwrap().downcast::<i32>().unwrap(), 7);
                assert!(first.is_dead());
                let address = Shared::as_ptr(&first.inner);
                drop(first);
                assert_eq!(Shared::count(&main.inner), parent_count);
                let second = Greenlet::new(|_| Ok(()));
                assert_eq!(Shared::as_ptr(&second.inner), address);
                assert_eq!(second.name(), None);
            }
            crate::trace::settrace(previous);
        }
    }
}
