//! Holds as many suspended greenlets as the host allows, then releases them.
//!
//! Prints `live <n>` with how many were alive at once, the error that stopped creation,
//! then `released` once every one was killed (the kill runs its cleanup).
//! `greenlet-wasm run live.wasm [stack_bytes] [max]`
use greenlet::{Error, Greenlet};
use std::cell::Cell;
use std::rc::Rc;

fn main() {
    let stack: usize = greenlet_wasm_guests::arg(1, 16 * 1024);
    let max: usize = greenlet_wasm_guests::arg(2, usize::MAX);
    let cleaned = Rc::new(Cell::new(0usize));
    let mut alive = Vec::new();
    let stopped = loop {
        if alive.len() == max {
            break None;
        }
        let cleaned = cleaned.clone();
        let g = Greenlet::builder().stack_size(stack).build(move |_| {
            // Park until killed; count the cleanup.
            let result = Greenlet::main().switch(());
            cleaned.set(cleaned.get() + 1);
            result.map(|_| ())
        });
        match g.switch(()) {
            Ok(_) => alive.push(g),
            Err(e @ Error::NoStack(_)) => break Some(e),
            Err(e) => panic!("unexpected error: {e}"),
        }
    };
    let n = alive.len();
    println!("live {n}");
    if let Some(e) = stopped {
        println!("stopped: {e}");
    }
    drop(alive);
    assert_eq!(cleaned.get(), n, "every greenlet ran its cleanup");
    // The ids and stacks came back: more greenlets can be made.
    let again = Greenlet::new(|_| Ok(7u8));
    assert_eq!(
        again
            .switch(())
            .expect("runs")
            .downcast::<u8>()
            .expect("u8"),
        7
    );
    println!("released");
}
