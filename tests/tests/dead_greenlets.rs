//! Catalog section G: switching to dead greenlets (items 50–53).

use greenlet::{Error, Greenlet, State};
use greenlet_conformance::part1::{Log, TraceRecorder, received, value_of};

/// A greenlet that has already finished.
fn dead_greenlet() -> Greenlet {
    let g = Greenlet::new(|_| Ok(()));
    g.switch(()).unwrap();
    assert!(g.is_dead());
    g
}

// Catalog 50 (test_exception, switching.rst: the dead greenlet's live ancestor is the caller,
// which gets the value straight back)
#[test]
fn switch_to_dead_greenlet_returns_the_value_to_the_current_ancestor() {
    let g = dead_greenlet();
    assert!(g.switch(()).unwrap().is_unit());
    assert_eq!(value_of::<i32>(g.switch(25)), 25);
    assert!(g.is_dead());
    assert!(Greenlet::main().is_current());
}

// Catalog 50 (forwarding skips every dead ancestor; the value arrives unchanged)
#[test]
fn dead_greenlet_forwards_past_dead_ancestors() {
    let a = dead_greenlet();
    let b = dead_greenlet();
    let c = dead_greenlet();
    b.set_parent(&a).unwrap();
    c.set_parent(&b).unwrap();
    assert_eq!(value_of::<String>(c.switch(String::from("x"))), "x");
    // Inside a greenlet, the dead greenlet's chain may lead to that greenlet itself.
    let g = Greenlet::new(move |_| {
        c.set_parent(&Greenlet::current())?;
        let back = received::<&str>(c.switch("to myself"))?;
        Ok((back, Greenlet::current().is_current()))
    });
    assert_eq!(value_of::<(&str, bool)>(g.switch(())), ("to myself", true));
}

// Catalog 50, 17 (forwarding to the current greenlet is traced as a switch to itself)
#[test]
fn switch_to_dead_greenlet_is_traced_as_a_switch_to_the_ancestor() {
    let g = dead_greenlet();
    let recorder = TraceRecorder::install();
    assert_eq!(value_of::<i32>(g.switch(3)), 3);
    let records = recorder.take();
    drop(recorder);
    let main = Greenlet::main();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, greenlet::TraceEvent::Switch);
    assert_eq!((&records[0].1, &records[0].2), (&main, &main));
}

// Catalog 51 (e04: the chain reaches a suspended greenlet: it is resumed with the value and
// the caller gets what it later switches back)
#[test]
fn dead_greenlet_forwards_to_parent() {
    let log = Log::new();
    let seen = log.clone();
    let parent = Greenlet::new(move |_| -> Result<(), Error> {
        let mut got = received::<i32>(Greenlet::main().switch("parent waiting"))?;
        loop {
            seen.push(got);
            got = received::<i32>(Greenlet::main().switch(got * 2))?;
        }
    });
    assert_eq!(value_of::<&str>(parent.switch(())), "parent waiting");
    let child = dead_greenlet();
    child.set_parent(&parent).unwrap();
    assert_eq!(value_of::<i32>(child.switch(42)), 84);
    assert_eq!(value_of::<i32>(child.switch(5)), 10);
    assert_eq!(log.events(), [42, 5]);
    assert_eq!(parent.state(), State::Suspended);
    assert!(child.is_dead());
}

// Catalog 51 (a child that finished into its parent stays a way to reach that parent)
#[test]
fn finished_child_forwards_later_switches_to_its_parent() {
    let parent = Greenlet::new(|_| -> Result<(), Error> {
        let child = Greenlet::new(Ok);
        // The child finishes into us at once.
        let first = received::<&str>(child.switch("child result"))?;
        let main = Greenlet::main();
        let mut reply = format!("parent got {first}");
        loop {
            // Hand the dead child to main; what main sends through it arrives here.
            let sent = received::<&str>(main.switch((reply, child.clone())))?;
            reply = format!("parent got {sent}");
        }
    });
    let (reply, child) = value_of::<(String, Greenlet)>(parent.switch(()));
    assert_eq!(reply, "parent got child result");
    assert!(child.is_dead());
    let (reply, _) = value_of::<(String, Greenlet)>(child.switch("via the dead child"));
    assert_eq!(reply, "parent got via the dead child");
}

// Catalog 52 (test_switch_to_dead_greenlet_reparent: reparenting a dead greenlet to an
// unstarted one and switching to it starts the new parent)
#[test]
fn switch_to_dead_greenlet_reparent() {
    let seen = Log::new();
    let parent_seen = seen.clone();
    let parent_never_started = Greenlet::new(move |arg: greenlet::Value| {
        parent_seen.push(24);
        Ok(arg.is_unit())
    });
    let child_seen = seen.clone();
    let child = Greenlet::new(move |_| {
        child_seen.push(42);
        Ok(())
    });
    assert!(child.switch(()).unwrap().is_unit());
    assert_eq!(seen.events(), [42]);

    child.set_parent(&parent_never_started).unwrap();
    // The same as switching to the parent: it starts with our value and returns to main.
    assert!(value_of::<bool>(child.switch(())));
    assert_eq!(seen.events(), [42, 24]);
    assert!(parent_never_started.is_dead());
}

/// Threads (not on `wasm32`, which has none).
#[cfg(not(target_family = "wasm"))]
mod threads {
    use greenlet::Builder;
    use greenlet_conformance::part1::{SendHandle, TestError};

    use super::*;

    /// A greenlet that ran to its end in a thread that has exited since.
    fn dead_greenlet_of_exited_thread() -> Greenlet {
        let handle = std::thread::spawn(|| {
            let g = Greenlet::new(|_| {
                Greenlet::main().switch(())?;
                Ok(())
            });
            g.switch(()).unwrap();
            g.switch(()).unwrap();
            assert!(g.is_dead());
            SendHandle::new(g)
        });
        match handle.join() {
            Ok(g) => g.into_inner(),
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    // Catalog 53 (e08: a dead greenlet of an exited thread refuses the switch; it does not
    // forward to its parent chain)
    #[test]
    fn switch_to_dead_greenlet_of_exited_thread_fails() {
        let g = dead_greenlet_of_exited_thread();
        assert!(g.is_dead());
        assert!(!g.belongs_to_current_thread());
        let error = g.switch(42).unwrap_err();
        assert!(matches!(error, Error::ThreadExited), "{error:?}");
        assert_eq!(
            error.to_string(),
            "cannot switch to a greenlet of a different thread (which happens to have exited)"
        );
        let error = g.throw(TestError::err("x")).unwrap_err();
        assert!(matches!(error, Error::ThreadExited), "{error:?}");
        let error = g.kill().unwrap_err();
        assert!(matches!(error, Error::ThreadExited), "{error:?}");
        // Our own greenlets are untouched.
        assert!(Greenlet::main().is_current());
        assert_eq!(value_of::<i32>(Greenlet::new(|_| Ok(1)).switch(())), 1);
    }

    // Catalog 53 (its parent, the exited thread's main greenlet, reads as dead and is not
    // reachable either)
    #[test]
    fn parent_of_greenlet_of_exited_thread_is_a_dead_main() {
        let g = dead_greenlet_of_exited_thread();
        let parent = g.parent().unwrap();
        assert!(parent.is_main());
        assert!(parent.is_dead());
        assert_ne!(parent, Greenlet::main());
        assert!(matches!(parent.switch(()), Err(Error::ThreadExited)));
        // Reparenting our own greenlet to it is refused as well.
        let mine = Builder::new().build(|_| Ok(()));
        assert!(matches!(mine.set_parent(&parent), Err(Error::ThreadExited)));
    }
}
