//! [`StackPool`]: a per-thread cache of stacks in front of the process-wide free lists.

use super::class::{self, SizeClass};
use super::guarded::GuardedStack;
use super::overflow;
use crate::stack::StackError;
use std::fmt;
use std::ptr::NonNull;

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
pub struct StackPool {
    /// Cached stacks, per size class, by their tops (their class is the index; see
    /// [`GuardedStack::into_top`]): owned by the pool, and returned to the arena when it
    /// is dropped. A class's capacity is reserved once, exactly its
    /// [`cache_limit`] (`try_reserve_exact` on an empty `Vec` allocates just that), the
    /// first time a stack of it is given: then `len < capacity` is the bound, and caching
    /// a stack is a plain push that never allocates.
    cached: [Vec<NonNull<u8>>; class::COUNT],
    /// The class of the last stack taken, so that the usual request (the same size again)
    /// skips computing it; see [`Recent`].
    recent: Recent,
    /// Whether this thread is ready to report an overflow (see
    /// [`overflow::prepare_thread`]); asked until it is.
    thread_prepared: bool,
}

/// The requested sizes that map to one size class: `take(size)` uses `class` when
/// `size.wrapping_sub(lowest) < count`, a single comparison.
///
/// Empty (`count == 0`) until the thread is prepared, so that the one comparison also
/// stands for "the thread is prepared" and the hot path tests nothing else.
struct Recent {
    lowest: usize,
    count: usize,
    class: SizeClass,
}

impl Default for StackPool {
    fn default() -> Self {
        StackPool {
            cached: Default::default(),
            recent: Recent {
                lowest: 0,
                count: 0,
                // Any class: with `count == 0` it is never used.
                class: SizeClass::SMALLEST,
            },
            thread_prepared: false,
        }
    }
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
    // Inlined (with the rest out of line): a cache hit for the size of the last take is a
    // handful of instructions, fewer than a call would cost.
    #[inline]
    pub fn take(&mut self, usable_size: usize) -> Result<GuardedStack, StackError> {
        let recent = &self.recent;
        if usable_size.wrapping_sub(recent.lowest) < recent.count
            && let Some(top) = self.cached[recent.class.index()].pop()
        {
            // SAFETY: the cache of a class holds the tops of stacks of that class, given
            // up to the pool (`give`), which owns them until now.
            return Ok(unsafe { GuardedStack::from_top(top, recent.class) });
        }
        self.take_uncached(usable_size)
    }

    /// [`take`](Self::take) for another size than last time, an unprepared thread or an
    /// empty cache.
    #[inline(never)]
    fn take_uncached(&mut self, usable_size: usize) -> Result<GuardedStack, StackError> {
        let class = SizeClass::for_size(usable_size)?;
        if !self.thread_prepared {
            self.thread_prepared = overflow::prepare_thread();
        }
        if self.thread_prepared {
            let (lowest, highest) = class.sizes();
            self.recent = Recent {
                lowest,
                count: highest - lowest + 1,
                class,
            };
        }
        match self.cached[class.index()].pop() {
            // SAFETY: as in `take`.
            Some(top) => Ok(unsafe { GuardedStack::from_top(top, class) }),
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
    // Inlined like `take`: caching into reserved room is a bounded push.
    #[inline]
    pub fn give(&mut self, stack: GuardedStack) {
        let cache = &mut self.cached[stack.class().index()];
        if cache.len() < cache.capacity() {
            // Cannot reallocate: there is room.
            cache.push(stack.into_top());
        } else {
            self.give_uncached(stack);
        }
    }

    /// [`give`](Self::give) to a full cache, or to a class without reserved room yet.
    #[inline(never)]
    fn give_uncached(&mut self, stack: GuardedStack) {
        let class = stack.class();
        let cache = &mut self.cached[class.index()];
        // Reserve the class's room on its first stack. Without memory for it, or with the
        // cache full, the stack goes back to the process-wide list when dropped here (and
        // the next stack given tries to reserve again).
        if cache.capacity() == 0 && cache.try_reserve_exact(cache_limit(class)).is_ok() {
            cache.push(stack.into_top());
        }
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        for (class, cache) in SizeClass::all().zip(&mut self.cached) {
            for top in cache.drain(..) {
                // SAFETY: as in `take`; dropped here, the stack goes back to the arena.
                drop(unsafe { GuardedStack::from_top(top, class) });
            }
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
    fn each_take_gets_the_class_of_its_own_size() {
        crate::stack::install_overflow_handler();
        let mut pool = StackPool::new();
        for size in [
            256 * 1024,
            256 * 1024,
            64 * 1024,
            200_000,
            300 * 1024,
            1,
            256 * 1024,
        ] {
            let stack = pool.take(size).unwrap();
            let class = SizeClass::for_size(size).unwrap();
            assert_eq!(stack.class(), class, "size {size}");
            assert_eq!(stack.usable_size(), class.usable(), "size {size}");
            pool.give(stack);
        }
        assert!(matches!(
            pool.take(usize::MAX),
            Err(StackError::TooLarge(usize::MAX))
        ));
        assert!(pool.take(crate::stack::MAX_STACK_SIZE + 1).is_err());
    }

    #[test]
    fn a_class_reserves_exactly_its_limit_once() {
        let mut pool = StackPool::new();
        let class = SizeClass::for_size(64 * 1024).unwrap();
        let stack = pool.take(64 * 1024).unwrap();
        pool.give(stack);
        assert_eq!(pool.cached[class.index()].capacity(), cache_limit(class));
    }

    #[test]
    fn the_largest_class_still_caches_one_stack() {
        let largest = SizeClass::for_size(crate::stack::MAX_STACK_SIZE).unwrap();
        assert_eq!(cache_limit(largest), 1);
        let smallest = SizeClass::for_size(0).unwrap();
        assert_eq!(cache_limit(smallest), CACHE_MAX);
    }
}
