//! The per-thread trace hook: called on every switch and throw, in the target greenlet.

use crate::error::Error;
use crate::greenlet::Greenlet;
use crate::switch::Delivery;
use crate::thread::{self, ThreadState};

/// What kind of transfer a trace hook is told about.
///
/// ```
/// use greenlet::TraceEvent;
/// assert_ne!(TraceEvent::Switch, TraceEvent::Throw);
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    /// A value was switched to the target (including a greenlet finishing normally).
    Switch,
    /// An error was delivered to the target (a throw, or a greenlet dying of an error).
    Throw,
}

/// A trace hook: `(event, origin, target)`, run in the target after the switch.
///
/// Returning `Err` disables tracing and delivers the error to the target instead of what
/// the switch carried, as if it had been thrown there.
pub type Tracer = Box<dyn FnMut(TraceEvent, &Greenlet, &Greenlet) -> Result<(), Error>>;

/// Installs `tracer` for this thread (or removes it with `None`); returns the previous one.
///
/// The hook runs after each switch, in the target greenlet. While it runs, tracing is off,
/// so switches made by the hook itself are not traced. Other threads are not affected.
///
/// ```
/// use greenlet::{settrace, Greenlet, TraceEvent};
/// use std::{cell::RefCell, rc::Rc};
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let log = seen.clone();
/// settrace(Some(Box::new(move |event, _from, _to| {
///     log.borrow_mut().push(event);
///     Ok(())
/// })));
/// Greenlet::new(|_| Ok(())).switch(()).unwrap();
/// settrace(None);
/// assert_eq!(*seen.borrow(), [TraceEvent::Switch, TraceEvent::Switch]);
/// ```
pub fn settrace(tracer: Option<Tracer>) -> Option<Tracer> {
    let ts = thread::state().ok()?;
    ts.tracer_epoch.set(ts.tracer_epoch.get().wrapping_add(1));
    let previous = ts.tracer.replace(tracer);
    ts.update_full_switches();
    previous
}

/// Whether a trace hook is installed in this thread.
///
/// ```
/// assert!(!greenlet::is_tracing());
/// ```
pub fn is_tracing() -> bool {
    thread::state().is_ok_and(has_tracer)
}

/// Runs the hook, if any, for a switch from `origin` to the current greenlet.
pub(crate) fn run_after_switch(
    ts: &ThreadState,
    origin: &Greenlet,
    delivery: Delivery,
) -> Delivery {
    if !has_tracer(ts) {
        return delivery;
    }
    let target = ts.current();
    run(ts, origin, &target, delivery)
}

/// Whether a trace hook is installed, without moving it out of its cell and back.
#[inline]
pub(crate) fn has_tracer(ts: &ThreadState) -> bool {
    // SAFETY: a `Cell` hands out no references to its contents, and this thread is the
    // only one that reaches `ts`: nothing writes the cell while we read it.
    unsafe { (*ts.tracer.as_ptr()).is_some() }
}

/// Runs the hook, if any, for a transfer of `delivery` from `origin` to `target`.
pub(crate) fn run(
    ts: &ThreadState,
    origin: &Greenlet,
    target: &Greenlet,
    delivery: Delivery,
) -> Delivery {
    let Some(mut tracer) = ts.tracer.take() else {
        return delivery;
    };
    let event = match delivery {
        Delivery::Value(_) => TraceEvent::Switch,
        Delivery::Error(_) | Delivery::Panic(_) => TraceEvent::Throw,
    };
    let epoch = ts.tracer_epoch.get();
    match tracer(event, origin, target) {
        Ok(()) => {
            // Put it back unless the hook installed another one (or removed itself).
            if ts.tracer_epoch.get() == epoch {
                ts.tracer.set(Some(tracer));
            }
            delivery
        }
        // A failing hook is removed and its error replaces what was delivered.
        Err(error) => Delivery::Error(error),
    }
}
