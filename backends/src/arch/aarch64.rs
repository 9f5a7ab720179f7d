//! AArch64 backend (placeholder on corosensei until the assembly lands).
pub use super::corosensei::CoroContext as AsmContext;
