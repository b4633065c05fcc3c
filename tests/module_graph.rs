//! The layout as a test: which top-level module may name which, and which
//! module alone wraps each outside library (docs/architecture.md has the
//! same table in words).
//!
//! Every `crate::X` path in code (comments and doc comments left out) of a
//! file under `src/X.rs` or `src/X/` is an edge `X -> Y`. A module may only
//! name modules in lower layers, so no module imports one that imports it
//! back; a cycle is named when one appears.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may name modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    &["model", "prefetch"],
    &["capture", "os"],
    &["decode", "synth"],
    &["reassembly", "proto"],
    &["analysis"],
    &["engine"],
    &["driver", "report"],
    &["metrics"],
    &["tui"],
    &["run"],
];

/// Outside crates and the one top-level module (or file) allowed to use each.
const WRAPPERS: &[(&str, &[&str])] = &[
    ("pcap::", &["src/capture.rs", "src/capture/"]),
    ("etherparse::", &["src/decode.rs"]),
    ("flate2::", &["src/capture/decompress.rs"]),
    ("zstd::", &["src/capture/decompress.rs"]),
    ("amq_protocol::", &["src/proto/amqp.rs"]),
    ("ratatui::", &["src/tui.rs", "src/tui/"]),
    ("crossterm::", &["src/tui.rs", "src/tui/"]),
    ("procfs::", &["src/os/procinfo.rs"]),
    ("chrono::", &["src/report.rs", "src/report/"]),
    ("toml::", &["src/cli/config.rs"]),
    ("prometheus_client::", &["src/metrics.rs"]),
    ("httparse::", &["src/metrics.rs"]),
];

fn src_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            src_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments (line comments, doc comments and
/// block comments); string contents are kept, which is harmless here.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = 0usize;
    for line in text.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block > 0 {
                match rest.find("*/") {
                    Some(i) => {
                        in_block -= 1;
                        rest = &rest[i + 2..];
                    }
                    None => break,
                }
            } else {
                let block = rest.find("/*");
                let comment = rest.find("//");
                match (block, comment) {
                    (Some(b), Some(c)) if c < b => {
                        kept.push_str(&rest[..c]);
                        break;
                    }
                    (Some(b), _) => {
                        kept.push_str(&rest[..b]);
                        in_block += 1;
                        rest = &rest[b + 2..];
                    }
                    (None, Some(c)) => {
                        kept.push_str(&rest[..c]);
                        break;
                    }
                    (None, None) => {
                        kept.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// `src/run/live.rs` -> `run`; `src/engine.rs` -> `engine`; None for the
/// binary's own files and lib.rs.
fn top_module(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" | "cli" => None,
        n => Some(n.to_owned()),
    }
}

/// Top-level modules named through `crate::` in `code`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `hbscope::crate::` cannot occur; skip `$crate::` in macros.
        if i > 0 && code.as_bytes()[i - 1] == b'$' {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    src_files(&root, &mut files);
    let mut g: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for f in files {
        let Some(from) = top_module(&root, &f) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        let shown = f.strip_prefix(&root).unwrap().display().to_string();
        let entry = g.entry(from.clone()).or_default();
        for to in named_modules(&code) {
            if to != from {
                entry.entry(to).or_default().push(shown.clone());
            }
        }
    }
    g
}

fn layer_of(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

#[test]
fn every_module_has_a_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    src_files(&root, &mut files);
    let missing: BTreeSet<String> = files
        .iter()
        .filter_map(|f| top_module(&root, f))
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "top-level modules without a layer in tests/module_graph.rs (and docs/architecture.md): {missing:?}"
    );
}

#[test]
fn modules_name_only_lower_layers() {
    let mut wrong = Vec::new();
    for (from, tos) in graph() {
        let Some(lf) = layer_of(&from) else { continue };
        for (to, files) in tos {
            match layer_of(&to) {
                Some(lt) if lt < lf => {}
                Some(_) => wrong.push(format!("{from} -> {to} (in {})", files.join(", "))),
                None => wrong.push(format!("{from} -> unknown module {to}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules naming a module of the same or a higher layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycles() {
    let g = graph();
    // Depth-first search with colours; a grey node met again closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for to in g.get(n).into_iter().flat_map(BTreeMap::keys) {
            match colour.get(to.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == to).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(to.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(to, g, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_owned(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in g.keys() {
        if colour.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, &g, &mut colour, &mut stack) {
                panic!("import cycle: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn each_outside_library_lives_in_one_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    src_files(&root.join("src"), &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let code = code_of(&std::fs::read_to_string(&f).unwrap());
        for (krate, owners) in WRAPPERS {
            let used = code.match_indices(krate).any(|(i, _)| {
                // A whole path segment: not `xpcap::` or `hbscope::capture::`'s tail.
                i == 0
                    || !code.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && code.as_bytes()[i - 1] != b'_'
            });
            if used && !owners.iter().any(|o| rel.starts_with(o)) {
                wrong.push(format!("{rel} uses {krate} (only {owners:?} may)"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_comments_and_paths_right() {
    let code = code_of("use crate::engine::Engine; // crate::tui\n/// [`crate::run`]\n/* crate::report */ let x = crate::model::Span(1);");
    let named = named_modules(&code);
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        vec!["engine".to_owned(), "model".to_owned()]
    );
}
