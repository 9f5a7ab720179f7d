//! How many live fibers a host allows by default, and why.

use crate::MAX_FIBER_LIMIT;

/// Kernel mappings kept free for everything else the process maps (code, heap arenas,
/// linear memories, thread stacks).
const RESERVED_MAPPINGS: u32 = 4096;

/// The live-fiber limit a [`Host`](crate::Host) uses unless told otherwise.
///
/// Every live fiber owns a native stack that wasmtime maps with a guard page below it:
/// two kernel mappings. Linux caps a process at `vm.max_map_count` mappings (65,530 by
/// default), and past that every `mmap` fails, including the host's own allocations. So
/// the limit is `(max_map_count - 4096) / 2` (30,717 with the default), which leaves room
/// for the rest of the process, capped at [`MAX_FIBER_LIMIT`]. Where the count cannot be
/// read (not Linux), the default count is assumed.
///
/// ```
/// let limit = greenlet_wasm::default_fiber_limit();
/// assert!(limit > 1000 && limit <= greenlet_wasm::MAX_FIBER_LIMIT);
/// ```
pub fn default_fiber_limit() -> u32 {
    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(65_530);
    (max_map_count.saturating_sub(RESERVED_MAPPINGS) / 2).clamp(1, MAX_FIBER_LIMIT)
}
