//! The shape of `node/src`, as `lib.rs` describes it: three layers — `core`,
//! then `hubs`, then `web` — each importing only from its own layer and those
//! below, `core` knowing no HTTP, and the modules importing each other without
//! a cycle. Read from the sources (test modules excluded: a test may build
//! what it needs from anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of the crate (`core::node`, `web::rest::auth`, ...) and the
/// non-test source of its file.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src").with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["main"] {
            continue; // the binary: a crate of its own
        }
        let name = if parts == ["lib"] {
            String::new()
        } else {
            parts.join("::")
        };
        let source = std::fs::read_to_string(&file).expect("readable source");
        let source = match source.find("#[cfg(test)]") {
            Some(at) => source[..at].to_owned(),
            None => source,
        };
        modules.insert(name, source);
    }
    modules
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Drops comments (doc comments name modules without importing them).
fn code_of(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a `crate::` or `super::` use-tree or expression names, as full
/// paths from the crate root (`core::node::Node`).
fn paths_named(module: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let boundary =
            i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':');
        let start = if !boundary {
            None
        } else if rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with("super::") {
            let mut base: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
            base.pop();
            Some((base, "super::".len()))
        } else {
            None
        };
        match start {
            Some((base, skip)) => {
                let consumed = use_tree(&code[i + skip..], &base, &mut out);
                i += skip + consumed.max(1);
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

/// Parses one use-tree (`a::b::{c, d::e}` or `a::b::C`) at the start of
/// `text`; pushes the full paths; returns the bytes consumed.
fn use_tree(text: &str, base: &[String], out: &mut Vec<String>) -> usize {
    let mut path = base.to_vec();
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        let ident_len = text[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len() - i);
        if ident_len > 0 {
            path.push(text[i..i + ident_len].to_owned());
            i += ident_len;
        } else if bytes.get(i) == Some(&b'{') {
            i += 1;
            loop {
                while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace() || *b == b',') {
                    i += 1;
                }
                if bytes.get(i).is_none_or(|b| *b == b'}') {
                    return i + 1;
                }
                i += use_tree(&text[i..], &path, out);
            }
        }
        if text[i..].starts_with("::") {
            i += 2;
        } else {
            out.push(path.join("::"));
            return i;
        }
    }
}

/// The module a full path lands in: its longest prefix that is a module.
fn module_of(path: &str, modules: &BTreeMap<String, String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (0..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
}

/// module → the other modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (module, source) in &modules {
        let mut used = BTreeSet::new();
        for path in paths_named(module, &code_of(source)) {
            if let Some(target) = module_of(&path, &modules) {
                // A parent naming its own child module (`pub mod x;`, `x::f`)
                // is how Rust spells containment, not an import upwards.
                if target != *module {
                    used.insert(target);
                }
            }
        }
        graph.insert(module.clone(), used);
    }
    graph
}

fn layer(module: &str) -> usize {
    match module.split("::").next() {
        Some("core") => 0,
        Some("hubs") => 1,
        Some("web") => 2,
        _ => 3, // the crate root: the wiring
    }
}

#[test]
fn the_parser_reads_use_trees_and_paths() {
    let code = "use crate::core::{auth, node::{Node, NodeHooks}};\nlet x = crate::web::http::run(); use super::params;";
    let paths = paths_named("web::rest::send", code);
    assert_eq!(
        paths,
        [
            "core::auth",
            "core::node::Node",
            "core::node::NodeHooks",
            "web::http::run",
            "web::rest::params"
        ]
    );
}

#[test]
fn every_module_imports_only_its_own_layer_and_those_below() {
    let graph = imports();
    assert!(graph.len() > 20, "modules found: {:?}", graph.keys());
    let mut upward = Vec::new();
    for (module, used) in &graph {
        for target in used {
            if layer(target) > layer(module) {
                upward.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports of a higher layer: {upward:#?}");
}

#[test]
fn the_core_knows_no_http() {
    for (module, source) in modules() {
        if layer(&module) == 0 {
            let code = code_of(&source);
            assert!(!code.contains("actix"), "{module} uses actix");
        }
    }
}

#[test]
fn modules_import_each_other_without_cycles() {
    let graph = imports();
    // Depth-first search; a module met again while on the stack closes a cycle.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        cycles: &mut Vec<String>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = stack.iter().position(|m| *m == module) {
            let mut cycle: Vec<&str> = stack[at..].to_vec();
            cycle.push(module);
            cycles.push(cycle.join(" -> "));
            return;
        }
        stack.push(module);
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, stack, done, cycles);
        }
        stack.pop();
        done.insert(module);
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}
