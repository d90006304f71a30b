//! Black-box tests of packs: a run of many files is committed into one pack, which reads back
//! byte-exact, is checked by fsck, and is rewritten by gc without what nothing reaches.
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::exp;
use predicates::prelude::*;
use tempfile::TempDir;

fn workspace() -> TempDir {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path()).arg("init").assert().success();
    ws
}

/// A run folder of `n` small files in a few folders (content depends on `seed`), plus one file
/// above the whole-file limit, which is stored loose.
fn many_files(ws: &Path, id: &str, n: usize, seed: &str) -> PathBuf {
    let d = ws.join("experiments").join(format!("run_{id}"));
    for i in 0..n {
        let sub = d.join(format!("trial-{}/results", i % 4));
        fs::create_dir_all(&sub).unwrap();
        let line = format!("{seed},{i},prediction {i}\n");
        fs::write(sub.join(format!("part-{i:03}.csv")), line.repeat(200 + i)).unwrap();
    }
    let big: Vec<u8> =
        (0..17u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    fs::write(d.join("big.bin"), big).unwrap();
    d
}

fn json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    serde_json::from_slice(&cmd.assert().success().get_output().stdout).unwrap()
}

/// Files in `.exprepo/objects/pack` with the given extension.
fn pack_files(ws: &Path, ext: &str) -> Vec<PathBuf> {
    let dir = ws.join(".exprepo/objects/pack");
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).filter(|p| p.extension().unwrap() == ext).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn loose_objects(ws: &Path) -> usize {
    let repo = exp::store::Repo::open(ws).unwrap();
    repo.odb.loose_ids().unwrap().len()
}

fn same_files(a: &Path, b: &Path) {
    let list = |d: &Path| {
        let mut v: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e);
                } else {
                    v.push((e.strip_prefix(d).unwrap().to_path_buf(), fs::read(&e).unwrap()));
                }
            }
        }
        v.sort();
        v
    };
    assert!(list(a) == list(b), "{} and {} differ", a.display(), b.display());
}

/// Flip one byte in the middle of object `id`'s stored bytes, wherever they are; returns
/// the file and its original bytes, to put back.
fn damage(ws: &Path, id: &exp::store::ObjectId) -> (PathBuf, Vec<u8>) {
    let repo = exp::store::Repo::open(ws).unwrap();
    let (path, offset, len) = repo.odb.stored_at(id).unwrap();
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[(offset + len / 2) as usize] ^= 0x01;
    fs::write(&path, &bad).unwrap();
    (path, good)
}

#[test]
fn a_run_of_many_files_goes_into_one_pack_and_round_trips_byte_exact() {
    let ws = workspace();
    let d = many_files(ws.path(), "p", 60, "a");
    let c = json(exp(ws.path()).args(["commit", "experiments/run_p", "--json"]));
    assert_eq!(c["files"], 61, "{c}");
    assert_eq!((pack_files(ws.path(), "pack").len(), pack_files(ws.path(), "idx").len()), (1, 1));
    // Loose: the large file and the commit; every small file and tree is in the pack.
    assert_eq!(loose_objects(ws.path()), 2);
    exp(ws.path()).args(["checkout", "p", "--to", "out"]).assert().success();
    same_files(&d, &ws.path().join("out"));
    exp(ws.path()).arg("fsck").assert().success().stdout(predicate::str::contains("ok"));
    // Objects in packs resolve by prefix like loose ones.
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let blob = repo.lookup_path(&repo.resolve("p").unwrap(), "trial-0/results/part-000.csv");
    let prefix = &blob.unwrap().id.to_hex()[..12];
    exp(ws.path()).args(["cat-object", "-t", prefix]).assert().success().stdout("blob\n");
    // An unchanged re-commit writes no pack; a change writes a small one.
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    assert_eq!(pack_files(ws.path(), "pack").len(), 1);
    fs::write(d.join("trial-1/results/part-001.csv"), "changed\n").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    assert_eq!(pack_files(ws.path(), "pack").len(), 2);
    exp(ws.path()).args(["checkout", "p~1", "--to", "old"]).assert().success();
    assert_ne!(fs::read(ws.path().join("old/trial-1/results/part-001.csv")).unwrap(), b"changed\n");
}

#[test]
fn a_flipped_byte_in_a_packed_object_is_named_by_fsck_and_by_reads() {
    let ws = workspace();
    many_files(ws.path(), "p", 40, "a");
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let blob = repo.lookup_path(&repo.resolve("p").unwrap(), "trial-2/results/part-002.csv");
    let id = blob.unwrap().id;
    let (path, good) = damage(ws.path(), &id);
    assert_eq!(path.extension().unwrap(), "pack");
    common::assert_damage_is_named(ws.path(), &id.to_hex());
    exp(ws.path())
        .args(["cat-object", &id.to_hex()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(".pack"));
    exp(ws.path())
        .args(["checkout", "p", "--to", "out"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(id.to_hex()));
    fs::write(&path, good).unwrap();
    exp(ws.path()).arg("fsck").assert().success();
}

#[test]
fn a_damaged_pack_index_is_reported_by_fsck_with_a_hint() {
    let ws = workspace();
    many_files(ws.path(), "p", 40, "a");
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    let idx = &pack_files(ws.path(), "idx")[0];
    let mut bytes = fs::read(idx).unwrap();
    bytes[20] ^= 0xff;
    fs::write(idx, bytes).unwrap();
    exp(ws.path())
        .arg("fsck")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("is damaged: checksum mismatch"))
        .stdout(predicate::str::contains(idx.file_name().unwrap().to_str().unwrap()))
        .stderr(predicate::str::contains("hint:"));
}

#[test]
fn gc_rewrites_a_pack_without_the_objects_of_a_removed_run() {
    let ws = workspace();
    // A first run both a and b descend from (lineage: a run's first commit follows HEAD), so
    // that b does not descend from a and removing a's ref leaves a unreachable.
    let base = ws.path().join("experiments/run_base");
    fs::create_dir_all(&base).unwrap();
    fs::write(base.join("notes.txt"), "base\n").unwrap();
    exp(ws.path()).args(["commit", "experiments/run_base"]).assert().success();
    let base_packs = pack_files(ws.path(), "pack");
    many_files(ws.path(), "a", 40, "a");
    exp(ws.path()).args(["commit", "experiments/run_a"]).assert().success();
    let a_pack = pack_files(ws.path(), "pack").into_iter().find(|p| !base_packs.contains(p));
    let a_pack = a_pack.expect("a's commit wrote a pack");
    exp(ws.path()).args(["checkout", "base", "--to", "base-copy"]).assert().success();
    // Run b shares half of a's files, so a's pack holds objects b still needs.
    let b = ws.path().join("experiments/run_b");
    fs::create_dir_all(&b).unwrap();
    for i in (0..40).step_by(2) {
        let name = format!("trial-{}/results/part-{i:03}.csv", i % 4);
        fs::create_dir_all(b.join(&name).parent().unwrap()).unwrap();
        fs::copy(ws.path().join("experiments/run_a").join(&name), b.join(&name)).unwrap();
    }
    for i in 0..40 {
        fs::write(b.join(format!("own-{i}.txt")), format!("b {i}\n")).unwrap();
    }
    exp(ws.path()).args(["commit", "experiments/run_b"]).assert().success();
    assert_eq!(pack_files(ws.path(), "pack").len(), base_packs.len() + 2, "a's and b's packs");
    fs::remove_dir_all(ws.path().join("experiments")).unwrap();
    fs::remove_dir_all(ws.path().join(".exprepo/indexes")).unwrap();
    exp(ws.path()).args(["rm", "a"]).assert().success();
    // Within the grace period nothing goes.
    let g = json(exp(ws.path()).args(["gc", "--json"]));
    assert_eq!(g["removed"].as_array().unwrap().len(), 0, "{g}");
    // Reflog entries and packs must be older than the (zero) grace period.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let g = json(exp(ws.path()).args(["gc", "--grace", "0", "--json"]));
    // a's 20 unshared files, its trees and commit, and its large file (loose).
    assert!(g["removed"].as_array().unwrap().len() >= 22, "{g}");
    let packs = pack_files(ws.path(), "pack");
    assert_eq!(
        packs.len(),
        base_packs.len() + 2,
        "a's pack is replaced by one holding what b needs"
    );
    assert!(!packs.contains(&a_pack));
    exp(ws.path()).arg("fsck").assert().success();
    exp(ws.path()).args(["checkout", "b", "--to", "out"]).assert().success();
    assert_eq!(fs::read(ws.path().join("out/own-3.txt")).unwrap(), b"b 3\n");
    assert!(ws.path().join("out/trial-2/results/part-002.csv").is_file());
    exp(ws.path()).args(["show", "a"]).assert().code(1);
}

#[test]
fn a_pack_whose_index_never_arrived_is_ignored_and_removed_by_gc() {
    let ws = workspace();
    many_files(ws.path(), "p", 40, "a");
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    // What a crash between writing a pack and its index leaves behind.
    let orphan = ws.path().join(".exprepo/objects/pack/pack-feed.pack");
    fs::write(&orphan, b"EXPPACK1 half-written").unwrap();
    let f = json(exp(ws.path()).args(["fsck", "--json"]));
    assert_eq!(f["temp_files"], 1, "{f}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let g = json(exp(ws.path()).args(["gc", "--grace", "0", "--json"]));
    assert_eq!(g["temp_files_removed"], 1, "{g}");
    assert!(!orphan.exists());
    exp(ws.path()).arg("fsck").assert().success();
}

#[test]
fn a_format_1_store_is_upgraded_to_2_when_opened() {
    let ws = workspace();
    let format = ws.path().join(".exprepo/format");
    assert_eq!(fs::read_to_string(&format).unwrap(), "2\n");
    fs::write(&format, "1\n").unwrap();
    exp(ws.path()).arg("log").assert().success();
    assert_eq!(fs::read_to_string(&format).unwrap(), "2\n");
    fs::write(&format, "9\n").unwrap();
    exp(ws.path())
        .arg("log")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("format 9").and(predicate::str::contains("hint:")));
}

#[test]
fn gc_merges_many_packs_into_one_and_keeps_every_object() {
    let ws = workspace();
    let d = many_files(ws.path(), "p", 40, "a");
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    // Each commit of the 40-file run writes a small pack of what changed.
    for i in 0..9 {
        fs::write(d.join("trial-0/results/part-000.csv"), format!("version {i}\n")).unwrap();
        exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    }
    assert_eq!(pack_files(ws.path(), "pack").len(), 10);
    let dry = json(exp(ws.path()).args(["gc", "--dry-run", "--json"]));
    assert_eq!(dry["packs_merged"], 10, "{dry}");
    assert_eq!(pack_files(ws.path(), "pack").len(), 10, "a dry run changes nothing");
    let out = exp(ws.path()).arg("gc").assert().success().get_output().stdout.clone();
    assert!(String::from_utf8_lossy(&out).contains("merged 10 packs into one"));
    assert_eq!((pack_files(ws.path(), "pack").len(), pack_files(ws.path(), "idx").len()), (1, 1));
    exp(ws.path()).arg("fsck").assert().success();
    exp(ws.path()).args(["checkout", "p~9", "--to", "first"]).assert().success();
    let first = fs::read(ws.path().join("first/trial-0/results/part-000.csv")).unwrap();
    assert!(first.starts_with(b"a,0,"));
    exp(ws.path()).args(["checkout", "p~4", "--to", "middle"]).assert().success();
    let middle = fs::read(ws.path().join("middle/trial-0/results/part-000.csv")).unwrap();
    assert_eq!(middle, b"version 4\n");
}

#[test]
fn a_truncated_pack_fails_fsck_naming_the_objects_it_lost() {
    let ws = workspace();
    many_files(ws.path(), "p", 40, "a");
    exp(ws.path()).args(["commit", "experiments/run_p"]).assert().success();
    let pack = &pack_files(ws.path(), "pack")[0];
    // The object stored last in the pack loses its tail, as after a disk error.
    let repo = exp::store::Repo::open(ws.path()).unwrap();
    let last = repo
        .odb
        .iter_ids()
        .unwrap()
        .into_iter()
        .filter_map(|id| repo.odb.stored_at(&id).ok().map(|(path, offset, _)| (offset, path, id)))
        .filter(|(_, path, _)| path == pack)
        .max()
        .unwrap()
        .2;
    let len = fs::metadata(pack).unwrap().len();
    fs::OpenOptions::new().write(true).open(pack).unwrap().set_len(len - 3).unwrap();
    common::assert_damage_is_named(ws.path(), &last.to_hex());
}

#[test]
fn gc_moves_many_loose_objects_into_a_pack() {
    let ws = workspace();
    // Runs of fewer than 32 files are stored loose, one file per object.
    for r in 0..12 {
        let d = ws.path().join(format!("experiments/run_s{r}"));
        fs::create_dir_all(&d).unwrap();
        for i in 0..25 {
            fs::write(d.join(format!("f{i}.txt")), format!("run {r} file {i}\n")).unwrap();
        }
        exp(ws.path()).args(["commit", &format!("experiments/run_s{r}")]).assert().success();
    }
    let loose = loose_objects(ws.path());
    assert!(loose > 256, "{loose} loose objects");
    assert!(pack_files(ws.path(), "pack").is_empty());
    let g = json(exp(ws.path()).args(["gc", "--json"]));
    assert_eq!(g["loose_packed"], loose, "{g}");
    assert_eq!(loose_objects(ws.path()), 0);
    assert_eq!(pack_files(ws.path(), "pack").len(), 1);
    exp(ws.path()).arg("fsck").assert().success();
    exp(ws.path()).args(["checkout", "s7", "--to", "out"]).assert().success();
    assert_eq!(fs::read(ws.path().join("out/f3.txt")).unwrap(), b"run 7 file 3\n");
}
