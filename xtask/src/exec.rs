//! Running child processes: showing what runs, finding programs, and streaming a child's
//! output to the terminal while keeping a copy to read results from.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;

/// A `cargo` command using the cargo that runs xtask (`$CARGO`), so every step uses the
/// same toolchain.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Finds `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Shows a command as one could type it: `VAR=value program arg ...`.
pub fn display(cmd: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            words.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    // `$CARGO` is a long toolchain path; its file name says enough.
    let program = Path::new(cmd.get_program());
    words.push(quote(program.file_name().unwrap_or(program.as_os_str())));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./,:=@+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with the terminal's output, printing it first; fails unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = display(cmd);
    println!("+ {shown}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `cmd` and returns its standard output, or `None` if it could not run or failed.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a teed command printed, and how it ended.
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd`, copying its stdout and stderr to ours line by line as they come, and keeping
/// both. Fails only if the command cannot be started.
pub fn tee(cmd: &mut Command) -> io::Result<Captured> {
    tee_to(cmd, io::stdout(), io::stderr())
}

fn tee_to(
    cmd: &mut Command,
    out: impl Write + Send,
    err: impl Write + Send,
) -> io::Result<Captured> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let child_out = child.stdout.take().expect("stdout was piped");
    let child_err = child.stderr.take().expect("stderr was piped");
    let (stdout, stderr) = thread::scope(|scope| {
        let stderr = scope.spawn(|| copy_and_keep(child_err, err));
        let stdout = copy_and_keep(child_out, out);
        (stdout, stderr.join().unwrap_or_default())
    });
    Ok(Captured {
        status: child.wait()?,
        stdout,
        stderr,
    })
}

/// Copies `from` to `to` line by line, returning everything read. Write errors (say, our
/// terminal went away) stop the echo but not the copy.
fn copy_and_keep(from: impl Read, mut to: impl Write) -> String {
    let mut from = BufReader::new(from);
    let mut kept = Vec::new();
    let mut line = Vec::new();
    let mut echo = true;
    loop {
        line.clear();
        match from.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if echo {
                    echo = to.write_all(&line).and_then(|()| to.flush()).is_ok();
                }
                kept.extend_from_slice(&line);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("/opt/toolchain/bin/cargo");
        cmd.args(["test", "--target", "aarch64-unknown-linux-gnu"])
            .env(
                "GREENLET_TEST_RUNNER",
                "qemu-aarch64 -L /usr/aarch64-linux-gnu",
            );
        assert_eq!(
            display(&cmd),
            "GREENLET_TEST_RUNNER='qemu-aarch64 -L /usr/aarch64-linux-gnu' cargo test --target aarch64-unknown-linux-gnu"
        );
    }

    #[cfg(unix)]
    #[test]
    fn tee_keeps_both_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let (mut echoed_out, mut echoed_err) = (Vec::new(), Vec::new());
        let captured = tee_to(&mut cmd, &mut echoed_out, &mut echoed_err).unwrap();
        assert_eq!(
            (captured.stdout.as_str(), echoed_out.as_slice()),
            ("out\n", &b"out\n"[..])
        );
        assert_eq!(
            (captured.stderr.as_str(), echoed_err.as_slice()),
            ("err\n", &b"err\n"[..])
        );
        assert_eq!(captured.status.code(), Some(3));
    }
}
