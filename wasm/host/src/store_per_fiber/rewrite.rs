//! The two module variants the store-per-fiber mechanism instantiates.
//!
//! Every fiber is a separate instance, so all instances must see one linear memory. A
//! `wasm32-wasip1` module defines its memory (unshared), and a memory cannot be shared
//! between stores unless it is a `SharedMemory`. So the module is rewritten, once, at load:
//!
//! - **root** variant: memory 0 becomes an import `greenlet_host::memory` of a shared
//!   memory with the same limits (maximum 4 GiB if none); everything else is unchanged, so
//!   instantiating it initialises the data segments into the shared memory as usual.
//! - **fiber** variant: the same, and additionally every active data segment becomes
//!   passive (same index, never applied) and the start function is dropped: instantiating a
//!   fiber must not reset the program's statics.
//!
//! Non-atomic loads and stores on a shared memory mean the same as on an unshared one, so
//! the guest's code is untouched. Mutable globals are per instance: only
//! `__stack_pointer` may be one (each fiber has its own), which [`rewrite`] checks.

use crate::Error;
use wasm_encoder::{DataSection, Module as Encoded, RawSection};
use wasmparser::{DataKind, Parser, Payload};

/// The import that replaces the module's own memory.
pub(crate) const MEMORY_IMPORT: (&str, &str) = ("greenlet_host", "memory");

/// The limits of the module's memory, in 64 KiB pages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemoryLimits {
    pub(crate) minimum: u32,
    pub(crate) maximum: u32,
}

/// The rewritten module bytes.
pub(crate) struct Rewritten {
    pub(crate) root: Vec<u8>,
    pub(crate) fiber: Vec<u8>,
    pub(crate) memory: MemoryLimits,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::InvalidModule(format!("{e}"))
}

fn unsupported(what: &str) -> Error {
    Error::Config(format!(
        "the store-per-fiber mechanism cannot run this module: {what}; use \
         --fibers=stack-switching"
    ))
}

fn write_leb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

fn write_name(out: &mut Vec<u8>, name: &str) {
    write_leb(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
}

/// An import section with `entries` imports (already encoded) plus the shared memory.
fn import_section(entries: u64, encoded: &[u8], memory: MemoryLimits) -> RawSectionBuf {
    let mut data = Vec::with_capacity(encoded.len() + 32);
    write_leb(&mut data, entries + 1);
    data.extend_from_slice(encoded);
    write_name(&mut data, MEMORY_IMPORT.0);
    write_name(&mut data, MEMORY_IMPORT.1);
    data.push(0x02); // memory
    data.push(0x03); // limits: shared, with a maximum
    write_leb(&mut data, memory.minimum.into());
    write_leb(&mut data, memory.maximum.into());
    RawSectionBuf { id: 2, data }
}

struct RawSectionBuf {
    id: u8,
    data: Vec<u8>,
}

const IMPORT_SECTION: u8 = 2;
const MEMORY_SECTION: u8 = 5;
const START_SECTION: u8 = 8;
const DATA_SECTION: u8 = 11;

/// Rewrites `bytes` (a core module that uses fibers) into its root and fiber variants.
pub(crate) fn rewrite(bytes: &[u8]) -> Result<Rewritten, Error> {
    // First pass: the memory, and whether anything makes the module unsuitable.
    let mut memory = None;
    let mut has_imports = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                has_imports = true;
                for import in reader.into_imports() {
                    if let wasmparser::TypeRef::Memory(_) = import.map_err(invalid)?.ty {
                        return Err(unsupported("it imports its memory"));
                    }
                }
            }
            Payload::MemorySection(reader) => {
                if reader.count() != 1 {
                    return Err(unsupported("it defines more than one memory"));
                }
                for m in reader {
                    let m = m.map_err(invalid)?;
                    if m.memory64 || m.shared || m.page_size_log2.is_some() {
                        return Err(unsupported(
                            "its memory is 64-bit, shared or has custom pages",
                        ));
                    }
                    memory = Some(MemoryLimits {
                        minimum: m.initial as u32,
                        maximum: m.maximum.map_or(65_536, |m| m as u32),
                    });
                }
            }
            Payload::GlobalSection(reader) => {
                let mut mutable = 0;
                for g in reader {
                    mutable += usize::from(g.map_err(invalid)?.ty.mutable);
                }
                if mutable > 1 {
                    return Err(unsupported(&format!(
                        "it has {mutable} mutable globals, and each fiber's instance would \
                         have its own copy (only __stack_pointer may be mutable)"
                    )));
                }
            }
            Payload::ComponentSection { .. } | Payload::ModuleSection { .. } => {
                return Err(invalid("a component, not a core module"));
            }
            _ => {}
        }
    }
    let memory = memory.ok_or_else(|| unsupported("it defines no memory"))?;

    let mut root = Encoded::new();
    let mut fiber = Encoded::new();
    let mut imports_done = false;
    let add_imports = |root: &mut Encoded, fiber: &mut Encoded| {
        let section = import_section(0, &[], memory);
        for m in [root, fiber] {
            m.section(&RawSection {
                id: section.id,
                data: &section.data,
            });
        }
    };
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        let data = &bytes[range];
        // A module without imports gets its import section before the first section
        // that must follow one (everything but custom and type sections).
        if !has_imports && !imports_done && id != 0 && id != 1 {
            add_imports(&mut root, &mut fiber);
            imports_done = true;
        }
        match id {
            IMPORT_SECTION => {
                let (count, len) = read_leb(data).ok_or_else(|| invalid("bad import section"))?;
                let section = import_section(count, &data[len..], memory);
                for m in [&mut root, &mut fiber] {
                    m.section(&RawSection {
                        id: section.id,
                        data: &section.data,
                    });
                }
                imports_done = true;
            }
            MEMORY_SECTION => {} // replaced by the import
            START_SECTION => {
                root.section(&RawSection { id, data });
            }
            DATA_SECTION => {
                root.section(&RawSection { id, data });
                let Payload::DataSection(reader) = payload else {
                    return Err(invalid("bad data section"));
                };
                let mut passive = DataSection::new();
                for segment in reader {
                    let segment = segment.map_err(invalid)?;
                    match segment.kind {
                        DataKind::Active { .. } | DataKind::Passive => {
                            passive.passive(segment.data.iter().copied());
                        }
                    }
                }
                fiber.section(&passive);
            }
            _ => {
                root.section(&RawSection { id, data });
                fiber.section(&RawSection { id, data });
            }
        }
    }
    Ok(Rewritten {
        root: root.finish(),
        fiber: fiber.finish(),
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb_round_trips() {
        for n in [0u64, 1, 127, 128, 300, 65_536, u32::MAX as u64] {
            let mut out = Vec::new();
            write_leb(&mut out, n);
            assert_eq!(read_leb(&out), Some((n, out.len())));
        }
    }

    #[test]
    fn memory_becomes_a_shared_import_and_fiber_data_passive() {
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory 2 10)
            (global $sp (mut i32) (i32.const 1024))
            (data (i32.const 8) "hello")
            (func $s)
            (start $s)
            (export "memory" (memory 0)))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let out = rewrite(&bytes).unwrap();
        assert_eq!((out.memory.minimum, out.memory.maximum), (2, 10));
        let root = wasmprinter_like(&out.root);
        let fiber = wasmprinter_like(&out.fiber);
        assert!(root.contains("import greenlet_host::memory shared"));
        assert!(root.contains("data active") && root.contains("start"));
        assert!(fiber.contains("data passive") && !fiber.contains("start"));
    }

    /// A tiny summary of a module's imports, data and start, for the test above.
    fn wasmprinter_like(bytes: &[u8]) -> String {
        let mut out = String::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.unwrap() {
                Payload::ImportSection(r) => {
                    for i in r.into_imports() {
                        let i = i.unwrap();
                        if let wasmparser::TypeRef::Memory(m) = i.ty {
                            out += &format!(
                                "import {}::{} {} ",
                                i.module,
                                i.name,
                                if m.shared { "shared" } else { "unshared" }
                            );
                        }
                    }
                }
                Payload::DataSection(r) => {
                    for d in r {
                        out += match d.unwrap().kind {
                            DataKind::Active { .. } => "data active ",
                            DataKind::Passive => "data passive ",
                        };
                    }
                }
                Payload::StartSection { .. } => out += "start ",
                _ => {}
            }
        }
        out
    }
}
