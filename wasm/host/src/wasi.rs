//! One WASI context shared by every store of a run.

use crate::{Error, GuestState, RunOptions};
use std::cell::UnsafeCell;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The WASI state of one guest run, shared by all its stores.
///
/// Under the store-per-fiber mechanism each fiber has its own store, but the guest is one
/// program: a file opened in one greenlet must be readable in another. So all stores point
/// at this one context.
pub(crate) struct SharedWasi(UnsafeCell<WasiP1Ctx>);

// SAFETY: the context is only reached through `access`, whose invariant (one store of a
// run executes at a time, on one thread) makes every access exclusive. Moving it between
// threads is fine: `WasiP1Ctx` is `Send`.
unsafe impl Send for SharedWasi {}
// SAFETY: as above; no two threads ever reach it at once.
unsafe impl Sync for SharedWasi {}

impl SharedWasi {
    pub(crate) fn new(options: &RunOptions) -> Result<Self, Error> {
        let mut builder = WasiCtxBuilder::new();
        match &options.output {
            Some(output) => {
                builder
                    .inherit_stdin()
                    .stdout(output.stdout.clone())
                    .stderr(output.stderr.clone());
            }
            None => {
                builder.inherit_stdio();
            }
        }
        builder.args(&options.args).envs(&options.env);
        for (host, guest) in &options.dirs {
            builder
                .preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| Error::Io {
                    path: host.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
        Ok(SharedWasi(UnsafeCell::new(builder.build_p1())))
    }
}

/// The accessor given to `wasmtime_wasi::p1::add_to_linker_*`.
pub(crate) fn access<T>(state: &mut GuestState<T>) -> &mut WasiP1Ctx {
    // SAFETY: stores of a run execute one at a time on one thread: the stack-switching
    // mechanism has a single store, and the store-per-fiber executor polls only the
    // running fiber's call and never switches fibers inside a WASI call (only inside
    // `switch`/`exit`/`reset`/`free`, which do not touch WASI). So at most one `&mut`
    // obtained here is live at any moment, and none outlives the WASI call using it.
    unsafe { &mut *state.wasi.0.get() }
}
