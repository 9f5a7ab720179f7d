//! The floating-point *control* state of the running code (rounding mode, exception masks,
//! flush-to-zero): read it, and put an earlier one back.
//!
//! No backend's switch saves this state: it is the thread's, shared by all its contexts.
//! Code that keeps a state per context (the core does, for greenlets built with
//! `greenlet::Builder::own_fp_control`) reads it with [`FpControl::current`] when it
//! leaves a context and puts the next context's back with [`FpControl::restore`].
//!
//! What the control state is, per target:
//! - x86-64: MXCSR bits 6-15 and the x87 control word;
//! - AArch64: FPCR;
//! - RISC-V with the F extension: the rounding mode (`frm`);
//! - elsewhere (wasm32 included, whose rounding mode is fixed): nothing; every operation
//!   here does nothing.
//!
//! The *status* flags (MXCSR bits 0-5, FPSR, `fflags`) are never part of it: any
//! arithmetic may set them, and they stay the thread's.
//!
//! ```
//! use greenlet_backends::fp::FpControl;
//! let before = FpControl::current();
//! // ... C code that calls fesetround() might run here ...
//! let now = FpControl::current();
//! // SAFETY: `before` was read on this thread.
//! unsafe { before.restore(now) };
//! assert!(FpControl::current().same_control(before));
//! ```

/// A snapshot of the running code's floating-point control state (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpControl {
    raw: imp::Raw,
}

impl FpControl {
    /// The running code's control state (with the status flags of the moment, which
    /// [`FpControl::same_control`] and [`FpControl::restore`] ignore).
    ///
    /// ```
    /// let a = greenlet_backends::fp::FpControl::current();
    /// assert!(a.same_control(greenlet_backends::fp::FpControl::current()));
    /// ```
    #[inline]
    pub fn current() -> FpControl {
        FpControl { raw: imp::read() }
    }

    /// Whether `self` and `other` have the same control state (status flags aside).
    ///
    /// ```
    /// let a = greenlet_backends::fp::FpControl::current();
    /// assert!(a.same_control(a));
    /// ```
    #[inline]
    pub fn same_control(self, other: FpControl) -> bool {
        imp::control(self.raw) == imp::control(other.raw)
    }

    /// Makes `self`'s control state the running one, unless it is `now`'s already; the
    /// status flags stay as they are.
    ///
    /// ```
    /// use greenlet_backends::fp::FpControl;
    /// let saved = FpControl::current();
    /// // SAFETY: `saved` was read on this thread; this changes nothing.
    /// unsafe { saved.restore(FpControl::current()) };
    /// ```
    ///
    /// # Safety
    ///
    /// `self` was read by [`FpControl::current`] in this process (so it holds only valid
    /// control bits), and `now` is the running state, read since the last change to it.
    /// Like any change of the floating-point environment, the new state must be one the
    /// code that runs next expects: Rust code assumes the default one.
    #[inline]
    pub unsafe fn restore(self, now: FpControl) {
        if !self.same_control(now) {
            // SAFETY: the caller's contract.
            unsafe { imp::write(imp::merge(self.raw, now.raw)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::asm;

    /// MXCSR in bits 0-31, the x87 control word in bits 32-47.
    pub(super) type Raw = u64;

    /// MXCSR bits 6-15 and the whole x87 control word; MXCSR bits 0-5 are status flags.
    const CONTROL: u64 = 0x0000_ffff_0000_ffc0;

    #[inline]
    pub(super) fn read() -> Raw {
        let mut mxcsr: u32 = 0;
        let mut fcw: u16 = 0;
        // SAFETY: both instructions only store 4 and 2 bytes to the given locals.
        unsafe {
            asm!(
                "stmxcsr dword ptr [{m}]",
                "fnstcw word ptr [{c}]",
                m = in(reg) &raw mut mxcsr,
                c = in(reg) &raw mut fcw,
                options(nostack, preserves_flags),
            );
        }
        u64::from(mxcsr) | (u64::from(fcw) << 32)
    }

    #[inline]
    pub(super) fn control(raw: Raw) -> u64 {
        raw & CONTROL
    }

    /// `control`'s control bits with `status`'s status flags.
    #[inline]
    pub(super) fn merge(control: Raw, status: Raw) -> Raw {
        (control & CONTROL) | (status & !CONTROL)
    }

    /// # Safety
    ///
    /// `raw` holds values read from MXCSR and the x87 control word (reserved bits clear).
    #[inline]
    pub(super) unsafe fn write(raw: Raw) {
        let mxcsr = raw as u32;
        let fcw = (raw >> 32) as u16;
        // SAFETY: the caller's contract; both instructions only load from the locals.
        unsafe {
            asm!(
                "ldmxcsr dword ptr [{m}]",
                "fldcw word ptr [{c}]",
                m = in(reg) &raw const mxcsr,
                c = in(reg) &raw const fcw,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    use core::arch::asm;

    /// FPCR, all control (the status flags live in FPSR).
    pub(super) type Raw = u64;

    #[inline]
    pub(super) fn read() -> Raw {
        let fpcr: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags)) };
        fpcr
    }

    #[inline]
    pub(super) fn control(raw: Raw) -> u64 {
        raw
    }

    #[inline]
    pub(super) fn merge(control: Raw, _status: Raw) -> Raw {
        control
    }

    /// # Safety
    ///
    /// `raw` was read from FPCR.
    #[inline]
    pub(super) unsafe fn write(raw: Raw) {
        // SAFETY: the caller's contract.
        unsafe { asm!("msr fpcr, {}", in(reg) raw, options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(all(
    any(target_arch = "riscv64", target_arch = "riscv32"),
    target_feature = "f"
))]
mod imp {
    use core::arch::asm;

    /// The rounding mode, `frm` (3 bits); the status flags live in `fflags`.
    pub(super) type Raw = usize;

    #[inline]
    pub(super) fn read() -> Raw {
        let frm: usize;
        // SAFETY: reading `frm` has no side effects.
        unsafe { asm!("frrm {}", out(reg) frm, options(nomem, nostack, preserves_flags)) };
        frm
    }

    #[inline]
    pub(super) fn control(raw: Raw) -> usize {
        raw
    }

    #[inline]
    pub(super) fn merge(control: Raw, _status: Raw) -> Raw {
        control
    }

    /// # Safety
    ///
    /// `raw` was read from `frm`.
    #[inline]
    pub(super) unsafe fn write(raw: Raw) {
        // SAFETY: the caller's contract.
        unsafe { asm!("fsrm {}", in(reg) raw, options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(
        any(target_arch = "riscv64", target_arch = "riscv32"),
        target_feature = "f"
    )
)))]
mod imp {
    /// Always zero: this target has no control state this module can reach.
    pub(super) type Raw = u8;

    #[inline]
    pub(super) fn read() -> Raw {
        0
    }

    #[inline]
    pub(super) fn control(raw: Raw) -> u8 {
        raw
    }

    #[inline]
    pub(super) fn merge(control: Raw, _status: Raw) -> Raw {
        control
    }

    /// # Safety
    ///
    /// None needed: does nothing.
    #[inline]
    pub(super) unsafe fn write(_raw: Raw) {}
}
