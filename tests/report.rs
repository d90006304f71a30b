//! The trial and run reports, from run folders written by the test itself in the shapes of
//! docs/RUN_FILES.md: significance.json, report.md, Holm in the manifest, the aggregate
//! Markdown/HTML and its SVG charts, the edge cases, and every error a user can hit.
mod common;

use std::path::{Path, PathBuf};

use exp::eval::report::{ReportError, SignificanceSettings, write_aggregate, write_trial_report};
use exp::stats::Significance;
use serde_json::{Value, json};

/// What one fixture trial looks like.
struct Spec {
    slug: &'static str,
    n: usize,
    repeats: usize,
    /// Score of (item, condition, repeat); None = failed request.
    score: fn(usize, &str, usize) -> Option<f64>,
    /// Items per cluster (`doc0`, `doc1`, …) when `clusters`.
    cluster_size: usize,
    clusters: bool,
    conditions: &'static [&'static str],
}

const BOTH: &[&str] = &["control", "treatment"];

fn settings() -> SignificanceSettings {
    SignificanceSettings { alpha: 0.05, bootstrap_resamples: 2000, seed: 0 }
}

/// Treatment fixes every 4th item that control gets wrong; control misses 1 in 3.
fn better(i: usize, cond: &str, _r: usize) -> Option<f64> {
    let c = if i.is_multiple_of(3) { 0.0 } else { 1.0 };
    let t = if i.is_multiple_of(3) && !i.is_multiple_of(4) { 1.0 } else { c };
    Some(if cond == "control" { c } else { t })
}

fn same(i: usize, _cond: &str, _r: usize) -> Option<f64> {
    Some(if i.is_multiple_of(2) { 1.0 } else { 0.0 })
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn gold(i: usize) -> &'static str {
    ["positive", "negative", "neutral"][i % 3]
}

/// Writes `<run>/<slug>/` with trial.json, per_item_scores.csv, predictions.csv, metrics.json
/// and costs.json, consistent with each other.
fn write_trial(run: &Path, spec: &Spec) -> PathBuf {
    let dir = run.join(spec.slug);
    write(
        &dir.join("trial.json"),
        &json!({"slug": spec.slug, "model": "sim-demo", "provider": "sim", "model_id": "sim/demo",
                "prompt_set": "operational_only",
                "decoding": {"temperature": 0.0, "top_k": 50, "top_p": 1.0, "max_tokens": 1024},
                "repeats": spec.repeats, "datasets": ["demo_sentiment"], "conditions": spec.conditions,
                "scoring": {"type": "label", "labels": ["positive", "negative", "neutral"]},
                "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}})
        .to_string(),
    );
    let mut scores =
        String::from("item_id,dataset,condition,repeat,gold,prediction,score,cluster\n");
    let mut preds = String::from(
        "item_id,dataset,condition,repeat,part,prediction,raw_output,finish_reason,input_tokens,output_tokens,latency_ms,error\n",
    );
    let mut metrics = serde_json::Map::new();
    let mut costs = serde_json::Map::new();
    for cond in spec.conditions {
        let (mut scored, mut failed, mut correct) = (0u64, 0u64, 0.0);
        for i in 0..spec.n {
            for r in 0..spec.repeats {
                let s = (spec.score)(i, cond, r);
                let wrong = ["negative", "neutral", "positive"][i % 3];
                let pred = match s {
                    Some(v) if v >= 0.5 => gold(i),
                    Some(_) => wrong,
                    None => "",
                };
                let cluster = if spec.clusters {
                    format!("doc{}", i / spec.cluster_size)
                } else {
                    String::new()
                };
                let score = s.map(|v| v.to_string()).unwrap_or_default();
                scores.push_str(&format!(
                    "item-{i:03},demo_sentiment,{cond},{r},{},{pred},{score},{cluster}\n",
                    gold(i)
                ));
                let (fin, err) = if s.is_some() {
                    ("stop", "")
                } else {
                    ("", "HTTP 503 from endpoint after 6 attempts")
                };
                preds.push_str(&format!("item-{i:03},demo_sentiment,{cond},{r},0,{pred},\"The sentiment is {pred}.\",{fin},40,5,12,{err}\n"));
                match s {
                    Some(v) => {
                        scored += 1;
                        correct += v;
                    }
                    None => failed += 1,
                }
            }
        }
        let n = (spec.n * spec.repeats) as u64;
        metrics.insert(
            cond.to_string(),
            json!({"n": n, "scored": scored, "failed": failed, "correct": correct,
            "accuracy": if scored > 0 { json!(correct / scored as f64) } else { Value::Null }}),
        );
        let usd = n as f64 * (40.0 * 0.15 + 5.0 * 0.60) / 1e6;
        costs.insert(cond.to_string(), json!({"requests": n, "failures": failed, "input_tokens": 40 * n,
            "output_tokens": 5 * n, "usd": usd, "usd_per_correct": if correct > 0.0 { json!(usd / correct) } else { Value::Null }}));
    }
    let results = dir.join("results");
    write(&results.join("per_item_scores.csv"), &scores);
    write(&results.join("predictions.csv"), &preds);
    write(
        &results.join("metrics.json"),
        &json!({"n_items": spec.n, "repeats": spec.repeats, "conditions": metrics}).to_string(),
    );
    let total_usd: f64 = costs.values().map(|c| c["usd"].as_f64().unwrap()).sum();
    let requests: u64 = costs.values().map(|c| c["requests"].as_u64().unwrap()).sum();
    write(
        &results.join("costs.json"),
        &json!({"requests": requests, "failures": 0, "input_tokens": 40 * requests, "output_tokens": 5 * requests,
                "usd": total_usd, "usd_per_correct": null, "conditions": costs})
        .to_string(),
    );
    dir
}

fn write_manifest(run: &Path, slugs: &[&str], extra: impl Fn(&str) -> Value) {
    let trials: Vec<Value> = slugs
        .iter()
        .map(|s| {
            let mut t = json!({"slug": s, "model": "sim-demo", "prompt_set": "operational_only",
                "decoding": {"temperature": 0.0, "top_k": 50}, "status": "complete", "path": format!("{s}/"),
                "usd": 0.001, "failures": 0});
            if let Value::Object(e) = extra(s) {
                t.as_object_mut().unwrap().extend(e);
            }
            t
        })
        .collect();
    write(
        &run.join("multi_trial_manifest.json"),
        &serde_json::to_string_pretty(&json!({"format": 1, "run_id": "20251127-130501", "status": "complete",
            "trials": trials, "totals": {"requests": 480, "failures": 2, "input_tokens": 19200, "output_tokens": 2400, "usd": 0.0043}}))
        .unwrap(),
    );
}

fn run_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("experiments").join("run_20251127-130501");
    std::fs::create_dir_all(&run).unwrap();
    (tmp, run)
}

fn significance(trial: &Path) -> Significance {
    serde_json::from_str(&std::fs::read_to_string(trial.join("results/significance.json")).unwrap())
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const BETTER: Spec = Spec {
    slug: "sim-demo-operational_only-t0-tk50-tp1-mx1024",
    n: 60,
    repeats: 1,
    score: better,
    cluster_size: 4,
    clusters: false,
    conditions: BOTH,
};

#[test]
fn trial_report_writes_significance_json_with_headline_method_n_alpha_and_seed() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &BETTER);
    write_trial_report(&trial, &settings()).unwrap();
    let v: Value = serde_json::from_str(&read(&trial.join("results/significance.json"))).unwrap();
    // 20 items control gets wrong (i % 3 == 0); treatment fixes those with i % 4 != 0: 15.
    assert_eq!(v["mcnemar"]["treatment_only"], 15);
    assert_eq!(v["mcnemar"]["control_only"], 0);
    let p = v["p_value"].as_f64().unwrap();
    assert!((p - 2.0 * 0.5f64.powi(15)).abs() < 1e-18, "{p}");
    assert!(v["p_method"].as_str().unwrap().contains("exact McNemar"));
    assert_eq!(v["effect"].as_f64(), Some(15.0 / 60.0));
    assert_eq!(
        (v["alpha"].as_f64(), v["seed"].as_u64(), v["n_paired"].as_u64()),
        (Some(0.05), Some(0), Some(60))
    );
    assert!(v["holm_p"].is_null());
    assert_eq!(v["bootstrap"]["resamples"], 2000);
    for key in ["conditions", "difference", "mcnemar", "bootstrap", "permutation", "mde"] {
        assert!(v[key].is_object(), "{key} missing: {v}");
    }
    assert!(v["difference"]["method"].as_str().unwrap().contains("paired"));
}

#[test]
fn trial_report_md_covers_setup_accuracy_effect_costs_discordant_items_and_failures() {
    fn some_fail(i: usize, cond: &str, r: usize) -> Option<f64> {
        if i == 5 && cond == "treatment" { None } else { better(i, cond, r) }
    }
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &Spec { score: some_fail, ..BETTER });
    write_trial_report(&trial, &settings()).unwrap();
    let md = read(&trial.join("reports/report.md"));
    for want in [
        "# sim-demo-operational_only-t0-tk50-tp1-mx1024",
        "run `20251127-130501`",
        "| Model | sim-demo (sim, `sim/demo`) |",
        "| Prompt set | operational_only |",
        "temperature 0.0, top_k 50, top_p 1.0, max_tokens 1024",
        "| Dataset | demo_sentiment |",
        "| Items | 60 (59 scored in both conditions) |",
        "## Accuracy per condition",
        "95% Wilson score interval",
        "Treatment scored 25.4 pp higher than control (95% CI",
        "exact McNemar p < 0.001",
        "statistically significant",
        "15 items were right only with the treatment prompt and 0 only with the control prompt",
        "## Costs",
        "| **total** | 120 |",
        "## Most telling discordant items",
        "**Better with treatment** (15 items, showing 8)",
        "| item-003 | demo_sentiment | positive | negative | positive | +100.0 pp |",
        "## Failures",
        "1 of 120 requests have no score (treatment 1)",
        "| treatment | item-005 | 0 | HTTP 503 from endpoint after 6 attempts |",
        // The test the design calls for, and why; failures beside the effect; power.
        "The test is the exact McNemar: 0/1 scores, one repeat, no clusters",
        "0 requests failed under control and 1 under treatment",
        "the 1 item scored in one condition only is left out of the effect",
        "| Test | exact McNemar |",
        "| Failed requests | control 0, treatment 1 |",
        "| Power at the largest effect the data allow |",
        "Secondary figures (the headline above is the one to read)",
        "| 95% CI, normal |",
    ] {
        assert!(md.contains(want), "report.md lacks {want:?}:\n{md}");
    }
    assert!(!md.contains("NaN"));
    // The interval in words and in the table is the headline's (inverting the exact test),
    // never the normal one listed as secondary.
    let sig = significance(&trial);
    let head = sig.headline.as_ref().unwrap();
    let [lo, hi] = head.ci.unwrap();
    let headline_ci = exp::display::points_range(lo, hi);
    assert!(md.contains(&format!("(95% CI {headline_ci}; exact McNemar p")), "{md}");
    assert!(md.contains(&format!("| 95% CI | {headline_ci} | 95% exact conditional")), "{md}");
    let [nlo, nhi] = sig.difference.as_ref().unwrap().ci.unwrap();
    assert_ne!(exp::display::points_range(nlo, nhi), headline_ci, "the two intervals differ here");
}

#[test]
fn rerunning_the_trial_step_is_deterministic_and_keeps_the_holm_adjustment() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &BETTER);
    write_manifest(&run, &[BETTER.slug], |_| json!({}));
    write_trial_report(&trial, &settings()).unwrap();
    let (sig1, md1) =
        (read(&trial.join("results/significance.json")), read(&trial.join("reports/report.md")));
    write_trial_report(&trial, &settings()).unwrap();
    assert_eq!(read(&trial.join("results/significance.json")), sig1);
    assert_eq!(read(&trial.join("reports/report.md")), md1);
    assert!(!md1.contains("Holm"));

    write_aggregate(&run, &settings()).unwrap();
    let holm = significance(&trial).holm_p;
    assert!(holm.is_some());
    let md = read(&trial.join("reports/report.md"));
    assert!(
        md.contains("After Holm's correction across the run's trials")
            && md.contains("| Holm-adjusted p |")
    );
    write_trial_report(&trial, &settings()).unwrap();
    assert_eq!(significance(&trial).holm_p, holm);
    assert_eq!(read(&trial.join("reports/report.md")), md);
}

fn concordant(i: usize, _c: &str, _r: usize) -> Option<f64> {
    Some(if i.is_multiple_of(5) { 0.0 } else { 1.0 })
}

fn worse(i: usize, cond: &str, r: usize) -> Option<f64> {
    better(i, if cond == "control" { "treatment" } else { "control" }, r)
}

#[test]
fn aggregate_adds_holm_to_every_trial_and_the_manifest_and_the_one_headline_effect() {
    let (_tmp, run) = run_dir();
    let specs = [
        BETTER,
        Spec { slug: "sim-demo-operational_only-t1-tk50-tp1-mx1024", score: same, ..BETTER },
        Spec { slug: "sim-demo-operational_only-t07-tk50-tp1-mx1024", score: worse, ..BETTER },
    ];
    let dirs: Vec<PathBuf> = specs.iter().map(|s| write_trial(&run, s)).collect();
    for d in &dirs {
        write_trial_report(d, &settings()).unwrap();
    }
    let slugs: Vec<&str> = specs.iter().map(|s| s.slug).collect();
    // The orchestrator already wrote an effect for the first trial (say, the difference of
    // unpaired accuracies): significance.json's paired effect replaces it, other keys stay.
    write_manifest(&run, &slugs, |s| {
        if s == slugs[0] { json!({"effect": 0.5, "custom": "kept"}) } else { json!({}) }
    });
    write_aggregate(&run, &settings()).unwrap();

    let p: Vec<Option<f64>> = dirs.iter().map(|d| significance(d).p_value).collect();
    let want = exp::stats::holm(&p);
    let manifest: Value =
        serde_json::from_str(&read(&run.join("multi_trial_manifest.json"))).unwrap();
    for (i, d) in dirs.iter().enumerate() {
        assert_eq!(significance(d).holm_p, want[i]);
        assert_eq!(manifest["trials"][i]["holm_p"].as_f64(), want[i]);
        assert_eq!(manifest["trials"][i]["p_value"].as_f64(), p[i]);
    }
    assert_eq!(manifest["trials"][0]["effect"].as_f64(), significance(&dirs[0]).effect);
    assert_ne!(manifest["trials"][0]["effect"], 0.5);
    assert_eq!(manifest["trials"][0]["custom"], "kept");
    assert_eq!(manifest["trials"][1]["effect"].as_f64(), Some(0.0));
    assert_eq!(manifest["totals"]["requests"], 480);
    // Holm multiplies the smallest p by 3 here (two trials have p far below the third).
    assert_eq!(want[0], Some((3.0 * p[0].unwrap()).min(1.0)));
}

#[test]
fn aggregate_markdown_links_svg_charts_relatively_and_lists_every_trial() {
    let (_tmp, run) = run_dir();
    let specs = [
        BETTER,
        Spec { slug: "sim-demo-operational_only-t1-tk50-tp1-mx1024", score: concordant, ..BETTER },
    ];
    for s in &specs {
        write_trial_report(&write_trial(&run, s), &settings()).unwrap();
    }
    write_manifest(&run, &[specs[0].slug, specs[1].slug], |_| json!({}));
    write_aggregate(&run, &settings()).unwrap();
    let md = read(&run.join("aggregate_report.md"));
    for chart in ["effects.svg", "accuracy.svg", "cost_accuracy.svg"] {
        assert!(md.contains(&format!("](charts/{chart})")), "{chart} not linked:\n{md}");
        let svg = read(&run.join("charts").join(chart));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{chart}");
        assert!(svg.contains("<circle"), "{chart} has no data points");
    }
    let effects = read(&run.join("charts/effects.svg"));
    assert!(effects.contains("T1 sim-demo-operational_only-t0") && effects.contains("+25.0 pp"));
    for want in [
        "# Run 20251127-130501",
        "| T1 | [sim-demo-operational_only-t0-tk50-tp1-mx1024](sim-demo-operational_only-t0-tk50-tp1-mx1024/reports/report.md)",
        "**+25.0 pp**",
        "| T2 |",
        "1 of 2 tested trials show a significant difference at α = 0.05 after Holm",
        "**Totals:** 480 requests, 2 failures",
    ] {
        assert!(md.contains(want), "aggregate_report.md lacks {want:?}:\n{md}");
    }
}

#[test]
fn aggregate_html_is_one_self_contained_file() {
    let (_tmp, run) = run_dir();
    write_trial_report(&write_trial(&run, &BETTER), &settings()).unwrap();
    write_manifest(&run, &[BETTER.slug], |_| json!({}));
    write_aggregate(&run, &settings()).unwrap();
    let html = read(&run.join("aggregate_report.html"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("<style>"));
    for banned in ["<script", "<link", "<img", "@import", "url(", "https://"] {
        assert!(!html.contains(banned), "html contains {banned:?}");
    }
    // The only URL is the SVG namespace, which browsers never fetch.
    assert!(html.replace("http://www.w3.org/2000/svg", "").find("http://").is_none());
}

#[test]
fn every_request_failed_is_reported_in_words_and_left_out_of_holm() {
    fn fail(_i: usize, _c: &str, _r: usize) -> Option<f64> {
        None
    }
    let (_tmp, run) = run_dir();
    let failing = Spec { slug: "broken-endpoint", n: 5, score: fail, ..BETTER };
    for s in [&BETTER, &failing] {
        write_trial_report(&write_trial(&run, s), &settings()).unwrap();
    }
    let sig = significance(&run.join("broken-endpoint"));
    assert_eq!((sig.p_value, sig.effect), (None, None));
    let md = read(&run.join("broken-endpoint/reports/report.md"));
    assert!(md.contains("No paired comparison: no item has a score in both conditions"), "{md}");
    assert!(md.contains("10 of 10 requests have no score"), "{md}");
    assert!(md.contains("every request failed (5 of 5 rows have no score)"), "{md}");
    write_manifest(&run, &[BETTER.slug, "broken-endpoint"], |_| json!({}));
    write_aggregate(&run, &settings()).unwrap();
    let manifest: Value =
        serde_json::from_str(&read(&run.join("multi_trial_manifest.json"))).unwrap();
    assert!(manifest["trials"][1]["holm_p"].is_null());
    // One tested trial: Holm leaves its p-value as it is.
    assert_eq!(manifest["trials"][0]["holm_p"], manifest["trials"][0]["p_value"]);
    let agg = read(&run.join("aggregate_report.md"));
    assert!(agg.contains("- T2 broken-endpoint: no item has a score in both conditions"), "{agg}");
}

#[test]
fn a_trial_with_only_the_treatment_condition_says_how_to_pair_it() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &Spec { conditions: &["treatment"], ..BETTER });
    write_trial_report(&trial, &settings()).unwrap();
    let md = read(&trial.join("reports/report.md"));
    assert!(md.contains("| control | not run |"), "{md}");
    assert!(md.contains("only the treatment condition is in the results"), "{md}");
    assert!(md.contains("--baseline REF"), "{md}");
}

#[test]
fn a_trial_of_a_single_item_reports_without_nan() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &Spec { n: 1, ..BETTER });
    write_trial_report(&trial, &settings()).unwrap();
    let text = read(&trial.join("results/significance.json"));
    assert!(!text.contains("NaN"));
    let md = read(&trial.join("reports/report.md"));
    assert!(md.contains("Treatment and control scored the same on average"), "{md}");
    assert!(md.contains("needs at least 2 items"), "{md}");
}

#[test]
fn repeats_and_clusters_are_reported_with_item_means_and_cluster_robust_intervals() {
    fn noisy(i: usize, cond: &str, r: usize) -> Option<f64> {
        let base = !(i * 7 + r * 3).is_multiple_of(5);
        let v = if cond == "treatment" { base || (i + r).is_multiple_of(3) } else { base };
        Some(if v { 1.0 } else { 0.0 })
    }
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &Spec { repeats: 3, clusters: true, score: noisy, ..BETTER });
    write_trial_report(&trial, &settings()).unwrap();
    let sig = significance(&trial);
    assert_eq!((sig.repeats, sig.clusters), (3, Some(15)));
    assert!(sig.mcnemar.is_none());
    assert_eq!(sig.permutation.as_ref().unwrap().unit, "clusters");
    assert!(
        sig.difference.as_ref().unwrap().method.contains("cluster-robust SE (CR1, 15 clusters)")
    );
    let md = read(&trial.join("reports/report.md"));
    assert!(md.contains("sign-flip test on clusters p"), "{md}");
    assert!(md.contains("over 60 paired items in 15 clusters"), "{md}");
    assert!(md.contains("item means over repeats"), "{md}");
    assert!(md.contains("3 repeats per item are not independent items"), "{md}");
    // Repeats as data: pass@k, pass^k, per-item pass rates and the variance split, per condition.
    let r = &sig.repeats_by_condition["control"];
    let rates = r.item_pass_rate.as_ref().unwrap();
    let pct = |x: Option<f64>| exp::display::percent(x.unwrap());
    let want = format!(
        "| control | {} | {} | {} | {} / {} / {} |",
        pct(r.pass_at_k),
        pct(r.pass_all_k),
        pct(Some(rates.mean)),
        rates.always,
        rates.never,
        rates.mixed
    );
    assert!(md.contains("## Repeats (3 per item)") && md.contains(&want), "{want}\n{md}");
    // The aggregate report lists them per trial too.
    write_manifest(&run, &[BETTER.slug], |_| json!({}));
    write_aggregate(&run, &settings()).unwrap();
    let aggregate = read(&run.join("aggregate_report.md"));
    let row = format!(
        "| T1 | {} | control | 3 | {} | {} | {} |",
        BETTER.slug,
        pct(r.pass_at_k),
        pct(r.pass_all_k),
        pct(r.within_share)
    );
    assert!(aggregate.contains("## Repeats") && aggregate.contains(&row), "{row}\n{aggregate}");
}

// ---- errors a user can hit ----

fn hint(e: &ReportError) -> String {
    exp::error::Hint::hint(e).unwrap_or_else(|| panic!("no hint for {e}"))
}

#[test]
fn a_trial_without_scores_is_an_error_that_says_to_resume() {
    let (_tmp, run) = run_dir();
    std::fs::create_dir_all(run.join("t/results")).unwrap();
    let e = write_trial_report(&run.join("t"), &settings()).unwrap_err();
    assert!(e.to_string().contains("per_item_scores.csv"), "{e}");
    assert!(hint(&e).contains("--resume"));
}

#[test]
fn a_score_that_is_not_a_number_in_zero_one_names_file_and_line() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &BETTER);
    let path = trial.join("results/per_item_scores.csv");
    let text = read(&path).replacen(
        ",demo_sentiment,control,0,negative,negative,1,",
        ",demo_sentiment,control,0,negative,negative,NaN,",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let e = write_trial_report(&trial, &settings()).unwrap_err();
    assert!(e.to_string().contains("per_item_scores.csv:3: score \"NaN\""), "{e}");
    assert!(hint(&e).contains("number in [0, 1]"));
}

#[test]
fn a_scores_file_with_the_wrong_columns_is_an_error_with_a_hint() {
    let (_tmp, run) = run_dir();
    write(&run.join("t/results/per_item_scores.csv"), "id,score\n1,1\n");
    let e = write_trial_report(&run.join("t"), &settings()).unwrap_err();
    assert!(matches!(e, ReportError::Csv { .. }), "{e:?}");
    assert!(hint(&e).contains("RUN_FILES.md"));
}

#[test]
fn a_damaged_costs_file_names_the_file_and_line() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &BETTER);
    std::fs::write(trial.join("results/costs.json"), "{\n  \"usd\": oops\n}").unwrap();
    let e = write_trial_report(&trial, &settings()).unwrap_err();
    assert!(e.to_string().contains("costs.json:2"), "{e}");
    assert!(hint(&e).contains("--resume"));
}

#[test]
fn a_run_without_a_manifest_is_an_error_that_says_what_to_do() {
    let (_tmp, run) = run_dir();
    let e = write_aggregate(&run, &settings()).unwrap_err();
    assert!(e.to_string().contains("multi_trial_manifest.json"), "{e}");
    assert!(hint(&e).contains("--resume"));
}

#[test]
fn an_alpha_outside_zero_one_is_refused_with_the_config_key() {
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &BETTER);
    let e =
        write_trial_report(&trial, &SignificanceSettings { alpha: 1.5, ..settings() }).unwrap_err();
    assert!(e.to_string().contains("significance.alpha = 1.5"), "{e}");
    assert!(hint(&e).contains("e.g. 0.05"));
}

#[test]
fn a_trial_that_never_got_statistics_is_listed_as_such_and_an_empty_run_still_reports() {
    let (_tmp, run) = run_dir();
    write_trial_report(&write_trial(&run, &BETTER), &settings()).unwrap();
    std::fs::create_dir_all(run.join("crashed-trial")).unwrap();
    write_manifest(&run, &[BETTER.slug, "crashed-trial"], |_| json!({}));
    write_aggregate(&run, &settings()).unwrap();
    let md = read(&run.join("aggregate_report.md"));
    assert!(md.contains("- T2 crashed-trial: no statistics (significance.json missing"), "{md}");
    let manifest: Value =
        serde_json::from_str(&read(&run.join("multi_trial_manifest.json"))).unwrap();
    assert!(
        manifest["trials"][1]["holm_p"].is_null() && manifest["trials"][1]["p_value"].is_null()
    );

    let (_tmp2, empty) = run_dir();
    write_manifest(&empty, &[], |_| json!({}));
    write_aggregate(&empty, &settings()).unwrap();
    assert!(read(&empty.join("aggregate_report.md")).contains("No trial has a p-value"));
    assert!(read(&empty.join("charts/effects.svg")).starts_with("<svg"));
    assert!(read(&empty.join("aggregate_report.html")).contains("</html>"));
}

#[test]
fn continuous_scores_are_reported_as_mean_scores_not_percentages() {
    fn graded(i: usize, cond: &str, _r: usize) -> Option<f64> {
        let base = ((i * 37) % 100) as f64 / 100.0;
        Some(if cond == "treatment" { (base + 0.05).min(1.0) } else { base })
    }
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &Spec { score: graded, ..BETTER });
    write_trial_report(&trial, &settings()).unwrap();
    let sig = significance(&trial);
    assert_eq!(sig.score_kind, Some(exp::stats::significance::ScoreKind::Continuous));
    assert!(sig.mcnemar.is_none());
    let md = read(&trial.join("reports/report.md"));
    assert!(md.contains("## Mean score per condition"), "{md}");
    assert!(md.contains("Treatment scored 0.0"), "{md}");
    assert!(md.contains("higher than control") && md.contains("sign-flip test on items p"), "{md}");
    assert!(!md.contains(" pp"), "continuous scores must not be shown in percentage points:\n{md}");
}

// ---- one spelling per figure, in every command and report ----

/// `$0.00381`: three significant digits, at least cents.
fn dollars(x: f64) -> String {
    let decimals = (2 - x.log10().floor() as i32).max(2) as usize;
    format!("${x:.decimals$}")
}

#[test]
fn run_show_log_and_the_reports_spell_each_figure_the_same_way() {
    let ws = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::write_files(
        ws.path(),
        &[
            ("config/eval_config.yaml", &read(&root.join("config/eval_config.yaml"))),
            (
                "config/prompts/control_system.txt",
                &read(&root.join("config/prompts/control_system.txt")),
            ),
            (
                "config/prompts/operational_only_system.md",
                &read(&root.join("config/prompts/operational_only_system.md")),
            ),
            ("data/demo_sentiment.jsonl", &read(&root.join("data/demo_sentiment.jsonl"))),
        ],
    );
    let out = common::exp(ws.path())
        .args(["run", "--config", "config/eval_config.yaml", "--run-id", "demo", "--archive"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ran = String::from_utf8(out.stdout).unwrap();
    let shown =
        String::from_utf8(common::exp(ws.path()).args(["show", "demo"]).output().unwrap().stdout)
            .unwrap();
    let logged =
        String::from_utf8(common::exp(ws.path()).args(["log", "-v"]).output().unwrap().stdout)
            .unwrap();
    let run = ws.path().join("experiments/run_demo");
    let aggregate = read(&run.join("aggregate_report.md"));
    let manifest: Value =
        serde_json::from_str(&read(&run.join("multi_trial_manifest.json"))).unwrap();
    for t in manifest["trials"].as_array().unwrap() {
        let report = read(&run.join(t["slug"].as_str().unwrap()).join("reports/report.md"));
        let effect = t["effect"].as_f64().unwrap();
        let p = t["p_value"].as_f64().unwrap();
        assert!(p >= 0.001, "the demo's p-values print as three decimals: {p}");
        let control = t["metrics"]["control"]["accuracy"].as_f64().unwrap();
        let figures = [
            format!("{:+.1} pp", effect * 100.0),
            format!("{p:.3}"),
            format!("{:.1}%", control * 100.0),
            dollars(t["usd"].as_f64().unwrap()),
        ];
        for want in &figures {
            for (name, text) in [
                ("exp run", &ran),
                ("exp show", &shown),
                ("exp log -v", &logged),
                ("aggregate_report.md", &aggregate),
            ] {
                assert!(text.contains(want.as_str()), "{name} lacks {want:?}:\n{text}");
            }
        }
        assert!(report.contains(&figures[0]) && report.contains(&figures[2]), "{report}");
    }
    for (name, text) in [("exp run", &ran), ("exp show", &shown)] {
        assert!(!text.contains(" pts"), "{name} spells percentage points `pp`:\n{text}");
    }
}

// ---- issue 11's cases, end to end: the verdict a person reads ----

/// Ten clusters of 40 items whose outcomes flip together: six clusters wrong -> right under
/// treatment, four right -> wrong (the `cluster_regression` case of stats_reference.json).
fn blocks(i: usize, cond: &str, _r: usize) -> Option<f64> {
    let up = i / 40 < 6;
    let control = if up { 0.0 } else { 1.0 };
    Some(if cond == "control" { control } else { 1.0 - control })
}

/// Commits the run folder and returns what `exp show` prints for it.
fn committed_and_shown(tmp: &Path) -> String {
    common::exp(tmp).arg("init").assert().success();
    common::exp(tmp)
        .args(["commit", "experiments/run_20251127-130501", "-m", "fixture"])
        .assert()
        .success();
    let out = common::exp(tmp).args(["show", "20251127-130501"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn clusters_flipping_together_are_significant_nowhere_a_person_reads_the_verdict() {
    // Before issue 11 the item-level McNemar (p < 0.001) was the headline: Holm, report.md
    // ("statistically significant"), the bold aggregate row and `exp show` all said so.
    let (tmp, run) = run_dir();
    let clustered = Spec {
        slug: "sim-demo-clustered-t0",
        n: 400,
        cluster_size: 40,
        clusters: true,
        score: blocks,
        ..BETTER
    };
    let dirs = [write_trial(&run, &clustered), write_trial(&run, &BETTER)];
    for d in &dirs {
        write_trial_report(d, &settings()).unwrap();
    }
    write_manifest(&run, &[clustered.slug, BETTER.slug], |_| json!({}));
    write_aggregate(&run, &settings()).unwrap();

    let sig = significance(&dirs[0]);
    let head = sig.headline.as_ref().unwrap();
    assert_eq!((head.unit.as_str(), head.n_units), ("clusters", 10));
    assert!((head.p_value - 0.753_906_25).abs() < 1e-12, "scipy's exact p: {}", head.p_value);
    assert!(sig.mcnemar.as_ref().unwrap().p_value < 0.001, "what used to be the headline");
    let holm = sig.holm_p.unwrap();
    assert!(holm >= head.p_value && holm > 0.05);

    let md = read(&dirs[0].join("reports/report.md"));
    assert!(md.contains("this is not statistically significant"), "{md}");
    assert!(
        md.contains(&format!("sign-flip test on clusters {}", exp::display::p_eq(head.p_value)))
    );
    let manifest: Value =
        serde_json::from_str(&read(&run.join("multi_trial_manifest.json"))).unwrap();
    assert_eq!(manifest["trials"][0]["p_value"].as_f64(), Some(head.p_value));

    let aggregate = read(&run.join("aggregate_report.md"));
    let row = aggregate.lines().find(|l| l.contains(clustered.slug)).unwrap();
    assert!(!row.contains("**"), "not bold: {row}");
    assert!(row.contains("sign-flip test on clusters"), "{row}");
    let other = aggregate.lines().find(|l| l.contains(&format!("[{}]", BETTER.slug))).unwrap();
    assert!(other.contains("**"), "the other trial is significant after Holm: {other}");
    let html = read(&run.join("aggregate_report.html"));
    let tr = html.lines().find(|l| l.contains("<tr") && l.contains(clustered.slug)).unwrap();
    assert!(!tr.contains("class=\"sig\""), "{tr}");

    let shown = committed_and_shown(tmp.path());
    let line = shown.lines().find(|l| l.starts_with(clustered.slug)).unwrap();
    assert!(line.contains(&exp::display::p_value(head.p_value)), "{line}");
    assert!(!line.contains("< 0.001"), "{line}");
}

#[test]
fn with_failed_requests_the_manifest_and_exp_show_print_the_paired_effect() {
    // Treatment failed on 10 items both prompts get right: the difference of accuracies (what
    // the manifest and `exp show` used to print, beside the p-value of the paired difference)
    // leaves them out of one side only: +23.3 pp against the paired +30.0 pp.
    fn failing(i: usize, cond: &str, r: usize) -> Option<f64> {
        if cond == "treatment" && !i.is_multiple_of(3) && i < 15 {
            None
        } else {
            better(i, cond, r)
        }
    }
    let (tmp, run) = run_dir();
    let spec = Spec { score: failing, ..BETTER };
    let dir = write_trial(&run, &spec);
    write_trial_report(&dir, &settings()).unwrap();
    let metrics: Value = serde_json::from_str(&read(&dir.join("results/metrics.json"))).unwrap();
    let acc = |c: &str| metrics["conditions"][c]["accuracy"].as_f64().unwrap();
    let unpaired = acc("treatment") - acc("control");
    write_manifest(&run, &[spec.slug], |_| json!({"effect": unpaired}));
    write_aggregate(&run, &settings()).unwrap();

    let sig = significance(&dir);
    let effect = sig.effect.unwrap();
    let f = sig.failures.as_ref().unwrap();
    assert_eq!((f.control_failed, f.treatment_failed, f.unpaired_items), (0, 10, 10));
    let (paired, old) = (exp::display::points(effect), exp::display::points(unpaired));
    assert_eq!((paired.as_str(), old.as_str()), ("+30.0 pp", "+23.3 pp"));
    let manifest: Value =
        serde_json::from_str(&read(&run.join("multi_trial_manifest.json"))).unwrap();
    assert_eq!(manifest["trials"][0]["effect"].as_f64(), Some(effect));
    let md = read(&dir.join("reports/report.md"));
    assert!(md.contains("| Failed requests | control 0, treatment 10 |"), "{md}");
    let shown = committed_and_shown(tmp.path());
    assert!(shown.contains(&paired) && !shown.contains(&old), "{shown}");
}

/// 1,100 items, five right only with treatment and none only with control: (b, c) = (0, 5).
fn zero_and_five(i: usize, cond: &str, _r: usize) -> Option<f64> {
    let control = if i.is_multiple_of(2) { 1.0 } else { 0.0 };
    Some(if cond == "treatment" && i % 2 == 1 && i < 10 { 1.0 } else { control })
}

#[test]
fn at_zero_and_five_the_report_promises_no_power_and_prints_an_interval_that_agrees_with_p() {
    // Before issue 11 report.md said an effect of 0.57 pp would be detected 80% of the time,
    // and printed normal and bootstrap intervals excluding 0 beside p = 0.0625.
    let (_tmp, run) = run_dir();
    let trial = write_trial(&run, &Spec { n: 1100, score: zero_and_five, ..BETTER });
    write_trial_report(&trial, &settings()).unwrap();
    let sig = significance(&trial);
    let pa = sig.power_analysis.as_ref().unwrap();
    assert!((pa.power_at_max - 0.384_039_041_674_592_8).abs() < 1e-9, "{pa:?}");
    assert_eq!(pa.mde, None);
    let md = read(&trial.join("reports/report.md"));
    let p = exp::display::p_eq(0.0625);
    for want in [
        format!("(95% CI -0.0 to +1.1 pp; exact McNemar {p}), over 1,100 paired items."),
        "this is not statistically significant".to_string(),
        "even the largest (0.5 pp) would be detected only 38.4% of the time".to_string(),
        "| Minimum detectable effect | — | none: no effect the data allow reaches 80% power |"
            .to_string(),
        format!("| Items needed | {} |", exp::display::count(pa.items_needed.unwrap())),
    ] {
        assert!(md.contains(&want), "report.md lacks {want:?}:\n{md}");
    }
    assert!(pa.items_needed.unwrap() > 1100);
    assert!(!md.contains("would be detected 80"), "{md}");
}
