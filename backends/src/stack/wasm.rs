//! Stacks on wasm32: a shadow stack in linear memory plus a fiber from the host.
//!
//! Wasm code runs on two stacks. Locals whose address is taken, and everything too large
//! for wasm locals, live on the *shadow stack*: a region of linear memory addressed through
//! the module's `__stack_pointer` global. Calls, returns and wasm locals live on the
//! engine's *native stack*, which the guest can neither see nor switch. A greenlet needs
//! both, so a [`GuardedStack`] here owns both halves:
//!
//! ```text
//!   linear memory (one allocation, 16-byte aligned)           the host (greenlet_fiber_v1)
//!   +---------------------------------------------+ <- top    +--------------------------+
//!   |  shadow stack: grows down from `top`         |           | fiber `id`: its own      |
//!   |  ...                                         |           | native stack, parked and |
//!   +---------------------------------------------+ <- bottom | reused by the host       |
//!   |  canary: CANARY_LEN bytes of a known pattern |           +--------------------------+
//!   +---------------------------------------------+
//!   |  red zone: RED_ZONE bytes nobody uses        |
//!   +---------------------------------------------+ <- allocation start
//! ```
//!
//! Linear memory has no guard pages: a shadow stack that overflows silently overwrites
//! whatever lies below it. The canary turns that into a clear error: the wasm backend
//! checks it on every switch in and out of a greenlet ([`GuardedStack::check`]), and the
//! host checks that a fiber's saved stack pointer never lies below `bottom`. The red zone
//! below the canary belongs to the stack too, so an overflow of up to [`RED_ZONE`] bytes is
//! reported at the next switch with nothing else damaged; a deeper one still clobbers the
//! canary, but may have damaged other memory (and crashed) before the check runs. Its
//! pages are never touched by a healthy greenlet, so they cost address space, not memory.

use super::StackError;
use crate::arch::wasm::abi;
use std::alloc::{Layout, alloc, dealloc};
use std::fmt;

/// Bytes of canary below every shadow stack.
///
/// A frame that overflows by less than this always hits the canary; a larger frame can
/// jump over it, which is why stacks should be generous (see
/// [`DEFAULT_STACK_SIZE`](super::DEFAULT_STACK_SIZE)) and the host checks the stack
/// pointer too.
pub const CANARY_LEN: usize = 64;

/// Bytes below the canary that belong to the stack and are never used (see the module
/// docs).
pub const RED_ZONE: usize = 16 * 1024;

/// Alignment of `top` and `bottom`, as the wasm32 C ABI requires of the stack pointer.
const ALIGN: usize = 16;

/// Largest shadow stack we hand out: linear memory is at most 4 GiB.
const MAX_USABLE: usize = 1 << 30;

/// The word the canary repeats at word `i` of the canary of a stack allocated at `base`.
///
/// Derived from the address so that a canary copied from another stack does not pass.
fn canary_word(base: usize, i: usize) -> u32 {
    (base as u32 ^ 0xC0DE_5A17).wrapping_add((i as u32).wrapping_mul(0x9E37_79B9))
}

/// A greenlet stack on wasm32: a canary-guarded shadow stack in linear memory, and the
/// host fiber that provides the native stack (see the [module docs](self)).
///
/// ```no_run
/// // Runs only inside a greenlet_fiber_v1 host, e.g. `greenlet-wasm run guest.wasm`.
/// let stack = greenlet_backends::stack::GuardedStack::new(64 * 1024).unwrap();
/// assert!(stack.usable_size() >= 64 * 1024);
/// assert!(stack.check().is_ok());
/// ```
pub struct GuardedStack {
    /// Start of the allocation: the red zone, then the canary.
    base: *mut u8,
    /// Bytes allocated: red zone, canary and usable stack.
    len: usize,
    /// The host fiber (> 0) whose native stack goes with this shadow stack.
    fiber: i32,
}

impl GuardedStack {
    /// Allocates a shadow stack with at least `usable_size` usable bytes and asks the host
    /// for a fiber to go with it.
    ///
    /// Fails with [`StackError::Exhausted`] when linear memory is exhausted or the host
    /// refuses a new fiber (its live-fiber limit, or no memory for a native stack); the
    /// message names which.
    ///
    /// ```no_run
    /// use greenlet_backends::stack::{GuardedStack, StackError};
    /// match GuardedStack::new(64 * 1024) {
    ///     Ok(stack) => assert!(stack.usable_size() >= 64 * 1024),
    ///     Err(StackError::Exhausted(e)) => eprintln!("no more greenlets: {e}"),
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn new(usable_size: usize) -> Result<Self, StackError> {
        let usable = rounded_usable_size(usable_size).ok_or(StackError::TooLarge(usable_size))?;
        let len = usable + RED_ZONE + CANARY_LEN;
        let layout = Layout::from_size_align(len, ALIGN).map_err(|_| StackError::TooLarge(len))?;
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { alloc(layout) };
        if base.is_null() {
            return Err(StackError::Exhausted(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("linear memory is exhausted: no room for a {len}-byte shadow stack"),
            )));
        }
        let mut stack = GuardedStack {
            base,
            len,
            fiber: 0,
        };
        stack.write_canary();
        // SAFETY: a host call with plain integers; the host validates them.
        let id = unsafe { abi::new(stack.bottom() as i32, stack.top() as i32) };
        if id <= 0 {
            let reason = match id {
                abi::E_LIMIT => format!(
                    "the wasm host's live-fiber limit ({}) is reached",
                    abi::limit()
                ),
                abi::E_NO_MEMORY => "the wasm host has no memory for another fiber".to_string(),
                other => format!(
                    "the wasm host refused a new fiber: {}",
                    abi::error_name(other)
                ),
            };
            // `stack.fiber` is 0: dropping frees only the allocation.
            drop(stack);
            return Err(StackError::Exhausted(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                reason,
            )));
        }
        stack.fiber = id;
        Ok(stack)
    }

    /// The highest address of the stack (exclusive); stacks grow down from here.
    ///
    /// ```no_run
    /// let stack = greenlet_backends::stack::GuardedStack::new(64 * 1024).unwrap();
    /// assert_eq!(stack.top() as usize % 16, 0);
    /// ```
    pub fn top(&self) -> *mut u8 {
        // SAFETY: one past the end of our allocation.
        unsafe { self.base.add(self.len) }
    }

    /// The lowest usable address of the stack; the canary lies just below.
    ///
    /// ```no_run
    /// let stack = greenlet_backends::stack::GuardedStack::new(64 * 1024).unwrap();
    /// assert_eq!(stack.top() as usize - stack.bottom() as usize, stack.usable_size());
    /// ```
    pub fn bottom(&self) -> *mut u8 {
        // SAFETY: inside our allocation (len > RED_ZONE + CANARY_LEN).
        unsafe { self.base.add(RED_ZONE + CANARY_LEN) }
    }

    /// Usable bytes between [`bottom`](Self::bottom) and [`top`](Self::top).
    ///
    /// ```no_run
    /// let stack = greenlet_backends::stack::GuardedStack::new(10_000).unwrap();
    /// assert!(stack.usable_size() >= 10_000);
    /// ```
    pub fn usable_size(&self) -> usize {
        self.len - RED_ZONE - CANARY_LEN
    }

    /// The first byte of the canary.
    fn canary(&self) -> *mut u32 {
        // SAFETY: inside our allocation, 16-byte aligned (RED_ZONE is a multiple of 16).
        unsafe { self.base.add(RED_ZONE).cast() }
    }

    /// The host fiber that goes with this stack.
    pub(crate) fn fiber(&self) -> i32 {
        self.fiber
    }

    fn write_canary(&mut self) {
        let words = self.canary();
        for i in 0..CANARY_LEN / 4 {
            // SAFETY: the canary is CANARY_LEN bytes of our allocation, 16-byte aligned.
            unsafe { words.add(i).write(canary_word(words as usize, i)) };
        }
    }

    /// Checks the canary below the stack.
    ///
    /// Returns the address of the first overwritten canary byte when the stack has
    /// overflowed (or something else wrote below it).
    ///
    /// ```no_run
    /// let stack = greenlet_backends::stack::GuardedStack::new(64 * 1024).unwrap();
    /// assert_eq!(stack.check(), Ok(()));
    /// ```
    pub fn check(&self) -> Result<(), usize> {
        let words = self.canary();
        for i in 0..CANARY_LEN / 4 {
            // SAFETY: reads inside the canary of our allocation. Volatile: another context
            // may have written it since the compiler last looked.
            let word = unsafe { words.add(i).read_volatile() };
            if word != canary_word(words as usize, i) {
                return Err(words as usize + 4 * i);
            }
        }
        Ok(())
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        if self.fiber > 0 {
            // SAFETY: a host call with a plain id. Freeing discards the fiber's frames if
            // it is suspended, without running guest code on it.
            let status = unsafe { abi::free(self.fiber) };
            if status < 0 {
                crate::arch::wasm::fatal_abi("free", status, self.fiber);
            }
        }
        // SAFETY: allocated in `new` with this layout; nothing runs on the stack any more
        // (the host fiber is gone).
        unsafe {
            dealloc(
                self.base,
                Layout::from_size_align_unchecked(self.len, ALIGN),
            )
        };
    }
}

/// As on unix, so that code like `GuardedStack::new(n).unwrap_err()` builds on every target.
impl fmt::Debug for GuardedStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStack")
            .field("bottom", &self.bottom())
            .field("top", &self.top())
            .field("usable_size", &self.usable_size())
            .field("fiber", &self.fiber)
            .finish()
    }
}

/// How many idle stacks a [`StackPool`] keeps. Each holds a host fiber, which counts
/// against the host's live-fiber limit, so the pool stays small.
pub const POOL_CAPACITY: usize = 64;

/// A per-thread cache of stacks, so finished greenlets' stacks (and host fibers) are
/// reused. It keeps at most [`POOL_CAPACITY`] of them.
///
/// ```no_run
/// use greenlet_backends::stack::StackPool;
/// let mut pool = StackPool::new();
/// let stack = pool.take(64 * 1024).unwrap();
/// let top = stack.top();
/// pool.give(stack);
/// assert_eq!(pool.take(64 * 1024).unwrap().top(), top);
/// ```
#[derive(Default)]
pub struct StackPool {
    free: Vec<GuardedStack>,
}

impl fmt::Debug for StackPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackPool")
            .field("cached", &self.free.len())
            .finish()
    }
}

impl StackPool {
    /// An empty pool.
    ///
    /// ```no_run
    /// let pool = greenlet_backends::stack::StackPool::new();
    /// # drop(pool);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A stack with at least `usable_size` bytes: a cached one if any fits, else a new one.
    ///
    /// ```no_run
    /// let mut pool = greenlet_backends::stack::StackPool::new();
    /// assert!(pool.take(8 * 1024).unwrap().usable_size() >= 8 * 1024);
    /// ```
    pub fn take(&mut self, usable_size: usize) -> Result<GuardedStack, StackError> {
        if let Some(i) = self
            .free
            .iter()
            .rposition(|s| s.usable_size() >= usable_size)
        {
            return Ok(self.free.swap_remove(i));
        }
        GuardedStack::new(usable_size)
    }

    /// Returns a stack no longer in use to the pool; beyond [`POOL_CAPACITY`] it is freed.
    ///
    /// ```no_run
    /// let mut pool = greenlet_backends::stack::StackPool::new();
    /// let stack = pool.take(8 * 1024).unwrap();
    /// pool.give(stack);
    /// ```
    pub fn give(&mut self, stack: GuardedStack) {
        if self.free.len() < POOL_CAPACITY {
            self.free.push(stack);
        }
    }
}

/// Does nothing on wasm32: linear memory has no guard pages to trap on. Overflows are
/// caught by the canary check on every switch instead (see [`GuardedStack::check`]).
///
/// ```
/// greenlet_backends::stack::install_overflow_handler();
/// ```
pub fn install_overflow_handler() {}

/// The largest usable size [`GuardedStack::new`] accepts: 1 GiB (linear memory is at most
/// 4 GiB).
pub const MAX_STACK_SIZE: usize = MAX_USABLE;

/// What [`GuardedStack::new`] rounds a requested usable size up to; `None` if too large.
fn rounded_usable_size(requested: usize) -> Option<usize> {
    Some(
        requested
            .checked_next_multiple_of(ALIGN)
            .filter(|n| *n <= MAX_USABLE)?
            .max(4096),
    )
}

/// The usable size of the stack a greenlet that asks for `requested` bytes gets from
/// [`GuardedStack::new`]; a size no stack can have comes back as it is (asking for it
/// fails).
///
/// ```no_run
/// use greenlet_backends::stack::{GuardedStack, usable_size_for};
/// let size = usable_size_for(10_000);
/// assert_eq!(GuardedStack::new(10_000).unwrap().usable_size(), size);
/// ```
pub fn usable_size_for(requested: usize) -> usize {
    rounded_usable_size(requested).unwrap_or(requested)
}

/// Always `false` on wasm32: Valgrind does not run wasm guests.
///
/// ```
/// assert!(!greenlet_backends::stack::running_on_valgrind());
/// ```
pub fn running_on_valgrind() -> bool {
    false
}

/// How stacks are guarded on wasm32: always [`GuardMode::Canary`](super::GuardMode).
///
/// ```
/// let mode = greenlet_backends::stack::guard_mode();
/// println!("stacks are guarded with {mode}");
/// ```
pub fn guard_mode() -> super::GuardMode {
    super::GuardMode::Canary
}
