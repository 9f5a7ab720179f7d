//! [`Value`]: the one dynamically typed payload that travels through every switch.
//!
//! Greenlets switch symmetrically, so the type of what arrives at a `switch` is only known
//! at run time. A `Value` holds any `'static` type. Small types (at most two machine words,
//! alignment at most a word: integers, `()`, references-free small structs, `Box`es) are
//! stored inline, so passing them through a switch allocates nothing; larger ones are boxed.

use std::any::{Any, TypeId};
use std::fmt;
use std::mem::{self, MaybeUninit};

/// Storage for an inline value: two machine words, word-aligned.
type InlineBuf = MaybeUninit<[usize; 2]>;

/// What a [`Value`] needs to know about the type stored inline.
struct InlineVTable {
    /// Stored, not computed: `downcast` after every switch compares it without a call.
    type_id: TypeId,
    type_name: fn() -> &'static str,
    /// Drops the value in the buffer in place.
    drop_in_place: unsafe fn(*mut InlineBuf),
}

enum Repr {
    Inline {
        buf: InlineBuf,
        vtable: &'static InlineVTable,
    },
    Boxed {
        value: Box<dyn Any>,
        type_name: &'static str,
    },
}

/// A value of any `'static` type, passed through [`switch`](crate::Greenlet::switch) and
/// returned by greenlets.
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
    repr: Repr,
}

fn fits_inline<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<InlineBuf>()
        && mem::align_of::<T>() <= mem::align_of::<InlineBuf>()
}

unsafe fn drop_inline<T>(buf: *mut InlineBuf) {
    // SAFETY: the caller passes a buffer that holds an initialised `T` (see `Value::new`).
    unsafe { buf.cast::<T>().drop_in_place() }
}

impl Value {
    /// Wraps `value`. A [`Value`] is passed through unchanged.
    ///
    /// ```
    /// let v = greenlet::Value::new(String::from("hello"));
    /// assert_eq!(v.downcast_ref::<String>().unwrap(), "hello");
    /// ```
    pub fn new<T: 'static>(value: T) -> Value {
        if TypeId::of::<T>() == TypeId::of::<Value>() {
            // SAFETY: `T` is `Value`, checked just above; the original is forgotten so
            // ownership moves exactly once.
            let value = mem::ManuallyDrop::new(value);
            return unsafe { mem::transmute_copy::<T, Value>(&value) };
        }
        if fits_inline::<T>() {
            let mut buf = InlineBuf::uninit();
            // SAFETY: `T` fits the buffer's size and alignment (`fits_inline`).
            unsafe { buf.as_mut_ptr().cast::<T>().write(value) };
            let vtable: &'static InlineVTable = const {
                &InlineVTable {
                    type_id: TypeId::of::<T>(),
                    type_name: std::any::type_name::<T>,
                    drop_in_place: drop_inline::<T>,
                }
            };
            Value {
                repr: Repr::Inline { buf, vtable },
            }
        } else {
            Value {
                repr: Repr::Boxed {
                    value: Box::new(value),
                    type_name: std::any::type_name::<T>(),
                },
            }
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
    pub fn is<T: 'static>(&self) -> bool {
        self.type_id() == TypeId::of::<T>()
    }

    #[inline]
    fn type_id(&self) -> TypeId {
        match &self.repr {
            Repr::Inline { vtable, .. } => vtable.type_id,
            Repr::Boxed { value, .. } => (**value).type_id(),
        }
    }

    /// The name of the type held, for messages.
    ///
    /// ```
    /// assert_eq!(greenlet::Value::new(7_u8).type_name(), "u8");
    /// ```
    pub fn type_name(&self) -> &'static str {
        match &self.repr {
            Repr::Inline { vtable, .. } => (vtable.type_name)(),
            Repr::Boxed { type_name, .. } => type_name,
        }
    }

    /// Takes the `T` out, or gives the value back unchanged if it holds another type.
    ///
    /// ```
    /// let v = greenlet::Value::new(3_i64);
    /// let v = v.downcast::<u8>().unwrap_err();
    /// assert_eq!(v.downcast::<i64>().unwrap(), 3);
    /// ```
    pub fn downcast<T: 'static>(self) -> Result<T, Value> {
        if !self.is::<T>() {
            return Err(self);
        }
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again; we move its representation out.
        match unsafe { std::ptr::read(&this.repr) } {
            // SAFETY: the type check above proves the buffer holds an initialised `T`.
            Repr::Inline { buf, .. } => Ok(unsafe { buf.as_ptr().cast::<T>().read() }),
            Repr::Boxed { value, .. } => match value.downcast::<T>() {
                Ok(b) => Ok(*b),
                // Unreachable: the type was checked above.
                Err(_) => unreachable!("type checked before downcast"),
            },
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
        match &self.repr {
            // SAFETY: the type check above proves the buffer holds an initialised `T`.
            Repr::Inline { buf, .. } => Some(unsafe { &*buf.as_ptr().cast::<T>() }),
            Repr::Boxed { value, .. } => value.downcast_ref::<T>(),
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
        match &mut self.repr {
            // SAFETY: the type check above proves the buffer holds an initialised `T`.
            Repr::Inline { buf, .. } => Some(unsafe { &mut *buf.as_mut_ptr().cast::<T>() }),
            Repr::Boxed { value, .. } => value.downcast_mut::<T>(),
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
        if let Repr::Inline { buf, vtable } = &mut self.repr {
            // SAFETY: an inline buffer always holds an initialised value of the vtable's
            // type, and it is dropped exactly once, here.
            unsafe { (vtable.drop_in_place)(buf) }
        }
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
    fn debug_names_the_type() {
        assert_eq!(format!("{:?}", Value::unit()), "Value(())");
        assert_eq!(format!("{:?}", Value::new(1_i32)), "Value(<i32>)");
    }
}
