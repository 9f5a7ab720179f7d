//! A guest that uses an import of its embedder (see `wasm/host/examples/embed.rs`): two
//! greenlets take turns reporting lines to the host through `demo::report`.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p greenlet-wasm-guests --example host_import
//! cargo run --release -p greenlet-wasm --example embed -- \
//!     target/wasm32-wasip1/release/examples/host_import.wasm
//! ```
use greenlet::Greenlet;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "demo")]
unsafe extern "C" {
    /// Hands the host a UTF-8 line; returns how many lines it has now.
    #[link_name = "report"]
    fn host_report(ptr: *const u8, len: usize) -> u32;
}

#[cfg(target_arch = "wasm32")]
fn report(line: &str) -> u32 {
    // SAFETY: the host reads `len` bytes at `ptr` during the call, and nothing else.
    unsafe { host_report(line.as_ptr(), line.len()) }
}

#[cfg(not(target_arch = "wasm32"))]
fn report(line: &str) -> u32 {
    println!("{line}");
    0
}

fn main() {
    let main = Greenlet::main();
    let worker = Greenlet::new(move |_| {
        for i in 0..3 {
            report(&format!("worker line {i}"));
            main.switch(())?;
        }
        Ok(())
    });
    while !worker.is_dead() {
        worker.switch(()).expect("worker runs");
        let total = report("main line");
        println!("the host has {total} lines");
    }
}
