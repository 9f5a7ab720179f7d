//! A small cooperative scheduler on greenlets, run by the wasm host: tasks yield to the
//! scheduler, which runs them round-robin until all are done.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p greenlet-wasm-guests --example scheduler
//! greenlet-wasm run target/wasm32-wasip1/release/examples/scheduler.wasm
//! ```
use greenlet::{Error, Greenlet};
use std::collections::VecDeque;

/// Gives the other tasks a turn: back to the scheduler (every task's parent).
fn yield_now() -> Result<(), Error> {
    let scheduler = Greenlet::current().parent().expect("tasks have a parent");
    scheduler.switch(())?;
    Ok(())
}

/// Runs `tasks` round-robin until every one has finished.
fn run(tasks: Vec<Greenlet>) {
    let mut ready: VecDeque<Greenlet> = tasks.into();
    while let Some(task) = ready.pop_front() {
        match task.switch(()) {
            Ok(_) if task.is_dead() => {}
            Ok(_) => ready.push_back(task),
            Err(e) => println!("a task failed: {e}"),
        }
    }
}

fn main() {
    let tasks = ["alpha", "beta", "gamma"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            Greenlet::builder().name(name).build(move |_| {
                for step in 0..=i {
                    println!("{name}: step {step}");
                    yield_now()?;
                }
                println!("{name}: done");
                Ok(())
            })
        })
        .collect();
    run(tasks);
    println!("all tasks finished");
}
