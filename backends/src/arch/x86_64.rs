//! x86-64 System V backend: context switching in inline assembly expanded at each caller.
//!
//! A WORD OF CAUTION: read this whole file before changing any of it. The frame layout
//! drawn here, the offsets in the assembly, the words [`AsmContext::new`] writes and the
//! CFI byte strings all encode the same facts; change one and you must change them all.
//!
//! # What a switch saves
//!
//! The System V ABI lets a called function clobber everything except rbx, rbp, r12-r15,
//! rsp, the MXCSR control bits and the x87 control word (the last two stay the thread's,
//! see below). [`AsmContext::switch`] is
//! `#[inline(always)]` and holds one `asm!` block, which declares every register the ABI
//! lets a call clobber (`clobber_abi("sysv64")`) and r12-r15 as clobbered. The compiler
//! therefore saves around the block exactly the registers that hold live values there,
//! and no more: in a loop that switches back and forth, that is often nothing but a
//! couple of spilled pointers. Clobbering r12-r15 also makes the enclosing function save
//! them in its prologue, with its own CFI, which is how an unwinder recovers them.
//!
//! rbx and rbp cannot be named as clobbers (LLVM reserves them), so the block pushes them
//! itself, together with the address at which it resumes, and stores rsp in `from.sp`.
//! It then loads `to.sp` and pops the same three words from there, and jumps to the
//! popped address: the label at the end of `to`'s own switch, or `trampoline` for a new
//! context. rsp leaves the block where it entered it, as the compiler expects.
//!
//! # Floating-point control state
//!
//! A switch saves no floating-point state: the control state (MXCSR bits 6-15: rounding
//! mode, exception masks, flush-to-zero, denormals-are-zero; the x87 control word) and the
//! status flags belong to the thread, shared by all its contexts, as on corosensei. Reading
//! MXCSR (`stmxcsr`, the only way) cost more on every switch than all the rest of it, and
//! Rust code cannot change that state anyway (the compiler assumes the default). A greenlet
//! that runs C code which does change it asks the core for a control state of its own
//! (`greenlet::Builder::own_fp_control`), which then saves and restores it around that
//! greenlet's switches with [`crate::fp`].
//!
//! # Leaving a switch
//!
//! A switch does not end in `ret`: the address it pops belongs to the *other* context,
//! which the return stack buffer never predicts, so a `ret` would be mispredicted on
//! every switch. It pops the address into rcx and `jmp`s there instead; since the block
//! is expanded at each call site, each site's indirect-branch history is its own, and a
//! loop that switches between two contexts is predicted perfectly. The return stack
//! buffer is left untouched.
//!
//! # The switch frame
//!
//! A suspended context's `sp` points at the three words its switch pushed:
//!
//! ```text
//!              +------------------+  <- CFA: rsp when the switch began, 16-byte aligned
//!     sp + 16  | saved rbx        |  CFA - 8
//!     sp +  8  | resume address   |  CFA - 16: the label ending the suspended switch
//!     sp +  0  | saved rbp        |  CFA - 24 <- frame record {rbp, resume address}: the
//!              +------------------+     link of whatever this context resumes points here
//!                                   <- AsmContext::sp
//! ```
//!
//! Offsets: `asm!` without `nostack` starts with rsp aligned for a call (16 bytes) and
//! lets the block push. Three pushes of 8 bytes put `sp` at CFA - 3 * 8 = CFA - 24: rbx is
//! pushed first (CFA - 8), then the resume address (CFA - 16), then rbp (CFA - 24), so
//! that rbp and the resume address form a frame record at `sp` itself, and the CFA is
//! `sp + 24`. The switch pops rbp, the address and rbx in that order, leaving rsp at the
//! CFA.
//!
//! # A new context
//!
//! [`AsmContext::new`] writes, at the top of the context's stack, a switch frame that
//! resumes at the first instruction of `trampoline`, with `entry` in the rbx slot, and
//! above it the words the trampoline and `entry` find there:
//!
//! ```text
//!              +------------------+  <- GuardedStack::top(), 16-byte aligned
//!    top -  8  | 0 (unused)       |
//!    top - 16  | data             |  [`AsmContext::set_data`] rewrites this word
//!    top - 24  | trampoline + 4   |  `entry`'s return address <- rsp inside `trampoline`
//!              +------------------+
//!    top - 32  | rbx = entry      |
//!    top - 40  | trampoline addr  |  "resume address": the first switch jumps here
//!    top - 48  | (rbp: unwritten) |  popped, then set by the trampoline: not written
//!              +------------------+  <- initial AsmContext::sp = top - 24 - 24 = top - 48
//! ```
//!
//! The first switch in pops this frame (rsp = top - 48 + 24 = top - 24) and jumps into
//! `trampoline` with the value switched in still in rdi, where the block keeps it, and
//! the context's address in rdx. The trampoline points rbp at the context (for the
//! unwinder: see below), and enters `entry(value, data)` with rsp = top - 24, pointing at
//! a return address as if `entry` had been called: 8 bytes below a 16-byte boundary, as
//! the ABI wants on a function's entry. It does not `call` it, so that the return stack
//! buffer gets no entry that `entry` would never pop (the code resumed after this context
//! ends would have its next return mispredicted); the return address is already there,
//! written by `new`. `entry` never returns, so nothing at or above top - 24 is ever
//! popped, or written by the code that runs on the stack.
//!
//! That return address is `trampoline + 4`, inside the trampoline's second instruction,
//! where nothing ever returns to (a test checks the two instructions' bytes). It lets
//! every unwinder find the row of the trampoline's CFI that holds once rbp is the
//! context: those that look up a return address's row at the byte before it find the
//! second instruction's first byte, and those that look it up at the address itself, as
//! GDB does for a signal frame (see below), find its second byte. Both lie in that row.
//!
//! [`AsmContext::restart`] makes an exited context new again in place: the run that
//! exited wrote nothing at or above top - 24, so it writes the switch frame, `data` and
//! `sp` alone.
//!
//! # Linked backtraces
//!
//! Every context has a *link*, its first field, which points at the frame record of the
//! switch frame of whoever resumed it last: every switch into a context rewrites it.
//! `trampoline` keeps the context's address in rbp, which every function it enters saves
//! and restores as the ABI requires, and its CFI tells the unwinder that its caller's CFA
//! is `[rbp] + 24`: the link, plus the switch frame's three words; and that the caller's
//! rbx, resume address and rbp are saved below that CFA as in any switch frame. From
//! there the unwinder is in the resumer's own function, at the label ending its switch,
//! with rsp as it was when the switch began: that function's own CFI, which knows nothing
//! of the three pushes, describes the rest of its frame, including the r12-r15 its
//! prologue saved. Backtraces, debuggers and the panic
//! runtime's search phase therefore walk from a context's frames into the code that
//! resumed it, and on through that code's own resumer.
//!
//! The link lives in the context rather than on its stack so that a switch writes it with
//! one store, through the target's address, which it holds anyway; a slot on the stack
//! took a load of its address first. The price is that a context must not move once it
//! has been resumed, until it exits (the [`Context`] contract): rbp holds its address.
//! (A thread's context gets a link too, which nothing reads.)
//!
//! The pushes in the switch carry no CFI of their own: the block sits inside a function
//! the compiler lays out, whose CFA may be defined by rsp or by rbp, so no directive in
//! it could be right in both cases. Each push names instead the line of `trampoline`'s
//! CFI that describes it once the context is suspended. (An unwinder stopped *inside*
//! the dozen instructions of a switch, by a sampling profiler for instance, sees the
//! enclosing function's CFI and may misplace that one frame; corosensei has the same
//! window.) The trampoline's first instruction, which points rbp at the context, has a
//! row of its own that reads the link through rdx instead, which holds the context's
//! address from the switch on: so the switch frame's rbp slot is never written (popped
//! into rbp, its value is overwritten before anything reads it), one store and one load
//! less per start.
//!
//! This chain only ever names suspended frames: the context that resumed us has been
//! suspended since, and so has the one that resumed it, back to the thread's stack.
//! [`AsmContext::exit`] breaks that rule, since the context that resumes its target is
//! going away, so `exit` points the target's link at `TERMINAL_FRAME`, a switch frame
//! of zeros whose resume address 0 ends every unwind.
//!
//! The link and the word after it in the context, `trampoline + 4`, form a frame record
//! {link, return address}: rbp pointing at the context continues the rbp chain into the
//! resumer's switch frame, for profilers that walk frame pointers instead of reading CFI.
//!
//! `trampoline` is marked as a signal frame, as corosensei does: GDB refuses a backtrace
//! whose frame addresses go down, which is what a jump to a stack mapped below the
//! current one looks like. It also changes where unwinders look up unwind info: the
//! resumer's frame is looked up at its exact resume address rather than the byte before,
//! and GDB does the same for the trampoline's own frame, which is why `entry`'s return
//! address is inside the trampoline's second instruction (see above).
//! The resume address is the first instruction after the switch's block, inside the same
//! function (the block has outputs, so code follows it), and the byte before it is
//! inside the block, where the function's CFI is the same: either lookup finds the
//! right row.

use crate::stack::GuardedStack;
use crate::{Context, EntryFn};
use core::arch::{asm, naked_asm};
use core::mem::offset_of;
use core::ptr::{self, NonNull};

/// A context on the x86-64 assembly backend.
///
/// ```
/// use greenlet_backends::arch::x86_64::AsmContext;
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
    /// the context's rbp chain.
    link: NonNull<u8>,
    /// `trampoline + 4`: the return-address half of the frame record above.
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
// `trampoline`'s CFI reads the link at offset 0 of the context, and its rbp points at the
// frame record {link, return address}.
const _: () = assert!(offset_of!(AsmContext, link) == 0);
const _: () = assert!(offset_of!(AsmContext, return_address) == 8);

/// Bytes in a switch frame: saved rbp, resume address, saved rbx.
const SWITCH_FRAME: usize = 3 * 8;
/// Word offsets, from a switch frame's start, of the slots `new` fills. The frame record
/// {rbp, resume address} starts at word 0, so a link points at the frame itself; a new
/// context's rbp slot is not written (see the module docs).
const RESUME_WORD: usize = 1;
const RBX_WORD: usize = 2;
/// Bytes above the initial switch frame: an unused word, data, `entry`'s return address.
const TOP_RESERVED: usize = 3 * 8;
/// Word offsets from the top of a new context's stack, counted down (see the diagram).
const TOP_UNUSED: usize = 1;
const TOP_DATA: usize = 2;
const TOP_RETURN: usize = 3;
/// `data` seen from the initial switch frame's start: top - 16 = (top - 48) + 32.
const DATA_WORD: usize = (TOP_RESERVED + SWITCH_FRAME) / 8 - TOP_DATA;

const _: () = assert!(RBX_WORD * 8 == SWITCH_FRAME - 8);
// `entry` starts with rsp 8 bytes below a 16-byte boundary, as after a call.
const _: () = assert!((TOP_RETURN * 8) % 16 == 8);
const _: () = assert!(DATA_WORD == 4);
// The assembly reads `data` at rsp + 8 inside `trampoline`, where rsp is top - 24.
const _: () = assert!((TOP_RETURN - TOP_DATA) * 8 == 8);

/// A switch frame of zeros: the link of a context resumed by [`AsmContext::exit`] points
/// at it, and its resume address 0 ends every unwind. The unwinder reads all three words,
/// so all three must exist.
static TERMINAL_FRAME: [usize; SWITCH_FRAME / 8] = [0; SWITCH_FRAME / 8];

/// The bytes of `trampoline`'s first instruction, `mov rbp, rdx`, after which its CFI
/// reads the link through rbp rather than rdx.
const TRAMPOLINE_FIRST_LEN: usize = 3;
/// `entry`'s return address, and the return-address half of the bottom frame record of
/// every context: one byte into `trampoline`'s second instruction, `mov rsi, [rsp + 8]`
/// (see the module docs).
const TRAMPOLINE_RETURN_OFFSET: usize = TRAMPOLINE_FIRST_LEN + 1;

const _: () = assert!(
    TRAMPOLINE_RETURN_OFFSET > TRAMPOLINE_FIRST_LEN
        && TRAMPOLINE_RETURN_OFFSET < TRAMPOLINE_FIRST_LEN + 5
);

/// See [`TRAMPOLINE_RETURN_OFFSET`].
fn trampoline_return_address() -> usize {
    trampoline as *const () as usize + TRAMPOLINE_RETURN_OFFSET
}

/// The second half of a switch, shared by [`AsmContext::switch`] and
/// [`AsmContext::exit`]: resumes the context in rdx, whose link has been written. rdi (the
/// value handed over) passes through untouched.
///
/// Uses the `sp` const operand of the `asm!` it is expanded into.
macro_rules! resume_rdx {
    () => {
        concat!(
            // From here on rsp is the target's switch frame; its layout is ours.
            "mov rsp, [rdx + {sp}]\n",
            "pop rbp\n",
            "pop rcx\n",
            "pop rbx\n",
            // Into the target's switch, or into `trampoline` for a new context; a `jmp`,
            // not a `ret` (see the module docs).
            "jmp rcx\n",
        )
    };
}

/// Writes, below `top`, what the first switch into a context reads: a switch frame that
/// resumes in `trampoline` with `entry` in the rbx slot (its rbp slot unwritten: see the
/// module docs), and `data` (the address the trampoline hands `entry`) above it; returns
/// the context's `sp`. `new` and `restart`
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
        frame
            .add(RESUME_WORD)
            .write(trampoline as *const () as usize);
        frame.add(RBX_WORD).write(entry as usize);
        frame.cast::<u8>()
    }
}

/// The bottom frame of every context: enters `entry(value, data)`, which never returns.
///
/// Never called: the first switch into a new context jumps into it with rsp at top - 24,
/// rdi = the value switched in, rdx = the context, rbx = entry and rbp = whatever the
/// switch frame's unwritten slot held (see the module docs).
#[unsafe(naked)]
unsafe extern "sysv64" fn trampoline() {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        // The caller (the resumer) has CFA = [context] + 24. At the first instruction,
        // the context's address is in rdx (the switch left it there), so:
        //   0x0f        DW_CFA_def_cfa_expression
        //   5           length of the expression in bytes
        //   0x71 0x00   DW_OP_breg1 (rdx) + 0: the context's address
        //   0x06        DW_OP_deref: its link (its first field), the resumer's switch frame
        //   0x23 0x18   DW_OP_plus_uconst 24: past its three words, to the resumer's CFA
        ".cfi_escape 0x0f, 5, 0x71, 0x00, 0x06, 0x23, 0x18",
        // The resumer's registers, where its switch frame keeps them below that CFA.
        ".cfi_offset rbx, -8",
        ".cfi_offset rip, -16",
        ".cfi_offset rbp, -24",
        // For frame-pointer walkers, the context's first two words are the frame record
        // {link, trampoline + 4} -> the resumer.
        "mov rbp, rdx",
        // From here on, the same through rbp (0x76: DW_OP_breg6), which keeps the
        // context's address (the functions `entry` calls save and restore it): the row
        // `entry`'s return address, inside the next instruction, finds.
        ".cfi_escape 0x0f, 5, 0x76, 0x00, 0x06, 0x23, 0x18",
        "mov rsi, [rsp + 8]",
        // Into `entry` as a call would, but without one (see the module docs): its return
        // address is at rsp already.
        "jmp rbx",
        ".cfi_endproc",
    )
}

unsafe impl Context for AsmContext {
    const NAME: &'static str = "asm-x86_64";

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
        let return_address = trampoline_return_address();
        // SAFETY: `top` is 16-byte aligned and the 48 bytes below it lie in the usable
        // part of a stack we own exclusively (checked just above); nothing runs on it yet.
        let sp = unsafe {
            top.sub(TOP_UNUSED).write(0);
            top.sub(TOP_RETURN).write(return_address);
            write_start_frame(top, entry, data as usize)
        };
        AsmContext {
            link: NonNull::from(&TERMINAL_FRAME).cast(),
            return_address,
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
    // `entry` from `trampoline` with rsp at top - 24 and wrote nothing there or above:
    // `entry`'s return address is as `new` wrote it.
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
        // CFI finds it. The block leaves rsp
        // where it found it and restores rbx and rbp; every other register it may change
        // is declared clobbered. Without `nostack`, it may push and starts on a
        // call-aligned stack.
        unsafe {
            debug_assert!(
                !(*to).sp.is_null(),
                "switch to a context that cannot resume"
            );
            asm!(
                // Build the switch frame. No CFI here (see the module docs); the line of
                // `trampoline`'s CFI that finds each word is named beside it.
                "push rbx",            // .cfi_offset rbx, -8
                "lea rcx, [rip + 2f]", // where this context resumes
                "push rcx",            // .cfi_offset rip, -16
                "push rbp",            // .cfi_offset rbp, -24
                // Suspend: the frame is complete, publish it.
                "mov [rsi + {sp}], rsp",
                // Link the target to its resumer: our frame.
                "mov [rdx + {link}], rsp",
                resume_rdx!(),
                // Resumed: the switch that resumed us popped our frame and jumped here.
                "2:",
                sp = const offset_of!(AsmContext, sp),
                link = const offset_of!(AsmContext, link),
                inlateout("rdi") value => back,
                in("rsi") from,
                in("rdx") to,
                lateout("r12") _,
                lateout("r13") _,
                lateout("r14") _,
                lateout("r15") _,
                clobber_abi("sysv64"),
            );
        }
        back
    }

    #[inline(always)]
    unsafe fn exit(from: *mut Self, to: *mut Self, value: usize) -> ! {
        // SAFETY: as for `switch`; `from` never runs again, so marking it unresumable
        // only turns a later misuse into a debug assertion rather than a wild jump, and
        // nothing of it is saved. The terminal frame is a static, readable for as long as
        // `to` runs.
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
                // No live resumer: link the target to the terminal frame.
                "mov [rdx + {link}], rcx",
                resume_rdx!(),
                sp = const offset_of!(AsmContext, sp),
                link = const offset_of!(AsmContext, link),
                in("rdi") value,
                in("rdx") to,
                in("rcx") TERMINAL_FRAME.as_ptr(),
                options(noreturn),
            )
        }
    }

    unsafe fn into_stack(self) -> Option<GuardedStack> {
        self.stack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `entry`'s return address must lie inside the trampoline's second instruction, in the
    /// CFI row that reads the link through rbp (see the module docs): the instructions are
    /// the ones the offsets assume.
    #[test]
    fn entrys_return_address_lies_inside_the_trampolines_second_instruction() {
        // SAFETY: the trampoline's code is mapped and readable; 8 bytes lie within it.
        let code = unsafe { (trampoline as *const () as *const [u8; 8]).read() };
        // mov rbp, rdx
        assert_eq!(code[..TRAMPOLINE_FIRST_LEN], [0x48, 0x89, 0xd5]);
        // mov rsi, [rsp + 8]: five bytes, the return address one byte into them.
        assert_eq!(code[TRAMPOLINE_FIRST_LEN..], [0x48, 0x8b, 0x74, 0x24, 0x08]);
        assert_eq!(
            trampoline_return_address() - trampoline as *const () as usize,
            TRAMPOLINE_RETURN_OFFSET
        );
    }
}
