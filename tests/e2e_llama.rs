//! End to end against a real OpenAI-compatible inference server: llama.cpp (llama-cpp-python's
//! server) with a tiny random-weights model, started by the test on a free loopback port, waited
//! for, and killed at the end. It answers gibberish, which is fine: what is checked is the client
//! side (real HTTP, real `usage`, `finish_reason: length` when max_tokens runs out).
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{csv_rows, exp, labelled_jsonl, require_tool, write_files};
use serde_json::Value;

/// The model ships with the repository (tests/data/models/README.md says where it comes from):
/// the test reads nothing outside the repository.
fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/llama-2-tiny-random.gguf")
}

fn llama_cpp_available() -> bool {
    Command::new("python3")
        .args(["-c", "import llama_cpp.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Kills the server when the test ends, however it ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether GET /v1/models answers 200 with our model, with a raw request (no HTTP client in the
/// test). The model's name matters: the port was free when chosen, but until our server binds
/// it another test's server may have taken it, and would answer 200 too.
fn ready(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") && buf.contains("llama-2-tiny-random")
}

/// Starts the server; a port taken between choosing and binding is retried with another.
fn start_server(model: &Path) -> (ServerGuard, u16) {
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "512"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut guard = ServerGuard(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = guard.0.try_wait() {
                break; // exited: most likely the port was taken
            }
            if ready(port) {
                return (guard, port);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(guard);
    }
    panic!("the llama.cpp server did not start");
}

#[test]
fn exp_run_against_a_real_llama_cpp_server_records_real_usage() {
    let model = model_path();
    assert!(model.is_file(), "{} is part of the repository", model.display());
    if !require_tool(llama_cpp_available(), "llama-cpp-python server") {
        return;
    }
    let (_server, port) = start_server(&model);

    let ws = tempfile::tempdir().unwrap();
    let p = ws.path();
    let rows = labelled_jsonl(
        [
            ("I love it", "positive"),
            ("I hate it", "negative"),
            ("It is blue", "neutral"),
            ("Superb", "positive"),
            ("Awful", "negative"),
            ("Tuesday", "neutral"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (text, label))| (format!("e{i}"), text.to_string(), label)),
    );
    let config = format!(
        "datasets:\n  - {{name: e, path: data/e.jsonl}}\nmodels:\n  - {{name: llama-tiny, provider: openai, base_url: \"http://127.0.0.1:{port}/v1\", model: tiny, max_connections: 2, send_top_k: true, pricing: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}}}\nprompt_sets:\n  ps: {{control: config/prompts/c.txt, treatment: config/prompts/t.txt}}\nuser_template: \"{{text}}\"\ndecoding: {{temps: [0.0], top_k: [40], top_p: [1.0], max_tokens: [8]}}\nscoring: {{type: label, labels: [positive, negative, neutral]}}\nexecution: {{max_retries: 2, timeout_s: 60, backoff_base_s: 0.1}}\n"
    );
    write_files(
        p,
        &[
            ("data/e.jsonl", &rows),
            ("config/prompts/c.txt", "Classify the sentiment."),
            ("config/prompts/t.txt", "Answer with one word: positive, negative or neutral."),
            ("config/eval_config.yaml", &config),
        ],
    );

    exp(p).args(["run", "--run-id", "llama"]).assert().success();

    let run = p.join("experiments/run_llama");
    let trial = run.join("llama-tiny-ps-t0-tk40-tp1-mx8");
    let preds = csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(preds.len(), 12);
    let mut input = 0u64;
    let mut output = 0u64;
    for r in &preds {
        assert!(r["error"].is_empty(), "{r:?}");
        assert!(["length", "stop"].contains(&r["finish_reason"].as_str()), "{r:?}");
        let tin: u64 = r["input_tokens"].parse().unwrap();
        let tout: u64 = r["output_tokens"].parse().unwrap();
        assert!(tin > 0 && tout <= 8, "{r:?}");
        input += tin;
        output += tout;
    }
    let costs: Value =
        serde_json::from_str(&std::fs::read_to_string(trial.join("results/costs.json")).unwrap())
            .unwrap();
    assert_eq!(costs["input_tokens"].as_u64().unwrap(), input);
    assert_eq!(costs["output_tokens"].as_u64().unwrap(), output);
    assert_eq!(costs["failures"], 0);
    let run_json: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(run_json["status"], "complete");
}
