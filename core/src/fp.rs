//! Greenlets with a floating-point control state of their own
//! ([`Builder::own_fp_control`](crate::Builder::own_fp_control)).
//!
//! The backends' switches save no floating-point state: the control state (rounding mode,
//! exception masks, flush-to-zero; see [`greenlet_backends::fp`]) is the thread's, shared by
//! all its greenlets. A greenlet built with `own_fp_control(true)` keeps its own instead:
//! it starts with its creator's (as a new thread does), changes it makes stay in it, and
//! changes others make do not reach it.
//!
//! Once a thread has made such a greenlet, every switch in it runs [`exchange`]: it saves
//! the running state where the greenlet left keeps it (its own, or the thread's shared one
//! for any other greenlet) and puts in the target's. Until then a switch pays one test of a
//! thread-state flag and nothing else.

use std::cell::Cell;

use greenlet_backends::fp::FpControl;

use crate::greenlet::Inner;
use crate::thread::ThreadState;

/// The per-thread part: whether any greenlet of the thread keeps its own state, and the
/// state the others share while one that does runs.
pub(crate) struct ThreadFp {
    /// Set for good by the thread's first greenlet with its own state.
    in_use: Cell<bool>,
    /// The shared state, saved when the thread leaves a greenlet without its own. Valid
    /// whenever a greenlet with its own state runs (see [`exchange`]).
    shared: Cell<FpControl>,
}

impl ThreadFp {
    /// The state of a thread none of whose greenlets keeps its own.
    pub(crate) fn new() -> Self {
        ThreadFp {
            in_use: Cell::new(false),
            shared: Cell::new(FpControl::current()),
        }
    }

    /// Whether switches in this thread must run [`exchange`].
    #[inline(always)]
    pub(crate) fn in_use(&self) -> bool {
        self.in_use.get()
    }
}

/// The per-greenlet part, a field of [`Inner`]: `Some` with the greenlet's own state while
/// it does not run, `None` for a greenlet that shares the thread's.
pub(crate) type OwnFp = Cell<Option<FpControl>>;

/// The [`OwnFp`] of a new greenlet: its creator's running state if it keeps its own, which
/// from now on makes every switch in the thread run [`exchange`].
pub(crate) fn for_new_greenlet(ts: &ThreadState, own: bool) -> OwnFp {
    if !own {
        return Cell::new(None);
    }
    ts.fp.in_use.set(true);
    ts.update_full_switches();
    Cell::new(Some(FpControl::current()))
}

/// At a switch from `origin` to `target`, once the thread uses own states: saves the
/// running state where `origin` keeps it and makes `target`'s the running one.
///
/// Runs on the leaving side just before the stack switch; between this and the target's
/// code only integer code runs, which neither reads nor changes the state.
#[cold]
#[inline(never)]
pub(crate) fn exchange(ts: &ThreadState, origin: &Inner, target: &Inner) {
    let now = FpControl::current();
    match origin.own_fp() {
        Some(own) => own.set(Some(now)),
        None => ts.fp.shared.set(now),
    }
    let wanted = target
        .own_fp()
        .and_then(Cell::get)
        .unwrap_or(ts.fp.shared.get());
    // SAFETY: `wanted` was read by `FpControl::current` (here, or when `target` was made
    // or last left), and `now` is the running state, read above.
    unsafe { wanted.restore(now) };
}
