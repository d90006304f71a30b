//! Never paying twice: the response cache, `exp rescore` and budgets, through the `exp` binary
//! against a real OpenAI-compatible HTTP server on 127.0.0.1 that counts what it is sent.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{exp, write_files};
use predicates::prelude::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The test server

/// Decides, from a request body and how often that body came before, whether to fail it (400).
type Fails = Arc<dyn Fn(&Value, usize) -> bool + Send + Sync>;

/// Answers every chat completion ("positive" when the text is happy) with usage 10 in / 2 out,
/// and records every body it receives.
struct Server {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Server {
    fn start() -> Server {
        Server::failing(|_, _| false)
    }

    fn failing(fails: impl Fn(&Value, usize) -> bool + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let fails: Fails = Arc::new(fails);
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(sock) = sock else { return };
                let (seen, fails) = (seen.clone(), fails.clone());
                std::thread::spawn(move || serve(sock, &seen, &fails));
            }
        });
        Server { url, bodies }
    }

    fn sent(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }
}

fn serve(sock: TcpStream, seen: &Mutex<Vec<Value>>, fails: &Fails) {
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut sock = sock;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let earlier = {
            let mut seen = seen.lock().unwrap();
            let earlier = seen.iter().filter(|b| **b == body).count();
            seen.push(body.clone());
            earlier
        };
        let user = body["messages"][1]["content"].as_str().unwrap_or_default();
        let (status, json) = if fails(&body, earlier) {
            ("400 Bad Request", serde_json::json!({"error": {"message": "refused by the test"}}))
        } else {
            let answer = if user.contains("happy") { "positive" } else { "negative" };
            (
                "200 OK",
                serde_json::json!({
                    "choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2}
                }),
            )
        };
        let json = json.to_string();
        let out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        if sock.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workspaces and reading what a run wrote

const FAST: &str = "max_retries: 0, timeout_s: 10";

/// A workspace of `n` items (every third happy) whose one model is the server's, priced at
/// $1,000 / $2,000 per million tokens so budgets are easy to reach.
fn workspace(n: usize, url: &str, connections: usize) -> tempfile::TempDir {
    let model = format!(
        "  - {{name: m, provider: openai, base_url: \"{url}\", model: test-model, max_connections: {connections}, pricing: {{input_per_mtok: 1000.0, output_per_mtok: 2000.0}}}}"
    );
    common::sentiment_workspace(n, &model, "[0.0]", FAST)
}

/// `exp run` with `args`, expected to succeed.
fn run(ws: &Path, id: &str, args: &[&str]) -> String {
    let out = exp(ws).args(["run", "--run-id", id]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn run_dir(ws: &Path, id: &str) -> PathBuf {
    ws.join("experiments").join(format!("run_{id}"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Every trial folder of a run.
fn trials(ws: &Path, id: &str) -> Vec<PathBuf> {
    let manifest = read_json(&run_dir(ws, id).join("multi_trial_manifest.json"));
    let trials = manifest["trials"].as_array().unwrap().iter();
    trials.map(|t| run_dir(ws, id).join(t["slug"].as_str().unwrap())).collect()
}

/// Every journal line of a run.
fn journal(ws: &Path, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for trial in trials(ws, id) {
        for cond in ["control", "treatment"] {
            let Ok(parts) = std::fs::read_dir(trial.join("responses").join(cond)) else { continue };
            for part in parts {
                let text = std::fs::read_to_string(part.unwrap().path()).unwrap();
                out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
            }
        }
    }
    out
}

/// The largest request body of a trial, in bytes as sent.
fn largest_body(trial: &Path) -> usize {
    let mut largest = 0;
    for cond in ["control", "treatment"] {
        for part in std::fs::read_dir(trial.join("inputs").join(cond)).unwrap() {
            for line in std::fs::read_to_string(part.unwrap().path()).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                largest = largest.max(serde_json::to_string(&v["body"]).unwrap().len());
            }
        }
    }
    largest
}

fn totals(ws: &Path, id: &str) -> Value {
    read_json(&run_dir(ws, id).join("multi_trial_manifest.json"))["totals"].clone()
}

fn reused(ws: &Path, id: &str) -> usize {
    journal(ws, id).iter().filter(|e| !e["reused"].is_null()).count()
}

// ---------------------------------------------------------------------------------------------
// The response cache

#[test]
fn a_second_run_of_the_same_config_sends_nothing_and_says_where_each_answer_came_from() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "first", &[]);
    assert_eq!(server.sent(), 12);
    let out = run(ws.path(), "second", &[]);
    assert_eq!(server.sent(), 12, "the second run sent requests");
    assert!(out.contains("0 requests sent now"), "{out}");
    assert!(out.contains("cache: 12 answers reused now"), "{out}");
    let lines = journal(ws.path(), "second");
    assert_eq!(lines.len(), 12);
    for l in &lines {
        assert_eq!(l["reused"], serde_json::json!({"run": "first", "commit": null}), "{l}");
    }
    // The same answers, so the same scores.
    let scores =
        |id| std::fs::read(trials(ws.path(), id)[0].join("results/per_item_scores.csv")).unwrap();
    assert_eq!(scores("first"), scores("second"));
    // Costs separate what was sent from what was reused, and state what reuse saved.
    let (first, second) = (totals(ws.path(), "first"), totals(ws.path(), "second"));
    assert_eq!((second["requests"].as_u64(), second["reused"].as_u64()), (Some(0), Some(12)));
    assert_eq!(second["usd"].as_f64(), Some(0.0));
    let saved = second["usd_saved"].as_f64().unwrap();
    assert!((saved - first["usd"].as_f64().unwrap()).abs() < 1e-9 && saved > 0.0, "{second}");
    let costs = read_json(&trials(ws.path(), "second")[0].join("results/costs.json"));
    assert_eq!(costs["conditions"]["control"]["reused"], 6, "{costs}");
    assert_eq!(costs["reused_input_tokens"], 120, "{costs}");
}

#[test]
fn a_job_of_thousands_of_requests_is_reused_whole_and_in_order() {
    // More requests per job than the cache keys at once, so its reuse spans several batches.
    let sim = "  - {name: s, provider: sim, sim: {accuracy: {control: 0.6, treatment: 0.9}, seed: 1, latency_ms: 0}}";
    let ws = common::sentiment_workspace(5_000, sim, "[0.0]", FAST);
    run(ws.path(), "first", &[]);
    let out = run(ws.path(), "second", &[]);
    assert!(out.contains("cache: 10,000 answers reused now"), "{out}");
    let journaled: Vec<String> = journal(ws.path(), "second")
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    // Journaled in request order, each request once.
    let trial = &trials(ws.path(), "second")[0];
    let mut requested = Vec::new();
    for cond in ["control", "treatment"] {
        let part = trial.join("inputs").join(cond).join("part-0000.jsonl");
        for line in std::fs::read_to_string(part).unwrap().lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            requested.push(line["custom_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(requested.len(), 10_000);
    assert!(journaled == requested, "the reused answers are not journaled in request order");
    assert_eq!(reused(ws.path(), "second"), 10_000);
    let scores =
        |id| std::fs::read(trials(ws.path(), id)[0].join("results/per_item_scores.csv")).unwrap();
    assert_eq!(scores("first"), scores("second"));
}

#[test]
fn a_changed_temperature_misses_the_cache_and_is_sent() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "cold", &[]);
    run(ws.path(), "warm", &["-S", "decoding.temps=[0.5]"]);
    assert_eq!(server.sent(), 24);
    assert_eq!(reused(ws.path(), "warm"), 0);
    // Back at the first temperature, both earlier runs hold answers: nothing is sent.
    run(ws.path(), "again", &[]);
    assert_eq!(server.sent(), 24);
}

#[test]
fn growing_the_repeat_count_sends_only_the_new_repeats_and_never_collapses_samples() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "one", &["-S", "decoding.temps=[1.0]"]);
    assert_eq!(server.sent(), 12);
    run(ws.path(), "three", &["-S", "decoding.temps=[1.0]", "-S", "decoding.repeats=3"]);
    // Repeats 1 and 2 are new samples: sent, never filled in with repeat 0's answer.
    assert_eq!(server.sent(), 36);
    let lines = journal(ws.path(), "three");
    let reused: Vec<&str> = lines
        .iter()
        .filter(|l| !l["reused"].is_null())
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(reused.len(), 12);
    assert!(reused.iter().all(|id| id.ends_with(":r0")), "{reused:?}");
}

#[test]
fn an_errored_response_is_sent_again_never_reused() {
    // Item i0's requests fail the first time the server sees them.
    let server = Server::failing(|body, earlier| {
        let user = body["messages"][1]["content"].as_str().unwrap_or_default();
        user.contains("item 0 ") && earlier == 0
    });
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "flaky", &[]);
    assert_eq!(totals(ws.path(), "flaky")["failures"], 2);
    run(ws.path(), "retry", &[]);
    assert_eq!(server.sent(), 14, "exactly the two failed requests are sent again");
    assert_eq!(reused(ws.path(), "retry"), 10);
    assert_eq!(totals(ws.path(), "retry")["failures"], 0);
}

#[test]
fn no_cache_and_cache_off_send_everything() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "paid", &[]);
    run(ws.path(), "flag", &["--no-cache"]);
    assert_eq!(server.sent(), 24);
    assert_eq!(reused(ws.path(), "flag"), 0);
    run(ws.path(), "key", &["-S", "execution.cache=off"]);
    assert_eq!(server.sent(), 36);
    assert_eq!(reused(ws.path(), "key"), 0);
}

#[test]
fn a_read_only_cache_reuses_but_never_offers_its_own_answers() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "reader", &["-S", "execution.cache=read", "-S", "decoding.temps=[0.3]"]);
    assert_eq!(server.sent(), 12);
    // The read-only run's answers are not offered: the same requests are sent again.
    run(ws.path(), "writer", &["-S", "decoding.temps=[0.3]"]);
    assert_eq!(server.sent(), 24);
    // A read-only run still reuses what others offer.
    run(ws.path(), "reader2", &["-S", "execution.cache=read", "-S", "decoding.temps=[0.3]"]);
    assert_eq!(server.sent(), 24);
    assert_eq!(reused(ws.path(), "reader2"), 12);
}

#[test]
fn a_clone_brings_its_cache_along() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "origin-run", &["--archive"]);
    assert_eq!(server.sent(), 12);
    let remote = tempfile::tempdir().unwrap();
    let remote_url = remote.path().join("shared");
    exp(ws.path()).args(["remote", "add", "origin"]).arg(&remote_url).assert().success();
    exp(ws.path()).args(["push", "--all"]).assert().success();
    let home = tempfile::tempdir().unwrap();
    exp(home.path()).arg("clone").arg(&remote_url).arg("mine").assert().success();
    let clone = home.path().join("mine");
    assert!(!clone.join("experiments/run_origin-run").exists(), "clone checked the run out");
    // The same experiment definition in the clone.
    for f in ["data/d.jsonl", "config/prompts/control.txt", "config/prompts/treatment.md"] {
        write_files(&clone, &[(f, &std::fs::read_to_string(ws.path().join(f)).unwrap())]);
    }
    let config = std::fs::read_to_string(ws.path().join("config/eval_config.yaml")).unwrap();
    write_files(&clone, &[("config/eval_config.yaml", &config)]);
    run(&clone, "cloned", &[]);
    assert_eq!(server.sent(), 12, "the clone sent requests its history answers");
    let lines = journal(&clone, "cloned");
    assert_eq!(lines.len(), 12);
    let from = &lines[0]["reused"];
    assert_eq!(from["run"], "origin-run");
    let commit_id = from["commit"].as_str().unwrap();
    assert_eq!(commit_id.len(), 64);
    exp(&clone)
        .args(["show", commit_id])
        .assert()
        .success()
        .stdout(predicate::str::contains("origin-run"));
}

#[test]
fn a_damaged_cache_index_is_rebuilt_not_trusted() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "base", &["--archive"]);
    let index = ws.path().join(".exprepo/cache/responses.json");
    run(ws.path(), "warm", &[]);
    assert!(index.is_file());
    std::fs::write(&index, b"{\"format\": 1, \"commits\": [], \"files\": [").unwrap();
    run(ws.path(), "after", &[]);
    assert_eq!(server.sent(), 12);
    assert_eq!(reused(ws.path(), "after"), 12);
    let rebuilt = read_json(&index);
    assert_eq!(rebuilt["format"], 1);
}

// ---------------------------------------------------------------------------------------------
// Budgets

#[test]
fn the_dry_run_sets_the_plan_against_the_budget() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    exp(ws.path())
        .args(["run", "--dry-run", "--max-usd", "0.5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("budget: $0.500 (execution.max_usd)"))
        .stdout(predicate::str::contains("so the run may stop sending before the end"));
    exp(ws.path())
        .args(["run", "--dry-run", "--max-usd", "100"])
        .assert()
        .success()
        .stdout(predicate::str::contains("the plan fits even at its maximum"));
    assert_eq!(server.sent(), 0);
}

#[test]
fn the_budget_stops_sending_before_the_cap_and_resume_with_a_higher_cap_finishes() {
    let server = Server::start();
    // One connection: requests go one at a time, each reserved at its maximum cost.
    let ws = workspace(20, &server.url, 1);
    let out =
        exp(ws.path()).args(["run", "--run-id", "capped", "--max-usd", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped at its budget"), "{stderr}");
    assert!(stderr.contains("of the $0.500 cap"), "{stderr}");
    assert!(stderr.contains("--resume --run-id capped --max-usd 1"), "{stderr}");
    let sent = server.sent();
    assert!(sent > 0 && sent < 40, "sent {sent}");
    let run_json = read_json(&run_dir(ws.path(), "capped").join("run.json"));
    assert_eq!(run_json["status"], "incomplete");
    let spent = totals(ws.path(), "capped")["usd"].as_f64().unwrap();
    assert!(spent > 0.0 && spent <= 0.5, "spent {spent}");
    // It stopped because the next request, at its maximum (its body's bytes as input tokens,
    // max_tokens 16 out), could have passed the cap.
    let largest = largest_body(&trials(ws.path(), "capped")[0]) as f64;
    let max_next = (largest * 1000.0 + 16.0 * 2000.0) / 1e6;
    assert!(spent + max_next > 0.5, "stopped early: spent {spent}, next at most {max_next}");

    exp(ws.path())
        .args(["run", "--resume", "--run-id", "capped", "--max-usd", "100"])
        .assert()
        .success();
    assert_eq!(server.sent(), 40, "the resume sent only what was left");
    let run_json = read_json(&run_dir(ws.path(), "capped").join("run.json"));
    assert_eq!(run_json["status"], "complete");
}

#[test]
fn a_negative_budget_is_refused_with_what_to_give() {
    let ws = workspace(2, "http://127.0.0.1:9/v1", 1);
    exp(ws.path())
        .args(["run", "--max-usd=-1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--max-usd is -1"))
        .stderr(predicate::str::contains("hint: give the most the run may spend"));
}

// ---------------------------------------------------------------------------------------------
// Rescore

/// Every object id the store holds, loose or packed.
fn store_objects(ws: &Path) -> std::collections::HashSet<String> {
    let objects = ws.join(".exprepo/objects");
    let mut out = std::collections::HashSet::new();
    for dir in std::fs::read_dir(&objects).unwrap() {
        let dir = dir.unwrap();
        let name = dir.file_name().to_string_lossy().to_string();
        if name.len() == 2 {
            for f in std::fs::read_dir(dir.path()).unwrap() {
                out.insert(format!("{name}{}", f.unwrap().file_name().to_string_lossy()));
            }
        }
    }
    if let Ok(packs) = std::fs::read_dir(objects.join("pack")) {
        for p in packs {
            let p = p.unwrap().path();
            if p.extension().is_some_and(|e| e == "idx") {
                // EXPIDX01, u32 LE count, count x (32-byte id, u64 offset, u64 length), checksum.
                let idx = std::fs::read(&p).unwrap();
                let n = u32::from_le_bytes(idx[8..12].try_into().unwrap()) as usize;
                for i in 0..n {
                    let id = &idx[12 + i * 48..12 + i * 48 + 32];
                    out.insert(id.iter().map(|b| format!("{b:02x}")).collect());
                }
            }
        }
    }
    out
}

/// The blob ids of every request file and journal of a run.
fn request_and_answer_blobs(ws: &Path, id: &str) -> Vec<String> {
    let mut files = Vec::new();
    for trial in trials(ws, id) {
        for folder in ["inputs", "responses"] {
            for cond in ["control", "treatment"] {
                for f in std::fs::read_dir(trial.join(folder).join(cond)).unwrap() {
                    files.push(f.unwrap().path());
                }
            }
        }
    }
    let out = exp(ws).arg("hash-object").args(&files).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn parents(ws: &Path, rev: &str) -> Vec<String> {
    let out = exp(ws).args(["cat-object", "-p", rev]).output().unwrap();
    let commit: Value = serde_json::from_slice(&out.stdout).unwrap();
    commit["parents"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().into()).collect()
}

/// The commit id `rev` names, from `exp log --json -n 1 REV` (a list of commits, or a document
/// holding one).
fn rev(ws: &Path, rev: &str) -> String {
    let out = exp(ws).args(["log", "--json", "-n", "1", rev]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = match &doc {
        Value::Array(items) => items.clone(),
        Value::Object(m) => m.values().find_map(|v| v.as_array().cloned()).unwrap_or_default(),
        _ => Vec::new(),
    };
    list[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn rescore_sends_nothing_adds_no_response_bytes_and_commits_on_top_of_its_run() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "paid", &["--archive"]);
    let paid = rev(ws.path(), "runs/paid");
    let before = store_objects(ws.path());
    let out = exp(ws.path())
        .args(["rescore", "HEAD", "--run-id", "strict", "--json"])
        .args(["-S", "scoring.extract=\"(negative)\""])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(server.sent(), 12, "rescore sent requests");
    assert_eq!((doc["status"].as_str(), doc["sent"].as_u64()), (Some("rescored"), Some(0)));
    assert_eq!(doc["rescored_from"]["commit"], paid.as_str());
    assert_eq!(doc["rescored_from"]["run"], "paid");
    // A commit whose parent is the run it rescored, with the status rescored.
    let commit = doc["commit"].as_str().unwrap();
    assert_eq!(parents(ws.path(), commit), std::slice::from_ref(&paid));
    let run_json = read_json(&run_dir(ws.path(), "strict").join("run.json"));
    assert_eq!(run_json["status"], "rescored");
    // The requests and answers are REF's bytes: the store held them already.
    let after = store_objects(ws.path());
    let blobs = request_and_answer_blobs(ws.path(), "strict");
    assert_eq!(blobs.len(), 4);
    for b in &blobs {
        assert!(before.contains(b), "request or answer file {b} is new in the store");
    }
    assert!(after.len() > before.len(), "the new results are stored");
    // New scoring: only "negative" is found, so every happy item is now wrong.
    let scores = |id| csv_column(&trials(ws.path(), id)[0].join("results/per_item_scores.csv"));
    assert_ne!(scores("paid"), scores("strict"));
    let costs = read_json(&trials(ws.path(), "strict")[0].join("results/costs.json"));
    assert_eq!((costs["requests"].as_u64(), costs["reused"].as_u64()), (Some(0), Some(12)));
    // Any revision: the run before HEAD is `paid` again.
    exp(ws.path()).args(["rescore", "HEAD~1", "--run-id", "third"]).assert().success();
    assert_eq!(parents(ws.path(), "runs/third"), [paid]);
    assert_eq!(server.sent(), 12);
}

/// A results CSV's `score` column.
fn csv_column(path: &Path) -> Vec<String> {
    common::csv_rows(path).into_iter().map(|r| r["score"].clone()).collect()
}

#[test]
fn rescore_works_in_a_clone_with_nothing_checked_out() {
    let server = Server::start();
    let ws = workspace(6, &server.url, 4);
    run(ws.path(), "shared-run", &["--archive"]);
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().join("r");
    exp(ws.path()).args(["remote", "add", "origin"]).arg(&url).assert().success();
    exp(ws.path()).args(["push", "--all"]).assert().success();
    let home = tempfile::tempdir().unwrap();
    exp(home.path()).arg("clone").arg(&url).arg("c").assert().success();
    let clone = home.path().join("c");
    assert!(!clone.join("config").exists() && !clone.join("experiments").exists());
    exp(&clone)
        .args(["rescore", "shared-run", "--run-id", "alpha", "-S", "significance.alpha=0.01"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 requests sent · 12 answers reused"));
    assert_eq!(server.sent(), 12);
    let sig = read_json(&trials(&clone, "alpha")[0].join("results/significance.json"));
    assert_eq!(sig["alpha"], 0.01);
}

#[test]
fn rescore_refuses_a_config_with_other_requests_naming_the_keys() {
    let server = Server::start();
    let ws = workspace(4, &server.url, 4);
    run(ws.path(), "orig", &["--archive"]);
    let config = std::fs::read_to_string(ws.path().join("config/eval_config.yaml")).unwrap();
    let warmer = config.replace("temps: [0.0]", "temps: [0.7]").replace(
        "labels: [positive, negative]}",
        "labels: [positive, negative], extract: \"(positive)\"}",
    );
    write_files(ws.path(), &[("config/other.yaml", &warmer)]);
    exp(ws.path())
        .args(["rescore", "orig", "--config", "config/other.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("decoding.temps: [0.0] -> [0.7]"))
        .stderr(predicate::str::contains("scoring.extract").not())
        .stderr(predicate::str::contains("hint: rescore changes scoring and statistics only"));
    // A changed prompt file is a changed request too.
    write_files(ws.path(), &[("config/prompts/control.txt", "Classify, please.")]);
    exp(ws.path())
        .args(["rescore", "orig", "--config", "config/eval_config.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "prompt file config/prompts/control.txt: content changed",
        ));
    exp(ws.path())
        .args(["rescore", "no-such-run"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("`no-such-run`"))
        .stderr(predicate::str::contains("hint:"));
    assert_eq!(server.sent(), 8);
}

#[test]
fn rescore_help_shows_examples() {
    exp(Path::new("."))
        .args(["rescore", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains("exp rescore HEAD -S scoring.type=regex"));
}
