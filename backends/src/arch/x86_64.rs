//! x86-64 System V backend: context switching in hand-written `naked` assembly.
//!
//! A WORD OF CAUTION: read this whole file before changing any of it. The frame layout
//! drawn here, the offsets in the assembly, the words [`AsmContext::new`] writes and the
//! CFI byte strings all encode the same facts; change one and you must change them all.
//!
//! # What a switch saves
//!
//! The System V ABI lets a called function clobber everything except rbx, rbp, r12-r15,
//! rsp, the MXCSR control bits and the x87 control word. `switch_impl` is called like
//! any function, so the compiler has already saved everything else around the call;
//! `switch_impl` saves exactly that callee-saved set on the running stack, stores the
//! stack pointer in `from.sp`, loads `to.sp` and restores the same set from there.
//!
//! The floating-point *control* state (MXCSR bits 6-15: rounding mode, exception masks,
//! flush-to-zero, denormals-are-zero; and the x87 control word) is kept per context, so
//! a context that changes its rounding mode does not change anyone else's, and a new
//! context starts with the control state of the code that created it, as a new POSIX
//! thread does. The *status* flags (MXCSR bits 0-5, the x87 status word) are not control:
//! the ABI lets any call change them, and they stay with the thread. Loading MXCSR and
//! above all the x87 control word is slow, and contexts almost never differ, so the
//! switch compares the two control states and loads the resumed one only if it differs.
//! The AArch64 backend keeps FPCR the same way.
//!
//! `stmxcsr` and `fnstcw` can only store to memory, so the switch reads what they wrote
//! back with loads of the same sizes (4 and 2 bytes): one 8-byte load over both stores
//! cannot be forwarded from the store buffer and stalls until they retire, which once
//! cost more than the rest of the switch together.
//!
//! # Leaving a switch
//!
//! A switch does not end in `ret`: the return address it pops belongs to the *other*
//! context's `call`, which the return stack buffer never predicts, so a `ret` would be
//! mispredicted on every switch. It pops the return address into rcx and `jmp`s there
//! instead; the indirect-branch predictor learns the alternating targets of a switch
//! loop. The `call` that entered the switch leaves an entry on the return stack buffer
//! that no `ret` consumes, which is harmless: the buffer is a ring and simply wraps.
//!
//! # The switch frame
//!
//! A suspended context's `sp` points at the frame `switch_impl` pushed:
//!
//! ```text
//!              +------------------+  <- CFA: the caller's rsp once `switch_impl` returns
//!     sp + 56  | return address   |  pushed by the caller's `call`
//!     sp + 48  | saved rbp        |  <- frame record {rbp, return address}: the link
//!     sp + 40  | saved rbx        |     slot of whatever this context resumes points here
//!     sp + 32  | saved r12        |
//!     sp + 24  | saved r13        |
//!     sp + 16  | saved r14        |
//!     sp +  8  | saved r15        |
//!     sp +  0  | MXCSR | x87 CW   |  `stmxcsr` writes 4 bytes at +0, `fnstcw` 2 at +4;
//!              |                  |  bytes 6-7 are never read
//!              +------------------+  <- AsmContext::sp
//! ```
//!
//! Offsets: at entry rsp is 8 below a 16-byte boundary (the `call` pushed 8 bytes onto an
//! aligned stack). Six pushes add 6 * 8 = 48 and `sub rsp, 8` adds 8, so the frame is
//! 8 + 48 + 8 = 64 bytes and `sp` is 16-byte aligned. The CFA (the caller's rsp after the
//! return) is `sp + 64`; counted down from it: return address -8, rbp -16, rbx -24,
//! r12 -32, r13 -40, r14 -48, r15 -56. The frame record sits at `sp + 48 = CFA - 16`.
//!
//! # A new context
//!
//! [`AsmContext::new`] writes, at the top of the context's stack, a switch frame that
//! looks as if the context had called `switch_impl` from the first instruction of
//! `trampoline`, with `entry` and `data` in the rbx and r12 slots:
//!
//! ```text
//!              +------------------+  <- GuardedStack::top(), 16-byte aligned
//!    top -  8  | trampoline addr  |  return-address half of the bottom frame record
//!    top - 16  | link             |  <- rsp inside `trampoline`; rbp there points here too
//!              +------------------+
//!    top - 24  | trampoline addr  |  "return address": the first switch jumps here
//!    top - 32  | rbp = 0          |
//!    top - 40  | rbx = entry      |
//!    top - 48  | r12 = data       |  [`AsmContext::set_data`] rewrites this word
//!    top - 56  | r13 = 0          |
//!    top - 64  | r14 = 0          |
//!    top - 72  | r15 = 0          |
//!    top - 80  | creator's MXCSR | creator's x87 CW
//!              +------------------+  <- initial AsmContext::sp = top - 16 - 64 = top - 80
//! ```
//!
//! The first switch in pops this frame (rsp = top - 80 + 64 = top - 16) and jumps into
//! `trampoline`, which calls `entry(value, data)` with rsp = top - 16: 16-byte aligned,
//! as the ABI wants before a `call`. `entry` never returns, so nothing above top - 16 is
//! ever popped. Nothing in the frame points at the [`AsmContext`] itself, which may move
//! freely until it is first resumed.
//!
//! # Linked backtraces
//!
//! The word at top - 16, the *link*, points at the frame record of the switch frame of
//! whoever resumed this context last: every switch into a context rewrites it
//! (`AsmContext::link` says where it is). `trampoline`'s CFI tells the unwinder that its
//! caller's CFA is `[rsp] + 16`, read through the link, and that the caller's registers
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
//! The frame record at top - 16, {link, trampoline address}, continues the rbp chain in
//! the same way, for profilers that walk frame pointers instead of reading CFI.
//!
//! `trampoline` is marked as a signal frame, as corosensei does: GDB refuses a backtrace
//! whose frame addresses go down, which is what a jump to a stack mapped below the
//! current one looks like. It also changes where unwinders look up unwind info: the
//! resumer's frame is looked up at its exact return address rather than the byte before,
//! and GDB does the same for the trampoline's own frame, which is why the call into
//! `entry` is followed by a `ud2`: it keeps that return address inside the function.

use crate::stack::GuardedStack;
use crate::{Context, EntryFn};
use core::arch::naked_asm;
use core::mem::offset_of;
use core::ptr;

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
    /// Where the switch frame of the suspended context is; null for a thread context
    /// that has never been switched away from.
    sp: *mut u8,
    /// The link slot at the top of this context's stack, rewritten on every switch into
    /// the context; null for the thread's context.
    link: *mut *const u8,
    /// `None` for the thread's context.
    stack: Option<GuardedStack>,
}

/// Bytes in a switch frame: return address, six registers, the FP control slot.
const SWITCH_FRAME: usize = 8 + 6 * 8 + 8;
/// Offset of the frame record {saved rbp, return address} inside a switch frame.
const FRAME_RECORD: usize = 48;
/// Bytes above the initial switch frame: the link slot and the word above it.
const TOP_RESERVED: usize = 16;
/// Word offsets, from a switch frame's start, of the slots `new` fills.
const FP_CONTROL_WORD: usize = 0;
const R12_WORD: usize = 4;
const RBX_WORD: usize = 5;
const RETURN_WORD: usize = 7;

const _: () = assert!(SWITCH_FRAME == 64 && SWITCH_FRAME.is_multiple_of(16));
const _: () = assert!(FRAME_RECORD == SWITCH_FRAME - 16);
const _: () = assert!(RETURN_WORD * 8 == SWITCH_FRAME - 8);

/// A switch frame of zeros: the link of a context resumed by [`AsmContext::exit`] points
/// at its frame record (word 6), whose return address 0 ends every unwind. The unwinder
/// reads all eight words, so all eight must exist.
static TERMINAL_FRAME: [usize; SWITCH_FRAME / 8] = [0; SWITCH_FRAME / 8];

fn terminal_record() -> *const u8 {
    // The record is `FRAME_RECORD` bytes into the frame, well inside the array.
    TERMINAL_FRAME
        .as_ptr()
        .cast::<u8>()
        .wrapping_add(FRAME_RECORD)
}

/// The control bits of MXCSR (6-15); the rest (0-5) are status flags. The whole x87
/// control word is control.
const MXCSR_CONTROL_MASK: u32 = 0xffc0;
const MXCSR_STATUS_MASK: u32 = 0x3f;

/// The second half of `switch_impl`, shared with `exit_impl`: resumes the context in rsi,
/// pointing its link (if it has one) at the frame record in rcx, and returns rax to it.
/// r8d holds the running code's MXCSR and r9d its x87 control word (zero-extended).
///
/// Uses the `sp`, `link`, `mxcsr_control` and `mxcsr_status` const operands of the
/// `naked_asm!` it is expanded into.
macro_rules! resume_rsi {
    () => {
        concat!(
            // Link the target to its resumer, unless it is a thread context (link null).
            "mov rdx, [rsi + {link}]\n",
            "test rdx, rdx\n",
            "jz 2f\n",
            "mov [rdx], rcx\n",
            "2:\n",
            // From here on rsp is the target's switch frame; its layout is ours.
            "mov rsp, [rsi + {sp}]\n",
            ".cfi_def_cfa rsp, 64\n",
            ".cfi_offset rip, -8\n",
            ".cfi_offset rbp, -16\n",
            ".cfi_offset rbx, -24\n",
            ".cfi_offset r12, -32\n",
            ".cfi_offset r13, -40\n",
            ".cfi_offset r14, -48\n",
            ".cfi_offset r15, -56\n",
            // Same FP control bits as now (the usual case)? Then load nothing.
            "mov edx, [rsp]\n",
            "xor edx, r8d\n",
            "and edx, {mxcsr_control}\n",
            "movzx r10d, word ptr [rsp + 4]\n",
            "xor r10d, r9d\n",
            "or edx, r10d\n",
            "jz 3f\n",
            // They differ: the target's control bits with the thread's status flags.
            "mov edx, [rsp]\n",
            "and edx, {mxcsr_control}\n",
            "and r8d, {mxcsr_status}\n",
            "or edx, r8d\n",
            "mov [rsp], edx\n",
            "ldmxcsr dword ptr [rsp]\n",
            "fldcw word ptr [rsp + 4]\n",
            "3:\n",
            "add rsp, 8\n",
            ".cfi_adjust_cfa_offset -8\n",
            "pop r15\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore r15\n",
            "pop r14\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore r14\n",
            "pop r13\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore r13\n",
            "pop r12\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore r12\n",
            "pop rbx\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore rbx\n",
            "pop rbp\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_restore rbp\n",
            // Into the target's caller, or into `trampoline` for a new context; a `jmp`,
            // not a `ret` (see the module docs).
            "pop rcx\n",
            ".cfi_adjust_cfa_offset -8\n",
            ".cfi_register rip, rcx\n",
            "jmp rcx\n",
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
unsafe extern "sysv64" fn switch_impl(
    from: *mut AsmContext,
    to: *mut AsmContext,
    value: usize,
) -> usize {
    // rdi = from, rsi = to, rdx = value. Scratch: rax, rcx, rdx, r8, r9, r10 (all
    // caller-saved).
    naked_asm!(
        ".cfi_startproc",
        // Build the switch frame; each push is paired with its CFI (CFA = rsp + 8 here).
        "push rbp",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rbp, -16",
        "push rbx",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset rbx, -24",
        "push r12",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r12, -32",
        "push r13",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r13, -40",
        "push r14",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r14, -48",
        "push r15",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_offset r15, -56",
        "sub rsp, 8",
        ".cfi_adjust_cfa_offset 8",
        "stmxcsr dword ptr [rsp]",
        "fnstcw word ptr [rsp + 4]",
        // Read back at the sizes stored, so that both loads forward from the stores.
        "mov r8d, [rsp]",
        "movzx r9d, word ptr [rsp + 4]",
        // Suspend: the frame is complete, publish it.
        "mov [rdi + {sp}], rsp",
        // Our frame record, for the target's link: 48 bytes up (see the diagram).
        "lea rcx, [rsp + 48]",
        "mov rax, rdx",
        resume_rsi!(),
        ".cfi_endproc",
        sp = const offset_of!(AsmContext, sp),
        link = const offset_of!(AsmContext, link),
        mxcsr_control = const MXCSR_CONTROL_MASK,
        mxcsr_status = const MXCSR_STATUS_MASK,
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
unsafe extern "sysv64" fn exit_impl(to: *mut AsmContext, value: usize, record: *const u8) -> ! {
    // rdi = to, rsi = value, rdx = record; `resume_rsi` wants rsi = to, rcx = record,
    // rax = value, r8d = our MXCSR and r9d = our x87 control word, read through the red
    // zone (we call nothing, so the 128 bytes below rsp are ours).
    naked_asm!(
        ".cfi_startproc",
        "stmxcsr dword ptr [rsp - 8]",
        "fnstcw word ptr [rsp - 4]",
        "mov r8d, [rsp - 8]",
        "movzx r9d, word ptr [rsp - 4]",
        "mov rax, rsi",
        "mov rcx, rdx",
        "mov rsi, rdi",
        resume_rsi!(),
        ".cfi_endproc",
        sp = const offset_of!(AsmContext, sp),
        link = const offset_of!(AsmContext, link),
        mxcsr_control = const MXCSR_CONTROL_MASK,
        mxcsr_status = const MXCSR_STATUS_MASK,
    )
}

/// The bottom frame of every context: calls `entry(value, data)`.
///
/// Never called: the first switch into a new context jumps into it with rsp at the
/// link slot (top - 16), rax = the value switched in, rbx = entry and r12 = data.
#[unsafe(naked)]
unsafe extern "sysv64" fn trampoline() {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_signal_frame",
        // The caller (the resumer) has CFA = [link] + 16 and link = rsp, so:
        //   0x0f        DW_CFA_def_cfa_expression
        //   5           length of the expression in bytes
        //   0x77 0x00   DW_OP_breg7 (rsp) + 0: the address of the link slot
        //   0x06        DW_OP_deref: the link, the resumer's frame record
        //   0x23 0x10   DW_OP_plus_uconst 16: past the record, to the resumer's CFA
        // rsp stays at the link slot from the first instruction to the call, so this
        // rule holds everywhere in the function.
        ".cfi_escape 0x0f, 5, 0x77, 0x00, 0x06, 0x23, 0x10",
        // The resumer's registers, where its switch frame keeps them below that CFA.
        ".cfi_offset rip, -8",
        ".cfi_offset rbp, -16",
        ".cfi_offset rbx, -24",
        ".cfi_offset r12, -32",
        ".cfi_offset r13, -40",
        ".cfi_offset r14, -48",
        ".cfi_offset r15, -56",
        // Frame-pointer walkers: rbp -> {link, trampoline address} -> the resumer.
        "mov rbp, rsp",
        "mov rdi, rax",
        "mov rsi, r12",
        "call rbx",
        // `entry` never returns; this keeps the return address inside the function.
        "ud2",
        ".cfi_endproc",
    )
}

/// Reads the running code's MXCSR and x87 control word, packed as a switch frame's
/// FP control word holds them: MXCSR in bytes 0-3, the control word in bytes 4-5.
fn fp_control_word() -> usize {
    let mut mxcsr: u32 = 0;
    let mut fcw: u16 = 0;
    // SAFETY: both instructions only store 4 and 2 bytes to the given locals.
    unsafe {
        core::arch::asm!(
            "stmxcsr dword ptr [{m}]",
            "fnstcw word ptr [{c}]",
            m = in(reg) &raw mut mxcsr,
            c = in(reg) &raw mut fcw,
            options(nostack, preserves_flags),
        );
    }
    mxcsr as usize | ((fcw as usize) << 32)
}

unsafe impl Context for AsmContext {
    const NAME: &'static str = "asm-x86_64";

    fn thread() -> Self {
        AsmContext {
            sp: ptr::null_mut(),
            link: ptr::null_mut(),
            stack: None,
        }
    }

    fn new(stack: GuardedStack, entry: EntryFn, data: *mut ()) -> Self {
        assert!(stack.usable_size() >= TOP_RESERVED + SWITCH_FRAME);
        let top = stack.top().cast::<usize>();
        let tramp = trampoline as *const () as usize;
        // SAFETY: `top` is 16-byte aligned and the 80 bytes below it lie in the usable
        // part of a stack we own exclusively (checked just above); nothing runs on it yet.
        let (sp, link) = unsafe {
            let link = top.sub(2);
            top.sub(1).write(tramp);
            link.write(terminal_record() as usize);
            let frame = link.sub(SWITCH_FRAME / 8);
            for word in 0..SWITCH_FRAME / 8 {
                frame.add(word).write(0);
            }
            frame.add(FP_CONTROL_WORD).write(fp_control_word());
            frame.add(R12_WORD).write(data as usize);
            frame.add(RBX_WORD).write(entry as usize);
            frame.add(RETURN_WORD).write(tramp);
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
        // points at the initial switch frame `new` wrote, whose r12 word holds `data`.
        unsafe { self.sp.cast::<usize>().add(R12_WORD).write(data as usize) };
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
