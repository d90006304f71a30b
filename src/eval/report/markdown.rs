//! The Markdown reports: `reports/report.md` per trial and `aggregate_report.md` per run.
//! Every figure comes from significance.json, metrics.json, costs.json or the CSVs.
use std::fmt::Write;

use super::charts::Chart;
use super::format::{self, Num, cell};
use super::headline::{
    aggregate_repeats_section, effect_section, effect_sentences, reason, repeats_section,
};
use super::scan::{ItemView, SHOW_FAILURES, SHOW_ITEMS};
use super::{AggTrial, Aggregate, TrialData};
use crate::display::{self, MISSING};
use crate::runfiles::figures::Costs;
use crate::stats::Significance;
use crate::stats::significance::{CONTROL, TREATMENT};

impl ItemView {
    fn shown(&self, cond: &str, pct: bool) -> String {
        let preds = self.predictions.get(cond).map(Vec::as_slice).unwrap_or_default();
        let mut distinct: Vec<&str> = Vec::new();
        for p in preds {
            if !distinct.contains(&p.as_str()) {
                distinct.push(p);
            }
        }
        let mut text = cell(&distinct.join(" / "), 40);
        if let (Some(s), true) = (self.scores.get(cond), preds.len() > 1 || !pct) {
            let m = s.iter().sum::<f64>() / s.len().max(1) as f64;
            let _ = write!(text, " ({m:.2})");
        }
        text
    }
}

/// `reports/report.md` of one trial, section by section.
pub(crate) fn trial_report(data: &TrialData) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", data.slug);
    if let Some(run) = &data.run_id {
        let _ = writeln!(md, "Trial of run `{run}`. Treatment − control, paired by item.\n");
    }
    setup_section(&mut md, data);
    md.push_str("\n## Result\n\n");
    let _ = writeln!(md, "{}\n", effect_sentences(&data.sig).join(" "));
    conditions_section(&mut md, data);
    if let Some(h) = &data.sig.headline {
        effect_section(&mut md, &data.sig, h);
    }
    repeats_section(&mut md, &data.sig);
    costs_section(&mut md, data.costs.as_ref());
    discordant_section(&mut md, data);
    failures_section(&mut md, data);
    if !data.sig.not_computed.is_empty() {
        md.push_str("\n## Not computed\n\n");
        for n in &data.sig.not_computed {
            let _ = writeln!(md, "- **{}**: {}", n.what, n.reason);
        }
    }
    md.push_str(
        "\n---\nEvery figure above is in `results/significance.json`, `results/metrics.json` and \
         `results/costs.json`, computed from `results/per_item_scores.csv`.\n",
    );
    md
}

/// "95%" for α = 0.05: the confidence level of the intervals.
pub(crate) fn ci_level(alpha: f64) -> String {
    display::confidence(alpha)
}

/// What was run: model, prompts, decoding, data, scoring, statistics settings.
fn setup_section(md: &mut String, data: &TrialData) {
    let (sig, info) = (&data.sig, &data.info);
    md.push_str("## Setup\n\n| | |\n|---|---|\n");
    let model = match (&info.model, &info.provider, &info.model_id) {
        (Some(m), Some(p), Some(id)) if id != m => format!("{m} ({p}, `{id}`)"),
        (Some(m), Some(p), _) => format!("{m} ({p})"),
        (Some(m), None, _) => m.clone(),
        _ => "not recorded".into(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("Model", model),
        ("Prompt set", info.prompt_set.clone().unwrap_or_else(|| "not recorded".into())),
        ("Decoding", format::decoding(info.decoding.as_ref())),
        ("Repeats", info.repeats.map(|r| r.to_string()).unwrap_or_else(|| sig.repeats.to_string())),
        (
            "Dataset",
            if info.datasets.is_empty() { "not recorded".into() } else { info.datasets.join(", ") },
        ),
        ("Items", format!("{} ({} scored in both conditions)", sig.n_items, sig.n_paired)),
        ("Scoring", scoring(info.scoring.as_ref(), sig)),
        (
            "Statistics",
            format!(
                "α = {}, {} bootstrap resamples, seed {}{}",
                sig.alpha,
                display::count(u64::from(sig.bootstrap_resamples)),
                sig.seed,
                sig.clusters.map(|c| format!(", {c} clusters")).unwrap_or_default()
            ),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {} |", cell(&v, 200));
    }
}

/// Accuracy (or mean score) per condition, with its interval and counts.
fn conditions_section(md: &mut String, data: &TrialData) {
    let sig = &data.sig;
    let num = Num::for_kind(sig.score_kind);
    let level = ci_level(sig.alpha);
    let _ = writeln!(md, "## {} per condition\n", capitalize(num.level_name()));
    let _ = writeln!(
        md,
        "| Condition | {} | {level} CI | SE | Correct | Scored | Failed | Interval |",
        capitalize(num.level_name())
    );
    md.push_str("|---|---:|---|---:|---:|---:|---:|---|\n");
    for name in [CONTROL, TREATMENT] {
        // "Correct" is the sum of scores from metrics.json, as the run counted it.
        let correct = data
            .metrics
            .as_ref()
            .and_then(|m| m.conditions.get(name))
            .and_then(|c| c.correct)
            .map(|c| if c.fract() == 0.0 { format!("{c:.0}") } else { format!("{c:.2}") })
            .unwrap_or_else(|| MISSING.into());
        match sig.conditions.get(name) {
            Some(c) => {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {correct} | {} | {} | {} |",
                    c.mean.map(|m| num.level(m)).unwrap_or_else(|| MISSING.into()),
                    c.ci.map(|ci| num.level_ci(ci)).unwrap_or_else(|| MISSING.into()),
                    c.se.map(|s| num.level(s)).unwrap_or_else(|| MISSING.into()),
                    c.scored,
                    c.failed,
                    c.method.as_deref().unwrap_or(MISSING),
                );
            }
            None => {
                let _ = writeln!(md, "| {name} | not run | — | — | — | 0 | 0 | — |");
            }
        }
    }
}

/// Requests, tokens and dollars per condition and in all.
fn costs_section(md: &mut String, costs: Option<&Costs>) {
    md.push_str("\n## Costs\n\n");
    let Some(c) = costs else {
        md.push_str("No costs.json was written for this trial.\n");
        return;
    };
    md.push_str("| Condition | Requests | Failures | Input tokens | Output tokens | USD | USD per correct |\n|---|---:|---:|---:|---:|---:|---:|\n");
    let opt_int = |v: Option<u64>| v.map(display::count).unwrap_or_else(|| MISSING.into());
    let opt_usd = |v: Option<f64>| v.map(display::usd).unwrap_or_else(|| MISSING.into());
    let rows = c
        .conditions
        .iter()
        .map(|(n, f)| (n.clone(), f))
        .chain([("**total**".to_string(), &c.total)]);
    for (name, f) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            opt_int(f.requests),
            opt_int(f.failures),
            opt_int(f.input_tokens),
            opt_int(f.output_tokens),
            opt_usd(f.usd),
            opt_usd(f.usd_per_correct)
        );
    }
    if c.total.usd == Some(0.0) {
        md.push_str("\nThe model has no pricing in the config, so costs are shown as $0; token counts are exact.\n");
    }
}

/// The items that scored differently under the two prompts, the biggest changes first.
fn discordant_section(md: &mut String, data: &TrialData) {
    let num = Num::for_kind(data.sig.score_kind);
    let dis = &data.discordant;
    md.push_str("\n## Most telling discordant items\n\n");
    if dis.fixed == 0 && dis.broken == 0 {
        md.push_str("None: every paired item scored the same under both prompts.\n");
    }
    for (title, count, list) in [
        ("Better with treatment", dis.fixed, &dis.fixed_shown),
        ("Worse with treatment", dis.broken, &dis.broken_shown),
    ] {
        if count == 0 {
            continue;
        }
        let _ = writeln!(
            md,
            "**{title}** ({count} items{}):\n",
            if count > SHOW_ITEMS { format!(", showing {SHOW_ITEMS}") } else { String::new() }
        );
        md.push_str("| Item | Dataset | Gold | Control | Treatment | Change |\n|---|---|---|---|---|---:|\n");
        for (v, delta) in list {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&v.item_id, 40),
                cell(&v.dataset, 30),
                cell(&v.gold, 30),
                v.shown(CONTROL, num.pct),
                v.shown(TREATMENT, num.pct),
                num.diff(*delta)
            );
        }
        md.push('\n');
    }
}

/// Requests without a score, which count as failures rather than wrong answers.
fn failures_section(md: &mut String, data: &TrialData) {
    md.push_str("## Failures\n\n");
    let failures = &data.failures;
    if failures.total == 0 {
        md.push_str("None: every request returned a scored answer.\n");
        return;
    }
    let parts: Vec<String> =
        failures.by_condition.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let _ = writeln!(
        md,
        "{} of {} requests have no score ({}). They count as failures, not as wrong answers, and are left out of the {}.\n",
        failures.total,
        data.rows,
        parts.join(", "),
        Num::for_kind(data.sig.score_kind).level_name()
    );
    md.push_str("| Condition | Item | Repeat | Error |\n|---|---|---:|---|\n");
    for f in &failures.shown {
        let err = f.error.as_deref().unwrap_or("not recorded");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            f.condition,
            cell(&f.item_id, 40),
            f.repeat.map(|r| r.to_string()).unwrap_or_default(),
            cell(err, 120)
        );
    }
    if failures.total > SHOW_FAILURES {
        let _ = writeln!(
            md,
            "\n…and {} more in results/predictions.csv.",
            failures.total - SHOW_FAILURES
        );
    }
}

fn scoring(s: Option<&serde_json::Value>, sig: &Significance) -> String {
    let kind = match sig.score_kind {
        Some(k) => format!("{k:?}").to_lowercase(),
        None => "nothing scored".into(),
    };
    let Some(s) = s else { return format!("{kind} scores") };
    let ty = s.get("type").and_then(|t| t.as_str()).unwrap_or("?");
    let labels: Vec<&str> = s
        .get("labels")
        .and_then(|l| l.as_array())
        .map(|l| l.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if labels.is_empty() {
        format!("{ty} ({kind} scores)")
    } else {
        format!("{ty}: {} ({kind} scores)", labels.join(", "))
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// A trial's per-condition figure for the side-by-side table.
pub(crate) fn level_cell(t: &AggTrial, cond: &str, with_ci: bool) -> String {
    let Some(sig) = &t.sig else { return MISSING.into() };
    let num = Num::for_kind(sig.score_kind);
    match sig.conditions.get(cond).and_then(|c| c.mean.map(|m| (m, c.ci))) {
        Some((m, Some(ci))) if with_ci => {
            if num.pct {
                format!("{} [{:.1}, {:.1}]", num.level(m), ci[0] * 100.0, ci[1] * 100.0)
            } else {
                format!("{} [{:.3}, {:.3}]", num.level(m), ci[0], ci[1])
            }
        }
        Some((m, _)) => num.level(m),
        None => MISSING.into(),
    }
}

/// Headline cells shared by the Markdown and HTML aggregate tables.
pub(crate) struct Row {
    pub control: String,
    pub treatment: String,
    pub effect: String,
    pub ci: String,
    pub p: String,
    /// The headline test's short name.
    pub test: String,
    pub holm: String,
    pub usd: String,
    pub significant: bool,
    pub note: Option<String>,
}

pub(crate) fn row(t: &AggTrial, alpha: f64) -> Row {
    let sig = t.sig.as_ref();
    let num = Num::for_kind(sig.and_then(|s| s.score_kind));
    let h = sig.and_then(|s| s.headline.as_ref());
    let note = match sig {
        None => Some(
            "no statistics (significance.json missing: the trial did not finish scoring)"
                .to_string(),
        ),
        Some(s) if s.headline.is_none() => reason(s, "paired comparison").map(str::to_string),
        _ => None,
    };
    Row {
        control: level_cell(t, CONTROL, true),
        treatment: level_cell(t, TREATMENT, true),
        effect: h.map(|h| num.diff(h.effect)).unwrap_or_else(|| MISSING.into()),
        ci: h.and_then(|h| h.ci).map(|c| num.diff_ci(c)).unwrap_or_else(|| MISSING.into()),
        p: h.map(|h| display::p_value(h.p_value)).unwrap_or_else(|| MISSING.into()),
        test: h.map(|h| h.test.label().to_string()).unwrap_or_else(|| MISSING.into()),
        holm: t.holm_p.map(display::p_value).unwrap_or_else(|| MISSING.into()),
        usd: t.usd().map(display::usd).unwrap_or_else(|| MISSING.into()),
        significant: t.holm_p.is_some_and(|h| h < alpha),
        note,
    }
}

/// "Accuracy" when the run's scores are 0/1, "Mean score" otherwise.
pub(crate) fn level_word(agg: &Aggregate) -> String {
    let kind = agg.trials.iter().find_map(|t| t.sig.as_ref()?.score_kind);
    capitalize(Num::for_kind(kind).level_name())
}

/// One-paragraph summary of the run for the top of the aggregate reports.
pub(crate) fn run_summary(agg: &Aggregate) -> String {
    let with_p = agg.trials.iter().filter(|t| t.holm_p.is_some()).count();
    let sig: Vec<&AggTrial> =
        agg.trials.iter().filter(|t| t.holm_p.is_some_and(|h| h < agg.alpha)).collect();
    let total_usd: f64 = agg.trials.iter().filter_map(AggTrial::usd).sum();
    let mut s = format!(
        "{} trial{} compared control and treatment prompts on the same items. ",
        agg.trials.len(),
        if agg.trials.len() == 1 { "" } else { "s" }
    );
    if with_p == 0 {
        s.push_str("No trial has a p-value, so nothing was tested. ");
    } else {
        let _ = write!(
            s,
            "{} of {with_p} tested trial{} show a significant difference at α = {} after Holm's correction for testing {with_p} trial{} at once",
            sig.len(),
            if with_p == 1 { "" } else { "s" },
            agg.alpha,
            if with_p == 1 { "" } else { "s" },
        );
        if sig.is_empty() {
            s.push_str(". ");
        } else {
            let names: Vec<String> = sig
                .iter()
                .map(|t| {
                    let e = t.sig.as_ref().and_then(|s| s.effect).unwrap_or(0.0);
                    let num = Num::for_kind(t.sig.as_ref().and_then(|s| s.score_kind));
                    format!("{} ({})", t.slug, num.diff(e))
                })
                .collect();
            let _ = write!(s, ": {}. ", names.join(", "));
        }
    }
    let _ = write!(s, "Total cost {}.", display::usd(total_usd));
    s
}

/// `aggregate_report.md`.
pub(crate) fn aggregate_report(agg: &Aggregate, charts: &[Chart]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Run {}\n", agg.run_id.as_deref().unwrap_or("(unnamed)"));
    if let Some(status) = &agg.status {
        let _ = writeln!(md, "Status: **{status}**.\n");
    }
    let _ = writeln!(md, "{}\n", run_summary(agg));
    let level = ci_level(agg.alpha);
    md.push_str("## Trials side by side\n\n");
    let _ = writeln!(
        md,
        "{} with its {level} CI per condition; effect = treatment − control over items scored in both conditions; its {level} CI inverts the trial's headline test, the test its design calls for (exact McNemar for one 0/1 outcome per item, a sign-flip test on items with repeats or other scores, on clusters with a cluster field); Holm p adjusted across the trials below.\n",
        level_word(agg)
    );
    md.push_str("| # | Trial | Model | Prompt set | Decoding | Control | Treatment | Effect | ");
    let _ = write!(
        md,
        "{level} CI | p | Test | Holm p | Cost |\n|---:|---|---|---|---|---:|---:|---:|---|---:|---|---:|---:|\n"
    );
    let mut notes = Vec::new();
    for (i, t) in agg.trials.iter().enumerate() {
        let r = row(t, agg.alpha);
        let bold = |s: &str| if r.significant { format!("**{s}**") } else { s.to_string() };
        let _ = writeln!(
            md,
            "| T{} | [{}]({}reports/report.md){} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            cell(&t.slug, 80),
            t.path,
            match t.status.as_deref() {
                Some(s) if s != "complete" => format!(" *({s})*"),
                _ => String::new(),
            },
            cell(t.model.as_deref().unwrap_or(MISSING), 40),
            cell(t.prompt_set.as_deref().unwrap_or(MISSING), 40),
            cell(&format::decoding(t.decoding.as_ref()), 80),
            r.control,
            r.treatment,
            bold(&r.effect),
            r.ci,
            r.p,
            r.test,
            bold(&r.holm),
            r.usd
        );
        if let Some(n) = r.note {
            notes.push(format!("- T{} {}: {n}", i + 1, t.slug));
        }
    }
    md.push_str("\nBold: significant after Holm's correction.\n");
    if !notes.is_empty() {
        md.push_str("\n**Not compared:**\n\n");
        for n in notes {
            let _ = writeln!(md, "{n}");
        }
    }
    if let Some(t) = &agg.totals {
        let get = |k: &str| {
            t.get(k).and_then(|v| v.as_u64()).map(display::count).unwrap_or_else(|| MISSING.into())
        };
        let usd = t
            .get("usd")
            .and_then(|v| v.as_f64())
            .map(display::usd)
            .unwrap_or_else(|| MISSING.into());
        let _ = writeln!(
            md,
            "\n**Totals:** {} requests, {} failures, {} input and {} output tokens, {usd}.",
            get("requests"),
            get("failures"),
            get("input_tokens"),
            get("output_tokens")
        );
    }
    aggregate_repeats_section(&mut md, &agg.trials);
    md.push_str("\n## Charts\n\n");
    for c in charts {
        let _ =
            writeln!(md, "### {}\n\n![{}](charts/{})\n\n{}\n", c.title, c.title, c.file, c.caption);
    }
    md.push_str(
        "---\nEach trial's figures are in `<trial>/results/significance.json`; Holm-adjusted \
         p-values are also in `multi_trial_manifest.json`. A self-contained version of this \
         report is `aggregate_report.html`.\n",
    );
    md
}
