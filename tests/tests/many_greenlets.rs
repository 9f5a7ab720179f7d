//! 200,000 live suspended greenlets in one thread (catalog items 12, 13, 106b at scale).
//!
//! Designs with one `mmap` per stack stop near 32,000 live stacks, since every guarded
//! stack costs two of the 65,530 memory mappings a Linux process may have by default.
//! With `MADV_GUARD_INSTALL` guards (Linux >= 6.13) the stack arenas stay single mappings,
//! so 200,000 fit. This test is alone in its binary so that no other test competes for
//! mappings or memory while it runs.

use std::cell::Cell;
use std::rc::Rc;

use greenlet::{Error, Greenlet, State};

const LIVE: usize = 200_000;

/// How many greenlets can be live at once here: all of them where guards cost no mapping,
/// else as many as the mapping limit leaves room for (two mappings per stack), with margin.
#[cfg(not(target_arch = "wasm32"))]
fn live_target() -> usize {
    #[cfg(target_os = "linux")]
    {
        use greenlet_backends::stack::{GuardMode, guard_mode};
        if guard_mode() != GuardMode::MadviseGuard {
            let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(65_530);
            let in_use = greenlet_conformance::part2::mapping_count();
            let room = limit.saturating_sub(in_use + 4_000) / 2;
            eprintln!(
                "note: stacks guarded with {}: {room} live greenlets instead of {LIVE}",
                guard_mode()
            );
            return room.min(LIVE);
        }
    }
    LIVE
}

/// On wasm32 every shadow stack is committed linear memory (4 GiB at most) and every
/// greenlet has a host fiber: a smaller number.
#[cfg(target_arch = "wasm32")]
fn live_target() -> usize {
    const WASM_LIVE: usize = 10_000;
    eprintln!("note: wasm32: {WASM_LIVE} live greenlets instead of {LIVE}");
    WASM_LIVE
}

// Catalog 12, 13: the required test: 200,000 live suspended greenlets, all resumed and
// finished afterwards.
#[test]
fn two_hundred_thousand_suspended_greenlets_live_at_once_and_all_finish() {
    let target = live_target();
    let finished = Rc::new(Cell::new(0_usize));
    let mut live = Vec::with_capacity(target);
    for i in 0..target {
        let finished = finished.clone();
        let g = Greenlet::builder()
            .stack_size(16 * 1024)
            .build(move |_| -> Result<usize, Error> {
                Greenlet::main().switch(())?;
                finished.set(finished.get() + 1);
                Ok(i)
            });
        // Never a panic on exhaustion: report the error value and where it happened.
        if let Err(e) = g.switch(()) {
            panic!("greenlet {i} of {target} could not start: {e}");
        }
        live.push(g);
    }
    assert_eq!(live.len(), target);
    assert!(live.iter().all(|g| g.state() == State::Suspended));

    #[cfg(target_os = "linux")]
    {
        use greenlet_backends::stack::{GuardMode, guard_mode};
        let maps = greenlet_conformance::part2::mapping_count();
        if guard_mode() == GuardMode::MadviseGuard {
            assert!(
                maps < 10_000,
                "{maps} mappings for {target} live greenlets: guards should cost none"
            );
        }
    }

    for (i, g) in live.iter().enumerate() {
        let got = g.switch(()).unwrap().downcast::<usize>().unwrap();
        assert_eq!(got, i);
    }
    assert_eq!(finished.get(), target);
    assert!(live.iter().all(Greenlet::is_dead));
}
