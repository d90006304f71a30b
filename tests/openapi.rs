//! Every request body `exp` sends, and every request line it writes, validates against the
//! official OpenAI OpenAPI spec's `CreateChatCompletionRequest` (vendored with everything it
//! references in tests/data/openapi/ by scripts/vendor_openapi.py, which names the spec commit),
//! sent live, written as request lines, or written as batch input files (`--backend files`),
//! for each combination of the per-model parameters: token limit key, omitted sampling
//! parameters, top_k, extra_body. The spec's schema allows unknown keys, so bodies for OpenAI
//! itself are also checked strictly (`unevaluatedProperties: false`: no key the spec lacks);
//! only a model that says its server takes `top_k` sends that one extra key.
#[path = "common/chat.rs"]
mod chat;
mod common;

use std::path::Path;

use chat::{Behaviour, ChatServer, trials, workspace};
use common::exp;
use serde_json::Value;

const SCHEMA: &str = "tests/data/openapi/create_chat_completion_request.schema.json";

struct Schemas {
    spec: jsonschema::Validator,
    strict: jsonschema::Validator,
}

fn schemas() -> Schemas {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut strict = doc.clone();
    strict["unevaluatedProperties"] = Value::Bool(false);
    Schemas {
        spec: jsonschema::validator_for(&doc).expect("the vendored schema compiles"),
        strict: jsonschema::validator_for(&strict).expect("the strict schema compiles"),
    }
}

fn errors(v: &jsonschema::Validator, body: &Value) -> Vec<String> {
    v.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect()
}

/// `body` is a valid request; strictly so unless its model sends `top_k`, which must then be
/// its one key outside the spec.
fn check(s: &Schemas, body: &Value, what: &str) {
    let e = errors(&s.spec, body);
    assert!(e.is_empty(), "{what}: {body}\n{e:?}");
    let mut without_top_k = body.clone();
    let sends_top_k = without_top_k.as_object_mut().unwrap().remove("top_k").is_some();
    if sends_top_k {
        assert!(!s.strict.is_valid(body), "{what}: top_k is outside the spec");
    }
    let e = errors(&s.strict, &without_top_k);
    assert!(e.is_empty(), "{what}: a key outside the spec: {body}\n{e:?}");
}

/// The models of the run: one per parameter combination `exp` can produce.
fn models(url: &str) -> String {
    let m = |name: &str, extra: &str| {
        format!("  - {{name: {name}, provider: openai, base_url: \"{url}\"{extra}}}\n")
    };
    [
        m("reasoner", ", model: o3-mini"),
        m("reasoner-effort", ", model: gpt-5-mini, extra_body: {reasoning_effort: low}"),
        m("chat", ", model: gpt-4o-mini"),
        m("vllm", ", model: org/llama, send_top_k: true"),
        m(
            "custom",
            ", model: custom, token_limit_param: max_completion_tokens, omit_params: [temperature]",
        ),
        m(
            "no-sampling",
            ", model: gpt-4.1, omit_params: [temperature, top_p, top_k], send_top_k: true",
        ),
        m("legacy-key", ", model: o1, token_limit_param: max_tokens, omit_params: []"),
    ]
    .concat()
}

fn run() -> (ChatServer, tempfile::TempDir) {
    let server = ChatServer::start(Behaviour::default());
    let grid = "temps: [0.0, 1.0], top_k: [40], top_p: [0.9], max_tokens: [16], repeats: 1";
    let ws = workspace(3, &models(&server.url), grid, "max_retries: 0, timeout_s: 10");
    exp(ws.path()).args(["run", "--run-id", "spec"]).assert().success();
    (server, ws)
}

#[test]
fn every_request_body_exp_sends_validates_against_the_spec() {
    let s = schemas();
    let (server, _ws) = run();
    let bodies = server.bodies();
    // 7 models × 2 temperatures × 3 items × 2 conditions.
    assert_eq!(bodies.len(), 84);
    for b in &bodies {
        check(&s, b, &format!("body sent for {}", b["model"]));
    }
    let keys = |m: &str| bodies.iter().any(|b| b["model"] == m && b.get("top_k").is_some());
    assert!(keys("org/llama") && !keys("gpt-4.1") && !keys("gpt-4o-mini"));
}

#[test]
fn every_request_line_exp_writes_validates_against_the_spec() {
    let s = schemas();
    let (_server, ws) = run();
    let mut lines = 0;
    for trial in trials(ws.path(), "spec") {
        for cond in ["control", "treatment"] {
            let dir = trial.join("inputs").join(cond);
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                for line in std::fs::read_to_string(&f).unwrap().lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    assert_eq!(
                        (v["method"].as_str(), v["url"].as_str()),
                        (Some("POST"), Some("/v1/chat/completions"))
                    );
                    check(&s, &v["body"], &format!("{}", f.display()));
                    lines += 1;
                }
            }
        }
    }
    assert_eq!(lines, 84);
}

#[test]
fn every_batch_input_line_of_backend_files_validates_against_the_spec() {
    let s = schemas();
    let grid = "temps: [0.0, 1.0], top_k: [40], top_p: [0.9], max_tokens: [16], repeats: 1";
    // File mode sends nothing: the URL is never called.
    let ws = workspace(3, &models("http://127.0.0.1:9/v1"), grid, "max_retries: 0");
    let out = exp(ws.path())
        .args(["run", "--backend", "files", "--run-id", "files", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["schema"], "exp.run.awaiting/1");
    let mut lines = 0;
    for f in doc["batch_files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["url"], "/v1/chat/completions", "{path}");
            check(&s, &v["body"], path);
            lines += 1;
        }
    }
    assert_eq!(lines, 84, "every request of every model is in a batch file");
}

#[test]
fn the_vendored_schema_refuses_what_the_api_refuses() {
    let s = schemas();
    let ok = serde_json::json!({"model": "o3", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 16});
    assert!(errors(&s.strict, &ok).is_empty());
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut b = ok.clone();
        edit(&mut b);
        b
    };
    for (what, body) in [
        ("a token limit that is no integer", bad(&|b| b["max_completion_tokens"] = "16".into())),
        ("no messages", bad(&|b| drop(b.as_object_mut().unwrap().remove("messages")))),
        ("an unknown role", bad(&|b| b["messages"][0]["role"] = "robot".into())),
        ("temperature above 2", bad(&|b| b["temperature"] = 3.into())),
    ] {
        assert!(!s.spec.is_valid(&body), "{what} passed: {body}");
    }
    assert!(
        s.spec.is_valid(&bad(&|b| b["top_k"] = 40.into())),
        "the spec lets unknown keys through"
    );
    assert!(
        !s.strict.is_valid(&bad(&|b| b["top_k"] = 40.into())),
        "strictly, top_k is not OpenAI's"
    );
}
