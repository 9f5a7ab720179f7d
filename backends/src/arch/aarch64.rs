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
//!    top -  8  | trampoline addr  |  return-address half of the bottom frame record
//!    top - 16  | link             |  <- x29 inside `trampoline` points here
//!    top - 24  | data             |  [`AsmContext::set_data`] rewrites this word
//!    top - 32  | 0 (padding)      |  <- sp inside `trampoline`, 16-byte aligned
//!              +------------------+
//!    top - 40  | 0 (unused)       |
//!    top - 48  | x19 = entry      |
//!    top - 56  | trampoline addr  |  "resume address": the first switch branches here
//!    top - 64  | x29 = 0          |
//!              +------------------+  <- initial AsmContext::sp = top - 32 - 32 = top - 64
//! ```
//!
//! The first switch in loads this frame, sets sp = top - 64 + 32 = top - 32 and branches
//! into `trampoline` with the value switched in still in x0, where the block keeps it.
//! The trampoline enters `entry(value, data)` with sp = top - 32: 16-byte aligned, as
//! AAPCS64 requires. It does not `blr` to it: it sets the return address in x30 itself and
//! branches with `br`, so that the return-address predictor gets no entry that `entry`
//! (which never returns) would leave there, mispredicting the next return of the code
//! resumed after this context ends. `entry` never returns, so nothing above top - 32 is
//! ever popped.
//! Nothing on the stack points at the [`AsmContext`] itself, which may move freely until
//! it is first resumed.
//!
//! # Linked backtraces
//!
//! The word at top - 16, the *link*, points at the frame record of the switch frame of
//! whoever resumed this context last: every switch into a context rewrites it
//! (`AsmContext::link` says where it is). A thread's context has no such slot; its
//! `link` points at `LINK_SINK`, a thread-local word nothing reads, so that the switch
//! writes a link without asking whether there is one. `trampoline`'s CFI tells the
//! unwinder that its caller's CFA is `[sp + 16] + 32`, read through the link, and that
//! the caller's x29, resume address (the return-address column, x30) and x19 are saved
//! below that CFA as in any switch frame. From there the unwinder is in the resumer's own
//! function, at the label ending its switch, with sp as it was when the switch began:
//! that function's own CFI, which knows nothing of the switch frame, describes the rest
//! of its frame, including the x20-x28 and d8-d15 its prologue saved. Backtraces,
//! debuggers and the panic runtime's search phase therefore walk from a context's
//! frames into the code that resumed it, and on through that code's own resumer.
//!
//! The stores in the switch carry no CFI of their own: the block sits inside a function
//! the compiler lays out, whose CFA may be defined by sp or by x29, so no directive in
//! it could be right in both cases. Each store names instead the lines of
//! `trampoline`'s CFI that describe it once the context is suspended. (An unwinder
//! stopped *inside* the twelve instructions of a switch, by a sampling profiler for
//! instance, sees the enclosing function's CFI and may misplace that one frame;
//! corosensei has the same window.)
//!
//! This chain only ever names suspended frames: the context that resumed us has been
//! suspended since, and so has the one that resumed it, back to the thread's stack.
//! [`AsmContext::exit`] breaks that rule, since the context that resumes its target is
//! going away, so `exit` points the target's link at `TERMINAL_FRAME`, a switch frame
//! of zeros whose resume address 0 ends every unwind.
//!
//! The frame record at top - 16, {link, trampoline address}, continues the x29 chain in
//! the same way, for profilers that walk frame pointers instead of reading CFI.
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
use core::cell::Cell;
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
    /// Where the switch frame of the suspended context is; null for a thread context
    /// that has never been switched away from.
    sp: *mut u8,
    /// The link slot at the top of this context's stack, rewritten on every switch into
    /// the context; this thread's `LINK_SINK` for the thread's context. Never null, which
    /// gives `Option<AsmContext>` a niche: a `Some` is the context itself, at offset 0,
    /// with no tag in front.
    link: NonNull<*const u8>,
    /// `None` for the thread's context.
    stack: Option<GuardedStack>,
}

// The niche the greenlet core's layout relies on (see `AsmContext::link`).
const _: () = assert!(size_of::<Option<AsmContext>>() == size_of::<AsmContext>());

/// Bytes in a switch frame: saved x29, resume address, saved x19 and an unused word that
/// keeps sp 16-byte aligned.
const SWITCH_FRAME: usize = 4 * 8;
/// Word offsets, from a switch frame's start, of the slots `new` fills. The frame record
/// {x29, resume address} starts at word 0, so a link points at the frame itself.
const X29_WORD: usize = 0;
const RESUME_WORD: usize = 1;
const X19_WORD: usize = 2;
/// Bytes above the initial switch frame: padding, data, link, trampoline address.
const TOP_RESERVED: usize = 4 * 8;
/// Word offsets from the top of a new context's stack, counted down (see the diagram).
const TOP_TRAMPOLINE: usize = 1;
const TOP_LINK: usize = 2;
const TOP_DATA: usize = 3;
/// `data` seen from the initial switch frame's start: top - 24 = (top - 64) + 40.
const DATA_WORD: usize = (TOP_RESERVED + SWITCH_FRAME) / 8 - TOP_DATA;

// The assembly and the CFI bytes spell both sizes out as 32 (see the module docs).
const _: () = assert!(SWITCH_FRAME == 32 && TOP_RESERVED == 32);
const _: () = assert!(SWITCH_FRAME.is_multiple_of(16) && TOP_RESERVED.is_multiple_of(16));
// x19 at CFA - 16, where `trampoline`'s CFI and the `str x19, [sp, #16]` of the switch
// put it; the word above it is the unused one.
const _: () = assert!(X19_WORD * 8 == SWITCH_FRAME - 16);
const _: () = assert!(DATA_WORD == 5);

/// A switch frame of zeros: the link of a context resumed by [`AsmContext::exit`] points
/// at it, and its resume address 0 ends every unwind. The unwinder reads x29, the resume
/// address and x19 from it, so the whole frame must exist.
static TERMINAL_FRAME: [usize; SWITCH_FRAME / 8] = [0; SWITCH_FRAME / 8];

std::thread_local! {
    /// Where switches into a thread's context write the link it has no slot for; never
    /// read. Constant-initialised and without a destructor, so it lives, at one address,
    /// as long as the thread.
    static LINK_SINK: Cell<*const u8> = const { Cell::new(ptr::null()) };
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

/// The bottom frame of every context: enters `entry(value, data)`, which never returns.
///
/// Never called: the first switch into a new context branches into it with sp at
/// top - 32, x0 = the value switched in and x19 = entry (see the module docs).
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        // The caller (the resumer) has CFA = [link] + 32 and link = sp + 16, so:
        //   0x0f        DW_CFA_def_cfa_expression
        //   5           length of the expression in bytes
        //   0x8f 0x10   DW_OP_breg31 (sp) + 16: the address of the link slot
        //   0x06        DW_OP_deref: the link, the resumer's switch frame
        //   0x23 0x20   DW_OP_plus_uconst 32: past its four words, to the resumer's CFA
        // sp stays at top - 32 throughout, so this rule holds everywhere in the function.
        ".cfi_escape 0x0f, 5, 0x8f, 0x10, 0x06, 0x23, 0x20",
        // The resumer's registers, where its switch frame keeps them below that CFA. x30
        // is the return-address column: the resumer continues at its resume address.
        ".cfi_offset x19, -16",
        ".cfi_offset x30, -24",
        ".cfi_offset x29, -32",
        // Frame-pointer walkers: x29 -> {link, trampoline address} -> the resumer.
        "add x29, sp, #16",
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
            sp: ptr::null_mut(),
            // The context is only ever used on this thread (it is not `Send`), where the
            // sink stays valid; writing to it through this pointer is all anyone does.
            // SAFETY: a thread-local's address is never null.
            link: unsafe { NonNull::new_unchecked(LINK_SINK.with(Cell::as_ptr)) },
            stack: None,
        }
    }

    // Inlined: returned through memory, a context was copied into place with 16-byte loads
    // over the 8-byte stores that had just built it, a store-forwarding stall per start.
    #[inline]
    fn new(stack: GuardedStack, entry: EntryFn, data: *mut ()) -> Self {
        assert!(stack.usable_size() >= TOP_RESERVED + SWITCH_FRAME);
        let top = stack.top().cast::<usize>();
        let tramp = trampoline as *const () as usize;
        // SAFETY: `top` is 16-byte aligned and the 64 bytes below it lie in the usable
        // part of a stack we own exclusively (checked just above); nothing runs on it yet.
        // The loop zeroes every word, the unused word of the switch frame included.
        let (sp, link) = unsafe {
            let frame = top.sub((TOP_RESERVED + SWITCH_FRAME) / 8);
            for word in 0..(TOP_RESERVED + SWITCH_FRAME) / 8 {
                frame.add(word).write(0);
            }
            top.sub(TOP_TRAMPOLINE).write(tramp);
            top.sub(TOP_LINK).write(TERMINAL_FRAME.as_ptr() as usize);
            top.sub(TOP_DATA).write(data as usize);
            frame.add(X29_WORD).write(0);
            frame.add(RESUME_WORD).write(tramp);
            frame.add(X19_WORD).write(entry as usize);
            // An address inside the stack: never null.
            let link = NonNull::new_unchecked(top.sub(TOP_LINK).cast::<*const u8>());
            (frame.cast::<u8>(), link)
        };
        AsmContext {
            sp,
            link,
            stack: Some(stack),
        }
    }

    #[inline]
    fn stack_size(&self) -> usize {
        self.stack.as_ref().map_or(0, GuardedStack::usable_size)
    }

    // Only the switch frame and the data word are written: the run that exited entered
    // `entry` from `trampoline` with sp at top - 32 and wrote nothing above that but
    // the link slot, which the next switch in rewrites before anything reads it. The
    // trampoline address and the padding above are as `new` wrote them.
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
            let top = stack.top().cast::<usize>();
            let frame = top.sub((TOP_RESERVED + SWITCH_FRAME) / 8);
            top.sub(TOP_DATA).write(data as usize);
            frame.add(X29_WORD).write(0);
            frame
                .add(RESUME_WORD)
                .write(trampoline as *const () as usize);
            frame.add(X19_WORD).write(entry as usize);
            (*this).sp = frame.cast::<u8>();
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
        // switch frame and its link at a live link slot (or at this thread's sink);
        // neither moves until resumed (all the caller's contract). The block leaves sp
        // where it found it and restores x19 and x29; every other register it may change
        // is declared clobbered. Without `nostack`, it may store below sp, which is
        // 16-byte aligned.
        unsafe {
            debug_assert!(
                !(*to).sp.is_null(),
                "switch to a context that cannot resume"
            );
            asm!(
                // The target's frame and link slot, read first: `to` is not `from`.
                "ldr x12, [x2, #{sp}]",
                "ldr x11, [x2, #{link}]",
                // Build the switch frame. No CFI here (see the module docs); the lines of
                // `trampoline`'s CFI that find each word are named beside it.
                "adr x9, 2f",                 // where this context resumes
                "stp x29, x9, [sp, #-32]!",   // .cfi_offset x29, -32; .cfi_offset x30, -24
                "str x19, [sp, #16]",         // .cfi_offset x19, -16; CFA - 8 stays unused
                // Suspend: the frame is complete, publish it.
                "mov x9, sp",
                "str x9, [x1, #{sp}]",
                // Link the target to its resumer: our frame.
                "str x9, [x11]",
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
                "ldr x11, [x2, #{link}]",
                // No live resumer: link the target to the terminal frame.
                "str x9, [x11]",
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
