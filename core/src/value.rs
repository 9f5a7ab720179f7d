//! [`Value`]: the one dynamically typed payload that travels through every switch.
//!
//! Greenlets switch symmetrically, so the type of what arrives at a `switch` is only known
//! at run time. A `Value` holds any `'static` type in two words: 64 bits of storage and a
//! pointer to a per-type table. Types of at most 64 bits (integers, `()`, `f64`, `Box`es,
//! `Rc`s, greenlet handles, references) are stored in place, so passing them through a
//! switch allocates nothing; larger ones are boxed and the storage holds the box. Which of
//! the two a type gets is decided by its size alone, at compile time, so reading a value
//! back needs no run-time tag.
//!
//! Two words, not more: a pair of scalars is what the compiler keeps in registers and moves
//! as two scalars. A three-word value was copied as a 16-byte block over fields just
//! stored one by one, which the CPU cannot forward from its store buffer: a stall of a few
//! nanoseconds on every switch.

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::ptr;

/// The storage word of a [`Value`]: 64 bits on every target, so that `u64` and `f64` are
/// stored unboxed on 32-bit targets (wasm32) too.
type InlineBuf = MaybeUninit<u64>;

/// What a [`Value`] needs to know about the type it holds.
struct VTable {
    /// Stored, not computed: `downcast` after every switch compares it without a call.
    type_id: TypeId,
    type_name: fn() -> &'static str,
    /// Drops what the buffer holds (the value, or the box holding it) in place.
    drop_in_place: unsafe fn(*mut InlineBuf),
}

/// A value of any `'static` type, passed through [`switch`](crate::Greenlet::switch) and
/// returned by greenlets.
///
/// Values of at most 64 bits (integers, `f64`, `Box`es, `Rc`s, handles, references) are
/// stored in place, so switching with them allocates nothing; larger ones are boxed.
///
/// ```
/// use greenlet::Value;
/// let v = Value::new(42_u32);
/// assert!(v.is::<u32>());
/// assert_eq!(v.downcast::<u32>().unwrap(), 42);
///
/// let unit = Value::unit();
/// assert!(unit.is_unit());
///
/// // A `Value` given to `Value::new` is passed through, not wrapped again.
/// let again = Value::new(Value::new("text"));
/// assert_eq!(again.downcast::<&str>().unwrap(), "text");
/// ```
pub struct Value {
    /// Holds a `T` if [`fits_inline::<T>`], else a `Box<T>`; `T` is the vtable's type.
    buf: InlineBuf,
    vtable: &'static VTable,
}

/// Whether a `T` is stored in a [`Value`]'s word itself rather than boxed.
const fn fits_inline<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<InlineBuf>()
        && mem::align_of::<T>() <= mem::align_of::<InlineBuf>()
}

unsafe fn drop_stored<S>(buf: *mut InlineBuf) {
    // SAFETY: the caller passes a buffer that holds an initialised `S` (see `Value::new`).
    unsafe { buf.cast::<S>().drop_in_place() }
}

/// The table of a `T`: its buffer holds a `T` or a `Box<T>`, as [`fits_inline`] says.
struct TableOf<T>(PhantomData<T>);

impl<T: 'static> TableOf<T> {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<T>(),
        type_name: std::any::type_name::<T>,
        drop_in_place: if fits_inline::<T>() {
            drop_stored::<T>
        } else {
            drop_stored::<Box<T>>
        },
    };
}

impl Value {
    /// Wraps `value`. A [`Value`] is passed through unchanged.
    ///
    /// ```
    /// let v = greenlet::Value::new(String::from("hello"));
    /// assert_eq!(v.downcast_ref::<String>().unwrap(), "hello");
    /// ```
    #[inline]
    pub fn new<T: 'static>(value: T) -> Value {
        // A `Value` passes through. Taken out of an `Option` seen as `dyn Any`: the type
        // test folds away, and the move stays a typed one, two words the compiler keeps in
        // registers (`mem::transmute_copy` read it back as one unaligned 16-byte load over
        // the two 8-byte stores that had just spilled it: a store-forwarding stall on every
        // `switch(value)` that passed a received `Value` on).
        let mut slot = Some(value);
        if let Some(passed) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Value>>()
            && let Some(passed) = passed.take()
        {
            return passed;
        }
        let Some(value) = slot else {
            unreachable!("only a `Value` is taken out")
        };
        let mut buf = InlineBuf::uninit();
        if fits_inline::<T>() {
            // SAFETY: `T` fits the buffer's size and alignment (`fits_inline`).
            unsafe { buf.as_mut_ptr().cast::<T>().write(value) };
        } else {
            // SAFETY: a `Box` is one word, which fits.
            unsafe { buf.as_mut_ptr().cast::<Box<T>>().write(Box::new(value)) };
        }
        Value {
            buf,
            vtable: const { &TableOf::<T>::VTABLE },
        }
    }

    /// The unit value `()`: what a switch with nothing to say carries.
    ///
    /// ```
    /// assert!(greenlet::Value::unit().is::<()>());
    /// ```
    pub fn unit() -> Value {
        Value::new(())
    }

    /// Whether this holds `()`.
    ///
    /// ```
    /// assert!(greenlet::Value::unit().is_unit());
    /// assert!(!greenlet::Value::new(0).is_unit());
    /// ```
    pub fn is_unit(&self) -> bool {
        self.is::<()>()
    }

    /// Whether this holds a `T`.
    ///
    /// ```
    /// assert!(greenlet::Value::new(1.5_f64).is::<f64>());
    /// ```
    #[inline]
    pub fn is<T: 'static>(&self) -> bool {
        // The table `Value::new::<T>` uses, most of the time: one comparison of addresses, no
        // load. Not always (each crate, even each codegen unit, may have its own copy of a
        // table), so different addresses fall back to comparing the type ids.
        ptr::eq(self.vtable, const { &TableOf::<T>::VTABLE })
            || self.vtable.type_id == TypeId::of::<T>()
    }

    /// The name of the type held, for messages.
    ///
    /// ```
    /// assert_eq!(greenlet::Value::new(7_u8).type_name(), "u8");
    /// ```
    pub fn type_name(&self) -> &'static str {
        (self.vtable.type_name)()
    }

    /// Takes the `T` out, or gives the value back unchanged if it holds another type.
    ///
    /// ```
    /// let v = greenlet::Value::new(3_i64);
    /// let v = v.downcast::<u8>().unwrap_err();
    /// assert_eq!(v.downcast::<i64>().unwrap(), 3);
    /// ```
    #[inline]
    pub fn downcast<T: 'static>(self) -> Result<T, Value> {
        if !self.is::<T>() {
            return Err(self);
        }
        // Never dropped: what the buffer holds is moved out below.
        let this = ManuallyDrop::new(self);
        let buf = this.buf.as_ptr().cast::<u8>();
        if fits_inline::<T>() {
            // SAFETY: the type check above proves the buffer holds an initialised `T`.
            Ok(unsafe { buf.cast::<T>().read() })
        } else {
            // SAFETY: as above, and a `T` that does not fit is stored boxed.
            Ok(*unsafe { buf.cast::<Box<T>>().read() })
        }
    }

    /// A reference to the `T` held, if it is one.
    ///
    /// ```
    /// let v = greenlet::Value::new(vec![1, 2]);
    /// assert_eq!(v.downcast_ref::<Vec<i32>>().unwrap().len(), 2);
    /// assert!(v.downcast_ref::<i32>().is_none());
    /// ```
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        if !self.is::<T>() {
            return None;
        }
        let buf = self.buf.as_ptr().cast::<u8>();
        if fits_inline::<T>() {
            // SAFETY: the type check above proves the buffer holds an initialised `T`.
            Some(unsafe { &*buf.cast::<T>() })
        } else {
            // SAFETY: as above, and a `T` that does not fit is stored boxed.
            Some(unsafe { &**buf.cast::<Box<T>>() })
        }
    }

    /// A mutable reference to the `T` held, if it is one.
    ///
    /// ```
    /// let mut v = greenlet::Value::new(1_u32);
    /// *v.downcast_mut::<u32>().unwrap() += 1;
    /// assert_eq!(v.downcast::<u32>().unwrap(), 2);
    /// ```
    pub fn downcast_mut<T: 'static>(&mut self) -> Option<&mut T> {
        if !self.is::<T>() {
            return None;
        }
        let buf = self.buf.as_mut_ptr().cast::<u8>();
        if fits_inline::<T>() {
            // SAFETY: the type check above proves the buffer holds an initialised `T`.
            Some(unsafe { &mut *buf.cast::<T>() })
        } else {
            // SAFETY: as above, and a `T` that does not fit is stored boxed.
            Some(unsafe { &mut **buf.cast::<Box<T>>() })
        }
    }
}

/// A [`Value`] taken apart into its two words, so that each can be stored and loaded as a
/// word of its own (see `crate::switch::Handoff`).
pub(crate) struct ValueParts {
    /// The value's own word.
    pub(crate) bits: InlineBuf,
    /// Its table, opaque outside this module.
    pub(crate) table: ValueTable,
}

/// The table of a [`Value`]'s type, as [`ValueParts`] carries it.
#[derive(Clone, Copy)]
pub(crate) struct ValueTable(&'static VTable);

impl ValueTable {
    /// The table's address, with its provenance exposed for [`ValueTable::from_address`].
    /// Always even: a table is aligned to more than one byte.
    #[inline(always)]
    pub(crate) fn address(self) -> usize {
        ptr::from_ref(self.0).expose_provenance()
    }

    /// The table at `address`.
    ///
    /// # Safety
    ///
    /// `address` was returned by [`ValueTable::address`].
    #[inline(always)]
    pub(crate) unsafe fn from_address(address: usize) -> ValueTable {
        // SAFETY: the caller's contract: the address of a `'static` table, exposed.
        ValueTable(unsafe { &*ptr::with_exposed_provenance::<VTable>(address) })
    }
}

const _: () = assert!(align_of::<VTable>() > 1);

impl Value {
    /// Takes the value apart, giving up ownership to the parts.
    #[inline(always)]
    pub(crate) fn into_parts(self) -> ValueParts {
        let this = ManuallyDrop::new(self);
        ValueParts {
            bits: this.buf,
            table: ValueTable(this.vtable),
        }
    }

    /// The value that [`Value::into_parts`] took apart.
    #[inline(always)]
    pub(crate) fn from_parts(parts: ValueParts) -> Value {
        Value {
            buf: parts.bits,
            vtable: parts.table.0,
        }
    }
}

impl Default for Value {
    fn default() -> Self {
        Value::unit()
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: the buffer always holds what the vtable's `drop_in_place` expects (see
        // `Value::new`), and it is dropped exactly once, here.
        unsafe { (self.vtable.drop_in_place)(&mut self.buf) }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unit() {
            return f.write_str("Value(())");
        }
        write!(f, "Value(<{}>)", self.type_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn inline_and_boxed_values_round_trip() {
        assert_eq!(Value::new(5_u8).downcast::<u8>().unwrap(), 5);
        assert_eq!(
            Value::new([1_u64, 2, 3, 4]).downcast::<[u64; 4]>().unwrap(),
            [1, 2, 3, 4]
        );
        assert_eq!(
            Value::new((1_u64, 2_u64)).downcast::<(u64, u64)>().unwrap(),
            (1, 2)
        );
        assert!(matches!(Value::new(1_u128).downcast::<u128>(), Ok(1)));
    }

    #[test]
    fn values_are_dropped_exactly_once() {
        let counter = Rc::new(());
        let small = Value::new(counter.clone());
        let big = Value::new((counter.clone(), [0_u64; 8]));
        assert_eq!(Rc::strong_count(&counter), 3);
        drop(small);
        assert_eq!(Rc::strong_count(&counter), 2);
        let (back, _) = big.downcast::<(Rc<()>, [u64; 8])>().unwrap();
        assert_eq!(Rc::strong_count(&counter), 2);
        drop(back);
        assert_eq!(Rc::strong_count(&counter), 1);
        let failed = Value::new(counter.clone()).downcast::<u8>().unwrap_err();
        assert_eq!(Rc::strong_count(&counter), 2);
        drop(failed);
        assert_eq!(Rc::strong_count(&counter), 1);
    }

    #[test]
    fn a_value_is_two_words_and_holds_64_bits_unboxed() {
        assert_eq!(mem::size_of::<Value>(), 2 * mem::size_of::<u64>());
        assert!(fits_inline::<u64>() && fits_inline::<f64>() && fits_inline::<Box<String>>());
        assert!(!fits_inline::<u128>() && !fits_inline::<[u64; 2]>());
    }

    #[test]
    fn references_into_boxed_and_inline_values() {
        let mut big = Value::new([7_u64; 8]);
        big.downcast_mut::<[u64; 8]>().unwrap()[3] = 1;
        assert_eq!(big.downcast_ref::<[u64; 8]>().unwrap()[3], 1);
        assert_eq!(big.type_name(), "[u64; 8]");
        let mut small = Value::new(5_u16);
        *small.downcast_mut::<u16>().unwrap() += 1;
        assert_eq!(small.downcast_ref::<u16>(), Some(&6));
    }

    #[test]
    fn debug_names_the_type() {
        assert_eq!(format!("{:?}", Value::unit()), "Value(())");
        assert_eq!(format!("{:?}", Value::new(1_i32)), "Value(<i32>)");
    }
}
