//! Turning a hit on a stack guard into a clear message instead of a bare crash.
//!
//! [`install_overflow_handler`] installs one process-wide handler for SIGSEGV and SIGBUS.
//! On a fault whose address lies in the guard of a stack slot (see the
//! [registry](super::registry)) it writes
//!
//! ```text
//! thread has overflowed a greenlet stack (guard page hit at 0x7f0123400fff)
//! fatal runtime error: greenlet stack overflow, aborting
//! ```
//!
//! to standard error and aborts. Any other fault goes to the handler that was installed
//! before (Rust's own, which reports overflows of thread stacks), or, if there was none,
//! gets the default action: the faulting instruction runs again and kills the process.
//!
//! The handler only loads atomics, formats into a buffer on its stack and calls `write`
//! and `abort`, all async-signal-safe. It runs on the thread's alternate signal stack
//! ([`altstack`](super::altstack)), as the faulting stack has no room left.

use super::{altstack, registry};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::Once;

/// The signals a guard hit can raise: SIGSEGV on Linux, SIGBUS on some BSDs and macOS.
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// The actions installed before ours, one per entry of [`SIGNALS`].
///
/// Written once, inside [`INSTALL`], before our handler is installed for that signal, and
/// only read after (by the handler), so reads never race with the write.
struct PreviousActions([UnsafeCell<MaybeUninit<libc::sigaction>>; SIGNALS.len()]);

// SAFETY: see the type's comment: one write strictly before any read.
unsafe impl Sync for PreviousActions {}

static PREVIOUS: PreviousActions = PreviousActions([
    UnsafeCell::new(MaybeUninit::uninit()),
    UnsafeCell::new(MaybeUninit::uninit()),
]);

static INSTALL: Once = Once::new();

/// Makes a greenlet stack overflow print a clear message and abort.
///
/// Installs (once per process) a SIGSEGV/SIGBUS handler that recognises faults in the
/// guard of any [`GuardedStack`](super::GuardedStack) and chains every other fault to the
/// handler installed before it; and gives the calling thread an alternate signal stack if
/// it has none (freed when the thread exits), since the handler cannot run on the stack
/// that overflowed.
///
/// Call it before running greenlets. Once it has run, every thread that takes a stack
/// ([`GuardedStack::new`](super::GuardedStack::new), [`StackPool::take`](super::StackPool::take))
/// gets an alternate signal stack too; calling it on each thread that runs greenlets
/// covers threads that run stacks taken elsewhere. It is idempotent and cheap after the
/// first call on a thread. Best effort: if no memory can be had for an alternate stack,
/// an overflow on that thread still crashes, just without the message.
///
/// ```
/// greenlet_backends::stack::install_overflow_handler();
/// greenlet_backends::stack::install_overflow_handler(); // again: nothing more happens
/// ```
pub fn install_overflow_handler() {
    INSTALL.call_once(|| {
        for (index, &signal) in SIGNALS.iter().enumerate() {
            install(index, signal);
        }
    });
    // Best effort: a thread without one gets another try when its pool takes a stack.
    altstack::ensure();
}

/// If [`install_overflow_handler`] has run in this process, makes sure the calling thread
/// has an alternate signal stack too, so the handler can report an overflow there.
///
/// Called by a thread's stack pool until it succeeds: threads that only run greenlets,
/// without calling [`install_overflow_handler`] themselves, are then covered as well.
/// Returns whether the handler is installed and the thread has its alternate stack.
pub(super) fn prepare_thread() -> bool {
    INSTALL.is_completed() && altstack::ensure()
}

fn install(index: usize, signal: libc::c_int) {
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `previous` is valid for writing.
    if unsafe { libc::sigaction(signal, ptr::null(), &mut previous) } != 0 {
        return;
    }
    // SAFETY: inside `INSTALL`, before our handler exists, so nothing reads the slot.
    unsafe { (*PREVIOUS.0[index].get()).write(previous) };

    // SAFETY: as above, all-zero is a valid sigaction to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_fault as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `on_fault` has the SA_SIGINFO signature and is async-signal-safe.
    unsafe { libc::sigaction(signal, &action, ptr::null_mut()) };
}

extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let info_ref = unsafe { &*info };
    // si_code > 0: sent by the kernel for a fault, so si_addr is the faulting address
    // (a signal sent with kill() has si_code <= 0 and no address).
    if info_ref.si_code > 0 {
        let addr = fault_address(info_ref);
        if registry::guard_hit(addr) {
            let mut message = Message::new();
            report(&mut message, addr);
            message.write_to_stderr();
            // SAFETY: abort is async-signal-safe and never returns.
            unsafe { libc::abort() };
        }
    }
    // SAFETY: our own arguments, as the kernel gave them.
    unsafe { chain(signal, info, context) };
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn fault_address(info: &libc::siginfo_t) -> usize {
    // SAFETY: for a kernel-generated SIGSEGV/SIGBUS the union holds the fault fields.
    unsafe { info.si_addr() as usize }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn fault_address(info: &libc::siginfo_t) -> usize {
    info.si_addr as usize
}

/// Hands a fault that is not ours to the previous action.
///
/// # Safety
///
/// The arguments are those the kernel gave [`on_fault`].
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let Some(index) = SIGNALS.iter().position(|&s| s == signal) else {
        return;
    };
    // SAFETY: our handler is only installed after this slot was written (see
    // `PreviousActions`), and it is never written again.
    let previous = unsafe { (*PREVIOUS.0[index].get()).assume_init_ref() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction runs again and
        // the fault kills the process as if this handler had never been installed.
        // (An ignored SIGSEGV from a fault would just loop; the kernel kills in that case.)
        // SAFETY: all-zero is SIG_DFL with no flags; sigaction is async-signal-safe.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, ptr::null_mut());
        }
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, the handler was installed with this signature.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        handler(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO, the handler was installed with this signature.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        handler(signal);
    }
}

/// Formats the overflow report for a fault at `addr`.
fn report(message: &mut Message, addr: usize) {
    message.push(b"thread has overflowed a greenlet stack (guard page hit at 0x");
    message.push_hex(addr);
    message.push(b")\nfatal runtime error: greenlet stack overflow, aborting\n");
}

/// A message built without allocating, for use in a signal handler.
struct Message {
    bytes: [u8; 160],
    len: usize,
}

impl Message {
    fn new() -> Self {
        Message {
            bytes: [0; 160],
            len: 0,
        }
    }

    /// Appends `text`, cutting it short if the buffer is full.
    fn push(&mut self, text: &[u8]) {
        let room = self.bytes.len() - self.len;
        let n = text.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&text[..n]);
        self.len += n;
    }

    /// Appends `value` in lowercase hexadecimal, without leading zeros.
    fn push_hex(&mut self, value: usize) {
        let mut digits = [0u8; 2 * size_of::<usize>()];
        let mut start = digits.len();
        let mut rest = value;
        loop {
            start -= 1;
            digits[start] = b"0123456789abcdef"[rest & 0xf];
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Writes the message to file descriptor 2, retrying partial and interrupted writes.
    fn write_to_stderr(&self) {
        let mut rest = self.as_bytes();
        while !rest.is_empty() {
            // SAFETY: `rest` is valid for reading its length; write is async-signal-safe.
            let n = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Ok(0) => return,
                Ok(n) => rest = &rest[n..],
                Err(_) if last_errno_is_eintr() => {}
                Err(_) => return,
            }
        }
    }
}

fn last_errno_is_eintr() -> bool {
    // `io::Error::last_os_error` only reads errno; it does not allocate.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_address_and_the_cause() {
        let mut message = Message::new();
        report(&mut message, 0x2340_0fff);
        assert_eq!(
            std::str::from_utf8(message.as_bytes()).unwrap(),
            "thread has overflowed a greenlet stack (guard page hit at 0x23400fff)\n\
             fatal runtime error: greenlet stack overflow, aborting\n"
        );
    }

    #[test]
    fn hex_formatting_covers_zero_and_the_maximum() {
        let mut message = Message::new();
        message.push_hex(0);
        message.push(b" ");
        message.push_hex(usize::MAX);
        let expected = format!("0 {:x}", usize::MAX);
        assert_eq!(message.as_bytes(), expected.as_bytes());
    }

    #[test]
    fn a_full_message_is_cut_short_not_overrun() {
        let mut message = Message::new();
        for _ in 0..100 {
            message.push(b"0123456789");
        }
        assert_eq!(message.as_bytes().len(), 160);
    }

    /// Takes away the alternate signal stack std gives its threads, as a C thread has none.
    fn act_as_a_c_thread() {
        let disable = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: the calling thread is not running on its alternate stack. std frees the
        // stack it made when the thread exits, whether or not it is still installed.
        assert_eq!(unsafe { libc::sigaltstack(&disable, ptr::null_mut()) }, 0);
        assert_eq!(altstack::current_size(), None);
    }

    #[test]
    fn installing_gives_a_thread_without_one_an_alternate_stack() {
        std::thread::spawn(|| {
            act_as_a_c_thread();
            install_overflow_handler();
            assert!(altstack::current_size().unwrap() >= 64 * 1024);
            install_overflow_handler();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn taking_a_stack_once_the_handler_is_installed_gives_the_thread_an_alternate_stack() {
        install_overflow_handler();
        std::thread::spawn(|| {
            act_as_a_c_thread();
            let stack = crate::stack::StackPool::new().take(16 * 1024).unwrap();
            assert!(altstack::current_size().is_some());
            drop(stack);
        })
        .join()
        .unwrap();
    }
}
