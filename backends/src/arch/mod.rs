//! The backends, one module each, and the `cfg_if!` ladder that picks the default.
//!
//! The corosensei backend is built on every target it supports, even where an assembly
//! backend is the default, so the two can be tested and benchmarked side by side.

#[cfg(not(target_arch = "wasm32"))]
pub mod corosensei;

cfg_if::cfg_if! {
    if #[cfg(target_arch = "wasm32")] {
        pub mod wasm;
        /// The backend this target uses by default.
        pub type DefaultContext = wasm::WasmContext;
    } else if #[cfg(all(target_arch = "x86_64", unix, not(target_os = "macos")))] {
        pub mod x86_64;
        /// The backend this target uses by default.
        pub type DefaultContext = x86_64::AsmContext;
    } else if #[cfg(all(target_arch = "aarch64", unix, not(target_os = "macos")))] {
        pub mod aarch64;
        /// The backend this target uses by default.
        pub type DefaultContext = aarch64::AsmContext;
    } else if #[cfg(any(
        target_arch = "riscv64",
        target_arch = "riscv32",
        target_arch = "arm",
        target_arch = "x86",
        target_arch = "loongarch64",
        target_arch = "x86_64",
        target_arch = "aarch64",
    ))] {
        /// The backend this target uses by default.
        pub type DefaultContext = corosensei::CoroContext;
    } else {
        compile_error!(
            "greenlet-rs: unsupported target. Supported: x86-64 and AArch64 (assembly \
             backends), riscv64, riscv32, arm, x86 and loongarch64 (corosensei backend), \
             wasm32 (host fibers, greenlet_fiber_v1)."
        );
    }
}
