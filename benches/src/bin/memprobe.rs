//! The memory probe: keeps as many suspended greenlets (or corosensei coroutines) alive
//! in one thread as it is asked to, each a few frames deep, and reports the resident
//! memory they cost. `cargo xtask bench` runs it in a subprocess per row, so that running
//! out of memory or mappings cannot take the harness down.
//!
//! ```text
//! memprobe <greenlet|corosensei> [--live N] [--depth D] [--rss-cap-mib M]
//! memprobe info
//! ```
//!
//! `info` prints one line, `info backend=<our backend> guard=<madvise|mprotect>`.
//!
//! Output, one `key=value` record per line (the last word of `stop=` runs to the end):
//!
//! ```text
//! progress live=100000 rss_kib=431020
//! result impl=greenlet guard=madvise target=1000000 reached=1000000 depth=4 rss_before_kib=2100 rss_after_kib=4312000 hwm_kib=4312000 seconds=1.9 stop=target reached
//! ```
//!
//! `stop` is `target reached`, `rss cap`, or `error: <why>` when no more could be made.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use greenlet::{Error, Greenlet};
use greenlet_backends::stack::{GuardMode, guard_mode};
use greenlet_benches::proc_status_kib;

/// Stack size of each corosensei coroutine: corosensei's own default.
const COROSENSEI_STACK: usize = 1024 * 1024;
/// How often, in live greenlets, to print progress and check the RSS cap.
const PROGRESS_EVERY: usize = 50_000;

struct Options {
    which: String,
    live: usize,
    depth: u32,
    rss_cap_kib: u64,
}

fn parse() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let which = args
        .next()
        .ok_or("which implementation: greenlet or corosensei")?;
    let mut options = Options {
        which,
        live: 100_000,
        depth: 4,
        rss_cap_kib: 8 * 1024 * 1024,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--live" => options.live = number(&value)? as usize,
            "--depth" => options.depth = number(&value)? as u32,
            "--rss-cap-mib" => options.rss_cap_kib = number(&value)? * 1024,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(options)
}

/// What stopped the loop.
enum Stop {
    Target,
    RssCap,
    Failed(String),
}

/// How the stacks of this implementation are guarded, as one word.
fn guard_word(which: &str) -> &'static str {
    match (which, guard_mode()) {
        ("greenlet", GuardMode::MadviseGuard) => "madvise",
        ("greenlet", _) => "mprotect",
        // corosensei's DefaultStack: an mmap with a PROT_NONE page below the stack.
        _ => "mprotect",
    }
}

/// Calls `make` until it has made `options.live` live suspended things, fails, or the
/// process's RSS passes the cap; prints progress and the result record.
fn probe<T>(options: &Options, mut make: impl FnMut() -> Result<T, String>) {
    let mut live: Vec<T> = Vec::with_capacity(options.live);
    let rss_before = proc_status_kib("VmRSS").unwrap_or(0);
    let start = Instant::now();
    let mut stop = Stop::Target;
    while live.len() < options.live {
        match make() {
            Ok(thing) => live.push(thing),
            Err(why) => {
                stop = Stop::Failed(why);
                break;
            }
        }
        if live.len().is_multiple_of(PROGRESS_EVERY) {
            let rss = proc_status_kib("VmRSS").unwrap_or(0);
            println!("progress live={} rss_kib={rss}", live.len());
            if rss > options.rss_cap_kib {
                stop = Stop::RssCap;
                break;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let rss_after = proc_status_kib("VmRSS").unwrap_or(0);
    let hwm = proc_status_kib("VmHWM").unwrap_or(0);
    let stop = match stop {
        Stop::Target => "target reached".to_string(),
        Stop::RssCap => "rss cap".to_string(),
        Stop::Failed(why) => format!("error: {}", why.replace('\n', " ")),
    };
    println!(
        "result impl={} guard={} target={} reached={} depth={} rss_before_kib={rss_before} \
         rss_after_kib={rss_after} hwm_kib={hwm} seconds={seconds:.2} stop={stop}",
        options.which,
        guard_word(&options.which),
        options.live,
        live.len(),
        options.depth,
    );
    // Tearing a million greenlets down is not what we measure: leave them to the OS.
    std::mem::forget(live);
}

/// A few frames of real stack, then suspend in main until killed.
#[inline(never)]
fn greenlet_descend(depth: u32, main: &Greenlet) -> Result<(), Error> {
    let mut frame = [0_u8; 64];
    black_box(&mut frame);
    if depth == 0 {
        main.switch(())?;
        return Ok(());
    }
    greenlet_descend(depth - 1, main)?;
    black_box(&frame);
    Ok(())
}

#[inline(never)]
fn coroutine_descend(depth: u32, yielder: &Yielder<(), ()>) {
    let mut frame = [0_u8; 64];
    black_box(&mut frame);
    if depth == 0 {
        yielder.suspend(());
        return;
    }
    coroutine_descend(depth - 1, yielder);
    black_box(&frame);
}

fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("memprobe: {e}");
            return ExitCode::from(2);
        }
    };
    let depth = options.depth;
    match options.which.as_str() {
        "info" => println!(
            "info backend={} guard={}",
            greenlet::backend_name(),
            guard_word("greenlet")
        ),
        "greenlet" => {
            // Create the thread's greenlet state before the baseline reading.
            let main = Greenlet::main();
            probe(&options, || {
                let m = main.clone();
                let g = Greenlet::new(move |_| greenlet_descend(depth, &m));
                match g.switch(()) {
                    Ok(_) if g.is_active() => Ok(g),
                    Ok(_) => Err("the greenlet finished instead of suspending".into()),
                    Err(e) => Err(e.to_string()),
                }
            });
        }
        "corosensei" => probe(&options, || {
            let stack = DefaultStack::new(COROSENSEI_STACK)
                .map_err(|e| format!("DefaultStack::new: {e}"))?;
            let mut coroutine =
                Coroutine::with_stack(stack, move |yielder: &Yielder<(), ()>, ()| {
                    coroutine_descend(depth, yielder)
                });
            match coroutine.resume(()) {
                CoroutineResult::Yield(()) => Ok(coroutine),
                CoroutineResult::Return(()) => {
                    Err("the coroutine finished instead of suspending".into())
                }
            }
        }),
        other => {
            eprintln!("memprobe: unknown implementation {other}: greenlet or corosensei");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
