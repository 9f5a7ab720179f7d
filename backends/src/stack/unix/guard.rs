//! Guard regions: which mechanism makes them inaccessible, and installing one.
//!
//! Preferred is `madvise(MADV_GUARD_INSTALL)` (Linux ≥ 6.13): the guard lives in the page
//! tables, so an arena of any number of guarded slots stays one kernel mapping. The
//! fallback is `mprotect(PROT_NONE)`, which splits the arena's mapping around every guard
//! (two mappings per stack, so at most ~32,000 stacks under the default
//! `vm.max_map_count` of 65,530).
//!
//! A kernel that lacks the advice rejects it with `EINVAL`, but QEMU user mode accepts
//! unknown advice and does nothing. So the first use probes whether a guard really makes
//! memory inaccessible, and caches the answer for the process.
//!
//! Setting the environment variable `GREENLET_STACK_GUARD=mprotect` before the first stack
//! is made forces the fallback (useful for tools that do not understand guard markers, and
//! for testing the fallback). Under valgrind, which does not know guard markers and crashes
//! when it reads one while unwinding, the fallback is chosen automatically: valgrind puts
//! its `vgpreload` libraries in the client's `LD_PRELOAD`.

use super::os;
use crate::stack::GuardMode;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that can force [`GuardMode::Mprotect`].
const FORCE_ENV: &str = "GREENLET_STACK_GUARD";

/// The cached probe result: 0 until probed, else a [`GuardMode`] code.
static MODE: AtomicU8 = AtomicU8::new(0);
const MADVISE_GUARD: u8 = 1;
const MPROTECT: u8 = 2;

/// The guard mechanism of this process, probing on first use.
///
/// Fails only if the probe itself has no memory to work with; nothing is cached then.
pub(super) fn mode() -> io::Result<GuardMode> {
    match MODE.load(Ordering::Relaxed) {
        MADVISE_GUARD => return Ok(GuardMode::MadviseGuard),
        MPROTECT => return Ok(GuardMode::Mprotect),
        _ => {}
    }
    // Two threads may probe at once; they reach the same answer.
    let mode = probe()?;
    let code = match mode {
        GuardMode::MadviseGuard => MADVISE_GUARD,
        GuardMode::Mprotect => MPROTECT,
    };
    MODE.store(code, Ordering::Relaxed);
    Ok(mode)
}

/// Makes `[addr, addr + len)` inaccessible with the process's guard mechanism.
///
/// # Safety
///
/// The range must be page-aligned read-write memory of ours that nothing uses.
pub(super) unsafe fn install(addr: *mut u8, len: usize) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if mode()? == GuardMode::MadviseGuard {
        // SAFETY: forwarded from the caller; MADV_GUARD_INSTALL discards the range's
        // contents, which the caller says are unused.
        match unsafe { os::advise(addr, len, os::MADV_GUARD_INSTALL) } {
            // EINVAL despite a good probe: the mapping is one the advice refuses, e.g.
            // locked by `mlockall(MCL_FUTURE)`. A guard page still works there.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            result => return result,
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { os::protect_none(addr, len) }
}

fn probe() -> io::Result<GuardMode> {
    if std::env::var_os(FORCE_ENV).is_some_and(|v| v == "mprotect") || under_valgrind() {
        return Ok(GuardMode::Mprotect);
    }
    probe_madvise()
}

/// Whether this process runs under valgrind, which preloads its `vgpreload_*` libraries.
fn under_valgrind() -> bool {
    std::env::var_os("LD_PRELOAD").is_some_and(|v| v.to_string_lossy().contains("vgpreload"))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn probe_madvise() -> io::Result<GuardMode> {
    Ok(GuardMode::Mprotect)
}

/// Installs a guard on a scratch page and checks that the kernel refuses to read it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn probe_madvise() -> io::Result<GuardMode> {
    let page = os::page_size();
    let scratch = os::map_reserve(page)?.as_ptr();
    // SAFETY: `scratch` is a fresh page of ours that nothing else knows about.
    let works = match unsafe { os::advise(scratch, page, os::MADV_GUARD_INSTALL) } {
        Err(_) => false, // EINVAL on kernels before 6.13; EPERM under some sandboxes
        Ok(()) => kernel_cannot_read(scratch),
    };
    // SAFETY: the scratch page was only used by the probe above.
    unsafe { os::unmap(scratch, page) };
    Ok(if works {
        GuardMode::MadviseGuard
    } else {
        GuardMode::Mprotect
    })
}

/// Whether the kernel fails with `EFAULT` to read one byte at `addr`, without touching it
/// from user space (which would fault): it is asked to `write` that byte into a pipe.
///
/// Under QEMU user mode the guard advice was ignored, the host kernel reads the byte, and
/// the answer is `false`. Any doubt (no pipe available) also answers `false`, which picks
/// the fallback that is always correct.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn kernel_cannot_read(addr: *mut u8) -> bool {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return false;
    }
    // SAFETY: the kernel validates `addr` itself; an inaccessible address yields EFAULT.
    let written = unsafe { libc::write(fds[1], addr.cast(), 1) };
    let error = io::Error::last_os_error();
    // SAFETY: both descriptors were just created by us and are closed once.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    written < 0 && error.raw_os_error() == Some(libc::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_gives_a_stable_answer() {
        let first = mode().unwrap();
        assert_eq!(mode().unwrap(), first);
        eprintln!("guard mode: {first}");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_kernel_can_read_ordinary_memory() {
        let page = os::page_size();
        let scratch = os::map_reserve(page).unwrap().as_ptr();
        assert!(!kernel_cannot_read(scratch));
        // SAFETY: the page was only used above.
        unsafe { os::unmap(scratch, page) };
    }
}
