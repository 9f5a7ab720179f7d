//! Two greenlets hand a counter back and forth; prints `pingpong ok <n>`.
//!
//! `greenlet-wasm run pingpong.wasm [rounds]`
use greenlet::Greenlet;

fn main() {
    let rounds: u32 = greenlet_wasm_guests::arg(1, 1000);
    let pong = Greenlet::new(|first| {
        let mut n = first.downcast::<u32>().expect("a u32");
        loop {
            n = Greenlet::main()
                .switch(n + 1)?
                .downcast::<u32>()
                .expect("a u32");
        }
        #[allow(unreachable_code)]
        Ok(())
    });
    let mut n = 0u32;
    for _ in 0..rounds {
        n = pong
            .switch(n + 1)
            .expect("pong answers")
            .downcast::<u32>()
            .expect("a u32");
    }
    assert_eq!(n, 2 * rounds);
    drop(pong); // kill-on-drop: GreenletExit at its pending switch
    println!("pingpong ok {n} backend={}", greenlet::backend_name());
}
