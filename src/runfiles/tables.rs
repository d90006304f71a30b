//! `<trial>/results/predictions.csv` and `per_item_scores.csv` (docs/RUN_FILES.md): their
//! columns, a writer, and readers that go through a file a record at a time in one reused
//! buffer, so memory stays bounded whatever the run's size.
//!
//! Two ways to read the same records: the strict rows of today's files ([`ScoreLine`],
//! [`PredictionLine`], columns by their exact names, a score that is not in [0, 1] an error
//! naming the line) for the statistics and reports; and the tolerant [`ScoreTable`] for diffs
//! and imports, which also reads the old scripts' `predictions_<condition>.csv`.
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;

pub const PREDICTIONS_HEADER: [&str; 13] = [
    "item_id",
    "dataset",
    "condition",
    "repeat",
    "part",
    "prediction",
    "raw_output",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "latency_ms",
    "error",
];
pub const SCORES_HEADER: [&str; 8] =
    ["item_id", "dataset", "condition", "repeat", "gold", "prediction", "score", "cluster"];

/// Writes one of the CSVs a row at a time (through the `csv` crate's buffer).
pub struct TableWriter {
    path: PathBuf,
    out: csv::Writer<File>,
}

impl TableWriter {
    /// Creates (or truncates) `path` and writes `header`.
    pub fn create(path: &Path, header: &[&str]) -> Result<TableWriter, Error> {
        let out = csv::Writer::from_path(path).map_err(|e| write_err(path, e))?;
        let mut w = TableWriter { path: path.to_path_buf(), out };
        w.row(header)?;
        Ok(w)
    }

    pub fn row<I, T>(&mut self, fields: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.out.write_record(fields).map_err(|e| write_err(&self.path, e))
    }

    /// Flushes what is buffered; the file is complete after this.
    pub fn finish(mut self) -> Result<(), Error> {
        self.out.flush().map_err(|source| Error::Write { path: self.path.clone(), source })
    }
}

fn write_err(path: &Path, e: csv::Error) -> Error {
    Error::Write { path: path.to_path_buf(), source: std::io::Error::other(e) }
}

/// A CSV read a record at a time into one reused buffer.
struct Records<R> {
    reader: csv::Reader<R>,
    record: csv::ByteRecord,
}

impl<R: Read> Records<R> {
    fn new(reader: csv::Reader<R>) -> Self {
        Records { reader, record: csv::ByteRecord::new() }
    }

    fn header(&mut self) -> Result<csv::ByteRecord, csv::Error> {
        self.reader.byte_headers().cloned()
    }

    fn read(&mut self) -> Result<Option<&csv::ByteRecord>, csv::Error> {
        Ok(self.reader.read_byte_record(&mut self.record)?.then_some(&self.record))
    }
}

/// One row of `per_item_scores.csv`, borrowed from the reader's record.
#[derive(Debug, Deserialize)]
pub struct ScoreLine<'a> {
    pub item_id: &'a str,
    pub dataset: &'a str,
    pub condition: &'a str,
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub gold: &'a str,
    #[serde(default)]
    pub prediction: &'a str,
    #[serde(default)]
    pub score: &'a str,
    #[serde(default)]
    pub cluster: &'a str,
}

/// One row of `predictions.csv` (what the reports show of it), borrowed.
#[derive(Debug, Deserialize)]
pub struct PredictionLine<'a> {
    pub item_id: &'a str,
    pub dataset: &'a str,
    pub condition: &'a str,
    #[serde(default)]
    pub repeat: Option<u32>,
    #[serde(default)]
    pub finish_reason: &'a str,
    #[serde(default)]
    pub error: &'a str,
}

/// Streams `per_item_scores.csv`, calling `each` with every row and its parsed score (`None` =
/// failed request) in file order. A score must be empty or a finite number in [0, 1]: anything
/// else is an error naming the line, because a NaN or a 7 would silently poison every figure
/// downstream. Returns the number of rows.
pub fn for_each_score(
    path: &Path,
    mut each: impl FnMut(&ScoreLine<'_>, Option<f64>),
) -> Result<u64, Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingScores { path: path.to_path_buf() });
        }
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    let mut rows = 0u64;
    for_each_record(path, file, |record, header| {
        let line: ScoreLine<'_> = record.deserialize(header).map_err(|e| csv_err(path, e))?;
        let text = line.score.trim();
        let score = if text.is_empty() {
            None
        } else {
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Some(v),
                _ => {
                    return Err(Error::BadScore {
                        path: path.to_path_buf(),
                        line: rows + 2,
                        value: text.to_string(),
                    });
                }
            }
        };
        each(&line, score);
        rows += 1;
        Ok(())
    })?;
    Ok(rows)
}

/// Streams `predictions.csv` (every row is checked against its columns); an absent file has
/// no rows (the report then shows less detail).
pub fn for_each_prediction(
    path: &Path,
    mut each: impl FnMut(&PredictionLine<'_>),
) -> Result<(), Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    for_each_record(path, file, |record, header| {
        let line: PredictionLine<'_> = record.deserialize(header).map_err(|e| csv_err(path, e))?;
        each(&line);
        Ok(())
    })
}

/// Calls `each` with every record of a CSV with a header line (and the header). Errors and
/// their line numbers are those of `csv::Reader::deserialize`, which this mirrors: the header is
/// read once, and a header that cannot be read leaves the rows to be matched by position.
fn for_each_record(
    path: &Path,
    file: File,
    mut each: impl FnMut(&csv::ByteRecord, Option<&csv::ByteRecord>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut records = Records::new(csv::Reader::from_reader(std::io::BufReader::new(file)));
    let header = records.header().ok();
    while let Some(record) = records.read().map_err(|e| csv_err(path, e))? {
        each(record, header.as_ref())?;
    }
    Ok(())
}

fn csv_err(path: &Path, source: csv::Error) -> Error {
    let line = source.position().map(|p| p.line());
    Error::Csv { path: path.to_path_buf(), line, message: source.to_string() }
}

/// Per-item scores of one trial, from one or more files. Built for tens of thousands of rows
/// per file: texts live back to back in one buffer and rows hold ranges into it, conditions and
/// datasets are interned, so parsing allocates per file, not per row.
#[derive(Debug, Clone, Default)]
pub struct ScoreTable {
    text: String,
    names: Vec<String>,
    pub rows: Vec<ScoreRow>,
}

/// One scored item of one condition; its texts are read through the [`ScoreTable`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRow {
    condition: u32,
    dataset: u32,
    item: (usize, usize),
    pub repeat: u32,
    gold: (usize, usize),
    prediction: (usize, usize),
    /// Empty when the item has no cluster.
    cluster: (usize, usize),
    /// None when the request failed: a failure, never a wrong answer.
    pub score: Option<f64>,
}

impl ScoreTable {
    pub fn condition(&self, r: &ScoreRow) -> &str {
        &self.names[r.condition as usize]
    }
    pub fn dataset(&self, r: &ScoreRow) -> &str {
        &self.names[r.dataset as usize]
    }
    pub fn item(&self, r: &ScoreRow) -> &str {
        &self.text[r.item.0..r.item.1]
    }
    pub fn gold(&self, r: &ScoreRow) -> &str {
        &self.text[r.gold.0..r.gold.1]
    }
    pub fn prediction(&self, r: &ScoreRow) -> &str {
        &self.text[r.prediction.0..r.prediction.1]
    }
    pub fn cluster(&self, r: &ScoreRow) -> &str {
        &self.text[r.cluster.0..r.cluster.1]
    }
    /// What pairs a row with its counterpart in another run.
    pub fn key<'t>(&'t self, r: &ScoreRow) -> (&'t str, &'t str, &'t str, u32) {
        (self.condition(r), self.dataset(r), self.item(r), r.repeat)
    }

    fn intern(&mut self, name: &str) -> u32 {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                self.names.push(name.to_string());
                (self.names.len() - 1) as u32
            }
        }
    }

    fn push_text(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.text.len();
        match std::str::from_utf8(bytes) {
            Ok(s) => self.text.push_str(s),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(bytes)),
        }
        (start, self.text.len())
    }
}

/// A per-item score table: `results/per_item_scores.csv`
/// (`item_id,dataset,condition,repeat,gold,prediction,score,cluster`) or an old
/// `predictions_<condition>.csv` (`id,gold,prediction,correct`), whose condition comes from its
/// name (`condition`). Columns are found by name, so extra or reordered columns do not matter.
pub fn scores(bytes: &[u8], condition: Option<&str>) -> Result<ScoreTable, String> {
    let mut table = ScoreTable::default();
    add_scores(&mut table, bytes, condition)?;
    Ok(table)
}

/// Adds the rows of one score file to `table` (see [`scores`]).
pub fn add_scores(
    table: &mut ScoreTable,
    bytes: &[u8],
    condition: Option<&str>,
) -> Result<(), String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".into());
    }
    let not_csv = |e: csv::Error| format!("not valid CSV ({e})");
    let mut records = Records::new(csv::ReaderBuilder::new().flexible(true).from_reader(bytes));
    let header = records.header().map_err(not_csv)?;
    let columns = TolerantColumns::find(&header, table, condition)?;
    while let Some(rec) = records.read().map_err(not_csv)? {
        table.push_row(&columns, rec)?;
    }
    Ok(())
}

/// Where a tolerant reader finds each column of a score file.
struct TolerantColumns {
    item: usize,
    score: usize,
    dataset: Option<usize>,
    repeat: Option<usize>,
    condition: Option<usize>,
    gold: Option<usize>,
    prediction: Option<usize>,
    cluster: Option<usize>,
    /// The condition of every row, when the file has no condition column.
    fixed_condition: Option<u32>,
    no_dataset: u32,
}

impl TolerantColumns {
    fn find(
        header: &csv::ByteRecord,
        table: &mut ScoreTable,
        condition: Option<&str>,
    ) -> Result<TolerantColumns, String> {
        let col = |names: &[&str]| {
            header.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n.as_bytes())))
        };
        let item = col(&["item_id", "id"]).ok_or("no item_id (or id) column")?;
        let score = col(&["score", "correct"]).ok_or("no score (or correct) column")?;
        let cond = col(&["condition"]);
        let fixed_condition = match (cond, condition) {
            (Some(_), _) => None,
            (None, Some(c)) => Some(table.intern(c)),
            (None, None) => return Err("no condition column".into()),
        };
        Ok(TolerantColumns {
            item,
            score,
            dataset: col(&["dataset"]),
            repeat: col(&["repeat"]),
            condition: cond,
            gold: col(&["gold", "label"]),
            prediction: col(&["prediction", "pred"]),
            cluster: col(&["cluster"]),
            fixed_condition,
            no_dataset: table.intern(""),
        })
    }
}

impl ScoreTable {
    /// Adds one record read with `c`'s columns.
    fn push_row(&mut self, c: &TolerantColumns, rec: &csv::ByteRecord) -> Result<(), String> {
        let raw = rec.get(c.score).unwrap_or_default();
        let score = if raw.is_empty() {
            None
        } else {
            let s = std::str::from_utf8(raw).ok().and_then(|s| s.trim().parse::<f64>().ok());
            match s {
                Some(s) => Some(s),
                None => {
                    let line = rec.position().map(|p| p.line()).unwrap_or(0);
                    return Err(format!(
                        "line {line}: score {:?} is not a number",
                        String::from_utf8_lossy(raw)
                    ));
                }
            }
        };
        let name = |i: Option<usize>| {
            std::str::from_utf8(i.and_then(|i| rec.get(i)).unwrap_or_default()).ok()
        };
        let condition = match c.fixed_condition {
            Some(fixed) => fixed,
            None => self.intern(name(c.condition).unwrap_or_default()),
        };
        let dataset = match name(c.dataset) {
            Some(d) if !d.is_empty() => self.intern(d),
            _ => c.no_dataset,
        };
        let repeat = name(c.repeat).and_then(|r| r.trim().parse().ok()).unwrap_or(0);
        let row = ScoreRow {
            condition,
            dataset,
            item: self.push_text(rec.get(c.item).unwrap_or_default()),
            repeat,
            gold: self.push_text(c.gold.and_then(|i| rec.get(i)).unwrap_or_default()),
            prediction: self.push_text(c.prediction.and_then(|i| rec.get(i)).unwrap_or_default()),
            cluster: self.push_text(c.cluster.and_then(|i| rec.get(i)).unwrap_or_default()),
            score,
        };
        self.rows.push(row);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_tables_with_crlf_failures_and_either_header_parse() {
        let new = b"item_id,dataset,condition,repeat,gold,prediction,score,cluster\n7,d,control,0,positive,negative,0,\n8,d,control,0,neutral,,,\n";
        let t = scores(new, None).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.item(&t.rows[0]), t.rows[0].score), ("7", Some(0.0)));
        assert_eq!(t.key(&t.rows[0]), ("control", "d", "7", 0));
        assert_eq!(t.rows[1].score, None, "an empty score is a failure");
        let old = b"id,gold,prediction,correct\r\ns01,positive,positive,1\r\ns02,negative,,\r\n";
        let mut t = scores(old, Some("treatment")).unwrap();
        assert_eq!(t.condition(&t.rows[0]), "treatment");
        assert_eq!((t.gold(&t.rows[0]), t.rows[0].score), ("positive", Some(1.0)));
        assert_eq!(t.prediction(&t.rows[1]), "");
        add_scores(
            &mut t,
            b"id,gold,prediction,correct\ns01,positive,negative,0\n",
            Some("control"),
        )
        .unwrap();
        assert_eq!(t.key(&t.rows[2]), ("control", "", "s01", 0), "two files, one table");
        let bad = scores(b"id,correct\nx,maybe\n", Some("control")).unwrap_err();
        assert!(bad.contains("line 2") && bad.contains("maybe"), "{bad}");
    }
}
