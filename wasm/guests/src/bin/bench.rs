//! Switch round trip and create+finish times through the greenlet API.
//!
//! `greenlet-wasm run [--fibers=...] bench.wasm [iterations]` prints
//! `switch_round_trip_ns <x>` and `create_finish_ns <y>`.
use greenlet::Greenlet;
use std::time::Instant;

fn main() {
    let n: u32 = greenlet_wasm_guests::arg(1, 200_000);
    let main = Greenlet::main();
    let peer = Greenlet::new(move |_| -> Result<(), greenlet::Error> {
        loop {
            main.switch(())?;
        }
    });
    peer.switch(()).expect("starts");
    let t = Instant::now();
    for _ in 0..n {
        peer.switch(()).expect("round trip");
    }
    let switch_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    drop(peer);

    let t = Instant::now();
    for i in 0..n {
        let g = Greenlet::new(move |_| Ok(i));
        g.switch(()).expect("runs to the end");
    }
    let create_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    println!("backend {}", greenlet::backend_name());
    println!("switch_round_trip_ns {switch_ns:.1}");
    println!("create_finish_ns {create_ns:.1}");
}
