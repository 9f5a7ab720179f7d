//! Benchmarks of greenlet-rs against its peers, and the pieces the bench targets share.
//!
//! `cargo bench -p greenlet-benches` runs the criterion benches (`benches/*.rs`);
//! `cargo xtask bench` runs them with short settings, together with the memory probe
//! (`src/bin/memprobe.rs`, one subprocess per row) and the Python greenlet script
//! (`python/greenlet_bench.py`), and prints one table with ours/peer ratios.
//!
//! For profiling, `src/bin/hotloop.rs` runs each timed operation as a plain loop (for perf
//! and callgrind), and `src/bin/layer_costs.rs` times the steps of a greenlet switch one at a
//! time on top of the raw backend switch.
//!
//! The criterion group and bench names here are what `cargo xtask bench` reads back from
//! `target/criterion/<group>/<bench>/new/estimates.json`: change them in both places.

use std::cell::UnsafeCell;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use greenlet_backends::Context;
use greenlet_backends::stack::GuardedStack;

/// Criterion group of the round-trip switch rows (A→B→A).
pub const ROUND_TRIP_GROUP: &str = "round_trip";
/// Criterion group of the create + run to completion + drop rows.
pub const CREATE_GROUP: &str = "create_run_drop";

/// Two contexts of one backend that switch back and forth: the raw cost of a backend's
/// `switch`, with no greenlet semantics on top.
///
/// The child doubles nothing and keeps nothing: it hands back whatever it receives.
///
/// ```
/// use greenlet_backends::DefaultContext;
/// let mut pair = greenlet_benches::RawPair::<DefaultContext>::new();
/// assert_eq!(pair.round_trip(7), 7);
/// ```
pub struct RawPair<C: Context> {
    contexts: Box<Contexts<C>>,
}

struct Contexts<C> {
    main: UnsafeCell<C>,
    child: UnsafeCell<C>,
}

/// The child of a [`RawPair`]: echoes every value back to main, forever.
unsafe extern "C" fn echo<C: Context>(value: usize, data: *mut ()) -> ! {
    // SAFETY: `data` is the boxed `Contexts` of the pair, which outlives the child (the
    // child is never resumed after the pair is dropped).
    let contexts = unsafe { &*(data as *const Contexts<C>) };
    let mut value = value;
    loop {
        // SAFETY: the child is running; main is suspended in its own `switch`.
        value = unsafe { C::switch(contexts.child.get(), contexts.main.get(), value) };
    }
}

impl<C: Context> RawPair<C> {
    /// A pair on a fresh 64 KiB stack, the child started and suspended.
    ///
    /// # Panics
    ///
    /// If no stack can be had.
    pub fn new() -> Self {
        let stack = GuardedStack::new(64 * 1024).expect("a 64 KiB stack for the bench");
        let contexts = Box::new(Contexts {
            main: UnsafeCell::new(C::thread()),
            child: UnsafeCell::new(C::new(stack, echo::<C>, std::ptr::null_mut())),
        });
        let data = &*contexts as *const Contexts<C> as *mut ();
        // SAFETY: the child has not been resumed.
        unsafe { (*contexts.child.get()).set_data(data) };
        let mut pair = RawPair { contexts };
        // Start the child, so that it is suspended in its `switch` whatever happens next.
        pair.round_trip(0);
        pair
    }

    /// Switches to the child and back; returns what the child handed back (`value`).
    #[inline]
    pub fn round_trip(&mut self, value: usize) -> usize {
        // SAFETY: we run on main; the child is new or suspended in its `switch`; both
        // contexts live in a box that does not move.
        unsafe { C::switch(self.contexts.main.get(), self.contexts.child.get(), value) }
    }
}

impl<C: Context> Default for RawPair<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Context> Drop for RawPair<C> {
    fn drop(&mut self) {
        // The child is suspended forever; take its stack back without running it.
        let child = std::mem::replace(self.contexts.child.get_mut(), C::thread());
        // SAFETY: the child is not running (we are, on main).
        drop(unsafe { child.into_stack() });
    }
}

/// A thread that answers every message at once: one OS-thread round trip per
/// [`ThreadPingPong::round_trip`], for scale.
///
/// ```
/// let mut pp = greenlet_benches::ThreadPingPong::new();
/// assert_eq!(pp.round_trip(3), 3);
/// ```
pub struct ThreadPingPong {
    to_peer: Option<mpsc::SyncSender<usize>>,
    from_peer: mpsc::Receiver<usize>,
    peer: Option<thread::JoinHandle<()>>,
}

impl ThreadPingPong {
    /// Starts the answering thread.
    pub fn new() -> Self {
        let (to_peer, peer_in) = mpsc::sync_channel::<usize>(1);
        let (peer_out, from_peer) = mpsc::sync_channel::<usize>(1);
        let peer = thread::spawn(move || {
            while let Ok(v) = peer_in.recv() {
                if peer_out.send(v).is_err() {
                    break;
                }
            }
        });
        ThreadPingPong {
            to_peer: Some(to_peer),
            from_peer,
            peer: Some(peer),
        }
    }

    /// Sends `value` to the other thread and waits for it to come back.
    ///
    /// # Panics
    ///
    /// If the other thread is gone (it only leaves when this value is dropped).
    pub fn round_trip(&mut self, value: usize) -> usize {
        let to_peer = self.to_peer.as_ref().expect("peer channel open");
        to_peer.send(value).expect("peer thread alive");
        self.from_peer.recv().expect("peer thread alive")
    }

    /// Runs `iters` round trips and returns the time they took.
    pub fn time(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for i in 0..iters {
            std::hint::black_box(self.round_trip(i as usize));
        }
        start.elapsed()
    }
}

impl Default for ThreadPingPong {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ThreadPingPong {
    fn drop(&mut self) {
        // Closing the channel ends the peer's loop.
        self.to_peer = None;
        if let Some(peer) = self.peer.take() {
            let _ = peer.join();
        }
    }
}

/// A figure from `/proc/self/status` in KiB, e.g. `"VmRSS"` or `"VmHWM"`; `None` where
/// there is no such file or line.
///
/// ```
/// if cfg!(target_os = "linux") {
///     assert!(greenlet_benches::proc_status_kib("VmRSS").unwrap() > 0);
/// }
/// ```
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}
