//! How commands show things: tables for people, JSON for scripts, progress on stderr.
//!
//! Every byte a command prints goes through this module (`outln!`, `out!`, `print_json`, or the
//! raw `stdout()` writer for file contents), after jj's `ui`: one place then decides what a
//! closed pipe means. When the reader of stdout goes away (`exp log | head`), the write fails,
//! the error unwinds the command like any other (locks and temp files are released), and
//! `stdout_closed` tells the binary to end quietly with exit 0 instead of printing an error.
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The columns output must fit: `COLUMNS` when set, else the terminal's when stdout is one, else
/// none: piped output is never cut or wrapped, so scripts see whole lines.
pub fn width() -> Option<usize> {
    static WIDTH: OnceLock<Option<usize>> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok());
        match columns {
            Some(c) if c > 0 => Some(c),
            _ if io::stdout().is_terminal() => {
                terminal_size::terminal_size().map(|(terminal_size::Width(w), _)| w as usize)
            }
            _ => None,
        }
    })
}

/// Space between two columns; one when two do not fit.
const GAP: usize = 2;
/// How narrow a cut-short column may get.
const MIN_CUT: usize = 6;

/// A table in the house style: columns two spaces apart, one rule under the header, nothing
/// else. Fitted to `width()` when it prints: free-text columns (see `cut`) are shortened with
/// `…` first, then other cells wrap between words; an id, hash or number is never split.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let header: Vec<String> = header.into_iter().map(Into::into).collect();
    let cut = vec![false; header.len()];
    Table { header, rows: Vec::new(), cut }
}

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Per column: free text (a message, a name, a path) that may be cut short with `…`.
    cut: Vec<bool>,
}

impl Table {
    /// Marks the columns headed `names` as free text, shortened with `…` before anything else
    /// gives way: the message, a trial slug, a path.
    pub fn cut<const N: usize>(mut self, names: [&str; N]) -> Self {
        for (c, h) in self.header.iter().enumerate() {
            if names.contains(&h.as_str()) {
                self.cut[c] = true;
            }
        }
        self
    }

    pub fn add_row<I, S>(&mut self, row: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(row.into_iter().map(Into::into).collect());
        self
    }

    /// Column widths and the gap between columns for `limit` columns in all (see `table`):
    /// free-text columns give way first, then the others wrap between words, then the gap
    /// narrows to one space.
    fn widths(&self, limit: Option<usize>) -> (Vec<usize>, usize) {
        let n = self.header.len();
        let column = |c: usize| {
            std::iter::once(&self.header[c]).chain(self.rows.iter().filter_map(move |r| r.get(c)))
        };
        let natural: Vec<usize> = (0..n)
            .map(|c| column(c).flat_map(|v| v.lines()).map(str::width).max().unwrap_or(0))
            .collect();
        let Some(limit) = limit else { return (natural, GAP) };
        let longest_word = |cells: &mut dyn Iterator<Item = &String>| {
            cells.flat_map(|v| v.split_whitespace()).map(str::width).max().unwrap_or(0)
        };
        // A cut column keeps its header's words whole; any other keeps every word whole.
        let floor: Vec<usize> = (0..n)
            .map(|c| {
                if self.cut[c] {
                    longest_word(&mut std::iter::once(&self.header[c])).max(MIN_CUT).min(natural[c])
                } else {
                    longest_word(&mut column(c))
                }
            })
            .collect();
        let mut fitted = (natural.clone(), GAP);
        for gap in (1..=GAP).rev() {
            let mut widths = natural.clone();
            let total = |w: &[usize]| w.iter().sum::<usize>() + gap * n.saturating_sub(1);
            for cutting in [true, false] {
                while total(&widths) > limit {
                    let Some(c) = (0..n)
                        .filter(|&c| self.cut[c] == cutting && widths[c] > floor[c])
                        .max_by_key(|&c| widths[c] - floor[c])
                    else {
                        break;
                    };
                    widths[c] -= 1;
                }
            }
            let fits = total(&widths) <= limit;
            fitted = (widths, gap);
            if fits {
                return fitted;
            }
        }
        // Last resort, for names far longer than anyone expected at this width: the widest
        // columns are cut short too (with `…`, never wrapped mid-word), so the table stays a
        // table instead of spilling over into the next line.
        let (widths, gap) = &mut fitted;
        while widths.iter().sum::<usize>() + *gap * n.saturating_sub(1) > limit {
            let Some(c) = (0..n).filter(|&c| widths[c] > MIN_CUT).max_by_key(|&c| widths[c]) else {
                break;
            };
            widths[c] -= 1;
        }
        fitted
    }

    /// One cell as lines of at most `width` columns: free text cut short, anything else
    /// broken between words (and cut only where `widths` had no other way).
    fn cell_lines(&self, c: usize, cell: &str, width: usize) -> Vec<String> {
        let lines = cell.lines().map(str::to_string);
        let lines: Vec<String> = if self.cut[c] {
            lines.collect()
        } else {
            lines.flat_map(|l| wrap(&l, width, 0)).collect()
        };
        lines.iter().map(|l| cut(l, width)).collect()
    }

    /// The table as lines of at most `limit` columns (unless an unsplittable word is wider).
    fn lines(&self, limit: Option<usize>) -> Vec<String> {
        let (widths, gap) = self.widths(limit);
        let mut out = Vec::new();
        let header: Vec<Vec<String>> = self
            .header
            .iter()
            .zip(&widths)
            .map(|(h, &w)| wrap(h, w, 0).iter().map(|l| cut(l, w)).collect())
            .collect();
        push_row(&mut out, &header, &widths, gap);
        let rule = widths.iter().sum::<usize>() + gap * widths.len().saturating_sub(1);
        out.push("─".repeat(rule));
        for row in &self.rows {
            let cells: Vec<Vec<String>> = (0..widths.len())
                .map(|c| self.cell_lines(c, row.get(c).map_or("", String::as_str), widths[c]))
                .collect();
            push_row(&mut out, &cells, &widths, gap);
        }
        out
    }
}

/// Appends one row, its cells given as lines, each column padded to its width.
fn push_row(out: &mut Vec<String>, cells: &[Vec<String>], widths: &[usize], gap: usize) {
    let height = cells.iter().map(Vec::len).max().unwrap_or(0).max(1);
    for i in 0..height {
        let mut line = String::new();
        for (c, w) in widths.iter().enumerate() {
            if c > 0 {
                line.extend(std::iter::repeat_n(' ', gap));
            }
            let text = cells.get(c).and_then(|l| l.get(i)).map_or("", String::as_str);
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', w.saturating_sub(text.width())));
        }
        out.push(line.trim_end().to_string());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.lines(width()).join("\n"))
    }
}

/// `text` shortened to `width` columns, ending in `…` when something was left out.
fn cut(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in text.chars() {
        let w = ch.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(ch);
        used += w;
    }
    out.push('…');
    out
}

/// `line` broken between words into lines of at most `width` columns; continuation lines are
/// indented by `hang` more than the first. A word wider than `width` keeps a line of its own
/// rather than being split.
fn wrap(line: &str, width: usize, hang: usize) -> Vec<String> {
    if line.width() <= width {
        return vec![line.to_string()];
    }
    let body = line.trim_start_matches(' ');
    let lead = line.len() - body.len();
    let indent = if lead + hang <= width / 2 { lead + hang } else { 0 };
    let mut lines = Vec::new();
    let mut current = " ".repeat(lead);
    let mut used = lead;
    let mut fresh = true;
    for word in body.split(' ') {
        let w = word.width();
        if !fresh && used + 1 + w > width {
            lines.push(current.trim_end().to_string());
            current = " ".repeat(indent);
            used = indent;
            fresh = true;
        }
        if !fresh {
            current.push(' ');
            used += 1;
        }
        current.push_str(word);
        used += w;
        fresh = false;
    }
    lines.push(current.trim_end().to_string());
    lines
}

/// Set when a write to stdout failed because nobody reads it any more.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout found its reader gone. The command's error then says nothing
/// worth showing (it may even name a pack file whose bytes were being copied out), so the
/// binary ends quietly with exit 0: the reader took what it wanted.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Command output as raw bytes (a file's content, `cat-object`): stdout, locked, watched for a
/// closed pipe. Text goes through `outln!`/`out!`, which also fit it to the terminal.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

pub struct Stdout(io::StdoutLock<'static>);

impl Stdout {
    fn watch<T>(r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::watch(self.0.write(buf))
    }
    fn flush(&mut self) -> io::Result<()> {
        Self::watch(self.0.flush())
    }
}

/// `println!` for command output: `ui::outln!("committed {id}")?`. Fails (instead of
/// panicking, as `println!` does) when stdout is closed.
macro_rules! outln {
    () => {
        $crate::cli::ui::write_text(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::ui::write_text(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// `print!` for command output; see `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::ui::write_text(format_args!($($arg)*))
    };
}
pub(crate) use out;

/// Writes text for people to stdout. Within `width()`, a longer line is broken between words
/// (continuation lines hang two spaces in); tables already fit.
pub fn write_text(text: fmt::Arguments) -> io::Result<()> {
    let mut out = stdout();
    let Some(width) = width() else {
        out.write_fmt(text)?;
        return out.flush();
    };
    let text = text.to_string();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(wrap(line, width, 2).join("\n").as_bytes())?;
    }
    out.flush()
}

/// What a `--json` document is, named and versioned (`exp.log/1`), so a script can check it reads
/// the shape it was written for. The version goes up when a field is removed, renamed or changes
/// meaning; new fields keep it. Each one is documented in docs/JSON.md (tests/history.rs checks
/// every command's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schema(&'static str);

impl Schema {
    pub const CHECKOUT: Schema = Schema("exp.checkout/1");
    pub const CLEAN: Schema = Schema("exp.clean/1");
    pub const CLONE: Schema = Schema("exp.clone/1");
    pub const COMMIT: Schema = Schema("exp.commit/1");
    pub const DIFF: Schema = Schema("exp.diff/1");
    pub const FETCH: Schema = Schema("exp.fetch/1");
    pub const FSCK: Schema = Schema("exp.fsck/1");
    pub const GC: Schema = Schema("exp.gc/1");
    pub const IMPORT: Schema = Schema("exp.import/1");
    pub const INGEST: Schema = Schema("exp.ingest/1");
    pub const LIST: Schema = Schema("exp.list/1");
    pub const LOG: Schema = Schema("exp.log/1");
    pub const POWER: Schema = Schema("exp.power/1");
    pub const PULL: Schema = Schema("exp.pull/1");
    pub const PUSH: Schema = Schema("exp.push/1");
    pub const RESCORE: Schema = Schema("exp.rescore/1");
    pub const REMOTE: Schema = Schema("exp.remote/1");
    pub const REMOTES: Schema = Schema("exp.remotes/1");
    pub const RUN: Schema = Schema("exp.run/1");
    pub const RUN_AWAITING: Schema = Schema("exp.run.awaiting/1");
    pub const RUN_PLAN: Schema = Schema("exp.run.plan/1");
    pub const SHOW: Schema = Schema("exp.show/1");
    pub const SHOW_TREE: Schema = Schema("exp.show.tree/1");
    pub const STATUS: Schema = Schema("exp.status/1");
    pub const TAGS: Schema = Schema("exp.tags/1");
}

/// A `--json` document: `schema` first, then the fields of the body, which must serialize as
/// an object (a struct or a map; a list goes into a named field), so every document can grow
/// new fields without breaking a script.
#[derive(serde::Serialize)]
struct Document<'a, T> {
    schema: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

/// A body that is one named list, `{"commits": […]}`, serialized as it is written.
pub struct Named<'a, T: ?Sized>(pub &'static str, pub &'a T);

impl<T: serde::Serialize + ?Sized> serde::Serialize for Named<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(self.0, self.1)?;
        map.end()
    }
}

/// Pretty JSON on stdout, for `--json`: one document of the given `schema`. Streamed, so a
/// large document (a diff with every item) is never held whole as text.
pub fn print_json<T: serde::Serialize>(schema: Schema, body: &T) -> super::Result<()> {
    let mut out = stdout();
    let doc = Document { schema: schema.0, body };
    serde_json::to_writer_pretty(&mut out, &doc).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(out.flush()?)
}

/// Progress on stderr: a bar with rate and ETA on a terminal, a plain line every few seconds
/// otherwise (CI logs, pipes), so long work is never silent and never floods a log.
pub struct TermProgress {
    /// On a terminal: the bar of the current phase. Each phase gets a new one, because a
    /// finished indicatif bar stays finished (and invisible) whatever it is told later.
    bar: Option<Mutex<ProgressBar>>,
    plain: Mutex<PlainState>,
}

struct PlainState {
    what: String,
    total: u64,
    done: u64,
    bytes: bool,
    status: String,
    started: Instant,
    last_line: Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How often the bar redraws by itself, so the elapsed time and ETA move while requests are
/// slow to come back.
const TICK: Duration = Duration::from_millis(200);

impl TermProgress {
    pub fn new() -> Self {
        let bar = io::stderr().is_terminal().then(|| Mutex::new(ProgressBar::hidden()));
        let now = Instant::now();
        TermProgress {
            bar,
            plain: Mutex::new(PlainState {
                what: String::new(),
                total: 0,
                done: 0,
                bytes: false,
                status: String::new(),
                started: now,
                last_line: now,
            }),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) -> bool {
        let Some(bar) = &self.bar else { return false };
        f(&bar.lock().unwrap_or_else(|e| e.into_inner()));
        true
    }

    fn plain_line(s: &PlainState) {
        let secs = s.started.elapsed().as_secs_f64().max(1e-9);
        let rate = s.done as f64 / secs;
        let eta = if rate > 0.0 && s.total > s.done {
            format!(" · ETA {:.0}s", (s.total - s.done) as f64 / rate)
        } else {
            String::new()
        };
        let (done, total, rate) = if s.bytes {
            (human_bytes(s.done), human_bytes(s.total), format!("{}/s", human_bytes(rate as u64)))
        } else {
            (s.done.to_string(), s.total.to_string(), format!("{rate:.1}/s"))
        };
        let status = if s.status.is_empty() { String::new() } else { format!(" · {}", s.status) };
        // Progress is a courtesy: a closed stderr (`exp run 2>&1 | head`) must not stop the run.
        let _ = writeln!(io::stderr(), "{}: {done}/{total} · {rate}{eta}{status}", s.what);
    }
}

impl Default for TermProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl exp::progress::Progress for TermProgress {
    fn start(&self, what: &str, total: u64, bytes: bool) {
        if let Some(current) = &self.bar {
            let template = if bytes {
                "{prefix} {bar:20} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {wide_msg}"
            } else {
                "{prefix} {bar:20} {pos}/{len} {per_sec} ETA {eta} {wide_msg}"
            };
            let bar =
                ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(TICK);
            let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
            current.finish_and_clear();
            *current = bar;
            return;
        }
        let mut s = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        *s = PlainState {
            what: what.to_string(),
            total,
            done: 0,
            bytes,
            status: String::new(),
            started: Instant::now(),
            last_line: Instant::now(),
        };
    }

    fn advance(&self, n: u64) {
        if self.with_bar(|bar| bar.inc(n)) {
            return;
        }
        let mut s = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        s.done += n;
        if s.last_line.elapsed() >= PLAIN_EVERY {
            s.last_line = Instant::now();
            Self::plain_line(&s);
        }
    }

    fn status(&self, msg: &str) {
        if self.with_bar(|bar| bar.set_message(msg.to_string())) {
            return;
        }
        self.plain.lock().unwrap_or_else(|e| e.into_inner()).status = msg.to_string();
    }

    fn finish(&self) {
        if self.with_bar(ProgressBar::finish_and_clear) {
            return;
        }
        // A closing line only for work long enough to have been worth watching: a log of many
        // small commands should not fill up with "storing: 2 KiB/2 KiB".
        let s = self.plain.lock().unwrap_or_else(|e| e.into_inner());
        if s.total > 0 && s.started.elapsed() >= PLAIN_EVERY / 5 {
            Self::plain_line(&s);
        }
    }
}

/// A commit's RFC 3339 time as `2025-11-27 13:05` (UTC), short enough for a table column and
/// breakable between date and time; anything else as it is.
pub fn time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_table() -> Table {
        let mut t = table(["commit", "time", "status", "message"]).cut(["message"]);
        t.add_row(["3fa9c2d81b0e", "2025-11-27 13:05", "complete", &"why ".repeat(30)]);
        t.add_row(["77b01c9e2f4a", "2025-11-28 09:00", "incomplete", "short"]);
        t
    }

    #[test]
    fn a_table_that_fits_is_left_alone_with_one_rule_under_the_header() {
        let lines = log_table().lines(None);
        assert_eq!(lines.len(), 4);
        assert!(lines[1].chars().all(|c| c == '─'));
        assert!(lines[2].ends_with(&"why ".repeat(30).trim_end().to_string()));
    }

    #[test]
    fn free_text_is_cut_first_and_ids_stay_whole() {
        let lines = log_table().lines(Some(60));
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:#?}");
        assert!(
            lines[2].starts_with("3fa9c2d81b0e  2025-11-27 13:05  complete")
                && lines[2].ends_with('…')
        );
        assert_eq!(lines.len(), 4, "no row grew: {lines:#?}");
    }

    #[test]
    fn then_cells_wrap_between_words_and_the_gap_narrows() {
        let lines = log_table().lines(Some(42));
        assert!(lines.iter().all(|l| l.chars().count() <= 42), "{lines:#?}");
        let text = lines.join("\n");
        for whole in ["3fa9c2d81b0e", "77b01c9e2f4a", "2025-11-27", "13:05", "incomplete"] {
            assert!(text.contains(whole), "{whole} split in\n{text}");
        }
    }

    #[test]
    fn what_cannot_fit_otherwise_is_cut_short_never_wrapped_mid_word() {
        let mut t = table(["id", "n"]);
        t.add_row(["0123456789abcdef0123", "7"]);
        assert_eq!(t.lines(Some(12)), ["id         n", "────────────", "012345678… 7"]);
    }

    #[test]
    fn prose_wraps_between_words_with_a_hanging_indent() {
        assert_eq!(wrap("  one two three four", 12, 2), ["  one two", "    three", "    four"]);
        assert_eq!(wrap("short", 12, 2), ["short"]);
        assert_eq!(cut("abcdefgh", 5), "abcd…");
        assert_eq!(cut("abc", 5), "abc");
    }

    #[test]
    fn a_json_document_starts_with_its_schema_and_a_list_body_is_refused() {
        let body = serde_json::json!({"runs": [1, 2]});
        let doc = Document { schema: Schema::STATUS.0, body: &body };
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"schema":"exp.status/1","runs":[1,2]}"#
        );
        let list = vec![1, 2];
        assert!(serde_json::to_string(&Document { schema: "x/1", body: &list }).is_err());
    }

    #[test]
    fn commit_times_read_as_minutes_in_utc() {
        assert_eq!(time("2025-11-27T13:05:01Z"), "2025-11-27 13:05");
        assert_eq!(time("2025-11-27T14:05:01+01:00"), "2025-11-27 13:05");
        assert_eq!(time("yesterday"), "yesterday");
    }
}
