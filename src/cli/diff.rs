use std::fmt::Write;
use std::io::IsTerminal;

use clap::Args;

use super::{Context, ui};
use exp::diff::{self, RunDiff};
use exp::display::{
    MISSING, confidence, count, or_missing, p_value, percent, plural, points, points_range, usd,
    usd_change,
};

/// Compare two runs: config, trials, metrics, a paired test between the runs, costs, files
///
/// Works on commits (no checkout needed). With one revision, compares it with its parent; with
/// none, compares the workspace copy of the run HEAD names with HEAD. Each section appears only
/// when it has something to say; a run lacking results (batch inputs only) is compared for what
/// it has, and the "not compared" section says what it lacks.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp diff t0_r20250818 t1_r20250821          # two imported legacy runs\n  exp diff runs/20251127-130501 --items       # a run against its parent, flipped items listed\n  exp diff A B --stat --exit-code             # files like `git diff --stat`; exit 1 if they differ\n  exp diff A B --json | jq .paired            # everything, for scripts\n\nOld script: compare_runs.py --run1 A --run2 B  ->  exp diff A B"
)]
pub struct DiffArgs {
    /// The old side: a run id, tag, `runs/ID`, hex prefix, `HEAD~1`, … (given alone: the commit to
    /// compare with its parent)
    #[arg(value_name = "REF1", add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev1: Option<String>,
    /// The new side
    #[arg(value_name = "REF2", add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev2: Option<String>,
    /// Same as REF1, as the old script spelled it
    #[arg(long = "run1", conflicts_with = "rev1", hide = true, add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub run1: Option<String>,
    /// Same as REF2, as the old script spelled it
    #[arg(long = "run2", conflicts_with = "rev2", hide = true, add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub run2: Option<String>,
    /// Everything as JSON, for scripts
    #[arg(long)]
    pub json: bool,
    /// List the changed files with their sizes, like `git diff --stat`
    #[arg(long)]
    pub stat: bool,
    /// List the flipped items: id, gold, both predictions
    #[arg(long)]
    pub items: bool,
    /// Exit 1 when the runs differ, 0 when they are the same (like `git diff --exit-code`)
    #[arg(long)]
    pub exit_code: bool,
}

pub fn run(ctx: &Context, args: &DiffArgs) -> super::Result<()> {
    let rev1 = args.rev1.clone().or_else(|| args.run1.clone());
    let rev2 = args.rev2.clone().or_else(|| args.run2.clone());
    let repo = exp::store::Repo::locate(ctx.repo.as_deref(), &std::env::current_dir()?)?;
    let opts = diff::Options { items: args.items };
    let d = exp::diff::store::diff_revs(&repo, rev1.as_deref(), rev2.as_deref(), &opts)?;
    if args.json {
        ui::print_json(ui::Schema::DIFF, &d)?;
    } else {
        ui::out!("{}", render(&d, args.stat, args.items))?;
    }
    if args.exit_code && !d.identical {
        return Err(super::SilentExit(1).into());
    }
    Ok(())
}

/// `a → b` for a value shown from both runs, `—` on the side that lacks it: every column of the
/// metrics and costs tables reads the same way.
fn before_after<T>(a: &Option<T>, b: &Option<T>, show: impl Fn(&T) -> String) -> String {
    let side = |x: &Option<T>| x.as_ref().map(&show).unwrap_or_else(|| MISSING.into());
    format!("{} → {}", side(a), side(b))
}

/// The human rendering: sections only when they have something.
fn render(d: &RunDiff, stat: bool, items: bool) -> String {
    let mut o = String::new();
    let head = |s: &diff::Side| match &s.commit {
        Some(c) => format!("{} ({})", s.label, &c[..c.len().min(12)]),
        None => s.label.clone(),
    };
    let _ = writeln!(o, "diff {} → {}", head(&d.a), head(&d.b));
    if d.identical {
        let _ = writeln!(o, "\nNo differences: both sides hold the same files.");
        return o;
    }
    config_section(&mut o, d);
    trials_section(&mut o, d);
    metrics_section(&mut o, d);
    paired_section(&mut o, d);
    effect_changes_section(&mut o, d);
    costs_section(&mut o, d);
    if !d.lacks.is_empty() {
        let _ = writeln!(o, "\nNot compared (one side lacks it)");
        for l in &d.lacks {
            let side = if l.side == "a" { &d.a.label } else { &d.b.label };
            let trial = l.trial.as_ref().map(|t| format!("{t}: ")).unwrap_or_default();
            let _ = writeln!(o, "  {side}: {trial}{}: {}", l.what, l.detail);
        }
    }
    if items {
        items_section(&mut o, d);
    }
    files_section(&mut o, d, stat);
    o
}

fn config_section(o: &mut String, d: &RunDiff) {
    if d.config.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nConfiguration");
    for c in &d.config {
        let (old, new) = (c.old.as_deref().unwrap_or(""), c.new.as_deref().unwrap_or(""));
        let line = match c.change {
            diff::config::ChangeKind::Changed => format!("  ~ {}: {old} -> {new}", c.key),
            diff::config::ChangeKind::Added => format!("  + {}: {new}", c.key),
            diff::config::ChangeKind::Removed => format!("  - {}: {old}", c.key),
        };
        let _ = writeln!(o, "{}", clip(&line, 160));
    }
}

/// Trials compared by parameters (their names differ), trials on one side only, unchanged ones.
fn trials_section(o: &mut String, d: &RunDiff) {
    let renamed: Vec<_> = d.trials.paired.iter().filter(|t| t.matched_by == "parameters").collect();
    let unchanged = d.trials.paired.iter().filter(|t| t.unchanged).count() as u64;
    if renamed.is_empty()
        && d.trials.only_a.is_empty()
        && d.trials.only_b.is_empty()
        && unchanged == 0
    {
        return;
    }
    let _ = writeln!(o, "\nTrials");
    for t in &renamed {
        let changes: Vec<String> =
            t.changes.iter().map(|c| format!("{} {} -> {}", c.key, c.a, c.b)).collect();
        let _ = writeln!(
            o,
            "  = {}  (compared by parameters: {})",
            t.name,
            if changes.is_empty() { "none differ".into() } else { changes.join(", ") }
        );
    }
    for t in &d.trials.only_a {
        let _ = writeln!(o, "  - {t}  (only in {})", d.a.label);
    }
    for t in &d.trials.only_b {
        let _ = writeln!(o, "  + {t}  (only in {})", d.b.label);
    }
    if unchanged > 0 {
        let _ = writeln!(o, "  {} unchanged", plural(unchanged, "trial"));
    }
}

fn metrics_section(o: &mut String, d: &RunDiff) {
    if d.metrics.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nMetrics ({} → {})", d.a.label, d.b.label);
    let mut t =
        ui::table(["trial", "condition", "n", "failed", "accuracy", "change"]).cut(["trial"]);
    for r in &d.metrics {
        t.add_row([
            r.trial.clone(),
            r.condition.clone(),
            before_after(&r.a, &r.b, |m| count(m.n)),
            before_after(&r.a, &r.b, |m| count(m.failed)),
            before_after(&r.a, &r.b, |m| or_missing(m.accuracy, percent)),
            r.accuracy_change.map(points).unwrap_or_default(),
        ]);
    }
    let _ = writeln!(o, "{t}");
}

/// `+1.2 pp [-0.3, +2.7]`, or what there is of it.
fn change_ci(change: Option<f64>, ci: Option<[f64; 2]>) -> String {
    let mut s = change.map(points).unwrap_or_default();
    if let Some([lo, hi]) = ci {
        s.push_str(&format!(" [{}]", points_range(lo, hi)));
    }
    s
}

/// "change (95% CI)" at the runs' own α.
fn change_header(d: &RunDiff) -> String {
    format!("change ({} CI)", confidence(d.significance.alpha))
}

fn paired_section(o: &mut String, d: &RunDiff) {
    if d.paired.is_empty() {
        return;
    }
    let s = &d.significance;
    let from = match s.from {
        "default" => "the default".to_string(),
        side => format!("from {}'s config", if side == "a" { &d.a.label } else { &d.b.label }),
    };
    let _ = writeln!(
        o,
        "\nPaired test between the runs (items scored in both, repeats averaged; fixed = wrong → right; α = {}, {from})",
        s.alpha
    );
    let header = change_header(d);
    let mut t = ui::table([
        "trial",
        "condition",
        "items paired",
        "fixed",
        "broken",
        header.as_str(),
        "p",
        "test / note",
    ])
    .cut(["trial", "test / note"]);
    for r in &d.paired {
        t.add_row([
            r.trial.clone(),
            r.condition.clone(),
            count(r.paired),
            count(r.fixed),
            count(r.broken),
            change_ci(r.change, r.ci),
            or_missing(r.p_value, p_value),
            r.not_computed.clone().or_else(|| r.test.clone()).unwrap_or_default(),
        ]);
    }
    let _ = writeln!(o, "{t}");
}

/// How much the treatment effect moved between the runs, per trial.
fn effect_changes_section(o: &mut String, d: &RunDiff) {
    if d.effect_changes.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\nChange in the treatment effect (treatment − control in {} minus in {})",
        d.b.label, d.a.label
    );
    let header = change_header(d);
    let mut t = ui::table(["trial", "items", "effect", header.as_str(), "p", "test"]);
    for r in &d.effect_changes {
        t.add_row([
            r.trial.clone(),
            count(r.items as u64),
            format!("{} → {}", points(r.effect_a), points(r.effect_b)),
            change_ci(Some(r.change), r.ci),
            p_value(r.p_value),
            r.test.clone(),
        ]);
    }
    let _ = writeln!(o, "{t}");
}

fn costs_section(o: &mut String, d: &RunDiff) {
    if d.costs.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nCosts ({} → {})", d.a.label, d.b.label);
    let mut t = ui::table([
        "trial",
        "scope",
        "input tokens",
        "output tokens",
        "USD",
        "change",
        "USD per correct",
    ])
    .cut(["trial"]);
    for r in &d.costs {
        t.add_row([
            r.trial.clone(),
            r.scope.clone(),
            before_after(&r.a, &r.b, |c| count(c.input_tokens)),
            before_after(&r.a, &r.b, |c| count(c.output_tokens)),
            before_after(&r.a, &r.b, |c| usd(c.usd)),
            r.usd_change.map(usd_change).unwrap_or_default(),
            before_after(&r.a, &r.b, |c| or_missing(c.usd_per_correct, usd)),
        ]);
    }
    let _ = writeln!(o, "{t}");
}

/// `--items`: every item whose score changed between the runs.
fn items_section(o: &mut String, d: &RunDiff) {
    if d.items.is_empty() {
        let _ = writeln!(o, "\nFlipped items: none");
        return;
    }
    let _ = writeln!(o, "\nFlipped items");
    let (a, b) = (d.a.label.as_str(), d.b.label.as_str());
    let mut t =
        ui::table(["trial", "condition", "item", "gold", a, b, "change"]).cut(["trial", a, b]);
    for i in &d.items {
        let item =
            if i.dataset.is_empty() { i.item.clone() } else { format!("{}:{}", i.dataset, i.item) };
        let item = if i.repeat > 0 { format!("{item} r{}", i.repeat) } else { item };
        t.add_row([
            i.trial.clone(),
            i.condition.clone(),
            item,
            i.gold.clone(),
            clip(&i.prediction_a, 40),
            clip(&i.prediction_b, 40),
            i.change.to_string(),
        ]);
    }
    let _ = writeln!(o, "{t}");
}

/// `--stat`'s file list, and always the count of changed files.
fn files_section(o: &mut String, d: &RunDiff, stat: bool) {
    let (added, removed, modified) =
        d.files.iter().fold((0, 0, 0), |(a, r, m), f| match f.status {
            diff::tree::Status::Added => (a + 1, r, m),
            diff::tree::Status::Removed => (a, r + 1, m),
            _ => (a, r, m + 1),
        });
    if stat {
        let _ = writeln!(o, "\nFiles");
        let rows: Vec<(char, &str, String)> = d
            .files
            .iter()
            .map(|f| {
                let sizes = match (f.old_size, f.new_size) {
                    (Some(a), Some(b)) => {
                        format!("{} → {}", ui::human_bytes(a), ui::human_bytes(b))
                    }
                    (None, Some(b)) => format!("new, {}", ui::human_bytes(b)),
                    (Some(a), None) => format!("deleted, {}", ui::human_bytes(a)),
                    (None, None) => String::new(),
                };
                let mark = match f.status {
                    diff::tree::Status::Added => '+',
                    diff::tree::Status::Removed => '-',
                    diff::tree::Status::Modified => '~',
                    diff::tree::Status::TypeChanged => 'T',
                };
                (mark, f.path.as_str(), sizes)
            })
            .collect();
        // Paths give way to the terminal's width; the sizes beside them never do.
        let sizes = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0);
        let room = ui::width().map_or(90, |w| w.saturating_sub(6 + sizes).clamp(12, 90));
        let width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0).min(room);
        for (mark, path, sizes) in &rows {
            let _ = writeln!(o, " {mark} {:<width$} | {sizes}", clip(path, room));
        }
    }
    if !stat {
        o.push_str(&text_section(d, std::io::stdout().is_terminal()));
    }
    let _ = writeln!(
        o,
        "\n{} changed: {added} added, {removed} removed, {modified} modified{}",
        plural(d.files.len() as u64, "file"),
        if stat { "" } else { " (--stat lists them)" }
    );
}

/// The unified diffs of changed prompts, config and notes, colored like `git diff` on a terminal.
fn text_section(d: &RunDiff, color: bool) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for t in &d.text {
        let _ = writeln!(o);
        for line in t.unified.lines() {
            let code = match line.as_bytes().first() {
                _ if !color => None,
                Some(b'+') if !line.starts_with("+++") => Some("32"),
                Some(b'-') if !line.starts_with("---") => Some("31"),
                Some(b'@') => Some("36"),
                Some(b'-' | b'+') => Some("1"),
                _ => None,
            };
            match code {
                Some(c) => {
                    let _ = writeln!(o, "\x1b[{c}m{line}\x1b[0m");
                }
                None => {
                    let _ = writeln!(o, "{line}");
                }
            }
        }
    }
    o
}

fn clip(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max - 1).collect();
    out.push('…');
    out
}
