//! Thin wrappers over the few system calls the stack modules make.
//!
//! Each wrapper turns a failure into an [`io::Error`] built from `errno`, which never
//! allocates, so the callers can report exhaustion without needing memory.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `madvise` advice that installs guard markers on a range (Linux ≥ 6.13).
///
/// Touching a marked page raises SIGSEGV as a `PROT_NONE` page would, but the markers live
/// in the page tables, so the range stays part of its mapping instead of splitting it.
/// Defined here because older `libc` releases lack it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// `MAP_NORESERVE` where the system has it: do not reserve swap for the mapping. Elsewhere
/// (the BSDs) anonymous mappings never reserve it anyway.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "netbsd",
    target_os = "solaris",
    target_os = "illumos",
))]
const MAP_NORESERVE: libc::c_int = libc::MAP_NORESERVE;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "netbsd",
    target_os = "solaris",
    target_os = "illumos",
)))]
const MAP_NORESERVE: libc::c_int = 0;

/// The size of a memory page, read once from the system.
#[inline]
pub(super) fn page_size() -> usize {
    static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // POSIX guarantees a positive power of two; fall back to 4 KiB if a libc says otherwise.
    let size = usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096);
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// Reserves `len` bytes of private anonymous read-write memory, without reserving swap.
///
/// Pages are only backed by memory once touched.
pub(super) fn map_reserve(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping at an address the kernel picks cannot alias any
    // existing memory; the result is checked before use.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr.cast()).ok_or_else(|| {
        // Only a system allowing mappings at address 0 could get here; a null stack pointer
        // would be ambiguous, so give that range back and report no memory.
        // SAFETY: the mapping was just made and is unknown to anyone.
        unsafe { libc::munmap(addr, len) };
        io::Error::from_raw_os_error(libc::ENOMEM)
    })
}

/// Unmaps a range returned by [`map_reserve`].
///
/// # Safety
///
/// Nothing may use the range any more.
pub(super) unsafe fn unmap(addr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours and unused. munmap of a range we
    // mapped can only fail by splitting a mapping at the map count limit, which a whole
    // mapping never does; there is nothing useful to do on failure anyway.
    unsafe { libc::munmap(addr.cast(), len) };
}

/// Makes `len` bytes at `addr` inaccessible with `mprotect(PROT_NONE)`.
///
/// # Safety
///
/// The range must be page-aligned memory of ours that nothing uses.
pub(super) unsafe fn protect_none(addr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is ours and unused.
    check(unsafe { libc::mprotect(addr.cast(), len, libc::PROT_NONE) })
}

/// Gives `madvise(addr, len, advice)`.
///
/// # Safety
///
/// The range must be page-aligned memory of ours, and `advice` must not discard anything
/// still in use.
pub(super) unsafe fn advise(addr: *mut u8, len: usize, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is ours and the advice harmless.
    check(unsafe { libc::madvise(addr.cast(), len, advice) })
}

/// Releases the memory behind a range (`MADV_DONTNEED`); it reads as zeros afterwards.
///
/// Failure is ignored: the memory then stays resident, which wastes it but is harmless.
///
/// # Safety
///
/// The range must be page-aligned read-write memory of ours holding nothing still needed.
pub(super) unsafe fn release(addr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees the range is ours and its contents are dead.
    let _ = unsafe { advise(addr, len, libc::MADV_DONTNEED) };
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
