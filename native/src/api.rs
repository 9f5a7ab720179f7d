//! The `extern "C"` functions of `greenlet.h`.
//!
//! Every function checks its handles (see [`crate::handle`]) before touching a greenlet,
//! catches Rust panics before they reach C, and records a message for
//! `greenlet_last_error` when it does not return `GREENLET_OK`.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{self, AssertUnwindSafe};

use greenlet_core::{Builder, Error, Greenlet, Value};

use crate::handle::{Handle, ThreadData, thread_data};
use crate::status::{Event, Failed, State, Status};
use crate::value::{self, CError, CValue, Trouble};

/// The entry function of a C greenlet: `void *(*)(void *arg, void *user_data)`.
///
/// `arg` is the value of the first switch into the greenlet; `user_data` is what was given
/// to `greenlet_new`. What it returns goes to the parent as the result of its pending switch.
///
/// The ABI is `C-unwind` (the same calling convention as `C`) so that a C++ exception
/// escaping an entry is defined behaviour: the process aborts, or the exception arrives at
/// the parent as a panic (`GREENLET_PANIC`); Rust leaves the choice to the platform.
pub type EntryFn =
    unsafe extern "C-unwind" fn(arg: *mut c_void, user_data: *mut c_void) -> *mut c_void;

/// A trace hook: `void (*)(greenlet_event_t, greenlet_t *origin, greenlet_t *target,
/// void *user_data)`. The handles are borrowed for the call. `C-unwind` as for [`EntryFn`].
pub type TraceFn = unsafe extern "C-unwind" fn(
    event: Event,
    origin: *mut Handle,
    target: *mut Handle,
    user_data: *mut c_void,
);

/// Runs `body` for a C call: catches panics, records the message of a failure.
fn guard(body: impl FnOnce(&'static ThreadData) -> Result<Status, Failed>) -> Status {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let td = thread_data()?;
        body(td).inspect_err(|failed| td.set_last_error(&failed.message))
    }));
    match outcome {
        Ok(Ok(status)) => status,
        Ok(Err(failed)) => failed.status,
        Err(payload) => {
            let message = value::panic_message(&*payload);
            if let Ok(td) = thread_data() {
                td.set_last_error(&message);
            }
            Status::Panic
        }
    }
}

/// Writes through an optional out-pointer.
///
/// # Safety
///
/// `out` is null or valid for a write of `T`.
unsafe fn write_out<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: per the contract.
        unsafe { out.write(value) };
    }
}

/// A Rust string from an optional C string.
///
/// # Safety
///
/// `s` is null or a NUL-terminated string.
unsafe fn string_from(s: *const c_char) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// Refuses calls that switch while a trace hook runs in this thread.
fn not_in_trace(td: &ThreadData, what: &str) -> Result<(), Failed> {
    if td.in_trace.get() {
        Err(Failed::new(
            Status::ErrInTraceHook,
            format!("{what} is not allowed inside a trace hook"),
        ))
    } else {
        Ok(())
    }
}

/// Performs a switch-like call on the greenlet behind `g` and turns its outcome into a
/// status, a `*result` and maybe a pending error.
///
/// # Safety
///
/// `g` as for [`ThreadData::cell`]; `result` null or writable.
unsafe fn transfer(
    g: *const Handle,
    result: *mut *mut c_void,
    what: &str,
    call: impl FnOnce(&Greenlet) -> Result<Value, Error>,
) -> Status {
    // SAFETY: per the contract.
    unsafe { write_out(result, std::ptr::null_mut()) };
    guard(|td| {
        not_in_trace(td, what)?;
        // SAFETY: per the contract.
        let cell = unsafe { td.cell(g) }?;
        // A handle of our own for the time of the switch: the cell may be released while
        // we are suspended in it.
        let target = cell.greenlet().clone();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| call(&target)));
        drop(target);
        match outcome {
            Ok(Ok(value)) => match value::into_pointer(value) {
                Ok(ptr) => {
                    // SAFETY: per the contract.
                    unsafe { write_out(result, ptr) };
                    Ok(Status::Ok)
                }
                Err(value) => Err(Failed::new(
                    Status::ForeignValue,
                    format!(
                        "received a Rust value of type {}, not a C pointer",
                        value.type_name()
                    ),
                )),
            },
            Ok(Err(error)) => {
                let status = Status::of_error(&error);
                let message = value::set_pending(Trouble::Error(error));
                Err(Failed::new(status, message))
            }
            Err(payload) => {
                let message = value::set_pending(Trouble::Panic(payload));
                Err(Failed::new(Status::Panic, message))
            }
        }
    })
}

/// Creates a greenlet that will call `entry(arg, user_data)` when first switched to.
///
/// `parent` may be NULL (the current greenlet); `stack_size` 0 means the default. On
/// success `*out` is a new handle.
///
/// # Safety
///
/// `out` is writable; `entry` is a function that may be called once with `user_data` on
/// this thread; `parent` is NULL or a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_new(
    out: *mut *mut Handle,
    entry: Option<EntryFn>,
    user_data: *mut c_void,
    parent: *mut Handle,
    stack_size: usize,
) -> Status {
    // SAFETY: the caller's contract, which is `new_greenlet`'s.
    unsafe { new_greenlet(out, entry, user_data, parent, stack_size, false) }
}

/// As [`greenlet_new`], for a greenlet that keeps a floating-point control state of its
/// own (rounding mode, exception masks, flush-to-zero), starting with the caller's: what it
/// changes with `fesetround` and the like stays in it, and what others change does not
/// reach it (see `greenlet::Builder::own_fp_control`).
///
/// # Safety
///
/// As for [`greenlet_new`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_new_own_fp(
    out: *mut *mut Handle,
    entry: Option<EntryFn>,
    user_data: *mut c_void,
    parent: *mut Handle,
    stack_size: usize,
) -> Status {
    // SAFETY: the caller's contract, which is `new_greenlet`'s.
    unsafe { new_greenlet(out, entry, user_data, parent, stack_size, true) }
}

/// The body of [`greenlet_new`] and [`greenlet_new_own_fp`].
///
/// # Safety
///
/// As for [`greenlet_new`].
unsafe fn new_greenlet(
    out: *mut *mut Handle,
    entry: Option<EntryFn>,
    user_data: *mut c_void,
    parent: *mut Handle,
    stack_size: usize,
    own_fp_control: bool,
) -> Status {
    guard(|td| {
        if out.is_null() {
            return Err(Failed::new(Status::ErrNullArgument, "`out` is NULL"));
        }
        // SAFETY: checked non-null, writable per the contract.
        unsafe { out.write(std::ptr::null_mut()) };
        let Some(entry) = entry else {
            return Err(Failed::new(
                Status::ErrNullArgument,
                "the entry function is NULL",
            ));
        };
        let mut builder = Builder::new().own_fp_control(own_fp_control);
        if !parent.is_null() {
            // SAFETY: per the contract.
            let cell = unsafe { td.cell(parent) }?;
            builder = builder.parent(cell.greenlet());
        }
        if stack_size != 0 {
            builder = builder.stack_size(stack_size);
        }
        let greenlet = builder
            .try_build(move |first: Value| run_entry(entry, user_data, first))
            .map_err(|e| Failed::of_error(&e))?;
        let cell = td.intern(&greenlet);
        // SAFETY: checked non-null, writable per the contract.
        unsafe { out.write(cell.as_ptr()) };
        Ok(Status::Ok)
    })
}

/// The body of every C greenlet: calls the entry and turns what it did into a result.
fn run_entry(entry: EntryFn, user_data: *mut c_void, first: Value) -> Result<Value, Error> {
    let arg = value::into_pointer(first).map_err(|v| Error::UnexpectedType {
        expected: "a C pointer (greenlet::CValue)",
        found: v.type_name(),
    })?;
    // SAFETY: `greenlet_new`'s caller promised that `entry` may be called with `user_data`
    // on this thread; a C++ exception escaping it is allowed by the `C-unwind` ABI.
    let returned = unsafe { entry(arg, user_data) };
    match value::take_failure() {
        None => Ok(Value::new(CValue(returned))),
        Some(Trouble::Error(error)) => Err(error),
        // On the greenlet's own stack, under the core's catch: it goes on in the parent.
        Some(Trouble::Panic(payload)) => panic::resume_unwind(payload),
    }
}

/// Switches to `g`, handing it `value`; `*result` (if `result` is not NULL) is what is
/// switched back later.
///
/// # Safety
///
/// `g` is a handle (or NULL); `result` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_switch(
    g: *mut Handle,
    value: *mut c_void,
    result: *mut *mut c_void,
) -> Status {
    // SAFETY: forwarded contract.
    unsafe { transfer(g, result, "greenlet_switch", |g| g.switch(CValue(value))) }
}

/// Throws an error with `payload` and `message` (NULL: empty) into `g`.
///
/// # Safety
///
/// As for [`greenlet_switch`]; `message` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_throw(
    g: *mut Handle,
    payload: *mut c_void,
    message: *const c_char,
    result: *mut *mut c_void,
) -> Status {
    // SAFETY: per the contract.
    let message = unsafe { string_from(message) };
    let error = Error::new(CError::new(payload, &message));
    // SAFETY: forwarded contract.
    unsafe { transfer(g, result, "greenlet_throw", |g| g.throw(error)) }
}

/// Throws a GreenletExit into `g`, asking it to finish.
///
/// # Safety
///
/// As for [`greenlet_switch`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_kill(g: *mut Handle, result: *mut *mut c_void) -> Status {
    // SAFETY: forwarded contract.
    unsafe { transfer(g, result, "greenlet_kill", Greenlet::kill) }
}

/// A new handle to the running greenlet, or NULL if this thread is exiting.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_current() -> *mut Handle {
    let mut out = std::ptr::null_mut();
    guard(|td| {
        let current = Greenlet::try_current().map_err(|e| Failed::of_error(&e))?;
        out = td.intern(&current).as_ptr();
        Ok(Status::Ok)
    });
    out
}

/// A new handle to this thread's main greenlet, or NULL if this thread is exiting.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_main() -> *mut Handle {
    let mut out = std::ptr::null_mut();
    guard(|td| {
        let mut g = Greenlet::try_current().map_err(|e| Failed::of_error(&e))?;
        while let Some(parent) = g.parent() {
            g = parent;
        }
        out = td.intern(&g).as_ptr();
        Ok(Status::Ok)
    });
    out
}

/// Sets `*out` to a new handle to the parent of `g`, or NULL for a main greenlet.
///
/// # Safety
///
/// `g` is a handle; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_parent(g: *const Handle, out: *mut *mut Handle) -> Status {
    guard(|td| {
        if out.is_null() {
            return Err(Failed::new(Status::ErrNullArgument, "`out` is NULL"));
        }
        // SAFETY: checked non-null, writable per the contract.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: per the contract.
        let cell = unsafe { td.cell(g) }?;
        if let Some(parent) = cell.greenlet().parent() {
            // SAFETY: as above.
            unsafe { out.write(td.intern(&parent).as_ptr()) };
        }
        Ok(Status::Ok)
    })
}

/// Makes `parent` the parent of `g`.
///
/// # Safety
///
/// `g` and `parent` are handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_set_parent(g: *mut Handle, parent: *mut Handle) -> Status {
    guard(|td| {
        not_in_trace(td, "greenlet_set_parent")?;
        // SAFETY: per the contract.
        let child = unsafe { td.cell(g) }?.greenlet().clone();
        // SAFETY: per the contract.
        let parent = unsafe { td.cell(parent) }?.greenlet().clone();
        child
            .set_parent(&parent)
            .map(|()| Status::Ok)
            .map_err(|e| Failed::of_error(&e))
    })
}

/// The state of `g`, or `GREENLET_STATE_INVALID` if the handle cannot be used here.
///
/// # Safety
///
/// `g` is a handle (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_state(g: *const Handle) -> State {
    let mut state = State::Invalid;
    guard(|td| {
        // SAFETY: per the contract.
        state = unsafe { td.cell(g) }?.greenlet().state().into();
        Ok(Status::Ok)
    });
    state
}

/// 1 if `g` is a main greenlet, 0 if not, -1 if the handle cannot be used here.
///
/// # Safety
///
/// `g` is a handle (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_is_main(g: *const Handle) -> c_int {
    let mut is_main = -1;
    guard(|td| {
        // SAFETY: per the contract.
        is_main = c_int::from(unsafe { td.cell(g) }?.greenlet().is_main());
        Ok(Status::Ok)
    });
    is_main
}

/// Adds a reference to `g`; each needs its own `greenlet_release`.
///
/// # Safety
///
/// `g` is a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_retain(g: *mut Handle) -> Status {
    guard(|td| {
        // SAFETY: per the contract.
        let cell = unsafe { td.cell(g) }?;
        td.retain(cell);
        Ok(Status::Ok)
    })
}

/// Drops a reference to `g` (NULL: nothing). Releasing the last reference of a suspended
/// greenlet that nothing else holds kills it (inside a trace hook: after the hook returns).
///
/// # Safety
///
/// `g` is a handle or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_release(g: *mut Handle) -> Status {
    if g.is_null() {
        return Status::Ok;
    }
    guard(|td| {
        // SAFETY: per the contract.
        let cell = unsafe { td.cell(g) }?;
        td.release(cell);
        Ok(Status::Ok)
    })
}

/// Installs `hook` as this thread's trace hook (NULL removes it).
///
/// # Safety
///
/// `hook` may be called on this thread with `user_data` until it is replaced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_settrace(
    hook: Option<TraceFn>,
    user_data: *mut c_void,
) -> Status {
    guard(|_td| {
        Greenlet::try_current().map_err(|e| Failed::of_error(&e))?;
        let tracer = hook.map(|hook| -> greenlet_core::Tracer {
            Box::new(move |event, origin, target| {
                call_hook(hook, user_data, event.into(), origin, target);
                Ok(())
            })
        });
        drop(greenlet_core::settrace(tracer));
        Ok(Status::Ok)
    })
}

fn call_hook(
    hook: TraceFn,
    user_data: *mut c_void,
    event: Event,
    origin: &Greenlet,
    target: &Greenlet,
) {
    let Ok(td) = thread_data() else { return };
    let origin = td.intern(origin);
    let target = td.intern(target);
    let nested = td.in_trace.replace(true);
    // SAFETY: `greenlet_settrace`'s caller promised that `hook` may be called with
    // `user_data`; the handles are live and ours for the time of the call.
    unsafe { hook(event, origin.as_ptr(), target.as_ptr(), user_data) };
    td.in_trace.set(nested);
    td.release(origin);
    td.release(target);
    if !nested {
        td.drop_deferred();
    }
}

/// Makes the current greenlet die of an error with `payload` and `message` when its entry
/// function returns; returns NULL, for `return greenlet_fail(p, "why");`.
///
/// # Safety
///
/// `message` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn greenlet_fail(
    payload: *mut c_void,
    message: *const c_char,
) -> *mut c_void {
    // SAFETY: per the contract.
    let message = unsafe { string_from(message) };
    guard(|_td| {
        value::set_failure(Trouble::Error(Error::new(CError::new(payload, &message))));
        Ok(Status::Ok)
    });
    std::ptr::null_mut()
}

/// Makes the current greenlet die of its pending error when its entry function returns (or,
/// if none is pending, of an error with the last error message); returns NULL, for
/// `return greenlet_propagate();`.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_propagate() -> *mut c_void {
    guard(|td| {
        let last = last_error_string(td);
        value::propagate(|| Error::msg(last));
        Ok(Status::Ok)
    });
    std::ptr::null_mut()
}

fn last_error_string(td: &ThreadData) -> String {
    // SAFETY: `last_error_ptr` points to a NUL-terminated string owned by `td`.
    unsafe { CStr::from_ptr(td.last_error_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// The payload of the current greenlet's pending error: what was given to
/// `greenlet_throw` / `greenlet_fail`, or NULL.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_error_payload() -> *mut c_void {
    value::pending_payload()
}

/// The message of the current greenlet's pending error ("" if none); valid while it stays
/// pending.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_error_message() -> *const c_char {
    value::pending_message()
}

/// The message of the last call on this thread that did not return `GREENLET_OK` ("" if
/// none); valid until the next call into the library on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_last_error() -> *const c_char {
    match thread_data() {
        Ok(td) => td.last_error_ptr(),
        Err(_) => c"this thread's greenlet state was already torn down".as_ptr(),
    }
}

/// The name of a status code, e.g. "GREENLET_ERR_WRONG_THREAD"; "unknown status" for other
/// numbers. Static storage.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_status_name(status: c_int) -> *const c_char {
    match Status::from_i32(status) {
        Some(status) => STATUS_NAMES[status_index(status)].as_ptr(),
        None => c"unknown status".as_ptr(),
    }
}

/// NUL-terminated copies of the status names, in `Status::C_CONSTANTS` order.
static STATUS_NAMES: std::sync::LazyLock<Vec<std::ffi::CString>> = std::sync::LazyLock::new(|| {
    Status::C_CONSTANTS
        .iter()
        .map(|(name, _)| std::ffi::CString::new(*name).unwrap_or_default())
        .collect()
});

fn status_index(status: Status) -> usize {
    Status::C_CONSTANTS
        .iter()
        .position(|&(_, v)| v == status as i32)
        .unwrap_or(0)
}

/// The name of the stack-switching backend, e.g. "asm-x86_64". Static storage.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_backend_name() -> *const c_char {
    static NAME: std::sync::LazyLock<std::ffi::CString> = std::sync::LazyLock::new(|| {
        std::ffi::CString::new(greenlet_core::backend_name()).unwrap_or_default()
    });
    NAME.as_ptr()
}

/// How many handles this thread holds (each greenlet counts once, however many references
/// it has); 0 if this thread is exiting. For leak checks.
#[unsafe(no_mangle)]
pub extern "C" fn greenlet_handle_count() -> usize {
    thread_data().map_or(0, |td| td.live_count())
}
