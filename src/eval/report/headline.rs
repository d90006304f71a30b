//! The verdict of a trial in words and tables, for report.md and the aggregate reports: the one
//! headline of significance.json (the test the design calls for, the interval that inverts it,
//! why that test), the failures beside it, what the test can detect (power, items needed) and
//! what the repeats show. Secondary figures are listed under their own heading, labelled.
use std::fmt::Write;

use super::format::{Num, cell};
use crate::display::{self, MISSING};
use crate::stats::Significance;
use crate::stats::headline::Headline;
use crate::stats::significance::{Failures, PowerAnalysis};

/// The reason recorded for `what`, if any.
pub(crate) fn reason<'a>(sig: &'a Significance, what: &str) -> Option<&'a str> {
    sig.not_computed.iter().find(|n| n.what == what).map(|n| n.reason.as_str())
}

/// "over 1,100 paired items" or "over 400 paired items in 10 clusters".
fn over(h: &Headline) -> String {
    let items = display::plural(h.n_items as u64, "paired item");
    if h.test.clustered() {
        format!("over {items} in {}", display::plural(h.n_units as u64, "cluster"))
    } else {
        format!("over {items}")
    }
}

/// The paired effect in plain words: direction and size, the headline interval and test, why
/// that test, significance, Holm, failures, power.
pub(crate) fn effect_sentences(sig: &Significance) -> Vec<String> {
    let Some(h) = &sig.headline else {
        let why =
            reason(sig, "paired comparison").unwrap_or("no item was scored in both conditions");
        return vec![format!("No paired comparison: {why}.")];
    };
    let num = Num::for_kind(sig.score_kind);
    let level = display::confidence(sig.alpha);
    let size = num.diff(h.effect.abs()).trim_start_matches('+').to_string();
    let mut first = if h.effect > 0.0 {
        format!("Treatment scored {size} higher than control")
    } else if h.effect < 0.0 {
        format!("Treatment scored {size} lower than control")
    } else {
        "Treatment and control scored the same on average".to_string()
    };
    let ci = match h.ci {
        Some(ci) => format!("{level} CI {}; ", num.diff_ci(ci)),
        None => String::new(),
    };
    let _ = write!(first, " ({ci}{} {}), {}.", h.test.label(), display::p_eq(h.p_value), over(h));
    let mut out = vec![first];
    if let Some(note) = &h.ci_note {
        out.push(format!("There is no {level} interval: {note}."));
    }
    let alpha = sig.alpha;
    out.push(if h.p_value < alpha {
        format!(
            "At α = {alpha} this is statistically significant: a difference this large would be \
             unlikely if both prompts performed the same."
        )
    } else {
        format!(
            "At α = {alpha} this is not statistically significant: the data are consistent with \
             no difference between the prompts."
        )
    });
    if let Some(holm) = sig.holm_p {
        out.push(format!(
            "After Holm's correction across the run's trials, {}{}.",
            display::p_eq(holm),
            if holm < alpha { " (still significant)" } else { "" }
        ));
    }
    out.push(format!("The test is the {}: {}.", h.test.label(), h.why));
    out.push(agreement(sig));
    if let Some(f) = &sig.failures
        && let Some(s) = failure_sentence(f)
    {
        out.push(s);
    }
    out.extend(power_sentences(sig, num));
    out
}

/// How the items moved: discordant pairs, or items higher, lower, the same.
fn agreement(sig: &Significance) -> String {
    match (&sig.mcnemar, &sig.difference) {
        (Some(m), Some(d)) => format!(
            "{} items were right only with the treatment prompt and {} only with the control \
             prompt; the other {} agreed.",
            display::count(m.treatment_only),
            display::count(m.control_only),
            display::count(d.n as u64 - m.n_discordant)
        ),
        (_, Some(d)) => format!(
            "Treatment scored higher on {} items, lower on {} and the same on {}.",
            display::count(d.improved as u64),
            display::count(d.worsened as u64),
            display::count(d.unchanged as u64)
        ),
        _ => String::new(),
    }
}

/// Failed requests beside the effect, when there were any.
fn failure_sentence(f: &Failures) -> Option<String> {
    if f.control_failed + f.treatment_failed + f.unpaired_items == 0 {
        return None;
    }
    Some(format!(
        "{} failed under control and {} under treatment; failures are not counted as wrong \
         answers, and the {} scored in one condition only {} left out of the effect.",
        display::plural(f.control_failed as u64, "request"),
        display::count(f.treatment_failed as u64),
        display::plural(f.unpaired_items as u64, "item"),
        if f.unpaired_items == 1 { "is" } else { "are" }
    ))
}

/// What the headline test can detect, and how many items an effect of the observed size needs.
fn power_sentences(sig: &Significance, num: Num) -> Vec<String> {
    let Some(pa) = &sig.power_analysis else {
        return reason(sig, "minimum detectable effect")
            .map(|r| vec![format!("The power of the test is unknown: {r}.")])
            .unwrap_or_default();
    };
    let target = display::share(pa.target);
    let mut out = vec![match pa.mde {
        Some(mde) => format!(
            "With these items the {} detects a true effect of {} {target} of the time; smaller \
             effects can go unnoticed.",
            pa.test.label(),
            num.diff(mde).trim_start_matches('+')
        ),
        None => format!(
            "No effect the data allow is detected {target} of the time: even the largest ({}) \
             would be detected only {} of the time.",
            num.diff(pa.max_effect).trim_start_matches('+'),
            display::percent(pa.power_at_max)
        ),
    }];
    if let (Some(effect), Some(items)) = (pa.needed_for_effect, pa.items_needed) {
        out.push(format!(
            "Detecting an effect of the observed size ({}) {target} of the time would take about \
             {}{}.",
            num.diff(effect).trim_start_matches('+'),
            display::plural(items, "paired item"),
            pa.clusters_needed
                .map(|c| format!(" in {}", display::plural(c, "cluster")))
                .unwrap_or_default()
        ));
    }
    out
}

/// The headline table of report.md: effect, interval, test, Holm, failures, power; then the
/// secondary figures, labelled.
pub(crate) fn effect_section(md: &mut String, sig: &Significance, h: &Headline) {
    let num = Num::for_kind(sig.score_kind);
    let level = display::confidence(sig.alpha);
    md.push_str("\n## Paired effect (treatment − control)\n\n| Estimate | Value | Method |\n|---|---|---|\n");
    let mut row = |k: &str, v: String, how: &str| {
        let _ = writeln!(md, "| {k} | {v} | {} |", cell(how, 240));
    };
    row(
        "Effect",
        num.diff(h.effect),
        &format!("mean paired difference {} (items scored in both conditions)", over(h)),
    );
    match h.ci {
        Some(ci) => row(&format!("{level} CI"), num.diff_ci(ci), &h.ci_method),
        None => row(&format!("{level} CI"), MISSING.into(), h.ci_note.as_deref().unwrap_or("")),
    }
    row("p", display::p_value(h.p_value), &h.method);
    row("Test", h.test.label().into(), &h.why);
    if let Some(holm) = sig.holm_p {
        row("Holm-adjusted p", display::p_value(holm), "across the run's trials");
    }
    if let Some(f) = &sig.failures {
        row(
            "Failed requests",
            format!("control {}, treatment {}", f.control_failed, f.treatment_failed),
            &format!(
                "{} scored in one condition only, left out of the effect",
                display::plural(f.unpaired_items as u64, "item")
            ),
        );
    }
    if let Some(pa) = &sig.power_analysis {
        power_rows(&mut row, pa, num);
    }
    secondary_rows(md, sig, num, &level);
}

fn power_rows(row: &mut impl FnMut(&str, String, &str), pa: &PowerAnalysis, num: Num) {
    let target = display::share(pa.target);
    row(
        "Power at the largest effect the data allow",
        display::percent(pa.power_at_max),
        &format!("at {}; {}", num.diff(pa.max_effect).trim_start_matches('+'), pa.method),
    );
    row(
        "Minimum detectable effect",
        pa.mde.map(|m| num.diff(m).trim_start_matches('+').to_string()).unwrap_or(MISSING.into()),
        &match pa.mde {
            Some(_) => format!("at {target} power"),
            None => format!("none: no effect the data allow reaches {target} power"),
        },
    );
    if let (Some(effect), Some(items)) = (pa.needed_for_effect, pa.items_needed) {
        row(
            "Items needed",
            display::count(items),
            &format!(
                "to detect {} (the observed effect) with {target} power{}",
                num.diff(effect).trim_start_matches('+'),
                pa.clusters_needed
                    .map(|c| format!(", in {}", display::plural(c, "cluster")))
                    .unwrap_or_default()
            ),
        );
    }
}

/// The figures beside the headline, each labelled secondary (or for reference).
fn secondary_rows(md: &mut String, sig: &Significance, num: Num, level: &str) {
    md.push_str("\nSecondary figures (the headline above is the one to read):\n\n| Estimate | Value | Method |\n|---|---|---|\n");
    let mut row = |k: &str, v: String, how: &str| {
        let _ = writeln!(md, "| {k} | {v} | {} |", cell(how, 240));
    };
    if let Some(d) = &sig.difference {
        row(
            &format!("{level} CI, normal"),
            d.ci.map(|c| num.diff_ci(c)).unwrap_or_else(|| MISSING.into()),
            &d.method,
        );
    }
    if let Some(b) = &sig.bootstrap {
        row(
            &format!("{level} CI, bootstrap"),
            num.diff_ci(b.ci),
            &format!(
                "{}; {} resamples, seed {}",
                b.method,
                display::count(u64::from(b.resamples)),
                b.seed
            ),
        );
    }
    if let Some(m) = &sig.mcnemar {
        let reference = if sig.clusters.is_some() { "; for reference only" } else { "" };
        row(
            "McNemar p",
            display::p_value(m.p_value),
            &format!(
                "{}; {} right only with treatment, {} only with control{reference}",
                m.method, m.treatment_only, m.control_only
            ),
        );
    }
    if let Some(p) = &sig.permutation {
        row(
            "Sign-flip p, zero differences dropped",
            display::p_value(p.p_value),
            &format!("{}; as scipy's permutation_test computes it (secondary)", p.method),
        );
    }
}

/// report.md's section on repeats: pass@k, pass^k, per-item pass rates, variance split.
pub(crate) fn repeats_section(md: &mut String, sig: &Significance) {
    let Some(k) = sig.repeats_by_condition.values().map(|r| r.k).next() else { return };
    let _ = writeln!(
        md,
        "\n## Repeats ({k} per item)\n\n| Condition | pass@{k} | pass^{k} | Mean item pass rate | \
         Items always / never / sometimes right | Within-item variance | Between-item variance | \
         Within share |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let pct = |x: Option<f64>| display::or_missing(x, display::percent);
    let var = |x: Option<f64>| display::or_missing(x, |v| format!("{v:.4}"));
    let mut method = None;
    for (name, r) in &sig.repeats_by_condition {
        let rates = r.item_pass_rate.as_ref();
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            pct(r.pass_at_k),
            pct(r.pass_all_k),
            pct(rates.map(|p| p.mean)),
            rates
                .map(|p| format!("{} / {} / {}", p.always, p.never, p.mixed))
                .unwrap_or_else(|| MISSING.into()),
            var(r.within_item_variance),
            var(r.between_item_variance),
            pct(r.within_share)
        );
        method.get_or_insert(r.method.as_str());
    }
    if let Some(m) = method {
        let _ = writeln!(
            md,
            "\npass@{k}: solved at least once in {k} tries; pass^{k}: solved in all {k}. The within \
             share is the part of the score's variance that is the model's own noise between \
             repeats rather than items differing in difficulty. Method: {m}."
        );
    }
}

/// aggregate_report.md's section on repeats: per trial with repeats and condition, pass@k,
/// pass^k and the within-item share of the variance. Nothing when no trial has repeats.
pub(crate) fn aggregate_repeats_section(md: &mut String, trials: &[super::AggTrial]) {
    let with: Vec<(usize, &super::AggTrial, &Significance)> = trials
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.sig.as_ref().map(|s| (i, t, s)))
        .filter(|(_, _, s)| !s.repeats_by_condition.is_empty())
        .collect();
    if with.is_empty() {
        return;
    }
    md.push_str(
        "\n## Repeats\n\npass@k: share of items solved at least once in k tries; pass^k: solved \
         in all k; within share: the part of the score's variance that is the model's own noise \
         between repeats (each trial's report.md has the rest).\n\n| # | Trial | Condition | k | \
         pass@k | pass^k | Within share |\n|---:|---|---|---:|---:|---:|---:|\n",
    );
    let pct = |x: Option<f64>| display::or_missing(x, display::percent);
    for (i, t, sig) in with {
        for (cond, r) in &sig.repeats_by_condition {
            let _ = writeln!(
                md,
                "| T{} | {} | {cond} | {} | {} | {} | {} |",
                i + 1,
                cell(&t.slug, 80),
                r.k,
                pct(r.pass_at_k),
                pct(r.pass_all_k),
                pct(r.within_share)
            );
        }
    }
}
