//! Batch delivery: the Batch API backend against a real HTTP server on 127.0.0.1 (files and
//! batches endpoints, with state transitions that advance per poll, never per wall time), file
//! mode (`exp run --backend files`) and `exp ingest`.
mod common;

use std::path::{Path, PathBuf};

use common::{exp, labelled_jsonl, write_files};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Workspaces

/// A workspace with `n` items (every third "happy"), two temperatures (two trials, so batch
/// custom_ids must say whose request they are) and one openai model whose YAML is `model`.
fn workspace(n: usize, model: &str, execution: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rows = labelled_jsonl((0..n).map(|i| {
        let (text, label) =
            if i % 3 == 0 { ("a happy day", "positive") } else { ("a gloomy day", "negative") };
        (format!("i{i}"), format!("item {i} was {text}"), label)
    }));
    let config = format!(
        "datasets:\n  - {{name: d, path: data/d.jsonl}}\nmodels:\n{model}\nprompt_sets:\n  ps: {{control: config/prompts/control.txt, treatment: config/prompts/treatment.md}}\nuser_template: \"Text: {{text}}\"\ndecoding: {{temps: [0.0, 1.0], top_p: [1.0], max_tokens: [16]}}\nscoring: {{type: label, labels: [positive, negative]}}\nexecution: {{{execution}}}\n"
    );
    write_files(
        dir.path(),
        &[
            ("data/d.jsonl", &rows),
            ("config/prompts/control.txt", "Classify the sentiment."),
            ("config/prompts/treatment.md", "You are careful. Classify the sentiment."),
            ("config/eval_config.yaml", &config),
        ],
    );
    dir
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
        .args(["ingest", "batch_68f_output.jsonl", "batch_68f_error.jsonl"])
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
}

#[test]
fn ingest_reads_vllm_run_batch_output_and_a_partial_ingest_keeps_the_run_awaiting() {
    let ws = workspace(3, &model(NOWHERE, ""), "");
    exp(ws.path()).args(["run", "--backend", "files", "--run-id", "v1"]).assert().success();
    let run = only_run(ws.path());
    let requests = batch_requests(&run);
    let outputs: Vec<Value> = requests.iter().enumerate().map(|(n, r)| vllm_output(r, n)).collect();
    write_lines(&ws.path().join("first.jsonl"), &outputs[..5]);
    write_lines(&ws.path().join("rest.jsonl"), &outputs[5..]);
    let out = exp(ws.path()).args(["ingest", "first.jsonl"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
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
