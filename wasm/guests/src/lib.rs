//! Shared bits of the guest programs in `src/bin` (built for `wasm32-wasip1`, run by
//! `greenlet-wasm`): argument parsing and the host test imports.

/// The `n`-th command-line argument parsed as a number, or `default`.
///
/// ```
/// assert_eq!(greenlet_wasm_guests::arg(5, 7u32), 7);
/// ```
pub fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Imports only the host test suite provides (module `greenlet_test`).
#[cfg(target_arch = "wasm32")]
pub mod test_host {
    #[link(wasm_import_module = "greenlet_test")]
    unsafe extern "C" {
        /// The host process's resident set size, in KiB.
        #[link_name = "rss_kib"]
        pub safe fn rss_kib() -> u32;
    }
}

/// Stand-in off wasm32, so the crate builds (and its bins say what they are for).
#[cfg(not(target_arch = "wasm32"))]
pub mod test_host {
    /// Always 0 off wasm32.
    ///
    /// ```
    /// assert_eq!(greenlet_wasm_guests::test_host::rss_kib(), 0);
    /// ```
    pub fn rss_kib() -> u32 {
        0
    }
}
