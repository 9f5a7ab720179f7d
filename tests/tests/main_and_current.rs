//! I. The main greenlet and `current` (catalog items 61–65).

use std::hash::{DefaultHasher, Hash, Hasher};

use greenlet::{Greenlet, State};
use greenlet_conformance::part2::expect_value;

/// The part of a `Debug` string after the address: the name and the state words.
fn words(g: &Greenlet) -> String {
    let text = format!("{g:?}");
    let rest = text
        .strip_prefix("<greenlet ")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or_else(|| panic!("unexpected Debug format: {text}"));
    // Skip the address.
    rest.split_once(' ')
        .map(|(_, w)| w.to_owned())
        .unwrap_or_default()
}

// Catalog 61
#[test]
fn main_greenlet_is_started_active_and_never_dead_while_its_thread_runs() {
    let main = Greenlet::main();
    assert!(main.is_main());
    assert_eq!(main.parent(), None);
    assert_eq!(main.state(), State::Running);
    assert!(main.is_started() && main.is_active() && main.is_current());
    assert!(!main.is_dead());
    assert_eq!(main.name(), None);
    // The same greenlet every time.
    assert_eq!(Greenlet::main(), main);
    assert_eq!(Greenlet::current(), main);
}

// Catalog 61, 64: seen from a child while it waits in its switch, main is suspended
// (the "is suspended" query replaces Python's `gr_frame`).
#[test]
fn main_greenlet_is_suspended_while_a_child_runs() {
    let child = Greenlet::new(|_| {
        let main = Greenlet::main();
        Ok((
            main.state(),
            main.is_active(),
            main.is_current(),
            words(&main),
        ))
    });
    let (state, active, current, main_words) =
        expect_value::<(State, bool, bool, String)>(child.switch(()));
    assert_eq!(state, State::Suspended);
    assert!(active && !current);
    assert_eq!(main_words, "suspended active started main");
    assert_eq!(words(&Greenlet::main()), "current active started main");
}

// Catalog 62
#[test]
fn current_returns_the_running_greenlet_with_a_stable_identity() {
    let g = Greenlet::new(|_| {
        let a = Greenlet::current();
        let b = Greenlet::current();
        assert_eq!(a, b);
        assert!(a.parent().is_some(), "a child is not main");
        assert!(!a.is_main());
        Ok(a)
    });
    let inside = expect_value::<Greenlet>(g.switch(()));
    assert_eq!(inside, g);
    // Identity also drives hashing: clones hash alike.
    let hash = |g: &Greenlet| {
        let mut hasher = DefaultHasher::new();
        g.hash(&mut hasher);
        hasher.finish()
    };
    assert_eq!(hash(&inside), hash(&g));
    assert_eq!(hash(&g.clone()), hash(&g));
    // `parent() == None` identifies main.
    assert!(Greenlet::current().parent().is_none());
}

// Catalog 62
#[test]
fn current_is_right_in_nested_greenlets() {
    let outer = Greenlet::new(|_| {
        let outer_me = Greenlet::current();
        let inner = Greenlet::new(|_| Ok(Greenlet::current()));
        let seen_inner = inner.switch(())?.downcast::<Greenlet>().unwrap();
        Ok((
            seen_inner == inner,
            Greenlet::current() == outer_me,
            inner.parent() == Some(outer_me),
        ))
    });
    let checks = expect_value::<(bool, bool, bool)>(outer.switch(()));
    assert_eq!(checks, (true, true, true));
    assert_eq!(Greenlet::current(), Greenlet::main());
}

// Catalog 65
#[test]
fn debug_uses_greenlets_state_words() {
    let g = Greenlet::builder().name("worker").build(|_| {
        Greenlet::main().switch(())?;
        Ok(())
    });
    assert_eq!(words(&g), "\"worker\" pending");
    let running = Greenlet::new(|_| Ok(words(&Greenlet::current())));
    assert_eq!(
        expect_value::<String>(running.switch(())),
        "current active started"
    );
    g.switch(()).unwrap();
    assert_eq!(words(&g), "\"worker\" suspended active started");
    g.switch(()).unwrap();
    assert_eq!(words(&g), "\"worker\" dead");
    assert_eq!(words(&running), "dead");
    assert!(format!("{g:?}").starts_with("<greenlet 0x"));
}

// Catalog 65, 69
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn debug_says_thread_exited_for_greenlets_of_an_exited_thread() {
    use greenlet_conformance::part2::foreign::Foreign;
    let (main, child) = std::thread::spawn(|| {
        let child = Greenlet::new(|_| {
            Greenlet::main().switch(())?;
            Ok(())
        });
        child.switch(()).unwrap();
        (Foreign::new(Greenlet::main()), Foreign::new(child))
    })
    .join()
    .unwrap();
    // SAFETY: the owner thread has been joined.
    let (main, child) = unsafe { (main.into_inner(), child.into_inner()) };
    assert!(main.is_dead());
    assert_eq!(words(&main), "(thread exited) dead main");
    assert!(words(&child).starts_with("(thread exited) "));
}
