//! Generators built on `switch`: a greenlet that yields values to whoever iterates it.
//!
//! [`yield_`] can be called from any plain function the generator body calls, however
//! deeply nested, and from greenlets started inside the generator: it finds the nearest
//! generator by walking up the parent chain.

use std::marker::PhantomData;

use crate::error::Error;
use crate::greenlet::Greenlet;

/// Marks a greenlet as the body of a generator.
#[derive(Clone, Copy)]
struct GeneratorMark;

/// The greenlet waiting in `next()` for the generator's next value. Set by `next()` and
/// taken by `yield_`, so a suspended generator holds no handle to its consumer.
#[derive(Clone)]
struct Consumer(Greenlet);

/// What `yield_` sends to the consumer: the value, and the greenlet that yielded it when
/// that is not the generator's own greenlet (one started inside the body), so that the
/// next `next()` resumes it rather than the body, which is waiting elsewhere.
struct Yielded {
    value: crate::Value,
    from: Option<Greenlet>,
}

/// An iterator over the values a greenlet body passes to [`yield_`].
///
/// Iteration ends when the body returns; an error it returns is the last item. Dropping a
/// generator in the middle kills its greenlet: the pending `yield_` returns
/// `Err(Error::Exit(..))`, which the body passes on with `?`.
///
/// ```
/// use greenlet::{generator::yield_, Generator};
/// fn count_to(n: u32) -> Result<(), greenlet::Error> {
///     for i in 1..=n {
///         yield_(i)?; // a plain function, called from the body
///     }
///     Ok(())
/// }
/// let squares: Vec<u32> = Generator::<u32>::new(|| count_to(4))
///     .map(|v| v.unwrap() * 10)
///     .collect();
/// assert_eq!(squares, [10, 20, 30, 40]);
/// ```
pub struct Generator<T> {
    greenlet: Greenlet,
    /// The greenlet started inside the body that yielded last and waits in `yield_`.
    resume: Option<Greenlet>,
    finished: bool,
    _yields: PhantomData<fn() -> T>,
}

impl<T: 'static> Generator<T> {
    /// A generator running `body` on its own greenlet, lazily: nothing runs before the
    /// first `next()`.
    ///
    /// ```
    /// let mut g = greenlet::Generator::<u8>::new(|| Ok(()));
    /// assert!(g.next().is_none());
    /// ```
    pub fn new<F>(body: F) -> Self
    where
        F: FnOnce() -> Result<(), Error> + 'static,
    {
        let greenlet = Greenlet::new(move |_| body());
        greenlet.set_local(GeneratorMark);
        Generator {
            greenlet,
            resume: None,
            finished: false,
            _yields: PhantomData,
        }
    }

    /// The greenlet running the body.
    ///
    /// ```
    /// let g = greenlet::Generator::<u8>::new(|| Ok(()));
    /// assert!(!g.greenlet().is_started());
    /// ```
    pub fn greenlet(&self) -> &Greenlet {
        &self.greenlet
    }
}

impl<T: 'static> Iterator for Generator<T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let consumer = match Greenlet::try_current() {
            Ok(current) => current,
            Err(error) => return Some(Err(error)),
        };
        // When the body returns, control comes back to whoever is consuming it now.
        // (Refused only if the consumer runs inside the generator itself: then the
        // body's parent chain already leads there.)
        let _ = self.greenlet.set_parent(&consumer);
        self.greenlet.set_local(Consumer(consumer));
        // Resume whoever yielded last: the body, or a greenlet started inside it.
        let outcome = match self.resume.take() {
            Some(yielder) => yielder.switch(()),
            None => self.greenlet.switch(()),
        };
        if self.greenlet.is_dead() {
            self.finished = true;
        }
        match outcome {
            Ok(_) if self.finished => None,
            Ok(value) => {
                let value = match value.downcast::<Yielded>() {
                    Ok(Yielded { value, from }) => {
                        self.resume = from;
                        value
                    }
                    // A plain value someone switched to the consumer directly.
                    Err(other) => other,
                };
                Some(
                    value
                        .downcast::<T>()
                        .map_err(|other| Error::UnexpectedType {
                            expected: std::any::type_name::<T>(),
                            found: other.type_name(),
                        }),
                )
            }
            Err(error) => Some(Err(error)),
        }
    }
}

/// Passes `value` to the consumer of the nearest enclosing generator and waits for the
/// next `next()`.
///
/// Returns [`Error::YieldOutsideGenerator`] when no greenlet up the parent chain is a
/// generator, and `Err(Error::Exit(..))` when the generator is dropped while waiting.
///
/// ```
/// use greenlet::{generator::yield_, Error};
/// assert!(matches!(yield_(1), Err(Error::YieldOutsideGenerator)));
/// ```
pub fn yield_<T: 'static>(value: T) -> Result<(), Error> {
    let current = Greenlet::try_current()?;
    let mut greenlet = current.clone();
    loop {
        if greenlet.has_local::<GeneratorMark>() {
            let Some(Consumer(consumer)) = greenlet.take_local::<Consumer>() else {
                return Err(Error::YieldOutsideGenerator);
            };
            // A greenlet started inside the body must be the one the next `next()` resumes.
            let from = (greenlet != current).then_some(current);
            // No handle to the generator's greenlet may wait on its own stack: then
            // dropping the `Generator` would not drop the last handle, and would not kill
            // the body. (`from` travels to the consumer; it is never our own handle.)
            drop(greenlet);
            let value = crate::Value::new(value);
            consumer.switch(Yielded { value, from })?;
            return Ok(());
        }
        greenlet = greenlet.parent().ok_or(Error::YieldOutsideGenerator)?;
    }
}
