//! M. Greenlet-local storage, the Rust stand-in for per-greenlet context variables
//! (catalog items 96–101).
//!
//! Where tests share a thread (wasm32) they also share its main greenlet, so every test
//! takes back what it stores on main.

use std::cell::RefCell;
use std::rc::Rc;

use greenlet::Greenlet;
use greenlet_conformance::part2::expect_value;

#[derive(Clone, Debug, PartialEq)]
struct RequestId(u32);

// Catalog 96
#[test]
fn new_greenlet_starts_with_empty_storage_and_main_keeps_its_own() {
    let main = Greenlet::main();
    assert!(main.set_local(RequestId(1)).is_none());
    let child = Greenlet::new(|_| {
        let me = Greenlet::current();
        let before = me.local::<RequestId>();
        me.set_local(RequestId(2));
        Ok((before, me.local::<RequestId>()))
    });
    let (before, after) = expect_value::<(Option<RequestId>, Option<RequestId>)>(child.switch(()));
    assert_eq!(before, None, "nothing is inherited from the creator");
    assert_eq!(after, Some(RequestId(2)));
    assert_eq!(main.local::<RequestId>(), Some(RequestId(1)));
    assert_eq!(main.take_local::<RequestId>(), Some(RequestId(1)));
}

// Catalog 97: before start, storage can be given from outside, as a copy or shared.
#[test]
fn storage_given_before_start_is_seen_by_the_greenlet_copied_or_shared() {
    #[derive(Clone)]
    struct Shared(Rc<RefCell<Vec<&'static str>>>);
    let main = Greenlet::main();
    let shared = Shared(Rc::default());
    main.set_local(shared.clone());
    main.set_local(RequestId(7));

    let child = Greenlet::new(|_| {
        let me = Greenlet::current();
        let copied = me.local::<RequestId>();
        me.set_local(RequestId(8));
        if let Some(Shared(list)) = me.local::<Shared>() {
            list.borrow_mut().push("written by child");
        }
        Ok(copied)
    });
    // Copy main's value; share main's list.
    child.set_local(main.local::<RequestId>().unwrap());
    child.set_local(main.local::<Shared>().unwrap());
    assert_eq!(
        expect_value::<Option<RequestId>>(child.switch(())),
        Some(RequestId(7))
    );
    // The copy changed in the child only; the shared list shows the child's write.
    assert_eq!(main.local::<RequestId>(), Some(RequestId(7)));
    assert_eq!(*shared.0.borrow(), ["written by child"]);
    main.take_local::<RequestId>();
    main.take_local::<Shared>();
}

// Catalog 98
#[test]
fn storage_of_a_suspended_greenlet_can_be_changed_and_the_change_is_seen_on_resume() {
    let g = Greenlet::new(|_| {
        let me = Greenlet::current();
        me.set_local(RequestId(1));
        Greenlet::main().switch(())?;
        // Set from outside while we were suspended.
        Ok(me.local::<RequestId>())
    });
    g.switch(()).unwrap();
    assert_eq!(g.local::<RequestId>(), Some(RequestId(1)));
    assert_eq!(g.set_local(RequestId(2)), Some(RequestId(1)));
    assert_eq!(
        expect_value::<Option<RequestId>>(g.switch(())),
        Some(RequestId(2))
    );
}

// Catalog 98
#[test]
fn dead_greenlet_keeps_its_storage_readable_and_writable() {
    let g = Greenlet::new(|_| {
        Greenlet::current().set_local(RequestId(3));
        Ok(())
    });
    g.switch(()).unwrap();
    assert!(g.is_dead());
    assert_eq!(g.local::<RequestId>(), Some(RequestId(3)));
    g.set_local(RequestId(4));
    assert_eq!(g.take_local::<RequestId>(), Some(RequestId(4)));
    assert!(!g.has_local::<RequestId>());
}

// Catalog 98, 99: the running greenlet changes its own storage; `take_local` is the only way
// to remove a value (Python's `del gr_context` is refused; here removal is allowed).
#[test]
fn running_greenlet_replaces_and_removes_its_own_values() {
    let g = Greenlet::new(|_| {
        let me = Greenlet::current();
        let seen = vec![
            me.set_local(RequestId(1)).is_none(),
            me.set_local(RequestId(2)) == Some(RequestId(1)),
            me.take_local::<RequestId>() == Some(RequestId(2)),
            me.take_local::<RequestId>().is_none(),
            !me.has_local::<RequestId>(),
        ];
        Ok(seen)
    });
    assert!(
        expect_value::<Vec<bool>>(g.switch(()))
            .into_iter()
            .all(|b| b)
    );
}

// Catalog 96: one value per type; different types do not collide.
#[test]
fn storage_holds_one_value_per_type() {
    let g = Greenlet::new(|_| Ok(()));
    g.set_local(1_u8);
    g.set_local(2_u16);
    g.set_local("three");
    assert_eq!(g.local::<u8>(), Some(1));
    assert_eq!(g.local::<u16>(), Some(2));
    assert_eq!(g.local::<&str>(), Some("three"));
    assert_eq!(g.local::<u32>(), None);
}

// Catalog 101: two greenlets given the same shared storage object interleave freely.
#[test]
fn two_greenlets_sharing_one_storage_object_interleave() {
    #[derive(Clone)]
    struct Context(Rc<RefCell<Vec<String>>>);
    let context = Context(Rc::default());
    let make = |name: &'static str| {
        Greenlet::new(move |_| {
            for i in 0..3 {
                let Context(vars) = Greenlet::current().local::<Context>().unwrap();
                vars.borrow_mut().push(format!("{name}{i}"));
                Greenlet::main().switch(())?;
            }
            Ok(())
        })
    };
    let (a, b) = (make("a"), make("b"));
    a.set_local(context.clone());
    b.set_local(context.clone());
    for _ in 0..4 {
        b.switch(()).unwrap();
        a.switch(()).unwrap();
    }
    assert!(a.is_dead() && b.is_dead());
    assert_eq!(*context.0.borrow(), ["b0", "a0", "b1", "a1", "b2", "a2"]);
    // The storage object outlives neither more nor less than its holders: dropping both
    // greenlets leaves our copy as the only one.
    drop((a, b));
    assert_eq!(Rc::strong_count(&context.0), 1);
}
