//! The modules of `src/` depend on one another in one direction only, and this test is where
//! that direction is written down (docs/DEVELOPING.md shows the same table). It reads every
//! `crate::…` path in the library (and every `exp::…` path in the binary), resolves
//! `super::super::…` paths that climb out of a module, and fails on any arrow that points up a
//! layer or sideways within one.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, top first. A module may use modules of the layers below its own, never of its
/// own layer or above; a module not listed here is an error, so a new one must be placed.
const LAYERS: &[(&str, &[&str])] = &[
    ("commands", &["main", "cli"]),
    ("web app", &["view"]),
    ("features", &["eval", "diff", "history", "import", "remote"]),
    ("run files", &["runfiles"]),
    ("foundation", &["store", "stats"]),
    ("leaves", &["provenance", "progress", "display", "error"]),
];

/// Arrows the layers forbid but the code has for a reason, each with the reason.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// A module's top-level name and path segments from its file: `src/eval/report/mod.rs` is
/// `eval::report`, `src/main.rs` is `main`, `src/lib.rs` the root.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut segs: Vec<String> =
        rel.iter().map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// Whether `file` belongs to the binary (whose own modules `crate::` names, and which reaches
/// the library as `exp::`).
fn in_binary(segs: &[String]) -> bool {
    segs.first().is_some_and(|s| s == "main" || s == "cli")
}

/// The code of a line without its comment (doc comments mention modules by path too).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The top-level modules `text` (the code of one file at `segs`) refers to.
fn references(segs: &[String], text: &str) -> BTreeSet<String> {
    let root = if in_binary(segs) { "exp::" } else { "crate::" };
    let mut out = BTreeSet::new();
    let code: String = text.lines().map(code).collect::<Vec<_>>().join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find(root) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + root.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not `crate::`
        }
        out.extend(names_at(rest));
    }
    // `super::super::x` from a module nested n deep reaches the root after n supers.
    let mut rest = code.as_str();
    while let Some(i) = rest.find("super::") {
        let mut after = &rest[i..];
        let mut supers = 0;
        while let Some(r) = after.strip_prefix("super::") {
            supers += 1;
            after = r;
        }
        // A `mod tests` inside the file adds a level the file's path does not show, so only
        // names of top-level modules count.
        if !in_binary(segs) && supers >= segs.len() {
            out.extend(names_at(after).into_iter().filter(|n| layer_of(n).is_some()));
        }
        rest = after;
    }
    out
}

/// The module names at the start of `after` (what follows `crate::`): `eval::x` gives `eval`,
/// `{eval, stats::y}` gives both.
fn names_at(after: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    if let Some(group) = after.strip_prefix('{') {
        let mut depth = 0;
        let mut names = Vec::new();
        let mut start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                _ if start && !c.is_whitespace() => {
                    names.push(ident(&group[i..]));
                    start = false;
                }
                _ => {}
            }
        }
        return names.into_iter().filter(|n| !n.is_empty()).collect();
    }
    vec![ident(after)].into_iter().filter(|n| !n.is_empty()).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every arrow in the tree at `src` that the layers forbid, as `file: from -> to (why)`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let segs = module_path(src, &file);
        let Some(from) = segs.first() else { continue }; // lib.rs declares the modules
        let shown = file.strip_prefix(src).unwrap().display();
        let Some(from_layer) = layer_of(from) else {
            out.push(format!("{shown}: module `{from}` is in no layer of tests/architecture.rs"));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for to in references(&segs, &text) {
            if &to == from || (in_binary(&segs) && to == "cli") {
                continue;
            }
            if EXCEPTIONS.iter().any(|(a, b, _)| a == from && *b == to) {
                continue;
            }
            match layer_of(&to) {
                None => out.push(format!("{shown}: {from} -> {to}, which is in no layer")),
                Some(l) if l <= from_layer => out.push(format!(
                    "{shown}: {from} -> {to} points {} ({} uses {})",
                    if l < from_layer { "up" } else { "sideways" },
                    LAYERS[from_layer].0,
                    LAYERS[l].0
                )),
                Some(_) => {}
            }
        }
    }
    out
}

#[test]
fn every_use_in_src_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(bad.is_empty(), "arrows against the layers:\n{}", bad.join("\n"));
}

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = d.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

#[test]
fn an_upward_use_is_reported_with_its_file_and_direction() {
    let d = tree(&[
        ("lib.rs", "pub mod eval;\npub mod store;\n"),
        ("eval/mod.rs", "use crate::store::Repo;\n"),
        ("store/mod.rs", "//! Never `crate::eval` (a comment is no arrow).\npub mod repo;\n"),
        ("store/repo.rs", "use crate::eval::artifacts;\n"),
    ]);
    assert_eq!(
        violations(d.path()),
        ["store/repo.rs: store -> eval points up (foundation uses features)"]
    );
}

#[test]
fn grouped_uses_super_chains_sideways_arrows_and_unplaced_modules_are_reported() {
    let d = tree(&[
        ("runfiles/mod.rs", "use crate::{stats::Tally, store};\n"),
        ("runfiles/deep/x.rs", "use super::super::super::eval::runner;\n"),
        ("diff/mod.rs", "fn f() { crate::import::plan(); }\n"),
        ("cli/run.rs", "use exp::eval::runner;\nuse crate::cli::ui;\n"),
        ("newthing.rs", "\n"),
    ]);
    assert_eq!(
        violations(d.path()),
        [
            "diff/mod.rs: diff -> import points sideways (features uses features)",
            "newthing.rs: module `newthing` is in no layer of tests/architecture.rs",
            "runfiles/deep/x.rs: runfiles -> eval points up (run files uses features)",
        ]
    );
}
