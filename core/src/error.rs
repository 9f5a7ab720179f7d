//! [`Error`] and [`GreenletExit`]: how failures travel between greenlets as values.
//!
//! Stable Rust has no unwinding on `wasm32`, so a `throw` into a greenlet, a kill, and a
//! greenlet's death by error are all *values*: the pending `switch` of the target returns
//! `Err(..)`, and the greenlet's code passes it on with `?`, which runs its destructors.

use std::borrow::Cow;
use std::fmt;

use greenlet_backends::stack::StackError;

/// The request that a greenlet finish: what [`kill`](crate::Greenlet::kill) and dropping the
/// last handle of a suspended greenlet deliver.
///
/// A greenlet that returns it (usually with `?`) dies quietly: its parent receives the
/// `GreenletExit` as an ordinary [`Value`](crate::Value), not as an error.
///
/// ```
/// use greenlet::{Greenlet, GreenletExit};
/// let g = Greenlet::new(|_| {
///     greenlet::Greenlet::main().switch(())?; // the kill arrives here as Err
///     Ok(())
/// });
/// g.switch(()).unwrap();
/// let result = g.kill().unwrap();
/// assert!(result.is::<GreenletExit>());
/// assert!(g.is_dead());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GreenletExit {
    message: Cow<'static, str>,
}

impl GreenletExit {
    /// A `GreenletExit` with a message.
    ///
    /// ```
    /// let exit = greenlet::GreenletExit::new("shutting down");
    /// assert_eq!(exit.message(), "shutting down");
    /// ```
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        GreenletExit {
            message: message.into(),
        }
    }

    /// The message, empty for a plain [`kill`](crate::Greenlet::kill).
    ///
    /// ```
    /// assert_eq!(greenlet::GreenletExit::default().message(), "");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for GreenletExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str("GreenletExit")
        } else {
            write!(f, "GreenletExit: {}", self.message)
        }
    }
}

impl std::error::Error for GreenletExit {}

/// Everything that can go wrong in a greenlet operation, and every error that travels
/// between greenlets.
///
/// ```
/// use greenlet::{Error, Greenlet};
/// let g = Greenlet::new(|_| -> Result<(), Error> { Err(Error::msg("no luck")) });
/// let err = g.switch(()).unwrap_err();
/// assert_eq!(err.to_string(), "no luck");
/// ```
#[non_exhaustive]
pub enum Error {
    /// A request that the greenlet finish ([`GreenletExit`]). Return it with `?`.
    Exit(GreenletExit),
    /// An error thrown into a greenlet with [`throw`](crate::Greenlet::throw), or one a
    /// greenlet died of.
    Thrown(Box<dyn std::error::Error + 'static>),
    /// The greenlet belongs to another thread, which is still running.
    WrongThread,
    /// The greenlet belongs to a thread that has exited.
    ThreadExited,
    /// The new parent would make the parent chain a cycle.
    CyclicParent,
    /// A main greenlet has no parent, and none can be set.
    CannotReparentMain,
    /// No stack could be had to start the greenlet; it stays unstarted.
    NoStack(StackError),
    /// [`yield_`](crate::generator::yield_) was called outside any generator.
    YieldOutsideGenerator,
    /// A [`Generator`](crate::Generator) produced a value of another type than expected.
    UnexpectedType {
        /// The type asked for.
        expected: &'static str,
        /// The type received.
        found: &'static str,
    },
}

impl Error {
    /// An error from any `std::error::Error` type, to [`throw`](crate::Greenlet::throw) or
    /// to return from a greenlet.
    ///
    /// A [`GreenletExit`] becomes [`Error::Exit`], so it keeps its meaning (a greenlet dying
    /// of it returns it to its parent as a value), and an `Error` is returned unchanged.
    ///
    /// ```
    /// use greenlet::{Error, GreenletExit};
    /// let e = Error::new(std::io::Error::other("disk full"));
    /// assert!(e.downcast_ref::<std::io::Error>().is_some());
    /// assert!(Error::new(GreenletExit::new("bye")).is_exit());
    /// ```
    pub fn new(error: impl std::error::Error + 'static) -> Self {
        let boxed: Box<dyn std::error::Error + 'static> = Box::new(error);
        // Without this, `Error::new(GreenletExit::new(..))` made a `Thrown` error: not
        // `is_exit()`, and propagated to the parent as an error (catalog item 47).
        match boxed.downcast::<GreenletExit>() {
            Ok(exit) => Error::Exit(*exit),
            Err(boxed) => match boxed.downcast::<Error>() {
                Ok(error) => *error,
                Err(boxed) => Error::Thrown(boxed),
            },
        }
    }

    /// An error carrying only a message.
    ///
    /// ```
    /// assert_eq!(greenlet::Error::msg("boom").to_string(), "boom");
    /// ```
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::Thrown(Box::new(Message(message.to_string())))
    }

    /// Whether this is a [`GreenletExit`].
    ///
    /// ```
    /// assert!(greenlet::Error::Exit(Default::default()).is_exit());
    /// assert!(!greenlet::Error::msg("x").is_exit());
    /// ```
    pub fn is_exit(&self) -> bool {
        matches!(self, Error::Exit(_))
    }

    /// The thrown error as an `E`, if it is one.
    ///
    /// ```
    /// use std::num::ParseIntError;
    /// let parse: ParseIntError = "x".parse::<u8>().unwrap_err();
    /// let e = greenlet::Error::new(parse);
    /// assert!(e.downcast_ref::<ParseIntError>().is_some());
    /// ```
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Thrown(e) => e.downcast_ref::<E>(),
            Error::Exit(exit) => (exit as &dyn std::error::Error).downcast_ref::<E>(),
            _ => None,
        }
    }
}

/// A plain message used as an error.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Exit(exit) => exit.fmt(f),
            Error::Thrown(e) => e.fmt(f),
            Error::WrongThread => f.write_str("cannot switch to a greenlet of a different thread"),
            Error::ThreadExited => f.write_str(
                "cannot switch to a greenlet of a different thread (which happens to have exited)",
            ),
            Error::CyclicParent => f.write_str("cyclic parent chain"),
            Error::CannotReparentMain => f.write_str("cannot set the parent of a main greenlet"),
            Error::NoStack(e) => write!(f, "cannot start the greenlet: {e}"),
            Error::YieldOutsideGenerator => f.write_str("yield outside a generator"),
            Error::UnexpectedType { expected, found } => {
                write!(f, "expected a value of type {expected}, got {found}")
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Exit(exit) => f.debug_tuple("Exit").field(exit).finish(),
            Error::Thrown(e) => f.debug_tuple("Thrown").field(e).finish(),
            Error::NoStack(e) => f.debug_tuple("NoStack").field(e).finish(),
            other => write!(f, "{other}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Thrown(e) => Some(&**e),
            Error::NoStack(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GreenletExit> for Error {
    fn from(exit: GreenletExit) -> Self {
        Error::Exit(exit)
    }
}

impl From<StackError> for Error {
    fn from(e: StackError) -> Self {
        Error::NoStack(e)
    }
}
