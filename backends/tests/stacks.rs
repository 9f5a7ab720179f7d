//! Guarded stacks: layout, reuse, scale, guard faults, overflow reports and exhaustion.
//!
//! Tests whose outcome is a crash, or that exhaust a process-wide resource, run their body
//! in a child process: the test re-runs this binary with [`CHILD_ENV`] set and
//! `--exact <its own name>`, and checks how the child ended. Under emulation, set
//! `GREENLET_TEST_RUNNER` to the runner command (for example
//! `qemu-aarch64 -L /usr/aarch64-linux-gnu`) so the child runs under it too.

#![cfg(unix)]

use greenlet_backends::arch::corosensei::CoroContext;
use greenlet_backends::stack::{
    DEFAULT_STACK_SIZE, GuardMode, GuardedStack, MAX_STACK_SIZE, StackError, StackPool, guard_mode,
    install_overflow_handler,
};
use greenlet_backends::{Context, DefaultContext};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use std::{env, fs, process, ptr, thread};

// ---------------------------------------------------------------------------------------
// Child processes

/// Set in a child process: the selected test runs its child body.
const CHILD_ENV: &str = "GREENLET_STACKS_TEST_CHILD";

/// How long a child may run; generous for emulation.
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

fn in_child() -> bool {
    env::var_os(CHILD_ENV).is_some()
}

struct ChildOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ChildOutput {
    fn describe(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    fn assert_killed_by(&self, signal: libc::c_int) {
        assert_eq!(
            self.status.signal(),
            Some(signal),
            "expected the child to be killed by signal {signal}\n{}",
            self.describe()
        );
    }

    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "expected the child to succeed\n{}",
            self.describe()
        );
    }

    fn assert_aborted_on_greenlet_overflow(&self) {
        self.assert_killed_by(libc::SIGABRT);
        assert!(
            self.stderr
                .contains("thread has overflowed a greenlet stack (guard page hit at 0x"),
            "no overflow report\n{}",
            self.describe()
        );
        assert!(
            self.stderr
                .contains("fatal runtime error: greenlet stack overflow, aborting"),
            "no overflow report\n{}",
            self.describe()
        );
    }
}

/// Runs the test named `test` again in a child process, with `vars` set, and waits for it.
fn run_child(test: &str, vars: &[(&str, &str)]) -> ChildOutput {
    let exe = env::current_exe().expect("the test binary knows its path");
    let runner = env::var("GREENLET_TEST_RUNNER").unwrap_or_default();
    let mut runner = runner.split_whitespace();
    let mut command = match runner.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(runner).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls getrlimit and setrlimit, which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // No core files from the crashes these tests provoke.
            let mut core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_CORE, &mut core);
            core.rlim_cur = 0;
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            Ok(())
        })
    };
    let child = command.spawn().expect("the child process starts");
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || sender.send(child.wait_with_output()));
    let output = match receiver.recv_timeout(CHILD_TIMEOUT) {
        Ok(output) => output.expect("the child's output can be read"),
        Err(_) => {
            // SAFETY: `pid` is the child we started, which has not been waited for.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("the child running {test} did not finish in {CHILD_TIMEOUT:?}");
        }
    };
    ChildOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Whether the tests run under an emulator such as QEMU user mode.
fn emulated() -> bool {
    env::var("GREENLET_TEST_RUNNER").is_ok_and(|r| !r.trim().is_empty())
}

/// The number of memory mappings of this process.
fn mappings() -> usize {
    fs::read_to_string("/proc/self/maps")
        .map(|maps| maps.lines().count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Layout and reuse

#[test]
fn stacks_are_writable_over_their_whole_usable_range() {
    let mut pool = StackPool::new();
    for size in [0, 1, 16 * 1024, 64 * 1024 + 1, DEFAULT_STACK_SIZE, 1 << 20] {
        for stack in [GuardedStack::new(size).unwrap(), pool.take(size).unwrap()] {
            let (bottom, top) = (stack.bottom(), stack.top());
            assert!(stack.usable_size() >= size.max(16 * 1024));
            assert!(stack.usable_size().is_power_of_two());
            assert_eq!(top as usize - bottom as usize, stack.usable_size());
            assert_eq!(top as usize % 16, 0);
            // SAFETY: [bottom, top) is the stack's usable memory, owned by `stack`.
            unsafe {
                ptr::write_bytes(bottom, 0xa5, stack.usable_size());
                assert_eq!(bottom.read_volatile(), 0xa5);
                assert_eq!(top.sub(1).read_volatile(), 0xa5);
                let middle = bottom.add(stack.usable_size() / 2);
                assert_eq!(middle.read_volatile(), 0xa5);
            }
            pool.give(stack);
        }
    }
}

#[test]
fn stacks_in_use_never_overlap() {
    let stacks: Vec<_> = (0..64)
        .map(|i| GuardedStack::new((16 * 1024) << (i % 4)).unwrap())
        .collect();
    let mut ranges: Vec<_> = stacks
        .iter()
        .map(|s| (s.bottom() as usize, s.top() as usize))
        .collect();
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{pair:x?} overlap");
    }
}

#[test]
fn a_pool_hands_back_the_stack_it_was_given() {
    let mut pool = StackPool::new();
    let stack = pool.take(DEFAULT_STACK_SIZE).unwrap();
    let (bottom, top) = (stack.bottom(), stack.top());
    pool.give(stack);
    let again = pool.take(DEFAULT_STACK_SIZE).unwrap();
    assert_eq!((again.bottom(), again.top()), (bottom, top));
    // A request of another size class gets another slot.
    let small = pool.take(16 * 1024).unwrap();
    assert_ne!(small.top(), top);
}

#[test]
fn a_dropped_stack_is_reused_by_the_next_one_of_its_size() {
    // 2 MiB stacks are used by no other test, so no other test takes this slot in between.
    let stack = GuardedStack::new(2 << 20).unwrap();
    let top = stack.top();
    drop(stack);
    assert_eq!(GuardedStack::new(2 << 20).unwrap().top(), top);
}

#[test]
fn a_pool_returns_its_stacks_to_the_process_when_dropped() {
    // 8 MiB stacks are used by no other test.
    const SIZE: usize = 8 << 20;
    let cached: BTreeSet<usize> = thread::spawn(|| {
        let mut pool = StackPool::new();
        let stacks: Vec<_> = (0..3).map(|_| pool.take(SIZE).unwrap()).collect();
        let tops = stacks.iter().map(|s| s.top() as usize).collect();
        for stack in stacks {
            pool.give(stack);
        }
        tops // the pool is dropped as the thread ends
    })
    .join()
    .unwrap();
    let again: Vec<_> = (0..3).map(|_| GuardedStack::new(SIZE).unwrap()).collect();
    let tops: BTreeSet<usize> = again.iter().map(|s| s.top() as usize).collect();
    assert_eq!(tops, cached);
}

#[test]
fn sizes_beyond_the_maximum_are_refused_with_an_error() {
    let err = StackPool::new().take(MAX_STACK_SIZE + 1).unwrap_err();
    assert!(matches!(err, StackError::TooLarge(n) if n == MAX_STACK_SIZE + 1));
    assert!(err.to_string().contains("too large"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Scale

#[test]
fn two_hundred_thousand_stacks_fit_in_a_few_mappings() {
    let mode = guard_mode();
    // Without guard markers every stack costs two mappings: take what fits comfortably
    // under the default limit of 65,530 alongside the other tests (and, on 32-bit
    // targets, in the address space).
    let count = match mode {
        GuardMode::MadviseGuard if cfg!(target_pointer_width = "64") => 200_000,
        _ if cfg!(target_pointer_width = "64") => 10_000,
        _ => 2_000,
    };
    let mut pool = StackPool::new();
    let mut stacks = Vec::with_capacity(count);
    let before = mappings();
    for _ in 0..count {
        stacks.push(pool.take(DEFAULT_STACK_SIZE).unwrap());
    }
    let after = mappings();
    let growth = after.saturating_sub(before);
    println!(
        "{mode}: {count} stacks of {} KiB added {growth} mappings ({:.4} per stack)",
        DEFAULT_STACK_SIZE / 1024,
        growth as f64 / count as f64
    );
    match mode {
        GuardMode::MadviseGuard => assert!(growth < 1000, "{growth} new mappings"),
        _ => assert!(growth <= 2 * count + 1000, "{growth} new mappings"),
    }
    // Each stack is usable.
    for stack in stacks.iter().step_by(997) {
        // SAFETY: the top byte of the stack's usable memory.
        unsafe { stack.top().sub(1).write_volatile(1) };
    }
    for stack in stacks {
        pool.give(stack);
    }
}

#[test]
fn the_guard_mode_fits_the_platform() {
    let mode = guard_mode();
    println!("guard mode: {mode:?} ({mode})");
    if emulated() {
        // QEMU user mode accepts MADV_GUARD_INSTALL without doing anything.
        assert_eq!(mode, GuardMode::Mprotect);
    } else if env::var_os("GREENLET_STACK_GUARD").is_none() && kernel_has_guard_markers() {
        assert_eq!(mode, GuardMode::MadviseGuard);
    }
}

/// Whether this is Linux 6.13 or later.
fn kernel_has_guard_markers() -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    let Ok(release) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (6, 13)
}

// ---------------------------------------------------------------------------------------
// Guards and the overflow report

#[test]
fn touching_the_guard_aborts_with_a_clear_message_in_both_guard_modes() {
    if in_child() {
        install_overflow_handler();
        eprintln!("guard mode: {:?}", guard_mode());
        let stack = GuardedStack::new(64 * 1024).unwrap();
        // SAFETY: deliberately touches the guard, which must fault.
        unsafe { stack.bottom().sub(1).write_volatile(1) };
        eprintln!("the guard did not fault");
        process::exit(1);
    }
    let name = "touching_the_guard_aborts_with_a_clear_message_in_both_guard_modes";
    let probed = run_child(name, &[]);
    probed.assert_aborted_on_greenlet_overflow();
    let forced = run_child(name, &[("GREENLET_STACK_GUARD", "mprotect")]);
    forced.assert_aborted_on_greenlet_overflow();
    assert!(
        forced.stderr.contains("guard mode: Mprotect"),
        "{}",
        forced.describe()
    );
}

/// Recurses until the stack runs out.
#[inline(never)]
fn recurse(depth: usize) -> usize {
    let mut frame = [0u8; 256];
    black_box(&mut frame);
    if depth == 0 {
        return 0;
    }
    recurse(depth - 1) + usize::from(black_box(frame)[0])
}

unsafe extern "C" fn recurse_forever(_: usize, _: *mut ()) -> ! {
    let result = recurse(usize::MAX);
    eprintln!("the recursion ended ({result})");
    process::exit(1)
}

/// Runs [`recurse_forever`] on a greenlet of backend `C`; the process aborts.
fn overflow_a_greenlet<C: Context>() -> ! {
    let stack = GuardedStack::new(64 * 1024).unwrap();
    let mut thread = C::thread();
    let mut greenlet = C::new(stack, recurse_forever, ptr::null_mut());
    // SAFETY: `thread` is the running context and `greenlet` a new one; neither moves.
    unsafe { C::switch(&mut thread, &mut greenlet, 0) };
    eprintln!("the greenlet came back");
    process::exit(1)
}

#[test]
fn deep_recursion_on_a_greenlet_aborts_with_a_clear_message() {
    if in_child() {
        install_overflow_handler();
        overflow_a_greenlet::<DefaultContext>();
    }
    let name = "deep_recursion_on_a_greenlet_aborts_with_a_clear_message";
    run_child(name, &[]).assert_aborted_on_greenlet_overflow();
}

#[test]
fn deep_recursion_on_a_greenlet_of_a_c_thread_aborts_with_a_clear_message() {
    extern "C" fn c_thread(_: *mut libc::c_void) -> *mut libc::c_void {
        let mut current = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: 0,
            ss_size: 0,
        };
        // SAFETY: a null new stack only queries.
        unsafe { libc::sigaltstack(ptr::null(), &mut current) };
        eprintln!(
            "C thread has an alternate signal stack: {}",
            current.ss_flags & libc::SS_DISABLE == 0
        );
        // No install_overflow_handler() here: taking a stack gives the thread what the
        // handler needs, since the main thread installed it.
        overflow_a_greenlet::<CoroContext>();
    }
    if in_child() {
        install_overflow_handler();
        let mut thread: libc::pthread_t = 0;
        // SAFETY: `c_thread` has the signature pthread_create expects and uses no argument.
        let created =
            unsafe { libc::pthread_create(&mut thread, ptr::null(), c_thread, ptr::null_mut()) };
        assert_eq!(created, 0);
        // SAFETY: `thread` was created above and is joined once.
        unsafe { libc::pthread_join(thread, ptr::null_mut()) };
        process::exit(1);
    }
    let name = "deep_recursion_on_a_greenlet_of_a_c_thread_aborts_with_a_clear_message";
    let output = run_child(name, &[]);
    output.assert_aborted_on_greenlet_overflow();
    assert!(
        output
            .stderr
            .contains("C thread has an alternate signal stack: false"),
        "{}",
        output.describe()
    );
}

#[test]
fn other_faults_still_get_their_usual_outcome() {
    if in_child() {
        install_overflow_handler();
        let page = 4096 * 16;
        // SAFETY: a fresh inaccessible mapping, unrelated to any stack.
        let inaccessible = unsafe {
            libc::mmap(
                ptr::null_mut(),
                page,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(inaccessible, libc::MAP_FAILED);
        // SAFETY: deliberately faults.
        unsafe { inaccessible.cast::<u8>().write_volatile(1) };
        eprintln!("the inaccessible page did not fault");
        process::exit(1);
    }
    let output = run_child("other_faults_still_get_their_usual_outcome", &[]);
    // Some systems (macOS) raise SIGBUS for a protection fault.
    if output.status.signal() != Some(libc::SIGBUS) {
        output.assert_killed_by(libc::SIGSEGV);
    }
    assert!(!output.stderr.contains("greenlet"), "{}", output.describe());
}

#[test]
fn thread_stack_overflows_are_still_reported_by_std() {
    if in_child() {
        install_overflow_handler();
        let overflowing = thread::Builder::new()
            .name("deep".into())
            .stack_size(256 * 1024)
            .spawn(|| recurse(usize::MAX))
            .unwrap();
        let result = overflowing.join();
        eprintln!("the thread ended: {result:?}");
        process::exit(1);
    }
    let output = run_child("thread_stack_overflows_are_still_reported_by_std", &[]);
    output.assert_killed_by(libc::SIGABRT);
    assert!(
        output.stderr.contains("has overflowed its stack"),
        "{}",
        output.describe()
    );
    assert!(!output.stderr.contains("greenlet"), "{}", output.describe());
}

// ---------------------------------------------------------------------------------------
// Exhaustion: an error value, never a panic or an abort

#[cfg(any(target_os = "linux", target_os = "android"))] // reads /proc/self/status
#[test]
fn running_out_of_address_space_returns_an_error() {
    const SIZE: usize = 1 << 20;
    if in_child() {
        // Do everything that needs memory before lowering the limit.
        let mut stacks = Vec::with_capacity(100_000);
        stacks.push(GuardedStack::new(SIZE).unwrap());
        println!("guard mode: {:?}", guard_mode());
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let vm_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmSize:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        let headroom = 256usize << 20;
        let mut original = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `original` is valid for writing.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut original) },
            0
        );
        let lowered = libc::rlimit {
            // Under QEMU, VmSize is the emulator's and may not fit a 32-bit rlim_t; the
            // check below then finds the limit not enforced.
            rlim_cur: libc::rlim_t::try_from(vm_kib * 1024 + headroom as u64)
                .unwrap_or(libc::RLIM_INFINITY),
            rlim_max: original.rlim_max,
        };
        // SAFETY: lowering our own soft limit below the hard one is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lowered) }, 0);

        // QEMU user mode ignores RLIMIT_AS: check that the limit holds here.
        // SAFETY: an anonymous mapping, unmapped again at once if it succeeds.
        let too_much = unsafe {
            libc::mmap(
                ptr::null_mut(),
                2 * headroom,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let error = if too_much != libc::MAP_FAILED {
            // SAFETY: mapped just above, unused.
            unsafe { libc::munmap(too_much, 2 * headroom) };
            None
        } else {
            loop {
                match GuardedStack::new(SIZE) {
                    Ok(stack) if stacks.len() < stacks.capacity() => stacks.push(stack),
                    Ok(_) => break None,
                    Err(e) => break Some(e),
                }
            }
        };
        // SAFETY: raising the soft limit back to its old value, below the hard one.
        unsafe { libc::setrlimit(libc::RLIMIT_AS, &original) };
        match error {
            None if too_much != libc::MAP_FAILED => {
                println!("RLIMIT_AS is not enforced here; nothing to test")
            }
            None => panic!("{} stacks and still no error", stacks.len()),
            Some(e) => {
                println!("{} stacks, then: {e}", stacks.len());
                assert!(matches!(e, StackError::Exhausted(_)), "{e:?}");
                assert!(stacks.len() > 100);
            }
        }
        return;
    }
    let output = run_child("running_out_of_address_space_returns_an_error", &[]);
    output.assert_success();
    assert!(
        output
            .stdout
            .contains("stacks, then: no memory for a greenlet stack")
            || (emulated() && output.stdout.contains("not enforced here")),
        "{}",
        output.describe()
    );
    println!("{}", output.stdout);
}

#[test]
fn running_out_of_memory_mappings_returns_an_error() {
    if in_child() {
        // Guard pages cost two mappings per stack: the limit is reached after ~32,000.
        assert_eq!(guard_mode(), GuardMode::Mprotect);
        // At the mapping limit even malloc may fail: allocate everything needed first.
        let mut stacks = Vec::with_capacity(1_000_000);
        let mut report = String::with_capacity(4096);
        let before = mappings();
        let error = loop {
            if stacks.len() == stacks.capacity() {
                break None;
            }
            match GuardedStack::new(16 * 1024) {
                Ok(stack) => stacks.push(stack),
                Err(e) => break Some(e),
            }
        };
        let ok = matches!(error, Some(StackError::Exhausted(_))) && stacks.len() > 10_000;
        let _ = match &error {
            Some(e) => writeln!(
                report,
                "{} stacks ({} mappings before), then: {e}",
                stacks.len(),
                before
            ),
            None => writeln!(report, "{} stacks and still no error", stacks.len()),
        };
        // SAFETY: writes a buffer we own to stdout, then exits without running anything
        // that might need memory.
        unsafe {
            libc::write(1, report.as_ptr().cast(), report.len());
            libc::_exit(if ok { 0 } else { 2 });
        }
    }
    let output = run_child(
        "running_out_of_memory_mappings_returns_an_error",
        &[("GREENLET_STACK_GUARD", "mprotect")],
    );
    output.assert_success();
    assert!(
        output
            .stdout
            .contains("then: no memory for a greenlet stack"),
        "{}",
        output.describe()
    );
    println!("{}", output.stdout);
}
