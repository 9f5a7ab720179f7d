//! Transfer of control between greenlets: resolving the target, starting it, switching,
//! and what every resumed greenlet does first.
//!
//! A switch in four steps:
//! 1. [`transfer`] checks the owner thread and the target's state, one word compared with
//!    the thread's [`UsualKeys`] ([`crate::owner`]). The common cases, a suspended
//!    greenlet of this thread or an unstarted one (given a stack by [`prepare`] first),
//!    while switches need not take their full path, go straight to [`switch_to`], expanded
//!    in the caller's frame; everything else (no thread state, forwarding from a dead
//!    greenlet to its nearest live ancestor, a switch to oneself, full switches, errors)
//!    is out of line in [`transfer_slow`] and [`transfer_unusual`].
//! 2. [`switch_to`] makes the target current and sends what it delivers: in the usual
//!    case (a plain value, and the thread's flag for full switches clear: no trace hook,
//!    no own floating-point state, a switching greenlet that still has a handle; see
//!    [`ThreadState::switches_in_full`]) the value's table as the backend's `usize` and its
//!    own word in the thread state's [`Message`]; otherwise a [`Handoff`] on the switching
//!    greenlet's own stack (what is delivered, and the greenlet left), whose tagged
//!    address the `usize` carries. It exchanges floating-point control states if the
//!    thread has greenlets that keep their own ([`crate::fp`]), then switches contexts.
//! 3. The resumed side runs [`receive`]: takes the value *first*; in the usual case that
//!    is all, one test of the word it received. Otherwise it moves the handoff out, runs
//!    the trace hook, kills or frees an origin left without handles, and recomputes the
//!    thread's flag for full switches.
//! 4. A finishing greenlet runs [`finish`], which delivers its outcome to its parent chain
//!    and leaves its stack for good, the same way: a plain value goes as in the usual
//!    switch. Its stack is not the resumed side's to reclaim: the thread state records the
//!    greenlet, and takes the stack back later
//!    ([`ThreadState::record_finished`]).
//!
//! Inside, a switch returns an [`Outcome`] (the value, or `None` with the error parked in
//! the thread state): two registers rather than a `Result` returned through memory.

use std::any::Any;
use std::borrow::Borrow;
use std::cell::Cell;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use greenlet_backends::stack::StackError;
use greenlet_backends::{Context, DefaultContext};

use crate::error::Error;
use crate::fp;
use crate::greenlet::{Greenlet, Inner, State, no_context};
use crate::shared::Shared;
use crate::thread::{self, ThreadState, UsualKeys};
use crate::trace;
use crate::value::{Value, ValueParts, ValueTable};

/// What a switch carries to the greenlet it resumes.
pub(crate) enum Delivery {
    /// An ordinary value: the pending switch returns `Ok`.
    Value(Value),
    /// An error: the pending switch returns `Err`.
    Error(Error),
    /// A panic that killed a child: the pending switch resumes unwinding.
    Panic(Box<dyn Any + Send>),
}

impl Delivery {
    /// What the receiving switch returns, as an [`Outcome`]: a value, or `None` with the
    /// error parked in `ts`; a panic resumes unwinding.
    fn into_outcome(self, ts: &ThreadState) -> Outcome {
        match self {
            Delivery::Value(value) => Some(value),
            Delivery::Error(error) => ts.park_error(error),
            Delivery::Panic(payload) => panic::resume_unwind(payload),
        }
    }

    /// A `GreenletExit` that reaches a parent (from a dying child, or forwarded by a dead
    /// greenlet) arrives as an ordinary value.
    fn exit_as_value(self) -> Delivery {
        match self {
            Delivery::Error(Error::Exit(exit)) => Delivery::Value(Value::new(exit)),
            other => other,
        }
    }
}

/// The usual switch's delivery, a plain value: its table's address is the `usize` the
/// backend carries (in a register), and its own word waits here, in the thread state,
/// for the greenlet resumed to take it before anything else runs.
///
/// The word goes through memory because it may hold uninitialised bytes (a `()`, or a
/// type's padding), which no integer may; the table's address is always initialised, and
/// even. So the usual switch stores one word for the resumed side and the resumed side
/// tests the register it received (a [`Handoff`] on the stack was four stores and as many
/// loads on every switch; both words here, one more of each, measurably slower). Any other
/// switch carries a handoff's address with [`HANDOFF_TAG`] set.
pub(crate) struct Message {
    bits: Cell<MaybeUninit<u64>>,
}

/// The bit that marks the `usize` a switch carries as a handoff's address rather than a
/// value's table. Both are even, so it is free.
const HANDOFF_TAG: usize = 1;
const _: () = assert!(align_of::<Handoff>() > HANDOFF_TAG);

impl Message {
    /// No message yet: every switch writes one before it reads one.
    pub(crate) fn new() -> Self {
        Message {
            bits: Cell::new(MaybeUninit::uninit()),
        }
    }

    /// Sends a plain value; returns what the backend must carry.
    #[inline(always)]
    fn send_value(&self, value: Value) -> usize {
        let parts = value.into_parts();
        self.bits.set(parts.bits);
        parts.table.address()
    }

    /// The value sent, if the switch that resumed us carried a value's table (`received`);
    /// `None` if it carried a handoff's address.
    ///
    /// # Safety
    ///
    /// `received` is what the switch that resumed us carried, and the value not taken yet.
    #[inline(always)]
    unsafe fn take(&self, received: usize) -> Option<Value> {
        if received & HANDOFF_TAG != 0 {
            return None;
        }
        Some(Value::from_parts(ValueParts {
            bits: self.bits.get(),
            // SAFETY: the caller's contract: an untagged word is a table's address.
            table: unsafe { ValueTable::from_address(received) },
        }))
    }
}

/// The handoff whose tagged address a switch carried.
#[inline(always)]
fn handoff_at(received: usize) -> *const Handoff {
    ptr::with_exposed_provenance(received & !HANDOFF_TAG)
}

/// What one greenlet hands the next at a switch that is not the usual one (see
/// [`Message`]). It lives on the switching greenlet's stack, wrapped in `ManuallyDrop`;
/// the backend carries its address as the switch's `usize`, and the resumed side moves it
/// out ([`receive`]) before anything else runs. The switching greenlet's stack stays
/// readable until then: a suspended greenlet's frames are not touched, and a finished
/// one's stack is reclaimed only after the move.
///
/// A plain value travels in `bits` and `table`, two words the compiler moves as scalars; an
/// error or a panic stays parked on the switching side's stack and `unusual` points at it.
/// (Moving a whole [`Delivery`] enum made the compiler copy it as a block over fields it
/// had just stored one by one: a store-forwarding stall each time.)
#[repr(C)]
pub(crate) struct Handoff {
    /// The value delivered, when `unusual` has no [`Delivery`] address: its own word...
    bits: MaybeUninit<u64>,
    /// The address of a [`Delivery`] parked by the switching side, or zero if `bits` and
    /// `table` hold a plain value.
    unusual: usize,
    /// ... and its type's table. The two words are apart (`repr(C)`, `unusual` between
    /// them) so that the compiler cannot copy them as one 16-byte block: loaded that way
    /// right after being stored as two words, they stall the load until the stores retire.
    table: MaybeUninit<ValueTable>,
    /// The state of the greenlet switched away from. Not counted: if it has no handle left,
    /// the receiving side kills it (suspended) or frees it (finished); see [`release`].
    /// (The usual switch has no handoff: its origin has a handle and lives on.)
    origin: *const Inner,
}

impl Handoff {
    /// A handoff carrying a plain value.
    #[inline(always)]
    fn of_value(value: Value, origin: *const Inner) -> Handoff {
        let parts = value.into_parts();
        Handoff {
            bits: parts.bits,
            unusual: 0,
            table: MaybeUninit::new(parts.table),
            origin,
        }
    }

    /// The value carried.
    ///
    /// # Safety
    ///
    /// The handoff carries a value (`unusual` holds no delivery address), not yet taken.
    #[inline(always)]
    unsafe fn take_value(this: *const Handoff) -> Value {
        // SAFETY: the caller's contract: both words were written by `of_value`.
        unsafe {
            Value::from_parts(ValueParts {
                bits: (*this).bits,
                table: (*this).table.assume_init(),
            })
        }
    }
}

/// Something a switch can deliver: a plain [`Value`] (the common case, which never builds
/// a [`Delivery`]), or any [`Delivery`].
pub(crate) trait Outgoing: Sized {
    /// Sends `self`: packs it into a handoff and returns the value the backend must carry,
    /// the handoff's tagged address. Anything but a value is moved into `parked`; `parked`
    /// and `handoff` must stay where they are until the switch has been received. A
    /// [`Value`] sent on a `usual` switch goes as a [`Message`] instead (a [`Delivery`]
    /// holding one is rare: it takes a handoff).
    #[inline(always)]
    fn send(
        self,
        _ts: &ThreadState,
        _usual: bool,
        origin: *const Inner,
        parked: &mut MaybeUninit<Delivery>,
        handoff: &mut MaybeUninit<Handoff>,
    ) -> usize {
        send_handoff(self.pack(origin, parked), handoff)
    }
    /// Packs `self` into a handoff; anything but a value is moved into `parked`, which must
    /// stay where it is until the handoff has been received.
    fn pack(self, origin: *const Inner, parked: &mut MaybeUninit<Delivery>) -> Handoff;
    /// As a [`Delivery`], for the out-of-line paths.
    fn into_delivery(self) -> Delivery;
}

impl Outgoing for Value {
    #[inline(always)]
    fn send(
        self,
        ts: &ThreadState,
        usual: bool,
        origin: *const Inner,
        parked: &mut MaybeUninit<Delivery>,
        handoff: &mut MaybeUninit<Handoff>,
    ) -> usize {
        if usual {
            return ts.message.send_value(self);
        }
        send_handoff(self.pack(origin, parked), handoff)
    }

    #[inline(always)]
    fn pack(self, origin: *const Inner, _parked: &mut MaybeUninit<Delivery>) -> Handoff {
        Handoff::of_value(self, origin)
    }

    fn into_delivery(self) -> Delivery {
        Delivery::Value(self)
    }
}

impl Outgoing for Delivery {
    #[inline(always)]
    fn pack(self, origin: *const Inner, parked: &mut MaybeUninit<Delivery>) -> Handoff {
        match self {
            Delivery::Value(value) => value.pack(origin, parked),
            other => Handoff {
                bits: MaybeUninit::uninit(),
                unusual: ptr::from_mut(parked.write(other)).expose_provenance(),
                table: MaybeUninit::uninit(),
                origin,
            },
        }
    }

    fn into_delivery(self) -> Delivery {
        self
    }
}

/// Sends `packed` as the switch's handoff, moved into `handoff`; returns its tagged
/// address, for the backend to carry.
#[inline(always)]
fn send_handoff(packed: Handoff, handoff: &mut MaybeUninit<Handoff>) -> usize {
    ptr::from_ref::<Handoff>(handoff.write(packed)).expose_provenance() | HANDOFF_TAG
}

/// Ends the process with a message: for broken internal invariants only.
pub(crate) fn fatal(message: &str) -> ! {
    eprintln!("fatal runtime error: {message}");
    std::process::abort()
}

/// The nearest ancestor of `greenlet` (itself included) that is not dead.
fn live_ancestor(greenlet: &Greenlet) -> Greenlet {
    let mut candidate = greenlet.clone();
    while candidate.is_dead() {
        candidate = match candidate.parent() {
            Some(parent) => parent,
            None => fatal("greenlet: ran out of parent greenlets"),
        };
    }
    candidate
}

/// Delivers `delivery` to `target` (or its nearest live ancestor if it is dead) and
/// returns what the current greenlet receives when it is resumed.
#[inline(always)]
pub(crate) fn transfer(target: &Greenlet, delivery: impl Outgoing) -> Result<Value, Error> {
    transfer_to(target, delivery)
}

/// [`transfer`] to a handle we own, which is dropped before the stack switch (see
/// [`switch_to`]), so that it does not wait on the switching greenlet's stack.
#[inline(always)]
pub(crate) fn transfer_owned(target: Greenlet, delivery: impl Outgoing) -> Result<Value, Error> {
    transfer_to(target, delivery)
}

/// What the inner switch functions return: the value received, or `None` once an error has
/// been parked in the thread state ([`ThreadState::park_error`]) for [`transfer_to`], the
/// public end, to return. An `Option<Value>` is two words, returned in registers; a
/// `Result<Value, Error>` is five, returned through memory, and a switch returned one
/// through every level and re-read it at each.
type Outcome = Option<Value>;

/// [`transfer`] and [`transfer_owned`]: the two common cases inline, the rest out of line.
///
/// `target` is a borrowed or an owned handle: a type parameter rather than a `Cow`, so that
/// a borrowed one leaves no drop to plan for (with a `Cow`, the value in flight was kept in
/// memory for a landing pad in case dropping the handle unwound).
///
/// The target's owner and stored state, one word (see `crate::owner`), are compared with
/// the thread's [`UsualKeys`]: a suspended greenlet of this thread is one comparison
/// away, when the switch can take the usual path. The keys are found without asking
/// whether this thread has a greenlet state (see [`thread::usual_keys`]); anything else
/// (no thread state, another thread's greenlet, a dead one, full switches) goes out of
/// line to [`transfer_slow`].
#[inline(always)]
fn transfer_to(target: impl Borrow<Greenlet>, delivery: impl Outgoing) -> Result<Value, Error> {
    // Not dropped if `prepare` unwinds (a bug; it is leaked then): a drop to run on that
    // path kept the value in memory on every switch.
    let delivery = ManuallyDrop::new(delivery);
    let handle = target.borrow();
    let word = handle.inner.owner_and_state.word();
    let keys = thread::usual_keys();
    // SAFETY: `usual_keys` always points at live keys.
    let unstarted = if word == unsafe { (*keys).suspended() } {
        false
    } else if word == unsafe { (*keys).unstarted() } {
        true
    } else {
        return transfer_slow(target, ManuallyDrop::into_inner(delivery));
    };
    // SAFETY: from `usual_keys`, and a key matched.
    let ts = unsafe { UsualKeys::thread_state(keys) };
    let outcome = transfer_usual(ts, target, ManuallyDrop::into_inner(delivery), unstarted);
    match outcome {
        Some(value) => Ok(value),
        None => Err(ts.take_parked_error()),
    }
}

/// [`transfer_to`] off the usual path: finds the thread state (or fails if it is gone) and
/// goes to [`transfer_unusual`].
#[cold]
#[inline(never)]
fn transfer_slow(target: impl Borrow<Greenlet>, delivery: impl Outgoing) -> Result<Value, Error> {
    let ts = match thread::state() {
        Ok(ts) => ts,
        Err(error) => return Err(refuse_late(error, delivery)),
    };
    match transfer_unusual(ts, target, delivery) {
        Some(value) => Ok(value),
        None => Err(ts.take_parked_error()),
    }
}

/// The usual path of [`transfer_to`]: to a suspended greenlet of this thread, or an
/// `unstarted` one, while switches need not take their full path.
#[inline(always)]
fn transfer_usual(
    ts: &ThreadState,
    target: impl Borrow<Greenlet>,
    delivery: impl Outgoing,
    unstarted: bool,
) -> Outcome {
    let handle = target.borrow();
    let delivery = ManuallyDrop::new(delivery);
    // An unstarted target gets its stack first, out of line, then takes the same switch as
    // a suspended one, expanded once, here in the caller's own frame: not in a function of
    // its own, whose `ret` after the switch would be mispredicted (the return stack buffer
    // then holds the calls the child made and never returned from).
    if unstarted && !prepare_usual(ts, handle) {
        return refuse_parked(ManuallyDrop::into_inner(delivery));
    }
    // A switch to oneself: the running greenlet's stored state is `Suspended` too (an
    // unstarted one is never running: no need to look).
    if unstarted || !ptr::eq(Shared::as_ptr(&handle.inner), ts.current_address()) {
        return switch_to(ts, target, ManuallyDrop::into_inner(delivery), false);
    }
    transfer_unusual(ts, target, ManuallyDrop::into_inner(delivery))
}

/// [`refuse_parked`] when the thread's state is gone: returns `error`.
#[cold]
#[inline(never)]
fn refuse_late(error: Error, delivery: impl Outgoing) -> Error {
    drop(delivery);
    error
}

/// Fails a switch whose error is parked already (see [`Outcome`]), dropping what it
/// would have delivered.
///
/// Out of line, and given `delivery` by value, so that the common path keeps the value in
/// registers: dropped in the caller, it had to be in memory (its drop takes its address),
/// and the compiler stored it there on every switch.
#[cold]
#[inline(never)]
fn refuse_parked(delivery: impl Outgoing) -> Outcome {
    drop(delivery);
    None
}

/// Takes a stack for the unstarted `target` and switches to it, which starts it.
#[inline]
fn start(ts: &ThreadState, target: impl Borrow<Greenlet>, delivery: impl Outgoing) -> Outcome {
    if let Err(error) = prepare(ts, target.borrow()) {
        return ts.park_error(error.into());
    }
    switch_to(ts, target, delivery, ts.switches_in_full())
}

/// [`transfer`] to anything but a suspended or unstarted greenlet of this thread: fails
/// for another thread's greenlet, forwards from a dead one to its nearest live ancestor
/// (which may be unstarted), and lets the trace hook see a switch to oneself.
///
/// Takes `delivery` as it comes, by value, for the same reason as [`refuse_parked`].
#[cold]
#[inline(never)]
fn transfer_unusual(
    ts: &ThreadState,
    target: impl Borrow<Greenlet>,
    delivery: impl Outgoing,
) -> Outcome {
    let delivery = delivery.into_delivery();
    let handle = target.borrow();
    if let Err(error) = handle.check_owner(ts) {
        return ts.park_error(error);
    }
    match handle.state() {
        State::Suspended => switch_to(ts, target, delivery, ts.switches_in_full()),
        State::Unstarted => start(ts, target, delivery),
        State::Running => trace::run(ts, handle, handle, delivery).into_outcome(ts),
        State::Dead => {
            // Holding a dead greenlet's handle is harmless: it cannot be killed.
            let forwarded = live_ancestor(handle);
            drop(target);
            transfer_unusual(ts, forwarded, delivery.exit_as_value())
        }
    }
}

/// Gives the unstarted `greenlet` a stack and a context to switch to; from then on it
/// counts as started (every caller switches to it next).
///
/// The stack is the one the greenlet's state kept from the allocation's last greenlet
/// (see [`crate::shared`]) if it is the size asked for, else one from the pool (which
/// that stack joins first).
///
/// Fails with the stack pool's error alone, which is small enough to come back in
/// registers; `?` makes it an [`Error::NoStack`].
fn prepare(ts: &ThreadState, greenlet: &Greenlet) -> Result<(), StackError> {
    if restart_kept(ts, greenlet) {
        return Ok(());
    }
    prepare_from_pool(ts, greenlet)
}

/// [`prepare`] on the usual switch path: [`restart_kept`] expanded in the caller, the
/// pool out of line. (Out of line, its call and frame were a twentieth of the usual
/// create, run and drop.) Returns whether the greenlet got its stack; if not, the error
/// is parked in the thread state (see [`Outcome`]): a `Result` to test cost the usual
/// path three instructions.
#[inline(always)]
fn prepare_usual(ts: &ThreadState, greenlet: &Greenlet) -> bool {
    restart_kept(ts, greenlet) || prepare_or_park(ts, greenlet)
}

/// Starts the unstarted `greenlet` on the stack its state kept, if there is one of the
/// size asked for: the context the allocation's last greenlet left, which has exited, is
/// made new again where it is ([`Context::restart`]: four words on its stack and its
/// stack pointer, rather than a whole context built and moved into the slot). Returns
/// whether it did; if not, nothing has changed.
#[inline(always)]
fn restart_kept(ts: &ThreadState, greenlet: &Greenlet) -> bool {
    debug_assert_eq!(greenlet.inner.owner_and_state.state(), State::Unstarted);
    // SAFETY: no other reference into the slot is alive: contexts are only reached through
    // raw pointers (`context_ptr`), and not while we run here.
    let kept = unsafe { &mut *greenlet.inner.context.get() };
    match kept {
        // (A slot without a context holds `no_context`, whose stack size is 0, which no
        // greenlet asks for.)
        context if context.stack_size() == greenlet.inner.stack_size => {
            let data = ptr::from_ref(ts).cast_mut().cast::<()>();
            // SAFETY: an unstarted greenlet's slot holds none or a context that has
            // exited (the one its allocation's last greenlet left), which nothing runs on
            // or references.
            unsafe { DefaultContext::restart(context, greenlet.inner.run.entry(), data) };
            // Started (see `Inner::state`): running once the caller has switched to it.
            greenlet.inner.owner_and_state.set(ts.keys.suspended);
            true
        }
        _ => false,
    }
}

/// [`prepare_from_pool`] for [`prepare_usual`], out of line: returns whether the greenlet
/// got a stack; if not, parks the error.
#[cold]
#[inline(never)]
fn prepare_or_park(ts: &ThreadState, greenlet: &Greenlet) -> bool {
    match prepare_from_pool(ts, greenlet) {
        Ok(()) => true,
        Err(error) => {
            ts.park_error::<()>(error.into());
            false
        }
    }
}

/// [`prepare`] when the state kept no stack of the size asked for: the one it kept, if
/// any, goes to the pool, and the greenlet gets one from there.
fn prepare_from_pool(ts: &ThreadState, greenlet: &Greenlet) -> Result<(), StackError> {
    debug_assert_eq!(greenlet.inner.owner_and_state.state(), State::Unstarted);
    // Emptied at once, so that the slot holds nothing stale if no stack can be had.
    // SAFETY: as in `restart_kept`; what the slot held, none or a context that has
    // exited, is ours to take apart.
    let left = unsafe { greenlet.inner.context.get().replace(no_context()) };
    // SAFETY: as above: an exited context, or none.
    if let Some(stack) = unsafe { left.into_stack() } {
        ts.give_to_pool(stack);
    }
    let stack = ts.take_stack(greenlet.inner.stack_size)?;
    let data = ptr::from_ref(ts).cast_mut().cast::<()>();
    let context = DefaultContext::new(stack, greenlet.inner.run.entry(), data);
    // SAFETY: as above; the slot holds none, so writing over it loses nothing.
    unsafe { greenlet.inner.context.get().write(context) };
    greenlet.inner.owner_and_state.set(ts.keys.suspended);
    Ok(())
}
/// Switches from the running greenlet to `target`, a suspended or freshly prepared
/// greenlet of this thread, and returns what the running greenlet receives once resumed.
///
/// A `target` we own (the live ancestor a dead greenlet forwards to) is dropped before the
/// stack switch: a handle waiting on this stack would keep it alive, unseen, until we are
/// resumed, so that dropping its last visible handle would not kill it (catalog 76).
///
/// `full` is [`ThreadState::switches_in_full`], which the usual path knows is false (see
/// [`crate::thread::UsualKeys`]).
#[inline(always)]
fn switch_to(
    ts: &ThreadState,
    target: impl Borrow<Greenlet>,
    delivery: impl Outgoing,
    full: bool,
) -> Outcome {
    let handle = target.borrow();
    let to = handle.context_ptr();
    let origin = ts.replace_current(Shared::as_ptr(&handle.inner));
    // SAFETY: the origin was running until now, so its state is alive (see `Shared`), and
    // it stays so while suspended: nothing runs that could free it before the receiving
    // side deals with it.
    let origin_inner = unsafe { &*origin };
    let from = origin_inner.context_ptr();
    let mut parked = MaybeUninit::uninit();
    let mut handoff = MaybeUninit::uninit();
    // The usual switch, with nothing for the resumed side to do but take the value: no
    // trace hook to run, and an origin with a handle left (else the resumed side kills or
    // frees it). Nothing runs between here and the resumed side that could change either.
    // One flag covers both, and the floating-point exchange (`switches_in_full`, which the
    // usual path tested with the target's word: see `UsualKeys`).
    debug_assert_eq!(full, ts.switches_in_full());
    let carried = delivery.send(ts, !full, origin, &mut parked, &mut handoff);
    // Once what we deliver is sent (a call with it still to drop if the call unwound kept
    // it in memory on every switch).
    if full && ts.fp.in_use() {
        fp::exchange(ts, origin_inner, &handle.inner);
    }
    // An owned target goes now, once what we deliver is packed: if it was the last handle,
    // the target runs without any, and is killed or freed when it is next left.
    drop(target);
    // SAFETY: `from` is the running greenlet's context and `to` a prepared context of this
    // thread; both live in greenlet state allocations, which the switch does not free (the
    // target's is the running one's once we switch, the origin's is left to the receiving
    // side). The handoff (and `parked`) are moved out by the resumed side before our stack
    // can go away (see `Handoff`).
    let received = unsafe { DefaultContext::switch(from, to, carried) };
    // SAFETY: whoever resumed us carried a value's table (its word in the message) or a
    // handoff's tagged address, and nothing has taken either yet.
    unsafe { receive(ts, received) }
}

/// What a greenlet does first whenever it is resumed or started: takes what the switch
/// that resumed it sent (`received`, the word the backend carried, and the thread state's
/// [`Message`], or the handoff `received` points at), and returns what it delivers as an
/// [`Outcome`]: the value, or `None` with an error parked; a panic delivered resumes
/// unwinding.
///
/// The usual switch (a plain value from a greenlet that lives on and still has a handle,
/// no trace hook) is one test of `received` and one load; the rest is out of line.
///
/// # Safety
///
/// `received` is the value the switch into this greenlet carried, and what it sent has
/// not been taken yet: the message's word, or the handoff `received` points at.
#[inline(always)]
unsafe fn receive(ts: &ThreadState, received: usize) -> Outcome {
    // SAFETY: the caller's contract.
    unsafe {
        match ts.message.take(received) {
            Some(value) => Some(value),
            None => receive_unusual_outcome(ts, handoff_at(received)),
        }
    }
}

/// The out-of-line part of [`receive`].
///
/// # Safety
///
/// As for [`receive_unusual`].
#[cold]
#[inline(never)]
unsafe fn receive_unusual_outcome(ts: &ThreadState, handoff: *const Handoff) -> Outcome {
    // SAFETY: the caller's contract.
    match unsafe { receive_unusual(ts, handoff) } {
        Ok(value) => Some(value),
        Err(unusual) => unusual.into_outcome(ts),
    }
}

/// Receives any handoff but the usual one: an error or a panic, an origin left without
/// handles, or a switch the trace hook must see.
///
/// # Safety
///
/// `handoff` is the unread handoff of the switch that resumed us.
#[cold]
#[inline(never)]
unsafe fn receive_unusual(ts: &ThreadState, handoff: *const Handoff) -> Result<Value, Delivery> {
    // Move the handoff into locals before any other code can run and switch again.
    // SAFETY: the caller's contract; the value's words are written exactly when `unusual` holds
    // no delivery address (see `Outgoing::pack`), and a delivery address points at a
    // parked `Delivery` the switching side never reads again.
    let (mut received, origin) = unsafe {
        let parked = (*handoff).unusual;
        let received = if parked == 0 {
            Ok(Handoff::take_value(handoff))
        } else {
            Err(ptr::with_exposed_provenance::<Delivery>(parked).read())
        };
        (received, (*handoff).origin)
    };
    // The origin's state is alive until released below (a finished origin's stack too:
    // see `ThreadState::record_finished`).
    if trace::has_tracer(ts) {
        // SAFETY: as above.
        let handle = Greenlet {
            inner: unsafe { Shared::new_handle(origin) },
        };
        received = trace_after_switch(ts, &handle, received);
        // With no other handle left, this kills or frees the origin, as `release` does.
        drop(handle);
    } else {
        // SAFETY: as above; released once.
        unsafe { release(origin) };
    }
    // The full path was taken for the origin's sake, which is dealt with: whether the
    // next switch needs it depends on the greenlet running now.
    ts.update_full_switches();
    received
}

/// Deals with the greenlet just switched away from, if it has no handle left: kills it if
/// it is suspended, frees it if it has finished. Its last handle went while it ran, when
/// its state could not be freed (see [`Shared`]).
///
/// # Safety
///
/// `origin` is the state of the greenlet whose switch resumed us, not released yet.
#[inline(always)]
unsafe fn release(origin: *const Inner) {
    // SAFETY: the caller's contract: the state is alive.
    if unsafe { Shared::count_at(origin) } == 0 {
        // SAFETY: as above.
        unsafe { release_orphan(origin) }
    }
}

/// [`release`] for a greenlet without handles.
///
/// # Safety
///
/// As for [`release`].
#[cold]
#[inline(never)]
unsafe fn release_orphan(origin: *const Inner) {
    // Its last handle, made and dropped: a suspended greenlet is killed by the drop, a
    // finished one freed (see `Shared`'s `Drop`).
    // SAFETY: the caller's contract.
    drop(Greenlet {
        inner: unsafe { Shared::new_handle(origin) },
    });
}

/// The trace hook's part of [`receive_unusual`].
fn trace_after_switch(
    ts: &ThreadState,
    origin: &Greenlet,
    received: Result<Value, Delivery>,
) -> Result<Value, Delivery> {
    let delivery = match received {
        Ok(value) => Delivery::Value(value),
        Err(unusual) => unusual,
    };
    match trace::run_after_switch(ts, origin, delivery) {
        Delivery::Value(value) => Ok(value),
        unusual => Err(unusual),
    }
}

/// The first function on the stack of a greenlet whose closure is an `F`; `received` is
/// what the first switch carried (see [`receive`]) and `data` the thread state of the
/// thread that prepared the greenlet (see [`prepare`]).
///
/// One per closure type (its [`EntryClosure`](crate::entry::EntryClosure) table names it),
/// so that the closure is called directly and can be expanded here.
///
/// Everything the greenlet runs returns here before it leaves its stack, and the usual
/// leaving switch (to a suspended parent, see [`finish_inline`]) is expanded in this frame.
/// The asm backends enter this function without a `call` (they push its return address
/// themselves), so when it leaves, every call the greenlet made has returned: the return
/// stack buffer is as the switch that started it left it, and the code that resumes
/// predicts its own returns. (Leaving from deep inside the closure's call chain made the
/// parent's next return mispredicted: ~15 ns per greenlet created in a function.)
///
/// # Safety
///
/// Only a context made by [`prepare`] calls it, once: if `HELD`, for a greenlet that holds
/// its closure, an `F` (the entry its closure's table names); if not, for one whose
/// closure is gone ([`EntryClosure::entry`](crate::entry::EntryClosure::entry)); with
/// `data` the state of the thread that runs it and `received` what the switch that
/// started it carried, not taken yet.
pub(crate) unsafe extern "C" fn greenlet_entry<F, R, const HELD: bool>(
    received: usize,
    data: *mut (),
) -> !
where
    F: FnOnce(Value) -> Result<R, Error> + 'static,
    R: 'static,
{
    // SAFETY: `prepare` passed this thread's state, which outlives every greenlet that runs
    // in the thread; a greenlet only ever runs in the thread that prepared it.
    let ts = unsafe { &*data.cast_const().cast::<ThreadState>() };
    // SAFETY: `received` is what the switch that started us carried, not taken yet, and
    // `prepare` chose this entry for the closure type our state holds.
    match unsafe { run_current::<F, R, HELD>(ts, received) } {
        Ok(Some(value)) => finish_inline(ts, value),
        Ok(None) => {
            let error = ts.take_parked_error();
            finish(ts, Delivery::Error(error).exit_as_value())
        }
        Err(payload) => finish(ts, Delivery::Panic(payload)),
    }
}

/// Runs the current greenlet's closure, an `F`, with the first delivery (what `received`
/// carries, see [`receive`]): returns its value, `None` with its error parked in the thread
/// state, or the payload of a panic. A first delivery that is an error (a throw into an
/// unstarted greenlet) is what it dies of, without running. Without a closure (`HELD`
/// false: it was gone before the start), it returns `()`.
///
/// # Safety
///
/// As for [`receive`]; and if `HELD`, the current greenlet holds its closure, an `F`.
#[inline(always)]
unsafe fn run_current<F, R, const HELD: bool>(
    ts: &ThreadState,
    received: usize,
) -> std::thread::Result<Outcome>
where
    F: FnOnce(Value) -> Result<R, Error> + 'static,
    R: 'static,
{
    panic::catch_unwind(AssertUnwindSafe(|| -> Outcome {
        // No strong handle to ourselves may stay on our own stack, or dropping the last
        // user handle while we are suspended would not kill us.
        let me: *const Inner = ts.current_inner();
        // SAFETY: our state outlives this call: while we run, it is not freed (see
        // `Shared`); while we are suspended, someone holds a handle, or a killer holds one
        // while it resumes us, or the kill failed and the state was leaked on purpose. The
        // closure is there and an `F` if `HELD` (the caller's contract).
        let run = HELD.then(|| unsafe { (*me).fields.run.take_held::<F, R>() });
        // What `receive` does, with the closure dropped before a thrown error is parked
        // (its drop may panic, and the panic is what the greenlet then dies of).
        // SAFETY: the caller's contract.
        let first = match unsafe { ts.message.take(received) } {
            Some(value) => value,
            // SAFETY: as above.
            None => match unsafe { receive_unusual(ts, handoff_at(received)) } {
                Ok(value) => value,
                // Started by a throw: die of it without running.
                Err(other) => {
                    drop(run);
                    return other.into_outcome(ts);
                }
            },
        };
        match run {
            Some(run) => match run(first) {
                Ok(value) => Some(Value::new(value)),
                Err(error) => ts.park_error(error),
            },
            None => Some(Value::unit()),
        }
    }))
}

/// Marks the current greenlet dead and delivers `outcome` up its parent chain, starting an
/// unstarted ancestor if that is where it lands. Never returns.
fn finish(ts: &ThreadState, outcome: impl Outgoing) -> ! {
    finish_inline(ts, outcome)
}

/// [`finish`], expanded where a greenlet returns a value: the usual way to finish.
#[inline(always)]
fn finish_inline(ts: &ThreadState, outcome: impl Outgoing) -> ! {
    let me = ts.current_inner();
    me.owner_and_state.set(ts.keys.dead);
    // SAFETY: a `Cell` hands out no references, and nothing replaces the parent while this
    // one lives: `leave` runs none of the user's code, and `finish_further` clones it first.
    let parent = unsafe { (*me.parent.as_ptr()).as_ref() };
    debug_assert!(
        parent.is_some(),
        "greenlet: a finishing greenlet without a parent"
    );
    // SAFETY: only a main greenlet has no parent, and a main greenlet never finishes: it
    // runs on its thread's own stack, not from an entry. (A parent is only out of its cell
    // while no user code runs: see `Inner::parent`.)
    let parent = unsafe { parent.unwrap_unchecked() };
    // The usual case: back to the parent, suspended in a switch, while switches need not
    // take their full path. One comparison tells both: its stored state (a greenlet's
    // parent is always of its thread; the parent is not the running greenlet, we are) with
    // the thread's usual key (see `UsualKeys`), which matches nothing while switches are
    // full.
    if parent.inner.owner_and_state.word() == ts.usual.suspended() {
        leave(ts, me, parent, outcome, false)
    }
    finish_further(ts, me.parent(), outcome)
}

/// [`finish`] when the parent is not suspended (dead, or unstarted), or the switch must
/// take its full path.
#[cold]
#[inline(never)]
fn finish_further(ts: &ThreadState, parent: Option<Greenlet>, outcome: impl Outgoing) -> ! {
    match finish_target(ts, parent) {
        Ok(target) => leave(
            ts,
            ts.current_inner(),
            target,
            outcome,
            ts.switches_in_full(),
        ),
        Err((target, error)) => {
            drop(outcome);
            let full = ts.switches_in_full();
            leave(ts, ts.current_inner(), target, Delivery::Error(error), full)
        }
    }
}

/// The nearest ancestor, from `parent` up, that a finishing greenlet can switch to:
/// suspended, or unstarted and given a stack now. If an unstarted one could not start,
/// the failure goes further up instead: returned with the ancestor that gets it.
fn finish_target(
    ts: &ThreadState,
    parent: Option<Greenlet>,
) -> Result<Greenlet, (Greenlet, Error)> {
    let mut failure = None;
    let mut target = parent;
    let target = loop {
        let Some(candidate) = target else {
            fatal("greenlet: ran out of parent greenlets")
        };
        match candidate.state() {
            State::Suspended => break candidate,
            State::Unstarted => match prepare(ts, &candidate) {
                Ok(()) => break candidate,
                Err(error) => {
                    failure = Some(Error::from(error));
                    target = candidate.parent();
                }
            },
            State::Dead => target = candidate.parent(),
            State::Running => fatal("greenlet: a finishing greenlet's parent is running"),
        }
    };
    match failure {
        None => Ok(target),
        Some(error) => Err((target, error)),
    }
}

/// Leaves the finished current greenlet's stack for good, switching to `target`. `me` is
/// the current greenlet's state, as the caller found it (reading it again here cost a load:
/// the compiler cannot tell that the stores before did not change it); `full` is
/// [`ThreadState::switches_in_full`], which the usual path knows is false.
///
/// A plain value goes as in the usual switch ([`switch_to`]): the stack left behind is not
/// the resumed side's to reclaim, but the thread state's, later (see
/// [`ThreadState::record_finished`]), so finishing needs no handoff.
#[inline(always)]
fn leave(
    ts: &ThreadState,
    me: &Inner,
    target: impl Borrow<Greenlet>,
    outcome: impl Outgoing,
    full: bool,
) -> ! {
    debug_assert!(ptr::eq(me, ts.current_address()));
    debug_assert_eq!(full, ts.switches_in_full());
    let mut parked = MaybeUninit::uninit();
    let mut handoff = MaybeUninit::uninit();
    let (from, to, carried) = {
        let handle = target.borrow();
        let to = handle.context_ptr();
        ts.set_current(Shared::as_ptr(&handle.inner));
        let origin = ptr::from_ref(me);
        // Our own state, alive until the receiving side releases it.
        let origin_inner = me;
        let from = origin_inner.context_ptr();
        // As in `switch_to`: a greenlet that finishes without a handle left is freed by
        // the receiving side.
        let carried = outcome.send(ts, !full, origin, &mut parked, &mut handoff);
        if full && ts.fp.in_use() {
            fp::exchange(ts, origin_inner, &handle.inner);
        }
        // Once what we deliver is sent (else the call kept it in memory, to drop it there
        // if the call unwound).
        // SAFETY: `origin` is the state of the greenlet leaving its stack for good, alive
        // until it is freed, which forgets it first.
        unsafe { ts.record_finished(origin) };
        // Nothing with a destructor may stay on this stack. Dropping an owned `target` here
        // runs no code of the user's: it is running now, so neither killed nor freed.
        drop(target);
        (from, to, carried)
    };
    // SAFETY: `from` is our own context, `to` a prepared one of this thread, both in
    // states that stay alive (the target's is now the running one's; ours waits for the
    // receiving side); the resumed side moves the handoff out before anything can reuse
    // this stack (only a later `record_finished` or the state's freeing reclaims it);
    // nothing on this stack needs to run again.
    unsafe { DefaultContext::exit(from, to, carried) }
}
