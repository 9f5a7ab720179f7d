//! Creates and finishes many greenlets (default 200,000), each on a fresh greenlet that
//! switches once; reports the host's RSS (test import) at checkpoints:
//! `rss <done> <kib>` lines, then `churn ok <n>`.
use greenlet::Greenlet;
use greenlet_wasm_guests::test_host::rss_kib;

fn main() {
    let total: u32 = greenlet_wasm_guests::arg(1, 200_000);
    let step = (total / 10).max(1);
    let mut sum = 0u64;
    for i in 0..total {
        let g = Greenlet::new(move |x| {
            let back = Greenlet::main().switch(x.downcast::<u32>().expect("u32") + 1)?;
            Ok(back.downcast::<u32>().expect("u32") * 2)
        });
        let a = g
            .switch(i)
            .expect("first switch")
            .downcast::<u32>()
            .expect("u32");
        let b = g
            .switch(a)
            .expect("second switch")
            .downcast::<u32>()
            .expect("u32");
        assert!(g.is_dead());
        sum += u64::from(b);
        if (i + 1) % step == 0 {
            println!("rss {} {}", i + 1, rss_kib());
        }
    }
    let expected: u64 = (0..u64::from(total)).map(|i| (i + 1) * 2).sum();
    assert_eq!(sum, expected);
    println!("churn ok {total}");
}
