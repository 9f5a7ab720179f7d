//! K. Dropping the last handle of a greenlet: kill-on-drop, resurrection, cycles
//! (catalog items 76–88).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use greenlet::{Error, Greenlet, KILL_ON_DROP_MESSAGE, State, Value, set_unraisable_hook};
use greenlet_conformance::part2::{Counter, DropGuard, Log, expect_value};

/// Records what the unraisable hook of this thread hears while `f` runs.
fn with_unraisable_log<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let log = Log::new();
    let hook_log = log.clone();
    let previous = set_unraisable_hook(Some(Box::new(move |g, event| {
        let name = g.name().unwrap_or("?").to_owned();
        hook_log.push(format!("{name}: {event:?}"));
    })));
    let result = f();
    set_unraisable_hook(previous);
    (result, log.take())
}

/// Nested frames, each holding a guard, waiting in the innermost one.
fn wait_with_guards(depth: usize, guards: &Counter) -> Result<(), Error> {
    let _guard = guards.guard();
    if depth == 0 {
        Greenlet::main().switch(())?;
        Ok(())
    } else {
        wait_with_guards(depth - 1, guards)
    }
}

// Catalog 76, 78, 82: the required destructor counts.
#[test]
fn dropping_suspended_greenlets_runs_each_destructor_exactly_once() {
    const SUSPENDED: usize = 50;
    const DEPTH: usize = 3;
    const UNSTARTED: usize = 20;
    let exits = Counter::new();
    let frames = Counter::new();
    let captures = Counter::new();
    let bodies_run = Counter::new();
    let mut handles = Vec::new();
    for _ in 0..SUSPENDED {
        let (exits, frames, capture) = (exits.clone(), frames.clone(), captures.guard());
        let g = Greenlet::new(move |_| {
            let _capture = capture;
            let outcome = wait_with_guards(DEPTH - 1, &frames);
            if let Err(Error::Exit(exit)) = &outcome {
                assert_eq!(exit.message(), KILL_ON_DROP_MESSAGE);
                exits.bump();
            }
            outcome
        });
        g.switch(()).unwrap();
        handles.push(g);
    }
    for _ in 0..UNSTARTED {
        let (capture, bodies_run) = (captures.guard(), bodies_run.clone());
        handles.push(Greenlet::new(move |_| {
            let _capture = capture;
            bodies_run.bump();
            Ok(())
        }));
    }
    assert_eq!((exits.get(), frames.get(), captures.get()), (0, 0, 0));
    // Drop in an interleaved order: last, first, last, first, ...
    let mut dropped_suspended = 0;
    while !handles.is_empty() {
        let g = if handles.len() % 2 == 0 {
            handles.remove(0)
        } else {
            handles.pop().unwrap()
        };
        let was_suspended = g.state() == State::Suspended;
        drop(g);
        if was_suspended {
            dropped_suspended += 1;
        }
        // Synchronous: the kill is complete when `drop` returns.
        assert_eq!(exits.get(), dropped_suspended);
        assert_eq!(frames.get(), dropped_suspended * DEPTH);
    }
    assert_eq!(exits.get(), SUSPENDED);
    assert_eq!(frames.get(), SUSPENDED * DEPTH);
    assert_eq!(captures.get(), SUSPENDED + UNSTARTED);
    assert_eq!(bodies_run.get(), 0);
}

// Catalog 76
#[test]
fn kill_on_drop_happens_synchronously_at_the_drop_point() {
    let log = Log::new();
    let inner_log = log.clone();
    let g = Greenlet::new(move |_| {
        let result = Greenlet::main().switch(());
        match &result {
            Err(Error::Exit(exit)) => inner_log.push(format!("exit: {}", exit.message())),
            other => inner_log.push(format!("other: {other:?}")),
        }
        inner_log.push("finally");
        result.map(drop)
    });
    g.switch(()).unwrap();
    log.push("before drop");
    drop(g);
    log.push("after drop");
    assert_eq!(
        log.events(),
        [
            "before drop".to_owned(),
            format!("exit: {KILL_ON_DROP_MESSAGE}"),
            "finally".to_owned(),
            "after drop".to_owned(),
        ]
    );
}

// Catalog 77, 81 (port of test_parent_restored_on_kill)
#[test]
fn killed_greenlet_runs_under_the_dropper_and_gets_its_parent_back_when_resurrected() {
    let hub = Greenlet::new(|_| Ok(()));
    let seen: Rc<RefCell<Vec<Greenlet>>> = Rc::default();
    let seen_in = seen.clone();
    let hub_in = hub.clone();
    let worker = Greenlet::builder().parent(&hub).build(move |_| {
        match Greenlet::main().switch(()) {
            Err(Error::Exit(_)) => {
                let me = Greenlet::current();
                seen_in.borrow_mut().push(me.parent().unwrap());
                // Resurrect: store a new reference, then switch away without dying.
                seen_in.borrow_mut().push(me);
                hub_in.switch(())?;
                Ok("resurrected worker finished")
            }
            other => Ok(if other.is_ok() { "value" } else { "error" }),
        }
    });
    worker.switch(()).unwrap();
    let ((), unraisable) = with_unraisable_log(|| drop(worker));
    assert!(unraisable.is_empty(), "{unraisable:?}");
    let seen: Vec<Greenlet> = seen.borrow_mut().drain(..).collect();
    assert_eq!(seen.len(), 2);
    // During the kill its parent was the dropper (main); afterwards it is the hub again.
    assert_eq!(seen[0], Greenlet::main());
    let worker = &seen[1];
    assert_eq!(worker.parent(), Some(hub.clone()));
    // Alive, suspended in `hub_in.switch`, and it can continue later.
    assert_eq!(worker.state(), State::Suspended);
    assert!(hub.is_dead());
    // The hub is dead, so its result goes to main.
    let out = worker.switch(()).unwrap();
    assert_eq!(
        out.downcast::<&str>().unwrap(),
        "resurrected worker finished"
    );
}

// Catalog 77
#[test]
fn control_returns_to_the_dropping_greenlet_after_the_kill() {
    let log = Log::new();
    let victim_log = log.clone();
    let victim = Greenlet::new(move |_| {
        let result = Greenlet::main().switch(());
        let killer = Greenlet::current().parent().unwrap();
        victim_log.push(format!(
            "victim killed, parent is main: {}",
            killer.is_main()
        ));
        result.map(drop)
    });
    victim.switch(()).unwrap();
    let dropper_log = log.clone();
    let dropper = Greenlet::new(move |v| {
        let victim = v.downcast::<Greenlet>().unwrap();
        dropper_log.push("dropping");
        drop(victim);
        dropper_log.push(format!(
            "dropper continues, current is dropper: {}",
            !Greenlet::current().is_main()
        ));
        Ok(())
    });
    dropper.switch(victim).unwrap();
    assert_eq!(
        log.events(),
        [
            "dropping",
            "victim killed, parent is main: false",
            "dropper continues, current is dropper: true"
        ]
    );
}

// Catalog 78
#[test]
fn what_a_killed_greenlet_returns_is_dropped_and_the_dropper_continues() {
    let returned = Counter::new();
    let returned_in = returned.clone();
    let g = Greenlet::new(move |_| {
        let guard: DropGuard = returned_in.guard();
        match Greenlet::main().switch(()) {
            // Swallow the exit and return a value with a destructor.
            Err(Error::Exit(_)) => Ok(guard),
            other => other.map(|_| guard),
        }
    });
    g.switch(()).unwrap();
    let ((), unraisable) = with_unraisable_log(|| drop(g));
    assert!(unraisable.is_empty());
    assert_eq!(
        returned.get(),
        1,
        "the returned value was dropped exactly once"
    );
}

// Catalog 79
#[test]
fn another_error_while_being_killed_goes_to_the_unraisable_hook() {
    let g = Greenlet::builder()
        .name("stubborn")
        .build(|_| match Greenlet::main().switch(()) {
            Err(Error::Exit(_)) => Err::<(), _>(Error::msg("cleanup failed")),
            other => other.map(drop),
        });
    g.switch(()).unwrap();
    let ((), unraisable) = with_unraisable_log(|| drop(g));
    assert_eq!(unraisable, ["stubborn: Error(cleanup failed)"]);
}

// Catalog 79
#[cfg(panic = "unwind")]
#[test]
fn a_panic_while_being_killed_goes_to_the_unraisable_hook() {
    let g = Greenlet::builder().name("panicky").build(|_| {
        if Greenlet::main().switch(()).is_err() {
            panic!("panic during cleanup");
        }
        Ok(())
    });
    g.switch(()).unwrap();
    let ((), unraisable) = with_unraisable_log(|| drop(g));
    assert_eq!(unraisable, ["panicky: Panic(panic during cleanup)"]);
}

// Catalog 80
#[test]
fn greenlet_that_will_not_die_is_reported_and_leaked() {
    let frames = Counter::new();
    let frames_in = frames.clone();
    let g = Greenlet::builder().name("immortal").build(move |_| {
        let _frame = frames_in.guard();
        loop {
            // Swallow every GreenletExit and go back to whoever switched in.
            let back_to = Greenlet::current().parent().unwrap();
            let _ = back_to.switch(());
        }
        #[allow(unreachable_code)]
        Ok(())
    });
    g.switch(()).unwrap();
    let ((), unraisable) = with_unraisable_log(|| drop(g));
    assert_eq!(unraisable, ["immortal: DidNotDie"]);
    // Its frames are kept, not unwound: the guard never ran.
    assert_eq!(frames.get(), 0);
}

// Catalog 80: with no hook installed, the report goes to stderr.
#[cfg(unix)]
#[test]
fn default_unraisable_report_names_the_greenlet_that_did_not_die() {
    use greenlet_conformance::part2::child;
    if child::mode().as_deref() == Some("did-not-die") {
        let g = Greenlet::builder().name("immortal").build(|_| {
            loop {
                let back_to = Greenlet::current().parent().unwrap();
                let _ = back_to.switch(());
            }
            #[allow(unreachable_code)]
            Ok(())
        });
        g.switch(()).unwrap();
        set_unraisable_hook(None);
        drop(g);
        return;
    }
    let output = child::run(
        "default_unraisable_report_names_the_greenlet_that_did_not_die",
        "did-not-die",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}", child::describe(&output));
    assert!(
        stderr.contains("GreenletExit did not kill <greenlet ") && stderr.contains("\"immortal\""),
        "{}",
        child::describe(&output)
    );
}

// Catalog 81
#[test]
fn greenlet_that_stores_a_new_handle_while_being_killed_survives() {
    let keep: Rc<RefCell<Option<Greenlet>>> = Rc::default();
    let keep_in = keep.clone();
    let g = Greenlet::new(move |_| {
        let first = Greenlet::main().switch(());
        assert!(matches!(first, Err(Error::Exit(_))));
        *keep_in.borrow_mut() = Some(Greenlet::current());
        // Back to the dropper, alive.
        let again = Greenlet::current()
            .parent()
            .unwrap()
            .switch("resurrected")?;
        Ok(again.downcast::<i32>().unwrap() + 1)
    });
    g.switch(()).unwrap();
    let ((), unraisable) = with_unraisable_log(|| drop(g));
    assert!(unraisable.is_empty(), "{unraisable:?}");
    let g = keep.borrow_mut().take().unwrap();
    assert_eq!(g.state(), State::Suspended);
    assert!(g.is_active() && !g.is_dead());
    assert_eq!(g.parent(), Some(Greenlet::main()));
    assert_eq!(expect_value::<i32>(g.switch(41)), 42);
}

// Catalog 82
#[test]
fn unstarted_and_dead_greenlets_are_freed_without_running_anything() {
    let captures = Counter::new();
    let runs = Counter::new();
    let (capture, runs_in) = (captures.guard(), runs.clone());
    let unstarted = Greenlet::new(move |_| {
        let _capture = capture;
        runs_in.bump();
        Ok(())
    });
    drop(unstarted);
    assert_eq!((captures.get(), runs.get()), (1, 0));

    let (capture, runs_in) = (captures.guard(), runs.clone());
    let dead = Greenlet::new(move |_| {
        let _capture = capture;
        runs_in.bump();
        Ok(())
    });
    dead.switch(()).unwrap();
    assert_eq!((captures.get(), runs.get()), (2, 1));
    // A dead greenlet's locals go with it; nothing else runs.
    let local_drops = Counter::new();
    dead.set_local(local_drops.guard());
    drop(dead);
    assert_eq!((captures.get(), runs.get(), local_drops.get()), (2, 1, 1));
}

// Catalog 83: there are no weak greenlet handles; the greenlet being killed can still reach
// itself (`Greenlet::current()`) during its cleanup, while its dropped handle is gone.
#[test]
fn greenlet_being_killed_can_still_reach_itself() {
    let log = Log::new();
    let log_in = log.clone();
    let g = Greenlet::builder().name("me").build(move |_| {
        let result = Greenlet::main().switch(());
        let me = Greenlet::current();
        log_in.push(format!("{:?} {}", me.name(), me.is_current()));
        result.map(drop)
    });
    g.switch(()).unwrap();
    drop(g);
    assert_eq!(log.events(), ["Some(\"me\") true"]);
}

// Catalog 84 (port of test_dealloc_switch_args_not_lost)
#[test]
fn value_switched_by_a_greenlet_losing_its_last_handle_still_arrives() {
    let finally = Counter::new();
    let worker_slot: Rc<RefCell<Option<Greenlet>>> = Rc::default();
    let initiator_slot: Rc<RefCell<Option<Greenlet>>> = Rc::default();
    let (slot_in, initiator_in, finally_in) =
        (worker_slot.clone(), initiator_slot.clone(), finally.clone());
    let worker = Greenlet::new(move |_| {
        let _finally = finally_in.guard();
        // Wait for the value.
        let value = Greenlet::main().switch(())?;
        // Drop every handle to ourselves but the running one...
        drop(slot_in.borrow_mut().take());
        let initiator = initiator_in.borrow_mut().take().unwrap();
        initiator.set_parent(&Greenlet::main())?;
        drop(initiator);
        // ...and switch to main with the value: once main runs, the running handle is the
        // last one, and dropping it kills us.
        Greenlet::main().switch(value)?;
        Ok(())
    });
    worker.switch(()).unwrap();
    let initiator = Greenlet::builder().parent(&worker).build(|_| Ok(42));
    *worker_slot.borrow_mut() = Some(worker);
    *initiator_slot.borrow_mut() = Some(initiator.clone());
    let value = initiator.switch(());
    assert_eq!(expect_value::<i32>(value), 42);
    assert_eq!(finally.get(), 1);
    assert!(worker_slot.borrow().is_none());
}

// Catalog 85: a suspended greenlet kept alive by a cycle through its own storage is neither
// freed nor killed until the cycle is broken by hand (like Python's, which never collects
// suspended greenlets). Unstarted and dead greenlets in cycles are `Rc` cycles in Rust and
// leak; Python's cycle collector would free them (see CATALOG.md).
#[test]
fn suspended_greenlet_in_a_reference_cycle_is_killed_only_when_the_cycle_is_broken() {
    /// Storage holding the slot that holds the greenlet: a cycle.
    struct SelfRef(#[allow(dead_code)] Rc<RefCell<Option<Greenlet>>>);
    let exits = Counter::new();
    let exits_in = exits.clone();
    let g = Greenlet::new(move |_| {
        let result = Greenlet::main().switch(());
        if matches!(result, Err(Error::Exit(_))) {
            exits_in.bump();
        }
        result.map(drop)
    });
    g.switch(()).unwrap();
    let slot: Rc<RefCell<Option<Greenlet>>> = Rc::new(RefCell::new(Some(g.clone())));
    let weak_slot: Weak<RefCell<Option<Greenlet>>> = Rc::downgrade(&slot);
    g.set_local(SelfRef(slot));
    drop(g);
    assert_eq!(exits.get(), 0, "a greenlet in a cycle is not killed");
    // Break the cycle: take the handle out of the slot; now it is the last one.
    let slot = weak_slot.upgrade().expect("the cycle keeps the slot alive");
    let g = slot.borrow_mut().take().unwrap();
    drop(slot);
    assert_eq!(g.state(), State::Suspended);
    drop(g);
    assert_eq!(exits.get(), 1);
    assert!(
        weak_slot.upgrade().is_none(),
        "the greenlet's storage was freed"
    );
}

// Catalog 86, 106f: destructors that run while a greenlet is freed (captures of an unstarted
// closure, storage of a dead greenlet) may themselves create and switch greenlets.
#[test]
fn destructors_run_while_freeing_a_greenlet_may_switch_greenlets() {
    struct SwitchOnDrop(Log, &'static str);
    impl Drop for SwitchOnDrop {
        fn drop(&mut self) {
            let helper = Greenlet::new(Ok);
            let back = helper.switch(self.1).unwrap();
            self.0
                .push(format!("{} bounced", back.downcast::<&str>().unwrap()));
        }
    }
    let log = Log::new();
    let capture = SwitchOnDrop(log.clone(), "capture");
    let unstarted = Greenlet::new(move |_| {
        let _capture = capture;
        Ok(())
    });
    drop(unstarted);
    let dead = Greenlet::new(|_| Ok(()));
    dead.switch(()).unwrap();
    dead.set_local(SwitchOnDrop(log.clone(), "local"));
    drop(dead);
    assert_eq!(log.events(), ["capture bounced", "local bounced"]);
}

// Catalog 86, 87: kills nest. A greenlet's cleanup drops the last handle of another
// suspended greenlet, whose cleanup drops the next one: each gets exactly one GreenletExit,
// innermost first to finish, and every switch inside the destructors works.
#[test]
fn kills_nest_when_cleanup_drops_other_suspended_greenlets() {
    let log = Log::new();
    let mut next: Option<Greenlet> = None;
    for i in 0..5 {
        let (log, holds) = (log.clone(), next.take());
        let g = Greenlet::new(move |_| {
            let result = Greenlet::main().switch(());
            log.push(format!("{i} exit"));
            drop(holds); // kills the next one, from inside this kill
            log.push(format!("{i} done"));
            result.map(drop)
        });
        g.switch(()).unwrap();
        next = Some(g);
    }
    drop(next);
    assert_eq!(
        log.events(),
        [
            "4 exit", "3 exit", "2 exit", "1 exit", "0 exit", "0 done", "1 done", "2 done",
            "3 done", "4 done"
        ]
    );
}

// Catalog 88: a suspended greenlet still alive when its thread's greenlet state is torn down
// is discarded without running anything, and without crashing; while the state exists,
// dropping it kills it normally. `try_current` reports the teardown as an error.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn suspended_greenlet_dropped_during_thread_teardown_does_not_crash() {
    use std::sync::{Arc, Mutex};
    /// Drops its greenlet from a thread-local destructor and reports what happened.
    struct Holder {
        greenlet: Option<Greenlet>,
        exits: Rc<std::cell::Cell<usize>>,
        report: Arc<Mutex<Vec<String>>>,
    }
    impl Drop for Holder {
        fn drop(&mut self) {
            let state = match Greenlet::try_current() {
                Ok(_) => "state alive",
                Err(Error::ThreadExited) => "state torn down",
                Err(_) => "unexpected error",
            };
            drop(self.greenlet.take());
            let exits = self.exits.get();
            self.report
                .lock()
                .unwrap()
                .push(format!("{state}, exits {exits}"));
        }
    }
    thread_local! {
        static HOLDER: RefCell<Option<Holder>> = const { RefCell::new(None) };
    }
    let report = Arc::new(Mutex::new(Vec::new()));
    // Thread-local destructors run in the reverse order of first use on most platforms:
    // touching the holder before any greenlet makes it outlive the greenlet state.
    for holder_first in [true, false] {
        let report = report.clone();
        std::thread::spawn(move || {
            if holder_first {
                HOLDER.with(|_| ());
            }
            let exits = Rc::new(std::cell::Cell::new(0));
            let exits_in = exits.clone();
            let g = Greenlet::new(move |_| {
                let result = Greenlet::main().switch(());
                if matches!(&result, Err(Error::Exit(_))) {
                    exits_in.set(exits_in.get() + 1);
                }
                result.map(drop)
            });
            g.switch(()).unwrap();
            HOLDER.with(|h| {
                *h.borrow_mut() = Some(Holder {
                    greenlet: Some(g),
                    exits,
                    report,
                })
            });
        })
        .join()
        .unwrap();
    }
    let report = report.lock().unwrap().clone();
    assert_eq!(report.len(), 2, "{report:?}");
    for entry in &report {
        assert!(
            entry == "state alive, exits 1" || entry == "state torn down, exits 0",
            "{report:?}"
        );
    }
}

// Catalog 76: killing from inside a greenlet whose parent chain is long leaves the chain
// intact; the GreenletExit that comes back is discarded, not forwarded.
#[test]
fn kill_on_drop_does_not_disturb_the_droppers_own_parent_chain() {
    let outer = Greenlet::new(|_| {
        let victim = Greenlet::new(|_| {
            let outer = Greenlet::current().parent().unwrap();
            outer.switch(())?;
            Ok(())
        });
        victim.switch(())?;
        drop(victim);
        // Still running here, with the same parent.
        Ok(Greenlet::current().parent() == Some(Greenlet::main()))
    });
    assert!(expect_value::<bool>(outer.switch(())));
    assert!(outer.is_dead());
}

// Catalog 76, 51: a greenlet waiting in a switch that a dead greenlet forwarded to its live
// ancestor holds no hidden handle to that ancestor: once its last visible reference goes,
// the ancestor is killed, as in greenlet (found by the randomized model test).
#[test]
fn switch_forwarded_through_a_dead_greenlet_keeps_no_handle_to_the_ancestor() {
    let exits = Counter::new();
    let exits_in = exits.clone();
    let ancestor = Greenlet::new(move |_| -> Result<(), Error> {
        loop {
            if let Err(e) = Greenlet::main().switch(()) {
                if e.is_exit() {
                    exits_in.bump();
                }
                return Err(e);
            }
        }
    });
    ancestor.switch(()).unwrap();
    let dead = Greenlet::new(|_| Ok(()));
    dead.switch(()).unwrap();
    dead.set_parent(&ancestor).unwrap();
    let dead_in = dead.clone();
    let waiter = Greenlet::new(move |_| {
        // Forwarded to `ancestor`, which switches back to main: we wait here.
        dead_in.switch(())?;
        Ok(())
    });
    waiter.switch(()).unwrap();
    assert_eq!(waiter.state(), State::Suspended);
    // Remove every visible reference to the ancestor: our handle and the dead one's link.
    drop(ancestor);
    assert_eq!(exits.get(), 0);
    dead.set_parent(&Greenlet::main()).unwrap();
    assert_eq!(
        exits.get(),
        1,
        "the ancestor was kept alive by a hidden handle"
    );
    waiter.kill().unwrap();
}

// Catalog 76: `switch_to_parent` keeps no handle to the switching greenlet (nor to its
// parent) while it waits, so dropping the last handle kills it.
#[test]
fn greenlet_suspended_in_switch_to_parent_is_killed_when_dropped() {
    use std::cell::Cell;
    use std::rc::Rc;
    let exits = Rc::new(Cell::new(0));
    let seen = exits.clone();
    let g = greenlet::Greenlet::new(move |_| -> Result<(), greenlet::Error> {
        match greenlet::Greenlet::switch_to_parent(()) {
            Err(e) if e.is_exit() => {
                seen.set(seen.get() + 1);
                Err(e)
            }
            other => other.map(drop),
        }
    });
    g.switch(()).unwrap();
    assert!(g.is_active());
    drop(g);
    assert_eq!(exits.get(), 1);
}

/// A parent `P` (holding `guard` as a greenlet-local, the child's link its only handle) and
/// a child `C` that finishes at once, so that switching to `C` starts `P`. `P` cuts that
/// link (`C.set_parent(main)`) and so runs on without any handle; then it runs `after`.
fn parent_losing_its_last_handle(
    guard: DropGuard,
    after: impl FnOnce() -> Result<Value, Error> + 'static,
) -> Greenlet {
    let slot: Rc<RefCell<Option<Greenlet>>> = Rc::default();
    let slot_in = slot.clone();
    let parent = Greenlet::new(move |_| {
        Greenlet::current().set_local(guard);
        let child = slot_in
            .borrow_mut()
            .take()
            .expect("the child is in the slot");
        child.set_parent(&Greenlet::main())?;
        drop(child);
        after()
    });
    let child = Greenlet::builder().parent(&parent).build(|_| Ok(()));
    *slot.borrow_mut() = Some(child.clone());
    child
}

// The running greenlet is not counted by the thread: its state must survive losing its
// last handle while it runs, and be freed (not leaked) once it has finished.
#[test]
fn greenlet_losing_its_last_handle_while_running_is_freed_when_it_finishes() {
    let freed = Counter::new();
    let freed_in = freed.clone();
    let child = parent_losing_its_last_handle(freed.guard(), move || {
        // Still running on our state: its locals are all there.
        Ok(Value::new(freed_in.get()))
    });
    let seen_while_running = expect_value::<usize>(child.switch(()));
    assert_eq!(seen_while_running, 0);
    assert_eq!(
        freed.get(),
        1,
        "the finished greenlet's state was not freed"
    );
}

// ... and killed if it suspends instead: it has no handle left, as if its last one had been
// dropped while it was suspended.
#[test]
fn greenlet_losing_its_last_handle_while_running_is_killed_when_it_suspends() {
    let freed = Counter::new();
    let exits = Counter::new();
    let exits_in = exits.clone();
    let child = parent_losing_its_last_handle(freed.guard(), move || {
        match Greenlet::main().switch("suspending") {
            Err(e) if e.is_exit() => {
                exits_in.bump();
                Err(e)
            }
            other => other,
        }
    });
    let got = expect_value::<&str>(child.switch(()));
    assert_eq!(got, "suspending");
    assert_eq!(
        exits.get(),
        1,
        "the greenlet without handles was not killed"
    );
    assert_eq!(freed.get(), 1, "the killed greenlet's state was not freed");
}
