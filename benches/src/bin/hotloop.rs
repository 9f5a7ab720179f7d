//! The timed operations of the criterion benches as plain loops, for profilers: run one
//! under `perf record` or `valgrind --tool=callgrind` and divide by the count.
//!
//! ```text
//! hotloop <raw|coro-backend|switch|corosensei|create|create-in-function|corosensei-create> [N]
//! ```
//!
//! Prints the wall time per operation (noisy; a profiler's counts are the point).
//!
//! Under valgrind the core frees greenlet states instead of caching them (so that memcheck
//! sees a use after free); to count with callgrind the instructions a native `create`
//! runs, set `GREENLET_VALGRIND_KEEP_STATE_CACHE=1`.

use std::hint::black_box;
use std::time::Instant;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, ScopedCoroutine};
use greenlet::Greenlet;
use greenlet_backends::DefaultContext;
use greenlet_backends::arch::corosensei::CoroContext;
use greenlet_benches::RawPair;

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "switch".into());
    let n: u64 = args
        .next()
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let start = Instant::now();
    match which.as_str() {
        "raw" => {
            let mut pair = RawPair::<DefaultContext>::new();
            for i in 0..n {
                black_box(pair.round_trip(black_box(i as usize)));
            }
        }
        "coro-backend" => {
            let mut pair = RawPair::<CoroContext>::new();
            for i in 0..n {
                black_box(pair.round_trip(black_box(i as usize)));
            }
        }
        "switch" => {
            let main = Greenlet::main();
            let echo = Greenlet::new(move |first| -> Result<(), greenlet::Error> {
                let mut value = first;
                loop {
                    value = main.switch(value)?;
                }
            });
            for i in 0..n {
                let back = echo.switch(black_box(i as usize)).expect("echo is alive");
                black_box(back.downcast::<usize>().expect("a usize"));
            }
        }
        "corosensei" => {
            let mut identity = Coroutine::new(|yielder, mut input: usize| {
                loop {
                    input = yielder.suspend(input)
                }
            });
            for i in 0..n {
                black_box(identity.resume(black_box(i as usize)));
            }
            // SAFETY: nothing on the coroutine's stack needs dropping.
            unsafe { identity.force_reset() };
        }
        "create" => {
            for i in 0..n {
                let input = black_box(i as usize);
                let g = Greenlet::new(Ok);
                let out = g.switch(input).expect("it returns");
                drop(g);
                black_box(out.downcast::<usize>().expect("a usize"));
            }
        }
        "create-in-function" => {
            // As `create`, with the create, switch and drop inside a function of their own,
            // as most callers have them: that function returns after the child has died.
            for i in 0..n {
                black_box(create_run_drop(black_box(i as usize)));
            }
        }
        "corosensei-create" => {
            let mut stack = DefaultStack::default();
            for i in 0..n {
                let input = black_box(i as usize);
                let coroutine = ScopedCoroutine::<usize, (), usize, _>::with_stack(
                    &mut stack,
                    |_yielder, input| input,
                );
                black_box(coroutine.scope(|mut c| c.resume(input)));
            }
        }
        other => {
            eprintln!(
                "hotloop: unknown operation {other}: raw, coro-backend, switch, corosensei, \
                 create, create-in-function or corosensei-create"
            );
            std::process::exit(2);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{which}: {ns:.2} ns per operation over {n}");
}

/// One create+run+drop, in a function the compiler keeps out of line.
#[inline(never)]
fn create_run_drop(input: usize) -> usize {
    let g = Greenlet::new(Ok);
    let out = g.switch(input).expect("it returns");
    drop(g);
    out.downcast::<usize>().expect("a usize")
}
