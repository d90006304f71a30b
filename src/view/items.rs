//! One trial's items, streamed from the store: `per_item_scores.csv`, `predictions.csv` and the
//! request files, joined by item (dataset, id, repeat) into rows with both conditions side by
//! side, and cut into filtered, searched pages.
//!
//! Memory stays bounded whatever the trial's size: every file is decompressed and verified by a
//! thread that hands its bytes over a small bounded channel, and each condition of a file is its
//! own stream, so a file listing all control rows before all treatment rows is read in step
//! twice rather than held. Streams that agree on order (every run `exp run` writes) are joined
//! one row at a time; only rows whose partners have not arrived yet are held, so an
//! out-of-order file costs memory for its disorder, never a wrong pairing. A page keeps its own
//! rows and a count per filter; each text field is cut at [`TEXT_CAP`] bytes.
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde_json::Value;

use super::{Error, Result};
use crate::runfiles::layout::TrialFiles;
use crate::runfiles::{PREDICTIONS, SCORES};
use crate::store::{ObjectId, Repo};

/// Items on one page.
pub const PAGE_SIZE: u64 = 50;
/// A text field longer than this is cut (with a note) when read: a page stays small however
/// long the model's answers are.
pub const TEXT_CAP: usize = 64 * 1024;

/// Which items a trial page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Wrong (score below 1) in either condition.
    Failures,
    /// A request that failed or was never answered, in either condition.
    Errors,
    /// Scored in both conditions, with different scores.
    Discordant,
    /// Better under the treatment than under the control.
    Fixed,
    /// Worse under the treatment.
    Broken,
}

impl Filter {
    pub const EVERY: [Filter; 6] = [
        Filter::All,
        Filter::Failures,
        Filter::Errors,
        Filter::Discordant,
        Filter::Fixed,
        Filter::Broken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Filter::All => "all",
            Filter::Failures => "failures",
            Filter::Errors => "errors",
            Filter::Discordant => "discordant",
            Filter::Fixed => "fixed",
            Filter::Broken => "broken",
        }
    }

    pub fn parse(s: &str) -> Option<Filter> {
        Filter::EVERY.into_iter().find(|f| f.as_str() == s)
    }

    /// What the filter's button says.
    pub fn label(self) -> &'static str {
        match self {
            Filter::All => "all",
            Filter::Failures => "failures",
            Filter::Errors => "errors",
            Filter::Discordant => "discordant",
            Filter::Fixed => "fixed by the treatment",
            Filter::Broken => "broken by the treatment",
        }
    }

    fn index(self) -> usize {
        Filter::EVERY.iter().position(|f| *f == self).unwrap_or(0)
    }

    pub(crate) fn matches(self, row: &ItemRow) -> bool {
        let (c, t) = (row.score("control"), row.score("treatment"));
        let wrong = |s: Option<f64>| s.is_some_and(|s| s < 1.0);
        match self {
            Filter::All => true,
            Filter::Failures => wrong(c) || wrong(t),
            Filter::Errors => row.sides().any(|s| s.score.is_none() || !s.error.is_empty()),
            Filter::Discordant => matches!((c, t), (Some(c), Some(t)) if c != t),
            Filter::Fixed => matches!((c, t), (Some(c), Some(t)) if t > c),
            Filter::Broken => matches!((c, t), (Some(c), Some(t)) if t < c),
        }
    }
}

/// One condition's answer to one item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    pub prediction: String,
    /// None: the request failed or was never answered.
    pub score: Option<f64>,
    pub raw: Option<String>,
    pub finish_reason: String,
    pub input_tokens: String,
    pub output_tokens: String,
    /// The part of the output tokens spent reasoning (empty in files from before the column).
    pub reasoning_tokens: String,
    pub latency_ms: String,
    pub error: String,
}

/// One item (and repeat) with both conditions.
#[derive(Debug, Clone, Default)]
pub(crate) struct ItemRow {
    pub dataset: String,
    pub item: String,
    pub repeat: u32,
    pub gold: String,
    /// The user message sent (the same for both conditions).
    pub input: Option<String>,
    /// Keyed by condition, in the order first seen.
    pub answers: Vec<(String, Answer)>,
    /// A search found its text in a file read for the search only (an answer or the input).
    hit: bool,
    /// What a search read of the answers and the input, decoded only if the row is shown.
    unread: Vec<Unread>,
}

/// A row of an answers or requests file as read, for [`ItemRow::decode`].
#[derive(Debug, Clone)]
enum Unread {
    Answer { condition: String, rec: csv::StringRecord, cols: Arc<Columns> },
    Request(Vec<u8>),
}

impl ItemRow {
    pub fn key(&self) -> Key {
        (self.dataset.clone(), self.item.clone(), self.repeat)
    }

    pub fn answer(&self, condition: &str) -> Option<&Answer> {
        self.answers.iter().find(|(c, _)| c == condition).map(|(_, a)| a)
    }

    fn answer_mut(&mut self, condition: &str) -> &mut Answer {
        let i = match self.answers.iter().position(|(c, _)| c == condition) {
            Some(i) => i,
            None => {
                self.answers.push((condition.to_string(), Answer::default()));
                self.answers.len() - 1
            }
        };
        &mut self.answers[i].1
    }

    fn score(&self, condition: &str) -> Option<f64> {
        self.answer(condition)?.score
    }

    fn sides(&self) -> impl Iterator<Item = &Answer> {
        self.answers.iter().map(|(_, a)| a)
    }

    /// Puts what a search read of the row's answers and input into it (a shown row).
    fn decode(&mut self) {
        for unread in std::mem::take(&mut self.unread) {
            let part = match unread {
                Unread::Answer { condition, rec, cols } => {
                    Part::Prediction { condition, answer: answer(&rec, &cols) }
                }
                Unread::Request(line) => match request_input(&line) {
                    Some((_, text)) => Part::Input(text),
                    None => continue,
                },
            };
            apply(self, part);
        }
        self.hit = false;
    }

    /// Whether the search finds the id, the gold label, a scored prediction, or (the hits
    /// of [`Streams::Search`]) an answer's text or the input.
    fn found(&self, search: &Search) -> bool {
        self.hit
            || search.text.is_match(&self.item)
            || search.text.is_match(&self.gold)
            || self.sides().any(|a| search.text.is_match(&a.prediction))
    }
}

/// A page of a trial's items: the rows, and how many items each filter (with the search)
/// matches.
#[derive(Debug, Default)]
pub(crate) struct ItemsPage {
    pub rows: Vec<ItemRow>,
    pub counts: [u64; 6],
    /// What the trial has to show at all (no scores: nothing to list).
    pub has_scores: bool,
}

impl ItemsPage {
    pub fn count(&self, f: Filter) -> u64 {
        self.counts[f.index()]
    }
}

/// A case-insensitive search for a plain text, over decoded text and over raw bytes.
#[derive(Clone)]
pub(crate) struct Search {
    text: regex::Regex,
    bytes: regex::bytes::Regex,
}

/// The search for `q`; None for an empty query.
pub(crate) fn search(q: &str) -> Option<Search> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let pattern = regex::escape(q);
    Some(Search {
        text: regex::RegexBuilder::new(&pattern).case_insensitive(true).build().ok()?,
        bytes: regex::bytes::RegexBuilder::new(&pattern).case_insensitive(true).build().ok()?,
    })
}

/// Page `page` (from 1) of the trial's items that pass `filter` and `q`.
///
/// Two passes: the scores alone give every filter's count and the page's items, then the full
/// rows of just those items are read, stopping once they are all there (the rest of each file
/// is still decompressed and verified, but not parsed). A search also reads the answers and
/// inputs in the first pass, but keeps of each row only whether the text is in it, and parses
/// a request line only when its raw bytes may hold the text ([`may_contain`]).
pub(crate) fn page(
    repo: &Repo,
    commit: &ObjectId,
    trial: &TrialFiles,
    filter: Filter,
    page: u64,
    q: &str,
) -> Result<ItemsPage> {
    let search = search(q);
    let skip = (page - 1) * PAGE_SIZE;
    let in_page = |n: u64| n > skip && n <= skip + PAGE_SIZE;
    let mut out = ItemsPage::default();
    let streams = match &search {
        Some(s) => Streams::Search(s),
        None => Streams::ScoresOnly,
    };
    out.has_scores = scan_streams(repo, commit, trial, streams, |mut row| {
        if search.as_ref().is_some_and(|s| !row.found(s)) {
            return ControlFlow::Continue(());
        }
        for f in Filter::EVERY {
            if f.matches(&row) {
                out.counts[f.index()] += 1;
            }
        }
        if filter.matches(&row) && in_page(out.counts[filter.index()]) {
            row.decode();
            out.rows.push(row);
        }
        ControlFlow::Continue(())
    })?;
    if search.is_none() {
        fill_texts(repo, commit, trial, &mut out.rows)?;
    }
    Ok(out)
}

/// Calls `visit` with every row (item and repeat) that both runs' trials scored, as (the
/// row in A, the row in B), scores only, in the files' order, until it says stop. Both runs'
/// score files are streamed side by side and joined row by row, as a trial's conditions are:
/// what is held is the rows whose partner has not arrived yet.
pub(crate) fn scan_runs(
    repo: &Repo,
    a: &TrialFiles,
    b: &TrialFiles,
    mut visit: impl FnMut(ItemRow, ItemRow) -> ControlFlow<()>,
) -> Result<()> {
    let mut streams = score_sources(repo, a, "")?;
    streams.extend(score_sources(repo, b, SIDE_B)?);
    join_streams(streams, |mut row| {
        let (on_b, on_a) = std::mem::take(&mut row.answers)
            .into_iter()
            .partition::<Vec<_>, _>(|(c, _)| c.starts_with(SIDE_B));
        let mut row_b = ItemRow { answers: on_b, ..row.clone() };
        for (c, _) in &mut row_b.answers {
            c.drain(..SIDE_B.len());
        }
        row.answers = on_a;
        if row.answers.is_empty() || row_b.answers.is_empty() {
            return ControlFlow::Continue(());
        }
        visit(row, row_b)
    })
}

/// What the conditions of run B are labelled with while both runs' rows are joined.
const SIDE_B: &str = "\0B:";

/// Calls `visit` with every item row of the trial, in the files' order, until it says stop.
/// False when the trial has no per-item scores (nothing was listed).
pub(crate) fn scan(
    repo: &Repo,
    commit: &ObjectId,
    trial: &TrialFiles,
    visit: impl FnMut(ItemRow) -> ControlFlow<()>,
) -> Result<bool> {
    scan_streams(repo, commit, trial, Streams::All, visit)
}

/// Which files a scan reads.
#[derive(Clone, Copy)]
enum Streams<'a> {
    /// Scores, predictions and inputs: whole rows.
    All,
    /// Scores only: enough to filter and count.
    ScoresOnly,
    /// Scores, and of the predictions and inputs only whether they hold the text.
    Search(&'a Search),
}

fn scan_streams(
    repo: &Repo,
    commit: &ObjectId,
    trial: &TrialFiles,
    streams: Streams<'_>,
    visit: impl FnMut(ItemRow) -> ControlFlow<()>,
) -> Result<bool> {
    let sources = sources(repo, commit, trial, streams)?;
    if sources.is_empty() {
        return Ok(false);
    }
    join_streams(sources, visit)?;
    Ok(true)
}

/// Joins `sources` by key and calls `visit` with each row, until it says stop.
fn join_streams(
    mut sources: Vec<Source>,
    mut visit: impl FnMut(ItemRow) -> ControlFlow<()>,
) -> Result<()> {
    let mut join = Join::new(sources.len());
    while !join.finished() {
        for (i, src) in sources.iter_mut().enumerate() {
            if join.done[i] {
                continue;
            }
            match src.next().transpose()? {
                Some((key, part)) => join.add(i, key, part),
                None => join.done[i] = true,
            }
        }
        if join.emit(&mut visit).is_break() {
            // What was shown must be what was stored: the rest of every file is still read
            // through its hash check, only not parsed.
            for src in &mut sources {
                src.finish()?;
            }
            break;
        }
    }
    Ok(())
}

/// (dataset, item id, repeat): what pairs the rows of the files.
pub(crate) type Key = (String, String, u32);

/// What one row of one file says about an item.
enum Part {
    Score {
        condition: String,
        gold: String,
        prediction: String,
        score: Option<f64>,
    },
    Prediction {
        condition: String,
        answer: Answer,
    },
    Input(String),
    /// Whether a search found its text in this row of an answers or requests file, and the
    /// row, undecoded.
    Hit(bool, Unread),
}

/// Puts what one file's row says into the item's row.
fn apply(row: &mut ItemRow, part: Part) {
    match part {
        Part::Score { condition, gold, prediction, score } => {
            if row.gold.is_empty() {
                row.gold = gold;
            }
            let a = row.answer_mut(&condition);
            a.score = score;
            if a.prediction.is_empty() {
                a.prediction = prediction;
            }
        }
        Part::Prediction { condition, answer } => {
            let a = row.answer_mut(&condition);
            let score = a.score;
            *a = Answer { score, ..answer };
        }
        Part::Input(text) => row.input = Some(text),
        Part::Hit(found, unread) => {
            row.hit |= found;
            row.unread.push(unread);
        }
    }
}

/// Rows waiting for their partners from the other streams, in the order first seen.
struct Join {
    done: Vec<bool>,
    pending: HashMap<Key, Pending>,
    order: VecDeque<Key>,
}

/// A row being joined: which streams have given their part, and whether a scores file has.
struct Pending {
    row: ItemRow,
    seen: u64,
    scored: bool,
}

impl Join {
    fn new(n: usize) -> Join {
        Join { done: vec![false; n], pending: HashMap::new(), order: VecDeque::new() }
    }

    fn finished(&self) -> bool {
        self.done.iter().all(|d| *d) && self.order.is_empty()
    }

    fn add(&mut self, source: usize, key: Key, part: Part) {
        let order = &mut self.order;
        let p = self.pending.entry(key.clone()).or_insert_with(|| {
            order.push_back(key.clone());
            let (dataset, item, repeat) = key;
            let row = ItemRow { dataset, item, repeat, ..Default::default() };
            Pending { row, seen: 0, scored: false }
        });
        p.seen |= 1 << source;
        p.scored |= matches!(part, Part::Score { .. });
        apply(&mut p.row, part);
    }

    /// Hands on the rows at the front that every stream has either given or can no longer give,
    /// until `visit` says stop.
    fn emit(&mut self, visit: &mut impl FnMut(ItemRow) -> ControlFlow<()>) -> ControlFlow<()> {
        while let Some(key) = self.order.front() {
            let complete = match self.pending.get(key) {
                Some(p) => (0..self.done.len()).all(|i| self.done[i] || p.seen & (1 << i) != 0),
                None => true,
            };
            if !complete {
                break;
            }
            let key = self.order.pop_front().unwrap_or_default();
            // A request whose item the scores lack is not an item of the trial.
            if let Some(p) = self.pending.remove(&key)
                && p.scored
            {
                visit(p.row)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// One stream of rows of one file (or one condition's request files).
trait Rows: Iterator<Item = Result<(Key, Part)>> {
    /// Reads the rest through the store's hash check without parsing it: an error if the
    /// object is damaged.
    fn finish(&mut self) -> Result<()>;
}

type Source = Box<dyn Rows>;

/// The streams of a trial: scores and predictions once per condition, and one condition's
/// request files for the inputs (only scores for `ScoresOnly`). Empty when the trial has no
/// scores.
fn sources(
    repo: &Repo,
    commit: &ObjectId,
    trial: &TrialFiles,
    streams: Streams<'_>,
) -> Result<Vec<Source>> {
    let mut out = score_sources(repo, trial, "")?;
    let (kind, search) = match streams {
        _ if out.is_empty() => return Ok(out),
        Streams::ScoresOnly => return Ok(out),
        Streams::All => (Kind::Prediction, None),
        Streams::Search(s) => (Kind::Hit, Some(s)),
    };
    if let Some((id, path)) = predictions_file(repo, commit, trial)? {
        for c in conditions(trial) {
            let mut rows = CsvRows::open(repo, id, path.clone(), kind, Which::Only(c))?;
            rows.search = search.map(|s| s.text.clone());
            out.push(Box::new(rows));
        }
    }
    if let Some(mut inputs) = input_rows(repo, trial)? {
        inputs.search = search.cloned();
        out.push(Box::new(inputs));
    }
    Ok(out)
}

/// The scores of each condition of the trial, their conditions labelled `prefix` + name.
fn score_sources(repo: &Repo, trial: &TrialFiles, prefix: &'static str) -> Result<Vec<Source>> {
    let mut out: Vec<Source> = Vec::new();
    if let Some(scores) = &trial.scores {
        let id = parse_id(&scores.loc)?;
        let path = format!("{}/{SCORES}", trial.results_path);
        for c in conditions(trial) {
            let mut rows = CsvRows::open(repo, id, path.clone(), Kind::Score, Which::Only(c))?;
            rows.prefix = prefix;
            out.push(Box::new(rows));
        }
    } else {
        for (c, e) in &trial.legacy_scores {
            let path = format!("{}/{}", trial.path, e.name);
            let which = Which::File(c.clone());
            let mut rows = CsvRows::open(repo, parse_id(&e.loc)?, path, Kind::Score, which)?;
            rows.prefix = prefix;
            out.push(Box::new(rows));
        }
    }
    Ok(out)
}

/// The trial's `predictions.csv`, when it has one.
fn predictions_file(
    repo: &Repo,
    commit: &ObjectId,
    trial: &TrialFiles,
) -> Result<Option<(ObjectId, String)>> {
    let path = format!("{}/{PREDICTIONS}", trial.results_path);
    match repo.lookup_path(commit, &path) {
        Ok(e) if e.mode != crate::store::Mode::Tree => Ok(Some((e.id, path))),
        Ok(_) | Err(crate::store::Error::PathNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The user messages of one condition's request files (the same in both conditions).
fn input_rows(repo: &Repo, trial: &TrialFiles) -> Result<Option<InputRows>> {
    let Some((first, _)) = trial.inputs.first() else { return Ok(None) };
    let parts: Vec<(String, ObjectId)> = trial
        .inputs
        .iter()
        .filter(|(c, _)| c == first)
        .map(|(_, e)| Ok((format!("{}/{}", trial.path, e.name), parse_id(&e.loc)?)))
        .collect::<Result<_>>()?;
    Ok(Some(InputRows::new(repo.clone(), parts)))
}

/// Fills in the texts of `rows` (read with their scores only): every condition's answer from
/// `predictions.csv` and the input from the requests, each file read in its own thread until
/// every row has its part (and then through its hash check, unparsed).
pub(crate) fn fill_texts(
    repo: &Repo,
    commit: &ObjectId,
    trial: &TrialFiles,
    rows: &mut [ItemRow],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let index: HashMap<Key, usize> = rows.iter().enumerate().map(|(i, r)| (r.key(), i)).collect();
    let answers: usize = rows.iter().map(|r| r.answers.len()).sum();
    let predictions = match predictions_file(repo, commit, trial)? {
        Some((id, path)) => Some(CsvRows::open(repo, id, path, Kind::Prediction, Which::Every)?),
        None => None,
    };
    let inputs = input_rows(repo, trial)?;
    let (found_a, found_b) = std::thread::scope(|s| {
        let a = s.spawn(|| lookup(predictions, &index, answers));
        let b = s.spawn(|| lookup(inputs, &index, rows.len()));
        let join = |h: std::thread::ScopedJoinHandle<'_, _>| {
            h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        (join(a), join(b))
    });
    for (i, part) in found_a?.into_iter().chain(found_b?) {
        apply(&mut rows[i], part);
    }
    Ok(())
}

/// The parts of `src` whose key `index` names, until `expected` are found.
fn lookup(
    src: Option<impl Rows>,
    index: &HashMap<Key, usize>,
    expected: usize,
) -> Result<Vec<(usize, Part)>> {
    let Some(mut src) = src else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    while out.len() < expected {
        let Some(next) = src.next() else { break };
        let (key, part) = next?;
        if let Some(i) = index.get(&key) {
            out.push((*i, part));
        }
    }
    src.finish()?;
    Ok(out)
}

/// Conditions in the trial's files: control and treatment first.
fn conditions(trial: &TrialFiles) -> Vec<String> {
    let mut out: Vec<String> = vec!["control".into(), "treatment".into()];
    for (c, _) in trial.inputs.iter().chain(&trial.legacy_scores) {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

fn parse_id(hex: &str) -> Result<ObjectId> {
    hex.parse().map_err(Error::Store)
}

/// The verified bytes of a blob as a `Read`: a thread decompresses and verifies the object and
/// sends it chunk by chunk over a channel of [`CHANNEL_CHUNKS`] chunks. Dropping the reader
/// stops the thread at its next chunk. A damaged object is an error at its end.
struct BlobReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

const CHANNEL_CHUNKS: usize = 4;

impl BlobReader {
    fn open(repo: &Repo, id: ObjectId) -> BlobReader {
        let (tx, rx) = sync_channel(CHANNEL_CHUNKS);
        let odb = repo.odb.clone();
        std::thread::spawn(move || {
            struct Chan(SyncSender<std::io::Result<Vec<u8>>>);
            impl Write for Chan {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0.send(Ok(buf.to_vec())).map_err(|_| std::io::Error::other("closed"))?;
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let mut chan = Chan(tx);
            if let Err(e) = odb.read_to(&id, &mut chan) {
                let _ = chan.0.send(Err(std::io::Error::other(e.to_string())));
            }
        });
        BlobReader { rx, chunk: Vec::new(), pos: 0 }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Score,
    Prediction,
    /// Whether an answer's prediction, output or error holds the search's text.
    Hit,
}

/// Column positions, found by name so reordered or extra columns do not matter.
#[derive(Debug)]
struct Columns {
    item: usize,
    dataset: Option<usize>,
    condition: Option<usize>,
    repeat: Option<usize>,
    gold: Option<usize>,
    prediction: Option<usize>,
    score: Option<usize>,
    raw: Option<usize>,
    finish: Option<usize>,
    input_tokens: Option<usize>,
    output_tokens: Option<usize>,
    reasoning_tokens: Option<usize>,
    latency: Option<usize>,
    error: Option<usize>,
}

/// The rows of one condition in a scores or predictions CSV.
struct CsvRows {
    rdr: csv::Reader<BlobReader>,
    cols: Arc<Columns>,
    kind: Kind,
    which: Which,
    path: String,
    rec: csv::StringRecord,
    /// The text a [`Kind::Hit`] stream looks for.
    search: Option<regex::Regex>,
    /// Put before each row's condition (to tell two runs' rows apart in one join).
    prefix: &'static str,
}

/// Which rows of a CSV a stream gives, and their condition.
#[derive(Clone)]
enum Which {
    /// The rows of this condition (its `condition` column).
    Only(String),
    /// Every row, of this condition (an old `predictions_<condition>.csv` holds one).
    File(String),
    /// Every row, each of the condition its column names.
    Every,
}

impl CsvRows {
    fn open(repo: &Repo, id: ObjectId, path: String, kind: Kind, which: Which) -> Result<CsvRows> {
        let mut rdr =
            csv::ReaderBuilder::new().flexible(true).from_reader(BlobReader::open(repo, id));
        let bad = |problem: String| Error::BadFile { path: path.clone(), problem };
        let header = rdr.headers().map_err(|e| bad(e.to_string()))?.clone();
        let col = |names: &[&str]| {
            header.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
        };
        let cols = Columns {
            item: col(&["item_id", "id"]).ok_or_else(|| bad("no item_id column".into()))?,
            dataset: col(&["dataset"]),
            condition: col(&["condition"]),
            repeat: col(&["repeat"]),
            gold: col(&["gold", "label"]),
            prediction: col(&["prediction", "pred"]),
            score: col(&["score", "correct"]),
            raw: col(&["raw_output"]),
            finish: col(&["finish_reason"]),
            input_tokens: col(&["input_tokens"]),
            output_tokens: col(&["output_tokens"]),
            reasoning_tokens: col(&["reasoning_tokens"]),
            latency: col(&["latency_ms"]),
            error: col(&["error"]),
        };
        if kind == Kind::Score && cols.score.is_none() {
            return Err(bad("no score column".into()));
        }
        if !matches!(which, Which::File(_)) && cols.condition.is_none() {
            return Err(bad("no condition column".into()));
        }
        Ok(CsvRows {
            rdr,
            cols: Arc::new(cols),
            kind,
            which,
            path,
            rec: csv::StringRecord::new(),
            search: None,
            prefix: "",
        })
    }

    fn field(&self, i: Option<usize>) -> String {
        field(&self.rec, i)
    }

    fn row(&self) -> Result<(Key, Part)> {
        let key = (
            self.field(self.cols.dataset),
            self.field(Some(self.cols.item)),
            self.field(self.cols.repeat).trim().parse().unwrap_or(0),
        );
        let condition = match &self.which {
            Which::Only(c) | Which::File(c) if self.prefix.is_empty() => c.clone(),
            Which::Only(c) | Which::File(c) => format!("{}{c}", self.prefix),
            Which::Every => format!("{}{}", self.prefix, self.field(self.cols.condition)),
        };
        let part = match self.kind {
            Kind::Score => {
                let raw = self.field(self.cols.score);
                let score = match raw.trim() {
                    "" => None,
                    s => Some(s.parse::<f64>().map_err(|_| Error::BadFile {
                        path: self.path.clone(),
                        problem: format!(
                            "line {}: score {s:?} is not a number",
                            self.rec.position().map(|p| p.line()).unwrap_or(0)
                        ),
                    })?),
                };
                Part::Score {
                    condition,
                    gold: self.field(self.cols.gold),
                    prediction: self.field(self.cols.prediction),
                    score,
                }
            }
            Kind::Prediction => {
                Part::Prediction { condition, answer: answer(&self.rec, &self.cols) }
            }
            Kind::Hit => {
                let found = self.search.as_ref().is_some_and(|re| {
                    [self.cols.prediction, self.cols.raw, self.cols.error]
                        .into_iter()
                        .any(|i| i.and_then(|i| self.rec.get(i)).is_some_and(|f| re.is_match(f)))
                });
                Part::Hit(
                    found,
                    Unread::Answer { condition, rec: self.rec.clone(), cols: self.cols.clone() },
                )
            }
        };
        Ok((key, part))
    }
}

/// Field `i` of a record (cut at [`TEXT_CAP`]); empty when the column or field is missing.
fn field(rec: &csv::StringRecord, i: Option<usize>) -> String {
    capped(i.and_then(|i| rec.get(i)).unwrap_or_default())
}

/// The answer a predictions row gives (its score comes from the scores file).
fn answer(rec: &csv::StringRecord, cols: &Columns) -> Answer {
    Answer {
        prediction: field(rec, cols.prediction),
        score: None,
        raw: cols.raw.map(|i| field(rec, Some(i))),
        finish_reason: field(rec, cols.finish),
        input_tokens: field(rec, cols.input_tokens),
        output_tokens: field(rec, cols.output_tokens),
        reasoning_tokens: field(rec, cols.reasoning_tokens),
        latency_ms: field(rec, cols.latency),
        error: field(rec, cols.error),
    }
}

impl Rows for CsvRows {
    fn finish(&mut self) -> Result<()> {
        std::io::copy(self.rdr.get_mut(), &mut std::io::sink())
            .map(|_| ())
            .map_err(|e| Error::BadFile { path: self.path.clone(), problem: e.to_string() })
    }
}

impl Iterator for CsvRows {
    type Item = Result<(Key, Part)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.rdr.read_record(&mut self.rec) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => {
                    return Some(Err(Error::BadFile {
                        path: self.path.clone(),
                        problem: e.to_string(),
                    }));
                }
            }
            let ours = match &self.which {
                Which::Only(c) => self.cols.condition.and_then(|i| self.rec.get(i)) == Some(c),
                Which::File(_) | Which::Every => true,
            };
            if ours {
                return Some(self.row());
            }
        }
    }
}

/// The user message of every request in a condition's request files, in file order.
struct InputRows {
    repo: Repo,
    parts: VecDeque<(String, ObjectId)>,
    current: Option<(String, BufReader<BlobReader>)>,
    line: Vec<u8>,
    /// Set: each line gives only whether its user message holds the text ([`Part::Hit`]).
    search: Option<Search>,
}

impl InputRows {
    fn new(repo: Repo, parts: Vec<(String, ObjectId)>) -> InputRows {
        InputRows { repo, parts: parts.into(), current: None, line: Vec::new(), search: None }
    }
}

/// `<dataset>:<item id>:<condition>:r<repeat>` (an item id may hold `:`).
fn parse_custom_id(id: &str) -> Option<Key> {
    let (rest, repeat) = id.rsplit_once(':')?;
    let repeat: u32 = repeat.strip_prefix('r')?.parse().ok()?;
    let (rest, _condition) = rest.rsplit_once(':')?;
    let (dataset, item) = rest.split_once(':')?;
    Some((dataset.to_string(), item.to_string(), repeat))
}

/// The last user message of a request line.
fn user_message(v: &Value) -> Option<&str> {
    let messages = v.get("body")?.get("messages")?.as_array()?;
    let m =
        messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    m.get("content")?.as_str()
}

/// The item and user message of a request line. A line that is not a request of today's shape
/// (a torn last line, an old batch file) gives none: the item is still listed, without it.
fn request_input(line: &[u8]) -> Option<(Key, String)> {
    let v = serde_json::from_slice::<Value>(line).ok()?;
    let key = parse_custom_id(v.get("custom_id")?.as_str()?)?;
    Some((key, capped(user_message(&v)?)))
}

/// Just the id of a request line: parsed without building the rest (no allocation unless the
/// id holds an escape).
#[derive(serde::Deserialize)]
struct RequestId<'a> {
    #[serde(borrow)]
    custom_id: std::borrow::Cow<'a, str>,
}

/// The messages of a request line, parsed without building the rest; a message whose content
/// is not a string (parts, images) has none.
#[derive(serde::Deserialize)]
struct RequestMessages<'a> {
    #[serde(borrow)]
    body: Messages<'a>,
}

#[derive(serde::Deserialize)]
struct Messages<'a> {
    #[serde(borrow)]
    messages: Vec<Message<'a>>,
}

#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    content: Option<Value>,
}

/// Whether the last user message of a request line holds `search`'s text (as
/// [`user_message`] reads it).
fn user_message_has(line: &[u8], search: &Search) -> bool {
    let Ok(req) = serde_json::from_slice::<RequestMessages>(line) else { return false };
    let last_user = req.body.messages.iter().rev().find(|m| m.role.as_deref() == Some("user"));
    last_user
        .and_then(|m| m.content.as_ref()?.as_str())
        .is_some_and(|text| search.text.is_match(text))
}

/// Whether the JSON text `line` may hold `search`'s text in one of its strings, as decoded: no
/// false "no", so a line this refuses needs no parsing. Without a backslash a JSON string's
/// decoded text is its raw bytes; with one, the escapes of the whole line are decoded first
/// (outside strings valid JSON has none), so a string's decoded text is still one run of bytes.
fn may_contain(line: &[u8], search: &Search) -> bool {
    if !line.contains(&b'\\') {
        return search.bytes.is_match(line);
    }
    search.bytes.is_match(&unescape_json(line))
}

/// `line` with every JSON escape (`\n`, `\"`, `\u00e9`, surrogate pairs) decoded; a malformed
/// escape is kept as it is.
fn unescape_json(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    let hex4 = |at: usize| -> Option<u32> {
        u32::from_str_radix(std::str::from_utf8(line.get(at..at + 4)?).ok()?, 16).ok()
    };
    while i < line.len() {
        if line[i] != b'\\' || i + 1 == line.len() {
            out.push(line[i]);
            i += 1;
            continue;
        }
        let simple = match line[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let unit = if line[i + 1] == b'u' { hex4(i + 2) } else { None };
        let (ch, len) = match unit {
            Some(hi @ 0xD800..=0xDBFF) => {
                let lo = (line.get(i + 6..i + 8) == Some(b"\\u")).then(|| hex4(i + 8)).flatten();
                match lo {
                    Some(lo @ 0xDC00..=0xDFFF) => {
                        (char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)), 12)
                    }
                    _ => (None, 6),
                }
            }
            Some(u) => (char::from_u32(u), 6),
            None => (None, 2),
        };
        match ch {
            Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            None => out.extend_from_slice(&line[i..(i + len).min(line.len())]),
        }
        i += len;
    }
    out
}

impl Rows for InputRows {
    fn finish(&mut self) -> Result<()> {
        if let Some((path, reader)) = self.current.as_mut() {
            std::io::copy(reader, &mut std::io::sink())
                .map_err(|e| Error::BadFile { path: path.clone(), problem: e.to_string() })?;
        }
        for (_, id) in self.parts.drain(..) {
            self.repo.odb.verify(&id)?;
        }
        Ok(())
    }
}

impl Iterator for InputRows {
    type Item = Result<(Key, Part)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let (path, id) = self.parts.pop_front()?;
                self.current = Some((path, BufReader::new(BlobReader::open(&self.repo, id))));
            }
            let (path, reader) = self.current.as_mut()?;
            self.line.clear();
            match reader.read_until(b'\n', &mut self.line) {
                Ok(0) => {
                    self.current = None;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(Error::BadFile {
                        path: path.clone(),
                        problem: e.to_string(),
                    }));
                }
            }
            if let Some(search) = &self.search {
                let Ok(req) = serde_json::from_slice::<RequestId>(&self.line) else { continue };
                let Some(key) = parse_custom_id(&req.custom_id) else { continue };
                let found = may_contain(&self.line, search) && user_message_has(&self.line, search);
                let unread = Unread::Request(self.line.clone());
                return Some(Ok((key, Part::Hit(found, unread))));
            }
            if let Some((key, text)) = request_input(&self.line) {
                return Some(Ok((key, Part::Input(text))));
            }
        }
    }
}

/// `s`, cut at [`TEXT_CAP`] bytes (on a character boundary) with a note saying how much is left.
pub(crate) fn capped(s: &str) -> String {
    if s.len() <= TEXT_CAP {
        return s.to_string();
    }
    let mut end = TEXT_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes not shown]", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: Option<f64>, t: Option<f64>) -> ItemRow {
        let mut r = ItemRow::default();
        r.answer_mut("control").score = c;
        r.answer_mut("treatment").score = t;
        r
    }

    #[test]
    fn filters_classify_flips_failures_and_errors() {
        let fixed = row(Some(0.0), Some(1.0));
        let broken = row(Some(1.0), Some(0.0));
        let same = row(Some(1.0), Some(1.0));
        let error = row(None, Some(1.0));
        assert!(Filter::Fixed.matches(&fixed) && !Filter::Fixed.matches(&broken));
        assert!(Filter::Broken.matches(&broken) && Filter::Discordant.matches(&broken));
        assert!(!Filter::Discordant.matches(&same) && !Filter::Failures.matches(&same));
        assert!(Filter::Errors.matches(&error) && !Filter::Discordant.matches(&error));
        assert!(Filter::Failures.matches(&fixed));
    }

    #[test]
    fn custom_ids_split_with_colons_in_item_ids() {
        assert_eq!(parse_custom_id("ds:a:b:control:r2"), Some(("ds".into(), "a:b".into(), 2)));
        assert_eq!(parse_custom_id("nonsense"), None);
    }

    #[test]
    fn out_of_order_streams_still_pair_by_key() {
        let mut j = Join::new(2);
        let key = |i: &str| ("d".to_string(), i.to_string(), 0);
        let score = |c: &str, s: f64| Part::Score {
            condition: c.into(),
            gold: "g".into(),
            prediction: String::new(),
            score: Some(s),
        };
        j.add(0, key("a"), score("control", 1.0));
        j.add(1, key("b"), score("treatment", 0.0));
        let mut seen = Vec::new();
        let mut keep = |r| {
            seen.push(r);
            ControlFlow::Continue(())
        };
        let _ = j.emit(&mut keep);
        assert!(seen.is_empty(), "a waits for its treatment row");
        j.add(0, key("b"), score("control", 1.0));
        j.add(1, key("a"), score("treatment", 1.0));
        let _ = j.emit(&mut |r| {
            seen.push(r);
            ControlFlow::Continue(())
        });
        assert_eq!(seen.len(), 2);
        assert!(Filter::Broken.matches(&seen[1]) && !Filter::Discordant.matches(&seen[0]));
    }

    #[test]
    fn a_line_may_contain_the_text_only_as_decoded() {
        let s = |q: &str| search(q).unwrap();
        let line = br#"{"c":"she said \"tr\u00e9s\" \ud83d\ude00 a\\u0041 \u12"}"#;
        assert_eq!(
            unescape_json(line),
            "{\"c\":\"she said \"trés\" 😀 a\\u0041 \\u12\"}".as_bytes()
        );
        assert!(may_contain(line, &s("\"TRÉS\"")));
        assert!(may_contain(line, &s("😀")));
        assert!(may_contain(line, &s("a\\u0041")));
        assert!(!may_contain(line, &s("u00e9")));
        assert!(!may_contain(line, &s("aA")));
        assert!(may_contain(br#"{"c":"plain text"}"#, &s("PLAIN")));
        assert!(!may_contain(br#"{"c":"plain text"}"#, &s("plan")));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(TEXT_CAP);
        let cut = capped(&long);
        assert!(cut.len() < long.len() && cut.contains("more bytes not shown"));
    }
}
