//! Guarded stacks for greenlets, and a per-thread pool that reuses them.
//!
//! Every greenlet runs on a [`GuardedStack`]: memory with an inaccessible *guard* region
//! just below its lowest usable address, so that running off the end of the stack faults
//! instead of silently overwriting other memory. [`install_overflow_handler`] turns such a
//! fault into a clear "greenlet stack overflow" message and an abort.
//!
//! On Unix, stacks are not mapped one by one. They are *slots* carved from large
//! reservations (*arenas*, 1 GiB of address space each on 64-bit targets, with no memory
//! committed until touched), one arena per size class: the requested size is rounded up
//! to a power of two of at least 16 KiB, plus a 16 KiB guard. On Linux ≥ 6.13 the guards
//! are page-table markers (`MADV_GUARD_INSTALL`), so a whole arena stays one kernel
//! mapping and a million stacks fit under the default limit of 65,530 mappings;
//! elsewhere they are `mprotect`ed pages, two mappings per stack ([`guard_mode`] tells
//! which). Slots given back are released to the system but never unmapped, and reused.
//!
//! [`StackPool`] is the per-thread front: it keeps a few recently used stacks per size
//! class so that creating a greenlet usually costs no system call at all.
//!
//! ```
//! use greenlet_backends::stack::{StackPool, DEFAULT_STACK_SIZE, install_overflow_handler};
//!
//! install_overflow_handler();
//! let mut pool = StackPool::new();
//! let stack = pool.take(DEFAULT_STACK_SIZE)?;
//! assert!(stack.usable_size() >= DEFAULT_STACK_SIZE);
//! pool.give(stack); // cached for the next greenlet of this thread
//! # Ok::<(), greenlet_backends::stack::StackError>(())
//! ```

use std::fmt;

cfg_if::cfg_if! {
    if #[cfg(unix)] {
        mod unix;
        pub use unix::{
            GuardedStack, MAX_STACK_SIZE, StackPool, guard_mode, install_overflow_handler,
            running_on_valgrind, usable_size_for,
        };
    } else if #[cfg(target_arch = "wasm32")] {
        mod wasm;
        pub use wasm::{
            CANARY_LEN, GuardedStack, MAX_STACK_SIZE, POOL_CAPACITY, RED_ZONE, StackPool,
            guard_mode, install_overflow_handler, running_on_valgrind, usable_size_for,
        };
    } else {
        compile_error!("greenlet-rs: no stack implementation for this target");
    }
}

/// Default usable size of a greenlet stack, in bytes.
///
/// ```
/// use greenlet_backends::stack::{GuardedStack, DEFAULT_STACK_SIZE};
/// let stack = GuardedStack::new(DEFAULT_STACK_SIZE).unwrap();
/// assert_eq!(stack.usable_size(), DEFAULT_STACK_SIZE);
/// ```
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// How the guard region below each stack is made inaccessible (see [`guard_mode`]).
///
/// ```
/// let mode = greenlet_backends::stack::guard_mode();
/// println!("stacks are guarded with {mode}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GuardMode {
    /// `madvise(MADV_GUARD_INSTALL)` markers (Linux ≥ 6.13): an arena of any number of
    /// stacks is a single kernel mapping.
    MadviseGuard,
    /// `mprotect(PROT_NONE)` pages: each stack costs two kernel mappings, so a process
    /// holds at most about `vm.max_map_count / 2` stacks at once.
    Mprotect,
    /// wasm32: a canary below each shadow stack in linear memory, checked on every switch
    /// (linear memory has no pages to protect).
    #[cfg(target_arch = "wasm32")]
    Canary,
}

impl fmt::Display for GuardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuardMode::MadviseGuard => "madvise(MADV_GUARD_INSTALL) guard markers",
            GuardMode::Mprotect => "mprotect(PROT_NONE) guard pages",
            #[cfg(target_arch = "wasm32")]
            GuardMode::Canary => "a canary below each shadow stack, checked on every switch",
        })
    }
}

/// Why no stack could be had.
///
/// ```
/// use greenlet_backends::stack::{GuardedStack, StackError, MAX_STACK_SIZE};
/// let err = GuardedStack::new(MAX_STACK_SIZE * 2).unwrap_err();
/// assert!(matches!(err, StackError::TooLarge(_)));
/// println!("{err}");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StackError {
    /// The kernel refused the memory or the mapping (ENOMEM: out of address space, over
    /// `ulimit -v`, or at the `vm.max_map_count` limit).
    Exhausted(std::io::Error),
    /// The requested size is larger than [`MAX_STACK_SIZE`].
    TooLarge(usize),
    /// The process already reserved the most stack arenas it can track (the number given).
    ArenaLimit(usize),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Exhausted(e) => write!(
                f,
                "no memory for a greenlet stack ({e}): the process is out of memory, address \
                 space (ulimit -v) or memory mappings (vm.max_map_count); let some greenlets \
                 finish, use smaller stacks, or raise the limit"
            ),
            StackError::TooLarge(n) => write!(
                f,
                "a greenlet stack of {n} bytes is too large: the most is {MAX_STACK_SIZE} bytes"
            ),
            StackError::ArenaLimit(n) => write!(
                f,
                "no room for another greenlet stack arena (all {n} are in use): let some \
                 greenlets finish, or use smaller stacks"
            ),
        }
    }
}

impl std::error::Error for StackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StackError::Exhausted(e) => Some(e),
            _ => None,
        }
    }
}
