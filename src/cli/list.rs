use std::collections::BTreeMap;

use clap::Args;
use exp::error::Hinted;
use exp::history::{self, Filter, Row};

use super::init::open_repo;
use super::{Context, ui};
use exp::display::{MISSING, or_missing, p_value, percent, points, points_range, usd};

/// The cross-run table: one row per run × trial, with the parameters that define each trial
/// (model, prompt set and a short hash of each prompt, decoding, dataset hash) and its results
/// (control, treatment, effect with CI, p, Holm p, cost). Every run the store knows appears once,
/// fetched ones included. The old list_runs.py.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  exp list
  exp list --where 'model=gpt-4o and temp>0.5' --sort-by=-effect
  exp list --where 'prompt_set=v2 or p<0.05' --only-changed
  exp list --csv > runs.csv        # also --md and --json
Columns: run commit time trial model prompt_set prompts temp top_k top_p max_tokens data
         control treatment effect ci p holm_p cost refs
--where compares as numbers when both sides are (effect>2 means more than +2 points).")]
pub struct ListArgs {
    /// Also show the commit, the time and the refs of each run
    #[arg(short, long)]
    pub verbose: bool,
    /// Keep rows matching EXPR: COLUMN OP VALUE joined by and/or/not, OP one of = != > >= < <= ~
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Order rows by COLUMN (prefix - for descending, e.g. --sort-by=-effect) [default: newest run first]
    #[arg(long, value_name = "COLUMN", allow_hyphen_values = true)]
    pub sort_by: Option<String>,
    /// Hide parameter columns whose value is the same in every row (the table for people does
    /// this unless -v; the flag applies it to -v, --csv and --md too)
    #[arg(long)]
    pub only_changed: bool,
    /// Comma-separated values, one line per row
    #[arg(long, conflicts_with_all = ["md", "json"])]
    pub csv: bool,
    /// A Markdown table
    #[arg(long, conflicts_with = "json")]
    pub md: bool,
    #[arg(long)]
    pub json: bool,
}

const RESULT_COLUMNS: [&str; 7] = ["control", "treatment", "effect", "ci", "p", "holm_p", "cost"];

pub fn run(ctx: &Context, args: &ListArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let runs = history::runs(&repo)?;
    let rows = history::table(&repo, &runs);
    let cells: Vec<BTreeMap<String, String>> = rows.iter().map(display_cells).collect();
    let all_columns = columns(true);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    if let Some(expr) = &args.filter {
        let f = Filter::parse(expr)?;
        if let Some(unknown) = f.columns().into_iter().find(|c| !all_columns.contains(c)) {
            return Err(Hinted::new(
                format!("--where: there is no column `{unknown}`"),
                format!("columns: {}", all_columns.join(" ")),
            )
            .into());
        }
        order.retain(|&i| f.matches(&cells[i]));
    }
    if let Some(key) = &args.sort_by {
        let (column, descending) = match key.strip_prefix('-') {
            Some(c) => (c, true),
            None => (key.as_str(), false),
        };
        if !all_columns.contains(&column) {
            return Err(Hinted::new(
                format!("--sort-by: there is no column `{column}`"),
                format!("columns: {}", all_columns.join(" ")),
            )
            .into());
        }
        sort_rows(&mut order, &cells, column, descending);
    }
    if args.json {
        let out: Vec<&Row> = order.iter().map(|&i| &rows[i]).collect();
        return ui::print_json(ui::Schema::LIST, &ui::Named("rows", &out));
    }
    if rows.is_empty() {
        ui::outln!(
            "no runs yet: `exp run --archive` or `exp commit experiments/run_<ID>` stores one"
        )?;
        return Ok(());
    }
    let mut shown = columns(args.verbose);
    // For people, parameters that are the same in every row say nothing: the table shows what
    // differs (`-v` shows everything); files for scripts keep every column unless asked.
    let for_people = !(args.csv || args.md);
    if args.only_changed || (for_people && !args.verbose) {
        shown.retain(|c| !is_param(c) || !same_everywhere(&order, &cells, c));
    }
    let table: Vec<Vec<String>> = order
        .iter()
        .map(|&i| shown.iter().map(|c| cells[i].get(*c).cloned().unwrap_or_default()).collect())
        .collect();
    if args.csv {
        // csv's errors carry the io::Error of a closed pipe, which the writer reports quietly.
        let mut w = csv::Writer::from_writer(ui::stdout());
        w.write_record(&shown).map_err(std::io::Error::from)?;
        for r in &table {
            w.write_record(r).map_err(std::io::Error::from)?;
        }
        w.flush()?;
    } else if args.md {
        ui::outln!("| {} |", shown.join(" | "))?;
        ui::outln!("|{}", " --- |".repeat(shown.len()))?;
        for r in &table {
            let escaped: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            ui::outln!("| {} |", escaped.join(" | "))?;
        }
    } else if ui::width().is_some_and(|w| w < MIN_COLUMN * shown.len()) {
        print_records(&shown, &table, ui::width().unwrap_or(usize::MAX))?;
    } else {
        let mut t = ui::table(shown.clone()).cut(["trial", "refs"]);
        for r in table {
            t.add_row(r);
        }
        ui::outln!("{t}")?;
    }
    Ok(())
}

/// The narrowest a column of the cross-run table can usefully be, with its gap.
const MIN_COLUMN: usize = 8;

/// One block per row, `column  value` a line, for terminals too narrow for the table (as
/// psql's expanded display): nothing is cut inside an id or a number, long text is shortened.
fn print_records(columns: &[&str], rows: &[Vec<String>], width: usize) -> std::io::Result<()> {
    let label = columns.iter().map(|c| c.len()).max().unwrap_or(0);
    let room = width.saturating_sub(label + 2).max(12);
    for (n, row) in rows.iter().enumerate() {
        ui::outln!(
            "{}",
            format!("── row {} ", n + 1) + &"─".repeat(width.saturating_sub(12).min(40))
        )?;
        for (c, v) in columns.iter().zip(row) {
            let v = if v.chars().count() > room {
                v.chars().take(room - 1).collect::<String>() + "…"
            } else {
                v.clone()
            };
            ui::outln!("{c:<label$}  {v}")?;
        }
    }
    Ok(())
}

fn is_param(column: &str) -> bool {
    history::PARAM_COLUMNS.contains(&column)
}

fn columns(verbose: bool) -> Vec<&'static str> {
    let mut c = vec!["run"];
    if verbose {
        c.extend(["name", "commit", "time"]);
    }
    c.push("trial");
    c.extend(history::PARAM_COLUMNS);
    c.extend(RESULT_COLUMNS);
    if verbose {
        c.push("refs");
    }
    c
}

fn display_cells(r: &Row) -> BTreeMap<String, String> {
    let mut m = r.params.clone();
    let dash = |s: String| if s.is_empty() { MISSING.to_string() } else { s };
    for v in m.values_mut() {
        *v = dash(std::mem::take(v));
    }
    m.insert("run".into(), r.run.clone());
    m.insert("name".into(), r.name.clone().unwrap_or_default());
    m.insert("commit".into(), r.commit.clone());
    m.insert("time".into(), r.time.clone());
    m.insert("trial".into(), dash(r.trial.clone()));
    m.insert("control".into(), or_missing(r.control, percent));
    m.insert("treatment".into(), or_missing(r.treatment, percent));
    m.insert("effect".into(), or_missing(r.effect, points));
    m.insert("ci".into(), or_missing(r.ci, |[lo, hi]| points_range(lo, hi)));
    m.insert("p".into(), or_missing(r.p, p_value));
    m.insert("holm_p".into(), or_missing(r.holm_p, p_value));
    m.insert("cost".into(), or_missing(r.usd, usd));
    m.insert("refs".into(), r.refs.join(", "));
    m
}

fn same_everywhere(order: &[usize], cells: &[BTreeMap<String, String>], column: &str) -> bool {
    let mut values = order.iter().map(|&i| cells[i].get(column));
    match values.next() {
        Some(first) => values.all(|v| v == first),
        None => true,
    }
}

/// Numbers (in the table's own spellings) sort as numbers, text as text, and empty cells last
/// whichever the direction, so `--sort-by=-effect` puts the largest effect first.
fn sort_rows(
    order: &mut [usize],
    cells: &[BTreeMap<String, String>],
    column: &str,
    descending: bool,
) {
    let key = |i: usize| cells[i].get(column).filter(|v| v.as_str() != MISSING).cloned();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (key(a), key(b));
        match (ka, kb) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => {
                let o = match (history::filter::number(&x), history::filter::number(&y)) {
                    (Some(nx), Some(ny)) => nx.total_cmp(&ny),
                    _ => x.cmp(&y),
                };
                if descending { o.reverse() } else { o }
            }
        }
    });
}
