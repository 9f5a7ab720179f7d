//! J. Threads (catalog items 66–75).
//!
//! Handles are `!Send`, so cross-thread misuse is only reachable with `unsafe`: these tests
//! carry handles to other threads in [`Foreign`], which exposes only the operations that
//! check the owner thread before touching the handle's reference count, and bring them back
//! to their owner thread (or to a thread that joined it) to be dropped.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use greenlet::{Error, Greenlet, GreenletExit, State};
use greenlet_conformance::part2::foreign::Foreign;
use greenlet_conformance::part2::{Counter, expect_value};

/// A greenlet that bounces every value back to main, plus one each of the other states.
fn one_of_each_state() -> [Greenlet; 3] {
    let unstarted = Greenlet::new(|_| Ok(()));
    let suspended = Greenlet::new(|_| {
        Greenlet::main().switch(())?;
        Ok(())
    });
    suspended.switch(()).unwrap();
    let dead = Greenlet::new(|_| Ok(()));
    dead.switch(()).unwrap();
    [unstarted, suspended, dead]
}

// Catalog 66
#[test]
fn every_thread_has_its_own_main_greenlet_and_runs_independently() {
    const THREADS: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let main = Greenlet::main();
                assert!(main.is_main() && main.is_current());
                // A ping-pong of this thread's own.
                let adder = Greenlet::new(move |first| -> Result<(), Error> {
                    let mut total = first.downcast::<usize>().unwrap();
                    loop {
                        let next = Greenlet::main().switch(total)?;
                        total += next.downcast::<usize>().unwrap();
                    }
                });
                let mut last = 0;
                for i in 0..100 {
                    last = expect_value::<usize>(adder.switch(t + i));
                    // Let the threads interleave their switches.
                    if i == 50 {
                        barrier.wait();
                    }
                }
                assert_eq!(last, (0..100).map(|i| t + i).sum::<usize>());
                assert_eq!(adder.parent(), Some(main.clone()));
                // Identify this thread's main while every thread is still alive, so no
                // address can have been reused.
                let address = format!("{main:?}").split(' ').nth(1).unwrap().to_owned();
                barrier.wait();
                drop(adder);
                address
            })
        })
        .collect();
    let mut mains: Vec<String> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    mains.push(
        format!("{:?}", Greenlet::main())
            .split(' ')
            .nth(1)
            .unwrap()
            .to_owned(),
    );
    let count = mains.len();
    mains.sort();
    mains.dedup();
    assert_eq!(mains.len(), count, "main greenlets were shared: {mains:?}");
}

// Catalog 67
#[test]
fn switch_throw_and_kill_into_a_live_threads_greenlets_fail_with_wrong_thread() {
    let (to_main, handles) = mpsc::channel::<Vec<Foreign>>();
    let (give_back, returned) = mpsc::channel::<Vec<Foreign>>();
    let exits = Arc::new(Mutex::new(0_usize));
    let exits_in = exits.clone();
    let owner = thread::spawn(move || {
        let mut all: Vec<Greenlet> = one_of_each_state().into();
        all.push(Greenlet::main());
        // A suspended greenlet that counts the GreenletExit it gets when dropped at home.
        let counted = Greenlet::new(move |_| match Greenlet::main().switch(()) {
            Err(e @ Error::Exit(_)) => {
                *exits_in.lock().unwrap() += 1;
                Err(e)
            }
            other => other.map(drop),
        });
        counted.switch(()).unwrap();
        all.push(counted);
        to_main
            .send(all.into_iter().map(Foreign::new).collect())
            .unwrap();
        let back = returned.recv().unwrap();
        for handle in back {
            // SAFETY: this is the owner thread.
            let g = unsafe { handle.into_inner() };
            assert!(g.belongs_to_current_thread());
            drop(g);
        }
    });

    let theirs = handles.recv().unwrap();
    for g in &theirs {
        assert!(matches!(g.switch(1), Err(Error::WrongThread)));
        assert!(matches!(g.throw(Error::msg("x")), Err(Error::WrongThread)));
        assert!(matches!(g.kill(), Err(Error::WrongThread)));
    }
    let message = theirs[0].switch(()).unwrap_err().to_string();
    assert_eq!(message, "cannot switch to a greenlet of a different thread");
    give_back.send(theirs).unwrap();
    owner.join().unwrap();
    // The suspended one was killed at home, when its handle was dropped there (item 72).
    assert_eq!(*exits.lock().unwrap(), 1);
}

// Catalog 67: an unstarted greenlet belongs to the thread that created it, whatever its
// parent; the first switch from another thread fails and leaves it unstarted.
#[test]
fn unstarted_greenlet_of_a_live_thread_stays_unstarted_after_a_refused_switch() {
    let (to_main, handle) = mpsc::channel::<Foreign>();
    let (give_back, returned) = mpsc::channel::<Foreign>();
    let owner = thread::spawn(move || {
        let ran = Counter::new();
        let ran_in = ran.clone();
        let g = Greenlet::new(move |_| {
            ran_in.bump();
            Ok(())
        });
        to_main.send(Foreign::new(g)).unwrap();
        // SAFETY: this is the owner thread.
        let g = unsafe { returned.recv().unwrap().into_inner() };
        assert_eq!(g.state(), State::Unstarted);
        assert_eq!(ran.get(), 0);
        g.switch(()).unwrap();
        assert_eq!(ran.get(), 1);
    });
    let g = handle.recv().unwrap();
    assert!(matches!(g.switch(()), Err(Error::WrongThread)));
    give_back.send(g).unwrap();
    owner.join().unwrap();
}

// Catalog 68, 69, 71
#[test]
fn greenlets_of_an_exited_thread_fail_with_thread_exited_and_are_discarded_unrun() {
    let cleanups = Arc::new(Mutex::new(0_usize));
    let cleanups_in = cleanups.clone();
    let handles = thread::spawn(move || {
        struct Cleanup(Arc<Mutex<usize>>);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                *self.0.lock().unwrap() += 1;
            }
        }
        let mut all: Vec<Greenlet> = one_of_each_state().into();
        let kept = Greenlet::new(move |_| {
            let _cleanup = Cleanup(cleanups_in);
            Greenlet::main().switch(())?;
            Ok(())
        });
        kept.switch(()).unwrap();
        all.push(kept);
        all.push(Greenlet::main());
        all.into_iter().map(Foreign::new).collect::<Vec<_>>()
    })
    .join()
    .unwrap();

    for g in &handles {
        assert!(matches!(g.switch(()), Err(Error::ThreadExited)));
        assert!(matches!(g.throw(Error::msg("x")), Err(Error::ThreadExited)));
        assert!(matches!(g.kill(), Err(Error::ThreadExited)));
    }
    let message = handles[0].switch(()).unwrap_err().to_string();
    assert_eq!(
        message,
        "cannot switch to a greenlet of a different thread (which happens to have exited)"
    );
    // SAFETY: the owner thread has been joined.
    let handles: Vec<Greenlet> = handles
        .into_iter()
        .map(|h| unsafe { h.into_inner() })
        .collect();
    // Item 69: the exited thread's main greenlet reads as dead.
    let main = handles.last().unwrap();
    assert!(main.is_main() && main.is_dead());
    // Item 71: a suspended greenlet of the exited thread never got a GreenletExit, and
    // dropping it discards its frames without running their destructors.
    assert_eq!(*cleanups.lock().unwrap(), 0);
    drop(handles);
    assert_eq!(*cleanups.lock().unwrap(), 0);
}

// Catalog 72
#[test]
fn suspended_greenlets_dropped_inside_their_thread_get_greenlet_exit() {
    const PER_THREAD: usize = 10;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                let exits = Counter::new();
                let cleanups = Counter::new();
                let mut locals = Vec::new();
                for _ in 0..PER_THREAD {
                    let (exits, cleanups) = (exits.clone(), cleanups.clone());
                    let g = Greenlet::new(move |_| {
                        let _cleanup = cleanups.guard();
                        let got = Greenlet::main().switch(());
                        if let Err(Error::Exit(exit)) = &got {
                            assert_eq!(exit.message(), greenlet::KILL_ON_DROP_MESSAGE);
                            exits.bump();
                        }
                        got.map(drop)
                    });
                    g.switch(()).unwrap();
                    locals.push(g);
                }
                drop(locals);
                (exits.get(), cleanups.get())
            })
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().unwrap(), (PER_THREAD, PER_THREAD));
    }
}

// Catalog 73
#[test]
fn threads_hammering_each_others_greenlets_always_get_wrong_thread() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 200;
    let slots: Arc<Vec<Mutex<Option<Foreign>>>> =
        Arc::new((0..THREADS).map(|_| Mutex::new(None)).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|me| {
            let (slots, barrier) = (slots.clone(), barrier.clone());
            thread::spawn(move || {
                let echo = Greenlet::new(|first| -> Result<(), Error> {
                    let mut v = first;
                    loop {
                        v = Greenlet::main().switch(v)?;
                    }
                });
                *slots[me].lock().unwrap() = Some(Foreign::new(echo.clone()));
                barrier.wait();
                let mut refused = 0;
                for round in 0..ROUNDS {
                    // Our own greenlet keeps working while the others poke at it.
                    assert_eq!(expect_value::<usize>(echo.switch(round)), round);
                    for (other, slot) in slots.iter().enumerate() {
                        if other == me {
                            continue;
                        }
                        let slot = slot.lock().unwrap();
                        let theirs = slot.as_ref().unwrap();
                        let result = if round % 2 == 0 {
                            theirs.switch(round)
                        } else {
                            theirs.throw(Error::msg("intruder"))
                        };
                        assert!(matches!(result, Err(Error::WrongThread)), "{result:?}");
                        refused += 1;
                    }
                }
                barrier.wait();
                // SAFETY: this is the owner thread, and nobody uses the slot any more.
                let mine = unsafe { slots[me].lock().unwrap().take().unwrap().into_inner() };
                drop(mine);
                assert_eq!(expect_value::<GreenletExit>(echo.kill()).message(), "");
                refused
            })
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().unwrap(), ROUNDS * (THREADS - 1));
    }
}

// Catalog 74
#[test]
fn new_greenlets_take_the_creating_threads_current_greenlet_as_parent() {
    let workers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                let outer = Greenlet::new(|_| {
                    let me = Greenlet::current();
                    let mut ok = true;
                    for _ in 0..50 {
                        let child = Greenlet::new(|_| Ok(Greenlet::current()));
                        ok &= child.parent() == Some(me.clone());
                        let seen = child.switch(())?.downcast::<Greenlet>().unwrap();
                        ok &= seen == child && Greenlet::current() == me;
                    }
                    Ok(ok)
                });
                let ok = expect_value::<bool>(outer.switch(()));
                ok && Greenlet::current() == Greenlet::main()
            })
        })
        .collect();
    for worker in workers {
        assert!(worker.join().unwrap());
    }
}

// Catalog 75: everything a thread's greenlets own is released: finished greenlets,
// closures, and the thread's main greenlet itself once the thread has exited.
#[test]
fn finished_threads_release_their_greenlets_and_main_greenlet() {
    struct Released(Arc<Mutex<usize>>);
    impl Drop for Released {
        fn drop(&mut self) {
            *self.0.lock().unwrap() += 1;
        }
    }
    let mains_released = Arc::new(Mutex::new(0_usize));
    let rounds = 20;
    for _ in 0..rounds {
        let mains_released = mains_released.clone();
        thread::spawn(move || {
            Greenlet::main().set_local(Released(mains_released));
            let token = std::rc::Rc::new(());
            for i in 0..100_usize {
                let token = token.clone();
                let g = Greenlet::new(move |x| {
                    let _token = token;
                    let y = Greenlet::main().switch(x)?;
                    Ok(y)
                });
                g.switch(i).unwrap();
                if i % 2 == 0 {
                    g.switch(()).unwrap();
                }
                // Odd ones are dropped suspended, and killed.
            }
            assert_eq!(std::rc::Rc::strong_count(&token), 1);
        })
        .join()
        .unwrap();
    }
    assert_eq!(*mains_released.lock().unwrap(), rounds);
}

// Catalog 75: thread after thread reuses stacks and releases alternate signal stacks, so the
// number of memory mappings does not grow with the number of threads that have run.
#[cfg(target_os = "linux")]
#[test]
fn threads_coming_and_going_do_not_grow_the_mapping_count() {
    use greenlet_conformance::part2::mapping_count;
    fn run_threads(n: usize) {
        for _ in 0..n {
            thread::spawn(|| {
                let gs: Vec<Greenlet> = (0..20)
                    .map(|_| {
                        let g = Greenlet::new(|_| {
                            Greenlet::main().switch(())?;
                            Ok(())
                        });
                        g.switch(()).unwrap();
                        g
                    })
                    .collect();
                drop(gs);
            })
            .join()
            .unwrap();
        }
    }
    // Warm up: allocator arenas, stack arenas and caches reach their steady size.
    run_threads(20);
    let before = mapping_count();
    run_threads(300);
    let after = mapping_count();
    // Other tests run concurrently in this process and map memory of their own, so allow
    // some slack; a per-thread leak would add hundreds, a per-greenlet one thousands.
    assert!(
        after < before + 150,
        "mappings grew from {before} to {after} over 300 threads"
    );
}
