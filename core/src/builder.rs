//! [`Builder`]: a greenlet with a chosen parent, stack size or name.

use greenlet_backends::stack::{DEFAULT_STACK_SIZE, usable_size_for};

use crate::entry::EntryClosure;
use crate::error::Error;
use crate::fp::{self, OwnFp};
use crate::greenlet::{Fields, Greenlet};
use crate::owner::OwnerAndState;
use crate::shared::Shared;
use crate::thread::{self, ThreadState};
use crate::value::Value;

/// Configures a new greenlet before it is created.
///
/// ```
/// use greenlet::Greenlet;
/// let parent = Greenlet::new(|x| Ok(x));
/// let child = Greenlet::builder()
///     .parent(&parent)
///     .stack_size(512 * 1024)
///     .name("child")
///     .build(|_| Ok("child result"));
/// assert_eq!(child.parent(), Some(parent.clone()));
/// // The child finishes into its unstarted parent, which starts with the child's result.
/// let out = child.switch(()).unwrap();
/// assert_eq!(out.downcast::<&str>().unwrap(), "child result");
/// assert!(parent.is_dead());
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    parent: Option<Greenlet>,
    stack_size: Option<usize>,
    name: Option<Box<str>>,
    own_fp_control: bool,
}

impl Builder {
    /// A builder with the defaults: parent = current greenlet, default stack size, no name.
    ///
    /// ```
    /// let g = greenlet::Builder::new().build(|_| Ok(()));
    /// assert!(!g.is_started());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The parent (default: the greenlet current when [`build`](Self::build) is called).
    ///
    /// ```
    /// use greenlet::{Builder, Greenlet};
    /// let main = Greenlet::main();
    /// assert_eq!(Builder::new().parent(&main).build(|_| Ok(())).parent(), Some(main));
    /// ```
    pub fn parent(mut self, parent: &Greenlet) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Usable stack size in bytes (default: [`DEFAULT_STACK_SIZE`]); rounded up to the stack
    /// pool's size classes. A stack overflow hits a guard page and ends the process with a
    /// message.
    ///
    /// ```
    /// let g = greenlet::Builder::new().stack_size(4 << 20).build(|_| Ok(()));
    /// g.switch(()).unwrap();
    /// ```
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// A name, shown by `Debug`.
    ///
    /// ```
    /// let g = greenlet::Builder::new().name("poller").build(|_| Ok(()));
    /// assert!(format!("{g:?}").contains("\"poller\""));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into().into_boxed_str());
        self
    }

    /// Whether the greenlet keeps a floating-point control state of its own (default:
    /// `false`, it shares the thread's).
    ///
    /// The control state is the rounding mode, the exception masks and flush-to-zero (x86-64:
    /// MXCSR and the x87 control word; AArch64: FPCR; RISC-V: `frm`; nothing on wasm32).
    /// Rust code never changes it, but C code may (`fesetround`). With `true`, the greenlet
    /// starts with the state running when it is built, as a new thread starts with its
    /// creator's; what it changes stays in it, and what the others change does not reach
    /// it. Without, it shares the state of its thread with every other greenlet that does
    /// not keep its own: a change made in one is seen by the others, as on corosensei.
    ///
    /// Once a thread has built one such greenlet, each of its switches reads and compares
    /// the state (a few nanoseconds); before that, switches do not touch it.
    ///
    /// ```
    /// let g = greenlet::Builder::new()
    ///     .own_fp_control(true)
    ///     .build(|_| Ok("C code here may call fesetround"));
    /// g.switch(()).unwrap();
    /// ```
    pub fn own_fp_control(mut self, own: bool) -> Self {
        self.own_fp_control = own;
        self
    }

    /// Creates the greenlet. See [`Greenlet::new`] for what `run` receives and returns.
    ///
    /// # Panics
    ///
    /// Only if called from a thread-local destructor after this thread's greenlet state was
    /// torn down; [`try_build`](Self::try_build) returns an error instead.
    ///
    /// ```
    /// let g = greenlet::Builder::new().build(|x| Ok(x));
    /// assert!(g.switch(1).unwrap().is::<i32>());
    /// ```
    pub fn build<F, R>(self, run: F) -> Greenlet
    where
        F: FnOnce(Value) -> Result<R, Error> + 'static,
        R: 'static,
    {
        self.try_build(run)
            .expect("greenlet state of this thread was already torn down")
    }

    /// Creates the greenlet, or fails with [`Error::ThreadExited`] during thread teardown,
    /// or [`Error::WrongThread`] if the chosen parent belongs to another thread.
    ///
    /// ```
    /// assert!(greenlet::Builder::new().try_build(|_| Ok(())).is_ok());
    /// ```
    pub fn try_build<F, R>(self, run: F) -> Result<Greenlet, Error>
    where
        F: FnOnce(Value) -> Result<R, Error> + 'static,
        R: 'static,
    {
        let ts = thread::state()?;
        let parent = match self.parent {
            Some(parent) => {
                parent.check_owner(ts)?;
                parent
            }
            None => ts.current(),
        };
        // As the stack will have it, so that a stack kept from a greenlet that asked for
        // another size of the same class is taken as it is (see `switch::restart_kept`).
        let stack_size = self.stack_size.map_or(DEFAULT_STACK_SIZE, usable_size_for);
        let own_fp = fp::for_new_greenlet(ts, self.own_fp_control);
        Ok(create(ts, parent, stack_size, self.name, own_fp, run))
    }
}

/// A new unstarted greenlet of this thread, whose `parent` belongs to this thread too.
#[inline(always)]
pub(crate) fn create<F, R>(
    ts: &ThreadState,
    parent: Greenlet,
    stack_size: usize,
    name: Option<Box<str>>,
    own_fp: OwnFp,
    run: F,
) -> Greenlet
where
    F: FnOnce(Value) -> Result<R, Error> + 'static,
    R: 'static,
{
    debug_assert_eq!(
        ts.keys.unstarted,
        OwnerAndState::key(ts.serial, crate::greenlet::State::Unstarted)
    );
    let inner = Shared::new(Some(&ts.blocks), || {
        Fields::new(
            OwnerAndState::with_key(ts.keys.unstarted),
            Some(parent),
            stack_size,
            EntryClosure::new(run),
            name,
            own_fp,
        )
    });
    Greenlet { inner }
}
