//! Helpers for the tests of catalog items 1–53 (creation, switch, results and errors going
//! to the parent, throw, `GreenletExit`, dead greenlets).
//!
//! Greenlet closures are `'static`, so everything a test wants to observe from inside a
//! greenlet is shared through `Rc`: a [`Log`] of events, a [`DropCounter`] of tokens.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use greenlet::{Error, Greenlet, TraceEvent, Value, settrace};

/// Takes the `T` out of a switch result, failing the test with what arrived instead.
///
/// ```
/// use greenlet::Greenlet;
/// use greenlet_conformance::part1::value_of;
/// let g = Greenlet::new(|x| Ok(x.downcast::<i32>().unwrap() + 1));
/// assert_eq!(value_of::<i32>(g.switch(41)), 42);
/// ```
#[track_caller]
pub fn value_of<T: 'static>(result: Result<Value, Error>) -> T {
    match result {
        Ok(value) => match value.downcast::<T>() {
            Ok(v) => v,
            Err(other) => panic!(
                "expected a value of type {}, got {}",
                std::any::type_name::<T>(),
                other.type_name()
            ),
        },
        Err(error) => panic!("expected a value, got the error {error:?}"),
    }
}

/// For greenlet bodies: passes an error on (so `?` returns it, as a kill needs), and takes
/// the `T` out of a value, failing the test if another type arrived.
///
/// ```
/// use greenlet::Greenlet;
/// use greenlet_conformance::part1::received;
/// let g = Greenlet::new(|_| {
///     let n = received::<i32>(Greenlet::main().switch(()))?; // a kill arrives as Err
///     Ok(n * 2)
/// });
/// g.switch(()).unwrap();
/// assert_eq!(g.switch(21).unwrap().downcast::<i32>().unwrap(), 42);
/// ```
#[track_caller]
pub fn received<T: 'static>(result: Result<Value, Error>) -> Result<T, Error> {
    result.map(|value| value_of::<T>(Ok(value)))
}

/// Switches `value` to the current greenlet's parent, like `getcurrent().parent.switch(v)`.
///
/// Written with care: in `Greenlet::current().parent().unwrap().switch(v)` the temporary
/// handle to the current greenlet lives until the end of the statement, so it would stay
/// on the suspended greenlet's own stack and keep it alive (no kill on drop).
pub fn switch_to_parent<T: 'static>(value: T) -> Result<Value, Error> {
    let parent = Greenlet::current().parent();
    match parent {
        Some(parent) => parent.switch(value),
        None => panic!("switch_to_parent called in a main greenlet"),
    }
}

/// Takes the error out of a switch result, failing the test if a value arrived instead.
#[track_caller]
pub fn error_of(result: Result<Value, Error>) -> Error {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

/// A shared, append-only list of events, cloneable into `'static` greenlet closures.
pub struct Log<T>(Rc<RefCell<Vec<T>>>);

impl<T> Log<T> {
    /// An empty log.
    pub fn new() -> Self {
        Log(Rc::new(RefCell::new(Vec::new())))
    }

    /// Appends an event.
    pub fn push(&self, event: T) {
        self.0.borrow_mut().push(event);
    }

    /// How many events were logged.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl<T: Clone> Log<T> {
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<T> {
        self.0.borrow().clone()
    }
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Log(self.0.clone())
    }
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts how many of its [`Token`]s were dropped.
#[derive(Clone, Default)]
pub struct DropCounter(Rc<Cell<usize>>);

impl DropCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new token; dropping it adds one to the count.
    pub fn token(&self) -> Token {
        Token(self.0.clone())
    }

    /// How many tokens were dropped so far.
    pub fn dropped(&self) -> usize {
        self.0.get()
    }
}

/// A value whose drop is counted by the [`DropCounter`] that made it.
pub struct Token(Rc<Cell<usize>>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// A `(event, origin, target)` triple seen by a [`TraceRecorder`].
pub type TraceRecord = (TraceEvent, Greenlet, Greenlet);

/// Installs a trace hook that records every event, and removes it when dropped (tests may
/// share one thread, as on `wasm32`, so a hook must never outlive its test).
///
/// The records hold greenlet handles: they keep those greenlets alive until the recorder is
/// dropped or [`TraceRecorder::take`] empties it.
pub struct TraceRecorder {
    log: Log<TraceRecord>,
}

impl TraceRecorder {
    /// Starts recording this thread's switches.
    pub fn install() -> Self {
        let log = Log::new();
        let sink = log.clone();
        let previous = settrace(Some(Box::new(move |event, origin, target| {
            sink.push((event, origin.clone(), target.clone()));
            Ok(())
        })));
        assert!(previous.is_none(), "a trace hook was already installed");
        TraceRecorder { log }
    }

    /// The records so far, emptying the log.
    pub fn take(&self) -> Vec<TraceRecord> {
        std::mem::take(&mut *self.log.0.borrow_mut())
    }
}

impl Drop for TraceRecorder {
    fn drop(&mut self) {
        settrace(None);
        // Release the handles outside the hook's log borrow.
        let records = self.take();
        drop(records);
    }
}

/// An error type of our own, to check that exactly this error arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError(pub &'static str);

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test error: {}", self.0)
    }
}

impl std::error::Error for TestError {}

impl TestError {
    /// This error as a greenlet [`Error`], ready to throw or return.
    pub fn err(name: &'static str) -> Error {
        Error::new(TestError(name))
    }
}

/// The [`TestError`] inside `error`, if it is one.
pub fn test_error(error: &Error) -> Option<&'static str> {
    error.downcast_ref::<TestError>().map(|e| e.0)
}

/// Moves a greenlet handle to another thread, as the C ABI lets a raw pointer travel.
///
/// Handles are `!Send`; the core still checks the owner thread on every switch because
/// raw pointers can reach other threads. Tests use this to exercise that check.
pub struct SendHandle(Option<Greenlet>);

// SAFETY: a `SendHandle` only moves one handle, never a clone, from a thread to another,
// and tests hand it over through `JoinHandle::join` (or a channel) so that the two threads
// never touch the greenlet's reference counts at the same time. The receiving thread only
// calls operations that check the owner thread before touching anything else.
unsafe impl Send for SendHandle {}

impl SendHandle {
    /// Wraps `greenlet` for the trip.
    pub fn new(greenlet: Greenlet) -> Self {
        SendHandle(Some(greenlet))
    }

    /// Unwraps the handle on the other side.
    pub fn into_inner(mut self) -> Greenlet {
        match self.0.take() {
            Some(greenlet) => greenlet,
            None => unreachable!("a SendHandle always holds a handle until unwrapped"),
        }
    }
}

/// The payload of the panics the tests raise on purpose (see [`quiet_panic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietPanic(pub &'static str);

/// Panics with a [`QuietPanic`] payload, which the panic hook does not print.
///
/// Tests of panics crossing greenlets panic on purpose, often in loops; with
/// `RUST_BACKTRACE=1` the default hook would print a backtrace for each, which is slow under
/// QEMU and buries real failures. The first call installs a hook that skips `QuietPanic`
/// payloads and hands every other panic to the previous hook, so failing tests still
/// report as usual.
pub fn quiet_panic(message: &'static str) -> ! {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<QuietPanic>().is_none() {
                previous(info);
            }
        }));
    });
    std::panic::panic_any(QuietPanic(message))
}

/// The message of a panic payload: a [`QuietPanic`], a `&str` or a `String`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(QuietPanic(s)) = payload.downcast_ref::<QuietPanic>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<other payload>")
    }
}
