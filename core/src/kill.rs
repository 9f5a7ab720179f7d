//! Kill-on-drop: what happens when the last handle of a suspended greenlet goes away, and
//! the hook that hears about what could not be delivered anywhere.

use std::any::Any;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use crate::error::{Error, GreenletExit};
use crate::greenlet::{Greenlet, State};
use crate::shared::Shared;
use crate::switch::{self, Delivery};
use crate::thread;

/// The message of the [`GreenletExit`] delivered when the last handle is dropped.
pub const KILL_ON_DROP_MESSAGE: &str = "Killing the greenlet because all references have vanished.";

/// Something that happened while killing a dropped greenlet, with no caller to return it to.
#[non_exhaustive]
pub enum Unraisable {
    /// The greenlet died of another error than the `GreenletExit` it was given.
    Error(Error),
    /// The greenlet panicked while being killed.
    Panic(Box<dyn Any + Send>),
    /// The greenlet did not die and nothing else refers to it: it is leaked on purpose
    /// (its stack is kept), since resuming or freeing it would be wrong.
    DidNotDie,
}

impl fmt::Debug for Unraisable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unraisable::Error(e) => write!(f, "Error({e})"),
            Unraisable::Panic(p) => write!(f, "Panic({})", panic_message(&**p)),
            Unraisable::DidNotDie => f.write_str("DidNotDie"),
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

/// A hook told about [`Unraisable`] events of this thread.
pub type UnraisableHook = Box<dyn FnMut(&Greenlet, Unraisable)>;

/// Installs the hook for this thread (or restores the default, which prints to stderr,
/// with `None`); returns the previous one.
///
/// ```
/// use greenlet::{set_unraisable_hook, Error, Greenlet, Unraisable};
/// use std::{cell::RefCell, rc::Rc};
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let log = seen.clone();
/// set_unraisable_hook(Some(Box::new(move |_, event| log.borrow_mut().push(format!("{event:?}")))));
/// let g = Greenlet::new(|_| -> Result<(), Error> {
///     let _ = Greenlet::main().switch(()); // swallow the GreenletExit...
///     Err(Error::msg("cleanup failed"))    // ...and die of something else
/// });
/// g.switch(()).unwrap();
/// drop(g);
/// set_unraisable_hook(None);
/// assert_eq!(*seen.borrow(), ["Error(cleanup failed)"]);
/// ```
pub fn set_unraisable_hook(hook: Option<UnraisableHook>) -> Option<UnraisableHook> {
    thread::state().ok()?.unraisable.replace(hook)
}

fn report(greenlet: &Greenlet, event: Unraisable) {
    let Ok(ts) = thread::state() else { return };
    match ts.unraisable.take() {
        Some(mut hook) => {
            hook(greenlet, event);
            // Put it back unless the hook installed another one.
            let replaced = ts.unraisable.take();
            ts.unraisable.set(replaced.or(Some(hook)));
        }
        None => match event {
            Unraisable::DidNotDie => eprintln!("GreenletExit did not kill {greenlet:?}"),
            other => eprintln!("greenlet: error while killing {greenlet:?}: {other:?}"),
        },
    }
}

/// Kills the greenlet of a last handle being dropped if it is suspended: not running, and
/// not a main greenlet (whose state is stored as `Suspended` too). The handle's drop
/// ([`Shared`]'s) calls it for a greenlet not known to be dead, off its usual path.
pub(crate) fn kill_if_suspended(greenlet: &Greenlet) {
    if greenlet.state() == State::Suspended && !greenlet.is_main() {
        kill_last_handle(greenlet);
    }
}

/// Delivers a `GreenletExit` to a suspended greenlet whose last handle is being dropped,
/// with the dropping greenlet as its parent for the time of the kill.
fn kill_last_handle(greenlet: &Greenlet) {
    let Ok(ts) = thread::state() else {
        // The thread is being torn down: nothing can run any more. The greenlet's frames
        // are discarded when its state is freed.
        return;
    };
    if greenlet.check_owner(ts).is_err() {
        return;
    }
    let saved_parent = greenlet.inner.parent.replace(Some(ts.current()));
    let exit = Error::Exit(GreenletExit::new(KILL_ON_DROP_MESSAGE));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        switch::transfer(greenlet, Delivery::Error(exit))
    }));
    let killer = greenlet.inner.parent.replace(saved_parent);
    drop(killer);
    match outcome {
        // Whatever it returned or switched to us is discarded.
        Ok(Ok(_)) => {}
        Ok(Err(error)) => report(greenlet, Unraisable::Error(error)),
        Err(payload) => report(greenlet, Unraisable::Panic(payload)),
    }
    if Shared::count(&greenlet.inner) == 1 && !greenlet.is_dead() {
        report(greenlet, Unraisable::DidNotDie);
        // Keep its state and stack alive forever: freeing a stack with live frames on it
        // would be wrong, and nobody can resume it.
        std::mem::forget(greenlet.clone());
    }
}
