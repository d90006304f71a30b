//! Black-box tests of `exp remote`, `push`, `fetch`, `pull` and `clone`, against a folder remote
//! and against a real S3 server (s3s-fs) on 127.0.0.1.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

use common::s3::S3Server;
use common::{exp, exp_process};

/// Where a test's remote lives: a folder, or a prefix on the S3 server.
struct Where<'a> {
    url: String,
    dir: PathBuf,
    s3: Option<&'a S3Server>,
}

impl Where<'_> {
    fn cmd(&self, dir: &Path) -> Command {
        let mut c = exp(dir);
        c.envs(self.s3.map(|s| s.env()).unwrap_or_default());
        c
    }

    /// The same as `cmd`, as a plain process a test can start and wait for.
    fn spawnable(&self, dir: &Path) -> StdCommand {
        let mut c = exp_process(dir);
        c.envs(self.s3.map(|s| s.env()).unwrap_or_default());
        c
    }
}

fn folder_remote(tmp: &TempDir) -> Where<'static> {
    let dir = tmp.path().join("remote");
    Where { url: dir.display().to_string(), dir, s3: None }
}

fn s3_remote<'a>(s3: &'a S3Server, prefix: &str) -> Where<'a> {
    Where { url: s3.url(prefix), dir: s3.dir(prefix), s3: Some(s3) }
}

/// A workspace with a store.
fn workspace(tmp: &TempDir, name: &str) -> PathBuf {
    let ws = tmp.path().join(name);
    std::fs::create_dir_all(&ws).unwrap();
    exp(&ws).arg("init").assert().success();
    ws
}

/// Writes a run folder `experiments/run_<id>` with `files` and commits it.
fn commit_run<S: AsRef<str>>(ws: &Path, id: &str, files: &[(S, Vec<u8>)]) {
    let run = ws.join("experiments").join(format!("run_{id}"));
    std::fs::create_dir_all(&run).unwrap();
    let run_json = format!(
        r#"{{"format": 1, "run_id": "{id}", "status": "complete", "started_at": "2025-11-27T13:05:01Z",
            "finished_at": "2025-11-27T13:06:01Z", "trials": []}}"#
    );
    std::fs::write(run.join("run.json"), run_json).unwrap();
    for (path, bytes) in files {
        let p = run.join(path.as_ref());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    exp(ws).arg("commit").arg(&run).args(["-m", "test run"]).assert().success();
}

/// Bytes that do not compress, so pack sizes are predictable.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sample_files(seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("trial-a/results/metrics.json", format!("{{\"seed\": {seed}}}").into_bytes()),
        ("trial-a/responses/control/part-0000.jsonl", noise(seed, 20_000)),
        ("trial-a/responses/treatment/part-0000.jsonl", noise(seed + 1, 20_000)),
        ("trial-b/reports/report.md", b"# report\n".to_vec()),
    ]
}

/// 40 small files: enough for `exp commit` to write them into a pack.
fn many_files() -> Vec<(String, Vec<u8>)> {
    (0..40u64)
        .map(|i| (format!("trial-{}/part-{i:02}.jsonl", i % 3), noise(100 + i, 500)))
        .collect()
}

fn json_of(out: &[u8]) -> Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn rev(ws: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(ws.join(".exprepo/refs").join(name)).ok().map(|s| s.trim().to_string())
}

fn remote_ref(r: &Where, name: &str) -> Option<String> {
    std::fs::read_to_string(r.dir.join("refs").join(name)).ok().map(|s| s.trim().to_string())
}

fn files_under(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// exp remote

#[test]
fn remote_add_lists_with_urls_and_remove_forgets_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(&tmp, "ws");
    exp(&ws).args(["remote", "add", "origin", "../shared"]).assert().success();
    exp(&ws).args(["remote", "add", "cloud", "s3://team-bucket/exp"]).assert().success();
    exp(&ws).args(["remote"]).assert().success().stdout(predicate::eq("cloud\norigin\n"));
    let shared = tmp.path().join("shared").display().to_string();
    exp(&ws)
        .args(["remote", "-v"])
        .assert()
        .success()
        .stdout(predicate::str::contains(shared.as_str()))
        .stdout(predicate::str::contains("s3://team-bucket/exp"));
    exp(&ws).args(["remote", "remove", "cloud"]).assert().success();
    let out = exp(&ws).args(["remote", "--json"]).output().unwrap();
    let list = json_of(&out.stdout)["remotes"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "origin");
    assert_eq!(list[0]["url"], shared.as_str());
}

#[test]
fn remote_errors_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(&tmp, "ws");
    exp(&ws).args(["remote", "add", "origin", "/srv/exp"]).assert().success();
    exp(&ws)
        .args(["remote", "add", "origin", "/elsewhere"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("remote \"origin\" already exists"))
        .stderr(predicate::str::contains("hint: pick another name, or remove the old one first"));
    exp(&ws)
        .args(["remote", "add", "web", "https://example.com/exp"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad remote URL"))
        .stderr(predicate::str::contains("hint: use a folder"));
    exp(&ws)
        .args(["remote", "add", "a/b", "/srv/x"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad remote name"));
    exp(&ws)
        .args(["remote", "remove", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no remote named \"nope\" (known: origin)"))
        .stderr(predicate::str::contains("hint: `exp remote -v` lists remotes"));
    exp(&ws)
        .args(["fetch", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no remote named \"nope\""));
}

#[test]
fn commands_without_a_remote_or_a_run_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(&tmp, "ws");
    exp(&ws)
        .arg("push")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no remote is configured"))
        .stderr(predicate::str::contains("hint: `exp remote -v` lists remotes; add one"));
    let remote = tmp.path().join("remote");
    exp(&ws).args(["remote", "add", "origin"]).arg(&remote).assert().success();
    exp(&ws)
        .arg("push")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing to push"))
        .stderr(predicate::str::contains("hint: name what to push"));
    exp(&ws)
        .args(["push", "origin", "no-such-run"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no-such-run not in this store"));
    // Nobody has pushed here: it is not a remote yet.
    exp(&ws)
        .arg("fetch")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not an exp remote"))
        .stderr(predicate::str::contains("hint: check the URL"));
    let target = tmp.path().join("target");
    exp(tmp.path())
        .arg("clone")
        .arg(&remote)
        .arg(&target)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not an exp remote"));
    assert!(!target.exists(), "a failed clone leaves no folder behind");
}

#[test]
fn s3_without_credentials_asks_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = workspace(&tmp, "ws");
    commit_run(&ws, "r1", &sample_files(1));
    exp(&ws).args(["remote", "add", "origin", "s3://team/exp"]).assert().success();
    exp(&ws)
        .args(["push", "--all"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no S3 credentials (AWS_ACCESS_KEY_ID is not set)"))
        .stderr(predicate::str::contains("hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"));
}

// ---------------------------------------------------------------------------------------------
// push, clone, fetch, pull: the same scenario against both kinds of remote

fn push_clone_round_trip(r: &Where, tmp: &TempDir) {
    let a = workspace(tmp, "alice");
    commit_run(&a, "r1", &sample_files(1));
    commit_run(&a, "r2", &sample_files(2));
    // A run of many files is committed into a local pack: push reads packed objects.
    commit_run(&a, "wide", &many_files());
    assert!(!files_under(&a, ".exprepo/objects/pack").is_empty());
    exp(&a).args(["tag", "baseline", "r1"]).assert().success();
    exp(&a).args(["remote", "add", "origin", &r.url]).assert().success();

    let out = r.cmd(&a).args(["push", "--all", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out.stdout);
    let statuses: Vec<_> =
        report["refs"].as_array().unwrap().iter().map(|u| u["status"].clone()).collect();
    assert_eq!(statuses, vec!["created"; 4], "{report}");
    assert!(report["transfer"]["objects"].as_u64().unwrap() >= 10);
    assert_eq!(remote_ref(r, "runs/r1"), rev(&a, "runs/r1"));
    assert_eq!(remote_ref(r, "tags/baseline"), rev(&a, "runs/r1"));
    // Pushed refs are mirrored as remote-tracking refs.
    assert_eq!(rev(&a, "remotes/origin/runs/r2"), rev(&a, "runs/r2"));

    // Up to date: a handful of requests, no object sent.
    let out = r.cmd(&a).args(["push", "--all", "--json"]).output().unwrap();
    assert!(out.status.success());
    let again = json_of(&out.stdout);
    assert_eq!(again["transfer"]["objects"], 0, "{again}");
    assert_eq!(again["transfer"]["bytes"], 0);
    assert_eq!(again["transfer"]["packs"], 0);
    let requests = again["transfer"]["requests"].as_u64().unwrap();
    assert!(requests <= 6, "an up-to-date push took {requests} requests");
    assert!(again["refs"].as_array().unwrap().iter().all(|u| u["status"] == "up-to-date"));

    // Clone: every run and tag, nothing checked out.
    let b = tmp.path().join("bob");
    r.cmd(tmp.path())
        .args(["clone", &r.url])
        .arg(&b)
        .assert()
        .success()
        .stdout(predicate::str::contains("3 runs, 1 tag ("))
        .stdout(predicate::str::contains("nothing is checked out"));
    assert!(!b.join("experiments").exists());
    assert_eq!(rev(&b, "runs/r1"), rev(&a, "runs/r1"));
    assert_eq!(rev(&b, "tags/baseline"), rev(&a, "tags/baseline"));
    assert_eq!(rev(&b, "remotes/origin/runs/r2"), rev(&a, "runs/r2"));
    exp(&b)
        .args(["remote", "-v"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r.url.as_str()));
    exp(&b).args(["fsck"]).assert().success();
    exp(&b).args(["checkout", "r2"]).assert().success();
    for (path, bytes) in sample_files(2) {
        let got = std::fs::read(b.join("experiments/run_r2").join(path)).unwrap();
        assert_eq!(got, bytes, "{path} differs after clone + checkout");
    }
    // What the clone fetched went into one local pack; the packed run reads back byte-exact.
    assert_eq!(files_under(&b, ".exprepo/objects/pack").len(), 2, "one pack and its index");
    exp(&b).args(["checkout", "wide"]).assert().success();
    for (path, bytes) in many_files() {
        let got = std::fs::read(b.join("experiments/run_wide").join(&path)).unwrap();
        assert_eq!(got, bytes, "{path} differs after clone + checkout");
    }

    // Alice adds to r1 and pushes; Bob fetches (tracking ref moves, his ref does not), then pulls.
    let before = rev(&b, "runs/r1");
    std::fs::write(a.join("experiments/run_r1/trial-b/reports/report.md"), b"# report v2\n")
        .unwrap();
    exp(&a).args(["commit", "experiments/run_r1", "-m", "v2"]).assert().success();
    let out = r.cmd(&a).args(["push", "origin", "r1", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ff = json_of(&out.stdout);
    assert_eq!(ff["refs"][0]["status"], "fast-forward", "{ff}");
    // Only what changed travels: the commit, the trees on the path to the file, the file.
    assert_eq!(ff["transfer"]["objects"], 5, "{ff}");
    r.cmd(&b)
        .arg("fetch")
        .assert()
        .success()
        .stdout(predicate::str::contains("remotes/origin/runs/r1"));
    assert_eq!(rev(&b, "remotes/origin/runs/r1"), rev(&a, "runs/r1"));
    assert_eq!(rev(&b, "runs/r1"), before);
    let log = exp(&b).args(["log", "--all"]).output().unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("remotes/origin/runs/r1"), "exp log --all shows tracking refs:\n{log}");
    r.cmd(&b).arg("pull").assert().success().stdout(predicate::str::contains("fast-forward"));
    assert_eq!(rev(&b, "runs/r1"), rev(&a, "runs/r1"));
    // Nothing new to fetch: no objects move.
    let out = r.cmd(&b).args(["fetch", "--json"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["transfer"]["objects"], 0);
}

#[test]
fn push_clone_fetch_and_pull_through_a_folder_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    push_clone_round_trip(&r, &tmp);
    // The remote holds packs and indexes, not one file per object.
    assert!(!files_under(&r.dir, "packs").is_empty());
    assert_eq!(files_under(&r.dir, "packs").len(), files_under(&r.dir, "index").len());
}

#[test]
fn push_clone_fetch_and_pull_through_s3() {
    let Some(s3) = S3Server::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = s3_remote(&s3, "exp/team");
    push_clone_round_trip(&r, &tmp);
    assert!(!files_under(&r.dir, "packs").is_empty());
}

// ---------------------------------------------------------------------------------------------
// two pushers, conflicts

/// Alice and Bob each commit a different run under the same id and push at the same moment:
/// both read the remote ref before either moves it. Exactly one wins; the other is rejected and
/// nothing is lost. Then the loser pulls and gets a conflict, never an overwrite.
fn two_pushers(r: &Where, tmp: &TempDir, release_together: bool) {
    let a = workspace(tmp, "alice");
    let b = workspace(tmp, "bob");
    commit_run(&a, "shared", &sample_files(10));
    commit_run(&b, "shared", &sample_files(20));
    for ws in [&a, &b] {
        exp(ws).args(["remote", "add", "origin", &r.url]).assert().success();
    }
    let barrier = tmp.path().join("barrier");
    std::fs::create_dir(&barrier).unwrap();
    let spawn = |ws: &Path| {
        r.spawnable(ws)
            .args(["push", "origin", "shared"])
            .env("EXP_TEST_PUSH_BARRIER", &barrier)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let pa = spawn(&a);
    let pb = spawn(&b);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = |pid: u32| barrier.join(format!("ready-{pid}")).exists();
    while !(ready(pa.id()) && ready(pb.id())) {
        assert!(Instant::now() < deadline, "pushers never reached the barrier");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (first, second) = if release_together {
        std::fs::write(barrier.join("go"), b"").unwrap();
        (pa.wait_with_output().unwrap(), pb.wait_with_output().unwrap())
    } else {
        // s3s-fs checks If-Match and then writes, not atomically, so on it the two conditional
        // writes are released one after the other; both still read the ref before either wrote.
        std::fs::write(barrier.join(format!("go-{}", pa.id())), b"").unwrap();
        let first = pa.wait_with_output().unwrap();
        std::fs::write(barrier.join(format!("go-{}", pb.id())), b"").unwrap();
        (first, pb.wait_with_output().unwrap())
    };
    let wins = [&first, &second].iter().filter(|o| o.status.success()).count();
    assert_eq!(
        wins,
        1,
        "exactly one pusher wins:\n{}\n{}",
        String::from_utf8_lossy(&first.stderr),
        String::from_utf8_lossy(&second.stderr)
    );
    let (winner, loser, loser_out) =
        if first.status.success() { (&a, &b, &second) } else { (&b, &a, &first) };
    let err = String::from_utf8_lossy(&loser_out.stderr);
    assert!(err.contains("rejected: remote changed, fetch first"), "{err}");
    assert!(err.contains("hint: someone pushed first: run `exp pull origin`"), "{err}");
    assert_eq!(loser_out.status.code(), Some(1));
    // Nothing lost: the remote has the winner's run, the loser still has its own.
    assert_eq!(remote_ref(r, "runs/shared"), rev(winner, "runs/shared"));
    let mine = rev(loser, "runs/shared");
    assert!(mine.is_some() && mine != rev(winner, "runs/shared"));

    // The loser pulls: a conflict, reported; its run stays, the winner's is beside it.
    r.cmd(loser)
        .arg("pull")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("conflict"))
        .stderr(predicate::str::contains("conflict: same run id, different content on both sides"))
        .stderr(predicate::str::contains("remotes/origin/runs/shared"));
    assert_eq!(rev(loser, "runs/shared"), mine);
    assert_eq!(rev(loser, "remotes/origin/runs/shared"), rev(winner, "runs/shared"));
    // Pushing again is now a conflict too, and still overwrites nothing.
    r.cmd(loser)
        .args(["push", "origin", "shared"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("conflict: same run id, different content"))
        .stderr(predicate::str::contains("exp diff runs/shared remotes/origin/runs/shared"));
    assert_eq!(remote_ref(r, "runs/shared"), rev(winner, "runs/shared"));
}

#[test]
fn two_concurrent_pushers_to_a_folder_remote_exactly_one_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    two_pushers(&r, &tmp, true);
}

#[test]
fn two_concurrent_pushers_to_s3_exactly_one_wins() {
    let Some(s3) = S3Server::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = s3_remote(&s3, "race");
    two_pushers(&r, &tmp, false);
}

// ---------------------------------------------------------------------------------------------
// interrupted push, corrupt remote

/// A push killed after its first pack leaves every remote ref as it was; the next push sends
/// only what is missing and completes it.
fn killed_push_resumes(r: &Where, tmp: &TempDir) {
    let a = workspace(tmp, "alice");
    // Each file fills a pack of its own: 6 packs or more. A push uploads 4 at once and a 5th
    // starts only after one of those finished (and its hook killed the process), so some
    // objects are always left for the next push, however the uploads' timing falls. With 4
    // files that held only while the small objects made a 5th pack of their own (they do in
    // today's walk order); in 4 packs, all could land before the kill, leaving nothing to send.
    let files: Vec<(String, Vec<u8>)> =
        (1..=6).map(|i| (format!("f{i}.bin"), noise(i, 60_000))).collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    // Objects: the commit, its tree, run.json and the 6 files.
    let total = 9;
    commit_run(&a, "big", &files);
    exp(&a).args(["remote", "add", "origin", &r.url]).assert().success();
    let out = r
        .cmd(&a)
        .args(["push", "--all"])
        .env("EXP_PACK_BYTES", "50000")
        .env("EXP_TEST_KILL_AFTER_PACKS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the push was killed");
    assert_eq!(remote_ref(r, "runs/big"), None, "a killed push moves no remote ref");
    assert!(!files_under(&r.dir, "packs").is_empty(), "it did send a pack before dying");
    // A reader of the remote at this point sees no runs.
    r.cmd(tmp.path())
        .args(["clone", &r.url, "early"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 runs, 0 tags"));

    let out = r
        .cmd(&a)
        .args(["push", "--all", "--json"])
        .env("EXP_PACK_BYTES", "50000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out.stdout);
    let sent = report["transfer"]["objects"].as_u64().unwrap();
    assert!(sent > 0 && sent < total, "resumed push sent only what was missing: {report}");
    assert_eq!(remote_ref(r, "runs/big"), rev(&a, "runs/big"));

    let b = tmp.path().join("bob");
    r.cmd(tmp.path()).args(["clone", &r.url]).arg(&b).assert().success();
    exp(&b).args(["checkout", "big"]).assert().success();
    for (path, bytes) in &files {
        assert_eq!(&std::fs::read(b.join("experiments/run_big").join(path)).unwrap(), bytes);
    }
}

#[test]
fn a_push_killed_midway_to_a_folder_leaves_refs_and_a_later_push_completes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    killed_push_resumes(&r, &tmp);
}

#[test]
fn a_push_killed_midway_to_s3_leaves_refs_and_a_later_push_completes_it() {
    let Some(s3) = S3Server::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = s3_remote(&s3, "killed");
    killed_push_resumes(&r, &tmp);
}

/// Flips a byte in the middle of the largest pack on the remote; a clone and a fetch must refuse
/// it by name, and nothing corrupt may enter the local store.
fn corrupt_object_rejected(r: &Where, tmp: &TempDir) {
    let a = workspace(tmp, "alice");
    commit_run(&a, "r1", &sample_files(5));
    exp(&a).args(["remote", "add", "origin", &r.url]).assert().success();
    r.cmd(&a).args(["push", "--all"]).assert().success();
    let packs = files_under(&r.dir, "packs");
    let pack = packs.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(pack, &bytes).unwrap();
    let pack_name = pack.file_name().unwrap().to_string_lossy().to_string();

    let b = tmp.path().join("bob");
    r.cmd(tmp.path())
        .args(["clone", &r.url])
        .arg(&b)
        .assert()
        .code(1)
        .stderr(
            predicate::str::is_match(r"object [0-9a-f]{64} in packs/[0-9a-f]{64}\.pack is corrupt")
                .unwrap(),
        )
        .stderr(predicate::str::contains(pack_name.as_str()))
        .stderr(predicate::str::contains("nothing from it was stored"))
        .stderr(predicate::str::contains("hint: the remote origin is damaged"));
    assert!(!b.exists(), "a failed clone leaves nothing behind");

    // A fetch into an existing store fails the same way and brings in no ref and nothing corrupt.
    let c = workspace(tmp, "carol");
    exp(&c).args(["remote", "add", "origin", &r.url]).assert().success();
    r.cmd(&c).arg("fetch").assert().code(1).stderr(predicate::str::contains("is corrupt"));
    assert_eq!(rev(&c, "remotes/origin/runs/r1"), None);
    exp(&c).arg("fsck").assert().success();
}

#[test]
fn a_corrupt_object_on_a_folder_remote_is_rejected_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    corrupt_object_rejected(&r, &tmp);
}

#[test]
fn a_corrupt_object_on_s3_is_rejected_by_name() {
    let Some(s3) = S3Server::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = s3_remote(&s3, "corrupt");
    corrupt_object_rejected(&r, &tmp);
}

#[test]
fn clone_refuses_a_folder_that_is_not_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    let a = workspace(&tmp, "alice");
    commit_run(&a, "r1", &sample_files(1));
    exp(&a).args(["remote", "add", "origin", &r.url]).assert().success();
    exp(&a).args(["push", "--all"]).assert().success();
    let target = tmp.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"mine").unwrap();
    exp(tmp.path())
        .args(["clone", &r.url])
        .arg(&target)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already exists and is not empty"))
        .stderr(predicate::str::contains("hint: clone into a new or empty folder"));
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"mine");
    // Without a folder name, the URL's last component is used.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    exp(&elsewhere).args(["clone", &r.url]).assert().success();
    assert_eq!(rev(&elsewhere.join("remote"), "runs/r1"), rev(&a, "runs/r1"));
}

#[test]
fn a_tag_that_differs_on_the_remote_is_a_conflict_and_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    let a = workspace(&tmp, "alice");
    commit_run(&a, "r1", &sample_files(1));
    commit_run(&a, "r2", &sample_files(2));
    exp(&a).args(["tag", "best", "r1"]).assert().success();
    exp(&a).args(["remote", "add", "origin", &r.url]).assert().success();
    exp(&a).args(["push", "--all"]).assert().success();
    // Alice moves her tag locally; the remote's tag must not follow silently.
    exp(&a).args(["tag", "-d", "best"]).assert().success();
    exp(&a).args(["tag", "best", "r2"]).assert().success();
    exp(&a)
        .args(["push", "origin", "best"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("conflict"))
        .stderr(predicate::str::contains("conflict: same run id, different content on both sides"));
    assert_eq!(remote_ref(&r, "tags/best"), rev(&a, "runs/r1"));
    // Pulling does not move it back either.
    exp(&a).arg("pull").assert().code(1).stderr(predicate::str::contains("tags/best"));
    assert_eq!(rev(&a, "tags/best"), rev(&a, "runs/r2"));
}

// ---------------------------------------------------------------------------------------------
// pruning: tracking refs of refs gone from the remote

/// Runs and a tag deleted on the remote (its ref files removed, as FORMAT.md says a deletion is
/// done) leave no tracking ref behind after the next fetch or pull, which say what they pruned;
/// local runs of those names, and tracking refs still on the remote, stay.
fn gone_refs_are_pruned(r: &Where, tmp: &TempDir) {
    let a = workspace(tmp, "alice");
    commit_run(&a, "r1", &sample_files(1));
    commit_run(&a, "r2", &sample_files(2));
    exp(&a).args(["tag", "old", "r1"]).assert().success();
    exp(&a).args(["remote", "add", "origin", &r.url]).assert().success();
    r.cmd(&a).args(["push", "--all"]).assert().success();
    let b = tmp.path().join("bob");
    r.cmd(tmp.path()).args(["clone", &r.url]).arg(&b).assert().success();
    assert!(rev(&b, "remotes/origin/runs/r2").is_some());

    for gone in ["runs/r2", "tags/old"] {
        std::fs::remove_file(r.dir.join("refs").join(gone)).unwrap();
    }
    let out = r.cmd(&b).args(["fetch", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out.stdout);
    let mut pruned: Vec<(&str, &str)> = report["refs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["status"] == "pruned")
        .map(|u| (u["name"].as_str().unwrap(), u["old"].as_str().unwrap()))
        .collect();
    pruned.sort();
    let (r1, r2) = (rev(&a, "runs/r1").unwrap(), rev(&a, "runs/r2").unwrap());
    assert_eq!(pruned, vec![("runs/r2", r2.as_str()), ("tags/old", r1.as_str())], "{report}");
    assert_eq!(rev(&b, "remotes/origin/runs/r2"), None);
    assert_eq!(rev(&b, "remotes/origin/tags/old"), None);
    assert_eq!(rev(&b, "remotes/origin/runs/r1"), Some(r1.clone()));
    assert_eq!(rev(&b, "runs/r2"), Some(r2.clone()), "the local run stays");
    assert_eq!(rev(&b, "tags/old"), Some(r1.clone()), "the local tag stays");
    exp(&b).arg("fsck").assert().success();
    // Pruned once: the next fetch has nothing more to say about them.
    r.cmd(&b)
        .arg("fetch")
        .assert()
        .success()
        .stdout(predicate::str::contains("gone from the remote").not());

    // The pusher's own tracking refs (made by its push) go the same way, through pull.
    r.cmd(&a)
        .arg("pull")
        .assert()
        .success()
        .stdout(predicate::str::contains("pruned remotes/origin/runs/r2: gone from the remote"))
        .stdout(predicate::str::contains("pruned remotes/origin/tags/old: gone from the remote"));
    assert_eq!(rev(&a, "remotes/origin/runs/r2"), None);
    assert_eq!(rev(&a, "runs/r2"), Some(r2));
    let out = exp(&a).args(["log", "--all"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(!log.contains("remotes/origin/runs/r2"), "a pruned ref is not listed:\n{log}");
}

#[test]
fn fetch_and_pull_prune_tracking_refs_gone_from_a_folder_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let r = folder_remote(&tmp);
    gone_refs_are_pruned(&r, &tmp);
}

#[test]
fn fetch_and_pull_prune_tracking_refs_gone_from_s3() {
    let Some(s3) = S3Server::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = s3_remote(&s3, "pruned");
    gone_refs_are_pruned(&r, &tmp);
}
