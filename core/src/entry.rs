//! [`EntryClosure`]: a greenlet's closure, kept inside the greenlet's shared state until
//! the greenlet starts.
//!
//! Small closures (at most four machine words, alignment at most a word: those capturing a
//! few handles, `Rc`s or integers) are stored in the state itself, so creating such a
//! greenlet makes a single allocation; larger ones are boxed. Either way the state keeps a
//! fixed size, so a handle is one pointer and every field sits at a constant offset.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem::{self, MaybeUninit};

use crate::error::Error;
use crate::value::Value;

/// Storage for a closure: four machine words, word-aligned.
type ClosureBuf = MaybeUninit<[usize; 4]>;

/// Where an error the closure returns goes (a greenlet parks it in its thread state), so
/// that a call returns an `Option<Value>`, two registers: a `Result<Value, Error>` is
/// returned through memory.
pub(crate) type OnError<'a> = &'a mut dyn FnMut(Error);

/// What an [`EntryClosure`] needs to know about the closure it holds.
struct ClosureVTable {
    /// Moves the closure out of the buffer and calls it with the first value (see
    /// [`EntryClosure::call`]).
    call: unsafe fn(*mut ClosureBuf, Value, OnError<'_>) -> Option<Value>,
    /// Drops the closure in the buffer without calling it.
    drop: unsafe fn(*mut ClosureBuf),
}

/// Whether a `F` is stored in the buffer itself rather than boxed.
const fn fits_inline<F>() -> bool {
    mem::size_of::<F>() <= mem::size_of::<ClosureBuf>()
        && mem::align_of::<F>() <= mem::align_of::<ClosureBuf>()
}

/// The table of a closure type `F` returning `Result<R, Error>`.
struct TableOf<F, R>(PhantomData<(F, R)>);

impl<F, R> TableOf<F, R>
where
    F: FnOnce(Value) -> Result<R, Error> + 'static,
    R: 'static,
{
    const VTABLE: ClosureVTable = ClosureVTable {
        call: Self::call,
        drop: Self::drop,
    };

    /// # Safety
    ///
    /// `buf` holds an `F` (or a `Box<F>` if it does not fit), which is moved out.
    unsafe fn call(buf: *mut ClosureBuf, first: Value, on_error: OnError<'_>) -> Option<Value> {
        // SAFETY: the caller's contract, as `EntryClosure::new` stored it.
        let run: F = unsafe {
            if fits_inline::<F>() {
                buf.cast::<F>().read()
            } else {
                *buf.cast::<Box<F>>().read()
            }
        };
        match run(first) {
            Ok(value) => Some(Value::new(value)),
            Err(error) => {
                on_error(error);
                None
            }
        }
    }

    /// # Safety
    ///
    /// As for `call`; the closure is dropped instead.
    unsafe fn drop(buf: *mut ClosureBuf) {
        // SAFETY: the caller's contract, as `EntryClosure::new` stored it.
        unsafe {
            if fits_inline::<F>() {
                buf.cast::<F>().drop_in_place()
            } else {
                buf.cast::<Box<F>>().drop_in_place()
            }
        }
    }
}

/// A greenlet's closure until it is called or discarded; empty for a main greenlet.
pub(crate) struct EntryClosure {
    buf: UnsafeCell<ClosureBuf>,
    /// `None` once the closure has been taken out (or for a main greenlet, which has none).
    vtable: Cell<Option<&'static ClosureVTable>>,
}

impl EntryClosure {
    /// Holds `run` until [`call`](Self::call) or [`discard`](Self::discard).
    #[inline]
    pub(crate) fn new<F, R>(run: F) -> Self
    where
        F: FnOnce(Value) -> Result<R, Error> + 'static,
        R: 'static,
    {
        let mut buf = ClosureBuf::uninit();
        if fits_inline::<F>() {
            // SAFETY: `F` fits the buffer's size and alignment (`fits_inline`).
            unsafe { buf.as_mut_ptr().cast::<F>().write(run) };
        } else {
            // SAFETY: a `Box` is one word, which fits.
            unsafe { buf.as_mut_ptr().cast::<Box<F>>().write(Box::new(run)) };
        }
        EntryClosure {
            buf: UnsafeCell::new(buf),
            vtable: Cell::new(Some(const { &TableOf::<F, R>::VTABLE })),
        }
    }

    /// No closure: a main greenlet's.
    pub(crate) fn none() -> Self {
        EntryClosure {
            buf: UnsafeCell::new(ClosureBuf::uninit()),
            vtable: Cell::new(None),
        }
    }

    /// Takes the closure out and calls it with the first value: returns the value it
    /// returns, or hands the error it returns to `on_error` and returns `None`. With no
    /// closure left (or none ever), the value is `()`.
    pub(crate) fn call(&self, first: Value, on_error: OnError<'_>) -> Option<Value> {
        // Marked empty before the call, so nothing can reach the closure twice.
        let Some(vtable) = self.vtable.take() else {
            return Some(Value::unit());
        };
        // SAFETY: a vtable was present, so the buffer holds the closure it describes; the
        // buffer is not touched again until a new closure is stored (never).
        unsafe { (vtable.call)(self.buf.get(), first, on_error) }
    }

    /// Whether the closure is gone: called, discarded, or never there (a main greenlet's).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        // SAFETY: a `Cell` hands out no references, and only this thread reaches it.
        unsafe { (*self.vtable.as_ptr()).is_none() }
    }

    /// Drops the closure without calling it, if it is still there.
    pub(crate) fn discard(&self) {
        if let Some(vtable) = self.vtable.take() {
            // SAFETY: as in `call`.
            unsafe { (vtable.drop)(self.buf.get()) }
        }
    }
}

impl Drop for EntryClosure {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn small_and_large_closures_are_called_once() {
        let small_capture = 5_u64;
        let small =
            EntryClosure::new(move |v: Value| Ok(v.downcast::<u64>().unwrap() + small_capture));
        let big_capture = [1_u64; 16];
        let large = EntryClosure::new(move |_: Value| Ok(big_capture.iter().sum::<u64>()));
        let mut errors = Vec::new();
        let mut keep = |error: Error| errors.push(error.to_string());
        let six = small.call(Value::new(1_u64), &mut keep).unwrap();
        assert_eq!(six.downcast::<u64>().unwrap(), 6);
        // Called once only: the second call finds no closure and returns `()`.
        assert!(small.call(Value::unit(), &mut keep).unwrap().is::<()>());
        let sixteen = large.call(Value::unit(), &mut keep).unwrap();
        assert_eq!(sixteen.downcast::<u64>().unwrap(), 16);
        let none = EntryClosure::none().call(Value::unit(), &mut keep).unwrap();
        assert!(none.is::<()>());
        let failing = EntryClosure::new(|_: Value| -> Result<(), Error> { Err(Error::msg("no")) });
        assert!(failing.call(Value::unit(), &mut keep).is_none());
        assert_eq!(errors, ["no"]);
    }

    #[test]
    fn uncalled_closures_drop_their_captures() {
        let counter = Rc::new(());
        let small = {
            let c = counter.clone();
            EntryClosure::new(move |_: Value| Ok(Rc::strong_count(&c)))
        };
        let large = {
            let c = counter.clone();
            let pad = [0_u64; 8];
            EntryClosure::new(move |_: Value| Ok((Rc::strong_count(&c), pad)))
        };
        assert_eq!(Rc::strong_count(&counter), 3);
        small.discard();
        assert_eq!(Rc::strong_count(&counter), 2);
        drop(large);
        assert_eq!(Rc::strong_count(&counter), 1);
    }
}
