//! What each step of a greenlet switch costs on top of the raw backend switch: a pair of
//! contexts of the default backend that switch back and forth through a miniature greenlet
//! layer whose steps are turned on one at a time.
//!
//! ```text
//! layer_costs [ROUNDS]
//! ```
//!
//! Each variant is timed over 5,000,000 round trips, the variants interleaved, `ROUNDS`
//! times (default 7); it prints each variant's median and fastest round trip. This is how
//! the core's switch was shaped: storing the greenlets' states on every switch cost more
//! than all the rest of the layer, and so did the value's second word through memory.
//! Wall times on a shared machine are noisy: compare the variants within one run.

use std::cell::{Cell, UnsafeCell};
use std::hint::black_box;
use std::time::Instant;

use greenlet_backends::stack::GuardedStack;
use greenlet_backends::{Context, DefaultContext};

/// Compare the owner's thread serial with the caller's.
const OWNER: u32 = 1;
/// Check the target's stored state, and store both greenlets' states.
const STORED_STATE: u32 = 2;
/// Check the target's stored state, and tell the running one apart by address (no stores).
const DERIVED_STATE: u32 = 4;
/// Test a trace-hook slot of the thread state.
const HOOK: u32 = 8;
/// Test the origin's handle count.
const COUNT: u32 = 16;
/// Send the value's two words through the thread state.
const BOTH_WORDS_IN_MEMORY: u32 = 32;
/// Send one word through the thread state and one in the switch's register.
const ONE_WORD_IN_MEMORY: u32 = 64;

const SUSPENDED: u8 = 2;
const RUNNING: u8 = 1;
const SERIAL: u64 = 7;

/// A miniature greenlet.
struct Mini {
    context: UnsafeCell<DefaultContext>,
    state: Cell<u8>,
    owner: u64,
    count: Cell<usize>,
}

/// A miniature thread state.
struct MiniThread {
    serial: u64,
    current: Cell<*const Mini>,
    hook: Cell<usize>,
    bits: Cell<u64>,
    table: Cell<usize>,
}

thread_local! {
    static THREAD: MiniThread = const {
        MiniThread {
            serial: SERIAL,
            current: Cell::new(std::ptr::null()),
            hook: Cell::new(0),
            bits: Cell::new(0),
            table: Cell::new(0),
        }
    };
}

fn thread_state() -> &'static MiniThread {
    // SAFETY: a constant-initialised thread-local without a destructor lives as long as the
    // thread, which is as long as anything here runs.
    THREAD.with(|t| unsafe { &*std::ptr::from_ref(t) })
}

/// Ends the process: a check of the miniature layer failed (a bug of this program).
fn broken(what: &str) -> ! {
    eprintln!("layer_costs: {what}");
    std::process::abort()
}

/// Switches from the running miniature greenlet to `target`, with the steps in `V`.
#[inline(always)]
fn switch<const V: u32>(target: &Mini, value: u64) -> u64 {
    let ts = thread_state();
    if V & OWNER != 0 && target.owner != ts.serial {
        broken("owner");
    }
    if V & STORED_STATE != 0 {
        if target.state.get() != SUSPENDED {
            broken("stored state");
        }
        target.state.set(RUNNING);
    }
    if V & DERIVED_STATE != 0
        && (target.state.get() != SUSPENDED || std::ptr::eq(ts.current.get(), target))
    {
        broken("derived state");
    }
    // SAFETY: `current` always points at one of the pair, which outlives the switching.
    let origin = unsafe { &*ts.current.replace(target) };
    if V & STORED_STATE != 0 {
        origin.state.set(SUSPENDED);
    }
    if V & HOOK != 0 && ts.hook.get() != 0 {
        broken("hook");
    }
    if V & COUNT != 0 && origin.count.get() == 0 {
        broken("count");
    }
    let carried = if V & BOTH_WORDS_IN_MEMORY != 0 {
        ts.bits.set(value);
        ts.table.set(8);
        0
    } else if V & ONE_WORD_IN_MEMORY != 0 {
        ts.bits.set(value);
        8
    } else {
        value as usize
    };
    // SAFETY: `origin` is running and `target` suspended (or new); both live in the pair's
    // box, which does not move.
    let received =
        unsafe { DefaultContext::switch(origin.context.get(), target.context.get(), carried) };
    if V & BOTH_WORDS_IN_MEMORY != 0 {
        if ts.table.get() == 0 {
            broken("table");
        }
        ts.bits.get()
    } else if V & ONE_WORD_IN_MEMORY != 0 {
        if received & 1 != 0 {
            broken("tag");
        }
        ts.bits.get()
    } else {
        received as u64
    }
}

struct Pair {
    main: Mini,
    child: Mini,
}

/// The child: sends every value back to main, forever.
unsafe extern "C" fn echo<const V: u32>(first: usize, data: *mut ()) -> ! {
    // SAFETY: `data` is the pair, which is never freed (see `time`).
    let pair = unsafe { &*(data as *const Pair) };
    let mut value = if V & (BOTH_WORDS_IN_MEMORY | ONE_WORD_IN_MEMORY) != 0 {
        thread_state().bits.get()
    } else {
        first as u64
    };
    loop {
        value = switch::<V>(black_box(&pair.main), value);
    }
}

/// Nanoseconds per round trip over `n` round trips of variant `V`.
fn time<const V: u32>(n: u64) -> f64 {
    let stack = GuardedStack::new(64 * 1024).expect("a 64 KiB stack");
    let main_state = if V & DERIVED_STATE != 0 {
        SUSPENDED
    } else {
        RUNNING
    };
    let mini = |context, state| Mini {
        context: UnsafeCell::new(context),
        state: Cell::new(state),
        owner: SERIAL,
        count: Cell::new(1),
    };
    let pair = Box::new(Pair {
        main: mini(DefaultContext::thread(), main_state),
        child: mini(
            DefaultContext::new(stack, echo::<V>, std::ptr::null_mut()),
            SUSPENDED,
        ),
    });
    // SAFETY: the child has not been resumed.
    unsafe { (*pair.child.context.get()).set_data(std::ptr::from_ref(&*pair).cast_mut().cast()) };
    thread_state().current.set(&pair.main);
    switch::<V>(&pair.child, 0);
    let start = Instant::now();
    for i in 0..n {
        black_box(switch::<V>(&pair.child, black_box(i)));
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    // The child stays suspended forever on its stack: leak both rather than free a stack
    // with live frames.
    std::mem::forget(pair);
    ns
}

/// A variant's name and its timing function.
type Variant = (&'static str, fn(u64) -> f64);

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    const N: u64 = 5_000_000;
    let variants: [Variant; 8] = [
        ("raw switch + current greenlet", time::<0>),
        ("+ owner check", time::<OWNER>),
        ("+ stored states", time::<STORED_STATE>),
        ("+ derived state", time::<DERIVED_STATE>),
        ("+ both value words in memory", time::<BOTH_WORDS_IN_MEMORY>),
        ("+ one value word in memory", time::<ONE_WORD_IN_MEMORY>),
        (
            "all, stored states, both words",
            time::<{ OWNER | STORED_STATE | HOOK | COUNT | BOTH_WORDS_IN_MEMORY }>,
        ),
        (
            "all, derived state, one word",
            time::<{ OWNER | DERIVED_STATE | HOOK | COUNT | ONE_WORD_IN_MEMORY }>,
        ),
    ];
    let mut times = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in variants.iter().enumerate() {
            times[i].push(run(N));
        }
    }
    println!(
        "{:<34} {:>10} {:>10}",
        "variant (ns per round trip)", "median", "fastest"
    );
    for ((name, _), mut t) in variants.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        println!("{name:<34} {:>10.2} {:>10.2}", t[t.len() / 2], t[0]);
    }
}
