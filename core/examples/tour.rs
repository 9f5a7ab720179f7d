//! A short tour of greenlets: switching, parents, throw, kill-on-drop and a generator.
//!
//! Run it with `cargo run --example tour`.

use greenlet::generator::yield_;
use greenlet::{Error, Generator, Greenlet, GreenletExit};

fn main() -> Result<(), Error> {
    println!("backend: {}\n", greenlet::backend_name());
    switching()?;
    parents()?;
    throwing()?;
    kill_on_drop();
    generators()?;
    Ok(())
}

/// Two greenlets hand control back and forth; each switch carries a value.
fn switching() -> Result<(), Error> {
    println!("1. switch: symmetric transfer with a value");
    let main = Greenlet::main();
    let pong = Greenlet::new(move |first| -> Result<(), Error> {
        let mut ball = first.downcast::<u32>().unwrap_or_default();
        loop {
            println!("   pong got {ball}");
            ball = main.switch(ball + 1)?.downcast::<u32>().unwrap_or_default();
        }
    });
    let mut ball = 0;
    for _ in 0..3 {
        ball = pong.switch(ball)?.downcast::<u32>().unwrap_or_default();
        println!("   main got {ball}");
        ball += 1;
    }
    println!("   pong is {:?}\n", pong.state());
    Ok(())
}

/// When a greenlet finishes, its result goes to its parent, not to whoever switched last.
fn parents() -> Result<(), Error> {
    println!("2. parents: a finished greenlet returns to its parent");
    let collector = Greenlet::new(|result| {
        println!(
            "   collector started with the child's result: {:?}",
            result.downcast_ref::<&str>()
        );
        Ok("collector done")
    });
    let child = Greenlet::builder()
        .parent(&collector)
        .name("child")
        .build(|_| Ok("child result"));
    let out = child.switch(())?;
    println!(
        "   main got {:?}; child {:?}\n",
        out.downcast_ref::<&str>(),
        child
    );
    Ok(())
}

/// `throw` makes the target's pending switch return `Err`; `?` passes it on.
fn throwing() -> Result<(), Error> {
    println!("3. throw: errors are values at the pending switch");
    let worker = Greenlet::new(|_| -> Result<(), Error> {
        let _guard = Noisy("worker's guard");
        loop {
            Greenlet::main().switch("waiting")?; // the thrown error comes out here
        }
    });
    worker.switch(())?;
    let err = worker.throw(Error::msg("stop working")).unwrap_err();
    println!("   the worker died of: {err}; dead: {}\n", worker.is_dead());
    Ok(())
}

/// Dropping the last handle of a suspended greenlet delivers GreenletExit to it.
fn kill_on_drop() {
    println!("4. kill on drop: the last handle going away cleans up");
    let sleeper = Greenlet::new(|_| -> Result<(), Error> {
        let _guard = Noisy("sleeper's guard");
        match Greenlet::main().switch(()) {
            Err(Error::Exit(exit)) => {
                println!("   sleeper got {exit}");
                Err(Error::Exit(exit))
            }
            other => other.map(drop),
        }
    });
    sleeper.switch(()).ok();
    drop(sleeper);
    let killed = Greenlet::new(|_| Ok(()));
    let value = killed.kill().unwrap_or_default();
    println!(
        "   kill() on an unstarted greenlet returns {:?}\n",
        value.downcast_ref::<GreenletExit>()
    );
}

/// A generator: `yield_` works from plain functions called by the body.
fn generators() -> Result<(), Error> {
    println!("5. generators built on switch");
    fn walk(depth: u32, prefix: &str) -> Result<(), Error> {
        yield_(format!("{prefix}{depth}"))?;
        if depth > 0 {
            walk(depth - 1, prefix)?;
        }
        Ok(())
    }
    let items: Result<Vec<String>, Error> = Generator::new(|| walk(3, "level ")).collect();
    println!("   {:?}", items?);
    Ok(())
}

/// Prints when dropped, to show destructors running.
struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        println!("   (dropped {})", self.0);
    }
}
