//! Handles: the `greenlet_t *` pointers the C API hands out, and the per-thread state of the
//! C layer.
//!
//! A handle is a pointer to a [`Handle`] cell. The memory of a cell is never given back to
//! the allocator: a released cell goes to a global pool, and a cell is only reused once more
//! than [`QUARANTINE`] other cells have been released after it. So every pointer this library
//! ever returned stays a pointer to a `Handle`, and reading its two atomic fields is always
//! defined, from any thread:
//!
//! ```text
//!   magic  LIVE | RELEASED | ORPHANED | VACANT   (atomic: readable from any thread)
//!   owner  id of the owning thread, 0 if none    (atomic: readable from any thread)
//!   refs, index, greenlet                        (plain: touched by the owner thread only)
//! ```
//!
//! Every call first loads `magic` (stale or orphaned handles stop there), then `owner`
//! (handles of other threads stop there), and only then touches the plain fields, so no
//! `Rc` count of a greenlet is ever changed from a thread that does not own it.
//!
//! There is one cell per greenlet at a time (interning): the cell's address is recorded in
//! the greenlet's local storage, so asking twice for the same greenlet gives the same
//! pointer with its reference count raised, and C can compare handles with `==`.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use greenlet_core::Greenlet;

use crate::status::{Failed, Status};

/// `magic` of a cell in use.
const LIVE: u64 = 0x676c_6574_4c49_5645; // "gletLIVE"
/// `magic` of a cell whose last reference was released.
const RELEASED: u64 = 0x676c_6574_4652_4545; // "gletFREE"
/// `magic` of a cell whose owner thread exited while it was still referenced.
const ORPHANED: u64 = 0x676c_6574_4f52_5048; // "gletORPH"
/// `magic` of a cell never used yet.
const VACANT: u64 = 0;

/// How many released cells wait in the pool before the oldest may be reused. While a cell
/// waits, a stale pointer to it is reported as [`Status::ErrStaleHandle`].
pub const QUARANTINE: usize = 1024;

/// A greenlet handle: what a C `greenlet_t *` points to.
///
/// C code never looks inside; Rust code gets one from [`crate::to_handle`]. See the module
/// docs of `handle.rs` for the layout and the rules that make stale and foreign-thread
/// pointers safe to check.
pub struct Handle {
    magic: AtomicU64,
    owner: AtomicU64,
    /// References held by C code (owner thread only).
    refs: UnsafeCell<usize>,
    /// Position in the owner thread's list of live cells (owner thread only).
    index: UnsafeCell<usize>,
    /// The greenlet, `Some` while the cell is live (owner thread only).
    greenlet: UnsafeCell<Option<Greenlet>>,
}

// SAFETY: `magic` and `owner` are atomics. The other fields are read and written only by
// the thread whose id is in `owner` while `magic` is `LIVE` (checked by `ThreadData::cell`),
// or by the one thread that holds the cell outside the pool while making it live (the pool
// hands a cell to one thread at a time, under its mutex, which orders the accesses).
unsafe impl Sync for Handle {}

impl Handle {
    fn vacant() -> Handle {
        Handle {
            magic: AtomicU64::new(VACANT),
            owner: AtomicU64::new(0),
            refs: UnsafeCell::new(0),
            index: UnsafeCell::new(0),
            greenlet: UnsafeCell::new(None),
        }
    }

    /// The greenlet of a cell checked by [`ThreadData::cell`].
    pub(crate) fn greenlet(&self) -> &Greenlet {
        // SAFETY: callers got `self` from `ThreadData::cell`, which checked that the cell is
        // live and owned by the calling thread; only this thread writes the field, and it
        // does not while this borrow is alive (the borrow is cloned from at once).
        match unsafe { &*self.greenlet.get() } {
            Some(greenlet) => greenlet,
            None => unreachable!("a live handle holds its greenlet"),
        }
    }

    /// As a pointer for C.
    pub(crate) fn as_ptr(&'static self) -> *mut Handle {
        (self as *const Handle).cast_mut()
    }
}

/// Recorded in a greenlet's local storage: the cell currently standing for it.
#[derive(Clone, Copy)]
struct HandleRef(&'static Handle);

/// Released cells, oldest first.
static POOL: Mutex<VecDeque<&'static Handle>> = Mutex::new(VecDeque::new());

/// A cell for a new handle: the oldest released one past the quarantine, or a new one.
fn take_cell() -> &'static Handle {
    let reused = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() > QUARANTINE {
            pool.pop_front()
        } else {
            None
        }
    };
    // Cells are leaked on purpose: their memory must stay a `Handle` forever.
    reused.unwrap_or_else(|| Box::leak(Box::new(Handle::vacant())))
}

fn give_cell(cell: &'static Handle) {
    POOL.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push_back(cell);
}

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// The C layer's state of one thread.
pub(crate) struct ThreadData {
    /// Never 0, never reused.
    id: u64,
    /// Set while a C trace hook runs: switching is refused then.
    pub(crate) in_trace: Cell<bool>,
    last_error: RefCell<CString>,
    /// Cells owned by this thread, so that they can be orphaned when it exits.
    live: RefCell<Vec<&'static Handle>>,
    /// Greenlets released inside a trace hook, dropped (and maybe killed) after it returns.
    deferred: RefCell<Vec<Greenlet>>,
    /// Whether `ORPHANER` was touched (so that it runs at thread exit).
    orphaner_armed: Cell<bool>,
}

impl ThreadData {
    fn new() -> ThreadData {
        // The core's thread state first, so that it is torn down after ours.
        let _ = Greenlet::try_current();
        ThreadData {
            orphaner_armed: Cell::new(false),
            id: NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
            in_trace: Cell::new(false),
            last_error: RefCell::new(CString::default()),
            live: RefCell::new(Vec::new()),
            deferred: RefCell::new(Vec::new()),
        }
    }

    /// Checks a pointer from C: not null, not released, not orphaned, owned by this thread.
    ///
    /// # Safety
    ///
    /// `ptr` is null or was returned by this library (any thread, any time before).
    pub(crate) unsafe fn cell(&self, ptr: *const Handle) -> Result<&'static Handle, Failed> {
        // SAFETY: per the contract, a non-null `ptr` points to a cell, and cells are never
        // freed, so the reference is valid for ever; we read only atomics before the owner
        // check.
        let Some(cell) = (unsafe { ptr.as_ref::<'static>() }) else {
            return Err(Failed::new(
                Status::ErrNullArgument,
                "the greenlet handle is NULL",
            ));
        };
        match cell.magic.load(Ordering::Acquire) {
            LIVE => {}
            RELEASED => {
                return Err(Failed::new(
                    Status::ErrStaleHandle,
                    "the greenlet handle was already released",
                ));
            }
            ORPHANED => {
                return Err(Failed::new(
                    Status::ErrThreadExited,
                    "the greenlet belongs to a thread that has exited",
                ));
            }
            _ => {
                return Err(Failed::new(
                    Status::ErrStaleHandle,
                    "the pointer is not a live greenlet handle",
                ));
            }
        }
        if cell.owner.load(Ordering::Relaxed) != self.id {
            return Err(Failed::new(
                Status::ErrWrongThread,
                "the greenlet belongs to another thread",
            ));
        }
        debug_assert!(cell.greenlet().belongs_to_current_thread());
        Ok(cell)
    }

    /// A handle for `greenlet` (of this thread) with one more reference: its existing cell,
    /// or a new one.
    pub(crate) fn intern(&self, greenlet: &Greenlet) -> &'static Handle {
        debug_assert!(greenlet.belongs_to_current_thread());
        if let Some(HandleRef(cell)) = greenlet.local::<HandleRef>() {
            // SAFETY: the greenlet is ours and its recorded cell is live (the record is
            // removed before the cell is released or orphaned), so we own the cell.
            unsafe { *cell.refs.get() += 1 };
            return cell;
        }
        let cell = take_cell();
        let mut live = self.live.borrow_mut();
        // SAFETY: the cell is out of the pool and not live: no other thread reads these
        // fields (readers stop at `magic`, which is not `LIVE`), and we publish them with
        // the release store of `LIVE` below.
        unsafe {
            *cell.greenlet.get() = Some(greenlet.clone());
            *cell.refs.get() = 1;
            *cell.index.get() = live.len();
        }
        cell.owner.store(self.id, Ordering::Relaxed);
        cell.magic.store(LIVE, Ordering::Release);
        live.push(cell);
        drop(live);
        greenlet.set_local(HandleRef(cell));
        cell
    }

    /// One more reference to a checked cell.
    pub(crate) fn retain(&self, cell: &'static Handle) {
        // SAFETY: `cell` was checked by `Self::cell`: live and ours.
        unsafe { *cell.refs.get() += 1 };
    }

    /// One reference less to a checked cell; the last one poisons the cell, returns it to
    /// the pool and drops its greenlet (which kills a suspended greenlet nothing else
    /// holds). Inside a trace hook the drop waits until the hook returns.
    pub(crate) fn release(&self, cell: &'static Handle) {
        // SAFETY: `cell` was checked by `Self::cell`: live and ours.
        let refs = unsafe { &mut *cell.refs.get() };
        *refs -= 1;
        if *refs > 0 {
            return;
        }
        cell.magic.store(RELEASED, Ordering::Release);
        // SAFETY: still ours: no other thread touches these fields, and the cell is not
        // in the pool yet.
        let (greenlet, index) = unsafe { ((*cell.greenlet.get()).take(), *cell.index.get()) };
        if let Some(greenlet) = &greenlet {
            greenlet.take_local::<HandleRef>();
        }
        self.forget_live(index);
        give_cell(cell);
        // From here on the cell may belong to another thread: not touched again.
        if let Some(greenlet) = greenlet {
            if self.in_trace.get() {
                self.deferred.borrow_mut().push(greenlet);
            } else {
                drop(greenlet);
            }
        }
    }

    /// Removes the live cell at `index` from the list, keeping the moved cell's index right.
    fn forget_live(&self, index: usize) {
        let mut live = self.live.borrow_mut();
        live.swap_remove(index);
        if let Some(moved) = live.get(index) {
            // SAFETY: cells in `live` are live and ours.
            unsafe { *moved.index.get() = index };
        }
    }

    /// Drops the greenlets released during a trace hook.
    pub(crate) fn drop_deferred(&self) {
        loop {
            let next = self.deferred.borrow_mut().pop();
            match next {
                // Dropped outside the borrow: it may run a kill, which may call us again.
                Some(greenlet) => drop(greenlet),
                None => break,
            }
        }
    }

    /// Records the message `greenlet_last_error` returns.
    pub(crate) fn set_last_error(&self, message: &str) {
        let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
        *self.last_error.borrow_mut() = message;
    }

    /// The last error message; valid until the next call that records one on this thread.
    pub(crate) fn last_error_ptr(&self) -> *const std::ffi::c_char {
        self.last_error.borrow().as_ptr()
    }

    /// How many cells this thread holds (for tests).
    pub(crate) fn live_count(&self) -> usize {
        self.live.borrow().len()
    }
}

impl ThreadData {
    /// Orphans every cell of this thread and drops their greenlets, killing the suspended
    /// ones. Called while the thread exits, before its `ThreadData` and its core state are
    /// torn down, so the killed greenlets' code can still run (and call the library).
    fn orphan_all(&self) {
        // A kill may run code that makes new handles: go round until none are left.
        for _ in 0..8 {
            let cells = std::mem::take(&mut *self.live.borrow_mut());
            if cells.is_empty() {
                return;
            }
            let greenlets = orphan(cells);
            // Dropped last, outside any borrow: a kill may call back into the library.
            drop(greenlets);
        }
    }
}

/// Marks `cells` orphaned and returns them to the pool; returns their greenlets.
fn orphan(cells: Vec<&'static Handle>) -> Vec<Greenlet> {
    let mut greenlets = Vec::with_capacity(cells.len());
    for cell in cells {
        cell.magic.store(ORPHANED, Ordering::Release);
        // SAFETY: a live cell of the calling thread; after the store above no other thread
        // reads past `magic`.
        if let Some(greenlet) = unsafe { (*cell.greenlet.get()).take() } {
            greenlet.take_local::<HandleRef>();
            greenlets.push(greenlet);
        }
        give_cell(cell);
    }
    greenlets
}

impl Drop for ThreadData {
    /// Normally [`Orphaner`] has orphaned every cell already. If thread-local destructors
    /// ran in an unexpected order, the cells left are orphaned here, but their greenlets
    /// are leaked rather than killed: no code may run against a `ThreadData` being dropped.
    fn drop(&mut self) {
        let cells = std::mem::take(self.live.get_mut());
        orphan(cells).into_iter().for_each(std::mem::forget);
        self.deferred.get_mut().drain(..).for_each(std::mem::forget);
    }
}

/// Orphans the thread's cells when the thread exits. Its thread-local is first touched
/// right after `THREAD` (which itself first initialises the core's state), so it is
/// destroyed before both: thread-local destructors run in reverse order of registration.
struct Orphaner;

impl Drop for Orphaner {
    fn drop(&mut self) {
        let _ = THREAD.try_with(ThreadData::orphan_all);
    }
}

thread_local! {
    static THREAD: ThreadData = ThreadData::new();
    static ORPHANER: Orphaner = const { Orphaner };
}

/// This thread's C-layer state, or [`Status::ErrThreadExited`] once it was torn down.
pub(crate) fn thread_data() -> Result<&'static ThreadData, Failed> {
    let ptr = THREAD
        .try_with(|data| {
            if !data.orphaner_armed.replace(true) {
                // Registers its destructor now, after THREAD's.
                let _ = ORPHANER.try_with(|_| ());
            }
            data as *const ThreadData
        })
        .map_err(|_| {
            Failed::new(
                Status::ErrThreadExited,
                "this thread's greenlet state was already torn down",
            )
        })?;
    // SAFETY: a thread-local lives until the thread's thread-local destructors run, and the
    // reference never leaves this thread (`ThreadData` is `!Sync`); after teardown
    // `try_with` fails and no new reference is made.
    Ok(unsafe { &*ptr })
}
