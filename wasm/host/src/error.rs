//! What can go wrong when loading or running a guest, with messages a user can act on.

use std::fmt;
use std::path::PathBuf;

/// Why a guest could not be loaded or did not run to an exit code.
///
/// A guest that calls `proc_exit(n)` or returns from `_start` is not an error: that is
/// [`RunOutcome::exit_code`](crate::RunOutcome::exit_code). The host stays usable after any
/// of these: each run has its own store(s), dropped before the error is returned.
///
/// ```
/// use greenlet_wasm::{Error, Host, HostConfig};
/// let host = Host::new(HostConfig::default()).unwrap();
/// match host.load(b"definitely not wasm") {
///     Err(Error::InvalidModule(msg)) => assert!(msg.contains("not a WebAssembly")),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The module file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module (or use a feature this host lacks).
    InvalidModule(String),
    /// The module lacks an export this host needs; the message says how to add it.
    MissingExport {
        /// The export's name.
        name: String,
        /// Why it is needed and how to get it.
        help: &'static str,
    },
    /// The module's imports cannot be satisfied: an unknown import, or a wrong signature.
    Link(String),
    /// The guest trapped: unreachable (a Rust panic or abort), out-of-bounds access, stack
    /// overflow, ...
    Trap {
        /// The fiber that was running (0: the root), when known.
        fiber: Option<i32>,
        /// The engine's description of the trap, with its wasm backtrace.
        message: String,
    },
    /// The guest broke the greenlet_fiber_v1 contract in a way that has no error result,
    /// e.g. a greenlet shadow-stack overflow caught by the host.
    Fault(String),
    /// The host configuration cannot work here (e.g. stack switching off x86-64 Linux).
    Config(String),
    /// Something failed in the host itself while running the guest.
    Host(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => {
                write!(f, "cannot read module {}: {source}", path.display())
            }
            Error::InvalidModule(m) => write!(f, "invalid module: {m}"),
            Error::MissingExport { name, help } => {
                write!(f, "the module does not export `{name}`: {help}")
            }
            Error::Link(m) => write!(f, "cannot link the module: {m}"),
            Error::Trap {
                fiber: Some(0),
                message,
            } => write!(
                f,
                "the guest trapped in its root (not in a greenlet): {message}"
            ),
            Error::Trap {
                fiber: Some(id),
                message,
            } => write!(f, "the guest trapped in greenlet fiber {id}: {message}"),
            Error::Trap {
                fiber: None,
                message,
            } => write!(f, "the guest trapped: {message}"),
            Error::Fault(m) => write!(f, "{m}"),
            Error::Config(m) => write!(f, "unsupported host configuration: {m}"),
            Error::Host(m) => write!(f, "host failure: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Raised by the host side of greenlet_fiber_v1 to end a run (through a trap) with a
/// message of its own.
#[derive(Debug)]
pub(crate) struct FiberFault(pub String);

impl fmt::Display for FiberFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FiberFault {}

/// Turns what a guest call returned into an exit code or an [`Error`].
///
/// `fiber` is the fiber that was running when it failed, if the mechanism can tell.
pub(crate) fn classify(err: wasmtime::Error, fiber: Option<i32>) -> Result<i32, Error> {
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Ok(exit.0);
    }
    if let Some(fault) = err.downcast_ref::<FiberFault>() {
        return Err(Error::Fault(fault.0.clone()));
    }
    Err(Error::Trap {
        fiber,
        message: shorten(&format!("{err:#}")),
    })
}

/// Keeps the head and tail of a long trap message: a stack overflow's wasm backtrace has
/// a line per frame, tens of thousands of them.
fn shorten(message: &str) -> String {
    const HEAD: usize = 24;
    const TAIL: usize = 8;
    let lines: Vec<&str> = message.lines().collect();
    if lines.len() <= HEAD + TAIL + 1 {
        return message.to_string();
    }
    let omitted = lines.len() - HEAD - TAIL;
    let mut out = lines[..HEAD].join("\n");
    out.push_str(&format!("\n    ... {omitted} more frames ...\n"));
    out.push_str(&lines[lines.len() - TAIL..].join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn long_backtraces_keep_head_and_tail() {
        let long: Vec<String> = (0..1000).map(|i| format!("frame {i}")).collect();
        let short = shorten(&long.join("\n"));
        assert!(short.contains("frame 0\n") && short.contains("frame 999"));
        assert!(short.contains("968 more frames"));
        assert_eq!(shorten("one\ntwo"), "one\ntwo");
    }
}
