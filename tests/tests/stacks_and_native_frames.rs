//! O. Recursion, deep stacks and native frames (catalog item 106): deep recursion on
//! greenlet stacks, switching with `extern "C"` frames (and libc's `qsort`) suspended on the
//! stack, backtraces, a stack overflow ending the process with a clear message, and "no
//! stack can be had" as an error value.

use std::hint::black_box;

use greenlet::{Error, Greenlet, State};
use greenlet_conformance::part2::expect_value;

/// A stack size no target can provide (above every `MAX_STACK_SIZE`), on 32-bit targets too.
const IMPOSSIBLE_STACK: usize = usize::MAX / 2;

/// Big enough for 10,000 frames of [`recurse_then_switch`] in an unoptimised build.
const DEEP_STACK: usize = 16 << 20;
const DEPTH: u32 = 10_000;

/// Recurses `n` frames deep, each with some stack of its own, switches to main at the
/// bottom and returns what comes back plus the number of frames unwound.
#[inline(never)]
fn recurse_then_switch(n: u32) -> Result<u64, Error> {
    let pad = black_box([n as u8; 64]);
    if n == 0 {
        let back = Greenlet::main().switch(DEPTH)?;
        return Ok(back.downcast::<u64>().unwrap());
    }
    let below = recurse_then_switch(n - 1)?;
    // Used after the call: the frame stays, and the call is no tail call.
    black_box(&pad);
    Ok(below + 1)
}

/// Recurses `n` frames deep and returns `n`, touching each frame's stack.
#[inline(never)]
fn recurse(n: u32) -> u64 {
    let pad = black_box([n as u8; 64]);
    if n == 0 {
        return 0;
    }
    let below = recurse(n - 1);
    black_box(&pad);
    below + 1
}

// Catalog 106a: the required deep-recursion test.
#[test]
fn greenlet_recurses_ten_thousand_frames_deep_and_switches_from_the_bottom() {
    let g = Greenlet::builder()
        .stack_size(DEEP_STACK)
        .build(|_| recurse_then_switch(DEPTH));
    assert_eq!(expect_value::<u32>(g.switch(())), DEPTH);
    assert_eq!(g.state(), State::Suspended);
    // Resume at the bottom: all 10,000 frames are intact and unwind normally.
    assert_eq!(expect_value::<u64>(g.switch(7_u64)), 7 + u64::from(DEPTH));
    assert!(g.is_dead());
}

// Catalog 106a: each greenlet's depth budget is its own stack, wherever it was started:
// one started from deep inside another greenlet (or deep inside main) still has all of its
// stack, and a greenlet suspended deep does not use up anyone else's.
#[test]
fn greenlet_started_from_deep_recursion_still_has_its_whole_stack() {
    fn start_at_depth(n: u32) -> Result<u64, Error> {
        let pad = black_box([0_u8; 64]);
        if n == 0 {
            let fresh = Greenlet::builder()
                .stack_size(DEEP_STACK)
                .build(|_| Ok(recurse(DEPTH)));
            let got = fresh.switch(())?.downcast::<u64>().unwrap();
            return Ok(got);
        }
        Ok(start_at_depth(n - 1)? + u64::from(black_box(pad)[0]))
    }
    // From deep inside a greenlet.
    let deep = Greenlet::builder()
        .stack_size(DEEP_STACK)
        .build(|_| start_at_depth(DEPTH / 2));
    assert_eq!(expect_value::<u64>(deep.switch(())), u64::from(DEPTH));
    // From deep inside main (the test thread's stack is smaller: go less deep).
    assert_eq!(start_at_depth(500).unwrap(), u64::from(DEPTH));
    // Two greenlets suspended 10,000 frames deep at once, resumed in the other order.
    let a = Greenlet::builder()
        .stack_size(DEEP_STACK)
        .build(|_| recurse_then_switch(DEPTH));
    let b = Greenlet::builder()
        .stack_size(DEEP_STACK)
        .build(|_| recurse_then_switch(DEPTH));
    a.switch(()).unwrap();
    b.switch(()).unwrap();
    assert_eq!(expect_value::<u64>(b.switch(1_u64)), 1 + u64::from(DEPTH));
    assert_eq!(expect_value::<u64>(a.switch(2_u64)), 2 + u64::from(DEPTH));
}

/// A C-ABI callback that switches to main with its argument and returns what comes back.
extern "C" fn switching_callback(x: i32) -> i32 {
    match Greenlet::main().switch(x) {
        Ok(v) => v.downcast::<i32>().unwrap_or(-1),
        Err(_) => -2,
    }
}

/// A C-ABI function that calls a C-ABI callback through a function pointer, recursively:
/// `n * (n-1) * ... * 2 * callback(1)`.
extern "C" fn c_factorial_then_callback(n: i32, callback: extern "C" fn(i32) -> i32) -> i32 {
    // Through `black_box`, so the call stays an indirect call of a real C-ABI frame.
    let callback = black_box(callback);
    if n <= 1 {
        callback(n)
    } else {
        n * c_factorial_then_callback(n - 1, callback)
    }
}

// Catalog 106c (the analogue of test_get_stack_with_nested_c_calls: 5! * 10 = 1200)
#[test]
fn switching_inside_a_c_abi_callback_resumes_the_c_frames_correctly() {
    let g = Greenlet::new(|_| {
        type Outer = extern "C" fn(i32, extern "C" fn(i32) -> i32) -> i32;
        let f: Outer = black_box(c_factorial_then_callback);
        Ok(f(5, switching_callback))
    });
    // The callback at the bottom of five C-ABI frames hands us its argument...
    assert_eq!(expect_value::<i32>(g.switch(())), 1);
    // ...and we give it 10; the five frames multiply it on their way out.
    assert_eq!(expect_value::<i32>(g.switch(10_i32)), 1200);
}

// Catalog 106c: several greenlets suspended inside C-ABI frames at once.
#[test]
fn several_greenlets_suspended_in_c_abi_frames_resume_independently() {
    let gs: Vec<Greenlet> = (1..=4)
        .map(|n| Greenlet::new(move |_| Ok(c_factorial_then_callback(n, switching_callback))))
        .collect();
    for g in &gs {
        assert_eq!(expect_value::<i32>(g.switch(())), 1);
    }
    // Resume in reverse order, each with its own factor.
    let results: Vec<i32> = gs
        .iter()
        .rev()
        .map(|g| expect_value::<i32>(g.switch(100_i32)))
        .collect();
    assert_eq!(results, [2400, 600, 200, 100]);
}

#[cfg(any(unix, target_os = "wasi"))]
mod qsort {
    use super::*;
    use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        fn qsort(
            base: *mut c_void,
            count: usize,
            size: usize,
            compare: unsafe extern "C" fn(*const c_void, *const c_void) -> c_int,
        );
    }

    /// A `qsort` comparator that asks main to compare: it switches away in the middle of
    /// libc's sort and is resumed later with the answer.
    unsafe extern "C" fn compare_via_main(a: *const c_void, b: *const c_void) -> c_int {
        // SAFETY: qsort passes pointers to elements of the `i32` array being sorted.
        let (a, b) = unsafe { (*a.cast::<i32>(), *b.cast::<i32>()) };
        match Greenlet::main().switch((a, b)) {
            Ok(answer) => answer.downcast::<c_int>().unwrap_or(0),
            Err(_) => 0,
        }
    }

    fn sorter(data: Vec<i32>) -> Greenlet {
        Greenlet::new(move |_| {
            let mut data = data;
            // SAFETY: `data` is a live, exclusively borrowed array of `len` `i32`s, and the
            // comparator reads only the two elements it is given.
            unsafe {
                qsort(
                    data.as_mut_ptr().cast(),
                    data.len(),
                    size_of::<i32>(),
                    compare_via_main,
                )
            };
            Ok(data)
        })
    }

    // Catalog 106c: the required qsort test; two sorts suspended inside libc at once.
    #[test]
    fn qsort_comparator_that_switches_away_is_resumed_and_the_sorts_finish() {
        let input: Vec<i32> = (0..40).map(|i| (i * 37 + 11) % 41 - 20).collect();
        let ascending = sorter(input.clone());
        let descending = sorter(input.clone());
        // (greenlet, comparison direction, next answer, result)
        let mut jobs = [
            (ascending, 1, None::<c_int>, None::<Vec<i32>>),
            (descending, -1, None, None),
        ];
        let mut questions = 0;
        while jobs.iter().any(|job| job.3.is_none()) {
            // Alternate: each sort makes one comparison per round.
            for (g, direction, answer, result) in jobs.iter_mut() {
                if result.is_some() {
                    continue;
                }
                let out = match answer.take() {
                    None => g.switch(()).unwrap(),
                    Some(a) => g.switch(a).unwrap(),
                };
                if g.is_dead() {
                    *result = Some(out.downcast::<Vec<i32>>().unwrap());
                } else {
                    let (a, b) = out.downcast::<(i32, i32)>().unwrap();
                    *answer = Some(*direction * a.cmp(&b) as c_int);
                    questions += 1;
                }
            }
        }
        let mut expected = input.clone();
        expected.sort();
        assert_eq!(jobs[0].3.as_deref(), Some(&expected[..]));
        expected.reverse();
        assert_eq!(jobs[1].3.as_deref(), Some(&expected[..]));
        assert!(questions >= 2 * (input.len() - 1));
    }
}

// Catalog 106d: a backtrace taken inside a greenlet terminates and shows the greenlet's
// own frames (whether it continues into the resumer is up to the backend's unwind info).
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn backtrace_inside_a_greenlet_shows_its_frames() {
    #[inline(never)]
    fn capture_here_in_the_greenlet() -> String {
        std::backtrace::Backtrace::force_capture().to_string()
    }
    let g = Greenlet::new(|_| {
        let first = black_box(capture_here_in_the_greenlet());
        Greenlet::main().switch(())?;
        // Again after being resumed.
        Ok((first, capture_here_in_the_greenlet()))
    });
    g.switch(()).unwrap();
    let (first, second) = expect_value::<(String, String)>(g.switch(()));
    for trace in [first, second] {
        // Symbols may be unavailable (a stripped binary): then there is nothing to check
        // beyond having come back.
        if trace.contains("capture_here_in_the_greenlet") || trace.contains("backtrace") {
            assert!(
                trace.contains("capture_here_in_the_greenlet"),
                "innermost frame missing:\n{trace}"
            );
        }
    }
}

// Catalog 106e: the required "no stack can be had" test. An impossible stack size is an
// error value at the first switch; the greenlet stays unstarted and nothing ran.
#[test]
fn starting_without_a_stack_is_an_error_and_the_greenlet_stays_unstarted() {
    let ran = greenlet_conformance::part2::Counter::new();
    let ran_in = ran.clone();
    let g = Greenlet::builder()
        .stack_size(IMPOSSIBLE_STACK)
        .build(move |_| {
            ran_in.bump();
            Ok(())
        });
    let err = g.switch(()).unwrap_err();
    assert!(matches!(err, Error::NoStack(_)), "{err:?}");
    assert!(err.to_string().starts_with("cannot start the greenlet: "));
    assert_eq!(g.state(), State::Unstarted);
    assert_eq!(ran.get(), 0);
    // Again: same answer, no state change. A throw needs the greenlet's stack too (it dies
    // on it), so it fails the same way (Python marks it dead without running anything).
    assert!(matches!(g.switch(()), Err(Error::NoStack(_))));
    assert!(matches!(g.kill(), Err(Error::NoStack(_))));
    assert_eq!(g.state(), State::Unstarted);
    assert_eq!(Greenlet::current(), Greenlet::main());
}

// Catalog 106e (with 26, 27): a result that lands on an unstarted parent that cannot get a
// stack goes further up as the NoStack error; it is not fatal.
#[test]
fn result_landing_on_a_parent_without_a_stack_goes_further_up_as_an_error() {
    let unstartable = Greenlet::builder()
        .stack_size(IMPOSSIBLE_STACK)
        .build(|_| Ok(()));
    let child = Greenlet::builder().parent(&unstartable).build(|_| Ok(5));
    let err = child.switch(()).unwrap_err();
    assert!(matches!(err, Error::NoStack(_)), "{err:?}");
    assert!(child.is_dead());
    assert_eq!(unstartable.state(), State::Unstarted);
}

/// `getrlimit`/`setrlimit` for `RLIMIT_AS`, on the 64-bit Linux targets the suite runs on.
#[cfg(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )
))]
mod address_space_limit {
    use super::*;
    use greenlet_conformance::part2::child;

    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    const RLIMIT_AS: i32 = 9;
    unsafe extern "C" {
        fn getrlimit(resource: i32, limit: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, limit: *const Rlimit) -> i32;
    }

    fn vm_size_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    /// In the child: lower the address-space limit, fail to start, raise it, start.
    fn child_body() {
        const STACK: usize = 256 << 20;
        let mut old = Rlimit { cur: 0, max: 0 };
        // SAFETY: `old` is a valid rlimit to write into.
        assert_eq!(unsafe { getrlimit(RLIMIT_AS, &mut old) }, 0);
        let tight = Rlimit {
            cur: vm_size_bytes() + (32 << 20),
            max: old.max,
        };
        // SAFETY: a valid rlimit; lowering the soft limit is always allowed.
        assert_eq!(unsafe { setrlimit(RLIMIT_AS, &tight) }, 0);
        // Under QEMU user mode the limit is accepted but not applied.
        let mut probe: Vec<u8> = Vec::new();
        if probe.try_reserve_exact(STACK).is_ok() {
            println!("RLIMIT_AS is not enforced here");
            return;
        }
        drop(probe);
        let g = Greenlet::builder()
            .stack_size(STACK)
            .build(|_| Ok("started"));
        let err = g.switch(()).unwrap_err();
        assert!(
            matches!(err, Error::NoStack(greenlet::StackError::Exhausted(_))),
            "{err:?}"
        );
        assert_eq!(g.state(), State::Unstarted);
        // SAFETY: a valid rlimit; raising the soft limit up to the hard one is allowed.
        assert_eq!(unsafe { setrlimit(RLIMIT_AS, &old) }, 0);
        assert_eq!(expect_value::<&str>(g.switch(())), "started");
        println!("child: NoStack, then started");
    }

    // Catalog 106e: real exhaustion (the address-space limit), in a child process so the
    // limit does not starve the other tests: an error value, no panic, no abort.
    #[test]
    fn address_space_exhaustion_is_a_no_stack_error_and_the_greenlet_can_start_later() {
        if child::mode().as_deref() == Some("address-space") {
            child_body();
            return;
        }
        let output = child::run(
            "address_space_limit::address_space_exhaustion_is_a_no_stack_error_and_the_greenlet_can_start_later",
            "address-space",
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}", child::describe(&output));
        if stdout.contains("RLIMIT_AS is not enforced here") {
            eprintln!("note: RLIMIT_AS is not enforced (emulator?); exhaustion not exercised");
            return;
        }
        assert!(
            stdout.contains("child: NoStack, then started"),
            "{}",
            child::describe(&output)
        );
    }
}

/// Overflows the stack of a greenlet: infinite recursion with stack frames that cannot be
/// optimised away.
#[cfg(unix)]
#[inline(never)]
fn overflow(n: u64) -> u64 {
    let pad = black_box([n as u8; 256]);
    if black_box(n) == u64::MAX {
        return 0;
    }
    overflow(n + 1) + u64::from(black_box(pad)[0])
}

// Catalog 106e: the required stack-overflow test. Running off the end of a greenlet's stack
// hits its guard, and the process ends with SIGABRT and a message naming a greenlet stack
// overflow (checked in a child process).
#[cfg(unix)]
#[test]
fn stack_overflow_in_a_greenlet_aborts_with_a_clear_message() {
    use greenlet_conformance::part2::child;
    use std::os::unix::process::ExitStatusExt;
    if child::mode().as_deref() == Some("stack-overflow") {
        let g = Greenlet::builder()
            .stack_size(64 * 1024)
            .build(|_| Ok(overflow(0)));
        let _ = g.switch(());
        unreachable!("the overflow returned");
    }
    let output = child::run(
        "stack_overflow_in_a_greenlet_aborts_with_a_clear_message",
        "stack-overflow",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(6), // SIGABRT
        "{}",
        child::describe(&output)
    );
    assert!(
        stderr.contains("greenlet stack overflow"),
        "{}",
        child::describe(&output)
    );
}
