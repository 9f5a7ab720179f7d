//! Catalog section F: `GreenletExit`, the request that a greenlet finish (items 46–49).

use greenlet::{Builder, Error, Greenlet, GreenletExit, State};
use greenlet_conformance::part1::{Log, TestError, received, switch_to_parent, value_of};

// Catalog 46 (GreenletExit is distinct from ordinary errors)
#[test]
fn greenlet_exit_is_distinct_from_ordinary_errors() {
    let exit: Error = GreenletExit::new("bye").into();
    assert!(exit.is_exit());
    assert!(matches!(&exit, Error::Exit(e) if e.message() == "bye"));
    assert_eq!(
        exit.downcast_ref::<GreenletExit>()
            .map(GreenletExit::message),
        Some("bye")
    );
    assert_eq!(exit.to_string(), "GreenletExit: bye");
    assert_eq!(
        Error::Exit(GreenletExit::default()).to_string(),
        "GreenletExit"
    );

    let ordinary = TestError::err("ValueError");
    assert!(!ordinary.is_exit());
    assert!(ordinary.downcast_ref::<GreenletExit>().is_none());
    assert!(!Error::msg("GreenletExit").is_exit());
}

// Catalog 46, 47 (a GreenletExit made with the generic constructor is still a GreenletExit)
#[test]
fn greenlet_exit_wrapped_by_error_new_is_still_an_exit() {
    let exit = Error::new(GreenletExit::new("wrapped"));
    assert!(exit.is_exit(), "{exit:?}");
    let g =
        Greenlet::new(|_| -> Result<(), Error> { Err(Error::new(GreenletExit::new("wrapped"))) });
    assert_eq!(value_of::<GreenletExit>(g.switch(())).message(), "wrapped");
}

// Catalog 46 (e03: "suspended throw() -> ('caughtbase', 'GreenletExit')": code that handles
// ordinary errors lets GreenletExit through, and the greenlet can tell them apart)
#[test]
fn handler_for_ordinary_errors_lets_greenlet_exit_through() {
    let log = Log::new();
    let seen = log.clone();
    let g = Greenlet::new(move |_| -> Result<(), Error> {
        loop {
            match switch_to_parent(()) {
                Err(e) if !e.is_exit() => seen.push(format!("handled {e}")),
                Err(e) => {
                    seen.push(String::from("caught base: GreenletExit"));
                    return Err(e);
                }
                Ok(_) => {}
            }
        }
    });
    g.switch(()).unwrap();
    g.throw(Error::msg("ValueError")).unwrap();
    assert_eq!(g.state(), State::Suspended);
    assert!(value_of::<GreenletExit>(g.kill()).message().is_empty());
    assert!(g.is_dead());
    assert_eq!(
        log.events(),
        ["handled ValueError", "caught base: GreenletExit"]
    );
}

// Catalog 47 (switching.rst "Dying greenlet": a GreenletExit escaping run is returned to
// the parent as a value)
#[test]
fn greenlet_exit_escaping_run_is_returned_to_the_parent() {
    let g = Greenlet::new(|_| -> Result<(), Error> { Err(GreenletExit::new("x").into()) });
    let exit = value_of::<GreenletExit>(g.switch(()));
    assert_eq!(exit, GreenletExit::new("x"));
    assert!(g.is_dead());
}

// Catalog 47 (the GreenletExit arrives as a value at a parent suspended elsewhere too)
#[test]
fn greenlet_exit_reaches_a_suspended_parent_as_a_value() {
    let parent = Greenlet::new(|_| {
        let exit = received::<GreenletExit>(Greenlet::main().switch("parent waiting"))?;
        Ok(format!("parent got value {exit}"))
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = Builder::new()
        .parent(&parent)
        .build(|_| -> Result<(), Error> { Err(GreenletExit::new("sub").into()) });
    assert_eq!(
        value_of::<String>(child.switch(())),
        "parent got value GreenletExit: sub"
    );
    assert!(child.is_dead() && parent.is_dead());
}

// Catalog 47, 48 (test_kill: kill() throws GreenletExit, the greenlet passes it on with `?`
// and dies; kill() returns the GreenletExit)
#[test]
fn kill_returns_greenlet_exit_and_the_greenlet_is_dead() {
    let log = Log::new();
    let seen = log.clone();
    let g = Greenlet::new(move |_| {
        switch_to_parent("ok")?;
        seen.push("fail");
        switch_to_parent("fail")?;
        Ok(())
    });
    assert_eq!(value_of::<&str>(g.switch(())), "ok");
    let exit = value_of::<GreenletExit>(g.kill());
    assert_eq!(exit, GreenletExit::default());
    assert_eq!(exit.message(), "");
    assert!(g.is_dead());
    assert!(log.is_empty());
}

// Catalog 48 (kill is throw(GreenletExit): a greenlet that handles it and returns gives its
// own result instead)
#[test]
fn kill_returns_what_a_greenlet_handling_it_returns() {
    let g = Greenlet::new(|_| match switch_to_parent(()) {
        Err(e) if e.is_exit() => Ok("cleaned up"),
        Err(e) => Err(e),
        Ok(_) => Ok("resumed"),
    });
    g.switch(()).unwrap();
    assert_eq!(value_of::<&str>(g.kill()), "cleaned up");
    assert!(g.is_dead());
}

// Catalog 39, 48 (a greenlet that swallows the GreenletExit and switches back survives; the
// kill returns what it switched)
#[test]
fn kill_returns_what_a_greenlet_swallowing_it_switches_back() {
    let g = Greenlet::new(|_| -> Result<(), Error> {
        let first = switch_to_parent(());
        let said = if first.is_err_and(|e| e.is_exit()) {
            "not dying"
        } else {
            "no kill"
        };
        switch_to_parent(said)?;
        Ok(())
    });
    g.switch(()).unwrap();
    assert_eq!(value_of::<&str>(g.kill()), "not dying");
    assert_eq!(g.state(), State::Suspended);
    // A second kill is passed on with `?`.
    assert!(value_of::<GreenletExit>(g.kill()).message().is_empty());
    assert!(g.is_dead());
}

// Catalog 47 (a kill thrown into a child whose parent is another greenlet: the child's
// GreenletExit goes to that parent as a value, not to the killer)
#[test]
fn killed_childs_greenlet_exit_goes_to_its_parent_as_a_value() {
    let parent = Greenlet::new(|_| {
        let got = Greenlet::main().switch("parent waiting");
        Ok(match got {
            Ok(v) if v.is::<GreenletExit>() => "parent got GreenletExit as a value",
            Ok(_) => "parent got another value",
            Err(_) => "parent got an error",
        })
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = Builder::new().parent(&parent).build(|_| {
        Greenlet::main().switch("child waiting")?;
        Ok(())
    });
    assert_eq!(value_of::<&str>(child.switch(())), "child waiting");
    assert_eq!(
        value_of::<&str>(child.kill()),
        "parent got GreenletExit as a value"
    );
    assert!(child.is_dead() && parent.is_dead());
}
