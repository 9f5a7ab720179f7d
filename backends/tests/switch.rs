//! Behaviour tests for every backend this target builds: the default one (hand-written
//! assembly on x86-64 and AArch64, host fibers on wasm32) and the corosensei one (not on
//! wasm32, which corosensei does not support).
//!
//! Each behaviour is a generic function over [`Context`]; `backend_tests!` instantiates
//! all of them once per backend, in a module named after the backend. Bodies that run in
//! a context report what they saw back to the thread's stack, which does the asserting:
//! a panic escaping a context's entry function aborts the whole test binary.
//!
//! On wasm32 (`wasm32-wasip1`, run by the `greenlet-wasm` runner on either fiber
//! mechanism) the same behaviours run against `WasmContext`, except those that need what
//! the target lacks: unwinding (`panic = "abort"` there), `std::backtrace` (always
//! unsupported there), and the x86-64/AArch64 register and FP-environment checks.

use greenlet_backends::Context;
use greenlet_backends::stack::GuardedStack;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::hint::black_box;
#[cfg(panic = "unwind")]
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

const STACK_SIZE: usize = 64 * 1024;

/// Where a context's body goes when it is done, and what it hands over.
struct Exit<C> {
    to: *mut C,
    value: usize,
}

/// A body gets its own context and the value it was first resumed with.
type Body<C> = Box<dyn FnOnce(*mut C, usize) -> Exit<C>>;

/// A context and the closure it runs, boxed so that the context never moves.
struct Fiber<C: Context> {
    ctx: UnsafeCell<C>,
    body: Cell<Option<Body<C>>>,
}

impl<C: Context + 'static> Fiber<C> {
    fn new(body: impl FnOnce(*mut C, usize) -> Exit<C> + 'static) -> Box<Self> {
        let stack = GuardedStack::new(STACK_SIZE).expect("a test stack");
        Self::on_stack(stack, body)
    }

    fn on_stack(
        stack: GuardedStack,
        body: impl FnOnce(*mut C, usize) -> Exit<C> + 'static,
    ) -> Box<Self> {
        let fiber = Box::new(Fiber {
            ctx: UnsafeCell::new(C::new(stack, fiber_entry::<C>, std::ptr::null_mut())),
            body: Cell::new(Some(Box::new(body))),
        });
        let data = &*fiber as *const Fiber<C> as *mut ();
        // SAFETY: the context was just made and has not been resumed.
        unsafe { (*fiber.ctx.get()).set_data(data) };
        fiber
    }

    fn ctx(&self) -> *mut C {
        self.ctx.get()
    }

    /// Takes the stack back from a fiber that has exited (or discards a suspended one).
    #[allow(
        clippy::boxed_local,
        reason = "fibers only exist boxed, so contexts never move"
    )]
    fn into_stack(self: Box<Self>) -> GuardedStack {
        let fiber = *self;
        // SAFETY: tests only call this on fibers that are not running.
        unsafe { fiber.ctx.into_inner().into_stack() }.expect("a fiber owns a stack")
    }
}

unsafe extern "C" fn fiber_entry<C: Context + 'static>(value: usize, data: *mut ()) -> ! {
    // SAFETY: `data` is the boxed fiber (set by `Fiber::on_stack`), alive while it runs.
    let fiber = unsafe { &*(data as *const Fiber<C>) };
    let body = fiber.body.take().expect("a fiber starts only once");
    let Exit { to, value } = body(fiber.ctx(), value);
    // SAFETY: the body and everything it owned are gone; `to` is a live context.
    unsafe { C::exit(fiber.ctx(), to, value) }
}

/// The context of the test's own thread.
fn thread_context<C: Context>() -> Box<UnsafeCell<C>> {
    Box::new(UnsafeCell::new(C::thread()))
}

/// Switches and returns what comes back; every context here outlives the switch.
fn switch<C: Context>(from: *mut C, to: *mut C, value: usize) -> usize {
    // SAFETY: tests pass the running context as `from` and a live, non-exited one as `to`.
    unsafe { C::switch(from, to, value) }
}

fn ping_pong_passes_values_both_ways<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let fiber = Fiber::<C>::new(move |me, first| {
        // Triple what comes in, plus one; stop at 100 and report how many we saw.
        let mut seen = 0;
        let mut v = first;
        while v != 100 {
            seen += 1;
            v = switch(me, m, v * 3 + 1);
        }
        Exit {
            to: m,
            value: 1000 + seen,
        }
    });
    for i in 0..100 {
        assert_eq!(switch(m, fiber.ctx(), i), i * 3 + 1);
    }
    assert_eq!(switch(m, fiber.ctx(), 100), 1100);
    fiber.into_stack();
}

/// A small deterministic generator, so the test needs no dependency.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn many_contexts_switched_in_random_order<C: Context + 'static>() {
    const FIBERS: usize = 1000;
    const ROUNDS: usize = 20_000;
    const STOP: usize = usize::MAX;
    let main = thread_context::<C>();
    let m = main.get();
    let fibers: Vec<_> = (0..FIBERS)
        .map(|id| {
            let stack = GuardedStack::new(16 * 1024).expect("a test stack");
            Fiber::<C>::on_stack(stack, move |me, first| {
                let mut resumes = 0;
                let mut v = first;
                while v != STOP {
                    resumes += 1;
                    v = switch(me, m, v + id * 1_000_000 + resumes);
                }
                Exit {
                    to: m,
                    value: resumes,
                }
            })
        })
        .collect();
    let mut resumes = vec![0; FIBERS];
    let mut rng = 0x2545_f491_4f6c_dd1d;
    for round in 0..ROUNDS {
        let id = (xorshift(&mut rng) % FIBERS as u64) as usize;
        resumes[id] += 1;
        let back = switch(m, fibers[id].ctx(), round);
        assert_eq!(back, round + id * 1_000_000 + resumes[id], "fiber {id}");
    }
    for (id, fiber) in fibers.into_iter().enumerate() {
        assert_eq!(switch(m, fiber.ctx(), STOP), resumes[id], "fiber {id}");
        fiber.into_stack();
    }
}

fn contexts_switch_directly_to_each_other<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let log = Rc::new(RefCell::new(Vec::new()));
    let a_ctx = Rc::new(Cell::new(std::ptr::null_mut::<C>()));
    let b_ctx = Rc::new(Cell::new(std::ptr::null_mut::<C>()));
    let a = Fiber::<C>::new({
        let (log, b_ctx) = (log.clone(), b_ctx.clone());
        move |me, v| {
            log.borrow_mut().push(format!("a{v}"));
            let v = switch(me, b_ctx.get(), 10); // starts B
            log.borrow_mut().push(format!("a{v}"));
            let v = switch(me, b_ctx.get(), 12);
            log.borrow_mut().push(format!("a{v}"));
            Exit {
                to: b_ctx.get(),
                value: 15,
            }
        }
    });
    let b = Fiber::<C>::new({
        let (log, a_ctx) = (log.clone(), a_ctx.clone());
        move |me, v| {
            log.borrow_mut().push(format!("b{v}"));
            let v = switch(me, a_ctx.get(), 11);
            log.borrow_mut().push(format!("b{v}"));
            let v = switch(me, m, 13); // back to the thread, A still suspended
            log.borrow_mut().push(format!("b{v}"));
            Exit { to: m, value: 16 }
        }
    });
    a_ctx.set(a.ctx());
    b_ctx.set(b.ctx());
    assert_eq!(switch(m, a.ctx(), 1), 13);
    log.borrow_mut().push("main13".into());
    // A exits into B, which exits to us.
    assert_eq!(switch(m, a.ctx(), 14), 16);
    assert_eq!(
        *log.borrow(),
        ["a1", "b10", "a11", "b12", "main13", "a14", "b15"]
    );
    a.into_stack();
    b.into_stack();
}

fn exited_context_stack_is_reused<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let mut stack = GuardedStack::new(STACK_SIZE).expect("a test stack");
    let (bottom, top) = (stack.bottom() as usize, stack.top() as usize);
    for generation in 0..100 {
        let fiber = Fiber::<C>::on_stack(stack, move |me, _| {
            // Report where our locals live, then hand back what we were given, plus one.
            let local = 0u8;
            let v = switch(me, m, black_box(&local) as *const u8 as usize);
            Exit {
                to: m,
                value: v + 1,
            }
        });
        let local = switch(m, fiber.ctx(), generation);
        assert!((bottom..top).contains(&local), "generation {generation}");
        assert_eq!(switch(m, fiber.ctx(), generation), generation + 1);
        stack = fiber.into_stack();
        assert_eq!(stack.top() as usize, top);
    }
}

/// What [`adder_entry`] runs with: where it is, where it goes, what it adds.
struct Adder<C> {
    main: *mut C,
    me: *mut C,
    add: usize,
    /// The address of a local of the entry's, to see which stack it ran on.
    local_seen: Cell<usize>,
}

/// An entry other than [`fiber_entry`]: hands back what it got plus `add`, and exits.
unsafe extern "C" fn adder_entry<C: Context>(value: usize, data: *mut ()) -> ! {
    // SAFETY: `data` is an `Adder` that outlives the run (see the test below).
    let adder = unsafe { &*(data as *const Adder<C>) };
    let local = 0u8;
    adder
        .local_seen
        .set(black_box(&local) as *const u8 as usize);
    // SAFETY: nothing here owns anything; `main` is suspended in its switch to us.
    unsafe { C::exit(adder.me, adder.main, value + adder.add) }
}

/// A context that has exited runs again where it is, on the same stack, as often as it
/// is restarted: each time with the entry and data of that restart.
fn exited_context_restarts_in_place<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let stack = GuardedStack::new(STACK_SIZE).expect("a test stack");
    let (bottom, top, size) = (
        stack.bottom() as usize,
        stack.top() as usize,
        stack.usable_size(),
    );
    let fiber = Fiber::<C>::on_stack(stack, move |_me, v| Exit {
        to: m,
        value: v * 2,
    });
    let ctx = fiber.ctx();
    let fiber_data = &*fiber as *const Fiber<C> as *mut ();
    // SAFETY: read while not running.
    assert_eq!(unsafe { (*ctx).stack_size() }, size);
    assert_eq!(switch(m, ctx, 5), 10);
    for generation in 0..50 {
        if generation % 2 == 0 {
            // The same entry and data as before, with a new body.
            fiber.body.set(Some(Box::new(move |_me, v| Exit {
                to: m,
                value: v + 3 * generation,
            })));
            // SAFETY: the context has exited; nothing else references it.
            unsafe { C::restart(ctx, fiber_entry::<C>, fiber_data) };
            assert_eq!(
                switch(m, ctx, 1),
                1 + 3 * generation,
                "generation {generation}"
            );
        } else {
            // Another entry, with other data.
            let adder = Adder {
                main: m,
                me: ctx,
                add: generation,
                local_seen: Cell::new(0),
            };
            // SAFETY: as above; `adder` outlives the run, which ends before the switch
            // returns.
            unsafe { C::restart(ctx, adder_entry::<C>, &adder as *const Adder<C> as *mut ()) };
            assert_eq!(
                switch(m, ctx, 100),
                100 + generation,
                "generation {generation}"
            );
            assert!(
                (bottom..top).contains(&adder.local_seen.get()),
                "generation {generation} ran off its stack"
            );
        }
        // SAFETY: read while not running.
        assert_eq!(unsafe { (*ctx).stack_size() }, size);
    }
    assert_eq!(fiber.into_stack().top() as usize, top);
    // SAFETY: read while not running.
    assert_eq!(
        unsafe { (*m).stack_size() },
        0,
        "the thread's context has no stack"
    );
}

/// Computes many integer and float values from `$seed`, keeps them all live across
/// `$got` (a switch, or a plain value for the reference result) and mixes them with it
/// in a way the compiler cannot fold before `$got` is known.
macro_rules! many_live_values {
    ($seed:expr, $got:expr) => {{
        let s: u64 = black_box($seed);
        let i0 = s.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let i1 = s ^ 0x5555_5555_5555_5555;
        let i2 = s.rotate_left(7).wrapping_add(3);
        let i3 = s.wrapping_mul(31).wrapping_sub(17);
        let i4 = !s;
        let i5 = s.wrapping_add(0x1234_5678);
        let i6 = s.rotate_right(13) ^ 0xdead_beef;
        let i7 = s.wrapping_mul(s | 1);
        let i8 = s >> 3 | 0x8000_0000_0000_0000;
        let i9 = s.swap_bytes();
        let i10 = s.wrapping_shl(5) ^ s;
        let i11 = s.reverse_bits();
        let x = s as f64;
        let f0 = x * 0.5 + 1.0;
        let f1 = x * 0.25 - 2.0;
        let f2 = x / 3.0;
        let f3 = x * x;
        let f4 = 1.0 / (x + 1.0);
        let f5 = x + 0.125;
        let f6 = x - 7.5;
        let f7 = x * 1.000_001;
        let f8 = (x * 0.001).sqrt();
        let f9 = x * -2.0;
        let got: usize = $got;
        let g = black_box(got as u64);
        let ints = (i0 ^ g).wrapping_mul(i1 | 1)
            ^ (i2 ^ g).wrapping_mul(i3 | 1)
            ^ (i4 ^ g).wrapping_mul(i5 | 1)
            ^ (i6 ^ g).wrapping_mul(i7 | 1)
            ^ (i8 ^ g).wrapping_mul(i9 | 1)
            ^ (i10 ^ g).wrapping_mul(i11 | 1);
        let y = g as f64;
        let floats = (f0 + y) * (f1 - y)
            + (f2 + y) * (f3 - y)
            + (f4 + y) * (f5 - y)
            + (f6 + y) * (f7 - y)
            + (f8 + y) * (f9 - y);
        (ints, floats.to_bits(), got)
    }};
}

#[inline(never)]
fn live_values_across_switch<C: Context>(from: *mut C, to: *mut C, seed: u64) -> (u64, u64, usize) {
    many_live_values!(seed, switch(from, to, seed as usize))
}

#[inline(never)]
fn live_values_reference(seed: u64, got: usize) -> (u64, u64, usize) {
    many_live_values!(seed, got)
}

fn callee_saved_registers_survive_switches<C: Context + 'static>() {
    const ROUNDS: u64 = 200;
    let main = thread_context::<C>();
    let m = main.get();
    let fiber_seed = |round: u64| round * 7919 + 1_000_003;
    let main_seed = |round: u64| round * 104_729 + 17;
    // The fiber checks its own results and reports how many were right.
    let fiber = Fiber::<C>::new(move |me, first| {
        let mut good = 0;
        let mut from_main = first;
        for round in 0..ROUNDS {
            let got = live_values_across_switch(me, m, fiber_seed(round));
            if got == live_values_reference(fiber_seed(round), got.2)
                && got.2 == main_seed(round + 1) as usize
                && from_main == main_seed(round) as usize
            {
                good += 1;
            }
            from_main = got.2;
        }
        Exit { to: m, value: good }
    });
    for round in 0..ROUNDS {
        let got = live_values_across_switch(m, fiber.ctx(), main_seed(round));
        assert_eq!(got, live_values_reference(main_seed(round), got.2));
        assert_eq!(got.2, fiber_seed(round) as usize);
    }
    assert_eq!(
        switch(m, fiber.ctx(), main_seed(ROUNDS) as usize),
        ROUNDS as usize
    );
    fiber.into_stack();
}

/// `C::switch` behind the C ABI, so assembly can call it.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe extern "C" fn switch_for_asm<C: Context>(from: *mut C, to: *mut C, value: usize) -> usize {
    // SAFETY: the caller's contract is `C::switch`'s.
    unsafe { C::switch(from, to, value) }
}

/// Number of callee-saved general registers `switch_with_known_registers` checks.
#[cfg(target_arch = "x86_64")]
const CHECKED_REGISTERS: usize = 5; // rbx, rbp, r13, r14, r15 (r12 holds the stack pointer)
#[cfg(target_arch = "aarch64")]
const CHECKED_REGISTERS: usize = 19; // x19-x29, d8-d15

/// Loads `seed + i` into every callee-saved register, switches, and returns what the
/// registers hold when the switch returns, with the value it returned.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn switch_with_known_registers<C: Context>(
    from: *mut C,
    to: *mut C,
    value: usize,
    seed: u64,
) -> ([u64; CHECKED_REGISTERS], usize) {
    let mut regs = [0u64; CHECKED_REGISTERS];
    let returned: usize;
    // SAFETY: rbx and rbp (which Rust cannot name as operands) are saved and restored
    // around the block; r12 keeps the unaligned stack pointer and is declared clobbered,
    // as are r13-r15 and, through clobber_abi, everything the call may change. The call
    // happens on a 16-byte aligned stack. `from`/`to` follow `C::switch`'s contract.
    unsafe {
        std::arch::asm!(
            "push rbx",
            "push rbp",
            "mov r12, rsp",
            "and rsp, -16",
            "push {out}",
            "sub rsp, 8",
            "mov rbx, {seed}",
            "lea rbp, [rbx + 1]",
            "lea r13, [rbx + 2]",
            "lea r14, [rbx + 3]",
            "lea r15, [rbx + 4]",
            "call {switch}",
            "add rsp, 8",
            "pop rcx",
            "mov [rcx], rbx",
            "mov [rcx + 8], rbp",
            "mov [rcx + 16], r13",
            "mov [rcx + 24], r14",
            "mov [rcx + 32], r15",
            "mov rsp, r12",
            "pop rbp",
            "pop rbx",
            switch = sym switch_for_asm::<C>,
            out = in(reg) regs.as_mut_ptr(),
            seed = in(reg) seed,
            inout("rdi") from => _,
            inout("rsi") to => _,
            inout("rdx") value => _,
            out("rax") returned,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("C"),
        );
    }
    (regs, returned)
}

#[cfg(target_arch = "aarch64")]
#[inline(never)]
fn switch_with_known_registers<C: Context>(
    from: *mut C,
    to: *mut C,
    value: usize,
    seed: u64,
) -> ([u64; CHECKED_REGISTERS], usize) {
    let mut regs = [0u64; CHECKED_REGISTERS];
    let returned: usize;
    // SAFETY: x19 and x29 (which Rust cannot name as operands) and lr are saved and
    // restored around the block; x20-x28 and v8-v15 are declared clobbered, as is,
    // through clobber_abi, everything the call may change. sp stays 16-byte aligned.
    // `from`/`to` follow `C::switch`'s contract.
    unsafe {
        std::arch::asm!(
            "stp x29, x30, [sp, #-32]!",
            "stp x19, {out}, [sp, #16]",
            "mov x19, {seed}",
            "add x20, x19, #1",
            "add x21, x19, #2",
            "add x22, x19, #3",
            "add x23, x19, #4",
            "add x24, x19, #5",
            "add x25, x19, #6",
            "add x26, x19, #7",
            "add x27, x19, #8",
            "add x28, x19, #9",
            "add x29, x19, #10",
            "fmov d8, x20",
            "fmov d9, x21",
            "fmov d10, x22",
            "fmov d11, x23",
            "fmov d12, x24",
            "fmov d13, x25",
            "fmov d14, x26",
            "fmov d15, x27",
            "bl {switch}",
            "ldr x9, [sp, #24]",
            "stp x19, x20, [x9]",
            "stp x21, x22, [x9, #16]",
            "stp x23, x24, [x9, #32]",
            "stp x25, x26, [x9, #48]",
            "stp x27, x28, [x9, #64]",
            "str x29, [x9, #80]",
            "stp d8, d9, [x9, #88]",
            "stp d10, d11, [x9, #104]",
            "stp d12, d13, [x9, #120]",
            "stp d14, d15, [x9, #136]",
            "ldr x19, [sp, #16]",
            "ldp x29, x30, [sp], #32",
            switch = sym switch_for_asm::<C>,
            out = in(reg) regs.as_mut_ptr(),
            seed = in(reg) seed,
            inout("x0") from => returned,
            inout("x1") to => _,
            inout("x2") value => _,
            out("x20") _,
            out("x21") _,
            out("x22") _,
            out("x23") _,
            out("x24") _,
            out("x25") _,
            out("x26") _,
            out("x27") _,
            out("x28") _,
            out("v8") _,
            out("v9") _,
            out("v10") _,
            out("v11") _,
            out("v12") _,
            out("v13") _,
            out("v14") _,
            out("v15") _,
            clobber_abi("C"),
        );
    }
    (regs, returned)
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn expected_registers(seed: u64) -> [u64; CHECKED_REGISTERS] {
    let mut regs = [0; CHECKED_REGISTERS];
    for (i, r) in regs.iter_mut().enumerate() {
        // aarch64: x19-x29 are seed + 0..=10, d8-d15 copy x20-x27 (seed + 1..=8).
        *r = seed + if i <= 10 { i as u64 } else { i as u64 - 10 };
    }
    regs
}

/// Each side holds its own values in every callee-saved register across each switch.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn every_callee_saved_register_survives_a_switch<C: Context + 'static>() {
    const ROUNDS: u64 = 20;
    let main = thread_context::<C>();
    let m = main.get();
    let fiber = Fiber::<C>::new(move |me, mut v| {
        let mut good = 0;
        for round in 0..ROUNDS {
            let seed = 0xf1be_0000_0000 + round * 100;
            let (regs, next) = switch_with_known_registers(me, m, v + 1, seed);
            good += usize::from(regs == expected_registers(seed));
            v = next;
        }
        Exit { to: m, value: good }
    });
    let mut v = 0;
    for round in 0..ROUNDS {
        let seed = 0x3a10_0000_0000 + round * 100;
        let (regs, back) = switch_with_known_registers(m, fiber.ctx(), v, seed);
        assert_eq!(regs, expected_registers(seed), "round {round}");
        assert_eq!(back, v + 1);
        v = back;
    }
    assert_eq!(
        switch(m, fiber.ctx(), v),
        ROUNDS as usize,
        "rounds the fiber saw intact"
    );
    fiber.into_stack();
}

#[cfg(panic = "unwind")]
struct SetOnDrop(Rc<Cell<bool>>);

#[cfg(panic = "unwind")]
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[cfg(panic = "unwind")]
fn panic_caught_inside_context<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let dropped = Rc::new(Cell::new(false));
    let fiber = Fiber::<C>::new({
        let dropped = dropped.clone();
        move |me, first| {
            let mut v = first;
            for _ in 0..5 {
                v = switch(me, m, v + 1);
            }
            let caught = catch_unwind(AssertUnwindSafe(|| {
                let _guard = SetOnDrop(dropped);
                // Suspend once more with the catching frame and the guard on our stack.
                let w = switch(me, m, v + 1);
                if black_box(w) != 0 {
                    panic!("boom {w}");
                }
                w
            }));
            let ok = match caught {
                Err(payload) => {
                    payload.downcast_ref::<String>().map(String::as_str) == Some("boom 7")
                }
                Ok(_) => false,
            };
            Exit {
                to: m,
                value: usize::from(ok),
            }
        }
    });
    let mut v = 0;
    for _ in 0..6 {
        v = switch(m, fiber.ctx(), v + 1);
    }
    assert!(!dropped.get());
    assert_eq!(
        switch(m, fiber.ctx(), 7),
        1,
        "the fiber caught its own panic"
    );
    assert!(dropped.get(), "unwinding ran the guard's destructor");
    fiber.into_stack();
}

/// Captures a backtrace inside a context and returns it as text.
#[cfg(not(target_arch = "wasm32"))] // std::backtrace is `Unsupported` there
fn backtrace_inside<C: Context + 'static>(resume: fn(*mut C, *mut C) -> usize) -> String {
    let main = thread_context::<C>();
    let m = main.get();
    let text = Rc::new(RefCell::new(String::new()));
    let fiber = Fiber::<C>::new({
        let text = text.clone();
        move |_me, _| {
            *text.borrow_mut() = std::backtrace::Backtrace::force_capture().to_string();
            Exit { to: m, value: 0 }
        }
    });
    resume(m, fiber.ctx());
    fiber.into_stack();
    text.take()
}

#[cfg(not(target_arch = "wasm32"))] // std::backtrace is `Unsupported` there
#[inline(never)]
fn resumer_with_a_distinctive_name<C: Context>(from: *mut C, to: *mut C) -> usize {
    // A value of its own, so that an optimised build does not merge it with its twins.
    black_box(switch(from, to, 0x11))
}

#[cfg(not(target_arch = "wasm32"))] // std::backtrace is `Unsupported` there
fn backtrace_in_context_names_its_resumer<C: Context + 'static>() {
    let trace = backtrace_inside::<C>(resumer_with_a_distinctive_name::<C>);
    assert!(trace.contains("resumer_with_a_distinctive_name"), "{trace}");
    assert!(
        trace.contains("backtrace_in_context_names_its_resumer"),
        "{trace}"
    );
}

/// A restarted context links its frames to its resumer's as a new one does.
#[cfg(not(target_arch = "wasm32"))] // std::backtrace is `Unsupported` there
fn backtrace_in_restarted_context_names_its_resumer<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let fiber = Fiber::<C>::new(move |_me, v| Exit { to: m, value: v });
    let ctx = fiber.ctx();
    // A first run, deeper than the next one, to leave frames below the top of the stack.
    assert_eq!(switch(m, ctx, 7), 7);
    let text = Rc::new(RefCell::new(String::new()));
    fiber.body.set(Some(Box::new({
        let text = text.clone();
        move |_me, _| {
            *text.borrow_mut() = std::backtrace::Backtrace::force_capture().to_string();
            Exit { to: m, value: 0 }
        }
    })));
    // SAFETY: the context has exited; nothing else references it.
    unsafe { C::restart(ctx, fiber_entry::<C>, &*fiber as *const Fiber<C> as *mut ()) };
    resumer_with_a_distinctive_name(m, ctx);
    fiber.into_stack();
    let trace = text.take();
    assert!(trace.contains("resumer_with_a_distinctive_name"), "{trace}");
    assert!(
        trace.contains("backtrace_in_restarted_context_names_its_resumer"),
        "{trace}"
    );
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(never)]
fn first_resumer_in_a_chain<C: Context>(from: *mut C, to: *mut C) -> usize {
    // A value of its own, so that an optimised build does not merge it with its twins.
    black_box(switch(from, to, 0x22))
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(never)]
fn second_resumer_in_a_chain<C: Context>(from: *mut C, to: *mut C) -> usize {
    // A value of its own, so that an optimised build does not merge it with its twins.
    black_box(switch(from, to, 0x33))
}

/// main -> A -> B: a backtrace in B walks through A's frames into main's.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn backtrace_follows_a_chain_of_contexts<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let text = Rc::new(RefCell::new(String::new()));
    let b = Fiber::<C>::new({
        let text = text.clone();
        move |_me, _| {
            *text.borrow_mut() = std::backtrace::Backtrace::force_capture().to_string();
            Exit { to: m, value: 0 }
        }
    });
    let b_ctx = b.ctx();
    let a = Fiber::<C>::new(move |me, _| {
        second_resumer_in_a_chain(me, b_ctx);
        Exit { to: m, value: 0 }
    });
    first_resumer_in_a_chain(m, a.ctx()); // returns when B exits to us, A suspended
    b.into_stack();
    a.into_stack(); // discarded while suspended
    let trace = text.take();
    let second = trace.find("second_resumer_in_a_chain").expect(&trace);
    let first = trace.find("first_resumer_in_a_chain").expect(&trace);
    assert!(second < first, "B's resumer comes before A's: {trace}");
}

/// A context resumed by one that exits has no live resumer: its backtrace still works.
#[cfg(not(target_arch = "wasm32"))] // std::backtrace is `Unsupported` there
fn backtrace_after_exit_into_a_context_is_clean<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let text = Rc::new(RefCell::new(String::new()));
    let t_ctx = Rc::new(Cell::new(std::ptr::null_mut::<C>()));
    let e = Fiber::<C>::new({
        let t_ctx = t_ctx.clone();
        move |_me, v| Exit {
            to: t_ctx.get(),
            value: v + 1,
        }
    });
    let e_ctx = e.ctx();
    let t = Fiber::<C>::new({
        let text = text.clone();
        move |me, _| {
            let v = switch(me, e_ctx, 41); // E exits back into us
            *text.borrow_mut() = std::backtrace::Backtrace::force_capture().to_string();
            Exit { to: m, value: v }
        }
    });
    t_ctx.set(t.ctx());
    assert_eq!(switch(m, t.ctx(), 0), 42);
    let trace = text.take();
    assert!(
        trace.contains("backtrace_after_exit_into_a_context_is_clean"),
        "{trace}"
    );
    e.into_stack();
    t.into_stack();
}

/// The libc crate declares no `qsort_r` for WASI, but wasi-libc (musl, compiled to wasm
/// and linked into every `wasm32-wasip1` program) defines it with glibc's signature. Its
/// sort keeps arrays on the shadow stack, so suspending inside it checks that each
/// context's shadow stack and C frames survive.
#[cfg(target_os = "wasi")]
mod libc {
    pub use std::ffi::{c_int, c_void};

    unsafe extern "C" {
        pub fn qsort_r(
            base: *mut c_void,
            nel: usize,
            width: usize,
            compar: Option<
                unsafe extern "C" fn(*const c_void, *const c_void, *mut c_void) -> c_int,
            >,
            arg: *mut c_void,
        );
    }
}

struct SortState<C> {
    me: *mut C,
    main: *mut C,
}

/// A comparator that C code (`qsort_r`) calls on the context's stack; it suspends the
/// context in the middle of the C frames on every comparison.
unsafe extern "C" fn suspending_compare<C: Context>(
    a: *const libc::c_void,
    b: *const libc::c_void,
    state: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: qsort_r hands back our `SortState` and pointers into our `u32` array.
    let (a, b, state) = unsafe {
        (
            *(a as *const u32),
            *(b as *const u32),
            &*(state as *const SortState<C>),
        )
    };
    switch(state.me, state.main, 1);
    a.cmp(&b) as libc::c_int
}

/// Calls `f(arg)` through a C-ABI function pointer, from a frame of its own.
#[inline(never)]
extern "C" fn call_through_c_abi(f: extern "C" fn(usize) -> usize, arg: usize) -> usize {
    black_box(f)(arg) + 1
}

fn c_frames_on_a_suspended_context_survive<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let fiber = Fiber::<C>::new(move |me, _| {
        let mut data: Vec<u32> = (0..200u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 1000)
            .collect();
        let mut state = SortState { me, main: m };
        // SAFETY: `data` holds `len` u32s; the comparator matches the element type.
        unsafe {
            libc::qsort_r(
                data.as_mut_ptr().cast(),
                data.len(),
                size_of::<u32>(),
                Some(suspending_compare::<C>),
                (&raw mut state).cast(),
            )
        };
        let sorted = data.is_sorted();
        Exit {
            to: m,
            value: if sorted { 2 } else { 3 },
        }
    });
    let mut comparisons = 0;
    loop {
        match switch(m, fiber.ctx(), 0) {
            1 => comparisons += 1,
            2 => break,
            other => panic!("unexpected report {other}: the array was not sorted"),
        }
    }
    assert!(comparisons > 200, "{comparisons} comparisons");
    fiber.into_stack();

    // The same with a Rust `extern "C"` callback called through a function pointer.
    thread_local! {
        static CONTEXTS: Cell<(*mut (), *mut ())> =
            const { Cell::new((std::ptr::null_mut(), std::ptr::null_mut())) };
    }
    extern "C" fn callback<C: Context>(arg: usize) -> usize {
        let (me, main) = CONTEXTS.get();
        arg + switch(me.cast::<C>(), main.cast::<C>(), arg)
    }
    let fiber = Fiber::<C>::new(move |me, v| {
        CONTEXTS.set((me.cast(), m.cast()));
        let r = call_through_c_abi(callback::<C>, v);
        Exit { to: m, value: r }
    });
    assert_eq!(switch(m, fiber.ctx(), 5), 5);
    assert_eq!(switch(m, fiber.ctx(), 100), 5 + 100 + 1);
    fiber.into_stack();
}

/// The floating-point control state (x86-64: MXCSR and the x87 control word; AArch64:
/// FPCR) of the running code, and a way to set it and to see its effect.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod fp {
    use std::arch::asm;

    #[cfg(target_arch = "x86_64")]
    mod imp {
        use super::asm;
        /// MXCSR rounding control, bits 13-14: 0b10 rounds towards +infinity, 0b01
        /// towards -infinity.
        pub const ROUND_UP: u64 = 0b10 << 13;
        pub const ROUND_DOWN: u64 = 0b01 << 13;
        pub const ROUNDING: u64 = 0b11 << 13;
        /// x87 precision control, bits 8-9 of the control word (bits 40-41 of our state
        /// word): the default is 0b11 (64-bit mantissa), 0b10 is double precision.
        pub const OTHER: u64 = 0b10 << (32 + 8);
        pub const OTHER_MASK: u64 = 0b11 << (32 + 8);
        /// Control bits: MXCSR bits 6-15 and the whole x87 control word. (MXCSR bits 0-5
        /// are sticky status flags, which any arithmetic may set.)
        pub const CONTROL: u64 = 0x0000_ffff_0000_ffc0;

        /// MXCSR in bits 0-31, the x87 control word in bits 32-47.
        pub fn get() -> u64 {
            let mut mxcsr: u32 = 0;
            let mut fcw: u16 = 0;
            // SAFETY: stores to two locals only.
            unsafe {
                asm!(
                    "stmxcsr dword ptr [{m}]",
                    "fnstcw word ptr [{c}]",
                    m = in(reg) &raw mut mxcsr,
                    c = in(reg) &raw mut fcw,
                    options(nostack),
                )
            };
            u64::from(mxcsr) | (u64::from(fcw) << 32)
        }

        pub fn set(state: u64) {
            let mxcsr = state as u32;
            let fcw = (state >> 32) as u16;
            // SAFETY: loads valid control values (taken from `get`, with control bits
            // changed) into the control registers.
            unsafe {
                asm!(
                    "ldmxcsr dword ptr [{m}]",
                    "fldcw word ptr [{c}]",
                    m = in(reg) &raw const mxcsr,
                    c = in(reg) &raw const fcw,
                    options(nostack),
                )
            };
        }

        /// MXCSR PE, bit 5: some result was rounded.
        pub const INEXACT: u64 = 1 << 5;

        /// The sticky status flags, MXCSR bits 0-5.
        pub fn status() -> u64 {
            get() & 0x3f
        }

        pub fn clear_status() {
            set(get() & !0x3f);
        }

        pub fn div(a: f64, b: f64) -> f64 {
            let mut a = a;
            // SAFETY: arithmetic on registers. Not `pure`: it depends on and changes the FP
            // environment, which is the point of the tests.
            unsafe {
                asm!(
                    "divsd {a}, {b}",
                    a = inout(xmm_reg) a,
                    b = in(xmm_reg) b,
                    options(nostack),
                )
            };
            a
        }
    }

    #[cfg(target_arch = "aarch64")]
    mod imp {
        use super::asm;
        /// FPCR RMode, bits 22-23: 0b01 rounds towards +infinity, 0b10 towards
        /// -infinity.
        pub const ROUND_UP: u64 = 0b01 << 22;
        pub const ROUND_DOWN: u64 = 0b10 << 22;
        pub const ROUNDING: u64 = 0b11 << 22;
        /// FPCR FZ (flush denormals to zero), bit 24.
        pub const OTHER: u64 = 1 << 24;
        pub const OTHER_MASK: u64 = 1 << 24;
        /// FPCR holds control bits only (status is in FPSR).
        pub const CONTROL: u64 = !0;

        pub fn get() -> u64 {
            let fpcr: u64;
            // SAFETY: reads a system register.
            unsafe { asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
            fpcr
        }

        pub fn set(state: u64) {
            // SAFETY: writes a value read from FPCR with control bits changed.
            unsafe { asm!("msr fpcr, {}", in(reg) state, options(nomem, nostack)) };
        }

        /// FPSR IXC, bit 4: some result was rounded.
        pub const INEXACT: u64 = 1 << 4;

        /// The cumulative status flags, FPSR bits 0-4 (in FPSR, not in our state word).
        pub fn status() -> u64 {
            let fpsr: u64;
            // SAFETY: reads a system register.
            unsafe { asm!("mrs {}, fpsr", out(reg) fpsr, options(nomem, nostack)) };
            fpsr & 0x1f
        }

        pub fn clear_status() {
            // SAFETY: clears FPSR's cumulative flags, the rest is kept.
            unsafe {
                asm!(
                    "mrs {t}, fpsr",
                    "bic {t}, {t}, #0x1f",
                    "msr fpsr, {t}",
                    t = out(reg) _,
                    options(nomem, nostack),
                )
            };
        }

        pub fn div(a: f64, b: f64) -> f64 {
            let mut a = a;
            // SAFETY: arithmetic on registers. Not `pure`: it depends on and changes the FP
            // environment, which is the point of the tests.
            unsafe {
                asm!(
                    "fdiv {a:d}, {a:d}, {b:d}",
                    a = inout(vreg) a,
                    b = in(vreg) b,
                    options(nostack),
                )
            };
            a
        }
    }

    pub use imp::*;

    /// The control bits the tests change.
    pub const CHANGED: u64 = ROUNDING | OTHER_MASK;
    /// 1/3 rounded to nearest and rounded up differ in the last bit.
    pub const THIRD_NEAREST: u64 = 0x3fd5_5555_5555_5555;
    pub const THIRD_UP: u64 = 0x3fd5_5555_5555_5556;

    /// The control bits of the running code's state.
    pub fn control() -> u64 {
        get() & CONTROL
    }

    pub fn third() -> u64 {
        div(std::hint::black_box(1.0), std::hint::black_box(3.0)).to_bits()
    }
}

/// With `per_context`, each context keeps its own FP control state across switches and a
/// new one starts with its creator's; without it, all contexts share the thread's. Every
/// backend shares it now (keeping it per greenlet is the `greenlet` crate's opt-in,
/// `Builder::own_fp_control`); the per-context checks stay for a backend that would not.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn fp_control_state<C: Context + 'static>(per_context: bool) {
    let main = thread_context::<C>();
    let m = main.get();
    let original_state = fp::get();
    let original = original_state & fp::CONTROL;
    // Create the context while the thread rounds down, then go back to the default.
    fp::set((original_state & !fp::CHANGED) | fp::ROUND_DOWN);
    let created_under = fp::control();
    // The fiber reports: its state at start, its state after a round trip, 1/3 then.
    let fiber = Fiber::<C>::new(move |me, _| {
        let at_start_state = fp::get();
        let at_start = at_start_state & fp::CONTROL;
        let mine = (at_start_state & !fp::CHANGED) | fp::ROUND_UP | fp::OTHER;
        fp::set(mine);
        switch(me, m, at_start as usize);
        let after = fp::control();
        let third = fp::third();
        switch(me, m, after as usize);
        // Leave the thread's state as we found it when sharing it.
        fp::set(at_start_state);
        Exit {
            to: m,
            value: third as usize,
        }
    });
    fp::set(original_state);
    let fiber_at_start = switch(m, fiber.ctx(), 0) as u64;
    let main_after = fp::control();
    let third_in_main = fp::third();
    fp::set(original_state); // in case it is shared
    let fiber_after = switch(m, fiber.ctx(), 0) as u64;
    let fiber_third = switch(m, fiber.ctx(), 0) as u64;
    let main_at_end = fp::control();
    fp::set(original_state);
    fiber.into_stack();

    assert_eq!(
        original & fp::ROUNDING,
        0,
        "the thread starts rounding to nearest"
    );
    if per_context {
        assert_eq!(
            fiber_at_start, created_under,
            "a context starts with its creator's state"
        );
        assert_eq!(
            main_after, original,
            "the context's changes stay in the context"
        );
        assert_eq!(third_in_main, fp::THIRD_NEAREST);
        assert_eq!(fiber_after & fp::CHANGED, fp::ROUND_UP | fp::OTHER);
        assert_eq!(fiber_third, fp::THIRD_UP);
        assert_eq!(main_at_end, original);
    } else {
        assert_eq!(
            fiber_at_start, original,
            "a context runs with the thread's state"
        );
        assert_eq!(main_after & fp::CHANGED, fp::ROUND_UP | fp::OTHER);
        assert_eq!(third_in_main, fp::THIRD_UP, "the change is the thread's");
        assert_eq!(fiber_after, original, "and so is the reset");
        assert_eq!(fiber_third, fp::THIRD_NEAREST);
    }
}

/// Status flags (a result was inexact, ...) are not control state: every backend leaves
/// them with the thread, and a switch never brings back stale ones.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn fp_status_flags_stay_with_the_thread<C: Context + 'static>() {
    let main = thread_context::<C>();
    let m = main.get();
    let original_state = fp::get();
    let fiber = Fiber::<C>::new(move |me, _| {
        // A different rounding mode: a switch that kept control state per context would
        // have to load it, and must still leave the status flags with the thread.
        let entry_state = fp::get();
        fp::set((entry_state & !fp::CHANGED) | fp::ROUND_UP);
        let third = fp::third(); // inexact
        let seen = fp::status();
        switch(me, m, third as usize);
        let seen_after = fp::status();
        fp::set(entry_state);
        Exit {
            to: m,
            value: (seen << 8 | seen_after) as usize,
        }
    });
    fp::clear_status();
    let third = switch(m, fiber.ctx(), 0) as u64;
    let status_in_main = fp::status();
    fp::clear_status();
    let reported = switch(m, fiber.ctx(), 0) as u64;
    fp::set(original_state);
    fiber.into_stack();

    assert_eq!(third, fp::THIRD_UP);
    assert_eq!(
        reported >> 8 & fp::INEXACT,
        fp::INEXACT,
        "the division was inexact"
    );
    assert_eq!(
        status_in_main & fp::INEXACT,
        fp::INEXACT,
        "the flag reached the thread"
    );
    assert_eq!(reported & fp::INEXACT, 0, "clearing it reached the context");
}

macro_rules! backend_tests {
    ($module:ident, $context:ty, [$($(#[$gate:meta])* $behaviour:ident),* $(,)?]) => {
        mod $module {
            $(
                $(#[$gate])*
                #[test]
                fn $behaviour() {
                    super::$behaviour::<$context>();
                }
            )*
        }
    };
}

backend_tests!(
    default,
    greenlet_backends::DefaultContext,
    [
        ping_pong_passes_values_both_ways,
        many_contexts_switched_in_random_order,
        contexts_switch_directly_to_each_other,
        exited_context_stack_is_reused,
        exited_context_restarts_in_place,
        callee_saved_registers_survive_switches,
        #[cfg(panic = "unwind")]
        panic_caught_inside_context,
        #[cfg(not(target_arch = "wasm32"))]
        backtrace_in_context_names_its_resumer,
        #[cfg(not(target_arch = "wasm32"))]
        backtrace_in_restarted_context_names_its_resumer,
        #[cfg(not(target_arch = "wasm32"))]
        backtrace_after_exit_into_a_context_is_clean,
        c_frames_on_a_suspended_context_survive,
    ]
);

#[cfg(not(target_arch = "wasm32"))]
backend_tests!(
    corosensei,
    greenlet_backends::arch::corosensei::CoroContext,
    [
        ping_pong_passes_values_both_ways,
        many_contexts_switched_in_random_order,
        contexts_switch_directly_to_each_other,
        exited_context_stack_is_reused,
        exited_context_restarts_in_place,
        callee_saved_registers_survive_switches,
        #[cfg(panic = "unwind")]
        panic_caught_inside_context,
        #[cfg(not(target_arch = "wasm32"))]
        backtrace_in_context_names_its_resumer,
        #[cfg(not(target_arch = "wasm32"))]
        backtrace_in_restarted_context_names_its_resumer,
        #[cfg(not(target_arch = "wasm32"))]
        backtrace_after_exit_into_a_context_is_clean,
        c_frames_on_a_suspended_context_survive,
    ]
);

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn default_backend_every_callee_saved_register_survives_a_switch() {
    every_callee_saved_register_survives_a_switch::<greenlet_backends::DefaultContext>();
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn corosensei_backend_every_callee_saved_register_survives_a_switch() {
    use greenlet_backends::arch::corosensei::CoroContext;
    every_callee_saved_register_survives_a_switch::<CoroContext>();
}

/// The assembly backends link each context to its last resumer, so a backtrace walks
/// through every context on the resume chain. (corosensei links every coroutine to the
/// thread's driver loop instead, so the middle context does not show.)
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn asm_backend_backtrace_follows_a_chain_of_contexts() {
    backtrace_follows_a_chain_of_contexts::<greenlet_backends::DefaultContext>();
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn default_backend_fp_status_flags_stay_with_the_thread() {
    fp_status_flags_stay_with_the_thread::<greenlet_backends::DefaultContext>();
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn corosensei_backend_fp_status_flags_stay_with_the_thread() {
    use greenlet_backends::arch::corosensei::CoroContext;
    fp_status_flags_stay_with_the_thread::<CoroContext>();
}

/// The assembly backends save no FP control state, as corosensei: their contexts share
/// the thread's.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn asm_backend_shares_fp_control_state() {
    fp_control_state::<greenlet_backends::DefaultContext>(false);
}

/// corosensei saves no FP control state: its contexts share the thread's.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn corosensei_backend_shares_fp_control_state() {
    fp_control_state::<greenlet_backends::arch::corosensei::CoroContext>(false);
}

#[test]
fn backend_names() {
    use greenlet_backends::DefaultContext;
    let expected = if cfg!(target_arch = "x86_64") {
        "asm-x86_64"
    } else if cfg!(target_arch = "aarch64") {
        "asm-aarch64"
    } else if cfg!(target_arch = "wasm32") {
        "wasm-host-fibers"
    } else {
        "corosensei"
    };
    assert_eq!(<DefaultContext as Context>::NAME, expected);
}
