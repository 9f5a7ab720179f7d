//! Catalog section B: `switch` and the values it carries (items 14–22).

use std::cell::RefCell;
use std::rc::Rc;

use greenlet::{Error, Greenlet, State, TraceEvent, Value, settrace};
use greenlet_conformance::part1::{
    DropCounter, Log, Token, TraceRecorder, received, switch_to_parent, value_of,
};

/// A greenlet that sends back to main whatever it receives, forever.
fn echo() -> Greenlet {
    Greenlet::new(|first| -> Result<(), Error> {
        let mut got = first;
        loop {
            got = Greenlet::main().switch(got)?;
        }
    })
}

// Catalog 14 (test_simple: x = g.switch(y) sends y; x is what comes back)
#[test]
fn switch_sends_a_value_and_returns_the_reply() {
    let g = Greenlet::new(|first| {
        let n = first.downcast::<i32>().unwrap();
        let m = received::<i32>(Greenlet::main().switch(n * 10))?;
        Ok(m + n)
    });
    assert_eq!(value_of::<i32>(g.switch(4)), 40);
    assert_eq!(value_of::<i32>(g.switch(2)), 6);
    assert!(g.is_dead());
}

// Catalog 14, 18 (the reply may come from an unrelated greenlet)
#[test]
fn reply_may_come_from_a_greenlet_other_than_the_target() {
    let answerer = Greenlet::new(|question| {
        let q = question.downcast::<&str>().unwrap();
        Greenlet::main().switch(format!("answer to {q}"))?;
        Ok(())
    });
    let answerer_handle = answerer.clone();
    let forwarder = Greenlet::new(move |question| {
        // Pass the question on to a sibling; main is still waiting in its switch.
        answerer_handle.switch(question)?;
        Ok(())
    });
    let reply = value_of::<String>(forwarder.switch("life"));
    assert_eq!(reply, "answer to life");
    assert_eq!(forwarder.state(), State::Suspended);
    assert_eq!(answerer.state(), State::Suspended);
}

// Catalog 15, 16, 23 (one value per switch: the value sent is the value received)
#[test]
fn value_sent_is_value_received_unchanged() {
    let g = echo();
    assert!(g.switch(()).unwrap().is_unit());
    assert_eq!(value_of::<Option<i32>>(g.switch(None::<i32>)), None);
    assert_eq!(value_of::<(i32,)>(g.switch((1,))), (1,));
    assert_eq!(value_of::<(i32, i32)>(g.switch((1, 2))), (1, 2));
    assert_eq!(
        value_of::<Vec<(String, i32)>>(g.switch(vec![("a".to_string(), 1)])),
        [("a".to_string(), 1)]
    );
    // A `Value` is passed through, not wrapped again.
    assert_eq!(value_of::<u8>(g.switch(Value::new(9_u8))), 9);
    assert_eq!(value_of::<[u64; 8]>(g.switch([7_u64; 8])), [7; 8]);
}

// Catalog 15 (test_switch_kwargs_to_parent, with one value per switch)
#[test]
fn values_switched_to_the_parent_arrive_unchanged() {
    let g = Greenlet::new(|x| {
        let x = x.downcast::<i32>().unwrap();
        switch_to_parent(("x", x))?;
        switch_to_parent(((2,), ("x", 3)))?;
        Ok((x, x * x))
    });
    assert_eq!(value_of::<(&str, i32)>(g.switch(3)), ("x", 3));
    assert_eq!(
        value_of::<((i32,), (&str, i32))>(g.switch(())),
        ((2,), ("x", 3))
    );
    assert_eq!(value_of::<(i32, i32)>(g.switch(())), (3, 9));
}

// Catalog 16 (switch with nothing to say delivers the unit value, not an Option)
#[test]
fn switch_with_unit_delivers_unit() {
    let g = Greenlet::new(|first| {
        let first_was_unit = first.is_unit();
        let second = Greenlet::main().switch(())?;
        Ok((first_was_unit, second.is_unit(), second.is::<Option<()>>()))
    });
    assert!(g.switch(()).unwrap().is_unit());
    assert_eq!(
        value_of::<(bool, bool, bool)>(g.switch(())),
        (true, true, false)
    );
}

// Catalog 17 (switching to the current greenlet returns the value at once)
#[test]
fn switch_to_current_returns_the_value_immediately() {
    let main = Greenlet::main();
    assert_eq!(value_of::<i32>(main.switch(7)), 7);
    assert!(main.switch(()).unwrap().is_unit());
    assert!(main.is_current());
    let g = Greenlet::new(|_| {
        let me = Greenlet::current();
        let back = value_of::<&str>(me.switch("self"));
        Ok((back, me.is_current()))
    });
    assert_eq!(value_of::<(&str, bool)>(g.switch(())), ("self", true));
}

// Catalog 17 (the short-circuit still fires a ('switch', (cur, cur)) trace event)
#[test]
fn switch_to_current_is_traced_as_a_switch_to_itself() {
    let recorder = TraceRecorder::install();
    let main = Greenlet::main();
    assert_eq!(value_of::<i32>(main.switch(7)), 7);
    let records = recorder.take();
    assert_eq!(records.len(), 1);
    let (event, origin, target) = &records[0];
    assert_eq!(*event, TraceEvent::Switch);
    assert_eq!(*origin, main);
    assert_eq!(*target, main);
}

// Catalog 18 (greenlet.rst: siblings switch to each other, not only to parent or child)
#[test]
fn siblings_switch_directly_to_each_other() {
    let log = Log::new();
    let slot: Rc<RefCell<Option<Greenlet>>> = Rc::new(RefCell::new(None));
    let (log1, slot1) = (log.clone(), slot.clone());
    let gr1 = Greenlet::new(move |_| {
        let gr2 = slot1.borrow().clone().unwrap();
        let mut n = 0;
        while n < 6 {
            log1.push(("gr1", n));
            n = received::<i32>(gr2.switch(n + 1))?;
        }
        Ok(n)
    });
    let (log2, gr1_handle) = (log.clone(), gr1.clone());
    let gr2 = Greenlet::new(move |first| -> Result<(), Error> {
        let mut n = first.downcast::<i32>().unwrap();
        loop {
            log2.push(("gr2", n));
            n = received::<i32>(gr1_handle.switch(n + 1))?;
        }
    });
    *slot.borrow_mut() = Some(gr2.clone());
    assert_eq!(value_of::<i32>(gr1.switch(())), 6);
    assert_eq!(
        log.events(),
        [
            ("gr1", 0),
            ("gr2", 1),
            ("gr1", 2),
            ("gr2", 3),
            ("gr1", 4),
            ("gr2", 5)
        ]
    );
    assert!(gr1.is_dead());
    assert_eq!(gr2.state(), State::Suspended);
    slot.borrow_mut().take();
}

// Catalog 19 (greenlet.rst: test1/test2; gr1 is left suspended, its tail never printed)
#[test]
fn greenlet_never_switched_back_to_stays_suspended() {
    let log = Log::new();
    let slot: Rc<RefCell<Option<Greenlet>>> = Rc::new(RefCell::new(None));
    let (log1, slot1) = (log.clone(), slot.clone());
    let gr1 = Greenlet::new(move |_| {
        log1.push(12);
        let gr2 = slot1.borrow().clone().unwrap();
        gr2.switch(())?;
        log1.push(34);
        Ok(())
    });
    let (log2, gr1_handle) = (log.clone(), gr1.clone());
    let gr2 = Greenlet::new(move |_| {
        log2.push(56);
        gr1_handle.switch(())?;
        log2.push(78);
        Ok(())
    });
    *slot.borrow_mut() = Some(gr2.clone());
    gr1.switch(()).unwrap();
    assert_eq!(log.events(), [12, 56, 34]);
    assert!(gr1.is_dead());
    assert_eq!(gr2.state(), State::Suspended);
    assert!(!gr2.is_dead());
    // Nothing resumes it implicitly.
    Greenlet::new(|_| Ok(())).switch(()).unwrap();
    assert_eq!(log.events(), [12, 56, 34]);
    slot.borrow_mut().take();
}

// Catalog 20 (test_arg_refs: values are moved through switches, never leaked or copied)
#[test]
fn switched_values_are_moved_and_dropped_exactly_once() {
    let shared = Rc::new(());
    let counter = DropCounter::new();
    let g = echo();
    g.switch(()).unwrap();
    for i in 0..100 {
        let back = value_of::<(Rc<()>, usize)>(g.switch((shared.clone(), i)));
        assert_eq!(back.1, i);
        assert_eq!(Rc::strong_count(&shared), 2);
        drop(back);
        assert_eq!(Rc::strong_count(&shared), 1);

        let token = value_of::<Token>(g.switch(counter.token()));
        assert_eq!(counter.dropped(), i);
        drop(token);
        assert_eq!(counter.dropped(), i + 1);
    }
    // A value that is never received (the greenlet is killed) is dropped, too.
    g.kill().unwrap();
    let h = Greenlet::new(|_| Ok(()));
    let token = counter.token();
    h.switch(token).unwrap();
    assert_eq!(counter.dropped(), 101);
    // So is a value whose switch fails before reaching anyone (no stack for the target).
    let unstartable = greenlet::Builder::new()
        .stack_size(usize::MAX)
        .build(|_| Ok(()));
    assert!(matches!(
        unstartable.switch(counter.token()),
        Err(Error::NoStack(_))
    ));
    assert_eq!(counter.dropped(), 102);
}

// Catalog 21 (the value survives a trace hook that switches to another greenlet)
#[test]
fn value_survives_a_trace_hook_that_switches_away() {
    let log = Log::new();
    let helper_log = log.clone();
    // `helper` is started by the hook, in the middle of the switch into `g`.
    let helper = Greenlet::new(move |_| -> Result<(), Error> {
        loop {
            helper_log.push("helper ran");
            switch_to_parent("helper's own value")?;
        }
    });
    let g = Greenlet::new(Ok);
    let g_handle = g.clone();
    let (hook_log, hook_helper) = (log.clone(), helper.clone());
    let previous = settrace(Some(Box::new(move |_event, _origin, target| {
        if *target == g_handle && hook_log.is_empty() {
            hook_helper.set_parent(target)?;
            let got = value_of::<&str>(hook_helper.switch(()));
            hook_log.push(got);
        }
        Ok(())
    })));
    assert!(previous.is_none());
    let result = g.switch("original value");
    settrace(None);
    assert_eq!(value_of::<&str>(result), "original value");
    assert_eq!(log.events(), ["helper ran", "helper's own value"]);
}

// Catalog 21 (test_dealloc_switch_args_not_lost: the value survives the kill of the
// greenlet that sent it, which runs inside the receiving switch when the sender's last
// handle drops there)
#[test]
fn value_survives_the_kill_of_the_greenlet_that_sent_it() {
    let log = Log::new();
    let worker_slot: Rc<RefCell<Option<Greenlet>>> = Rc::new(RefCell::new(None));
    let initiator_slot: Rc<RefCell<Option<Greenlet>>> = Rc::new(RefCell::new(None));
    let (worker_log, own_slot, initiator_ref) =
        (log.clone(), worker_slot.clone(), initiator_slot.clone());
    let worker = Greenlet::new(move |_| {
        // Wait for the value.
        let value = received::<i32>(switch_to_parent(()))?;
        // Drop every handle to ourselves except the one the thread holds while we run:
        // ours in the slot, and the parent link of the (dead) initiator.
        drop(own_slot.borrow_mut().take());
        let initiator = initiator_ref.borrow_mut().take().unwrap();
        initiator.set_parent(&Greenlet::main())?;
        drop(initiator);
        // Once we are switched away from, nothing refers to us: the receiving side drops
        // the last handle and kills us before its switch returns.
        match Greenlet::main().switch(value) {
            Err(e) if e.is_exit() => {
                worker_log.push("worker killed");
                Err(e)
            }
            other => {
                worker_log.push("worker resumed");
                other.map(drop)
            }
        }
    });
    worker.switch(()).unwrap(); // prime it
    let initiator = greenlet::Builder::new()
        .parent(&worker)
        .build(|_| Ok(42_i32)); // falls through to its parent, the worker
    *initiator_slot.borrow_mut() = Some(initiator.clone());
    *worker_slot.borrow_mut() = Some(worker);
    let value = initiator.switch(());
    log.push("main got the value");
    assert_eq!(value_of::<i32>(value), 42);
    assert_eq!(log.events(), ["worker killed", "main got the value"]);
    assert!(worker_slot.borrow().is_none());
}
