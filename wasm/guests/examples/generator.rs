//! A generator on greenlets, run by the wasm host: Fibonacci numbers produced by a
//! greenlet that yields them one at a time.
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p greenlet-wasm-guests --example generator
//! greenlet-wasm run target/wasm32-wasip1/release/examples/generator.wasm 10
//! ```
use greenlet::Generator;
use greenlet::generator::yield_;

fn main() {
    let count: usize = greenlet_wasm_guests::arg(1, 10);
    let fibonacci: Generator<u64> = Generator::new(|| {
        let (mut a, mut b) = (0u64, 1u64);
        loop {
            yield_(a)?;
            (a, b) = (b, a.wrapping_add(b));
        }
    });
    let numbers: Vec<u64> = fibonacci
        .take(count)
        .collect::<Result<_, _>>()
        .expect("the generator yields u64s");
    println!("{numbers:?}");
}
