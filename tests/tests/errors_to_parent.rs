//! Catalog section D: errors (and, where panics unwind, panics) that kill a greenlet go to
//! its parent (items 29–35).

use greenlet::{Builder, Error, Greenlet, State};
use greenlet_conformance::part1::{
    DropCounter, Log, TestError, switch_to_parent, test_error, value_of,
};

/// `fmain` of greenlet's test_greenlet.py: wait at the parent; log any error that arrives
/// there and die of it; if resumed normally, die of `SomeError`.
fn fmain(seen: Log<&'static str>) -> impl FnOnce(greenlet::Value) -> Result<(), Error> {
    move |_| {
        if let Err(error) = switch_to_parent(()) {
            seen.push(test_error(&error).unwrap_or("other error"));
            return Err(error);
        }
        Err(TestError::err("SomeError"))
    }
}

// Catalog 29, 30, 50 (test_exception)
#[test]
fn error_kills_the_greenlet_and_is_raised_in_the_parent_chain() {
    let seen = Log::new();
    let g1 = Greenlet::new(fmain(seen.clone()));
    let g2 = Greenlet::new(fmain(seen.clone()));
    g1.switch(()).unwrap();
    g2.switch(()).unwrap();
    g2.set_parent(&g1).unwrap();
    assert!(seen.is_empty());

    // g2 dies of SomeError, which is raised in g1 at its pending switch; g1 logs it and
    // dies of it too; main gets it.
    let error = g2.switch(()).unwrap_err();
    assert_eq!(test_error(&error), Some("SomeError"));
    assert_eq!(seen.events(), ["SomeError"]);
    assert!(g1.is_dead() && g2.is_dead());

    // Switching to the dead g2 goes to main, the current greenlet: the value comes back.
    assert!(g2.switch(()).unwrap().is_unit());
    assert_eq!(seen.events(), ["SomeError"]);
    assert_eq!(value_of::<i32>(g2.switch(25)), 25);
    assert_eq!(seen.events(), ["SomeError"]);
}

// Catalog 29, 30 (test_send_exception: a child that dies of an error delivers it into its
// suspended parent)
#[test]
fn error_of_a_crashing_child_is_raised_in_its_suspended_parent() {
    let seen = Log::new();
    let g1 = Greenlet::new(fmain(seen.clone()));
    g1.switch(()).unwrap();
    // send_exception(g1, KeyError): a child of g1 that raises what it is given.
    let crasher = Builder::new()
        .parent(&g1)
        .build(|exc: greenlet::Value| -> Result<(), Error> {
            Err(TestError::err(exc.downcast::<&'static str>().unwrap()))
        });
    let error = crasher.switch("KeyError").unwrap_err();
    assert_eq!(test_error(&error), Some("KeyError"));
    assert_eq!(seen.events(), ["KeyError"]);
    assert!(crasher.is_dead() && g1.is_dead());
}

// Catalog 29 (greenlet.rst: the error arrives at the parent's pending switch, the child is
// dead, and its destructors ran before the parent saw the error)
#[test]
fn error_returned_by_run_arrives_at_the_parents_switch() {
    let counter = DropCounter::new();
    let token = counter.token();
    let g = Greenlet::new(move |_| -> Result<(), Error> {
        let _guard = token;
        Err(TestError::err("NameError"))
    });
    let error = g.switch(()).unwrap_err();
    assert_eq!(test_error(&error), Some("NameError"));
    assert_eq!(error.to_string(), "test error: NameError");
    assert_eq!(counter.dropped(), 1);
    assert_eq!(g.state(), State::Dead);
}

// Catalog 30 (e03: the parent is suspended elsewhere and catches the error)
#[test]
fn parent_suspended_elsewhere_can_catch_the_childs_error() {
    let parent = Greenlet::new(|_| {
        let outcome = Greenlet::main().switch("parent waiting");
        Ok(match outcome {
            Err(e) => format!("parent caught {}", test_error(&e).unwrap_or("?")),
            Ok(_) => String::from("parent got a value"),
        })
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = Builder::new()
        .parent(&parent)
        .build(|_| -> Result<(), Error> { Err(TestError::err("ValueError")) });
    // Main switched in, but the error goes to the parent, which handles it and returns.
    assert_eq!(
        value_of::<String>(child.switch(())),
        "parent caught ValueError"
    );
    assert!(child.is_dead() && parent.is_dead());
}

// Catalog 30 (e03: a parent that handles only another error dies of this one, which goes on
// to its own parent)
#[test]
fn error_not_handled_by_the_parent_kills_it_too() {
    let log = Log::new();
    let seen = log.clone();
    let parent = Greenlet::new(move |_| -> Result<(), Error> {
        match switch_to_parent("parent waiting") {
            // Handles only ValueError, like `except ValueError`.
            Err(e) if test_error(&e) == Some("ValueError") => {
                seen.push("parent handled ValueError");
                Ok(())
            }
            Err(e) => {
                seen.push("parent passes the error on");
                Err(e)
            }
            Ok(_) => Ok(()),
        }
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let raiser = Builder::new()
        .parent(&parent)
        .build(|_| -> Result<(), Error> { Err(TestError::err("KeyError")) });
    let error = raiser.switch(()).unwrap_err();
    assert_eq!(test_error(&error), Some("KeyError"));
    assert_eq!(log.events(), ["parent passes the error on"]);
    assert!(raiser.is_dead() && parent.is_dead());
}

// Catalog 35 (test_leak_test_exception_switch_and_do_in_g2: repeated error deaths free
// every greenlet)
#[test]
fn greenlets_dying_of_errors_are_all_freed() {
    let counter = DropCounter::new();
    const ROUNDS: usize = 300;
    for i in 0..ROUNDS {
        let token = counter.token();
        let g = Greenlet::new(move |_| -> Result<(), Error> {
            let _guard = token;
            switch_to_parent(())?;
            Err(TestError::err("boom"))
        });
        g.set_local(counter.token());
        g.switch(()).unwrap();
        let error = g.switch(()).unwrap_err();
        assert_eq!(test_error(&error), Some("boom"));
        // The closure's captures went with the run; the local storage with the handle.
        assert_eq!(counter.dropped(), 2 * i + 1);
        drop(g);
        assert_eq!(counter.dropped(), 2 * i + 2);
    }
}

/// Panics: decision 3 of the catalog. Only where panics unwind.
#[cfg(panic = "unwind")]
mod panics {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use greenlet_conformance::part1::{QuietPanic, panic_message, quiet_panic};

    use super::*;

    /// The panic message of test_exception_switch's `exception_t(depth)`.
    const DEPTHS: [&str; 4] = ["depth 0", "depth 1", "depth 2", "depth 3"];

    /// Recurses `left` more times, switches to the parent, then panics with `DEPTHS[depth]`
    /// and catches it in the same frame: a panic must be caught where it was raised.
    fn exception_switch_recurse(depth: u32, left: u32) -> Result<u32, Error> {
        if left > 0 {
            return exception_switch_recurse(depth, left - 1);
        }
        let caught = catch_unwind(AssertUnwindSafe(|| -> Result<(), Error> {
            switch_to_parent(())?;
            quiet_panic(DEPTHS[depth as usize]);
        }));
        match caught {
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Err(Error::msg("throwing the panic didn't work")),
            Err(payload) => match payload.downcast::<QuietPanic>() {
                Ok(p) if p.0 == DEPTHS[depth as usize] => Ok(depth),
                Ok(_) => Err(Error::msg("depth mismatch")),
                Err(_) => Err(Error::msg("unexpected panic payload")),
            },
        }
    }

    // Catalog 33 (test_exception_switch: 4 greenlets, each catches its own panic after
    // switching)
    #[test]
    fn panic_caught_within_a_greenlet_after_switches_stays_there() {
        let mut greenlets = Vec::new();
        for i in 0..4 {
            let g = Greenlet::new(|depth: greenlet::Value| {
                let depth = depth.downcast::<u32>().unwrap();
                exception_switch_recurse(depth, depth)
            });
            g.switch(i as u32).unwrap();
            greenlets.push(g);
        }
        for (i, g) in greenlets.iter().enumerate() {
            assert_eq!(value_of::<u32>(g.switch(())), i as u32);
            assert!(g.is_dead());
        }
    }

    // Catalog 34 (decision 3: a panic escaping run kills the greenlet and continues
    // unwinding in the parent at its pending switch)
    #[test]
    fn panic_escaping_run_continues_in_the_parent() {
        let counter = DropCounter::new();
        let token = counter.token();
        let g = Greenlet::new(move |_| -> Result<(), Error> {
            let _guard = token;
            switch_to_parent("about to panic")?;
            quiet_panic("greenlet panicked");
        });
        assert_eq!(value_of::<&str>(g.switch(())), "about to panic");
        let payload = catch_unwind(AssertUnwindSafe(|| g.switch(()))).unwrap_err();
        assert_eq!(panic_message(&*payload), "greenlet panicked");
        assert_eq!(g.state(), State::Dead);
        // The greenlet's destructors ran while the panic left it.
        assert_eq!(counter.dropped(), 1);
        // Main is current again and keeps working.
        assert!(Greenlet::current().is_main());
        let h = Greenlet::new(|_| Ok(7));
        assert_eq!(value_of::<i32>(h.switch(())), 7);
    }

    // Catalog 30, 34 (a panic goes to a parent suspended elsewhere, which may catch it)
    #[test]
    fn panic_goes_to_the_parent_suspended_elsewhere() {
        let parent = Greenlet::new(|_| {
            let caught = catch_unwind(|| Greenlet::main().switch("parent waiting"));
            Ok(match caught {
                Err(payload) => format!("parent caught: {}", panic_message(&*payload)),
                Ok(_) => String::from("parent not panicked"),
            })
        });
        assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
        let child = Builder::new()
            .parent(&parent)
            .build(|_| -> Result<(), Error> { quiet_panic("child panicked") });
        assert_eq!(
            value_of::<String>(child.switch(())),
            "parent caught: child panicked"
        );
        assert!(child.is_dead() && parent.is_dead());
    }

    // Catalog 30, 34 (an uncaught panic goes up the whole chain, killing every greenlet)
    #[test]
    fn uncaught_panic_unwinds_through_the_parent_chain() {
        let log = Log::new();
        let seen = log.clone();
        struct Logs(Log<&'static str>);
        impl Drop for Logs {
            fn drop(&mut self) {
                self.0.push("parent unwound");
            }
        }
        let parent = Greenlet::new(move |_| -> Result<(), Error> {
            let _logs = Logs(seen);
            switch_to_parent("parent waiting")?;
            Ok(())
        });
        assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
        let child = Builder::new()
            .parent(&parent)
            .build(|_| -> Result<(), Error> { quiet_panic("child panicked") });
        let payload = catch_unwind(AssertUnwindSafe(|| child.switch(()))).unwrap_err();
        assert_eq!(panic_message(&*payload), "child panicked");
        assert_eq!(log.events(), ["parent unwound"]);
        assert!(child.is_dead() && parent.is_dead());
    }

    // Catalog 26, 34 (a panic that reaches an unstarted parent kills it without running
    // it, and goes on to main)
    #[test]
    fn panic_reaching_an_unstarted_parent_kills_it_without_running_it() {
        let log = Log::new();
        let seen = log.clone();
        let parent = Greenlet::new(move |_| {
            seen.push("parent ran");
            Ok(())
        });
        let child = Builder::new()
            .parent(&parent)
            .build(|_| -> Result<(), Error> { quiet_panic("child panicked") });
        let payload = catch_unwind(AssertUnwindSafe(|| child.switch(()))).unwrap_err();
        assert_eq!(panic_message(&*payload), "child panicked");
        assert!(child.is_dead() && parent.is_dead());
        assert!(log.is_empty());
    }

    // Catalog 35 (repeated panic deaths free every greenlet)
    #[test]
    fn greenlets_dying_of_panics_are_all_freed() {
        let counter = DropCounter::new();
        const ROUNDS: usize = 100;
        for i in 0..ROUNDS {
            let token = counter.token();
            let g = Greenlet::new(move |_| -> Result<(), Error> {
                let _guard = token;
                switch_to_parent(())?;
                quiet_panic(DEPTHS[i % 4]);
            });
            g.set_local(counter.token());
            g.switch(()).unwrap();
            let payload = catch_unwind(AssertUnwindSafe(|| g.switch(()))).unwrap_err();
            assert_eq!(panic_message(&*payload), DEPTHS[i % 4]);
            assert_eq!(counter.dropped(), 2 * i + 1);
            drop(g);
            assert_eq!(counter.dropped(), 2 * i + 2);
        }
    }
}
