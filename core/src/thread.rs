//! Per-thread greenlet state: the main greenlet, the current one, the stack pool and the
//! hooks.
//!
//! Every thread that uses greenlets gets a serial number. A greenlet records its owner's
//! serial, and every switch, throw and reparenting compares it with the caller's: cheap, and
//! it needs no access to another thread's state. The set of live serials is consulted only
//! on that error path, to tell "wrong thread" from "thread exited".

use std::cell::{Cell, UnsafeCell};
use std::collections::BTreeSet;
use std::mem::offset_of;
use std::ptr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use greenlet_backends::stack::{GuardedStack, StackError, StackPool, install_overflow_handler};
use greenlet_backends::{Context, DefaultContext};

use crate::entry::EntryClosure;
use crate::error::Error;
use crate::fp::ThreadFp;
use crate::greenlet::{Fields, Greenlet, Inner, State, no_context};
use crate::kill::UnraisableHook;
use crate::owner::OwnerAndState;
use crate::shared::{BlockCache, Shared};
use crate::switch::Message;
use crate::trace::Tracer;

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);
static LIVE_THREADS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

/// Whether the thread with this serial number still runs.
pub(crate) fn is_alive(serial: u64) -> bool {
    LIVE_THREADS
        .lock()
        .map(|live| live.contains(&serial))
        .unwrap_or(false)
}

/// The greenlet state of one thread.
///
/// `repr(C)` with the [`UsualKeys`] first: the usual switch reaches the state through
/// them (see [`usual_keys`]), and at offset 0 the two are one pointer.
#[repr(C)]
pub(crate) struct ThreadState {
    /// The words a target must hold for the usual switch (see [`UsualKeys`]).
    pub(crate) usual: UsualKeys,
    pub(crate) serial: u64,
    /// What a greenlet of this thread holds as its owner and state when it can be switched
    /// to (see [`crate::owner`]).
    pub(crate) keys: SwitchKeys,
    pub(crate) main: Greenlet,
    /// The state of the running greenlet, not counted: a running greenlet's state is never
    /// freed, even without handles (see [`crate::shared`]), so this stays valid until the
    /// greenlet is switched away from, and the switch's receiving side deals with a state
    /// left without handles (see [`crate::switch`]).
    current: Cell<*const Inner>,
    /// The thread's stack pool; reached only through [`ThreadState::with_pool`].
    pool: UnsafeCell<StackPool>,
    pub(crate) tracer: Cell<Option<Tracer>>,
    /// Bumped by every `settrace`, so a tracer that replaced itself is not put back.
    pub(crate) tracer_epoch: Cell<u64>,
    pub(crate) unraisable: Cell<Option<UnraisableHook>>,
    /// An error on its way out of a switch (see `crate::switch::Outcome`): parked here by
    /// the code that produced it, taken at once by the switch's public end.
    parked_error: Cell<Option<Error>>,
    /// Freed greenlet state allocations, for the next greenlets (see [`Shared`]).
    pub(crate) blocks: BlockCache,
    /// Whether greenlets with their own floating-point control state exist (see
    /// [`crate::fp`]).
    pub(crate) fp: ThreadFp,
    /// What the switch in flight delivers (see [`crate::switch`]).
    pub(crate) message: Message,
    /// The state of the greenlet that finished last, if its stack has not been taken back
    /// yet; null if none. Not counted: `free` forgets it before dropping it (see
    /// [`ThreadState::forget_finished`]).
    finished: Cell<*const Inner>,
}

/// The [`OwnerAndState`] words a switch can go to on its usual path, in one comparison:
/// a suspended or unstarted greenlet of this thread, while switches need not take their
/// full path. When they must ([`ThreadState::switches_in_full`]), both hold a word no
/// greenlet ever holds (its state bits say `Running`, which is never stored), so that
/// every switch leaves the usual path at that same comparison, and the usual path tests
/// no flag of its own.
///
/// A switch reaches them through [`usual_keys`], which needs no test: before this thread's
/// state exists and after its teardown, it leads to [`NO_USUAL_SWITCH`], whose words no
/// greenlet holds either, and the switch leaves the usual path at the same comparison.
/// Atomic only so that the placeholder can be a `static`; relaxed loads and stores are
/// plain moves, and only the owner thread touches a thread state's.
///
/// With them, the word of a finished greenlet of this thread, `dead`: the last handle's
/// drop tests for it, and frees such a greenlet on a usual path of its own (see
/// `crate::shared`). That one is set once, and kept while switches are full (freeing a
/// finished greenlet needs none of what they are for), but not before the thread's state
/// exists or after its teardown.
pub(crate) struct UsualKeys {
    suspended: AtomicU64,
    unstarted: AtomicU64,
    dead: AtomicU64,
}

/// A word no greenlet ever holds: serial 0 (serials start at 1) and state bits `Running`
/// (never stored).
const NEVER_HELD: u64 = 1;
const _: () = assert!(OwnerAndState::key(0, State::Running) == NEVER_HELD);
const _: () = assert!(offset_of!(ThreadState, usual) == 0);

/// The keys a thread without a greenlet state switches with: they match nothing.
static NO_USUAL_SWITCH: UsualKeys = UsualKeys {
    suspended: AtomicU64::new(NEVER_HELD),
    unstarted: AtomicU64::new(NEVER_HELD),
    dead: AtomicU64::new(NEVER_HELD),
};

impl UsualKeys {
    /// The word of a suspended greenlet the usual switch goes to.
    #[inline(always)]
    pub(crate) fn suspended(&self) -> u64 {
        self.suspended.load(Ordering::Relaxed)
    }

    /// The word of an unstarted greenlet the usual switch goes to.
    #[inline(always)]
    pub(crate) fn unstarted(&self) -> u64 {
        self.unstarted.load(Ordering::Relaxed)
    }

    /// The word of a finished greenlet of this thread, whose last handle's drop frees it
    /// on the usual path.
    #[inline(always)]
    pub(crate) fn dead(&self) -> u64 {
        self.dead.load(Ordering::Relaxed)
    }

    fn set(&self, suspended: u64, unstarted: u64) {
        self.suspended.store(suspended, Ordering::Relaxed);
        self.unstarted.store(unstarted, Ordering::Relaxed);
    }

    /// The thread state these keys are part of.
    ///
    /// # Safety
    ///
    /// `this` came from [`usual_keys`], and a greenlet's word matched one of its keys, so
    /// it is a live thread state's, not [`NO_USUAL_SWITCH`].
    #[inline(always)]
    pub(crate) unsafe fn thread_state(this: *const UsualKeys) -> &'static ThreadState {
        // SAFETY: the caller's contract; the pointer was derived from one to the whole
        // thread state (see `first_or_late_state`), so going back to it stays inside the
        // allocation it may reach. Wrapping: nothing is assumed before the match.
        unsafe {
            &*this
                .wrapping_byte_sub(offset_of!(ThreadState, usual))
                .cast::<ThreadState>()
        }
    }
}

/// The [`OwnerAndState`] words of a thread's greenlets that a switch can go to at once.
pub(crate) struct SwitchKeys {
    /// A suspended greenlet's (the running one's too).
    pub(crate) suspended: u64,
    /// An unstarted greenlet's.
    pub(crate) unstarted: u64,
    /// A dead greenlet's, which cannot be switched to, but is stored in one go too.
    pub(crate) dead: u64,
}

impl ThreadState {
    fn new() -> Self {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut live) = LIVE_THREADS.lock() {
            live.insert(serial);
        }
        install_overflow_handler();
        let inner = Shared::new(None, || {
            Fields::new(
                // Started and not dead; running, since it is current (see `Inner::state`).
                OwnerAndState::new(serial, State::Suspended),
                None,
                0,
                EntryClosure::none(),
                None,
                Cell::new(None),
            )
        });
        // SAFETY: the state is ours alone yet, and its slot holds none (`no_context`: a
        // new allocation's), which the write replaces with nothing to drop.
        unsafe { inner.context.get().write(DefaultContext::thread()) };
        let current = Shared::as_ptr(&inner);
        ThreadState {
            serial,
            keys: SwitchKeys {
                suspended: OwnerAndState::key(serial, State::Suspended),
                unstarted: OwnerAndState::key(serial, State::Unstarted),
                dead: OwnerAndState::key(serial, State::Dead),
            },
            main: Greenlet { inner },
            current: Cell::new(current),
            pool: UnsafeCell::new(StackPool::new()),
            tracer: Cell::new(None),
            tracer_epoch: Cell::new(0),
            unraisable: Cell::new(None),
            parked_error: Cell::new(None),
            blocks: BlockCache::new(),
            fp: ThreadFp::new(),
            message: Message::new(),
            usual: UsualKeys {
                suspended: AtomicU64::new(OwnerAndState::key(serial, State::Suspended)),
                unstarted: AtomicU64::new(OwnerAndState::key(serial, State::Unstarted)),
                dead: AtomicU64::new(OwnerAndState::key(serial, State::Dead)),
            },
            finished: Cell::new(ptr::null()),
        }
    }

    /// Records `dead`, the running greenlet about to leave its stack for good, as the one
    /// whose stack is taken back later; first takes back the stack of the one recorded
    /// before, which left it earlier, for the pool.
    ///
    /// A finishing greenlet cannot give back the stack it runs on. Having the resumed side
    /// do it made every finish an unusual switch, with a handoff. Kept here, the stack
    /// stays in the greenlet's state until either:
    /// - the state is freed: the stack stays in the allocation, for the greenlet that
    ///   reuses it (see [`crate::shared`]; [`ThreadState::forget_finished`] forgets it);
    /// - the next greenlet finishes, or the thread exits: the stack goes to the pool.
    ///
    /// So one stack at most waits in a state that is still alive.
    ///
    /// # Safety
    ///
    /// `dead` is the state of the running greenlet, which leaves its stack for good
    /// before anything else runs on this thread.
    #[inline(always)]
    pub(crate) unsafe fn record_finished(&self, dead: *const Inner) {
        let earlier = self.finished.replace(dead);
        if !earlier.is_null() {
            // SAFETY: a recorded state is alive (freeing it forgets it first), and its
            // greenlet left its stack before the running one started to finish.
            unsafe { self.reclaim_stack(earlier) };
        }
    }

    /// Forgets `inner`, a state about to be freed, if it is the one recorded by
    /// [`ThreadState::record_finished`]: its stack stays in its allocation.
    #[inline(always)]
    pub(crate) fn forget_finished(&self, inner: *const Inner) {
        if ptr::eq(self.finished.get(), inner) {
            self.finished.set(ptr::null());
        }
    }

    /// Takes the stack of the finished greenlet whose state is at `dead` back, for the
    /// pool.
    ///
    /// # Safety
    ///
    /// `dead` is a live state whose greenlet has left its stack for good.
    #[cold]
    #[inline(never)]
    unsafe fn reclaim_stack(&self, dead: *const Inner) {
        // SAFETY: the caller's contract: the context exited, and nothing references it.
        let context = unsafe { (*dead).context.get().replace(no_context()) };
        // SAFETY: an exited context (or none) is not running.
        if let Some(stack) = unsafe { context.into_stack() } {
            self.give_to_pool(stack);
        }
    }

    /// A stack from the pool for a greenlet that asks for `size` bytes.
    pub(crate) fn take_stack(&self, size: usize) -> Result<GuardedStack, StackError> {
        self.with_pool(|pool| pool.take(size))
    }

    /// Gives `stack` to the pool: out of line, off the usual path.
    #[cold]
    #[inline(never)]
    pub(crate) fn give_to_pool(&self, stack: GuardedStack) {
        self.with_pool(|pool| pool.give(stack));
    }

    /// Whether a switch must do more than hand over a value: deliver it by handoff, so that
    /// the resumed side runs the trace hook, or kills or frees the greenlet left if it has
    /// no handle any more; and exchange floating-point control states. True while a trace
    /// hook is installed, once a greenlet keeps its own control state, and whenever the
    /// running greenlet has no handle.
    ///
    /// May be true when none of that turns out to be needed (a hook that removed itself by
    /// failing, a greenlet given a handle again); never false when one is. It is set when
    /// the running greenlet loses its last handle ([`ThreadState::orphan_current`]), and
    /// recomputed only where all three are known: when a hook or an own control state
    /// comes or goes, and after every switch that took the full path.
    ///
    /// Kept in the [`UsualKeys`] alone: they hold the real keys exactly when it is false.
    #[inline(always)]
    pub(crate) fn switches_in_full(&self) -> bool {
        self.usual.suspended() != self.keys.suspended
    }

    /// Recomputes [`ThreadState::switches_in_full`].
    pub(crate) fn update_full_switches(&self) {
        let hook = crate::trace::has_tracer(self);
        // SAFETY: the running greenlet's state is alive (see `current`).
        let orphan = unsafe { Shared::count_at(self.current.get()) } == 0;
        self.set_full_switches(hook || self.fp.in_use() || orphan);
    }

    /// Notes that the running greenlet has lost its last handle: the switch away from it
    /// takes the full path, whose receiving side kills or frees it.
    #[inline]
    pub(crate) fn orphan_current(&self) {
        self.set_full_switches(true);
    }

    /// Sets [`ThreadState::switches_in_full`]: the [`UsualKeys`].
    fn set_full_switches(&self, full: bool) {
        if full {
            self.usual.set(NEVER_HELD, NEVER_HELD);
        } else {
            self.usual.set(self.keys.suspended, self.keys.unstarted);
        }
    }

    /// A handle to the running greenlet.
    #[inline]
    pub(crate) fn current(&self) -> Greenlet {
        // SAFETY: the running greenlet's state is alive (see the field).
        Greenlet {
            inner: unsafe { Shared::new_handle(self.current.get()) },
        }
    }

    /// Runs `f` on the thread's stack pool.
    ///
    /// Not a `RefCell`: its borrow flag cost a test and two stores on every start and
    /// every finish, and kept the stack in memory for a landing pad.
    #[inline(always)]
    pub(crate) fn with_pool<R>(&self, f: impl FnOnce(&mut StackPool) -> R) -> R {
        // SAFETY: the only reference to the pool is this one: `ThreadState` is `!Sync` and
        // this is the only access, `f` is our own code (see the callers) and the pool's
        // methods call nothing of ours, so no second `with_pool` can start inside it.
        f(unsafe { &mut *self.pool.get() })
    }

    /// Parks `error` for the switch's public end to return (see `crate::switch::Outcome`),
    /// and returns the `None` that says so.
    #[cold]
    pub(crate) fn park_error<T>(&self, error: Error) -> Option<T> {
        let earlier = self.parked_error.replace(Some(error));
        debug_assert!(earlier.is_none(), "greenlet: an error parked twice");
        None
    }

    /// The error parked by [`ThreadState::park_error`].
    #[cold]
    #[inline(never)]
    pub(crate) fn take_parked_error(&self) -> Error {
        match self.parked_error.take() {
            Some(error) => error,
            None => crate::switch::fatal("greenlet: no error parked for a failed switch"),
        }
    }

    /// The running greenlet's state: valid until the running greenlet switches away.
    #[inline]
    pub(crate) fn current_inner(&self) -> &Inner {
        // SAFETY: as in `current`; the borrow ends before any switch (the caller's duty).
        unsafe { &*self.current.get() }
    }

    /// The address of the running greenlet's state.
    #[inline]
    pub(crate) fn current_address(&self) -> *const Inner {
        self.current.get()
    }

    /// Makes the greenlet whose state is at `target` the running one, and returns the
    /// address of the state of the one that was. No count changes hands.
    #[inline(always)]
    pub(crate) fn replace_current(&self, target: *const Inner) -> *const Inner {
        self.current.replace(target)
    }

    /// Makes the greenlet whose state is at `target` the running one. No count changes
    /// hands.
    #[inline]
    pub(crate) fn set_current(&self, target: *const Inner) {
        self.current.set(target);
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        TORN_DOWN.with(|torn_down| torn_down.set(true));
        USUAL_PTR.with(|ptr| ptr.set(&raw const NO_USUAL_SWITCH));
        // The last finished greenlet's stack, if still out, is taken back, to be dropped
        // with the pool.
        let finished = self.finished.replace(ptr::null());
        if !finished.is_null() {
            // SAFETY: a recorded state is alive, and its greenlet finished.
            unsafe { self.reclaim_stack(finished) };
        }
        // The thread is exiting on its own stack, so main is current. Its greenlets that are
        // still suspended cannot be resumed any more: dropping their last handle later
        // discards their stacks without running their destructors.
        self.main.inner.owner_and_state.set_state(State::Dead);
        if let Ok(mut live) = LIVE_THREADS.lock() {
            live.remove(&self.serial);
        }
    }
}

thread_local! {
    static STATE: ThreadState = ThreadState::new();
    /// Set when `STATE`'s teardown begins: from then on there is no thread state.
    static TORN_DOWN: Cell<bool> = const { Cell::new(false) };
    /// Where the usual switch finds this thread's [`UsualKeys`], and everything else the
    /// thread state (the keys are its first field): the thread state's while it exists,
    /// [`NO_USUAL_SWITCH`] before and after. Constant-initialised and without a
    /// destructor: one load away all the thread's life, while reaching `STATE` itself
    /// checks whether it needs initialising. (One pointer for both: the switch and the
    /// code around it load one thread-local, not two.)
    static USUAL_PTR: Cell<*const UsualKeys> = const { Cell::new(&raw const NO_USUAL_SWITCH) };
}

/// The keys the usual switch compares a greenlet's word with (see [`UsualKeys`]): always
/// live, with no test for a thread state that does not exist (yet, or any more).
#[inline(always)]
pub(crate) fn usual_keys() -> *const UsualKeys {
    USUAL_PTR.with(Cell::get)
}

/// This thread's greenlet state, created on first use; [`Error::ThreadExited`] once it
/// has been torn down (from a later thread-local destructor).
#[inline(always)]
pub(crate) fn state() -> Result<&'static ThreadState, Error> {
    match existing_state() {
        Some(ts) => Ok(ts),
        None => first_or_late_state(),
    }
}

/// This thread's greenlet state if it exists: not before its first use, nor once torn
/// down.
#[inline(always)]
pub(crate) fn existing_state() -> Option<&'static ThreadState> {
    let keys = usual_keys();
    if ptr::eq(keys, &raw const NO_USUAL_SWITCH) {
        return None;
    }
    // SAFETY: any other pointer was stored by `first_or_late_state`: it points at the keys
    // of `STATE`, its first field, and `STATE` lives until this thread's thread-local
    // destructors run; its destructor puts the placeholder back first. The reference
    // never leaves the thread (`ThreadState` is `!Send`). Greenlet frames that hold it
    // across a switch are only resumed while the state is alive.
    Some(unsafe { &*keys.cast::<ThreadState>() })
}

/// [`state`] on its first use in this thread, or after teardown.
#[cold]
#[inline(never)]
fn first_or_late_state() -> Result<&'static ThreadState, Error> {
    if TORN_DOWN.with(Cell::get) {
        return Err(Error::ThreadExited);
    }
    let state = STATE
        .try_with(|state| state as *const ThreadState)
        .map_err(|_| Error::ThreadExited)?;
    // From the pointer to the whole state, so that `UsualKeys::thread_state` may go back.
    let keys = state
        .wrapping_byte_add(offset_of!(ThreadState, usual))
        .cast::<UsualKeys>();
    USUAL_PTR.with(|ptr| ptr.set(keys));
    // SAFETY: as in `state`.
    Ok(unsafe { &*state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlet_backends::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE, running_on_valgrind};

    /// Whether `greenlet`'s state still holds a context with a stack (not `no_context`).
    fn holds_a_stack(greenlet: &Greenlet) -> bool {
        // SAFETY: the greenlet is not running: nothing else reaches the slot now.
        unsafe { (*greenlet.inner.context.get()).stack_size() != 0 }
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn a_finished_greenlets_stack_waits_in_its_state_until_the_next_finish() {
        let ts = state().unwrap();
        let first = Greenlet::new(|_| Ok(()));
        first.switch(()).unwrap();
        assert!(first.is_dead());
        // Left for the thread state to take back, not taken back by main on receiving.
        assert!(holds_a_stack(&first));
        assert!(ptr::eq(ts.finished.get(), Shared::as_ptr(&first.inner)));
        let second = Greenlet::new(|_| Ok(()));
        second.switch(()).unwrap();
        // The next finish took the first one's stack back and recorded its own.
        assert!(!holds_a_stack(&first));
        assert!(holds_a_stack(&second));
        assert!(ptr::eq(ts.finished.get(), Shared::as_ptr(&second.inner)));
        // Freeing the recorded state forgets it.
        drop(second);
        assert!(ts.finished.get().is_null());
        drop(first);
        assert!(ts.finished.get().is_null());
    }

    /// A greenlet's closure that sends its parent the address of one of its locals, on
    /// its own stack: the same for two greenlets on the same stack.
    fn send_a_local_address(_: crate::Value) -> Result<(), Error> {
        let local = 0_u8;
        let address = std::hint::black_box(&local) as *const u8 as usize;
        Greenlet::switch_to_parent(address)?;
        Ok(())
    }

    /// Starts `greenlet` (running [`send_a_local_address`]) and returns what it sends.
    fn start_and_get_address(greenlet: &Greenlet) -> usize {
        greenlet.switch(()).unwrap().downcast::<usize>().unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn a_freed_state_keeps_its_stack_for_the_next_greenlet_of_the_same_size() {
        if running_on_valgrind() {
            // No state cache there (see `BlockCache::new`): nothing is kept.
            return;
        }
        let first = Greenlet::new(send_a_local_address);
        let on_first_stack = start_and_get_address(&first);
        first.switch(()).unwrap();
        assert!(first.is_dead());
        let address = Shared::as_ptr(&first.inner);
        drop(first);
        // The next greenlet gets the allocation, and the stack kept in it.
        let second = Greenlet::new(send_a_local_address);
        assert!(ptr::eq(Shared::as_ptr(&second.inner), address));
        assert!(holds_a_stack(&second));
        assert_eq!(second.state(), State::Unstarted);
        assert_eq!(start_and_get_address(&second), on_first_stack);
        second.switch(()).unwrap();
        drop(second);
        // A size the stack was rounded up from takes it too (on every target: stacks are
        // rounded to a power of two natively, to 16 bytes on wasm32).
        let odd_size = Greenlet::builder()
            .stack_size(DEFAULT_STACK_SIZE - 8)
            .build(send_a_local_address);
        assert!(ptr::eq(Shared::as_ptr(&odd_size.inner), address));
        // It asks for what the kept stack has, which `restart_kept` compares.
        assert_eq!(odd_size.inner.stack_size, DEFAULT_STACK_SIZE);
        assert_eq!(start_and_get_address(&odd_size), on_first_stack);
        odd_size.switch(()).unwrap();
        drop(odd_size);
        // Another size: the kept stack goes to the pool, the greenlet gets one of its size.
        let bigger = Greenlet::builder()
            .stack_size(DEFAULT_STACK_SIZE * 4)
            .build(send_a_local_address);
        assert!(ptr::eq(Shared::as_ptr(&bigger.inner), address));
        let on_bigger_stack = start_and_get_address(&bigger);
        assert!(on_bigger_stack.abs_diff(on_first_stack) > DEFAULT_STACK_SIZE);
        bigger.switch(()).unwrap();
        assert!(bigger.is_dead());
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn a_kept_stack_of_another_size_leaves_the_state_when_no_stack_can_be_had() {
        if running_on_valgrind() {
            // No state cache there (see `BlockCache::new`): nothing is kept.
            return;
        }
        let first = Greenlet::new(|_| Ok(()));
        first.switch(()).unwrap();
        drop(first);
        // Too large for any stack: the kept one goes to the pool, and none comes back.
        let huge = Greenlet::builder()
            .stack_size(MAX_STACK_SIZE * 2)
            .build(|_| Ok(()));
        assert!(holds_a_stack(&huge));
        let error = huge.switch(()).unwrap_err();
        assert!(matches!(error, Error::NoStack(_)), "{error:?}");
        // Nothing stale left in the state, which stays unstarted.
        assert!(!holds_a_stack(&huge));
        assert_eq!(huge.state(), State::Unstarted);
        drop(huge);
        let next = Greenlet::new(|_| Ok(5));
        assert_eq!(next.switch(()).unwrap().downcast::<i32>().unwrap(), 5);
    }

    #[test]
    #[cfg(not(target_family = "wasm"))] // no threads to spawn in wasm32-wasip1
    #[cfg_attr(miri, ignore = "installs a signal handler")]
    fn a_thread_switches_with_keys_that_match_nothing_until_it_has_a_state() {
        std::thread::spawn(|| {
            assert!(ptr::eq(usual_keys(), &NO_USUAL_SWITCH));
            let ts = state().unwrap();
            assert!(ptr::eq(usual_keys(), &ts.usual));
            // SAFETY: the keys are this thread state's.
            let back = unsafe { UsualKeys::thread_state(usual_keys()) };
            assert!(ptr::eq(back, ts));
        })
        .join()
        .unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn the_full_switch_flag_follows_the_trace_hook() {
        let ts = state().unwrap();
        let usual = |ts: &ThreadState| (ts.usual.suspended(), ts.usual.unstarted());
        let real = (ts.keys.suspended, ts.keys.unstarted);
        assert!(!ts.switches_in_full());
        assert_eq!(usual(ts), real);
        crate::settrace(Some(Box::new(|_, _, _| Ok(()))));
        assert!(ts.switches_in_full());
        // No greenlet's word matches while switches take the full path.
        let (suspended, unstarted) = usual(ts);
        for state in [State::Unstarted, State::Suspended, State::Dead] {
            let word = OwnerAndState::key(ts.serial, state);
            assert!(word != suspended && word != unstarted, "{state:?}");
        }
        crate::settrace(None);
        assert!(!ts.switches_in_full());
        assert_eq!(usual(ts), real);
    }
}
