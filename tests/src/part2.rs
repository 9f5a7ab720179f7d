//! Helpers for the second half of the suite (catalog items 54–106): counters and logs that
//! outlive greenlets, value helpers, a small PRNG for the randomized model test, handles
//! smuggled across threads to reach the owner checks, and child processes for the tests
//! whose expected outcome is the death of the process.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use greenlet::{Error, GreenletExit, Value};

/// A shared event counter: how many times something happened (a destructor ran, a
/// `GreenletExit` arrived, a closure was called).
#[derive(Clone, Debug, Default)]
pub struct Counter(Rc<Cell<usize>>);

impl Counter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times it was bumped.
    pub fn get(&self) -> usize {
        self.0.get()
    }

    /// Counts one more event.
    pub fn bump(&self) {
        self.0.set(self.0.get() + 1);
    }

    /// A value that bumps this counter when it is dropped.
    pub fn guard(&self) -> DropGuard {
        DropGuard(self.clone())
    }
}

/// Bumps its [`Counter`] when dropped: put one on a greenlet's stack or in its closure to
/// see whether (and how often) its destructors ran.
#[derive(Debug)]
pub struct DropGuard(Counter);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.bump();
    }
}

/// An ordered log of events, shared between greenlets.
#[derive(Clone, Debug, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event.
    pub fn push(&self, event: impl Into<String>) {
        self.0.borrow_mut().push(event.into());
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// Takes the events so far, leaving the log empty.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

/// Takes a `T` out of a switch result, with a message naming what arrived instead.
#[track_caller]
pub fn expect_value<T: 'static>(result: Result<Value, Error>) -> T {
    match result {
        Ok(value) => match value.downcast::<T>() {
            Ok(v) => v,
            Err(other) => panic!(
                "expected a {}, got a {}",
                std::any::type_name::<T>(),
                other.type_name()
            ),
        },
        Err(error) => panic!(
            "expected a {}, got the error {error:?}",
            std::any::type_name::<T>()
        ),
    }
}

/// The message of the `GreenletExit` a switch result holds as a value.
#[track_caller]
pub fn expect_exit_value(result: Result<Value, Error>) -> String {
    expect_value::<GreenletExit>(result).message().to_owned()
}

/// The message of an error that was thrown (not a `GreenletExit`).
#[track_caller]
pub fn expect_thrown(result: Result<Value, Error>) -> String {
    match result {
        Err(Error::Thrown(e)) => e.to_string(),
        Err(other) => panic!("expected a thrown error, got {other:?}"),
        Ok(value) => panic!("expected a thrown error, got {value:?}"),
    }
}

/// SplitMix64: a tiny, well-mixed PRNG, so the randomized tests need no dependency and
/// replay exactly from a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        // The modulo bias is irrelevant for test scheduling.
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }
}

/// The seeds a randomized test runs: `GREENLET_FUZZ_SEED` (one seed, or several separated
/// by commas; decimal or `0x` hex) if set, else `defaults`.
pub fn fuzz_seeds(defaults: &[u64]) -> Vec<u64> {
    let Ok(text) = std::env::var("GREENLET_FUZZ_SEED") else {
        return defaults.to_vec();
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse::<u64>(),
            };
            parsed.unwrap_or_else(|e| panic!("GREENLET_FUZZ_SEED: bad seed {s:?}: {e}"))
        })
        .collect()
}

/// Handles carried to another thread, to reach the owner checks that the C ABI relies on.
#[cfg(not(target_arch = "wasm32"))]
pub mod foreign {
    use greenlet::{Error, Greenlet, Value};

    /// A greenlet handle moved to a thread that does not own it.
    ///
    /// `Greenlet` is `!Send` because its reference count is not atomic. Foreign threads
    /// may only call the operations that check the owner thread *before* touching the
    /// count (`switch`, `throw`, `set_parent`); the handle must then go back to its owner
    /// thread to be dropped there (or be dropped after that thread has been joined).
    pub struct Foreign(Greenlet);

    // SAFETY: see the type's documentation: a foreign thread reaches only the owner checks,
    // which read the immutable owner serial and nothing the owner thread mutates.
    unsafe impl Send for Foreign {}
    // SAFETY: as above; shared use is limited to the same checked calls.
    unsafe impl Sync for Foreign {}

    impl Foreign {
        /// Wraps a handle of the calling thread for the trip.
        pub fn new(greenlet: Greenlet) -> Self {
            Foreign(greenlet)
        }

        /// `switch` from the foreign thread: must fail the owner check.
        pub fn switch<T: 'static>(&self, value: T) -> Result<Value, Error> {
            self.0.switch(value)
        }

        /// `throw` from the foreign thread: must fail the owner check.
        pub fn throw(&self, error: Error) -> Result<Value, Error> {
            self.0.throw(error)
        }

        /// `kill` (a throw) from the foreign thread: must fail the owner check.
        pub fn kill(&self) -> Result<Value, Error> {
            self.0.kill()
        }

        /// `set_parent` of this foreign greenlet to a local one.
        pub fn set_parent(&self, parent: &Greenlet) -> Result<(), Error> {
            self.0.set_parent(parent)
        }

        /// Makes this foreign greenlet the parent of a local one.
        pub fn adopt(&self, child: &Greenlet) -> Result<(), Error> {
            child.set_parent(&self.0)
        }

        /// The handle again.
        ///
        /// # Safety
        ///
        /// Call it on the owner thread, or after the owner thread has been joined (then no
        /// other thread can touch the greenlet's state any more).
        pub unsafe fn into_inner(self) -> Greenlet {
            self.0
        }
    }
}

/// Running a test of this binary again in a child process, for outcomes that end the
/// process (an abort) or change process-wide limits.
#[cfg(unix)]
pub mod child {
    use std::process::{Command, Output};

    /// The environment variable that tells a test it runs as the child.
    pub const MODE_VAR: &str = "GREENLET_CONFORMANCE_CHILD";

    /// The child mode this process was started in, if it is a child.
    pub fn mode() -> Option<String> {
        std::env::var(MODE_VAR).ok()
    }

    /// Runs the test `test_name` of the current test binary in a child process with the
    /// child mode `mode`, and waits for it.
    ///
    /// Under emulation (`GREENLET_TEST_RUNNER`, e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`)
    /// the child runs through that command. `RUST_BACKTRACE` is switched off in the child:
    /// printing a backtrace after resource exhaustion can hang the process.
    pub fn run(test_name: &str, mode: &str) -> Output {
        let exe = std::env::current_exe().expect("the path of the test binary");
        let runner = std::env::var("GREENLET_TEST_RUNNER").unwrap_or_default();
        let mut words = runner.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        command
            .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env(MODE_VAR, mode)
            .env("RUST_BACKTRACE", "0");
        command.output().unwrap_or_else(|e| {
            panic!(
                "cannot run the child {command:?}: {e} (under emulation, set \
                 GREENLET_TEST_RUNNER to the emulator command)"
            )
        })
    }

    /// A readable account of a child's outcome, for assertion messages.
    pub fn describe(output: &Output) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }
}

/// The number of memory mappings of this process (lines of `/proc/self/maps`).
#[cfg(target_os = "linux")]
pub fn mapping_count() -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().count()
}
