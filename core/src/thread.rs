//! Per-thread greenlet state: the main greenlet, the current one, the value in flight, the
//! stack pool and the hooks.
//!
//! Every thread that uses greenlets gets a serial number. A greenlet records its owner's
//! serial, and every switch, throw and reparenting compares it with the caller's: cheap, and
//! it needs no access to another thread's state. The set of live serials is consulted only
//! on that error path, to tell "wrong thread" from "thread exited".

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use greenlet_backends::stack::{StackPool, install_overflow_handler};
use greenlet_backends::{Context, DefaultContext};

use crate::error::Error;
use crate::greenlet::{Greenlet, Inner, NoRun, State};
use crate::kill::UnraisableHook;
use crate::switch::Delivery;
use crate::trace::Tracer;

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);
static LIVE_THREADS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

/// Whether the thread with this serial number still runs.
pub(crate) fn is_alive(serial: u64) -> bool {
    LIVE_THREADS
        .lock()
        .map(|live| live.contains(&serial))
        .unwrap_or(false)
}

/// The greenlet state of one thread.
pub(crate) struct ThreadState {
    pub(crate) serial: u64,
    pub(crate) main: Greenlet,
    /// The running greenlet; holds a strong handle so it cannot vanish while it runs.
    pub(crate) current: RefCell<Greenlet>,
    /// The greenlet just switched away from, handed over to the resumed side, which drops
    /// it (and so may kill it) once it runs.
    pub(crate) previous: Cell<Option<Greenlet>>,
    /// What the switch in progress delivers.
    pub(crate) delivery: Cell<Option<Delivery>>,
    pub(crate) pool: RefCell<StackPool>,
    pub(crate) tracer: Cell<Option<Tracer>>,
    /// Bumped by every `settrace`, so a tracer that replaced itself is not put back.
    pub(crate) tracer_epoch: Cell<u64>,
    pub(crate) unraisable: Cell<Option<UnraisableHook>>,
}

impl ThreadState {
    fn new() -> Self {
        let serial = NEXT_SERIAL.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut live) = LIVE_THREADS.lock() {
            live.insert(serial);
        }
        install_overflow_handler();
        let inner: Rc<Inner> = Rc::new(Inner {
            state: Cell::new(State::Running),
            parent: RefCell::new(None),
            context: UnsafeCell::new(Some(DefaultContext::thread())),
            owner: serial,
            stack_size: 0,
            name: None,
            locals: RefCell::new(Vec::new()),
            run: NoRun,
        });
        let main = Greenlet { inner };
        ThreadState {
            serial,
            current: RefCell::new(main.clone()),
            main,
            previous: Cell::new(None),
            delivery: Cell::new(None),
            pool: RefCell::new(StackPool::new()),
            tracer: Cell::new(None),
            tracer_epoch: Cell::new(0),
            unraisable: Cell::new(None),
        }
    }

    /// A handle to the running greenlet.
    #[inline]
    pub(crate) fn current(&self) -> Greenlet {
        self.current.borrow().clone()
    }
}

impl Drop for ThreadState {
    fn drop(&mut self) {
        // The thread is exiting on its own stack, so main is current. Its greenlets that are
        // still suspended cannot be resumed any more: dropping their last handle later
        // discards their stacks without running their destructors.
        self.main.inner.state.set(State::Dead);
        if let Ok(mut live) = LIVE_THREADS.lock() {
            live.remove(&self.serial);
        }
    }
}

thread_local! {
    static STATE: ThreadState = ThreadState::new();
}

/// This thread's greenlet state, created on first use; [`Error::ThreadExited`] once it
/// has been torn down (from a later thread-local destructor).
#[inline]
pub(crate) fn state() -> Result<&'static ThreadState, Error> {
    let state = STATE
        .try_with(|state| state as *const ThreadState)
        .map_err(|_| Error::ThreadExited)?;
    // SAFETY: a thread-local lives until this thread's thread-local destructors run, and
    // the reference never leaves the thread (`ThreadState` is `!Send`). Greenlet frames
    // that hold it across a switch are only resumed while the state is alive: after
    // teardown `try_with` fails and nothing switches any more.
    Ok(unsafe { &*state })
}
