//! Greenlet-local storage: one value per type, per greenlet.
//!
//! Each greenlet starts with empty storage, like a new thread. Values live as long as the
//! greenlet's state (until its last handle is dropped).

use std::any::{Any, TypeId};

use crate::greenlet::Greenlet;

impl Greenlet {
    /// Stores `value` as this greenlet's `T`; returns the `T` it replaces.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// struct RequestId(u32);
    /// let me = Greenlet::current();
    /// assert!(me.set_local(RequestId(7)).is_none());
    /// assert_eq!(me.take_local::<RequestId>().map(|r| r.0), Some(7));
    /// ```
    pub fn set_local<T: 'static>(&self, value: T) -> Option<T> {
        let boxed: Box<dyn Any> = Box::new(value);
        let old = {
            let mut locals = self.inner.extras_or_new().locals.borrow_mut();
            match locals.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
                Some((_, slot)) => Some(std::mem::replace(slot, boxed)),
                None => {
                    locals.push((TypeId::of::<T>(), boxed));
                    None
                }
            }
        };
        // Unboxed after the borrow ends: dropping user values may run any code.
        old.and_then(|b| b.downcast::<T>().ok()).map(|b| *b)
    }

    /// A copy of this greenlet's `T`, if it has one.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let g = Greenlet::new(|_| Ok(Greenlet::current().local::<&str>()));
    /// g.set_local("from outside");
    /// let seen = g.switch(()).unwrap().downcast::<Option<&str>>().unwrap();
    /// assert_eq!(seen, Some("from outside"));
    /// assert_eq!(Greenlet::current().local::<&str>(), None); // main has its own
    /// ```
    pub fn local<T: Clone + 'static>(&self) -> Option<T> {
        let locals = self.inner.extras()?.locals.borrow();
        locals
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, value)| value.downcast_ref::<T>().cloned())
    }

    /// Removes this greenlet's `T` and returns it.
    ///
    /// ```
    /// let me = greenlet::Greenlet::current();
    /// me.set_local(5_u8);
    /// assert_eq!(me.take_local::<u8>(), Some(5));
    /// assert_eq!(me.take_local::<u8>(), None);
    /// ```
    pub fn take_local<T: 'static>(&self) -> Option<T> {
        let taken = {
            let mut locals = self.inner.extras()?.locals.borrow_mut();
            let index = locals.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
            locals.swap_remove(index).1
        };
        taken.downcast::<T>().ok().map(|b| *b)
    }

    /// Whether this greenlet has a `T`.
    ///
    /// ```
    /// let me = greenlet::Greenlet::current();
    /// assert!(!me.has_local::<u16>());
    /// ```
    pub fn has_local<T: 'static>(&self) -> bool {
        self.inner.extras().is_some_and(|extras| {
            extras
                .locals
                .borrow()
                .iter()
                .any(|(id, _)| *id == TypeId::of::<T>())
        })
    }
}
