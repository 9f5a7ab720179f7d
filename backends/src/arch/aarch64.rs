//! AArch64 (AAPCS64) backend: context switching in hand-written `naked` assembly.
//!
//! A WORD OF CAUTION: read this whole file before changing any of it. The frame layout
//! drawn here, the offsets in the assembly, the words [`AsmContext::new`] writes and the
//! CFI byte strings all encode the same facts; change one and you must change them all.
//!
//! # What a switch saves
//!
//! AAPCS64 lets a called function clobber everything except x19-x28, the frame pointer
//! x29, sp and the low 64 bits of v8-v15 (d8-d15). `switch_impl` is called like any
//! function (with `bl`, so x30 holds its return address), so the compiler has already
//! saved everything else around the call; `switch_impl` saves x19-x30 and d8-d15 on the
//! running stack, stores sp in `from.sp`, loads `to.sp` and restores the same set.
//!
//! FPCR (rounding mode, flush-to-zero, default NaN) is saved per context as well, the
//! same policy as MXCSR on x86-64: a context that changes its rounding mode does not
//! change anyone else's, and a new context starts with the FPCR of the code that created
//! it, as a new POSIX thread does. Writing FPCR can stall the pipeline on some cores, so
//! the switch writes it only when the resumed context's value differs from the current
//! one. FPSR (the cumulative exception flags) is status, not control, and stays shared.
//!
//! # The switch frame
//!
//! A suspended context's `sp` points at the frame `switch_impl` stored:
//!
//! ```text
//!              +------------------+  <- CFA: the caller's sp once `switch_impl` returns
//!     sp + 168 | (unused)         |
//!     sp + 160 | FPCR             |
//!     sp + 152 | d15              |
//!       ...    |  ...             |  d(8 + k) at sp + 96 + 8k
//!     sp +  96 | d8               |
//!     sp +  88 | x28              |
//!       ...    |  ...             |  x(19 + k) at sp + 16 + 8k
//!     sp +  16 | x19              |
//!     sp +   8 | x30 (lr)         |  the return address into the caller
//!     sp +   0 | x29 (fp)         |  <- frame record {x29, x30}: the link slot of
//!              +------------------+     whatever this context resumes points here
//!                                   <- AsmContext::sp
//! ```
//!
//! Offsets: twelve general registers (x19-x30) take 12 * 8 = 96 bytes, eight d registers
//! 8 * 8 = 64, FPCR 8 more; 96 + 64 + 8 = 168, rounded up to the 16-byte alignment sp
//! must keep is 176. The pairs go in with `stp`, 16 bytes apart: x29/x30 at 0, x19/x20
//! at 16, x21/x22 at 32, x23/x24 at 48, x25/x26 at 64, x27/x28 at 80, d8/d9 at 96,
//! d10/d11 at 112, d12/d13 at 128, d14/d15 at 144, FPCR at 160. The CFA (the caller's sp
//! after the return) is `sp + 176`; counted down from it each slot at `sp + n` is at
//! `CFA - (176 - n)`: x29 -176, x30 -168, x19 -160, ..., x28 -88, d8 -80, ..., d15 -24.
//! The frame record sits at `sp + 0`, so a context's `sp` *is* its frame record.
//!
//! # A new context
//!
//! [`AsmContext::new`] writes, at the top of the context's stack, a switch frame that
//! looks as if the context had called `switch_impl` from the first instruction of
//! `trampoline`, with `entry` and `data` in the x19 and x20 slots:
//!
//! ```text
//!              +------------------+  <- GuardedStack::top(), 16-byte aligned
//!    top -   8 | trampoline addr  |  return-address half of the bottom frame record
//!    top -  16 | link             |  <- sp inside `trampoline`; x29 there points here too
//!              +------------------+
//!    top -  24 | (unused)         |
//!    top -  32 | FPCR of creator  |
//!    top -  40 | d15 = 0          |
//!       ...    |  ...             |  d(8 + k) at top - 96 + 8k, all 0
//!    top -  96 | d8 = 0           |
//!    top - 104 | x28 = 0          |
//!       ...    |  ...             |  x(19 + k) at top - 176 + 8k, 0 from x21 up
//!    top - 168 | x20 = data       |  [`AsmContext::set_data`] rewrites this word
//!    top - 176 | x19 = entry      |
//!    top - 184 | x30 = trampoline |  the first switch in `ret`s here
//!    top - 192 | x29 = 0          |
//!              +------------------+  <- initial AsmContext::sp = top - 16 - 176 = top - 192
//! ```
//!
//! The first switch in pops this frame (sp = top - 192 + 176 = top - 16) and returns into
//! `trampoline`, which calls `entry(value, data)` with sp = top - 16, 16-byte aligned as
//! AAPCS64 requires. `entry` never returns, so nothing above top - 16 is ever popped.
//! Nothing in the frame points at the [`AsmContext`] itself, which may move freely until
//! it is first resumed.
//!
//! # Linked backtraces
//!
//! The word at top - 16, the *link*, points at the frame record (the `sp`) of the switch
//! frame of whoever resumed this context last: every switch into a context rewrites it
//! (`AsmContext::link` says where it is). `trampoline`'s CFI tells the unwinder that its
//! caller's CFA is `[sp] + 176`, read through the link, and that the caller's registers
//! are saved below that CFA as in any switch frame. Backtraces, debuggers and the panic
//! runtime's search phase therefore walk from a context's frames into the code that
//! resumed it, and on through that code's own resumer.
//!
//! This chain only ever names suspended frames: the context that resumed us has been
//! suspended since, and so has the one that resumed it, back to the thread's stack.
//! [`AsmContext::exit`] breaks that rule, since the context that resumes its target is
//! going away, so `exit` points the target's link at `TERMINAL_FRAME`, a switch frame
//! of zeros whose return address 0 ends every unwind.
//!
//! The frame record at top - 16, {link, trampoline address}, continues the x29 chain in
//! the same way, for profilers that walk frame pointers instead of reading CFI.
//!
//! `trampoline` is marked as a signal frame, as corosensei does: GDB refuses a backtrace
//! whose frame addresses go down, which is what a jump to a stack mapped below the
//! current one looks like. It also changes where unwinders look up unwind info: the
//! resumer's frame is looked up at its exact return address rather than the byte before,
//! and GDB does the same for the trampoline's own frame, which is why the call into
//! `entry` is followed by a `brk`: it keeps that return address inside the function.

use crate::stack::GuardedStack;
use crate::{Context, EntryFn};
use core::arch::naked_asm;
use core::mem::offset_of;
use core::ptr;

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
    /// the context; null for the thread's context.
    link: *mut *const u8,
    /// `None` for the thread's context.
    stack: Option<GuardedStack>,
}

/// Bytes in a switch frame: x19-x30, d8-d15 and FPCR, rounded up to 16.
const SWITCH_FRAME: usize = (12 + 8 + 1 + 1) * 8;
/// Bytes above the initial switch frame: the link slot and the word above it.
const TOP_RESERVED: usize = 16;
/// Word offsets, from a switch frame's start, of the slots `new` fills.
const X30_WORD: usize = 1;
const X19_WORD: usize = 2;
const X20_WORD: usize = 3;
const FPCR_WORD: usize = 20;

const _: () = assert!(SWITCH_FRAME == 176 && SWITCH_FRAME.is_multiple_of(16));
const _: () = assert!(FPCR_WORD * 8 == 160);

/// A switch frame of zeros: the link of a context resumed by [`AsmContext::exit`] points
/// at its frame record (word 0), whose return address 0 ends every unwind. The unwinder
/// reads the saved registers from all over the frame, so all of it must exist.
static TERMINAL_FRAME: [usize; SWITCH_FRAME / 8] = [0; SWITCH_FRAME / 8];

fn terminal_record() -> *const u8 {
    TERMINAL_FRAME.as_ptr().cast()
}

/// The second half of `switch_impl`, shared with `exit_impl`: resumes the context in x1,
/// pointing its link (if it has one) at the frame record in x9, and returns x0 to it.
///
/// Uses the `sp` and `link` const operands of the `naked_asm!` it is expanded into.
macro_rules! resume_x1 {
    () => {
        concat!(
            // Link the target to its resumer, unless it is a thread context (link null).
            "ldr x10, [x1, #{link}]\n",
            "cbz x10, 2f\n",
            "str x9, [x10]\n",
            "2:\n",
            // From here on sp is the target's switch frame; its layout is ours.
            "ldr x9, [x1, #{sp}]\n",
            "mov sp, x9\n",
            ".cfi_def_cfa sp, 176\n",
            ".cfi_offset x29, -176\n",
            ".cfi_offset x30, -168\n",
            ".cfi_offset x19, -160\n",
            ".cfi_offset x20, -152\n",
            ".cfi_offset x21, -144\n",
            ".cfi_offset x22, -136\n",
            ".cfi_offset x23, -128\n",
            ".cfi_offset x24, -120\n",
            ".cfi_offset x25, -112\n",
            ".cfi_offset x26, -104\n",
            ".cfi_offset x27, -96\n",
            ".cfi_offset x28, -88\n",
            ".cfi_offset d8, -80\n",
            ".cfi_offset d9, -72\n",
            ".cfi_offset d10, -64\n",
            ".cfi_offset d11, -56\n",
            ".cfi_offset d12, -48\n",
            ".cfi_offset d13, -40\n",
            ".cfi_offset d14, -32\n",
            ".cfi_offset d15, -24\n",
            "ldp x19, x20, [sp, #16]\n",
            "ldp x21, x22, [sp, #32]\n",
            "ldp x23, x24, [sp, #48]\n",
            "ldp x25, x26, [sp, #64]\n",
            "ldp x27, x28, [sp, #80]\n",
            "ldp d8, d9, [sp, #96]\n",
            "ldp d10, d11, [sp, #112]\n",
            "ldp d12, d13, [sp, #128]\n",
            "ldp d14, d15, [sp, #144]\n",
            // FPCR only if it differs: writing it may stall.
            "ldr x9, [sp, #160]\n",
            "mrs x10, fpcr\n",
            "cmp x9, x10\n",
            "b.eq 3f\n",
            "msr fpcr, x9\n",
            "3:\n",
            "ldp x29, x30, [sp], #176\n",
            ".cfi_def_cfa_offset 0\n",
            ".cfi_restore x29\n",
            ".cfi_restore x30\n",
            ".cfi_restore x19\n",
            ".cfi_restore x20\n",
            ".cfi_restore x21\n",
            ".cfi_restore x22\n",
            ".cfi_restore x23\n",
            ".cfi_restore x24\n",
            ".cfi_restore x25\n",
            ".cfi_restore x26\n",
            ".cfi_restore x27\n",
            ".cfi_restore x28\n",
            ".cfi_restore d8\n",
            ".cfi_restore d9\n",
            ".cfi_restore d10\n",
            ".cfi_restore d11\n",
            ".cfi_restore d12\n",
            ".cfi_restore d13\n",
            ".cfi_restore d14\n",
            ".cfi_restore d15\n",
            // Into the target's caller, or into `trampoline` for a new context.
            "ret\n",
        )
    };
}

/// Saves the running context into `from`, resumes `to` and returns `value` to it.
///
/// Returns, in the saved context, whatever the switch that resumes it passes.
///
/// # Safety
///
/// As for [`Context::switch`]; `to.sp` must point at a switch frame.
#[unsafe(naked)]
unsafe extern "C" fn switch_impl(
    from: *mut AsmContext,
    to: *mut AsmContext,
    value: usize,
) -> usize {
    // x0 = from, x1 = to, x2 = value. Scratch: x9, x10 (caller-saved temporaries).
    naked_asm!(
        ".cfi_startproc",
        // Build the switch frame; each store is paired with its CFI.
        "stp x29, x30, [sp, #-176]!",
        ".cfi_def_cfa_offset 176",
        ".cfi_offset x29, -176",
        ".cfi_offset x30, -168",
        "stp x19, x20, [sp, #16]",
        ".cfi_offset x19, -160",
        ".cfi_offset x20, -152",
        "stp x21, x22, [sp, #32]",
        ".cfi_offset x21, -144",
        ".cfi_offset x22, -136",
        "stp x23, x24, [sp, #48]",
        ".cfi_offset x23, -128",
        ".cfi_offset x24, -120",
        "stp x25, x26, [sp, #64]",
        ".cfi_offset x25, -112",
        ".cfi_offset x26, -104",
        "stp x27, x28, [sp, #80]",
        ".cfi_offset x27, -96",
        ".cfi_offset x28, -88",
        "stp d8, d9, [sp, #96]",
        ".cfi_offset d8, -80",
        ".cfi_offset d9, -72",
        "stp d10, d11, [sp, #112]",
        ".cfi_offset d10, -64",
        ".cfi_offset d11, -56",
        "stp d12, d13, [sp, #128]",
        ".cfi_offset d12, -48",
        ".cfi_offset d13, -40",
        "stp d14, d15, [sp, #144]",
        ".cfi_offset d14, -32",
        ".cfi_offset d15, -24",
        "mrs x9, fpcr",
        "str x9, [sp, #160]",
        // Suspend: the frame is complete, publish it. It is also our frame record, for
        // the target's link.
        "mov x9, sp",
        "str x9, [x0, #{sp}]",
        "mov x0, x2",
        resume_x1!(),
        ".cfi_endproc",
        sp = const offset_of!(AsmContext, sp),
        link = const offset_of!(AsmContext, link),
    )
}

/// Resumes `to` without saving anything, returning `value` to it and pointing its link
/// at `record`.
///
/// # Safety
///
/// As for [`Context::exit`]; `record` is the frame record of a switch frame whose words
/// stay readable while `to` runs.
#[unsafe(naked)]
unsafe extern "C" fn exit_impl(to: *mut AsmContext, value: usize, record: *const u8) -> ! {
    // x0 = to, x1 = value, x2 = record; `resume_x1` wants x1 = to, x9 = record,
    // x0 = value.
    naked_asm!(
        ".cfi_startproc",
        "mov x9, x2",
        "mov x3, x0",
        "mov x0, x1",
        "mov x1, x3",
        resume_x1!(),
        ".cfi_endproc",
        sp = const offset_of!(AsmContext, sp),
        link = const offset_of!(AsmContext, link),
    )
}

/// The bottom frame of every context: calls `entry(value, data)`.
///
/// Never called: the first switch into a new context returns into it with sp at the
/// link slot (top - 16), x0 = the value switched in, x19 = entry and x20 = data.
#[unsafe(naked)]
unsafe extern "C" fn trampoline() {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        // The caller (the resumer) has CFA = [link] + 176 and link = sp, so:
        //   0x0f        DW_CFA_def_cfa_expression
        //   6           length of the expression in bytes
        //   0x8f 0x00   DW_OP_breg31 (sp) + 0: the address of the link slot
        //   0x06        DW_OP_deref: the link, the resumer's frame record
        //   0x23 0xb0 0x01
        //               DW_OP_plus_uconst 176 (ULEB128: 0x30 | 0x80, then 176 >> 7 = 1):
        //               past the resumer's switch frame, to its CFA
        // sp stays at the link slot from the first instruction to the call, so this
        // rule holds everywhere in the function.
        ".cfi_escape 0x0f, 6, 0x8f, 0x00, 0x06, 0x23, 0xb0, 0x01",
        // The resumer's registers, where its switch frame keeps them below that CFA.
        ".cfi_offset x29, -176",
        ".cfi_offset x30, -168",
        ".cfi_offset x19, -160",
        ".cfi_offset x20, -152",
        ".cfi_offset x21, -144",
        ".cfi_offset x22, -136",
        ".cfi_offset x23, -128",
        ".cfi_offset x24, -120",
        ".cfi_offset x25, -112",
        ".cfi_offset x26, -104",
        ".cfi_offset x27, -96",
        ".cfi_offset x28, -88",
        ".cfi_offset d8, -80",
        ".cfi_offset d9, -72",
        ".cfi_offset d10, -64",
        ".cfi_offset d11, -56",
        ".cfi_offset d12, -48",
        ".cfi_offset d13, -40",
        ".cfi_offset d14, -32",
        ".cfi_offset d15, -24",
        // Frame-pointer walkers: x29 -> {link, trampoline address} -> the resumer.
        "mov x29, sp",
        "mov x1, x20",
        "blr x19",
        // `entry` never returns; this keeps the return address inside the function.
        "brk #0",
        ".cfi_endproc",
    )
}

/// Reads the running code's FPCR.
fn fpcr() -> usize {
    let value: usize;
    // SAFETY: reading FPCR has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, fpcr", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}

unsafe impl Context for AsmContext {
    const NAME: &'static str = "asm-aarch64";

    fn thread() -> Self {
        AsmContext {
            sp: ptr::null_mut(),
            link: ptr::null_mut(),
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
        // SAFETY: `top` is 16-byte aligned and the 192 bytes below it lie in the usable
        // part of a stack we own exclusively (checked just above); nothing runs on it yet.
        let (sp, link) = unsafe {
            let link = top.sub(2);
            top.sub(1).write(tramp);
            link.write(terminal_record() as usize);
            let frame = link.sub(SWITCH_FRAME / 8);
            for word in 0..SWITCH_FRAME / 8 {
                frame.add(word).write(0);
            }
            frame.add(X30_WORD).write(tramp);
            frame.add(X19_WORD).write(entry as usize);
            frame.add(X20_WORD).write(data as usize);
            frame.add(FPCR_WORD).write(fpcr());
            (frame.cast::<u8>(), link.cast::<*const u8>())
        };
        AsmContext {
            sp,
            link,
            stack: Some(stack),
        }
    }

    unsafe fn set_data(&mut self, data: *mut ()) {
        debug_assert!(
            self.stack.is_some(),
            "the thread's context has no entry data"
        );
        // SAFETY: the context has not been resumed (caller's contract), so `sp` still
        // points at the initial switch frame `new` wrote, whose x20 word holds `data`.
        unsafe { self.sp.cast::<usize>().add(X20_WORD).write(data as usize) };
    }

    #[inline]
    unsafe fn switch(from: *mut Self, to: *mut Self, value: usize) -> usize {
        // SAFETY: `from` is running and `to` is new or suspended, so its `sp` points at a
        // switch frame; neither moves until resumed (all the caller's contract).
        unsafe {
            debug_assert!(
                !(*to).sp.is_null(),
                "switch to a context that cannot resume"
            );
            switch_impl(from, to, value)
        }
    }

    #[inline]
    unsafe fn exit(from: *mut Self, to: *mut Self, value: usize) -> ! {
        // SAFETY: as for `switch`; `from` never runs again, so marking it unresumable
        // only turns a later misuse into a debug assertion rather than a wild jump. The
        // terminal frame is a static, readable for as long as `to` runs.
        unsafe {
            (*from).sp = ptr::null_mut();
            exit_impl(to, value, terminal_record())
        }
    }

    unsafe fn into_stack(self) -> Option<GuardedStack> {
        self.stack
    }
}
