//! The C library (`native/`): `cargo xtask install-native` and the C/C++ test rows.
//!
//! `install-native --prefix DIR [--target T]` builds `greenlet-native` in release and
//! installs what a C program needs:
//!
//! ```text
//! DIR/include/greenlet.h
//! DIR/lib/libgreenlet.so.0        (the soname; libgreenlet.so links to it)
//! DIR/lib/libgreenlet.a
//! DIR/lib/pkgconfig/greenlet.pc   (from native/greenlet.pc.in)
//! ```
//!
//! so that `cc app.c $(pkg-config --cflags --libs greenlet)` works with
//! `PKG_CONFIG_PATH=DIR/lib/pkgconfig`.
//!
//! `native-tests --target T` is the command of a [`NativeTests`] row. It runs the Rust
//! tests of `greenlet-native` (the header check among them), installs into a scratch prefix,
//! compiles every program of `native/tests/c`, `native/tests/cpp` and `native/examples`
//! through that pkg-config file, and runs each one: natively under valgrind, or under QEMU.
//! Every test program ends with `N passed, M failed`; a program that crashes, fails to
//! compile or upsets valgrind adds a line `name: 0 passed, 1 failed (why)`. The row sums
//! those lines and libtest's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exec::{self, Captured};
use crate::libtest;
use crate::outcome::Counts;
use crate::rows::{Row, RowKind};

/// How the C tests are built and run for one target.
struct Toolchain {
    target: &'static str,
    cc: &'static str,
    cxx: &'static str,
    /// Emulator command line for a cross target.
    runner: Option<&'static str>,
    /// Run the programs under valgrind (native targets).
    valgrind: bool,
}

const TOOLCHAINS: &[Toolchain] = &[
    Toolchain {
        target: "x86_64-unknown-linux-gnu",
        cc: "cc",
        cxx: "g++",
        runner: None,
        valgrind: true,
    },
    Toolchain {
        target: "aarch64-unknown-linux-gnu",
        cc: "aarch64-linux-gnu-gcc",
        cxx: "aarch64-linux-gnu-g++",
        runner: Some("qemu-aarch64 -L /usr/aarch64-linux-gnu"),
        valgrind: false,
    },
];

/// Valgrind's command line.
///
/// The stack allocator registers every greenlet stack with valgrind (a client request,
/// see `backends/src/stack/unix/valgrind.rs`), so a jump of the stack pointer into one is
/// known for a switch. `--max-stackframe` stays below the distance between two stacks of
/// the default size (256 KiB + guard, carved next to each other), as it had to before the
/// stacks were registered, when valgrind guessed switches from how far the stack pointer
/// jumped: 128 KiB is above any real frame of the tests. (Without `-q`, valgrind also warns
/// "client switching stacks?" on the first few switches: that is expected.)
const VALGRIND: &[&str] = &[
    "valgrind",
    "-q",
    "--error-exitcode=1",
    "--leak-check=full",
    "--max-stackframe=131072",
];

/// The test-all-targets rows of the C library.
pub fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "c-abi/x86_64-unknown-linux-gnu",
            backend: "asm-x86_64",
            kind: Box::new(NativeTests {
                target: "x86_64-unknown-linux-gnu",
            }),
        },
        Row {
            name: "c-abi/aarch64-unknown-linux-gnu",
            backend: "asm-aarch64",
            kind: Box::new(NativeTests {
                target: "aarch64-unknown-linux-gnu",
            }),
        },
    ]
}

/// A row running `cargo xtask native-tests --target <target>`.
pub struct NativeTests {
    pub target: &'static str,
}

impl RowKind for NativeTests {
    fn preflight(&self) -> Result<(), String> {
        let tools = toolchain(self.target)?;
        let mut needed = vec![tools.cc, "pkg-config"];
        if tools.valgrind {
            needed.push("valgrind");
        }
        if let Some(runner) = tools.runner.and_then(|r| r.split_whitespace().next()) {
            needed.push(runner);
        }
        match needed.into_iter().find(|p| exec::which(p).is_none()) {
            Some(missing) => Err(format!(
                "{missing} not found (`cargo xtask setup` installs it)"
            )),
            None => Ok(()),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = match std::env::current_exe() {
            Ok(xtask) => Command::new(xtask),
            Err(_) => {
                let mut cmd = exec::cargo();
                cmd.arg("xtask");
                cmd
            }
        };
        cmd.args(["native-tests", "--target", self.target]);
        cmd
    }

    fn count(&self, output: &Captured) -> Counts {
        libtest::count(&output.stdout) + count_plain(&output.stdout)
    }

    fn explain_failure(&self, output: &Captured) -> String {
        output
            .stdout
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("native-tests: error: "))
            .map_or_else(
                || format!("native-tests failed ({})", output.status),
                String::from,
            )
    }
}

fn toolchain(target: &str) -> Result<&'static Toolchain, String> {
    TOOLCHAINS
        .iter()
        .find(|t| t.target == target)
        .ok_or_else(|| {
            let known: Vec<&str> = TOOLCHAINS.iter().map(|t| t.target).collect();
            format!(
                "no C toolchain known for `{target}`; known: {}",
                known.join(", ")
            )
        })
}

/// Sums the lines `N passed, M failed[, K skipped]`, optionally after one `word: `.
pub fn count_plain(output: &str) -> Counts {
    output.lines().filter_map(parse_plain_line).sum()
}

fn parse_plain_line(line: &str) -> Option<Counts> {
    let line = line.trim();
    let rest = match line.split_once(": ") {
        Some((word, rest)) if !word.contains(' ') => rest,
        _ => line,
    };
    let (passed, rest) = rest.split_once(" passed, ")?;
    let (failed, rest) = rest.split_once(" failed")?;
    let (skipped, rest) = match rest.strip_prefix(", ") {
        Some(skip) => {
            let (n, rest) = skip.split_once(" skipped")?;
            (n.parse().ok()?, rest)
        }
        None => (0, rest),
    };
    if !(rest.is_empty() || rest.starts_with(" (")) {
        return None;
    }
    Some(Counts::new(
        passed.parse().ok()?,
        failed.parse().ok()?,
        skipped,
    ))
}

/// Where cargo puts its build output.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// The workspace version (`[workspace.package] version`), for the pkg-config file.
fn version() -> Result<String, String> {
    let manifest =
        fs::read_to_string("Cargo.toml").map_err(|e| format!("cannot read Cargo.toml: {e}"))?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| {
            let value = l.trim().strip_prefix("version")?.trim().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| "no version in [workspace.package] of Cargo.toml".to_string())
}

/// Builds `greenlet-native` in release for `target` (the host if `None`) and installs it
/// under `prefix`.
pub fn install(prefix: &Path, target: Option<&str>) -> Result<(), String> {
    let mut build = exec::cargo();
    build.args(["build", "--release", "-p", "greenlet-native"]);
    if let Some(target) = target {
        build.args(["--target", target]);
    }
    exec::run(&mut build)?;

    let mut built = target_dir();
    if let Some(target) = target {
        built.push(target);
    }
    built.push("release");
    let prefix =
        std::path::absolute(prefix).map_err(|e| format!("bad prefix {}: {e}", prefix.display()))?;
    let lib = prefix.join("lib");
    let include = prefix.join("include");
    let pkgconfig = lib.join("pkgconfig");
    for dir in [&include, &pkgconfig] {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }

    let version = version()?;
    let major = version.split('.').next().unwrap_or("0");
    let soname = format!("libgreenlet.so.{major}");
    copy(&built.join("libgreenlet.so"), &lib.join(&soname))?;
    copy(&built.join("libgreenlet.a"), &lib.join("libgreenlet.a"))?;
    copy(
        Path::new("native/include/greenlet.h"),
        &include.join("greenlet.h"),
    )?;
    let link = lib.join("libgreenlet.so");
    let _ = fs::remove_file(&link);
    symlink(&soname, &link)?;

    let template = fs::read_to_string("native/greenlet.pc.in")
        .map_err(|e| format!("cannot read native/greenlet.pc.in: {e}"))?;
    let pc = template
        .replace("@PREFIX@", &prefix.to_string_lossy())
        .replace("@VERSION@", &version);
    let pc_path = pkgconfig.join("greenlet.pc");
    fs::write(&pc_path, pc).map_err(|e| format!("cannot write {}: {e}", pc_path.display()))?;
    println!("installed libgreenlet {version} into {}", prefix.display());
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    // Remove first: overwriting a shared library in place can crash programs using it.
    let _ = fs::remove_file(to);
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

#[cfg(unix)]
fn symlink(original: &str, link: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(original, link)
        .map_err(|e| format!("cannot link {}: {e}", link.display()))
}

#[cfg(not(unix))]
fn symlink(original: &str, link: &Path) -> Result<(), String> {
    let from = link.with_file_name(original);
    copy(&from, link)
}

/// One program to build and run.
struct Program {
    name: String,
    source: PathBuf,
    cxx: bool,
    /// Link `libgreenlet.a` instead of the shared library.
    static_link: bool,
    /// Not a test: it passes if it exits successfully printing this.
    expect_output: Option<&'static str>,
}

fn programs() -> Result<Vec<Program>, String> {
    let mut programs = Vec::new();
    for (dir, ext, cxx) in [
        ("native/tests/c", "c", false),
        ("native/tests/cpp", "cpp", true),
    ] {
        let mut sources: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| format!("cannot list {dir}: {e}"))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == ext))
            .collect();
        sources.sort();
        for source in sources {
            let stem = source.file_stem().unwrap_or_default().to_string_lossy();
            programs.push(Program {
                name: format!("{stem}.{ext}"),
                source,
                cxx,
                static_link: false,
                expect_output: None,
            });
        }
    }
    for static_link in [false, true] {
        programs.push(Program {
            name: if static_link {
                "hello.c(static)".to_string()
            } else {
                "hello.c".to_string()
            },
            source: PathBuf::from("native/examples/hello.c"),
            cxx: false,
            static_link,
            expect_output: Some("got 1\ngot 2\ngot 3\ncounter said done\n"),
        });
    }
    Ok(programs)
}

/// `cargo xtask native-tests --target T`: see the module docs. `Ok(true)` if all passed.
pub fn run_tests(target: &str) -> Result<bool, String> {
    match run_tests_inner(target) {
        Err(e) => {
            // The row reads this line to say what went wrong.
            println!("native-tests: error: {e}");
            Err(e)
        }
        ok => ok,
    }
}

fn run_tests_inner(target: &str) -> Result<bool, String> {
    let tools = toolchain(target)?;
    let mut total = Counts::default();

    // The Rust side, including the check that include/greenlet.h matches it.
    let mut cargo_test = exec::cargo();
    cargo_test.args(["test", "-p", "greenlet-native", "--target", target]);
    println!("+ {}", exec::display(&cargo_test));
    let rust = exec::tee(&mut cargo_test).map_err(|e| format!("cannot run cargo test: {e}"))?;
    total += libtest::count(&rust.stdout);
    if !rust.status.success() && libtest::count(&rust.stdout).failed == 0 {
        return Err(format!(
            "cargo test -p greenlet-native failed ({})",
            rust.status
        ));
    }

    let scratch = target_dir().join("native-tests").join(target);
    let prefix = scratch.join("prefix");
    let bin = scratch.join("bin");
    install(&prefix, Some(target))?;
    fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let prefix = std::path::absolute(&prefix).map_err(|e| e.to_string())?;
    let flags = PkgConfig {
        path: prefix.join("lib/pkgconfig"),
    };

    for program in programs()? {
        let counts = build_and_run(tools, &program, &flags, &prefix, &bin)?;
        total += counts;
    }
    println!(
        "native tests on {target}: {} passed and {} failed in all, {} skipped",
        total.passed, total.failed, total.ignored
    );
    Ok(total.failed == 0)
}

/// Runs pkg-config against the installed `greenlet.pc`.
struct PkgConfig {
    path: PathBuf,
}

impl PkgConfig {
    fn words(&self, args: &[&str]) -> Result<Vec<String>, String> {
        let mut cmd = Command::new("pkg-config");
        cmd.args(args)
            .arg("greenlet")
            .env("PKG_CONFIG_PATH", &self.path);
        let out = exec::output(&mut cmd).ok_or_else(|| {
            format!(
                "`PKG_CONFIG_PATH={} {}` failed",
                self.path.display(),
                exec::display(&cmd)
            )
        })?;
        Ok(out.split_whitespace().map(String::from).collect())
    }
}

/// Builds and runs one program; prints its output and returns its counts.
fn build_and_run(
    tools: &Toolchain,
    program: &Program,
    flags: &PkgConfig,
    prefix: &Path,
    bin: &Path,
) -> Result<Counts, String> {
    let fail = |why: String| {
        println!("{}: 0 passed, 1 failed ({why})", program.name);
        Ok(Counts {
            failed: 1,
            ..Counts::default()
        })
    };
    let compiler = if program.cxx { tools.cxx } else { tools.cc };
    if exec::which(compiler).is_none() {
        // Only cross C++ compilers are optional; `setup` installs the rest.
        println!(
            "{}: 0 passed, 0 failed, 1 skipped ({compiler} not found)",
            program.name
        );
        return Ok(Counts {
            ignored: 1,
            ..Counts::default()
        });
    }

    let exe = bin.join(program.name.replace(['.', '(', ')'], "_"));
    let mut cc = Command::new(compiler);
    cc.args(if program.cxx {
        ["-std=c++17"]
    } else {
        ["-std=c11"]
    });
    cc.args(["-Wall", "-Wextra", "-Werror", "-O1", "-g"]);
    cc.arg("-Inative/tests/c")
        .arg(&program.source)
        .arg("-o")
        .arg(&exe);
    if program.static_link {
        cc.args(flags.words(&["--cflags"])?);
        cc.arg(prefix.join("lib/libgreenlet.a"));
        let libs = flags.words(&["--static", "--libs-only-l"])?;
        cc.args(libs.iter().filter(|w| *w != "-lgreenlet"));
    } else {
        cc.args(flags.words(&["--cflags", "--libs"])?);
    }
    cc.args(["-lpthread", "-lm"]);
    println!("+ {}", exec::display(&cc));
    let compiled = exec::tee(&mut cc).map_err(|e| format!("cannot run {compiler}: {e}"))?;
    if !compiled.status.success() {
        return fail("does not compile".to_string());
    }

    let libdir = prefix.join("lib");
    let mut run = match (tools.runner, tools.valgrind) {
        (Some(runner), _) => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap_or("qemu"));
            cmd.args(words);
            cmd.arg("-E")
                .arg(format!("LD_LIBRARY_PATH={}", libdir.display()));
            cmd.arg(&exe);
            cmd
        }
        (None, true) => {
            let mut cmd = Command::new(VALGRIND[0]);
            cmd.args(&VALGRIND[1..]).arg(&exe);
            // valgrind does not know guard regions made with MADV_GUARD_INSTALL: it would
            // read them (when unwinding) and crash. Guard pages made with mprotect it knows.
            cmd.env("GREENLET_STACK_GUARD", "mprotect");
            cmd.env("LD_LIBRARY_PATH", &libdir);
            cmd
        }
        (None, false) => {
            let mut cmd = Command::new(&exe);
            cmd.env("LD_LIBRARY_PATH", &libdir);
            cmd
        }
    };
    println!("+ {}", exec::display(&run));
    let ran = exec::tee(&mut run).map_err(|e| format!("cannot run {}: {e}", exe.display()))?;

    if let Some(expected) = program.expect_output {
        return if ran.status.success() && ran.stdout == expected {
            println!("{}: 1 passed, 0 failed", program.name);
            Ok(Counts {
                passed: 1,
                ..Counts::default()
            })
        } else {
            fail(format!("{}, or unexpected output", ran.status))
        };
    }
    let reported = ran.stdout.lines().rev().find_map(parse_plain_line);
    match reported {
        None => fail(format!("no result line; {}", ran.status)),
        Some(counts) if !ran.status.success() && counts.failed == 0 => {
            println!(
                "{}: 0 passed, 1 failed ({}: valgrind errors or a crash after the tests)",
                program.name, ran.status
            );
            Ok(Counts {
                failed: counts.failed + 1,
                ..counts
            })
        }
        Some(counts) => Ok(counts),
    }
}

/// Parses `--prefix DIR [--target T]` of `install-native`.
pub fn parse_install(args: &[String]) -> Result<(PathBuf, Option<String>), String> {
    let (mut prefix, mut target) = (None, None);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--prefix" => prefix = Some(args.next().ok_or("--prefix needs a directory")?),
            "--target" => target = Some(args.next().ok_or("--target needs a triple")?),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let prefix = prefix.ok_or("install-native needs --prefix DIR")?;
    Ok((PathBuf::from(prefix), target.cloned()))
}

/// Parses `--target T` of `native-tests` (default: the host's row).
pub fn parse_tests(args: &[String]) -> Result<String, String> {
    match args {
        [] => Ok(TOOLCHAINS[0].target.to_string()),
        [flag, target] if flag == "--target" => {
            toolchain(target)?;
            Ok(target.clone())
        }
        _ => Err("native-tests takes only --target T".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_result_lines_are_counted() {
        let output = "ok - a\n3 passed, 0 failed\nqsort.c: 0 passed, 1 failed (does not compile)\n\
                      x.cpp: 0 passed, 0 failed, 1 skipped (g++ not found)\n\
                      test result: ok. 14 passed; 0 failed; 0 ignored\n\
                      native tests on t: 3 passed and 1 failed in all, 1 skipped\n\
                      said: 2 passed, 1 failed trailing words\n";
        assert_eq!(count_plain(output), Counts::new(3, 1, 1));
    }

    #[test]
    fn every_row_has_a_toolchain() {
        for row in rows() {
            let target = row.name.trim_start_matches("c-abi/");
            assert!(toolchain(target).is_ok(), "{}", row.name);
        }
    }

    #[test]
    fn install_needs_a_prefix() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_install(&args(&[])).is_err());
        assert_eq!(
            parse_install(&args(&["--prefix", "/p", "--target", "t"])),
            Ok((PathBuf::from("/p"), Some("t".to_string())))
        );
        assert!(parse_tests(&args(&["--target", "mips"])).is_err());
    }

    #[test]
    fn rows_run_native_tests_for_their_target() {
        let row = &rows()[1];
        let shown = exec::display(&row.kind.command());
        assert!(
            shown.contains("native-tests --target aarch64-unknown-linux-gnu"),
            "{shown}"
        );
    }
}
