//! `cargo xtask ci`: what CI runs, step by step, stopping at the first failing step.
//! `.ci/run` runs the same steps.

use crate::exec;
use crate::setup;
use crate::test_all::{self, Options};

/// Runs setup, the format check, clippy, then every row; `Ok(true)` if all passed.
pub fn run(options: &Options) -> Result<bool, String> {
    if !options.no_setup {
        setup::run()?;
    }
    exec::run(exec::cargo().args(["fmt", "--all", "--", "--check"]))?;
    exec::run(exec::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    test_all::run(&Options {
        targets: options.targets.clone(),
        no_setup: true,
    })
}
