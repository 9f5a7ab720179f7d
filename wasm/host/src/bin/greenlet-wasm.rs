//! `greenlet-wasm run [options] module.wasm [args...]`: runs a wasm32-wasip1 module with
//! WASI and the greenlet_fiber_v1 imports; the guest's exit code becomes ours.
//!
//! As a cargo runner: `CARGO_TARGET_WASM32_WASIP1_RUNNER="greenlet-wasm run"`.

use greenlet_wasm::{Error, Host, HostConfig, Mechanism, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: greenlet-wasm run [options] <module.wasm> [args...]
       greenlet-wasm info [--fibers=<mechanism>]

Runs a wasm32-wasip1 command with WASI and the greenlet_fiber_v1 imports. The guest's exit
code is passed through; a trap prints a message and exits with 134; a module that cannot be
loaded exits with 1.

options:
  --fibers=<mechanism>     stack-switching (default on x86-64 Linux) or store-per-fiber;
                           also read from GREENLET_WASM_FIBERS
  --fiber-limit=<n>        most live fibers (default: from vm.max_map_count)
  --fiber-stack-size=<n>   bytes of native stack per fiber (default 8388608)
  --dir=<host>[::<guest>]  let the guest open files under a host directory
  --env=<name>=<value>     set a guest environment variable
  --no-inherit-env         do not pass the host's environment to the guest
";

/// Exit code for a trap or fiber fault (as a shell reports SIGABRT).
const EXIT_TRAP: u8 = 134;
/// Exit code when the module cannot be loaded or linked, or the host fails.
const EXIT_LOAD: u8 = 1;
/// Exit code for bad command-line usage.
const EXIT_USAGE: u8 = 2;

struct Command {
    config: HostConfig,
    options: RunOptions,
    inherit_env: bool,
    module: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut config = HostConfig::default();
    if let Ok(m) = std::env::var("GREENLET_WASM_FIBERS")
        && !m.is_empty()
    {
        config.mechanism = m.parse::<Mechanism>()?;
    }
    let mut options = RunOptions::default();
    let mut inherit_env = true;
    let mut module = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "--fibers" => config.mechanism = value(flag)?.parse()?,
            "--fiber-limit" => {
                let v = value(flag)?;
                config.fiber_limit = Some(v.parse().map_err(|_| format!("bad --fiber-limit {v}"))?);
            }
            "--fiber-stack-size" => {
                let v = value(flag)?;
                config.fiber_stack_size = v
                    .parse()
                    .map_err(|_| format!("bad --fiber-stack-size {v}"))?;
            }
            "--dir" => {
                let v = value(flag)?;
                let (host, guest) = match v.split_once("::") {
                    Some((h, g)) => (h.to_string(), g.to_string()),
                    None => (v.clone(), v.clone()),
                };
                options.dirs.push((PathBuf::from(host), guest));
            }
            "--env" => {
                let v = value(flag)?;
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--env wants NAME=VALUE, got {v}"))?;
                options.env.push((k.to_string(), val.to_string()));
            }
            "--no-inherit-env" => inherit_env = false,
            "-h" | "--help" => return Err(String::new()),
            f if f.starts_with("--") && module.is_none() => {
                return Err(format!("unknown option {f}"));
            }
            _ => {
                // The module, then its arguments, untouched.
                module = Some(PathBuf::from(arg));
                options.args.push(arg.clone());
                options.args.extend(rest.by_ref().cloned());
            }
        }
    }
    Ok(Command {
        config,
        options,
        inherit_env,
        module,
    })
}

fn run(mut command: Command) -> Result<i32, Error> {
    let module = command.module.take().expect("checked by main");
    if command.inherit_env {
        let explicit = std::mem::take(&mut command.options.env);
        command.options.env = std::env::vars().collect();
        command.options.env.extend(explicit);
    }
    let host = Host::new(command.config)?;
    let guest = host.load_file(&module)?;
    let linker = host.linker::<()>()?;
    Ok(host.run(&linker, &guest, &command.options, ())?.exit_code)
}

/// Runs the guest on a thread whose stack holds as much wasm as a fiber's: the root
/// (`_start`) runs on the calling thread's own stack.
fn run_on_big_stack(command: Command) -> Result<i32, Error> {
    let stack = command.config.fiber_stack_size + (8 << 20);
    std::thread::Builder::new()
        .name("guest".into())
        .stack_size(stack)
        .spawn(move || run(command))
        .map_err(|e| Error::Host(format!("cannot start the guest thread: {e}")))?
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Host(
                "the host panicked while running the guest".into(),
            ))
        })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (sub, rest) = match args.split_first() {
        Some((sub, rest)) => (sub.as_str(), rest),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let command = match parse(rest) {
        Ok(c) => c,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("greenlet-wasm: {msg}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(if msg.is_empty() { 0 } else { EXIT_USAGE });
        }
    };
    match sub {
        "info" => match Host::new(command.config) {
            Ok(host) => {
                println!("mechanism: {}", host.mechanism());
                println!("fiber limit: {}", host.fiber_limit());
                println!("abi: {}", greenlet_wasm::ABI_MODULE);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("greenlet-wasm: {e}");
                ExitCode::from(EXIT_LOAD)
            }
        },
        "run" if command.module.is_some() => match run_on_big_stack(command) {
            // WASI exit codes are 0..=255 in practice; anything else reads as failure.
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e @ (Error::Trap { .. } | Error::Fault(_))) => {
                eprintln!("greenlet-wasm: {e}");
                ExitCode::from(EXIT_TRAP)
            }
            Err(e) => {
                eprintln!("greenlet-wasm: {e}");
                ExitCode::from(EXIT_LOAD)
            }
        },
        "run" => {
            eprintln!("greenlet-wasm: run needs a module");
            eprint!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("greenlet-wasm: unknown command {other}");
            eprint!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
