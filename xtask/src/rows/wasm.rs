//! The wasm32-wasip1 rows: the core's tests, the backend tests and the conformance suite
//! compiled to wasm and run by the `greenlet-wasm` runner, once per fiber mechanism of the
//! host; and the host's own tests
//! (malformed modules, guest traps inside fibers, exit codes, fiber limits).

use std::path::PathBuf;
use std::process::Command;

use super::{Row, RowKind};
use crate::exec::{self, Captured};

/// The packages the wasm rows test: those of a native row. (`greenlet-backends`' `switch`
/// tests gate off what wasm32 lacks: corosensei, unwinding, backtraces, x86-64/AArch64
/// registers; its `stacks` tests are unix-only, an empty binary here.)
pub const WASM_TEST_PACKAGES: &[&str] = &["greenlet", "greenlet-backends", "greenlet-conformance"];

/// The target the rows build for.
const TARGET: &str = "wasm32-wasip1";

/// The wasm rows: the suite on the stack-switching mechanism and on the portable
/// fallback, then the host's own tests.
pub fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "wasm32-wasip1 (stack switching)",
            backend: "wasm-host-fibers",
            kind: Box::new(WasmTest {
                mechanism: "stack-switching",
            }),
        },
        Row {
            name: "wasm32-wasip1 (fallback)",
            backend: "wasm-host-fibers",
            kind: Box::new(WasmTest {
                mechanism: "store-per-fiber",
            }),
        },
        Row {
            name: "wasm host (greenlet-wasm)",
            backend: "wasmtime",
            kind: Box::new(HostTest),
        },
    ]
}

/// `cargo test --release -p greenlet-wasm`: the host library and runner's own tests, which
/// build their guests and run them on both mechanisms. Release, like the runner the other
/// rows build, so that wasmtime is compiled once.
pub struct HostTest;

impl RowKind for HostTest {
    fn command(&self) -> Command {
        let mut cmd = exec::cargo();
        cmd.args(["test", "--release", "--no-fail-fast", "-p", "greenlet-wasm"]);
        cmd.env_remove("GREENLET_WASM_FIBERS");
        cmd
    }
}

/// `cargo test --target wasm32-wasip1` of [`WASM_TEST_PACKAGES`], each test binary run by
/// `greenlet-wasm run --fibers=<mechanism>` (cargo's runner setting).
pub struct WasmTest {
    /// A `--fibers` value of the runner.
    pub mechanism: &'static str,
}

/// Where `cargo build --release -p greenlet-wasm` puts the runner.
fn runner_path() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    let target = std::env::current_dir().map_or(target.clone(), |cwd| cwd.join(target));
    target.join("release").join("greenlet-wasm")
}

impl RowKind for WasmTest {
    /// Builds the runner (wasmtime: ~10 minutes on a cold 2-core machine, seconds after).
    fn preflight(&self) -> Result<(), String> {
        let mut build = exec::cargo();
        build.args(["build", "--release", "-p", "greenlet-wasm"]);
        println!("+ {}", exec::display(&build));
        exec::run(&mut build).map_err(|e| format!("cannot build the greenlet-wasm runner: {e}"))?;
        let runner = runner_path();
        if runner.is_file() {
            Ok(())
        } else {
            Err(format!("the runner is not at {}", runner.display()))
        }
    }

    fn command(&self) -> Command {
        let mut cmd = exec::cargo();
        cmd.args(["test", "--no-fail-fast", "--target", TARGET]);
        for package in WASM_TEST_PACKAGES {
            cmd.args(["-p", package]);
        }
        let runner = format!(
            "{} run --fibers={}",
            runner_path().display(),
            self.mechanism
        );
        cmd.env("CARGO_TARGET_WASM32_WASIP1_RUNNER", runner);
        cmd.env_remove("GREENLET_WASM_FIBERS");
        cmd
    }

    fn explain_failure(&self, output: &Captured) -> String {
        let stderr = &output.stderr;
        if super::is_build_error(stderr) {
            return "build error".to_string();
        }
        if let Some(line) = stderr.lines().find(|l| l.starts_with("greenlet-wasm: ")) {
            return line.to_string();
        }
        format!("cargo test failed ({})", output.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_row_runs_the_host_tests_in_release() {
        let rows = rows();
        let host = rows.last().expect("the host row comes last");
        assert_eq!(host.name, "wasm host (greenlet-wasm)");
        let shown = exec::display(&host.kind.command());
        assert!(shown.contains("test --release"), "{shown}");
        assert!(shown.contains("-p greenlet-wasm"), "{shown}");
    }

    #[test]
    fn each_wasm_row_runs_the_suite_through_its_mechanism() {
        for (row, mechanism) in rows().iter().zip(["stack-switching", "store-per-fiber"]) {
            let shown = exec::display(&row.kind.command());
            assert!(shown.contains("--target wasm32-wasip1"), "{shown}");
            assert!(
                shown.contains("-p greenlet -p greenlet-backends -p greenlet-conformance"),
                "{shown}"
            );
            assert!(
                shown.contains(&format!("greenlet-wasm run --fibers={mechanism}")),
                "{shown}"
            );
        }
    }
}
