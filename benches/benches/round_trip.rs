//! Round-trip switch A→B→A: our backends' raw switch, our full `Greenlet::switch` with a
//! value, corosensei's own resume + suspend, and two OS threads ping-ponging (for scale).
//!
//! Bench ids are read back by `cargo xtask bench`; see `greenlet_benches::ROUND_TRIP_GROUP`.

use std::hint::black_box;

use corosensei::Coroutine;
use criterion::{Criterion, criterion_group, criterion_main};
use greenlet::Greenlet;
use greenlet_backends::DefaultContext;
use greenlet_backends::arch::corosensei::CoroContext;
use greenlet_benches::{ROUND_TRIP_GROUP, RawPair, ThreadPingPong};

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group(ROUND_TRIP_GROUP);

    // Our default backend (the asm backend on x86-64 and AArch64): two bare `switch`es.
    let mut pair = RawPair::<DefaultContext>::new();
    group.bench_function("backend_default", |b| {
        b.iter(|| pair.round_trip(black_box(1)))
    });
    drop(pair);

    // Our corosensei-based backend, for comparison: symmetric switching via a driver loop.
    let mut pair = RawPair::<CoroContext>::new();
    group.bench_function("backend_corosensei", |b| {
        b.iter(|| pair.round_trip(black_box(1)))
    });
    drop(pair);

    // The full greenlet path: `Greenlet::switch` with a value, both ways.
    let main = Greenlet::main();
    let echo = Greenlet::new(move |first| -> Result<(), greenlet::Error> {
        let mut value = first;
        loop {
            value = main.switch(value)?;
        }
    });
    group.bench_function("greenlet_switch", |b| {
        b.iter(|| {
            let back = echo.switch(black_box(1_usize)).expect("echo is alive");
            back.downcast::<usize>().expect("a usize comes back")
        })
    });
    // Dropping the last handle kills it: it returns the GreenletExit and dies.
    drop(echo);

    // The peer: corosensei's own Coroutine API, resume + suspend (its `coroutine_switch`).
    let mut identity = Coroutine::new(|yielder, mut input: usize| {
        loop {
            input = yielder.suspend(input)
        }
    });
    group.bench_function("corosensei", |b| {
        b.iter(|| identity.resume(black_box(1_usize)))
    });
    // SAFETY: the coroutine owns nothing that needs dropping on its stack.
    unsafe { identity.force_reset() };

    // For scale: two OS threads handing a value back and forth through channels.
    let mut ping_pong = ThreadPingPong::new();
    group.bench_function("os_threads", |b| {
        b.iter_custom(|iters| ping_pong.time(iters))
    });
    drop(ping_pong);

    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
