//! Black-box tests of the store's trust boundaries (issue 10): what a forged commit, tree, pack
//! or index can make `exp` do (nothing outside the run's folder, no crash), how gc and
//! concurrent commands and readers get along, and how damage is found, kept and repaired.
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use common::{exp, exp_process};
use exp::store::odb::StageTo;
use exp::store::{Commit, Expect, Mode, Object, ObjectId, RefName, Repo, Tree, TreeEntry};
use predicates::prelude::*;
use tempfile::TempDir;

fn workspace() -> TempDir {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path()).arg("init").assert().success();
    ws
}

/// `experiments/run_<id>` with `n` files (a pack from 32 on) whose content depends on `seed`.
fn run_folder(ws: &Path, id: &str, n: usize, seed: &str) -> PathBuf {
    let d = ws.join("experiments").join(format!("run_{id}"));
    fs::create_dir_all(d.join("results")).unwrap();
    fs::write(d.join("run.json"), format!(r#"{{"run_id":"{id}","status":"complete"}}"#)).unwrap();
    for i in 1..n {
        let line = format!("{seed},{i},prediction {i}\n");
        fs::write(d.join(format!("results/part-{i:03}.csv")), line.repeat(50 + i)).unwrap();
    }
    d
}

fn commit(ws: &Path, id: &str) {
    exp(ws).args(["commit", &format!("experiments/run_{id}")]).assert().success();
}

fn json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    serde_json::from_slice(&cmd.assert().success().get_output().stdout).unwrap()
}

/// A commit like `base` (the tree and run id changed) under ref `runs/<name>`.
fn forge(repo: &Repo, base: &str, name: &str, edit: impl FnOnce(&mut Commit)) -> ObjectId {
    let (_, mut c) = repo.resolve_commit(base).unwrap();
    c.parents = vec![];
    edit(&mut c);
    let id = repo.odb.write_commit(&c).unwrap();
    repo.refs
        .update(&RefName::new(&format!("runs/{name}")).unwrap(), id, Expect::Any, "forged")
        .unwrap();
    id
}

/// A tree written as it is, names unchecked (what a forger sends).
fn raw_tree(repo: &Repo, entries: Vec<TreeEntry>) -> ObjectId {
    repo.odb.write(&Object::Tree(Tree { entries })).unwrap()
}

fn entry(name: &str, mode: Mode, id: ObjectId) -> TreeEntry {
    TreeEntry { name: name.into(), mode, id }
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

// Finding 1: a forged commit steers checkout

#[test]
fn a_forged_tree_holding_the_store_folder_cannot_rewrite_config_refs_or_format() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    let repo = Repo::open(ws.path()).unwrap();
    let evil_config = repo
        .odb
        .write(&Object::Blob(br#"{"remotes":{"origin":{"url":"/evil"}}}"#.to_vec()))
        .unwrap();
    let ref_blob =
        repo.odb.write(&Object::Blob(format!("{}\n", "ab".repeat(32)).into_bytes())).unwrap();
    let format = repo.odb.write(&Object::Blob(b"9\n".to_vec())).unwrap();
    let runs = raw_tree(&repo, vec![entry("victim", Mode::File, ref_blob)]);
    let refs = raw_tree(&repo, vec![entry("runs", Mode::Tree, runs)]);
    let store = raw_tree(
        &repo,
        vec![
            entry("config", Mode::File, evil_config),
            entry("format", Mode::File, format),
            entry("refs", Mode::Tree, refs),
        ],
    );
    let top = raw_tree(&repo, vec![entry(".exprepo", Mode::Tree, store)]);
    forge(&repo, "r1", "x", |c| {
        c.tree = top;
        c.run_id = "x".into();
        c.path = Some(".".into());
    });
    let before = files(&ws.path().join(".exprepo/refs"));
    for force in [false, true] {
        let mut cmd = exp(ws.path());
        cmd.args(["checkout", "x"]);
        if force {
            cmd.arg("--force");
        }
        cmd.assert()
            .code(1)
            .stderr(predicate::str::contains(".exprepo"))
            .stderr(predicate::str::contains("hint:"));
    }
    assert!(!ws.path().join(".exprepo/config").exists(), "the origin URL was written");
    assert!(!ws.path().join(".exprepo/refs/runs/victim").exists(), "a ref was forged");
    assert_eq!(fs::read_to_string(ws.path().join(".exprepo/format")).unwrap(), "2\n");
    assert_eq!(files(&ws.path().join(".exprepo/refs")), before);
}

#[test]
fn a_forged_commit_path_never_chooses_where_checkout_writes_or_what_force_deletes() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    common::write_files(
        ws.path(),
        &[("config/eval_config.yaml", "models: []\n"), ("data/items.jsonl", "{}\n")],
    );
    let repo = Repo::open(ws.path()).unwrap();
    forge(&repo, "r1", "victim", |c| {
        c.run_id = "victim".into();
        c.path = Some(".".into());
    });
    exp(ws.path()).args(["checkout", "victim", "--force"]).assert().success();
    // The run went to its own folder; the workspace's own files are untouched.
    assert!(ws.path().join("experiments/run_victim/run.json").is_file());
    assert_eq!(
        fs::read_to_string(ws.path().join("config/eval_config.yaml")).unwrap(),
        "models: []\n"
    );
    assert_eq!(fs::read_to_string(ws.path().join("data/items.jsonl")).unwrap(), "{}\n");
    assert!(!ws.path().join("run.json").exists());
}

#[test]
fn a_run_id_that_climbs_out_of_the_workspace_is_refused_before_anything_is_written() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    let repo = Repo::open(ws.path()).unwrap();
    let name = format!("exp-escape-{}", std::process::id());
    let climbing = format!("x/../../../../{name}");
    forge(&repo, "r1", "evil", |c| {
        c.run_id = climbing.clone();
        c.path = None;
    });
    exp(ws.path())
        .args(["checkout", "evil"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot name a folder"))
        .stderr(predicate::str::contains("hint:"));
    assert!(!Path::new("/").join(&name).exists() && !Path::new("/tmp").join(&name).exists());
    assert!(!ws.path().join("experiments/run_x").exists());
    // Named somewhere safe, the same commit checks out.
    exp(ws.path()).args(["checkout", "evil", "--to", "out"]).assert().success();
    assert!(ws.path().join("out/run.json").is_file());
}

#[test]
fn checkout_never_writes_into_the_workspace_root_or_the_store_even_with_force() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    common::write_files(ws.path(), &[("config/eval_config.yaml", "mine\n")]);
    for to in [".", ".exprepo", ".exprepo/objects/x"] {
        exp(ws.path())
            .args(["checkout", "r1", "--force", "--to", to])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("or holds the store"))
            .stderr(predicate::str::contains("hint:"));
    }
    assert_eq!(fs::read_to_string(ws.path().join("config/eval_config.yaml")).unwrap(), "mine\n");
    assert!(!ws.path().join("run.json").exists());
    exp(ws.path()).arg("fsck").assert().success();
}

#[test]
fn force_replaces_only_the_folder_of_the_run_being_checked_out() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    common::write_files(ws.path(), &[("notes/todo.txt", "keep me\n"), ("notes/run.json", "{}\n")]);
    exp(ws.path())
        .args(["checkout", "r1", "--force", "--to", "notes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not the folder of run r1"))
        .stderr(predicate::str::contains("hint:"));
    assert_eq!(fs::read_to_string(ws.path().join("notes/todo.txt")).unwrap(), "keep me\n");
    // Its own folder (by name, or by its run.json) is replaced as asked.
    let d = ws.path().join("experiments/run_r1");
    fs::write(d.join("run.json"), "edited").unwrap();
    exp(ws.path()).args(["checkout", "r1", "--force"]).assert().success();
    assert!(fs::read_to_string(d.join("run.json")).unwrap().contains("complete"));
    exp(ws.path()).args(["checkout", "r1", "--to", "copy"]).assert().success();
    fs::write(ws.path().join("copy/extra.txt"), "unsaved").unwrap();
    exp(ws.path()).args(["checkout", "r1", "--force", "--to", "copy"]).assert().success();
    assert!(!ws.path().join("copy/extra.txt").exists());
}

#[test]
fn a_run_named_like_a_hex_prefix_resolves_to_the_run_not_the_object() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    let c1 =
        json(exp(ws.path()).args(["show", "r1", "--json"]))["id"].as_str().unwrap().to_string();
    let hex = &c1[..6];
    run_folder(ws.path(), hex, 3, "b");
    commit(ws.path(), hex);
    let shown = json(exp(ws.path()).args(["show", hex, "--json"]));
    assert_ne!(shown["id"].as_str().unwrap(), c1, "the run wins over the prefix of r1's commit");
    assert_eq!(
        shown["id"],
        json(exp(ws.path()).args(["show", &format!("runs/{hex}"), "--json"]))["id"]
    );
    exp(ws.path()).args(["checkout", hex, "--to", "out"]).assert().success();
    assert!(
        fs::read_to_string(ws.path().join("out/results/part-001.csv")).unwrap().starts_with("b,")
    );
    // A longer prefix names r1's commit as before.
    let longer = json(exp(ws.path()).args(["show", &c1[..10], "--json"]));
    assert_eq!(longer["id"].as_str().unwrap(), c1);
}

// Finding 2: commit racing gc, readers racing gc's pack merges

#[test]
fn commits_racing_gc_with_no_grace_period_never_lose_an_object() {
    let ws = workspace();
    run_folder(ws.path(), "small", 4, "s0");
    run_folder(ws.path(), "big", 40, "b0");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || runs < 3 {
                let out = exp_process(ws.path()).args(["gc", "--grace", "0s"]).output().unwrap();
                assert!(
                    out.status.success(),
                    "gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
        });
        for i in 0..12 {
            // New content each round: every commit writes new objects (loose, and a pack).
            run_folder(ws.path(), "small", 4, &format!("s{i}"));
            run_folder(ws.path(), "big", 40, &format!("b{i}"));
            for id in ["small", "big"] {
                let out = exp_process(ws.path())
                    .args(["commit", &format!("experiments/run_{id}")])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "commit failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        gc.join().unwrap();
    });
    exp(ws.path()).arg("fsck").assert().success();
    exp(ws.path()).args(["gc", "--grace", "0s"]).assert().success();
    exp(ws.path()).arg("fsck").assert().success();
    exp(ws.path()).args(["checkout", "big", "--to", "out"]).assert().success();
    assert!(
        fs::read_to_string(ws.path().join("out/results/part-007.csv")).unwrap().starts_with("b11,")
    );
}

/// Copies `src` to `dest` so that no reader sees it half-written.
fn install(src: &Path, dest: &Path) {
    let tmp = dest.with_extension("tmp-copy");
    fs::copy(src, &tmp).unwrap();
    fs::rename(&tmp, dest).unwrap();
}

#[test]
fn reads_during_gc_pack_merges_never_report_a_missing_object() {
    let ws = workspace();
    for r in 0..9 {
        run_folder(ws.path(), &format!("p{r}"), 40, &format!("p{r}"));
        commit(ws.path(), &format!("p{r}"));
    }
    let pack_dir = ws.path().join(".exprepo/objects/pack");
    let saved = tempfile::tempdir().unwrap();
    let mut packs: Vec<PathBuf> =
        fs::read_dir(&pack_dir).unwrap().map(|e| e.unwrap().path()).collect();
    packs.sort();
    assert_eq!(packs.len(), 18, "{packs:?}");
    for p in &packs {
        fs::copy(p, saved.path().join(p.file_name().unwrap())).unwrap();
    }
    let repo = Repo::open(ws.path()).unwrap();
    let c = repo.resolve("p4").unwrap();
    let blob = repo.lookup_path(&c, "results/part-017.csv").unwrap().id.to_hex();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || i < 3 {
                let to = format!("out{i}");
                let runs: [&[&str]; 3] =
                    [&["fsck"], &["checkout", "p4", "--to", &to], &["cat-object", &blob]];
                for args in runs {
                    let out = exp_process(ws.path()).args(args).output().unwrap();
                    assert!(
                        out.status.success(),
                        "{args:?} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                i += 1;
            }
            i
        });
        for _ in 0..8 {
            // Put the nine packs back beside the merged one (packs before their indexes, as
            // exp writes them): more than eight, so gc merges them all again.
            for ext in ["pack", "idx"] {
                for p in packs.iter().filter(|p| p.extension().unwrap() == ext) {
                    install(&saved.path().join(p.file_name().unwrap()), p);
                }
            }
            let g = json(exp(ws.path()).args(["gc", "--json"]));
            assert!(g["packs_merged"].as_u64().unwrap() >= 9, "{g}");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() >= 3);
    });
}

// Finding 3: a damaged object is found before clean deletes, and repaired by committing

/// Flips a byte in the middle of object `id`'s stored bytes (loose or packed).
fn damage(repo: &Repo, id: &ObjectId) {
    let (path, offset, len) = repo.odb.stored_at(id).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x20;
    fs::write(&path, bytes).unwrap();
}

fn damaged_blob_is_kept_then_repaired(files: usize) {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1", files, "a");
    commit(ws.path(), "r1");
    let good = fs::read(d.join("results/part-002.csv")).unwrap();
    let repo = Repo::open(ws.path()).unwrap();
    let blob = repo.lookup_path(&repo.resolve("r1").unwrap(), "results/part-002.csv").unwrap().id;
    damage(&repo, &blob);
    let st = json(exp(ws.path()).args(["status", "--json"]))["runs"].clone();
    assert_eq!(st[0]["state"], "damaged", "{st}");
    assert_eq!(st[0]["damaged"][0], "results/part-002.csv", "{st}");
    exp(ws.path())
        .arg("clean")
        .assert()
        .success()
        .stdout(predicate::str::contains("kept experiments/run_r1"));
    exp(ws.path()).args(["clean", "--force"]).assert().success();
    assert_eq!(
        fs::read(d.join("results/part-002.csv")).unwrap(),
        good,
        "clean deleted the only good copy"
    );
    // Committing the folder again stores a good copy in place of the bad one.
    exp(ws.path()).args(["commit", "experiments/run_r1"]).assert().success();
    exp(ws.path()).arg("fsck").assert().success();
    assert_eq!(json(exp(ws.path()).args(["status", "--json"]))["runs"][0]["state"], "clean");
    exp(ws.path()).arg("clean").assert().success();
    assert!(!d.exists());
    exp(ws.path()).args(["checkout", "r1"]).assert().success();
    assert_eq!(fs::read(d.join("results/part-002.csv")).unwrap(), good);
}

#[test]
fn a_damaged_loose_blob_keeps_its_folder_and_committing_again_repairs_it() {
    damaged_blob_is_kept_then_repaired(4);
}

#[test]
fn a_damaged_packed_blob_keeps_its_folder_and_committing_again_repairs_it() {
    damaged_blob_is_kept_then_repaired(40);
}

// Finding 4: a forged remote cannot crash exp

/// A run pushed to a folder remote; returns the remote's path.
fn pushed(ws: &Path, remote: &Path) {
    run_folder(ws, "r1", 40, "a");
    commit(ws, "r1");
    exp(ws).args(["remote", "add", "origin"]).arg(remote).assert().success();
    exp(ws).args(["push", "--all"]).assert().success();
}

#[test]
fn a_forged_index_entry_of_a_terabyte_is_an_error_naming_the_pack_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("a");
    fs::create_dir(&ws).unwrap();
    exp(&ws).arg("init").assert().success();
    let remote = tmp.path().join("remote");
    pushed(&ws, &remote);
    let index = fs::read_dir(remote.join("index")).unwrap().next().unwrap().unwrap().path();
    let mut entries = exp::store::pack::decode_index(&fs::read(&index).unwrap()).unwrap();
    for e in &mut entries {
        e.len = 1 << 40;
    }
    fs::write(&index, exp::store::pack::encode_index(&entries)).unwrap();
    let out = exp_process(tmp.path()).args(["clone"]).arg(&remote).arg("b").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("packs/") && stderr.contains("hint:"), "{stderr}");
}

#[test]
fn a_tree_nested_twenty_thousand_deep_is_refused_not_a_stack_overflow() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    let repo = Repo::open(ws.path()).unwrap();
    let blob = repo.odb.write(&Object::Blob(b"deep\n".to_vec())).unwrap();
    let pack = repo.odb.new_pack();
    let mut staged = Vec::new();
    let mut tree = Object::Tree(Tree { entries: vec![entry("f", Mode::File, blob)] });
    for _ in 0..20_000 {
        let s = repo.odb.stage_object(&tree, StageTo::Pack(&pack)).unwrap();
        tree = Object::Tree(Tree { entries: vec![entry("d", Mode::Tree, s.id)] });
        staged.push(s);
    }
    let top = repo.odb.stage_object(&tree, StageTo::Pack(&pack)).unwrap();
    let top_id = top.id;
    staged.push(top);
    repo.odb.publish(staged, Some(&pack)).unwrap();
    forge(&repo, "r1", "deep", |c| {
        c.tree = top_id;
        c.run_id = "deep".into();
    });
    exp(ws.path())
        .args(["checkout", "deep"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nested more than 256 deep"))
        .stderr(predicate::str::contains("hint:"));
    // A folder that deep on disk is refused by commit with the same words.
    let mut deep = ws.path().join("experiments/run_d");
    for _ in 0..300 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), "x").unwrap();
    exp(ws.path())
        .args(["commit", "experiments/run_d"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nested more than 256 deep"));
}

// Finding 5: a killed checkout's temp file

#[test]
fn a_killed_checkouts_temp_file_is_ignored_by_status_and_commit_and_removed_by_the_next_checkout() {
    let ws = workspace();
    let d = run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    // What a checkout killed while writing results/part-001.csv leaves beside it.
    let temp = d.join("results/.exp-tmp-Ab12Cd");
    fs::write(&temp, "half a fi").unwrap();
    assert_eq!(json(exp(ws.path()).args(["status", "--json"]))["runs"][0]["state"], "clean");
    let o = json(exp(ws.path()).args(["commit", "experiments/run_r1", "--json"]));
    assert_eq!(o["unchanged"], true, "{o}");
    exp(ws.path()).args(["checkout", "r1"]).assert().success();
    assert!(!temp.exists());
    exp(ws.path()).args(["show", "r1", "results/.exp-tmp-Ab12Cd"]).assert().code(1);
}

// Finding 6: folder remotes are shared with teammates

#[test]
fn files_of_a_store_and_a_folder_remote_are_group_readable_under_umask_022() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("a");
    run_folder(&ws, "r1", 40, "a");
    let remote = tmp.path().join("remote");
    let exp_bin = assert_cmd::cargo::cargo_bin("exp");
    let under_022 = |args: &[&str]| {
        let out = StdCommand::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$@\"")
            .arg("sh")
            .arg(&exp_bin)
            .args(args)
            .current_dir(&ws)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    under_022(&["init"]);
    under_022(&["commit", "experiments/run_r1"]);
    under_022(&["remote", "add", "origin", remote.to_str().unwrap()]);
    under_022(&["push", "--all"]);
    let mut checked = 0;
    for dir in [remote.clone(), ws.join(".exprepo/objects"), ws.join(".exprepo/refs")] {
        for (path, _) in files(&dir) {
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "{} is {mode:o}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
}

// Finding 7: fsck's blind spots

#[test]
fn fsck_names_a_pack_whose_magic_is_damaged() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 40, "a");
    commit(ws.path(), "r1");
    let pack = fs::read_dir(ws.path().join(".exprepo/objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().unwrap() == "pack")
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[0] = b'X';
    fs::write(&pack, bytes).unwrap();
    let name = pack.file_name().unwrap().to_string_lossy().to_string();
    exp(ws.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(&name).and(predicate::str::contains("magic")))
        .stderr(predicate::str::contains("hint:"));
}

#[test]
fn fsck_reports_a_ref_deleted_by_hand_or_replaced_by_a_folder() {
    let ws = workspace();
    for r in ["r1", "r2"] {
        run_folder(ws.path(), r, 3, r);
        commit(ws.path(), r);
    }
    // A second commit: the ref had a value before its last update, so a missing file is not an
    // interrupted creation (which fsck must accept after a crash) but a deletion by hand.
    run_folder(ws.path(), "r1", 4, "r1");
    commit(ws.path(), "r1");
    let refs = ws.path().join(".exprepo/refs/runs");
    fs::remove_file(refs.join("r1")).unwrap();
    exp(ws.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("ref runs/r1 is missing"));
    exp(ws.path()).args(["rm", "r2"]).assert().success();
    fs::create_dir_all(refs.join("r2/x")).unwrap();
    exp(ws.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("ref runs/r2 is a folder"))
        .stdout(predicate::str::contains("runs/r1"));
}

#[test]
fn fsck_names_a_ref_that_names_a_blob() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    let repo = Repo::open(ws.path()).unwrap();
    let blob = repo.lookup_path(&repo.resolve("r1").unwrap(), "run.json").unwrap().id;
    repo.refs.update(&RefName::run("b").unwrap(), blob, Expect::Absent, "forged").unwrap();
    exp(ws.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("is a blob, but ref runs/b needs a commit"));
}

#[test]
fn a_tree_entry_whose_mode_contradicts_its_object_fails_fsck_and_checkout() {
    let ws = workspace();
    run_folder(ws.path(), "r1", 3, "a");
    commit(ws.path(), "r1");
    let repo = Repo::open(ws.path()).unwrap();
    let c1 = repo.resolve("r1").unwrap();
    let tree = raw_tree(&repo, vec![entry("x.csv", Mode::File, c1)]);
    forge(&repo, "r1", "odd", |c| {
        c.tree = tree;
        c.run_id = "odd".into();
    });
    exp(ws.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("is a commit, but entry \"x.csv\""));
    exp(ws.path())
        .args(["checkout", "odd"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("x.csv: the tree says a file, but object"))
        .stderr(predicate::str::contains("hint:"));
    assert!(!ws.path().join("experiments/run_odd/x.csv").exists());
}

// Finding 8: a full disk during checkout names the file

/// A 1 MiB tmpfs at a fresh folder, unmounted when dropped; None when this is not root.
struct SmallDisk(TempDir);

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = StdCommand::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipped: mounting a tmpfs needs root");
        }
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_during_checkout_names_the_file_that_could_not_be_written() {
    let ws = workspace();
    let d = ws.path().join("experiments/run_r1");
    fs::create_dir_all(&d).unwrap();
    let noise: Vec<u8> =
        (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(d.join("big.bin"), noise).unwrap();
    commit(ws.path(), "r1");
    let Some(disk) = SmallDisk::mount() else { return };
    let to = disk.0.path().join("out");
    let out = exp_process(ws.path()).args(["checkout", "r1", "--to"]).arg(&to).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&to.join("big.bin").display().to_string()), "{stderr}");
    assert!(!stderr.contains(".exprepo"), "{stderr}");
}
