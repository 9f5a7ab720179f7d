//! [`GuardedStack`]: exclusive ownership of one guarded slot.

use super::class::SizeClass;
use super::{arena, overflow};
use crate::stack::StackError;
use std::fmt;
use std::ptr::NonNull;

/// A stack with an inaccessible guard region below it, owned exclusively.
///
/// The stack occupies one slot of a shared arena (see the [module docs](crate::stack)).
/// Dropping it gives the slot back to the process-wide free list of its size class, after
/// releasing its memory; nothing is ever unmapped. Running past [`bottom`](Self::bottom)
/// touches the guard, which faults; [`install_overflow_handler`](super::install_overflow_handler)
/// turns that fault into a clear message.
///
/// ```
/// use greenlet_backends::stack::GuardedStack;
/// let stack = GuardedStack::new(64 * 1024).unwrap();
/// assert_eq!(stack.top() as usize - stack.bottom() as usize, stack.usable_size());
/// assert_eq!(stack.top() as usize % 16, 0);
/// ```
pub struct GuardedStack {
    /// One past the highest byte of the slot, which is the top of the stack: what starting
    /// a greenlet needs, so it is kept rather than derived (the slot's base and the bottom
    /// are derived on the cold paths). Also keeps the type `!Send` and `!Sync`, as stacks
    /// belong to the thread whose greenlets run on them.
    top: NonNull<u8>,
    class: SizeClass,
}

impl GuardedStack {
    /// A stack with at least `usable_size` usable bytes, taken from the process-wide pool.
    ///
    /// The size is rounded up to a power of two of at least 16 KiB (see
    /// [`usable_size`](Self::usable_size)). Fails with [`StackError::TooLarge`] above
    /// [`MAX_STACK_SIZE`](super::MAX_STACK_SIZE), and with another [`StackError`] when the
    /// process is out of address space or memory mappings; it never panics.
    ///
    /// A [`StackPool`](super::StackPool) is faster when stacks come and go often.
    ///
    /// ```
    /// let stack = greenlet_backends::stack::GuardedStack::new(64 * 1024).unwrap();
    /// assert!(stack.usable_size() >= 64 * 1024);
    /// ```
    pub fn new(usable_size: usize) -> Result<Self, StackError> {
        overflow::prepare_thread();
        Self::of_class(SizeClass::for_size(usable_size)?)
    }

    /// A stack of `class` from the process-wide free list or a new slot.
    pub(super) fn of_class(class: SizeClass) -> Result<Self, StackError> {
        let top = arena::take(class)?;
        Ok(GuardedStack { top, class })
    }

    /// A stack of `class` whose slot ends at `top`.
    ///
    /// # Safety
    ///
    /// `top` ends a slot of `class` handed out by `arena::take` and owned by nobody else
    /// (given up with [`into_top`](Self::into_top)): the new value takes that ownership.
    #[inline]
    pub(super) unsafe fn from_top(top: NonNull<u8>, class: SizeClass) -> Self {
        GuardedStack { top, class }
    }

    /// Gives up the stack without returning its slot to the arena: the caller now owns the
    /// slot ending at the returned address, and must hand it to [`from_top`](Self::from_top)
    /// with this stack's class to get the stack back (or the slot is lost).
    #[inline]
    pub(super) fn into_top(self) -> NonNull<u8> {
        std::mem::ManuallyDrop::new(self).top
    }

    #[inline]
    pub(super) fn class(&self) -> SizeClass {
        self.class
    }

    /// The highest address of the stack (exclusive); stacks grow down from here.
    ///
    /// Page-aligned, so 16-byte aligned as every supported ABI requires.
    ///
    /// ```
    /// let stack = greenlet_backends::stack::GuardedStack::new(16 * 1024).unwrap();
    /// assert_eq!(stack.top() as usize % 16, 0);
    /// ```
    #[inline]
    pub fn top(&self) -> *mut u8 {
        self.top.as_ptr()
    }

    /// The lowest usable address of the stack; the guard region lies just below.
    ///
    /// ```
    /// let stack = greenlet_backends::stack::GuardedStack::new(16 * 1024).unwrap();
    /// // The lowest usable byte can be written; the one below it would fault.
    /// // SAFETY: `bottom()` is the first byte of the stack's usable memory.
    /// unsafe { stack.bottom().write_volatile(1) };
    /// ```
    #[inline]
    pub fn bottom(&self) -> *mut u8 {
        // SAFETY: the usable stack is the last `usable()` bytes of the slot ending at `top`.
        unsafe { self.top.as_ptr().sub(self.class.usable()) }
    }

    /// Usable bytes between [`bottom`](Self::bottom) and [`top`](Self::top): the size
    /// asked for, rounded up to its size class.
    ///
    /// ```
    /// let stack = greenlet_backends::stack::GuardedStack::new(100_000).unwrap();
    /// assert_eq!(stack.usable_size(), 128 * 1024);
    /// ```
    #[inline]
    pub fn usable_size(&self) -> usize {
        self.class.usable()
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: the slot ending at `top` came from `arena::take(self.class)`, and
        // whoever ran code on this stack has finished with it before giving up the stack.
        unsafe { arena::give(self.class, self.top) };
    }
}

impl fmt::Debug for GuardedStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStack")
            .field("bottom", &self.bottom())
            .field("top", &self.top())
            .field("usable_size", &self.usable_size())
            .finish()
    }
}
