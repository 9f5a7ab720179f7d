//! Create + run to completion + drop of a trivial greenlet (or coroutine): ours with the
//! per-thread stack pool; corosensei on a reused stack (its fastest path) and with its
//! default per-coroutine mmap'd stack.
//!
//! Each iteration hides its input from the compiler with `black_box` before the create,
//! not between the create and the first resume: there, `black_box`'s opaque use of memory
//! made the compiler forget what the create had just written, which no real caller does.
//!
//! Bench ids are read back by `cargo xtask bench`; see `greenlet_benches::CREATE_GROUP`.

use std::hint::black_box;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, ScopedCoroutine};
use criterion::{Criterion, criterion_group, criterion_main};
use greenlet::Greenlet;
use greenlet_benches::CREATE_GROUP;

fn create_run_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group(CREATE_GROUP);

    // Ours: a new greenlet, switched to once, runs to completion and is dropped. Its stack
    // comes from and goes back to the thread's stack pool.
    group.bench_function("greenlet", |b| {
        b.iter(|| {
            let input = black_box(1_usize);
            let g = Greenlet::new(Ok);
            let out = g.switch(input).expect("the greenlet returns");
            drop(g);
            out.downcast::<usize>().expect("a usize comes back")
        })
    });

    // corosensei's `coroutine_call`: a scoped coroutine on a stack made once and reused.
    let mut stack = DefaultStack::default();
    group.bench_function("corosensei_reused_stack", |b| {
        b.iter(|| {
            let input = black_box(1_usize);
            let coroutine = ScopedCoroutine::<usize, (), usize, _>::with_stack(
                &mut stack,
                |_yielder, input| input,
            );
            coroutine.scope(|mut identity| identity.resume(input))
        })
    });
    drop(stack);

    // corosensei with its default stack: one mmap + mprotect + munmap per coroutine.
    group.bench_function("corosensei_default_stack", |b| {
        b.iter(|| {
            let input = black_box(1_usize);
            let mut identity = Coroutine::<usize, (), usize>::new(|_yielder, input| input);
            match identity.resume(input) {
                CoroutineResult::Return(v) => v,
                CoroutineResult::Yield(()) => unreachable!("the coroutine never yields"),
            }
        })
    });

    group.finish();
}

criterion_group!(benches, create_run_drop);
criterion_main!(benches);
