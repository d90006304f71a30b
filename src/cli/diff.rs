use std::io::IsTerminal;

use clap::Args;

use super::{Context, ui};
use exp::diff::{self, RunDiff};

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
    #[arg(value_name = "REF1")]
    pub rev1: Option<String>,
    /// The new side
    #[arg(value_name = "REF2")]
    pub rev2: Option<String>,
    /// Same as REF1, as the old script spelled it
    #[arg(long = "run1", conflicts_with = "rev1", hide = true)]
    pub run1: Option<String>,
    /// Same as REF2, as the old script spelled it
    #[arg(long = "run2", conflicts_with = "rev2", hide = true)]
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

pub fn run(ctx: &Context, args: &DiffArgs) -> anyhow::Result<()> {
    let rev1 = args.rev1.clone().or_else(|| args.run1.clone());
    let rev2 = args.rev2.clone().or_else(|| args.run2.clone());
    let repo = exp::store::Repo::locate(ctx.repo.as_deref(), &std::env::current_dir()?)?;
    let opts = diff::Options { items: args.items };
    let d = exp::diff::store::diff_revs(&repo, rev1.as_deref(), rev2.as_deref(), &opts)?;
    if args.json {
        ui::print_json(&d)?;
    } else {
        ui::out!("{}", render(&d, args.stat, args.items))?;
    }
    if args.exit_code && !d.identical {
        return Err(super::SilentExit(1).into());
    }
    Ok(())
}

fn pct(x: Option<f64>) -> String {
    x.map(|x| format!("{:.1}%", x * 100.0)).unwrap_or_else(|| "–".into())
}

fn signed_pts(x: Option<f64>) -> String {
    x.map(|x| format!("{:+.1} pts", x * 100.0)).unwrap_or_default()
}

fn usd(x: f64) -> String {
    if x == 0.0 {
        "$0".into()
    } else if x.abs() >= 0.01 {
        format!("${x:.4}")
    } else {
        // Three significant digits, in plain decimals: $0.0000920, not $9.2e-5.
        let decimals = (2 - x.abs().log10().floor() as i64).clamp(2, 12) as usize;
        format!("${x:.decimals$}")
    }
}

/// `a → b` for a value shown from both runs, `–` on the side that lacks it: every column of the
/// metrics and costs tables reads the same way.
fn before_after<T>(a: &Option<T>, b: &Option<T>, show: impl Fn(&T) -> String) -> String {
    let side = |x: &Option<T>| x.as_ref().map(&show).unwrap_or_else(|| "–".into());
    format!("{} → {}", side(a), side(b))
}

/// `+1.2 pts [-0.3, +2.7]`, or what there is of it.
fn change_ci(change: Option<f64>, ci: Option<[f64; 2]>) -> String {
    let mut s = signed_pts(change);
    if let Some([lo, hi]) = ci {
        s.push_str(&format!(" [{:+.1}, {:+.1}]", lo * 100.0, hi * 100.0));
    }
    s
}

fn p(x: Option<f64>) -> String {
    match x {
        Some(p) if p < 0.0001 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
        None => "–".into(),
    }
}

fn side_name(d: &RunDiff, side: &str) -> String {
    let s = if side == "a" { &d.a } else { &d.b };
    s.label.clone()
}

/// The human rendering: sections only when they have something.
fn render(d: &RunDiff, stat: bool, items: bool) -> String {
    use std::fmt::Write;
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
    if !d.config.is_empty() {
        let _ = writeln!(o, "\nConfiguration");
        for c in &d.config {
            let line = match c.change {
                diff::config::ChangeKind::Changed => format!(
                    "  ~ {}: {} -> {}",
                    c.key,
                    c.old.as_deref().unwrap_or(""),
                    c.new.as_deref().unwrap_or("")
                ),
                diff::config::ChangeKind::Added => {
                    format!("  + {}: {}", c.key, c.new.as_deref().unwrap_or(""))
                }
                diff::config::ChangeKind::Removed => {
                    format!("  - {}: {}", c.key, c.old.as_deref().unwrap_or(""))
                }
            };
            let _ = writeln!(o, "{}", clip(&line, 160));
        }
    }
    let renamed: Vec<_> = d.trials.paired.iter().filter(|t| t.matched_by == "parameters").collect();
    let unchanged = d.trials.paired.iter().filter(|t| t.unchanged).count();
    if !renamed.is_empty()
        || !d.trials.only_a.is_empty()
        || !d.trials.only_b.is_empty()
        || unchanged > 0
    {
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
            let _ = writeln!(o, "  {unchanged} trial(s) unchanged");
        }
    }
    if !d.metrics.is_empty() {
        let _ = writeln!(o, "\nMetrics ({} → {})", d.a.label, d.b.label);
        let mut t =
            ui::table(["trial", "condition", "n", "failed", "accuracy", "change"]).cut(["trial"]);
        for r in &d.metrics {
            t.add_row([
                r.trial.clone(),
                r.condition.clone(),
                before_after(&r.a, &r.b, |m| m.n.to_string()),
                before_after(&r.a, &r.b, |m| m.failed.to_string()),
                before_after(&r.a, &r.b, |m| pct(m.accuracy)),
                signed_pts(r.accuracy_change),
            ]);
        }
        let _ = writeln!(o, "{t}");
    }
    if !d.paired.is_empty() {
        let _ = writeln!(
            o,
            "\nPaired test between the runs (items scored in both, repeats averaged; fixed = wrong → right)"
        );
        let mut t = ui::table([
            "trial",
            "condition",
            "items paired",
            "fixed",
            "broken",
            "change (95% CI)",
            "p",
            "test / note",
        ])
        .cut(["trial", "test / note"]);
        for r in &d.paired {
            t.add_row([
                r.trial.clone(),
                r.condition.clone(),
                r.paired.to_string(),
                r.fixed.to_string(),
                r.broken.to_string(),
                change_ci(r.change, r.ci),
                p(r.p_value),
                r.not_computed.clone().or_else(|| r.test.clone()).unwrap_or_default(),
            ]);
        }
        let _ = writeln!(o, "{t}");
    }
    if !d.effect_changes.is_empty() {
        let _ = writeln!(
            o,
            "\nChange in the treatment effect (treatment − control in {} minus in {})",
            d.b.label, d.a.label
        );
        let mut t = ui::table(["trial", "items", "effect", "change (95% CI)", "p"]);
        for r in &d.effect_changes {
            t.add_row([
                r.trial.clone(),
                r.items.to_string(),
                format!("{} → {}", signed_pts(Some(r.effect_a)), signed_pts(Some(r.effect_b))),
                change_ci(Some(r.change), r.ci),
                p(Some(r.p_value)),
            ]);
        }
        let _ = writeln!(o, "{t}");
    }
    if !d.costs.is_empty() {
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
                before_after(&r.a, &r.b, |c| c.input_tokens.to_string()),
                before_after(&r.a, &r.b, |c| c.output_tokens.to_string()),
                before_after(&r.a, &r.b, |c| usd(c.usd)),
                r.usd_change
                    .map(|c| format!("{}{}", if c >= 0.0 { "+" } else { "-" }, usd(c.abs())))
                    .unwrap_or_default(),
                before_after(&r.a, &r.b, |c| c.usd_per_correct.map(usd).unwrap_or("–".into())),
            ]);
        }
        let _ = writeln!(o, "{t}");
    }
    if !d.lacks.is_empty() {
        let _ = writeln!(o, "\nNot compared (one side lacks it)");
        for l in &d.lacks {
            let trial = l.trial.as_ref().map(|t| format!("{t}: ")).unwrap_or_default();
            let _ = writeln!(o, "  {}: {trial}{}: {}", side_name(d, l.side), l.what, l.detail);
        }
    }
    if items && !d.items.is_empty() {
        let _ = writeln!(o, "\nFlipped items");
        let mut t = ui::table([
            "trial",
            "condition",
            "item",
            "gold",
            d.a.label.as_str(),
            d.b.label.as_str(),
            "change",
        ])
        .cut(["trial", d.a.label.as_str(), d.b.label.as_str()]);
        for i in &d.items {
            let item = if i.dataset.is_empty() {
                i.item.clone()
            } else {
                format!("{}:{}", i.dataset, i.item)
            };
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
    } else if items {
        let _ = writeln!(o, "\nFlipped items: none");
    }
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
        "\n{} file(s) changed: {added} added, {removed} removed, {modified} modified{}",
        d.files.len(),
        if stat { "" } else { " (--stat lists them)" }
    );
    o
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
