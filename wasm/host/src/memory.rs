//! Reaching the guest's linear memory from your own imports.

use crate::GuestState;
use wasmtime::{Caller, Extern};

/// The guest's linear memory, as seen from one of your imports.
///
/// The store-per-fiber mechanism shares one memory between many stores, so it is a
/// `SharedMemory` there and a plain `Memory` under stack switching; this hides which.
///
/// ```no_run
/// use greenlet_wasm::{GuestMemory, GuestState};
/// fn log(mut caller: wasmtime::Caller<'_, GuestState<()>>, ptr: i32, len: i32) {
///     let memory = GuestMemory::of(&mut caller).expect("guest exports memory");
///     let bytes = memory.read(&caller, ptr as u32, len as u32).expect("in bounds");
///     println!("guest says: {}", String::from_utf8_lossy(&bytes));
/// }
/// ```
pub enum GuestMemory {
    /// A memory owned by the one store.
    Plain(wasmtime::Memory),
    /// A memory shared by the stores of a store-per-fiber run.
    Shared(wasmtime::SharedMemory),
}

impl GuestMemory {
    /// The `memory` export of the calling instance, if any.
    pub fn of<T>(caller: &mut Caller<'_, GuestState<T>>) -> Option<Self> {
        match caller.get_export("memory")? {
            Extern::Memory(m) => Some(GuestMemory::Plain(m)),
            Extern::SharedMemory(m) => Some(GuestMemory::Shared(m)),
            _ => None,
        }
    }

    /// Copies `len` bytes at `offset` out of the guest; `None` if out of bounds.
    pub fn read<T>(
        &self,
        caller: &Caller<'_, GuestState<T>>,
        offset: u32,
        len: u32,
    ) -> Option<Vec<u8>> {
        let (start, end) = (offset as usize, offset as usize + len as usize);
        match self {
            GuestMemory::Plain(m) => m.data(caller).get(start..end).map(<[u8]>::to_vec),
            GuestMemory::Shared(m) => {
                let cells = m.data().get(start..end)?;
                // SAFETY: the guest's fibers run one at a time on this thread and the
                // guest is inside this host call: nothing writes the memory meanwhile.
                Some(cells.iter().map(|c| unsafe { *c.get() }).collect())
            }
        }
    }

    /// Copies `bytes` into the guest at `offset`; `None` if out of bounds.
    pub fn write<T>(
        &self,
        caller: &mut Caller<'_, GuestState<T>>,
        offset: u32,
        bytes: &[u8],
    ) -> Option<()> {
        let (start, end) = (offset as usize, offset as usize + bytes.len());
        match self {
            GuestMemory::Plain(m) => {
                m.data_mut(caller)
                    .get_mut(start..end)?
                    .copy_from_slice(bytes);
            }
            GuestMemory::Shared(m) => {
                let cells = m.data().get(start..end)?;
                for (cell, byte) in cells.iter().zip(bytes) {
                    // SAFETY: as in `read`: no other access to the memory meanwhile.
                    unsafe { *cell.get() = *byte };
                }
            }
        }
        Some(())
    }
}
