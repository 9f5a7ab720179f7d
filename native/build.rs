//! Gives the shared library a soname (`libgreenlet.so.<major>`), so that programs linked
//! with `-lgreenlet` record it, and `cargo xtask install-native` installs the library under
//! that name with a `libgreenlet.so` symlink for the linker.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libgreenlet.so.{major}");
    }
}
