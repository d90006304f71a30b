//! The response journal: `responses/<condition>/part-NNNN.jsonl`, append-only, one line per
//! finished request (a response, or a final failure with its error).
//!
//! Durability policy, because every line is a paid-for response:
//! - each line reaches the kernel with one `write(2)` on an `O_APPEND` file the moment the response
//!   arrives (no user-space buffer), so a `kill -9` of `exp` loses nothing already answered;
//! - a background thread fsyncs every journal that was appended to (group commit: one fsync covers
//!   every line written before it), at most once per `SYNC_INTERVAL`, so a power loss loses at
//!   most the lines of the last few tens of milliseconds, without putting a disk flush on every
//!   request's path (on a virtual disk each flush costs the CPU a device exit: fsyncing as often
//!   as lines arrived took 10,000 flushes and a tenth of the send time for 40,000 answers);
//! - a line torn by a crash mid-write is ignored on read and cut off before the next append, so
//!   the file stays valid JSONL and that request is simply sent again.
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::providers::MAX_TOKENS_PER_REQUEST;
use crate::error::Hint;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Error,
}

/// One finished request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub custom_id: String,
    pub status: Status,
    pub content: Option<String>,
    pub finish_reason: Option<String>,
    /// As the API reported them; 0 when it reported none (`usage_missing` says so).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The part of `output_tokens` spent reasoning, as reported; absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    #[serde(default)]
    pub usage_missing: bool,
    pub latency_ms: u64,
    pub attempts: u32,
    pub error: Option<String>,
    /// Set when the answer was not sent for but reused from an earlier run (the response
    /// cache): where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<Reused>,
}

impl Entry {
    /// A request that got no answer: `error` says why, after `attempts` tries over
    /// `latency_ms`.
    pub fn failed(custom_id: String, attempts: u32, latency_ms: u64, error: String) -> Entry {
        Entry {
            custom_id,
            status: Status::Error,
            content: None,
            finish_reason: None,
            input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            usage_missing: false,
            latency_ms,
            attempts,
            error: Some(error),
            reused: None,
        }
    }
}

/// Where a reused answer came from: the run, and the commit it was read from (`None`: the
/// run's folder in the workspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reused {
    pub run: String,
    pub commit: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A journal line that cannot be read, not at the end of the file (so not a torn write).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot access journal {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("journal {path}, line {line}: corrupt entry ({problem})")]
    Corrupt { path: PathBuf, line: usize, problem: String },
}

impl Hint for JournalError {
    fn hint(&self) -> Option<String> {
        match self {
            JournalError::Io { .. } => Some("check the disk has space and the run folder is writable".into()),
            JournalError::Corrupt { .. } => Some(
                "the file was edited or damaged; delete that line (its request is sent again on --resume)"
                    .into(),
            ),
        }
    }
}

/// A journal's last word per custom_id. Hashed with foldhash (seeded per process), not
/// SipHash: scoring a million-item run looks up two million ids.
pub type Entries = HashMap<String, Entry, foldhash::fast::RandomState>;

/// The entries of a journal, last word per custom_id: a response beats an earlier failure
/// (a resumed run retries failures), and a missing file is an empty journal.
pub fn read(path: &Path) -> Result<Entries, JournalError> {
    Ok(last_words(read_entries(path)?))
}

/// [`read`] of a journal's bytes read elsewhere (from the store); `path` names it in errors.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Entries, JournalError> {
    let text = String::from_utf8_lossy(bytes);
    Ok(last_words(parse_entries(&text, path)?))
}

fn last_words(entries: Vec<Entry>) -> Entries {
    let mut map = Entries::with_capacity_and_hasher(entries.len(), Default::default());
    for entry in entries {
        match map.get(&entry.custom_id) {
            Some(old) if old.status == Status::Ok && entry.status != Status::Ok => {}
            _ => {
                map.insert(entry.custom_id.clone(), entry);
            }
        }
    }
    map
}

/// Every complete entry, in file order.
pub fn read_entries(path: &Path) -> Result<Vec<Entry>, JournalError> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_string(&mut text)
                .map_err(|source| JournalError::Io { path: path.to_path_buf(), source })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Io { path: path.to_path_buf(), source }),
    }
    parse_entries(&text, path)
}

fn parse_entries(text: &str, path: &Path) -> Result<Vec<Entry>, JournalError> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    // Parsing is most of reading a journal of 10^5+ answers: lines are parsed on every core,
    // and collected in file order (the last word on a request is the last line).
    let lines: Vec<&str> = complete.lines().collect();
    let parsed: Vec<Option<Entry>> = lines
        .par_iter()
        .enumerate()
        .map(|(i, line)| parse_line(line, i + 1, path))
        .collect::<Result<_, _>>()?;
    Ok(parsed.into_iter().flatten().collect())
}

/// One journal line (`number` counts from 1, for the error); `None` for a blank line.
fn parse_line(line: &str, number: usize, path: &Path) -> Result<Option<Entry>, JournalError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let corrupt =
        |problem: String| JournalError::Corrupt { path: path.to_path_buf(), line: number, problem };
    let entry: Entry = serde_json::from_str(line).map_err(|e| corrupt(e.to_string()))?;
    // The execute step never journals more (the endpoint's usage is checked first), so only
    // an edited file holds it; refused here, every sum over journals stays exact.
    if let Some(n) = [entry.input_tokens, entry.output_tokens, entry.reasoning_tokens]
        .into_iter()
        .find(|n| *n > MAX_TOKENS_PER_REQUEST)
    {
        return Err(corrupt(format!(
            "{n} tokens, more than {MAX_TOKENS_PER_REQUEST} for one request"
        )));
    }
    Ok(Some(entry))
}

/// An open journal that lines are appended to from any task.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    /// The same file for `fsync`, so a flush never holds up appends (nor costs a `dup` each).
    sync_handle: File,
    dirty: AtomicBool,
}

impl Journal {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One line, one `write(2)`: the line is in the kernel when this returns.
    pub fn append(self: &Arc<Self>, entry: &Entry, syncer: &Syncer) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            f.write_all(&line)
                .map_err(|source| JournalError::Io { path: self.path.clone(), source })?;
        }
        if !self.dirty.swap(true, Ordering::AcqRel) {
            syncer.request(self);
        }
        Ok(())
    }
}

/// Opens `path` for appending, creating it (and its folder), after cutting off a torn last line.
pub fn open(path: &Path) -> Result<Arc<Journal>, JournalError> {
    let io = |source| JournalError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = OpenOptions::new().read(true).create(true).append(true).open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len > 0 {
        // Find the end of the last complete line, reading backwards in small blocks.
        let mut end = len;
        let mut keep = 0;
        let mut buf = vec![0u8; 4096];
        'scan: while end > 0 {
            let start = end.saturating_sub(buf.len() as u64);
            let n = (end - start) as usize;
            f.seek(SeekFrom::Start(start)).map_err(io)?;
            f.read_exact(&mut buf[..n]).map_err(io)?;
            for i in (0..n).rev() {
                if buf[i] == b'\n' {
                    keep = start + i as u64 + 1;
                    break 'scan;
                }
            }
            end = start;
        }
        if keep < len {
            f.set_len(keep).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
    }
    let sync_handle = f.try_clone().map_err(io)?;
    Ok(Arc::new(Journal {
        path: path.to_path_buf(),
        file: Mutex::new(f),
        sync_handle,
        dirty: AtomicBool::new(false),
    }))
}

/// The shortest time between two rounds of fsyncs: the most a power loss can take back.
const SYNC_INTERVAL: Duration = Duration::from_millis(25);

/// The group-commit thread: fsyncs journals that were appended to since their last fsync.
pub struct Syncer {
    tx: Mutex<Option<mpsc::Sender<Arc<Journal>>>>,
    /// Set by `finish`: the last rounds go without a pause (nothing more is coming).
    closing: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<Option<JournalError>>>>,
}

impl Syncer {
    /// `enabled: false` (execution.fsync: false) leaves flushing to the OS.
    pub fn start(enabled: bool) -> Syncer {
        if !enabled {
            return Syncer {
                tx: Mutex::new(None),
                closing: Arc::default(),
                thread: Mutex::new(None),
            };
        }
        let (tx, rx) = mpsc::channel::<Arc<Journal>>();
        let closing = Arc::new(AtomicBool::new(false));
        let closed = closing.clone();
        let thread = std::thread::spawn(move || {
            let mut first_error = None;
            // A round: every journal queued by then, each fsynced once, then a pause that lets
            // the next round's lines gather (appends go on meanwhile; only flushes wait).
            while let Ok(first) = rx.recv() {
                let round = Instant::now();
                let mut queued = vec![first];
                queued.extend(rx.try_iter());
                for j in queued {
                    // Cleared before the fsync: a line appended during it marks the journal
                    // dirty again and queues another fsync, so no line is ever left unsynced.
                    j.dirty.store(false, Ordering::Release);
                    if let Err(source) = j.sync_handle.sync_data()
                        && first_error.is_none()
                    {
                        first_error = Some(JournalError::Io { path: j.path.clone(), source });
                    }
                }
                if !closed.load(Ordering::Acquire) {
                    // `finish` unparks: the pause never delays the end of a run.
                    std::thread::park_timeout(SYNC_INTERVAL.saturating_sub(round.elapsed()));
                }
            }
            first_error
        });
        Syncer { tx: Mutex::new(Some(tx)), closing, thread: Mutex::new(Some(thread)) }
    }

    fn request(&self, j: &Arc<Journal>) {
        match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => {
                // The thread only stops after `finish`, so a send cannot fail before then.
                let _ = tx.send(j.clone());
            }
            None => j.dirty.store(false, Ordering::Release),
        }
    }

    /// Waits until every queued fsync is done; the first fsync error, if any.
    /// Appends after this are no longer fsynced by the thread.
    pub fn finish(&self) -> Result<(), JournalError> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.closing.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = &thread {
            t.thread().unpark();
        }
        match thread.map(|t| t.join()) {
            Some(Ok(Some(err))) => Err(err),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, status: Status) -> Entry {
        Entry {
            custom_id: id.into(),
            status,
            content: Some("positive".into()),
            finish_reason: Some("stop".into()),
            input_tokens: 10,
            output_tokens: 2,
            reasoning_tokens: 0,
            usage_missing: false,
            latency_ms: 3,
            attempts: 1,
            error: None,
            reused: None,
        }
    }

    #[test]
    fn appended_entries_read_back_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r/part-0000.jsonl");
        let syncer = Syncer::start(true);
        let j = open(&path).unwrap();
        j.append(&entry("a", Status::Error), &syncer).unwrap();
        j.append(&entry("a", Status::Ok), &syncer).unwrap();
        j.append(&entry("b", Status::Ok), &syncer).unwrap();
        syncer.finish().unwrap();
        drop(j);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"custom_id\":\"c\",\"sta").unwrap();
        drop(f);
        let map = read(&path).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["a"].status, Status::Ok);
        let syncer = Syncer::start(false);
        let j = open(&path).unwrap();
        j.append(&entry("c", Status::Ok), &syncer).unwrap();
        assert_eq!(read(&path).unwrap().len(), 3);
        assert_eq!(read_entries(&path).unwrap().len(), 4);
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn an_entry_with_implausible_tokens_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut e = entry("a", Status::Ok);
        e.output_tokens = u64::MAX;
        std::fs::write(&path, format!("{}\n", serde_json::to_string(&e).unwrap())).unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("more than 100000000"), "{err}");
    }

    #[test]
    fn a_missing_journal_is_empty() {
        assert!(read(Path::new("/nonexistent/j.jsonl")).unwrap().is_empty());
    }
}
