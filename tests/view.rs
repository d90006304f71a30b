//! `exp view` in a real browser: headless Chromium driven over the DevTools protocol (a small
//! client over a websocket, below). Runs are committed by the real `exp commit`, served by the
//! real `exp view`; the pages render with no console error, filters change the rows, the
//! compare page lists the flips of a known pair, markup in a model's output stays text, and
//! unknown paths or `..` give a 404 page and no file. Also: the static export, the bind rules.
mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use exp::eval::report::{SignificanceSettings, write_aggregate, write_trial_report};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SLUG: &str = "sim-demo-operational_only-t0-tk50-tp1-mx1024";
/// Item q5's input: a quote, an accent and an emoji, escaped in the request file.
const QUOTED: &str = "she said \"très bien\" 😀";
/// A model's answer that would run script if it were ever treated as HTML.
const HOSTILE: &str =
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> positive";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// One version of a run: 12 items; `wrong[c]` are the items condition c gets wrong, `failed`
/// the treatment requests that failed. Item q3's treatment answer is [`HOSTILE`].
struct Version {
    items: usize,
    control_wrong: &'static [usize],
    treatment_wrong: &'static [usize],
    treatment_failed: &'static [usize],
    treatment_prompt: &'static str,
}

/// Writes the run folder as `exp run` would (docs/RUN_FILES.md), with its statistics.
fn write_run(dir: &Path, v: &Version) {
    let n = v.items;
    let trial = dir.join(SLUG);
    write(
        &dir.join("run.json"),
        &json!({"format": 1, "run_id": "r1", "name": "tone study", "status": "complete",
                "trials": [SLUG]})
        .to_string(),
    );
    write(&dir.join("config/eval_config.yaml"), "models:\n  - name: sim-demo\n");
    write(&dir.join("config/prompts/control_system.txt"), "Classify the sentiment.\n");
    write(&dir.join("config/prompts/treatment_system.md"), v.treatment_prompt);
    write(
        &trial.join("trial.json"),
        &json!({"slug": SLUG, "model": "sim-demo", "prompt_set": "operational_only",
                "decoding": {"temperature": 0.0}, "repeats": 1})
        .to_string(),
    );
    let mut scores =
        String::from("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n");
    let mut preds = csv::Writer::from_writer(Vec::new());
    preds
        .write_record([
            "item_id",
            "dataset",
            "condition",
            "repeat",
            "part",
            "prediction",
            "raw_output",
            "finish_reason",
            "input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "latency_ms",
            "error",
        ])
        .unwrap();
    let mut requests = String::new();
    for cond in ["control", "treatment"] {
        for i in 0..n {
            let id = format!("q{i}");
            let failed = cond == "treatment" && v.treatment_failed.contains(&i);
            let wrong =
                if cond == "control" { v.control_wrong } else { v.treatment_wrong }.contains(&i);
            let pred = if failed {
                ""
            } else if wrong {
                "negative"
            } else {
                "positive"
            };
            let score = if failed {
                ""
            } else if wrong {
                "0"
            } else {
                "1"
            };
            scores.push_str(&format!("{id},demo,{cond},0,positive,{pred},{score},\n"));
            let raw = if failed {
                String::new()
            } else if cond == "treatment" && i == 3 {
                HOSTILE.to_string()
            } else {
                format!("[simulated] {cond} says {pred} for {id}")
            };
            let error = if failed { "timeout after 120 s" } else { "" };
            preds
                .write_record([
                    id.as_str(),
                    "demo",
                    cond,
                    "0",
                    "0",
                    pred,
                    raw.as_str(),
                    "stop",
                    "20",
                    "3",
                    if cond == "treatment" && !failed { "2" } else { "0" },
                    "41",
                    error,
                ])
                .unwrap();
            if cond == "control" {
                let text = match i {
                    3 => "I <b>loved</b> it".to_string(),
                    5 => QUOTED.to_string(),
                    _ => format!("text of item {i}"),
                };
                // Written as a writer that escapes every non-ASCII character would (Python's
                // json.dumps): the search must find the decoded text, not the escapes.
                let line = json!({"custom_id": format!("demo:{id}:control:r0"), "method": "POST",
                                  "url": "/v1/chat/completions",
                                  "body": {"messages": [{"role": "system", "content": "Classify."},
                                                        {"role": "user", "content": text}]}})
                .to_string()
                .replace('é', "\\u00e9")
                .replace('😀', "\\ud83d\\ude00");
                requests.push_str(&line);
                requests.push('\n');
            }
        }
    }
    write(&trial.join("results/per_item_scores.csv"), &scores);
    write(
        &trial.join("results/predictions.csv"),
        &String::from_utf8(preds.into_inner().unwrap()).unwrap(),
    );
    write(&trial.join("inputs/control/part-0000.jsonl"), &requests);
    let metric = |wrong: usize, failed: usize| {
        let scored = n - failed;
        json!({"n": n, "scored": scored, "failed": failed, "correct": (scored - wrong) as f64,
               "accuracy": (scored - wrong) as f64 / scored as f64})
    };
    write(
        &trial.join("results/metrics.json"),
        &json!({"n_items": n, "repeats": 1, "conditions": {
            "control": metric(v.control_wrong.len(), 0),
            "treatment": metric(v.treatment_wrong.len(), v.treatment_failed.len())}})
        .to_string(),
    );
    write(
        &trial.join("results/costs.json"),
        &json!({"requests": 24, "failures": 0, "input_tokens": 480, "output_tokens": 72, "usd": 0.002,
                "conditions": {"control": {"usd": 0.001}, "treatment": {"usd": 0.001}}})
        .to_string(),
    );
    let settings = SignificanceSettings { alpha: 0.05, bootstrap_resamples: 200, seed: 0 };
    write_trial_report(&trial, &settings).unwrap();
    write(
        &dir.join("multi_trial_manifest.json"),
        &json!({"format": 1, "run_id": "r1", "status": "complete",
                "trials": [{"slug": SLUG, "status": "complete", "path": format!("{SLUG}/"),
                            "model": "sim-demo", "prompt_set": "operational_only"}]})
        .to_string(),
    );
    write_aggregate(dir, &settings).unwrap();
}

/// Run r1 in two commits. In the first, the treatment fixes q1 and q8, breaks q6, and its
/// request for q9 failed. The second (new treatment prompt) gets q6 right and q1 wrong.
const FIRST: Version = Version {
    items: 12,
    control_wrong: &[1, 4, 8],
    treatment_wrong: &[4, 6],
    treatment_failed: &[9],
    treatment_prompt: "Classify the sentiment.\nAnswer with one word.\n",
};
const SECOND: Version = Version {
    items: 12,
    control_wrong: &[1, 4, 8],
    treatment_wrong: &[4, 1],
    treatment_failed: &[],
    treatment_prompt: "Classify the sentiment.\nThink, then answer with one word.\n",
};

/// A workspace with both commits of r1; their ids.
fn workspace() -> (tempfile::TempDir, String, String) {
    workspace_of(&FIRST, &SECOND)
}

/// A workspace with two commits of r1, `first` then `second`; their ids.
fn workspace_of(first: &Version, second: &Version) -> (tempfile::TempDir, String, String) {
    let ws = tempfile::tempdir().unwrap();
    common::exp(ws.path()).arg("init").assert().success();
    let dir = ws.path().join("experiments/run_r1");
    let mut ids = Vec::new();
    for (v, msg) in [(first, "first prompt"), (second, "second prompt")] {
        write_run(&dir, v);
        let out = common::exp(ws.path())
            .args(["commit", "experiments/run_r1", "-m", msg, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(v["commit"].as_str().unwrap().to_string());
    }
    (ws, ids[0].clone(), ids[1].clone())
}

/// `exp view` on an OS-chosen port; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(ws: &Path, extra: &[&str]) -> Server {
        let mut child = common::exp_process(ws)
            .args(["view", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 GET of `target` exactly as written (no client normalizes `..` away):
/// status and body.
fn raw_get(base: &str, target: &str) -> (u16, String) {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Headless Chromium with a DevTools connection to one page.
struct Browser {
    child: Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
    /// Console errors, uncaught exceptions and error log entries seen so far.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut ws_url = None;
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            if let Some(at) = line.find("ws://") {
                ws_url = Some(line[at..].trim().to_string());
                break;
            }
            line.clear();
        }
        // The rest of its log is drained, so a full pipe never blocks the browser.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let ws_url = ws_url.expect("chromium prints its DevTools address");
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.unwrap();
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"})).await;
        let attached = b
            .call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}))
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({})).await;
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        b
    }

    fn note(&mut self, msg: &Value) {
        let p = &msg["params"];
        match msg["method"].as_str() {
            Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                self.errors.push(format!("console.error: {}", p["args"]))
            }
            Some("Runtime.exceptionThrown") => {
                self.errors.push(format!("exception: {}", p["exceptionDetails"]))
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors.push(format!("log: {}", p["entry"]["text"]))
            }
            _ => {}
        }
    }

    /// Sends one command to the page (once attached) and waits for its answer, noting the
    /// events that arrive meanwhile.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, &session).await
    }

    /// A command to the browser itself rather than the page.
    async fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, "").await
    }

    async fn send(&mut self, method: &str, params: Value, session: &str) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !session.is_empty() {
            msg["sessionId"] = json!(session);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let v = self.recv().await;
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn recv(&mut self) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(60), self.ws.next()).await;
        let text = match next {
            Ok(Some(Ok(Message::Text(t)))) => t,
            other => panic!("DevTools connection: {other:?}"),
        };
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        self.note(&v);
        v
    }

    /// Loads `url` and waits for its load event.
    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for_load().await;
    }

    async fn wait_for_load(&mut self) {
        loop {
            if self.recv().await["method"] == "Page.loadEventFired" {
                return;
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expr: &str) -> Value {
        let r =
            self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true})).await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Clicks the element `selector` names and waits for the page it leads to.
    async fn click_and_wait(&mut self, selector: &str) {
        let expr = format!("document.querySelector({}).click()", json!(selector));
        self.call("Runtime.evaluate", json!({"expression": expr})).await;
        self.wait_for_load().await;
    }

    async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true}))
            .await;
        base64_decode(r["data"].as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn has_chromium() -> bool {
    common::require_tool(common::on_path("chromium"), "chromium")
}

/// The ids of the item cards on the page.
async fn item_ids(b: &mut Browser, selector: &str) -> BTreeSet<String> {
    let v = b
        .eval(&format!(
            "Array.from(document.querySelectorAll({})).map(e => e.textContent)",
            json!(selector)
        ))
        .await;
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_in_chromium_with_no_console_error() {
    if !has_chromium() {
        return;
    }
    let (ws, first, second) = workspace();
    let server = Server::start(ws.path(), &[]);
    let mut b = Browser::start().await;
    let pages = [
        ("", "history"),
        (&*format!("run/{second}/index.html"), "run r1"),
        (&*format!("run/{second}/{SLUG}/all/1.html"), SLUG),
        (&*format!("compare/{first}/{second}/1.html"), "compare r1"),
    ];
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for (i, (path, title)) in pages.into_iter().enumerate() {
        b.goto(&format!("{}{path}", server.url)).await;
        let t = b.eval("document.title").await;
        assert!(t.as_str().unwrap().starts_with(title), "{path}: title {t}");
        assert!(b.errors.is_empty(), "{path}: {:?}", b.errors);
        // For people to look at: what each page looks like.
        let png = b.screenshot().await;
        std::fs::write(artifacts.join(format!("view-page-{i}.png")), png).unwrap();
    }
    // The history lists both commits; the run page draws its charts.
    b.goto(&server.url).await;
    assert_eq!(b.eval("document.querySelectorAll('#history tbody tr').length").await, json!(2));
    b.goto(&format!("{}run/{second}/index.html", server.url)).await;
    assert_eq!(b.eval("document.querySelectorAll('figure.chart svg').length").await, json!(3));
    assert!(b.errors.is_empty(), "{:?}", b.errors);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_click_changes_the_rows_to_the_items_it_names() {
    if !has_chromium() {
        return;
    }
    let (ws, first, _) = workspace();
    let server = Server::start(ws.path(), &[]);
    let mut b = Browser::start().await;
    b.goto(&format!("{}run/{first}/{SLUG}/all/1.html", server.url)).await;
    let all = item_ids(&mut b, "#items .item .id").await;
    assert_eq!(all.len(), 12);
    for (filter, expected) in [
        ("fixed", set(&["q1", "q8"])),
        ("broken", set(&["q6"])),
        ("errors", set(&["q9"])),
        ("failures", set(&["q1", "q4", "q6", "q8"])),
        ("discordant", set(&["q1", "q6", "q8"])),
    ] {
        b.click_and_wait(&format!("nav.filters a[data-filter={filter}]")).await;
        assert_eq!(b.eval("document.querySelector('#items').dataset.filter").await, json!(filter));
        assert_eq!(item_ids(&mut b, "#items .item .id").await, expected, "{filter}");
    }
    // Search by text: only the item whose input says "loved".
    b.goto(&format!("{}run/{first}/{SLUG}/all/1.html?q=LOVED", server.url)).await;
    assert_eq!(item_ids(&mut b, "#items .item .id").await, set(&["q3"]));
    assert!(b.errors.is_empty(), "{:?}", b.errors);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compare_page_lists_the_items_that_flipped_between_two_runs() {
    if !has_chromium() {
        return;
    }
    let (ws, first, second) = workspace();
    let server = Server::start(ws.path(), &[]);
    let mut b = Browser::start().await;
    b.goto(&format!("{}compare/{first}/{second}/1.html", server.url)).await;
    assert_eq!(item_ids(&mut b, "#flipped .item .id").await, set(&["q1", "q6"]));
    let text = b.eval("document.body.innerText").await;
    let text = text.as_str().unwrap();
    // Both transcripts, the prompt change, and the between-run test.
    assert!(text.contains("[simulated] treatment says negative for q1"), "{text}");
    assert!(text.contains("[simulated] treatment says positive for q1"));
    assert!(text.contains("Think, then answer with one word."));
    assert!(text.contains("exact McNemar") || text.contains("McNemar"), "{text}");
    assert!(b.errors.is_empty(), "{:?}", b.errors);

    // The screenshot the README shows (kept in target/test-artifacts/, and copied into
    // docs/img/ when EXP_UPDATE_SCREENSHOTS=1).
    let png = b.screenshot().await;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("view-compare.png"), &png).unwrap();
    if std::env::var("EXP_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        std::fs::write(root.join("docs/img/view-compare.png"), &png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_items_come_50_a_page_with_links_to_the_next_page_and_back() {
    if !has_chromium() {
        return;
    }
    // 130 items. The second run fixes the control's q0..q59 and breaks the treatment's
    // q0..q9: 70 flips, q0..q9 twice (once per condition).
    let none: &[usize] = &[];
    let first_sixty: &'static [usize] = Vec::leak((0..60).collect());
    let first_ten: &'static [usize] = Vec::leak((0..10).collect());
    let a = Version {
        items: 130,
        control_wrong: first_sixty,
        treatment_wrong: none,
        treatment_failed: none,
        treatment_prompt: "One word.\n",
    };
    let b = Version { control_wrong: none, treatment_wrong: first_ten, ..a };
    let (ws, first, second) = workspace_of(&a, &b);
    let server = Server::start(ws.path(), &[]);
    let mut br = Browser::start().await;
    let ids = |r: std::ops::Range<usize>| r.map(|i| format!("q{i}")).collect::<BTreeSet<_>>();
    br.goto(&format!("{}compare/{first}/{second}/1.html", server.url)).await;
    let count = "document.querySelectorAll('#flipped .item').length";
    assert_eq!(br.eval(count).await, json!(50));
    assert_eq!(item_ids(&mut br, "#flipped .item .id").await, ids(0..40));
    let pager = br.eval("document.querySelector('nav.pager span').textContent").await;
    assert_eq!(pager, json!("page 1 of 2 · 70 items"));
    br.click_and_wait("nav.pager a[rel=next]").await;
    assert!(br.eval("location.pathname").await.as_str().unwrap().ends_with("/2.html"));
    assert_eq!(br.eval(count).await, json!(20));
    assert_eq!(item_ids(&mut br, "#flipped .item .id").await, ids(40..60));
    // Each flip shows both runs' answers, read for the page's rows only.
    let text = br.eval("document.querySelector('#flipped').innerText").await;
    assert!(text.as_str().unwrap().contains("[simulated] control says negative for q59"), "{text}");
    assert!(text.as_str().unwrap().contains("[simulated] control says positive for q59"));
    assert_eq!(
        br.eval("document.querySelectorAll('nav.pager a[rel=next]').length").await,
        json!(0)
    );
    br.click_and_wait("nav.pager a[rel=prev]").await;
    assert_eq!(item_ids(&mut br, "#flipped .item .id").await, ids(0..40));
    assert!(br.errors.is_empty(), "{:?}", br.errors);
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_in_a_model_output_shows_as_text_and_runs_nothing() {
    if !has_chromium() {
        return;
    }
    let (ws, first, _) = workspace();
    let server = Server::start(ws.path(), &[]);
    let mut b = Browser::start().await;
    b.goto(&format!("{}run/{first}/{SLUG}/all/1.html", server.url)).await;
    // Give an injected image's error handler time to fire, were there one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.eval("typeof window.__pwned").await, json!("undefined"));
    assert_eq!(b.eval("document.querySelectorAll('main script, main img').length").await, json!(0));
    let shown =
        b.eval("Array.from(document.querySelectorAll('pre.output')).map(p => p.textContent)").await;
    assert!(shown.as_array().unwrap().iter().any(|s| s == HOSTILE), "{shown}");
    let input = b.eval("document.body.innerText.includes('I <b>loved</b> it')").await;
    assert_eq!(input, json!(true));
    assert!(b.errors.is_empty(), "{:?}", b.errors);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_ids_give_a_404_page_in_the_browser() {
    if !has_chromium() {
        return;
    }
    let (ws, first, _) = workspace();
    let server = Server::start(ws.path(), &[]);
    let mut b = Browser::start().await;
    let missing = "0".repeat(64);
    for path in [
        format!("run/{missing}/index.html"),
        format!("run/{first}/no-such-trial/all/1.html"),
        format!("run/{first}/{SLUG}/all/99.html"),
        "no/such/page".to_string(),
    ] {
        b.goto(&format!("{}{path}", server.url)).await;
        assert_eq!(b.eval("document.title").await, json!("Not found · exp view"), "{path}");
        assert_eq!(
            b.eval("document.querySelector('.error-page .code').textContent").await,
            json!("404")
        );
    }
}

/// The ids of the items a trial page lists, from its HTML.
fn listed_ids(html: &str) -> BTreeSet<String> {
    html.split("<span class=\"id mono\">")
        .skip(1)
        .filter_map(|s| s.split_once('<').map(|(id, _)| id.to_string()))
        .collect()
}

#[test]
fn search_matches_decoded_text_with_quotes_escapes_and_emoji_in_inputs_and_outputs() {
    let (ws, first, _) = workspace();
    let server = Server::start(ws.path(), &[]);
    let page = format!("/run/{first}/{SLUG}/all/1.html");
    let found = |q: &str| {
        let (status, body) = raw_get(&server.url, &format!("{page}?q={q}"));
        assert_eq!(status, 200, "{q}");
        listed_ids(&body)
    };
    // In the input (a JSON string with \" and \u escapes): a quote and an accent, an emoji
    // written as a surrogate pair, upper case.
    assert_eq!(found("%22tr%C3%A8s"), set(&["q5"]));
    assert_eq!(found("%F0%9F%98%80"), set(&["q5"]));
    assert_eq!(found("TR%C3%88S+BIEN%22"), set(&["q5"]));
    // The escapes themselves are not the text.
    assert!(found("u00e9").is_empty());
    assert!(found("%5Cu").is_empty());
    // In an output (a CSV field with a doubled quote), by id, by gold label.
    assert_eq!(found("onerror%3D%22window"), set(&["q3"]));
    assert_eq!(found("q11"), set(&["q11"]));
    assert_eq!(found("says+negative+for+q4"), set(&["q4"]));
    // The system prompt is not the input.
    assert!(found("Classify.").is_empty());
    // A search shows the whole row: input and both answers.
    let (_, body) = raw_get(&server.url, &format!("{page}?q=%22tr%C3%A8s"));
    assert!(body.contains("she said &quot;très bien&quot; 😀"), "{body}");
    assert!(body.contains("[simulated] treatment says positive for q5"));
    // Tokens per answer; the reasoning share only where a model spent any.
    assert!(body.contains("tokens 20 in / 3 out · latency 41 ms"), "{body}");
    assert!(body.contains("tokens 20 in / 3 out (2 reasoning) · latency 41 ms"), "{body}");
}

#[test]
fn history_run_and_compare_pages_show_the_runs_name() {
    let (ws, first, second) = workspace();
    let server = Server::start(ws.path(), &[]);
    let (_, history) = raw_get(&server.url, "/");
    assert!(history.contains("<td class=\"run-name\">tone study</td>"), "{history}");
    let (_, run) = raw_get(&server.url, &format!("/run/{second}/index.html"));
    assert!(run.contains("<dd id=\"run-name\">tone study</dd>"), "{run}");
    assert!(run.contains("<h1>Run tone study (r1)</h1>"), "{run}");
    let (_, compare) = raw_get(&server.url, &format!("/compare/{first}/{second}/1.html"));
    assert!(compare.contains(">tone study (r1)</a> → <a"), "{compare}");
}

#[test]
fn dot_dot_in_a_url_reaches_no_file_and_answers_404() {
    let (ws, first, _) = workspace();
    // A file next to the store that a path escape would reach.
    std::fs::write(ws.path().join("secret.txt"), "TOP SECRET").unwrap();
    let server = Server::start(ws.path(), &[]);
    for target in [
        "/../secret.txt".to_string(),
        "/assets/../../secret.txt".into(),
        "/assets/..%2F..%2Fsecret.txt".into(),
        "/%2e%2e/%2e%2e/secret.txt".into(),
        format!("/run/{first}/../../../secret.txt"),
        format!("/run/{first}/%2e%2e/all/1.html"),
        "/.exprepo/format".into(),
    ] {
        let (status, body) = raw_get(&server.url, &target);
        assert!(status == 404 || status == 400, "{target}: {status}");
        assert!(!body.contains("TOP SECRET"), "{target}");
    }
    let (status, body) = raw_get(&server.url, "/");
    assert_eq!(status, 200);
    assert!(body.contains("first prompt") && body.contains("second prompt"));
}

#[test]
fn view_listens_on_loopback_unless_told_otherwise_and_then_warns() {
    let (ws, _, _) = workspace();
    let server = Server::start(ws.path(), &[]);
    assert!(server.url.starts_with("http://127.0.0.1:"), "{}", server.url);
    drop(server);

    let mut other = Server::start(ws.path(), &["--bind", "0.0.0.0"]);
    assert!(other.url.starts_with("http://0.0.0.0:"), "{}", other.url);
    let _ = other.child.kill();
    let mut err = String::new();
    other.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("warning: listening on 0.0.0.0"), "{err}");
}

#[test]
fn export_writes_every_page_as_static_files_whose_links_all_resolve() {
    let (ws, first, second) = workspace();
    let out = ws.path().join("site");
    common::exp(ws.path())
        .args(["view", "--export"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicates::str::contains("pages of 2 commits"));
    for page in [
        "index.html".to_string(),
        "assets/app.js".into(),
        format!("run/{first}/index.html"),
        format!("run/{second}/{SLUG}/fixed/1.html"),
        format!("compare/{first}/{second}/1.html"),
    ] {
        assert!(out.join(&page).is_file(), "{page} missing");
    }
    // Every relative link of every page names a file of the export.
    let mut checked = 0;
    let mut stack = vec![out.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "html") {
                let html = std::fs::read_to_string(&p).unwrap();
                for link in
                    html.split(['"']).filter(|s| s.ends_with(".html") || s.contains("assets/"))
                {
                    if link.contains(' ') || link.contains('<') || link.starts_with("http") {
                        continue;
                    }
                    let target = p.parent().unwrap().join(link.split('?').next().unwrap());
                    assert!(target.exists(), "{}: link {link} leads nowhere", p.display());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links checked");
    // Static pages have no search box (nothing could answer it).
    let trial =
        std::fs::read_to_string(out.join(format!("run/{first}/{SLUG}/all/1.html"))).unwrap();
    assert!(!trial.contains("name=\"q\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn charts_download_as_svg_and_png() {
    if !has_chromium() {
        return;
    }
    let (ws, _, second) = workspace();
    let server = Server::start(ws.path(), &[]);
    let mut b = Browser::start().await;
    let downloads = tempfile::tempdir().unwrap();
    b.call_browser(
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.path().to_str().unwrap()}),
    )
    .await;
    b.goto(&format!("{}run/{second}/index.html", server.url)).await;
    for format in ["svg", "png"] {
        let click = format!(
            "document.querySelector('#cost-accuracy button[data-format={format}]').click()"
        );
        b.call("Runtime.evaluate", json!({"expression": click})).await;
    }
    let (svg, png) =
        (downloads.path().join("cost-accuracy.svg"), downloads.path().join("cost-accuracy.png"));
    for _ in 0..100 {
        if svg.is_file() && png.is_file() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let svg = std::fs::read_to_string(&svg).expect("the SVG was downloaded");
    assert!(
        svg.starts_with("<svg") && svg.contains("Cost against"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    let png = std::fs::read(&png).expect("the PNG was downloaded");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Drawn at twice the chart's size, for print.
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    assert_eq!(width, 1920);
    assert!(b.errors.is_empty(), "{:?}", b.errors);
}
