//! Transfer of control between greenlets: resolving the target, starting it, switching,
//! and what every resumed greenlet does first.
//!
//! A switch in four steps:
//! 1. [`transfer`] checks the owner thread and, if the target is dead, forwards to its
//!    nearest live ancestor.
//! 2. [`switch_to`] starts an unstarted target (takes a stack), parks the [`Delivery`] in
//!    the thread state, makes the target current, and switches contexts.
//! 3. The resumed side runs [`after_switch`]: takes the delivery into a local *first*, then
//!    reclaims the stack of a greenlet that just died, runs the trace hook, and drops the
//!    handle of the greenlet it came from (which may kill that one).
//! 4. A finishing greenlet runs [`finish`], which delivers its outcome to its parent chain
//!    and leaves its stack for good.

use std::any::Any;
use std::borrow::Cow;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use greenlet_backends::{Context, DefaultContext};

use crate::error::Error;
use crate::greenlet::{Greenlet, Inner, State};
use crate::thread::{self, ThreadState};
use crate::trace;
use crate::value::Value;

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
    /// What the receiving switch returns.
    #[inline(always)]
    pub(crate) fn into_result(self) -> Result<Value, Error> {
        match self {
            Delivery::Value(value) => Ok(value),
            Delivery::Error(error) => Err(error),
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
///
/// The rare cases are out of line and the common path is inlined into this one function,
/// so that a plain switch moves the delivery once into the thread state and the result
/// once out of it.
pub(crate) fn transfer(target: &Greenlet, delivery: Delivery) -> Result<Value, Error> {
    let ts = thread::state()?;
    target.check_owner(ts)?;
    if target.is_dead() {
        return transfer_to_ancestor(ts, target, delivery);
    }
    switch_to(ts, Cow::Borrowed(target), delivery)
}

/// [`transfer`] to a handle we own, which is dropped before the stack switch (see
/// [`switch_to`]), so that it does not wait on the switching greenlet's stack.
pub(crate) fn transfer_owned(target: Greenlet, delivery: Delivery) -> Result<Value, Error> {
    let ts = thread::state()?;
    target.check_owner(ts)?;
    if target.is_dead() {
        // Holding a dead greenlet's handle is harmless: it cannot be killed.
        return transfer_to_ancestor(ts, &target, delivery);
    }
    switch_to(ts, Cow::Owned(target), delivery)
}

/// [`transfer`] to a dead `target`: to its nearest live ancestor.
#[cold]
#[inline(never)]
fn transfer_to_ancestor(
    ts: &ThreadState,
    target: &Greenlet,
    delivery: Delivery,
) -> Result<Value, Error> {
    let forwarded = live_ancestor(target);
    switch_to(ts, Cow::Owned(forwarded), delivery.exit_as_value())
}

/// Makes sure `greenlet` has a context to switch to, taking a stack if it is unstarted.
fn prepare(ts: &ThreadState, greenlet: &Greenlet) -> Result<(), Error> {
    let slot = greenlet.inner.context.get();
    // SAFETY: no reference into the slot is alive: contexts are only reached through raw
    // pointers (`context_ptr`), and not while we run here.
    if unsafe { (*slot).is_some() } {
        return Ok(());
    }
    let stack = ts.pool.borrow_mut().take(greenlet.inner.stack_size)?;
    let context = DefaultContext::new(stack, greenlet_entry, std::ptr::null_mut());
    // SAFETY: as above.
    unsafe { *slot = Some(context) };
    Ok(())
}

/// Switches from the current greenlet to `target`, which is not dead.
///
/// A `target` we own (the live ancestor a dead greenlet forwards to) is dropped before the
/// stack switch: a handle waiting on this stack would keep it alive, unseen, until we are
/// resumed, so that dropping its last visible handle would not kill it (catalog 76).
#[inline(always)]
fn switch_to(
    ts: &ThreadState,
    target: Cow<'_, Greenlet>,
    delivery: Delivery,
) -> Result<Value, Error> {
    match target.state() {
        State::Running => return switch_to_self(ts, &target, delivery),
        State::Unstarted => prepare(ts, &target)?,
        State::Suspended => {}
        State::Dead => fatal("greenlet: switch_to a dead greenlet"),
    }
    let (from, to) = hand_over(ts, &target, delivery);
    // `ts.current` holds the target now: this is never its last handle.
    drop(target);
    // SAFETY: `from` is the running greenlet's context and `to` a prepared context of this
    // thread; both live in `Rc` allocations kept alive by `ts.previous` / `ts.current`.
    unsafe { DefaultContext::switch(from, to, 0) };
    after_switch(ts).into_result()
}

/// [`switch_to`] the running greenlet: no stack switch, but the hook still sees it.
#[cold]
#[inline(never)]
fn switch_to_self(ts: &ThreadState, me: &Greenlet, delivery: Delivery) -> Result<Value, Error> {
    trace::run(ts, me, me, delivery).into_result()
}

/// Makes `target` current and parks `delivery` for it; returns the contexts to switch
/// between. The old current greenlet's handle goes to `ts.previous` for the other side.
#[inline(always)]
fn hand_over(
    ts: &ThreadState,
    target: &Greenlet,
    delivery: Delivery,
) -> (*mut DefaultContext, *mut DefaultContext) {
    ts.delivery.set(Some(delivery));
    let origin = ts.current.replace(target.clone());
    if origin.state() == State::Running {
        origin.inner.state.set(State::Suspended);
    }
    target.inner.state.set(State::Running);
    let from = origin.context_ptr();
    let to = target.context_ptr();
    let stale = ts.previous.replace(Some(origin));
    debug_assert!(stale.is_none(), "previous greenlet was not collected");
    (from, to)
}

/// What a greenlet does first whenever it is resumed or started: returns the delivery.
#[inline(always)]
pub(crate) fn after_switch(ts: &ThreadState) -> Delivery {
    // Take the delivery into a local before any other code can run and switch again.
    let Some(mut delivery) = ts.delivery.take() else {
        fatal("greenlet: resumed without a delivery")
    };
    let Some(origin) = ts.previous.take() else {
        fatal("greenlet: resumed without an origin")
    };
    if origin.state() == State::Dead {
        reclaim_stack(ts, &origin);
    }
    if trace::has_tracer(ts) {
        trace_after_switch(ts, &origin, &mut delivery);
    }
    // Dropping the origin's handle may kill it (it may have been the last one).
    drop(origin);
    delivery
}

/// The trace hook's part of [`after_switch`], out of the way of untraced switches.
#[cold]
#[inline(never)]
fn trace_after_switch(ts: &ThreadState, origin: &Greenlet, delivery: &mut Delivery) {
    // Updated in place: moving the delivery in and out costs untraced switches too.
    let parked = std::mem::replace(delivery, Delivery::Value(Value::unit()));
    *delivery = trace::run_after_switch(ts, origin, parked);
}

/// Gives the stack of a greenlet that has just left it for good back to the pool.
fn reclaim_stack(ts: &ThreadState, dead: &Greenlet) {
    // SAFETY: the dead greenlet exited its context, which nothing references any more.
    let context = unsafe { (*dead.inner.context.get()).take() };
    if let Some(context) = context {
        // SAFETY: an exited context is not running.
        if let Some(stack) = unsafe { context.into_stack() } {
            ts.pool.borrow_mut().give(stack);
        }
    }
}

/// The first function on every greenlet's stack.
unsafe extern "C" fn greenlet_entry(_value: usize, _data: *mut ()) -> ! {
    let Ok(ts) = thread::state() else {
        fatal("greenlet: started without thread state")
    };
    let outcome = run_current(ts);
    finish(ts, outcome)
}

/// Runs the current greenlet's closure with the first delivery; returns its outcome.
fn run_current(ts: &ThreadState) -> Delivery {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let first = after_switch(ts);
        // No strong handle to ourselves may stay on our own stack, or dropping the last
        // user handle while we are suspended would not kill us.
        let me: *const Inner = Rc::as_ptr(&ts.current.borrow().inner);
        // SAFETY: our state outlives this call: while we run, `ts.current` holds it; while
        // we are suspended, someone holds a handle, or a killer holds one while it resumes
        // us, or the kill failed and the state was leaked on purpose.
        let run = unsafe { &(*me).run };
        match first {
            Delivery::Value(value) => run.call(value).unwrap_or(Ok(Value::unit())),
            // Started by a throw: die of it without running.
            other => {
                run.discard();
                other.into_result()
            }
        }
    }));
    match result {
        Ok(Ok(value)) => Delivery::Value(value),
        Ok(Err(error)) => Delivery::Error(error).exit_as_value(),
        Err(payload) => Delivery::Panic(payload),
    }
}

/// Marks the current greenlet dead and delivers `outcome` up its parent chain, starting an
/// unstarted ancestor if that is where it lands. Never returns.
fn finish(ts: &ThreadState, outcome: Delivery) -> ! {
    let (from, to) = {
        let me = ts.current();
        me.inner.state.set(State::Dead);
        let mut outcome = outcome;
        let mut target = me.parent();
        let target = loop {
            let Some(candidate) = target else {
                fatal("greenlet: ran out of parent greenlets")
            };
            match candidate.state() {
                State::Suspended => break candidate,
                State::Unstarted => match prepare(ts, &candidate) {
                    Ok(()) => break candidate,
                    // It cannot start: the failure goes further up instead.
                    Err(error) => {
                        outcome = Delivery::Error(error);
                        target = candidate.parent();
                    }
                },
                State::Dead => target = candidate.parent(),
                State::Running => fatal("greenlet: a finishing greenlet's parent is running"),
            }
        };
        hand_over(ts, &target, outcome)
        // `me` and `target` are dropped here: nothing with a destructor stays on this stack.
    };
    // SAFETY: `from` is our own context, `to` a prepared one of this thread, both kept
    // alive by `ts.previous` / `ts.current`; nothing on this stack needs to run again.
    unsafe { DefaultContext::exit(from, to, 0) }
}
