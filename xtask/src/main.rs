//! Project tasks for greenlet-rs, run as `cargo xtask <command>` from anywhere in the
//! workspace. Standard library only, so it builds in seconds on a cold machine.

mod bench;
mod ci;
mod exec;
mod libtest;
mod native;
mod outcome;
mod rows;
mod setup;
mod table;
mod test_all;

use std::path::Path;
use std::process::ExitCode;

use test_all::Options;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup               install missing Rust targets and components and Debian packages
  test-all-targets    run the test suites on every target row and print a results table
  ci                  setup, cargo fmt --check, cargo clippy -D warnings, test-all-targets
  bench               benchmarks against corosensei, Python greenlet and OS threads;
                      prints one table and writes BENCHMARKS.md
  install-native      build libgreenlet in release and install it: --prefix DIR [--target T]
  native-tests        the C/C++ tests of libgreenlet (a test-all-targets row): [--target T]
  help                print this message

options (test-all-targets, ci):
  --targets a,b       run only these rows (target triples)
  --no-setup          do not run setup first";

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    Setup,
    TestAllTargets(Options),
    Ci(Options),
    Bench(bench::Options),
    InstallNative(std::path::PathBuf, Option<String>),
    NativeTests(String),
    Help,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match parse_args(&args) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // Run from the workspace root, wherever `cargo xtask` was called from.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace");
    if let Err(e) = std::env::set_current_dir(root) {
        eprintln!(
            "error: cannot enter the workspace root {}: {e}",
            root.display()
        );
        return ExitCode::FAILURE;
    }

    let result = match task {
        Task::Help => {
            println!("{USAGE}\n\n{}", bench::USAGE);
            Ok(true)
        }
        Task::Setup => setup::run().map(|()| true),
        Task::TestAllTargets(options) => test_all::run(&options),
        Task::Ci(options) => ci::run(&options),
        Task::InstallNative(prefix, target) => {
            native::install(&prefix, target.as_deref()).map(|()| true)
        }
        Task::NativeTests(target) => native::run_tests(&target),
        Task::Bench(options) => bench::run(&options),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Result<Task, String> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Task::Help);
    };
    match command.as_str() {
        "setup" => no_options(command, rest).map(|()| Task::Setup),
        "test-all-targets" => parse_options(rest).map(Task::TestAllTargets),
        "ci" => parse_options(rest).map(Task::Ci),
        "install-native" => native::parse_install(rest).map(|(p, t)| Task::InstallNative(p, t)),
        "native-tests" => native::parse_tests(rest).map(Task::NativeTests),
        "bench" => bench::parse_options(rest).map(Task::Bench),
        "help" | "-h" | "--help" => Ok(Task::Help),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn no_options(command: &str, rest: &[String]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(format!("`{command}` takes no options, got `{arg}`")),
    }
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let targets = match arg.as_str() {
            "--no-setup" => {
                options.no_setup = true;
                continue;
            }
            "--targets" => args
                .next()
                .ok_or("--targets needs a value, e.g. --targets a,b")?,
            _ => match arg.strip_prefix("--targets=") {
                Some(value) => value,
                None => return Err(format!("unknown option `{arg}`")),
            },
        };
        let list: Vec<String> = targets
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        if list.is_empty() {
            return Err("--targets needs at least one target".into());
        }
        options.targets.get_or_insert_with(Vec::new).extend(list);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Task, String> {
        parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_targets_and_no_setup() {
        let expected = Options {
            targets: Some(vec!["a".into(), "b".into()]),
            no_setup: true,
        };
        assert_eq!(
            parse(&["test-all-targets", "--targets", "a,b", "--no-setup"]),
            Ok(Task::TestAllTargets(expected))
        );
        let expected = Options {
            targets: Some(vec!["a".into()]),
            no_setup: false,
        };
        assert_eq!(parse(&["ci", "--targets=a"]), Ok(Task::Ci(expected)));
    }

    #[test]
    fn no_arguments_prints_help() {
        assert_eq!(parse(&[]), Ok(Task::Help));
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(parse(&["test-all"]).is_err());
        assert!(parse(&["test-all-targets", "--target", "a"]).is_err());
        assert!(parse(&["test-all-targets", "--targets"]).is_err());
        assert!(parse(&["test-all-targets", "--targets", ","]).is_err());
        assert!(parse(&["setup", "--no-setup"]).is_err());
    }
}
