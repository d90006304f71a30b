//! The daily loop: run, look back (`exp log`), compare runs (`exp list`, the cross-run table),
//! read what changed (`exp diff`), with one-off config overrides (`-S`).
mod common;

use std::fs;
use std::path::Path;

use common::exp;
use predicates::prelude::*;
use serde_json::Value;

/// A workspace holding the repository's demo config, prompts and dataset (sim model, offline).
fn demo() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["config", "data"] {
        copy_dir(&root.join(dir), &ws.path().join(dir));
    }
    ws
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn stdout(cmd: &mut assert_cmd::Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

fn json(cmd: &mut assert_cmd::Command) -> Value {
    serde_json::from_str(&stdout(cmd)).unwrap()
}

/// One archived demo run with a fixed id; `extra` are more arguments (e.g. `-S …`).
fn archived_run(ws: &Path, id: &str, extra: &[&str]) {
    let mut args = vec!["run", "--archive", "--run-id", id, "-S", "decoding.temps=[0.0]"];
    args.extend_from_slice(extra);
    exp(ws).args(&args).assert().success();
}

#[test]
fn two_archived_runs_make_a_history_where_head_1_is_the_previous_run() {
    let ws = demo();
    archived_run(ws.path(), "first", &[]);
    archived_run(ws.path(), "second", &["-S", "decoding.temps=[1.0]", "-m", "warmer"]);
    let log = json(exp(ws.path()).args(["log", "--json"]))["commits"].clone();
    let runs: Vec<&str> =
        log.as_array().unwrap().iter().map(|c| c["commit"]["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs, ["second", "first"], "newest first");
    let second = &log[0]["commit"];
    assert_eq!(second["parents"][0], log[1]["id"], "the first commit of a run follows HEAD");
    assert_eq!(second["message"], "warmer");
    let out = stdout(exp(ws.path()).args(["diff", "HEAD~1", "HEAD"]));
    assert!(out.contains("decoding.temps: [0.0] -> [1.0]"), "{out}");
    // A re-commit of the same run follows its own previous commit, not HEAD.
    let shown = json(exp(ws.path()).args(["show", "first", "--json"]));
    assert!(shown["parents"].as_array().unwrap().is_empty(), "{shown}");
}

#[test]
fn log_lines_carry_best_and_worst_effects_with_p_and_take_since_and_ranges() {
    let ws = demo();
    archived_run(ws.path(), "a", &[]);
    archived_run(ws.path(), "b", &["-S", "decoding.temps=[0.0, 1.0]"]);
    let out = stdout(exp(ws.path()).arg("log"));
    let b_line = out.lines().find(|l| l.contains(" b ")).expect("a line for run b");
    assert!(b_line.matches(" pp (p ").count() == 2, "best and worst with p: {b_line}");
    let range = json(exp(ws.path()).args(["log", "a..b", "--json"]))["commits"].clone();
    assert_eq!(range.as_array().unwrap().len(), 1, "a..b is what b adds");
    let future =
        json(exp(ws.path()).args(["log", "--since", "2999-01-01", "--json"]))["commits"].clone();
    assert!(future.as_array().unwrap().is_empty());
    exp(ws.path())
        .args(["log", "--since", "last tuesday"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--since `last tuesday`"))
        .stderr(predicate::str::contains("hint: write a date"));
}

#[test]
fn the_cross_run_table_filters_sorts_and_shows_only_what_changed() {
    let ws = demo();
    archived_run(ws.path(), "cold", &[]);
    archived_run(ws.path(), "warm", &["-S", "decoding.temps=[1.0]"]);
    let rows = json(exp(ws.path()).args(["list", "--json"]))["rows"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 2, "one row per run x trial: {rows}");
    assert_eq!(rows[0]["params"]["model"], "sim-demo");
    assert!(rows[0]["params"]["prompts"].as_str().unwrap().contains('/'), "{rows}");
    let warm = json(exp(ws.path()).args(["list", "--where", "temp>0.5", "--json"]))["rows"].clone();
    assert_eq!(warm.as_array().unwrap().len(), 1);
    assert_eq!(warm[0]["run"], "warm");
    let either =
        json(exp(ws.path()).args(["list", "--where", "run=cold or temp=1", "--json"]))["rows"]
            .clone();
    assert_eq!(either.as_array().unwrap().len(), 2);
    let sorted = json(exp(ws.path()).args(["list", "--sort-by=-temp", "--json"]))["rows"].clone();
    assert_eq!(sorted[0]["run"], "warm");
    let out = stdout(exp(ws.path()).args(["list", "--only-changed", "--md"]));
    let header = out.lines().next().unwrap();
    assert!(header.contains("temp") && !header.contains("model"), "{header}");
    let csv = stdout(exp(ws.path()).args(["list", "--csv"]));
    assert!(csv.starts_with("run,trial,model,"), "{csv}");
    assert_eq!(csv.lines().count(), 3);
    exp(ws.path())
        .args(["list", "--where", "temperature>1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no column `temperature`"))
        .stderr(predicate::str::contains("hint: columns: run"));
    exp(ws.path())
        .args(["list", "--sort-by", "speed"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--sort-by: there is no column `speed`"))
        .stderr(predicate::str::contains("hint: columns: run"));
}

#[test]
fn a_changed_prompt_is_diffed_as_text_and_stat_shows_sizes_only() {
    let ws = demo();
    archived_run(ws.path(), "v1", &[]);
    let prompt = ws.path().join("config/prompts/operational_only_system.md");
    let text = fs::read_to_string(&prompt).unwrap();
    fs::write(&prompt, format!("{text}Answer with exactly one word.\n")).unwrap();
    archived_run(ws.path(), "v2", &[]);
    let out = stdout(exp(ws.path()).args(["diff", "v1", "v2"]));
    assert!(out.contains("+++ b/config/prompts/operational_only_system.md"), "{out}");
    assert!(out.contains("+Answer with exactly one word."), "{out}");
    let stat = stdout(exp(ws.path()).args(["diff", "v1", "v2", "--stat"]));
    assert!(!stat.contains("+Answer with exactly one word."), "{stat}");
    let j = json(exp(ws.path()).args(["diff", "v1", "v2", "--json"]));
    assert_eq!(j["text"][0]["path"], "config/prompts/operational_only_system.md");
}

#[test]
fn a_trial_only_one_run_has_still_shows_its_figures() {
    let ws = demo();
    archived_run(ws.path(), "one", &[]);
    archived_run(ws.path(), "two", &["-S", "decoding.temps=[0.0, 1.0]"]);
    let j = json(exp(ws.path()).args(["diff", "one", "two", "--json"]));
    let only_b = j["trials"]["only_b"][0].as_str().expect("a trial only run two has").to_string();
    let rows: Vec<&Value> =
        j["metrics"].as_array().unwrap().iter().filter(|r| r["trial"] == only_b.as_str()).collect();
    assert_eq!(rows.len(), 2, "control and treatment of {only_b}: {j}");
    assert!(rows.iter().all(|r| r["a"].is_null() && r["b"]["accuracy"].is_number()));
}

#[test]
fn overrides_are_validated_like_the_file_and_recorded_in_the_snapshot() {
    let ws = demo();
    exp(ws.path())
        .args(["run", "--dry-run", "-S", "decoding.temps"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("-S decoding.temps: expected KEY=VALUE"))
        .stderr(predicate::str::contains("hint:"));
    exp(ws.path())
        .args(["run", "--dry-run", "-S", "models[5].name=x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("index 5 does not exist"));
    exp(ws.path())
        .args(["run", "--dry-run", "-S", "decoding.temperature=[1]"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown field `temperature`"))
        .stderr(predicate::str::contains("after the -S overrides"));
    exp(ws.path()).args(["run", "--run-id", "o", "-S", "decoding.temps=[0.5]"]).assert().success();
    let snap =
        fs::read_to_string(ws.path().join("experiments/run_o/config/eval_config.yaml")).unwrap();
    assert!(snap.contains("# -S decoding.temps=[0.5]"), "{snap}");
    assert!(snap.contains("- 0.5"), "{snap}");
    let tracked = fs::read_to_string(ws.path().join("config/eval_config.yaml")).unwrap();
    assert!(!tracked.contains("0.5"), "the tracked file is untouched");
}

#[test]
fn a_first_commit_has_no_parent_and_the_error_says_what_to_do() {
    let ws = demo();
    archived_run(ws.path(), "only", &[]);
    exp(ws.path())
        .args(["diff", "HEAD~1", "HEAD"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("has no parent"))
        .stderr(predicate::str::contains("hint: it is the first commit"));
}

#[test]
fn the_same_legacy_folder_imported_from_two_places_is_the_same_commit() {
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/legacy/t1_r20250821");
    let ids: Vec<Value> = ["here", "elsewhere/deeper"]
        .iter()
        .map(|place| {
            let ws = tempfile::tempdir().unwrap();
            let src = ws.path().join(place).join("t1_r20250821");
            copy_dir(&legacy, &src);
            exp(ws.path()).arg("import").arg(&src).assert().success();
            let shown = json(exp(ws.path()).args(["show", "t1_r20250821", "--json"]));
            let message = shown["message"].as_str().unwrap();
            assert!(
                !message.contains(&*ws.path().to_string_lossy()),
                "no absolute path: {message}"
            );
            shown["id"].clone()
        })
        .collect();
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn a_clone_shows_every_run_it_received_once_in_log_and_list() {
    let ws = demo();
    archived_run(ws.path(), "one", &[]);
    archived_run(ws.path(), "two", &["-S", "decoding.temps=[1.0]"]);
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().join("shared");
    exp(ws.path()).args(["remote", "add", "origin"]).arg(&url).assert().success();
    exp(ws.path()).args(["push", "--all"]).assert().success();
    let elsewhere = tempfile::tempdir().unwrap();
    exp(elsewhere.path()).arg("clone").arg(&url).arg("b").assert().success();
    let b = elsewhere.path().join("b");
    let log = json(exp(&b).args(["log", "--json"]))["commits"].clone();
    let runs: Vec<&str> =
        log.as_array().unwrap().iter().map(|c| c["commit"]["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs, ["two", "one"], "the clone's history is the pushed one");
    let rows = json(exp(&b).args(["list", "--json"]))["rows"].clone();
    let listed: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["run"].as_str().unwrap()).collect();
    assert_eq!(
        listed.len(),
        2,
        "each run once, though runs/ and remotes/origin/ both name it: {rows}"
    );
    assert!(listed.contains(&"one") && listed.contains(&"two"));
}

/// Runs `args` in `dir` and returns its `--json` document after checking it names its schema
/// (`exp.<what>/<version>`) and that docs/JSON.md documents that schema.
fn schema_doc(dir: &Path, args: &[&str], want: &str) -> Value {
    let out = exp(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON document ({e})"));
    assert!(doc.is_object(), "{args:?}: a document is an object: {doc}");
    assert_eq!(doc["schema"], want, "{args:?}");
    let documented =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md")).unwrap();
    assert!(documented.contains(&format!("## `{want}`")), "docs/JSON.md has no section for {want}");
    doc
}

#[test]
fn every_json_document_names_its_schema_and_docs_json_md_documents_it() {
    let ws = demo();
    let w = ws.path();
    let plan = schema_doc(w, &["run", "--dry-run", "--json"], "exp.run.plan/1");
    assert_eq!(plan["status"], "planned");
    let run = schema_doc(w, &["run", "--archive", "--run-id", "one", "--json"], "exp.run/1");
    assert_eq!(run["run_id"], "one");
    archived_run(w, "two", &["-S", "decoding.temps=[1.0]"]);
    let log = schema_doc(w, &["log", "--json"], "exp.log/1");
    assert_eq!(log["commits"].as_array().unwrap().len(), 2, "{log}");
    let list = schema_doc(w, &["list", "--json"], "exp.list/1");
    assert!(!list["rows"].as_array().unwrap().is_empty());
    let shown = schema_doc(w, &["show", "one", "--json"], "exp.show/1");
    assert_eq!(shown["run_id"], "one");
    let tree = schema_doc(w, &["show", "one", "config", "--json"], "exp.show.tree/1");
    assert!(!tree["entries"].as_array().unwrap().is_empty());
    schema_doc(w, &["diff", "one", "two", "--json"], "exp.diff/1");
    schema_doc(w, &["power", "one", "--json"], "exp.power/1");
    let rescored =
        schema_doc(w, &["rescore", "one", "--run-id", "again", "--json"], "exp.rescore/1");
    assert_eq!(rescored["rescored_from"]["run"], "one");
    exp(w).args(["tag", "base", "one"]).assert().success();
    let tags = schema_doc(w, &["tag", "-l", "--json"], "exp.tags/1");
    assert_eq!(tags["tags"][0]["tag"], "base");
    schema_doc(w, &["status", "--json"], "exp.status/1");
    schema_doc(w, &["commit", "--run", "two", "--json"], "exp.commit/1");
    schema_doc(w, &["clean", "--dry-run", "--json"], "exp.clean/1");
    schema_doc(w, &["checkout", "one", "--force", "--json"], "exp.checkout/1");
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/legacy/t1_r20250821");
    let imported = schema_doc(w, &["import", legacy.to_str().unwrap(), "--json"], "exp.import/1");
    assert_eq!(imported["imported"][0]["name"], "t1_r20250821");
    let shared = tempfile::tempdir().unwrap();
    let url = shared.path().join("shared");
    let url = url.to_str().unwrap();
    let added = schema_doc(w, &["remote", "add", "origin", url, "--json"], "exp.remote/1");
    assert_eq!(added["name"], "origin");
    let remotes = schema_doc(w, &["remote", "--json"], "exp.remotes/1");
    assert_eq!(remotes["remotes"][0]["name"], "origin");
    schema_doc(w, &["push", "--all", "--json"], "exp.push/1");
    schema_doc(w, &["fetch", "--json"], "exp.fetch/1");
    schema_doc(w, &["pull", "--json"], "exp.pull/1");
    schema_doc(shared.path(), &["clone", url, "b", "--json"], "exp.clone/1");
    schema_doc(w, &["fsck", "--json"], "exp.fsck/1");
    schema_doc(w, &["gc", "--dry-run", "--json"], "exp.gc/1");
    schema_doc(w, &["remote", "remove", "origin", "--json"], "exp.remote/1");
}

/// What `exp` offers a shell completing the last of `words` (clap_complete's fish protocol: one
/// candidate a line, its help after a tab), sorted; checks nothing reached stderr.
fn completions(dir: &Path, words: &[&str]) -> Vec<String> {
    let out = exp(dir).env("COMPLETE", "fish").args(["--", "exp"]).args(words).output().unwrap();
    assert!(out.status.success(), "{words:?}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{words:?}: {}", String::from_utf8_lossy(&out.stderr));
    let mut got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    got.sort();
    got
}

#[test]
fn completions_offer_the_repositorys_run_ids_tags_and_remote_names() {
    let ws = demo();
    let w = ws.path();
    for id in ["alpha", "alps", "beta"] {
        archived_run(w, id, &[]);
    }
    exp(w).args(["tag", "aloe", "alpha"]).assert().success();
    let shared = tempfile::tempdir().unwrap();
    for name in ["origin", "other"] {
        let url = shared.path().join(name);
        exp(w).args(["remote", "add", name]).arg(&url).assert().success();
    }
    assert_eq!(completions(w, &["diff", "al"]), ["aloe", "alpha", "alps"]);
    assert_eq!(completions(w, &["diff", "alpha", "b"]), ["beta"]);
    assert_eq!(completions(w, &["show", "H"]), ["HEAD"]);
    assert_eq!(completions(w, &["log", "alpha..be"]), ["alpha..beta"]);
    assert_eq!(completions(w, &["checkout", "tags/"]), ["tags/aloe"]);
    assert_eq!(completions(w, &["tag", "-d", "a"]), ["aloe"]);
    assert_eq!(completions(w, &["push", "o"]), ["origin", "other"]);
    assert_eq!(completions(w, &["push", "origin", "be"]), ["beta"]);
    assert_eq!(completions(w, &["fetch", "ot"]), ["other"]);
    assert_eq!(completions(w, &["commit", "--run", "alp"]), ["alpha", "alps"]);
    // From elsewhere, `--repo` names the repository; outside any, nothing is offered, quietly.
    let outside = tempfile::tempdir().unwrap();
    let repo = w.to_str().unwrap();
    assert_eq!(completions(outside.path(), &["--repo", repo, "power", "alph"]), ["alpha"]);
    assert!(completions(outside.path(), &["diff", "al"]).is_empty());
}

#[test]
fn the_bash_script_completes_run_ids_through_exp_itself() {
    if !common::require_tool(common::on_path("bash"), "bash") {
        return;
    }
    let ws = demo();
    archived_run(ws.path(), "alpha", &[]);
    let script = stdout(exp(ws.path()).args(["completions", "bash"]));
    fs::write(ws.path().join("exp.bash"), &script).unwrap();
    // What bash does on `exp diff al<TAB>`: the script's function fills COMPREPLY by calling
    // the `exp` on PATH.
    let bin = assert_cmd::cargo::cargo_bin("exp");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .current_dir(ws.path())
        .env("PATH", path)
        .args([
            "-c",
            "source exp.bash; COMP_WORDS=(exp diff al); COMP_CWORD=2; COMP_TYPE=9; \
                      _clap_complete_exp exp al exp; printf '%s\\n' \"${COMPREPLY[@]}\"",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["alpha"]
    );
}

#[test]
fn a_run_name_is_kept_beside_its_id_in_run_json_log_list_and_show() {
    let ws = demo();
    let w = ws.path();
    archived_run(w, "n1", &["--name", "warmer-prompt", "-m", "try it warmer"]);
    archived_run(w, "plain", &[]);
    let run_json: Value =
        serde_json::from_str(&fs::read_to_string(w.join("experiments/run_n1/run.json")).unwrap())
            .unwrap();
    assert_eq!(run_json["name"], "warmer-prompt");
    let log = json(exp(w).args(["log", "--json"]))["commits"].clone();
    let named = log.as_array().unwrap().iter().find(|c| c["commit"]["run_id"] == "n1").unwrap();
    assert_eq!(named["commit"]["name"], "warmer-prompt");
    assert_eq!(named["commit"]["message"], "try it warmer");
    let shown = json(exp(w).args(["show", "plain", "--json"]));
    assert!(shown.get("name").is_none(), "an unnamed run's commit has no name: {shown}");
    assert!(stdout(exp(w).arg("log")).contains("n1 (warmer-prompt)"));
    assert!(stdout(exp(w).args(["show", "n1"])).contains("run      n1 (warmer-prompt)"));
    let rows =
        json(exp(w).args(["list", "--where", "name=warmer-prompt", "--json"]))["rows"].clone();
    let runs: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["run"].as_str().unwrap()).collect();
    assert_eq!(runs, ["n1"], "{rows}");
    exp(w)
        .args(["run", "--name", "my run!"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("`my run!` is not a valid run name"))
        .stderr(predicate::str::contains("hint: a name is a label like an id"));
}

#[test]
fn the_cross_run_table_is_cached_per_commit_and_a_damaged_cache_is_rebuilt() {
    let ws = demo();
    archived_run(ws.path(), "cold", &[]);
    archived_run(ws.path(), "warm", &["-S", "decoding.temps=[1.0]"]);
    let list = || json(exp(ws.path()).args(["list", "--json"]))["rows"].clone();
    let fresh = list();
    let cache = ws.path().join(".exprepo/cache/list.json");
    let written: Value = serde_json::from_slice(&fs::read(&cache).unwrap()).unwrap();
    assert_eq!(written["runs"].as_object().unwrap().len(), 2, "{written}");
    assert_eq!(list(), fresh, "the table from the cache is the table from the runs");

    // The cache is what the table reads: an entry's cells show as they are written.
    let mut edited = written.clone();
    for run in edited["runs"].as_object_mut().unwrap().values_mut() {
        for trial in run.as_object_mut().unwrap().values_mut() {
            trial["params"]["model"] = "from-the-cache".into();
        }
    }
    fs::write(&cache, serde_json::to_vec(&edited).unwrap()).unwrap();
    assert!(list().as_array().unwrap().iter().all(|r| r["params"]["model"] == "from-the-cache"));

    // Another version of the derivation, or a damaged file, is ignored and written anew.
    edited["version"] = 999.into();
    fs::write(&cache, serde_json::to_vec(&edited).unwrap()).unwrap();
    assert_eq!(list(), fresh);
    fs::write(&cache, b"{\"version\": 1, \"runs\": {\"trunc").unwrap();
    assert_eq!(list(), fresh);
    let rebuilt: Value = serde_json::from_slice(&fs::read(&cache).unwrap()).unwrap();
    assert_eq!(rebuilt, written);
    exp(ws.path()).arg("fsck").assert().success();
}
