//! [`StackPool`]: a per-thread cache of stacks in front of the process-wide free lists.

use super::class::{self, SizeClass};
use super::guarded::GuardedStack;
use super::overflow;
use crate::stack::StackError;
use std::fmt;

/// Bytes of stacks a pool keeps per size class before returning the rest.
const CACHE_BYTES: usize = 8 << 20;
/// Most stacks a pool keeps per size class.
const CACHE_MAX: usize = 64;

/// How many stacks of `class` a pool keeps: 8 MiB worth, between 1 and 64.
fn cache_limit(class: SizeClass) -> usize {
    (CACHE_BYTES / class.usable()).clamp(1, CACHE_MAX)
}

/// A per-thread cache of stacks, so finished greenlets' stacks are reused.
///
/// [`give`](Self::give) keeps a bounded number of stacks per size class (8 MiB worth, at
/// most 64) with their memory still resident, and [`take`](Self::take) hands them out
/// again, most recent first, without a system call. Stacks beyond the bound, and all
/// cached stacks when the pool is dropped (for example when its thread exits), go back to
/// the process-wide free list with their memory released.
///
/// ```
/// use greenlet_backends::stack::StackPool;
/// let mut pool = StackPool::new();
/// let stack = pool.take(64 * 1024).unwrap();
/// let top = stack.top();
/// pool.give(stack);
/// assert_eq!(pool.take(64 * 1024).unwrap().top(), top);
/// ```
#[derive(Default)]
pub struct StackPool {
    /// Cached stacks, per size class.
    cached: [Vec<GuardedStack>; class::COUNT],
    /// Whether this thread is ready to report an overflow (see
    /// [`overflow::prepare_thread`]); asked until it is.
    thread_prepared: bool,
}

impl StackPool {
    /// An empty pool; it allocates nothing until stacks are given to it.
    ///
    /// ```
    /// let pool = greenlet_backends::stack::StackPool::new();
    /// # drop(pool);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A stack with at least `usable_size` bytes: a cached one of the same size class if
    /// there is one, else one from the process-wide free list or a new slot.
    ///
    /// Fails as [`GuardedStack::new`] does; it never panics.
    ///
    /// ```
    /// let mut pool = greenlet_backends::stack::StackPool::new();
    /// let stack = pool.take(greenlet_backends::stack::DEFAULT_STACK_SIZE).unwrap();
    /// assert!(stack.usable_size() >= greenlet_backends::stack::DEFAULT_STACK_SIZE);
    /// ```
    pub fn take(&mut self, usable_size: usize) -> Result<GuardedStack, StackError> {
        let class = SizeClass::for_size(usable_size)?;
        if !self.thread_prepared {
            self.thread_prepared = overflow::prepare_thread();
        }
        match self.cached[class.index()].pop() {
            Some(stack) => Ok(stack),
            None => GuardedStack::of_class(class),
        }
    }

    /// Returns a stack no longer in use to the pool.
    ///
    /// Nothing may run on the stack any more.
    ///
    /// ```
    /// let mut pool = greenlet_backends::stack::StackPool::new();
    /// let stack = greenlet_backends::stack::GuardedStack::new(16 * 1024).unwrap();
    /// pool.give(stack);
    /// ```
    pub fn give(&mut self, stack: GuardedStack) {
        let class = stack.class();
        let cache = &mut self.cached[class.index()];
        // Without room to cache it (or memory to make room), the stack goes back to the
        // process-wide list when dropped here.
        if cache.len() < cache_limit(class) && cache.try_reserve(1).is_ok() {
            cache.push(stack);
        }
    }
}

impl fmt::Debug for StackPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached: usize = self.cached.iter().map(Vec::len).sum();
        f.debug_struct("StackPool")
            .field("cached", &cached)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_per_class() {
        let mut pool = StackPool::new();
        let class = SizeClass::for_size(256 * 1024).unwrap();
        let limit = cache_limit(class);
        assert_eq!(limit, 32);
        let stacks: Vec<_> = (0..limit + 5)
            .map(|_| pool.take(256 * 1024).unwrap())
            .collect();
        for stack in stacks {
            pool.give(stack);
        }
        assert_eq!(pool.cached[class.index()].len(), limit);
    }

    #[test]
    fn the_largest_class_still_caches_one_stack() {
        let largest = SizeClass::for_size(crate::stack::MAX_STACK_SIZE).unwrap();
        assert_eq!(cache_limit(largest), 1);
        let smallest = SizeClass::for_size(0).unwrap();
        assert_eq!(cache_limit(smallest), CACHE_MAX);
    }
}
