//! Batch delivery: the Batch API backend against a real HTTP server on 127.0.0.1 (files and
//! batches endpoints, with state transitions that advance per poll, never per wall time), file
//! mode (`exp run --backend files`) and `exp ingest`.
mod common;

use std::path::{Path, PathBuf};

use common::exp;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Workspaces

/// A workspace with `n` items (every third "happy"), two temperatures (two trials, so batch
/// custom_ids must say whose request they are) and one openai model whose YAML is `model`.
fn workspace(n: usize, model: &str, execution: &str) -> tempfile::TempDir {
    common::sentiment_workspace(n, model, "[0.0, 1.0]", execution)
}

/// A model priced at $1 / $2 per million tokens, half price through batches.
fn model(url: &str, extra: &str) -> String {
    format!(
        "  - {{name: m, provider: openai, base_url: \"{url}\", model: test-model, pricing: {{input_per_mtok: 1.0, output_per_mtok: 2.0, batch_discount: 0.5}}{extra}}}"
    )
}

/// Nothing listens there: file mode and ingest never connect.
const NOWHERE: &str = "http://127.0.0.1:9/v1";

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn only_run(ws: &Path) -> PathBuf {
    let mut runs: Vec<PathBuf> =
        std::fs::read_dir(ws.join("experiments")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

fn status(run: &Path) -> String {
    read_json(&run.join("run.json"))["status"].as_str().unwrap().to_string()
}

/// Every `.jsonl` file below `dir`, sorted.
fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(jsonl_files(&p));
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Answers, in the shapes OpenAI's and vLLM's batch outputs have

/// The label a perfect model gives a request body.
fn answer(body: &Value) -> &'static str {
    let user = body["messages"][1]["content"].as_str().unwrap_or_default();
    if user.contains("happy") { "positive" } else { "negative" }
}

fn completion(body: &Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": body["model"],
           "choices": [{"index": 0, "message": {"role": "assistant", "content": answer(body)},
                        "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})
}

/// OpenAI's output file line for a request line.
fn openai_output(request: &Value, n: usize) -> Value {
    json!({"id": format!("batch_req_{n}"), "custom_id": request["custom_id"],
           "response": {"status_code": 200, "request_id": format!("req_{n}"), "body": completion(&request["body"])},
           "error": null})
}

/// OpenAI's error file line for a request the model refused.
fn openai_error(request: &Value, n: usize) -> Value {
    json!({"id": format!("batch_req_{n}"), "custom_id": request["custom_id"],
           "response": {"status_code": 400, "request_id": format!("req_{n}"),
                        "body": {"error": {"message": "Invalid 'messages': too long.", "type": "invalid_request_error", "param": null, "code": null}}},
           "error": null})
}

/// `vllm run-batch`'s output line.
fn vllm_output(request: &Value, n: usize) -> Value {
    let mut body = completion(&request["body"]);
    body["choices"][0]["message"]["tool_calls"] = json!([]);
    body["choices"][0]["stop_reason"] = Value::Null;
    json!({"id": format!("vllm-{n:032x}"), "custom_id": request["custom_id"],
           "response": {"status_code": 200, "request_id": format!("vllm-batch-{n:032x}"), "body": body},
           "error": null})
}

fn write_lines(path: &Path, values: &[Value]) {
    let text: String = values.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Every request line of a run's batch input files.
fn batch_requests(run: &Path) -> Vec<Value> {
    jsonl_files(&run.join("batch_inputs")).iter().flat_map(|f| lines(f)).collect()
}

fn predictions(run: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let manifest = read_json(&run.join("multi_trial_manifest.json"));
    manifest["trials"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            common::csv_rows(&run.join(t["slug"].as_str().unwrap()).join("results/predictions.csv"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// File mode and exp ingest

#[test]
fn file_mode_writes_batch_inputs_and_ingesting_openai_outputs_completes_the_run() {
    let ws = workspace(6, &model(NOWHERE, ""), "batch_max_requests: 10");
    let out = exp(ws.path()).args(["run", "--backend", "files"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("awaiting outputs · 24 requests in 3 batch input files"), "{text}");
    assert!(text.contains("exp ingest"), "{text}");
    let run = only_run(ws.path());
    assert_eq!(status(&run), "awaiting_outputs");
    let requests = batch_requests(&run);
    assert_eq!(requests.len(), 24, "2 trials × 2 conditions × 6 items");
    for r in &requests {
        assert_eq!(
            (r["method"].as_str(), r["url"].as_str()),
            (Some("POST"), Some("/v1/chat/completions"))
        );
        assert_eq!(r["body"]["model"], "test-model");
        assert!(r["custom_id"].as_str().unwrap().contains("/d:i"), "{r}");
    }
    let ids: std::collections::HashSet<&str> =
        requests.iter().map(|r| r["custom_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 24, "custom_ids are unique across trials");
    assert!(jsonl_files(&run.join("batch_inputs")).iter().all(|f| lines(f).len() <= 10));

    // OpenAI splits a batch's answers into an output file and an error file.
    let (refused, answered) = requests.split_at(1);
    let outputs: Vec<Value> =
        answered.iter().enumerate().map(|(n, r)| openai_output(r, n)).collect();
    write_lines(&ws.path().join("batch_68f_output.jsonl"), &outputs);
    write_lines(&ws.path().join("batch_68f_error.jsonl"), &[openai_error(&refused[0], 99)]);
    let out = exp(ws.path())
        .args(["ingest", "batch_68f_output.jsonl", "batch_68f_error.jsonl", "--archive"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("ingested 24 answers (1 failed)"), "{text}");
    assert_eq!(status(&run), "complete");
    let rows = predictions(&run);
    assert_eq!(rows.len(), 24);
    let errors: Vec<_> = rows.iter().filter(|r| !r["error"].is_empty()).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["error"].contains("HTTP 400: Invalid 'messages'"), "{:?}", errors[0]);
    assert!(
        rows.iter().filter(|r| r["error"].is_empty()).all(|r| r["prediction"] == r["raw_output"])
    );
    // 23 answers × (100 input tokens at $0.50/M + 10 output tokens at $1/M): the batch price.
    let manifest = read_json(&run.join("multi_trial_manifest.json"));
    let usd = manifest["totals"]["usd"].as_f64().unwrap();
    assert!((usd - 23.0 * (100.0 * 0.5 + 10.0 * 1.0) / 1e6).abs() < 1e-12, "{usd}");
    assert!(run.join("aggregate_report.md").is_file());
    // --archive committed it, answers included.
    let run_id = read_json(&run.join("run.json"))["run_id"].as_str().unwrap().to_string();
    let out = exp(ws.path()).args(["log", "--json"]).assert().success();
    let log = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(log.contains(&run_id) && log.contains("complete"), "{log}");
}

#[test]
fn ingest_reads_vllm_run_batch_output_and_a_partial_ingest_keeps_the_run_awaiting() {
    let ws = workspace(3, &model(NOWHERE, ""), "");
    exp(ws.path())
        .args(["run", "--backend", "files", "--run-id", "v1", "--archive"])
        .assert()
        .success();
    let out = exp(ws.path()).args(["show", "v1"]).assert().success();
    let shown = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(shown.contains("awaiting_outputs"), "the awaiting run is committed as such: {shown}");
    let run = only_run(ws.path());
    let requests = batch_requests(&run);
    let outputs: Vec<Value> = requests.iter().enumerate().map(|(n, r)| vllm_output(r, n)).collect();
    // The first file answers five requests; a sixth expired, so it is still to answer.
    let mut first = outputs[..5].to_vec();
    first.push(json!({"id": "x", "custom_id": requests[5]["custom_id"], "response": null,
                      "error": {"code": "batch_expired", "message": "too late"}}));
    write_lines(&ws.path().join("first.jsonl"), &first);
    write_lines(&ws.path().join("rest.jsonl"), &outputs[5..]);
    let out = exp(ws.path()).args(["ingest", "first.jsonl"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("ingested 5 answers (0 failed)") && text.contains("1 not run by the batch"),
        "{text}"
    );
    assert!(text.contains("run v1 still awaits outputs"), "{text}");
    assert_eq!(status(&run), "awaiting_outputs");
    exp(ws.path()).args(["ingest", "rest.jsonl", "--run-id", "v1"]).assert().success();
    assert_eq!(status(&run), "complete");
    let rows = predictions(&run);
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["error"].is_empty() && r["input_tokens"] == "100"));
}

#[test]
fn malformed_oversized_and_deep_output_lines_are_refused_naming_file_and_line() {
    let ws = workspace(3, &model(NOWHERE, ""), "max_response_bytes: 1024");
    exp(ws.path()).args(["run", "--backend", "files"]).assert().success();
    let run = only_run(ws.path());
    let requests = batch_requests(&run);
    let good = openai_output(&requests[0], 0).to_string();
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let long = format!("{{\"custom_id\": \"{}\"}}", "x".repeat(200_000));
    for (name, text, says) in [
        (
            "garbage.jsonl",
            format!("{good}\nnot json at all\n"),
            "garbage.jsonl, line 2: not a batch output line",
        ),
        (
            "deep.jsonl",
            format!("{good}\n{good}\n{deep}\n"),
            "deep.jsonl, line 3: JSON nested deeper than 64 levels",
        ),
        ("long.jsonl", format!("{long}\n"), "long.jsonl, line 1: line longer than"),
        (
            "shape.jsonl",
            "{\"custom_id\": \"a\"}\n".to_string(),
            "shape.jsonl, line 1: has neither `response` nor `error`",
        ),
    ] {
        std::fs::write(ws.path().join(name), text).unwrap();
        let out = exp(ws.path()).args(["ingest", name]).assert().failure();
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(err.contains(says), "{name}: {err}");
        assert!(err.contains("hint: "), "{err}");
        assert_eq!(status(&run), "awaiting_outputs", "{name}: the run is left as it was");
        let journals = jsonl_files(&run)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("/responses/"))
            .count();
        assert_eq!(journals, 0, "{name}: nothing journaled");
    }
}

#[test]
fn unknown_and_duplicated_custom_ids_are_warnings_naming_file_and_line() {
    let ws = workspace(3, &model(NOWHERE, ""), "");
    exp(ws.path()).args(["run", "--backend", "files"]).assert().success();
    let run = only_run(ws.path());
    let requests = batch_requests(&run);
    let mut outputs: Vec<Value> =
        requests.iter().enumerate().map(|(n, r)| openai_output(r, n)).collect();
    let mut stranger = outputs[0].clone();
    stranger["custom_id"] = json!("someone-else/x:1:control:r0");
    outputs.insert(2, stranger);
    outputs.push(outputs[0].clone());
    write_lines(&ws.path().join("out.jsonl"), &outputs);
    let out = exp(ws.path()).args(["ingest", "out.jsonl"]).assert().success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains(
            "out.jsonl:3: custom_id `someone-else/x:1:control:r0` is not a request of run"
        ),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "out.jsonl:{}: `{}` is answered twice",
            outputs.len(),
            requests[0]["custom_id"].as_str().unwrap()
        )),
        "{err}"
    );
    assert_eq!(status(&run), "complete");

    // Outputs of another run match nothing: an error saying so.
    let other = workspace(3, &model(NOWHERE, ""), "");
    exp(other.path()).args(["run", "--backend", "files"]).assert().success();
    write_lines(&other.path().join("out.jsonl"), &[stranger_line()]);
    let out = exp(other.path()).args(["ingest", "out.jsonl"]).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("none of the 1 output lines answers a pending request"), "{err}");
    assert!(err.contains("--run-id"), "{err}");
}

fn stranger_line() -> Value {
    json!({"id": "b", "custom_id": "nobody/d:i0:control:r0", "response": {"status_code": 200, "body": {}}, "error": null})
}

#[test]
fn ingest_without_a_run_awaiting_outputs_says_how_to_make_one() {
    let ws = workspace(3, &model(NOWHERE, ""), "");
    std::fs::write(ws.path().join("out.jsonl"), "").unwrap();
    let out = exp(ws.path()).args(["ingest", "out.jsonl"]).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("no run awaits batch outputs"), "{err}");
    assert!(err.contains("exp run --backend files"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// A Batch API server: files and batches endpoints, with batches that move one state per poll

/// What happens to the n-th batch created.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// validating → in_progress → finalizing → completed; request `refuse` (by line) gets a 400
    /// in the error file.
    Complete { refuse: Option<usize> },
    /// validating → in_progress → expired, having answered the first `answered` requests.
    Expire { answered: usize },
    /// Stays in_progress until `release` is called.
    Hold,
    /// validating → failed, with a validation error.
    Fail,
}

const KEY: &str = "sk-test-4f9a1c";

#[derive(Default)]
struct State {
    files: Vec<(String, Vec<u8>)>,
    batches: Vec<Value>,
    /// The input file's request lines of each batch, and its fate and step.
    inputs: Vec<Vec<Value>>,
    fates: Vec<Fate>,
    steps: Vec<usize>,
    script: Vec<Fate>,
    released: bool,
    creates: usize,
    polls: usize,
    unauthorized: usize,
    /// Files whose next download is answered with a 503.
    failing_downloads: Vec<String>,
}

#[derive(Clone)]
struct Server {
    url: String,
    state: std::sync::Arc<std::sync::Mutex<State>>,
    _rt: std::sync::Arc<tokio::runtime::Runtime>,
}

impl Server {
    fn start(script: Vec<Fate>) -> Server {
        use axum::routing::{get, post};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state =
            std::sync::Arc::new(std::sync::Mutex::new(State { script, ..State::default() }));
        let s = state.clone();
        let app = axum::Router::new()
            .route("/v1/files", post(upload))
            .route("/v1/files/{id}/content", get(content))
            .route("/v1/batches", post(create).get(list))
            .route("/v1/batches/{id}", get(retrieve))
            .with_state(s);
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await });
        Server { url, state, _rt: std::sync::Arc::new(rt) }
    }

    fn creates(&self) -> usize {
        self.state.lock().unwrap().creates
    }

    fn polls(&self) -> usize {
        self.state.lock().unwrap().polls
    }

    fn release(&self) {
        self.state.lock().unwrap().released = true;
    }

    /// The custom_ids of each batch's input file, in creation order.
    fn batch_ids(&self) -> Vec<Vec<String>> {
        let st = self.state.lock().unwrap();
        st.inputs
            .iter()
            .map(|lines| {
                lines.iter().map(|l| l["custom_id"].as_str().unwrap().to_string()).collect()
            })
            .collect()
    }
}

type Shared = axum::extract::State<std::sync::Arc<std::sync::Mutex<State>>>;
type Reply = (axum::http::StatusCode, axum::Json<Value>);

/// Every call must carry the key; a refusal echoes the header, as careless servers do.
fn authorized(st: &mut State, headers: &axum::http::HeaderMap) -> Result<(), Reply> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth == format!("Bearer {KEY}") {
        return Ok(());
    }
    st.unauthorized += 1;
    Err((
        axum::http::StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"message": format!("bad Authorization: {auth}")}})),
    ))
}

fn ok(v: Value) -> Reply {
    (axum::http::StatusCode::OK, axum::Json(v))
}

fn bad(message: &str) -> Reply {
    (
        axum::http::StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
}

/// `POST /v1/files`, multipart: the `purpose` field and the `file` part.
async fn upload(
    axum::extract::State(s): Shared,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let mut st = s.lock().unwrap();
    if let Err(r) = authorized(&mut st, &headers) {
        return r;
    }
    let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(boundary) = ctype.strip_prefix("multipart/form-data; boundary=") else {
        return bad("not multipart");
    };
    let text = body.to_vec();
    let sep = format!("--{boundary}");
    let parts: Vec<&[u8]> = split(&text, sep.as_bytes());
    let mut purpose = None;
    let mut file = None;
    for p in parts {
        let Some(at) = find(p, b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&p[..at]).to_string();
        let value = p[at + 4..].strip_suffix(b"\r\n").unwrap_or(&p[at + 4..]);
        if head.contains("name=\"purpose\"") {
            purpose = Some(String::from_utf8_lossy(value).to_string());
        } else if head.contains("name=\"file\"; filename=") {
            file = Some(value.to_vec());
        }
    }
    if purpose.as_deref() != Some("batch") {
        return bad("purpose must be batch");
    }
    let Some(file) = file else { return bad("no file part") };
    for line in file.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => return bad("invalid JSONL"),
        };
        if v["method"] != "POST"
            || v["url"] != "/v1/chat/completions"
            || !v["body"].is_object()
            || !v["custom_id"].is_string()
        {
            return bad("not a batch request line");
        }
    }
    let id = format!("file-{}", st.files.len() + 1);
    let bytes = file.len();
    st.files.push((id.clone(), file));
    ok(
        json!({"id": id, "object": "file", "bytes": bytes, "created_at": 1_700_000_000, "expires_at": null,
              "filename": "batch.jsonl", "purpose": "batch", "status": "processed", "status_details": null}),
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(hay: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = hay;
    while let Some(at) = find(rest, sep) {
        out.push(&rest[..at]);
        rest = &rest[at + sep.len()..];
    }
    out.push(rest);
    out
}

fn batch_object(id: &str, input: &str, n: usize) -> Value {
    json!({"id": id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": null,
           "input_file_id": input, "completion_window": "24h", "status": "validating",
           "output_file_id": null, "error_file_id": null, "created_at": 1_700_000_000,
           "in_progress_at": null, "expires_at": 1_700_086_400, "finalizing_at": null,
           "completed_at": null, "failed_at": null, "expired_at": null, "cancelling_at": null,
           "cancelled_at": null, "request_counts": {"total": n, "completed": 0, "failed": 0},
           "metadata": {}})
}

/// `POST /v1/batches`.
async fn create(
    axum::extract::State(s): Shared,
    headers: axum::http::HeaderMap,
    axum::Json(req): axum::Json<Value>,
) -> Reply {
    let mut st = s.lock().unwrap();
    if let Err(r) = authorized(&mut st, &headers) {
        return r;
    }
    if req["endpoint"] != "/v1/chat/completions" || req["completion_window"] != "24h" {
        return bad("endpoint must be /v1/chat/completions, completion_window 24h");
    }
    let input = req["input_file_id"].as_str().unwrap_or_default().to_string();
    let Some((_, bytes)) = st.files.iter().find(|(id, _)| *id == input) else {
        return bad("no such file");
    };
    let lines: Vec<Value> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    st.creates += 1;
    let id = format!("batch_{}", st.creates);
    let mut b = batch_object(&id, &input, lines.len());
    b["metadata"] = req["metadata"].clone();
    let fate =
        if st.script.is_empty() { Fate::Complete { refuse: None } } else { st.script.remove(0) };
    st.batches.push(b.clone());
    st.inputs.push(lines);
    st.fates.push(fate);
    st.steps.push(0);
    ok(b)
}

/// `GET /v1/batches`: every batch on one page.
async fn list(axum::extract::State(s): Shared, headers: axum::http::HeaderMap) -> Reply {
    let mut st = s.lock().unwrap();
    if let Err(r) = authorized(&mut st, &headers) {
        return r;
    }
    let data: Vec<Value> = st.batches.iter().rev().cloned().collect();
    ok(
        json!({"object": "list", "data": data, "first_id": null, "last_id": null, "has_more": false}),
    )
}

/// `GET /v1/batches/{id}`: each poll moves the batch one state on.
async fn retrieve(
    axum::extract::State(s): Shared,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Reply {
    let mut st = s.lock().unwrap();
    if let Err(r) = authorized(&mut st, &headers) {
        return r;
    }
    st.polls += 1;
    let Some(i) = st.batches.iter().position(|b| b["id"] == id.as_str()) else {
        return bad("no such batch");
    };
    let path: &[&str] = match st.fates[i] {
        Fate::Complete { .. } => &["validating", "in_progress", "finalizing", "completed"],
        Fate::Expire { .. } => &["validating", "in_progress", "expired"],
        Fate::Hold if st.released => &["validating", "in_progress", "completed"],
        Fate::Hold => &["validating", "in_progress", "in_progress"],
        Fate::Fail => &["validating", "failed"],
    };
    let step = (st.steps[i] + 1).min(path.len() - 1);
    st.steps[i] = step;
    let status = path[step];
    if st.batches[i]["status"] != status && matches!(status, "completed" | "expired") {
        finish(&mut st, i, status);
    }
    if status == "failed" {
        st.batches[i]["errors"] = json!({"object": "list", "data": [{"code": "invalid_request", "message": format!("model not found; sent with Authorization: Bearer {KEY}"), "param": null, "line": 1}]});
        st.batches[i]["failed_at"] = json!(1_700_000_050);
    }
    st.batches[i]["status"] = json!(status);
    ok(st.batches[i].clone())
}

/// Writes a finished batch's output and error files.
fn finish(st: &mut State, i: usize, status: &str) {
    let (mut outputs, mut errors) = (Vec::new(), Vec::new());
    for (n, r) in st.inputs[i].iter().enumerate() {
        match st.fates[i] {
            Fate::Complete { refuse: Some(k) } if k == n => errors.push(openai_error(r, n)),
            Fate::Expire { answered } if n >= answered => errors.push(json!({
                "id": format!("batch_req_{n}"), "custom_id": r["custom_id"], "response": null,
                "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})),
            _ => outputs.push(openai_output(r, n)),
        }
    }
    let counts = json!({"total": outputs.len() + errors.len(), "completed": outputs.len(), "failed": errors.len()});
    for (kind, lines) in [("output_file_id", outputs), ("error_file_id", errors)] {
        if lines.is_empty() {
            continue;
        }
        let id = format!("file-{}", st.files.len() + 1);
        let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
        st.files.push((id.clone(), text.into_bytes()));
        st.batches[i][kind] = json!(id);
    }
    st.batches[i]["request_counts"] = counts;
    st.batches[i][format!("{status}_at")] = json!(1_700_000_100);
}

/// `GET /v1/files/{id}/content`.
async fn content(
    axum::extract::State(s): Shared,
    headers: axum::http::HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Vec<u8>, Reply> {
    let mut st = s.lock().unwrap();
    authorized(&mut st, &headers)?;
    if let Some(at) = st.failing_downloads.iter().position(|f| *f == id) {
        st.failing_downloads.remove(at);
        let busy = json!({"error": {"message": "try later"}});
        return Err((axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(busy)));
    }
    st.files
        .iter()
        .find(|(f, _)| *f == id)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| bad("no such file"))
}

// ---------------------------------------------------------------------------------------------
// The Batch API backend

/// A model with `backend: batch` on `server`, polled every second.
fn batch_workspace(server: &Server, n: usize, execution: &str) -> tempfile::TempDir {
    let model = model(&server.url, ", backend: batch, api_key_env: BATCH_TEST_KEY");
    workspace(n, &model, &format!("batch_poll_s: 1, max_retries: 3{execution}"))
}

fn run_batch(ws: &Path) -> assert_cmd::assert::Assert {
    exp(ws).env("BATCH_TEST_KEY", KEY).args(["run"]).assert()
}

/// No file below `dir` holds the key.
fn assert_no_key(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert_no_key(&p);
        } else {
            let bytes = std::fs::read(&p).unwrap();
            assert!(find(&bytes, KEY.as_bytes()).is_none(), "{} holds the key", p.display());
        }
    }
}

#[test]
fn the_batch_backend_uploads_creates_polls_and_journals_answers_by_custom_id() {
    let server = Server::start(vec![Fate::Complete { refuse: Some(2) }]);
    let ws = batch_workspace(&server, 3, "");
    let out = run_batch(ws.path()).success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("batched requests: 12/12") && err.contains("batches: 1 done"), "{err}");
    assert_eq!(server.creates(), 1, "one model, under the limits: one batch");
    assert!(server.polls() >= 3, "validating → in_progress → finalizing → completed");
    let run = only_run(ws.path());
    assert_eq!(status(&run), "complete");
    let rows = predictions(&run);
    assert_eq!(rows.len(), 12);
    let errors: Vec<_> = rows.iter().filter(|r| !r["error"].is_empty()).collect();
    assert_eq!(errors.len(), 1, "the error file's line is that request's failure");
    assert!(
        rows.iter().filter(|r| r["error"].is_empty()).all(|r| r["prediction"] == r["raw_output"])
    );
    // 11 answers at the batch price: half of $1 / $2 per million tokens.
    let usd = read_json(&run.join("multi_trial_manifest.json"))["totals"]["usd"].as_f64().unwrap();
    assert!((usd - 11.0 * (100.0 * 0.5 + 10.0 * 1.0) / 1e6).abs() < 1e-12, "{usd}");
    // The ledger names the batch, and the provider's files are kept beside the input.
    let ledger = std::fs::read_to_string(run.join("batches.jsonl")).unwrap();
    assert!(
        ledger.contains("\"batch_id\":\"batch_1\"") && ledger.contains("\"status\":\"completed\""),
        "{ledger}"
    );
    assert!(
        run.join("batches/m/0001.output.jsonl").is_file()
            && run.join("batches/m/0001.error.jsonl").is_file()
    );
    assert_no_key(ws.path());
    assert_eq!(server.state.lock().unwrap().unauthorized, 0);
}

#[test]
fn batches_are_split_at_the_configured_request_and_byte_limits() {
    let server = Server::start(vec![]);
    let ws = batch_workspace(&server, 3, ", batch_max_requests: 5");
    run_batch(ws.path()).success();
    let sizes: Vec<usize> = server.batch_ids().iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 2], "12 requests, at most 5 a batch");
    let run = only_run(ws.path());
    assert_eq!(status(&run), "complete");
    // A byte limit just above four request lines (newline included) makes batches of four.
    let text = std::fs::read_to_string(run.join("batches/m/0001.jsonl")).unwrap();
    let line = text.lines().map(|l| l.len() + 1).max().unwrap();
    let server = Server::start(vec![]);
    let ws = batch_workspace(&server, 3, &format!(", batch_max_bytes: {}", 4 * line + 10));
    run_batch(ws.path()).success();
    assert_eq!(server.batch_ids().iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 4]);
    assert_eq!(status(&only_run(ws.path())), "complete");
}

#[test]
fn an_expired_batch_is_resubmitted_for_its_unanswered_requests_only() {
    let server = Server::start(vec![Fate::Expire { answered: 5 }]);
    let ws = batch_workspace(&server, 3, "");
    run_batch(ws.path()).success();
    let ids = server.batch_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0].len(), 12);
    assert_eq!(ids[1], ids[0][5..].to_vec(), "only what the expired batch left unanswered");
    let run = only_run(ws.path());
    assert_eq!(status(&run), "complete");
    assert!(predictions(&run).iter().all(|r| r["error"].is_empty()));
    let ledger = std::fs::read_to_string(run.join("batches.jsonl")).unwrap();
    assert!(
        ledger.contains("\"status\":\"expired\"") && ledger.contains("\"round\":1"),
        "{ledger}"
    );
}

/// Starts `exp run` on `ws` and SIGKILLs it once the server has been polled twice and its
/// stderr shows `progress` (waits on those, never on time).
fn kill_while_polling(ws: &Path, server: &Server, progress: &str) {
    let mut child = common::exp_process(ws)
        .env("BATCH_TEST_KEY", KEY)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while server.polls() < 2 || !stderr.lock().unwrap().contains(progress) {
        assert!(std::time::Instant::now() < deadline, "exp never polled");
        assert!(child.try_wait().unwrap().is_none(), "exp ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status(&only_run(ws)), "running", "killed, not stopped");
}

#[test]
fn a_run_killed_while_polling_resumes_by_polling_the_same_batch() {
    let server = Server::start(vec![Fate::Hold]);
    let ws = batch_workspace(&server, 3, "");
    // The progress line shows the batch's state while it is polled.
    kill_while_polling(ws.path(), &server, "batches: 1 in_progress");
    server.release();
    exp(ws.path()).env("BATCH_TEST_KEY", KEY).args(["run", "--resume"]).assert().success();
    assert_eq!(server.creates(), 1, "the resume polled the journaled batch, it created none");
    let run = only_run(ws.path());
    assert_eq!(status(&run), "complete");
    assert_eq!(predictions(&run).len(), 12);
    assert_no_key(ws.path());
}

#[test]
fn a_batch_created_just_before_a_crash_is_found_by_its_input_file_not_created_again() {
    let server = Server::start(vec![Fate::Hold]);
    let ws = batch_workspace(&server, 3, "");
    kill_while_polling(ws.path(), &server, "");
    // The crash came between the create and its ledger record: the record is not there.
    let run = only_run(ws.path());
    let ledger = std::fs::read_to_string(run.join("batches.jsonl")).unwrap();
    let kept: String =
        ledger.lines().filter(|l| !l.contains("\"created\"")).map(|l| format!("{l}\n")).collect();
    assert_ne!(kept, ledger);
    std::fs::write(run.join("batches.jsonl"), kept).unwrap();
    server.release();
    exp(ws.path()).env("BATCH_TEST_KEY", KEY).args(["run", "--resume"]).assert().success();
    assert_eq!(server.creates(), 1, "found by its input file id in GET /v1/batches");
    assert_eq!(status(&run), "complete");
    assert_eq!(predictions(&run).len(), 12);
}

#[test]
fn a_failed_batch_is_resubmitted_and_after_max_retries_its_requests_are_recorded_failures() {
    let server = Server::start(vec![Fate::Fail]);
    let ws = batch_workspace(&server, 3, "");
    run_batch(ws.path()).success();
    let ids = server.batch_ids();
    assert_eq!(ids.len(), 2, "the failed batch, then all of it again");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(status(&only_run(ws.path())), "complete");

    let server = Server::start(vec![Fate::Fail, Fate::Fail]);
    let model = model(&server.url, ", backend: batch, api_key_env: BATCH_TEST_KEY");
    let ws = workspace(3, &model, "batch_poll_s: 1, max_retries: 1");
    let out = run_batch(ws.path()).failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("every request failed"), "{err}");
    assert_eq!(server.creates(), 2, "max_retries: 1 allows one resubmission");
    let rows = predictions(&only_run(ws.path()));
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert!(
            r["error"].contains("batch batch_2 failed: invalid_request: model not found"),
            "{r:?}"
        );
        assert!(r["error"].contains("Bearer [redacted]") && !r["error"].contains(KEY), "{r:?}");
    }
    assert_no_key(ws.path());
}

#[test]
fn the_dry_run_estimates_batch_models_at_batch_prices() {
    let ws = workspace(3, &model(NOWHERE, ", backend: batch"), "");
    let out = exp(ws.path()).args(["run", "--dry-run", "--json"]).assert().success();
    let plan: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let live = workspace(3, &model(NOWHERE, ""), "");
    let out = exp(live.path()).args(["run", "--dry-run", "--json"]).assert().success();
    let live_plan: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let (b, l) = (
        plan["totals"]["max_usd"].as_f64().unwrap(),
        live_plan["totals"]["max_usd"].as_f64().unwrap(),
    );
    assert!(l > 0.0 && (b - l / 2.0).abs() < 1e-12, "batch {b}, live {l}");
}

#[test]
fn batch_settings_out_of_range_and_batch_on_a_sim_model_are_refused_with_the_fix() {
    let ws = workspace(3, &model(NOWHERE, ", backend: batch"), "batch_poll_s: 0.5");
    let out = exp(ws.path()).args(["run", "--dry-run"]).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("`execution.batch_poll_s` is 0.5, outside [1, 3600]"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    let sim = "  - {name: s, provider: sim, backend: batch, sim: {accuracy: {control: 0.5, treatment: 0.5}}}";
    let ws = workspace(3, sim, "");
    let out = exp(ws.path()).args(["run", "--dry-run"]).assert().failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("models[0].backend") && err.contains("is batch, but model `s` is simulated"),
        "{err}"
    );
    assert!(err.contains("hint: the Batch API needs a real endpoint"), "{err}");
}

#[test]
fn a_budget_counts_batched_requests_at_their_batch_maximum_and_holds_the_rest_back() {
    let server = Server::start(vec![]);
    let ws = batch_workspace(&server, 3, ", max_usd: 0.0005");
    let out = run_batch(ws.path()).failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("stopped at its budget"), "{err}");
    let run = only_run(ws.path());
    assert_eq!(status(&run), "incomplete");
    // Each batched request at most: body bytes as input tokens at $0.50/M, 16 output tokens at
    // $1/M (the batch prices).
    let max = |line: &Value| line["body"].to_string().len() as f64 * 0.5e-6 + 16.0 * 1e-6;
    let batched: Vec<Value> = jsonl_files(&run.join("batches"))
        .iter()
        .filter(|p| {
            !p.to_string_lossy().contains(".output") && !p.to_string_lossy().contains(".error")
        })
        .flat_map(|p| lines(p))
        .collect();
    let total: f64 = batched.iter().map(max).sum();
    assert!(!batched.is_empty() && batched.len() < 12, "{}", batched.len());
    assert!(total <= 0.0005, "{total}");
    assert!(
        total + max(&batched[0]) > 0.0005 - 20e-6,
        "no room was left for another request: {total}"
    );
    let answered = predictions(&run).iter().filter(|r| !r["raw_output"].is_empty()).count();
    assert_eq!(answered, batched.len());
}

#[test]
fn file_mode_and_ingest_print_json_documents_named_by_their_schema() {
    let documented =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md"))
            .unwrap();
    let ws = workspace(3, &model(NOWHERE, ""), "");
    let out = exp(ws.path()).args(["run", "--backend", "files", "--json"]).assert().success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["schema"], "exp.run.awaiting/1");
    assert_eq!(doc["batch_files"][0]["requests"], 12);
    let run = only_run(ws.path());
    let requests = batch_requests(&run);
    let mut outputs: Vec<Value> =
        requests.iter().enumerate().map(|(n, r)| openai_output(r, n)).collect();
    outputs.push(json!({"id": "x", "custom_id": "stranger/x", "response": null, "error": {"code": "e", "message": "m"}}));
    write_lines(&ws.path().join("out.jsonl"), &outputs);
    let out = exp(ws.path()).args(["ingest", "out.jsonl", "--json"]).assert().success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["schema"], "exp.ingest/1");
    assert_eq!(
        (doc["status"].as_str(), doc["ingested"]["journaled"].as_u64()),
        (Some("complete"), Some(12))
    );
    assert_eq!(doc["ingested"]["files"], json!(["out.jsonl"]));
    assert!(
        doc["warnings"][0].as_str().unwrap().contains("out.jsonl:13: custom_id `stranger/x`"),
        "{doc}"
    );
    for schema in ["exp.run.awaiting/1", "exp.ingest/1"] {
        assert!(
            documented.contains(&format!("## `{schema}`")),
            "docs/JSON.md has no section for {schema}"
        );
    }
}

#[test]
fn a_failed_download_is_tried_again_at_the_next_poll() {
    let server = Server::start(vec![Fate::Complete { refuse: Some(0) }]);
    // file-1 is the input; when the batch completes, file-2 its output, file-3 its error file.
    // The output file is journaled, the error file's download fails: the next poll collects
    // both again, and the answers already journaled are not journaled twice.
    server.state.lock().unwrap().failing_downloads = vec!["file-3".into()];
    let ws = batch_workspace(&server, 3, "");
    run_batch(ws.path()).success();
    assert!(server.state.lock().unwrap().failing_downloads.is_empty(), "the 503 was sent");
    assert_eq!(server.creates(), 1);
    let run = only_run(ws.path());
    assert_eq!(status(&run), "complete");
    assert_eq!(predictions(&run).iter().filter(|r| !r["error"].is_empty()).count(), 1);
    let journaled: usize = jsonl_files(&run)
        .iter()
        .filter(|p| p.to_string_lossy().contains("/responses/"))
        .map(|p| lines(p).len())
        .sum();
    assert_eq!(journaled, 12, "each answer journaled once, none lost");
}

#[test]
fn a_redirecting_batch_endpoint_is_not_followed_and_the_error_says_where_it_points() {
    use axum::response::IntoResponse;
    // Every call is redirected to a URL that echoes the key, as a careless proxy would.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    let rt = rt.unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let to = format!("http://elsewhere.example/v1/files?key={KEY}");
            (axum::http::StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, to)])
                .into_response()
        }
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await });
    let model = model(&url, ", backend: batch, api_key_env: BATCH_TEST_KEY");
    let ws = workspace(2, &model, "batch_poll_s: 1, max_retries: 1");
    let out = run_batch(ws.path()).failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("HTTP 307")
            && err.contains("redirects to http://elsewhere.example/v1/files?key=[redacted]")
            && err.contains("set base_url to it"),
        "{err}"
    );
    assert!(!err.contains(KEY), "{err}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "a redirect is final");
    assert_no_key(ws.path());
}
