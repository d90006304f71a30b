//! How commands show things: tables for people, JSON for scripts, progress on stderr.
//!
//! Every byte a command prints goes through this module (`outln!`, `out!`, `print_json`, or the
//! raw `stdout()` writer for file contents), after jj's `ui`: one place then decides what a
//! closed pipe means. When the reader of stdout goes away (`exp log | head`), the write fails,
//! the error unwinds the command like any other (locks and temp files are released), and
//! `stdout_closed` tells the binary to end quietly with exit 0 instead of printing an error.
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressStyle};

/// A table in the house style: no outer borders, header underlined, wrapped to the terminal.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    t
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

/// Writes text for people to stdout.
pub fn write_text(text: fmt::Arguments) -> io::Result<()> {
    let mut out = stdout();
    out.write_fmt(text)?;
    out.flush()
}

/// Pretty JSON on stdout, for `--json`.
pub fn print_json<T: serde::Serialize>(value: &T) -> super::Result<()> {
    let mut out = stdout();
    serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(out.flush()?)
}

/// Progress on stderr: a bar with rate and ETA on a terminal, a plain line every few seconds
/// otherwise (CI logs, pipes), so long work is never silent and never floods a log.
pub struct TermProgress {
    bar: Option<ProgressBar>,
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

impl TermProgress {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(ProgressBar::hidden);
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
        if let Some(bar) = &self.bar {
            let template = if bytes {
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}"
            } else {
                "{prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_prefix(what.to_string());
            bar.set_length(total);
            bar.set_position(0);
            bar.reset_eta();
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
        if let Some(bar) = &self.bar {
            bar.inc(n);
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
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
            return;
        }
        self.plain.lock().unwrap_or_else(|e| e.into_inner()).status = msg.to_string();
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
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
