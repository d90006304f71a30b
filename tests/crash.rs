//! Kill points: `exp gc`, `push`, `fetch`, `clone`, `checkout` and `run` killed with SIGKILL at
//! points spread over each command's own duration, from a fresh copy of the same starting state
//! every time. Whatever the point, afterwards: `exp fsck` is clean, every ref holds its old
//! value or its new one, nothing committed before is lost, and running the command again
//! finishes the job. For `exp run`: no journaled (paid-for) answer is lost or sent again on
//! resume. (`exp commit` is killed the same way in tests/store_crash.rs; commit against gc in
//! tests/store*.rs.)
//!
//! Kill points are the command's uninterrupted duration, measured first, split evenly:
//! `EXP_CRASH_ROUNDS` of them per command (default 6, so the suite stays well under a minute);
//! `scripts/soak.sh` runs hundreds. The assertions hold wherever a kill lands, so an unlucky
//! schedule can only make a round test less, never fail it.
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{exp, exp_process, remove_stale_locks, write_files};
use serde_json::Value;

fn rounds() -> u32 {
    std::env::var("EXP_CRASH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6)
}

/// A copy of `from` at `to` (modes, links and times kept), replacing what was there.
fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// Every ref of the store in `ws` (`refs/…` and HEAD), name -> commit id, read from the files.
fn refs_of(ws: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let store = ws.join(".exprepo");
    collect_refs(&store.join("refs"), "", &mut out);
    if let Ok(head) = fs::read_to_string(store.join("HEAD")) {
        out.insert("HEAD".into(), head.trim().to_string());
    }
    out
}

fn collect_refs(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries {
        let p = e.unwrap().path();
        let name = format!("{prefix}{}", p.file_name().unwrap().to_string_lossy());
        if p.is_dir() {
            collect_refs(&p, &format!("{name}/"), out);
        } else if !name.ends_with(".lock") {
            out.insert(name, fs::read_to_string(&p).unwrap().trim().to_string());
        }
    }
}

/// Each ref in `now` holds its value in `before` or in `after`; none that both have is gone.
fn assert_old_or_new(
    what: &str,
    before: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    for (name, value) in now {
        assert!(
            before.get(name) == Some(value) || after.get(name) == Some(value),
            "{what}: ref {name} = {value}, neither its old value {:?} nor its new one {:?}",
            before.get(name),
            after.get(name)
        );
    }
    for name in before.keys().filter(|n| after.contains_key(*n)) {
        assert!(now.contains_key(name), "{what}: ref {name} disappeared");
    }
}

/// A store whose refs are consistent after a crash: the stale locks a killed process left are
/// removed (as the "locked" hint tells a user to), then the full fsck (re-hash every object,
/// connectivity from every ref) passes.
fn assert_fsck_clean(what: &str, ws: &Path) {
    remove_stale_locks(&ws.join(".exprepo"));
    let out = exp_process(ws).arg("fsck").output().unwrap();
    assert!(
        out.status.success(),
        "{what}: fsck after the kill: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` to its end (the measurement of where kill points can fall), asserting success.
fn timed(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// Starts `cmd`, kills it with SIGKILL after `delay` (unless it ended first); true if it was
/// killed before it finished.
fn kill_after(mut cmd: Command, delay: Duration) -> bool {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    !child.wait().unwrap().success()
}

/// The `k`-th of `n` kill points over `duration`: the middles of `n` equal slices.
fn kill_point(duration: Duration, k: u32, n: u32) -> Duration {
    duration.mul_f64((f64::from(k) + 0.5) / f64::from(n))
}

/// Writes a run folder `experiments/run_<id>` of `files` files of `size` bytes (distinct per
/// `salt`) in workspace `ws` and commits it.
fn commit_run(ws: &Path, id: &str, files: usize, size: usize, salt: u64) {
    let run = ws.join(format!("experiments/run_{id}"));
    let mut state = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in 0..files {
        let rows: String = (0..size / 24)
            .map(|r| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                format!("{i},{r},{:>10}\n", state % 10_000_000_000)
            })
            .collect();
        let path = run.join(format!("part-{:03}/results.csv", i % 7)).join(format!("{i}.csv"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, rows).unwrap();
    }
    fs::write(run.join("run.json"), format!("{{\"id\": \"{id}\", \"status\": \"complete\"}}"))
        .unwrap();
    exp(ws).args(["commit", &format!("experiments/run_{id}")]).assert().success();
}

fn new_workspace(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    exp(dir).arg("init").assert().success();
    dir.to_path_buf()
}

/// Every file under `dir`, relative path -> bytes.
fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The kill loop: for each kill point, `reset` makes the starting state, `start` builds the
/// command, and `after_kill(round)` checks the invariants and finishes the job. Returns how
/// many rounds were killed before their command finished.
fn kill_rounds(
    what: &str,
    reset: impl Fn(),
    start: impl Fn() -> Command,
    after_kill: impl Fn(u32),
) -> u32 {
    reset();
    let duration = timed(start());
    let n = rounds();
    let mut killed = 0;
    for k in 0..n {
        reset();
        if kill_after(start(), kill_point(duration, k, n)) {
            killed += 1;
        }
        after_kill(k);
    }
    eprintln!(
        "{what}: {killed} of {n} runs killed before finishing ({duration:.1?} uninterrupted)"
    );
    // The first point falls in the first slice of the command's own duration.
    assert!(killed > 0, "{what}: no kill landed before the command finished");
    killed
}

#[test]
fn gc_killed_anywhere_loses_nothing_referenced_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let template = new_workspace(&tmp.path().join("template"));
    // Work for every phase: runs to keep, a dropped one to delete, and more than 256 loose
    // objects to pack (several small commits of one run).
    for (i, id) in ["a", "b", "dropped"].iter().enumerate() {
        commit_run(&template, id, 120, 2_000, i as u64);
    }
    for i in 0..4 {
        fs::write(template.join(format!("experiments/run_a/extra-{i}.csv")), "x\n".repeat(i + 1))
            .unwrap();
        exp(&template).args(["commit", "experiments/run_a"]).assert().success();
    }
    exp(&template).args(["rm", "dropped"]).assert().success();
    let before = refs_of(&template);
    let checkouts: Vec<(String, BTreeMap<PathBuf, Vec<u8>>)> = ["a", "b"]
        .iter()
        .map(|id| (id.to_string(), files_of(&template.join(format!("experiments/run_{id}")))))
        .collect();
    let ws = tmp.path().join("ws");
    kill_rounds(
        "gc",
        || copy_tree(&template, &ws),
        || {
            let mut c = exp_process(&ws);
            c.args(["gc", "--grace", "0"]);
            c
        },
        |round| {
            let what = format!("gc round {round}");
            assert_fsck_clean(&what, &ws);
            assert_eq!(refs_of(&ws), before, "{what}: gc moved a ref");
            exp(&ws).args(["gc", "--grace", "0"]).assert().success();
            assert_fsck_clean(&what, &ws);
            for (id, files) in &checkouts {
                let to = tmp.path().join(format!("check-{id}"));
                let _ = fs::remove_dir_all(&to);
                exp(&ws).args(["checkout", id, "--to"]).arg(&to).assert().success();
                assert_eq!(&files_of(&to), files, "{what}: run {id} came back different");
            }
        },
    );
}

/// A workspace that committed runs `a` and `b` (and a tag), the folder remote `origin`, and
/// what is already there: `pushed` runs.
struct RemoteSetup {
    tmp: tempfile::TempDir,
    ws: PathBuf,
    remote: PathBuf,
}

fn remote_setup(pushed: &[&str]) -> RemoteSetup {
    let tmp = tempfile::tempdir().unwrap();
    let ws = new_workspace(&tmp.path().join("ws"));
    let remote = tmp.path().join("remote");
    exp(&ws).args(["remote", "add", "origin"]).arg(&remote).assert().success();
    commit_run(&ws, "a", 150, 3_000, 1);
    if !pushed.is_empty() {
        let mut push = exp(&ws);
        push.arg("push").args(pushed);
        push.assert().success();
    }
    // After the push: a new commit of `a`, a new run `b` and a tag, for the next push to send.
    fs::write(ws.join("experiments/run_a/late.csv"), "late\n".repeat(500)).unwrap();
    exp(&ws).args(["commit", "experiments/run_a"]).assert().success();
    commit_run(&ws, "b", 150, 3_000, 2);
    exp(&ws).args(["tag", "v1", "b"]).assert().success();
    RemoteSetup { tmp, ws, remote }
}

/// The remote's refs (`refs/runs/…`, `refs/tags/…`), name -> id.
fn remote_refs(remote: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    collect_refs(&remote.join("refs"), "", &mut out);
    out
}

/// Whether a fresh clone of `remote` works and fsck finds its store clean: whatever a killed
/// push left, other people can still read the remote.
fn assert_remote_readable(what: &str, remote: &Path, scratch: &Path) -> BTreeMap<String, String> {
    let into = scratch.join("reader");
    let _ = fs::remove_dir_all(&into);
    remove_stale_locks(remote);
    let out = exp_process(scratch).arg("clone").arg(remote).arg(&into).output().unwrap();
    assert!(out.status.success(), "{what}: clone: {}", String::from_utf8_lossy(&out.stderr));
    assert_fsck_clean(what, &into);
    refs_of(&into).into_iter().filter(|(n, _)| !n.starts_with("remotes/") && n != "HEAD").collect()
}

#[test]
fn push_killed_anywhere_leaves_the_remote_readable_and_a_rerun_completes_it() {
    let s = remote_setup(&["a"]);
    let template = s.tmp.path().join("template");
    copy_tree(&s.ws, &template.join("ws"));
    copy_tree(&s.remote, &template.join("remote"));
    let local = refs_of(&s.ws);
    let remote_before = remote_refs(&s.remote);
    let remote_after: BTreeMap<String, String> = local
        .iter()
        .filter(|(n, _)| n.starts_with("runs/") || n.starts_with("tags/"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let scratch = s.tmp.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let reset = || {
        copy_tree(&template.join("ws"), &s.ws);
        copy_tree(&template.join("remote"), &s.remote);
    };
    // Small packs: many uploads, so kill points fall between them too.
    let push = || {
        let mut c = exp_process(&s.ws);
        c.args(["push", "--all"]).env("EXP_PACK_BYTES", "30000");
        c
    };
    let after_kill = |what: &str| {
        assert_fsck_clean(what, &s.ws);
        let now = remote_refs(&s.remote);
        assert_old_or_new(what, &remote_before, &now, &remote_after);
        let seen = assert_remote_readable(what, &s.remote, &scratch);
        assert_eq!(seen, now, "{what}: a clone does not see the remote's refs");
        exp(&s.ws).args(["push", "--all"]).assert().success();
        assert_eq!(remote_refs(&s.remote), remote_after, "{what}: the rerun did not finish");
        assert_remote_readable(what, &s.remote, &scratch);
    };
    kill_rounds("push", reset, push, |round| after_kill(&format!("push round {round}")));
    // And exactly after each of the first packs, through the fault-injection hook.
    for packs in 1..=3 {
        reset();
        let out = push().env("EXP_TEST_KILL_AFTER_PACKS", packs.to_string()).output().unwrap();
        assert!(!out.status.success(), "push killed after {packs} packs finished anyway");
        after_kill(&format!("push killed after {packs} packs"));
    }
}

#[test]
fn fetch_and_clone_killed_anywhere_leave_clean_stores_and_reruns_complete_them() {
    let s = remote_setup(&["a"]);
    // A reader that cloned when only the first commit of `a` was there, then fetches the rest.
    let early = s.tmp.path().join("early-remote");
    copy_tree(&s.remote, &early);
    exp(&s.ws).args(["push", "--all"]).assert().success();
    let remote_now = remote_refs(&s.remote);
    let reader = s.tmp.path().join("reader");
    exp(s.tmp.path()).arg("clone").arg(&early).arg(&reader).assert().success();
    exp(&reader).args(["remote", "remove", "origin"]).assert().success();
    exp(&reader).args(["remote", "add", "origin"]).arg(&s.remote).assert().success();
    let template = s.tmp.path().join("reader-template");
    copy_tree(&reader, &template);
    let before = refs_of(&reader);
    let tracking = |refs: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        refs.iter()
            .filter_map(|(n, v)| Some((n.strip_prefix("remotes/origin/")?.to_string(), v.clone())))
            .collect()
    };
    kill_rounds(
        "fetch",
        || copy_tree(&template, &reader),
        || {
            let mut c = exp_process(&reader);
            c.arg("fetch");
            c
        },
        |round| {
            let what = format!("fetch round {round}");
            assert_fsck_clean(&what, &reader);
            let now = refs_of(&reader);
            let local = |r: &BTreeMap<String, String>| -> BTreeMap<String, String> {
                r.iter()
                    .filter(|(n, _)| !n.starts_with("remotes/"))
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect()
            };
            assert_eq!(local(&now), local(&before), "{what}: fetch moved a local ref");
            assert_old_or_new(&what, &tracking(&before), &tracking(&now), &remote_now);
            exp(&reader).arg("fetch").assert().success();
            assert_eq!(tracking(&refs_of(&reader)), remote_now, "{what}: the rerun did not finish");
            assert_fsck_clean(&what, &reader);
        },
    );

    let into = s.tmp.path().join("clone");
    kill_rounds(
        "clone",
        || {
            let _ = fs::remove_dir_all(&into);
        },
        || {
            let mut c = exp_process(s.tmp.path());
            c.arg("clone").arg(&s.remote).arg(&into);
            c
        },
        |round| {
            let what = format!("clone round {round}");
            // A clone killed after its store exists leaves a store fsck passes, whose runs are
            // a subset of the remote's, each at the remote's value.
            if into.join(".exprepo/format").is_file() {
                assert_fsck_clean(&what, &into);
                for (name, value) in refs_of(&into)
                    .iter()
                    .filter(|(n, _)| n.starts_with("runs/") || n.starts_with("tags/"))
                {
                    assert_eq!(remote_now.get(name), Some(value), "{what}: {name}");
                }
            }
            // A folder it left behind is refused by name; once removed, cloning again works.
            if into.exists() {
                let _ = fs::remove_dir_all(&into);
            }
            exp(s.tmp.path()).arg("clone").arg(&s.remote).arg(&into).assert().success();
            assert_fsck_clean(&what, &into);
        },
    );
}

#[test]
fn checkout_killed_anywhere_leaves_the_store_alone_and_a_rerun_restores_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let template = new_workspace(&tmp.path().join("template"));
    commit_run(&template, "a", 300, 4_000, 3);
    let run = template.join("experiments/run_a");
    let committed = files_of(&run);
    fs::remove_dir_all(&run).unwrap();
    let before = refs_of(&template);
    let ws = tmp.path().join("ws");
    kill_rounds(
        "checkout",
        || copy_tree(&template, &ws),
        || {
            let mut c = exp_process(&ws);
            c.args(["checkout", "a"]);
            c
        },
        |round| {
            let what = format!("checkout round {round}");
            assert_fsck_clean(&what, &ws);
            let now = refs_of(&ws);
            let after: BTreeMap<String, String> = before
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .chain([("HEAD".to_string(), "ref: refs/runs/a".to_string())])
                .collect();
            assert_old_or_new(&what, &before, &now, &after);
            let out = exp_process(&ws).args(["checkout", "a"]).output().unwrap();
            assert!(
                out.status.success(),
                "{what}: checking out again after the kill: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(files_of(&ws.join("experiments/run_a")), committed, "{what}: bytes differ");
        },
    );
}

// ---------------------------------------------------------------------------------------------
// exp run against a counting OpenAI-compatible endpoint

/// A loopback `/v1/chat/completions` that answers at once and records every request's prompt.
struct Endpoint {
    url: String,
    received: Arc<Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

/// What identifies a request across trials: its messages (item and condition) and its
/// temperature (the trial).
fn prompt_of(body: &Value) -> String {
    let m = &body["messages"];
    format!(
        "{}|{}|t={}",
        m[0]["content"].as_str().unwrap_or(""),
        m[1]["content"].as_str().unwrap_or(""),
        body["temperature"]
    )
}

impl Endpoint {
    fn start() -> Endpoint {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let prompt = prompt_of(&body);
                    let answer = if prompt.contains("happy") { "positive" } else { "negative" };
                    seen.lock().unwrap().push(prompt);
                    axum::Json(serde_json::json!({
                        "choices": [{"message": {"content": answer}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 1}
                    }))
                }
            }),
        );
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Endpoint { url, received, _rt: rt }
    }

    fn requests(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// A workspace with `n` items (every third "happy") and a config using `endpoint`.
fn run_workspace(dir: &Path, n: usize, endpoint: &str) {
    let rows = common::labelled_jsonl((0..n).map(|i| {
        let (text, label) = if i % 3 == 0 { ("happy", "positive") } else { ("gloomy", "negative") };
        (format!("i{i}"), format!("item {i} was {text}"), label)
    }));
    let config = format!(
        "datasets:\n  - {{name: d, path: data/d.jsonl}}\nmodels:\n  - {{name: m, provider: openai, base_url: \"{endpoint}\", model: m, max_connections: 4}}\nprompt_sets:\n  ps: {{control: config/prompts/control.txt, treatment: config/prompts/treatment.md}}\nuser_template: \"Text: {{text}}\"\ndecoding: {{temps: [0.0, 1.0], top_p: [1.0], max_tokens: [16]}}\nscoring: {{type: label, labels: [positive, negative]}}\nexecution: {{max_concurrent_jobs: 4, max_retries: 3, timeout_s: 10}}\n"
    );
    write_files(
        dir,
        &[
            ("data/d.jsonl", &rows),
            ("config/prompts/control.txt", "Classify the sentiment."),
            ("config/prompts/treatment.md", "You are careful. Classify the sentiment."),
            ("config/eval_config.yaml", &config),
        ],
    );
}

/// The journaled answers of every trial of `run`: (trial, custom_id) -> the journal line.
fn journal(run: &Path) -> HashMap<(String, String), Value> {
    let mut out = HashMap::new();
    let Ok(trials) = fs::read_dir(run) else { return out };
    for trial in trials.flatten().filter(|t| t.path().join("responses").is_dir()) {
        let slug = trial.file_name().to_string_lossy().to_string();
        for cond in ["control", "treatment"] {
            let Ok(parts) = fs::read_dir(trial.path().join("responses").join(cond)) else {
                continue;
            };
            for part in parts.flatten() {
                for line in fs::read_to_string(part.path()).unwrap().lines() {
                    // A torn last line (the kill fell inside a write) is not an answer.
                    let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
                    if v["status"] == "ok" {
                        let id = v["custom_id"].as_str().unwrap().to_string();
                        out.insert((slug.clone(), id), v);
                    }
                }
            }
        }
    }
    out
}

/// custom_id -> prompt, from the request files `exp run` built for every trial of `run`.
fn prompts(run: &Path) -> HashMap<(String, String), String> {
    let mut out = HashMap::new();
    for trial in fs::read_dir(run).unwrap().flatten().filter(|t| t.path().join("inputs").is_dir()) {
        let slug = trial.file_name().to_string_lossy().to_string();
        for cond in ["control", "treatment"] {
            for part in fs::read_dir(trial.path().join("inputs").join(cond)).unwrap().flatten() {
                for line in fs::read_to_string(part.path()).unwrap().lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    let id = v["custom_id"].as_str().unwrap().to_string();
                    out.insert((slug.clone(), id), prompt_of(&v["body"]));
                }
            }
        }
    }
    out
}

#[test]
fn run_killed_anywhere_resumes_without_losing_or_resending_a_journaled_answer() {
    let endpoint = Endpoint::start();
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template");
    // 2 trials x 2 conditions x 60 items = 240 requests over 3 parts per dataset.
    run_workspace(&template, 60, &endpoint.url);
    let ws = tmp.path().join("ws");
    let run = ws.join("experiments/run_k");
    let start = || {
        let mut c = exp_process(&ws);
        c.args(["run", "--run-id", "k", "--parts-per-dataset", "3"]);
        c
    };
    kill_rounds(
        "run",
        || copy_tree(&template, &ws),
        start,
        |round| {
            let what = format!("run round {round}");
            let paid = journal(&run);
            let sent_before = endpoint.requests().len();
            // Finish what the kill left: a run with a run.json is resumed unless it completed;
            // one killed before it wrote its run.json starts again.
            let status = fs::read(run.join("run.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .map(|v| v["status"].as_str().unwrap_or_default().to_string());
            let finish = match status.as_deref() {
                Some("complete") => None,
                Some(_) => Some(exp_process(&ws).args(["run", "--resume"]).output().unwrap()),
                None => {
                    let _ = fs::remove_dir_all(&run);
                    Some(start().output().unwrap())
                }
            };
            if let Some(out) = finish {
                assert!(
                    out.status.success(),
                    "{what}: finishing the run: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let prompts = prompts(&run);
            let paid_prompts: HashSet<&String> = paid.keys().map(|k| &prompts[k]).collect();
            let resent: HashSet<String> =
                endpoint.requests()[sent_before..].iter().cloned().collect();
            for p in &resent {
                assert!(!paid_prompts.contains(p), "{what}: re-sent a journaled request: {p}");
            }
            let now = journal(&run);
            for (key, line) in &paid {
                assert_eq!(
                    now.get(key),
                    Some(line),
                    "{what}: journaled answer {key:?} changed or went"
                );
            }
            assert_eq!(now.len(), 240, "{what}: not every request has its answer");
            for (key, prompt) in &prompts {
                assert!(
                    paid.contains_key(key) || resent.contains(prompt),
                    "{what}: {key:?} was neither answered before the kill nor sent after it"
                );
            }
            let run_json: Value =
                serde_json::from_slice(&fs::read(run.join("run.json")).unwrap()).unwrap();
            assert_eq!(run_json["status"], "complete", "{what}");
            let predictions = fs::read_dir(&run)
                .unwrap()
                .flatten()
                .map(|t| t.path().join("results/predictions.csv"))
                .filter(|p| p.is_file())
                .map(|p| common::csv_rows(&p).len())
                .sum::<usize>();
            assert_eq!(predictions, 240, "{what}: predictions are not one row per request");
        },
    );
}
