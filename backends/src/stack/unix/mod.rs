//! Stacks on Unix: guarded slots carved from large `mmap` arenas.
//!
//! One module per job:
//! - [`os`]: the system calls, as small checked wrappers;
//! - [`class`]: size classes and the slot layout (guard below, usable stack above);
//! - [`guard`]: which guard mechanism the process uses, probed once, and installing one;
//! - [`registry`]: the lock-free list of arenas the overflow handler searches;
//! - [`arena`]: reserving arenas, carving slots, the process-wide free lists;
//! - [`guarded`] and [`pool`]: the public [`GuardedStack`] and [`StackPool`];
//! - [`altstack`] and [`overflow`]: the SIGSEGV/SIGBUS handler and the alternate signal
//!   stacks it runs on.

mod altstack;
mod arena;
mod class;
mod guard;
mod guarded;
mod os;
mod overflow;
mod pool;
mod registry;
mod valgrind;

pub use class::{MAX_STACK_SIZE, usable_size_for};
pub use guarded::GuardedStack;
pub use overflow::install_overflow_handler;
pub use pool::StackPool;

use crate::stack::GuardMode;

/// Which mechanism makes the guard regions below stacks inaccessible in this process.
///
/// Decided once per process, on first use, by checking that a guard installed with
/// `madvise(MADV_GUARD_INSTALL)` really cannot be read (QEMU user mode accepts the advice
/// but ignores it); [`GuardMode::Mprotect`] otherwise, or if the environment variable
/// `GREENLET_STACK_GUARD` is `mprotect`. If the check cannot even be made (no memory), the
/// answer is [`GuardMode::Mprotect`] and the check is tried again on the next call.
///
/// ```
/// use greenlet_backends::stack::{guard_mode, GuardMode};
/// match guard_mode() {
///     GuardMode::MadviseGuard => println!("one mapping per arena"),
///     GuardMode::Mprotect => println!("two mappings per stack"),
///     _ => println!("another mechanism"),
/// }
/// ```
pub fn guard_mode() -> GuardMode {
    guard::mode().unwrap_or(GuardMode::Mprotect)
}

/// Whether the process runs under Valgrind (which the library then helps: stacks are
/// registered with it, and the core frees greenlet states rather than caching them, so
/// that Valgrind sees a use after free).
///
/// ```
/// // `cargo test` runs this natively.
/// if std::env::var_os("GREENLET_UNDER_VALGRIND").is_none() {
///     assert!(!greenlet_backends::stack::running_on_valgrind());
/// }
/// ```
pub fn running_on_valgrind() -> bool {
    valgrind::running_on_valgrind()
}
