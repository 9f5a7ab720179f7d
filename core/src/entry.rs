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

use greenlet_backends::EntryFn;

use crate::error::Error;
use crate::switch;
use crate::value::Value;

/// Storage for a closure: four machine words, word-aligned.
type ClosureBuf = MaybeUninit<[usize; 4]>;

/// What an [`EntryClosure`] needs to know about the closure it holds.
struct ClosureVTable {
    /// The function a greenlet holding this closure starts in: the entry generic over the
    /// closure's type ([`switch::greenlet_entry`]), which takes the closure out with
    /// [`EntryClosure::take_held`] and calls it where it stands, as a direct call the compiler
    /// can expand (through a table, the call cost a frame of its own and the error's way
    /// out through a `dyn` callback).
    entry: EntryFn,
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
        entry: switch::greenlet_entry::<F, R, true>,
        drop: Self::drop,
    };

    /// # Safety
    ///
    /// `buf` holds an `F` (or a `Box<F>` if it does not fit), which is dropped.
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

/// The closure type named by the entry of a greenlet whose closure is gone when it
/// starts ([`EntryClosure::entry`]), which takes nothing out and returns `()`. (Its
/// `false` parameter keeps it apart from the entry of a closure of this very type.)
type NoClosure = fn(Value) -> Result<(), Error>;

/// The entry of a greenlet whose closure is gone (see [`NoClosure`]). A constant, so that
/// every use is the same function pointer (made anew at each use, two pointers to one
/// function may differ, as they do under Miri).
const NO_CLOSURE_ENTRY: EntryFn = switch::greenlet_entry::<NoClosure, (), false>;

/// A greenlet's closure until it is called or discarded; empty for a main greenlet.
pub(crate) struct EntryClosure {
    buf: UnsafeCell<ClosureBuf>,
    /// `None` once the closure has been taken out (or for a main greenlet, which has none).
    vtable: Cell<Option<&'static ClosureVTable>>,
}

impl EntryClosure {
    /// Holds `run` until [`take_held`](Self::take_held) or [`discard`](Self::discard).
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

    /// The function a greenlet holding this closure starts in (see [`ClosureVTable`]).
    /// With no closure (gone, or never there), one whose greenlet returns `()`.
    #[inline(always)]
    pub(crate) fn entry(&self) -> EntryFn {
        match self.vtable.get() {
            Some(vtable) => vtable.entry,
            None => NO_CLOSURE_ENTRY,
        }
    }

    /// Takes the closure out, to be called, marking it gone so that nothing can reach it
    /// twice: how a greenlet started in the entry its closure's table names takes it
    /// (nothing runs between the choice of that entry and the start that could discard
    /// it).
    ///
    /// # Safety
    ///
    /// The closure is there, and it is an `F`.
    #[inline(always)]
    pub(crate) unsafe fn take_held<F, R>(&self) -> F
    where
        F: FnOnce(Value) -> Result<R, Error> + 'static,
        R: 'static,
    {
        debug_assert!(!self.is_empty(), "greenlet: started without its closure");
        self.vtable.set(None);
        let buf = self.buf.get();
        // SAFETY: the closure is there (the caller's contract), an `F`, stored as `new`
        // stored it; with the vtable gone, the buffer is not read again.
        unsafe {
            if fits_inline::<F>() {
                buf.cast::<F>().read()
            } else {
                *buf.cast::<Box<F>>().read()
            }
        }
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
            // SAFETY: a vtable was present, so the buffer holds the closure it describes;
            // with the vtable gone, the buffer is not read again.
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

    /// Stores `run`; returns it held, and the way its entry function takes it back out.
    fn held<F, R>(run: F) -> (EntryClosure, fn(&EntryClosure) -> Option<F>)
    where
        F: FnOnce(Value) -> Result<R, Error> + 'static,
        R: 'static,
    {
        // SAFETY: the closure held, if any, is an `F`, stored just here.
        (EntryClosure::new(run), |held| {
            (!held.is_empty()).then(|| unsafe { held.take_held::<F, R>() })
        })
    }

    #[test]
    fn small_and_large_closures_are_taken_once() {
        let small_capture = 5_u64;
        let (small, take_small) =
            held(move |v: Value| Ok(v.downcast::<u64>().unwrap() + small_capture));
        let big_capture = [1_u64; 16];
        let (large, take_large) = held(move |_: Value| Ok(big_capture.iter().sum::<u64>()));
        assert!(!small.is_empty() && !large.is_empty());
        let six = take_small(&small).unwrap()(Value::new(1_u64)).unwrap();
        assert_eq!(six, 6);
        // Taken once only: it is gone after.
        assert!(small.is_empty());
        assert!(take_small(&small).is_none());
        assert_eq!(take_large(&large).unwrap()(Value::unit()).unwrap(), 16);
        assert!(large.is_empty());
        assert!(EntryClosure::none().is_empty());
    }

    #[test]
    fn each_closure_type_has_its_own_entry_and_an_empty_one_a_common_one() {
        let (a, _) = held(|_: Value| Ok(1_u8));
        let (b, _) = held(|_: Value| Ok(2_u16));
        let none = EntryClosure::none();
        assert!(!std::ptr::fn_addr_eq(a.entry(), b.entry()));
        // Taking the closure out leaves the entry of a greenlet without one.
        a.discard();
        assert!(std::ptr::fn_addr_eq(a.entry(), none.entry()));
        // A closure of the very type that entry names still has an entry of its own,
        // which takes it out and calls it.
        let plain: NoClosure = |_| Ok(());
        let c = EntryClosure::new(plain);
        assert!(!std::ptr::fn_addr_eq(c.entry(), none.entry()));
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
