//! The valgrind row: the core crate's tests and the conformance suite, in release, under
//! valgrind's memcheck, on the x86-64 assembly backend. It checks the `unsafe` code that
//! Miri cannot reach because it switches stacks: every access to a greenlet's state, to a
//! handoff on another greenlet's stack, to freed and reused states and stacks.
//!
//! The stack allocator registers every stack with valgrind (a client request, a no-op
//! natively), so reads across greenlet stacks are not mistaken for errors, and the core
//! frees greenlet states instead of caching them for reuse, so a use after free of one is
//! reported. The test with
//! 200,000 live greenlets is skipped: valgrind's own table of memory segments overflows.
//!
//! Leaks are not errors here (they are in the C row): the test harness's threads leave
//! blocks behind, and so, by design, do greenlets still suspended when their thread exits
//! (their frames are discarded unrun). The tests count drops where leaks matter.

use std::process::Command;

use super::{CargoTest, Row, RowKind};
use crate::exec::{self, Captured};
/// Valgrind's command line: memory errors fail the test binary, leaks do not (see the
/// module docs); `--max-stackframe` as in the C row (`native::VALGRIND`).
const VALGRIND: &[&str] = &[
    "valgrind",
    "-q",
    "--error-exitcode=1",
    "--leak-check=no",
    "--max-stackframe=131072",
];

/// The target the row builds for: the native one, so that the runner below applies.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// The one valgrind row.
pub fn rows() -> Vec<Row> {
    vec![Row {
        name: "valgrind (core + conformance)",
        backend: "asm-x86_64",
        kind: Box::new(ValgrindTest),
    }]
}

/// `cargo test --release` of the core crate and the conformance suite, each test binary
/// run by valgrind.
pub struct ValgrindTest;

impl RowKind for ValgrindTest {
    fn preflight(&self) -> Result<(), String> {
        match exec::which("valgrind") {
            Some(_) => Ok(()),
            None => Err("valgrind not found (`cargo xtask setup` installs it)".into()),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = exec::cargo();
        cmd.args(["test", "--release", "--no-fail-fast", "--target", TARGET]);
        cmd.args(["-p", "greenlet", "-p", "greenlet-conformance", "--tests"]);
        cmd.args(["--", "--skip", "two_hundred_thousand"]);
        cmd.env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
            VALGRIND.join(" "),
        );
        // Processes the tests start (the stack-overflow child) run natively.
        cmd.env_remove("GREENLET_TEST_RUNNER");
        // Tests that behave differently under Valgrind check that they know it.
        cmd.env("GREENLET_UNDER_VALGRIND", "1");
        cmd
    }

    fn explain_failure(&self, output: &Captured) -> String {
        let why = CargoTest {
            target: TARGET,
            runner: None,
        }
        .explain_failure(output);
        if output.stderr.contains("ERROR SUMMARY") || output.stdout.contains("ERROR SUMMARY") {
            format!("{why}: valgrind found errors")
        } else {
            why
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binaries_run_under_valgrind() {
        let cmd = ValgrindTest.command();
        let runner = cmd
            .get_envs()
            .find(|(key, _)| *key == "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER")
            .and_then(|(_, value)| value)
            .map(|value| value.to_string_lossy().into_owned());
        assert_eq!(runner.as_deref(), Some(VALGRIND.join(" ").as_str()));
        let shown = exec::display(&cmd);
        assert!(shown.contains("--release"), "{shown}");
        assert!(shown.contains("--skip two_hundred_thousand"), "{shown}");
    }
}
