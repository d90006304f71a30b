//! The aggregate HTML report in a real browser (headless Chromium): it renders, its three
//! charts are in the DOM with their data points, the screenshot is not blank, and the console
//! stays free of errors. The screenshot is kept in target/test-artifacts/ for people to look at.
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use exp::eval::report::{SignificanceSettings, write_aggregate, write_trial_report};
use serde_json::json;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A run of three trials (better, unchanged, worse), written as `exp run` would.
fn fixture_run(root: &Path) -> PathBuf {
    let run = root.join("run_20251127-130501");
    let trials = [
        ("gpt-oss-120b-operational_only-t0-tk50-tp1-mx1024", 0.25, 0.00015),
        ("gpt-oss-120b-operational_only-t1-tk50-tp1-mx1024", 0.0, 0.00021),
        ("sim-demo-operational_only-t0-tk50-tp1-mx1024", -0.15, 0.0),
    ];
    let mut manifest = Vec::new();
    for (slug, shift, price) in trials {
        let dir = run.join(slug);
        write(
            &dir.join("trial.json"),
            &json!({"slug": slug, "model": slug.split("-operational").next(),
            "provider": "openai", "prompt_set": "operational_only",
            "decoding": {"temperature": 0.0, "top_k": 50, "top_p": 1.0, "max_tokens": 1024},
            "repeats": 1, "datasets": ["demo_sentiment"], "conditions": ["control", "treatment"]})
            .to_string(),
        );
        let mut csv =
            String::from("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n");
        let n = 80;
        for i in 0..n {
            let c = (i * 37 % 100) < 68;
            let frac = (i * 53 % 100) as f64 / 100.0;
            let t = if shift > 0.0 && !c && frac < shift * 3.0 {
                true
            } else if shift < 0.0 && c && frac < -shift * 1.5 {
                false
            } else {
                c
            };
            for (cond, ok) in [("control", c), ("treatment", t)] {
                let pred = if ok { "positive" } else { "negative" };
                csv.push_str(&format!(
                    "q{i},demo_sentiment,{cond},0,positive,{pred},{},\n",
                    u8::from(ok)
                ));
            }
        }
        write(&dir.join("results/per_item_scores.csv"), &csv);
        let usd = 80.0 * 300.0 * price / 1000.0;
        write(&dir.join("results/costs.json"), &json!({"requests": 160, "failures": 0, "input_tokens": 24000,
            "output_tokens": 800, "usd": 2.0 * usd, "conditions": {
                "control": {"requests": 80, "usd": usd}, "treatment": {"requests": 80, "usd": usd * 1.3}}}).to_string());
        write_trial_report(
            &dir,
            &SignificanceSettings { alpha: 0.05, bootstrap_resamples: 1000, seed: 0 },
        )
        .unwrap();
        manifest.push(json!({"slug": slug, "status": "complete", "path": format!("{slug}/"),
            "model": slug.split("-operational").next(), "prompt_set": "operational_only",
            "decoding": {"temperature": 0.0, "top_k": 50}}));
    }
    write(&run.join("multi_trial_manifest.json"), &json!({"format": 1, "run_id": "20251127-130501",
        "status": "complete", "trials": manifest,
        "totals": {"requests": 480, "failures": 0, "input_tokens": 72000, "output_tokens": 2400, "usd": 0.0123}}).to_string());
    write_aggregate(
        &run,
        &SignificanceSettings { alpha: 0.05, bootstrap_resamples: 1000, seed: 0 },
    )
    .unwrap();
    run
}

/// Runs headless Chromium with the flags that keep it off the network, and a deadline so a
/// browser that hangs fails the test instead of blocking it.
fn chromium(profile: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("chromium starts");
    // Both pipes are read while the browser runs: one that filled up (a pipe holds 64 KiB; a
    // dumped DOM or a chatty log is more) would block Chromium forever.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Console errors and uncaught exceptions, as Chromium logs them with --enable-logging=stderr.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains("Uncaught") || (l.contains("CONSOLE") && l.to_lowercase().contains("error"))
        })
        .collect()
}

fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn the_html_report_renders_in_chromium_with_visible_charts_and_no_console_errors() {
    if !common::require_tool(common::on_path("chromium"), "chromium") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = fixture_run(tmp.path());
    let url = format!("file://{}", run.join("aggregate_report.html").display());

    // The DOM after rendering holds the three charts and their data points.
    let dom = chromium(&tmp.path().join("profile-dom"), &["--dump-dom", &url]);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "chromium failed: {}", String::from_utf8_lossy(&dom.stderr));
    assert_eq!(html.matches("<svg").count(), 3, "three inline charts expected:\n{html}");
    assert!(html.matches("<circle").count() >= 9, "chart points missing");
    assert!(
        html.contains("Trials side by side") && html.contains("gpt-oss-120b-operational_only-t0")
    );
    let errors = console_errors(&String::from_utf8_lossy(&dom.stderr)).join("\n");
    assert!(errors.is_empty(), "console errors:\n{errors}");

    // The screenshot is a real picture: far more detail than the same window left blank.
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    // The reports themselves go next to the screenshot, for people to read.
    let sample = artifacts.join("report-sample");
    std::fs::create_dir_all(sample.join("charts")).unwrap();
    for f in [
        "aggregate_report.md",
        "aggregate_report.html",
        "charts/effects.svg",
        "charts/accuracy.svg",
        "charts/cost_accuracy.svg",
    ] {
        std::fs::copy(run.join(f), sample.join(f)).unwrap();
    }
    std::fs::copy(
        run.join("gpt-oss-120b-operational_only-t0-tk50-tp1-mx1024/reports/report.md"),
        sample.join("trial_report.md"),
    )
    .unwrap();
    let shot = artifacts.join("aggregate_report.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &tmp.path().join("profile-shot"),
        &[
            "--hide-scrollbars",
            "--window-size=1280,2600",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(out.status.success(), "screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
    let errors = console_errors(&String::from_utf8_lossy(&out.stderr)).join("\n");
    assert!(errors.is_empty(), "console errors:\n{errors}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert_eq!(png_size(&png), (1280, 2600));

    let blank_page = tmp.path().join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_shot = tmp.path().join("blank.png");
    chromium(
        &tmp.path().join("profile-blank"),
        &[
            "--hide-scrollbars",
            "--window-size=1280,2600",
            &format!("--screenshot={}", blank_shot.display()),
            &format!("file://{}", blank_page.display()),
        ],
    );
    let blank = std::fs::read(&blank_shot).expect("blank screenshot written");
    assert!(
        png.len() > 10 * blank.len(),
        "screenshot looks blank: {} bytes vs {} for an empty page",
        png.len(),
        blank.len()
    );
}

#[test]
fn the_console_error_check_does_catch_a_page_error() {
    // Guards the check above: a page with a failing script must be reported.
    if !common::require_tool(common::on_path("chromium"), "chromium") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let page = tmp.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let out = chromium(
        &tmp.path().join("profile"),
        &["--dump-dom", &format!("file://{}", page.display())],
    );
    assert!(
        !console_errors(&String::from_utf8_lossy(&out.stderr)).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
