//! Embedding greenlet-wasm: load a guest, give it an import of our own next to WASI and
//! the fiber imports, run it, and get our state back.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p greenlet-wasm-guests --example host_import
//! cargo run --release -p greenlet-wasm --example embed -- \
//!     target/wasm32-wasip1/release/examples/host_import.wasm [stack-switching|store-per-fiber]
//! ```
use greenlet_wasm::{Error, GuestMemory, GuestState, Host, HostConfig, Mechanism, RunOptions};
use wasmtime::Caller;

/// Our state: the lines the guest reported.
#[derive(Default)]
struct Lines(Vec<String>);

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: embed <guest.wasm> [stack-switching|store-per-fiber]");
        std::process::exit(2);
    };
    let mechanism = match args.next() {
        Some(m) => m.parse::<Mechanism>().map_err(Error::Config)?,
        None => Mechanism::best_available(),
    };
    let host = Host::new(HostConfig {
        mechanism,
        ..HostConfig::default()
    })?;
    let mut linker = host.linker::<Lines>()?;
    // demo::report(ptr, len) -> lines so far: copies a string out of the guest.
    linker
        .func_wrap(
            "demo",
            "report",
            |mut caller: Caller<'_, GuestState<Lines>>, ptr: i32, len: i32| -> u32 {
                let memory = GuestMemory::of(&mut caller).expect("the guest exports memory");
                let bytes = memory
                    .read(&caller, ptr as u32, len as u32)
                    .unwrap_or_default();
                let mut lines = caller.data().user();
                lines.0.push(String::from_utf8_lossy(&bytes).into_owned());
                lines.0.len() as u32
            },
        )
        .map_err(|e| Error::Link(e.to_string()))?;
    let guest = host.load_file(&path)?;
    let outcome = host.run(&linker, &guest, &RunOptions::new(&path), Lines::default())?;
    println!(
        "guest exited with {} on {}; it reported:",
        outcome.exit_code,
        host.mechanism()
    );
    for line in &outcome.user.0 {
        println!("  {line}");
    }
    Ok(())
}
