//! A backend on corosensei, for every target without an assembly backend.
//!
//! corosensei coroutines are asymmetric: a coroutine can only yield back to whoever
//! resumed it. Symmetric switching is built on top with a trampoline: the thread's own
//! context runs a *driver loop* inside its pending [`Context::switch`], and a coroutine that
//! wants to switch to another one yields a [`Transfer`] naming the target; the driver then
//! resumes that target. Only the thread's stack ever resumes coroutines, so at most one
//! driver loop is active per thread.

use crate::stack::GuardedStack;
use crate::{Context, EntryFn};
use corosensei::stack::{Stack, StackPointer};
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// What a coroutine asks the driver loop to do when it yields.
struct Transfer {
    to: *mut CoroContext,
    value: usize,
    exited: bool,
}

/// What the driver hands a coroutine when it resumes it.
struct Resume {
    value: usize,
    /// The context being resumed, so a starting coroutine can record its yielder there.
    context: *mut CoroContext,
}

type Coro = Coroutine<Resume, Transfer, (), GuardedStack>;

/// A context on the corosensei backend.
pub struct CoroContext {
    /// `None` for the thread's own context.
    coroutine: Option<Coro>,
    /// Set when the coroutine starts; valid while it is suspended or running.
    yielder: *const Yielder<Resume, Transfer>,
    entry: Option<EntryFn>,
    data: *mut (),
    /// The usable size of the coroutine's stack (0 for the thread's context), which
    /// corosensei does not tell.
    stack_size: usize,
}

// SAFETY: a `GuardedStack` owns a mapping with a guard page below `bottom` and at least
// one page of usable memory; `top` and `bottom` are 16-byte aligned.
unsafe impl Stack for GuardedStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.top() as usize).expect("stack top is never null")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.bottom() as usize).expect("stack bottom is never null")
    }
}

/// Body of every coroutine: records the yielder, then runs the context's entry function.
fn coroutine_body(yielder: &Yielder<Resume, Transfer>, first: Resume) {
    // SAFETY: the driver passes the context being resumed; it does not move while the
    // coroutine lives (the `Context::switch` contract).
    let context = unsafe { &mut *first.context };
    context.yielder = yielder;
    let entry = context
        .entry
        .expect("a coroutine context always has an entry");
    // SAFETY: the entry function's contract is the caller's; it never returns.
    unsafe { entry(first.value, context.data) }
}

unsafe impl Context for CoroContext {
    const NAME: &'static str = "corosensei";

    fn thread() -> Self {
        CoroContext {
            coroutine: None,
            yielder: std::ptr::null(),
            entry: None,
            data: std::ptr::null_mut(),
            stack_size: 0,
        }
    }

    fn new(stack: GuardedStack, entry: EntryFn, data: *mut ()) -> Self {
        CoroContext {
            stack_size: stack.usable_size(),
            coroutine: Some(Coroutine::with_stack(stack, coroutine_body)),
            yielder: std::ptr::null(),
            entry: Some(entry),
            data,
        }
    }

    unsafe fn set_data(&mut self, data: *mut ()) {
        self.data = data;
    }

    unsafe fn switch(from: *mut Self, to: *mut Self, value: usize) -> usize {
        // SAFETY: `from` is the running context (caller's contract).
        let from_ref = unsafe { &*from };
        if from_ref.coroutine.is_some() {
            // Inside a coroutine: ask the driver loop to run `to`.
            // SAFETY: a running coroutine recorded its yielder when it started.
            let yielder = unsafe { &*from_ref.yielder };
            return yielder
                .suspend(Transfer {
                    to,
                    value,
                    exited: false,
                })
                .value;
        }
        // On the thread's stack: drive coroutines until one hands control back to us.
        let mut target = to;
        let mut value = value;
        while target != from {
            // SAFETY: the target is a live context of this thread (caller's contract, and
            // each coroutine names only such targets).
            let Some(coroutine) = (unsafe { (*target).coroutine.as_mut() }) else {
                // A second thread context: the core never makes one, so this is a bug.
                std::process::abort();
            };
            let transfer = match coroutine.resume(Resume {
                value,
                context: target,
            }) {
                CoroutineResult::Yield(transfer) => transfer,
                // Entry functions never return.
                CoroutineResult::Return(()) => std::process::abort(),
            };
            if transfer.exited {
                // SAFETY: the coroutine exited through `Context::exit`, after dropping
                // everything it owned; nothing on its stack must run again.
                unsafe { coroutine.force_reset() };
            }
            target = transfer.to;
            value = transfer.value;
        }
        value
    }

    unsafe fn exit(from: *mut Self, to: *mut Self, value: usize) -> ! {
        // SAFETY: `from` is the running coroutine (caller's contract).
        let yielder = unsafe { &*(*from).yielder };
        yielder.suspend(Transfer {
            to,
            value,
            exited: true,
        });
        // The driver resets an exited coroutine; it is never resumed.
        std::process::abort()
    }

    #[inline]
    fn stack_size(&self) -> usize {
        self.stack_size
    }

    unsafe fn into_stack(mut self) -> Option<GuardedStack> {
        let mut coroutine = self.coroutine.take()?;
        // A coroutine never started is not `done()` either, and `into_stack` refuses it.
        if !coroutine.done() {
            // SAFETY: the caller accepts that a suspended context's frames are discarded.
            unsafe { coroutine.force_reset() };
        }
        Some(coroutine.into_stack())
    }
}

impl Drop for CoroContext {
    fn drop(&mut self) {
        // corosensei's own drop would unwind a suspended coroutine through our entry
        // function, which cannot unwind (it is `extern "C"`): the process would abort.
        // A context is only dropped when it is not running, so its frames are discarded.
        if let Some(coroutine) = self.coroutine.as_mut()
            && !coroutine.done()
        {
            // SAFETY: a context being dropped is not running; discarding its frames
            // without running destructors leaks what they own, which is the documented
            // fate of a suspended context that is never resumed.
            unsafe { coroutine.force_reset() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;

    unsafe extern "C" fn park_forever(_value: usize, data: *mut ()) -> ! {
        // SAFETY: `data` points at the two contexts owned by the test below.
        let pair = unsafe { &*(data as *const [UnsafeCell<CoroContext>; 2]) };
        loop {
            // SAFETY: pair[1] is running (us), pair[0] is the test's thread context.
            unsafe { CoroContext::switch(pair[1].get(), pair[0].get(), 0) };
        }
    }

    #[test]
    fn a_context_never_started_gives_its_stack_back() {
        let stack = GuardedStack::new(64 * 1024).unwrap();
        let top = stack.top();
        let context = CoroContext::new(stack, park_forever, std::ptr::null_mut());
        // SAFETY: the context never ran.
        let stack = unsafe { context.into_stack() }.expect("a new context owns a stack");
        assert_eq!(stack.top(), top);
        drop(CoroContext::new(stack, park_forever, std::ptr::null_mut()));
    }

    #[test]
    fn dropping_a_suspended_context_discards_it_without_aborting() {
        let stack = GuardedStack::new(64 * 1024).unwrap();
        let pair = Box::new([
            UnsafeCell::new(CoroContext::thread()),
            UnsafeCell::new(CoroContext::new(stack, park_forever, std::ptr::null_mut())),
        ]);
        let data = &*pair as *const _ as *mut ();
        // SAFETY: not started yet; the pair stays boxed (does not move) while in use.
        unsafe {
            (*pair[1].get()).set_data(data);
            CoroContext::switch(pair[0].get(), pair[1].get(), 0);
        }
        // The context is suspended inside `park_forever`; dropping it must not unwind it.
        drop(pair);
    }
}
