//! Greenlets for Rust: lightweight stackful coroutines with the semantics of Python's
//! [greenlet](https://greenlet.readthedocs.io/).
//!
//! # The model in five minutes
//!
//! A **greenlet** is a function running on its own stack. Exactly one greenlet runs at a
//! time in each thread; the thread's own stack is its **main greenlet**.
//! [`Greenlet::switch`] suspends the current greenlet and resumes another one, handing it a
//! [`Value`]; the switch returns when some greenlet switches back. Switching is symmetric:
//! any greenlet may switch to any other of the same thread.
//!
//! ```
//! use greenlet::Greenlet;
//! let ping = Greenlet::new(|first| {
//!     let mut n = first.downcast::<u32>().unwrap();
//!     while n < 5 {
//!         // Suspend here; resume when main switches back.
//!         n = Greenlet::main().switch(n + 1)?.downcast::<u32>().unwrap();
//!     }
//!     Ok(n)
//! });
//! let mut n = 0_u32;
//! while !ping.is_dead() {
//!     n = ping.switch(n + 1).unwrap().downcast::<u32>().unwrap();
//! }
//! assert_eq!(n, 5);
//! ```
//!
//! **Parents.** Every greenlet except main has a parent (by default the greenlet that was
//! current when it was created). When a greenlet's function returns, its result goes to its
//! parent, as the return value of the parent's pending `switch`; if the parent is dead, to
//! the nearest live ancestor; if it is unstarted, the parent starts with the result as its
//! argument. Switching to a dead greenlet likewise goes to its nearest live ancestor.
//!
//! **Errors are values.** [`Greenlet::throw`] makes the target's pending `switch` return
//! `Err(error)`. A greenlet whose function returns `Err` dies and its parent's `switch`
//! returns that `Err` — use `?` and errors travel up the parent chain, running destructors
//! as they go. [`Greenlet::kill`] throws a [`GreenletExit`]: a greenlet that returns it dies
//! quietly and its parent receives the `GreenletExit` as a plain value. This needs no
//! unwinding, so it works on `wasm32` too. On targets with `panic = "unwind"`, a panic
//! that escapes a greenlet kills it and continues unwinding in its parent.
//!
//! **Kill on drop.** When the last handle of a suspended greenlet is dropped, a
//! `GreenletExit` is delivered at its pending switch, with the dropping greenlet as its
//! temporary parent, so it can clean up and return. See [`set_unraisable_hook`] for what
//! happens when it will not die.
//!
//! **Threads.** Handles are `!Send`: a greenlet belongs to the thread that made it. The
//! owner thread is still recorded and checked on every switch, so misuse through raw
//! pointers (the C ABI) is an error value, never undefined behaviour.
//!
//! **Floating-point control state** (rounding mode, exception masks, flush-to-zero) is
//! the thread's, shared by its greenlets, unless a greenlet is built with
//! [`Builder::own_fp_control`]: then it keeps its own, as a thread would (for C code that
//! calls `fesetround`; Rust code never changes it).
//!
//! Also here: a per-thread trace hook ([`settrace`]), greenlet-local storage
//! ([`Greenlet::set_local`]), a [`Builder`] for stack size, parent, name and FP control
//! state, and [`Generator`]s built on switch.
//!
//! **Costs.** A switch allocates nothing when its value fits in 64 bits (integers, `f64`,
//! `Box`es, `Rc`s, handles, references; larger values are boxed). Creating a greenlet
//! makes one allocation for its state (closures of up to four words live inside it), and
//! freed states are reused by the next greenlets of the thread. Nothing else happens until
//! the first switch, which takes a guarded stack from a per-thread pool. `BENCHMARKS.md`
//! has the measured figures, next to corosensei and Python greenlet.
#![warn(missing_docs)]

mod builder;
mod entry;
mod error;
mod fp;
pub mod generator;
mod greenlet;
mod kill;
mod locals;
mod owner;
mod shared;
mod switch;
mod thread;
mod trace;
mod value;

pub use builder::Builder;
pub use error::{Error, GreenletExit};
pub use generator::Generator;
pub use greenlet::{Greenlet, State};
pub use greenlet_backends::DefaultContext as Backend;
pub use greenlet_backends::{Context, stack::StackError};
pub use kill::{KILL_ON_DROP_MESSAGE, Unraisable, UnraisableHook, set_unraisable_hook};
pub use trace::{TraceEvent, Tracer, is_tracing, settrace};
pub use value::Value;

/// The name of the stack-switching backend this build uses, e.g. `"asm-x86_64"`.
///
/// ```
/// assert!(!greenlet::backend_name().is_empty());
/// ```
pub fn backend_name() -> &'static str {
    <Backend as Context>::NAME
}

/// The README's Rust examples, compiled and run as doctests so the README stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
