//! The endpoints `exp run` talks to, black-box through the binary against real HTTP servers on
//! 127.0.0.1 (tests/common/chat.rs): replicas sharing the load and surviving one going down,
//! every replica down, adaptive concurrency under a server that refuses above a hidden limit,
//! what request bodies carry per model (token limit key, omitted parameters, top_k), reasoning
//! tokens, and the config errors of the new keys. Assertions are on counts and bounds only.
#[path = "common/chat.rs"]
mod chat;
mod common;

use std::path::Path;
use std::time::Duration;

use chat::{Behaviour, ChatServer, read_json, tls_ca, trials, workspace};
use common::exp;
use predicates::prelude::*;
use serde_json::Value;

const FAST: &str = "max_retries: 50, backoff_base_s: 0.005, backoff_max_s: 0.05, timeout_s: 10";
const GRID: &str = "temps: [0.0], top_p: [1.0], max_tokens: [16]";

fn model(name: &str, base_url: &str, extra: &str) -> String {
    format!(
        "  - {{name: {name}, provider: openai, base_url: {base_url}, pricing: {{input_per_mtok: 1.0, output_per_mtok: 10.0}}{extra}}}\n"
    )
}

/// Every journal line of a trial, both conditions.
fn journal(trial: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for cond in ["control", "treatment"] {
        let Ok(entries) = std::fs::read_dir(trial.join("responses").join(cond)) else { continue };
        for e in entries {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    out
}

fn costs(trial: &Path) -> Value {
    read_json(&trial.join("results").join("costs.json"))
}

fn ok_lines(lines: &[Value]) -> usize {
    lines.iter().filter(|l| l["status"] == "ok").count()
}

#[test]
fn replicas_share_the_load_fairly_and_costs_json_counts_each_one() {
    let hold = Behaviour { hold: Duration::from_millis(5), ..Default::default() };
    let (a, b) = (ChatServer::start(hold.clone()), ChatServer::start(hold));
    let urls = format!("[\"{}\", \"{}\"]", a.url, b.url);
    let ws = workspace(60, &model("m", &urls, ", max_connections: 8"), GRID, FAST);
    exp(ws.path())
        .args(["run", "--run-id", "share"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("model m: replica {}: ", a.url)));
    let trial = &trials(ws.path(), "share")[0];
    assert_eq!(ok_lines(&journal(trial)), 120);
    let (na, nb) = (a.answered(), b.answered());
    assert_eq!(na + nb, 120);
    // Least in flight with ties taken in turn: equal replicas get about half each.
    for n in [na, nb] {
        assert!((36..=84).contains(&n), "shares {na} / {nb}");
    }
    let replicas = &costs(trial)["endpoint"]["replicas"];
    assert_eq!(replicas[0]["url"], a.url.as_str());
    assert_eq!(replicas[1]["url"], b.url.as_str());
    for (r, n) in [(&replicas[0], na), (&replicas[1], nb)] {
        assert_eq!(
            (r["requests"].as_u64(), r["errors"].as_u64(), r["rests"].as_u64()),
            (Some(n), Some(0), Some(0))
        );
    }
    assert_eq!(costs(trial)["endpoint"]["concurrency"]["mode"], "fixed");
}

#[test]
fn a_replica_that_goes_down_mid_run_is_rested_and_the_others_answer_the_rest() {
    let hold = Behaviour { hold: Duration::from_millis(2), ..Default::default() };
    let a = ChatServer::start(hold.clone());
    let b = ChatServer::start(Behaviour { stop_after: Some(15), ..hold });
    let urls = format!("[\"{}\", \"{}\"]", a.url, b.url);
    let ws = workspace(60, &model("m", &urls, ", max_connections: 4"), GRID, FAST);
    exp(ws.path()).args(["run", "--run-id", "survive"]).assert().success();
    let trial = &trials(ws.path(), "survive")[0];
    let lines = journal(trial);
    assert_eq!((lines.len(), ok_lines(&lines)), (120, 120), "every request answered once");
    assert_eq!(b.answered(), 15, "b stopped after 15 answers");
    assert_eq!(a.answered(), 105);
    let replicas = &costs(trial)["endpoint"]["replicas"];
    let (ra, rb) = (&replicas[0], &replicas[1]);
    assert_eq!((ra["errors"].as_u64(), ra["rests"].as_u64()), (Some(0), Some(0)));
    assert!(rb["rests"].as_u64().unwrap() >= 1, "{rb}");
    assert!(rb["errors"].as_u64().unwrap() >= 3, "{rb}");
    assert!(rb["requests"].as_u64().unwrap() >= 15 + 3, "{rb}");
}

#[test]
fn when_every_replica_is_down_the_run_stops_incomplete_with_every_answer_journaled() {
    let stop = Behaviour { stop_after: Some(10), ..Default::default() };
    let (a, b) = (ChatServer::start(stop.clone()), ChatServer::start(stop));
    let urls = format!("[\"{}\", \"{}\"]", a.url, b.url);
    let ws = workspace(60, &model("m", &urls, ", max_connections: 2"), GRID, FAST);
    exp(ws.path())
        .args(["run", "--run-id", "down"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "error: run down stopped: model `m`: every replica is down",
        ))
        .stderr(
            predicate::str::contains(a.url.as_str()).and(predicate::str::contains(b.url.as_str())),
        )
        .stderr(predicate::str::contains("hint: bring the endpoint back"))
        .stderr(predicate::str::contains("--resume --run-id down"));
    let run = ws.path().join("experiments/run_down");
    assert_eq!(read_json(&run.join("run.json"))["status"], "incomplete");
    let trial = &trials(ws.path(), "down")[0];
    let lines = journal(trial);
    // Everything the servers answered is journaled, and nothing unanswered is recorded as a
    // failure: a resume sends exactly the rest.
    assert_eq!(lines.len(), 20, "{lines:?}");
    assert_eq!(ok_lines(&lines), 20);
    for r in costs(trial)["endpoint"]["replicas"].as_array().unwrap() {
        assert!(r["rests"].as_u64().unwrap() >= 5, "{r}");
    }
}

#[test]
fn a_resume_adds_its_replica_counts_to_the_earlier_ones() {
    let (a, b) = (ChatServer::start(Behaviour::default()), ChatServer::start(Behaviour::default()));
    for s in [&a, &b] {
        s.state.refuse_happy.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let urls = format!("[\"{}\", \"{}\"]", a.url, b.url);
    let ws = workspace(30, &model("m", &urls, ", max_connections: 4"), GRID, FAST);
    // 400 is not retried: the 20 "happy" requests are recorded failures of a complete run.
    exp(ws.path()).args(["run", "--run-id", "again"]).assert().success();
    let trial = &trials(ws.path(), "again")[0];
    let sum = |field: &str| -> u64 {
        let c = costs(trial);
        c["endpoint"]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!((sum("requests"), sum("errors")), (60, 20));
    for s in [&a, &b] {
        s.state.refuse_happy.store(false, std::sync::atomic::Ordering::SeqCst);
    }
    exp(ws.path()).args(["run", "--resume", "--run-id", "again"]).assert().success();
    assert_eq!(ok_lines(&journal(trial)), 60);
    assert_eq!((sum("requests"), sum("errors")), (80, 20), "the resume's 20 added to the first 60");
}

/// A server refusing with 429 above `hidden` requests in flight, and a model at `auto`.
fn aimd_run(hidden: i64, extra: &str, id: &str) -> (ChatServer, tempfile::TempDir) {
    let server = ChatServer::start(Behaviour {
        hold: Duration::from_millis(20),
        max_concurrency: Some(hidden),
        ..Default::default()
    });
    let m = model("m", &format!("\"{}\"", server.url), &format!(", max_connections: auto{extra}"));
    let ws = workspace(150, &m, GRID, FAST);
    exp(ws.path())
        .args(["run", "--run-id", id])
        .assert()
        .success()
        .stdout(predicate::str::contains("model m: concurrency auto reached"));
    (server, ws)
}

#[test]
fn adaptive_concurrency_converges_near_a_hidden_limit_and_the_run_completes() {
    let hidden = 6;
    let (server, ws) = aimd_run(hidden, "", "aimd");
    let trial = &trials(ws.path(), "aimd")[0];
    assert_eq!(ok_lines(&journal(trial)), 300, "every request answered in the end");
    assert!(server.rejected() >= 1, "the limit reached the hidden one and was refused");
    let c = &costs(trial)["endpoint"]["concurrency"];
    let (peak, limit) = (c["peak"].as_i64().unwrap(), c["limit"].as_i64().unwrap());
    assert_eq!(c["mode"], "auto");
    assert_eq!(c["ceiling"], 256);
    assert!(c["decreases"].as_u64().unwrap() >= 1, "{c}");
    // A 429 needs more than `hidden` in flight, so the limit got past it; it halves on the
    // first refusals, so it never ran away towards the ceiling.
    assert!((hidden + 1..=2 * hidden).contains(&peak), "{c}");
    assert!((1..=peak).contains(&limit), "{c}");
    assert!(server.state.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= peak);
    assert!(c["in_flight_peak"].as_i64().unwrap() <= peak, "{c}");
}

#[test]
fn adaptive_concurrency_never_passes_its_ceiling() {
    let (server, ws) = aimd_run(1000, ", max_connections_ceiling: 6", "ceiling");
    let c = &costs(&trials(ws.path(), "ceiling")[0])["endpoint"]["concurrency"];
    assert_eq!(server.rejected(), 0);
    assert_eq!(
        (c["peak"].as_i64(), c["limit"].as_i64(), c["ceiling"].as_i64()),
        (Some(6), Some(6), Some(6))
    );
    assert_eq!(c["decreases"], 0);
    assert!(server.state.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= 6);
}

/// One server, four models differing only in what their API takes; a grid that sets top_k.
fn parameter_run() -> (ChatServer, tempfile::TempDir) {
    let server = ChatServer::start(Behaviour::default());
    let url = format!("\"{}\"", server.url);
    let models = [
        model("reasoner", &url, ", model: o3-mini"),
        model("chat", &url, ", model: gpt-4o-mini"),
        model("vllm", &url, ", model: org/llama, send_top_k: true"),
        model(
            "custom",
            &url,
            ", model: custom, token_limit_param: max_completion_tokens, omit_params: [temperature]",
        ),
    ]
    .concat();
    let grid = "temps: [0.5], top_k: [40], top_p: [0.9], max_tokens: [16]";
    let ws = workspace(3, &models, grid, FAST);
    exp(ws.path()).args(["run", "--run-id", "params"]).assert().success();
    (server, ws)
}

/// The keys of the first captured body sent for `model`, minus `model` and `messages`.
fn keys_for(bodies: &[Value], model: &str) -> Vec<(String, Value)> {
    let b = bodies
        .iter()
        .find(|b| b["model"] == model)
        .unwrap_or_else(|| panic!("no body for {model}"));
    assert_eq!(bodies.iter().filter(|b| b["model"] == model).count(), 6);
    b.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "model" && *k != "messages")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn bodies_carry_the_token_limit_key_and_only_the_parameters_each_model_takes() {
    let (server, _ws) = parameter_run();
    let bodies = server.bodies();
    let pairs = |p: &[(&str, Value)]| -> Vec<(String, Value)> {
        p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    };
    // A reasoning model (o-series by name): max_completion_tokens, no temperature or top_p.
    assert_eq!(keys_for(&bodies, "o3-mini"), pairs(&[("max_completion_tokens", 16.into())]));
    // Any other model: max_tokens and the sampling parameters; top_k is no OpenAI parameter.
    assert_eq!(
        keys_for(&bodies, "gpt-4o-mini"),
        pairs(&[("temperature", 0.5.into()), ("top_p", 0.9.into()), ("max_tokens", 16.into())])
    );
    // A server that takes top_k says so with send_top_k.
    assert_eq!(
        keys_for(&bodies, "org/llama"),
        pairs(&[
            ("temperature", 0.5.into()),
            ("top_p", 0.9.into()),
            ("max_tokens", 16.into()),
            ("top_k", 40.into())
        ])
    );
    // The config wins over the defaults.
    assert_eq!(
        keys_for(&bodies, "custom"),
        pairs(&[("top_p", 0.9.into()), ("max_completion_tokens", 16.into())])
    );
}

#[test]
fn reasoning_tokens_are_journaled_per_item_and_costed_in_costs_json() {
    let server = ChatServer::start(Behaviour { reasoning_tokens: Some(30), ..Default::default() });
    let ws =
        workspace(6, &model("r", &format!("\"{}\"", server.url), ", model: o4-mini"), GRID, FAST);
    exp(ws.path()).args(["run", "--run-id", "think"]).assert().success();
    let trial = &trials(ws.path(), "think")[0];
    let lines = journal(trial);
    assert_eq!(lines.len(), 12);
    for l in &lines {
        assert_eq!(
            (l["reasoning_tokens"].as_u64(), l["output_tokens"].as_u64()),
            (Some(30), Some(32)),
            "{l}"
        );
    }
    // Per item, beside the output tokens they are part of.
    let rows = common::csv_rows(&trial.join("results/predictions.csv"));
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert_eq!((r["reasoning_tokens"].as_str(), r["output_tokens"].as_str()), ("30", "32"));
    }
    let c = costs(trial);
    assert_eq!(c["reasoning_tokens"], 360);
    assert_eq!(c["output_tokens"], 12 * 32);
    assert_eq!(c["conditions"]["control"]["reasoning_tokens"], 180);
    // Reasoning is billed as output: inside `usd`, and `reasoning_usd` is its share.
    let usd = (12.0 * 10.0 * 1.0 + 384.0 * 10.0) / 1e6;
    assert!((c["usd"].as_f64().unwrap() - usd).abs() < 1e-12, "{c}");
    assert!((c["reasoning_usd"].as_f64().unwrap() - 360.0 * 10.0 / 1e6).abs() < 1e-12, "{c}");
}

#[test]
fn a_model_without_reasoning_writes_no_reasoning_fields() {
    let server = ChatServer::start(Behaviour::default());
    let ws = workspace(2, &model("m", &format!("\"{}\"", server.url), ""), GRID, FAST);
    exp(ws.path()).args(["run", "--run-id", "plain"]).assert().success();
    let trial = &trials(ws.path(), "plain")[0];
    assert!(journal(trial).iter().all(|l| l.get("reasoning_tokens").is_none()));
    let rows = common::csv_rows(&trial.join("results/predictions.csv"));
    assert!(rows.iter().all(|r| r["reasoning_tokens"] == "0"), "{rows:?}");
    let c = costs(trial);
    assert!(c.get("reasoning_tokens").is_none() && c.get("reasoning_usd").is_none(), "{c}");
}

#[test]
fn keep_alive_connections_the_server_closed_are_replaced_without_costing_an_attempt() {
    // The server hangs up after every answer (no `Connection: close`), so nearly every request
    // first finds its idle connection closed. None may be journaled as failed or retried.
    let server = ChatServer::start(Behaviour { close_after_answer: true, ..Default::default() });
    let url = format!("\"{}\"", server.url);
    let ws = workspace(
        40,
        &model("m", &url, ", max_connections: 4"),
        GRID,
        "max_retries: 0, timeout_s: 10",
    );
    exp(ws.path()).args(["run", "--run-id", "closing"]).assert().success();
    let lines = journal(&trials(ws.path(), "closing")[0]);
    let errors: Vec<_> = lines.iter().filter(|l| l["status"] != "ok").collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(ok_lines(&lines), 80);
    assert!(
        lines.iter().all(|l| l["attempts"] == 1),
        "an attempt was spent on a closed connection"
    );
    // A connection per answer: none was reused after its server closed it.
    assert_eq!(server.connections(), 80);
}

#[test]
fn idle_connections_are_reused_for_the_next_requests() {
    let server = ChatServer::start(Behaviour::default());
    let url = format!("\"{}\"", server.url);
    // One job at a time, so one sender thread: its connections are the endpoint's.
    let ws = workspace(
        50,
        &model("m", &url, ", max_connections: 3"),
        GRID,
        &format!("{FAST}, max_concurrent_jobs: 1"),
    );
    exp(ws.path()).args(["run", "--run-id", "reuse"]).assert().success();
    assert_eq!(server.answered(), 100);
    assert!(server.connections() <= 3, "{} connections for 3 slots", server.connections());
}

#[test]
fn a_redirect_is_not_followed_and_the_error_says_where_the_endpoint_went() {
    let server = ChatServer::start(Behaviour {
        redirect_to: Some("https://elsewhere.example/v1/chat/completions".into()),
        ..Default::default()
    });
    let url = format!("\"{}\"", server.url);
    let ws = workspace(2, &model("m", &url, ""), GRID, FAST);
    exp(ws.path()).args(["run", "--run-id", "moved"]).assert().failure();
    let lines = journal(&trials(ws.path(), "moved")[0]);
    assert_eq!(lines.len(), 4);
    for l in &lines {
        let error = l["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("HTTP 307")
                && error.contains(
                    "redirects to https://elsewhere.example/v1/chat/completions: set base_url to it"
                ),
            "{l}"
        );
        assert_eq!(l["attempts"], 1, "a redirect is final, not retried: {l}");
    }
    assert_eq!(server.request_lines().len(), 4, "the redirect was followed");
}

#[test]
fn a_redirect_that_echoes_the_key_is_journaled_redacted() {
    let server = ChatServer::start(Behaviour {
        redirect_to: Some("http://elsewhere.example/?key=sk-echoed-secret".into()),
        ..Default::default()
    });
    let url = format!("\"{}\"", server.url);
    let ws = workspace(1, &model("m", &url, ", api_key_env: EXP_TEST_KEY"), GRID, FAST);
    exp(ws.path())
        .env("EXP_TEST_KEY", "sk-echoed-secret")
        .args(["run", "--run-id", "echo"])
        .assert()
        .failure();
    for l in journal(&trials(ws.path(), "echo")[0]) {
        let error = l["error"].as_str().unwrap_or_default();
        assert!(error.contains("redirects to http://elsewhere.example/?key=[redacted]"), "{l}");
        assert!(!error.contains("sk-echoed-secret"), "{l}");
    }
}

#[test]
fn an_https_endpoint_is_reached_over_tls_and_an_untrusted_certificate_is_refused() {
    let server = ChatServer::start_tls(Behaviour::default());
    let url = format!("\"{}\"", server.url);
    let ws = workspace(3, &model("m", &url, ""), GRID, FAST);
    // The test CA is nobody's root: the handshake fails and nothing is answered.
    let out = exp(ws.path())
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .args(["run", "--run-id", "untrusted"])
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("certificate") && err.contains("SSL_CERT_FILE"), "{err}");
    assert_eq!(server.answered(), 0);
    // Trusting it (as a company CA would be), every request goes over TLS.
    exp(ws.path())
        .env("SSL_CERT_FILE", tls_ca())
        .args(["run", "--run-id", "trusted"])
        .assert()
        .success();
    assert_eq!(server.answered(), 6);
    let lines = journal(&trials(ws.path(), "trusted")[0]);
    assert!(lines.iter().all(|l| l["status"] == "ok" && l["attempts"] == 1), "{lines:?}");
}

#[test]
fn an_http_proxy_from_the_environment_carries_the_requests() {
    // The proxy is the loopback server itself: it answers whatever absolute URL it is asked
    // for. The endpoint's name cannot resolve, so only a request through the proxy can succeed.
    // Several jobs, so several sending threads: each must use connections its own runtime
    // drives (a thread whose jobs ended takes its runtime, and its connections, along).
    let proxy = ChatServer::start(Behaviour::default());
    let ws = workspace(
        60,
        &model("m", "\"http://exp-endpoint.invalid/v1\"", ""),
        GRID,
        &format!("{FAST}, parts_per_dataset: 5"),
    );
    let proxy_url = proxy.url.trim_end_matches("/v1");
    exp(ws.path())
        .args(["run", "--run-id", "proxied"])
        .env("HTTP_PROXY", proxy_url)
        .assert()
        .success();
    assert_eq!(proxy.answered(), 120, "every request answered once, none sent twice");
    let lines = journal(&trials(ws.path(), "proxied")[0]);
    assert!(lines.iter().all(|l| l["status"] == "ok" && l["attempts"] == 1), "{lines:?}");
    let lines = proxy.request_lines();
    assert!(
        lines.iter().all(|l| l == "POST http://exp-endpoint.invalid/v1/chat/completions HTTP/1.1"),
        "{lines:?}"
    );
}

/// `exp run --dry-run` on a config whose model line is `m`: fails naming each of `wants`.
fn refused(m: &str, wants: &[&str]) {
    let ws = workspace(1, m, GRID, FAST);
    let out = exp(ws.path()).args(["run", "--dry-run"]).assert().code(1).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    for w in wants {
        assert!(err.contains(w), "wanted {w:?} in {err}");
    }
    assert!(err.contains("hint: "), "{err}");
}

#[test]
fn bad_endpoint_settings_are_refused_naming_the_key_and_line() {
    let m = |extra: &str| format!("  - name: m\n    provider: openai\n{extra}");
    refused(
        &m("    base_url: []\n"),
        &["`models[0].base_url` is missing", "line 4", "list of replicas"],
    );
    refused(
        &m("    base_url: [\"http://a/v1\", \"http://a/v1\"]\n"),
        &["`models[0].base_url` lists `http://a/v1` twice", "line 6"],
    );
    refused(
        &m("    base_url: [\"http://a/v1\", \"ftp://b\"]\n"),
        &["`ftp://b` is not an http(s) URL", "line 6"],
    );
    refused(
        &m("    base_url: http://a/v1\n    max_connections: lots\n"),
        &["line 7", "a number of connections or `auto`"],
    );
    refused(
        &m("    base_url: http://a/v1\n    max_connections: 8\n    max_connections_ceiling: 64\n"),
        &[
            "`models[0].max_connections_ceiling` is set, but max_connections is not `auto`",
            "line 8",
            "max_connections: auto",
        ],
    );
    refused(
        &m(
            "    base_url: http://a/v1\n    max_connections: auto\n    max_connections_ceiling: 0\n",
        ),
        &["`models[0].max_connections_ceiling` is 0, outside [1, 10000]", "line 8"],
    );
    refused(
        &m("    base_url: http://a/v1\n    token_limit_param: max_output\n"),
        &[
            "line 7",
            "unknown variant `max_output`",
            "max_completion_tokens",
            "hint: use one of the values",
        ],
    );
    refused(
        &m("    base_url: http://a/v1\n    omit_params: [temp]\n"),
        &["line 7", "unknown variant `temp`", "`temperature`, `top_p`, `top_k`"],
    );
}
