//! Keeps the hand-written `include/greenlet.h` in sync with the Rust side.
//!
//! The Rust side of each declaration is derived from the real items, not restated: a
//! function's C signature is rendered from its Rust type (the compiler infers it from
//! `greenlet_x as unsafe extern "C" fn(_, _) -> _`), enums from their `C_CONSTANTS`, and the
//! list of exported functions is read from the sources. The header is parsed with a small
//! parser for the subset of C it uses (typedefs, enums, prototypes with named parameters).
//! Any difference fails the test with both versions side by side.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

use crate::api::{self, EntryFn, TraceFn};
use crate::handle::{Handle, QUARANTINE};
use crate::status::{Event, State, Status};

/// A Rust type with a C spelling.
trait CType {
    fn c() -> String;
}

macro_rules! named {
    ($($t:ty => $c:expr),* $(,)?) => {
        $(impl CType for $t {
            fn c() -> String {
                String::from($c)
            }
        })*
    };
}

named! {
    () => "void",
    c_void => "void",
    c_char => "char",
    c_int => "int",
    usize => "size_t",
    Handle => "greenlet_t",
    Status => Status::C_TYPE,
    State => State::C_TYPE,
    Event => Event::C_TYPE,
}

impl<T: CType> CType for *mut T {
    fn c() -> String {
        canon(&format!("{} *", T::c()))
    }
}

impl<T: CType> CType for *const T {
    fn c() -> String {
        canon(&format!("const {} *", T::c()))
    }
}

/// A nullable function pointer is spelled like the pointer.
impl<F: CType> CType for Option<F> {
    fn c() -> String {
        F::c()
    }
}

/// An exported function's type: its return type and parameter types.
trait CFn {
    fn parts() -> (String, Vec<String>);
}

macro_rules! fn_impls {
    ($($a:ident),*) => {
        impl<R: CType, $($a: CType),*> CFn for unsafe extern "C" fn($($a),*) -> R {
            fn parts() -> (String, Vec<String>) {
                (R::c(), vec![$($a::c()),*])
            }
        }
        impl<R: CType, $($a: CType),*> CType for unsafe extern "C" fn($($a),*) -> R {
            fn c() -> String {
                fn_pointer(&R::c(), &[$($a::c()),*])
            }
        }
        // Callbacks C code gives us are `C-unwind`: the same C calling convention.
        impl<R: CType, $($a: CType),*> CType for unsafe extern "C-unwind" fn($($a),*) -> R {
            fn c() -> String {
                fn_pointer(&R::c(), &[$($a::c()),*])
            }
        }
    };
}

fn_impls!();
fn_impls!(A);
fn_impls!(A, B);
fn_impls!(A, B, C);
fn_impls!(A, B, C, D);
fn_impls!(A, B, C, D, E);

fn parts_of<F: CFn>(_: F) -> (String, Vec<String>) {
    F::parts()
}

/// `(name, (return type, parameter types))` of an exported function, from its Rust type.
macro_rules! sig {
    ($name:ident($($arg:tt),*)) => {
        (
            stringify!($name),
            parts_of(api::$name as unsafe extern "C" fn($($arg),*) -> _),
        )
    };
}

/// Every exported function, rendered from Rust.
fn rust_functions() -> BTreeMap<String, (String, Vec<String>)> {
    [
        sig!(greenlet_new(_, _, _, _, _)),
        sig!(greenlet_new_own_fp(_, _, _, _, _)),
        sig!(greenlet_switch(_, _, _)),
        sig!(greenlet_throw(_, _, _, _)),
        sig!(greenlet_kill(_, _)),
        sig!(greenlet_fail(_, _)),
        sig!(greenlet_propagate()),
        sig!(greenlet_error_payload()),
        sig!(greenlet_error_message()),
        sig!(greenlet_current()),
        sig!(greenlet_main()),
        sig!(greenlet_parent(_, _)),
        sig!(greenlet_set_parent(_, _)),
        sig!(greenlet_retain(_)),
        sig!(greenlet_release(_)),
        sig!(greenlet_state(_)),
        sig!(greenlet_is_main(_)),
        sig!(greenlet_handle_count()),
        sig!(greenlet_settrace(_, _)),
        sig!(greenlet_last_error()),
        sig!(greenlet_status_name(_)),
        sig!(greenlet_backend_name()),
    ]
    .into_iter()
    .map(|(name, parts)| (name.to_string(), parts))
    .collect()
}

/// Joins a type's words with single spaces, and stars without: `void * *` -> `void **`.
fn canon(ty: &str) -> String {
    let mut out = ty.split_whitespace().collect::<Vec<_>>().join(" ");
    while out.contains("* *") {
        out = out.replace("* *", "**");
    }
    out
}

/// The spelling of a function pointer type, the same for both sides.
fn fn_pointer(ret: &str, params: &[String]) -> String {
    format!("{} (*)({})", canon(ret), params.join(", "))
}

/// What the header declares.
#[derive(Debug, Default)]
struct Header {
    functions: BTreeMap<String, (String, Vec<String>)>,
    enums: BTreeMap<String, Vec<(String, i32)>>,
    fn_typedefs: BTreeMap<String, String>,
    opaque: BTreeSet<String>,
    defines: BTreeMap<String, String>,
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                let end = rest[b..].find("*/").map_or(rest.len(), |e| b + e + 2);
                out.push(' ');
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                let end = rest[l..].find('\n').map_or(rest.len(), |e| l + e);
                rest = &rest[end..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Splits C text into identifiers/numbers and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Parameter types of a list in parentheses (names dropped; every parameter must be named).
fn param_types(tokens: &[String], typedefs: &BTreeMap<String, String>) -> Vec<String> {
    if tokens.len() == 1 && tokens[0] == "void" {
        return Vec::new();
    }
    tokens
        .split(|t| t == ",")
        .map(|param| {
            let ty = &param[..param.len().saturating_sub(1)];
            let ty = canon(&ty.join(" "));
            typedefs.get(&ty).cloned().unwrap_or(ty)
        })
        .collect()
}

/// The index of the `)` matching the `(` at `open`.
fn closing(tokens: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.as_str() {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {tokens:?}")
}

fn parse_header(text: &str) -> Header {
    let mut header = Header::default();
    let text = strip_comments(text);
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(define) = trimmed.strip_prefix("#define ") {
            let mut words = define.split_whitespace();
            if let (Some(name), Some(value)) = (words.next(), words.next()) {
                header.defines.insert(name.into(), value.into());
            }
        } else if !trimmed.starts_with('#') && trimmed != "extern \"C\" {" {
            code.push_str(line);
            code.push('\n');
        }
    }
    for statement in code.split(';') {
        parse_statement(statement, &mut header);
    }
    header
}

fn parse_statement(statement: &str, header: &mut Header) {
    let t = tokens(statement);
    // Nothing, or the `}` closing `extern "C"`, left over at the end of the file.
    if t.iter().all(|x| x == "}") {
        return;
    }
    let words: Vec<&str> = t.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["typedef", "struct", _, name] => {
            header.opaque.insert(name.to_string());
        }
        ["typedef", "enum", _, "{", body @ .., "}", name] => {
            let constants = body
                .split(|w| *w == ",")
                .filter(|c| !c.is_empty())
                .map(|c| match c {
                    [name, "=", value @ ..] => (
                        name.to_string(),
                        value
                            .concat()
                            .parse()
                            .unwrap_or_else(|_| panic!("enum value of {name}")),
                    ),
                    other => panic!("enum constant without a value: {other:?}"),
                })
                .collect();
            header.enums.insert(name.to_string(), constants);
        }
        ["typedef", ..] => {
            // typedef RET (*NAME)(PARAMS)
            let open = t.iter().position(|w| w == "(").expect("function typedef");
            let ret = canon(&t[1..open].join(" "));
            assert_eq!(
                t[open + 1],
                "*",
                "only function pointer typedefs: {statement}"
            );
            let name = t[open + 2].clone();
            let params_open = open + 4;
            let close = closing(&t, params_open);
            let params = param_types(&t[params_open + 1..close], &header.fn_typedefs);
            header.fn_typedefs.insert(name, fn_pointer(&ret, &params));
        }
        _ => {
            // RET NAME(PARAMS)
            let open = t.iter().position(|w| w == "(").expect("a prototype");
            let name = t[open - 1].clone();
            let ret = canon(&t[..open - 1].join(" "));
            let close = closing(&t, open);
            let params = param_types(&t[open + 1..close], &header.fn_typedefs);
            header.functions.insert(name, (ret, params));
        }
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_header() -> Header {
    let path = manifest_dir().join("include/greenlet.h");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_header(&text)
}

/// Names of the `extern "C" fn` items defined in the crate's sources.
fn exported_in_sources() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let dir = manifest_dir().join("src");
    for entry in std::fs::read_dir(&dir).expect("src/") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file");
        for (at, _) in text.match_indices("#[unsafe(no_mangle)]") {
            let rest = &text[at..];
            let Some(fn_at) = rest.find("extern \"C\" fn ") else {
                continue;
            };
            let name: String = rest[fn_at + "extern \"C\" fn ".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

fn show(map: &BTreeMap<String, (String, Vec<String>)>, name: &str) -> String {
    match map.get(name) {
        Some((ret, params)) => format!("{ret} {name}({})", params.join(", ")),
        None => "(missing)".to_string(),
    }
}

#[test]
fn header_functions_match_the_rust_signatures() {
    let header = read_header();
    let rust = rust_functions();
    let exported = exported_in_sources();
    let listed: BTreeSet<String> = rust.keys().cloned().collect();
    assert_eq!(
        exported, listed,
        "every #[no_mangle] extern \"C\" fn must be listed in rust_functions() (abi_check.rs)"
    );
    let mut differences = Vec::new();
    let names: BTreeSet<&String> = rust.keys().chain(header.functions.keys()).collect();
    for name in names {
        if rust.get(name) != header.functions.get(name) {
            differences.push(format!(
                "  {name}:\n    rust:   {}\n    header: {}",
                show(&rust, name),
                show(&header.functions, name)
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "include/greenlet.h differs from the Rust side:\n{}",
        differences.join("\n")
    );
}

#[test]
fn header_enums_match_the_rust_enums() {
    let header = read_header();
    for (c_type, constants) in [
        (Status::C_TYPE, Status::C_CONSTANTS),
        (State::C_TYPE, State::C_CONSTANTS),
        (Event::C_TYPE, Event::C_CONSTANTS),
    ] {
        let rust: Vec<(String, i32)> = constants.iter().map(|&(n, v)| (n.to_string(), v)).collect();
        assert_eq!(
            header.enums.get(c_type),
            Some(&rust),
            "enum {c_type} in include/greenlet.h"
        );
    }
    assert_eq!(
        header.enums.len(),
        3,
        "unexpected enums: {:?}",
        header.enums
    );
}

#[test]
fn header_types_and_constants_match() {
    let header = read_header();
    assert_eq!(
        header.opaque,
        BTreeSet::from(["greenlet_t".to_string()]),
        "opaque types"
    );
    let typedefs = BTreeMap::from([
        ("greenlet_entry_fn".to_string(), EntryFn::c()),
        ("greenlet_trace_fn".to_string(), TraceFn::c()),
    ]);
    assert_eq!(header.fn_typedefs, typedefs, "function pointer typedefs");
    let version = [
        ("GREENLET_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("GREENLET_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("GREENLET_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ];
    for (name, value) in version {
        assert_eq!(header.defines.get(name).map(String::as_str), Some(value));
    }
    assert_eq!(
        header.defines.get("GREENLET_QUARANTINE"),
        Some(&QUARANTINE.to_string())
    );
}

#[test]
fn the_parser_reads_what_the_header_uses() {
    let header = parse_header(
        "/* c */ typedef struct s s_t; // x\n#define A 1\n\
         typedef enum e { X = 0, Y = -2 } e_t;\n\
         typedef void *(*f_fn)(void *a, const char *b);\n\
         e_t f(s_t **out, f_fn cb, size_t n);\nint g(void);",
    );
    assert!(header.opaque.contains("s_t"));
    assert_eq!(header.defines["A"], "1");
    assert_eq!(
        header.enums["e_t"],
        [("X".to_string(), 0), ("Y".to_string(), -2)]
    );
    assert_eq!(
        header.fn_typedefs["f_fn"],
        "void * (*)(void *, const char *)"
    );
    assert_eq!(
        header.functions["f"],
        (
            "e_t".to_string(),
            vec![
                "s_t **".to_string(),
                "void * (*)(void *, const char *)".to_string(),
                "size_t".to_string()
            ]
        )
    );
    assert_eq!(header.functions["g"], ("int".to_string(), vec![]));
}
