//! Switch round trip and create+finish times, through the backend alone and through the
//! greenlet API.
//!
//! `greenlet-wasm run [--fibers=...] bench.wasm [iterations]` prints one `name value` line
//! per measurement, in nanoseconds: `backend_switch_round_trip_ns`,
//! `backend_create_finish_ns`, `switch_round_trip_ns`, `create_finish_ns`.
use greenlet::Greenlet;
use greenlet_backends::stack::StackPool;
use greenlet_backends::{Context, DefaultContext};
use std::cell::UnsafeCell;
use std::time::Instant;

/// Two contexts: the thread's and one child's.
struct Pair {
    main: UnsafeCell<DefaultContext>,
    child: UnsafeCell<Option<DefaultContext>>,
}

impl Pair {
    fn child(&self) -> *mut DefaultContext {
        // SAFETY: the child is set before any switch, and never moves while boxed.
        unsafe { (*self.child.get()).as_mut().expect("child set") }
    }
}

/// Bounces straight back to main, forever.
unsafe extern "C" fn bounce(_: usize, data: *mut ()) -> ! {
    // SAFETY: `data` is the boxed `Pair`, alive for the whole benchmark.
    let pair = unsafe { &*(data as *const Pair) };
    loop {
        // SAFETY: we are the child, running; main is suspended in its switch.
        unsafe { DefaultContext::switch(pair.child(), pair.main.get(), 0) };
    }
}

/// Finishes at once, back to main.
unsafe extern "C" fn finish(value: usize, data: *mut ()) -> ! {
    // SAFETY: as in `bounce`; nothing on this stack owns anything.
    let pair = unsafe { &*(data as *const Pair) };
    unsafe { DefaultContext::exit(pair.child(), pair.main.get(), value) }
}

fn per_op(start: Instant, n: u32) -> f64 {
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn backend(n: u32) -> (f64, f64) {
    let mut pool = StackPool::new();
    let pair = Box::new(Pair {
        main: UnsafeCell::new(DefaultContext::thread()),
        child: UnsafeCell::new(None),
    });
    let data = &*pair as *const Pair as *mut ();
    let stack = pool.take(64 * 1024).expect("a stack");
    // SAFETY: main is running and the child is new; both stay in the box.
    unsafe {
        *pair.child.get() = Some(DefaultContext::new(stack, bounce, data));
        DefaultContext::switch(pair.main.get(), pair.child(), 0);
    }
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: as above; the child is suspended in its loop.
        unsafe { DefaultContext::switch(pair.main.get(), pair.child(), 0) };
    }
    let switch = per_op(t, n);
    // SAFETY: the child is suspended and never resumed again.
    let old = unsafe { (*pair.child.get()).take().expect("child").into_stack() };
    pool.give(old.expect("a stack"));

    let t = Instant::now();
    for i in 0..n {
        let stack = pool.take(64 * 1024).expect("a stack");
        // SAFETY: a new child each round, run to its exit, then its stack goes back.
        unsafe {
            *pair.child.get() = Some(DefaultContext::new(stack, finish, data));
            let got = DefaultContext::switch(pair.main.get(), pair.child(), i as usize);
            assert_eq!(got, i as usize);
            let done = (*pair.child.get()).take().expect("child");
            pool.give(done.into_stack().expect("a stack"));
        }
    }
    (switch, per_op(t, n))
}

fn greenlets(n: u32) -> (f64, f64) {
    let main = Greenlet::main();
    let peer = Greenlet::new(move |_| -> Result<(), greenlet::Error> {
        loop {
            main.switch(())?;
        }
    });
    peer.switch(()).expect("starts");
    let t = Instant::now();
    for _ in 0..n {
        peer.switch(()).expect("round trip");
    }
    let switch = per_op(t, n);
    drop(peer);

    let t = Instant::now();
    for i in 0..n {
        let g = Greenlet::new(move |_| Ok(i));
        g.switch(()).expect("runs to the end");
    }
    (switch, per_op(t, n))
}

fn main() {
    let n: u32 = greenlet_wasm_guests::arg(1, 200_000);
    let (backend_switch, backend_create) = backend(n);
    let (switch, create) = greenlets(n);
    println!("backend {}", greenlet::backend_name());
    println!("backend_switch_round_trip_ns {backend_switch:.1}");
    println!("backend_create_finish_ns {backend_create:.1}");
    println!("switch_round_trip_ns {switch:.1}");
    println!("create_finish_ns {create:.1}");
}
