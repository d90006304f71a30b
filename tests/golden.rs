//! Every file `exp run` writes, byte for byte, against the bytes recorded in
//! `tests/data/golden/<case>/`: the shipped demo config, a fixture that exercises what the demo
//! does not (two datasets, clusters, repeats, parts, two prompt sets, regex scoring, no pricing),
//! and a treatment-only run whose control rows come from an archived baseline.
//!
//! What is recorded per case: `files.blake3` (every file of the run folder, normalized, with its
//! BLAKE3 hash) and whole copies of the JSON files, so a change to those shows as a diff.
//!
//! What legitimately varies from one run to the next is normalized before comparing, and nothing
//! else: in `run.json` the times (`started_at`, `finished_at`, `resumed_at`), the code's
//! `provenance` and `exp_version`, and the baseline's commit id (it holds a commit time);
//! `latency_ms` in the response journals and `predictions.csv` (wall-clock); and the order of
//! lines in a response journal (an append-only log written as answers arrive; readers key it by
//! `custom_id`), which is sorted.
//!
//! Outputs will change on purpose (new statistics, say). Then re-record with one command:
//! `EXP_BLESS=1 cargo test --test golden`, and review the diff of `tests/data/golden/`.
//! `EXP_GOLDEN_EXP=/path/to/exp` runs another build of exp instead (to record what an older
//! version wrote).
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{copy_dir, labelled_jsonl, write_files};
use serde_json::Value;

/// The `exp` to run: this build, or the one `EXP_GOLDEN_EXP` names.
fn exp(dir: &Path) -> assert_cmd::Command {
    match std::env::var_os("EXP_GOLDEN_EXP") {
        Some(bin) => {
            let mut cmd = assert_cmd::Command::new(bin);
            cmd.current_dir(dir).env("NO_COLOR", "1").env_remove("EXP_LOG");
            cmd
        }
        None => common::exp(dir),
    }
}

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden").join(case)
}

/// Every file below `dir` by its `/`-separated path, normalized (see the module docs).
fn normalized_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
            let bytes = std::fs::read(&path).unwrap();
            let bytes = normalize(&rel, bytes);
            out.insert(rel, bytes);
        }
    }
    out
}

fn normalize(rel: &str, bytes: Vec<u8>) -> Vec<u8> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if rel == "run.json" {
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        for (key, fixed) in [
            ("started_at", Value::from("<time>")),
            ("finished_at", Value::from("<time>")),
            ("provenance", Value::from("<provenance>")),
            ("exp_version", Value::from("<version>")),
        ] {
            if v.get(key).is_some() {
                v[key] = fixed;
            }
        }
        if let Some(times) = v.get_mut("resumed_at").and_then(Value::as_array_mut) {
            times.iter_mut().for_each(|t| *t = Value::from("<time>"));
        }
        if let Some(detail) = v.get_mut("baseline_detail").filter(|d| d.is_object()) {
            detail["commit"] = Value::from("<commit>");
        }
        // Pretty-printed like the file itself, so only the normalized values differ.
        let mut out = serde_json::to_vec_pretty(&v).unwrap();
        out.push(b'\n');
        return out;
    }
    if rel.contains("/responses/") && name.ends_with(".jsonl") {
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v["latency_ms"] = Value::from(0);
                serde_json::to_string(&v).unwrap()
            })
            .collect();
        lines.sort();
        return lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
    }
    if name == "predictions.csv" {
        let mut r = csv::Reader::from_reader(&bytes[..]);
        let header = r.headers().unwrap().clone();
        let latency = header.iter().position(|h| h == "latency_ms").unwrap();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            let fields = rec.iter().enumerate().map(|(i, f)| if i == latency { "0" } else { f });
            w.write_record(fields).unwrap();
        }
        return w.into_inner().unwrap();
    }
    bytes
}

/// Compares the run folder `run` with the recording of `case` (or records it under EXP_BLESS).
fn check(case: &str, run: &Path) {
    let files = normalized_files(run);
    let listing: String = files
        .iter()
        .map(|(path, bytes)| format!("{}  {path}\n", blake3::hash(bytes).to_hex()))
        .collect();
    let whole = |path: &str| path.ends_with(".json");
    let dir = golden_dir(case);
    if std::env::var("EXP_BLESS").as_deref() == Ok("1") {
        let _ = std::fs::remove_dir_all(&dir);
        for (path, bytes) in files.iter().filter(|(p, _)| whole(p)) {
            let to = dir.join(path);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, bytes).unwrap();
        }
        std::fs::write(dir.join("files.blake3"), listing).unwrap();
        return;
    }
    let recorded = std::fs::read_to_string(dir.join("files.blake3")).unwrap_or_else(|e| {
        panic!("{}: {e} (record it with EXP_BLESS=1 cargo test --test golden)", dir.display())
    });
    for (path, bytes) in files.iter().filter(|(p, _)| whole(p)) {
        let want = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(bytes), want, "{case}: {path} differs");
    }
    let differs: Vec<String> = diff_listings(&recorded, &listing);
    assert!(
        differs.is_empty(),
        "{case}: files that differ from tests/data/golden/{case}/files.blake3 (if on purpose: \
         EXP_BLESS=1 cargo test --test golden):\n{}",
        differs.join("\n")
    );
}

/// The paths whose hash differs, or that only one listing has.
fn diff_listings(recorded: &str, now: &str) -> Vec<String> {
    let parse = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once("  "))
            .map(|(hash, path)| (path.to_string(), hash.to_string()))
            .collect()
    };
    let (a, b) = (parse(recorded), parse(now));
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| match (a.contains_key(p), b.contains_key(p)) {
            (true, false) => format!("  {p} (no longer written)"),
            (false, true) => format!("  {p} (new)"),
            _ => format!("  {p}"),
        })
        .collect()
}

fn run_ok(ws: &Path, args: &[&str]) {
    let out = exp(ws).args(args).output().unwrap();
    assert!(out.status.success(), "exp {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_demo_config_writes_the_recorded_bytes() {
    let ws = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("config"), &ws.path().join("config"));
    copy_dir(&root.join("data"), &ws.path().join("data"));
    run_ok(ws.path(), &["run", "--config", "config/eval_config.yaml", "--run-id", "golden"]);
    check("demo", &ws.path().join("experiments/run_golden"));
}

/// Two datasets (one clustered), repeats, parts, two prompt sets, regex scoring, no pricing.
fn fixture_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let labels = ["positive", "negative", "neutral"];
    let a: String = (0..18)
        .map(|i| {
            format!(
                "{{\"id\": \"a{i}\", \"text\": \"review {i}\", \"label\": \"{}\", \"group\": \"g{}\"}}\n",
                labels[i % 3],
                i % 5
            )
        })
        .collect();
    let b = labelled_jsonl((0..7).map(|i| (format!("b{i}"), format!("note {i}"), labels[i % 3])));
    let config = "\
datasets:
  - {name: alpha, path: data/a.jsonl, cluster_field: group}
  - {name: beta, path: data/b.jsonl}
models:
  - {name: sim-fixture, provider: sim, sim: {accuracy: {control: 0.55, treatment: 0.8}, seed: 3}}
prompt_sets:
  plain: {control: prompts/control.txt, treatment: prompts/plain.txt}
  strict: {control: prompts/control.txt, treatment: prompts/strict.txt}
user_template: \"Sentiment of: {text}\"
decoding: {temps: [0.5], top_k: [], top_p: [0.9], max_tokens: [64], repeats: 2}
scoring: {type: regex, labels: [positive, negative, neutral], extract: \"(positive|negative|neutral)\"}
significance: {alpha: 0.1, bootstrap_resamples: 500, seed: 11}
execution: {parts_per_dataset: 2, max_concurrent_jobs: 3}
";
    write_files(
        ws.path(),
        &[
            ("data/a.jsonl", &a),
            ("data/b.jsonl", &b),
            ("prompts/control.txt", "Classify the sentiment."),
            ("prompts/plain.txt", "Classify the sentiment: positive, negative or neutral."),
            ("prompts/strict.txt", "Answer with one word: positive, negative or neutral."),
            ("config/fixture.yaml", config),
        ],
    );
    ws
}

#[test]
fn the_fixture_config_writes_the_recorded_bytes() {
    let ws = fixture_workspace();
    run_ok(ws.path(), &["run", "--config", "config/fixture.yaml", "--run-id", "golden"]);
    check("fixture", &ws.path().join("experiments/run_golden"));
}

#[test]
fn a_run_on_an_archived_baseline_writes_the_recorded_bytes() {
    let ws = fixture_workspace();
    let run = ["run", "--config", "config/fixture.yaml"];
    run_ok(ws.path(), &[&run[..], &["--run-id", "base", "--archive"]].concat());
    // --no-cache: the response cache would reuse base's treatment answers (tests/money.rs).
    let treatment =
        ["--run-id", "golden", "--condition", "treatment", "--baseline", "base", "--no-cache"];
    run_ok(ws.path(), &[&run[..], &treatment[..]].concat());
    check("baseline", &ws.path().join("experiments/run_golden"));
}
