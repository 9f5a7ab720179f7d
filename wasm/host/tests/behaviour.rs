//! The host's behaviour on both mechanisms: switching, reuse, limits, traps, bad input.

mod common;

use common::{MECHANISMS, guest, host, run, run_on};
use greenlet_wasm::{Error, Host, HostConfig, Mechanism};

#[test]
fn ping_pong_hands_values_back_and_forth() {
    for m in MECHANISMS {
        let ran = run(m, "pingpong", &["1000"]);
        assert_eq!(ran.exit_code(), 0, "{m}");
        assert!(
            ran.stdout()
                .contains("pingpong ok 2000 backend=wasm-host-fibers"),
            "{m}: {}",
            ran.stdout()
        );
    }
}

#[test]
fn two_hundred_thousand_greenlets_run_with_flat_host_memory() {
    for m in MECHANISMS {
        let ran = run(m, "churn", &["200000"]);
        assert_eq!(ran.exit_code(), 0, "{m}");
        let out = ran.stdout();
        assert!(out.contains("churn ok 200000"), "{m}: {out}");
        let rss: Vec<u32> = out
            .lines()
            .filter_map(|l| l.strip_prefix("rss "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        assert_eq!(rss.len(), 10, "{m}: {out}");
        eprintln!("{m}: host RSS (KiB) after each 20,000 greenlets: {rss:?}");
        // From the first tenth to the end: flat (within 8 MiB of noise).
        let growth = i64::from(rss[9]) - i64::from(rss[0]);
        assert!(growth < 8 * 1024, "{m}: RSS grew by {growth} KiB: {rss:?}");
        // Native stacks were reused, not made per greenlet.
        let made = ran.result.as_ref().expect("ran").native_stacks_created;
        assert!(
            made < 100,
            "{m}: {made} native stacks for 200,000 greenlets"
        );
    }
}

#[test]
fn live_fibers_stop_at_the_host_limit_with_a_clear_error() {
    for m in MECHANISMS {
        let host = Host::new(HostConfig {
            mechanism: m,
            fiber_limit: Some(300),
            ..HostConfig::default()
        })
        .expect("host");
        let ran = run_on(&host, &guest("live"), &["16384"]);
        assert_eq!(ran.exit_code(), 0, "{m}");
        let out = ran.stdout();
        // The guest's stack pool may hold a few fibers, but at most the limit are live.
        assert!(out.contains("live 300\n"), "{m}: {out}");
        assert!(
            out.contains("the wasm host's live-fiber limit (300) is reached"),
            "{m}: {out}"
        );
        assert!(out.contains("released"), "{m}: {out}");
    }
}

#[test]
fn the_default_limit_is_reached_without_hurting_the_host() {
    // The real limit, from vm.max_map_count: every fiber gets a native stack.
    let m = Mechanism::StackSwitching;
    let host = host(m);
    let limit = host.fiber_limit();
    let ran = run_on(&host, &guest("live"), &["16384"]);
    assert_eq!(ran.exit_code(), 0);
    assert!(
        ran.stdout().contains(&format!("live {limit}\n")),
        "{}",
        ran.stdout()
    );
    // The host is fine afterwards.
    assert_eq!(run_on(&host, &guest("pingpong"), &["10"]).exit_code(), 0);
}

#[test]
fn bad_ids_get_error_results_not_traps() {
    for m in MECHANISMS {
        let ran = run(m, "badids", &[]);
        assert_eq!(ran.exit_code(), 0, "{m}: {}", ran.stdout());
        assert!(ran.stdout().contains("badids ok"), "{m}: {}", ran.stdout());
    }
}

fn trap(m: Mechanism, kind: &str) -> (Error, String, String) {
    let ran = run(m, "traps", &[kind]);
    let (stdout, stderr) = (ran.stdout(), ran.stderr());
    assert!(stdout.contains("suspended 3"), "{m} {kind}: {stdout}");
    assert!(!stdout.contains("survived"), "{m} {kind}: {stdout}");
    match ran.result {
        Err(e) => (e, stdout, stderr),
        Ok(o) => panic!(
            "{m} {kind}: exited with {} instead of trapping",
            o.exit_code
        ),
    }
}

#[test]
fn traps_in_a_greenlet_are_reported_and_the_host_survives() {
    for m in MECHANISMS {
        for kind in ["unreachable", "out-of-bounds", "stack-overflow", "panic"] {
            let (e, _, stderr) = trap(m, kind);
            let Error::Trap { fiber, message } = &e else {
                panic!("{m} {kind}: not a trap: {e}");
            };
            assert!(
                matches!(fiber, Some(id) if *id > 0),
                "{m} {kind}: fiber {fiber:?}"
            );
            let expected = match kind {
                "out-of-bounds" => "out of bounds",
                "stack-overflow" => "call stack exhausted",
                _ => "unreachable",
            };
            assert!(message.contains(expected), "{m} {kind}: {message}");
            if kind == "panic" {
                assert!(stderr.contains("panicked on purpose"), "{m}: {stderr}");
            }
        }
        // The same host process goes on running guests.
        assert_eq!(run(m, "pingpong", &["10"]).exit_code(), 0, "{m}");
    }
}

#[test]
fn exit_inside_a_greenlet_is_the_exit_code() {
    for m in MECHANISMS {
        let ran = run(m, "traps", &["exit"]);
        assert_eq!(ran.exit_code(), 42, "{m}");
    }
}

#[test]
fn shadow_stack_overflow_is_named() {
    for m in MECHANISMS {
        let (e, _, stderr) = trap(m, "shadow-overflow");
        let text = format!("{e}\n{stderr}");
        assert!(text.contains("shadow-stack overflow"), "{m}: {text}");
    }
}

#[test]
fn malformed_input_is_a_clear_error() {
    for m in MECHANISMS {
        let host = host(m);
        let err = |bytes: &[u8]| host.load(bytes).expect_err("rejected").to_string();
        assert!(err(b"").contains("the file is empty"), "{m}");
        assert!(
            err(b"hello world").contains("not a WebAssembly module"),
            "{m}"
        );
        assert!(err(b"\0asm\x0d\0\x01\0").contains("component"), "{m}");
        assert!(
            err(b"\0asm\x01\0\0\0\x01\xff").contains("invalid module"),
            "{m}"
        );
        let no_start = err(br#"(module (func (export "main")))"#);
        assert!(no_start.contains("`_start`"), "{m}: {no_start}");
        let no_exports = err(br#"(module
            (import "greenlet_fiber_v1" "current" (func (result i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#);
        assert!(no_exports.contains("__stack_pointer"), "{m}: {no_exports}");
        let v2 = err(br#"(module
            (import "greenlet_fiber_v2" "current" (func (result i32)))
            (func (export "_start")))"#);
        assert!(v2.contains("greenlet_fiber_v1"), "{m}: {v2}");
        let unknown = run_on(
            &host,
            br#"(module (import "env" "nope" (func)) (func (export "_start")))"#,
            &[],
        );
        let Err(Error::Link(msg)) = unknown.result else {
            panic!("{m}: unknown import accepted");
        };
        assert!(msg.contains("nope"), "{m}: {msg}");
        // Still usable.
        assert_eq!(
            run_on(&host, &guest("pingpong"), &["3"]).exit_code(),
            0,
            "{m}"
        );
    }
}
