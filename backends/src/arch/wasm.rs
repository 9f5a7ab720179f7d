//! The wasm32 backend: stack switching done by the host, through the `greenlet_fiber_v1`
//! imports.
//!
//! A wasm module cannot switch stacks by itself: the engine's native stack (calls, returns,
//! wasm locals) is out of its reach. So each greenlet's native stack is a *fiber* that the
//! host provides, and the guest only keeps the part of a stack that lives in linear memory,
//! the shadow stack (see [`crate::stack`]). The host saves and restores the module's
//! `__stack_pointer` global around every switch, so the guest needs no code for that
//! either; it must export the global (and its function table):
//!
//! ```text
//! RUSTFLAGS="-C link-arg=--export-table -C link-arg=--export=__stack_pointer"
//! ```
//!
//! ```text
//!  guest (this backend)                       host (wasm/ABI.md: greenlet_fiber_v1)
//!  GuardedStack::new  ── new(lo, hi) ──────▶  a fiber: EMPTY, with its own native stack
//!  Context::new       ── bind(id, entry, arg)▶ NEW: will run entry(value, arg)
//!  Context::switch    ── switch(id, value) ──▶ saves __stack_pointer, runs `id`;
//!                     ◀─ value() ───────────  what was sent when someone switched back
//!  Context::exit      ── exit(id, value) ────▶ discards the caller's frames: EMPTY again
//!  into_stack / drop  ── reset(id), free(id) ▶ discards a suspended fiber's frames
//! ```
//!
//! The thread's context is the host's *root* (id 0): the code that the host called, e.g.
//! `_start`. A greenlet's switch checks the canary of its own shadow stack as it leaves
//! and again when it is resumed (an exit, as it leaves), so a shadow-stack overflow stops
//! the program with a clear message rather than corrupting memory further. (Nothing is
//! checked on a fiber's first entry, nor for the root, which has no canary.)

use crate::stack::GuardedStack;
use crate::{Context, EntryFn};

/// The raw `greenlet_fiber_v1` imports, as specified in `wasm/ABI.md`.
///
/// Everything is an `i32`. Functions that can fail return a negative error code (the
/// `E_*` constants) instead of trapping, and never transfer control when they fail.
///
/// ```no_run
/// use greenlet_backends::arch::wasm::abi;
/// // SAFETY: plain host calls; id 0 is the root, which always exists.
/// unsafe {
///     assert_eq!(abi::current(), 0);
///     assert_eq!(abi::state(0), abi::STATE_RUNNING);
///     assert_eq!(abi::switch(12345, 0), abi::E_NO_SUCH_FIBER);
/// }
/// ```
pub mod abi {
    /// The import module: the ABI's name and major version.
    pub const MODULE: &str = "greenlet_fiber_v1";

    /// No fiber has this id (never created, freed, or from another run).
    pub const E_NO_SUCH_FIBER: i32 = -1;
    /// The fiber has no entry to run: never bound, or finished (exited or reset).
    pub const E_NOT_BOUND: i32 = -2;
    /// The fiber is the one running: it cannot be switched to, reset or freed.
    pub const E_IS_CURRENT: i32 = -3;
    /// The host's live-fiber limit ([`limit`]) is reached.
    pub const E_LIMIT: i32 = -4;
    /// The host could not allocate a native stack for a fiber.
    pub const E_NO_MEMORY: i32 = -5;
    /// `new` was given a bad shadow stack: misaligned, empty, or outside linear memory.
    pub const E_BAD_STACK: i32 = -6;
    /// The fiber has started: it cannot be bound again.
    pub const E_STARTED: i32 = -7;
    /// `exit` was called by the root, which cannot exit.
    pub const E_NOT_IN_FIBER: i32 = -8;
    /// `bind` was given an entry that is not a function in the exported table.
    pub const E_BAD_ENTRY: i32 = -9;
    /// The root (id 0) cannot be bound, reset or freed.
    pub const E_ROOT: i32 = -10;

    /// [`state`]: no such fiber.
    pub const STATE_NONE: i32 = 0;
    /// [`state`]: created or finished, no entry bound.
    pub const STATE_EMPTY: i32 = 1;
    /// [`state`]: bound, not started yet.
    pub const STATE_NEW: i32 = 2;
    /// [`state`]: the fiber that is running now.
    pub const STATE_RUNNING: i32 = 3;
    /// [`state`]: started and switched away from.
    pub const STATE_SUSPENDED: i32 = 4;

    /// A short name for an error code, for messages.
    ///
    /// ```
    /// use greenlet_backends::arch::wasm::abi;
    /// assert_eq!(abi::error_name(abi::E_LIMIT), "live-fiber limit reached");
    /// ```
    pub fn error_name(code: i32) -> &'static str {
        match code {
            0 => "ok",
            E_NO_SUCH_FIBER => "no such fiber",
            E_NOT_BOUND => "fiber not bound (finished or never given an entry)",
            E_IS_CURRENT => "fiber is the running one",
            E_LIMIT => "live-fiber limit reached",
            E_NO_MEMORY => "host out of memory for fiber stacks",
            E_BAD_STACK => "bad shadow stack bounds",
            E_STARTED => "fiber already started",
            E_NOT_IN_FIBER => "the root cannot exit",
            E_BAD_ENTRY => "entry is not in the function table",
            E_ROOT => "operation not allowed on the root",
            _ => "unknown error",
        }
    }

    #[link(wasm_import_module = "greenlet_fiber_v1")]
    unsafe extern "C" {
        /// The most fibers (not counting the root) that may exist at once.
        pub safe fn limit() -> i32;
        /// Creates an EMPTY fiber whose shadow stack is `[stack_lo, stack_hi)`; returns its
        /// id (> 0) or an error.
        pub fn new(stack_lo: i32, stack_hi: i32) -> i32;
        /// Makes fiber `id` run `entry(value, arg)` when first switched to; `entry` is an
        /// index in the exported function table, of type `(i32, i32) -> ()`.
        pub fn bind(id: i32, entry: i32, arg: i32) -> i32;
        /// Suspends the caller and runs `target`, sending it `value`; returns 0 once
        /// switched back to (read what was sent with [`value`]) or an error at once.
        pub fn switch(target: i32, value: i32) -> i32;
        /// The value sent by the transfer that last resumed the caller.
        pub safe fn value() -> i32;
        /// Ends the calling fiber and runs `target` with `value`. Returns only on error;
        /// on success the caller's frames are discarded and the fiber is EMPTY.
        pub fn exit(target: i32, value: i32) -> i32;
        /// The id of the running fiber (0: the root).
        pub safe fn current() -> i32;
        /// The state of fiber `id`: one of the `STATE_*` constants.
        pub safe fn state(id: i32) -> i32;
        /// Discards the frames of a NEW or SUSPENDED fiber without running guest code on
        /// it; the fiber is EMPTY afterwards.
        pub fn reset(id: i32) -> i32;
        /// Discards fiber `id` (as `reset` does if needed) and releases its id.
        pub fn free(id: i32) -> i32;
    }
}

/// Writes `parts` to stderr with one WASI call each, then aborts (a wasm trap).
///
/// Uses no allocation and little stack: it may run on a shadow stack that has already
/// overflowed, with the heap below it damaged.
#[cold]
fn fatal(parts: &[&[u8]]) -> ! {
    #[repr(C)]
    struct Ciovec {
        buf: *const u8,
        len: usize,
    }
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn fd_write(fd: i32, iovs: *const Ciovec, iovs_len: usize, nwritten: *mut usize) -> u16;
    }
    for part in parts {
        let iov = Ciovec {
            buf: part.as_ptr(),
            len: part.len(),
        };
        let mut written = 0usize;
        // SAFETY: `iov` describes a live byte slice; fd 2 is stderr. Short writes only
        // lose part of a message we are about to abort after anyway.
        unsafe { fd_write(2, &iov, 1, &mut written) };
    }
    std::process::abort()
}

/// Formats `n` in decimal into `buf`, returning the digits.
fn decimal(n: i64, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Formats `n` as `0x` and hex digits into `buf`, returning the text.
fn hex(n: usize, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len();
    let mut m = n;
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[m % 16];
        m /= 16;
        if m == 0 {
            break;
        }
    }
    buf[i - 2..i].copy_from_slice(b"0x");
    &buf[i - 2..]
}

/// Stops the program after a `greenlet_fiber_v1` call failed where the backend's contract
/// says it cannot: names the call, the fiber and the error.
#[cold]
pub(crate) fn fatal_abi(call: &str, status: i32, fiber: i32) -> ! {
    let (mut a, mut b) = ([0; 24], [0; 24]);
    fatal(&[
        b"greenlet-rs (wasm): greenlet_fiber_v1.",
        call.as_bytes(),
        b" on fiber ",
        decimal(fiber.into(), &mut a),
        b" failed: ",
        abi::error_name(status).as_bytes(),
        b" (",
        decimal(status.into(), &mut b),
        b"). This is a bug in greenlet-rs or a misuse of its unsafe backend API.\n",
    ])
}

/// Stops the program if `stack` has overflowed: a greenlet shadow-stack overflow.
#[inline]
fn check_stack(stack: &GuardedStack) {
    if let Err(addr) = stack.check() {
        let (mut a, mut b, mut c) = ([0; 24], [0; 24], [0; 24]);
        fatal(&[
            b"greenlet-rs (wasm): greenlet shadow-stack overflow: the canary below the \
              shadow stack of fiber ",
            decimal(stack.fiber().into(), &mut a),
            b" (usable size ",
            decimal(stack.usable_size() as i64, &mut b),
            b" bytes) was overwritten at address ",
            hex(addr, &mut c),
            b". Memory below that stack may be corrupt. Give greenlets bigger stacks, or \
              recurse less deeply inside them.\n",
        ])
    }
}

/// A context on the host-fiber backend (`greenlet_fiber_v1`).
///
/// ```no_run
/// use greenlet_backends::{Context, arch::wasm::WasmContext, stack::GuardedStack};
/// use std::cell::UnsafeCell;
///
/// struct Pair { main: UnsafeCell<WasmContext>, child: UnsafeCell<WasmContext> }
///
/// unsafe extern "C" fn child(value: usize, data: *mut ()) -> ! {
///     let pair = unsafe { &*(data as *const Pair) };
///     // Send back twice what we got, then finish.
///     unsafe { WasmContext::exit(pair.child.get(), pair.main.get(), value * 2) }
/// }
///
/// let stack = GuardedStack::new(64 * 1024).unwrap();
/// let pair = Box::new(Pair {
///     main: UnsafeCell::new(WasmContext::thread()),
///     child: UnsafeCell::new(WasmContext::new(stack, child, std::ptr::null_mut())),
/// });
/// unsafe { (*pair.child.get()).set_data(&*pair as *const Pair as *mut ()) };
/// assert_eq!(unsafe { WasmContext::switch(pair.main.get(), pair.child.get(), 21) }, 42);
/// let stack = unsafe { pair.child.into_inner().into_stack() }.unwrap();
/// drop(stack); // gives the host fiber back
/// ```
pub struct WasmContext {
    /// The host fiber: 0 for the root (the thread's context).
    fiber: i32,
    /// `None` for the thread's context.
    stack: Option<GuardedStack>,
    /// What `new` bound, kept for `set_data`.
    entry: Option<EntryFn>,
}

impl WasmContext {
    /// The host fiber id of this context (0 for the thread's context).
    ///
    /// ```no_run
    /// use greenlet_backends::{Context, arch::wasm::WasmContext};
    /// assert_eq!(WasmContext::thread().fiber_id(), 0);
    /// ```
    pub fn fiber_id(&self) -> i32 {
        self.fiber
    }

    fn bind(&self, data: *mut ()) {
        let entry = self.entry.expect("only contexts made by `new` are bound");
        // SAFETY: plain integers; on wasm32 a function pointer is its table index.
        let status = unsafe { abi::bind(self.fiber, entry as usize as i32, data as usize as i32) };
        if status < 0 {
            fatal_abi("bind", status, self.fiber);
        }
    }
}

unsafe impl Context for WasmContext {
    const NAME: &'static str = "wasm-host-fibers";

    fn thread() -> Self {
        WasmContext {
            fiber: 0,
            stack: None,
            entry: None,
        }
    }

    fn new(stack: GuardedStack, entry: EntryFn, data: *mut ()) -> Self {
        let context = WasmContext {
            fiber: stack.fiber(),
            stack: Some(stack),
            entry: Some(entry),
        };
        context.bind(data);
        context
    }

    unsafe fn set_data(&mut self, data: *mut ()) {
        self.bind(data);
    }

    unsafe fn switch(from: *mut Self, to: *mut Self, value: usize) -> usize {
        // SAFETY: both are live contexts of this thread (caller's contract).
        let (from, target) = unsafe { (&*from, (*to).fiber) };
        if let Some(stack) = &from.stack {
            check_stack(stack);
        }
        // SAFETY: plain integers; the host validates the id.
        let status = unsafe { abi::switch(target, value as i32) };
        if status < 0 {
            fatal_abi("switch", status, target);
        }
        if let Some(stack) = &from.stack {
            check_stack(stack);
        }
        abi::value() as u32 as usize
    }

    unsafe fn exit(from: *mut Self, to: *mut Self, value: usize) -> ! {
        // SAFETY: both are live contexts of this thread (caller's contract).
        let (from, target) = unsafe { (&*from, (*to).fiber) };
        if let Some(stack) = &from.stack {
            check_stack(stack);
        }
        // SAFETY: plain integers; on success the host discards this fiber's frames,
        // which own nothing (the caller's contract).
        let status = unsafe { abi::exit(target, value as i32) };
        fatal_abi("exit", status, target)
    }

    #[inline]
    fn stack_size(&self) -> usize {
        self.stack.as_ref().map_or(0, GuardedStack::usable_size)
    }

    unsafe fn into_stack(self) -> Option<GuardedStack> {
        let stack = self.stack?;
        let state = abi::state(self.fiber);
        if state == abi::STATE_NEW || state == abi::STATE_SUSPENDED {
            // SAFETY: a plain id; the caller accepts that the frames are discarded.
            let status = unsafe { abi::reset(self.fiber) };
            if status < 0 {
                fatal_abi("reset", status, self.fiber);
            }
        }
        Some(stack)
    }
}
