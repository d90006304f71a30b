//! Black-box tests of `exp diff` and `exp import` (the migration of legacy runs), through the
//! real binary in temp workspaces. Figures are checked against the files the tests wrote or
//! against the shipped examples read independently here.
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::exp;
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/legacy")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A temp workspace with a copy of the shipped legacy runs in `legacy/`.
fn workspace_with_legacy() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let ws = tempfile::tempdir().unwrap();
    copy_tree(&examples(), &ws.path().join("legacy"));
    let t0 = ws.path().join("legacy/t0_r20250818");
    let t1 = ws.path().join("legacy/t1_r20250821");
    (ws, t0, t1)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(cmd: &mut assert_cmd::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "failed: {}\n{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn json(cmd: &mut assert_cmd::Command) -> Value {
    serde_json::from_str(&ok(cmd)).unwrap()
}

/// Every file under `dir`, relative path -> bytes.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn store_refs(ws: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = files_of(&ws.join(".exprepo/refs"));
    all.insert("HEAD".into(), fs::read(ws.join(".exprepo/HEAD")).unwrap_or_default());
    all
}

#[test]
fn importing_both_legacy_examples_makes_dated_tagged_commits_oldest_first() {
    let (ws, t0, t1) = workspace_with_legacy();
    // Given newest first on the command line: the import still orders them by date.
    let out = exp(ws.path()).args(["import"]).arg(&t1).arg(&t0).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("created a new store"), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("t0_r20250818") && text.contains("t1_r20250821"), "{text}");
    assert!(
        text.contains("not recognized: .DS_Store, notes for Bob (final) v2 — copy.txt"),
        "{text}"
    );

    for name in ["t0_r20250818", "t1_r20250821"] {
        assert!(ws.path().join(".exprepo/refs/runs").join(name).is_file());
        assert!(ws.path().join(".exprepo/refs/tags").join(name).is_file());
    }
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let (id0, c0) = repo.resolve_commit("t0_r20250818").unwrap();
    let (_, c1) = repo.resolve_commit("tags/t1_r20250821").unwrap();
    assert_eq!(c1.parents, vec![id0], "t1 is the child of t0");
    assert!(c0.parents.is_empty());
    assert_eq!(c0.time, "2025-08-18T00:00:00Z");
    assert_eq!(c1.time, "2025-08-21T00:00:00Z");
    assert_eq!(c1.status.as_deref(), Some("imported"));
    // The message names the folder, never where it lay: the same folder imported from two
    // places is the same commit, and no home path leaks into shared history.
    assert_eq!(c1.message, "import t1_r20250821");
    assert!(!c1.message.contains(&t1.display().to_string()));

    // The summary carries what the old files say, read here straight from them.
    for t in &c1.summary.trials {
        let m: Value = serde_json::from_slice(
            &fs::read(t1.join("trials").join(&t.slug).join("metrics.json")).unwrap(),
        )
        .unwrap();
        for cond in ["control", "treatment"] {
            let s = &t.conditions[cond];
            let (scored, correct) =
                (m[cond]["n_scored"].as_f64().unwrap(), m[cond]["n_correct"].as_f64().unwrap());
            assert_eq!(s.n, m[cond]["n_items"].as_u64());
            assert!((s.accuracy.unwrap() - correct / scored).abs() < 1e-12);
        }
        let c: Value = serde_json::from_slice(
            &fs::read(t1.join("trials").join(&t.slug).join("costs.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(t.usd, c["total_cost_usd"].as_f64());
    }
    assert_eq!(c1.summary.trials.len(), 2);
    assert!(
        c0.summary
            .trials
            .iter()
            .all(|t| t.conditions.is_empty() && t.status.as_deref() == Some("inputs only"))
    );
    let config = fs::read(t1.join("config_snapshot.yaml")).unwrap();
    assert_eq!(c1.config_hash, Some(blake3::hash(&config).to_hex().to_string()));

    // HEAD names the last run imported.
    assert_eq!(repo.resolve("HEAD").unwrap(), repo.resolve("t1_r20250821").unwrap());
}

#[test]
fn reimporting_the_same_folders_changes_nothing_and_says_so() {
    let (ws, t0, t1) = workspace_with_legacy();
    ok(exp(ws.path()).arg("import").arg(&t0).arg(&t1));
    let before = store_refs(ws.path());
    let logs_before = files_of(&ws.path().join(".exprepo/logs"));
    let text = ok(exp(ws.path()).arg("import").arg(&t0).arg(&t1));
    assert!(text.contains("already imported, unchanged"), "{text}");
    assert!(text.contains("Nothing to do"), "{text}");
    assert_eq!(store_refs(ws.path()), before, "no ref moved");
    assert_eq!(files_of(&ws.path().join(".exprepo/logs")), logs_before, "no reflog entry either");
}

#[test]
fn import_keeps_crlf_empty_and_oddly_named_files_byte_exact() {
    let (ws, _t0, t1) = workspace_with_legacy();
    let out = json(exp(ws.path()).arg("import").arg(&t1).arg("--json"))["imported"].clone();
    let commit = out[0]["commit"].as_str().unwrap().to_string();
    let unrecognized: Vec<&str> = out[0]["inspection"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["role"].is_null())
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(unrecognized, [".DS_Store", "notes for Bob (final) v2 — copy.txt"]);
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let id: exp::store::ObjectId = commit.parse().unwrap();
    let files = files_of(&t1);
    assert!(files.values().any(|b| b.is_empty()), "the example has an empty file");
    assert!(files.values().any(|b| b.windows(2).any(|w| w == b"\r\n")), "and CRLF files");
    for (path, bytes) in &files {
        assert_eq!(&repo.read_path(&id, path).unwrap(), bytes, "{path} stored byte-exact");
    }
}

#[test]
fn diff_of_the_legacy_runs_shows_the_config_change_the_trial_pairs_and_what_t0_lacks() {
    let (ws, t0, t1) = workspace_with_legacy();
    ok(exp(ws.path()).arg("import").arg(&t0).arg(&t1));
    let text = ok(exp(ws.path()).args(["diff", "t0_r20250818", "t1_r20250821"]));
    assert!(text.contains("~ decoding.temps: [0.0] -> [1.0]"), "{text}");
    assert!(text.contains("~ run_id: r20250818 -> r20250821"), "{text}");
    assert!(text.contains("compared by parameters: decoding.temperature 0.0 -> 1.0"), "{text}");
    // What t0 has, counted here from its batch input files.
    for trial in ["gpt-oss-120b", "llama-3.1-8b"] {
        let dir = t0.join("trials").join(format!("{trial}__operational_only__temp0.0"));
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, bytes) in files_of(&dir) {
            let cond = if name.contains("control") { "control" } else { "treatment" };
            *per.entry(cond).or_default() += String::from_utf8(bytes).unwrap().lines().count();
        }
        let want = format!(
            "t0_r20250818: {trial}__operational_only__temp{{0.0→1.0}}: results: batch inputs only ({} requests: control {}, treatment {})",
            per["control"] + per["treatment"],
            per["control"],
            per["treatment"]
        );
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    // t0 has no metrics: t1's are shown beside an empty column, read here from t1's files.
    assert!(text.contains("Metrics (t0_r20250818 → t1_r20250821)"), "{text}");
    assert!(!text.contains("Paired test"), "nothing to pair with: {text}");
    // The file count, computed here by comparing the two folders path by path.
    let (fa, fb) = (files_of(&t0), files_of(&t1));
    let added = fb.keys().filter(|k| !fa.contains_key(*k)).count();
    let removed = fa.keys().filter(|k| !fb.contains_key(*k)).count();
    let modified = fa.iter().filter(|(k, v)| fb.get(*k).is_some_and(|w| w != *v)).count();
    let want = format!(
        "{} files changed: {added} added, {removed} removed, {modified} modified",
        added + removed + modified
    );
    assert!(text.contains(&want), "missing {want:?} in\n{text}");
}

#[test]
fn diff_json_of_the_legacy_runs_gives_every_section_to_scripts() {
    let (ws, t0, t1) = workspace_with_legacy();
    ok(exp(ws.path()).arg("import").arg(&t0).arg(&t1));
    let d = json(exp(ws.path()).args(["diff", "t0_r20250818", "t1_r20250821", "--json"]));
    assert_eq!(d["identical"], false);
    assert_eq!(d["a"]["layout"], "legacy");
    let temps =
        d["config"].as_array().unwrap().iter().find(|c| c["key"] == "decoding.temps").unwrap();
    assert_eq!(
        (temps["old"].as_str(), temps["new"].as_str(), temps["change"].as_str()),
        (Some("[0.0]"), Some("[1.0]"), Some("changed"))
    );
    let paired = d["trials"]["paired"].as_array().unwrap();
    assert_eq!(paired.len(), 2);
    assert!(paired.iter().all(|p| p["matched_by"] == "parameters"));
    assert!(d["trials"]["only_a"].as_array().unwrap().is_empty());
    let lacks = d["lacks"].as_array().unwrap();
    assert_eq!(lacks.len(), 2);
    assert!(lacks.iter().all(|l| l["side"] == "a" && l["what"] == "results"));
    for row in d["metrics"].as_array().unwrap() {
        let pair = paired.iter().find(|p| p["name"] == row["trial"]).unwrap();
        let slug = pair["b"].as_str().unwrap();
        let m: Value = serde_json::from_slice(
            &fs::read(t1.join("trials").join(slug).join("metrics.json")).unwrap(),
        )
        .unwrap();
        let cond = row["condition"].as_str().unwrap();
        assert!(row["a"].is_null() && row["accuracy_change"].is_null());
        assert_eq!(row["b"]["n"], m[cond]["n_items"]);
        assert_eq!(row["b"]["failed"], m[cond]["n_failed"]);
        assert_eq!(row["b"]["correct"].as_f64(), m[cond]["n_correct"].as_f64());
    }
    assert_eq!(d["metrics"].as_array().unwrap().len(), 4, "2 trials x 2 conditions");
    let (fa, fb) = (files_of(&t0), files_of(&t1));
    let all: std::collections::BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let changed = all.iter().filter(|k| fa.get(**k) != fb.get(**k)).count();
    assert_eq!(d["files"].as_array().unwrap().len(), changed);
    let cfg = d["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "config_snapshot.yaml")
        .unwrap();
    assert_eq!(cfg["status"], "modified");
    assert_eq!(cfg["old_size"].as_u64(), Some(fa["config_snapshot.yaml"].len() as u64));
}

// ---- two runs in today's layout (docs/RUN_FILES.md) that differ in temperature ----

const ITEMS: usize = 20;
const GOLD: [&str; 3] = ["positive", "negative", "neutral"];

/// Whether run `run` got item `i` right in `cond`; None: the request failed.
fn correct(run: char, cond: &str, i: usize) -> Option<bool> {
    if run == 'b' && cond == "treatment" && i == 7 {
        return None;
    }
    Some(match (run, cond) {
        ('a', "control") => !i.is_multiple_of(3),
        ('b', "control") => !i.is_multiple_of(4),
        ('a', _) => !i.is_multiple_of(5),
        _ => i.is_multiple_of(2) || i % 5 == 1,
    })
}

fn prediction(run: char, cond: &str, i: usize) -> String {
    let gold = GOLD[i % 3];
    match correct(run, cond, i) {
        Some(true) => gold.to_string(),
        Some(false) => GOLD[(i + 1) % 3].to_string(),
        None => String::new(),
    }
}

/// Writes `experiments/run_<id>/` for run `run` at temperature `temp`, as `exp run` would.
fn write_run(ws: &Path, id: &str, run: char, temp: u32) -> PathBuf {
    let dir = ws.join("experiments").join(format!("run_{id}"));
    let slug = format!("sim-demo-operational_only-t{temp}-tk50-tp1-mx1024");
    let t = dir.join(&slug);
    for sub in [
        "inputs/control",
        "inputs/treatment",
        "responses/control",
        "responses/treatment",
        "results",
        "reports",
        "config/prompts",
    ] {
        fs::create_dir_all(if sub.starts_with("config") { dir.join(sub) } else { t.join(sub) })
            .unwrap();
    }
    fs::write(dir.join("config/eval_config.yaml"), format!("models:\n  - {{name: sim-demo, provider: sim}}\ndecoding: {{temps: [{temp}.0], top_k: [50], top_p: [1.0], max_tokens: [1024], repeats: 1}}\n")).unwrap();
    fs::write(dir.join("config/prompts/control_system.txt"), "Answer with one word.\n").unwrap();
    fs::write(
        dir.join("run.json"),
        serde_json::json!({"format": 1, "run_id": id, "status": "complete", "started_at": "2025-11-27T13:05:01Z",
            "finished_at": "2025-11-27T13:06:00Z", "config_hash": "x", "provenance": null, "exp_version": "0.1.0",
            "conditions": ["control", "treatment"], "parts_per_dataset": 1, "baseline": null, "trials": [slug]})
        .to_string(),
    )
    .unwrap();
    fs::write(
        t.join("trial.json"),
        serde_json::json!({"slug": slug, "model": "sim-demo", "provider": "sim", "model_id": "sim-demo", "prompt_set": "operational_only",
            "decoding": {"temperature": temp as f64, "top_k": 50, "top_p": 1.0, "max_tokens": 1024}, "repeats": 1,
            "datasets": ["demo_sentiment"], "conditions": ["control", "treatment"]})
        .to_string(),
    )
    .unwrap();
    let mut scores =
        String::from("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n");
    let mut conds = serde_json::Map::new();
    let mut cost_conds = serde_json::Map::new();
    let (mut usd_total, mut correct_total) = (0.0, 0.0);
    for cond in ["control", "treatment"] {
        let mut inputs = String::new();
        let (mut scored, mut right, mut failed) = (0u64, 0u64, 0u64);
        for i in 0..ITEMS {
            inputs.push_str(&format!("{{\"custom_id\": \"demo_sentiment:i{i}:{cond}:r0\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {{\"temperature\": {temp}.0}}}}\n"));
            let score = match correct(run, cond, i) {
                Some(c) => {
                    scored += 1;
                    right += c as u64;
                    (c as u8).to_string()
                }
                None => {
                    failed += 1;
                    String::new()
                }
            };
            scores.push_str(&format!(
                "i{i},demo_sentiment,{cond},0,{},{},{score},\n",
                GOLD[i % 3],
                prediction(run, cond, i)
            ));
        }
        fs::write(t.join(format!("inputs/{cond}/part-0000.jsonl")), inputs).unwrap();
        conds.insert(cond.into(), serde_json::json!({"n": ITEMS, "scored": scored, "failed": failed, "correct": right as f64, "accuracy": right as f64 / scored as f64}));
        let usd = (ITEMS as f64) * 30.0 * 0.15e-6 * (1.0 + temp as f64);
        usd_total += usd;
        correct_total += right as f64;
        cost_conds.insert(cond.into(), serde_json::json!({"requests": ITEMS, "failures": failed, "input_tokens": ITEMS * 30, "output_tokens": scored, "usd": usd, "usd_per_correct": usd / right as f64}));
    }
    fs::write(t.join("results/per_item_scores.csv"), scores).unwrap();
    fs::write(
        t.join("results/metrics.json"),
        serde_json::json!({"n_items": ITEMS, "repeats": 1, "conditions": conds}).to_string(),
    )
    .unwrap();
    fs::write(
        t.join("results/costs.json"),
        serde_json::json!({"requests": 2 * ITEMS, "input_tokens": 2 * ITEMS * 30, "output_tokens": 39, "usd": usd_total,
            "usd_per_correct": usd_total / correct_total, "conditions": cost_conds})
        .to_string(),
    )
    .unwrap();
    fs::write(t.join("reports/report.md"), format!("# {slug}\n")).unwrap();
    dir
}

/// Two committed runs: `cold` (temperature 0) and `hot` (temperature 1).
fn two_runs() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    ok(exp(ws.path()).arg("init"));
    let a = write_run(ws.path(), "cold", 'a', 0);
    let b = write_run(ws.path(), "hot", 'b', 1);
    ok(exp(ws.path()).arg("commit").arg(&a));
    ok(exp(ws.path()).arg("commit").arg(&b));
    ws
}

fn flips(cond: &str) -> (u64, u64, u64) {
    let (mut paired, mut fixed, mut broken) = (0, 0, 0);
    for i in 0..ITEMS {
        if let (Some(a), Some(b)) = (correct('a', cond, i), correct('b', cond, i)) {
            paired += 1;
            fixed += (!a && b) as u64;
            broken += (a && !b) as u64;
        }
    }
    (paired, fixed, broken)
}

#[test]
fn diff_of_two_runs_differing_in_temperature_matches_their_files() {
    let ws = two_runs();
    let d = json(exp(ws.path()).args(["diff", "cold", "hot", "--json", "--items"]));
    let slug = |t: u32| format!("sim-demo-operational_only-t{t}-tk50-tp1-mx1024");
    let run_dir = |id: &str| ws.path().join("experiments").join(format!("run_{id}"));
    let read = |id: &str, t: u32, f: &str| -> Value {
        serde_json::from_slice(
            &fs::read(run_dir(id).join(slug(t)).join("results").join(f)).unwrap(),
        )
        .unwrap()
    };
    let (ma, mb) = (read("cold", 0, "metrics.json"), read("hot", 1, "metrics.json"));
    let (ca, cb) = (read("cold", 0, "costs.json"), read("hot", 1, "costs.json"));

    let temps =
        d["config"].as_array().unwrap().iter().find(|c| c["key"] == "decoding.temps").unwrap();
    assert_eq!((temps["old"].as_str(), temps["new"].as_str()), (Some("[0.0]"), Some("[1.0]")));
    let pair = &d["trials"]["paired"][0];
    assert_eq!(pair["matched_by"], "parameters");
    assert_eq!(pair["changes"][0]["key"], "decoding.temperature");

    for row in d["metrics"].as_array().unwrap() {
        let cond = row["condition"].as_str().unwrap();
        for (side, m) in [("a", &ma), ("b", &mb)] {
            let want = &m["conditions"][cond];
            assert_eq!(row[side]["n"], want["n"]);
            assert_eq!(row[side]["failed"], want["failed"]);
            assert!(
                (row[side]["accuracy"].as_f64().unwrap() - want["accuracy"].as_f64().unwrap())
                    .abs()
                    < 1e-12
            );
        }
        let change = mb["conditions"][cond]["accuracy"].as_f64().unwrap()
            - ma["conditions"][cond]["accuracy"].as_f64().unwrap();
        assert!((row["accuracy_change"].as_f64().unwrap() - change).abs() < 1e-12);
    }
    assert_eq!(d["metrics"].as_array().unwrap().len(), 2);

    // Flips counted here from the item-level truth; p-values from scipy:
    // binomtest(3, 8, 0.5).pvalue = 0.7265625, binomtest(2, 7, 0.5).pvalue = 0.453125
    let want_p = [("control", 0.7265625), ("treatment", 0.453125)];
    for (cond, p) in want_p {
        let row = d["paired"].as_array().unwrap().iter().find(|r| r["condition"] == cond).unwrap();
        let (paired, fixed, broken) = flips(cond);
        assert_eq!(
            (row["paired"].as_u64(), row["fixed"].as_u64(), row["broken"].as_u64()),
            (Some(paired), Some(fixed), Some(broken)),
            "{cond}"
        );
        assert!((row["p_value"].as_f64().unwrap() - p).abs() < 1e-12, "{cond}: {}", row["p_value"]);
    }
    let failed_row =
        d["paired"].as_array().unwrap().iter().find(|r| r["condition"] == "treatment").unwrap();
    assert_eq!(
        failed_row["failed_either"], 1,
        "the failed request is a failure, not a wrong answer"
    );

    let total = d["costs"].as_array().unwrap().iter().find(|r| r["scope"] == "total").unwrap();
    assert_eq!(total["a"]["usd"], ca["usd"]);
    assert_eq!(total["b"]["usd"], cb["usd"]);
    assert!(
        (total["usd_change"].as_f64().unwrap()
            - (cb["usd"].as_f64().unwrap() - ca["usd"].as_f64().unwrap()))
        .abs()
            < 1e-15
    );
    assert_eq!(total["b"]["usd_per_correct"], cb["usd_per_correct"]);

    // --items: every flipped item with gold and both predictions.
    let items = d["items"].as_array().unwrap();
    let want: usize =
        ["control", "treatment"].iter().map(|c| (flips(c).1 + flips(c).2) as usize).sum();
    assert_eq!(items.len(), want);
    for it in items {
        let i: usize = it["item"].as_str().unwrap()[1..].parse().unwrap();
        let cond = it["condition"].as_str().unwrap();
        assert_eq!(it["gold"], GOLD[i % 3]);
        assert_eq!(it["prediction_a"].as_str().unwrap(), prediction('a', cond, i));
        assert_eq!(it["prediction_b"].as_str().unwrap(), prediction('b', cond, i));
        assert_eq!(
            it["change"],
            if correct('b', cond, i) == Some(true) { "fixed" } else { "broken" }
        );
    }
}

#[test]
fn diff_text_shows_sections_items_and_stat_like_git() {
    let ws = two_runs();
    let text = ok(exp(ws.path()).args(["diff", "cold", "hot", "--items", "--stat"]));
    for needle in [
        "Configuration",
        "~ decoding.temps: [0.0] -> [1.0]",
        "Metrics (cold → hot)",
        "Paired test between the runs",
        "0.727",
        "0.453",
        "Costs (cold → hot)",
        "Flipped items",
        "demo_sentiment:i0",
        "Files",
        "+ sim-demo-operational_only-t1-tk50-tp1-mx1024/results/metrics.json",
        "- sim-demo-operational_only-t0-tk50-tp1-mx1024/results/metrics.json",
        "~ config/eval_config.yaml",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("Not compared"), "both runs have everything: {text}");
    let plain = ok(exp(ws.path()).args(["diff", "cold", "hot"]));
    assert!(!plain.contains("Flipped items") && plain.contains("(--stat lists them)"), "{plain}");
}

#[test]
fn exit_code_is_one_when_runs_differ_and_zero_when_they_do_not() {
    let ws = two_runs();
    let out = exp(ws.path()).args(["diff", "cold", "hot", "--exit-code"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("Metrics"), "the diff is still shown");
    assert!(stderr(&out).is_empty(), "a difference is an answer, not an error: {}", stderr(&out));
    let same = exp(ws.path()).args(["diff", "cold", "runs/cold", "--exit-code"]).output().unwrap();
    assert_eq!(same.status.code(), Some(0));
    assert!(stdout(&same).contains("No differences"));
}

#[test]
fn old_compare_runs_flags_still_work() {
    let ws = two_runs();
    let text = ok(exp(ws.path()).args(["diff", "--run1", "cold", "--run2", "hot"]));
    assert!(text.contains("diff cold"), "{text}");
}

#[test]
fn one_revision_diffs_against_its_parent() {
    let ws = two_runs();
    let dir = ws.path().join("experiments/run_hot");
    let metrics = dir.join("sim-demo-operational_only-t1-tk50-tp1-mx1024/results/metrics.json");
    let mut m: Value = serde_json::from_slice(&fs::read(&metrics).unwrap()).unwrap();
    m["conditions"]["control"]["accuracy"] = serde_json::json!(0.5);
    fs::write(&metrics, m.to_string()).unwrap();
    ok(exp(ws.path()).arg("commit").arg(&dir));
    let d = json(exp(ws.path()).args(["diff", "hot", "--json"]));
    assert_eq!(d["a"]["label"], "hot~1");
    assert_eq!(d["files"].as_array().unwrap().len(), 1);
    assert_eq!(d["trials"]["paired"][0]["matched_by"], "slug");
    let row =
        d["metrics"].as_array().unwrap().iter().find(|r| r["condition"] == "control").unwrap();
    assert_eq!(row["b"]["accuracy"].as_f64(), Some(0.5));
}

#[test]
fn no_revision_diffs_the_workspace_against_head() {
    let ws = two_runs();
    let clean = ok(exp(ws.path()).arg("diff"));
    assert!(clean.contains("No differences"), "{clean}");
    let metrics = ws.path().join(
        "experiments/run_hot/sim-demo-operational_only-t1-tk50-tp1-mx1024/results/metrics.json",
    );
    let mut m: Value = serde_json::from_slice(&fs::read(&metrics).unwrap()).unwrap();
    m["conditions"]["treatment"]["accuracy"] = serde_json::json!(0.25);
    fs::write(&metrics, m.to_string()).unwrap();
    let d = json(exp(ws.path()).args(["diff", "--json"]));
    assert_eq!(d["b"]["label"], "workspace");
    let files: Vec<&str> =
        d["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, ["sim-demo-operational_only-t1-tk50-tp1-mx1024/results/metrics.json"]);
    let row =
        d["metrics"].as_array().unwrap().iter().find(|r| r["condition"] == "treatment").unwrap();
    assert_eq!(row["b"]["accuracy"].as_f64(), Some(0.25));
}

#[cfg(unix)]
#[test]
fn a_symlink_pointing_outside_is_stored_as_a_link_and_never_followed() {
    let ws = tempfile::tempdir().unwrap();
    let outside = ws.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let secret = b"top secret, must never enter the store\n";
    fs::write(outside.join("secret.txt"), secret).unwrap();
    let run = ws.path().join("old_runs/r1");
    copy_tree(&examples().join("t0_r20250818"), &run);
    std::os::unix::fs::symlink(outside.join("secret.txt"), run.join("absolute_link")).unwrap();
    std::os::unix::fs::symlink("../../outside/secret.txt", run.join("relative_link")).unwrap();
    std::os::unix::fs::symlink("config_snapshot.yaml", run.join("inside_link")).unwrap();

    let text = ok(exp(ws.path()).arg("import").arg(&run));
    assert!(text.contains(&format!("symlink absolute_link -> {} (points outside the folder; stored as a link, not followed)", outside.join("secret.txt").display())), "{text}");
    assert!(
        text.contains(
            "symlink relative_link -> ../../outside/secret.txt (points outside the folder;"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "symlink inside_link -> config_snapshot.yaml (stored as a link, not followed)"
        ),
        "{text}"
    );

    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let (id, _) = repo.resolve_commit("r1").unwrap();
    let entry = repo.lookup_path(&id, "absolute_link").unwrap();
    assert_eq!(entry.mode, exp::store::Mode::Symlink);
    assert_eq!(repo.read_path(&id, "relative_link").unwrap(), b"../../outside/secret.txt");
    for obj in repo.odb.iter_ids().unwrap() {
        if let Ok(exp::store::Object::Blob(b)) = repo.odb.read(&obj) {
            assert_ne!(b, secret, "the link target's content was stored");
        }
    }
}

#[test]
fn import_dates_a_folder_without_a_date_in_its_name_by_its_mtime_and_takes_a_tag() {
    let ws = tempfile::tempdir().unwrap();
    let run = ws.path().join("baseline run");
    copy_tree(&examples().join("t1_r20250821"), &run);
    let out = json(exp(ws.path()).arg("import").arg(&run).args(["--tag", "baseline", "--json"]))["imported"].clone();
    assert_eq!(out[0]["name"], "baseline");
    assert_eq!(out[0]["date_from"], "mtime");
    assert!(ws.path().join(".exprepo/refs/tags/baseline").is_file());
}

#[test]
fn import_errors_say_what_to_do() {
    let (ws, t0, t1) = workspace_with_legacy();
    let cases: Vec<(Vec<std::ffi::OsString>, &str, &str)> = vec![
        (
            vec!["import".into(), ws.path().join("nope").into()],
            "cannot read",
            "hint: check the folder exists",
        ),
        (
            vec!["import".into(), t0.join("config_snapshot.yaml").into()],
            "is not a folder",
            "hint: give the run folders themselves",
        ),
        (
            vec!["import".into(), t0.clone().into(), t1.clone().into(), "--tag".into(), "x".into()],
            "`--tag x` names one import, but 2 folders",
            "hint: import the folders one at a time",
        ),
        (
            vec!["import".into(), t0.clone().into(), "--tag".into(), "a b".into()],
            "not a usable run name",
            "hint: pick another name",
        ),
    ];
    for (args, error, hint) in cases {
        let out = exp(ws.path()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(error) && err.contains(hint), "{args:?}: {err}");
    }
    // The same name for other content is refused, and nothing moves.
    ok(exp(ws.path()).arg("import").arg(&t0));
    fs::write(t0.join("README_FIRST.txt"), "edited since\n").unwrap();
    let before = store_refs(ws.path());
    // With a second, new folder: refused before anything is written, t1 included.
    let out = exp(ws.path()).arg("import").arg(&t0).arg(&t1).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("runs/t0_r20250818 already exists with different content"), "{err}");
    assert!(!ws.path().join(".exprepo/refs/runs/t1_r20250821").exists(), "nothing half-imported");
    assert!(
        err.contains("hint: the folder changed since it was imported")
            && err.contains("--tag t0_r20250818-2"),
        "{err}"
    );
    assert_eq!(store_refs(ws.path()), before);

    // A tag of that name on another commit is never moved.
    ok(exp(ws.path()).args(["tag", "t1_r20250821", "t0_r20250818"]));
    let out = exp(ws.path()).arg("import").arg(&t1).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("tags/t1_r20250821 already names another commit"), "{err}");
    assert!(
        err.contains("hint: import under another name with `--tag t1_r20250821-imported`"),
        "{err}"
    );
    assert!(!ws.path().join(".exprepo/refs/runs/t1_r20250821").exists());
}

#[test]
fn diff_errors_say_what_to_do() {
    let (ws, t0, _t1) = workspace_with_legacy();
    let none = exp(ws.path()).args(["diff", "a", "b"]).output().unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("hint:"), "no store: {}", stderr(&none));

    ok(exp(ws.path()).arg("init"));
    let out = exp(ws.path()).arg("diff").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("HEAD names no run") && stderr(&out).contains("hint: name two runs"),
        "{}",
        stderr(&out)
    );

    ok(exp(ws.path()).arg("import").arg(&t0));
    let out = exp(ws.path()).args(["diff", "t0_r20250818"]).output().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("t0_r20250818 has no parent") && err.contains("hint: it is the first commit"),
        "{err}"
    );

    let out = exp(ws.path()).args(["diff", "t0_r20250818", "nosuchrun"]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("nosuchrun") && err.contains("hint:"), "{err}");

    let out = exp(ws.path()).args(["diff", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad usage");
}

#[test]
fn help_of_diff_and_import_has_examples_and_old_script_names() {
    let ws = tempfile::tempdir().unwrap();
    let diff = ok(exp(ws.path()).args(["diff", "--help"]));
    assert!(
        diff.contains("Examples:") && diff.contains("compare_runs.py --run1 A --run2 B"),
        "{diff}"
    );
    let import = ok(exp(ws.path()).args(["import", "--help"]));
    assert!(import.contains("exp import examples/legacy/*"), "{import}");
}

// ---- the same, end to end: two `exp run` results of the sim model ----

/// Two-sided exact binomial test at p = 1/2, summed directly (n is small here): an independent
/// check of the McNemar p-value `exp diff` computes in log space.
fn exact_mcnemar(b: u64, c: u64) -> Option<f64> {
    let n = b + c;
    if n == 0 {
        return None;
    }
    let k = b.min(c);
    let mut coef = 1.0f64;
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            coef = coef * (n - i + 1) as f64 / i as f64;
        }
        tail += coef;
    }
    Some((2.0 * tail / 2f64.powi(n as i32)).min(1.0))
}

#[test]
fn diff_of_two_exp_run_results_differing_in_temperature_matches_their_files() {
    let ws = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&root.join("config"), &ws.path().join("config"));
    copy_tree(&root.join("data"), &ws.path().join("data"));
    let config = fs::read_to_string(ws.path().join("config/eval_config.yaml")).unwrap();
    let decoding = config
        .lines()
        .find(|l| l.starts_with("decoding:"))
        .expect("the demo config has a decoding line");
    for (id, temp) in [("cold", "0.0"), ("hot", "1.0")] {
        let line = format!(
            "decoding: {{temps: [{temp}], top_k: [50], top_p: [1.0], max_tokens: [1024], repeats: 1}}"
        );
        fs::write(ws.path().join(format!("config/{id}.yaml")), config.replace(decoding, &line))
            .unwrap();
        ok(exp(ws.path()).args([
            "run",
            "--config",
            &format!("config/{id}.yaml"),
            "--archive",
            "--run-id",
            id,
        ]));
    }
    let d = json(exp(ws.path()).args(["diff", "cold", "hot", "--json", "--items"]));
    let temps =
        d["config"].as_array().unwrap().iter().find(|c| c["key"] == "decoding.temps").unwrap();
    assert_eq!((temps["old"].as_str(), temps["new"].as_str()), (Some("[0.0]"), Some("[1.0]")));

    let paired = d["trials"]["paired"].as_array().unwrap();
    assert!(!paired.is_empty() && d["trials"]["only_a"].as_array().unwrap().is_empty());
    let mut flipped = 0;
    for pair in paired {
        assert_eq!(pair["matched_by"], "parameters");
        let dir = |id: &str, slug: &Value| {
            ws.path()
                .join(format!("experiments/run_{id}"))
                .join(slug.as_str().unwrap())
                .join("results")
        };
        let (da, db) = (dir("cold", &pair["a"]), dir("hot", &pair["b"]));
        let read = |d: &Path, f: &str| -> Value {
            serde_json::from_slice(&fs::read(d.join(f)).unwrap()).unwrap()
        };
        let (ma, mb) = (read(&da, "metrics.json"), read(&db, "metrics.json"));
        let rows: Vec<&Value> = d["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["trial"] == pair["name"])
            .collect();
        assert_eq!(rows.len(), ma["conditions"].as_object().unwrap().len());
        for row in rows {
            let cond = row["condition"].as_str().unwrap();
            let (fa, fb) = (&ma["conditions"][cond], &mb["conditions"][cond]);
            assert_eq!((&row["a"]["n"], &row["b"]["n"]), (&fa["n"], &fb["n"]));
            assert_eq!((&row["a"]["failed"], &row["b"]["failed"]), (&fa["failed"], &fb["failed"]));
            assert_eq!(
                (&row["a"]["accuracy"], &row["b"]["accuracy"]),
                (&fa["accuracy"], &fb["accuracy"])
            );
        }
        let (ca, cb) = (read(&da, "costs.json"), read(&db, "costs.json"));
        let total = d["costs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["trial"] == pair["name"] && r["scope"] == "total")
            .unwrap();
        assert_eq!((&total["a"]["usd"], &total["b"]["usd"]), (&ca["usd"], &cb["usd"]));
        assert_eq!(
            (&total["a"]["input_tokens"], &total["b"]["input_tokens"]),
            (&ca["input_tokens"], &cb["input_tokens"])
        );

        // Flips, counted here from the two per_item_scores.csv files.
        let scores = |d: &Path| -> BTreeMap<(String, String, String), Option<f64>> {
            let mut r = csv::Reader::from_path(d.join("per_item_scores.csv")).unwrap();
            r.records()
                .map(|rec| {
                    let rec = rec.unwrap();
                    let key = (
                        rec[2].to_string(),
                        rec[1].to_string(),
                        format!("{}:{}", &rec[0], &rec[3]),
                    );
                    (key, rec[6].parse::<f64>().ok())
                })
                .collect()
        };
        let (sa, sb) = (scores(&da), scores(&db));
        for cond in ["control", "treatment"] {
            let (mut n, mut fixed, mut broken) = (0u64, 0u64, 0u64);
            for (k, a) in sa.iter().filter(|(k, _)| k.0 == cond) {
                if let (Some(a), Some(Some(b))) = (a, sb.get(k)) {
                    n += 1;
                    fixed += (*a < 0.5 && *b >= 0.5) as u64;
                    broken += (*a >= 0.5 && *b < 0.5) as u64;
                }
            }
            let row = d["paired"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["trial"] == pair["name"] && r["condition"] == cond)
                .unwrap();
            assert_eq!(
                (row["paired"].as_u64(), row["fixed"].as_u64(), row["broken"].as_u64()),
                (Some(n), Some(fixed), Some(broken)),
                "{cond}"
            );
            match exact_mcnemar(broken, fixed) {
                Some(p) => assert!(
                    (row["p_value"].as_f64().unwrap() - p).abs() < 1e-9,
                    "{cond}: {} vs {p}",
                    row["p_value"]
                ),
                None => assert!(row["p_value"].is_null()),
            }
            flipped += fixed + broken;
        }
    }
    assert_eq!(d["items"].as_array().unwrap().len() as u64, flipped);
}

// ---- a legacy folder whose batch files lie in another layout, under other names ----

/// The lines of t0's batch input files for `trial` and `cond`.
fn t0_requests(t0: &Path, trial: &str, cond: &str) -> String {
    let dir = t0.join("trials").join(format!("{trial}__operational_only__temp0.0"));
    ["part00", "part01"]
        .iter()
        .map(|p| fs::read_to_string(dir.join(format!("batch_input_{cond}_{p}.jsonl"))).unwrap())
        .collect()
}

/// A run folder kept by hand: batch requests and outputs in folders and under names of the
/// user's own, conditions told by a file name word, the system prompt, or the custom_id.
fn hand_kept_run(ws: &Path, t0: &Path) -> PathBuf {
    let run = ws.join("legacy/old_r20250901");
    fs::create_dir_all(run.join("batches/2025/aug")).unwrap();
    fs::create_dir_all(run.join("llama")).unwrap();
    fs::create_dir_all(run.join("out")).unwrap();
    copy_tree(&t0.join("prompts"), &run.join("prompts"));
    fs::copy(t0.join("config_snapshot.yaml"), run.join("config_snapshot.yaml")).unwrap();
    let ctrl = t0_requests(t0, "gpt-oss-120b", "control");
    fs::write(run.join("batches/req_gpt_ctrl.jsonl"), &ctrl).unwrap();
    fs::write(
        run.join("batches/2025/aug/part B (final).jsonl"),
        t0_requests(t0, "gpt-oss-120b", "treatment"),
    )
    .unwrap();
    let llama = t0_requests(t0, "llama-3.1-8b", "control");
    fs::write(run.join("llama/inputs.txt"), llama.lines().take(5).collect::<Vec<_>>().join("\n"))
        .unwrap();
    let outputs: String = ctrl
        .lines()
        .map(|l| {
            let id = serde_json::from_str::<Value>(l).unwrap()["custom_id"].clone();
            let body = serde_json::json!({"model": "openai/gpt-oss-120b",
                "choices": [{"message": {"role": "assistant", "content": "positive"}}]});
            format!(
                "{}\n",
                serde_json::json!({"id": "batch_req", "custom_id": id,
                    "response": {"status_code": 200, "body": body}, "error": null})
            )
        })
        .collect();
    fs::write(run.join("out/results-1.jsonl"), outputs).unwrap();
    fs::write(run.join("notes.txt"), "batches went to batches/, outputs to out/\n").unwrap();
    run
}

#[test]
fn batch_files_in_another_layout_are_recognized_by_content_and_counted_per_condition() {
    let (ws, t0, _t1) = workspace_with_legacy();
    let run = hand_kept_run(ws.path(), &t0);
    let n = |cond: &str| t0_requests(&t0, "gpt-oss-120b", cond).lines().count();
    let (ctrl, treat) = (n("control"), n("treatment"));
    let text = ok(exp(ws.path()).arg("import").arg(&run));
    let want = format!(
        "2 trials, 0 with metrics, 2 with batch inputs: requests (control {}, treatment {treat}), 1 with batch outputs: responses (control {ctrl})",
        ctrl + 5
    );
    assert!(text.contains(&want), "missing {want:?} in\n{text}");
    assert!(text.contains("not recognized: notes.txt\n"), "{text}");

    let out = json(exp(ws.path()).arg("import").arg(&run).arg("--json"))["imported"].clone();
    let role = |path: &str| {
        let files = out[0]["inspection"]["files"].as_array().unwrap();
        files.iter().find(|f| f["path"] == path).unwrap()["role"].clone()
    };
    assert_eq!(role("batches/req_gpt_ctrl.jsonl"), "batch input");
    assert_eq!(role("batches/2025/aug/part B (final).jsonl"), "batch input");
    assert_eq!(role("llama/inputs.txt"), "batch input");
    assert_eq!(role("out/results-1.jsonl"), "batch output");
    assert!(role("notes.txt").is_null());
    let trials = out[0]["inspection"]["trials"].as_array().unwrap();
    let gpt = trials.iter().find(|t| t["slug"] == "gpt-oss-120b__operational_only__temp0.0");
    let gpt = gpt.unwrap_or_else(|| panic!("named like the old folders: {trials:?}"));
    assert_eq!(gpt["status"], "inputs and outputs");
    assert_eq!(gpt["requests"]["treatment"], treat, "condition from the system prompt");
    let llama = trials.iter().find(|t| t["slug"] == "llama-3.1-8b__operational_only__temp0.0");
    assert_eq!(llama.unwrap()["requests"], serde_json::json!({"control": 5}));
}

#[test]
fn diff_pairs_a_hand_kept_run_with_the_shipped_one_and_compares_what_both_have() {
    let (ws, t0, _t1) = workspace_with_legacy();
    let run = hand_kept_run(ws.path(), &t0);
    ok(exp(ws.path()).arg("import").arg(&t0).arg(&run));
    let d = json(exp(ws.path()).args(["diff", "t0_r20250818", "old_r20250901", "--json"]));
    let paired = d["trials"]["paired"].as_array().unwrap();
    assert_eq!(paired.len(), 2, "{paired:?}");
    assert!(paired.iter().all(|p| p["matched_by"] == "slug" && p["unchanged"] == false));
    assert!(d["config"].as_array().unwrap().is_empty(), "same config and prompts");
    let lack = |side: &str, trial: &str| {
        let lacks = d["lacks"].as_array().unwrap();
        let l = lacks.iter().find(|l| {
            l["side"] == side && l["trial"].as_str().is_some_and(|t| t.starts_with(trial))
        });
        l.unwrap_or_else(|| panic!("no lack for {side} {trial}: {lacks:?}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let n = |trial: &str, cond: &str| t0_requests(&t0, trial, cond).lines().count();
    let (c, t) = (n("gpt-oss-120b", "control"), n("gpt-oss-120b", "treatment"));
    assert_eq!(
        lack("b", "gpt-oss-120b"),
        format!(
            "batch inputs ({} requests: control {c}, treatment {t}) and responses, but no scored results",
            c + t
        )
    );
    assert!(lack("b", "llama").starts_with("batch inputs only (5 requests: control 5)"));
    assert!(lack("a", "llama").starts_with(&format!(
        "batch inputs only ({} requests",
        n("llama-3.1-8b", "control") + n("llama-3.1-8b", "treatment")
    )));
}
