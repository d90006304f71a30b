//! `exp run` against a real HTTP server on 127.0.0.1 started by each test (a small raw HTTP/1.1
//! server on tokio, so it can misbehave in every way a real endpoint does: 429 with Retry-After,
//! 500, slow, truncated and malformed bodies), and with the built-in sim model.
mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{copy_dir, csv_rows, exp, exp_process};
use predicates::prelude::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

// ---------------------------------------------------------------------------------------------
// The test server

/// What the server does with one request.
#[derive(Clone, Debug)]
enum Reply {
    Ok,
    Status(u16, Option<&'static str>),
    /// Headers promise more bytes than are sent, then the connection closes.
    Truncated,
    /// 200 with a body that is not JSON.
    Malformed,
    /// Waits, then answers.
    Slow(Duration),
    /// `status` with the request's `Authorization` value echoed in the body (as a quoted header
    /// and inside an error message) and in response headers, as a careless or hostile server
    /// does; 200 echoes it inside the answer's content.
    Echo(u16),
    /// 200 whose body never ends (chunked, until the client hangs up or `FLOOD_CAP` bytes are
    /// out), announcing `Content-Length` when given instead.
    Flood(Option<u64>),
    /// 200 whose `usage` claims these token counts.
    Usage(u64, u64),
}

/// The most a `Flood` reply sends: the test stays bounded in time and memory whatever exp does.
const FLOOD_CAP: u64 = 64 << 20;

/// `script(n, body)`: the reply to the n-th request (1-based) carrying this body's prompt.
type Script = Arc<dyn Fn(u32, &Value) -> Reply + Send + Sync>;

struct State {
    script: Script,
    attempts: Mutex<HashMap<String, u32>>,
    /// Prompt keys in the order they were answered with 200, for the resume test.
    answered: Mutex<Vec<String>>,
    received: Mutex<Vec<String>>,
    bodies: Mutex<Vec<Value>>,
    auth: Mutex<HashSet<String>>,
    ok: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    in_flight: AtomicI64,
    max_in_flight: AtomicI64,
    /// Bytes of `Flood` bodies written before the client hung up (or the cap).
    flooded: AtomicU64,
    /// Answers beyond this many wait until `open` is true (the kill test holds the run mid-way).
    hold_after: AtomicU64,
    /// Answers let through so far while `hold_after` applies: claimed before answering, so two
    /// concurrent requests can never both take the last free slot.
    let_through: AtomicU64,
    open: tokio::sync::watch::Sender<bool>,
}

impl State {
    /// Whether one more answer may go out now: true while fewer than `hold_after` were let through.
    fn claim_answer(&self) -> bool {
        let limit = self.hold_after.load(Ordering::SeqCst);
        self.let_through
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .is_ok()
    }
}

struct Server {
    url: String,
    state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

/// The key the server identifies a request by: system prompt + user message.
fn key_of(body: &Value) -> String {
    let m = &body["messages"];
    format!("{}|{}", m[0]["content"].as_str().unwrap_or(""), m[1]["content"].as_str().unwrap_or(""))
}

impl Server {
    fn start(script: impl Fn(u32, &Value) -> Reply + Send + Sync + 'static) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (open, _) = tokio::sync::watch::channel(true);
        let state = Arc::new(State {
            script: Arc::new(script),
            attempts: Mutex::default(),
            answered: Mutex::default(),
            received: Mutex::default(),
            bodies: Mutex::default(),
            auth: Mutex::default(),
            ok: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            max_in_flight: AtomicI64::new(0),
            flooded: AtomicU64::new(0),
            hold_after: AtomicU64::new(u64::MAX),
            let_through: AtomicU64::new(0),
            open,
        });
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        Server { url, state, _rt: rt }
    }

    fn total(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Answers `n` requests, then holds every further answer until `release`: a run stuck mid-way
    /// at a known point, for the kill and interrupt tests.
    fn hold_after(&self, n: u64) {
        self.state.let_through.store(self.state.ok.load(Ordering::SeqCst), Ordering::SeqCst);
        self.state.hold_after.store(n, Ordering::SeqCst);
        self.state.open.send_replace(false);
    }

    /// Answers everything from now on, the held requests included.
    fn release(&self) {
        self.state.hold_after.store(u64::MAX, Ordering::SeqCst);
        self.state.open.send_replace(true);
    }
}

async fn serve(sock: tokio::net::TcpStream, st: Arc<State>) {
    let mut reader = BufReader::new(sock);
    loop {
        let mut length = 0usize;
        let mut auth = None;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if first {
                first = false;
                continue;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("authorization:") {
                auth = Some(line["authorization:".len()..].trim().to_string());
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let key = key_of(&body);
        let auth = auth.unwrap_or_default();
        if !auth.is_empty() {
            st.auth.lock().unwrap().insert(auth.clone());
        }
        let n = {
            let mut attempts = st.attempts.lock().unwrap();
            let n = attempts.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        st.received.lock().unwrap().push(key.clone());
        st.bodies.lock().unwrap().push(body.clone());
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut reply = (st.script)(n, &body);
        if let Reply::Slow(d) = reply {
            tokio::time::sleep(d).await;
            reply = Reply::Ok;
        }
        if matches!(reply, Reply::Ok) && !st.claim_answer() {
            let mut rx = st.open.subscribe();
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        let sock = reader.get_mut();
        let write = |status: &str, extra: String, body: String| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
                body.len()
            )
        };
        let out = match reply {
            Reply::Ok | Reply::Usage(..) | Reply::Echo(200) => {
                let prompt = key.split_whitespace().count() as u64;
                let completion = 1 + (prompt % 3);
                st.ok.fetch_add(1, Ordering::SeqCst);
                // The server's totals are of honest usage only: what a run may count.
                if !matches!(reply, Reply::Usage(..)) {
                    st.prompt_tokens.fetch_add(prompt, Ordering::SeqCst);
                    st.completion_tokens.fetch_add(completion, Ordering::SeqCst);
                }
                st.answered.lock().unwrap().push(key.clone());
                let mut answer =
                    if key.contains("happy") { "positive" } else { "negative" }.to_string();
                if matches!(reply, Reply::Echo(_)) {
                    answer.push_str(&format!(" (you sent {auth})"));
                }
                let (prompt, completion) = match reply {
                    Reply::Usage(p, c) => (p, c),
                    _ => (prompt, completion),
                };
                let json = serde_json::json!({
                    "id": "x", "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.wrapping_add(completion)}
                });
                write("200 OK", String::new(), json.to_string())
            }
            Reply::Status(code, retry_after) => {
                let extra =
                    retry_after.map(|r| format!("Retry-After: {r}\r\n")).unwrap_or_default();
                write(&format!("{code} Oops"), extra, format!("{{\"error\": \"status {code}\"}}"))
            }
            Reply::Malformed => {
                write("200 OK", String::new(), "<html>upstream error</html>".into())
            }
            Reply::Truncated => {
                let text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"choices\": [{\"mess";
                let _ = sock.write_all(text.as_bytes()).await;
                let _ = sock.shutdown().await;
                return;
            }
            Reply::Echo(code) => {
                let key = auth.trim_start_matches("Bearer ");
                let error = serde_json::json!({
                    "message": format!("Incorrect API key provided: {key}"),
                    "received_headers": {"Authorization": auth},
                });
                // The key once more, its first character spelled as a JSON escape.
                let escaped =
                    key.chars().next().map(|c| format!("\\u{:04x}{}", c as u32, &key[1..]));
                let body = format!(
                    r#"{{"error": {error}, "escaped": "{}"}}"#,
                    escaped.unwrap_or_default()
                );
                let extra = format!(
                    "WWW-Authenticate: Bearer error=\"invalid_token\", token=\"{auth}\"\r\nX-Echo-Authorization: {auth}\r\n"
                );
                write(&format!("{code} Unauthorized"), extra, body)
            }
            Reply::Flood(announce) => {
                let head = match announce {
                    Some(n) => format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {n}\r\n\r\n"),
                    None => "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 << 10];
                let framed = if announce.is_some() {
                    chunk.clone()
                } else {
                    [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()]
                        .concat()
                };
                while st.flooded.load(Ordering::SeqCst) < FLOOD_CAP {
                    if sock.write_all(&framed).await.is_err() {
                        return;
                    }
                    st.flooded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
                return;
            }
            Reply::Slow(_) => unreachable!("handled above"),
        };
        if sock.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workspaces

/// A workspace with `n` items (every third one "happy"), two prompts and a config whose model
/// section is `model` (YAML lines, indented for the models list).
fn workspace(n: usize, model: &str, execution: &str) -> tempfile::TempDir {
    common::sentiment_workspace(n, model, "[0.0]", execution)
}

fn openai_model(url: &str, extra: &str) -> String {
    format!(
        "  - {{name: m, provider: openai, base_url: \"{url}\", model: test-model, max_connections: 4, pricing: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}{extra}}}"
    )
}

const FAST: &str = "max_retries: 3, backoff_base_s: 0.01, backoff_max_s: 0.05, timeout_s: 10";

fn run_dir(ws: &Path, id: &str) -> PathBuf {
    ws.join("experiments").join(format!("run_{id}"))
}

fn trial_dir(ws: &Path, id: &str) -> PathBuf {
    let run = run_dir(ws, id);
    let manifest: Value = read_json(&run.join("multi_trial_manifest.json"));
    run.join(manifest["trials"][0]["slug"].as_str().unwrap())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn journal_lines(trial: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for cond in ["control", "treatment"] {
        let dir = trial.join("responses").join(cond);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// custom_id -> the key the server sees, from the built request files.
fn keys_by_custom_id(trial: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for cond in ["control", "treatment"] {
        for e in std::fs::read_dir(trial.join("inputs").join(cond)).unwrap() {
            for line in std::fs::read_to_string(e.unwrap().path()).unwrap().lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                out.insert(v["custom_id"].as_str().unwrap().to_string(), key_of(&v["body"]));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Happy paths

#[test]
fn every_item_gets_a_response_and_costs_equal_the_tokens_the_server_sent() {
    let server = Server::start(|_, _| Reply::Ok);
    let ws = workspace(30, &openai_model(&server.url, ""), FAST);
    exp(ws.path())
        .args([
            "run",
            "--config",
            "config/eval_config.yaml",
            "--run-id",
            "r1",
            "--parts-per-dataset",
            "3",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("run r1: complete"));
    let trial = trial_dir(ws.path(), "r1");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(preds.len(), 60);
    assert!(preds.iter().all(|r| r["error"].is_empty() && !r["raw_output"].is_empty()));
    let ids: HashSet<(String, String)> =
        preds.iter().map(|r| (r["item_id"].clone(), r["condition"].clone())).collect();
    assert_eq!(ids.len(), 60, "every item once per condition");
    let costs = read_json(&trial.join("results/costs.json"));
    let (pin, pout) = (
        server.state.prompt_tokens.load(Ordering::SeqCst),
        server.state.completion_tokens.load(Ordering::SeqCst),
    );
    assert_eq!(costs["input_tokens"].as_u64().unwrap(), pin);
    assert_eq!(costs["output_tokens"].as_u64().unwrap(), pout);
    assert_eq!(costs["requests"], 60);
    let want_usd = (pin as f64 * 1.0 + pout as f64 * 2.0) / 1e6;
    assert!((costs["usd"].as_f64().unwrap() - want_usd).abs() < 1e-15);
    let manifest = read_json(&run_dir(ws.path(), "r1").join("multi_trial_manifest.json"));
    assert_eq!(manifest["totals"]["input_tokens"].as_u64().unwrap(), pin);
    assert_eq!(manifest["status"], "complete");
    // The fake model says "positive" exactly for the happy items, which are the positive ones.
    let metrics = read_json(&trial.join("results/metrics.json"));
    assert_eq!(metrics["conditions"]["control"]["accuracy"], 1.0);
    let scores = csv_rows(&trial.join("results/per_item_scores.csv"));
    assert!(scores.iter().all(|r| r["score"] == "1"));
    let run = read_json(&run_dir(ws.path(), "r1").join("run.json"));
    assert_eq!(run["status"], "complete");
    assert_eq!(run["parts_per_dataset"], 3);
    assert_eq!(std::fs::read_dir(trial.join("inputs/control")).unwrap().count(), 3);
}

#[test]
fn requests_carry_the_decoding_extra_body_and_the_key_which_is_written_nowhere() {
    let server = Server::start(|_, _| Reply::Ok);
    let model = openai_model(
        &server.url,
        ", api_key_env: EXP_TEST_KEY, extra_body: {reasoning_effort: low, top_k: 7}",
    );
    let ws = workspace(4, &model, FAST);
    exp(ws.path())
        .env("EXP_TEST_KEY", "sekrit-123")
        .args(["run", "--run-id", "k"])
        .assert()
        .success();
    let bodies = server.state.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 8);
    let b = &bodies[0];
    assert_eq!(b["model"], "test-model");
    assert_eq!(b["temperature"], 0.0);
    assert_eq!(b["top_p"], 1.0);
    assert_eq!(b["max_tokens"], 16);
    assert_eq!(b["reasoning_effort"], "low");
    assert_eq!(b["top_k"], 7);
    assert_eq!(b["messages"][0]["role"], "system");
    assert!(b["messages"][1]["content"].as_str().unwrap().starts_with("Text: item"));
    assert_eq!(
        *server.state.auth.lock().unwrap(),
        HashSet::from(["Bearer sekrit-123".to_string()])
    );
    for entry in walk(ws.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("sekrit-123"),
            "key leaked into {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn a_missing_api_key_variable_is_an_error_that_says_to_export_it() {
    let model = openai_model("http://127.0.0.1:9/v1", ", api_key_env: EXP_TEST_MISSING_KEY");
    let ws = workspace(2, &model, FAST);
    exp(ws.path())
        .env_remove("EXP_TEST_MISSING_KEY")
        .args(["run"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("$EXP_TEST_MISSING_KEY, which is not set"))
        .stderr(predicate::str::contains("hint: export EXP_TEST_MISSING_KEY="));
}

#[test]
fn an_api_key_with_a_line_break_is_an_error_that_says_to_export_it_alone() {
    let model = openai_model("http://127.0.0.1:9/v1", ", api_key_env: EXP_TEST_BAD_KEY");
    let ws = workspace(2, &model, FAST);
    let out = exp(ws.path())
        .env("EXP_TEST_BAD_KEY", "sk-secret-123\n")
        .args(["run"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "$EXP_TEST_BAD_KEY, whose value cannot be sent in a header",
        ))
        .stderr(predicate::str::contains("hint: export EXP_TEST_BAD_KEY again with the key alone"))
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sk-secret-123"));
}

#[test]
fn max_connections_bounds_the_requests_in_flight() {
    let server = Server::start(|_, _| Reply::Slow(Duration::from_millis(30)));
    let model = openai_model(&server.url, "").replace("max_connections: 4", "max_connections: 3");
    let ws = workspace(20, &model, FAST);
    exp(ws.path())
        .args(["run", "--max-concurrent-jobs", "4", "--parts-per-dataset", "4"])
        .assert()
        .success();
    let max = server.state.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} requests in flight with max_connections 3");
    assert_eq!(server.total(), 40);
}

// ---------------------------------------------------------------------------------------------
// Misbehaving servers

#[test]
fn rate_limits_and_server_errors_are_retried_until_answered() {
    // 1st attempt 429 (Retry-After 0), 2nd 500, 3rd answered.
    let server = Server::start(|n, _| match n {
        1 => Reply::Status(429, Some("0")),
        2 => Reply::Status(500, None),
        _ => Reply::Ok,
    });
    let ws = workspace(10, &openai_model(&server.url, ""), FAST);
    exp(ws.path()).args(["run", "--run-id", "r"]).assert().success();
    let trial = trial_dir(ws.path(), "r");
    let lines = journal_lines(&trial);
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l["status"] == "ok" && l["attempts"] == 3), "{lines:?}");
    assert_eq!(server.total(), 60);
    let costs = read_json(&trial.join("results/costs.json"));
    assert_eq!(
        costs["input_tokens"].as_u64().unwrap(),
        server.state.prompt_tokens.load(Ordering::SeqCst)
    );
}

#[test]
fn retry_after_is_honoured() {
    let server =
        Server::start(|n, _| if n == 1 { Reply::Status(429, Some("1")) } else { Reply::Ok });
    let ws = workspace(
        1,
        &openai_model(&server.url, ""),
        "max_retries: 3, backoff_base_s: 0.01, backoff_max_s: 5, timeout_s: 10",
    );
    let started = std::time::Instant::now();
    exp(ws.path()).args(["run", "--condition", "control"]).assert().success();
    // The backoff's own first wait is at most 10 ms: a wait of a second can only come from the
    // header, honoured because it is within backoff_max_s.
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
}

#[test]
fn truncated_malformed_and_slow_answers_are_retried() {
    // The slow answer never comes in time. The timeout is long enough that the 4th attempt's
    // prompt answer always beats it, even on a loaded machine (0.5 s did not: the 4th attempt
    // could time out too, and then the count of attempts was 5).
    let server = Server::start(|n, _| match n {
        1 => Reply::Truncated,
        2 => Reply::Malformed,
        3 => Reply::Slow(Duration::from_secs(600)),
        _ => Reply::Ok,
    });
    // All 8 requests in flight at once, so the run waits for one timeout, not two in a row.
    let model = openai_model(&server.url, "").replace("max_connections: 4", "max_connections: 8");
    let ws = workspace(
        4,
        &model,
        "max_retries: 5, backoff_base_s: 0.01, backoff_max_s: 0.05, timeout_s: 3",
    );
    exp(ws.path()).args(["run", "--run-id", "t"]).assert().success();
    let lines = journal_lines(&trial_dir(ws.path(), "t"));
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|l| l["status"] == "ok" && l["attempts"] == 4), "{lines:?}");
}

#[test]
fn requests_that_keep_failing_are_recorded_with_their_error_never_dropped() {
    let server = Server::start(|_, body| {
        if key_of(body).contains("happy") { Reply::Status(503, None) } else { Reply::Ok }
    });
    let ws = workspace(
        9,
        &openai_model(&server.url, ""),
        "max_retries: 2, backoff_base_s: 0.01, backoff_max_s: 0.02",
    );
    exp(ws.path()).args(["run", "--run-id", "f"]).assert().success();
    let trial = trial_dir(ws.path(), "f");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(preds.len(), 18);
    let failed: Vec<_> = preds.iter().filter(|r| !r["error"].is_empty()).collect();
    assert_eq!(failed.len(), 6);
    assert!(
        failed.iter().all(|r| r["error"].contains("gave up after 3 attempts: HTTP 503")),
        "{failed:?}"
    );
    let scores = csv_rows(&trial.join("results/per_item_scores.csv"));
    assert_eq!(scores.iter().filter(|r| r["score"].is_empty()).count(), 6);
    let metrics = read_json(&trial.join("results/metrics.json"));
    assert_eq!(metrics["conditions"]["control"]["failed"], 3);
    assert_eq!(metrics["conditions"]["control"]["scored"], 6);
    let costs = read_json(&trial.join("results/costs.json"));
    assert_eq!(costs["failures"], 6);
    assert_eq!(
        costs["input_tokens"].as_u64().unwrap(),
        server.state.prompt_tokens.load(Ordering::SeqCst)
    );
}

#[test]
fn a_client_error_is_not_retried_and_a_run_where_everything_failed_says_so() {
    let server = Server::start(|_, _| Reply::Status(400, None));
    let ws = workspace(3, &openai_model(&server.url, ""), FAST);
    exp(ws.path())
        .args(["run", "--run-id", "bad"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("every request failed"))
        .stderr(predicate::str::contains("hint:"));
    assert_eq!(server.total(), 6, "400 is not retried");
    assert_eq!(read_json(&run_dir(ws.path(), "bad").join("run.json"))["status"], "failed");
}

/// A loopback port that refuses every connection for as long as the socket lives: bound, so no
/// other test or program can take it, but never listening. (A fixed port such as 9 is closed
/// only on machines where nothing happens to serve it.)
fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// An endpoint that never answers is down (tests/endpoint.rs covers replicas): the run stops
/// incomplete saying so, rather than record every request as failed.
#[test]
fn an_unreachable_endpoint_stops_the_run_incomplete_saying_it_is_down() {
    let (_socket, port) = refusing_port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let ws = workspace(
        2,
        &openai_model(&url, ""),
        "max_retries: 20, backoff_base_s: 0.01, backoff_max_s: 0.01",
    );
    exp(ws.path())
        .args(["run", "--run-id", "down"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "error: run down stopped: model `m`: the endpoint is down after 5 rests in a row: {url} (connection failed"
        )))
        .stderr(predicate::str::contains("--resume --run-id down"));
    assert_eq!(read_json(&run_dir(ws.path(), "down").join("run.json"))["status"], "incomplete");
    let lines = journal_lines(&trial_dir(ws.path(), "down"));
    assert!(lines.is_empty(), "nothing was answered, nothing is recorded as failed: {lines:?}");
}

// ---------------------------------------------------------------------------------------------
// Crashes, interruptions and resume

/// `exp ARGS` started in `dir` without waiting; `capture` pipes its output for `interrupt`,
/// otherwise it goes nowhere (a killed child's output is never read).
fn spawn_exp(dir: &Path, args: &[&str], capture: bool) -> std::process::Child {
    let out = || if capture { Stdio::piped() } else { Stdio::null() };
    exp_process(dir).args(args).stdout(out()).stderr(out()).spawn().unwrap()
}

/// Ctrl-C (SIGINT) to `child`, then its exit status and output.
fn interrupt(child: std::process::Child) -> std::process::Output {
    // SAFETY: kill(2) on the child we spawned and still own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    child.wait_with_output().unwrap()
}

/// Journal lines written so far in every trial of the run folder `run` (0 before it exists).
fn journaled(run: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(run) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.path().join("responses").is_dir())
        .map(|e| journal_lines(&e.path()).len())
        .sum()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_resending_journaled_requests() {
    let server = Server::start(|_, _| Reply::Ok);
    // The server answers 15 requests, then holds every further answer until released.
    server.hold_after(15);
    let ws = workspace(40, &openai_model(&server.url, ""), FAST);
    let mut child =
        spawn_exp(ws.path(), &["run", "--run-id", "k", "--parts-per-dataset", "2"], false);
    // Kill only once the server holds all 4 requests exp may have in flight (max_connections):
    // exp can send nothing more, so no request of the killed run can reach the server after
    // `before` is read below and pass for one the resumed run sent.
    wait_until("15 answers journaled and 4 requests held", || {
        journaled(&run_dir(ws.path(), "k")) >= 15
            && server.state.in_flight.load(Ordering::SeqCst) >= 4
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run = read_json(&run_dir(ws.path(), "k").join("run.json"));
    assert_eq!(run["status"], "running", "a killed run cannot have finished");

    let trial = std::fs::read_dir(run_dir(ws.path(), "k"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("inputs").is_dir())
        .unwrap();
    let journaled: HashSet<String> = journal_lines(&trial)
        .iter()
        .filter(|l| l["status"] == "ok")
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(journaled.len(), 15);
    let keys = keys_by_custom_id(&trial);
    let journaled_keys: HashSet<&String> = journaled.iter().map(|id| &keys[id]).collect();

    let before = server.total();
    server.release();
    exp(ws.path())
        .args(["run", "--resume"])
        .assert()
        .success()
        .stdout(predicate::str::contains("resumed; 15 answered earlier"));
    let resent: Vec<String> = server.state.received.lock().unwrap()[before..].to_vec();
    for key in &resent {
        assert!(!journaled_keys.contains(key), "re-sent a journaled request: {key}");
    }
    assert_eq!(resent.len(), 80 - 15);
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(preds.len(), 80);
    let unique: HashSet<(String, String)> =
        preds.iter().map(|r| (r["item_id"].clone(), r["condition"].clone())).collect();
    assert_eq!(unique.len(), 80, "every item exactly once per condition");
    assert!(preds.iter().all(|r| r["error"].is_empty()));
    let ok_lines = journal_lines(&trial).into_iter().filter(|l| l["status"] == "ok").count();
    assert_eq!(ok_lines, 80, "no request answered twice");
    let run = read_json(&run_dir(ws.path(), "k").join("run.json"));
    assert_eq!(run["status"], "complete");
    assert_eq!(run["resumed_at"].as_array().unwrap().len(), 1);
}

#[test]
fn ctrl_c_stops_cleanly_with_the_journal_intact_and_says_how_to_resume() {
    let server = Server::start(|_, _| Reply::Ok);
    server.hold_after(5);
    let ws = workspace(20, &openai_model(&server.url, ""), FAST);
    let child = spawn_exp(ws.path(), &["run", "--run-id", "c"], true);
    // Interrupt only once the 5 answers are journaled and a 6th request is held by the server.
    let run = run_dir(ws.path(), "c");
    wait_until("5 answers journaled", || journaled(&run) >= 5 && server.total() >= 6);
    let out = interrupt(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--resume --run-id c"), "{stderr}");
    let run = read_json(&run_dir(ws.path(), "c").join("run.json"));
    assert_eq!(run["status"], "incomplete");
    let trial = trial_dir(ws.path(), "c");
    let lines = journal_lines(&trial);
    assert_eq!(lines.len(), 5, "exactly the answered requests are journaled");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(preds.len(), 40);
    assert_eq!(preds.iter().filter(|r| r["error"].contains("interrupted")).count(), 35);
    server.release();
    exp(ws.path()).args(["run", "--resume", "--run-id", "c"]).assert().success();
    assert_eq!(read_json(&run_dir(ws.path(), "c").join("run.json"))["status"], "complete");
}

#[test]
fn a_torn_last_journal_line_is_ignored_and_its_request_sent_again() {
    let server = Server::start(|_, _| Reply::Ok);
    let ws = workspace(3, &openai_model(&server.url, ""), FAST);
    exp(ws.path()).args(["run", "--run-id", "torn", "--condition", "control"]).assert().success();
    let trial = trial_dir(ws.path(), "torn");
    let journal = trial.join("responses/control/part-0000.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    // Simulate a crash mid-append: cut the last line in half and mark the run unfinished.
    let cut = text.trim_end().rfind('\n').unwrap() + 1 + 20;
    std::fs::write(&journal, &text[..cut]).unwrap();
    let run_json = run_dir(ws.path(), "torn").join("run.json");
    let mut run = read_json(&run_json);
    run["status"] = "incomplete".into();
    std::fs::write(&run_json, run.to_string()).unwrap();
    let before = server.total();
    exp(ws.path()).args(["run", "--resume", "--run-id", "torn"]).assert().success();
    assert_eq!(server.total() - before, 1);
    let text = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{text}");
}

#[test]
fn resume_refuses_a_changed_config_and_lists_what_changed() {
    let ws = workspace(3, &sim_model(), "");
    exp(ws.path()).args(["run", "--run-id", "a", "--condition", "control"]).assert().success();
    let run_json = run_dir(ws.path(), "a").join("run.json");
    let mut run = read_json(&run_json);
    run["status"] = "incomplete".into();
    std::fs::write(&run_json, run.to_string()).unwrap();
    let cfg = ws.path().join("config/eval_config.yaml");
    let text =
        std::fs::read_to_string(&cfg).unwrap().replace("max_tokens: [16]", "max_tokens: [32]");
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(ws.path().join("config/prompts/control.txt"), "Something else.").unwrap();
    exp(ws.path())
        .args(["run", "--resume"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("the config changed since run `a` started"))
        .stderr(predicate::str::contains("decoding.max_tokens: [16] -> [32]"))
        .stderr(predicate::str::contains("prompt file config/prompts/control.txt: content changed"))
        .stderr(predicate::str::contains("hint: restore the old config"));
}

#[test]
fn resume_needs_an_unfinished_run() {
    let ws = workspace(2, &sim_model(), "");
    exp(ws.path())
        .args(["run", "--resume"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "no unfinished run and no run with failed requests to resume",
        ))
        .stderr(predicate::str::contains("hint: "));
    exp(ws.path()).args(["run", "--run-id", "done"]).assert().success();
    exp(ws.path())
        .args(["run", "--resume", "--run-id", "done"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already complete"));
    exp(ws.path()).args(["run", "--run-id", "done"]).assert().failure().stderr(
        predicate::str::contains("hint: continue it with `exp run --resume --run-id done`"),
    );
    exp(ws.path())
        .args(["run", "--resume", "--run-id", "nope"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("run `nope` does not exist"));
}

/// Marks run `id` of workspace `ws` as stopped before it finished.
fn mark_incomplete(ws: &Path, id: &str) {
    let run_json = run_dir(ws, id).join("run.json");
    let mut run = read_json(&run_json);
    run["status"] = "incomplete".into();
    std::fs::write(&run_json, run.to_string()).unwrap();
}

#[test]
fn resume_without_a_run_id_picks_only_an_unfinished_run_of_the_same_config() {
    let ws = workspace(3, &sim_model(), "");
    let a = ws.path().join("config/eval_config.yaml");
    std::fs::copy(&a, ws.path().join("config/b.yaml")).unwrap();
    exp(ws.path())
        .args(["run", "--config", "config/eval_config.yaml", "--run-id", "a"])
        .assert()
        .success();
    assert_eq!(
        read_json(&run_dir(ws.path(), "a").join("run.json"))["config"],
        "config/eval_config.yaml"
    );
    mark_incomplete(ws.path(), "a");
    exp(ws.path())
        .args(["run", "--config", "config/b.yaml", "--resume"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no unfinished run"))
        .stderr(predicate::str::contains("config/b.yaml"));
    assert_eq!(
        read_json(&run_dir(ws.path(), "a").join("run.json"))["resumed_at"],
        serde_json::json!([])
    );
    // A run.json from before the field matches any config; `./` and the default path are the same config.
    exp(ws.path()).args(["run", "--config", "config/b.yaml", "--run-id", "b"]).assert().success();
    mark_incomplete(ws.path(), "b");
    exp(ws.path())
        .args(["run", "--config", "./config/eval_config.yaml", "--resume"])
        .assert()
        .success()
        .stdout(predicate::str::contains("run a: complete"));
    let b = run_dir(ws.path(), "b").join("run.json");
    let mut run = read_json(&b);
    run.as_object_mut().unwrap().remove("config");
    std::fs::write(&b, run.to_string()).unwrap();
    exp(ws.path())
        .args(["run", "--resume"])
        .assert()
        .success()
        .stdout(predicate::str::contains("run b: complete"));
}

#[test]
fn resume_names_a_changed_nested_model_setting_by_its_dotted_key() {
    let model = "  - {name: sim, provider: sim, sim: {accuracy: {control: 0.6, treatment: 0.9}, seed: 1, latency_ms: 0}}";
    let ws = workspace(3, model, "");
    exp(ws.path()).args(["run", "--run-id", "n"]).assert().success();
    mark_incomplete(ws.path(), "n");
    let cfg = ws.path().join("config/eval_config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("latency_ms: 0", "latency_ms: 3");
    std::fs::write(&cfg, text).unwrap();
    let out = exp(ws.path()).args(["run", "--resume"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("models[0].sim.latency_ms: 0 -> 3"), "{stderr}");
    assert!(!stderr.contains("models: ["), "no JSON dump of the models list: {stderr}");
}

// ---------------------------------------------------------------------------------------------
// The sim model, the demo, the plan

fn sim_model() -> String {
    "  - {name: sim, provider: sim, sim: {accuracy: {control: 0.6, treatment: 0.9}, seed: 1}}"
        .into()
}

fn demo_workspace() -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&root.join("config"), &ws.path().join("config"));
    copy_dir(&root.join("data"), &ws.path().join("data"));
    ws
}

#[test]
fn the_shipped_demo_config_runs_offline_and_writes_every_result_file() {
    let ws = demo_workspace();
    exp(ws.path())
        .args(["run", "--config", "config/eval_config.yaml", "--run-id", "demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("sim-demo-operational_only-t0-tk50-tp1-mx1024"))
        .stdout(predicate::str::contains("run demo: complete"));
    let run = run_dir(ws.path(), "demo");
    for f in [
        "run.json",
        "multi_trial_manifest.json",
        "config/eval_config.yaml",
        "config/prompts/control_system.txt",
        "config/prompts/operational_only_system.md",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let manifest = read_json(&run.join("multi_trial_manifest.json"));
    assert_eq!(manifest["trials"].as_array().unwrap().len(), 2);
    for t in manifest["trials"].as_array().unwrap() {
        let dir = run.join(t["slug"].as_str().unwrap());
        for f in [
            "trial.json",
            "inputs/control/part-0000.jsonl",
            "responses/treatment/part-0000.jsonl",
            "results/predictions.csv",
            "results/per_item_scores.csv",
            "results/metrics.json",
            "results/costs.json",
        ] {
            assert!(dir.join(f).is_file(), "{}/{f}", t["slug"]);
        }
        let preds = csv_rows(&dir.join("results/predictions.csv"));
        assert_eq!(preds.len(), 192);
        assert!(preds.iter().all(|r| r["raw_output"].starts_with("[simulated]")));
        let costs = read_json(&dir.join("results/costs.json"));
        assert!(costs["usd"].as_f64().unwrap() > 0.0);
        assert_eq!(t["status"], "complete");
    }
    let prepared: Vec<_> =
        std::fs::read_dir(ws.path().join("prepared")).unwrap().flatten().collect();
    assert_eq!(prepared.len(), 2, "the prepared dataset and its pointer");
}

#[test]
fn the_sim_model_is_deterministic_across_runs() {
    let ws = workspace(30, &sim_model(), "");
    exp(ws.path()).args(["run", "--run-id", "a"]).assert().success();
    exp(ws.path()).args(["run", "--run-id", "b", "--parts-per-dataset", "4"]).assert().success();
    let a = csv_rows(&trial_dir(ws.path(), "a").join("results/per_item_scores.csv"));
    let b = csv_rows(&trial_dir(ws.path(), "b").join("results/per_item_scores.csv"));
    assert_eq!(a, b);
    let sa =
        std::fs::read_to_string(trial_dir(ws.path(), "a").join("results/metrics.json")).unwrap();
    let sb =
        std::fs::read_to_string(trial_dir(ws.path(), "b").join("results/metrics.json")).unwrap();
    assert_eq!(sa, sb);
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let ws = demo_workspace();
    exp(ws.path())
        .args(["run", "--dry_run", "--parts_per_dataset=3", "--max_concurrent_jobs=2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "2 trials × control+treatment · 12 jobs (3 parts per dataset) · 384 requests",
        ))
        .stdout(predicate::str::contains("nothing was sent or written"));
    assert!(!ws.path().join("experiments").exists());
    assert!(!ws.path().join("prepared").exists());
    let out = exp(ws.path())
        .args(["run", "--dry-run", "--json", "--condition=treatment"])
        .assert()
        .success();
    let plan: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let totals = &plan["totals"];
    assert_eq!(totals["requests"], 192);
    assert_eq!(totals["max_output_tokens"], 192 * 1024);
    assert!(totals["est_input_tokens"].as_u64().unwrap() > 192 * 20);
    assert!(totals["max_usd"].as_f64().unwrap() > totals["est_input_usd"].as_f64().unwrap());
}

#[test]
fn old_flag_spellings_are_accepted() {
    let ws = workspace(4, &sim_model(), "");
    exp(ws.path())
        .args([
            "run",
            "--config",
            "config/eval_config.yaml",
            "--run_id",
            "old",
            "--condition=treatment",
            "--parts_per_dataset=2",
            "--max_concurrent_jobs=1",
        ])
        .assert()
        .success();
    let run = read_json(&run_dir(ws.path(), "old").join("run.json"));
    assert_eq!(run["conditions"], serde_json::json!(["treatment"]));
    std::fs::write(run_dir(ws.path(), "old").join("run.json"), {
        let mut r = run.clone();
        r["status"] = "incomplete".into();
        r.to_string()
    })
    .unwrap();
    exp(ws.path())
        .args(["run", "--resume", "--run_id", "old", "--skip_prepare", "--skip_build"])
        .assert()
        .success();
}

#[test]
fn skip_flags_explain_what_they_need() {
    let ws = workspace(2, &sim_model(), "");
    exp(ws.path())
        .args(["run", "--skip-prepare"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("was never prepared"))
        .stderr(predicate::str::contains("hint: run once without --skip-prepare"));
    exp(ws.path())
        .args(["run", "--skip-build"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("hint: add --resume"));
}

#[test]
fn baseline_needs_the_treatment_condition() {
    let ws = workspace(2, &sim_model(), "");
    exp(ws.path())
        .args(["run", "--baseline", "runs/x"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("needs --condition treatment"))
        .stderr(predicate::str::contains("hint: add --condition treatment"));
}

#[test]
fn zero_parts_or_zero_concurrent_jobs_are_refused_with_what_to_give() {
    let ws = workspace(2, &sim_model(), "");
    for flag in ["--parts-per-dataset", "--max-concurrent-jobs"] {
        exp(ws.path())
            .args(["run", "--dry-run", flag, "0"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!("error: {flag} is 0")))
            .stderr(predicate::str::contains("hint: give 1 or more, at most"));
    }
}

#[test]
fn run_help_shows_examples() {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path())
        .args(["run", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--parts_per_dataset=24")
                .or(predicate::str::contains("parts_per_dataset")),
        )
        .stdout(predicate::str::contains("Examples:"));
}

// ---------------------------------------------------------------------------------------------
// Config and dataset errors: each names the file, the key (and line) and what to do

fn config_error(edit: impl Fn(&str) -> String, wants: &[&str]) {
    let ws = workspace(2, &sim_model(), "");
    let cfg = ws.path().join("config/eval_config.yaml");
    let text = edit(&std::fs::read_to_string(&cfg).unwrap());
    std::fs::write(&cfg, text).unwrap();
    let out = exp(ws.path()).args(["run", "--dry-run"]).assert().failure().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("config/eval_config.yaml"), "{stderr}");
    assert!(stderr.contains("\nhint: "), "{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "missing {w:?} in:\n{stderr}");
    }
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    config_error(
        |t| t.replace("user_template:", "temprature: 0.5\nuser_template:"),
        &["unknown field `temprature`", "line 7", "remove or rename"],
    );
}

#[test]
fn a_bad_type_is_refused_with_its_line() {
    config_error(
        |t| t.replace("max_tokens: [16]", "max_tokens: lots"),
        &["decoding.max_tokens", "invalid type", "line 8"],
    );
}

#[test]
fn an_unknown_provider_is_refused() {
    config_error(
        |t| t.replace("provider: sim", "provider: anthropic"),
        &["unknown variant `anthropic`", "openai", "line 4"],
    );
}

#[test]
fn a_prompt_set_without_both_conditions_is_refused() {
    config_error(
        |t| t.replace(", treatment: config/prompts/treatment.md", ""),
        &["missing field `treatment`", "prompt_sets"],
    );
}

#[test]
fn a_missing_prompt_file_is_refused_naming_the_key() {
    config_error(
        |t| t.replace("treatment.md", "nothere.md"),
        &["prompt_sets.ps.treatment", "nothere.md", "line 6", "create the file or fix the path"],
    );
}

#[test]
fn a_missing_dataset_file_is_refused_naming_the_key() {
    config_error(
        |t| t.replace("data/d.jsonl", "data/gone.jsonl"),
        &["datasets[0].path", "gone.jsonl", "line 2"],
    );
}

#[test]
fn an_openai_model_without_base_url_is_refused() {
    config_error(
        |t| t.replace(&sim_model(), "  - {name: m, provider: openai}"),
        &["models[0].base_url", "is missing", "hint: add base_url"],
    );
}

#[test]
fn a_template_field_no_row_has_is_refused() {
    config_error(
        |t| t.replace("Text: {text}", "Text: {body}"),
        &["user_template", "{body}", "item `i0`"],
    );
}

fn dataset_error(rows: &str, wants: &[&str]) {
    let ws = workspace(2, &sim_model(), "");
    std::fs::write(ws.path().join("data/d.jsonl"), rows).unwrap();
    let out = exp(ws.path()).args(["run", "--dry-run"]).assert().failure().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("data/d.jsonl"), "{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "missing {w:?} in:\n{stderr}");
    }
}

#[test]
fn a_dataset_row_without_an_id_names_its_line_and_the_fix() {
    dataset_error(
        "{\"id\": 1, \"text\": \"a\", \"label\": \"positive\"}\n{\"text\": \"b\", \"label\": \"negative\"}\n",
        &["line 2", "row has no `id`", "hint: give every row a non-empty `id`, or set id_field"],
    );
}

#[test]
fn a_dataset_row_without_a_label_names_its_line_and_the_fix() {
    dataset_error(
        "{\"id\": 1, \"text\": \"a\"}\n",
        &["line 1", "row has no `label`", "label_field"],
    );
}

#[test]
fn a_dataset_line_that_is_not_json_names_its_line() {
    dataset_error(
        "{\"id\": 1, \"text\": \"a\", \"label\": \"x\"}\nnot json\n",
        &["line 2", "not a JSON object", "hint: write one JSON object per line"],
    );
}

#[test]
fn a_missing_config_file_says_which_to_pass() {
    let ws = tempfile::tempdir().unwrap();
    exp(ws.path())
        .args(["run", "--config", "nope.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot read config nope.yaml"))
        .stderr(predicate::str::contains("hint: pass an existing file with --config"));
}

#[test]
fn a_run_being_resumed_by_a_live_process_is_not_resumed_twice() {
    let ws = workspace(2, &sim_model(), "");
    exp(ws.path()).args(["run", "--run-id", "l"]).assert().success();
    let dir = run_dir(ws.path(), "l");
    let mut run = read_json(&dir.join("run.json"));
    run["status"] = "incomplete".into();
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    // The test process itself stands in for another live exp.
    std::fs::write(dir.join(".exp-run.lock"), std::process::id().to_string()).unwrap();
    exp(ws.path())
        .args(["run", "--resume", "--run-id", "l"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is being run by another exp process"))
        .stderr(predicate::str::contains("hint: wait for it to finish"));
    // A lock whose process is gone (as after kill -9) is taken over.
    std::fs::write(dir.join(".exp-run.lock"), "999999999").unwrap();
    exp(ws.path()).args(["run", "--resume", "--run-id", "l"]).assert().success();
    assert!(!dir.join(".exp-run.lock").exists());
}

// ---------------------------------------------------------------------------------------------
// --archive and --baseline (the store)

fn exp_log(ws: &Path) -> Vec<Value> {
    let out = exp(ws).args(["log", "--all", "--json"]).assert().success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    doc["commits"].as_array().unwrap().clone()
}

/// The commit `runs/<id>` points at (log order ties within a second, so never rely on it).
fn tip(ws: &Path, id: &str) -> Value {
    let want = format!("runs/{id}");
    exp_log(ws)
        .into_iter()
        .find(|c| {
            c["refs"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().ends_with(&want))
        })
        .unwrap_or_else(|| panic!("no commit for {want}"))
}

#[test]
fn archive_commits_the_run_and_creates_the_store_when_missing() {
    let ws = workspace(5, &sim_model(), "");
    exp(ws.path())
        .args(["run", "--run-id", "a1", "--archive", "-m", "first demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("created the store .exprepo"))
        .stdout(predicate::str::contains("archived: runs/a1 -> "));
    assert!(ws.path().join(".exprepo/refs/runs/a1").is_file());
    let log = exp_log(ws.path());
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["commit"]["run_id"], "a1");
    assert_eq!(log[0]["commit"]["status"], "complete");
    assert_eq!(log[0]["commit"]["message"], "first demo");
    // The stored run.json is the run's own, provenance included.
    let out = exp(ws.path()).args(["show", "a1", "run.json"]).assert().success();
    let stored: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(stored, read_json(&run_dir(ws.path(), "a1").join("run.json")));
    assert!(stored["provenance"].is_object());
    exp(ws.path())
        .args(["run", "--run-id", "a2", "--archive"])
        .assert()
        .success()
        .stdout(predicate::str::contains("created the store").not());
}

#[test]
fn an_interrupted_run_is_archived_marked_incomplete() {
    let server = Server::start(|_, _| Reply::Ok);
    server.hold_after(3);
    let ws = workspace(10, &openai_model(&server.url, ""), FAST);
    let child = spawn_exp(ws.path(), &["run", "--run-id", "ia", "--archive"], true);
    let run = run_dir(ws.path(), "ia");
    wait_until("3 answers journaled", || journaled(&run) >= 3 && server.total() >= 4);
    let out = interrupt(child);
    assert_eq!(out.status.code(), Some(1));
    let first = tip(ws.path(), "ia");
    assert_eq!(first["commit"]["status"], "incomplete");
    server.release();
    exp(ws.path()).args(["run", "--resume", "--archive"]).assert().success();
    let second = tip(ws.path(), "ia");
    assert_eq!(second["commit"]["status"], "complete");
    assert_eq!(
        second["commit"]["parents"],
        serde_json::json!([first["id"]]),
        "a new commit on top of the incomplete one"
    );
}

#[test]
fn baseline_control_rows_come_from_the_store_and_are_not_paid_for_again() {
    let server = Server::start(|_, _| Reply::Ok);
    let ws = workspace(12, &openai_model(&server.url, ""), FAST);
    exp(ws.path()).args(["run", "--run-id", "base", "--archive"]).assert().success();
    assert_eq!(server.total(), 24);
    let base_trial = trial_dir(ws.path(), "base");
    let base_preds = csv_rows(&base_trial.join("results/predictions.csv"));

    // --no-cache: the response cache would reuse base's treatment answers too.
    exp(ws.path())
        .args(["run", "--run-id", "t", "--condition", "treatment", "--baseline", "base"])
        .arg("--no-cache")
        .assert()
        .success()
        .stderr(predicate::str::contains("warning").not());
    assert_eq!(server.total(), 36, "only the 12 treatment requests were sent");
    let trial = trial_dir(ws.path(), "t");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(preds.len(), 24);
    let control: Vec<_> = preds.iter().filter(|r| r["condition"] == "control").cloned().collect();
    let base_control: Vec<_> =
        base_preds.iter().filter(|r| r["condition"] == "control").cloned().collect();
    assert_eq!(control, base_control);
    let scores = csv_rows(&trial.join("results/per_item_scores.csv"));
    assert_eq!(scores.iter().filter(|r| r["condition"] == "control").count(), 12);
    let metrics = read_json(&trial.join("results/metrics.json"));
    assert_eq!(metrics["conditions"]["control"]["n"], 12);
    assert_eq!(metrics["conditions"]["treatment"]["n"], 12);
    let costs = read_json(&trial.join("results/costs.json"));
    assert_eq!(costs["from_baseline"], serde_json::json!(["control"]));
    assert_eq!(costs["requests"], 12);
    assert!(costs["conditions"].get("control").is_none());
    let run = read_json(&run_dir(ws.path(), "t").join("run.json"));
    assert_eq!(run["baseline"], "base");
    assert_eq!(run["baseline_detail"]["missing_trials"], serde_json::json!([]));
    let log = exp_log(ws.path());
    assert_eq!(run["baseline_detail"]["commit"], log[0]["id"]);
}

#[test]
fn a_baseline_without_the_trial_leaves_it_treatment_only_and_says_so() {
    let ws = workspace(6, &sim_model(), "");
    exp(ws.path()).args(["run", "--run-id", "base", "--archive"]).assert().success();
    let cfg = ws.path().join("config/eval_config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("temps: [0.0]", "temps: [0.0, 1.0]");
    std::fs::write(&cfg, text).unwrap();
    exp(ws.path())
        .args(["run", "--run-id", "t", "--condition=treatment", "--baseline", "runs/base"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: baseline `runs/base` has no results for trial sim-ps-t1-tp1-mx16",
        ));
    let run = read_json(&run_dir(ws.path(), "t").join("run.json"));
    assert_eq!(run["baseline_detail"]["missing_trials"], serde_json::json!(["sim-ps-t1-tp1-mx16"]));
    let t1 = read_json(&run_dir(ws.path(), "t").join("sim-ps-t1-tp1-mx16/results/metrics.json"));
    assert!(t1["conditions"].get("control").is_none());
    let t0 = read_json(&run_dir(ws.path(), "t").join("sim-ps-t0-tp1-mx16/results/metrics.json"));
    assert_eq!(t0["conditions"]["control"]["n"], 6);
}

#[test]
fn a_baseline_with_another_control_prompt_is_flagged() {
    let ws = workspace(3, &sim_model(), "");
    exp(ws.path()).args(["run", "--run-id", "base", "--archive"]).assert().success();
    std::fs::write(ws.path().join("config/prompts/control.txt"), "A new control prompt.").unwrap();
    exp(ws.path())
        .args(["run", "--condition", "treatment", "--baseline", "base"])
        .assert()
        .success()
        .stderr(predicate::str::contains("control prompt of prompt set `ps` differs"));
}

#[test]
fn an_unknown_baseline_is_refused_before_anything_is_sent() {
    let server = Server::start(|_, _| Reply::Ok);
    let ws = workspace(3, &openai_model(&server.url, ""), FAST);
    exp(ws.path())
        .args(["run", "--condition", "treatment", "--baseline", "nope"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot open baseline `nope`"))
        .stderr(predicate::str::contains("hint: run `exp init`"));
    exp(ws.path()).args(["run", "--run-id", "b", "--archive"]).assert().success();
    let before = server.total();
    exp(ws.path())
        .args(["run", "--condition", "treatment", "--baseline", "nope"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("cannot open baseline `nope`"))
        .stderr(predicate::str::contains("hint: `exp list` shows every run and tag"));
    assert_eq!(server.total(), before);
}

#[test]
fn repeats_and_clusters_reach_the_result_files() {
    let ws = workspace(4, &sim_model(), "");
    let rows: String = (0..4)
        .map(|i| format!("{{\"id\": \"c{i}\", \"text\": \"t{i}\", \"label\": \"positive\", \"topic\": \"k{}\"}}\n", i % 2))
        .collect();
    std::fs::write(ws.path().join("data/d.jsonl"), rows).unwrap();
    let cfg = ws.path().join("config/eval_config.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("path: data/d.jsonl}", "path: data/d.jsonl, cluster_field: topic}")
        .replace("max_tokens: [16]}", "max_tokens: [16], repeats: 3}");
    std::fs::write(&cfg, text).unwrap();
    exp(ws.path()).args(["run", "--run-id", "rc"]).assert().success();
    let trial = trial_dir(ws.path(), "rc");
    let scores = csv_rows(&trial.join("results/per_item_scores.csv"));
    assert_eq!(scores.len(), 4 * 3 * 2);
    let repeats: HashSet<&str> = scores.iter().map(|r| r["repeat"].as_str()).collect();
    assert_eq!(repeats, HashSet::from(["0", "1", "2"]));
    assert!(
        scores
            .iter()
            .all(|r| r["cluster"] == format!("k{}", r["item_id"][1..].parse::<u32>().unwrap() % 2))
    );
    let metrics = read_json(&trial.join("results/metrics.json"));
    assert_eq!(metrics["n_items"], 4);
    assert_eq!(metrics["repeats"], 3);
    assert_eq!(metrics["conditions"]["treatment"]["n"], 12);
    let ids: HashSet<String> = journal_lines(&trial)
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains("d:c0:control:r2"), "{ids:?}");
    assert_eq!(ids.len(), 24);
}

// ---------------------------------------------------------------------------------------------
// --json: one document on stdout, everything else on stderr

/// stdout parsed as exactly one JSON document (`from_slice` refuses anything after it).
fn one_json_document(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{}", String::from_utf8_lossy(stdout))
    })
}

#[test]
fn run_json_prints_one_document_with_id_folder_status_trials_and_totals() {
    let server = Server::start(|_, _| Reply::Ok);
    let ws = workspace(6, &openai_model(&server.url, ""), FAST);
    let out = exp(ws.path())
        .args(["run", "--run-id", "j", "--archive", "--json", "--parts-per-dataset", "2"])
        .assert()
        .success();
    let doc = one_json_document(&out.get_output().stdout);
    assert_eq!(doc["run_id"], "j");
    assert_eq!(doc["run_dir"], run_dir(ws.path(), "j").display().to_string());
    assert_eq!(doc["status"], "complete");
    assert_eq!(doc["sent"], 12);
    let trials = doc["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["slug"], "m-ps-t0-tp1-mx16");
    assert_eq!(trials[0]["metrics"]["control"]["n"], 6);
    assert_eq!(doc["totals"]["requests"], 12);
    assert_eq!(
        doc["totals"]["input_tokens"].as_u64().unwrap(),
        server.state.prompt_tokens.load(Ordering::SeqCst)
    );
    // The same numbers the run wrote to its manifest.
    let manifest = read_json(&run_dir(ws.path(), "j").join("multi_trial_manifest.json"));
    assert_eq!(doc["totals"], manifest["totals"]);
    assert_eq!(doc["trials"], manifest["trials"]);
    assert_eq!(doc["datasets"][0]["items"], 6);
    assert_eq!(doc["archived"]["created_store"], true);
    assert_eq!(doc["archived"]["commit"], tip(ws.path(), "j")["id"]);
    // What a person would read goes to stderr, never into the document.
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(!stderr.contains('{'), "{stderr}");
}

#[test]
fn run_json_of_a_failed_run_is_still_one_document_and_the_error_goes_to_stderr() {
    let server = Server::start(|_, _| Reply::Status(400, None));
    let ws = workspace(2, &openai_model(&server.url, ""), FAST);
    let out = exp(ws.path()).args(["run", "--run-id", "f", "--json"]).assert().code(1);
    let doc = one_json_document(&out.get_output().stdout);
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["failures"], 4);
    assert_eq!(doc["totals"]["failures"], 4);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("error: run f: every request failed"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
}

#[test]
fn run_json_warnings_go_to_stderr_and_into_the_document() {
    let ws = workspace(3, &sim_model(), "");
    exp(ws.path()).args(["run", "--run-id", "base", "--archive"]).assert().success();
    std::fs::write(ws.path().join("config/prompts/control.txt"), "A new control prompt.").unwrap();
    let out = exp(ws.path())
        .args(["run", "--run-id", "w", "--condition", "treatment", "--baseline", "base", "--json"])
        .assert()
        .success();
    let doc = one_json_document(&out.get_output().stdout);
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(warnings.iter().any(|w| w.as_str().unwrap().contains("differs")), "{doc}");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains("warning: ") && stderr.contains("differs"), "{stderr}");
}

#[test]
fn dry_run_json_is_one_document_shaped_like_a_run_and_writes_nothing() {
    let ws = workspace(5, &sim_model(), "");
    let out = exp(ws.path())
        .args(["run", "--dry-run", "--json", "--run-id", "p", "--parts-per-dataset", "2"])
        .assert()
        .success();
    let plan = one_json_document(&out.get_output().stdout);
    assert_eq!(plan["run_id"], "p");
    assert_eq!(plan["run_dir"], run_dir(ws.path(), "p").display().to_string());
    assert_eq!(plan["status"], "planned");
    assert_eq!(plan["trials"][0]["slug"], "sim-ps-t0-tp1-mx16");
    assert_eq!(plan["totals"]["jobs"], 4);
    assert_eq!(plan["totals"]["requests"], 10);
    assert_eq!(plan["totals"]["max_output_tokens"], 10 * 16);
    assert!(!ws.path().join("experiments").exists() && !ws.path().join("prepared").exists());
    // A new run without --run-id is named when it starts: the plan cannot know its folder.
    let out = exp(ws.path()).args(["run", "--dry-run", "--json"]).assert().success();
    let plan = one_json_document(&out.get_output().stdout);
    assert_eq!(plan["run_id"], Value::Null);
    assert_eq!(plan["run_dir"], Value::Null);
    assert_eq!(plan["totals"]["requests"], 10);
}

// ---------------------------------------------------------------------------------------------
// Trust boundaries: what an endpoint sends back and what a config says are untrusted

const KEY: &str = "sk-exp-test-7f3a9c2e41d8";

/// Every file below `dir` as stored, and each store object also decompressed (a loose object is
/// one zstd frame, a pack `EXPPACK1` and frames back to back: docs/FORMAT.md), so a secret is
/// found whether or not compression happened to keep its bytes literal.
fn readable_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for path in walk(dir) {
        let raw = std::fs::read(&path).unwrap();
        let frames = raw.strip_prefix(b"EXPPACK1".as_slice()).unwrap_or(&raw);
        if let Ok(plain) = zstd::decode_all(frames) {
            out.push((path.clone(), plain));
        }
        out.push((path, raw));
    }
    out
}

/// Looks for the key without its first character, so a key echoed with that character escaped
/// (`\u0073k-…`) is found too.
fn assert_no_key(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains(&KEY[1..]), "the key reached {what}:\n{text}");
}

#[test]
fn an_endpoint_echoing_the_key_gets_it_into_no_file_object_remote_or_terminal() {
    // Answers echo the key in their content; the other requests fail with 500 and then 401,
    // both echoing it in the body (a quoted header and an error message) and in headers.
    let server = Server::start(|n, body| {
        if key_of(body).contains("happy") {
            Reply::Echo(200)
        } else if n == 1 {
            Reply::Echo(500)
        } else {
            Reply::Echo(401)
        }
    });
    let ws = workspace(6, &openai_model(&server.url, ", api_key_env: EXP_TEST_KEY"), FAST);
    let run = |args: &[&str], log: &str| {
        let out = exp(ws.path()).env("EXP_TEST_KEY", KEY).env("EXP_LOG", log).args(args).output();
        let out = out.unwrap();
        assert_no_key(&format!("the stdout of exp {args:?}"), &out.stdout);
        assert_no_key(&format!("the stderr of exp {args:?}"), &out.stderr);
        out
    };
    let out = run(&["run", "--run-id", "leak", "--archive"], "debug");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retrying: HTTP 500"), "logged");
    // A resume sends the 8 failures again (401 again), logging at the most verbose level.
    let out = run(&["run", "--resume", "--run-id", "leak", "--archive"], "trace");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(*server.state.auth.lock().unwrap(), HashSet::from([format!("Bearer {KEY}")]));

    let trial = trial_dir(ws.path(), "leak");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    let failed: Vec<_> = preds.iter().filter(|r| !r["error"].is_empty()).collect();
    assert_eq!(failed.len(), 8);
    assert!(failed.iter().all(|r| r["error"].contains("HTTP 401")), "{failed:?}");
    assert!(failed[0]["error"].contains("[redacted]"), "{failed:?}");
    let answered: Vec<_> = preds.iter().filter(|r| r["error"].is_empty()).collect();
    assert!(answered.iter().all(|r| r["raw_output"] == "positive (you sent Bearer [redacted])"));

    for args in [&["show", "leak"][..], &["log", "--json"], &["list", "-v"], &["status"]] {
        run(args, "debug");
    }
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().to_path_buf();
    run(&["remote", "add", "origin", url.to_str().unwrap()], "debug");
    let out = run(&["push", "origin", "--all"], "debug");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut redacted_in_remote = false;
    for (path, bytes) in readable_bytes(ws.path()).into_iter().chain(readable_bytes(&url)) {
        assert_no_key(&path.display().to_string(), &bytes);
        redacted_in_remote |= path.starts_with(&url)
            && String::from_utf8_lossy(&bytes).contains("you sent Bearer [redacted]");
    }
    assert!(redacted_in_remote, "the pushed objects were read decompressed");
}

#[test]
fn retry_after_of_1e20_or_a_date_in_2099_waits_no_longer_than_backoff_max() {
    let server = Server::start(|n, _| match n {
        1 => Reply::Status(429, Some("1e20")),
        2 => Reply::Status(503, Some("Thu, 01 Jan 2099 00:00:00 GMT")),
        3 => Reply::Status(429, Some("inf")),
        _ => Reply::Ok,
    });
    let ws = workspace(2, &openai_model(&server.url, ""), FAST);
    exp(ws.path())
        .args(["run", "--run-id", "ra"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains("run ra: complete"));
    let lines = journal_lines(&trial_dir(ws.path(), "ra"));
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l["status"] == "ok" && l["attempts"] == 4), "{lines:?}");
}

#[test]
fn an_endless_or_huge_body_is_cut_at_max_response_bytes_and_recorded() {
    // Item 1 gets a body that never ends, item 2 one announcing 10 GB; the others are answered.
    let server = Server::start(|_, body| {
        let key = key_of(body);
        if key.contains("item 1 ") {
            Reply::Flood(None)
        } else if key.contains("item 2 ") {
            Reply::Flood(Some(10_000_000_000))
        } else {
            Reply::Ok
        }
    });
    let ws = workspace(
        4,
        &openai_model(&server.url, ""),
        &format!("{FAST}, max_response_bytes: 1048576"),
    );
    exp(ws.path())
        .args(["run", "--run-id", "big", "--condition", "control"])
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let preds = csv_rows(&trial_dir(ws.path(), "big").join("results/predictions.csv"));
    let errors: HashMap<&str, &str> =
        preds.iter().map(|r| (r["item_id"].as_str(), r["error"].as_str())).collect();
    for item in ["i1", "i2"] {
        assert!(
            errors[item].contains("larger than execution.max_response_bytes (1048576 bytes)"),
            "{item}: {}",
            errors[item]
        );
    }
    assert!(errors["i0"].is_empty() && errors["i3"].is_empty(), "{errors:?}");
    // Too large is not retried, and exp hung up long before the server's cap: it never read,
    // let alone held, more than the bound plus what sockets buffer.
    assert_eq!(server.total(), 4, "one attempt each");
    let flooded = server.state.flooded.load(Ordering::SeqCst);
    assert!(flooded < FLOOD_CAP / 2, "the server got {flooded} bytes out");
}

#[test]
fn usage_beyond_any_model_is_a_recorded_error_and_totals_stay_exact() {
    let server = Server::start(|_, body| {
        if key_of(body).contains("happy") { Reply::Usage(u64::MAX, 12) } else { Reply::Ok }
    });
    let ws = workspace(6, &openai_model(&server.url, ""), FAST);
    exp(ws.path()).args(["run", "--run-id", "u"]).assert().success();
    let trial = trial_dir(ws.path(), "u");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    let failed: Vec<_> = preds.iter().filter(|r| !r["error"].is_empty()).collect();
    assert_eq!(failed.len(), 4);
    assert!(
        failed.iter().all(|r| r["error"].contains(
            "implausible usage: prompt_tokens is 18446744073709551615, more than 100000000"
        )),
        "{failed:?}"
    );
    let manifest = read_json(&run_dir(ws.path(), "u").join("multi_trial_manifest.json"));
    let totals = &manifest["totals"];
    assert_eq!(
        totals["input_tokens"].as_u64().unwrap(),
        server.state.prompt_tokens.load(Ordering::SeqCst)
    );
    assert_eq!(
        totals["output_tokens"].as_u64().unwrap(),
        server.state.completion_tokens.load(Ordering::SeqCst)
    );
    assert!(totals["usd"].as_f64().unwrap() < 0.01, "{totals}");
}

#[test]
fn resume_retries_the_recorded_failures_of_a_completed_run() {
    // Happy items fail for their first 3 attempts (all a run with max_retries 2 makes).
    let server = Server::start(|n, body| {
        if key_of(body).contains("happy") && n <= 3 { Reply::Status(503, None) } else { Reply::Ok }
    });
    let ws = workspace(
        6,
        &openai_model(&server.url, ""),
        "max_retries: 2, backoff_base_s: 0.01, backoff_max_s: 0.02",
    );
    exp(ws.path()).args(["run", "--run-id", "rf"]).assert().success();
    let run_json = run_dir(ws.path(), "rf").join("run.json");
    assert_eq!(read_json(&run_json)["status"], "complete");
    let trial = trial_dir(ws.path(), "rf");
    let failed = |trial: &Path| {
        csv_rows(&trial.join("results/predictions.csv"))
            .iter()
            .filter(|r| !r["error"].is_empty())
            .count()
    };
    assert_eq!(failed(&trial), 4);

    let before = server.total();
    exp(ws.path())
        .args(["run", "--resume"])
        .assert()
        .success()
        .stdout(predicate::str::contains("run rf: complete"));
    let resent = server.state.received.lock().unwrap()[before..].to_vec();
    assert_eq!(resent.len(), 4, "exactly the failed requests: {resent:?}");
    assert!(resent.iter().all(|k| k.contains("happy")));
    assert_eq!(failed(&trial), 0);
    assert_eq!(read_json(&trial.join("results/costs.json"))["failures"], 0);
    let run = read_json(&run_json);
    assert_eq!(run["status"], "complete");
    assert_eq!(run["resumed_at"].as_array().unwrap().len(), 1);
    exp(ws.path())
        .args(["run", "--resume", "--run-id", "rf"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already complete, with no failed request to retry"));
}

#[test]
fn every_number_in_the_config_is_range_checked_naming_key_line_and_range() {
    let sim = "  - {name: sim, provider: sim, sim: {accuracy: {control: 0.6, treatment: 0.9}, seed: 1}, pricing: {input_per_mtok: 1, output_per_mtok: 2}}";
    // (what replaces what in the config, the key named, the value and range said)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "execution: {",
            "execution: {timeout_s: .inf, ",
            "execution.timeout_s",
            "is inf, outside (0, 86400]",
        ),
        (
            "execution: {",
            "execution: {timeout_s: 1e300, ",
            "execution.timeout_s",
            "is 1e300, outside (0, 86400]",
        ),
        (
            "execution: {",
            "execution: {timeout_s: 0, ",
            "execution.timeout_s",
            "is 0.0, outside (0, 86400]",
        ),
        (
            "execution: {",
            "execution: {timeout_s: .nan, ",
            "execution.timeout_s",
            "is NaN, outside (0, 86400]",
        ),
        (
            "execution: {",
            "execution: {backoff_max_s: .inf, ",
            "execution.backoff_max_s",
            "is inf, outside [0, 86400]",
        ),
        (
            "execution: {",
            "execution: {backoff_base_s: -1, ",
            "execution.backoff_base_s",
            "is -1.0, outside [0, 3600]",
        ),
        (
            "execution: {",
            "execution: {max_retries: 1000, ",
            "execution.max_retries",
            "is 1000, outside [0, 100]",
        ),
        (
            "execution: {",
            "execution: {parts_per_dataset: 0, ",
            "execution.parts_per_dataset",
            "is 0, outside [1, 100000]",
        ),
        (
            "execution: {",
            "execution: {max_concurrent_jobs: 1000000, ",
            "execution.max_concurrent_jobs",
            "is 1000000, outside [1, 10000]",
        ),
        (
            "execution: {",
            "execution: {max_response_bytes: 10, ",
            "execution.max_response_bytes",
            "is 10, outside [1024, 1073741824]",
        ),
        (
            "max_tokens: [16]",
            "max_tokens: [16, 0]",
            "decoding.max_tokens[1]",
            "is 0, outside [1, 1000000]",
        ),
        ("temps: [0.0]", "temps: [.inf]", "decoding.temps[0]", "is inf, outside [0, 2]"),
        ("top_p: [1.0]", "top_p: [0]", "decoding.top_p[0]", "is 0.0, outside (0, 1]"),
        (
            "top_p: [1.0]",
            "top_p: [1.0], top_k: [0]",
            "decoding.top_k[0]",
            "is 0, outside [1, 100000]",
        ),
        (
            "max_tokens: [16]",
            "max_tokens: [16], repeats: 0",
            "decoding.repeats",
            "is 0, outside [1, 1000]",
        ),
        (
            "scoring:",
            "significance: {bootstrap_resamples: 1000000000}\nscoring:",
            "significance.bootstrap_resamples",
            "is 1000000000, outside [0, 1000000]",
        ),
        (
            "scoring:",
            "significance: {alpha: .nan}\nscoring:",
            "significance.alpha",
            "is NaN, outside (0, 0.5]",
        ),
        (
            "seed: 1}",
            "seed: 1, latency_ms: 100000000}",
            "models[0].sim.latency_ms",
            "is 100000000, outside [0, 60000]",
        ),
        (
            "control: 0.6",
            "control: 1.5",
            "models[0].sim.accuracy.control",
            "is 1.5, outside [0, 1]",
        ),
        (
            "input_per_mtok: 1",
            "input_per_mtok: .inf",
            "models[0].pricing.input_per_mtok",
            "is inf, outside [0, 10000]",
        ),
        (
            "output_per_mtok: 2",
            "output_per_mtok: -2",
            "models[0].pricing.output_per_mtok",
            "is -2.0, outside [0, 10000]",
        ),
        (
            "seed: 1}",
            "seed: 1}, max_connections: 0",
            "models[0].max_connections",
            "is 0, outside [1, 10000]",
        ),
    ];
    let ws = workspace(2, sim, "fsync: true");
    let cfg = ws.path().join("config/eval_config.yaml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    exp(ws.path()).args(["run", "--dry-run"]).assert().success();
    for (from, to, key, said) in cases {
        assert!(good.contains(from), "{from}");
        let text = good.replacen(from, to, 1);
        std::fs::write(&cfg, &text).unwrap();
        let first = to.lines().next().unwrap();
        let line = text.lines().position(|l| l.contains(first)).unwrap() + 1;
        for args in [&["run", "--dry-run"][..], &["run", "--run-id", "x"]] {
            let out = exp(ws.path()).args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{to}: {stderr}");
            for want in [
                format!("config/eval_config.yaml, line {line}: `{key}` {said}"),
                "\nhint: give a finite number in".to_string(),
            ] {
                assert!(stderr.contains(&want), "{to}: wanted {want:?} in\n{stderr}");
            }
        }
        assert!(!ws.path().join("experiments").exists(), "{to}: a run was started");
    }
}

#[test]
fn names_that_become_paths_must_be_plain_names() {
    for (from, to, key) in [
        ("{name: d,", "{name: ../x,", "datasets[0].name"),
        ("{name: d,", "{name: \"a/b\",", "datasets[0].name"),
        ("{name: sim,", "{name: ../../m,", "models[0].name"),
        ("  ps: {", "  \"../ps\": {", "prompt_sets.../ps"),
        ("  ps: {", "  .hidden: {", "prompt_sets..hidden"),
    ] {
        let ws = workspace(2, &sim_model(), "");
        let cfg = ws.path().join("config/eval_config.yaml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&cfg, text.replacen(from, to, 1)).unwrap();
        exp(ws.path())
            .args(["run", "--run-id", "n"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!("`{key}`")))
            .stderr(predicate::str::contains("is not a plain name"))
            .stderr(predicate::str::contains("hint: use letters, digits, '.', '_' and '-'"));
        let written: Vec<_> = walk(ws.path())
            .into_iter()
            .filter(|p| {
                !p.starts_with(ws.path().join("data")) && !p.starts_with(ws.path().join("config"))
            })
            .collect();
        assert!(written.is_empty(), "{to}: wrote {written:?}");
    }
}

#[test]
fn a_prompt_outside_the_workspace_is_copied_into_the_run_never_next_to_it() {
    // The workspace is root/a/b/c/ws and the control prompt root/p.txt, four levels up: its copy
    // under the run's config/ would have climbed to root/a/b/c/p.txt, outside the workspace.
    let root = tempfile::tempdir().unwrap();
    let ws = root.path().join("a/b/c/ws");
    copy_dir(workspace(2, &sim_model(), "").path(), &ws);
    std::fs::write(root.path().join("p.txt"), "An outside prompt.").unwrap();
    let cfg = ws.join("config/eval_config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("config/prompts/control.txt", "../../../../p.txt")).unwrap();
    exp(&ws).args(["run", "--run-id", "out"]).assert().success();
    assert!(!root.path().join("a/b/c/p.txt").exists(), "the copy escaped the run folder");
    let external = run_dir(&ws, "out").join("config/prompts/external");
    let copies: Vec<PathBuf> = walk(&external);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].to_string_lossy().ends_with("-p.txt"), "{copies:?}");
    assert_eq!(std::fs::read_to_string(&copies[0]).unwrap(), "An outside prompt.");
    // A resume reads the copy back for the config fingerprint, so it still matches.
    let run_json = run_dir(&ws, "out").join("run.json");
    let mut run = read_json(&run_json);
    run["status"] = "incomplete".into();
    std::fs::write(&run_json, run.to_string()).unwrap();
    exp(&ws).args(["run", "--resume", "--run-id", "out"]).assert().success();
}
