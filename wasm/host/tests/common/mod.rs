//! Building the guest programs of `wasm/guests` once, and running them on a host.
#![allow(dead_code)]

use greenlet_wasm::{
    CapturedOutput, Error, GuestState, Host, HostConfig, Mechanism, RunOptions, RunOutcome,
};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Both mechanisms; every behaviour test runs on each.
pub const MECHANISMS: [Mechanism; 2] = [Mechanism::StackSwitching, Mechanism::StorePerFiber];

/// Builds `wasm/guests` for wasm32-wasip1 (release) once per test binary; returns the
/// directory holding the `.wasm` files.
pub fn guest_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        // A target dir of its own: the one running this test may be locked.
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&workspace)
            .args(["build", "--release", "--target", "wasm32-wasip1"])
            .args(["-p", "greenlet-wasm-guests", "--bins"])
            .env("CARGO_TARGET_DIR", &target)
            // The guests need the workspace's wasm32 rustflags, which these would replace.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the guests failed");
        target.join("wasm32-wasip1/release")
    })
}

/// The bytes of guest program `name`.
pub fn guest(name: &str) -> Vec<u8> {
    let path = guest_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// This process's resident set size in KiB.
pub fn rss_kib() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A finished run: its result, and what the guest printed.
pub struct Ran {
    pub result: Result<RunOutcome<()>, Error>,
    pub output: CapturedOutput,
}

impl Ran {
    pub fn stdout(&self) -> String {
        self.output.stdout()
    }

    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// The exit code, panicking with the error and output if the run failed.
    pub fn exit_code(&self) -> i32 {
        match &self.result {
            Ok(outcome) => outcome.exit_code,
            Err(e) => panic!(
                "run failed: {e}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            ),
        }
    }
}

/// Runs `bytes` on `host` with `args` (argv[0] is "guest"), output captured, plus the
/// `greenlet_test::rss_kib` import.
pub fn run_on(host: &Host, bytes: &[u8], args: &[&str]) -> Ran {
    let mut linker = host.linker::<()>().expect("linker");
    linker
        .func_wrap(
            "greenlet_test",
            "rss_kib",
            |_: wasmtime::Caller<'_, GuestState<()>>| rss_kib(),
        )
        .expect("test import");
    let output = CapturedOutput::new();
    let mut options = RunOptions::new("guest");
    options.args.extend(args.iter().map(|a| a.to_string()));
    options.output = Some(output.clone());
    // The root runs on this thread's stack: give it as much as a fiber's.
    let result = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(greenlet_wasm::DEFAULT_FIBER_STACK_SIZE + (8 << 20))
            .spawn_scoped(scope, || {
                host.load(bytes)
                    .and_then(|guest| host.run(&linker, &guest, &options, ()))
            })
            .expect("guest thread")
            .join()
            .expect("the host does not panic")
    });
    Ran { result, output }
}

/// A host with `mechanism` and otherwise default settings.
pub fn host(mechanism: Mechanism) -> Host {
    Host::new(HostConfig {
        mechanism,
        ..HostConfig::default()
    })
    .expect("host")
}

/// Runs guest program `name` on a fresh host with `mechanism`.
pub fn run(mechanism: Mechanism, name: &str, args: &[&str]) -> Ran {
    run_on(&host(mechanism), &guest(name), args)
}
