//! Helpers shared by the black-box tests.
#![allow(dead_code)]

pub mod s3;

use std::collections::HashMap;
use std::path::Path;

use assert_cmd::Command;

/// Variables of the test's own environment that would change what exp does or prints: its log,
/// the width clap wraps help text to (`COLUMNS`; tables never wrap, their stdout is a pipe), and
/// proxies (the loopback servers must be reached directly; the proxy test sets its own).
const UNSET: [&str; 11] = [
    "EXP_LOG",
    "COLUMNS",
    "LINES",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// The `exp` binary, run in `dir`, with a clean environment for the things exp reads.
pub fn exp(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("exp").expect("exp binary is built");
    cmd.current_dir(dir).env("NO_COLOR", "1");
    for var in UNSET {
        cmd.env_remove(var);
    }
    cmd
}

/// The same as `exp`, as a plain process a test starts, kills or limits itself.
pub fn exp_process(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("exp"));
    cmd.current_dir(dir).env("NO_COLOR", "1");
    for var in UNSET {
        cmd.env_remove(var);
    }
    cmd
}

/// Whether an outside tool a test needs is there. Missing is a test failure under
/// `EXP_TEST_STRICT=1` (scripts/test.sh and CI install everything), and a printed skip otherwise.
pub fn require_tool(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if std::env::var("EXP_TEST_STRICT").as_deref() == Ok("1") {
        panic!("{what} is missing: run `bash scripts/test.sh`, which installs it");
    }
    eprintln!("skipped: {what} is missing (scripts/test.sh installs it)");
    false
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Writes each `(path, contents)` below `dir`, creating the folders: a run workspace's dataset,
/// prompts and config in one call, so tests that differ only in those bytes share the plumbing.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Copies the folder `from` to `to`, recursively (a workspace made from the repository's own
/// config and data, say).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A JSONL dataset of `{"id", "text", "label"}` rows, the shape every sentiment test config reads.
pub fn labelled_jsonl(rows: impl IntoIterator<Item = (String, String, &'static str)>) -> String {
    rows.into_iter()
        .map(|(id, text, label)| {
            format!("{{\"id\": \"{id}\", \"text\": \"{text}\", \"label\": \"{label}\"}}\n")
        })
        .collect()
}

/// A sentiment workspace: `n` items (every third one "happy"), two prompts, and a config whose
/// models list is `models` (YAML lines, indented for the list), at temperatures `temps` (a YAML
/// list) with `execution` (the inside of a YAML flow mapping).
pub fn sentiment_workspace(
    n: usize,
    models: &str,
    temps: &str,
    execution: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rows = labelled_jsonl((0..n).map(|i| {
        let (text, label) =
            if i % 3 == 0 { ("a happy day", "positive") } else { ("a gloomy day", "negative") };
        (format!("i{i}"), format!("item {i} was {text}"), label)
    }));
    let config = format!(
        "datasets:\n  - {{name: d, path: data/d.jsonl}}\nmodels:\n{models}\nprompt_sets:\n  ps: {{control: config/prompts/control.txt, treatment: config/prompts/treatment.md}}\nuser_template: \"Text: {{text}}\"\ndecoding: {{temps: {temps}, top_p: [1.0], max_tokens: [16]}}\nscoring: {{type: label, labels: [positive, negative]}}\nexecution: {{{execution}}}\n"
    );
    write_files(
        dir.path(),
        &[
            ("data/d.jsonl", &rows),
            ("config/prompts/control.txt", "Classify the sentiment."),
            ("config/prompts/treatment.md", "You are careful. Classify the sentiment."),
            ("config/eval_config.yaml", &config),
        ],
    );
    dir
}

/// The rows of a CSV file a run wrote, each as column name → value.
pub fn csv_rows(path: &Path) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .zip(rec.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Removes the lock files a killed process left under `dir`, as the "locked" hint tells a user to.
pub fn remove_stale_locks(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            remove_stale_locks(&p);
        } else if p.extension().is_some_and(|x| x == "lock") {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

/// `exp fsck` and `exp cat-object` in `ws` both fail naming the damaged object `id` (hex), fsck
/// with a hint: what every corruption test expects, wherever the object's bytes live.
pub fn assert_damage_is_named(ws: &Path, id: &str) {
    use predicates::prelude::*;
    exp(ws)
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(id))
        .stderr(predicate::str::contains("hint:"));
    exp(ws).args(["cat-object", id]).assert().code(1).stderr(predicate::str::contains(id));
}
