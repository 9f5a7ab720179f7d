//! `cargo xtask bench`: greenlet-rs against its best peers, measured side by side in one
//! run, printed as one table and written to `BENCHMARKS.md`.
//!
//! Where the numbers come from:
//! - timing rows: the criterion benches of `greenlet-benches` (`benches/benches/*.rs`),
//!   one process per group and run, so ours and corosensei are measured in the same
//!   process. Each row's figure is the median over runs of criterion's median, with the
//!   range over runs; each ratio is the median over runs of the ratio within the run;
//! - Python greenlet: `benches/python/greenlet_bench.py` in a virtual environment under the
//!   target dir (`pip install greenlet`), its own repeated runs; its ratios are ratios of
//!   medians of the same `cargo xtask bench` run;
//! - memory: `memprobe` (a `greenlet-benches` binary), one subprocess per row, so running
//!   out of memory or mappings cannot take the harness down;
//! - wasm32: the wasm host's `bench` guest, timed by itself, run under `greenlet-wasm` once
//!   per fiber mechanism and run; skipped if the host is not there or does not build, see
//!   [`wasm_rows`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::exec;

/// The bench crate's package name.
const PACKAGE: &str = "greenlet-benches";
/// The Python script, from the workspace root.
const PYTHON_SCRIPT: &str = "benches/python/greenlet_bench.py";

/// The sections of the table, in order; `--only` picks some.
const SECTIONS: &[&str] = &["round-trip", "create", "python", "memory", "wasm"];

/// Options of `cargo xtask bench`.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Runs of each criterion group (and of each Python timing).
    pub runs: usize,
    /// Short warm-up and measurement times, for trying the harness out.
    pub quick: bool,
    /// Live greenlets for the RSS-per-greenlet rows.
    pub live: u64,
    /// The number of live greenlets the "most live" rows try to reach.
    pub max_live: u64,
    /// A probe stops once its RSS passes this many MiB.
    pub rss_cap_mib: u64,
    /// Only these sections (see [`SECTIONS`]); all when `None`.
    pub only: Option<Vec<String>>,
    /// Where to write the Markdown report.
    pub output: PathBuf,
    /// Seconds the wasm section may spend building the wasm host.
    pub wasm_build_timeout: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 5,
            quick: false,
            live: 100_000,
            max_live: 1_000_000,
            rss_cap_mib: 8 * 1024,
            only: None,
            output: PathBuf::from("BENCHMARKS.md"),
            wasm_build_timeout: 240,
        }
    }
}

/// The usage lines of `bench`, for the xtask help.
pub const USAGE: &str = "\
options (bench):
  --runs N            runs of each timing group (default 5)
  --quick             short warm-up and measurement, 2 runs: to try the harness
  --live N            live greenlets for the RSS-per-greenlet rows (default 100000)
  --max-live N        live greenlets the \"most live\" rows try for (default 1000000)
  --rss-cap-mib M     a memory probe stops once its RSS passes M MiB (default 8192)
  --only a,b          only these sections: round-trip,create,python,memory,wasm
  --output FILE       where to write the report (default BENCHMARKS.md)
  --wasm-build-timeout S  give up building the wasm host after S seconds (default 240)";

/// Parses the options of `bench`.
pub fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        if flag == "--quick" {
            options.quick = true;
            if options.runs == Options::default().runs {
                options.runs = 2;
            }
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        let number = || {
            value
                .replace('_', "")
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag {
            "--runs" => options.runs = number()?.max(1) as usize,
            "--live" => options.live = number()?.max(1),
            "--max-live" => options.max_live = number()?.max(1),
            "--rss-cap-mib" => options.rss_cap_mib = number()?,
            "--output" => options.output = PathBuf::from(&value),
            "--wasm-build-timeout" => options.wasm_build_timeout = number()?,
            "--only" => {
                let list: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if let Some(bad) = list.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                    return Err(format!(
                        "unknown section `{bad}`: choose from {}",
                        SECTIONS.join(",")
                    ));
                }
                options.only = Some(list);
            }
            _ => return Err(format!("unknown option `{arg}`")),
        }
    }
    Ok(options)
}

impl Options {
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }

    /// Criterion's command-line settings for one run of a group.
    fn criterion_args(&self) -> Vec<String> {
        let (warm_up, measure) = if self.quick {
            ("0.3", "0.7")
        } else {
            ("1", "2")
        };
        [
            "--warm-up-time",
            warm_up,
            "--measurement-time",
            measure,
            "--nresamples",
            "20000",
            "--noplot",
        ]
        .map(String::from)
        .to_vec()
    }
}

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

/// A timing row: its criterion id (or a Python / wasm key), a label, its figures.
struct Timing {
    key: &'static str,
    label: String,
    /// Nanoseconds per operation, one per run; or why the row has none.
    result: Result<Vec<f64>, String>,
    /// Figures of ours against this row: (our row's key, what the ratio is called, goal).
    ratios: Vec<(&'static str, &'static str, Option<f64>)>,
}

impl Timing {
    fn new(key: &'static str, label: impl Into<String>) -> Self {
        Timing {
            key,
            label: label.into(),
            result: Err("not run".into()),
            ratios: Vec::new(),
        }
    }

    fn against(mut self, ours: &'static str, name: &'static str, goal: Option<f64>) -> Self {
        self.ratios.push((ours, name, goal));
        self
    }
}

/// The median of some numbers (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// One memory probe's result record.
#[derive(Default, Clone)]
struct Probe {
    fields: BTreeMap<String, String>,
    /// The last `progress live=` figure seen, for a probe that died.
    last_progress: Option<u64>,
    /// Set when the probe did not end normally.
    failure: Option<String>,
}

impl Probe {
    fn num(&self, key: &str) -> Option<u64> {
        self.fields.get(key)?.parse().ok()
    }

    fn text(&self, key: &str) -> &str {
        self.fields.get(key).map_or("?", String::as_str)
    }

    /// RSS growth per live greenlet, in KiB.
    fn kib_each(&self) -> Option<f64> {
        let reached = self.num("reached")?;
        let grown = self
            .num("rss_after_kib")?
            .saturating_sub(self.num("rss_before_kib")?);
        (reached > 0).then(|| grown as f64 / reached as f64)
    }
}

/// Memory rows of one implementation.
struct MemoryRow {
    label: String,
    per_greenlet: Result<Probe, String>,
    most: Result<Probe, String>,
    note: String,
}

/// Everything measured, for the table.
#[derive(Default)]
struct Report {
    machine: Vec<(String, String)>,
    round_trip: Vec<Timing>,
    create: Vec<Timing>,
    memory: Vec<MemoryRow>,
    wasm: Vec<String>,
    goals: Vec<(String, String, Option<bool>)>,
    seconds: f64,
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// Runs everything, prints the table and writes the report; `Ok(true)` if every goal
/// measured was met.
pub fn run(options: &Options) -> Result<bool, String> {
    let start = Instant::now();
    let target = target_dir();
    let mut report = Report::default();

    println!("==> building {PACKAGE} (release)");
    exec::run(exec::cargo().args(["bench", "-p", PACKAGE, "--no-run"]))?;
    exec::run(exec::cargo().args(["build", "--release", "-p", PACKAGE, "--bin", "memprobe"]))?;
    let memprobe = target.join("release").join("memprobe");

    report.machine = machine(&memprobe);
    let criterion_home = target.join("criterion");
    let python = if options.wants("python") || options.wants("memory") {
        println!("\n==> Python greenlet");
        let python = python_env(&target);
        match &python {
            Ok((_, version)) => println!("    greenlet {version}"),
            Err(e) => println!("    skipped: {e}"),
        }
        report.machine.push((
            "Python greenlet".into(),
            match &python {
                Ok((_, version)) => format!("greenlet {version}, {}", python_version()),
                Err(e) => format!("not available: {e}"),
            },
        ));
        Some(python)
    } else {
        None
    };

    if options.wants("round-trip") {
        report.round_trip = round_trip_rows(options, &criterion_home, python.as_ref());
    }
    if options.wants("create") {
        report.create = create_rows(options, &criterion_home, python.as_ref());
    }
    if options.wants("memory") {
        report.memory = memory_rows(options, &memprobe, python.as_ref());
    }
    if options.wants("wasm") {
        report.wasm = wasm_rows(options, &target);
    }
    report.machine.push((
        "Load average at the end".into(),
        read_trimmed("/proc/loadavg").unwrap_or_default(),
    ));

    report.goals = goals(&report, options);
    report.seconds = start.elapsed().as_secs_f64();
    let markdown = render(&report, options);
    println!("\n{markdown}");
    std::fs::write(&options.output, &markdown)
        .map_err(|e| format!("cannot write {}: {e}", options.output.display()))?;
    println!("wrote {}", options.output.display());
    Ok(report.goals.iter().all(|(_, _, met)| *met != Some(false)))
}

/// The target directory cargo uses: `$CARGO_TARGET_DIR`, or `target` in the workspace.
///
/// Always absolute: `cargo bench` runs bench binaries in their package's directory, so a
/// relative `CRITERION_HOME` would land in `benches/target` and the results would be lost.
fn target_dir() -> PathBuf {
    let dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("target"),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// What the report says about the machine and the software measured.
fn machine(memprobe: &Path) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    rows.push(("CPU".into(), format!("{model}, {cores} logical CPUs")));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .map_or("?".to_string(), |kib: f64| fmt_kib(kib));
    rows.push(("Memory".into(), mem));
    rows.push((
        "Kernel".into(),
        format!(
            "{} {} ({}), vm.max_map_count = {}",
            std::env::consts::OS,
            read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            std::env::consts::ARCH,
            read_trimmed("/proc/sys/vm/max_map_count").unwrap_or_default()
        ),
    ));
    let version = |cmd: &mut Command| exec::output(cmd).map(|s| s.trim().to_string());
    let toolchain = [
        version(Command::new("rustc").arg("-V")),
        version(exec::cargo().arg("-V")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    rows.push(("Toolchain".into(), toolchain));
    let info = exec::output(Command::new(memprobe).arg("info")).unwrap_or_default();
    let field = |key: &str| {
        info.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("?")
            .to_string()
    };
    rows.push((
        "greenlet-rs".into(),
        format!(
            "backend {}, stack guards: {}",
            field("backend"),
            match field("guard").as_str() {
                "madvise" => "MADV_GUARD_INSTALL markers (one mapping per arena)",
                "mprotect" => "mprotect'ed guard pages (two mappings per stack)",
                other => other,
            }
        ),
    ));
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let peers = ["corosensei", "criterion"]
        .map(|name| format!("{name} {}", locked_version(&lock, name)))
        .join(", ");
    rows.push(("Crates".into(), peers));
    rows.push((
        "Load average at the start".into(),
        read_trimmed("/proc/loadavg").unwrap_or_default(),
    ));
    rows
}

/// The version of `name` in `Cargo.lock`.
fn locked_version(lock: &str, name: &str) -> String {
    let needle = format!("name = \"{name}\"\n");
    lock.find(&needle)
        .and_then(|at| {
            lock[at + needle.len()..]
                .lines()
                .next()?
                .strip_prefix("version = \"")?
                .strip_suffix('"')
                .map(String::from)
        })
        .unwrap_or_else(|| "?".into())
}

/// How a child ended, in words.
fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL: out of memory?)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            return format!("killed by signal {signal}{name}");
        }
    }
    status.to_string()
}

/// Runs `cmd` to its end, or kills it (only it, by its id) once `limit` has passed;
/// `Ok(success)`, or `Err` saying why it did not finish.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<bool, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start it: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status.success()),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the build did not finish in {} s; build it first with \
                     `cargo build --release -p greenlet-wasm`, or raise --wasm-build-timeout",
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    }
}

/// What a streamed child printed and how it ended.
struct Streamed {
    status: ExitStatus,
    stderr: String,
}

impl Streamed {
    /// The last non-empty line of stderr, to say why something failed.
    fn why(&self) -> String {
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        format!("{}: {}", describe(self.status), last.trim())
    }
}

/// Runs `cmd`, handing each line of its stdout to `on_line` as it comes and keeping its
/// stderr.
fn stream(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<Streamed, String> {
    let shown = exec::display(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    let out = child.stdout.take().expect("stdout was piped");
    let mut err = child.stderr.take().expect("stderr was piped");
    let stderr = std::thread::scope(|scope| {
        let stderr = scope.spawn(move || {
            let mut kept = String::new();
            let _ = err.read_to_string(&mut kept);
            kept
        });
        for line in BufReader::new(out).lines() {
            match line {
                Ok(line) => on_line(&line),
                Err(_) => break,
            }
        }
        stderr.join().unwrap_or_default()
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for `{shown}`: {e}"))?;
    Ok(Streamed { status, stderr })
}

// ---------------------------------------------------------------------------------------
// Criterion groups
// ---------------------------------------------------------------------------------------

/// Runs a criterion bench target `runs` times, one process per run, and fills in the rows
/// whose keys are its bench ids in `group`.
fn run_group(
    options: &Options,
    criterion_home: &Path,
    bench: &str,
    group: &str,
    rows: &mut [Timing],
) {
    let ids: Vec<&'static str> = rows.iter().map(|r| r.key).collect();
    let mut runs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut failures: BTreeMap<&str, String> = BTreeMap::new();
    for run in 1..=options.runs {
        println!("  run {run}/{}", options.runs);
        for id in &ids {
            // A missing estimate after the run means the bench did not finish.
            let _ = std::fs::remove_file(estimates_path(criterion_home, group, id));
        }
        let outcome = criterion_process(options, criterion_home, bench, group, None);
        let mut missing = Vec::new();
        for id in &ids {
            match read_median(criterion_home, group, id) {
                Some(ns) => runs.entry(id).or_default().push(ns),
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            continue;
        }
        // Something crashed: run the rest one by one, so one bad bench spoils only itself.
        let why = match &outcome {
            Ok(streamed) => streamed.why(),
            Err(e) => e.clone(),
        };
        println!("    the group stopped early ({why}); running the rest one by one");
        for id in missing {
            let alone = criterion_process(options, criterion_home, bench, group, Some(id));
            match read_median(criterion_home, group, id) {
                Some(ns) => runs.entry(id).or_default().push(ns),
                None => {
                    let why = match alone {
                        Ok(streamed) => streamed.why(),
                        Err(e) => e,
                    };
                    println!("    {group}/{id} failed: {why}");
                    failures.insert(id, why);
                }
            }
        }
    }
    for row in rows {
        row.result = match runs.remove(row.key) {
            Some(values) if !values.is_empty() => Ok(values),
            _ => Err(format!(
                "failed: {}",
                failures.get(row.key).map_or("no result", String::as_str)
            )),
        };
    }
}

/// One criterion process for `bench` (all of it, or only `group/id`), printing a progress
/// line per bench as it finishes.
fn criterion_process(
    options: &Options,
    criterion_home: &Path,
    bench: &str,
    group: &str,
    only: Option<&str>,
) -> Result<Streamed, String> {
    let mut cmd = exec::cargo();
    cmd.args(["bench", "--quiet", "-p", PACKAGE, "--bench", bench, "--"])
        .args(options.criterion_args())
        .env("CRITERION_HOME", criterion_home);
    if let Some(id) = only {
        cmd.args(["--exact", &format!("{group}/{id}")]);
    }
    let mut current = String::new();
    stream(&mut cmd, |line| {
        if let Some(rest) = line.strip_prefix("Benchmarking ") {
            if let Some((name, _)) = rest.split_once(':') {
                current = name.to_string();
            }
        } else if let Some(at) = line.find("time:") {
            // "time:   [low estimate high]": show the estimate.
            let estimate = line[at..]
                .split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            println!("    {current:<40} {estimate}");
        }
    })
}

fn estimates_path(criterion_home: &Path, group: &str, id: &str) -> PathBuf {
    criterion_home
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json")
}

/// Criterion's median estimate for `group/id`, in nanoseconds.
fn read_median(criterion_home: &Path, group: &str, id: &str) -> Option<f64> {
    let json = std::fs::read_to_string(estimates_path(criterion_home, group, id)).ok()?;
    json_number_after(&json, "\"median\":", "\"point_estimate\":")
}

/// The number after `key` that follows `section` in a JSON text (enough for criterion's
/// fixed `estimates.json` layout; xtask has no JSON parser).
fn json_number_after(json: &str, section: &str, key: &str) -> Option<f64> {
    let from = json.find(section)? + section.len();
    let at = json[from..].find(key)? + from + key.len();
    let text: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
        .collect();
    text.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Python greenlet
// ---------------------------------------------------------------------------------------

/// A virtual environment under the target dir with greenlet installed: its python and
/// greenlet's version.
fn python_env(target: &Path) -> Result<(PathBuf, String), String> {
    let venv = target.join("bench-venv");
    let python = venv.join("bin").join("python");
    let greenlet_version = |python: &Path| {
        exec::output(
            Command::new(python).args(["-c", "import greenlet; print(greenlet.__version__)"]),
        )
        .map(|v| v.trim().to_string())
    };
    if let Some(version) = greenlet_version(&python) {
        return Ok((python, version));
    }
    let python3 = exec::which("python3").ok_or("python3 is not on PATH")?;
    let quiet = |cmd: &mut Command| {
        let shown = exec::display(cmd);
        println!("    + {shown}");
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not start `{shown}`: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!(
                "`{shown}` failed ({}): {}",
                out.status,
                last.trim()
            ))
        }
    };
    quiet(Command::new(python3).arg("-m").arg("venv").arg(&venv))?;
    quiet(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "greenlet",
    ]))?;
    let version =
        greenlet_version(&python).ok_or("greenlet was installed but cannot be imported")?;
    Ok((python, version))
}

fn python_version() -> String {
    exec::output(Command::new("python3").arg("-V"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

type PythonEnv = Result<(PathBuf, String), String>;

/// Runs the Python script's timing `mode`; one figure per run, in nanoseconds.
fn python_timing(
    python: &PythonEnv,
    mode: &str,
    runs: usize,
    iters: u64,
) -> Result<Vec<f64>, String> {
    let (python, _) = python.as_ref().map_err(|e| format!("skipped: {e}"))?;
    let mut values = Vec::new();
    let streamed = stream(
        Command::new(python).args([
            PYTHON_SCRIPT,
            mode,
            "--runs",
            &runs.to_string(),
            "--iters",
            &iters.to_string(),
        ]),
        |line| {
            if let Some(ns) = line
                .strip_prefix("run ns_per_op=")
                .and_then(|v| v.trim().parse::<f64>().ok())
            {
                println!("    Python greenlet {mode:<24} {}", fmt_ns(ns));
                values.push(ns);
            }
        },
    )?;
    if !streamed.status.success() || values.is_empty() {
        return Err(format!(
            "skipped: the Python script failed: {}",
            streamed.why()
        ));
    }
    Ok(values)
}

// ---------------------------------------------------------------------------------------
// The sections
// ---------------------------------------------------------------------------------------

fn round_trip_rows(
    options: &Options,
    criterion_home: &Path,
    python: Option<&PythonEnv>,
) -> Vec<Timing> {
    println!("\n==> round-trip switch (A→B→A), criterion group `round_trip`");
    let mut rows = vec![
        Timing::new(
            "backend_default",
            "greenlet-rs default backend, raw `Context::switch` pair",
        ),
        Timing::new(
            "greenlet_switch",
            "greenlet-rs `Greenlet::switch` with a value, both ways",
        ),
        Timing::new(
            "backend_corosensei",
            "greenlet-rs corosensei-based backend (`CoroContext`), raw switch pair",
        ),
        Timing::new(
            "corosensei",
            "corosensei `Coroutine::resume` + `Yielder::suspend`",
        )
        .against("backend_default", "raw backend", Some(1.0))
        .against("greenlet_switch", "`Greenlet::switch`", Some(2.0))
        .against("backend_corosensei", "`CoroContext`", None),
        Timing::new("os_threads", "two OS threads ping-ponging (channels)").against(
            "greenlet_switch",
            "`Greenlet::switch`",
            None,
        ),
    ];
    run_group(
        options,
        criterion_home,
        "round_trip",
        "round_trip",
        &mut rows,
    );
    if options.wants("python") {
        let mut row = Timing::new("python_switch", "Python greenlet `g.switch()` round trip")
            .against("greenlet_switch", "`Greenlet::switch`", None);
        let iters = if options.quick { 50_000 } else { 200_000 };
        row.result = python
            .ok_or_else(|| "skipped".to_string())
            .and_then(|p| python_timing(p, "switch", python_runs(options), iters));
        // Keep the peers together: Python after corosensei, before the threads.
        rows.insert(4, row);
    }
    rows
}

fn create_rows(
    options: &Options,
    criterion_home: &Path,
    python: Option<&PythonEnv>,
) -> Vec<Timing> {
    println!("\n==> create + run to completion + drop, criterion group `create_run_drop`");
    let mut rows = vec![
        Timing::new(
            "greenlet",
            "greenlet-rs `Greenlet::new(..).switch(..)` + drop (stack pool)",
        ),
        Timing::new(
            "corosensei_reused_stack",
            "corosensei `ScopedCoroutine` on a reused stack",
        )
        .against("greenlet", "create+run+drop", Some(2.0)),
        Timing::new(
            "corosensei_default_stack",
            "corosensei `Coroutine::new` (its default mmap'd stack)",
        )
        .against("greenlet", "create+run+drop", None),
    ];
    run_group(
        options,
        criterion_home,
        "create",
        "create_run_drop",
        &mut rows,
    );
    if options.wants("python") {
        let mut row = Timing::new("python_create", "Python greenlet `greenlet(f).switch()`")
            .against("greenlet", "create+run+drop", None);
        let iters = if options.quick { 10_000 } else { 50_000 };
        row.result = python
            .ok_or_else(|| "skipped".to_string())
            .and_then(|p| python_timing(p, "create", python_runs(options), iters));
        rows.push(row);
    }
    rows
}

fn python_runs(options: &Options) -> usize {
    options.runs.max(3)
}

/// Runs one memory probe command, echoing its progress.
fn probe(cmd: &mut Command, label: &str) -> Result<Probe, String> {
    let mut probe = Probe::default();
    let streamed = stream(cmd, |line| {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("progress") => {
                println!("    {label:<28} {}", line.trim_start_matches("progress "));
                probe.last_progress = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("live=")?.parse().ok());
            }
            Some("result") => {
                let (head, stop) = line.split_once(" stop=").unwrap_or((line, ""));
                for word in head.split_whitespace().skip(1) {
                    if let Some((key, value)) = word.split_once('=') {
                        probe.fields.insert(key.into(), value.into());
                    }
                }
                probe.fields.insert("stop".into(), stop.into());
                println!("    {label:<28} {}", line.trim_start_matches("result "));
            }
            _ => {}
        }
    })?;
    if probe.fields.is_empty() {
        let seen = probe
            .last_progress
            .map_or(String::new(), |n| format!(" after {} live", thousands(n)));
        return Err(format!("the probe died{seen}: {}", streamed.why()));
    }
    if !streamed.status.success() {
        probe.failure = Some(streamed.why());
    }
    Ok(probe)
}

fn memory_rows(options: &Options, memprobe: &Path, python: Option<&PythonEnv>) -> Vec<MemoryRow> {
    println!("\n==> memory per live suspended greenlet, and the most live in one thread");
    let cap = options.rss_cap_mib.to_string();
    let native = |which: &str, live: u64| {
        probe(
            Command::new(memprobe).args([
                which,
                "--live",
                &live.to_string(),
                "--rss-cap-mib",
                &cap,
            ]),
            &format!("{which} {}", thousands(live)),
        )
    };
    let mut rows = vec![
        MemoryRow {
            label: "greenlet-rs (stack pool, 256 KiB stacks)".into(),
            per_greenlet: native("greenlet", options.live),
            most: native("greenlet", options.max_live),
            note: String::new(),
        },
        MemoryRow {
            label: "corosensei `DefaultStack` (1 MiB stacks)".into(),
            per_greenlet: native("corosensei", options.live),
            most: native("corosensei", options.max_live),
            note: "each `DefaultStack` is its own mmap with a PROT_NONE guard page: two \
                   kernel mappings per coroutine, so `vm.max_map_count` (65530 by \
                   default) caps a process near 32,765 coroutines"
                .into(),
        },
    ];
    if options.wants("python") {
        let python_probe = |live: u64| -> Result<Probe, String> {
            let Some(Ok((python, _))) = python else {
                return Err(match python {
                    Some(Err(e)) => format!("skipped: {e}"),
                    _ => "skipped".into(),
                });
            };
            probe(
                Command::new(python).args([
                    PYTHON_SCRIPT,
                    "memory",
                    "--live",
                    &live.to_string(),
                    "--rss-cap-mib",
                    &cap,
                ]),
                &format!("python-greenlet {}", thousands(live)),
            )
        };
        rows.push(MemoryRow {
            label: "Python greenlet".into(),
            per_greenlet: python_probe(options.live),
            most: python_probe(options.max_live),
            note: "no guard: a suspended greenlet's C stack slice is copied to the heap".into(),
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------
// WASM ROWS (issue 5, item 4) — round trip and create+finish inside the wasmtime host.
//
// They need the wasm host (`wasm/host`, package `greenlet-wasm`, whose runner is the
// `greenlet-wasm` binary) and its `bench` guest (`wasm/guests`, package
// `greenlet-wasm-guests`, built for wasm32-wasip1). Each run executes
// `greenlet-wasm run --fibers=<mechanism> bench.wasm <iterations>` once per mechanism; the
// guest prints one `<name> <ns>` line per measurement (see `WASM_MEASURES`). If either
// crate is missing or does not build within `--wasm-build-timeout`, the section prints
// "skipped: wasm host not built" and why; the rest of the run is unaffected.
// ---------------------------------------------------------------------------------------

/// The fiber mechanisms of the wasm host, as `--fibers=` names them.
const WASM_MECHANISMS: &[&str] = &["stack-switching", "store-per-fiber"];

/// What the `bench` guest prints, and the row each becomes.
const WASM_MEASURES: &[(&str, &str)] = &[
    (
        "backend_switch_round_trip_ns",
        "round trip, raw backend `Context::switch` pair",
    ),
    ("switch_round_trip_ns", "round trip, `Greenlet::switch`"),
    (
        "backend_create_finish_ns",
        "create + run to its exit, raw backend context (stack pool)",
    ),
    (
        "create_finish_ns",
        "create + run to completion + drop, `Greenlet`",
    ),
];

/// The wasm section as Markdown lines, or one line saying why it was skipped.
fn wasm_rows(options: &Options, target: &Path) -> Vec<String> {
    println!("\n==> wasm32 (inside the wasmtime host)");
    let skipped = |why: String| {
        println!("    {why}");
        vec![why]
    };
    for manifest in ["wasm/host/Cargo.toml", "wasm/guests/Cargo.toml"] {
        if !Path::new(manifest).exists() {
            return skipped(format!("skipped: wasm host not built (no {manifest})"));
        }
    }
    // A cold build of wasmtime takes many minutes: give up after a while rather than
    // stall the whole run (build the host first to get these rows).
    let deadline = Instant::now() + Duration::from_secs(options.wasm_build_timeout);
    let builds: [&[&str]; 2] = [
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "greenlet-wasm",
            "--bin",
            "greenlet-wasm",
        ],
        &[
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip1",
            "-p",
            "greenlet-wasm-guests",
            "--bin",
            "bench",
        ],
    ];
    for args in builds {
        let mut build = exec::cargo();
        build
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let shown = exec::display(&build);
        println!("    + {shown}");
        let left = deadline.saturating_duration_since(Instant::now());
        match run_with_timeout(&mut build, left) {
            Ok(true) => {}
            Ok(false) => {
                return skipped(format!("skipped: wasm host not built (`{shown}` failed)"));
            }
            Err(why) => return skipped(format!("skipped: wasm host not built ({why})")),
        }
    }
    let runner = target.join("release").join("greenlet-wasm");
    let guest = target
        .join("wasm32-wasip1")
        .join("release")
        .join("bench.wasm");
    let iterations = if options.quick { "5000" } else { "20000" };
    // (mechanism, measure) -> ns per run
    let mut runs: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut failures: BTreeMap<&str, String> = BTreeMap::new();
    for run in 1..=options.runs {
        for &mechanism in WASM_MECHANISMS {
            let mut cmd = Command::new(&runner);
            cmd.arg("run")
                .arg(format!("--fibers={mechanism}"))
                .arg(&guest)
                .arg(iterations);
            let mut seen = Vec::new();
            let outcome = stream(&mut cmd, |line| {
                let mut words = line.split_whitespace();
                let (Some(name), Some(value)) = (words.next(), words.next()) else {
                    return;
                };
                if let (Some(&(key, _)), Ok(ns)) = (
                    WASM_MEASURES.iter().find(|(key, _)| *key == name),
                    value.parse::<f64>(),
                ) {
                    seen.push(format!("{key}={}", fmt_ns(ns)));
                    runs.entry((mechanism, key)).or_default().push(ns);
                }
            });
            match outcome {
                Ok(streamed) if streamed.status.success() && !seen.is_empty() => {
                    println!(
                        "    run {run}/{} {mechanism:<16} {}",
                        options.runs,
                        seen.join(" ")
                    );
                }
                Ok(streamed) => {
                    let first = streamed
                        .stderr
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    let why = format!("{}: {first}", describe(streamed.status));
                    println!(
                        "    run {run}/{} {mechanism:<16} failed: {why}",
                        options.runs
                    );
                    failures.insert(mechanism, why);
                }
                Err(e) => {
                    println!("    run {run}/{} {mechanism:<16} failed: {e}", options.runs);
                    failures.insert(mechanism, e);
                }
            }
        }
    }
    if runs.is_empty() {
        let why: Vec<String> = failures.iter().map(|(m, w)| format!("{m}: {w}")).collect();
        return skipped(format!(
            "skipped: the wasm host built, but its bench guest gave no figures ({})",
            why.join("; ")
        ));
    }
    let mut lines = vec![
        format!(
            "| ({iterations} iterations per run, {} runs; median, range over runs) | {} |",
            options.runs,
            WASM_MECHANISMS.join(" | ")
        ),
        format!("|---|{}", "---:|".repeat(WASM_MECHANISMS.len())),
    ];
    for &(key, label) in WASM_MEASURES {
        let cells: Vec<String> = WASM_MECHANISMS
            .iter()
            .map(|&mechanism| match runs.get(&(mechanism, key)) {
                Some(values) => {
                    let (lo, hi) = min_max(values);
                    format!(
                        "{} ({} – {})",
                        fmt_ns(median(values)),
                        fmt_ns(lo),
                        fmt_ns(hi)
                    )
                }
                None => failures
                    .get(mechanism)
                    .map_or("–".to_string(), |why| format!("failed: {why}")),
            })
            .collect();
        lines.push(format!("| {label} | {} |", cells.join(" | ")));
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Goals and the report
// ---------------------------------------------------------------------------------------

/// Per-run ratios ours/peer where both rows have a figure for the same run.
fn run_ratios(ours: &[f64], peer: &[f64]) -> Vec<f64> {
    ours.iter().zip(peer).map(|(o, p)| o / p).collect()
}

/// Ours/peer: the median of per-run ratios when both come from the same criterion runs,
/// else the ratio of medians; with the range of per-run ratios when there is one.
fn ratio(rows: &[Timing], ours: &str, peer: &Timing) -> Option<(f64, Option<(f64, f64)>)> {
    let ours = rows.iter().find(|r| r.key == ours)?.result.as_ref().ok()?;
    let theirs = peer.result.as_ref().ok()?;
    if peer.key.starts_with("python") {
        return Some((median(ours) / median(theirs), None));
    }
    let per_run = run_ratios(ours, theirs);
    Some((median(&per_run), Some(min_max(&per_run))))
}

/// A ratio to two decimals, or to three significant digits below 1 (`0.137`, `0.00180`),
/// so that a ratio far below 1 does not print as `0.00`.
fn fmt_ratio(r: f64) -> String {
    if !(r > 0.0 && r < 1.0) {
        return format!("{r:.2}");
    }
    let decimals = (-r.log10()).floor() as usize + 3;
    format!("{r:.decimals$}")
}

const GIB_KIB: u64 = 1024 * 1024;

fn goals(report: &Report, options: &Options) -> Vec<(String, String, Option<bool>)> {
    let mut goals = Vec::new();
    let mut timing_goal = |rows: &[Timing]| {
        for peer in rows {
            for &(ours, name, goal) in &peer.ratios {
                let Some(goal) = goal else { continue };
                let what = format!("{name} ≤ {goal:.1}× {}", short(&peer.label));
                match ratio(rows, ours, peer) {
                    Some((r, _)) => {
                        goals.push((what, format!("{}×", fmt_ratio(r)), Some(r <= goal)));
                    }
                    None => goals.push((what, "not measured".into(), None)),
                }
            }
        }
    };
    timing_goal(&report.round_trip);
    timing_goal(&report.create);
    if let Some(row) = report.memory.first() {
        let what = format!(
            "{} live suspended greenlets in one thread, guard pages on every stack, in ≤ 5 GiB RSS",
            thousands(options.max_live)
        );
        match &row.most {
            Ok(p) => {
                let reached = p.num("reached").unwrap_or(0);
                let rss = p.num("rss_after_kib").unwrap_or(u64::MAX);
                let guarded = matches!(p.text("guard"), "madvise" | "mprotect");
                let met = reached >= options.max_live && guarded && rss <= 5 * GIB_KIB;
                let got = format!(
                    "{} live, {} RSS, guards: {}",
                    thousands(reached),
                    fmt_kib(rss as f64),
                    p.text("guard")
                );
                goals.push((what, got, Some(met)));
            }
            Err(e) => goals.push((what, e.clone(), Some(false))),
        }
    }
    goals
}

/// A peer's label up to its first parenthesis, for the goals list.
fn short(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label)
}

fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "–".into()
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns >= 100.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.2} ns")
    }
}

fn fmt_kib(kib: f64) -> String {
    if kib >= GIB_KIB as f64 {
        format!("{:.2} GiB", kib / GIB_KIB as f64)
    } else if kib >= 1024.0 {
        format!("{:.1} MiB", kib / 1024.0)
    } else {
        format!("{kib:.2} KiB")
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn timing_table(out: &mut String, rows: &[Timing]) {
    out.push_str(
        "| | median | range over runs | runs | ours ÷ this (median of per-run ratios) |\n",
    );
    out.push_str("|---|---:|---:|---:|---|\n");
    for row in rows {
        let (median_cell, range, n) = match &row.result {
            Ok(values) => {
                let (lo, hi) = min_max(values);
                (
                    fmt_ns(median(values)),
                    format!("{} – {}", fmt_ns(lo), fmt_ns(hi)),
                    values.len().to_string(),
                )
            }
            Err(why) => (why.clone(), String::new(), String::new()),
        };
        let ratios: Vec<String> = row
            .ratios
            .iter()
            .map(|&(ours, name, goal)| {
                let goal_text = goal.map_or(String::new(), |g| format!(", goal ≤ {g:.1}×"));
                match ratio(rows, ours, row) {
                    Some((r, Some((lo, hi)))) => {
                        let (r, lo, hi) = (fmt_ratio(r), fmt_ratio(lo), fmt_ratio(hi));
                        format!("{name}: **{r}×** ({lo}–{hi}{goal_text})")
                    }
                    Some((r, None)) => format!("{name}: **{}×**{goal_text}", fmt_ratio(r)),
                    None => format!("{name}: –"),
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {median_cell} | {range} | {n} | {} |",
            row.label,
            ratios.join("; ")
        );
    }
}

fn memory_table(out: &mut String, rows: &[MemoryRow], options: &Options) {
    let _ = writeln!(
        out,
        "| | RSS per live suspended greenlet ({} live, 4 frames deep) | most live in one thread (tried {}) | RSS there (peak) | stack guards | stopped by |",
        thousands(options.live),
        thousands(options.max_live)
    );
    out.push_str("|---|---:|---:|---:|---|---|\n");
    for row in rows {
        let per = match &row.per_greenlet {
            Ok(p) => match (p.kib_each(), p.num("reached")) {
                (Some(kib), Some(reached)) if reached < options.live => {
                    format!("{} (over {} reached)", fmt_kib(kib), thousands(reached))
                }
                (Some(kib), _) => fmt_kib(kib),
                _ => "–".into(),
            },
            Err(e) => e.clone(),
        };
        let (most, rss, guard, stop) = match &row.most {
            Ok(p) => (
                thousands(p.num("reached").unwrap_or(0)),
                format!(
                    "{} ({})",
                    fmt_kib(p.num("rss_after_kib").unwrap_or(0) as f64),
                    fmt_kib(p.num("hwm_kib").unwrap_or(0) as f64)
                ),
                p.text("guard").to_string(),
                match &p.failure {
                    Some(f) => format!("{}; then {f}", p.text("stop")),
                    None => p.text("stop").to_string(),
                },
            ),
            Err(e) => (e.clone(), String::new(), String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {per} | {most} | {rss} | {guard} | {stop} |",
            row.label
        );
    }
    let notes: Vec<String> = rows
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| format!("- {}: {}.", r.label, r.note))
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
}

fn render(report: &Report, options: &Options) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "greenlet-rs against its best peers, measured side by side in one run. Produced by\n\n",
    );
    // The command as typed: `cargo xtask` and the arguments after the xtask binary.
    let mut command = String::from("cargo xtask");
    for arg in std::env::args().skip(1) {
        command.push(' ');
        command.push_str(&arg);
    }
    let _ = writeln!(out, "```\n{command}\n```\n");
    let date = exec::output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
        .map(|d| d.trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "| | |\n|---|---|\n| Date | {date} |");
    for (key, value) in &report.machine {
        let _ = writeln!(out, "| {key} | {value} |");
    }
    let _ = writeln!(
        out,
        "| Settings | {} runs of each timing group; criterion {}; whole run {:.0} s |",
        options.runs,
        options.criterion_args().join(" "),
        report.seconds
    );

    if !report.goals.is_empty() {
        out.push_str("\n## Goals\n\n| goal | measured | met |\n|---|---|---|\n");
        for (what, got, met) in &report.goals {
            let mark = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(out, "| {what} | {got} | {mark} |");
        }
    }
    if !report.round_trip.is_empty() {
        out.push_str("\n## Round-trip switch (A→B→A)\n\n");
        timing_table(&mut out, &report.round_trip);
    }
    if !report.create.is_empty() {
        out.push_str("\n## Create + run to completion + drop of a trivial greenlet\n\n");
        timing_table(&mut out, &report.create);
    }
    if !report.memory.is_empty() {
        out.push_str("\n## Memory\n\n");
        memory_table(&mut out, &report.memory, options);
    }
    if !report.wasm.is_empty() {
        out.push_str("\n## wasm32, inside the wasmtime host\n\n");
        for line in &report.wasm {
            let _ = writeln!(out, "{line}");
        }
    }
    out.push_str(
        "\n## How to read this\n\n\
         - Timing rows are criterion medians (time per operation), one criterion process \
           per group and run; the figure is the median over runs, the range is min – max \
           over runs. Ratios below 1 mean ours is faster.\n\
         - Ratios against corosensei and the OS threads are taken within each run (same \
           process), then the median over runs is shown with its range. Ratios against \
           Python greenlet divide medians from the same `cargo xtask bench` run.\n\
         - Memory rows are one subprocess each: RSS growth (`VmRSS` from \
           `/proc/self/status`) over the live greenlets, each suspended 4 frames deep; \
           \"peak\" is `VmHWM`.\n\
         - wasm32 rows are timed inside the guest (`wasm/guests/src/bin/bench.rs`) over a \
           fixed number of iterations, under `greenlet-wasm run --fibers=<mechanism>`.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_options(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn small_ratios_keep_three_significant_digits() {
        assert_eq!(fmt_ratio(2.4812), "2.48");
        assert_eq!(fmt_ratio(0.137), "0.137");
        assert_eq!(fmt_ratio(0.0018), "0.00180");
        assert_eq!(fmt_ratio(0.0), "0.00");
    }

    #[test]
    fn parses_bench_options() {
        let o = parse(&["--quick", "--only", "memory,wasm", "--max-live=200_000"]).unwrap();
        assert!(o.quick && o.runs == 2 && o.max_live == 200_000);
        assert!(o.wants("memory") && !o.wants("round-trip"));
        assert!(parse(&["--only", "nothing"]).is_err());
        assert!(parse(&["--runs"]).is_err());
    }

    #[test]
    fn reads_criterion_medians() {
        let json = r#"{"mean":{"point_estimate":2.5},"median":{"confidence_interval":{"lower_bound":1.0},"point_estimate":3.43,"standard_error":0.1}}"#;
        assert_eq!(
            json_number_after(json, "\"median\":", "\"point_estimate\":"),
            Some(3.43)
        );
    }

    #[test]
    fn formats_figures() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(fmt_ns(3.434), "3.43 ns");
        assert_eq!(fmt_ns(10_300.0), "10.30 µs");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
