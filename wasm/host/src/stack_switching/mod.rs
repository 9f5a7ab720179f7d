//! Mechanism A: fibers on the Wasm stack-switching proposal.
//!
//! Rust cannot emit `cont.new`/`resume`/`switch`, so the fiber functions are a helper module
//! in the wasm text format (`helper.wat`, which explains the model). Instantiation has a
//! cycle: the guest imports the fiber functions, and the helper needs the guest's table and
//! `__stack_pointer`. It is broken with a shim whose exports call through its own funcref
//! table:
//!
//! ```text
//!   1. shim    (no imports)          exports greenlet_fiber_v1::* -> call_indirect shim.table
//!   2. guest   imports the shim      exports __indirect_function_table, __stack_pointer
//!   3. helper  imports guest + host  exports the real functions
//!   4. shim.table[i] = helper.export[i]
//! ```

use crate::error::{FiberFault, classify};
use crate::{ABI_MODULE, Error, FiberData, Guest, GuestState, Host, HostConfig, wasi};
use std::sync::{Arc, Mutex};
use wasmtime::{
    Caller, Config, Engine, Extern, Func, Instance, Linker, Memory, Module, Ref, Store,
};

/// The ABI functions in shim-table order, with their parameter counts (all return i32).
const FUNCS: [(&str, usize); 10] = [
    ("limit", 0),
    ("new", 2),
    ("bind", 3),
    ("switch", 2),
    ("value", 0),
    ("exit", 2),
    ("current", 0),
    ("state", 1),
    ("reset", 1),
    ("free", 1),
];

/// Per-store data: the helper's slot records, for messages about faults.
#[derive(Default)]
pub(crate) struct StoreData {
    slots: Option<Memory>,
}

/// The helper and shim, compiled once per host.
pub(crate) struct Helper {
    helper: Module,
    shim: Module,
}

/// The engine: stack switching needs typed function references, exceptions and GC types
/// (the continuation type is recursive).
pub(crate) fn engine(config: &HostConfig) -> Result<Engine, Error> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return Err(Error::Config(
            "wasmtime supports stack switching on x86-64 Linux only: use \
             --fibers=store-per-fiber"
                .into(),
        ));
    }
    let mut c = Config::new();
    c.wasm_function_references(true)
        .wasm_exceptions(true)
        .wasm_gc(true)
        .wasm_stack_switching(true)
        .async_stack_size(config.fiber_stack_size)
        // Leaves room on each fiber's native stack for host calls made from it.
        .max_wasm_stack(config.fiber_stack_size / 2);
    Engine::new(&c).map_err(|e| Error::Config(format!("{e:#}")))
}

impl Helper {
    pub(crate) fn new(engine: &Engine) -> Result<Self, Error> {
        let compile = |text: &str| {
            Module::new(engine, text)
                .map_err(|e| Error::Host(format!("the fiber helper does not compile: {e:#}")))
        };
        Ok(Helper {
            helper: compile(include_str!("helper.wat"))?,
            shim: compile(&shim_text())?,
        })
    }
}

/// The shim: one export per ABI function, each a `call_indirect` through its own table.
fn shim_text() -> String {
    let mut text = String::from("(module\n");
    text.push_str(&format!(
        "  (table (export \"table\") {} funcref)\n",
        FUNCS.len()
    ));
    for (i, (name, params)) in FUNCS.iter().enumerate() {
        let params_ty = " i32".repeat(*params);
        let args: String = (0..*params).map(|p| format!(" (local.get {p})")).collect();
        text.push_str(&format!(
            "  (func (export \"{name}\") (param{params_ty}) (result i32)\n    \
             (call_indirect (param{params_ty}) (result i32){args} (i32.const {i})))\n"
        ));
    }
    text.push_str(")\n");
    text
}

/// What a `fatal(code, slot)` from the helper means, read from its slot records.
fn fault_message(
    caller: &mut Caller<'_, impl Sized>,
    slots: Option<Memory>,
    code: i32,
    slot: i32,
) -> String {
    let word = |offset: usize| -> Option<u32> {
        let data = slots?.data(&*caller);
        let at = slot as usize * 32 + offset;
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let id = ((word(4).unwrap_or(0) << 16) | slot as u32) as i32;
    match code {
        1 => format!(
            "{ABI_MODULE} violation: the entry function of fiber {id} returned; an entry must \
             end by calling exit()"
        ),
        2 => format!(
            "greenlet shadow-stack overflow in fiber {id}: its stack pointer {:#x} lies outside \
             its shadow stack [{:#x}, {:#x}). Memory below that stack may be corrupt. Give \
             greenlets bigger stacks, or recurse less deeply inside them.",
            word(24).unwrap_or(0),
            word(16).unwrap_or(0),
            word(20).unwrap_or(0)
        ),
        _ => format!("internal error in the fiber helper (code {code}, fiber {id})"),
    }
}

fn store_data<T>(state: &GuestState<T>) -> &StoreData {
    match &state.fibers {
        FiberData::StackSwitching(d) => d,
        FiberData::StorePerFiber(_) => unreachable!("a stack-switching store"),
    }
}

fn store_data_mut<T>(state: &mut GuestState<T>) -> &mut StoreData {
    match &mut state.fibers {
        FiberData::StackSwitching(d) => d,
        FiberData::StorePerFiber(_) => unreachable!("a stack-switching store"),
    }
}

/// Instantiates the guest (with shim and helper if it uses fibers) and runs `_start`.
///
/// Returns the exit code and the number of continuations made.
pub(crate) fn run<T: Send + 'static>(
    host: &Host,
    helper: &Helper,
    linker: &Linker<GuestState<T>>,
    guest: &Guest,
    user: Arc<Mutex<T>>,
    wasi: Arc<wasi::SharedWasi>,
) -> Result<(i32, u64), Error> {
    let state = GuestState::new(user, wasi, FiberData::StackSwitching(StoreData::default()));
    let mut store = Store::new(host.engine(), state);
    let host_err = |what: &str, e: wasmtime::Error| Error::Host(format!("{what}: {e:#}"));

    let mut linker = linker.clone();
    let mut shim = None;
    if guest.uses_fibers() {
        let instance = Instance::new(&mut store, &helper.shim, &[])
            .map_err(|e| host_err("cannot instantiate the fiber shim", e))?;
        linker
            .instance(&mut store, ABI_MODULE, instance)
            .map_err(|e| host_err("cannot define the fiber imports", e))?;
        shim = Some(instance);
    }
    let instance = match linker.instantiate(&mut store, &guest.module) {
        Ok(instance) => instance,
        Err(e) if e.downcast_ref::<wasmtime::Trap>().is_some() => {
            drop(store);
            return classify(e, Some(0)).map(|code| (code, 0));
        }
        Err(e) => return Err(Error::Link(format!("{e:#}"))),
    };

    let mut fibers = None;
    if let Some(shim) = shim {
        let sp = instance
            .get_global(&mut store, "__stack_pointer")
            .expect("checked at load");
        let table = instance
            .get_table(&mut store, "__indirect_function_table")
            .expect("checked at load");
        let fatal = Func::wrap(
            &mut store,
            |mut caller: Caller<'_, GuestState<T>>, code: i32, slot: i32| -> wasmtime::Result<()> {
                let slots = store_data(caller.data()).slots;
                let message = fault_message(&mut caller, slots, code, slot);
                Err(FiberFault(message).into())
            },
        );
        let imports: [Extern; 3] = [sp.into(), table.into(), fatal.into()];
        let fiber_helper = Instance::new(&mut store, &helper.helper, &imports)
            .map_err(|e| host_err("cannot instantiate the fiber helper", e))?;
        let limit = fiber_helper
            .get_global(&mut store, "fiber_limit")
            .expect("the helper exports its limit");
        limit
            .set(&mut store, (host.fiber_limit() as i32).into())
            .map_err(|e| host_err("cannot set the fiber limit", e))?;
        store_data_mut(store.data_mut()).slots = fiber_helper.get_memory(&mut store, "slots");
        let shim_table = shim
            .get_table(&mut store, "table")
            .expect("the shim exports its table");
        for (i, (name, _)) in FUNCS.iter().enumerate() {
            let func = fiber_helper
                .get_func(&mut store, name)
                .expect("the helper exports every ABI function");
            shim_table
                .set(&mut store, i as u64, Ref::Func(Some(func)))
                .map_err(|e| host_err("cannot fill the fiber shim", e))?;
        }
        fibers = Some(fiber_helper);
    }

    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| Error::Link(format!("`_start` must take and return nothing: {e:#}")))?;
    let result = start.call(&mut store, ());
    let created = fibers
        .and_then(|f| f.get_global(&mut store, "continuations"))
        .and_then(|g| g.get(&mut store).i32())
        .unwrap_or(0) as u64;
    // Which fiber was running: the helper still answers after a trap.
    let fiber = match (&result, fibers) {
        (Err(_), Some(f)) => f
            .get_typed_func::<(), i32>(&mut store, "current")
            .ok()
            .and_then(|current| current.call(&mut store, ()).ok()),
        _ => None,
    };
    // Drop the store (and every continuation stack) before the error is formatted: at the
    // mapping limit, formatting needs memory that only this frees.
    drop(store);
    match result {
        Ok(()) => Ok((0, created)),
        Err(e) => classify(e, fiber.or(Some(0))).map(|code| (code, created)),
    }
}
