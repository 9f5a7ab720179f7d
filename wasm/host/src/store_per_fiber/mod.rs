//! Mechanism B: one store and instance per fiber, driven by async calls.
//!
//! A store is borrowed mutably by the one `call_async` future running in it, so two
//! suspended calls cannot share a store. Here each fiber is its own store and instance of
//! the guest (see [`rewrite`] for how they share one linear memory), and a fiber is a
//! pending `call_async` of its entry. The `switch` import is an async host function that
//! records the request and stays pending until the fiber is resumed; a small executor
//! polls only the running fiber's call and, whenever that call goes pending with a switch
//! request, moves on to the target's call:
//!
//! ```text
//!   executor: loop { poll calls[current] }
//!     Pending + Switch{to}  -> current = to (a NEW fiber: instantiate or reuse a store,
//!                              set __stack_pointer = hi, call_async entry(value, arg))
//!     Pending, no request   -> real I/O: return Pending to tokio
//!     Err(FiberEnded)       -> exit (or reset): store back to the pool, current = target
//!     root's call finished  -> the run's result; every other call is dropped
//! ```
//!
//! Everything the ABI promises holds as with stack switching; the costs differ: a switch
//! round trip is a few hundred nanoseconds, and a fiber that is not reusing a pooled store
//! pays for an instantiation.

mod rewrite;

use crate::error::{FiberFault, classify};
use crate::{
    ABI_MODULE, Error, FiberData, Guest, GuestState, Host, HostConfig, MAX_FIBER_LIMIT, wasi,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use wasmtime::{
    Caller, Config, Engine, Extern, Instance, InstancePre, Linker, MemoryType, Module,
    SharedMemory, Store, Val,
};

// States and errors of wasm/ABI.md.
const STATE_NONE: i32 = 0;
const STATE_EMPTY: i32 = 1;
const STATE_NEW: i32 = 2;
const STATE_RUNNING: i32 = 3;
const STATE_SUSPENDED: i32 = 4;
const E_NO_SUCH_FIBER: i32 = -1;
const E_NOT_BOUND: i32 = -2;
const E_IS_CURRENT: i32 = -3;
const E_LIMIT: i32 = -4;
const E_BAD_STACK: i32 = -6;
const E_STARTED: i32 = -7;
const E_NOT_IN_FIBER: i32 = -8;
const E_BAD_ENTRY: i32 = -9;
const E_ROOT: i32 = -10;

/// Idle stores kept for reuse by the next fibers to start.
const IDLE_STORES: usize = 256;

/// The engine: async calls, and shared memory for the one linear memory of all fibers.
pub(crate) fn engine(config: &HostConfig) -> Result<Engine, Error> {
    let mut c = Config::new();
    c.wasm_threads(true)
        .shared_memory(true)
        .async_stack_size(config.fiber_stack_size)
        .max_wasm_stack(config.fiber_stack_size / 2);
    Engine::new(&c).map_err(|e| Error::Config(format!("{e:#}")))
}

/// The compiled variants of a guest that uses fibers (see [`rewrite`]).
pub(crate) struct Variants {
    root: Module,
    fiber: Module,
    memory: rewrite::MemoryLimits,
}

impl Variants {
    /// `None` for a module that does not use fibers: it runs as it is, in one store.
    pub(crate) fn new(host: &Host, bytes: &[u8], uses_fibers: bool) -> Result<Option<Self>, Error> {
        if !uses_fibers {
            return Ok(None);
        }
        let binary;
        let bytes = if bytes.starts_with(b"\0asm") {
            bytes
        } else {
            binary = wat::parse_bytes(bytes).map_err(|e| Error::InvalidModule(e.to_string()))?;
            &binary[..]
        };
        let out = rewrite::rewrite(bytes)?;
        let compile = |b: &[u8]| {
            Module::new(host.engine(), b)
                .map_err(|e| Error::Host(format!("the rewritten module does not compile: {e:#}")))
        };
        Ok(Some(Variants {
            root: compile(&out.root)?,
            fiber: compile(&out.fiber)?,
            memory: out.memory,
        }))
    }
}

/// A fiber slot of the ABI.
#[derive(Clone, Copy, Default)]
struct Slot {
    state: i32,
    generation: u16,
    entry: i32,
    arg: i32,
    hi: i32,
    /// Set by `reset` on a suspended fiber: its pending `switch` ends it instead.
    kill: bool,
}

/// What the running fiber asked the executor to do when its call went pending or ended.
#[derive(Clone, Copy, Debug)]
enum Request {
    /// Run slot `to`, sending it `value`; the caller is suspended.
    Switch { to: usize, value: i32 },
    /// The caller's call ended (exit or reset): run slot `to` with `value`.
    Ended { to: usize, value: i32 },
}

/// The fiber table of one run, shared by all its stores.
pub(crate) struct Sched {
    slots: Vec<Slot>,
    free: Vec<usize>,
    current: usize,
    last_from: usize,
    value: i32,
    live: u32,
    limit: u32,
    request: Option<Request>,
}

impl Sched {
    fn new(limit: u32) -> Self {
        let mut root = Slot {
            state: STATE_RUNNING,
            ..Slot::default()
        };
        root.generation = 0;
        Sched {
            slots: vec![root],
            free: Vec::new(),
            current: 0,
            last_from: 0,
            value: 0,
            live: 0,
            limit,
            request: None,
        }
    }

    fn id_of(&self, slot: usize) -> i32 {
        ((i32::from(self.slots[slot].generation)) << 16) | slot as i32
    }

    /// The slot an id names.
    fn resolve(&self, id: i32) -> Result<usize, i32> {
        if id == 0 {
            return Ok(0);
        }
        if id < 0 {
            return Err(E_NO_SUCH_FIBER);
        }
        let slot = (id & 0xffff) as usize;
        match self.slots.get(slot) {
            Some(s)
                if slot != 0 && s.state != STATE_NONE && i32::from(s.generation) == id >> 16 =>
            {
                Ok(slot)
            }
            _ => Err(E_NO_SUCH_FIBER),
        }
    }

    /// The slot of a fiber that can be transferred to.
    fn resolve_target(&self, id: i32) -> Result<usize, i32> {
        let slot = self.resolve(id)?;
        if slot == self.current {
            return Err(E_IS_CURRENT);
        }
        if self.slots[slot].state == STATE_EMPTY {
            return Err(E_NOT_BOUND);
        }
        Ok(slot)
    }

    fn state(&self, id: i32) -> i32 {
        match self.resolve(id) {
            Err(_) => STATE_NONE,
            Ok(0) if self.current == 0 => STATE_RUNNING,
            Ok(0) => STATE_SUSPENDED,
            Ok(slot) => self.slots[slot].state,
        }
    }

    fn new_fiber(&mut self, lo: i32, hi: i32) -> i32 {
        if lo == 0 || (lo as u32) >= (hi as u32) || (lo | hi) & 15 != 0 {
            return E_BAD_STACK;
        }
        if self.live >= self.limit {
            return E_LIMIT;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.slots.len() <= MAX_FIBER_LIMIT as usize => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => return E_LIMIT,
        };
        let generation = self.slots[slot].generation;
        self.slots[slot] = Slot {
            state: STATE_EMPTY,
            generation,
            hi,
            ..Slot::default()
        };
        self.live += 1;
        self.id_of(slot)
    }

    /// Marks the running fiber suspended and asks the executor to run `to`.
    fn request_switch(&mut self, to: usize, value: i32) {
        let me = self.current;
        self.slots[me].state = STATE_SUSPENDED;
        self.request = Some(Request::Switch { to, value });
    }

    /// Makes `to` the running fiber (the executor's half of a transfer).
    fn transfer(&mut self, to: usize, value: i32) {
        self.last_from = self.current;
        self.current = to;
        self.value = value;
        self.slots[to].state = STATE_RUNNING;
    }
}

/// Per-store data: the shared fiber table and which slot this store runs.
pub(crate) struct StoreData {
    sched: Arc<Mutex<Sched>>,
    slot: usize,
}

fn lock(sched: &Mutex<Sched>) -> MutexGuard<'_, Sched> {
    sched
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn store_data<T>(state: &GuestState<T>) -> &StoreData {
    match &state.fibers {
        FiberData::StorePerFiber(d) => d,
        FiberData::StackSwitching(_) => unreachable!("a store-per-fiber store"),
    }
}

fn sched_of<T>(caller: &Caller<'_, GuestState<T>>) -> Arc<Mutex<Sched>> {
    store_data(caller.data()).sched.clone()
}

/// Ends a fiber's call: raised by `exit`, and by `switch` in a fiber being reset.
#[derive(Debug)]
struct FiberEnded;

impl std::fmt::Display for FiberEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fiber ended")
    }
}

impl std::error::Error for FiberEnded {}

/// Pending until slot `me` is the running fiber again with no request outstanding.
struct Resumed {
    sched: Arc<Mutex<Sched>>,
    me: usize,
}

impl Future for Resumed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<()> {
        // No waker: the executor polls the running fiber's call whenever it changes.
        let s = lock(&self.sched);
        if s.current == self.me && s.request.is_none() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// After a fiber's pending `switch` (or `reset`) resumes: ends it if it is being reset.
fn after_resume(sched: &Mutex<Sched>, me: usize) -> wasmtime::Result<i32> {
    let mut s = lock(sched);
    if s.slots[me].kill {
        s.slots[me].kill = false;
        let to = s.last_from;
        s.request = Some(Request::Ended { to, value: 0 });
        return Err(FiberEnded.into());
    }
    Ok(0)
}

/// Whether table entry `entry` of the caller's instance is an `(i32, i32) -> ()` function.
fn entry_ok<T>(caller: &mut Caller<'_, GuestState<T>>, entry: i32) -> bool {
    let Some(Extern::Table(table)) = caller.get_export("__indirect_function_table") else {
        return false;
    };
    let Some(func) = table
        .get(&mut *caller, entry as u32 as u64)
        .and_then(|r| r.as_func().flatten().copied())
    else {
        return false;
    };
    func.typed::<(i32, i32), ()>(&*caller).is_ok()
}

/// Adds the `greenlet_fiber_v1` imports, as host functions, to `linker`.
pub(crate) fn add_fiber_imports<T: Send + 'static>(
    linker: &mut Linker<GuestState<T>>,
) -> wasmtime::Result<()> {
    type C<'a, T> = Caller<'a, GuestState<T>>;
    linker.func_wrap(ABI_MODULE, "limit", |c: C<'_, T>| {
        lock(&sched_of(&c)).limit as i32
    })?;
    linker.func_wrap(ABI_MODULE, "new", |c: C<'_, T>, lo: i32, hi: i32| {
        lock(&sched_of(&c)).new_fiber(lo, hi)
    })?;
    linker.func_wrap(
        ABI_MODULE,
        "bind",
        |mut c: C<'_, T>, id: i32, entry: i32, arg: i32| {
            let sched = sched_of(&c);
            let slot = match lock(&sched).resolve(id) {
                Ok(0) => return E_ROOT,
                Ok(slot) => slot,
                Err(e) => return e,
            };
            if lock(&sched).slots[slot].state > STATE_NEW {
                return E_STARTED;
            }
            if !entry_ok(&mut c, entry) {
                return E_BAD_ENTRY;
            }
            let mut s = lock(&sched);
            let record = &mut s.slots[slot];
            record.state = STATE_NEW;
            record.entry = entry;
            record.arg = arg;
            0
        },
    )?;
    linker.func_wrap_async(
        ABI_MODULE,
        "switch",
        |c: C<'_, T>, (target, value): (i32, i32)| {
            let sched = sched_of(&c);
            Box::new(async move {
                let me = {
                    let mut s = lock(&sched);
                    let to = match s.resolve_target(target) {
                        Ok(to) => to,
                        Err(e) => return Ok(e),
                    };
                    s.request_switch(to, value);
                    s.current
                };
                Resumed {
                    sched: sched.clone(),
                    me,
                }
                .await;
                after_resume(&sched, me)
            })
        },
    )?;
    linker.func_wrap(ABI_MODULE, "value", |c: C<'_, T>| lock(&sched_of(&c)).value)?;
    linker.func_wrap(
        ABI_MODULE,
        "exit",
        |c: C<'_, T>, target: i32, value: i32| -> wasmtime::Result<i32> {
            let sched = sched_of(&c);
            let mut s = lock(&sched);
            if s.current == 0 {
                return Ok(E_NOT_IN_FIBER);
            }
            let to = match s.resolve_target(target) {
                Ok(to) => to,
                Err(e) => return Ok(e),
            };
            s.request = Some(Request::Ended { to, value });
            Err(FiberEnded.into())
        },
    )?;
    linker.func_wrap(ABI_MODULE, "current", |c: C<'_, T>| {
        let sched = sched_of(&c);
        let s = lock(&sched);
        if s.current == 0 {
            0
        } else {
            s.id_of(s.current)
        }
    })?;
    linker.func_wrap(ABI_MODULE, "state", |c: C<'_, T>, id: i32| {
        lock(&sched_of(&c)).state(id)
    })?;
    linker.func_wrap_async(ABI_MODULE, "reset", |c: C<'_, T>, (id,): (i32,)| {
        let sched = sched_of(&c);
        Box::new(async move { Ok(reset(&sched, id).await) })
    })?;
    linker.func_wrap_async(ABI_MODULE, "free", |c: C<'_, T>, (id,): (i32,)| {
        let sched = sched_of(&c);
        Box::new(async move {
            let status = reset(&sched, id).await;
            if status < 0 {
                return Ok(status);
            }
            let mut s = lock(&sched);
            let slot = (id & 0xffff) as usize;
            let record = &mut s.slots[slot];
            record.state = STATE_NONE;
            record.generation = (record.generation + 1) & 0x7fff;
            s.free.push(slot);
            s.live -= 1;
            Ok(0)
        })
    })?;
    Ok(())
}

/// `reset(id)`: a NEW fiber becomes EMPTY; a SUSPENDED one is run with its kill flag set,
/// so its pending `switch` ends its call and control comes back here.
async fn reset(sched: &Arc<Mutex<Sched>>, id: i32) -> i32 {
    let (slot, me) = {
        let mut s = lock(sched);
        let slot = match s.resolve(id) {
            Ok(0) => return E_ROOT,
            Ok(slot) => slot,
            Err(e) => return e,
        };
        if slot == s.current {
            return E_IS_CURRENT;
        }
        match s.slots[slot].state {
            STATE_NEW => {
                s.slots[slot].state = STATE_EMPTY;
                return 0;
            }
            STATE_SUSPENDED => {}
            _ => return 0,
        }
        s.slots[slot].kill = true;
        s.request_switch(slot, 0);
        (slot, s.current)
    };
    Resumed {
        sched: sched.clone(),
        me,
    }
    .await;
    debug_assert_eq!(lock(sched).slots[slot].state, STATE_EMPTY);
    0
}

/// A fiber's store, kept for reuse once its fiber ends.
struct FiberStore<T: 'static> {
    store: Store<GuestState<T>>,
    instance: Instance,
}

type TaskOutput<T> = (Option<FiberStore<T>>, wasmtime::Result<()>);
type Task<T> = Pin<Box<dyn Future<Output = TaskOutput<T>> + Send>>;

/// Drives the calls of one run.
struct Executor<T: 'static> {
    sched: Arc<Mutex<Sched>>,
    /// The pending call of each slot (slot 0: the root's `_start`).
    tasks: Vec<Option<Task<T>>>,
    idle: Vec<FiberStore<T>>,
    fiber_pre: InstancePre<GuestState<T>>,
    engine: Engine,
    user: Arc<Mutex<T>>,
    wasi: Arc<wasi::SharedWasi>,
    stores_created: u64,
}

/// How the executor stopped.
enum Stop {
    /// The root's call ended with this.
    Root(wasmtime::Result<()>),
    /// A fiber's call failed (a trap, or `proc_exit`): the fiber's id and the error.
    Fiber(i32, wasmtime::Error),
}

impl<T: Send + 'static> Executor<T> {
    /// The call that starts the NEW fiber in `slot`, on a pooled store or a new one.
    fn start(&mut self, slot: usize) -> Task<T> {
        let (entry, arg, hi, value) = {
            let s = lock(&self.sched);
            let r = s.slots[slot];
            (r.entry, r.arg, r.hi, s.value)
        };
        let pooled = self.idle.pop();
        let pre = self.fiber_pre.clone();
        let fresh = if pooled.is_none() {
            self.stores_created += 1;
            let data = StoreData {
                sched: self.sched.clone(),
                slot,
            };
            let state = GuestState::new(
                self.user.clone(),
                self.wasi.clone(),
                FiberData::StorePerFiber(data),
            );
            Some(Store::new(&self.engine, state))
        } else {
            None
        };
        Box::pin(async move {
            let mut fs = match (pooled, fresh) {
                (Some(mut fs), _) => {
                    if let FiberData::StorePerFiber(d) = &mut fs.store.data_mut().fibers {
                        d.slot = slot;
                    }
                    fs
                }
                (None, Some(mut store)) => match pre.instantiate_async(&mut store).await {
                    Ok(instance) => FiberStore { store, instance },
                    Err(e) => return (None, Err(e)),
                },
                (None, None) => unreachable!("either pooled or fresh"),
            };
            let result = async {
                let sp = fs
                    .instance
                    .get_global(&mut fs.store, "__stack_pointer")
                    .ok_or_else(|| wasmtime::Error::msg("no __stack_pointer export"))?;
                sp.set(&mut fs.store, Val::I32(hi))?;
                let table = fs
                    .instance
                    .get_table(&mut fs.store, "__indirect_function_table")
                    .ok_or_else(|| wasmtime::Error::msg("no function table export"))?;
                let func = table
                    .get(&mut fs.store, entry as u32 as u64)
                    .and_then(|r| r.as_func().flatten().copied())
                    .ok_or_else(|| wasmtime::Error::msg("fiber entry is not a function"))?;
                let func = func.typed::<(i32, i32), ()>(&fs.store)?;
                func.call_async(&mut fs.store, (value, arg)).await
            }
            .await;
            (Some(fs), result)
        })
    }

    /// Polls the running fiber's call, moving between fibers as they ask, until the root
    /// finishes, a fiber fails, or the running call waits for I/O.
    fn poll_run(&mut self, cx: &mut TaskContext<'_>) -> Poll<Stop> {
        loop {
            let cur = lock(&self.sched).current;
            if self.tasks.len() <= cur {
                self.tasks.resize_with(cur + 1, || None);
            }
            if self.tasks[cur].is_none() {
                let task = self.start(cur);
                self.tasks[cur] = Some(task);
            }
            let task = self.tasks[cur].as_mut().expect("just made");
            match task.as_mut().poll(cx) {
                Poll::Ready((store, result)) => {
                    self.tasks[cur] = None;
                    if cur == 0 {
                        return Poll::Ready(Stop::Root(result));
                    }
                    let id = lock(&self.sched).id_of(cur);
                    match result {
                        Err(e) if e.downcast_ref::<FiberEnded>().is_some() => {
                            if let Some(fs) = store
                                && self.idle.len() < IDLE_STORES
                            {
                                self.idle.push(fs);
                            }
                            let mut s = lock(&self.sched);
                            let Some(Request::Ended { to, value }) = s.request.take() else {
                                let e = wasmtime::Error::msg("a fiber ended without a target");
                                return Poll::Ready(Stop::Fiber(id, e));
                            };
                            s.slots[cur].state = STATE_EMPTY;
                            s.transfer(to, value);
                        }
                        Err(e) => return Poll::Ready(Stop::Fiber(id, e)),
                        Ok(()) => {
                            let message = format!(
                                "{ABI_MODULE} violation: the entry function of fiber {id} \
                                 returned; an entry must end by calling exit()"
                            );
                            return Poll::Ready(Stop::Fiber(id, FiberFault(message).into()));
                        }
                    }
                }
                Poll::Pending => {
                    let mut s = lock(&self.sched);
                    match s.request.take() {
                        Some(Request::Switch { to, value }) => s.transfer(to, value),
                        Some(other) => {
                            let id = s.id_of(cur);
                            let e = wasmtime::Error::msg(format!("unexpected request {other:?}"));
                            return Poll::Ready(Stop::Fiber(id, e));
                        }
                        // Waiting for I/O; tokio wakes us.
                        None => return Poll::Pending,
                    }
                }
            }
        }
    }
}

/// Runs `_start` of the guest's root variant with its fibers; returns the exit code and
/// the number of stores made.
pub(crate) fn run<T: Send + 'static>(
    host: &Host,
    linker: &Linker<GuestState<T>>,
    guest: &Guest,
    user: Arc<Mutex<T>>,
    wasi: Arc<wasi::SharedWasi>,
) -> Result<(i32, u64), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Host(format!("cannot start the async runtime: {e}")))?;
    let sched = Arc::new(Mutex::new(Sched::new(host.fiber_limit())));
    let root_data = GuestState::new(
        user.clone(),
        wasi.clone(),
        FiberData::StorePerFiber(StoreData {
            sched: sched.clone(),
            slot: 0,
        }),
    );
    let mut root_store = Store::new(host.engine(), root_data);
    let link = |e: wasmtime::Error| Error::Link(format!("{e:#}"));

    let (root_module, fiber_pre) = match &guest.per_fiber {
        Some(variants) => {
            let ty = MemoryType::shared(variants.memory.minimum, variants.memory.maximum);
            let memory = SharedMemory::new(host.engine(), ty)
                .map_err(|e| Error::Host(format!("cannot make the shared memory: {e:#}")))?;
            let mut linker = linker.clone();
            linker
                .define(
                    &root_store,
                    rewrite::MEMORY_IMPORT.0,
                    rewrite::MEMORY_IMPORT.1,
                    memory,
                )
                .map_err(link)?;
            let fiber_pre = linker.instantiate_pre(&variants.fiber).map_err(link)?;
            let root_pre = linker.instantiate_pre(&variants.root).map_err(link)?;
            (root_pre, Some(fiber_pre))
        }
        None => (linker.instantiate_pre(&guest.module).map_err(link)?, None),
    };

    let stop = runtime.block_on(async {
        let instance = match root_module.instantiate_async(&mut root_store).await {
            Ok(instance) => instance,
            Err(e) if e.downcast_ref::<wasmtime::Trap>().is_some() => {
                return Ok((Stop::Root(Err(e)), 1));
            }
            Err(e) => return Err(link(e)),
        };
        let start = instance
            .get_typed_func::<(), ()>(&mut root_store, "_start")
            .map_err(|e| Error::Link(format!("`_start` must take and return nothing: {e:#}")))?;
        let root: Task<T> = Box::pin(async move {
            let result = start.call_async(&mut root_store, ()).await;
            drop(root_store);
            (None, result)
        });
        let Some(fiber_pre) = fiber_pre else {
            // No fibers: just the root's call.
            let (_, result) = root.await;
            return Ok((Stop::Root(result), 1));
        };
        let mut executor = Executor {
            sched: sched.clone(),
            tasks: vec![Some(root)],
            idle: Vec::new(),
            fiber_pre,
            engine: host.engine().clone(),
            user,
            wasi,
            stores_created: 1,
        };
        let stop = std::future::poll_fn(|cx| executor.poll_run(cx)).await;
        let created = executor.stores_created;
        // Drop every suspended call (and store) inside the runtime, before reporting.
        drop(executor);
        Ok((stop, created))
    });
    drop(runtime);
    let (stop, created) = stop?;
    match stop {
        Stop::Root(Ok(())) => Ok((0, created)),
        Stop::Root(Err(e)) => classify(e, Some(0)).map(|c| (c, created)),
        Stop::Fiber(id, e) => classify(e, Some(id)).map(|c| (c, created)),
    }
}
