//! Catalog section C: where the return value of a finished greenlet goes (items 23–28).

use greenlet::{Builder, Error, Greenlet, StackError, State};
use greenlet_conformance::part1::{Log, received, switch_to_parent, value_of};

// Catalog 23 (the parent's pending switch returns exactly what run returned)
#[test]
fn return_value_reaches_the_parent_unchanged() {
    let g = Greenlet::new(|_| Ok(()));
    assert!(g.switch(()).unwrap().is_unit());
    let g = Greenlet::new(|_| Ok((5,)));
    assert_eq!(value_of::<(i32,)>(g.switch(())), (5,));
    let g = Greenlet::new(|_| Ok(None::<&str>));
    assert_eq!(value_of::<Option<&str>>(g.switch(())), None);
    let g = Greenlet::new(|_| Ok(String::from("meaning of life")));
    assert_eq!(value_of::<String>(g.switch(())), "meaning of life");
    // A returned `Value` is passed through as is.
    let g = Greenlet::new(Ok);
    assert_eq!(value_of::<i64>(g.switch(-3_i64)), -3);
}

// Catalog 24 (the result goes to the parent, not to whoever switched in last)
#[test]
fn result_goes_to_the_parent_not_to_the_last_switcher() {
    let parent = Greenlet::new(|_| {
        // Ready; then wait for whatever arrives next.
        let got = received::<&str>(Greenlet::main().switch("parent waiting"))?;
        Greenlet::main().switch(format!("parent got {got}"))?;
        Ok(())
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = Builder::new().parent(&parent).build(|_| Ok("child result"));
    // Main switches in, but the child's result goes to its parent, which passes it on.
    assert_eq!(
        value_of::<String>(child.switch(())),
        "parent got child result"
    );
    assert!(child.is_dead());
    assert_eq!(parent.state(), State::Suspended);
}

// Catalog 24 (the finishing greenlet was resumed by a sibling, not by its parent)
#[test]
fn result_goes_to_the_parent_even_when_a_sibling_resumed_it() {
    let child = Greenlet::new(|_| {
        switch_to_parent("child suspended")?;
        Ok("child finished")
    });
    assert_eq!(value_of::<&str>(child.switch(())), "child suspended");
    let child_handle = child.clone();
    let sibling = Greenlet::new(move |_| {
        // Resume the child; it finishes into main, not back here.
        child_handle.switch(())?;
        Ok("sibling finished")
    });
    assert_eq!(value_of::<&str>(sibling.switch(())), "child finished");
    assert_eq!(sibling.state(), State::Suspended);
    assert!(child.is_dead());
}

// Catalog 25 (e12: the parent is dead: the result goes to the grandparent)
#[test]
fn result_skips_a_dead_parent() {
    let dead_parent = Greenlet::new(|_| Ok(()));
    dead_parent.switch(()).unwrap();
    assert!(dead_parent.is_dead());
    let child = Builder::new()
        .parent(&dead_parent)
        .build(|_| Ok("to grandparent"));
    assert_eq!(value_of::<&str>(child.switch(())), "to grandparent");
}

// Catalog 25 (several dead ancestors: the nearest live one receives the result)
#[test]
fn result_goes_to_the_nearest_live_ancestor() {
    let log = Log::new();
    let seen = log.clone();
    let live = Greenlet::new(move |_| {
        let got = received::<&str>(Greenlet::main().switch(()))?;
        seen.push(got);
        Ok("live ancestor done")
    });
    live.switch(()).unwrap();
    // Two greenlets run to death first, then chained above `live`.
    let dead1 = Greenlet::new(|_| Ok(()));
    let dead2 = Greenlet::new(|_| Ok(()));
    dead1.switch(()).unwrap();
    dead2.switch(()).unwrap();
    dead1.set_parent(&live).unwrap();
    dead2.set_parent(&dead1).unwrap();
    assert!(log.is_empty());

    let child = Builder::new().parent(&dead2).build(|_| Ok("deep result"));
    // The result goes to `live`, which returns into main.
    assert_eq!(value_of::<&str>(child.switch(())), "live ancestor done");
    assert_eq!(log.events(), ["deep result"]);
}

// Catalog 26 (test_falling_off_end_switches_to_unstarted_parent_works)
#[test]
fn result_starts_an_unstarted_parent() {
    let parent_never_started = Greenlet::new(|x| {
        let x = x.downcast::<i32>().unwrap();
        Ok((x, 24))
    });
    let child = Builder::new()
        .parent(&parent_never_started)
        .build(|_| Ok(42_i32));
    assert_eq!(value_of::<(i32, i32)>(child.switch(())), (42, 24));
    assert!(child.is_dead());
    assert!(parent_never_started.is_dead());
}

// Catalog 26, 8 (test_falling_off_end_switches_to_unstarted_parent_raises_error: the
// parent cannot take the child's result; its error surfaces in the caller)
#[test]
fn unstarted_parent_rejecting_the_result_errors_in_the_caller() {
    let parent_never_started = Greenlet::new(|x: greenlet::Value| -> Result<i32, Error> {
        // "no_args() takes 0 positional arguments but 1 was given"
        x.downcast::<()>()
            .map_err(|v| Error::msg(format!("takes no argument, got {}", v.type_name())))?;
        Ok(13)
    });
    let child = Builder::new()
        .parent(&parent_never_started)
        .build(|_| Ok(42_i32));
    let error = child.switch(()).unwrap_err();
    assert_eq!(error.to_string(), "takes no argument, got i32");
    assert!(child.is_dead());
    assert!(parent_never_started.is_dead());
}

/// A greenlet that can never start: no stack that large can be had.
fn unstartable() -> Greenlet {
    Builder::new()
        .stack_size(usize::MAX)
        .build(|_| Ok("unstartable ran"))
}

// Catalog 27 (test_parent_return_failure: starting the unstarted parent fails; the failure
// goes on up the chain, to main)
#[test]
fn failure_to_start_the_parent_goes_further_up() {
    let parent = unstartable();
    let log = Log::new();
    let seen = log.clone();
    let child = Builder::new().parent(&parent).build(move |_| {
        seen.push("child ran");
        Ok(42)
    });
    let error = child.switch(()).unwrap_err();
    assert!(
        matches!(error, Error::NoStack(StackError::TooLarge(_))),
        "{error:?}"
    );
    assert_eq!(log.events(), ["child ran"]);
    assert!(child.is_dead());
    // The parent never started and still can be.
    assert_eq!(parent.state(), State::Unstarted);
}

// Catalog 27 (test_switch_to_dead_greenlet_with_unstarted_perverse_parent: the failure is
// raised each time; the child ran once)
#[test]
fn unstartable_parent_fails_every_switch_to_its_dead_child() {
    let parent = unstartable();
    let log = Log::new();
    let seen = log.clone();
    let child = Builder::new().parent(&parent).build(move |_| {
        seen.push(42);
        Ok(())
    });
    assert!(matches!(child.switch(()), Err(Error::NoStack(_))));
    assert_eq!(log.events(), [42]);
    assert!(matches!(child.switch(()), Err(Error::NoStack(_))));
    assert_eq!(log.events(), [42]);
    assert_eq!(parent.state(), State::Unstarted);
}

// Catalog 27 (the failure goes to the next live ancestor above the parent that could not
// start, here a suspended greenlet, at its pending switch)
#[test]
fn failure_to_start_the_parent_reaches_a_suspended_grandparent() {
    let grandparent = Greenlet::new(|_| {
        let outcome = Greenlet::main().switch("waiting");
        Ok(match outcome {
            Err(Error::NoStack(_)) => "grandparent got NoStack",
            Err(_) => "grandparent got another error",
            Ok(_) => "grandparent got a value",
        })
    });
    assert_eq!(value_of::<&str>(grandparent.switch(())), "waiting");
    let parent = Builder::new()
        .parent(&grandparent)
        .stack_size(usize::MAX)
        .build(|_| Ok(()));
    let child = Builder::new().parent(&parent).build(|_| Ok(1));
    assert_eq!(
        value_of::<&str>(child.switch(())),
        "grandparent got NoStack"
    );
    assert_eq!(parent.state(), State::Unstarted);
}
