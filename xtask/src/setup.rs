//! `cargo xtask setup`: install whatever the tests need and is missing, and nothing else.
//!
//! Checks are cheap (two `rustup` queries, a few `PATH` and file lookups), so this runs at
//! the start of every `test-all-targets` and is silent apart from one line when all is there.

use std::path::Path;
use std::process::Command;

use crate::exec;
use crate::rows::miri;

/// Rust targets the rows build for.
const RUST_TARGETS: &[&str] = &[
    "aarch64-unknown-linux-gnu",
    "riscv64gc-unknown-linux-gnu",
    "wasm32-wasip1",
];

/// Rustup components CI uses.
const RUST_COMPONENTS: &[&str] = &["clippy", "rustfmt"];

/// Debian packages, each with what shows it is installed: commands looked up on `PATH`,
/// or absolute paths of files it provides.
const DEBIAN_PACKAGES: &[(&str, &[&str])] = &[
    ("qemu-user", &["qemu-aarch64", "qemu-riscv64"]),
    ("gcc-aarch64-linux-gnu", &["aarch64-linux-gnu-gcc"]),
    ("gcc-riscv64-linux-gnu", &["riscv64-linux-gnu-gcc"]),
    (
        "libc6-dev-arm64-cross",
        &["/usr/aarch64-linux-gnu/lib/crt1.o"],
    ),
    (
        "libc6-dev-riscv64-cross",
        &["/usr/riscv64-linux-gnu/lib/crt1.o"],
    ),
    ("valgrind", &["valgrind"]),
    // The C/C++ rows of libgreenlet (xtask/src/native.rs).
    ("pkg-config", &["pkg-config"]),
    ("g++", &["g++"]),
    ("g++-aarch64-linux-gnu", &["aarch64-linux-gnu-g++"]),
];

/// Installs what is missing.
pub fn run() -> Result<(), String> {
    let targets =
        missing_rustup_items(&["target", "list", "--installed"], RUST_TARGETS, is_target)?;
    let components = missing_rustup_items(
        &["component", "list", "--installed"],
        RUST_COMPONENTS,
        is_component,
    )?;
    let packages = missing_debian_packages();
    let miri = miri::available();

    if targets.is_empty() && components.is_empty() && packages.is_empty() && miri {
        println!(
            "setup: nothing to do ({} Rust targets, {} components and {} Debian packages present)",
            RUST_TARGETS.len(),
            RUST_COMPONENTS.len(),
            DEBIAN_PACKAGES.len()
        );
        return Ok(());
    }

    if !targets.is_empty() {
        println!("setup: missing Rust targets: {}", targets.join(" "));
        exec::run(
            Command::new("rustup")
                .args(["target", "add"])
                .args(&targets),
        )?;
    }
    if !components.is_empty() {
        println!("setup: missing Rust components: {}", components.join(" "));
        exec::run(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&components),
        )?;
    }
    if !packages.is_empty() {
        println!("setup: missing Debian packages: {}", packages.join(" "));
        install_debian_packages(&packages)?;
        let still_missing = missing_debian_packages();
        if !still_missing.is_empty() {
            return Err(format!(
                "after apt-get install, still missing: {} (looked for: {})",
                still_missing.join(" "),
                probes_of(&still_missing).join(" ")
            ));
        }
    }
    if !miri {
        println!("setup: missing a nightly toolchain with Miri (for the miri row)");
        miri::install()?;
    }
    println!("setup: done");
    Ok(())
}

/// The `wanted` items that `rustup <query>` does not list, where `listed(line, item)` says
/// whether a line of its output is that item.
fn missing_rustup_items(
    query: &[&str],
    wanted: &[&'static str],
    listed: fn(&str, &str) -> bool,
) -> Result<Vec<&'static str>, String> {
    let output = exec::output(Command::new("rustup").args(query)).ok_or_else(|| {
        format!(
            "`rustup {}` failed; without rustup, install these yourself: {}",
            query.join(" "),
            wanted.join(" ")
        )
    })?;
    Ok(wanted
        .iter()
        .copied()
        .filter(|item| !output.lines().any(|line| listed(line.trim(), item)))
        .collect())
}

fn is_target(line: &str, target: &str) -> bool {
    line == target
}

/// Rustup lists components with their host triple: `clippy-x86_64-unknown-linux-gnu`.
fn is_component(line: &str, component: &str) -> bool {
    line == component
        || line
            .strip_prefix(component)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|triple| triple.contains('-'))
}

fn missing_debian_packages() -> Vec<&'static str> {
    DEBIAN_PACKAGES
        .iter()
        .filter(|(_, probes)| !probes.iter().all(|probe| is_present(probe)))
        .map(|(package, _)| *package)
        .collect()
}

fn is_present(probe: &str) -> bool {
    if probe.starts_with('/') {
        Path::new(probe).exists()
    } else {
        exec::which(probe).is_some()
    }
}

fn probes_of(packages: &[&str]) -> Vec<&'static str> {
    DEBIAN_PACKAGES
        .iter()
        .filter(|(package, _)| packages.contains(package))
        .flat_map(|(_, probes)| probes.iter().copied())
        .collect()
}

/// `apt-get update`, then `apt-get install` of `packages`: as root, else through sudo.
fn install_debian_packages(packages: &[&str]) -> Result<(), String> {
    let by_hand = format!(
        "apt-get update && apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if exec::which("apt-get").is_none() {
        return Err(format!(
            "apt-get not found; install the equivalent of: {by_hand}"
        ));
    }
    let as_root = is_root();
    if !as_root && exec::which("sudo").is_none() {
        return Err(format!(
            "installing needs root, and sudo is not available; as root, run: {by_hand}"
        ));
    }
    let apt_get = || {
        let mut cmd = Command::new(if as_root { "env" } else { "sudo" });
        if !as_root {
            cmd.arg("env");
        }
        cmd.args(["DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        cmd
    };
    exec::run(apt_get().arg("update"))?;
    exec::run(
        apt_get()
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages),
    )
}

fn is_root() -> bool {
    exec::output(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_listed_with_their_host_triple() {
        assert!(is_component("clippy-x86_64-unknown-linux-gnu", "clippy"));
        assert!(is_component("rustfmt", "rustfmt"));
        assert!(!is_component("rustfmt-preview", "rustfmt"));
        assert!(!is_component("clippy-preview", "clippy"));
    }

    #[test]
    fn targets_must_match_exactly() {
        assert!(is_target("wasm32-wasip1", "wasm32-wasip1"));
        assert!(!is_target("wasm32-wasip1-threads", "wasm32-wasip1"));
    }

    #[test]
    fn every_package_has_a_probe() {
        assert!(DEBIAN_PACKAGES.iter().all(|(_, probes)| !probes.is_empty()));
    }
}
