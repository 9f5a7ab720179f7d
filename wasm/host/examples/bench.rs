//! Measures both fiber mechanisms in one run: switch round trip and create+finish, through
//! the backend alone and through the greenlet API, on the `bench` guest.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p greenlet-wasm-guests --bin bench
//! cargo run --release -p greenlet-wasm --example bench -- \
//!     target/wasm32-wasip1/release/bench.wasm [iterations]
//! ```
use greenlet_wasm::{CapturedOutput, Error, Host, HostConfig, Mechanism, RunOptions};

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: bench <bench.wasm> [iterations]");
        std::process::exit(2);
    };
    let iterations = args.next().unwrap_or_else(|| "200000".into());
    let mut rows = Vec::new();
    for mechanism in [Mechanism::StackSwitching, Mechanism::StorePerFiber] {
        let host = Host::new(HostConfig {
            mechanism,
            ..HostConfig::default()
        })?;
        let guest = host.load_file(&path)?;
        let linker = host.linker::<()>()?;
        let output = CapturedOutput::new();
        let mut options = RunOptions::new(&path);
        options.args.push(iterations.clone());
        options.output = Some(output.clone());
        // The guest's root runs on this thread: give it the stack a fiber has.
        let outcome = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(host_stack())
                .spawn_scoped(scope, || host.run(&linker, &guest, &options, ()))
                .expect("a thread")
                .join()
                .expect("no panic")
        })?;
        assert_eq!(outcome.exit_code, 0, "{}", output.stderr());
        let value = |key: &str| -> String {
            output
                .stdout()
                .lines()
                .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| "?".into())
        };
        rows.push([
            mechanism.to_string(),
            value("backend_switch_round_trip_ns"),
            value("backend_create_finish_ns"),
            value("switch_round_trip_ns"),
            value("create_finish_ns"),
        ]);
    }
    println!("{iterations} iterations each (ns per operation)");
    println!(
        "| mechanism | backend switch round trip | backend create+finish | greenlet switch round trip | greenlet create+finish |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    Ok(())
}

fn host_stack() -> usize {
    greenlet_wasm::DEFAULT_FIBER_STACK_SIZE + (8 << 20)
}
