//! Black-box tests of the store commands: the real `exp` binary in temp workspaces.
mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::{exp, exp_process};
use predicates::prelude::*;
use tempfile::TempDir;

/// A workspace with a store.
fn workspace() -> TempDir {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path()).arg("init").assert().success();
    ws
}

/// A run folder like `exp run` writes, with a manifest holding the headline numbers.
fn run_folder(ws: &Path, id: &str) -> PathBuf {
    let d = ws.join("experiments").join(format!("run_{id}"));
    let trial = d.join("sim-demo-ops-t0/results");
    fs::create_dir_all(&trial).unwrap();
    fs::write(
        d.join("run.json"),
        format!(r#"{{"format":1,"run_id":"{id}","status":"complete","config_hash":"abc123","trials":["sim-demo-ops-t0"]}}"#),
    )
    .unwrap();
    fs::write(
        d.join("multi_trial_manifest.json"),
        format!(
            r#"{{"format":1,"run_id":"{id}","status":"complete","trials":[{{"slug":"sim-demo-ops-t0","status":"complete",
            "metrics":{{"control":{{"n":120,"accuracy":0.7}},"treatment":{{"n":120,"accuracy":0.78}}}},
            "effect":0.08,"p_value":0.012,"holm_p":0.024,"usd":0.0084,"failures":2}}],
            "totals":{{"requests":240,"failures":2,"usd":0.0084}}}}"#
        ),
    )
    .unwrap();
    fs::write(trial.join("predictions.csv"), "item_id,prediction\n1,positive\n2,negative\n")
        .unwrap();
    d
}

fn stdout(cmd: &mut assert_cmd::Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

fn json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    serde_json::from_str(&stdout(cmd)).unwrap()
}

fn rev(ws: &Path, r: &str) -> String {
    json(exp(ws).args(["show", r, "--json"]))["id"].as_str().unwrap().to_string()
}

/// Every file, link and folder under `dir` with its bytes and mode, for exact comparison.
fn snapshot(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String, Vec<u8>)>) {
        let mut entries: Vec<_> = fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.push((
                    rel,
                    "link".into(),
                    fs::read_link(&p).unwrap().to_string_lossy().as_bytes().to_vec(),
                ));
            } else if m.is_dir() {
                out.push((rel, "dir".into(), vec![]));
                walk(base, &p, out);
            } else {
                let exec = m.permissions().mode() & 0o111 != 0;
                out.push((rel, format!("file exec={exec}"), fs::read(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn init_creates_a_store_and_a_second_init_changes_nothing() {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path()).arg("init").assert().success().stdout(predicate::str::contains("created"));
    assert!(ws.path().join(".exprepo/format").is_file());
    exp(ws.path()).arg("init").assert().success().stdout(predicate::str::contains("already"));
}

#[test]
fn a_fresh_store_has_an_empty_log_and_list() {
    let ws = workspace();
    exp(ws.path()).arg("log").assert().success().stdout(predicate::str::contains("no commits yet"));
    exp(ws.path()).arg("list").assert().success().stdout(predicate::str::contains("no runs yet"));
    exp(ws.path())
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("no run folders"));
    exp(ws.path()).arg("fsck").assert().success();
}

#[test]
fn committing_a_whole_workspace_leaves_its_store_out() {
    let ws = workspace();
    fs::write(ws.path().join("notes.md"), "x\n").unwrap();
    exp(ws.path()).args(["commit", ".", "--run", "ws"]).assert().success();
    let out = stdout(exp(ws.path()).args(["show", "ws", "."]));
    assert!(out.contains("notes.md") && !out.contains(".exprepo"), "{out}");
}

#[test]
fn commands_outside_a_store_say_to_run_init() {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path())
        .arg("list")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error: no exp store"))
        .stderr(predicate::str::contains("hint: run `exp init`"));
}

#[test]
fn checkout_restores_bytes_modes_symlinks_unicode_and_empty_things() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    fs::create_dir_all(d.join("a/b/c")).unwrap();
    fs::create_dir_all(d.join("empty dir")).unwrap();
    fs::write(d.join("a/b/c/deep.json"), "{\"x\": 1}\n").unwrap();
    fs::write(d.join("empty.txt"), "").unwrap();
    fs::write(d.join("ünïcödé 名前.md"), "# héllo\n").unwrap();
    fs::write(d.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(d.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d.join("binary.bin"), (0..=255u8).cycle().take(300_000).collect::<Vec<u8>>())
        .unwrap();
    symlink("a/b/c/deep.json", d.join("link-rel")).unwrap();
    symlink("/nonexistent/target", d.join("link-dangling")).unwrap();
    let before = snapshot(&d);
    exp(ws.path())
        .args(["commit", "experiments/run_r1", "-m", "first"])
        .assert()
        .success()
        .stdout(predicate::str::contains("committed runs/r1"));
    let to = ws.path().join("restored");
    exp(ws.path()).args(["checkout", "r1", "--to"]).arg(&to).assert().success();
    assert_eq!(snapshot(&to), before);
    // Into the folder it came from, after it was deleted.
    fs::remove_dir_all(&d).unwrap();
    exp(ws.path()).args(["checkout", "r1"]).assert().success();
    assert_eq!(snapshot(&d), before);
    exp(ws.path()).arg("status").assert().success().stdout(predicate::str::contains("clean"));
}

fn file_hash(p: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(fs::File::open(p).unwrap()).unwrap();
    h.finalize().to_hex().to_string()
}

/// Runs exp with its data segment (heap and other private writable memory) capped at
/// `limit` bytes, so an exp that tried to hold a big file in memory would fail.
fn exp_capped(dir: &Path, args: &[&str], limit: u64) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = exp_process(dir);
    // Two workers, as on the 2-core CI machine: each thread's stack counts against the cap, so
    // a many-core machine would otherwise measure its core count, not exp's memory use.
    cmd.args(args).env("RAYON_NUM_THREADS", "2");
    // SAFETY: only async-signal-safe setrlimit runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_DATA, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn a_100_mb_file_round_trips_byte_exact() {
    let ws = workspace();
    let d = ws.path().join("experiments/run_big");
    fs::create_dir_all(&d).unwrap();
    // Mixed content: text-like and incompressible stretches, 100 MiB in total.
    let mut f = std::io::BufWriter::new(fs::File::create(d.join("big.csv")).unwrap());
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for i in 0..(100 * 1024) {
        let mut chunk = Vec::with_capacity(1024);
        for _ in 0..128 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 2 == 0 {
                chunk.extend_from_slice(&x.to_le_bytes());
            } else {
                chunk.extend_from_slice(format!("{:07},", x % 10_000_000).as_bytes());
            }
        }
        std::io::Write::write_all(&mut f, &chunk).unwrap();
    }
    drop(f);
    assert_eq!(fs::metadata(d.join("big.csv")).unwrap().len(), 100 * 1024 * 1024);
    // Compare by streamed hashes: this process must not hold the file either, or every child it
    // forks would count those pages in its own peak memory.
    let original = file_hash(&d.join("big.csv"));
    // Streaming: commit, checkout and fsck each run with 64 MiB of data memory, less than the
    // file; the cap is real, as a command that does load a whole blob shows.
    const CAP: u64 = 64 * 1024 * 1024;
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr))
    };
    ok(exp_capped(ws.path(), &["commit", "experiments/run_big"], CAP));
    ok(exp_capped(ws.path(), &["checkout", "big", "--to", "out"], CAP));
    assert_eq!(
        file_hash(&ws.path().join("out/big.csv")),
        original,
        "100 MiB file differs after round trip"
    );
    ok(exp_capped(ws.path(), &["fsck"], CAP));
    let id = stdout(exp(ws.path()).args(["hash-object", "experiments/run_big/big.csv"]));
    assert!(!exp_capped(ws.path(), &["cat-object", "-p", id.trim()], CAP).status.success());
}

/// Move every file's mtime a minute back, so the index can vouch for it whatever the file
/// system's timestamp granularity (a file as new as the index is re-read, by design).
fn age_files(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            age_files(&p);
        } else {
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            fs::File::options().write(true).open(&p).unwrap().set_modified(t).unwrap();
        }
    }
}

#[test]
fn recommitting_an_unchanged_run_makes_no_commit_and_reads_nothing() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    age_files(&d);
    let first = json(exp(ws.path()).args(["commit", "experiments/run_r1", "--json"]));
    let again = json(exp(ws.path()).args(["commit", "experiments/run_r1", "--json"]));
    assert_eq!(again["unchanged"], true);
    assert_eq!(again["commit"], first["commit"]);
    assert_eq!(again["new_objects"], 0);
    assert_eq!(again["hashed_files"], 0, "the index should have vouched for every file");
    // A changed file is noticed even though the index knew it.
    fs::write(d.join("run.json"), "{}").unwrap();
    let third = json(exp(ws.path()).args(["commit", "experiments/run_r1", "--json"]));
    assert_eq!(third["unchanged"], false);
    assert_eq!(third["hashed_files"], 1, "{third}");
    let log = json(exp(ws.path()).args(["log", "--json"]))["commits"].clone();
    assert_eq!(log.as_array().unwrap().len(), 2, "unchanged re-commit made a commit");
}

#[test]
fn archive_alias_takes_the_old_experiment_name_spelling_and_a_tag() {
    let ws = workspace();
    let d = ws.path().join("experiments/t1_r20250821");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("notes.md"), "legacy\n").unwrap();
    exp(ws.path())
        .args(["archive", "--experiment_name", "t1_r20250821", "--tag", "t1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("committed runs/t1_r20250821"))
        .stdout(predicate::str::contains("tagged tags/t1"));
    assert_eq!(rev(ws.path(), "t1"), rev(ws.path(), "runs/t1_r20250821"));
    exp(ws.path())
        .args(["commit", "--experiment-name", "t1_r20250821"])
        .assert()
        .success()
        .stdout(predicate::str::contains("unchanged"));
}

#[test]
fn a_dry_run_lists_what_would_be_stored_and_stores_nothing() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path())
        .args(["commit", "experiments/run_r1", "--dry_run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("predictions.csv"))
        .stdout(predicate::str::contains("would commit"));
    assert_eq!(
        fs::read_dir(ws.path().join(".exprepo/objects"))
            .unwrap()
            .filter(|e| { e.as_ref().unwrap().file_name().len() == 2 })
            .count(),
        0
    );
    exp(ws.path()).args(["show", "r1"]).assert().code(1);
}

#[test]
fn a_torn_run_json_is_committed_with_a_warning_naming_file_and_line() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    fs::write(d.join("run.json"), "{\n  \"status\": \"runn").unwrap();
    fs::write(d.join("multi_trial_manifest.json"), "{\"trials\": [").unwrap();
    exp(ws.path())
        .args(["commit", "experiments/run_r1"])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning:"))
        .stderr(predicate::str::contains("run.json: bad JSON at line 2"))
        .stderr(predicate::str::contains("multi_trial_manifest.json"));
    let shown = json(exp(ws.path()).args(["show", "r1", "--json"]));
    assert_eq!(shown["status"], serde_json::Value::Null);
    let out = stdout(exp(ws.path()).args(["show", "r1", "run.json"]));
    assert_eq!(out, "{\n  \"status\": \"runn");
}

#[test]
fn committing_a_missing_folder_says_what_to_do() {
    let ws = workspace();
    exp(ws.path())
        .args(["commit", "--run", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not exist"))
        .stderr(predicate::str::contains("hint: `exp status`"));
    exp(ws.path()).arg("commit").assert().code(1).stderr(predicate::str::contains("hint:"));
}

#[test]
fn a_bad_run_id_is_refused_with_the_allowed_characters() {
    let ws = workspace();
    let d = ws.path().join("experiments/bad name");
    fs::create_dir_all(&d).unwrap();
    exp(ws.path())
        .args(["commit", "experiments/bad name"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad run id"))
        .stderr(predicate::str::contains("hint: use letters"));
}

#[test]
fn log_list_and_show_render_the_summary_and_json() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1", "-m", "baseline run"]).assert().success();
    let out = stdout(exp(ws.path()).args(["log"]));
    assert!(out.contains("baseline run") && out.contains("r1") && out.contains("$0.0084"), "{out}");
    let out = stdout(exp(ws.path()).args(["log", "-v"]));
    assert!(
        out.contains("sim-demo-ops-t0") && out.contains("70.0%") && out.contains("78.0%"),
        "{out}"
    );
    let out = stdout(exp(ws.path()).args(["list"]));
    assert!(
        out.contains("r1") && out.contains("sim-demo-ops-t0") && out.contains("+8.0 pp"),
        "{out}"
    );
    let out = stdout(exp(ws.path()).args(["list", "-v"]));
    assert!(out.contains("runs/r1"), "-v names the refs:\n{out}");
    let list = json(exp(ws.path()).args(["list", "--json"]))["rows"].clone();
    assert_eq!(list[0]["refs"][0], "runs/r1");
    assert_eq!(list[0]["run"], "r1");
    assert_eq!(list[0]["holm_p"], 0.024);
    let out = stdout(exp(ws.path()).args(["show", "r1"]));
    for want in [
        "run      r1",
        "complete",
        "70.0%",
        "78.0%",
        "+8.0 pp",
        "0.012",
        "0.024",
        "$0.0084",
        "abc123",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let shown = json(exp(ws.path()).args(["show", "r1", "--json"]));
    assert_eq!(shown["run_id"], "r1");
    assert_eq!(shown["summary"]["trials"][0]["conditions"]["control"]["n"], 120);
    // One file at a commit, and a folder listing.
    let out =
        stdout(exp(ws.path()).args(["show", "r1", "sim-demo-ops-t0/results/predictions.csv"]));
    assert_eq!(out, "item_id,prediction\n1,positive\n2,negative\n");
    let out = stdout(exp(ws.path()).args(["show", "r1", "sim-demo-ops-t0"]));
    assert!(out.contains("results/"), "{out}");
    exp(ws.path())
        .args(["show", "r1", "no/such.json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not exist"))
        .stderr(predicate::str::contains("hint: `exp show"));
}

#[test]
fn revisions_resolve_parents_reflog_prefixes_and_report_ambiguity() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let c1 = rev(ws.path(), "r1");
    fs::write(d.join("extra.md"), "more\n").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let c2 = rev(ws.path(), "runs/r1");
    assert_ne!(c1, c2);
    assert_eq!(rev(ws.path(), "HEAD"), c2);
    assert_eq!(rev(ws.path(), "r1~1"), c1);
    assert_eq!(rev(ws.path(), "HEAD~"), c1);
    assert_eq!(rev(ws.path(), "r1@{1}"), c1);
    assert_eq!(rev(ws.path(), &c1[..6]), c1);
    exp(ws.path())
        .args(["show", "r1~2"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no parent"));
    exp(ws.path())
        .args(["show", "nosuch"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown revision"))
        .stderr(predicate::str::contains("hint: `exp list`"));
    // A tag named like a run but on another commit is ambiguous, and both are listed.
    exp(ws.path()).args(["tag", "r1", &c1]).assert().success();
    exp(ws.path())
        .args(["show", "r1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("ambiguous"))
        .stderr(predicate::str::contains("runs/r1"))
        .stderr(predicate::str::contains("tags/r1"));
}

#[test]
fn status_tells_clean_modified_and_untracked_runs_apart() {
    let ws = workspace();
    let d1 = run_folder(ws.path(), "a");
    run_folder(ws.path(), "b");
    run_folder(ws.path(), "c");
    exp(ws.path()).args(["commit", "experiments/run_a"]).assert().success();
    exp(ws.path()).args(["commit", "experiments/run_b"]).assert().success();
    fs::write(d1.join("run.json"), "{}").unwrap();
    let st = json(exp(ws.path()).args(["status", "--json"]))["runs"].clone();
    let states: Vec<(&str, &str)> = st
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["run_id"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("a", "modified"), ("b", "clean"), ("c", "untracked")]);
    assert_eq!(st[0]["changes"][0]["path"], "run.json");
    let out = stdout(exp(ws.path()).arg("status"));
    assert!(out.contains("M run.json"), "{out}");
}

#[test]
fn clean_removes_only_what_the_store_holds_and_force_saves_first() {
    let ws = workspace();
    let da = run_folder(ws.path(), "a");
    let db = run_folder(ws.path(), "b");
    let dc = run_folder(ws.path(), "c");
    fs::create_dir_all(ws.path().join("prepared")).unwrap();
    fs::write(ws.path().join("prepared/x.jsonl"), "{}\n").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_a"]).assert().success();
    exp(ws.path()).args(["commit", "experiments/run_b"]).assert().success();
    fs::write(db.join("late.md"), "edited after commit\n").unwrap();
    exp(ws.path())
        .args(["clean", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("would remove experiments/run_a"));
    assert!(da.exists());
    exp(ws.path())
        .args(["clean", "--clean_prepared"])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed experiments/run_a"))
        .stdout(predicate::str::contains("kept experiments/run_b"))
        .stdout(predicate::str::contains("kept experiments/run_c: never committed"));
    assert!(!da.exists() && db.exists() && dc.exists());
    assert!(!ws.path().join("prepared").exists());
    let b_bytes = snapshot(&db);
    let out = stdout(exp(ws.path()).args(["clean", "--force"]));
    assert!(out.contains("saved experiments/run_b as saved/b-"), "{out}");
    assert!(!db.exists() && !dc.exists());
    // The saved ref gives the modified folder back exactly.
    let saved = json(exp(ws.path()).args(["list", "--json"]))["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["refs"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_string())
        .find(|r| r.starts_with("saved/b-"))
        .unwrap();
    exp(ws.path()).args(["checkout", &saved]).assert().success();
    assert_eq!(snapshot(&db), b_bytes);
}

#[test]
fn checkout_refuses_to_overwrite_unsaved_changes_without_force() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    fs::write(d.join("run.json"), "{\"edited\": true}").unwrap();
    exp(ws.path())
        .args(["checkout", "r1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("run.json"))
        .stderr(predicate::str::contains("hint: commit the changes first"));
    assert_eq!(fs::read_to_string(d.join("run.json")).unwrap(), "{\"edited\": true}");
    exp(ws.path()).args(["checkout", "r1", "--force"]).assert().success();
    assert!(fs::read_to_string(d.join("run.json")).unwrap().contains("\"status\":\"complete\""));
}

#[test]
fn checkout_refuses_a_tree_whose_names_escape_the_folder() {
    use exp::store::{Mode, Object, Tree, TreeEntry};
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    // Forge a tree with a `..` entry (Tree::new refuses it, so build the struct by hand).
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let blob = repo.odb.write(&Object::Blob(b"pwned".to_vec())).unwrap();
    let evil = Tree { entries: vec![TreeEntry { name: "..".into(), mode: Mode::File, id: blob }] };
    let tree = repo.odb.write(&Object::Tree(evil)).unwrap();
    let (c, mut commit) = repo.resolve_commit("r1").unwrap();
    commit.tree = tree;
    commit.parents = vec![c];
    let evil_commit = repo.odb.write_commit(&commit).unwrap();
    repo.refs
        .update(
            &exp::store::RefName::run("evil").unwrap(),
            evil_commit,
            exp::store::Expect::Absent,
            "test",
        )
        .unwrap();
    let to = ws.path().join("out/inner");
    exp(ws.path())
        .args(["checkout", "evil", "--to"])
        .arg(&to)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("corrupt"));
    assert!(!ws.path().join("out/..").join("pwned").exists());
    assert!(!ws.path().join("out").join("inner").join("..").is_file());
}

#[test]
fn tags_are_created_listed_refused_twice_and_deleted() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    exp(ws.path()).args(["tag", "baseline"]).assert().success();
    exp(ws.path())
        .args(["tag", "baseline", "r1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists"))
        .stderr(predicate::str::contains("exp tag -d baseline"));
    let out = stdout(exp(ws.path()).args(["tag", "-l"]));
    assert!(out.contains("baseline") && out.contains("r1"), "{out}");
    exp(ws.path()).args(["tag", "-d", "baseline"]).assert().success();
    exp(ws.path())
        .args(["tag", "-d", "baseline"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not exist"));
    exp(ws.path())
        .args(["tag", "bad name"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("hint:"));
}

#[test]
fn rm_keeps_objects_until_gc_after_the_grace_period() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let d = run_folder(ws.path(), "r2");
    fs::write(d.join("unique.txt"), "only in r2\n").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_r2"]).assert().success();
    let c = rev(ws.path(), "r2");
    fs::remove_dir_all(&d).unwrap();
    // HEAD moves back to r1 (r2's parent: lineage), so only r2's ref and reflog keep r2.
    exp(ws.path()).args(["checkout", "r1"]).assert().success();
    // The index still names the blobs; drop it so only refs and reflogs keep them.
    fs::remove_dir_all(ws.path().join(".exprepo/indexes")).unwrap();
    let out = stdout(exp(ws.path()).args(["rm", "r2"]));
    assert!(out.contains(&c) && out.contains("exp tag r2"), "{out}");
    exp(ws.path()).args(["show", "r2"]).assert().code(1);
    // Within the grace period gc keeps everything: the ref is recoverable.
    let g = json(exp(ws.path()).args(["gc", "--json"]));
    assert_eq!(g["removed"].as_array().unwrap().len(), 0);
    exp(ws.path()).args(["cat-object", "-t", &c]).assert().success().stdout("commit\n");
    // Once the objects and the deletion are older than the grace period (0 here), they go.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A dry run with no grace says what would go and deletes nothing.
    let g = json(exp(ws.path()).args(["gc", "--grace", "0", "--dry-run", "--json"]));
    assert!(g["removed"].as_array().unwrap().len() >= 4, "{g}");
    exp(ws.path()).args(["cat-object", "-t", &c]).assert().success();
    let g = json(exp(ws.path()).args(["gc", "--grace", "0", "--json"]));
    assert!(g["removed"].as_array().unwrap().len() >= 4, "{g}");
    exp(ws.path()).args(["cat-object", "-t", &c]).assert().code(1);
    exp(ws.path()).arg("fsck").assert().success();
}

#[test]
fn gc_keeps_everything_a_ref_reaches() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    fs::write(d.join("v2.txt"), "2").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let g = json(exp(ws.path()).args(["gc", "--grace", "0", "--json"]));
    assert_eq!(g["removed"].as_array().unwrap().len(), 0, "{g}");
    exp(ws.path()).args(["checkout", "r1~1", "--to", "old"]).assert().success();
    assert!(!ws.path().join("old/v2.txt").exists());
}

#[test]
fn a_flipped_byte_in_any_object_fails_fsck_and_reads_naming_the_object() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    exp(ws.path()).arg("fsck").assert().success().stdout(predicate::str::contains("ok"));
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let ids = repo.odb.iter_ids().unwrap();
    assert!(ids.len() >= 6);
    for id in ids {
        let path = repo.odb.path_of(&id);
        let good = fs::read(&path).unwrap();
        let mut bad = good.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x01;
        fs::write(&path, &bad).unwrap();
        common::assert_damage_is_named(ws.path(), &id.to_hex());
        fs::write(&path, &good).unwrap();
    }
    // And through a user command: a corrupt blob stops checkout, naming it.
    let blob = repo.lookup_path(&repo.resolve("r1").unwrap(), "run.json").unwrap().id;
    let path = repo.odb.path_of(&blob);
    let mut bad = fs::read(&path).unwrap();
    let n = bad.len() - 1;
    bad[n] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    exp(ws.path())
        .args(["checkout", "r1", "--to", "out"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(blob.to_hex()))
        .stderr(predicate::str::contains("hint: run `exp fsck`"));
}

#[test]
fn fsck_quick_checks_connectivity_without_rehashing() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let c = repo.resolve("r1").unwrap();
    let blob = repo.lookup_path(&c, "run.json").unwrap().id;
    let path = repo.odb.path_of(&blob);
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    // Damage past the header: --quick reads a blob's header (its kind), never its whole bytes.
    bad.push(0x40);
    fs::write(&path, &bad).unwrap();
    // --quick does not re-hash blobs; the full check does.
    exp(ws.path())
        .args(["fsck", "--quick"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(quick)"));
    exp(ws.path()).arg("fsck").assert().code(1).stdout(predicate::str::contains(blob.to_hex()));
    // A missing blob is a connectivity problem, which --quick finds.
    fs::remove_file(&path).unwrap();
    exp(ws.path())
        .args(["fsck", "--quick"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!("object {blob} is missing")));
    let out = exp(ws.path())
        .args(["fsck", "--quick", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["problems"][0]["object"], blob.to_hex());
}

#[test]
fn gc_keeps_blobs_the_index_names_after_their_run_is_removed() {
    let ws = workspace();
    run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let d = run_folder(ws.path(), "r2");
    exp(ws.path()).args(["commit", "experiments/run_r2"]).assert().success();
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let c = repo.resolve("r2").unwrap();
    let blob = repo.lookup_path(&c, "run.json").unwrap().id;
    // r2 follows r1 (lineage): with HEAD back on r1, removing r2's ref leaves r2 unreachable.
    exp(ws.path()).args(["checkout", "r1"]).assert().success();
    exp(ws.path()).args(["rm", "r2"]).assert().success();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    exp(ws.path()).args(["gc", "--grace", "0"]).assert().success();
    // The commit is gone; the blob of the file still on disk stays, because the index names it.
    exp(ws.path()).args(["cat-object", "-t", &c.to_hex()]).assert().code(1);
    exp(ws.path()).args(["cat-object", "-t", &blob.to_hex()]).assert().success().stdout("blob\n");
    assert!(d.join("run.json").exists());
    exp(ws.path()).arg("fsck").assert().success();
}

#[test]
fn a_stale_lock_left_by_a_killed_process_is_reported_with_how_to_fix_it() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let lock = ws.path().join(".exprepo/refs/runs/r1.lock");
    fs::write(&lock, "").unwrap();
    fs::write(d.join("new.txt"), "x").unwrap();
    exp(ws.path())
        .args(["commit", "experiments/run_r1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("runs/r1 is locked"))
        .stderr(predicate::str::contains(format!("rm {}", lock.display())));
    exp(ws.path()).arg("fsck").assert().success().stdout(predicate::str::contains("r1.lock"));
    fs::remove_file(&lock).unwrap();
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
}

#[test]
fn two_concurrent_committers_both_succeed_or_one_says_locked() {
    let ws = workspace();
    let a = run_folder(ws.path(), "r1");
    let b = ws.path().join("experiments/copy");
    fs::create_dir_all(&b).unwrap();
    for i in 0..200 {
        fs::write(a.join(format!("f{i}.csv")), format!("{i},a\n").repeat(200)).unwrap();
        fs::write(b.join(format!("f{i}.csv")), format!("{i},b\n").repeat(200)).unwrap();
    }
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    fs::write(a.join("changed.txt"), "a").unwrap();
    let spawn =
        |dir: &str| exp_process(ws.path()).args(["commit", dir, "--run", "r1"]).output().unwrap();
    let (oa, ob) = std::thread::scope(|s| {
        let ta = s.spawn(|| spawn("experiments/run_r1"));
        let tb = s.spawn(|| spawn("experiments/copy"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    for o in [&oa, &ob] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() || err.contains("locked"), "unexpected failure: {err}");
    }
    exp(ws.path()).arg("fsck").assert().success();
    // Every successful commit is in runs/r1's history.
    let log = json(exp(ws.path()).args(["log", "r1", "--json"]))["commits"].clone();
    let successes = [&oa, &ob].iter().filter(|o| o.status.success()).count();
    assert_eq!(log.as_array().unwrap().len(), 1 + successes);
}

#[test]
fn cat_object_and_hash_object_agree() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    let file = d.join("sim-demo-ops-t0/results/predictions.csv");
    let id = stdout(exp(ws.path()).arg("hash-object").arg(&file)).trim().to_string();
    assert_eq!(id.len(), 64);
    exp(ws.path()).args(["cat-object", "-t", &id]).assert().success().stdout("blob\n");
    exp(ws.path())
        .args(["cat-object", "-s", &id])
        .assert()
        .success()
        .stdout(format!("{}\n", fs::metadata(&file).unwrap().len()));
    exp(ws.path())
        .args(["cat-object", &id])
        .assert()
        .success()
        .stdout(fs::read_to_string(&file).unwrap());
    let out = stdout(exp(ws.path()).args(["cat-object", "-p", "r1"]));
    assert!(out.contains("\"run_id\": \"r1\""), "{out}");
    let new = ws.path().join("new.txt");
    fs::write(&new, "never stored").unwrap();
    let nid = stdout(exp(ws.path()).arg("hash-object").arg(&new)).trim().to_string();
    exp(ws.path()).args(["cat-object", &nid]).assert().code(1);
    let wid = stdout(exp(ws.path()).args(["hash-object", "-w"]).arg(&new)).trim().to_string();
    assert_eq!(wid, nid);
    exp(ws.path()).args(["cat-object", &nid]).assert().success().stdout("never stored");
}

#[test]
fn every_store_command_has_help_with_an_example() {
    let ws = tempfile::tempdir().unwrap();
    for cmd in [
        "init",
        "commit",
        "archive",
        "log",
        "list",
        "show",
        "checkout",
        "status",
        "clean",
        "tag",
        "rm",
        "fsck",
        "gc",
        "cat-object",
        "hash-object",
    ] {
        exp(ws.path())
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
}

/// A workspace whose config puts run folders in `runs/` and prepared datasets in `cache/`; the
/// rest of the config is half-edited (its dataset is gone), which status and clean never read.
fn workspace_with_paths(paths: &str) -> TempDir {
    let ws = workspace();
    fs::create_dir_all(ws.path().join("config")).unwrap();
    fs::write(
        ws.path().join("config/eval_config.yaml"),
        format!("paths: {paths}\ndatasets:\n  - {{name: d, path: data/gone.jsonl}}\nmodels: []\n"),
    )
    .unwrap();
    ws
}

/// A committed-or-not run folder at `dir` (any folder, in the workspace or not).
fn plain_run(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("run.json"), r#"{"format":1,"status":"complete"}"#).unwrap();
}

#[test]
fn status_and_clean_look_where_the_default_config_puts_runs_and_prepared_data() {
    let ws = workspace_with_paths("{experiments_dir: runs, prepared_dir: cache}");
    plain_run(&ws.path().join("runs/run_a"));
    plain_run(&ws.path().join("runs/run_b"));
    // Not where this workspace keeps runs: neither listed nor removed.
    plain_run(&ws.path().join("experiments/run_x"));
    fs::create_dir_all(ws.path().join("cache")).unwrap();
    fs::write(ws.path().join("cache/d.jsonl"), "{}\n").unwrap();
    fs::create_dir_all(ws.path().join("prepared")).unwrap();
    exp(ws.path()).args(["commit", "runs/run_a"]).assert().success();
    // `commit --run ID` looks there too, then in experiments/.
    exp(ws.path()).args(["commit", "--run", "b", "--dry-run"]).assert().success();
    exp(ws.path())
        .args(["commit", "--run", "nope", "--dry-run"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("runs/run_nope"));
    let st = json(exp(ws.path()).args(["status", "--json"]))["runs"].clone();
    let states: Vec<(&str, &str)> = st
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("runs/run_a", "clean"), ("runs/run_b", "untracked")]);
    // From a subfolder too, as `exp run` finds the config.
    let out = stdout(exp(&ws.path().join("runs")).arg("status"));
    assert!(out.contains("runs/run_a") && !out.contains("run_x"), "{out}");
    let out = stdout(exp(ws.path()).args(["clean", "--clean-prepared"]));
    assert!(out.contains("removed runs/run_a") && out.contains("removed cache/"), "{out}");
    assert!(out.contains("kept runs/run_b: never committed"), "{out}");
    assert!(!ws.path().join("runs/run_a").exists() && !ws.path().join("cache").exists());
    assert!(ws.path().join("experiments/run_x").exists() && ws.path().join("prepared").exists());
    // The removed run comes back where it was committed from.
    exp(ws.path()).args(["checkout", "a"]).assert().success();
    assert!(ws.path().join("runs/run_a/run.json").is_file());
}

#[test]
fn status_and_clean_take_a_config_flag_and_runs_outside_the_workspace() {
    let ws = workspace();
    let elsewhere = tempfile::tempdir().unwrap();
    let runs = elsewhere.path().join("team runs");
    fs::write(
        ws.path().join("other.yaml"),
        format!("paths:\n  experiments_dir: {}\n", runs.display()),
    )
    .unwrap();
    plain_run(&runs.join("run_far"));
    plain_run(&ws.path().join("experiments/run_near"));
    exp(ws.path()).arg("commit").arg(runs.join("run_far")).assert().success();
    // Without the flag: the workspace has no config, so experiments/ it is.
    let st = json(exp(ws.path()).args(["status", "--json"]))["runs"].clone();
    assert_eq!(st[0]["path"], "experiments/run_near");
    assert_eq!(st.as_array().unwrap().len(), 1);
    let st =
        json(exp(ws.path()).args(["status", "--json", "--config", "other.yaml"]))["runs"].clone();
    assert_eq!(st[0]["path"], runs.join("run_far").display().to_string());
    assert_eq!(st[0]["state"], "clean");
    let out = stdout(exp(ws.path()).args(["clean", "-c", "other.yaml"]));
    assert!(out.contains(&format!("removed {}", runs.join("run_far").display())), "{out}");
    assert!(!runs.join("run_far").exists() && ws.path().join("experiments/run_near").exists());
    let out = stdout(exp(ws.path()).args(["status", "--config", "other.yaml"]));
    assert!(out.contains(&format!("no run folders in {}/", runs.display())), "{out}");
}

#[test]
fn status_and_clean_refuse_a_missing_config_and_folders_clean_must_not_delete() {
    let ws = workspace();
    for cmd in ["status", "clean"] {
        exp(ws.path())
            .args([cmd, "--config", "nope.yaml"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("cannot read config nope.yaml"))
            .stderr(predicate::str::contains("hint: pass an existing file with --config"));
    }
    // `--clean-prepared` deletes prepared_dir: a config where it holds raw data is refused.
    let ws = workspace_with_paths("{data_dir: data, prepared_dir: data}");
    fs::create_dir_all(ws.path().join("data")).unwrap();
    fs::write(ws.path().join("data/raw.jsonl"), "{}\n").unwrap();
    exp(ws.path())
        .args(["clean", "--clean-prepared"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("`paths.prepared_dir` `data` holds data_dir `data`"))
        .stderr(predicate::str::contains("line 1"))
        .stderr(predicate::str::contains("hint: give prepared_dir a folder of its own"));
    assert!(ws.path().join("data/raw.jsonl").is_file());
    let ws = workspace_with_paths("{experiments_dir: .}");
    exp(ws.path())
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is the workspace itself"));
}

#[test]
fn the_lock_of_a_killed_run_is_never_committed() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1");
    // What `exp run` killed with SIGKILL leaves at the top of its run folder.
    fs::write(d.join(".exp-run.lock"), "4242").unwrap();
    // Only that one: a file of the same name deeper down is the run's own data.
    fs::write(d.join("sim-demo-ops-t0/.exp-run.lock"), "data").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    exp(ws.path()).args(["checkout", "r1", "--to", "out"]).assert().success();
    assert!(!ws.path().join("out/.exp-run.lock").exists());
    assert!(ws.path().join("out/sim-demo-ops-t0/.exp-run.lock").is_file());
    let st = json(exp(ws.path()).args(["status", "--json"]))["runs"].clone();
    assert_eq!(st[0]["state"], "clean", "{st}");
}

#[test]
fn a_run_committed_from_outside_is_checked_out_where_the_config_keeps_runs() {
    let ws = workspace_with_paths("{experiments_dir: runs}");
    let outside = tempfile::tempdir().unwrap();
    plain_run(&outside.path().join("run_ext"));
    exp(ws.path())
        .args(["commit", outside.path().join("run_ext").to_str().unwrap()])
        .assert()
        .success();
    exp(ws.path()).args(["checkout", "ext"]).assert().success();
    assert!(ws.path().join("runs/run_ext/run.json").is_file());
    assert!(!ws.path().join("experiments").exists());
}
