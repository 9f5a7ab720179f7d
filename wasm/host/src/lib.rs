//! A wasmtime host for greenlet-rs guests.
//!
//! greenlet-rs compiled to `wasm32-wasip1` cannot switch stacks by itself: it imports the
//! fiber functions of the `greenlet_fiber_v1` ABI (`wasm/ABI.md`) and leaves the switching
//! to its host. This crate is that host, for wasmtime, in two interchangeable mechanisms
//! behind the same ABI:
//!
//! | [`Mechanism`] | how | where | switch round trip |
//! |---|---|---|---|
//! | [`StackSwitching`](Mechanism::StackSwitching) | the Wasm stack-switching proposal: a fiber is a continuation, finished ones are reused | x86-64 Linux (wasmtime Tier 3) | ~0.1 µs |
//! | [`StorePerFiber`](Mechanism::StorePerFiber) | one `Store` + instance per fiber, all sharing one linear memory, driven by async calls | everywhere wasmtime runs async | ~0.6 µs |
//!
//! [`Host`] loads guests, gives a [`wasmtime::Linker`] that already holds WASI and the fiber
//! imports (add your own imports to it), and runs a guest's `_start`:
//!
//! ```no_run
//! use greenlet_wasm::{GuestState, Host, HostConfig, RunOptions};
//!
//! let host = Host::new(HostConfig::default())?;
//! let mut linker = host.linker::<u32>()?;
//! // An import of our own: the guest declares
//! // #[link(wasm_import_module = "demo")] extern "C" { fn tick() -> u32; }
//! linker
//!     .func_wrap("demo", "tick", |caller: wasmtime::Caller<'_, GuestState<u32>>| {
//!         let mut ticks = caller.data().user();
//!         *ticks += 1;
//!         *ticks
//!     })
//!     .map_err(|e| greenlet_wasm::Error::Link(e.to_string()))?;
//! let guest = host.load_file("guest.wasm")?;
//! let outcome = host.run(&linker, &guest, &RunOptions::new("guest.wasm"), 0u32)?;
//! println!("exit code {}, {} ticks", outcome.exit_code, outcome.user);
//! # Ok::<(), greenlet_wasm::Error>(())
//! ```
//!
//! The command-line runner `greenlet-wasm run [--fibers=...] module.wasm [args]` is this
//! library plus argument parsing; it is what `cargo test --target wasm32-wasip1` runs
//! through (set `CARGO_TARGET_WASM32_WASIP1_RUNNER="greenlet-wasm run"`).

#![warn(missing_docs)]

mod error;
mod limits;
mod memory;
mod module;
mod stack_switching;
mod store_per_fiber;
mod wasi;

pub use error::Error;
pub use memory::GuestMemory;
pub use module::Guest;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime::{Engine, Linker};

/// The ABI's import module name, from `wasm/ABI.md`.
pub const ABI_MODULE: &str = "greenlet_fiber_v1";

/// How fibers are made.
///
/// ```
/// use greenlet_wasm::Mechanism;
/// assert_eq!("store-per-fiber".parse::<Mechanism>(), Ok(Mechanism::StorePerFiber));
/// assert_eq!(Mechanism::StackSwitching.to_string(), "stack-switching");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// The Wasm stack-switching proposal (`cont.new`, `resume`, `switch`): fast, x86-64
    /// Linux only, Tier 3 in wasmtime.
    StackSwitching,
    /// One store and instance per fiber, async calls: portable fallback.
    StorePerFiber,
}

impl Mechanism {
    /// The fast mechanism where wasmtime supports it, else the portable one.
    ///
    /// ```
    /// let m = greenlet_wasm::Mechanism::best_available();
    /// println!("using {m}");
    /// ```
    pub fn best_available() -> Self {
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            Mechanism::StackSwitching
        } else {
            Mechanism::StorePerFiber
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::StackSwitching => "stack-switching",
            Mechanism::StorePerFiber => "store-per-fiber",
        })
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stack-switching" => Ok(Mechanism::StackSwitching),
            "store-per-fiber" => Ok(Mechanism::StorePerFiber),
            other => Err(format!(
                "unknown fiber mechanism `{other}`: use `stack-switching` or `store-per-fiber`"
            )),
        }
    }
}

/// How a [`Host`] is set up.
///
/// ```
/// use greenlet_wasm::{HostConfig, Mechanism};
/// let config = HostConfig {
///     mechanism: Mechanism::StorePerFiber,
///     fiber_limit: Some(1000),
///     ..HostConfig::default()
/// };
/// assert_eq!(config.fiber_limit, Some(1000));
/// ```
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// How fibers are made; defaults to [`Mechanism::best_available`].
    pub mechanism: Mechanism,
    /// The most live fibers a guest may hold; `None`: as many as this machine allows (see
    /// [`default_fiber_limit`]). Never more than [`MAX_FIBER_LIMIT`].
    pub fiber_limit: Option<u32>,
    /// Bytes reserved for each fiber's native stack (wasm frames); only touched pages use
    /// memory. Deep recursion inside a greenlet needs more.
    pub fiber_stack_size: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            mechanism: Mechanism::best_available(),
            fiber_limit: None,
            fiber_stack_size: DEFAULT_FIBER_STACK_SIZE,
        }
    }
}

/// Default bytes reserved for each fiber's native stack: 8 MiB of address space, of which
/// only touched pages use memory (a few KiB for most greenlets). Wasm code may use half
/// of it; the rest is room for host calls made from the fiber. The conformance suite
/// recurses 10,000 frames deep inside a greenlet, which needs a few MiB in a debug build.
///
/// The root (the guest's `_start`) runs on the thread that calls [`Host::run`] and may use
/// as much: call it from a thread whose stack is larger than `fiber_stack_size / 2`
/// (the `greenlet-wasm` runner does).
pub const DEFAULT_FIBER_STACK_SIZE: usize = 8 << 20;

/// The most live fibers any configuration allows (ids carry a 16-bit slot number).
pub const MAX_FIBER_LIMIT: u32 = 65_535;

pub use limits::default_fiber_limit;

/// Everything a store holds for a guest: your state, WASI, and the fiber machinery.
///
/// Your own imports receive it as `Caller<'_, GuestState<T>>`; reach your state with
/// [`user`](Self::user). Under [`Mechanism::StorePerFiber`] every fiber has its own store,
/// all sharing this state and WASI, which is why `T` sits behind a mutex.
///
/// ```no_run
/// fn bump(caller: wasmtime::Caller<'_, greenlet_wasm::GuestState<u64>>) -> u64 {
///     let mut n = caller.data().user();
///     *n += 1;
///     *n
/// }
/// ```
pub struct GuestState<T> {
    user: Arc<Mutex<T>>,
    wasi: Arc<wasi::SharedWasi>,
    pub(crate) fibers: FiberData,
}

/// The mechanism's per-store data.
pub(crate) enum FiberData {
    StackSwitching(stack_switching::StoreData),
    StorePerFiber(store_per_fiber::StoreData),
}

impl<T> GuestState<T> {
    /// Your state, locked for as long as the guard lives (do not hold it across a call
    /// back into the guest).
    ///
    /// ```no_run
    /// # fn f(state: &greenlet_wasm::GuestState<Vec<String>>) {
    /// state.user().push("seen".to_string());
    /// # }
    /// ```
    pub fn user(&self) -> MutexGuard<'_, T> {
        self.user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn new(user: Arc<Mutex<T>>, wasi: Arc<wasi::SharedWasi>, fibers: FiberData) -> Self {
        GuestState { user, wasi, fibers }
    }
}

/// What the guest gets besides its module: arguments, environment, directories.
///
/// ```
/// let mut options = greenlet_wasm::RunOptions::new("prog.wasm");
/// options.args.push("--verbose".into());
/// options.env.push(("RUST_BACKTRACE".into(), "1".into()));
/// ```
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `argv`, program name first.
    pub args: Vec<String>,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// Host directories the guest may open: (host path, guest path).
    pub dirs: Vec<(PathBuf, String)>,
    /// Where the guest's stdout and stderr go: `None` for the host's own.
    pub output: Option<CapturedOutput>,
}

/// A buffer that collects a guest's stdout and stderr instead of the host's own.
///
/// Keep a clone: it can be read after the run, whether it succeeded or trapped.
///
/// ```no_run
/// let output = greenlet_wasm::CapturedOutput::new();
/// let mut options = greenlet_wasm::RunOptions::new("g.wasm");
/// options.output = Some(output.clone());
/// // ... host.run(&linker, &guest, &options, ()) ...
/// println!("guest printed: {}", output.stdout());
/// ```
#[derive(Clone, Debug)]
pub struct CapturedOutput {
    stdout: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

impl CapturedOutput {
    /// Empty buffers (up to 64 MiB each; writing more traps the guest).
    ///
    /// ```
    /// assert_eq!(greenlet_wasm::CapturedOutput::new().stdout(), "");
    /// ```
    pub fn new() -> Self {
        use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
        CapturedOutput {
            stdout: MemoryOutputPipe::new(64 << 20),
            stderr: MemoryOutputPipe::new(64 << 20),
        }
    }

    /// What the guest wrote to stdout so far (lossy UTF-8).
    ///
    /// ```
    /// assert!(greenlet_wasm::CapturedOutput::new().stdout().is_empty());
    /// ```
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.contents()).into_owned()
    }

    /// What the guest wrote to stderr so far (lossy UTF-8).
    ///
    /// ```
    /// assert!(greenlet_wasm::CapturedOutput::new().stderr().is_empty());
    /// ```
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

impl Default for CapturedOutput {
    fn default() -> Self {
        Self::new()
    }
}

impl RunOptions {
    /// Options with `program` as `argv[0]` and nothing else.
    ///
    /// ```
    /// assert_eq!(greenlet_wasm::RunOptions::new("a.wasm").args, ["a.wasm"]);
    /// ```
    pub fn new(program: impl Into<String>) -> Self {
        RunOptions {
            args: vec![program.into()],
            ..RunOptions::default()
        }
    }
}

/// How a guest run ended, when it ended with an exit code.
///
/// ```no_run
/// # let host = greenlet_wasm::Host::new(Default::default()).unwrap();
/// # let guest = host.load_file("g.wasm").unwrap();
/// # let linker = host.linker::<()>().unwrap();
/// let outcome = host.run(&linker, &guest, &greenlet_wasm::RunOptions::new("g"), ())?;
/// std::process::exit(outcome.exit_code);
/// # Ok::<(), greenlet_wasm::Error>(())
/// ```
#[derive(Debug)]
pub struct RunOutcome<T> {
    /// 0 when `_start` returned, else what the guest passed to `proc_exit`.
    pub exit_code: i32,
    /// Your state, back from the run.
    pub user: T,
    /// Native stacks the mechanism made (continuations or stores): with reuse, this
    /// stays near the peak number of live fibers however many greenlets ran.
    pub native_stacks_created: u64,
}

/// A configured wasmtime engine that runs greenlet-rs guests.
///
/// ```
/// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
/// assert!(host.fiber_limit() >= 1);
/// ```
pub struct Host {
    engine: Engine,
    config: HostConfig,
    fiber_limit: u32,
    helper: Option<stack_switching::Helper>,
}

impl Host {
    /// Makes the engine for `config`.
    ///
    /// Fails with [`Error::Config`] when the mechanism cannot work on this machine.
    ///
    /// ```
    /// use greenlet_wasm::{Host, HostConfig, Mechanism};
    /// let host = Host::new(HostConfig { mechanism: Mechanism::StorePerFiber, ..Default::default() });
    /// assert!(host.is_ok());
    /// ```
    pub fn new(config: HostConfig) -> Result<Self, Error> {
        let fiber_limit = config
            .fiber_limit
            .unwrap_or_else(default_fiber_limit)
            .clamp(1, MAX_FIBER_LIMIT);
        let (engine, helper) = match config.mechanism {
            Mechanism::StackSwitching => {
                let engine = stack_switching::engine(&config)?;
                let helper = stack_switching::Helper::new(&engine)?;
                (engine, Some(helper))
            }
            Mechanism::StorePerFiber => (store_per_fiber::engine(&config)?, None),
        };
        Ok(Host {
            engine,
            config,
            fiber_limit,
            helper,
        })
    }

    /// The mechanism this host uses.
    ///
    /// ```
    /// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// println!("{}", host.mechanism());
    /// ```
    pub fn mechanism(&self) -> Mechanism {
        self.config.mechanism
    }

    /// The most live fibers a guest of this host may hold (`limit()` in the ABI).
    ///
    /// ```
    /// use greenlet_wasm::{Host, HostConfig};
    /// let host = Host::new(HostConfig { fiber_limit: Some(10), ..Default::default() }).unwrap();
    /// assert_eq!(host.fiber_limit(), 10);
    /// ```
    pub fn fiber_limit(&self) -> u32 {
        self.fiber_limit
    }

    /// The wasmtime engine, e.g. to compile other modules for the same stores.
    ///
    /// ```
    /// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// let _engine: &wasmtime::Engine = host.engine();
    /// ```
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles and checks a guest module from its bytes (binary or text format).
    ///
    /// ```
    /// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// let guest = host.load(br#"(module (func (export "_start")))"#).unwrap();
    /// assert!(!guest.uses_fibers());
    /// ```
    pub fn load(&self, bytes: &[u8]) -> Result<Guest, Error> {
        Guest::compile(self, bytes)
    }

    /// Reads and compiles a guest module file.
    ///
    /// ```no_run
    /// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// let guest = host.load_file("target/wasm32-wasip1/release/app.wasm")?;
    /// # Ok::<(), greenlet_wasm::Error>(())
    /// ```
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Guest, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        self.load(&bytes)
    }

    /// A linker holding WASI preview 1 and (for this mechanism) the fiber imports. Add
    /// your own imports to it, then pass it to [`run`](Self::run).
    ///
    /// ```
    /// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// let mut linker = host.linker::<()>().unwrap();
    /// linker.func_wrap("env", "seven", || 7i32).unwrap();
    /// ```
    pub fn linker<T: Send + 'static>(&self) -> Result<Linker<GuestState<T>>, Error> {
        let mut linker = Linker::new(&self.engine);
        let link = |e: wasmtime::Error| Error::Host(format!("cannot set up the linker: {e}"));
        match self.config.mechanism {
            Mechanism::StackSwitching => {
                wasmtime_wasi::p1::add_to_linker_sync(&mut linker, wasi::access).map_err(link)?;
            }
            Mechanism::StorePerFiber => {
                wasmtime_wasi::p1::add_to_linker_async(&mut linker, wasi::access).map_err(link)?;
                store_per_fiber::add_fiber_imports(&mut linker).map_err(link)?;
            }
        }
        Ok(linker)
    }

    /// Runs the guest's `_start` with WASI and fibers until it returns, exits or traps.
    ///
    /// An exit code (including a non-zero `proc_exit`) is `Ok`; a trap in any fiber, a
    /// fiber fault or a link failure is an [`Error`]. Either way every store of the run is
    /// gone when this returns, and the host can run again.
    ///
    /// ```no_run
    /// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// let linker = host.linker::<()>().unwrap();
    /// let guest = host.load_file("app.wasm").unwrap();
    /// match host.run(&linker, &guest, &greenlet_wasm::RunOptions::new("app"), ()) {
    ///     Ok(outcome) => println!("exited with {}", outcome.exit_code),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// ```
    pub fn run<T: Send + 'static>(
        &self,
        linker: &Linker<GuestState<T>>,
        guest: &Guest,
        options: &RunOptions,
        user: T,
    ) -> Result<RunOutcome<T>, Error> {
        let user = Arc::new(Mutex::new(user));
        let wasi = Arc::new(wasi::SharedWasi::new(options)?);
        let (exit_code, native_stacks_created) = match self.config.mechanism {
            Mechanism::StackSwitching => {
                let helper = self.helper.as_ref().expect("made with the engine");
                stack_switching::run(self, helper, linker, guest, user.clone(), wasi)?
            }
            Mechanism::StorePerFiber => {
                store_per_fiber::run(self, linker, guest, user.clone(), wasi)?
            }
        };
        let user = Arc::try_unwrap(user)
            .map_err(|_| Error::Host("a store outlived its run".into()))?
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(RunOutcome {
            exit_code,
            user,
            native_stacks_created,
        })
    }
}
