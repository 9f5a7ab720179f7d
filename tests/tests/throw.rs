//! Catalog section E: `throw` (items 36–45).

use greenlet::{Builder, Error, Greenlet, GreenletExit, State};
use greenlet_conformance::part1::{
    DropCounter, Log, TestError, received, switch_to_parent, test_error, value_of,
};

/// The message of an error: the name of a [`TestError`], or the text of any other.
fn message(error: &Error) -> String {
    test_error(error).map_or_else(|| error.to_string(), String::from)
}

/// `f` of test_class / test_val: waits at the parent, reporting "ok"; if the error it
/// expects is thrown there, reports "ok" again and returns; otherwise reports "fail".
fn catches(expected: &'static str) -> impl FnOnce(greenlet::Value) -> Result<(), Error> {
    move |_| {
        if let Err(e) = switch_to_parent("ok")
            && message(&e) == expected
        {
            switch_to_parent("ok")?;
            return Ok(());
        }
        switch_to_parent("fail")?;
        Ok(())
    }
}

// Catalog 36, 39 (test_class)
#[test]
fn throw_raises_at_the_pending_switch_of_the_target() {
    let g = Greenlet::new(catches("RuntimeError"));
    assert_eq!(value_of::<&str>(g.switch(())), "ok");
    assert_eq!(
        value_of::<&str>(g.throw(TestError::err("RuntimeError"))),
        "ok"
    );
    assert_eq!(g.state(), State::Suspended);
}

// Catalog 37, 39 (test_val: the thrown instance, with its message, is what arrives)
#[test]
fn thrown_error_instance_arrives_with_its_message() {
    let g = Greenlet::new(catches("ciao"));
    assert_eq!(value_of::<&str>(g.switch(())), "ok");
    assert_eq!(value_of::<&str>(g.throw(TestError::err("ciao"))), "ok");

    // The message-only form.
    let g = Greenlet::new(catches("ciao"));
    assert_eq!(value_of::<&str>(g.switch(())), "ok");
    assert_eq!(value_of::<&str>(g.throw(Error::msg("ciao"))), "ok");

    // Another message is not the one expected: the greenlet reports "fail".
    let g = Greenlet::new(catches("ciao"));
    assert_eq!(value_of::<&str>(g.switch(())), "ok");
    assert_eq!(value_of::<&str>(g.throw(Error::msg("addio"))), "fail");
}

// Catalog 37 (a thrown error keeps its type: the target can downcast it)
#[test]
fn thrown_error_keeps_its_type() {
    let g = Greenlet::new(|_| {
        let error = switch_to_parent(()).unwrap_err();
        let io = error
            .downcast_ref::<std::io::Error>()
            .map(|e| (e.kind(), e.to_string()));
        Ok(io)
    });
    g.switch(()).unwrap();
    let seen = g.throw(Error::new(std::io::Error::other("disk full")));
    assert_eq!(
        value_of::<Option<(std::io::ErrorKind, String)>>(seen),
        Some((std::io::ErrorKind::Other, String::from("disk full")))
    );
}

// Catalog 39 (the greenlet catches the error and returns: its result is throw's result)
#[test]
fn throw_returns_what_the_catching_greenlet_returns() {
    let g = Greenlet::new(|_| match switch_to_parent(()) {
        Err(e) => Ok(format!("handled {}", test_error(&e).unwrap_or("?"))),
        Ok(_) => Ok(String::from("no error")),
    });
    g.switch(()).unwrap();
    assert_eq!(
        value_of::<String>(g.throw(TestError::err("ValueError"))),
        "handled ValueError"
    );
    assert!(g.is_dead());
}

// Catalog 40 (creating_executing_greenlets.rst: an uncaught error kills the greenlet and
// is raised in the thrower, its parent; the greenlet's destructors run on the way out)
#[test]
fn uncaught_thrown_error_kills_the_target_and_returns_to_the_thrower() {
    let counter = DropCounter::new();
    let token = counter.token();
    let log = Log::new();
    let seen = log.clone();
    let g = Greenlet::new(move |_| -> Result<(), Error> {
        let _guard = token;
        switch_to_parent(())?;
        seen.push("not reached");
        Ok(())
    });
    g.switch(()).unwrap();
    let error = g.throw(TestError::err("ValueError")).unwrap_err();
    assert_eq!(test_error(&error), Some("ValueError"));
    assert!(g.is_dead());
    assert_eq!(counter.dropped(), 1);
    assert!(log.is_empty());
}

/// `f1` of test_throw_goes_to_original_parent.
fn f1(main: Greenlet) -> impl FnOnce(greenlet::Value) -> Result<&'static str, Error> {
    move |_| match main.switch("f1 ready to catch") {
        Err(e) if test_error(&e) == Some("IndexError") => Ok("caught"),
        Err(e) => Err(e),
        Ok(_) => Ok("normal exit"),
    }
}

/// `f2` of test_throw_goes_to_original_parent.
fn f2(main: Greenlet) -> impl FnOnce(greenlet::Value) -> Result<(), Error> {
    move |_| {
        main.switch("from f2")?;
        Ok(())
    }
}

// Catalog 41, 42 (test_throw_goes_to_original_parent, first case: both unstarted; g2 dies
// without running, the error starts g1 which dies of it without running)
#[test]
fn throw_into_unstarted_child_of_unstarted_parent_kills_both() {
    let main = Greenlet::main();
    let g1 = Greenlet::new(f1(main.clone()));
    let g2 = Builder::new().parent(&g1).build(f2(main));
    let error = g2.throw(TestError::err("IndexError")).unwrap_err();
    assert_eq!(test_error(&error), Some("IndexError"));
    assert!(g2.is_dead());
    assert!(g1.is_dead());
}

// Catalog 41 (second case: g1 waits to catch; the throw into the unstarted g2 ends in g1)
#[test]
fn throw_goes_to_original_parent() {
    let main = Greenlet::main();
    let g1 = Greenlet::new(f1(main.clone()));
    let g2 = Builder::new().parent(&g1).build(f2(main));
    assert_eq!(value_of::<&str>(g1.switch(())), "f1 ready to catch");
    assert_eq!(
        value_of::<&str>(g2.throw(TestError::err("IndexError"))),
        "caught"
    );
    assert!(g2.is_dead());
    assert!(g1.is_dead());
}

// Catalog 40, 41 (third case: g2 suspended in a switch to main, not to its parent; its
// death by the thrown error still goes to g1)
#[test]
fn throw_into_suspended_child_goes_to_its_parent_not_the_thrower() {
    let main = Greenlet::main();
    let g1 = Greenlet::new(f1(main.clone()));
    let g2 = Builder::new().parent(&g1).build(f2(main));
    assert_eq!(value_of::<&str>(g1.switch(())), "f1 ready to catch");
    assert_eq!(value_of::<&str>(g2.switch(())), "from f2");
    assert_eq!(
        value_of::<&str>(g2.throw(TestError::err("IndexError"))),
        "caught"
    );
    assert!(g2.is_dead());
    assert!(g1.is_dead());
}

// Catalog 42 (e03: run is never called; its closure is dropped at the throw; the error
// goes to the parent)
#[test]
fn throw_into_unstarted_greenlet_never_runs_it() {
    let counter = DropCounter::new();
    let token = counter.token();
    let log = Log::new();
    let seen = log.clone();
    let g = Greenlet::new(move |_| {
        seen.push("run called");
        drop(token);
        Ok(())
    });
    let error = g.throw(TestError::err("x")).unwrap_err();
    assert_eq!(test_error(&error), Some("x"));
    assert!(g.is_dead());
    assert!(log.is_empty());
    // The closure and its captures are gone although the handle is still here.
    assert_eq!(counter.dropped(), 1);
}

// Catalog 42, 47, 48 (e03: a GreenletExit thrown into an unstarted greenlet comes back as
// a value)
#[test]
fn greenlet_exit_thrown_into_unstarted_greenlet_comes_back_as_value() {
    let log = Log::new();
    let seen = log.clone();
    let g = Greenlet::new(move |_| {
        seen.push("run called");
        Ok(())
    });
    let exit = value_of::<GreenletExit>(g.kill());
    assert_eq!(exit, GreenletExit::default());
    assert!(g.is_dead());

    let g = Greenlet::new(move |_| Ok(()));
    let exit = value_of::<GreenletExit>(g.throw(GreenletExit::new("bye").into()));
    assert_eq!(exit.message(), "bye");
    assert!(g.is_dead());
    assert!(log.is_empty());
}

// Catalog 42, 45 (the thrown-into greenlet's closure is dropped; a Drop that runs user
// code, here a whole greenlet, is fine, and the pending error is not lost)
#[test]
fn closure_dropped_by_throw_into_unstarted_greenlet_may_run_greenlets() {
    let log = Log::new();
    struct RunsAGreenletOnDrop(Log<&'static str>);
    impl Drop for RunsAGreenletOnDrop {
        fn drop(&mut self) {
            let log = self.0.clone();
            let g = Greenlet::new(move |_| {
                log.push("greenlet run from Drop");
                Ok(())
            });
            if g.switch(()).is_ok() {
                self.0.push("drop finished");
            }
        }
    }
    let capture = RunsAGreenletOnDrop(log.clone());
    let g = Greenlet::new(move |_| {
        let _capture = capture;
        Ok("run called")
    });
    let error = g.throw(TestError::err("pending error")).unwrap_err();
    // Catalog 45: the pending error is intact after user code ran in the start path.
    assert_eq!(test_error(&error), Some("pending error"));
    assert_eq!(log.events(), ["greenlet run from Drop", "drop finished"]);
    assert!(g.is_dead());
}

// Catalog 43 (test_kill: throw into a dead greenlet: GreenletExit comes back as a value)
#[test]
fn kill_of_a_dead_greenlet_returns_greenlet_exit() {
    let g = Greenlet::new(|_| {
        switch_to_parent("ok")?;
        switch_to_parent("fail")?;
        Ok(())
    });
    assert_eq!(value_of::<&str>(g.switch(())), "ok");
    assert_eq!(value_of::<GreenletExit>(g.kill()), GreenletExit::default());
    assert!(g.is_dead());
    // Immediately eaten by the already dead greenlet.
    assert_eq!(value_of::<GreenletExit>(g.kill()), GreenletExit::default());
    let exit = value_of::<GreenletExit>(g.throw(GreenletExit::new("again").into()));
    assert_eq!(exit.message(), "again");
}

// Catalog 43 (e03: another error thrown into a dead greenlet whose live ancestor is the
// caller is raised right there)
#[test]
fn error_thrown_into_dead_greenlet_is_raised_in_the_caller() {
    let g = Greenlet::new(|_| Ok(()));
    g.switch(()).unwrap();
    let error = g.throw(TestError::err("ValueError")).unwrap_err();
    assert_eq!(test_error(&error), Some("ValueError"));
    assert!(Greenlet::current().is_main());
}

// Catalog 43 (e03: throw into a dead child whose parent is suspended elsewhere: the parent
// receives the error at its own switch point)
#[test]
fn error_thrown_into_dead_greenlet_reaches_its_suspended_parent() {
    let parent = Greenlet::new(|_| {
        let outcome = Greenlet::main().switch("parent waiting");
        Ok(match outcome {
            Err(e) => format!("parent received {}", test_error(&e).unwrap_or("?")),
            Ok(_) => String::from("parent received a value"),
        })
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = Greenlet::new(|_| Ok(()));
    child.switch(()).unwrap();
    child.set_parent(&parent).unwrap();
    assert_eq!(
        value_of::<String>(child.throw(TestError::err("boom"))),
        "parent received boom"
    );
    assert!(parent.is_dead());
}

// Catalog 43 (a GreenletExit thrown into a dead child arrives at its suspended parent as a
// value, not as an error)
#[test]
fn greenlet_exit_thrown_into_dead_greenlet_reaches_its_parent_as_value() {
    let parent = Greenlet::new(|_| {
        let got = received::<GreenletExit>(Greenlet::main().switch("parent waiting"))?;
        Ok(format!("parent received the value {got}"))
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = Greenlet::new(|_| Ok(()));
    child.switch(()).unwrap();
    child.set_parent(&parent).unwrap();
    assert_eq!(
        value_of::<String>(child.kill()),
        "parent received the value GreenletExit"
    );
}

// Catalog 44 (e09: throwing into the current greenlet raises right there, a GreenletExit
// included, which is not turned into a value)
#[test]
fn throw_into_current_greenlet_returns_the_error_at_once() {
    let main = Greenlet::main();
    let error = main.throw(TestError::err("ValueError")).unwrap_err();
    assert_eq!(test_error(&error), Some("ValueError"));
    let error = main.kill().unwrap_err();
    assert!(error.is_exit(), "{error:?}");
    assert!(main.is_current());

    let g = Greenlet::new(|_| {
        let me = Greenlet::current();
        let exit = me.kill();
        let other = me.throw(TestError::err("inner"));
        Ok((
            matches!(exit, Err(Error::Exit(_))),
            other.err().and_then(|e| test_error(&e)),
            me.is_current(),
        ))
    });
    assert_eq!(
        value_of::<(bool, Option<&str>, bool)>(g.switch(())),
        (true, Some("inner"), true)
    );
}
