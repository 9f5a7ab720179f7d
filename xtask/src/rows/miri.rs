//! The Miri row: the `unsafe` code of `core/` that involves no assembly (`Value`'s storage,
//! the entry closure's buffer, the cache of freed greenlet states), run under Miri, which
//! checks every access against Rust's memory model and reports leaks.
//!
//! Tests that switch stacks cannot run under Miri (the switch is assembly); they carry
//! `#[cfg_attr(miri, ignore = ...)]` and show as ignored in the table. Miri needs a nightly
//! toolchain; `cargo xtask setup` installs one with the `miri` and `rust-src` components
//! when `cargo +nightly miri` does not work.

use std::process::{Command, Stdio};

use super::{Row, RowKind};
use crate::exec;

/// The toolchain Miri comes from.
const TOOLCHAIN: &str = "+nightly";

/// The one Miri row.
pub fn rows() -> Vec<Row> {
    vec![Row {
        name: "miri (core without assembly)",
        backend: "none",
        kind: Box::new(MiriTest),
    }]
}

/// Whether `cargo +nightly miri` works. Quietly: when it does not, cargo's complaint would
/// only repeat what setup says next.
pub fn available() -> bool {
    Command::new("cargo")
        .args([TOOLCHAIN, "miri", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs a nightly toolchain with Miri: the newest nightly that has it.
pub fn install() -> Result<(), String> {
    exec::run(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
        "--component",
        "miri",
        "--component",
        "rust-src",
        "--allow-downgrade",
    ]))
}

/// `cargo +nightly miri test -p greenlet --lib`.
pub struct MiriTest;

impl RowKind for MiriTest {
    fn preflight(&self) -> Result<(), String> {
        if available() {
            Ok(())
        } else {
            Err("`cargo +nightly miri` does not work (`cargo xtask setup` installs it)".into())
        }
    }

    fn command(&self) -> Command {
        // The rustup proxy, not `$CARGO`: only the proxy reads `+nightly`.
        let mut cmd = Command::new("cargo");
        cmd.args([TOOLCHAIN, "miri", "test", "-p", "greenlet", "--lib"]);
        // Set by the stable proxy that runs xtask; the toolchain argument must win.
        cmd.env_remove("RUSTUP_TOOLCHAIN");
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_miri_row_tests_the_core_library_on_nightly() {
        let rows = rows();
        let shown = exec::display(&rows[0].kind.command());
        assert!(
            shown.contains("cargo +nightly miri test -p greenlet --lib"),
            "{shown}"
        );
    }
}
