//! The [`Greenlet`] handle, its shared state, and its state queries.

use std::any::{Any, TypeId};
use std::cell::{Cell, OnceCell, RefCell, UnsafeCell};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::ptr;

use greenlet_backends::stack::DEFAULT_STACK_SIZE;
use greenlet_backends::{Context, DefaultContext};

use crate::builder::{self, Builder};
use crate::entry::EntryClosure;
use crate::error::Error;
use crate::fp::OwnFp;
use crate::owner::OwnerAndState;
use crate::shared::Shared;
use crate::switch::{self, Delivery};
use crate::thread::{self, ThreadState};
use crate::value::Value;

/// Where a greenlet is in its life.
///
/// ```
/// use greenlet::{Greenlet, State};
/// let g = Greenlet::new(|_| Ok(()));
/// assert_eq!(g.state(), State::Unstarted);
/// g.switch(()).unwrap();
/// assert_eq!(g.state(), State::Dead);
/// assert_eq!(Greenlet::current().state(), State::Running);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Created, never switched to ("pending" in greenlet's words).
    Unstarted,
    /// Running now: the thread's current greenlet.
    Running,
    /// Started, switched away from, not finished.
    Suspended,
    /// Finished; its stack is released.
    Dead,
}

/// A greenlet's local values, one per type.
pub(crate) type Locals = Vec<(TypeId, Box<dyn Any>)>;

/// The state shared by all handles of one greenlet. It has a fixed size (see
/// [`EntryClosure`]), so a handle is one pointer and every field sits at a constant offset.
///
/// `repr(C)` with the context first: a handle, the state and the context then share one
/// address (see [`crate::shared`]), and a switch passes the backend the pointers it holds
/// as they are, with no offsets to add (four instructions per switch). The rest, made anew
/// for each greenlet, is [`Fields`], which `Inner` dereferences to: the context may stay
/// from the allocation's last greenlet, and making a greenlet writes the rest alone.
#[repr(C)]
pub(crate) struct Inner {
    /// The backend context: the thread's for a main greenlet; before the first start,
    /// none ([`no_context`]) or the exited context of a greenlet that had this state's
    /// allocation before (see [`crate::shared`]), whose stack the start may reuse; after
    /// death, the exited context until the thread takes the stack back (see
    /// [`ThreadState::record_finished`](crate::thread::ThreadState::record_finished)), or
    /// until the allocation goes to the next greenlet.
    pub(crate) context: UnsafeCell<DefaultContext>,
    pub(crate) fields: Fields,
}

/// A greenlet's state but its context (see [`Inner`]). The fields go by alignment,
/// largest first.
#[repr(C)]
pub(crate) struct Fields {
    /// `None` only for a main greenlet. A `Cell`: read through [`Inner::parent`], which
    /// clones the handle without any borrow flag to check.
    pub(crate) parent: Cell<Option<Greenlet>>,
    pub(crate) stack_size: usize,
    pub(crate) run: EntryClosure,
    /// The serial number of the owning thread (see [`crate::thread`]) and the stored state:
    /// `Unstarted`, `Suspended` or `Dead`, never `Running`. A started greenlet that is not
    /// dead is stored as `Suspended`, and is running exactly when it is its thread's current
    /// greenlet (see [`Greenlet::state`]): so a switch stores no state at all (two byte
    /// stores per switch, each read back by the other side soon after, cost more than
    /// the rest of the greenlet layer's work).
    pub(crate) owner_and_state: OwnerAndState,
    /// What few greenlets have, made when first needed: one word (empty) to write when
    /// a greenlet is made and to test when it is freed.
    extras: OnceCell<Box<Extras>>,
}

/// The parts of a greenlet's state that few greenlets have (see [`Fields::extras`]).
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) name: Option<Box<str>>,
    /// Greenlet-local values by type (see [`crate::locals`]).
    pub(crate) locals: RefCell<Locals>,
    /// Its own floating-point control state, if it keeps one (see [`crate::fp`]).
    pub(crate) own_fp: OwnFp,
}

impl Extras {
    /// The extras of a new greenlet that has a name or its own floating-point state: out
    /// of line, so that making a greenlet without either stays small enough to expand.
    #[cold]
    #[inline(never)]
    fn made(name: Option<Box<str>>, own_fp: OwnFp) -> OnceCell<Box<Extras>> {
        OnceCell::from(Box::new(Extras {
            name,
            locals: RefCell::default(),
            own_fp,
        }))
    }
}

impl Fields {
    /// Whether this is a main greenlet, the one of its thread's own stack: the only kind
    /// without a parent. (Only cold paths ask; a flag of its own cost a store for every
    /// greenlet made.)
    #[inline]
    pub(crate) fn is_main(&self) -> bool {
        // SAFETY: a `Cell` hands out no references, and only this thread reaches it. The
        // parent is only ever out of its cell while no user code runs (see
        // `Inner::parent`), and for good once the state is being dropped.
        unsafe { (*self.parent.as_ptr()).is_none() }
    }

    /// The fields of a new greenlet: `name` and `own_fp` make its [`Extras`] only if
    /// either is there.
    #[inline(always)]
    pub(crate) fn new(
        owner_and_state: OwnerAndState,
        parent: Option<Greenlet>,
        stack_size: usize,
        run: EntryClosure,
        name: Option<Box<str>>,
        own_fp: OwnFp,
    ) -> Fields {
        let extras = if name.is_none() && own_fp.get().is_none() {
            OnceCell::new()
        } else {
            Extras::made(name, own_fp)
        };
        Fields {
            parent: Cell::new(parent),
            stack_size,
            run,
            owner_and_state,
            extras,
        }
    }

    /// The greenlet's [`Extras`], if it has any.
    #[inline]
    pub(crate) fn extras(&self) -> Option<&Extras> {
        self.extras.get().map(|extras| &**extras)
    }

    /// The greenlet's [`Extras`], made now if it has none.
    pub(crate) fn extras_or_new(&self) -> &Extras {
        self.extras.get_or_init(Box::default)
    }

    /// Its own floating-point control state, if it keeps one.
    #[inline]
    pub(crate) fn own_fp(&self) -> Option<&OwnFp> {
        self.extras()
            .map(|extras| &extras.own_fp)
            .filter(|own| own.get().is_some())
    }
}

impl Deref for Inner {
    type Target = Fields;

    #[inline(always)]
    fn deref(&self) -> &Fields {
        &self.fields
    }
}

/// What a context slot holds when its greenlet has no context of its own (not started
/// yet on a stack of its own, or its stack taken back): a context of the thread's kind,
/// without a stack, which nothing switches to ([`Context::stack_size`] says 0). (An
/// `Option` cost the usual start a test more: see `switch::restart_kept`.)
#[inline]
pub(crate) fn no_context() -> DefaultContext {
    DefaultContext::thread()
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A context still here belongs to a main greenlet, to a suspended greenlet that
        // could not be killed because its thread has exited, or to a finished greenlet
        // whose stack its thread had not taken back yet: its frames are discarded without
        // running destructors, and its stack goes back to the global pool.
        let context = std::mem::replace(self.context.get_mut(), no_context());
        // SAFETY: nothing runs on a greenlet that has no handle left.
        drop(unsafe { context.into_stack() });
        // The parent first, then the extras (the locals), then (the fields' own drop) an
        // uncalled closure: the order the state's parts have always been dropped in, which
        // the conformance suite's random model checks.
        drop(self.fields.parent.take());
        drop(self.fields.extras.take());
    }
}

/// The fields of [`Fields`] without drop glue, which [`Inner::take_parent_of_bare`]
/// leaves.
const _: () = assert!(!std::mem::needs_drop::<OwnerAndState>() && !std::mem::needs_drop::<usize>());

impl Inner {
    /// Whether the state at `this`, being freed, holds nothing to drop but its parent
    /// (and its context, which stays: see [`crate::shared`]): no extras, and the closure
    /// gone. The usual finished greenlet; see [`Inner::take_parent_of_bare`].
    ///
    /// # Safety
    ///
    /// `this` is a live state.
    #[inline(always)]
    pub(crate) unsafe fn is_bare(this: *const Inner) -> bool {
        // SAFETY: the caller's contract.
        let fields = unsafe { &(*this).fields };
        fields.extras.get().is_none() && fields.run.is_empty()
    }

    /// Moves the parent handle out of the bare state at `this` (see [`Inner::is_bare`]):
    /// dropping it is all that dropping the state, but for its context, has to do.
    /// Moved out bitwise, leaving the field stale: the state is not used again but for its
    /// context slot.
    ///
    /// # Safety
    ///
    /// `this` is a live, bare state that nothing uses any more, and is not used again but
    /// for its context slot. Its context is none or has exited.
    #[inline(always)]
    pub(crate) unsafe fn take_parent_of_bare(this: *const Inner) -> Option<Greenlet> {
        // Every field named, so that a new one cannot be missed here.
        // SAFETY: the caller's contract: the state is alive and nobody else reaches it.
        let Inner {
            context: _,
            fields:
                Fields {
                    owner_and_state: _,
                    parent,
                    stack_size: _,
                    extras: _,
                    run: _,
                },
        } = unsafe { &*this };
        // SAFETY: the caller's contract: the state is alive.
        debug_assert!(unsafe { Inner::is_bare(this) });
        // SAFETY: the caller's contract: the field is read once and never again (the other
        // fields are empty or have no drop glue).
        unsafe { parent.as_ptr().read() }
    }

    /// Drops the state at `this` in place, all but its context, which stays in the slot
    /// (for the allocation's next state, see [`crate::shared`]): for a state that is not
    /// bare (see [`Inner::is_bare`]).
    ///
    /// # Safety
    ///
    /// As for `ptr::drop_in_place`: `this` is a live state that nothing uses any more, and
    /// it is not used again but for its context slot. Its context is none or has exited.
    pub(crate) unsafe fn drop_in_place_but_context(this: *mut Inner) {
        // SAFETY: the caller's contract; the context is moved out first, so that the drop
        // glue finds none, and back after.
        unsafe {
            let kept = (*this).context.get().replace(no_context());
            std::ptr::drop_in_place(this);
            (&raw mut (*this).context).write(UnsafeCell::new(kept));
        }
    }

    /// Whether this greenlet is its thread's current one, given that it has started and
    /// not finished (the state stored for it is `Suspended`).
    pub(crate) fn is_running(&self) -> bool {
        // Another thread's current greenlet is never ours: a greenlet only runs in the
        // thread that owns it. After the thread state is gone nothing runs.
        thread::state().is_ok_and(|ts| ptr::eq(ts.current_address(), self))
    }

    /// The backend context. Only called on greenlets that have one: started and not dead,
    /// or main.
    #[inline]
    pub(crate) fn context_ptr(&self) -> *mut DefaultContext {
        // SAFETY: the context lives inside the greenlet's state allocation, which does not
        // move; we only form a raw pointer, never a reference that could alias. The slot
        // holds a context from `switch::prepare` (or the thread state's creation, for a
        // main greenlet) until the greenlet's death: every caller switches from the running
        // greenlet or to a suspended or prepared one, whose slot is full.
        let slot = self.context.get();
        debug_assert!(
            // SAFETY: as above; a read of the context's fields, which nothing writes
            // meanwhile.
            unsafe { (*slot).stack_size() } != 0 || self.is_main(),
            "greenlet: a greenlet without a context"
        );
        slot
    }

    /// A new handle to the parent (`None` for a main greenlet).
    #[inline]
    pub(crate) fn parent(&self) -> Option<Greenlet> {
        // Moved out and back: cloning a handle runs none of the user's code, so nothing
        // can see the cell empty in between.
        let parent = self.parent.take();
        let handle = parent.clone();
        // What is replaced is the `None` left by `take`: nothing to drop.
        std::mem::forget(self.parent.replace(parent));
        handle
    }
}

/// A handle to a greenlet: a function running on its own stack that can be switched to
/// and from.
///
/// Handles are cheap to clone and compare by identity. They are `!Send`: a greenlet belongs
/// to the thread that created it. When the last handle of a *suspended* greenlet is dropped,
/// the greenlet is killed: a [`GreenletExit`](crate::GreenletExit) is delivered at its
/// pending switch so that it can return and run its destructors.
///
/// ```
/// use greenlet::Greenlet;
/// let echo = Greenlet::new(|first| -> Result<(), greenlet::Error> {
///     let mut got = first;
///     loop {
///         // Send back what we got and wait for the next value.
///         got = Greenlet::main().switch(got)?;
///     }
/// });
/// assert_eq!(echo.switch(1).unwrap().downcast::<i32>().unwrap(), 1);
/// assert_eq!(echo.switch("two").unwrap().downcast::<&str>().unwrap(), "two");
/// ```
#[derive(Clone)]
pub struct Greenlet {
    pub(crate) inner: Shared,
}

impl Greenlet {
    /// A new greenlet that will run `run` when first switched to, with the current greenlet
    /// as its parent.
    ///
    /// `run` receives the value of the first switch. What it returns goes to its parent: an
    /// `Ok` value as the result of the parent's pending switch, an `Err` as its error (an
    /// [`Error::Exit`] becomes an ordinary value). Nothing runs, and no stack is taken,
    /// until the first switch.
    ///
    /// # Panics
    ///
    /// Only if called from a thread-local destructor after this thread's greenlet state
    /// was torn down; see [`Builder::try_build`].
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let g = Greenlet::new(|x| Ok(x.downcast::<i32>().unwrap() * 2));
    /// assert_eq!(g.switch(21).unwrap().downcast::<i32>().unwrap(), 42);
    /// ```
    #[inline(always)]
    pub fn new<F, R>(run: F) -> Greenlet
    where
        F: FnOnce(Value) -> Result<R, Error> + 'static,
        R: 'static,
    {
        // What `Builder::new().build(run)` does, without the builder's options.
        let ts = thread::state().expect("greenlet state of this thread was already torn down");
        let own_fp = Cell::new(None);
        builder::create(ts, ts.current(), DEFAULT_STACK_SIZE, None, own_fp, run)
    }

    /// A builder to choose the parent, stack size and name of a new greenlet.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let g = Greenlet::builder().stack_size(1 << 20).name("worker").build(|_| Ok(()));
    /// assert_eq!(g.name(), Some("worker"));
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The greenlet running now in this thread.
    ///
    /// A handle to a greenlet kept on its own stack while it is suspended keeps it alive:
    /// dropping its other handles then does not kill it. Mind temporaries, which live to
    /// the end of their statement: `Greenlet::current().parent().unwrap().switch(v)` holds
    /// a handle to the current greenlet during the switch. Use
    /// [`Greenlet::switch_to_parent`] for that.
    ///
    /// # Panics
    ///
    /// Only if called from a thread-local destructor after this thread's greenlet state was
    /// torn down; [`Greenlet::try_current`] returns an error instead.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// assert!(Greenlet::current().is_main());
    /// let g = Greenlet::new(|_| Ok(Greenlet::current()));
    /// let inside = g.switch(()).unwrap().downcast::<Greenlet>().unwrap();
    /// assert_eq!(inside, g);
    /// ```
    pub fn current() -> Greenlet {
        Self::try_current().expect("greenlet state of this thread was already torn down")
    }

    /// The greenlet running now, or [`Error::ThreadExited`] during thread teardown.
    ///
    /// ```
    /// assert!(greenlet::Greenlet::try_current().unwrap().is_main());
    /// ```
    pub fn try_current() -> Result<Greenlet, Error> {
        Ok(thread::state()?.current())
    }

    /// The main greenlet of this thread: the one running the thread's own stack.
    ///
    /// # Panics
    ///
    /// As for [`Greenlet::current`].
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let main = Greenlet::main();
    /// assert!(main.is_main() && main.parent().is_none());
    /// ```
    pub fn main() -> Greenlet {
        thread::state()
            .map(|ts| ts.main.clone())
            .expect("greenlet state of this thread was already torn down")
    }

    /// Switches to this greenlet, handing it `value`; returns what is later switched back.
    ///
    /// If this greenlet is unstarted, it starts with `value` as its argument. If it is
    /// dead, the value goes to its nearest live ancestor. If it is the current greenlet,
    /// `value` comes straight back. The result is `Err` if an error is thrown at us while
    /// we wait, or if a greenlet whose parent we are dies of an error.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let g = Greenlet::new(|x| {
    ///     let y = Greenlet::main().switch(x.downcast::<i32>().unwrap() + 1)?;
    ///     Ok(y.downcast::<i32>().unwrap() + 1)
    /// });
    /// assert_eq!(g.switch(1).unwrap().downcast::<i32>().unwrap(), 2);
    /// assert_eq!(g.switch(10).unwrap().downcast::<i32>().unwrap(), 11);
    /// assert!(g.is_dead());
    /// ```
    pub fn switch<T: 'static>(&self, value: T) -> Result<Value, Error> {
        switch::transfer(self, Value::new(value))
    }

    /// Switches from the current greenlet to its parent, handing it `value`; returns what
    /// is later switched back. On a main greenlet (which has no parent) the value comes
    /// straight back, as a switch to oneself does.
    ///
    /// Unlike `Greenlet::current().parent().unwrap().switch(value)`, this keeps no handle
    /// to the current greenlet while it is suspended, so dropping its last handle
    /// elsewhere still kills it.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let child = Greenlet::new(|x| {
    ///     let reply = Greenlet::switch_to_parent(x)?; // to main, which created us
    ///     Ok(reply)
    /// });
    /// assert_eq!(child.switch(1).unwrap().downcast::<i32>().unwrap(), 1);
    /// assert_eq!(child.switch(2).unwrap().downcast::<i32>().unwrap(), 2);
    /// assert!(child.is_dead());
    /// ```
    pub fn switch_to_parent<T: 'static>(value: T) -> Result<Value, Error> {
        let target = {
            let ts = thread::state()?;
            let parent = ts.current_inner().parent();
            parent.unwrap_or_else(|| ts.current())
        };
        switch::transfer_owned(target, Value::new(value))
    }

    /// Raises `error` in this greenlet: its pending switch returns `Err(error)`.
    ///
    /// An unstarted greenlet dies without running; a dead one forwards the error to its
    /// nearest live ancestor; throwing into the current greenlet returns `Err(error)` at
    /// once. The result is what comes back, as for [`Greenlet::switch`].
    ///
    /// ```
    /// use greenlet::{Error, Greenlet};
    /// let g = Greenlet::new(|_| {
    ///     match Greenlet::main().switch(()) {
    ///         Err(e) => Ok(format!("caught: {e}")),
    ///         Ok(_) => Ok(String::from("no error")),
    ///     }
    /// });
    /// g.switch(()).unwrap();
    /// let out = g.throw(Error::msg("stop")).unwrap();
    /// assert_eq!(out.downcast::<String>().unwrap(), "caught: stop");
    /// ```
    pub fn throw(&self, error: Error) -> Result<Value, Error> {
        switch::transfer(self, Delivery::Error(error))
    }

    /// Throws a [`GreenletExit`](crate::GreenletExit) into this greenlet, asking it to
    /// finish. A greenlet that returns it dies quietly and the `GreenletExit` comes back as
    /// the result value.
    ///
    /// ```
    /// use greenlet::{Greenlet, GreenletExit};
    /// let g = Greenlet::new(|_| Ok(()));
    /// let out = g.kill().unwrap(); // never started: dies without running
    /// assert!(out.is::<GreenletExit>() && g.is_dead());
    /// ```
    pub fn kill(&self) -> Result<Value, Error> {
        self.throw(Error::Exit(Default::default()))
    }

    /// The parent: where control goes when this greenlet finishes. `None` for a main
    /// greenlet.
    ///
    /// ```
    /// use greenlet::Greenlet;
    /// let g = Greenlet::new(|_| Ok(()));
    /// assert_eq!(g.parent(), Some(Greenlet::main()));
    /// ```
    pub fn parent(&self) -> Option<Greenlet> {
        self.inner.parent()
    }

    /// Changes the parent. Allowed in every state; refused for a main greenlet, for a
    /// parent of another thread, and for a parent that would make the chain a cycle.
    ///
    /// ```
    /// use greenlet::{Error, Greenlet};
    /// let a = Greenlet::new(|_| Ok(()));
    /// let b = Greenlet::new(|_| Ok(()));
    /// b.set_parent(&a).unwrap();
    /// assert!(matches!(a.set_parent(&b), Err(Error::CyclicParent)));
    /// assert!(matches!(Greenlet::main().set_parent(&a), Err(Error::CannotReparentMain)));
    /// ```
    pub fn set_parent(&self, parent: &Greenlet) -> Result<(), Error> {
        let ts = thread::state()?;
        self.check_owner(ts)?;
        parent.check_owner(ts)?;
        if self.is_main() {
            return Err(Error::CannotReparentMain);
        }
        let mut ancestor = Some(parent.clone());
        while let Some(a) = ancestor {
            if a == *self {
                return Err(Error::CyclicParent);
            }
            ancestor = a.parent();
        }
        let old = self.inner.parent.replace(Some(parent.clone()));
        // Dropped once the new parent is in place: dropping the old one may run code.
        drop(old);
        Ok(())
    }

    /// The current state.
    ///
    /// ```
    /// use greenlet::{Greenlet, State};
    /// assert_eq!(Greenlet::main().state(), State::Running);
    /// ```
    #[inline]
    pub fn state(&self) -> State {
        match self.inner.owner_and_state.state() {
            State::Suspended if self.inner.is_running() => State::Running,
            stored => stored,
        }
    }

    /// Started and not finished: running or suspended (greenlet's `bool(g)`).
    ///
    /// ```
    /// let g = greenlet::Greenlet::new(|_| Ok(()));
    /// assert!(!g.is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        matches!(self.state(), State::Running | State::Suspended)
    }

    /// Ever switched to (running, suspended or dead).
    ///
    /// ```
    /// let g = greenlet::Greenlet::new(|_| Ok(()));
    /// assert!(!g.is_started());
    /// g.switch(()).unwrap();
    /// assert!(g.is_started());
    /// ```
    pub fn is_started(&self) -> bool {
        self.state() != State::Unstarted
    }

    /// Finished.
    ///
    /// ```
    /// let g = greenlet::Greenlet::new(|_| Ok(()));
    /// g.switch(()).unwrap();
    /// assert!(g.is_dead());
    /// ```
    #[inline]
    pub fn is_dead(&self) -> bool {
        self.state() == State::Dead
    }

    /// The greenlet running now in this thread.
    ///
    /// ```
    /// assert!(greenlet::Greenlet::main().is_current());
    /// ```
    pub fn is_current(&self) -> bool {
        self.state() == State::Running
    }

    /// A main greenlet: the one of its thread's own stack.
    ///
    /// ```
    /// assert!(!greenlet::Greenlet::new(|_| Ok(())).is_main());
    /// ```
    #[inline]
    pub fn is_main(&self) -> bool {
        self.inner.is_main()
    }

    /// The name given with [`Builder::name`], if any.
    ///
    /// ```
    /// assert_eq!(greenlet::Greenlet::new(|_| Ok(())).name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.inner.extras()?.name.as_deref()
    }

    /// Whether this greenlet belongs to the calling thread. Reading it touches no shared
    /// counter, so it is safe to ask from any thread through a raw pointer (the C ABI does).
    ///
    /// ```
    /// assert!(greenlet::Greenlet::main().belongs_to_current_thread());
    /// ```
    pub fn belongs_to_current_thread(&self) -> bool {
        thread::state().is_ok_and(|ts| ts.serial == self.inner.owner_and_state.owner())
    }

    /// Fails with [`Error::WrongThread`] or [`Error::ThreadExited`] unless this greenlet
    /// belongs to the thread of `ts`.
    #[inline]
    pub(crate) fn check_owner(&self, ts: &ThreadState) -> Result<(), Error> {
        let owner = self.inner.owner_and_state.owner();
        if owner == ts.serial {
            Ok(())
        } else if thread::is_alive(owner) {
            Err(Error::WrongThread)
        } else {
            Err(Error::ThreadExited)
        }
    }

    /// The backend context. Only called on greenlets that have one (see
    /// [`Inner::context_ptr`]).
    #[inline]
    pub(crate) fn context_ptr(&self) -> *mut DefaultContext {
        self.inner.context_ptr()
    }
}

impl PartialEq for Greenlet {
    fn eq(&self, other: &Self) -> bool {
        Shared::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Greenlet {}

impl Hash for Greenlet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (Shared::as_ptr(&self.inner) as *const () as usize).hash(state)
    }
}

impl fmt::Debug for Greenlet {
    /// Uses greenlet's state words: `pending`, `current`, `suspended`, `active`,
    /// `started`, `main`, `dead`, and `(thread exited)` for a greenlet whose thread is gone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<greenlet {:p}",
            Shared::as_ptr(&self.inner) as *const ()
        )?;
        if let Some(name) = self.name() {
            write!(f, " {name:?}")?;
        }
        // Catalog items 65 and 69: such a greenlet can never run again, which its last
        // recorded state does not tell. (Only formatting pays for the lookup.)
        if !thread::is_alive(self.inner.owner_and_state.owner()) {
            f.write_str(" (thread exited)")?;
        }
        let words = match self.state() {
            State::Unstarted => " pending",
            State::Running => " current active started",
            State::Suspended => " suspended active started",
            State::Dead => " dead",
        };
        f.write_str(words)?;
        if self.is_main() {
            f.write_str(" main")?;
        }
        f.write_str(">")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `greenlet`'s state has its [`Extras`] made.
    fn has_extras(greenlet: &Greenlet) -> bool {
        greenlet.inner.extras().is_some()
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn extras_are_made_only_for_a_name_an_own_fp_state_or_a_local() {
        let plain = Greenlet::new(|_| Ok(()));
        assert!(!has_extras(&plain));
        // Reading locals that are not there makes nothing.
        assert_eq!(plain.local::<u8>(), None);
        assert!(!plain.has_local::<u8>());
        assert_eq!(plain.take_local::<u8>(), None);
        assert!(!has_extras(&plain) && plain.name().is_none());
        // The first local makes them, and they stay once it is gone.
        plain.set_local(7_u8);
        assert!(has_extras(&plain) && plain.has_local::<u8>());
        assert_eq!(plain.take_local::<u8>(), Some(7));
        assert!(has_extras(&plain));
        let named = Greenlet::builder().name("named").build(|_| Ok(()));
        assert!(has_extras(&named));
        assert_eq!(named.name(), Some("named"));
        assert!(named.inner.own_fp().is_none());
        assert!(!named.is_main() && Greenlet::main().is_main());
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks in assembly")]
    fn a_state_with_extras_is_freed_whole_and_its_allocation_reused() {
        use std::rc::Rc;
        let local = Rc::new(());
        let g = Greenlet::builder().name("with extras").build(|_| Ok(()));
        g.set_local(Rc::clone(&local));
        g.switch(()).unwrap();
        let address = Shared::as_ptr(&g.inner);
        drop(g);
        // The locals went with the state (the full drop, not the usual one).
        assert_eq!(Rc::strong_count(&local), 1);
        let next = Greenlet::new(|_| Ok(1));
        if !greenlet_backends::stack::running_on_valgrind() {
            assert!(ptr::eq(Shared::as_ptr(&next.inner), address));
        }
        // Made without extras, whatever the allocation held before.
        assert!(!has_extras(&next) && next.name().is_none());
        assert_eq!(next.switch(()).unwrap().downcast::<i32>().unwrap(), 1);
    }
}
