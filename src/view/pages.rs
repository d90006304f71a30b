//! The pages: history, run, trial, compare, and the error page. Each builds its HTML from what
//! `read` and `items` return; every text from a run goes through [`esc`].
use std::collections::HashMap;
use std::fmt::Write;
use std::ops::ControlFlow;

use super::html::{self, ci_pct, esc, figure, num_cell, p, pct, pp, root, url_value, usd};
use super::items::{self, Filter, ItemRow, ItemsPage, PAGE_SIZE};
use super::read::{self, Run};
use super::{Error, Result, Site, paths, textdiff};
use crate::diff::{self, RunDiff};
use crate::error::Hint;
use crate::eval::report::{AggTrial, charts};
use crate::store::{Commit, ObjectId};

/// The history: every commit, one row per trial, newest first, sortable and filterable.
pub(crate) fn history(site: &Site) -> Result<String> {
    let entries = read::history(&site.repo)?;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Runs</h1><p class=\"muted\">{} commits in <code>{}</code>. Click a column to sort; \
         type to filter.</p>",
        entries.len(),
        esc(&site.repo.workspace().display().to_string())
    );
    let mut statuses: Vec<&str> =
        entries.iter().filter_map(|e| e.commit.status.as_deref()).collect();
    statuses.sort();
    statuses.dedup();
    b.push_str(
        "<div class=\"controls\"><input type=\"search\" id=\"history-filter\" \
         placeholder=\"filter: run, trial, message…\" aria-label=\"filter rows\">\
         <select id=\"history-status\" aria-label=\"status\"><option value=\"\">any status</option>",
    );
    for s in &statuses {
        let _ = write!(b, "<option value=\"{0}\">{0}</option>", esc(s));
    }
    b.push_str("</select><span id=\"history-count\" class=\"muted\"></span></div>");
    if !site.static_site && entries.len() > 1 {
        let _ = write!(
            b,
            "<form id=\"compare-form\" class=\"controls\" data-root=\"{}\">compare \
             <select name=\"a\" aria-label=\"old run\">{opts}</select> with \
             <select name=\"b\" aria-label=\"new run\">{opts}</select> \
             <button type=\"submit\">compare</button></form>",
            root(0),
            opts = entries
                .iter()
                .map(|e| format!(
                    "<option value=\"{}\">{} {}{} {}</option>",
                    e.id.to_hex(),
                    e.id.short(),
                    esc(&e.commit.run_id),
                    e.commit.name.as_deref().map(|n| format!(" ({})", esc(n))).unwrap_or_default(),
                    esc(&e.commit.time)
                ))
                .collect::<String>()
        );
    }
    let heads = [
        "commit",
        "time",
        "run",
        "name",
        "refs",
        "status",
        "trial",
        "n",
        "control",
        "treatment",
        "effect",
        "p",
        "Holm p",
        "cost",
        "message",
        "",
    ];
    b.push_str("<table id=\"history\"><thead><tr>");
    for h in heads {
        let class = if h.is_empty() { "" } else { " class=\"sortable\"" };
        let _ = write!(b, "<th{class}>{h}</th>");
    }
    b.push_str("</tr></thead><tbody>");
    for e in &entries {
        let c = &e.commit;
        let run_link = format!("<a href=\"{}\">{}</a>", paths::run(&e.id), e.id.short());
        let compare = match c.parents.first() {
            Some(parent) => format!(
                "<a href=\"{}\" title=\"compare with the previous commit\">vs parent</a>",
                paths::compare(parent, &e.id, 1)
            ),
            None => String::new(),
        };
        let lead = format!(
            "<td class=\"mono\">{run_link}</td><td>{}</td><td>{}</td><td class=\"run-name\">{}</td>\
             <td>{}</td><td>{}</td>",
            esc(&c.time),
            esc(&c.run_id),
            esc(c.name.as_deref().unwrap_or("")),
            esc(&e.refs.join(" ")),
            esc(c.status.as_deref().unwrap_or("–")),
        );
        let status = esc(c.status.as_deref().unwrap_or(""));
        if c.summary.trials.is_empty() {
            let _ = write!(
                b,
                "<tr data-status=\"{status}\">{lead}<td class=\"muted\">(no results)</td>\
                 <td></td><td></td><td></td><td></td><td></td><td></td>{}<td>{}</td><td>{compare}</td></tr>",
                num_cell(&usd(c.summary.usd), c.summary.usd),
                esc(&c.message)
            );
        }
        for t in &c.summary.trials {
            let acc = |k: &str| t.conditions.get(k).and_then(|c| c.accuracy);
            let n = t.conditions.values().filter_map(|c| c.n).max();
            let _ = write!(
                b,
                "<tr data-status=\"{status}\">{lead}<td><a href=\"{}\">{}</a></td>{}{}{}{}{}{}{}<td>{}</td><td>{compare}</td></tr>",
                paths::trial(&e.id, &t.slug, Filter::All, 1),
                esc(&t.slug),
                num_cell(&n.map(|n| n.to_string()).unwrap_or("–".into()), n.map(|n| n as f64)),
                num_cell(&pct(acc("control")), acc("control")),
                num_cell(&pct(acc("treatment")), acc("treatment")),
                num_cell(&pp(t.effect), t.effect),
                num_cell(&p(t.p_value), t.p_value),
                num_cell(&p(t.holm_p), t.holm_p),
                num_cell(&usd(t.usd), t.usd),
                esc(&c.message),
            );
        }
    }
    b.push_str("</tbody></table>");
    if entries.is_empty() {
        b.push_str(
            "<p>No runs yet: <code>exp run --config config/eval_config.yaml --archive</code> \
             stores one.</p>",
        );
    }
    Ok(html::frame("history", 0, &[], &b))
}

fn commit_meta(b: &mut String, id: &ObjectId, c: &Commit, depth: usize) {
    let _ = write!(
        b,
        "<dl class=\"meta\"><dt>commit</dt><dd class=\"mono\">{}</dd><dt>run</dt><dd>{}</dd>\
         {}<dt>status</dt><dd>{}</dd><dt>time</dt><dd>{}</dd><dt>message</dt><dd>{}</dd>",
        id.to_hex(),
        esc(&c.run_id),
        c.name
            .as_deref()
            .map(|n| format!("<dt>name</dt><dd id=\"run-name\">{}</dd>", esc(n)))
            .unwrap_or_default(),
        esc(c.status.as_deref().unwrap_or("–")),
        esc(&c.time),
        esc(&c.message)
    );
    for parent in &c.parents {
        let _ = write!(
            b,
            "<dt>parent</dt><dd class=\"mono\"><a href=\"{r}{}\">{}</a> \
             (<a href=\"{r}{}\">compare</a>)</dd>",
            paths::run(parent),
            parent.short(),
            paths::compare(parent, id, 1),
            r = root(depth)
        );
    }
    if let Some(pv) = &c.provenance
        && let Some(g) = &pv.git_commit
    {
        let _ = write!(
            b,
            "<dt>code</dt><dd class=\"mono\">git {}{}</dd>",
            esc(g),
            if pv.dirty { " (dirty)" } else { "" }
        );
    }
    b.push_str("</dl>");
}

/// A run as a title names it: its name (`exp run --name`) and id, or the id alone.
fn run_label(c: &Commit) -> String {
    match &c.name {
        Some(name) => format!("{name} ({})", c.run_id),
        None => c.run_id.clone(),
    }
}

/// Charts of a run (forest plot, accuracy, cost against accuracy), as figures.
fn charts_html(run: &Run) -> String {
    if run.agg.trials.iter().all(|t| t.sig.is_none()) {
        return "<p class=\"muted\">No statistics in this run (no significance.json): no charts.</p>"
            .into();
    }
    let mut out = String::new();
    for (id, drawn) in [
        ("forest", charts::forest(&run.agg)),
        ("accuracy", charts::accuracy(&run.agg)),
        ("cost-accuracy", charts::cost(&run.agg)),
    ] {
        match drawn {
            Ok(c) => out.push_str(&figure(id, &c.title, &c.caption, &c.svg)),
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"err\">The {id} chart could not be drawn: {}</p>",
                    esc(&e)
                );
            }
        }
    }
    out
}

/// One trial's statistics row cells: n, both conditions with CIs, effect with CI, p, Holm p,
/// costs.
fn trial_cells(t: &AggTrial) -> String {
    let sig = t.sig.as_ref();
    let cond = |c: &str| sig.and_then(|s| s.conditions.get(c));
    let level = |c: &str| {
        let s = cond(c);
        let m = s.and_then(|s| s.mean);
        format!(
            "<td class=\"num\">{} <span class=\"muted\">{}</span></td>",
            pct(m),
            ci_pct(s.and_then(|s| s.ci))
        )
    };
    // The headline effect and the interval inverting its test (format 1 files have neither:
    // their normal interval was the headline then).
    let head = sig.and_then(|s| s.headline.as_ref());
    let diff = sig.and_then(|s| s.difference.as_ref());
    let effect_ci = match head {
        Some(h) => h.ci,
        None => diff.and_then(|d| d.ci),
    };
    let cost = |c: &str| t.costs.as_ref().and_then(|k| k.conditions.get(c)).and_then(|l| l.usd);
    format!(
        "{}{}{}<td class=\"num\">{} <span class=\"muted\">{}</span></td>{}{}{}{}{}",
        num_cell(
            &sig.map(|s| s.n_items.to_string()).unwrap_or("–".into()),
            sig.map(|s| s.n_items as f64)
        ),
        level("control"),
        level("treatment"),
        pp(sig.and_then(|s| s.effect).or(diff.map(|d| d.mean))),
        ci_pct(effect_ci),
        num_cell(&p(sig.and_then(|s| s.p_value)), sig.and_then(|s| s.p_value)),
        num_cell(&p(t.holm_p), t.holm_p),
        num_cell(&usd(cost("control")), cost("control")),
        num_cell(&usd(cost("treatment")), cost("treatment")),
        num_cell(&usd(t.usd()), t.usd()),
    )
}

/// A run: its commit, a row per trial with the statistics, the charts, config and prompts.
pub(crate) fn run(site: &Site, id: &ObjectId) -> Result<String> {
    let run = read::run(&site.repo, id)?;
    let depth = 2;
    let mut b = String::new();
    let _ = write!(b, "<h1>Run {}</h1>", esc(&run_label(&run.commit)));
    commit_meta(&mut b, id, &run.commit, depth);
    b.push_str(
        "<h2>Trials</h2><table class=\"trials\"><thead><tr><th>trial</th><th>model</th>\
         <th>prompt set</th><th>items</th><th>control [95% CI]</th><th>treatment [95% CI]</th>\
         <th>effect [95% CI]</th><th>p</th><th>Holm p</th><th>cost control</th>\
         <th>cost treatment</th><th>cost</th></tr></thead><tbody>",
    );
    for t in &run.agg.trials {
        let _ = write!(
            b,
            // Relative to run/<id>/: the trial pages sit below it.
            "<tr><td><a href=\"{}/{}/1.html\">{}</a></td><td>{}</td><td>{}</td>{}</tr>",
            url_value(&t.slug),
            Filter::All.as_str(),
            esc(&t.slug),
            esc(t.model.as_deref().unwrap_or("–")),
            esc(t.prompt_set.as_deref().unwrap_or("–")),
            trial_cells(t)
        );
    }
    b.push_str("</tbody></table>");
    if run.agg.trials.is_empty() {
        b.push_str("<p class=\"muted\">This run has no trials with results.</p>");
    }
    b.push_str("<h2>Charts</h2>");
    b.push_str(&charts_html(&run));
    if let Some(config) = read::config_text(&site.repo, &run.commit, &run.files)? {
        let _ = write!(
            b,
            "<h2>Config</h2><details><summary>resolved config</summary><pre>{}</pre></details>",
            esc(&config)
        );
    }
    let prompts = read::prompts(&site.repo, &run.commit)?;
    if !prompts.is_empty() {
        b.push_str("<h2>Prompts</h2>");
        for (path, text) in &prompts {
            let _ = write!(
                b,
                "<details><summary class=\"mono\">{}</summary><pre>{}</pre></details>",
                esc(path),
                esc(text)
            );
        }
    }
    let trail = [("index.html".to_string(), format!("run {}", esc(&run.commit.run_id)))];
    Ok(html::frame(&format!("run {}", run.commit.run_id), depth, &trail, &b))
}

/// One condition's answer, for an item card.
fn answer_html(b: &mut String, condition: &str, row: &ItemRow) {
    let _ = write!(b, "<div class=\"side {0}\"><h3>{0}</h3>", esc(condition));
    match row.answer(condition) {
        None => b.push_str("<p class=\"muted\">no row for this condition</p>"),
        Some(a) => {
            let score = match a.score {
                Some(s) if s >= 1.0 => format!("<span class=\"ok\">score {s}</span>"),
                Some(s) => format!("<span class=\"wrong\">score {s}</span>"),
                None => "<span class=\"err\">not scored</span>".to_string(),
            };
            let _ = write!(
                b,
                "<div>{score} · prediction <code>{}</code></div>",
                esc(if a.prediction.is_empty() { "–" } else { &a.prediction })
            );
            if let Some(raw) = &a.raw {
                let _ = write!(b, "<pre class=\"output\">{}</pre>", esc(raw));
            }
            let _ = write!(
                b,
                "<div class=\"facts\">tokens {} in / {} out{} · latency {} ms{}</div>",
                esc(or_dash(&a.input_tokens)),
                esc(or_dash(&a.output_tokens)),
                reasoning_share(&a.reasoning_tokens),
                esc(or_dash(&a.latency_ms)),
                if a.finish_reason.is_empty() {
                    String::new()
                } else {
                    format!(" · finish {}", esc(&a.finish_reason))
                }
            );
            if !a.error.is_empty() {
                let _ = write!(b, "<div class=\"err\">error: {}</div>", esc(&a.error));
            }
        }
    }
    b.push_str("</div>");
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "–" } else { s }
}

/// " (N reasoning)" after the output tokens when a reasoning model spent any; nothing for a
/// model that does not reason (or a file from before the column).
fn reasoning_share(tokens: &str) -> String {
    match tokens {
        "" | "0" => String::new(),
        n => format!(" ({} reasoning)", esc(n)),
    }
}

/// An item card: id, gold, the input, then control and treatment side by side.
fn item_html(b: &mut String, row: &ItemRow, badge: Option<&str>) {
    let _ = write!(
        b,
        "<article class=\"item\"><div class=\"head\"><span class=\"id mono\">{}</span>\
         <span class=\"muted\">{}{}</span><span>gold <code>{}</code></span>{}</div>",
        esc(&row.item),
        esc(&row.dataset),
        if row.repeat > 0 { format!(" · repeat {}", row.repeat) } else { String::new() },
        esc(&row.gold),
        badge.map(|bd| format!("<span class=\"badge {bd}\">{bd}</span>")).unwrap_or_default()
    );
    if let Some(input) = &row.input {
        let _ = write!(b, "<div class=\"input\"><pre>{}</pre></div>", esc(input));
    }
    b.push_str("<div class=\"sides\">");
    for (c, _) in &row.answers {
        answer_html(b, c, row);
    }
    b.push_str("</div></article>");
}

fn badge_of(row: &ItemRow) -> Option<&'static str> {
    if Filter::Fixed.matches(row) {
        Some("fixed")
    } else if Filter::Broken.matches(row) {
        Some("broken")
    } else if Filter::Errors.matches(row) {
        Some("error")
    } else {
        None
    }
}

/// One trial's items, filtered, searched, paged.
pub(crate) fn trial(
    site: &Site,
    id: &ObjectId,
    slug: &str,
    filter: Filter,
    page: u64,
    q: &str,
) -> Result<String> {
    let run = read::run(&site.repo, id)?;
    let files = run.trial(slug)?;
    let items = items::page(&site.repo, id, files, filter, page, q)?;
    trial_html(site, &run, slug, filter, page, q, &items)
}

/// The page of a trial's items once they are read (the export reads them once for all pages).
pub(crate) fn trial_html(
    site: &Site,
    run: &Run,
    slug: &str,
    filter: Filter,
    page: u64,
    q: &str,
    items: &ItemsPage,
) -> Result<String> {
    let agg = run.agg.trials.iter().find(|t| t.slug == slug);
    let total = items.count(filter);
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    if page > pages {
        return Err(Error::not_found(format!(
            "page {page} of the {} items ({pages} pages)",
            filter.as_str()
        )));
    }
    let depth = 4;
    let keep_q = if q.is_empty() { String::new() } else { format!("?q={}", url_value(q)) };
    let mut b = String::new();
    let _ = write!(b, "<h1>Trial {}</h1>", esc(slug));
    if let Some(t) = agg {
        b.push_str(
            "<table class=\"trials\"><thead><tr><th>items</th><th>control [95% CI]</th>\
             <th>treatment [95% CI]</th><th>effect [95% CI]</th><th>p</th><th>Holm p</th>\
             <th>cost control</th><th>cost treatment</th><th>cost</th></tr></thead><tbody><tr>",
        );
        b.push_str(&trial_cells(t));
        b.push_str("</tr></tbody></table>");
    }
    if !items.has_scores {
        b.push_str("<p class=\"muted\">This trial has no per-item scores to list.</p>");
    }
    b.push_str("<nav class=\"filters\" aria-label=\"filters\">");
    for f in Filter::EVERY {
        let current = if f == filter { " aria-current=\"page\"" } else { "" };
        let _ = write!(
            b,
            "<a href=\"../{}/1.html{keep_q}\" data-filter=\"{}\"{current}>{}<span class=\"n\">{}</span></a>",
            f.as_str(),
            f.as_str(),
            f.label(),
            items.count(f)
        );
    }
    b.push_str("</nav>");
    if !site.static_site {
        let _ = write!(
            b,
            "<form class=\"controls\" method=\"get\" action=\"1.html\" role=\"search\">\
             <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"search id, input, outputs\" \
             aria-label=\"search items\"><button type=\"submit\">search</button>{}</form>",
            esc(q),
            if q.is_empty() { String::new() } else { "<a href=\"1.html\">clear</a>".into() }
        );
    }
    let pager = pager_html(page, pages, total, &keep_q);
    b.push_str(&pager);
    let _ = write!(b, "<div id=\"items\" data-filter=\"{}\">", filter.as_str());
    for row in &items.rows {
        item_html(&mut b, row, badge_of(row));
    }
    b.push_str("</div>");
    if items.rows.is_empty() && items.has_scores {
        b.push_str("<p class=\"muted\" id=\"no-items\">No item matches.</p>");
    }
    b.push_str(&pager);
    let trail = vec![
        ("../../index.html".to_string(), format!("run {}", esc(&run.commit.run_id))),
        ("1.html".to_string(), esc(slug)),
    ];
    Ok(html::frame(&format!("{slug} · {}", filter.as_str()), depth, &trail, &b))
}

fn pager_html(page: u64, pages: u64, total: u64, keep_q: &str) -> String {
    let mut s = String::from("<nav class=\"pager\">");
    if page > 1 {
        let _ = write!(s, "<a href=\"{}.html{keep_q}\" rel=\"prev\">← previous</a>", page - 1);
    }
    let _ = write!(s, "<span>page {page} of {pages} · {total} items</span>");
    if page < pages {
        let _ = write!(s, "<a href=\"{}.html{keep_q}\" rel=\"next\">next →</a>", page + 1);
    }
    s.push_str("</nav>");
    s
}

/// Two runs compared: config and prompt text diffs, metrics of both with the between-run test
/// per trial, and the items that flipped with both transcripts.
pub(crate) fn compare(site: &Site, a: &ObjectId, b_id: &ObjectId, page: u64) -> Result<String> {
    let (ra, rb) = (read::run(&site.repo, a)?, read::run(&site.repo, b_id)?);
    let (hex_a, hex_b) = (a.to_hex(), b_id.to_hex());
    let d = diff::store::diff_revs(
        &site.repo,
        Some(hex_a.as_str()),
        Some(hex_b.as_str()),
        &diff::Options { items: false },
    )?;
    let depth = 3;
    let r = root(depth);
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Compare <a href=\"{r}{}\">{}</a> → <a href=\"{r}{}\">{}</a></h1>",
        paths::run(a),
        esc(&run_label(&ra.commit)),
        paths::run(b_id),
        esc(&run_label(&rb.commit))
    );
    let _ = write!(
        b,
        "<dl class=\"meta\"><dt>A</dt><dd class=\"mono\">{} · {} · {}</dd><dt>B</dt>\
         <dd class=\"mono\">{} · {} · {}</dd></dl>",
        a.short(),
        esc(&ra.commit.time),
        esc(&ra.commit.message),
        b_id.short(),
        esc(&rb.commit.time),
        esc(&rb.commit.message)
    );
    if d.identical {
        b.push_str("<p>The two runs hold the same files.</p>");
    }
    config_section(&mut b, &d);
    prompt_section(&mut b, site, &ra.commit, &rb.commit)?;
    metrics_section(&mut b, &d);
    if ra.agg.trials.iter().chain(&rb.agg.trials).any(|t| t.sig.is_some()) {
        let runs = [
            (format!("A {} {}", ra.commit.run_id, a.short()), &ra.agg),
            (format!("B {} {}", rb.commit.run_id, b_id.short()), &rb.agg),
        ];
        match charts::forest_runs(&runs) {
            Ok(c) => b.push_str(&figure("forest-compare", &c.title, &c.caption, &c.svg)),
            Err(e) => {
                let _ = write!(
                    b,
                    "<p class=\"err\">The forest plot could not be drawn: {}</p>",
                    esc(&e)
                );
            }
        }
    }
    flips_section(&mut b, site, &ra, &rb, &d, page)?;
    if !d.lacks.is_empty() {
        b.push_str("<h2>Not compared</h2><ul>");
        for l in &d.lacks {
            let _ = write!(
                b,
                "<li>{}: {}{} — {}</li>",
                l.side,
                esc(&l.what),
                l.trial.as_deref().map(|t| format!(" ({})", esc(t))).unwrap_or_default(),
                esc(&l.detail)
            );
        }
        b.push_str("</ul>");
    }
    let title = format!("compare {} → {}", ra.commit.run_id, rb.commit.run_id);
    Ok(html::frame(&title, depth, &[("1.html".into(), esc(&title))], &b))
}

fn config_section(b: &mut String, d: &RunDiff) {
    b.push_str("<h2>Config</h2>");
    let keys: Vec<_> = d.config.iter().filter(|c| !c.key.starts_with("config/prompts/")).collect();
    if keys.is_empty() {
        b.push_str("<p class=\"muted\">No config key differs.</p>");
        return;
    }
    b.push_str(
        "<table class=\"config\"><thead><tr><th>key</th><th>A</th><th>B</th></tr></thead><tbody>",
    );
    for c in keys {
        let _ = write!(
            b,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            esc(&c.key),
            esc(c.old.as_deref().unwrap_or("–")),
            esc(c.new.as_deref().unwrap_or("–"))
        );
    }
    b.push_str("</tbody></table>");
}

fn prompt_section(b: &mut String, site: &Site, ca: &Commit, cb: &Commit) -> Result<()> {
    let (pa, pb) = (read::prompts(&site.repo, ca)?, read::prompts(&site.repo, cb)?);
    let mut names: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    names.sort();
    names.dedup();
    b.push_str("<h2>Prompts</h2>");
    let mut any = false;
    for name in names {
        let (x, y) = (pa.get(name).map(String::as_str), pb.get(name).map(String::as_str));
        if x == y {
            continue;
        }
        any = true;
        let _ = write!(b, "<h3 class=\"mono\">{}</h3><div class=\"diff mono\">", esc(name));
        for (op, line) in textdiff::lines(x.unwrap_or(""), y.unwrap_or("")) {
            let class = match op {
                textdiff::Op::Same => "same",
                textdiff::Op::Added => "add",
                textdiff::Op::Removed => "del",
            };
            let mark = match op {
                textdiff::Op::Same => ' ',
                textdiff::Op::Added => '+',
                textdiff::Op::Removed => '-',
            };
            let _ = write!(b, "<span class=\"{class}\">{mark} {}</span>", esc(line));
        }
        b.push_str("</div>");
    }
    if !any {
        b.push_str("<p class=\"muted\">The prompt files are the same.</p>");
    }
    Ok(())
}

fn metrics_section(b: &mut String, d: &RunDiff) {
    b.push_str(
        "<h2>Trials</h2><table class=\"metrics\"><thead><tr><th>trial</th><th>condition</th>\
         <th>A</th><th>B</th><th>change</th><th>items paired</th><th>fixed</th><th>broken</th>\
         <th>p (A vs B)</th><th>test</th></tr></thead><tbody>",
    );
    for m in &d.metrics {
        let paired = d.paired.iter().find(|p| p.trial == m.trial && p.condition == m.condition);
        let acc = |x: &Option<crate::runfiles::headline::CondMetrics>| {
            x.as_ref().and_then(|c| c.accuracy)
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td>{}{}{}{}{}{}{}<td class=\"muted\">{}</td></tr>",
            esc(&m.trial),
            esc(&m.condition),
            num_cell(&pct(acc(&m.a)), acc(&m.a)),
            num_cell(&pct(acc(&m.b)), acc(&m.b)),
            num_cell(&pp(m.accuracy_change), m.accuracy_change),
            num_cell(&paired.map(|p| p.paired.to_string()).unwrap_or("–".into()), None),
            num_cell(&paired.map(|p| p.fixed.to_string()).unwrap_or("–".into()), None),
            num_cell(&paired.map(|p| p.broken.to_string()).unwrap_or("–".into()), None),
            num_cell(&p(paired.and_then(|p| p.p_value)), None),
            esc(&paired
                .map(|p| p.not_computed.clone().unwrap_or_else(|| p.method.to_string()))
                .unwrap_or_default()),
        );
    }
    b.push_str("</tbody></table>");
    if d.metrics.is_empty() {
        b.push_str("<p class=\"muted\">No trial has results on both sides.</p>");
    }
    for (label, list) in [("only in A", &d.trials.only_a), ("only in B", &d.trials.only_b)] {
        if !list.is_empty() {
            let _ = write!(b, "<p>Trials {label}: {}</p>", esc(&list.join(", ")));
        }
    }
}

/// A row (item and repeat) whose score in one condition changed between the runs.
struct Flip {
    trial: String,
    condition: String,
    key: items::Key,
    change: &'static str,
}

/// The flipped items on this page, each with both runs' transcripts. Both runs' scores are
/// streamed side by side (pairs of trials in turn), counting every flip and keeping this
/// page's; then the texts of just those rows are read.
fn flips_section(
    b: &mut String,
    site: &Site,
    ra: &Run,
    rb: &Run,
    d: &RunDiff,
    page: u64,
) -> Result<()> {
    let skip = (page - 1) * PAGE_SIZE;
    let mut total = 0u64;
    let mut shown: Vec<Flip> = Vec::new();
    // The shown rows of each side, by (trial, item), with their texts once read.
    let mut rows_a: HashMap<(String, items::Key), ItemRow> = HashMap::new();
    let mut rows_b: HashMap<(String, items::Key), ItemRow> = HashMap::new();
    for pair in d.trials.paired.iter().filter(|p| !p.unchanged) {
        let (ta, tb) = (ra.trial(&pair.a)?, rb.trial(&pair.b)?);
        let (mut page_a, mut page_b) = (Vec::new(), Vec::new());
        items::scan_runs(&site.repo, ta, tb, |row_a, row_b| {
            let finite = |s: Option<f64>| s.filter(|s| s.is_finite());
            let mut on_page = false;
            for (c, x) in &row_a.answers {
                let y = row_b.answer(c).and_then(|y| finite(y.score));
                let (Some(sa), Some(sb)) = (finite(x.score), y) else { continue };
                if sa == sb {
                    continue;
                }
                total += 1;
                if total > skip && total <= skip + PAGE_SIZE {
                    on_page = true;
                    shown.push(Flip {
                        trial: pair.name.clone(),
                        condition: c.clone(),
                        key: row_a.key(),
                        change: if sb > sa { "fixed" } else { "broken" },
                    });
                }
            }
            if on_page {
                page_a.push(row_a);
                page_b.push(row_b);
            }
            ControlFlow::Continue(())
        })?;
        items::fill_texts(&site.repo, &ra.id, ta, &mut page_a)?;
        items::fill_texts(&site.repo, &rb.id, tb, &mut page_b)?;
        rows_a.extend(page_a.into_iter().map(|r| ((pair.name.clone(), r.key()), r)));
        rows_b.extend(page_b.into_iter().map(|r| ((pair.name.clone(), r.key()), r)));
    }
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    if page > pages {
        return Err(Error::not_found(format!("page {page} of the flipped items")));
    }
    let _ = write!(
        b,
        "<h2 id=\"flips\">Flipped items <span class=\"muted\">({total}: scored differently in \
         the two runs)</span></h2>"
    );
    let pager = pager_html(page, pages, total, "");
    if total > PAGE_SIZE {
        b.push_str(&pager);
    }
    b.push_str("<div id=\"flipped\">");
    for f in &shown {
        let at = (f.trial.clone(), f.key.clone());
        let (row_a, row_b) = (rows_a.get(&at), rows_b.get(&at));
        let (dataset, item, _) = &f.key;
        let gold = row_b.or(row_a).map(|r| r.gold.as_str()).unwrap_or_default();
        let _ = write!(
            b,
            "<article class=\"item flip\" data-item=\"{}\"><div class=\"head\"><span class=\"id mono\">{}</span>\
             <span class=\"muted\">{} · {} · {}</span><span>gold <code>{}</code></span>\
             <span class=\"badge {}\">{}</span></div>",
            esc(item),
            esc(item),
            esc(&f.trial),
            esc(&f.condition),
            esc(dataset),
            esc(gold),
            f.change,
            f.change
        );
        if let Some(input) = row_a.or(row_b).and_then(|r| r.input.as_deref()) {
            let _ = write!(b, "<div class=\"input\"><pre>{}</pre></div>", esc(input));
        }
        b.push_str("<div class=\"sides\">");
        for (side, row, run) in [("A", row_a, ra), ("B", row_b, rb)] {
            let answer = row.and_then(|r| r.answer(&f.condition));
            let _ = write!(
                b,
                "<div class=\"side {}\"><h3>{side}: {} ({})</h3><div>prediction <code>{}</code>{}</div>",
                if side == "A" { "control" } else { "treatment" },
                esc(&run.commit.run_id),
                esc(&f.condition),
                esc(answer.map(|a| a.prediction.as_str()).unwrap_or("–")),
                answer.and_then(|a| a.score).map(|s| format!(" · score {s}")).unwrap_or_default()
            );
            if let Some(raw) = answer.and_then(|a| a.raw.as_deref()) {
                let _ = write!(b, "<pre class=\"output\">{}</pre>", esc(raw));
            }
            b.push_str("</div>");
        }
        b.push_str("</div></article>");
    }
    b.push_str("</div>");
    if total > PAGE_SIZE {
        b.push_str(&pager);
    }
    Ok(())
}

/// A 404 or 500 page.
pub(crate) fn error_page(status: u16, e: &Error, depth: usize) -> Vec<u8> {
    let title = if status == 404 { "Not found" } else { "Cannot show this page" };
    let hint =
        e.hint().map(|h| format!("<p class=\"muted\">hint: {}</p>", esc(&h))).unwrap_or_default();
    let body = format!(
        "<div class=\"error-page\"><div class=\"code\">{status}</div><h1>{title}</h1><p>{}</p>{hint}\
         <p><a href=\"{}index.html\">all runs</a></p></div>",
        esc(&e.to_string()),
        root(depth)
    );
    html::frame(title, depth, &[], &body).into_bytes()
}
