//! Catalog section A: creating a greenlet and running its function (items 1–13).

use greenlet::{Builder, Error, Greenlet, State};
use greenlet_conformance::part1::{
    DropCounter, Log, TestError, switch_to_parent, test_error, value_of,
};

// Catalog 1, 2
#[test]
fn new_greenlet_has_the_current_greenlet_as_parent() {
    let g = Greenlet::new(|_| Ok(()));
    assert_eq!(g.parent(), Some(Greenlet::current()));
    assert_eq!(g.parent(), Some(Greenlet::main()));
    // A builder without a parent means "the current greenlet", as `parent=None` does.
    let b = Builder::new().build(|_| Ok(()));
    assert_eq!(b.parent(), Some(Greenlet::main()));
}

// Catalog 1
#[test]
fn builder_sets_an_explicit_parent() {
    let parent = Greenlet::new(|_| Ok(()));
    let child = Builder::new().parent(&parent).build(|_| Ok(()));
    assert_eq!(child.parent(), Some(parent.clone()));
    assert_ne!(child.parent(), Some(Greenlet::main()));
}

// Catalog 2, 13 (test_two_recursive_children: the parent is who was current at creation)
#[test]
fn greenlet_created_inside_a_greenlet_has_it_as_parent() {
    let outer = Greenlet::new(|_| {
        let inner = Greenlet::new(|_| Ok(()));
        Ok(inner.parent() == Some(Greenlet::current()))
    });
    assert!(value_of::<bool>(outer.switch(())));
}

// Catalog 2
#[test]
fn default_parent_is_fixed_at_creation_not_at_start() {
    // Created by main, started from inside `starter`: the parent stays main.
    let created_in_main = Greenlet::new(|_| Ok("child done"));
    let child = created_in_main.clone();
    let starter = Greenlet::new(move |_| {
        let got = value_of::<&str>(child.switch(()));
        Ok(format!("starter resumed with {got}"))
    });
    // The child finishes into main (its parent), not into `starter` which started it.
    assert_eq!(value_of::<&str>(starter.switch(())), "child done");
    assert_eq!(created_in_main.parent(), Some(Greenlet::main()));
    assert_eq!(starter.state(), State::Suspended);
    // Resuming starter now gives it our value; it finishes into main.
    assert_eq!(
        value_of::<String>(starter.switch("late")),
        "starter resumed with late"
    );
}

// Catalog 2
#[test]
fn builder_takes_the_parent_current_when_build_runs() {
    let builder = Builder::new();
    let g = Greenlet::new(move |_| {
        let built = builder.build(|_| Ok(()));
        Ok(built.parent() == Some(Greenlet::current()))
    });
    assert!(value_of::<bool>(g.switch(())));
}

// Catalog 3, 65 (state words)
#[test]
fn new_greenlet_is_pending() {
    let g = Greenlet::new(|_| Ok(()));
    assert_eq!(g.state(), State::Unstarted);
    assert!(!g.is_active());
    assert!(!g.is_dead());
    assert!(!g.is_started());
    assert!(!g.is_current());
    assert!(!g.is_main());
    assert!(format!("{g:?}").ends_with(" pending>"), "{g:?}");
}

// Catalog 4 (test_simple)
#[test]
fn nothing_runs_before_the_first_switch() {
    let log = Log::new();
    let seen = log.clone();
    let g = Greenlet::new(move |_| {
        seen.push(1);
        switch_to_parent(())?;
        seen.push(3);
        Ok(())
    });
    assert!(log.is_empty());
    log.push(0);
    g.switch(()).unwrap();
    log.push(2);
    g.switch(()).unwrap();
    log.push(4);
    assert_eq!(log.events(), [0, 1, 2, 3, 4]);
    assert!(g.is_dead());
}

// Catalog 4, 23 (test_switch_kwargs: run gets the first switch's value, returns 42)
#[test]
fn first_switch_value_is_the_argument_of_run() {
    let g = Greenlet::new(|args: greenlet::Value| {
        let (a, b) = args.downcast::<(i32, i32)>().unwrap();
        assert_eq!((a, b), (4, 2));
        Ok(42)
    });
    assert_eq!(value_of::<i32>(g.switch((4, 2))), 42);
}

// Catalog 5 (run no longer exists once started: the FnOnce is consumed)
#[test]
fn closure_is_consumed_by_the_start_and_its_captures_dropped_on_return() {
    let counter = DropCounter::new();
    let token = counter.token();
    let g = Greenlet::new(move |_| {
        let _keep = &token;
        Greenlet::main().switch("running")?;
        Ok(())
    });
    assert_eq!(value_of::<&str>(g.switch(())), "running");
    // Suspended: the closure is running, its captures are alive.
    assert_eq!(counter.dropped(), 0);
    g.switch(()).unwrap();
    // Returned: the closure is gone although the handle is still here.
    assert!(g.is_dead());
    assert_eq!(counter.dropped(), 1);
    drop(g);
    assert_eq!(counter.dropped(), 1);
}

// Catalog 5, 76 (an unstarted greenlet dropped: its closure is dropped, never called)
#[test]
fn dropping_an_unstarted_greenlet_drops_its_closure_without_calling_it() {
    let counter = DropCounter::new();
    let token = counter.token();
    let calls = Log::new();
    let called = calls.clone();
    let g = Greenlet::new(move |_| {
        called.push("called");
        drop(token);
        Ok(())
    });
    drop(g);
    assert_eq!(counter.dropped(), 1);
    assert!(calls.is_empty());
}

// Catalog 8 (wrong arity: the closure fails before doing anything; the greenlet is dead and
// the error is in the parent)
#[test]
fn closure_failing_at_once_dies_and_errors_in_the_parent() {
    let g = Greenlet::new(|first: greenlet::Value| -> Result<(), Error> {
        // The Rust analogue of "takes 0 positional arguments but 1 was given".
        first
            .downcast::<()>()
            .map_err(|_| TestError::err("takes no argument"))?;
        Ok(())
    });
    let error = g.switch(7_i32).unwrap_err();
    assert_eq!(test_error(&error), Some("takes no argument"));
    assert_eq!(g.state(), State::Dead);
}

// Catalog 9 (current() inside run is the same handle as the one the creator holds)
#[test]
fn current_inside_run_is_the_creators_handle() {
    let g = Greenlet::new(|_| Ok(Greenlet::current()));
    let inside = value_of::<Greenlet>(g.switch(()));
    assert_eq!(inside, g);
    assert_ne!(inside, Greenlet::main());
}

// Catalog 9, 10 (user data in place of subclass attributes and `__dict__`)
#[test]
fn greenlet_local_data_set_before_start_and_inside_outlives_the_run() {
    #[derive(Clone, Debug, PartialEq)]
    struct Test(i32);
    let g = Greenlet::new(|_| {
        let me = Greenlet::current();
        let before = me.local::<Test>();
        me.set_local(Test(42));
        Ok(before)
    });
    g.set_local(Test(1));
    assert_eq!(value_of::<Option<Test>>(g.switch(())), Some(Test(1)));
    // Like `g.test == 42` after the run in test_instance_dict.
    assert!(g.is_dead());
    assert_eq!(g.local::<Test>(), Some(Test(42)));
    assert_eq!(Greenlet::main().local::<Test>(), None);
}

// Catalog 11 (handles are shared, the coroutine is never duplicated)
#[test]
fn cloned_handles_share_one_coroutine() {
    let g = Greenlet::new(|_| -> Result<(), Error> {
        let mut n = 0_u32;
        loop {
            n += 1;
            Greenlet::main().switch(n)?;
        }
    });
    let h = g.clone();
    assert_eq!(g, h);
    assert_eq!(value_of::<u32>(g.switch(())), 1);
    assert_eq!(value_of::<u32>(h.switch(())), 2);
    assert_eq!(value_of::<u32>(g.switch(())), 3);
    assert_eq!(h.state(), State::Suspended);
    assert!(g.kill().unwrap().is::<greenlet::GreenletExit>());
    assert!(h.is_dead());
}

// Catalog 12 (test_frame, TestRepr::test_dead)
#[test]
fn greenlet_is_dead_when_run_returns() {
    let g = Greenlet::new(|_| {
        Greenlet::main().switch(())?;
        Ok("meaning of life")
    });
    g.switch(()).unwrap();
    assert!(g.is_active());
    assert_eq!(g.state(), State::Suspended);
    let repr = format!("{g:?}");
    assert!(repr.ends_with(" suspended active started>"), "{repr}");

    assert_eq!(value_of::<&str>(g.switch(())), "meaning of life");
    assert_eq!(g.state(), State::Dead);
    assert!(g.is_dead() && g.is_started());
    assert!(!g.is_active() && !g.is_current());
    let repr = format!("{g:?}");
    assert!(repr.ends_with(" dead>"), "{repr}");
    for word in ["active", "started", "suspended", "pending", "current"] {
        assert!(!repr.contains(word), "{repr}");
    }
}

// Catalog 12, 35 (a finished greenlet's stack is reused: many runs in a row are fine)
#[test]
fn many_greenlets_run_to_completion_one_after_another() {
    let mut total = 0_u64;
    for i in 0..500_u64 {
        let g = Greenlet::new(move |_| Ok(i));
        total += value_of::<u64>(g.switch(()));
        assert!(g.is_dead());
    }
    assert_eq!(total, 499 * 500 / 2);
}

// Catalog 13 (test_two_recursive_children: order, and no leaked references)
#[test]
fn recursive_children_return_to_their_creator() {
    let log = Log::new();
    let counter = DropCounter::new();
    let outer_log = log.clone();
    let g = Greenlet::new(move |_| {
        outer_log.push("a");
        let inner_log = outer_log.clone();
        let f = Greenlet::new(move |_| {
            inner_log.push("b");
            switch_to_parent(())?;
            inner_log.push("never");
            Ok(())
        });
        assert_eq!(f.parent(), Some(Greenlet::current()));
        f.switch(())?;
        outer_log.push("c");
        Ok(())
    });
    g.set_local(counter.token());
    g.switch(()).unwrap();
    assert_eq!(log.events(), ["a", "b", "c"]);
    assert!(g.is_dead());
    // Nothing else holds the finished greenlet: the last handle frees its state.
    assert_eq!(counter.dropped(), 0);
    drop(g);
    assert_eq!(counter.dropped(), 1);
}

// Catalog 13, 14 (test_two_children)
#[test]
fn two_children_of_main_interleave() {
    let log = Log::new();
    let body = |log: Log<i32>| {
        move |_| -> Result<(), Error> {
            log.push(1);
            switch_to_parent(())?;
            log.push(1);
            log.push(1);
            Ok(())
        }
    };
    let g = Greenlet::new(body(log.clone()));
    let h = Greenlet::new(body(log.clone()));
    g.switch(()).unwrap();
    assert_eq!(log.len(), 1);
    h.switch(()).unwrap();
    assert_eq!(log.len(), 2);
    h.switch(()).unwrap();
    assert_eq!(log.len(), 4);
    assert!(h.is_dead());
    assert_eq!(g.state(), State::Suspended);
    g.switch(()).unwrap();
    assert_eq!(log.len(), 6);
    assert!(g.is_dead());
}

// Catalog 13 (the child holds its parent: a parent referenced only by its child lives on)
#[test]
fn child_keeps_its_parent_alive() {
    let counter = DropCounter::new();
    let parent = Greenlet::new(Ok);
    parent.set_local(counter.token());
    let child = Builder::new()
        .parent(&parent)
        .build(|_| Ok("through the parent"));
    drop(parent);
    assert_eq!(counter.dropped(), 0);
    // The unstarted parent starts with the child's result and returns it to main.
    assert_eq!(value_of::<&str>(child.switch(())), "through the parent");
    assert_eq!(counter.dropped(), 0);
    drop(child);
    assert_eq!(counter.dropped(), 1);
}
