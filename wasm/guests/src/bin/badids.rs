//! Calls the raw greenlet_fiber_v1 imports with bad ids and checks that each gets an error
//! result (and no trap). Prints one line per check, then `badids ok`.
#[cfg(target_arch = "wasm32")]
fn main() {
    use greenlet_backends::arch::wasm::abi;
    fn check(what: &str, got: i32, want: i32) {
        println!("{what}: {got} ({})", abi::error_name(got));
        assert_eq!(got, want, "{what}");
    }
    let mut stack = vec![0u128; 1024]; // 16 KiB, 16-byte aligned
    let lo = stack.as_mut_ptr() as i32;
    let hi = lo + 16 * 1024;
    // SAFETY: every call below passes plain integers; the host validates them all, and no
    // fiber is ever started, so nothing runs on `stack`.
    unsafe {
        check(
            "switch to a never-created id",
            abi::switch(777, 1),
            abi::E_NO_SUCH_FIBER,
        );
        check(
            "switch to a negative id",
            abi::switch(-5, 1),
            abi::E_NO_SUCH_FIBER,
        );
        check(
            "switch to self (root)",
            abi::switch(0, 1),
            abi::E_IS_CURRENT,
        );
        check("exit from the root", abi::exit(0, 1), abi::E_NOT_IN_FIBER);
        check("bind the root", abi::bind(0, 1, 0), abi::E_ROOT);
        check("free the root", abi::free(0), abi::E_ROOT);
        check("new with lo >= hi", abi::new(hi, lo), abi::E_BAD_STACK);
        check(
            "new with a misaligned stack",
            abi::new(lo + 4, hi),
            abi::E_BAD_STACK,
        );
        let id = abi::new(lo, hi);
        assert!(id > 0, "new: {id}");
        check("state of a new fiber", abi::state(id), abi::STATE_EMPTY);
        check(
            "switch to an unbound fiber",
            abi::switch(id, 1),
            abi::E_NOT_BOUND,
        );
        check(
            "bind a bad entry",
            abi::bind(id, 0x7fff_0000, 0),
            abi::E_BAD_ENTRY,
        );
        check("free", abi::free(id), 0);
        check(
            "switch to a freed id",
            abi::switch(id, 1),
            abi::E_NO_SUCH_FIBER,
        );
        check("state of a freed id", abi::state(id), abi::STATE_NONE);
        check("free twice", abi::free(id), abi::E_NO_SUCH_FIBER);
        let again = abi::new(lo, hi);
        assert!(
            again > 0 && again != id,
            "a reused slot gets a new id: {again} vs {id}"
        );
        check("stale id after reuse", abi::state(id), abi::STATE_NONE);
        check("free the new one", abi::free(again), 0);
    }
    drop(stack);
    println!("badids ok");
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    println!("badids exercises the wasm32 host ABI; build it for wasm32-wasip1");
}
