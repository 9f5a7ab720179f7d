//! Stack switching for greenlet-rs: the [`Context`] trait, its backends and guarded stacks.
//!
//! A *context* is one line of execution with its own stack. The thread's own stack is a
//! context too ([`Context::thread`]). [`Context::switch`] saves the running context and
//! resumes another one, handing it a `usize`; that is the whole job of a backend. Greenlet
//! semantics (parents, errors, kill-on-drop) live in the `greenlet` crate above and never
//! leak into a backend.
//!
//! Backends, chosen by `cfg_if!` in [`arch`]:
//! - x86-64 System V and AArch64 (AAPCS64): hand-written assembly, an `asm!` block
//!   expanded at each call site;
//! - every other target corosensei supports: a backend on corosensei;
//! - anything else: a `compile_error!`.
//!
//! ```
//! use greenlet_backends::{Context, DefaultContext, stack::GuardedStack};
//! use std::cell::UnsafeCell;
//!
//! struct Pair { main: UnsafeCell<DefaultContext>, child: UnsafeCell<DefaultContext> }
//!
//! unsafe extern "C" fn child(value: usize, data: *mut ()) -> ! {
//!     let pair = unsafe { &*(data as *const Pair) };
//!     // Double what we get, forever.
//!     let mut v = value;
//!     loop {
//!         v = unsafe { DefaultContext::switch(pair.child.get(), pair.main.get(), v * 2) };
//!     }
//! }
//!
//! let stack = GuardedStack::new(64 * 1024).unwrap();
//! let pair = Box::new(Pair {
//!     main: UnsafeCell::new(DefaultContext::thread()),
//!     child: UnsafeCell::new(DefaultContext::new(stack, child, std::ptr::null_mut())),
//! });
//! let data = &*pair as *const Pair as *mut ();
//! unsafe { (*pair.child.get()).set_data(data) };
//! let got = unsafe { DefaultContext::switch(pair.main.get(), pair.child.get(), 21) };
//! assert_eq!(got, 42);
//! // The child is suspended forever; take its stack back without running anything on it.
//! let child = pair.child.into_inner();
//! drop(unsafe { child.into_stack() });
//! ```
#![warn(missing_docs)]

pub mod arch;
pub mod fp;
pub mod stack;

pub use arch::DefaultContext;

/// The function a new context runs when it is first resumed.
///
/// It receives the value passed to the first [`Context::switch`] into the context and the
/// `data` pointer given to [`Context::new`]. It must never return: its last act is
/// [`Context::exit`].
pub type EntryFn = unsafe extern "C" fn(value: usize, data: *mut ()) -> !;

/// A line of execution with its own stack that can be suspended and resumed.
///
/// # Safety
///
/// Implementations must save and restore every register the platform ABI says a call
/// preserves, so that code on either side of a switch sees a normal function call.
///
/// Floating-point *control* state (rounding mode, exception masks, flush-to-zero) and
/// floating-point *status* flags are shared by the whole thread on every backend: a
/// switch neither saves nor restores them, so a new context runs with whatever the thread
/// has when it is first resumed. Keeping control state per greenlet is an opt-in of the
/// `greenlet` crate (`greenlet::Builder::own_fp_control`), not a backend's job.
pub unsafe trait Context: Sized {
    /// A short name for tables and diagnostics, e.g. `"asm-x86_64"`.
    const NAME: &'static str;

    /// The context of the code running now on the thread's own stack.
    ///
    /// It holds no stack; it only records where to resume once switched away from.
    fn thread() -> Self;

    /// A context that runs `entry(first_value, data)` on `stack` when first resumed.
    fn new(stack: stack::GuardedStack, entry: EntryFn, data: *mut ()) -> Self;

    /// Changes the `data` pointer a context not yet started will pass to its entry.
    ///
    /// Useful when `data` points at the structure that owns the context.
    ///
    /// # Safety
    ///
    /// The context must not have been resumed yet.
    unsafe fn set_data(&mut self, data: *mut ());

    /// Saves the running code into `from` and resumes `to`, handing it `value`.
    ///
    /// Returns the value passed by whoever resumes `from` later.
    ///
    /// # Safety
    ///
    /// `from` is the context that is running now; `to` is a context of this thread that is
    /// new or suspended (never one that has exited). A context stays where it is in memory
    /// from the first switch into it until it has exited (the assembly backends' unwind
    /// information finds it through its address); before that, it may move.
    unsafe fn switch(from: *mut Self, to: *mut Self, value: usize) -> usize;

    /// Leaves `from` for good and resumes `to`, handing it `value`.
    ///
    /// Nothing on `from`'s stack runs again: every value with a destructor must have been
    /// dropped before the call. Once `to` runs, `from`'s stack can be taken back with
    /// [`Context::into_stack`].
    ///
    /// # Safety
    ///
    /// As for [`Context::switch`]; in addition `from` must be a context made by
    /// [`Context::new`], never the thread's.
    unsafe fn exit(from: *mut Self, to: *mut Self, value: usize) -> !;

    /// The usable size of the stack the context runs on, in bytes; 0 for the thread's
    /// context.
    ///
    /// ```
    /// use greenlet_backends::{Context, DefaultContext, stack::GuardedStack};
    ///
    /// unsafe extern "C" fn never_run(_: usize, _: *mut ()) -> ! {
    ///     unreachable!()
    /// }
    ///
    /// let stack = GuardedStack::new(64 * 1024).unwrap();
    /// let size = stack.usable_size();
    /// let context = DefaultContext::new(stack, never_run, std::ptr::null_mut());
    /// assert_eq!(context.stack_size(), size);
    /// assert_eq!(DefaultContext::thread().stack_size(), 0);
    /// # drop(unsafe { context.into_stack() });
    /// ```
    fn stack_size(&self) -> usize;

    /// Makes `this`, a context that has exited, new again on its own stack: from then on
    /// it is what `Self::new(stack, entry, data)` would have made of that stack, and
    /// runs `entry(first_value, data)` when next resumed.
    ///
    /// The default moves the stack out and makes a new context on it. The assembly
    /// backends rewrite in place only the few words that the run which exited overwrote:
    /// a greenlet started on the stack its allocation kept writes three words rather than
    /// a whole context (see the `greenlet` crate's state cache).
    ///
    /// ```
    /// use greenlet_backends::{Context, DefaultContext, stack::GuardedStack};
    /// use std::cell::UnsafeCell;
    ///
    /// struct Pair { main: UnsafeCell<DefaultContext>, child: UnsafeCell<DefaultContext> }
    ///
    /// unsafe extern "C" fn add_one(value: usize, data: *mut ()) -> ! {
    ///     let pair = unsafe { &*(data as *const Pair) };
    ///     unsafe { DefaultContext::exit(pair.child.get(), pair.main.get(), value + 1) }
    /// }
    ///
    /// let stack = GuardedStack::new(64 * 1024).unwrap();
    /// let pair = Box::new(Pair {
    ///     main: UnsafeCell::new(DefaultContext::thread()),
    ///     child: UnsafeCell::new(DefaultContext::new(stack, add_one, std::ptr::null_mut())),
    /// });
    /// let data = &*pair as *const Pair as *mut ();
    /// unsafe { (*pair.child.get()).set_data(data) };
    /// assert_eq!(unsafe { DefaultContext::switch(pair.main.get(), pair.child.get(), 1) }, 2);
    /// // The child has exited: run it again, on the same stack.
    /// unsafe { DefaultContext::restart(pair.child.get(), add_one, data) };
    /// assert_eq!(unsafe { DefaultContext::switch(pair.main.get(), pair.child.get(), 7) }, 8);
    /// # let child = pair.child.into_inner();
    /// # drop(unsafe { child.into_stack() });
    /// ```
    ///
    /// # Safety
    ///
    /// `this` points at a context made by [`Context::new`] (or restarted) that has left
    /// its stack with [`Context::exit`] and has not been resumed since; nothing else
    /// references it while this runs.
    unsafe fn restart(this: *mut Self, entry: EntryFn, data: *mut ()) {
        // SAFETY: the caller's contract: `this` is a valid context, not running, which is
        // moved out here and written back below before anything reads it again.
        let stack = unsafe { this.read().into_stack() };
        let Some(stack) = stack else {
            // Leave a context in the slot (one without a stack, harmless to drop) rather
            // than the bits of the one moved out.
            // SAFETY: as above.
            unsafe { this.write(Self::thread()) };
            panic!("Context::restart: the thread's context has no stack to restart on");
        };
        // SAFETY: as above.
        unsafe { this.write(Self::new(stack, entry, data)) };
    }

    /// Gives back the stack of a context that is not running.
    ///
    /// Returns `None` for the thread's context.
    ///
    /// # Safety
    ///
    /// The context must not be running. If it is suspended, its frames are discarded
    /// without running destructors: whatever they owned is leaked.
    unsafe fn into_stack(self) -> Option<stack::GuardedStack>;
}
