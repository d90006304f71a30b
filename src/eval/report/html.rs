//! `aggregate_report.html`: the aggregate report as one self-contained page (inline CSS, inline
//! SVG, no script, no network), so it can be mailed, archived or opened from the store as is.
use std::fmt::Write;

use super::charts::Chart;
use super::format::{self, html as esc};
use super::markdown::{effect_sentences, level_word, row, run_summary};
use super::{AggTrial, Aggregate};

const CSS: &str = r#"
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --accent:#2563eb; --good:#0d9488; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:32px 24px 48px; }
h1 { font-size:28px; margin:0 0 4px; }
h2 { font-size:20px; margin:36px 0 12px; padding-bottom:6px; border-bottom:1px solid var(--line); }
.meta { color:var(--muted); margin:0 0 20px; }
.summary { font-size:16px; background:#fff; border:1px solid var(--line); border-left:4px solid var(--accent);
           padding:14px 18px; border-radius:6px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(180px,1fr)); gap:12px; margin:18px 0; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 16px; }
.card .v { font-size:24px; font-weight:600; }
.card .k { color:var(--muted); font-size:13px; }
.table-wrap { overflow-x:auto; background:#fff; border:1px solid var(--line); border-radius:8px; }
table { border-collapse:collapse; width:100%; font-size:14px; }
th, td { padding:8px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f1f5f9; font-weight:600; white-space:nowrap; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr:last-child td, tr:last-child th { border-bottom:none; }
tr.sig td.effect, tr.sig td.holm { color:var(--good); font-weight:700; }
.slug { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:13px; word-break:break-all; }
.sub { color:var(--muted); font-size:12px; margin-top:2px; }
.badge { display:inline-block; font-size:12px; padding:1px 8px; border-radius:10px; background:#ccfbf1; color:#115e59; }
figure { margin:18px 0; background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px; }
figure svg { display:block; max-width:100%; height:auto; margin:0 auto; }
figcaption { color:var(--muted); font-size:14px; margin-top:6px; }
details { background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 16px; margin:10px 0; }
summary { cursor:pointer; font-weight:600; }
.note { color:var(--muted); }
footer { color:var(--muted); font-size:13px; margin-top:40px; }
table.figures { width:auto; margin:6px 0 10px; }
table.figures th { background:none; font-weight:normal; color:var(--muted); }
"#;

pub(crate) fn aggregate_report(agg: &Aggregate, charts: &[Chart]) -> String {
    let run = agg.run_id.as_deref().unwrap_or("(unnamed)");
    let level = format!("{:.0}%", (1.0 - agg.alpha) * 100.0);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Run {} · exp report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(run)
    );
    let _ = writeln!(h, "<h1>Run <span class=\"slug\">{}</span></h1>", esc(run));
    let _ = writeln!(
        h,
        "<p class=\"meta\">{}control vs treatment, paired by item · α = {}</p>",
        agg.status.as_deref().map(|s| format!("Status: {} · ", esc(s))).unwrap_or_default(),
        agg.alpha
    );
    let _ = writeln!(h, "<p class=\"summary\">{}</p>", esc(&run_summary(agg)));

    let tested = agg.trials.iter().filter(|t| t.holm_p.is_some()).count();
    let significant = agg.trials.iter().filter(|t| t.holm_p.is_some_and(|p| p < agg.alpha)).count();
    let usd: f64 = agg.trials.iter().filter_map(AggTrial::usd).sum();
    let failures = agg.totals.as_ref().and_then(|t| t.get("failures")).and_then(|v| v.as_u64());
    h.push_str("<section class=\"cards\">\n");
    for (v, k) in [
        (agg.trials.len().to_string(), "trials".to_string()),
        (format!("{significant} / {tested}"), "significant after Holm".to_string()),
        (format::usd(usd), "total cost".to_string()),
        (failures.map(format::int).unwrap_or_else(|| "—".into()), "failed requests".to_string()),
    ] {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
            esc(&v),
            esc(&k)
        );
    }
    h.push_str("</section>\n");

    h.push_str("<h2>Trials side by side</h2>\n<div class=\"table-wrap\"><table>\n<thead><tr>");
    for head in ["#", "Trial", "Control", "Treatment", "Effect"] {
        let _ = write!(h, "<th>{head}</th>");
    }
    let _ = write!(
        h,
        "<th>{level} CI</th><th>p</th><th>Holm p</th><th>Cost</th></tr></thead>\n<tbody>\n"
    );
    for (i, t) in agg.trials.iter().enumerate() {
        let r = row(t, agg.alpha);
        let _ = writeln!(
            h,
            "<tr{}><td class=\"num\">T{}</td><td><div class=\"slug\">{}</div><div class=\"sub\">{}</div></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num effect\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num holm\">{}</td><td class=\"num\">{}</td></tr>",
            if r.significant { " class=\"sig\"" } else { "" },
            i + 1,
            esc(&t.slug),
            esc(&[
                t.model.clone(),
                t.prompt_set.clone(),
                Some(format::decoding(t.decoding.as_ref())),
                t.status.clone().filter(|s| s != "complete"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ")),
            esc(&r.control),
            esc(&r.treatment),
            esc(&r.effect),
            esc(&r.ci),
            esc(&r.p),
            esc(&r.holm),
            esc(&r.usd)
        );
    }
    h.push_str("</tbody></table></div>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">{} with its {level} interval per condition; effect = treatment − control, \
         paired by item; p from exact McNemar (0/1 scores) or the sign-flip permutation test; Holm p \
         adjusted across all trials of the run. Green: significant after Holm.</p>",
        esc(&level_word(agg))
    );

    h.push_str("<h2>Charts</h2>\n");
    for c in charts {
        let _ = writeln!(
            h,
            "<figure id=\"{}\" aria-label=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>",
            esc(c.file.trim_end_matches(".svg")),
            esc(&c.title),
            inline_svg(&c.svg),
            esc(&c.caption)
        );
    }

    h.push_str("<h2>Per trial</h2>\n");
    for (i, t) in agg.trials.iter().enumerate() {
        let r = row(t, agg.alpha);
        let _ = writeln!(
            h,
            "<details{}><summary>T{} <span class=\"slug\">{}</span> {}</summary>",
            if i == 0 { " open" } else { "" },
            i + 1,
            esc(&t.slug),
            if r.significant { "<span class=\"badge\">significant</span>" } else { "" }
        );
        match &t.sig {
            Some(sig) => {
                let _ = writeln!(h, "<p>{}</p>", esc(&effect_sentences(sig).join(" ")));
                h.push_str(&figures(sig));
                if !sig.not_computed.is_empty() {
                    h.push_str("<p class=\"note\">Not computed:</p><ul>");
                    for n in &sig.not_computed {
                        let _ = write!(h, "<li><b>{}</b>: {}</li>", esc(&n.what), esc(&n.reason));
                    }
                    h.push_str("</ul>\n");
                }
            }
            None => {
                let _ = writeln!(
                    h,
                    "<p class=\"note\">{}</p>",
                    esc(r.note.as_deref().unwrap_or("no statistics"))
                );
            }
        }
        let _ = writeln!(
            h,
            "<p class=\"note\">Full report: <a href=\"{0}reports/report.md\">{0}reports/report.md</a></p></details>",
            esc(&t.path)
        );
    }
    let _ = writeln!(
        h,
        "<footer>Generated by exp {} from each trial's results/significance.json, costs.json and \
         multi_trial_manifest.json. Self-contained: no scripts, no network.</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

/// The trial's figures as a small two-column table.
fn figures(sig: &crate::stats::Significance) -> String {
    use crate::stats::significance::{CONTROL, TREATMENT};
    let num = format::Num::for_kind(sig.score_kind);
    let mut rows: Vec<(String, String)> = Vec::new();
    for c in [CONTROL, TREATMENT] {
        if let Some(s) = sig.conditions.get(c) {
            let v = match (s.mean, s.ci) {
                (Some(m), Some(ci)) => format!("{} ({})", num.level(m), num.level_ci(ci)),
                (Some(m), None) => num.level(m),
                _ => "—".into(),
            };
            rows.push((format!("{c} ({} scored, {} failed)", s.scored, s.failed), v));
        }
    }
    if let Some(d) = &sig.difference {
        let ci = d.ci.map(|c| format!(" ({})", num.diff_ci(c))).unwrap_or_default();
        rows.push(("effect, normal CI".into(), format!("{}{ci}", num.diff(d.mean))));
    }
    if let Some(b) = &sig.bootstrap {
        rows.push((format!("bootstrap CI ({} resamples)", b.resamples), num.diff_ci(b.ci)));
    }
    if let Some(m) = &sig.mcnemar {
        rows.push(("exact McNemar p".into(), format::p(m.p_value)));
    }
    if let Some(p) = &sig.permutation {
        rows.push(("sign-flip p".into(), format::p(p.p_value)));
    }
    if let Some(m) = &sig.mde {
        let v = num.diff(m.value);
        rows.push((
            format!("detectable at {:.0}% power", m.power * 100.0),
            v.trim_start_matches('+').into(),
        ));
    }
    let mut t = String::from("<table class=\"figures\"><tbody>");
    for (k, v) in rows {
        let _ = write!(t, "<tr><th>{}</th><td class=\"num\">{}</td></tr>", esc(&k), esc(&v));
    }
    t.push_str("</tbody></table>\n");
    t
}

/// The chart SVG for inlining: plotters' document without an XML prolog, if it has one.
fn inline_svg(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}
