//! Round-trip switch time (thread -> context -> thread) of every backend this target
//! builds, in nanoseconds. A quick measurement, not a benchmark suite: it reports the
//! best of a few runs of a million round trips each.
//!
//! ```text
//! cargo run --release -p greenlet-backends --example switch_speed
//! ```

use greenlet_backends::Context;
use greenlet_backends::stack::GuardedStack;
use std::cell::UnsafeCell;
use std::hint::black_box;
use std::time::Instant;

const ROUND_TRIPS: u32 = 1_000_000;
const RUNS: u32 = 7;

struct Pair<C> {
    main: UnsafeCell<C>,
    child: UnsafeCell<C>,
}

/// Hands back one more than it gets, forever.
unsafe extern "C" fn echo<C: Context>(value: usize, data: *mut ()) -> ! {
    // SAFETY: `data` is the boxed pair, which outlives every switch into the child.
    let pair = unsafe { &*(data as *const Pair<C>) };
    let mut v = value;
    loop {
        // SAFETY: the child is running; the thread's context is suspended in `measure`.
        v = unsafe { C::switch(pair.child.get(), pair.main.get(), v + 1) };
    }
}

/// The best time of `RUNS` runs, in nanoseconds per round trip.
fn measure<C: Context>() -> f64 {
    let stack = GuardedStack::new(64 * 1024).expect("a stack");
    let pair = Box::new(Pair {
        main: UnsafeCell::new(C::thread()),
        child: UnsafeCell::new(C::new(stack, echo::<C>, std::ptr::null_mut())),
    });
    let data = &*pair as *const Pair<C> as *mut ();
    // SAFETY: the child has not started.
    unsafe { (*pair.child.get()).set_data(data) };
    let (main, child) = (pair.main.get(), pair.child.get());
    let mut v = 0;
    let mut best = f64::INFINITY;
    for run in 0..=RUNS {
        let start = Instant::now();
        for _ in 0..ROUND_TRIPS {
            // SAFETY: we are the thread's context; the child is new or suspended.
            v = unsafe { C::switch(main, child, black_box(v)) };
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(ROUND_TRIPS);
        if run > 0 {
            best = best.min(ns); // run 0 warms up
        }
    }
    assert_eq!(v, (RUNS as usize + 1) * ROUND_TRIPS as usize);
    // SAFETY: the child is suspended and owns nothing that needs dropping.
    drop(unsafe { pair.child.into_inner().into_stack() });
    best
}

/// A function the optimiser cannot inline or remove, as a yardstick for this machine.
#[inline(never)]
fn plain_call(v: usize) -> usize {
    black_box(v) + 1
}

/// The best time of `RUNS` runs of two plain calls, in nanoseconds: what a round trip
/// would cost if a switch were an ordinary call.
fn measure_two_calls() -> f64 {
    let mut v = 0;
    let mut best = f64::INFINITY;
    for _ in 0..=RUNS {
        let start = Instant::now();
        for _ in 0..ROUND_TRIPS {
            v = plain_call(plain_call(v));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(ROUND_TRIPS));
    }
    black_box(v);
    best
}

fn main() {
    println!("round trip (thread -> context -> thread), best of {RUNS} x {ROUND_TRIPS}:");
    let default = measure::<greenlet_backends::DefaultContext>();
    println!(
        "  {:<12} {default:6.1} ns",
        <greenlet_backends::DefaultContext as Context>::NAME
    );
    #[cfg(not(target_arch = "wasm32"))]
    {
        use greenlet_backends::arch::corosensei::CoroContext;
        let coro = measure::<CoroContext>();
        println!("  {:<12} {coro:6.1} ns", CoroContext::NAME);
    }
    println!(
        "  {:<12} {:6.1} ns  (yardstick)",
        "2 calls",
        measure_two_calls()
    );
}
