//! Traps inside a greenlet while three others are suspended.
//!
//! `greenlet-wasm run traps.wasm <kind>` with kind one of: unreachable, out-of-bounds,
//! stack-overflow, panic, shadow-overflow, exit. Prints `suspended 3` before trapping.
use greenlet::Greenlet;
use std::sync::atomic::{AtomicU64, Ordering};

/// Frames `recurse` made; updated after each call, so the recursion is no tail call.
static FRAMES: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
fn recurse(n: u64) -> u64 {
    // Deep native (wasm) recursion: `n` stays in a wasm local, off the shadow stack.
    if n == 0 {
        return 0;
    }
    let below = recurse(n - 1);
    FRAMES.fetch_add(1, Ordering::Relaxed);
    below + 1
}

#[inline(never)]
fn shadow_recurse(n: usize) -> u8 {
    // Each frame keeps a 1 KiB array on the shadow stack.
    let mut buf = [0u8; 1024];
    buf[n % 1024] = n as u8;
    let buf = std::hint::black_box(buf);
    if n == 0 {
        buf[0]
    } else {
        shadow_recurse(n - 1).wrapping_add(buf[n % 1024])
    }
}

fn main() {
    let kind = std::env::args().nth(1).unwrap_or_default();
    let parked: Vec<Greenlet> = (0..3)
        .map(|_| {
            let g = Greenlet::new(|_| Greenlet::main().switch(()).map(|_| ()));
            g.switch(()).expect("parks");
            g
        })
        .collect();
    println!("suspended {}", parked.len());
    let what = kind.clone();
    let doomed = Greenlet::builder().stack_size(16 * 1024).build(move |_| {
        match what.as_str() {
            "unreachable" => std::process::abort(),
            "out-of-bounds" => {
                let p = std::hint::black_box(0xFFFF_FFF0usize) as *const u64;
                // SAFETY: none; this read is meant to trap (outside linear memory).
                let v = unsafe { p.read_volatile() };
                println!("read {v}");
            }
            "stack-overflow" => println!("{}", recurse(std::hint::black_box(u64::MAX))),
            "panic" => panic!("a greenlet panicked on purpose"),
            "shadow-overflow" => {
                // About 24 KiB of frames (2 KiB each) on a 16 KiB shadow stack, so the
                // overflow stays in the red zone below it; then a switch: the canary check
                // must stop the program.
                let x = shadow_recurse(std::hint::black_box(12));
                Greenlet::main().switch(x)?;
            }
            "exit" => std::process::exit(42),
            other => println!("unknown kind {other}"),
        }
        Ok(())
    });
    let _ = doomed.switch(());
    println!("survived {kind}");
}
