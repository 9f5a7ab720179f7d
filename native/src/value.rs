//! What C switches carry: [`CValue`] (a `void *`), [`CError`] (a thrown `void *` payload
//! with a message), a greenlet's *pending error* and its *failure*.
//!
//! * The **pending error** of a greenlet is the error (or panic) its latest failing
//!   `greenlet_switch` / `greenlet_throw` / `greenlet_kill` received. It stays until a newer
//!   one replaces it, `greenlet_propagate` takes it, or the greenlet's state is freed.
//! * The **failure** of a greenlet is what its entry function asked to die of, with
//!   `greenlet_fail` or `greenlet_propagate`; the trampoline reads it when the entry returns.
//!
//! Both live in the greenlet's local storage, so they follow the greenlet across switches.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::rc::Rc;

use greenlet_core::{Error, Greenlet, GreenletExit, Value};

/// A C `void *` travelling through a switch: what C code sends, and what it can receive.
///
/// Rust greenlets talking to C greenlets send and receive `CValue`s. A C greenlet also
/// accepts `()` and a [`GreenletExit`] (both arrive as `NULL`); any other Rust type arrives
/// as `GREENLET_FOREIGN_VALUE`.
///
/// ```
/// use greenlet::CValue;
/// let v = greenlet_core::Value::new(CValue(std::ptr::null_mut()));
/// assert!(v.is::<CValue>());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CValue(pub *mut c_void);

/// An error thrown by C code with `greenlet_throw` or `greenlet_fail`: an opaque payload
/// (never dereferenced or freed by the library) and a message.
///
/// ```
/// use greenlet::CError;
/// let e = CError::new(std::ptr::null_mut(), "disk full");
/// assert_eq!(e.to_string(), "disk full");
/// ```
#[derive(Debug)]
pub struct CError {
    payload: *mut c_void,
    message: CString,
}

impl CError {
    /// An error with this payload and message (NUL bytes in it are escaped).
    pub fn new(payload: *mut c_void, message: &str) -> CError {
        CError {
            payload,
            message: CString::new(message.replace('\0', "\\0")).unwrap_or_default(),
        }
    }

    /// The payload given by C code.
    pub fn payload(&self) -> *mut c_void {
        self.payload
    }

    /// The message.
    pub fn message(&self) -> &CStr {
        &self.message
    }
}

impl fmt::Display for CError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message.to_string_lossy())
    }
}

impl std::error::Error for CError {}

/// Turns a received value into the `void *` C gets: a [`CValue`]'s pointer, or `NULL` for
/// `()` and a [`GreenletExit`]; any other value is given back.
pub(crate) fn into_pointer(value: Value) -> Result<*mut c_void, Value> {
    if value.is_unit() || value.is::<GreenletExit>() {
        return Ok(std::ptr::null_mut());
    }
    value.downcast::<CValue>().map(|CValue(ptr)| ptr)
}

/// An error or a panic that travels to a C greenlet.
pub(crate) enum Trouble {
    Error(Error),
    Panic(Box<dyn Any + Send>),
}

/// The pending error of a greenlet (kept in an `Rc` so that its message pointer can be
/// handed out while it stays in the greenlet's local storage).
pub(crate) struct Pending {
    trouble: std::cell::Cell<Option<Trouble>>,
    payload: *mut c_void,
    message: CString,
}

#[derive(Clone)]
struct PendingSlot(Rc<Pending>);

/// What a greenlet's entry asked to die of.
struct Failure(Trouble);

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("a Rust panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("a Rust panic: {s}")
    } else {
        "a Rust panic".to_string()
    }
}

/// Makes `trouble` the current greenlet's pending error; returns its message.
pub(crate) fn set_pending(trouble: Trouble) -> String {
    let (payload, message) = match &trouble {
        Trouble::Error(error) => (
            error
                .downcast_ref::<CError>()
                .map_or(std::ptr::null_mut(), CError::payload),
            error.to_string(),
        ),
        Trouble::Panic(payload) => (std::ptr::null_mut(), panic_message(&**payload)),
    };
    let pending = Pending {
        trouble: std::cell::Cell::new(Some(trouble)),
        payload,
        message: CString::new(message.replace('\0', "\\0")).unwrap_or_default(),
    };
    if let Ok(current) = Greenlet::try_current() {
        // The replaced one is dropped here, outside any borrow.
        drop(current.set_local(PendingSlot(Rc::new(pending))));
    }
    message
}

fn pending() -> Option<Rc<Pending>> {
    let current = Greenlet::try_current().ok()?;
    current.local::<PendingSlot>().map(|slot| slot.0)
}

/// The payload of the current greenlet's pending error (`NULL` if none, or not a C error).
pub(crate) fn pending_payload() -> *mut c_void {
    pending().map_or(std::ptr::null_mut(), |p| p.payload)
}

/// The message of the current greenlet's pending error, valid while it stays pending.
pub(crate) fn pending_message() -> *const c_char {
    match pending() {
        // The `Rc` stays in the greenlet's local storage, so the string outlives this call.
        Some(p) => p.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Makes the current greenlet fail with `trouble` when its entry returns.
pub(crate) fn set_failure(trouble: Trouble) {
    if let Ok(current) = Greenlet::try_current() {
        drop(current.set_local(Failure(trouble)));
    }
}

/// Moves the current greenlet's pending error to its failure, or fails with `fallback` if
/// nothing is pending.
pub(crate) fn propagate(fallback: impl FnOnce() -> Error) {
    let Ok(current) = Greenlet::try_current() else {
        return;
    };
    let trouble = current
        .take_local::<PendingSlot>()
        .and_then(|slot| slot.0.trouble.take())
        .unwrap_or_else(|| Trouble::Error(fallback()));
    drop(current.set_local(Failure(trouble)));
}

/// Takes the current greenlet's failure and pending error (called when its entry returns).
pub(crate) fn take_failure() -> Option<Trouble> {
    let current = Greenlet::try_current().ok()?;
    drop(current.take_local::<PendingSlot>());
    current.take_local::<Failure>().map(|f| f.0)
}
