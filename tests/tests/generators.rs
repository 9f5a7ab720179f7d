//! N. Generators built on greenlets (catalog items 102–105), ported from greenlet's
//! `test_generator.py` and `test_generator_nested.py`.

use std::cell::RefCell;
use std::rc::Rc;

use greenlet::generator::yield_;
use greenlet::{Error, Generator, Greenlet};
use greenlet_conformance::part2::{Counter, expect_value};

type Seen = Rc<RefCell<Vec<u32>>>;

// Catalog 102 (port of test_generator)
#[test]
fn generator_yields_values_to_its_consumer_until_its_body_returns() {
    let seen: Seen = Rc::default();
    for _ in 0..3 {
        let body_seen = seen.clone();
        let generator = Generator::<u32>::new(move || {
            for i in 0..5 {
                body_seen.borrow_mut().push(i);
                yield_(i)?;
            }
            Ok(())
        });
        for value in generator {
            seen.borrow_mut().push(value.unwrap());
        }
    }
    let once = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4];
    assert_eq!(*seen.borrow(), once.repeat(3));
}

// Catalog 102
#[test]
fn generator_ends_with_the_error_its_body_returns() {
    let items: Vec<Result<u32, Error>> = Generator::<u32>::new(|| {
        yield_(1_u32)?;
        Err(Error::msg("body failed"))
    })
    .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(*items[0].as_ref().unwrap(), 1);
    assert_eq!(items[1].as_ref().unwrap_err().to_string(), "body failed");
}

// Catalog 102: dropping a generator part-way kills its body, whose pending `yield_` returns
// the GreenletExit; its destructors run.
#[test]
fn dropping_a_generator_part_way_kills_its_body() {
    let cleanups = Counter::new();
    let exits = Counter::new();
    let (cleanups_in, exits_in) = (cleanups.clone(), exits.clone());
    let mut generator = Generator::<u32>::new(move || {
        let _cleanup = cleanups_in.guard();
        for i in 0_u32.. {
            if let Err(e) = yield_(i) {
                assert!(e.is_exit());
                exits_in.bump();
                return Err(e);
            }
        }
        Ok(())
    });
    assert_eq!(generator.next().unwrap().unwrap(), 0);
    assert_eq!(generator.next().unwrap().unwrap(), 1);
    drop(generator);
    assert_eq!((exits.get(), cleanups.get()), (1, 1));
}

// Catalog 102: a value of another type than the generator's is reported, not transmuted.
#[test]
fn generator_reports_a_value_of_the_wrong_type() {
    let mut generator = Generator::<u32>::new(|| {
        yield_("text")?;
        Ok(())
    });
    assert!(matches!(
        generator.next(),
        Some(Err(Error::UnexpectedType { .. }))
    ));
}

// Catalog 103: the consumer is recorded apart from the parent chain. A generator made in one
// greenlet can be consumed from another one, and its values (and its end) go there.
#[test]
fn generator_made_in_one_greenlet_is_consumed_from_another() {
    let generator = Generator::<u32>::new(|| {
        for i in 1..=3_u32 {
            yield_(i * 10)?;
        }
        Ok(())
    });
    assert_eq!(generator.greenlet().parent(), Some(Greenlet::main()));
    let consumer = Greenlet::new(move |_| {
        let me = Greenlet::current();
        let mut got = Vec::new();
        for v in generator {
            got.push(v?);
            // Still running in the consumer between items.
            assert_eq!(Greenlet::current(), me);
        }
        Ok(got)
    });
    assert_eq!(expect_value::<Vec<u32>>(consumer.switch(())), [10, 20, 30]);
}

fn nested(i: u32) -> Result<(), Error> {
    yield_(i)
}

// Catalog 104 (port of test_genlet_simple, with g2 and g3)
#[test]
fn yield_works_from_nested_plain_functions() {
    for through_nested_function in [false, true] {
        let seen: Seen = Rc::default();
        for _ in 0..3 {
            let body_seen = seen.clone();
            let generator = Generator::<u32>::new(move || {
                for i in 0..5 {
                    body_seen.borrow_mut().push(i + 1);
                    if through_nested_function {
                        nested(i)?;
                    } else {
                        yield_(i)?;
                    }
                }
                Ok(())
            });
            for j in generator {
                seen.borrow_mut().push(j.unwrap());
            }
        }
        assert_eq!(*seen.borrow(), [1, 0, 2, 1, 3, 2, 4, 3, 5, 4].repeat(3));
    }
}

// Catalog 104: also from a greenlet started inside the generator body (found through the
// parent chain).
#[test]
fn yield_works_from_a_greenlet_started_inside_the_body() {
    let values: Vec<u32> = Generator::<u32>::new(|| {
        let helper = Greenlet::new(|_| {
            yield_(1_u32)?;
            yield_(2_u32)?;
            Ok(())
        });
        helper.switch(())?;
        yield_(3_u32)?;
        Ok(())
    })
    .map(Result::unwrap)
    .collect();
    assert_eq!(values, [1, 2, 3]);
}

// Catalog 104 (port of test_genlet_bad)
#[test]
fn yield_outside_any_generator_is_an_error() {
    let err = yield_(10).unwrap_err();
    assert!(matches!(err, Error::YieldOutsideGenerator));
    assert_eq!(err.to_string(), "yield outside a generator");
    let inside_plain_greenlet = Greenlet::new(|_| Ok(yield_(10).is_err()));
    assert!(expect_value::<bool>(inside_plain_greenlet.switch(())));
}

/// `a(n)` of test_generator_nested: yields everything `a(n - 1)` yields, then `n`.
fn ax(n: u32) -> Generator<u32> {
    Generator::new(move || {
        if n == 0 {
            return Ok(());
        }
        for ii in ax(n - 1) {
            yield_(ii?)?;
        }
        yield_(n)
    })
}

// Catalog 105 (port of test_nested_genlets)
#[test]
fn generator_consuming_another_generator_recursively() {
    let seen: Vec<u32> = ax(5).map(Result::unwrap).collect();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
}

/// What the inner generator of the layered test yields: for its consumer, or for the
/// consumer one level up (greenlet's `Yield(v, level=2)`).
enum Level {
    One(u32),
    Two(u32),
}

// Catalog 105 (port of test_layered_genlets; the level-2 yield is relayed by the middle
// generator, since `yield_` has no level argument)
#[test]
fn layered_generators_pass_values_through_two_levels() {
    let seen: Seen = Rc::default();
    let gr1 = |n: u32| {
        Generator::<Level>::new(move || {
            for ii in 1..n {
                yield_(Level::One(ii))?;
                yield_(Level::Two(ii * ii))?;
            }
            Ok(())
        })
    };
    let middle_seen = seen.clone();
    let gr2 = Generator::<u32>::new(move || {
        for item in gr1(5) {
            match item? {
                Level::One(ii) => middle_seen.borrow_mut().push(ii),
                Level::Two(ii) => yield_(ii)?,
            }
        }
        Ok(())
    });
    for ii in gr2 {
        seen.borrow_mut().push(ii.unwrap());
    }
    assert_eq!(*seen.borrow(), [1, 1, 2, 4, 3, 9, 4, 16]);
}

/// Counts generator bodies started and bodies whose frames were cleaned up.
#[derive(Clone, Default)]
struct Bodies {
    started: Counter,
    cleaned: Counter,
}

/// Recursive permutations, each level a generator of its own (test_generator_nested).
fn perms(list: Vec<u32>, bodies: Bodies) -> Generator<Vec<u32>> {
    Generator::new(move || {
        bodies.started.bump();
        let _cleanup = bodies.cleaned.guard();
        if list.len() > 1 {
            for &e in &list {
                let rest: Vec<u32> = list.iter().copied().filter(|&x| x != e).collect();
                let mut any = false;
                for p in perms(rest, bodies.clone()) {
                    let mut permutation = vec![e];
                    permutation.extend(p?);
                    yield_(permutation)?;
                    any = true;
                }
                assert!(any);
            }
            Ok(())
        } else {
            yield_(list)
        }
    })
}

// Catalog 105 (port of test_permutations)
#[test]
fn recursive_permutation_generators_zip_to_the_exact_sequence() {
    let bodies = Bodies::default();
    let permutations: Vec<Vec<u32>> = perms((0..4).collect(), bodies.clone())
        .map(Result::unwrap)
        .collect();
    assert_eq!(permutations.len(), 24);
    assert!(permutations.contains(&vec![0, 1, 2, 3]));
    assert!(permutations.contains(&vec![3, 2, 1, 0]));
    assert_eq!(bodies.cleaned.get(), bodies.started.get());
    // `zip` stops after the shorter one; it ran to its end, so all of its nested generator
    // bodies finished and were cleaned up. The longer one is dropped part-way: its nested
    // chain is a reference cycle through suspended greenlets (each inner body's parent is
    // its consumer, whose stack holds the inner generator), which is never collected, as
    // in greenlet (`test_permutations` is marked `fails_leakcheck` there).
    let shorter = Bodies::default();
    let zipped: Vec<(Vec<u32>, Vec<u32>)> = perms((0..4).collect(), Bodies::default())
        .zip(perms((0..3).collect(), shorter.clone()))
        .map(|(a, b)| (a.unwrap(), b.unwrap()))
        .collect();
    let expected: Vec<(Vec<u32>, Vec<u32>)> = vec![
        (vec![0, 1, 2, 3], vec![0, 1, 2]),
        (vec![0, 1, 3, 2], vec![0, 2, 1]),
        (vec![0, 2, 1, 3], vec![1, 0, 2]),
        (vec![0, 2, 3, 1], vec![1, 2, 0]),
        (vec![0, 3, 1, 2], vec![2, 0, 1]),
        (vec![0, 3, 2, 1], vec![2, 1, 0]),
    ];
    assert_eq!(zipped, expected);
    assert!(shorter.started.get() > 0);
    assert_eq!(shorter.cleaned.get(), shorter.started.get());
}

// Catalog 105: two generators advanced alternately from one consumer keep their own state.
#[test]
fn interleaved_generators_keep_their_own_state() {
    let mut evens = Generator::<u32>::new(|| {
        for i in (0..10_u32).step_by(2) {
            yield_(i)?;
        }
        Ok(())
    });
    let mut odds = Generator::<u32>::new(|| {
        for i in (1..10_u32).step_by(2) {
            yield_(i)?;
        }
        Ok(())
    });
    let mut merged = Vec::new();
    while let (Some(a), Some(b)) = (evens.next(), odds.next()) {
        merged.push(a.unwrap());
        merged.push(b.unwrap());
    }
    assert_eq!(merged, (0..10).collect::<Vec<u32>>());
    assert!(evens.next().is_none() && odds.next().is_none());
}
