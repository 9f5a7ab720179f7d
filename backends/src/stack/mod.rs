//! Guarded stacks for greenlets, and a per-thread pool that reuses them.
//!
//! (Minimal first version: one mmap per stack with a guard page below it.)

use std::fmt;

cfg_if::cfg_if! {
    if #[cfg(unix)] {
        mod unix;
        pub use unix::{GuardedStack, StackPool, install_overflow_handler};
    } else {
        compile_error!("greenlet-rs: no stack implementation for this target");
    }
}

/// Default usable size of a greenlet stack, in bytes.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Why no stack could be had.
#[derive(Debug)]
pub enum StackError {
    /// The kernel refused the memory or the mapping (ENOMEM, map count limit).
    Exhausted(std::io::Error),
    /// The requested size is larger than this library supports.
    TooLarge(usize),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Exhausted(e) => write!(f, "no memory for a greenlet stack: {e}"),
            StackError::TooLarge(n) => write!(f, "a greenlet stack of {n} bytes is too large"),
        }
    }
}

impl std::error::Error for StackError {}

