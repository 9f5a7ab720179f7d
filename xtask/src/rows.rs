//! The rows of `test-all-targets`: what each one tests, and how.
//!
//! A [`Row`] is a name, a backend label and a [`RowKind`] — the "how": which command to
//! run and how to count the results in its output. [`CargoTest`] is the kind for Rust
//! targets whose tests `cargo test` builds and runs (natively or under QEMU). To add a new
//! kind (a wasm32 suite behind a wasmtime runner, C/C++ tests, ...), implement `RowKind` in
//! a module of its own and add rows using it to [`all`].

use std::process::Command;

use crate::exec::{self, Captured};
use crate::libtest;
use crate::outcome::Counts;

pub mod miri;
mod valgrind;
mod wasm;

/// The packages every `cargo test` row tests.
pub const TEST_PACKAGES: &[&str] = &["greenlet", "greenlet-backends", "greenlet-conformance"];

/// Every row, in table order.
pub fn all() -> Vec<Row> {
    vec![
        Row::cargo_test("x86_64-unknown-linux-gnu", "asm-x86_64", None),
        Row::cargo_test(
            "aarch64-unknown-linux-gnu",
            "asm-aarch64",
            Some("qemu-aarch64 -L /usr/aarch64-linux-gnu"),
        ),
        Row::cargo_test(
            "riscv64gc-unknown-linux-gnu",
            "corosensei",
            Some("qemu-riscv64 -L /usr/riscv64-linux-gnu"),
        ),
    ]
    .into_iter()
    .chain(crate::native::rows())
    .chain(wasm::rows())
    .chain(valgrind::rows())
    .chain(miri::rows())
    .collect()
}

/// One line of the table.
pub struct Row {
    /// Names the row in the table and in `--targets`; a target triple for Rust targets.
    pub name: &'static str,
    /// The backend the row must exercise. The tests see it as `GREENLET_EXPECT_BACKEND`.
    pub backend: &'static str,
    pub kind: Box<dyn RowKind>,
}

impl Row {
    /// A row testing [`TEST_PACKAGES`] with `cargo test --target <target>`.
    ///
    /// `runner` is the emulator command line for a cross target, or `None` natively.
    pub fn cargo_test(
        target: &'static str,
        backend: &'static str,
        runner: Option<&'static str>,
    ) -> Row {
        Row {
            name: target,
            backend,
            kind: Box::new(CargoTest { target, runner }),
        }
    }
}

/// How to run a row and count its results.
pub trait RowKind {
    /// Checks that the row can run at all; `Err` says what is missing.
    fn preflight(&self) -> Result<(), String> {
        Ok(())
    }

    /// The command that builds and runs the row's tests, run from the workspace root.
    fn command(&self) -> Command;

    /// Counts the results in the command's output: libtest's result lines by default.
    fn count(&self, output: &Captured) -> Counts {
        libtest::count(&output.stdout)
    }

    /// Says why the command exited unsuccessfully though no test failed.
    fn explain_failure(&self, output: &Captured) -> String {
        format!("command failed ({})", output.status)
    }
}

/// Whether cargo's stderr says the tests did not compile.
pub fn is_build_error(stderr: &str) -> bool {
    stderr.contains("could not compile") || stderr.contains("error[E")
}

/// `cargo test` of [`TEST_PACKAGES`] for one target, read through libtest's output.
///
/// The emulator itself comes from the target's `runner` in `.cargo/config.toml`; `runner`
/// here is handed to the tests as `GREENLET_TEST_RUNNER`, for tests that start processes.
pub struct CargoTest {
    pub target: &'static str,
    pub runner: Option<&'static str>,
}

impl RowKind for CargoTest {
    fn preflight(&self) -> Result<(), String> {
        let Some(program) = self
            .runner
            .and_then(|runner| runner.split_whitespace().next())
        else {
            return Ok(());
        };
        match exec::which(program) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{program} not found (`cargo xtask setup` installs it)"
            )),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = exec::cargo();
        // --no-fail-fast: run every test binary, so the counts cover the whole row.
        cmd.args(["test", "--no-fail-fast", "--target", self.target]);
        for package in TEST_PACKAGES {
            cmd.args(["-p", package]);
        }
        match self.runner {
            Some(runner) => cmd.env("GREENLET_TEST_RUNNER", runner),
            None => cmd.env_remove("GREENLET_TEST_RUNNER"),
        };
        cmd
    }

    fn explain_failure(&self, output: &Captured) -> String {
        let stderr = &output.stderr;
        if is_build_error(stderr) {
            return "build error".to_string();
        }
        // A test binary that died without a result line, e.g. "(signal: 11, SIGSEGV: ...)".
        if let Some(line) = stderr
            .lines()
            .find(|l| l.contains("process didn't exit successfully"))
        {
            let how = line.rfind(" (").map_or("", |at| &line[at + 1..]);
            return format!("a test binary exited abnormally {how}")
                .trim_end()
                .to_string();
        }
        format!("cargo test failed ({})", output.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_names_are_unique() {
        let rows = all();
        for (i, row) in rows.iter().enumerate() {
            assert!(
                rows[i + 1..].iter().all(|other| other.name != row.name),
                "{}",
                row.name
            );
        }
    }

    #[test]
    fn cross_rows_hand_the_runner_to_the_tests() {
        let row = Row::cargo_test(
            "aarch64-unknown-linux-gnu",
            "asm-aarch64",
            Some("qemu-aarch64 -L /x"),
        );
        let shown = exec::display(&row.kind.command());
        assert!(
            shown.starts_with("GREENLET_TEST_RUNNER='qemu-aarch64 -L /x' cargo test"),
            "{shown}"
        );
        assert!(
            shown.contains("--target aarch64-unknown-linux-gnu"),
            "{shown}"
        );
        assert!(
            shown.contains("-p greenlet -p greenlet-backends"),
            "{shown}"
        );
    }

    #[test]
    fn native_rows_clear_the_runner() {
        let row = Row::cargo_test("x86_64-unknown-linux-gnu", "asm-x86_64", None);
        let cmd = row.kind.command();
        let runner = cmd
            .get_envs()
            .find(|(key, _)| *key == "GREENLET_TEST_RUNNER");
        assert_eq!(runner, Some(("GREENLET_TEST_RUNNER".as_ref(), None)));
    }
}
