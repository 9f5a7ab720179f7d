//! Tests of the C layer driven from Rust; the C and C++ programs in `tests/` cover the rest.

use std::ffi::{CStr, c_void};
use std::ptr::{null_mut, without_provenance_mut};

use greenlet_core::{Error, Greenlet, GreenletExit};

use crate::api::*;
use crate::{CError, CValue, Handle, State, Status, from_handle, to_handle};

fn last_error() -> String {
    // SAFETY: `greenlet_last_error` returns a NUL-terminated string.
    unsafe { CStr::from_ptr(greenlet_last_error()) }
        .to_string_lossy()
        .into_owned()
}

unsafe extern "C-unwind" fn echo_plus_one(
    arg: *mut c_void,
    _user_data: *mut c_void,
) -> *mut c_void {
    arg.wrapping_byte_add(1)
}

fn new_c_greenlet(entry: EntryFn, user_data: *mut c_void) -> *mut Handle {
    let mut g = null_mut();
    // SAFETY: `g` is writable; `entry` may be called with `user_data`.
    let status = unsafe { greenlet_new(&mut g, Some(entry), user_data, null_mut(), 0) };
    assert_eq!(status, Status::Ok, "{}", last_error());
    g
}

#[test]
fn a_rust_greenlet_receives_c_values_and_a_c_greenlet_rust_ones() {
    let g = new_c_greenlet(echo_plus_one, null_mut());
    // SAFETY: a live handle of this thread.
    let rust_side = unsafe { from_handle(g) }.unwrap();
    let out = rust_side
        .switch(CValue(without_provenance_mut(41)))
        .unwrap();
    assert_eq!(
        out.downcast::<CValue>().unwrap(),
        CValue(without_provenance_mut(42))
    );

    let h = new_c_greenlet(echo_plus_one, null_mut());
    // SAFETY: as above.
    let out = unsafe { from_handle(h) }.unwrap().switch(()).unwrap();
    assert_eq!(
        out.downcast::<CValue>().unwrap(),
        CValue(without_provenance_mut(1))
    );

    let k = new_c_greenlet(echo_plus_one, null_mut());
    // SAFETY: as above.
    let err = unsafe { from_handle(k) }
        .unwrap()
        .switch("text")
        .unwrap_err();
    assert!(
        matches!(err, Error::UnexpectedType { found: "&str", .. }),
        "{err}"
    );
    for handle in [g, h, k] {
        // SAFETY: each released once.
        assert_eq!(unsafe { greenlet_release(handle) }, Status::Ok);
    }
}

#[test]
fn a_c_switch_reports_a_foreign_rust_value() {
    let rust = Greenlet::new(|_| Ok(String::from("not a pointer")));
    let handle = to_handle(&rust);
    let mut out = without_provenance_mut(7);
    // SAFETY: a live handle; `out` writable.
    let status = unsafe { greenlet_switch(handle, null_mut(), &mut out) };
    assert_eq!(status, Status::ForeignValue);
    assert!(out.is_null());
    assert!(last_error().contains("String"), "{}", last_error());
    // SAFETY: released once.
    unsafe { greenlet_release(handle) };
}

#[test]
fn handles_are_interned_and_counted() {
    let before = greenlet_handle_count();
    let a = greenlet_current();
    let b = greenlet_current();
    assert_eq!(a, b);
    assert_eq!(greenlet_handle_count(), before + 1);
    // SAFETY: two references, two releases.
    unsafe {
        assert_eq!(greenlet_release(a), Status::Ok);
        assert_eq!(greenlet_state(b), State::Running);
        assert_eq!(greenlet_release(b), Status::Ok);
        // The third use of the same pointer is stale.
        assert_eq!(greenlet_release(b), Status::ErrStaleHandle);
        assert_eq!(greenlet_state(b), State::Invalid);
    }
    assert_eq!(greenlet_handle_count(), before);
}

#[test]
fn handles_of_another_thread_are_refused_without_touching_them() {
    let g = new_c_greenlet(echo_plus_one, null_mut());
    let address = g as usize;
    let statuses = std::thread::spawn(move || {
        let g = address as *mut Handle;
        // SAFETY: a handle of another thread, which every call must refuse.
        unsafe {
            [
                greenlet_switch(g, null_mut(), null_mut()),
                greenlet_retain(g),
                greenlet_release(g),
            ]
        }
    })
    .join()
    .unwrap();
    assert_eq!(statuses, [Status::ErrWrongThread; 3]);
    // SAFETY: still live here, released once.
    unsafe {
        assert_eq!(greenlet_state(g), State::Unstarted);
        assert_eq!(greenlet_release(g), Status::Ok);
    }
}

#[test]
fn handles_left_by_an_exited_thread_report_it() {
    let address = std::thread::spawn(|| new_c_greenlet(echo_plus_one, null_mut()) as usize)
        .join()
        .unwrap();
    let g = address as *mut Handle;
    // SAFETY: a handle orphaned by its thread's exit.
    unsafe {
        assert_eq!(
            greenlet_switch(g, null_mut(), null_mut()),
            Status::ErrThreadExited
        );
    }
}

#[test]
fn a_thrown_c_error_reaches_a_rust_greenlet_with_its_payload() {
    let rust = Greenlet::new(|_| {
        let err = Greenlet::main().switch(()).unwrap_err();
        let c = err.downcast_ref::<CError>().expect("a CError");
        Ok(CValue(c.payload()))
    });
    rust.switch(()).unwrap();
    let handle = to_handle(&rust);
    let mut out = null_mut();
    // SAFETY: a live handle; the message is a C string.
    let status = unsafe {
        greenlet_throw(
            handle,
            without_provenance_mut(9),
            c"nine".as_ptr(),
            &mut out,
        )
    };
    assert_eq!(status, Status::Ok);
    assert_eq!(out, without_provenance_mut(9));
    // SAFETY: released once.
    unsafe { greenlet_release(handle) };
}

#[test]
fn killing_a_rust_greenlet_from_c_returns_null() {
    let rust = Greenlet::new(|_| {
        Greenlet::main().switch(())?;
        Ok(())
    });
    rust.switch(()).unwrap();
    let handle = to_handle(&rust);
    let mut out = without_provenance_mut(1);
    // SAFETY: a live handle.
    assert_eq!(unsafe { greenlet_kill(handle, &mut out) }, Status::Ok);
    assert!(out.is_null() && rust.is_dead());
    // SAFETY: released once.
    unsafe { greenlet_release(handle) };
    // The GreenletExit comes back as a value to Rust callers.
    let again = Greenlet::new(|_| Ok(()));
    assert!(again.kill().unwrap().is::<GreenletExit>());
}

#[test]
fn status_names_are_static_strings() {
    // SAFETY: the results are NUL-terminated static strings.
    unsafe {
        let name = CStr::from_ptr(greenlet_status_name(Status::ErrWrongThread as i32));
        assert_eq!(name.to_str().unwrap(), "GREENLET_ERR_WRONG_THREAD");
        let unknown = CStr::from_ptr(greenlet_status_name(1234));
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
        assert!(!CStr::from_ptr(greenlet_backend_name()).is_empty());
    }
}
