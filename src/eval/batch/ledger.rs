//! `<run>/batches.jsonl`: what the Batch API backend has done, journaled before it is relied on,
//! so a resume after a crash or a reboot polls the batches that exist instead of paying for them
//! twice. Append-only, one fsynced `write(2)` a record; a torn last line (a crash mid-write) is
//! ignored, and its step is simply redone (an upload: a stray file at the provider; a create: the
//! batch is found again by its input file id, see `backend`).
//!
//! Records, in the order they happen for one batch input file ("chunk"):
//! `{"event": "chunk", "chunk": "batches/<model>/0001.jsonl", "model": "m", "requests": 3, "round": 0}`
//! `{"event": "uploaded", "chunk": …, "file_id": "file-…"}`
//! `{"event": "created", "chunk": …, "batch_id": "batch_…"}`
//! `{"event": "ended", "chunk": …, "batch_id": …, "status": "completed|expired|cancelled|failed",
//!   "journaled": 3, "not_run": 0}`
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BatchError;

pub const LEDGER: &str = "batches.jsonl";

/// A record line is small; a longer one is not ours.
const MAX_RECORD: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Record {
    Chunk { chunk: String, model: String, requests: usize, round: u32 },
    Uploaded { chunk: String, file_id: String },
    Created { chunk: String, batch_id: String },
    Ended { chunk: String, batch_id: String, status: String, journaled: u64, not_run: u64 },
}

/// A batch input file and how far it got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkState {
    pub chunk: String,
    pub model: String,
    pub requests: usize,
    /// 0 for a first submission, n for the n-th resubmission of what a batch left unanswered.
    pub round: u32,
    pub file_id: Option<String>,
    pub batch_id: Option<String>,
    pub ended: Option<String>,
}

pub struct Ledger {
    path: PathBuf,
    file: std::fs::File,
}

impl Ledger {
    /// Opens (creating) the ledger of the run in `run_dir`, cutting off a torn last line, and
    /// returns every chunk's state in the order the chunks were written.
    pub fn open(run_dir: &Path) -> Result<(Ledger, Vec<ChunkState>), BatchError> {
        let path = run_dir.join(LEDGER);
        let records = read(&path)?;
        // Rewrite without a torn tail so the next append starts a line.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| BatchError::Write { path: path.clone(), source })?;
        let complete = complete_len(&path)?;
        file.set_len(complete)
            .map_err(|source| BatchError::Write { path: path.clone(), source })?;
        let mut states: Vec<ChunkState> = Vec::new();
        for r in records {
            let chunk = match &r {
                Record::Chunk { chunk, .. }
                | Record::Uploaded { chunk, .. }
                | Record::Created { chunk, .. }
                | Record::Ended { chunk, .. } => chunk.clone(),
            };
            let i = match states.iter().position(|s| s.chunk == chunk) {
                Some(i) => i,
                None => {
                    states.push(ChunkState { chunk, ..Default::default() });
                    states.len() - 1
                }
            };
            let s = &mut states[i];
            match r {
                Record::Chunk { model, requests, round, .. } => {
                    (s.model, s.requests, s.round) = (model, requests, round);
                }
                Record::Uploaded { file_id, .. } => s.file_id = Some(file_id),
                Record::Created { batch_id, .. } => s.batch_id = Some(batch_id),
                Record::Ended { status, .. } => s.ended = Some(status),
            }
        }
        Ok((Ledger { path, file }, states))
    }

    /// One record, durable when this returns.
    pub fn append(&mut self, record: &Record) -> Result<(), BatchError> {
        let err = |source| BatchError::Write { path: self.path.clone(), source };
        let mut line = serde_json::to_vec(record).map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(err)?;
        self.file.sync_data().map_err(err)
    }
}

fn read(path: &Path) -> Result<Vec<Record>, BatchError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(BatchError::Read { path: path.to_path_buf(), source }),
    };
    let mut out = Vec::new();
    let mut r = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut r, MAX_RECORD as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| BatchError::Read { path: path.to_path_buf(), source })?;
        if n == 0 || !buf.ends_with(b"\n") {
            // The end, or a torn last record.
            return Ok(out);
        }
        line += 1;
        let bad = |problem: String| BatchError::Line { path: path.to_path_buf(), line, problem };
        let record: Record = serde_json::from_slice(&buf)
            .map_err(|e| bad(format!("not a batch ledger record: {e}")))?;
        let (Record::Chunk { chunk, .. }
        | Record::Uploaded { chunk, .. }
        | Record::Created { chunk, .. }
        | Record::Ended { chunk, .. }) = &record;
        if !is_chunk_path(chunk) {
            return Err(bad(format!("`{chunk}` is not a batch input file of this run")));
        }
        out.push(record);
    }
}

/// `batches/<model>/NNNN.jsonl` and nothing else: the ledger travels with the run (commits,
/// remotes), so its paths are untrusted and must never lead a read or a write elsewhere.
fn is_chunk_path(chunk: &str) -> bool {
    let parts: Vec<&str> = chunk.split('/').collect();
    matches!(parts.as_slice(), [folder, model, file]
        if *folder == super::backend::FOLDER
            && crate::eval::config::is_safe_name(model)
            && file.strip_suffix(".jsonl").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
}

/// The length of the file up to its last newline.
fn complete_len(path: &Path) -> Result<u64, BatchError> {
    let bytes = std::fs::read(path)
        .map_err(|source| BatchError::Read { path: path.to_path_buf(), source })?;
    Ok(bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i as u64 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fold_into_chunk_states_and_a_torn_tail_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let (mut l, states) = Ledger::open(d.path()).unwrap();
        assert!(states.is_empty());
        let chunk = "batches/m/0001.jsonl".to_string();
        l.append(&Record::Chunk { chunk: chunk.clone(), model: "m".into(), requests: 3, round: 0 })
            .unwrap();
        l.append(&Record::Uploaded { chunk: chunk.clone(), file_id: "file-1".into() }).unwrap();
        drop(l);
        let mut f = std::fs::OpenOptions::new().append(true).open(d.path().join(LEDGER)).unwrap();
        f.write_all(b"{\"event\":\"created\",\"chu").unwrap();
        let (mut l, states) = Ledger::open(d.path()).unwrap();
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].file_id.as_deref(), Some("file-1"));
        assert_eq!(states[0].batch_id, None, "the torn record is not taken");
        l.append(&Record::Created { chunk: chunk.clone(), batch_id: "batch_1".into() }).unwrap();
        let (_, states) = Ledger::open(d.path()).unwrap();
        assert_eq!((states[0].batch_id.as_deref(), states[0].requests), (Some("batch_1"), 3));
    }

    #[test]
    fn a_record_naming_a_path_outside_the_batches_folder_is_refused() {
        assert!(is_chunk_path("batches/m/0001.jsonl"));
        for bad in [
            "../../etc/passwd",
            "batches/../x/0001.jsonl",
            "batches/m/0001.output.jsonl",
            "/batches/m/1.jsonl",
            "batches/m/x/1.jsonl",
        ] {
            assert!(!is_chunk_path(bad), "{bad}");
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(LEDGER),
            "{\"event\":\"uploaded\",\"chunk\":\"../../x.jsonl\",\"file_id\":\"f\"}\n",
        )
        .unwrap();
        let err = Ledger::open(d.path()).err().unwrap().to_string();
        assert!(err.contains("line 1: `../../x.jsonl` is not a batch input file"), "{err}");
    }
}
