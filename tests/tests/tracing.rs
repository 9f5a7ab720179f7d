//! L. Tracing: the per-thread trace hook (catalog items 89–95).
//!
//! The hook is per thread; where tests share a thread (wasm32), each test removes its hook
//! before it ends.

use std::cell::RefCell;
use std::rc::Rc;

use greenlet::{Error, Greenlet, TraceEvent, Tracer, is_tracing, settrace};
use greenlet_conformance::part2::{Counter, Log, expect_thrown, expect_value};

/// Names greenlets in trace records: "main", or the name given with the builder.
fn name(g: &Greenlet) -> String {
    if g.is_main() {
        "main".to_owned()
    } else {
        g.name().unwrap_or("?").to_owned()
    }
}

/// Installs a hook recording `(event, origin, target, current-is-target)`; returns the log.
fn record() -> Rc<RefCell<Vec<String>>> {
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let log_in = log.clone();
    settrace(Some(Box::new(move |event, origin, target| {
        let ev = match event {
            TraceEvent::Switch => "switch",
            TraceEvent::Throw => "throw",
            _ => "other",
        };
        let in_target = Greenlet::current() == *target;
        log_in.borrow_mut().push(format!(
            "{ev} {}->{}{}",
            name(origin),
            name(target),
            if in_target { "" } else { " (not in target!)" }
        ));
        Ok(())
    })));
    log
}

/// Removes the hook and returns what it recorded.
fn stop(log: Rc<RefCell<Vec<String>>>) -> Vec<String> {
    settrace(None);
    log.take()
}

fn named<F>(name: &str, f: F) -> Greenlet
where
    F: FnOnce(greenlet::Value) -> Result<(), Error> + 'static,
{
    Greenlet::builder().name(name).build(f)
}

// Catalog 89
#[test]
fn settrace_returns_the_previous_hook_and_none_clears_it() {
    assert!(!is_tracing());
    let calls = Counter::new();
    let calls_in = calls.clone();
    let hook: Tracer = Box::new(move |_, _, _| {
        calls_in.bump();
        Ok(())
    });
    assert!(settrace(Some(hook)).is_none());
    assert!(is_tracing());
    Greenlet::new(|_| Ok(())).switch(()).unwrap();
    assert_eq!(calls.get(), 2);
    // Setting the same hook again is fine: take it out and put it back.
    let same = settrace(None).expect("the hook installed above");
    assert!(!is_tracing());
    assert!(settrace(Some(same)).is_none());
    Greenlet::new(|_| Ok(())).switch(()).unwrap();
    assert_eq!(calls.get(), 4);
    assert!(settrace(None).is_some());
    assert!(settrace(None).is_none());
    Greenlet::new(|_| Ok(())).switch(()).unwrap();
    assert_eq!(calls.get(), 4);
}

// Catalog 89
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn another_thread_is_not_traced() {
    let log = record();
    let other = std::thread::spawn(|| {
        let untraced = !is_tracing();
        let g = Greenlet::new(|_| Ok(()));
        g.switch(()).unwrap();
        untraced
    })
    .join()
    .unwrap();
    assert!(other);
    assert!(stop(log).is_empty());
}

// Catalog 90, 91
#[test]
fn start_and_finish_are_two_switch_events_seen_in_the_target() {
    let a = named("a", |_| {
        Greenlet::main().switch(())?;
        Ok(())
    });
    let log = record();
    a.switch(()).unwrap();
    a.switch(()).unwrap();
    assert_eq!(
        stop(log),
        [
            "switch main->a",
            "switch a->main",
            "switch main->a",
            "switch a->main"
        ]
    );
}

// Catalog 91
#[test]
fn death_by_error_is_a_throw_event_to_the_parent() {
    let b = named("b", |_| Err(Error::msg("boom")));
    let log = record();
    assert_eq!(expect_thrown(b.switch(())), "boom");
    assert_eq!(stop(log), ["switch main->b", "throw b->main"]);
}

// Catalog 91
#[test]
fn uncaught_throw_into_a_suspended_greenlet_is_two_throw_events() {
    let c = named("c", |_| {
        Greenlet::main().switch(())?;
        Ok(())
    });
    c.switch(()).unwrap();
    let log = record();
    assert_eq!(expect_thrown(c.throw(Error::msg("x"))), "x");
    assert_eq!(stop(log), ["throw main->c", "throw c->main"]);
}

// Catalog 91
#[test]
fn throw_into_an_unstarted_greenlet_is_two_throw_events() {
    let d = named("d", |_| Ok(()));
    let log = record();
    assert_eq!(expect_thrown(d.throw(Error::msg("x"))), "x");
    assert_eq!(stop(log), ["throw main->d", "throw d->main"]);
}

// Catalog 91
#[test]
fn kill_on_drop_is_a_throw_in_and_a_switch_out() {
    let e = named("e", |_| {
        Greenlet::main().switch(())?;
        Ok(())
    });
    e.switch(()).unwrap();
    let log = record();
    drop(e);
    assert_eq!(stop(log), ["throw main->e", "switch e->main"]);
}

// Catalog 91 (and 17, 50 seen by the hook)
#[test]
fn switch_to_self_or_to_a_dead_child_of_the_current_greenlet_is_a_self_switch_event() {
    let dead = named("dead", |_| Ok(()));
    dead.switch(()).unwrap();
    let log = record();
    assert_eq!(expect_value::<i32>(Greenlet::main().switch(7)), 7);
    assert_eq!(expect_value::<i32>(dead.switch(25)), 25);
    assert_eq!(stop(log), ["switch main->main", "switch main->main"]);
}

// Catalog 92
#[test]
fn failing_hook_on_a_switch_is_raised_in_the_target_and_disables_tracing() {
    let g = named("g", |_| {
        match Greenlet::main().switch(()) {
            Err(e) => Greenlet::main().switch(format!("g caught: {e}"))?,
            Ok(_) => Greenlet::main().switch(String::from("g got a value"))?,
        };
        Ok(())
    });
    g.switch(()).unwrap();
    settrace(Some(Box::new(|_, _, _| Err(Error::msg("trace failed")))));
    let out = expect_value::<String>(g.switch("value"));
    assert_eq!(out, "g caught: trace failed");
    assert!(!is_tracing());
    g.kill().unwrap();
}

// Catalog 92
#[test]
fn failing_hook_on_a_throw_replaces_the_error_being_thrown() {
    let g = named("g", |_| {
        let got = Greenlet::main().switch(());
        let text = match got {
            Err(e) => format!("caught {e}"),
            Ok(_) => "value".to_owned(),
        };
        Greenlet::main().switch(text)?;
        Ok(())
    });
    g.switch(()).unwrap();
    settrace(Some(Box::new(|event, _, _| match event {
        TraceEvent::Throw => Err(Error::msg("replacement")),
        _ => Ok(()),
    })));
    let out = expect_value::<String>(g.throw(Error::msg("original")));
    assert_eq!(out, "caught replacement");
    assert!(!is_tracing());
    g.kill().unwrap();
}

// Catalog 93
#[test]
fn failing_hook_on_the_first_switch_kills_the_new_greenlet_before_it_runs() {
    let ran = Counter::new();
    let ran_in = ran.clone();
    let f = named("f", move |_| {
        ran_in.bump();
        Ok(())
    });
    settrace(Some(Box::new(|_, _, _| Err(Error::msg("trace failed")))));
    assert_eq!(expect_thrown(f.switch(())), "trace failed");
    assert!(f.is_dead());
    assert_eq!(ran.get(), 0);
    assert!(!is_tracing());
}

// Catalog 94: the hook may switch greenlets itself; its own switches are not traced, and the
// value in flight when it was called still arrives.
#[test]
fn hook_may_switch_greenlets_and_the_pending_value_still_arrives() {
    let log = Log::new();
    // A helper the hook bounces through: it gets the target's handle and switches back.
    let helper_log = log.clone();
    let helper = named("helper", move |first| {
        let mut target = first.downcast::<Greenlet>().unwrap();
        loop {
            helper_log.push(format!("helper runs, current is helper: {}", {
                let me = Greenlet::current();
                me.name() == Some("helper")
            }));
            let next = target.switch("from helper")?;
            target = next.downcast::<Greenlet>().unwrap();
        }
    });
    let hook_log = log.clone();
    let helper_in = helper.clone();
    let bounces = Counter::new();
    let bounces_in = bounces.clone();
    settrace(Some(Box::new(move |event, origin, target| {
        hook_log.push(format!("hook {event:?} {}->{}", name(origin), name(target)));
        if target.name() == Some("g") && bounces_in.get() == 0 {
            bounces_in.bump();
            let back = helper_in.switch(target.clone())?;
            hook_log.push(format!("hook got {}", back.downcast::<&str>().unwrap()));
        }
        Ok(())
    })));
    let g_log = log.clone();
    let g = named("g", move |first| {
        g_log.push(format!(
            "g started with {}",
            first.downcast::<&str>().unwrap()
        ));
        Ok(())
    });
    g.switch("original").unwrap();
    settrace(None);
    assert_eq!(
        log.events(),
        [
            "hook Switch main->g",
            "helper runs, current is helper: true",
            "hook got from helper",
            "g started with original",
            "hook Switch g->main",
        ]
    );
    // The helper waits in its switch, holding a handle to `g`; kill it to clean up.
    helper.kill().unwrap();
}

// Catalog 90: the hook runs in the target, after the switch, and sees the right origin even
// when greenlets switch sideways.
#[test]
fn hook_sees_sideways_switches_between_siblings() {
    let b = named("b", |x| {
        let a = x.downcast::<Greenlet>().unwrap();
        a.switch(())?;
        Ok(())
    });
    let b_in = b.clone();
    let a = named("a", move |_| {
        b_in.switch(Greenlet::current())?;
        Ok(())
    });
    let log = record();
    a.switch(()).unwrap();
    let events = stop(log);
    assert_eq!(
        events,
        [
            "switch main->a",
            "switch a->b",
            "switch b->a",
            // `a` finishes into its parent (main).
            "switch a->main",
        ]
    );
    b.kill().unwrap();
}
