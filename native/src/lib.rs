//! `libgreenlet`: the C ABI of greenlet-rs, for C and C++ programs.
//!
//! The C API is declared in `include/greenlet.h`, which also states its ownership and
//! threading rules; this crate builds it as `libgreenlet.so` and `libgreenlet.a`
//! (`cargo xtask install-native --prefix DIR` installs both, the header and a pkg-config
//! file). Rust code can link the rlib to pass greenlets and values between Rust and C.
//!
//! # The model, seen from C
//!
//! ```c
//! static void *count(void *arg, void *user_data) {
//!     greenlet_t *main = greenlet_main();
//!     for (intptr_t i = (intptr_t)arg; i < 3; i++) {
//!         void *ignored;
//!         if (greenlet_switch(main, (void *)i, &ignored) != GREENLET_OK) {
//!             greenlet_release(main);
//!             return greenlet_propagate(); /* killed or thrown into: pass it on */
//!         }
//!     }
//!     greenlet_release(main);
//!     return NULL;
//! }
//! ```
//!
//! * A **handle** (`greenlet_t *`) is a counted reference to a greenlet. Every function that
//!   returns one adds a reference that the caller releases with `greenlet_release`. A
//!   greenlet has one handle at a time, so handles compare with `==`.
//! * A **switch** carries one `void *` each way. Statuses say what came back: `GREENLET_OK`
//!   and a value, `GREENLET_EXIT` (we are being killed), `GREENLET_THROWN` (an error, whose
//!   payload `greenlet_error_payload()` returns), or a negative code for a refused call.
//! * **Dying with an error**: an entry function returns `greenlet_fail(payload, message)`
//!   or `greenlet_propagate()` (pass on the error a switch just returned).
//! * **Safety**: a handle used from a thread that does not own it, a released handle, a
//!   cycle of parents, a switch inside a trace hook are all reported as status codes.
//!
//! # Mixing Rust and C
//!
//! A C `void *` is a [`CValue`] on the Rust side and a thrown C error is a [`CError`];
//! [`to_handle`] and [`from_handle`] convert greenlets.
//!
//! ```
//! use greenlet::{CValue, from_handle, to_handle};
//! let g = greenlet_core::Greenlet::new(|v| Ok(v));
//! let handle = to_handle(&g);
//! // SAFETY: a handle just made on this thread.
//! assert_eq!(unsafe { from_handle(handle) }.unwrap(), g);
//! // SAFETY: as above; released once.
//! unsafe { greenlet::api::greenlet_release(handle) };
//! let back = g.switch(CValue(std::ptr::null_mut())).unwrap();
//! assert!(back.is::<CValue>());
//! ```
#![warn(missing_docs)]

pub mod api;
mod handle;
mod status;
mod value;

#[cfg(test)]
mod abi_check;
#[cfg(test)]
mod tests;

pub use handle::{Handle, QUARANTINE};
pub use status::{Event, State, Status};
pub use value::{CError, CValue};

use greenlet_core::Greenlet;

/// A new handle (one reference) to `greenlet`, as C code gets from `greenlet_current`;
/// release it with [`api::greenlet_release`]. Null if this thread is exiting.
pub fn to_handle(greenlet: &Greenlet) -> *mut Handle {
    match handle::thread_data() {
        Ok(td) => td.intern(greenlet).as_ptr(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// The greenlet behind a handle, after the same checks as every C call.
///
/// # Safety
///
/// `handle` is null or was returned by this library.
pub unsafe fn from_handle(handle: *const Handle) -> Result<Greenlet, Status> {
    let td = handle::thread_data().map_err(|f| f.status)?;
    // SAFETY: per the contract.
    let cell = unsafe { td.cell(handle) }.map_err(|f| {
        td.set_last_error(&f.message);
        f.status
    })?;
    Ok(cell.greenlet().clone())
}
