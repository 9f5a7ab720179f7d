//! Loading a guest: recognising bad input early, and checking what the ABI needs.

use crate::{ABI_MODULE, Error, Host, Mechanism, store_per_fiber};
use wasmtime::{ExternType, Module, Mutability, ValType};

/// A compiled guest module, checked against what its host needs.
///
/// ```
/// let host = greenlet_wasm::Host::new(Default::default()).unwrap();
/// let guest = host.load(br#"(module (func (export "_start")))"#).unwrap();
/// assert!(!guest.uses_fibers());
/// ```
pub struct Guest {
    pub(crate) module: Module,
    uses_fibers: bool,
    /// The store-per-fiber variants of the module, when that is the mechanism.
    pub(crate) per_fiber: Option<store_per_fiber::Variants>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("uses_fibers", &self.uses_fibers)
            .field("store_per_fiber_variants", &self.per_fiber.is_some())
            .finish_non_exhaustive()
    }
}

const EXPORT_HELP: &str = "a greenlet-rs guest must export its function table and stack pointer: \
     link with `-C link-arg=--export-table -C link-arg=--export=__stack_pointer` (the \
     workspace .cargo/config.toml sets both for wasm32-wasip1; a RUSTFLAGS variable \
     replaces them)";

impl Guest {
    /// Whether the module imports `greenlet_fiber_v1` (else it runs as plain WASI).
    ///
    /// ```
    /// # let host = greenlet_wasm::Host::new(Default::default()).unwrap();
    /// # let guest = host.load(br#"(module (func (export "_start")))"#).unwrap();
    /// println!("fibers: {}", guest.uses_fibers());
    /// ```
    pub fn uses_fibers(&self) -> bool {
        self.uses_fibers
    }

    pub(crate) fn compile(host: &Host, bytes: &[u8]) -> Result<Self, Error> {
        check_format(bytes)?;
        let module = Module::new(host.engine(), bytes)
            .map_err(|e| Error::InvalidModule(format!("{e:#}")))?;
        let mut uses_fibers = false;
        for import in module.imports() {
            let name = import.module();
            if name == ABI_MODULE {
                uses_fibers = true;
            } else if name.starts_with("greenlet_fiber_") {
                return Err(Error::Link(format!(
                    "the module imports `{name}::{}`, but this host implements `{ABI_MODULE}` \
                     only: rebuild the guest against a greenlet-rs with the same ABI version",
                    import.name()
                )));
            }
        }
        if module.get_export("_start").is_none() {
            return Err(Error::MissingExport {
                name: "_start".into(),
                help: "greenlet-wasm runs WASI commands: build a binary (with `fn main`) for \
                       wasm32-wasip1",
            });
        }
        if uses_fibers {
            match module.get_export("__stack_pointer") {
                Some(ExternType::Global(g))
                    if g.mutability() == Mutability::Var && matches!(g.content(), ValType::I32) => {
                }
                _ => {
                    return Err(Error::MissingExport {
                        name: "__stack_pointer".into(),
                        help: EXPORT_HELP,
                    });
                }
            }
            if !matches!(
                module.get_export("__indirect_function_table"),
                Some(ExternType::Table(_))
            ) {
                return Err(Error::MissingExport {
                    name: "__indirect_function_table".into(),
                    help: EXPORT_HELP,
                });
            }
        }
        let per_fiber = match host.mechanism() {
            Mechanism::StorePerFiber => store_per_fiber::Variants::new(host, bytes, uses_fibers)?,
            Mechanism::StackSwitching => None,
        };
        Ok(Guest {
            module,
            uses_fibers,
            per_fiber,
        })
    }
}

/// Rejects what is plainly not a core wasm module, with a message better than a parser's.
fn check_format(bytes: &[u8]) -> Result<(), Error> {
    if bytes.starts_with(b"\0asm") {
        return match bytes.get(4..8) {
            Some([1, 0, 0, 0]) => Ok(()),
            Some([_, _, 1, 0]) => Err(Error::InvalidModule(
                "this is a WebAssembly component, not a core module: greenlet-wasm runs \
                 wasm32-wasip1 modules"
                    .into(),
            )),
            _ => Err(Error::InvalidModule(
                "truncated or unknown WebAssembly binary version".into(),
            )),
        };
    }
    let text = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(text, Some(b'(') | Some(b';')) {
        return Ok(()); // the text format; the parser reports its own errors
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(Error::InvalidModule(format!(
        "not a WebAssembly module: it does not start with the `\\0asm` magic bytes (starts \
         with {})",
        if head.is_empty() {
            "nothing: the file is empty".to_string()
        } else {
            head.join(" ")
        }
    )))
}
