//! Telling Valgrind where our stacks are.
//!
//! Valgrind follows the stack pointer to know what is stack memory; when it jumps into a
//! stack it has not been told about, it takes the jump for a huge frame and reports reads
//! of the greenlet's own frames, or of the stack it came from, as invalid. A "client
//! request" registers each stack once, when its slot is carved (slots are never unmapped,
//! so never deregistered).
//!
//! A client request is a fixed sequence of instructions that does nothing natively (the
//! register it rotates goes round exactly once) and that Valgrind recognises; the request
//! and its arguments are passed in an array. The sequences and the request number come
//! from Valgrind's public `valgrind.h` interface.

/// `VG_USERREQ__RUNNING_ON_VALGRIND`: answers non-zero under Valgrind.
const RUNNING_ON_VALGRIND: usize = 0x1001;
/// `VG_USERREQ__STACK_REGISTER`: arguments the lowest and the highest address of a stack.
const STACK_REGISTER: usize = 0x1501;

/// Whether the process runs under Valgrind.
pub(super) fn running_on_valgrind() -> bool {
    client_request([RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

/// Tells Valgrind, if the process runs under it, that `bottom..top` is a stack.
pub(super) fn register_stack(bottom: usize, top: usize) {
    // Valgrind's stack ends are inclusive.
    client_request([STACK_REGISTER, bottom, top - 1, 0, 0, 0]);
}

/// Makes a client request and returns Valgrind's answer; natively, nothing happens and the
/// answer is 0.
#[cfg(all(target_arch = "x86_64", not(miri)))]
fn client_request(args: [usize; 6]) -> usize {
    let answer;
    // SAFETY: natively the four rotations turn rdi by 3 + 13 + 61 + 51 = 128 bits, a whole
    // number of turns (they change the flags, which are not declared preserved), and
    // `xchg rbx, rbx` changes nothing: rdx keeps the 0 put there.
    // Under Valgrind the sequence reads `args` (rax points at it) and writes its answer to
    // rdx, declared clobbered; rdi is declared too, to be safe.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") 0usize => answer,
            inout("rdi") 0usize => _,
            options(nostack),
        );
    }
    answer
}

/// Makes a client request and returns Valgrind's answer; natively, nothing happens and the
/// answer is 0.
#[cfg(all(target_arch = "aarch64", not(miri)))]
fn client_request(args: [usize; 6]) -> usize {
    let answer;
    // SAFETY: natively the four rotations turn x12 by 3 + 13 + 51 + 61 = 128 bits, a whole
    // number of turns, and `orr x10, x10, x10` changes nothing: x3 keeps the 0 put there. Under Valgrind the sequence
    // reads `args` (x4 points at it) and writes its answer to x3, declared clobbered; x12
    // is declared too, to be safe.
    unsafe {
        core::arch::asm!(
            "ror x12, x12, #3",
            "ror x12, x12, #13",
            "ror x12, x12, #51",
            "ror x12, x12, #61",
            "orr x10, x10, x10",
            in("x4") args.as_ptr(),
            inout("x3") 0usize => answer,
            inout("x12") 0usize => _,
            options(nostack),
        );
    }
    answer
}

/// Elsewhere (and under Miri, which runs no assembly) the library makes no requests.
#[cfg(any(miri, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
fn client_request(_args: [usize; 6]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_says_whether_valgrind_runs_us() {
        // `GREENLET_UNDER_VALGRIND` is set by whoever runs the tests under Valgrind (the
        // valgrind row of test-all-targets); `cargo test` runs them natively.
        let expected = std::env::var_os("GREENLET_UNDER_VALGRIND").is_some();
        assert_eq!(running_on_valgrind(), expected);
    }

    #[test]
    fn a_client_request_does_nothing_natively() {
        // Under Valgrind this registers a stack nobody uses; natively it must leave every
        // register as it was, which the compiler relies on for everything else declared.
        let before = std::hint::black_box(0x1234_5678_usize);
        register_stack(0x1000, 0x2000);
        assert_eq!(std::hint::black_box(before), 0x1234_5678);
    }
}
