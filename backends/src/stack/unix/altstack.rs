//! Alternate signal stacks, so the overflow handler can run when a stack is exhausted.
//!
//! A stack overflow leaves the stack pointer in a guard region; the kernel can only run a
//! handler for the resulting SIGSEGV on another stack, set with `sigaltstack`. Rust gives
//! its own threads one; threads created by C code have none. [`ensure`] gives the calling
//! thread one if it has none, and a thread-local destructor frees it when the thread exits.

use super::{guard, os};
use std::cell::Cell;
use std::ptr;

/// Usable bytes of the alternate stacks made here, before raising to the system minimum.
const MIN_SIZE: usize = 64 * 1024;

/// The alternate stack this module made for the current thread, if any.
struct AltStack {
    /// The whole mapping: one guard page, then the stack. Null if none was made.
    mapping: Cell<*mut u8>,
    /// Bytes of the mapping.
    len: Cell<usize>,
    /// Whether the thread is known to have an alternate stack.
    ready: Cell<bool>,
}

thread_local! {
    static ALT_STACK: AltStack = const {
        AltStack {
            mapping: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
            ready: Cell::new(false),
        }
    };
}

/// Makes sure the calling thread has an alternate signal stack.
///
/// Best effort: without memory for one, the thread stays without, and a later call tries
/// again. Cheap once the thread has one (one thread-local read).
///
/// Returns whether the thread has one now.
pub(super) fn ensure() -> bool {
    // During thread teardown the thread-local may be gone already; there is nothing to do.
    ALT_STACK
        .try_with(|alt| {
            if !alt.ready.get() {
                alt.ready.set(alt.make_if_missing());
            }
            alt.ready.get()
        })
        .unwrap_or(false)
}

/// Whether the calling thread has an alternate signal stack, and if so its size.
#[cfg(test)]
pub(super) fn current_size() -> Option<usize> {
    let current = query()?;
    (current.ss_flags & libc::SS_DISABLE == 0).then_some(current.ss_size)
}

fn query() -> Option<libc::stack_t> {
    let mut current = libc::stack_t {
        ss_sp: ptr::null_mut(),
        ss_flags: 0,
        ss_size: 0,
    };
    // SAFETY: a null new stack only queries; `current` is valid for writing.
    let ok = unsafe { libc::sigaltstack(ptr::null(), &mut current) } == 0;
    ok.then_some(current)
}

/// Bytes of stack to give: [`MIN_SIZE`], or more if the system says signal frames need it
/// (large vector registers, e.g. AVX-512 or SVE).
fn stack_size() -> usize {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let system_min = {
        /// `AT_MINSIGSTKSZ`: the minimum signal stack size the kernel reports (Linux 5.14+).
        const AT_MINSIGSTKSZ: libc::c_ulong = 51;
        // SAFETY: getauxval has no preconditions; it returns 0 for an unknown entry.
        let min = unsafe { libc::getauxval(AT_MINSIGSTKSZ) };
        usize::try_from(min).unwrap_or(0)
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let system_min = libc::SIGSTKSZ;
    MIN_SIZE
        .max(system_min.saturating_mul(4))
        .next_multiple_of(os::page_size())
}

impl AltStack {
    /// Installs a new alternate stack unless the thread has one; tells if it has one now.
    fn make_if_missing(&self) -> bool {
        let Some(current) = query() else {
            return false;
        };
        // SS_ONSTACK without SS_DISABLE: running on one right now, so there is one.
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return true;
        }
        let page = os::page_size();
        let size = stack_size();
        let len = page + size;
        let Ok(mapping) = os::map_reserve(len) else {
            return false;
        };
        let mapping = mapping.as_ptr();
        // SAFETY: the first page of a fresh mapping of ours, used by nothing yet.
        let guarded = unsafe { guard::install(mapping, page) }.is_ok();
        let stack = libc::stack_t {
            // SAFETY: `page < len`, inside the mapping.
            ss_sp: unsafe { mapping.add(page) }.cast(),
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: `stack` describes memory of ours that lives until the thread's
        // destructor below disables it.
        if !guarded || unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
            // SAFETY: the mapping was never handed to anyone.
            unsafe { os::unmap(mapping, len) };
            return false;
        }
        self.mapping.set(mapping);
        self.len.set(len);
        true
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let mapping = self.mapping.get();
        if mapping.is_null() {
            return;
        }
        let page = os::page_size();
        // SAFETY: `page` is inside the mapping (see `make_if_missing`).
        let ours = unsafe { mapping.add(page) };
        if let Some(current) = query() {
            if current.ss_sp.cast::<u8>() == ours {
                if current.ss_flags & libc::SS_ONSTACK != 0 {
                    // Running on it (a destructor called from a signal handler?): keep it.
                    return;
                }
                let disable = libc::stack_t {
                    ss_sp: ptr::null_mut(),
                    ss_flags: libc::SS_DISABLE,
                    // Some systems check the size even when disabling.
                    ss_size: current.ss_size,
                };
                // SAFETY: disabling the thread's alternate stack has no preconditions.
                if unsafe { libc::sigaltstack(&disable, ptr::null_mut()) } != 0 {
                    return; // still in use: leak it rather than unmap it
                }
            }
        } else {
            return;
        }
        // SAFETY: the stack is no longer the thread's alternate stack (disabled above, or
        // replaced by someone else earlier), so nothing can run on it.
        unsafe { os::unmap(mapping, self.len.get()) };
    }
}
