//! AArch64 (AAPCS64) backend: context switching in inline assembly expanded at each caller.
//!
//! A WORD OF CAUTION: read this whole file before changing any of it. The frame layout
//! drawn here, the offsets in the assembly, the words [`AsmContext::new`] writes and the
//! CFI byte strings all encode the same facts; change one and you must change them all.
//!
//! # What a switch saves
//!
//! AAPCS64 lets a called function clobber everything except x19-x28, the frame pointer
//! x29, sp and the low 64 bits of v8-v15 (d8-d15). [`AsmContext::switch`] is
//! `#[inline(always)]` and holds one `asm!` block, which declares every register the ABI
//! lets a call clobber as clobbered (`clobber_abi("C")`: on Linux x0-x18, x30, all of
//! v0-v31, which takes d8-d15 with it, and the SVE predicates), and x20-x28 too. v8-v15
//! are named as well, though `clobber_abi` already covers them, so that the list states
//! the whole callee-saved set it relies on. The compiler therefore saves around the
//! block exactly the registers that hold live values there, and no more: in a loop that
//! switches back and forth, that is often nothing but a couple of spilled pointers.
//! Clobbering x20-x28 and d8-d15 also makes the enclosing function save those it uses
//! in its prologue, with its own CFI, which is how an unwinder recovers them.
//!
//! x19 and x29 cannot be named as clobbers (LLVM reserves x19 as a base pointer and x29
//! is the frame pointer), so the block stores them itself, together with the address at
//! which it resumes, and stores sp in `from.sp`. It then loads the same three words from
//! `to.sp`, sets sp above its frame and branches to the loaded address: the label at the
//! end of `to`'s own switch, or `trampoline` for a new context. sp leaves the block where
//! it entered it, as the compiler expects.
//!
//! # Floating-point control state
//!
//! FPCR (rounding mode, flush-to-zero, default NaN, ...) is the thread's: a switch
//! neither saves nor restores it, so every context shares it, as on corosensei. A context
//! that changes its rounding mode changes it for whatever runs next on the thread, and a
//! new context starts with the FPCR the thread has when it is first resumed. FPSR (the
//! cumulative exception flags) is the thread's too. Rust code cannot change the
//! floating-point environment anyway (the compiler assumes the default), and the x86-64
//! backend, which follows the same rule, measured reading that state on every switch at
//! as much as the rest of the switch.
//!
//! A greenlet that needs its own floating-point control state asks the core for it:
//! `greenlet::Builder::own_fp_control` saves and restores that state around the switches
//! of a thread that has such a greenlet, with [`crate::fp`].
//!
//! # Leaving a switch
//!
//! A switch does not end in `ret`: the address it loads belongs to the *other* context,
//! which the return stack never predicts, so a `ret` would be mispredicted on every
//! switch (and would pop an entry some later `ret` needed). It branches with `br`
//! instead; since the block is expanded at each call site, each site's indirect-branch
//! history is its own, and a loop that switches between two contexts is predicted
//! perfectly. The return stack is left untouched. (Neither the resume label nor
//! `trampoline` starts with a `bti j`: Rust does not enable BTI on this target, and an
//! object built with `-Z branch-protection=bti` would need one at both.)
//!
//! # The switch frame
//!
//! A suspended context's `sp` points at the four-word frame its switch built:
//!
//! ```text
//!              +------------------+  <- CFA: sp when the switch began, 16-byte aligned
//!     sp + 24  | unused           |  CFA -  8: never written by a switch, never read
//!     sp + 16  | saved x19        |  CFA - 16
//!     sp +  8  | resume address   |  CFA - 24: the label ending the suspended switch
//!     sp +  0  | saved x29        |  CFA - 32 <- frame record {x29, resume address}: the
//!              +------------------+     link of whatever this context resumes points here
//!                                   <- AsmContext::sp
//! ```
//!
//! Offsets: four words of 8 bytes make 32, a multiple of the 16 bytes sp must keep; the
//! fourth word is there for that alignment only: a switch leaves whatever the stack
//! held there.
//! `asm!` without `nostack` may store below sp, and sp is always 16-byte aligned on
//! AArch64, so `stp x29, <resume address>, [sp, #-32]!` puts x29 at CFA - 32 and the
//! resume address at CFA - 24, leaving sp = CFA - 32; `str x19, [sp, #16]` puts x19 at
//! CFA - 16. x29 and the resume address form a frame record at `sp` itself, and the CFA
//! is `sp + 32`. Resuming, the switch reads the three words of the target's frame at
//! `to.sp + 0`, `+ 8` (`ldp`) and `+ 16` (`ldr`), then sets sp to `to.sp + 32`, the
//! CFA.
//!
//! # A new context
//!
//! [`AsmContext::new`] writes, at the top of the context's stack, a switch frame that
//! resumes at the first instruction of `trampoline`, with `entry` in the x19 slot, 0 in
//! the unused word and `data` in a word above the frame:
//!
//! ```text
//!              +------------------+  <- GuardedStack::top(), 16-byte aligned
//!    top -  8  | data             |  [`AsmContext::set_data`] rewrites this word
//!    top - 16  | 0 (unused)       |  <- sp inside `trampoline`, 16-byte aligned
//!              +------------------+
//!    top - 24  | 0 (unused)       |
//!    top - 32  | x19 = entry      |
//!    top - 40  | trampoline addr  |  "resume address": the first switch branches here
//!    top - 48  | x29 = link word  |  the address of a word that points at `TERMINAL_FRAME`
//!              +------------------+  <- initial AsmContext::sp = top - 16 - 32 = top - 48
//! ```
//!
//! The first switch in loads this frame, sets sp = top - 48 + 32 = top - 16 and branches
//! into `trampoline` with the value switched in still in x0, where the block keeps it,
//! and the context's address in x2. The trampoline points x29 at the context (for the
//! unwinder: see below) and enters `entry(value, data)` with sp = top - 16: 16-byte
//! aligned, as AAPCS64 requires. It does not `blr` to it: it sets the return address in
//! x30 itself and branches with `br`, so that the return-address predictor gets no entry
//! that `entry` (which never returns) would leave there, mispredicting the next return of
//! the code resumed after this context ends. `entry` never returns, so nothing at or
//! above top - 16 is ever popped, or written by the code that runs on the stack.
//!
//! [`AsmContext::restart`] makes an exited context new again in place: the run that
//! exited wrote nothing at or above top - 16, so it writes the switch frame, `data` and
//! `sp` alone.
//!
//! # Linked backtraces
//!
//! Every context has a *link*, its first field, which points at the frame record of the
//! switch frame of whoever resumed it last: every switch into a context rewrites it.
//! `trampoline` keeps the context's address in x29, which every function it enters saves
//! and restores as the ABI requires, and its CFI tells the unwinder that its caller's CFA
//! is `[x29] + 32`: the link, plus the switch frame's four words; and that the caller's
//! x29, resume address (the return-address column, x30) and x19 are saved below that CFA
//! as in any switch frame. From there the unwinder is in the resumer's own function, at
//! the label ending its switch, with sp as it was when the switch began: that function's
//! own CFI, which knows nothing of the switch frame, describes the rest of its frame,
//! including the x20-x28 and d8-d15 its prologue saved. Backtraces, debuggers and the
//! panic runtime's search phase therefore walk from a context's frames into the code that
//! resumed it, and on through that code's own resumer.
//!
//! The link lives in the context rather than on its stack so that a switch writes it with
//! one store, through the target's address, which it holds anyway; a slot on the stack
//! took a load of its address first. The price is that a context must not move once it
//! has been resumed, until it exits (the [`Context`] contract): x29 holds its address.
//! (A thread's context gets a link too, which nothing reads.)
//!
//! The stores in the switch carry no CFI of their own: the block sits inside a function
//! the compiler lays out, whose CFA may be defined by sp or by x29, so no directive in
//! it could be right in both cases. Each store names instead the lines of
//! `trampoline`'s CFI that describe it once the context is suspended. (An unwinder
//! stopped *inside* the dozen instructions of a switch, by a sampling profiler for
//! instance, sees the enclosing function's CFI and may misplace that one frame;
//! corosensei has the same window. So has the first instruction of the trampoline,
//! before x29 holds the context's address: the switch frame gives x29 the address of a
//! word that points at `TERMINAL_FRAME`, which ends the unwind there.)
//!
//! This chain only ever names suspended frames: the context that resumed us has been
//! suspended since, and so has the one that resumed it, back to the thread's stack.
//! [`AsmContext::exit`] breaks that rule, since the context that resumes its target is
//! going away, so `exit` points the target's link at `TERMINAL_FRAME`, a switch frame
//! of zeros whose resume address 0 ends every unwind.
//!
//! The link and the word after it in the context, an address inside `trampoline`, form a
//! frame record {link, return address}: x29 pointing at the context continues the x29
//! chain into the resumer's switch frame, for profilers that walk frame pointers instead
//! of reading CFI.
//!
//! `trampoline` is marked as a signal frame, as corosensei does: GDB refuses a backtrace
//! whose frame addresses go down, which is what a jump to a stack mapped below the
//! current one looks like. It also changes where unwinders look up unwind info: the
//! resumer's frame is looked up at its exact resume address rather than the byte before,
//! and GDB does the same for the trampoline's own frame, which is why the branch into
//! `entry` is followed by a `brk`, where its return address points: it keeps that address
//! inside the function.
//! The resume address is the first instruction after the switch's block, inside the same
//! function (the block has outputs, so code follows it), and the instruction before it
//! is inside the block, where the function's CFI is the same: either lookup finds the
//! right row.

use crate::stack::GuardedStack;
use crate::{Context, EntryFn};
use core::arch::{asm, naked_asm};
use core::mem::offset_of;
use core::ptr::{self, NonNull};

/// A context on the AArch64 assembly backend.
///
/// ```
/// use greenlet_backends::arch::aarch64::AsmContext;
/// use greenlet_backends::{Context, stack::GuardedStack};
///
/// unsafe extern "C" fn child(value: usize, data: *mut ()) -> ! {
///     let [main, me] = unsafe { *(data as *const [*mut AsmContext; 2]) };
///     // Leave for good, handing back one more than we were given.
///     unsafe { AsmContext::exit(me, main, value + 1) }
/// }
///
/// let mut main = AsmContext::thread();
/// let mut child_ctx = AsmContext::new(
///     GuardedStack::new(64 * 1024).unwrap(),
///     child,
///     std::ptr::null_mut(),
/// );
/// let pair = [&raw mut main, &raw mut child_ctx];
/// unsafe { (*pair[1]).set_data(&pair as *const _ as *mut ()) };
/// assert_eq!(unsafe { AsmContext::switch(pair[0], pair[1], 41) }, 42);
/// let stack = unsafe { child_ctx.into_stack() };
/// assert!(stack.is_some());
/// ```
///
/// Dropping a suspended context frees its stack without running anything on it: what its
/// frames own is leaked. Do not free the stack of a context that the running context's
/// resume chain passes through (see the module docs): backtraces and panics taken
/// afterwards would read the freed stack.
#[repr(C)]
pub struct AsmContext {
    /// The frame record of the switch frame of whoever resumed this context last (see the
    /// module docs), rewritten by every switch into it; `TERMINAL_FRAME` until then. Never
    /// null, which gives `Option<AsmContext>` a niche: a `Some` is the context itself, at
    /// offset 0, with no tag in front. With `return_address`, the bottom frame record of
    /// the context's x29 chain.
    link: NonNull<u8>,
    /// An address inside `trampoline`: the return-address half of the frame record above.
    return_address: usize,
    /// Where the switch frame of the suspended context is; null for a thread context
    /// that has never been switched away from.
    sp: *mut u8,
    /// `None` for the thread's context.
    stack: Option<GuardedStack>,
    /// The stack's usable size; 0 for the thread's context. Kept beside the stack, so that
    /// [`Context::stack_size`] is one load, with no test for a stack (the core asks it on
    /// every start of a greenlet).
    stack_size: usize,
}

// The niche the greenlet core's layout relies on (see `AsmContext::link`).
const _: () = assert!(size_of::<Option<AsmContext>>() == size_of::<AsmContext>());
// `trampoline`'s CFI reads the link at offset 0 of the context, and its x29 points at the
// frame record {link, return address}.
const _: () = assert!(offset_of!(AsmContext, link) == 0);
const _: () = assert!(offset_of!(AsmContext, return_address) == 8);

/// Bytes in a switch frame: saved x29, resume address, saved x19 and an unused word that
/// keeps sp 16-byte aligned.
const SWITCH_FRAME: usize = 4 * 8;
/// Word offsets, from a switch frame's start, of the slots `new` fills. The frame record
/// {x29, resume address} starts at word 0, so a link points at the frame itself.
const X29_WORD: usize = 0;
const RESUME_WORD: usize = 1;
const X19_WORD: usize = 2;
/// Bytes above the initial switch frame: an unused word, and data.
const TOP_RESERVED: usize = 2 * 8;
/// Word offsets from the top of a new context's stack, counted down (see the diagram).
const TOP_DATA: usize = 1;
const TOP_UNUSED: usize = 2;
/// `data` seen from the initial switch frame's start: top - 8 = (top - 48) + 40.
const DATA_WORD: usize = (TOP_RESERVED + SWITCH_FRAME) / 8 - TOP_DATA;

// The assembly and the CFI bytes spell out the switch frame as 32 bytes, and `data` at
// sp + 8 inside `trampoline` (see the module docs).
const _: () = assert!(SWITCH_FRAME == 32 && TOP_RESERVED == 16);
const _: () = assert!(SWITCH_FRAME.is_multiple_of(16) && TOP_RESERVED.is_multiple_of(16));
const _: () = assert!((TOP_UNUSED - TOP_DATA) * 8 == 8);
// x19 at CFA - 16, where `trampoline`'s CFI and the `str x19, [sp, #16]` of the switch
// put it; the word above it is the unused one.
const _: () = assert!(X19_WORD * 8 == SWITCH_FRAME - 16);
const _: () = assert!(DATA_WORD == 5);

/// A switch frame of zeros: the link of a context resumed by [`AsmContext::exit`] points
/// at it, and its resume address 0 ends every unwind. The unwinder reads x29, the resume
/// address and x19 from it, so the whole frame must exist.
static TERMINAL_FRAME: [usize; SWITCH_FRAME / 8] = [0; SWITCH_FRAME / 8];

/// What x29 holds in a new context until its `trampoline` points it at the context: the
/// address of this word, which reads, as a context's link would, `TERMINAL_FRAME`.
static TERMINAL_LINK: &[usize; SWITCH_FRAME / 8] = &TERMINAL_FRAME;

/// The return-address half of the bottom frame record of every context: an address inside
/// `trampoline`, for frame-pointer walkers to name.
fn trampoline_return_address() -> usize {
    trampoline as *const () as usize + 4
}

/// The second half of a switch, shared by [`AsmContext::switch`] and
/// [`AsmContext::exit`]: resumes the context whose switch frame is at x12 (its `sp`,
/// already read; its link already written). x0 (the value handed over) passes through
/// untouched; x9 is overwritten. FPCR is left as it is: it is the thread's.
macro_rules! resume_x12 {
    () => {
        concat!(
            // The target's frame: x29 and the resume address, then x19. The fourth word
            // is unused.
            "ldp x29, x9, [x12]\n",
            "ldr x19, [x12, #16]\n",
            // From here on sp is the target's: where it was when its switch began.
            "add sp, x12, #32\n",
            // Into the target's switch, or into `trampoline` for a new context; a `br`,
            // not a `ret` (see the module docs).
            "br x9\n",
        )
    };
}

/// Writes, below `top`, what the first switch into a context reads: a switch frame that
/// resumes in `trampoline` with `entry` in the x19 slot, and `data` (the address the
/// trampoline hands `entry`) above it; returns the context's `sp`. `new` and `restart`
/// both write these words: a context's run overwrites the switch frame, and `restart` may
/// be given other data (see the module docs).
///
/// # Safety
///
/// `top` is the top of a stack of at least `TOP_RESERVED + SWITCH_FRAME` usable bytes,
/// owned by the caller, on which nothing runs.
#[inline(always)]
unsafe fn write_start_frame(top: *mut usize, entry: EntryFn, data: usize) -> *mut u8 {
    // SAFETY: the caller's contract: the words written lie in the stack's usable part.
    unsafe {
        let frame = top.sub((TOP_RESERVED + SWITCH_FRAME) / 8);
        top.sub(TOP_DATA).write(data);
        frame.add(X29_WORD).write(&raw const TERMINAL_LINK as usize);
        frame
            .add(RESUME_WORD)
            .write(trampoline as *const () as usize);
        frame.add(X19_WORD).write(entry as usize);
        frame.cast::<u8>()
    }
}

/// The bottom frame of every context: enters `entry(value, data)`, which never returns.
///
/// Never called: the first switch into a new context branches into it with sp at
/// top - 16, x0 = the value switched in, x2 = the context, x19 = entry and x29 = the
/// address of `TERMINAL_LINK` (see the module docs).
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        // The caller (the resumer) has CFA = [x29] + 32, so:
        //   0x0f        DW_CFA_def_cfa_expression
        //   5           length of the expression in bytes
        //   0x8d 0x00   DW_OP_breg29 (x29) + 0: the context's address
        //   0x06        DW_OP_deref: its link (its first field), the resumer's switch frame
        //   0x23 0x20   DW_OP_plus_uconst 32: past its four words, to the resumer's CFA
        // x29 keeps the context's address from the first instruction on (the functions
        // `entry` calls save and restore it), so this one rule holds everywhere.
        ".cfi_escape 0x0f, 5, 0x8d, 0x00, 0x06, 0x23, 0x20",
        // The resumer's registers, where its switch frame keeps them below that CFA. x30
        // is the return-address column: the resumer continues at its resume address.
        ".cfi_offset x19, -16",
        ".cfi_offset x30, -24",
        ".cfi_offset x29, -32",
        // The context, in x2 since the switch, is where the unwinder finds the link; for
        // frame-pointer walkers, its first two words are the frame record {link, an
        // address in here} -> the resumer.
        "mov x29, x2",
        "ldr x1, [sp, #8]",
        // Into `entry` as `blr` would, but without pushing on the return-address
        // predictor (see the module docs): the return address is set by hand.
        "adr x30, 2f",
        "br x19",
        // `entry` never returns; this keeps the return address inside the function.
        "2:",
        "brk #0",
        ".cfi_endproc",
    )
}

unsafe impl Context for AsmContext {
    const NAME: &'static str = "asm-aarch64";

    fn thread() -> Self {
        AsmContext {
            link: NonNull::from(&TERMINAL_FRAME).cast(),
            return_address: 0,
            sp: ptr::null_mut(),
            stack: None,
            stack_size: 0,
        }
    }

    // Inlined: returned through memory, a context was copied into place with 16-byte loads
    // over the 8-byte stores that had just built it, a store-forwarding stall per start.
    #[inline]
    fn new(stack: GuardedStack, entry: EntryFn, data: *mut ()) -> Self {
        assert!(stack.usable_size() >= TOP_RESERVED + SWITCH_FRAME);
        let top = stack.top().cast::<usize>();
        // SAFETY: `top` is 16-byte aligned and the 48 bytes below it lie in the usable
        // part of a stack we own exclusively (checked just above); nothing runs on it yet.
        // The loop zeroes every word, the unused ones included, before the rest is written.
        let sp = unsafe {
            let frame = top.sub((TOP_RESERVED + SWITCH_FRAME) / 8);
            for word in 0..(TOP_RESERVED + SWITCH_FRAME) / 8 {
                frame.add(word).write(0);
            }
            write_start_frame(top, entry, data as usize)
        };
        AsmContext {
            link: NonNull::from(&TERMINAL_FRAME).cast(),
            return_address: trampoline_return_address(),
            sp,
            stack_size: stack.usable_size(),
            stack: Some(stack),
        }
    }

    #[inline]
    fn stack_size(&self) -> usize {
        debug_assert_eq!(
            self.stack_size,
            self.stack.as_ref().map_or(0, GuardedStack::usable_size)
        );
        self.stack_size
    }

    // Only the switch frame and the data word are written: the run that exited entered
    // `entry` from `trampoline` with sp at top - 16 and wrote nothing there or above.
    #[inline]
    unsafe fn restart(this: *mut Self, entry: EntryFn, data: *mut ()) {
        // SAFETY: the caller's contract: `this` is a context made by `new` that has exited,
        // referenced by nothing else, so its stack is ours and nothing runs on it; the
        // words written lie in the part of it `new` checked.
        unsafe {
            debug_assert!(
                (*this).stack.is_some(),
                "Context::restart: the thread's context has no stack to restart on"
            );
            // A context made by `new` has a stack (the caller's contract).
            let stack = (*this).stack.as_ref().unwrap_unchecked();
            (*this).sp = write_start_frame(stack.top().cast::<usize>(), entry, data as usize);
        }
    }

    unsafe fn set_data(&mut self, data: *mut ()) {
        debug_assert!(
            self.stack.is_some(),
            "the thread's context has no entry data"
        );
        // SAFETY: the context has not been resumed (caller's contract), so `sp` still
        // points at the initial switch frame `new` wrote, `DATA_WORD` words below `data`.
        unsafe { self.sp.cast::<usize>().add(DATA_WORD).write(data as usize) };
    }

    #[inline(always)]
    unsafe fn switch(from: *mut Self, to: *mut Self, value: usize) -> usize {
        let back: usize;
        // SAFETY: `from` is running and `to` is new or suspended, so its `sp` points at a
        // switch frame; neither moves until resumed, nor `to` until it exits (all the
        // caller's contract), so the link written through `to` is where its trampoline's
        // CFI finds it. The block leaves sp
        // where it found it and restores x19 and x29; every other register it may change
        // is declared clobbered. Without `nostack`, it may store below sp, which is
        // 16-byte aligned.
        unsafe {
            debug_assert!(
                !(*to).sp.is_null(),
                "switch to a context that cannot resume"
            );
            asm!(
                // The target's frame, read first: `to` is not `from`.
                "ldr x12, [x2, #{sp}]",
                // Build the switch frame. No CFI here (see the module docs); the lines of
                // `trampoline`'s CFI that find each word are named beside it.
                "adr x9, 2f",                 // where this context resumes
                "stp x29, x9, [sp, #-32]!",   // .cfi_offset x29, -32; .cfi_offset x30, -24
                "str x19, [sp, #16]",         // .cfi_offset x19, -16; CFA - 8 stays unused
                // Suspend: the frame is complete, publish it.
                "mov x9, sp",
                "str x9, [x1, #{sp}]",
                // Link the target to its resumer: our frame.
                "str x9, [x2, #{link}]",
                resume_x12!(),
                // Resumed: the switch that resumed us restored sp and branched here.
                "2:",
                sp = const offset_of!(AsmContext, sp),
                link = const offset_of!(AsmContext, link),
                inlateout("x0") value => back,
                in("x1") from,
                in("x2") to,
                lateout("x20") _,
                lateout("x21") _,
                lateout("x22") _,
                lateout("x23") _,
                lateout("x24") _,
                lateout("x25") _,
                lateout("x26") _,
                lateout("x27") _,
                lateout("x28") _,
                lateout("v8") _,
                lateout("v9") _,
                lateout("v10") _,
                lateout("v11") _,
                lateout("v12") _,
                lateout("v13") _,
                lateout("v14") _,
                lateout("v15") _,
                clobber_abi("C"),
            );
        }
        back
    }

    #[inline(always)]
    unsafe fn exit(from: *mut Self, to: *mut Self, value: usize) -> ! {
        // SAFETY: as for `switch`; `from` never runs again, so marking it unresumable
        // only turns a later misuse into a debug assertion rather than a wild jump, and
        // nothing of it is saved. The terminal frame is a static, readable for as long
        // as `to` runs.
        unsafe {
            debug_assert!(
                !(*to).sp.is_null(),
                "switch to a context that cannot resume"
            );
            // Only for the assertion above: nothing else reads an exited context's `sp`
            // (`restart` writes it anew).
            if cfg!(debug_assertions) {
                (*from).sp = ptr::null_mut();
            }
            asm!(
                "ldr x12, [x2, #{sp}]",
                // No live resumer: link the target to the terminal frame.
                "str x9, [x2, #{link}]",
                resume_x12!(),
                sp = const offset_of!(AsmContext, sp),
                link = const offset_of!(AsmContext, link),
                in("x0") value,
                in("x2") to,
                in("x9") TERMINAL_FRAME.as_ptr(),
                options(noreturn),
            )
        }
    }

    unsafe fn into_stack(self) -> Option<GuardedStack> {
        self.stack
    }
}
